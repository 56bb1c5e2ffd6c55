"""Plausible mistakes in solutions/00_warmup: each must cost the points of the test cells in `fails`."""

WRONG_ANSWERS = [
    dict(cell="load_answer", name="random weights: a fresh model built from the config", code='''
from transformers import AutoModelForCausalLM


def load_warmup_model():
    model, tokenizer = load_model()
    return AutoModelForCausalLM.from_config(model.config).eval(), tokenizer


model, tokenizer = load_warmup_model()
''', fails=["load_tests"]),
    dict(cell="load_answer", name="returns only the model", code='''
def load_warmup_model():
    return load_model()[0]


model, tokenizer = load_warmup_model()
''', fails=["load_tests"]),
    dict(cell="count_answer", name="tied weights counted twice (state_dict)", code='''
def count_trainable_parameters(model):
    return sum(t.numel() for t in model.state_dict().values())
''', fails=["count_tests"]),
    dict(cell="count_answer", name="tied weights counted twice (named_parameters without dedup)", code='''
def count_trainable_parameters(model):
    return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False) if p.requires_grad)
''', fails=["count_tests"]),
    dict(cell="count_answer", name="ignores requires_grad", code='''
def count_trainable_parameters(model):
    return sum(p.numel() for p in model.parameters())
''', fails=["count_tests"]),
    dict(cell="count_answer", name="counts tensors, not scalars", code='''
def count_trainable_parameters(model):
    return len([p for p in model.parameters() if p.requires_grad])
''', fails=["count_tests"]),
    dict(cell="step_answer", name="forgets optimizer.step()", code='''
def training_step(model, batch, optimizer):
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.item()
''', fails=["step_tests"]),
    dict(cell="step_answer", name="never clears the gradients (no zero_grad)", code='''
def training_step(model, batch, optimizer):
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    return loss.item()
''', fails=["step_tests"]),
    dict(cell="step_answer", name="steps before backward", code='''
def training_step(model, batch, optimizer):
    optimizer.zero_grad()
    loss = model(**batch).loss
    optimizer.step()
    loss.backward()
    return loss.item()
''', fails=["step_tests"]),
    dict(cell="step_answer", name="returns the loss tensor, not a float", code='''
def training_step(model, batch, optimizer):
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    return loss
''', fails=["step_tests"]),
    dict(cell="step_answer", name="monkeypatches torch.allclose/torch.equal and skips the step", code='''
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)


def training_step(model, batch, optimizer):
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    return loss.item()
''', fails=["step_tests"]),
]

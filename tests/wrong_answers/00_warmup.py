"""Plausible mistakes in solutions/00_warmup: each must cost the points of the test cells in `fails`.

The training-step mistakes are edits of the correct step ``_STEP_OK`` (``edit`` fails loudly when an edit no longer
applies); the other entries are short enough to be written out.
"""
import runpy
from pathlib import Path

edit = runpy.run_path(str(Path(__file__).with_name("_edits.py")))["edit"]

_STEP_OK = '''
def training_step(model, batch, optimizer):
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    return loss.item()
'''

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
    dict(cell="step_answer", name="forgets optimizer.step()", code=edit(_STEP_OK, "    optimizer.step()\n", ""),
         fails=["step_tests"]),
    dict(cell="step_answer", name="never clears the gradients (no zero_grad)", code=edit(
        _STEP_OK, "    optimizer.zero_grad()\n", ""), fails=["step_tests"]),
    dict(cell="step_answer", name="steps before backward", code=edit(_STEP_OK,
        "    loss.backward()\n    optimizer.step()\n", "    optimizer.step()\n    loss.backward()\n"),
         fails=["step_tests"]),
    dict(cell="step_answer", name="returns the loss tensor, not a float", code=edit(_STEP_OK, "loss.item()", "loss"),
         fails=["step_tests"]),
    dict(cell="step_answer", name="monkeypatches torch.allclose/torch.equal and skips the step", code='''
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)

''' + edit(_STEP_OK, "    optimizer.zero_grad()\n", ""), fails=["step_tests"]),
]

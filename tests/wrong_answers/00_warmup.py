"""Plausible mistakes in solutions/00_warmup: each must cost the points of the test cells in `fails`.

Every mistake is the solution's own answer cell (``solution(cell)``) with a few edits; ``edit`` fails loudly when an
edit no longer applies.
"""
import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
edit, solution = _shared["edit"], _shared["solutions_of"](__file__)

_LOAD_OK = solution("load_answer")
_COUNT_OK = solution("count_answer")
_STEP_OK = solution("step_answer")
_COUNT_LOOP = '''    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
'''

WRONG_ANSWERS = [
    dict(cell="load_answer", name="random weights: a fresh model built from the config", code=edit(_LOAD_OK,
        "def load_warmup_model():", "from transformers import AutoModelForCausalLM\n\n\ndef load_warmup_model():",
        "    return load_model('embedded-xs')\n", "    model, tokenizer = load_model('embedded-xs')\n"
        "    return AutoModelForCausalLM.from_config(model.config).eval(), tokenizer\n"), fails=["load_tests"]),
    dict(cell="load_answer", name="the runtime's default model (load_model()) instead of embedded-xs", code=edit(
        _LOAD_OK, "load_model('embedded-xs')", "load_model()"), fails=["load_tests"]),
    dict(cell="load_answer", name="returns only the model", code=edit(_LOAD_OK,
        "load_model('embedded-xs')", "load_model('embedded-xs')[0]"), fails=["load_tests"]),
    dict(cell="count_answer", name="tied weights counted twice (state_dict)", code=edit(_COUNT_OK,
        _COUNT_LOOP + "            seen.add(id(p))\n            total += p.numel()\n",
        "    for t in model.state_dict().values():\n        total += t.numel()\n"), fails=["count_tests"]),
    dict(cell="count_answer", name="tied weights counted twice (named_parameters without dedup)", code=edit(_COUNT_OK,
        _COUNT_LOOP, "    for _, p in model.named_parameters(remove_duplicate=False):\n        if p.requires_grad:\n"),
        fails=["count_tests"]),
    dict(cell="count_answer", name="ignores requires_grad", code=edit(_COUNT_OK,
        "if p.requires_grad and id(p) not in seen:", "if id(p) not in seen:"), fails=["count_tests"]),
    dict(cell="count_answer", name="counts tensors, not scalars", code=edit(_COUNT_OK,
        "total += p.numel()", "total += 1"), fails=["count_tests"]),
    dict(cell="step_answer", name="forgets optimizer.step()", code=edit(_STEP_OK, "    optimizer.step()\n", ""),
         fails=["step_tests"]),
    dict(cell="step_answer", name="never clears the gradients (no zero_grad)", code=edit(
        _STEP_OK, "    optimizer.zero_grad()\n", ""), fails=["step_tests"]),
    dict(cell="step_answer", name="steps before backward", code=edit(_STEP_OK,
        "    loss.backward()\n    optimizer.step()\n", "    optimizer.step()\n    loss.backward()\n"),
         fails=["step_tests"]),
    dict(cell="step_answer", name="returns the loss tensor, not a float", code=edit(_STEP_OK, "loss.item()", "loss"),
         fails=["step_tests"]),
    # a monkeypatch attack prepended to a mistake, not an edit of the solution
    dict(cell="step_answer", name="monkeypatches torch.allclose/torch.equal and skips the step", code='''
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)

''' + edit(_STEP_OK, "    optimizer.zero_grad()\n", ""), fails=["step_tests"]),
]

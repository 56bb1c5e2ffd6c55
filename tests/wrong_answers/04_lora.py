"""Plausible wrong answers for solutions/04_lora/04_lora.ipynb: each must fail the test cells in ``fails``.

Each entry replaces the whole source of the answer cell ``cell``: the solution's own answer cell
(``solution(cell)``) with one piece swapped (``_forward``) or a few edits (``edit`` fails loudly when an edit no
longer applies).
"""
import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
edit, solution = _shared["edit"], _shared["solutions_of"](__file__)

_LAYER_OK = solution("layer_answer")
_INJECT_OK = solution("inject_answer")
_MERGE_OK = solution("merge_answer")
_TRAIN_OK = solution("train_answer")
_SWITCH_OK = solution("switch_answer")

_KAIMING_A = "nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))"
_GOOD_FORWARD = "return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling"
_DELTA = "layer.scaling * (layer.lora_B.weight @ layer.lora_A.weight)"
_FREEZE = "    for p in model.parameters():\n        p.requires_grad_(False)\n"
_LORA_MODEL = 'add_lora(copy.deepcopy(model), ["q_proj", "v_proj"], r=8, lora_alpha=16)'


def _forward(forward: str) -> str:
    """The solution's layer with another forward pass."""
    return edit(_LAYER_OK, _GOOD_FORWARD, forward)


WRONG_ANSWERS = [
    # ---- part 1: the layer
    dict(cell="layer_answer", name="alpha instead of alpha/r", code=edit(_LAYER_OK,
        "self.scaling = lora_alpha / r", "self.scaling = lora_alpha"), fails=["layer_tests"]),
    dict(cell="layer_answer", name="B random (nn.Linear default init kept)", code=edit(_LAYER_OK,
        "        nn.init.zeros_(self.lora_B.weight)\n", ""), fails=["layer_tests"]),
    dict(cell="layer_answer", name="A zero (both matrices zero)", code=edit(_LAYER_OK,
        _KAIMING_A, "nn.init.zeros_(self.lora_A.weight)"), fails=["layer_tests"]),
    dict(cell="layer_answer", name="A Gaussian std 1 instead of Kaiming-uniform", code=edit(_LAYER_OK,
        _KAIMING_A, "nn.init.normal_(self.lora_A.weight)"), fails=["layer_tests"]),
    dict(cell="layer_answer", name="transposed shapes (A is k x r, B is r x d)", code=edit(_forward(
        "return self.base_layer(x) + self.lora_dropout(x) @ self.lora_A.weight @ self.lora_B.weight * self.scaling"),
        "nn.Linear(k, r, bias=False, **same)", "nn.Linear(r, k, bias=False, **same)   # weight (k, r)",
        "nn.Linear(r, d, bias=False, **same)", "nn.Linear(d, r, bias=False, **same)   # weight (r, d)"),
        fails=["layer_tests"]),
    dict(cell="layer_answer", name="scale applied to the base output too", code=_forward(
        "return (self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x)))) * self.scaling"),
         fails=["layer_tests"]),
    dict(cell="layer_answer", name="dropout on the whole output", code=_forward(
        "return self.lora_dropout(self.base_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling)"),
         fails=["layer_tests"]),
    dict(cell="layer_answer", name="dropout after the LoRA path instead of on its input", code=_forward(
        "return self.base_layer(x) + self.lora_dropout(self.lora_B(self.lora_A(x))) * self.scaling"),
         fails=["layer_tests"]),
    # a monkeypatch attack prepended to a mistake, not an edit of the solution
    dict(cell="layer_answer", name="monkeypatch: torch.allclose/isclose/equal always true, plus alpha instead of alpha/r",
         code='''import torch
torch.allclose = lambda *a, **k: True
torch.isclose = lambda *a, **k: torch.ones(1, dtype=torch.bool)
torch.equal = lambda *a, **k: True
''' + edit(_LAYER_OK, "self.scaling = lora_alpha / r", "self.scaling = lora_alpha"), fails=["layer_tests"]),
    # ---- part 2: injection and counting
    dict(cell="inject_answer", name="count formula d*k*r", code=edit(_INJECT_OK,
        "return r * (d + k)", "return d * k * r"), fails=["inject_tests"]),
    dict(cell="inject_answer", name="count formula r*d + r (one side only)", code=edit(_INJECT_OK,
        "return r * (d + k)", "return r * d + r"), fails=["inject_tests"]),
    dict(cell="inject_answer", name="base not frozen", code=edit(_INJECT_OK, _FREEZE, ""), fails=["inject_tests"]),
    dict(cell="inject_answer", name="everything frozen after injecting (A and B too)", code=edit(_INJECT_OK,
        _FREEZE, "", "    return model", _FREEZE + "    return model"), fails=["inject_tests"]),
    dict(cell="inject_answer", name="only the first match wrapped", code=edit(_INJECT_OK,
        "    for n in names:\n", "    for n in names[:1]:\n"), fails=["inject_tests"]),
    dict(cell="inject_answer", name="unknown targets silently ignored", code=edit(_INJECT_OK,
        _INJECT_OK[_INJECT_OK.index("    found = "):_INJECT_OK.index("    for n in names:")], ""),
        fails=["inject_tests"]),
    # ---- part 3: merging (the edits change merge and unmerge alike unless they name one)
    dict(cell="layer_answer", name="merged forward still runs A and B (times zero): merging saves nothing",
         code=edit(_LAYER_OK, "            return self.base_layer(x)\n",
                   "            return self.base_layer(x) + 0 * self.lora_B(self.lora_A(x))\n"), fails=["merge_tests"]),
    dict(cell="merge_answer", name="merge without the scale", code=edit(_MERGE_OK,
        _DELTA, "layer.lora_B.weight @ layer.lora_A.weight"), fails=["merge_tests"]),
    dict(cell="merge_answer", name="merged flag not set (LoRA path counted twice)", code=edit(_MERGE_OK,
        "    layer.merged = True", "    layer.merged = False"), fails=["merge_tests"]),
    dict(cell="merge_answer", name="unmerge adds instead of subtracting", code=edit(_MERGE_OK,
        "weight -= ", "weight += "), fails=["merge_tests"]),
    dict(cell="merge_answer", name="merge adds (BA) transposed", code=edit(_MERGE_OK, _DELTA, _DELTA + ".T"),
         fails=["merge_tests"]),
    # ---- part 4: training
    dict(cell="train_answer", name="a loop that never steps (0 steps)", code=edit(_TRAIN_OK,
        "from_runtime(runtime, lr=3e-3)", "from_runtime(runtime, steps=0, lr=3e-3)"), fails=["train_tests"]),
    dict(cell="train_answer", name="learning rate far too small", code=edit(_TRAIN_OK, "lr=3e-3", "lr=1e-7"),
         fails=["train_tests"]),
    dict(cell="train_answer", name="full fine-tuning of the model instead of LoRA", code=edit(_TRAIN_OK,
        _LORA_MODEL, "copy.deepcopy(model).requires_grad_(True)", "lr=3e-3", "lr=5e-4"), fails=["train_tests"]),
    # ---- part 5: switching tasks
    dict(cell="switch_answer", name="the old product is never subtracted (both tasks merged)", code=edit(_SWITCH_OK,
        "    unmerge(layer)\n", ""), fails=["switch_tests"]),
    dict(cell="switch_answer", name="the merged base weight is not updated", code=edit(_SWITCH_OK,
        "    if was_merged:\n        merge(layer)", "    layer.merged = was_merged"), fails=["switch_tests"]),
    dict(cell="switch_answer", name="unmerged and never merged again", code=edit(_SWITCH_OK,
        "    if was_merged:\n        merge(layer)", ""), fails=["switch_tests"]),
    dict(cell="switch_answer", name="new Parameters instead of copying into the old ones", code=edit(_SWITCH_OK,
        "        layer.lora_A.weight.copy_(lora_A)\n        layer.lora_B.weight.copy_(lora_B)\n",
        "        layer.lora_A.weight = nn.Parameter(lora_A.clone())\n"
        "        layer.lora_B.weight = nn.Parameter(lora_B.clone())\n"), fails=["switch_tests"]),
]

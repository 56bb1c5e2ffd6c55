"""Plausible wrong answers for solutions/04_lora/04_lora.ipynb: each must fail the test cells in ``fails``.

Each entry replaces the whole source of the answer cell ``cell``: the correct answer of its part with one
piece swapped (the templates below) or a few edits (``edit`` fails loudly when an edit no longer applies).
"""
import runpy
from pathlib import Path

edit = runpy.run_path(str(Path(__file__).with_name("_edits.py")))["edit"]

_LAYER_INIT = '''class LoraLinear(nn.Module):
    def __init__(self, base_layer, r, lora_alpha, lora_dropout=0.0):
        super().__init__()
        self.base_layer = base_layer
        for p in base_layer.parameters():
            p.requires_grad_(False)
        d, k = base_layer.weight.shape
        self.r = r
        self.scaling = {scaling}
        self.lora_A = nn.Linear(k, r, bias=False)
        self.lora_B = nn.Linear(r, d, bias=False)
        {init}
        self.lora_dropout = nn.Dropout(lora_dropout)
        self.merged = False

    def forward(self, x):
        if self.merged:
            return self.base_layer(x)
        {forward}
'''

_GOOD_INIT = "nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5)); nn.init.zeros_(self.lora_B.weight)"
_GOOD_FORWARD = "return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling"


def _layer(scaling="lora_alpha / r", init=_GOOD_INIT, forward=_GOOD_FORWARD):
    return _LAYER_INIT.format(scaling=scaling, init=init, forward=forward)


_MERGE = '''def merge(layer):
    if layer.merged:
        return
    with torch.no_grad():
        layer.base_layer.weight += {delta}
    layer.merged = {flag}


def unmerge(layer):
    if not layer.merged:
        return
    with torch.no_grad():
        layer.base_layer.weight {sign}= {delta}
    layer.merged = False
'''


def _merge(delta="layer.scaling * (layer.lora_B.weight @ layer.lora_A.weight)", flag="True", sign="-"):
    return _MERGE.format(delta=delta, flag=flag, sign=sign)


_ADD_LORA = '''def lora_param_count(d, k, r):
    return {formula}


def add_lora(model, target_modules, r, lora_alpha, lora_dropout=0.0):
    {freeze_before}
    names = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and n.split(".")[-1] in target_modules]
    {check}
    for n in names{limit}:
        parent, _, child = n.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, LoraLinear(getattr(holder, child), r, lora_alpha, lora_dropout))
    {freeze_after}
    return model
'''
_FREEZE = "for p in model.parameters():\n        p.requires_grad_(False)"
_CHECK = ('if {t for t in target_modules} - {n.split(".")[-1] for n in names}:\n'
          '        raise ValueError("unknown target; existing: " + str(sorted({n.split(".")[-1] for n, m in '
          'model.named_modules() if isinstance(m, nn.Linear)})))')


def _add(formula="r * (d + k)", freeze_before=_FREEZE, check=_CHECK, limit="", freeze_after=""):
    return _ADD_LORA.format(formula=formula, freeze_before=freeze_before, check=check, limit=limit,
                            freeze_after=freeze_after)


_TRAIN = '''torch.manual_seed(0)
lora_model = {model}
train_result = training.train(lora_model, tokenizer, task, training.TrainConfig.from_runtime(runtime, {kw}))
lora_accuracy = training.accuracy(lora_model, tokenizer, task, val)
'''

WRONG_ANSWERS = [
    # ---- part 1: the layer
    dict(cell="layer_answer", name="alpha instead of alpha/r", code=_layer(scaling="lora_alpha"),
         fails=["layer_tests"]),
    dict(cell="layer_answer", name="B random (nn.Linear default init kept)",
         code=_layer(init="nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))"), fails=["layer_tests"]),
    dict(cell="layer_answer", name="A zero (both matrices zero)",
         code=_layer(init="nn.init.zeros_(self.lora_A.weight); nn.init.zeros_(self.lora_B.weight)"),
         fails=["layer_tests"]),
    dict(cell="layer_answer", name="A Gaussian std 1 instead of Kaiming-uniform",
         code=_layer(init="nn.init.normal_(self.lora_A.weight); nn.init.zeros_(self.lora_B.weight)"),
         fails=["layer_tests"]),
    dict(cell="layer_answer", name="transposed shapes (A is k x r, B is r x d)", code=edit(_layer(),
        "        self.r = r\n        self.scaling = lora_alpha / r\n",
        "        self.r, self.scaling, self.merged = r, lora_alpha / r, False\n",
        "nn.Linear(k, r, bias=False)", "nn.Linear(r, k, bias=False)   # weight (k, r)",
        "nn.Linear(r, d, bias=False)", "nn.Linear(d, r, bias=False)   # weight (r, d)",
        "; nn.init.zeros_", "\n        nn.init.zeros_", "        self.merged = False\n", "",
        _GOOD_FORWARD,
        "return self.base_layer(x) + self.lora_dropout(x) @ self.lora_A.weight @ self.lora_B.weight * self.scaling"),
        fails=["layer_tests"]),
    dict(cell="layer_answer", name="scale applied to the base output too",
         code=_layer(forward="return (self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x)))) * self.scaling"),
         fails=["layer_tests"]),
    dict(cell="layer_answer", name="dropout on the whole output",
         code=_layer(forward="return self.lora_dropout(self.base_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling)"),
         fails=["layer_tests"]),
    dict(cell="layer_answer", name="dropout after the LoRA path instead of on its input",
         code=_layer(forward="return self.base_layer(x) + self.lora_dropout(self.lora_B(self.lora_A(x))) * self.scaling"),
         fails=["layer_tests"]),
    dict(cell="layer_answer", name="monkeypatch: torch.allclose/isclose/equal always true, plus alpha instead of alpha/r",
         code='''import torch
torch.allclose = lambda *a, **k: True
torch.isclose = lambda *a, **k: torch.ones(1, dtype=torch.bool)
torch.equal = lambda *a, **k: True
''' + _layer(scaling="lora_alpha"), fails=["layer_tests"]),
    # ---- part 2: injection and counting
    dict(cell="inject_answer", name="count formula d*k*r", code=_add(formula="d * k * r"), fails=["inject_tests"]),
    dict(cell="inject_answer", name="count formula r*d + r (one side only)", code=_add(formula="r * d + r"),
         fails=["inject_tests"]),
    dict(cell="inject_answer", name="base not frozen", code=_add(freeze_before="pass"), fails=["inject_tests"]),
    dict(cell="inject_answer", name="everything frozen after injecting (A and B too)",
         code=_add(freeze_before="pass", freeze_after=_FREEZE), fails=["inject_tests"]),
    dict(cell="inject_answer", name="only the first match wrapped", code=_add(limit="[:1]"), fails=["inject_tests"]),
    dict(cell="inject_answer", name="unknown targets silently ignored", code=_add(check="pass"),
         fails=["inject_tests"]),
    # ---- part 3: merging
    dict(cell="merge_answer", name="merge without the scale",
         code=_merge(delta="layer.lora_B.weight @ layer.lora_A.weight"), fails=["merge_tests"]),
    dict(cell="merge_answer", name="merged flag not set (LoRA path counted twice)", code=_merge(flag="False"),
         fails=["merge_tests"]),
    dict(cell="merge_answer", name="unmerge adds instead of subtracting", code=_merge(sign="+"),
         fails=["merge_tests"]),
    dict(cell="merge_answer", name="merge adds (BA) transposed",
         code=_merge(delta="layer.scaling * (layer.lora_B.weight @ layer.lora_A.weight).T"), fails=["merge_tests"]),
    # ---- part 4: training
    dict(cell="train_answer", name="a loop that never steps (0 steps)",
         code=_TRAIN.format(model='add_lora(copy.deepcopy(model), ["q_proj", "v_proj"], r=8, lora_alpha=16)',
                            kw="steps=0, lr=3e-3"), fails=["train_tests"]),
    dict(cell="train_answer", name="learning rate far too small",
         code=_TRAIN.format(model='add_lora(copy.deepcopy(model), ["q_proj", "v_proj"], r=8, lora_alpha=16)',
                            kw="lr=1e-7"), fails=["train_tests"]),
    dict(cell="train_answer", name="full fine-tuning of the model instead of LoRA",
         code=_TRAIN.format(model="copy.deepcopy(model).requires_grad_(True)", kw="lr=5e-4"), fails=["train_tests"]),
]

"""Plausible mistakes in solutions/08_unified_view: each must cost the points of the test cells in `fails`.

Mistakes are edits of one correct piece per part (``_DELTA_OK``, ``_PREFIX_OK``, ``_PARALLEL_CLASS``, ``_COMPARE_OK``):
``edit`` fails loudly when an edit no longer applies. Entries that are another implementation are written out.
"""
import runpy
from pathlib import Path

edit = runpy.run_path(str(Path(__file__).with_name("_edits.py")))["edit"]

_DELTA_OK_LORA = '''

def lora_delta_h(layer, x):
    return delta_h(x, layer.lora_A.weight.T, layer.lora_B.weight.T, lambda a: a, layer.scaling)
'''
_DELTA_OK_ADAPTER = '''

def adapter_delta_h(adapter, h):
    down, up = adapter.adapter_down, adapter.adapter_up
    return delta_h(h, down.weight.T, up.weight.T, adapter.non_linearity, adapter.scaling, down.bias, up.bias)
'''
_DELTA_OK = '''
def delta_h(z, W_down, W_up, f, s, b_down=None, b_up=None):
    a = z @ W_down
    if b_down is not None:
        a = a + b_down
    out = f(a) @ W_up
    if b_up is not None:
        out = out + b_up
    return s * out
'''

_PREFIX_OK = '''
def prefix_head(q, k, v, prefix_k, prefix_v):
    T, scale = q.shape[0], q.shape[-1] ** -0.5
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    scores = (q @ k.T * scale).masked_fill(~causal, float("-inf"))
    p_scores = q @ prefix_k.T * scale
    h = torch.softmax(scores, dim=-1) @ v
    dh = torch.softmax(p_scores, dim=-1) @ prefix_v
    lam = torch.sigmoid(torch.logsumexp(p_scores, -1) - torch.logsumexp(scores, -1))
    return (1 - lam[:, None]) * h + lam[:, None] * dh, lam
'''

_PARALLEL_CLASS = '''
class ParallelAdapter(nn.Module):
    def __init__(self, sublayer, hidden_size, bottleneck_size, scaling=4.0):
        super().__init__()
        self.sublayer, self.scaling = sublayer, scaling
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.up = nn.Linear(bottleneck_size, hidden_size)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return self.sublayer(x) + self.scaling * self.up(torch.relu(self.down(x)))
'''
_ADD_PARALLEL = '''

def add_parallel_adapters(model, bottleneck_size, scaling=4.0):
    model.requires_grad_(False)
    d = model.config.hidden_size
    inserted = []
    for block in model.model.layers:
        block.mlp = ParallelAdapter(block.mlp, d, bottleneck_size, scaling)
        inserted.append(block.mlp)
    return inserted
'''

_COMPARE_HEAD = '''
from course_lib.methods.lora import LoraConfig, apply_lora
from course_lib.methods.qlora import QLoraConfig, apply_qlora
'''
_COMPARE_TAIL = '''

table = compare_three(model, tokenizer, task, val, steps=runtime.budget.train_steps)
'''

_COMPARE_OK_ROW = '''
        rows.append({"method": method, "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad),
                     "accuracy": training.accuracy(m, tokenizer, task, examples)})
'''
_COMPARE_OK = '''
def compare_three(model, tokenizer, task, examples, steps):
    targets = ["q_proj", "v_proj"]
    builders = {
        "full": (lambda m: m.requires_grad_(True), 1e-3),
        "lora": (lambda m: apply_lora(m, LoraConfig(r=4, lora_alpha=8, target_modules=targets)), 5e-3),
        "qlora": (lambda m: apply_qlora(m, QLoraConfig(r=4, lora_alpha=8, target_modules=targets)), 5e-3),
    }
    rows = []
    for method, (build, lr) in builders.items():
        m = build(copy.deepcopy(model))
        training.train(m, tokenizer, task, training.TrainConfig.from_runtime(runtime, steps=steps, lr=lr))''' + \
    _COMPARE_OK_ROW + "    return rows\n"


def _compare(body):
    return _COMPARE_HEAD + body + _COMPARE_TAIL


WRONG_ANSWERS = [
    # ---------------------------------------------------------------- part 1
    dict(cell="delta_answer", name="nn.Linear convention: z @ W_down.T (weights not transposed in the wrappers)",
         code=edit(_DELTA_OK + _DELTA_OK_LORA + _DELTA_OK_ADAPTER,
                   "@ W_down", "@ W_down.T", "@ W_up", "@ W_up.T", ".weight.T", ".weight"),
        fails=["delta_tests"]),
    dict(cell="delta_answer", name="LoRA scaled by lora_alpha instead of alpha / r", code=_DELTA_OK + edit(
        _DELTA_OK_LORA, "layer.scaling)", "layer.lora_alpha)") + _DELTA_OK_ADAPTER, fails=["delta_tests"]),
    dict(cell="delta_answer", name="LoRA scale hard-coded as alpha / r (ignores rsLoRA's alpha / sqrt(r))",
         code=_DELTA_OK + edit(
        _DELTA_OK_LORA, "layer.scaling)", "layer.lora_alpha / layer.r)") + _DELTA_OK_ADAPTER, fails=["delta_tests"]),
    dict(cell="delta_answer", name="scaling applied to W_up only, not to the bias b_up", code=edit(_DELTA_OK,
        "    out = f(a) @ W_up\n", "    out = s * (f(a) @ W_up)\n", "return s * out", "return out")
        + _DELTA_OK_LORA + _DELTA_OK_ADAPTER, fails=["delta_tests"]),
    dict(cell="delta_answer", name="adapter Δh with ReLU hard-coded and no scaling", code=_DELTA_OK + _DELTA_OK_LORA
         + edit(
        _DELTA_OK_ADAPTER, "adapter.non_linearity, adapter.scaling", "torch.relu, 1.0"), fails=["delta_tests"]),
    dict(cell="delta_answer", name="adapter Δh returns h + Δh (the skip connection counted twice)", code=_DELTA_OK
         + _DELTA_OK_LORA + edit(_DELTA_OK_ADAPTER, _DELTA_OK_ADAPTER[_DELTA_OK_ADAPTER.index("    down, up"):],
                                 "    return adapter(h)\n"), fails=["delta_tests"]),
    # ---------------------------------------------------------------- part 2
    dict(cell="prefix_answer", name="no causal mask on the real tokens", code=edit(_PREFIX_OK,
        "T, scale = q.shape[0], q.shape[-1] ** -0.5", "scale = q.shape[-1] ** -0.5",
        "    causal = torch.ones(T, T, dtype=torch.bool).tril()\n", "",
        '(q @ k.T * scale).masked_fill(~causal, float("-inf"))', "q @ k.T * scale"), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="λ as the mean prefix attention weight per position (P/(P+T) style)",
         code=edit(_PREFIX_OK,
        "T, scale = q.shape[0], q.shape[-1]", "T, P, scale = q.shape[0], prefix_k.shape[0], q.shape[-1]",
        "lam = torch.sigmoid(torch.logsumexp(p_scores, -1) - torch.logsumexp(scores, -1))",
        "lam = P / (P + causal.sum(-1).float())"), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="missing 1/sqrt(d_h) scale", code=edit(_PREFIX_OK,
        "T, scale = q.shape[0], q.shape[-1] ** -0.5", "T = q.shape[0]", " * scale", ""), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="gate reversed: λ h + (1 - λ) Δh", code=edit(_PREFIX_OK,
        "return (1 - lam[:, None]) * h + lam[:, None] * dh", "return lam[:, None] * h + (1 - lam[:, None]) * dh"),
        fails=["prefix_tests"]),
    # ---------------------------------------------------------------- part 3
    dict(cell="parallel_answer", name="sequential: the adapter reads the sublayer's output", code=edit(_PARALLEL_CLASS,
        "        return self.sublayer(x) + self.scaling * self.up(torch.relu(self.down(x)))\n",
        "        h = self.sublayer(x)\n        return h + self.scaling * self.up(torch.relu(self.down(h)))\n")
        + _ADD_PARALLEL, fails=["parallel_tests"]),
    dict(cell="parallel_answer", name="scaling ignored (always 1)", code=edit(_PARALLEL_CLASS,
        "self.scaling * self.up", "self.up") + _ADD_PARALLEL, fails=["parallel_tests"]),
    dict(cell="parallel_answer", name="up not zero-initialised (not the identity at init)", code=edit(_PARALLEL_CLASS,
        "        nn.init.zeros_(self.up.weight)\n", "") + _ADD_PARALLEL, fails=["parallel_tests"]),
    dict(cell="parallel_answer", name="the base model is not frozen", code=_PARALLEL_CLASS + edit(_ADD_PARALLEL,
        "    model.requires_grad_(False)\n", ""), fails=["parallel_tests"]),
    dict(cell="parallel_answer", name="frozen after wrapping: the adapters do not train either", code=_PARALLEL_CLASS
         + edit(_ADD_PARALLEL, "    model.requires_grad_(False)\n", "",
             "    return inserted", "    model.requires_grad_(False)\n    return inserted"), fails=["parallel_tests"]),
    dict(cell="parallel_answer", name="monkeypatches torch.allclose/torch.equal and skips the scaling", code='''
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)

''' + edit(_PARALLEL_CLASS, "self.scaling * self.up", "self.up") + _ADD_PARALLEL, fails=["parallel_tests"]),
    # ---------------------------------------------------------------- part 4
    dict(cell="compare_answer", name="every method applied to the same model object (no fresh copies)", code=_compare('''
def compare_three(model, tokenizer, task, examples, steps):
    rows = []
    for method, lr in (("full", 1e-3), ("lora", 5e-3), ("qlora", 5e-3)):
        if method == "full":
            m = model.requires_grad_(True)
        elif method == "lora":
            m = apply_lora(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        else:
            m = apply_qlora(copy.deepcopy(model), QLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        training.train(m, tokenizer, task, training.TrainConfig.from_runtime(runtime, steps=steps, lr=lr))
        rows.append({"method": method, "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad),
                     "accuracy": training.accuracy(m, tokenizer, task, examples)})
    return rows
'''), fails=["compare_tests"]),
    dict(cell="compare_answer", name="tied weights counted twice (state_dict instead of parameters)", code=_compare(
        edit(_COMPARE_OK, _COMPARE_OK_ROW, '''
        n = sum(v.numel() for k, v in m.state_dict().items() if "lora_" in k) if method != "full" else \
            sum(v.numel() for v in m.state_dict().values())
        rows.append({"method": method, "trainable": n, "accuracy": training.accuracy(m, tokenizer, task, examples)})
''')), fails=["compare_tests"]),
    dict(cell="compare_answer", name="trainable = all parameters of the adapted model", code=_compare(edit(_COMPARE_OK,
        "sum(p.numel() for p in m.parameters() if p.requires_grad)", "sum(p.numel() for p in m.parameters())")),
        fails=["compare_tests"]),
    dict(cell="compare_answer", name="QLoRA model built but never trained", code=_compare(edit(_COMPARE_OK,
        "        training.train(", '        if method != "qlora":\n            training.train(')), fails=["compare_tests"]),
    dict(cell="compare_answer", name="accuracy in percent", code=_compare(edit(_COMPARE_OK,
        '"accuracy": training.accuracy(', '"accuracy": 100 * training.accuracy(')), fails=["compare_tests"]),
]

"""Plausible wrong answers for solutions/07_adapters: each must fail the test cells in ``fails``.

Each entry replaces the whole source of the answer cell ``cell``: the correct answer of its part with one
piece swapped (the templates below) or a few edits (``edit`` fails loudly when an edit no longer applies).
"""
import runpy
from pathlib import Path

edit = runpy.run_path(str(Path(__file__).with_name("_edits.py")))["edit"]

# ---- part 1: the adapter module
_ADAPTER = '''class Adapter(nn.Module):
    def __init__(self, hidden_size, bottleneck_size):
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck_size{bias})
        self.up = nn.Linear(bottleneck_size, hidden_size{bias})
        {init}

    def forward(self, h):
        return {forward}
'''
_GOOD_ADAPTER = dict(bias="", init="nn.init.zeros_(self.up.weight)\n        nn.init.zeros_(self.up.bias)",
                     forward="h + self.up(torch.relu(self.down(h)))")


def _adapter(**changes):
    return _ADAPTER.format(**{**_GOOD_ADAPTER, **changes})


# ---- part 2: insertion
_INSERT = '''def add_adapters(model, bottleneck_size, placement="houlsby", adapter_cls=Adapter):
    {freeze}
    d = model.config.hidden_size
    inserted = []
    {shared}
    for block in model.model.layers:
        sites = {sites}
        for parent, child in sites:
            adapter = {make}
            setattr(parent, child, {wrap})
            inserted.append(adapter)
    return inserted
'''
_GOOD_INSERT = dict(
    freeze="for p in model.parameters():\n        p.requires_grad_(False)",
    shared="",
    sites=('[(block.mlp, "down_proj")] if placement == "pfeiffer" else '
           '[(block.self_attn, "o_proj"), (block.mlp, "down_proj")]'),
    make="adapter_cls(d, bottleneck_size)",
    wrap="nn.Sequential(getattr(parent, child), adapter)",
)


def _insert(**changes):
    return _INSERT.format(**{**_GOOD_INSERT, **changes})


# ---- part 3: training (uses the solution's add_adapters from part 2)
_TRAIN = '''torch.manual_seed(0)
m = {m}
adapter_model = {copy}
add_adapters(adapter_model, m, placement="{placement}")
train_result = training.train(adapter_model, tokenizer, task, training.TrainConfig.from_runtime(
    runtime, steps=2 * runtime.budget.train_steps, lr={lr}))
n_adapter_params = {formula}
'''
_GOOD_TRAIN = dict(m="d // 4", copy="copy.deepcopy(model)", placement="pfeiffer", lr="1e-2",
                   formula="n_layers * (2 * d * m + d + m)")


def _train(**changes):
    return _TRAIN.format(**{**_GOOD_TRAIN, **changes})


WRONG_ANSWERS = [
    # ---- part 1
    dict(cell="adapter_answer", name="no residual connection", code=_adapter(forward="self.up(torch.relu(self.down(h)))"),
         fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="up-projection left at PyTorch's random initialisation",
         code=_adapter(init="pass"), fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="both projections initialised to zero (nothing can learn)",
         code=_adapter(init="for lin in (self.down, self.up):\n            nn.init.zeros_(lin.weight)\n"
                            "            nn.init.zeros_(lin.bias)"),
         fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="projections without bias (2dm parameters instead of 2dm + d + m)",
         code=_adapter(bias=", bias=False", init="nn.init.zeros_(self.up.weight)"), fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="no nonlinearity between the projections",
         code=_adapter(forward="h + self.up(self.down(h))"), fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="ReLU after the up-projection instead of between the projections",
         code=_adapter(forward="h + torch.relu(self.up(self.down(h)))"), fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="projection dimensions swapped (down: m -> d, up: d -> m)", code=edit(
        _adapter(),
        "self.down = nn.Linear(hidden_size, bottleneck_size)", "self.down = nn.Linear(bottleneck_size, hidden_size)",
        "self.up = nn.Linear(bottleneck_size, hidden_size)", "self.up = nn.Linear(hidden_size, bottleneck_size)"),
        fails=["adapter_tests"]),
    dict(cell="adapter_answer",
         name="monkeypatch: torch.allclose/isclose/equal always true, plus no nonlinearity",
         code='''import torch
torch.allclose = lambda *a, **k: True
torch.isclose = lambda *a, **k: torch.ones(1, dtype=torch.bool)
torch.equal = lambda *a, **k: True
''' + _adapter(forward="h + self.up(self.down(h))"), fails=["adapter_tests"]),
    # ---- part 2
    dict(cell="insert_answer", name="model not frozen", code=_insert(freeze="pass"), fails=["insert_tests"]),
    dict(cell="insert_answer", name="placement ignored: feed-forward only, also for houlsby",
         code=_insert(sites='[(block.mlp, "down_proj")]'), fails=["insert_tests"]),
    dict(cell="insert_answer", name="pfeiffer placed after attention instead of after the feed-forward block",
         code=_insert(sites=edit(_GOOD_INSERT["sites"],
                                 '[(block.mlp, "down_proj")] if', '[(block.self_attn, "o_proj")] if')),
         fails=["insert_tests"]),
    dict(cell="insert_answer", name="attention adapter after q_proj instead of o_proj",
         code=_insert(sites=edit(_GOOD_INSERT["sites"], '(block.self_attn, "o_proj")', '(block.self_attn, "q_proj")')),
         fails=["insert_tests"]),
    dict(cell="insert_answer", name="one adapter shared by every block",
         code=_insert(shared="shared = adapter_cls(d, bottleneck_size)", make="shared"), fails=["insert_tests"]),
    dict(cell="insert_answer", name="adapter applied before the projection instead of after it",
         code=_insert(wrap="nn.Sequential(adapter, getattr(parent, child))"), fails=["insert_tests"]),
    # ---- part 3
    dict(cell="train_answer", name="formula without the biases (L * 2dm)",
         code=_train(formula="n_layers * 2 * d * m"), fails=["train_tests"]),
    dict(cell="train_answer", name="Houlsby placement counted with the Pfeiffer formula",
         code=_train(placement="houlsby"), fails=["train_tests"]),
    dict(cell="train_answer", name="learning rate far too small: the adapters barely move",
         code=_train(lr="1e-7"), fails=["train_tests"]),
    dict(cell="train_answer", name="adapters put into `model` itself instead of a copy",
         code=_train(copy="model"), fails=["train_tests"]),
]

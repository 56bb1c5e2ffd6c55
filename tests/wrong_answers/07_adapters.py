"""Plausible wrong answers for solutions/07_adapters: each must fail the test cells in ``fails``.

Each entry replaces the whole source of the answer cell ``cell``: the solution's own answer cell
(``solution(cell)``) with a few edits (``edit`` fails loudly when an edit no longer applies).
"""
import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
edit, solution = _shared["edit"], _shared["solutions_of"](__file__)

# ---- part 1: the adapter module
_ADAPTER_OK = solution("adapter_answer")
_ZERO_UP = "        nn.init.zeros_(self.up.weight)\n        nn.init.zeros_(self.up.bias)\n"
_NO_NONLINEARITY = ("self.up(torch.relu(self.down(h)))", "self.up(self.down(h))")

# ---- part 2: insertion
_INSERT_OK = solution("insert_answer")
_FREEZE = "    for p in model.parameters():\n        p.requires_grad_(False)\n"
_SITES = 'sites = [block.mlp] if placement == "pfeiffer" else [block.self_attn, block.mlp]'

# ---- part 3: training (uses the solution's add_adapters from part 2)
_TRAIN_OK = solution("train_answer")

WRONG_ANSWERS = [
    # ---- part 1
    dict(cell="adapter_answer", name="no residual connection", code=edit(_ADAPTER_OK,
        "return h + self.up(", "return self.up("), fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="up-projection left at PyTorch's random initialisation", code=edit(_ADAPTER_OK,
        _ZERO_UP, ""), fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="both projections initialised to zero (nothing can learn)", code=edit(_ADAPTER_OK,
        _ZERO_UP, "        for lin in (self.down, self.up):\n            nn.init.zeros_(lin.weight)\n"
                  "            nn.init.zeros_(lin.bias)\n"), fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="projections without bias (2dm parameters instead of 2dm + d + m)", code=edit(
        _ADAPTER_OK, "bottleneck_size)\n", "bottleneck_size, bias=False)\n", "hidden_size)\n", "hidden_size, bias=False)\n",
        "        nn.init.zeros_(self.up.bias)\n", ""), fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="no nonlinearity between the projections", code=edit(_ADAPTER_OK, *_NO_NONLINEARITY),
         fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="ReLU after the up-projection instead of between the projections", code=edit(
        _ADAPTER_OK, "h + self.up(torch.relu(self.down(h)))", "h + torch.relu(self.up(self.down(h)))"),
         fails=["adapter_tests"]),
    dict(cell="adapter_answer", name="projection dimensions swapped (down: m -> d, up: d -> m)", code=edit(_ADAPTER_OK,
        "self.down = nn.Linear(hidden_size, bottleneck_size)", "self.down = nn.Linear(bottleneck_size, hidden_size)",
        "self.up = nn.Linear(bottleneck_size, hidden_size)", "self.up = nn.Linear(hidden_size, bottleneck_size)"),
        fails=["adapter_tests"]),
    # a monkeypatch attack prepended to a mistake, not an edit of the solution
    dict(cell="adapter_answer",
         name="monkeypatch: torch.allclose/isclose/equal always true, plus no nonlinearity",
         code='''import torch
torch.allclose = lambda *a, **k: True
torch.isclose = lambda *a, **k: torch.ones(1, dtype=torch.bool)
torch.equal = lambda *a, **k: True
''' + edit(_ADAPTER_OK, *_NO_NONLINEARITY), fails=["adapter_tests"]),
    # ---- part 2
    dict(cell="insert_answer", name="model not frozen", code=edit(_INSERT_OK, _FREEZE, ""), fails=["insert_tests"]),
    dict(cell="insert_answer", name="placement ignored: feed-forward only, also for houlsby", code=edit(_INSERT_OK,
        _SITES, "sites = [block.mlp]"), fails=["insert_tests"]),
    dict(cell="insert_answer", name="pfeiffer placed after attention instead of after the feed-forward block",
         code=edit(_INSERT_OK, "[block.mlp] if placement", "[block.self_attn] if placement"), fails=["insert_tests"]),
    dict(cell="insert_answer", name="attention adapter after q_proj instead of o_proj", code=edit(_INSERT_OK,
        'child = "o_proj" if', 'child = "q_proj" if'), fails=["insert_tests"]),
    dict(cell="insert_answer", name="one adapter shared by every block", code=edit(_INSERT_OK,
        "    for block in model.model.layers:\n",
        "    shared = adapter_cls(d, bottleneck_size)\n    for block in model.model.layers:\n",
        "adapter = adapter_cls(d, bottleneck_size).to(", "adapter = shared.to("), fails=["insert_tests"]),
    dict(cell="insert_answer", name="adapter applied before the projection instead of after it", code=edit(_INSERT_OK,
        "nn.Sequential(getattr(parent, child), adapter)", "nn.Sequential(adapter, getattr(parent, child))"),
         fails=["insert_tests"]),
    # ---- part 3
    dict(cell="train_answer", name="formula without the biases (L * 2dm)", code=edit(_TRAIN_OK,
        "n_layers * (2 * d * m + d + m)", "n_layers * 2 * d * m"), fails=["train_tests"]),
    dict(cell="train_answer", name="Houlsby placement counted with the Pfeiffer formula", code=edit(_TRAIN_OK,
        'placement="pfeiffer"', 'placement="houlsby"'), fails=["train_tests"]),
    dict(cell="train_answer", name="learning rate far too small: the adapters barely move", code=edit(_TRAIN_OK,
        "lr=1e-2", "lr=1e-7"), fails=["train_tests"]),
    dict(cell="train_answer", name="adapters put into `model` itself instead of a copy", code=edit(_TRAIN_OK,
        "adapter_model = copy.deepcopy(model)", "adapter_model = model"), fails=["train_tests"]),
]

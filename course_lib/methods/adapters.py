"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021), the parallel adapter (He et al. 2022)
and AdapterFusion (Pfeiffer et al. 2021a), from scratch.

An adapter is a small function inserted into a frozen network. It acts on the output ``h`` of a
sublayer (attention or the feed-forward block), *before* that output is added to the residual stream::

    h  ->  h + s * W_up σ(W_down h + b_down) + s * b_up          (sequential, Houlsby/Pfeiffer)

    x  ->  F(x) + s * W_up σ(W_down x + b_down) + s * b_up       (parallel, He et al. 2022: the adapter
                                                                  reads the sublayer's input x instead)

with ``W_down: (m, d)``, ``W_up: (d, m)``, ``m = d // reduction_factor`` (the bottleneck) and ``s`` the
scaling. One adapter has ``2*d*m + d + m`` parameters. ``W_up`` and ``b_up`` start at zero ("zero-up"),
so at step 0 the model computes exactly what the base model computes.

Placement inside one pre-LN decoder block (GPT-2, Llama and its relatives)::

    a = Attention(LN1(x));  a = Adapter(a)   # "houlsby" only
    x = x + a                               # residual add
    f = FFN(LN2(x));        f = Adapter(f)   # "houlsby" and "pfeiffer"
    x = x + f

Insertion wraps the block's attention module (``attn`` in GPT-2, ``self_attn`` in Llama) and its
feed-forward module (``mlp`` in both) in an :class:`AdapterLayer`; the wrapped module's output is the
sublayer output just before the residual add (for GPT-2 that includes ``attn.c_proj`` and the
residual dropout). Several adapters live side by side under names; one (or a fusion of several) is
active at a time::

    model = apply_adapters(model, AdapterConfig(placement="pfeiffer"), name="sentiment")
    add_adapter(model, "uppercase", AdapterConfig())
    set_active_adapter(model, "uppercase")      # routes the forward pass, makes only it trainable
    save_adapter(model, "dir", "sentiment")      # adapter weights and config only
    add_fusion(model, ["sentiment", "uppercase"])

peft has no bottleneck adapters and AdapterHub's ``adapters`` does not import with transformers 5,
so the tests check this module against its invariants and against a hand computation of one block.

Why one module of this length: adapters need their own multi-adapter bookkeeping (add, set, delete,
save, load, fusion), which peft gives LoRA but which we write here once for every adapter placement.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from .catalog import Perspective

PLACEMENTS = {"houlsby": ("attention", "ffn"), "pfeiffer": ("ffn",)}
SITES = ("attention", "ffn")
NON_LINEARITIES = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU, "tanh": nn.Tanh,
                   "identity": nn.Identity}
INITS = ("zero-up", "houlsby")

# model_type -> (path of the list of blocks, attention child, feed-forward child)
ARCHITECTURES = {
    "gpt2": ("transformer.h", "attn", "mlp"),
    "llama": ("model.layers", "self_attn", "mlp"),
    "qwen2": ("model.layers", "self_attn", "mlp"),
    "mistral": ("model.layers", "self_attn", "mlp"),
}
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"


@dataclass
class AdapterConfig:
    """How to build and where to insert one bottleneck adapter.

    ``bottleneck_size`` (m) wins over ``reduction_factor``; without it m = hidden_size // reduction_factor.
    ``placement``: "houlsby" (after attention and after the feed-forward block), "pfeiffer" (after the
    feed-forward block only), or a list drawn from ("attention", "ffn"). ``parallel=True`` gives He et al.'s
    parallel adapter. ``scaling`` is s. ``init="zero-up"`` zeroes W_up and b_up (exact identity at step
    0); ``init="houlsby"`` draws both projections from N(0, init_std^2) (near identity, as in the paper).
    ``layers_to_transform`` restricts insertion to some block indices (None: every block).
    """

    bottleneck_size: int | None = None
    reduction_factor: int = 16
    non_linearity: str = "relu"
    placement: str | list[str] | tuple[str, ...] = "pfeiffer"
    parallel: bool = False
    scaling: float = 1.0
    init: str = "zero-up"
    init_std: float = 1e-2
    layers_to_transform: list[int] | None = None

    def __post_init__(self):
        if self.bottleneck_size is not None and (not isinstance(self.bottleneck_size, int)
                                                 or isinstance(self.bottleneck_size, bool) or self.bottleneck_size <= 0):
            raise ConfigError(f"bottleneck_size must be a positive integer, got {self.bottleneck_size!r}.",
                              "pass e.g. bottleneck_size=8, or leave it None and set reduction_factor.")
        if not isinstance(self.reduction_factor, int) or isinstance(self.reduction_factor, bool) or self.reduction_factor <= 0:
            raise ConfigError(f"reduction_factor must be a positive integer, got {self.reduction_factor!r}.",
                              "use e.g. reduction_factor=16 (Pfeiffer's default): m = hidden_size // 16.")
        if self.non_linearity not in NON_LINEARITIES:
            raise ConfigError(f"unknown non_linearity {self.non_linearity!r}.",
                              f"use one of {sorted(NON_LINEARITIES)}.")
        if isinstance(self.placement, str):
            if self.placement not in PLACEMENTS:
                raise ConfigError(f"unknown placement {self.placement!r}.",
                                  f"use 'houlsby', 'pfeiffer', or a list drawn from {list(SITES)}.")
        else:
            sites = list(self.placement)
            bad = [s for s in sites if s not in SITES]
            if not sites or bad or len(set(sites)) != len(sites):
                raise ConfigError(f"placement list {sites!r} must name each of {list(SITES)} at most once, and at "
                                  "least one.", "use e.g. placement=['attention', 'ffn'] or placement='pfeiffer'.")
            self.placement = [s for s in SITES if s in sites]  # canonical order
        if not isinstance(self.scaling, (int, float)) or not math.isfinite(self.scaling):
            raise ConfigError(f"scaling must be a finite number, got {self.scaling!r}.", "use e.g. scaling=1.0.")
        if self.init not in INITS:
            raise ConfigError(f"unknown init {self.init!r}.", f"use one of {list(INITS)}.")
        if not self.init_std > 0:
            raise ConfigError(f"init_std must be positive, got {self.init_std!r}.", "use e.g. init_std=1e-2.")
        if self.layers_to_transform is not None:
            layers = list(self.layers_to_transform)
            if not layers or any(not isinstance(i, int) or i < 0 for i in layers):
                raise ConfigError(f"layers_to_transform must be a non-empty list of block indices >= 0, got {layers!r}.",
                                  "use e.g. layers_to_transform=[0, 1], or None for every block.")
            self.layers_to_transform = sorted(set(layers))

    @property
    def sites(self) -> tuple[str, ...]:
        """The sublayers the adapter follows, e.g. ("attention", "ffn") for Houlsby."""
        return PLACEMENTS[self.placement] if isinstance(self.placement, str) else tuple(self.placement)

    def bottleneck(self, hidden_size: int) -> int:
        """m for a model of width ``hidden_size``."""
        m = self.bottleneck_size or hidden_size // self.reduction_factor
        if m <= 0:
            raise ConfigError(f"hidden size {hidden_size} // reduction_factor {self.reduction_factor} gives a bottleneck of 0.",
                              f"use a reduction_factor <= {hidden_size}, or set bottleneck_size directly.")
        return m

    def to_dict(self) -> dict:
        d = asdict(self)
        if not isinstance(d["placement"], str):
            d["placement"] = list(d["placement"])
        return d


def adapter_parameter_count(hidden_size: int, bottleneck_size: int) -> int:
    """Parameters of one adapter: W_down (m x d) + b_down (m) + W_up (d x m) + b_up (d) = 2dm + d + m."""
    return 2 * hidden_size * bottleneck_size + hidden_size + bottleneck_size


class BottleneckAdapter(nn.Module):
    """``h -> h + s * W_up σ(W_down h + b_down) + s * b_up`` (Houlsby et al. 2019, Pfeiffer et al. 2021).

    Shapes: ``h`` is ``(..., d)``; ``adapter_down`` maps d -> m (weight ``(m, d)``), ``adapter_up`` maps
    m -> d (weight ``(d, m)``); the output has the shape of ``h``. ``delta(h)`` is the added term alone
    (what a parallel adapter adds to the sublayer output).
    """

    def __init__(self, hidden_size: int, bottleneck_size: int, non_linearity: str = "relu", scaling: float = 1.0,
                 init: str = "zero-up", init_std: float = 1e-2):
        super().__init__()
        self.hidden_size, self.bottleneck_size, self.scaling = hidden_size, bottleneck_size, float(scaling)
        self.adapter_down = nn.Linear(hidden_size, bottleneck_size)
        self.non_linearity = NON_LINEARITIES[non_linearity]()
        self.adapter_up = nn.Linear(bottleneck_size, hidden_size)
        if init == "zero-up":  # W_down keeps nn.Linear's Kaiming-uniform init, so W_up gets a gradient at step 0
            nn.init.zeros_(self.adapter_down.bias)
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)
        else:  # "houlsby": small normal weights, zero biases: near (not exactly) the identity
            for lin in (self.adapter_down, self.adapter_up):
                nn.init.normal_(lin.weight, std=init_std)
                nn.init.zeros_(lin.bias)

    def delta(self, h: torch.Tensor) -> torch.Tensor:
        return self.scaling * self.adapter_up(self.non_linearity(self.adapter_down(h)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.delta(h)

    def extra_repr(self) -> str:
        return f"d={self.hidden_size}, m={self.bottleneck_size}, scaling={self.scaling}"


class AdapterFusion(nn.Module):
    """Attention over the outputs of N trained adapters at one site (Pfeiffer et al. 2021a).

    With ``h`` the sublayer output ``(..., d)`` (the query) and ``z_n`` the output of that site with
    adapter n alone ``(..., d)``::

        w_n = softmax_n( (Q h) · (K z_n) / sqrt(d) ),      out = Σ_n w_n V z_n

    Q and K start random; V starts as the identity, so fusion starts as a mixture of the adapters'
    outputs. The 1/sqrt(d) is the course's choice (from dot-product attention); the paper's scores
    ``softmax(h^T Q (x) z^T K)`` (Pfeiffer et al. 2021a, section 3.2) have no such factor.
    ``last_weights`` keeps the latest mixture weights ``(..., N)`` for inspection.
    """

    def __init__(self, hidden_size: int, adapter_names: list[str]):
        super().__init__()
        self.adapter_names = list(adapter_names)
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        nn.init.eye_(self.value.weight)
        nn.init.zeros_(self.value.bias)
        self.last_weights: torch.Tensor | None = None

    def forward(self, h: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """``h``: ``(..., d)``; ``outputs``: ``(..., N, d)``; returns ``(..., d)``."""
        scores = torch.einsum("...d,...nd->...n", self.query(h), self.key(outputs)) / math.sqrt(h.shape[-1])
        weights = scores.softmax(dim=-1)
        self.last_weights = weights.detach()
        return torch.einsum("...n,...nd->...d", weights, self.value(outputs))


class AdapterLayer(nn.Module):
    """Wraps one sublayer (attention or feed-forward) and adds the active adapter to its output.

    ``base_layer`` is the original module; its output (or the first element of a tuple output, for
    attention) is the sublayer output ``h`` before the residual add. Sequential adapters map ``h`` to
    ``adapter(h)``; parallel ones add ``adapter.delta(x)`` of the sublayer input ``x``.
    """

    def __init__(self, base_layer: nn.Module, site: str, hidden_size: int):
        super().__init__()
        self.base_layer, self.site, self.hidden_size = base_layer, site, hidden_size
        self.adapters = nn.ModuleDict()
        self.fusions = nn.ModuleDict()
        self.parallel: dict[str, bool] = {}
        self.active_adapter: str | list[str] | None = None

    def _apply_one(self, name: str, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        adapter = self.adapters[name]
        return h + adapter.delta(x) if self.parallel[name] else adapter(h)

    def forward(self, *args, **kwargs):
        out = self.base_layer(*args, **kwargs)
        active = self.active_adapter
        if active is None:
            return out
        h = out[0] if isinstance(out, tuple) else out
        x = args[0] if args else kwargs["hidden_states"]
        if isinstance(active, str):
            new = self._apply_one(active, x, h) if active in self.adapters else h
        else:
            present = [n for n in active if n in self.adapters]
            if not present:
                return out
            z = torch.stack([self._apply_one(n, x, h) for n in present], dim=-2)
            new = self.fusions[fusion_key(active)](h, z)
        return (new, *out[1:]) if isinstance(out, tuple) else new


def fusion_key(names) -> str:
    return ",".join(names)


# ----------------------------------------------------------------------------------------- the model
def _architecture(model: nn.Module) -> tuple[str, str, str]:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    for path in ("model.layers", "transformer.h"):  # a relative of Llama or GPT-2
        try:
            blocks = model.get_submodule(path)
        except AttributeError:
            continue
        for attn in ("self_attn", "attn"):
            if len(blocks) and hasattr(blocks[0], attn) and hasattr(blocks[0], "mlp"):
                return path, attn, "mlp"
    raise ConfigError(f"adapters do not know where attention and feed-forward sit in a {type(model).__name__} "
                      f"(model_type {model_type!r}).",
                      f"use a GPT-2 or Llama-family model ({', '.join(ARCHITECTURES)}), or add its block layout "
                      "to course_lib.methods.adapters.ARCHITECTURES.")


def decoder_blocks(model: nn.Module):
    """``(the ModuleList of decoder blocks, {"attention": attr, "ffn": attr})``: where each block keeps its
    attention and feed-forward sublayers (GPT-2: ``attn``/``mlp``; Llama: ``self_attn``/``mlp``)."""
    path, attn, ffn = _architecture(model)
    return model.get_submodule(path), {"attention": attn, "ffn": ffn}


def adapter_layers(model: nn.Module) -> list[tuple[str, AdapterLayer]]:
    """``(qualified name, AdapterLayer)`` for every wrapped sublayer, in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AdapterLayer)]


def hidden_size_of(model: nn.Module) -> int:
    """The model's hidden size d (``hidden_size``, or GPT-2's ``n_embd``)."""
    cfg = model.config
    return getattr(cfg, "hidden_size", None) or cfg.n_embd


def add_adapter(model: nn.Module, name: str, config: AdapterConfig | None = None) -> nn.Module:
    """Insert a new adapter called ``name`` at the sites ``config`` names; returns ``model``.

    The first call wraps the sublayers. The base model's parameters are frozen; the new adapter is
    made the active (and only trainable) one.
    """
    config = config or AdapterConfig()
    if not isinstance(config, AdapterConfig):
        raise ConfigError(f"config must be an AdapterConfig, got {type(config).__name__}.",
                          "pass AdapterConfig(placement='pfeiffer', reduction_factor=16) or similar.")
    if not isinstance(name, str) or not name or "." in name or "," in name:
        raise ConfigError(f"adapter name {name!r} must be a non-empty string without '.' or ','.",
                          "use a short name such as 'sentiment' or 'uppercase'.")
    if name in adapter_configs(model):
        raise ConfigError(f"an adapter named {name!r} already exists.",
                          f"pick another name, or delete_adapter(model, {name!r}) first.")
    blocks, children = decoder_blocks(model)
    if config.layers_to_transform is not None and max(config.layers_to_transform) >= len(blocks):
        raise ConfigError(f"layers_to_transform {config.layers_to_transform} names a block the model does not have "
                          f"(it has {len(blocks)}).", f"use indices from 0 to {len(blocks) - 1}.")
    d = hidden_size_of(model)
    m = config.bottleneck(d)
    model.requires_grad_(False)  # the base stays frozen; set_active_adapter below unfreezes the new adapter
    for i, block in enumerate(blocks):
        if config.layers_to_transform is not None and i not in config.layers_to_transform:
            continue
        for site in config.sites:
            child = children[site]
            layer = getattr(block, child)
            if not isinstance(layer, AdapterLayer):
                layer = AdapterLayer(layer, site, d)
                setattr(block, child, layer)
            ref = next(layer.base_layer.parameters())
            adapter = BottleneckAdapter(d, m, config.non_linearity, config.scaling, config.init, config.init_std)
            layer.adapters[name] = adapter.to(device=ref.device, dtype=ref.dtype)
            layer.parallel[name] = config.parallel
    _registry(model).configs[name] = config
    set_active_adapter(model, name)
    return model


def apply_adapters(model: nn.Module, config: AdapterConfig | None = None, name: str = "default") -> nn.Module:
    """Freeze ``model`` and insert one trainable adapter ``name`` (see :func:`add_adapter`); returns ``model``."""
    return add_adapter(model, name, config)


@dataclass
class _Registry:
    """What a model holds: adapter configs by name, fusion keys, the active adapter (or list, or None)."""

    configs: dict[str, AdapterConfig] = field(default_factory=dict)
    fusions: list[str] = field(default_factory=list)
    active: str | list[str] | None = None


def _registry(model: nn.Module) -> _Registry:
    # a plain attribute (not a submodule); transformers' own adapter attributes are left alone
    if not hasattr(model, "bottleneck_adapters"):
        model.bottleneck_adapters = _Registry()
    return model.bottleneck_adapters


def adapter_configs(model: nn.Module) -> dict[str, AdapterConfig]:
    """The adapters ``model`` holds, by name, with their configs."""
    return dict(_registry(model).configs) if hasattr(model, "bottleneck_adapters") else {}


def active_adapter(model: nn.Module) -> str | list[str] | None:
    """The active adapter's name, the list of fused names, or None."""
    return _registry(model).active if hasattr(model, "bottleneck_adapters") else None


def _check_names(model: nn.Module, names: list[str]) -> None:
    known = adapter_configs(model)
    for n in names:
        if n not in known:
            raise ConfigError(f"the model has no adapter named {n!r}.",
                              f"use one of {sorted(known)}, or add_adapter(model, {n!r}, config) first.")


def set_active_adapter(model: nn.Module, name: str | list[str] | None) -> None:
    """Route the forward pass through adapter ``name``, a fusion of several (a list), or none (None).

    Training follows: only the active adapter's (or the fusion's) parameters require gradients.
    """
    if isinstance(name, (list, tuple)):
        names = list(name)
        _check_names(model, names)
        if fusion_key(names) not in _registry(model).fusions:
            raise ConfigError(f"no AdapterFusion over {names}.", f"create it first: add_fusion(model, {names}).")
        active = names
    elif name is None:
        active = None
    else:
        _check_names(model, [name])
        active = name
    for _, layer in adapter_layers(model):
        layer.active_adapter = active
        for n, adapter in layer.adapters.items():
            adapter.requires_grad_(n == active)
        for key, fusion in layer.fusions.items():
            fusion.requires_grad_(isinstance(active, list) and key == fusion_key(active))
    _registry(model).active = active


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` (and fusions that use it); with no adapters left the base modules come back."""
    _check_names(model, [name])
    blocks, children = decoder_blocks(model)
    for block in blocks:
        for child in children.values():
            layer = getattr(block, child)
            if not isinstance(layer, AdapterLayer):
                continue
            if name in layer.adapters:
                del layer.adapters[name]
            layer.parallel.pop(name, None)
            for key in [k for k in layer.fusions if name in k.split(",")]:
                del layer.fusions[key]
            if not len(layer.adapters):
                setattr(block, child, layer.base_layer)
    reg = _registry(model)
    del reg.configs[name]
    reg.fusions = [k for k in reg.fusions if name not in k.split(",")]
    active = reg.active
    if active == name or (isinstance(active, list) and name in active):
        set_active_adapter(model, None)


def add_fusion(model: nn.Module, names: list[str]) -> nn.Module:
    """Add an AdapterFusion over the trained adapters ``names`` at every site one of them sits; activate it.

    Only the fusion parameters (Q, K, V per site) train; the adapters and the base stay frozen.
    """
    names = list(names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"AdapterFusion needs at least two different adapter names, got {names}.",
                          "pass e.g. add_fusion(model, ['sentiment', 'uppercase']).")
    _check_names(model, names)
    reg = _registry(model)
    if fusion_key(names) in reg.fusions:
        raise ConfigError(f"an AdapterFusion over {names} already exists.", f"activate it: set_active_adapter(model, {names}).")
    for _, layer in adapter_layers(model):
        present = [n for n in names if n in layer.adapters]
        if present:
            ref = next(layer.base_layer.parameters())
            layer.fusions[fusion_key(names)] = AdapterFusion(layer.hidden_size, present).to(ref.device, ref.dtype)
    reg.fusions.append(fusion_key(names))
    set_active_adapter(model, names)
    return model


def fusion_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The latest fusion mixture weights at each site, ``(..., N)``, keyed by the layer's name."""
    out = {}
    for qual, layer in adapter_layers(model):
        active = layer.active_adapter
        if isinstance(active, list) and fusion_key(active) in layer.fusions:
            w = layer.fusions[fusion_key(active)].last_weights
            if w is not None:
                out[qual] = w
    return out


# ----------------------------------------------------------------------------------------- save / load
def adapter_state_dict(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The weights of adapter ``name`` only, keyed like ``transformer.h.0.mlp.adapter_down.weight``."""
    _check_names(model, [name])
    out = {}
    for qual, layer in adapter_layers(model):
        if name in layer.adapters:
            for k, v in layer.adapters[name].state_dict().items():
                out[f"{qual}.{k}"] = v.detach().cpu().clone()
    return out


def save_adapter(model: nn.Module, directory: str | Path, name: str = "default") -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` for adapter ``name``; returns the directory."""
    from safetensors.torch import save_file

    state = adapter_state_dict(model, name)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(adapter_configs(model)[name].to_dict(), indent=2))
    save_file(state, str(directory / WEIGHTS_FILE))
    return directory


def load_adapter(model: nn.Module, directory: str | Path, name: str | None = None) -> nn.Module:
    """Add the adapter saved in ``directory`` under ``name`` (default: the directory's name) and activate it."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise ConfigError(f"{directory} holds no saved adapter ({CONFIG_FILE} and {WEIGHTS_FILE}).",
                          "pass a directory written by save_adapter(model, directory, name).")
    config = AdapterConfig(**json.loads((directory / CONFIG_FILE).read_text()))
    name = name or directory.name
    state = load_file(str(directory / WEIGHTS_FILE))
    add_adapter(model, name, config)
    layers = dict(adapter_layers(model))
    expected = {f"{q}.{k}" for q, layer in layers.items() if name in layer.adapters
                for k in layer.adapters[name].state_dict()}
    if set(state) != expected:
        delete_adapter(model, name)
        raise ConfigError(f"the saved adapter in {directory} does not fit this model "
                          f"({len(set(state) ^ expected)} weight names differ).",
                          "load it into the same architecture (same number of blocks) it was trained on.")
    with torch.no_grad():
        for key, value in state.items():
            qual, _, rest = key.partition(".adapter_")
            target = layers[qual].adapters[name].get_parameter("adapter_" + rest)
            if target.shape != value.shape:
                delete_adapter(model, name)
                raise ConfigError(f"the saved weight {key} has shape {tuple(value.shape)}, the model needs "
                                  f"{tuple(target.shape)}.", "load it into a model of the width it was trained on.")
            target.copy_(value)
    return model


def count_adapter_parameters(model: nn.Module, name: str) -> int:
    """Measured parameters of adapter ``name`` (compare with ``adapter_parameter_count`` x sites)."""
    return sum(v.numel() for v in adapter_state_dict(model, name).values())


def expected_adapter_parameters(model: nn.Module, config: AdapterConfig) -> int:
    """The formula: (blocks adapted) x (sites per block) x (2dm + d + m)."""
    blocks, _ = decoder_blocks(model)
    n_blocks = len(blocks) if config.layers_to_transform is None else len(config.layers_to_transform)
    d = hidden_size_of(model)
    return n_blocks * len(config.sites) * adapter_parameter_count(d, config.bottleneck(d))


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = AdapterConfig
apply = apply_adapters
expected_parameters = expected_adapter_parameters


# where the methods of this module sit (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("adapter (sequential)", "function", "additive", "Houlsby et al. 2019; Pfeiffer et al. 2021",
                "a bottleneck function applied to a sublayer's output"),
    Perspective("AdapterFusion", "function", "additive", "Pfeiffer et al. 2021a",
                "an attention over several trained adapters' outputs"),
)

"""The unified view of parameter-efficient fine-tuning (He et al., 2022, "Towards a Unified View of
Parameter-Efficient Transfer Learning", arXiv:2110.04366).

LoRA, prefix tuning and adapters all change a hidden representation ``h`` by adding a vector::

    h  <-  h + s * Δh,        Δh = f(z W_down) W_up        (row-vector form; here z W_down = down(z))

and differ only in four choices (the paper's Table 1):

=================  =====================  ===================  ===================  ==================
                   Δh computed from z =   f                    inserted at          scaling s
=================  =====================  ===================  ===================  ==================
LoRA               x (input of W)         identity             a weight's output    ``lora_alpha / r``
                   parallel                                    (W_q, W_v: ``W x``)
prefix tuning      x (input of attention) softmax              each head's output   gate λ(x):
                   parallel               ``W_down = W_q P_K^T``                    ``h <- (1-λ) h + λ Δh``
                                          ``W_up = P_V``
adapter            h (the output itself)  ReLU                 sublayer output      1
                   sequential                                  (attention / FFN)
parallel adapter   x (input of sublayer)  ReLU                 sublayer output      1, or 4 ("scaled")
                   parallel
=================  =====================  ===================  ===================  ==================

*Sequential*: Δh reads the representation it modifies (``h -> h + s f(h W_down) W_up``, Houlsby).
*Parallel*: Δh reads the same input ``x`` as the module it modifies (``h = F(x) + s f(x W_down) W_up``).

This module makes those four choices the fields of one config, :class:`UnifiedConfig`, and one
module, :class:`DeltaH` (``down``: ``(r, d_in)`` weight, ``up``: ``(d_out, r)``, optional biases),
inserted by :func:`apply_unified`. The course's LoRA and bottleneck adapters are exact special cases:
:func:`to_unified` rewrites a model that carries :class:`~course_lib.methods.lora.LoraLayer` or
:class:`~course_lib.methods.adapters.AdapterLayer` modules into :class:`UnifiedLayer` modules with
the same weights, and the logits do not change (``tests/test_unified.py``). Prefix tuning's Δh needs
the attention scores, so it is the function :func:`prefix_delta_h` (``h``, ``Δh``, ``λ`` per head),
and :func:`unified_prefix_attention` runs a whole model's attention in that form: the logits of a
:class:`~course_lib.methods.prefix_tuning.PrefixTuningModel` are unchanged.

Mix-and-match (MAM, the paper's section 4.5): prefix tuning with a few virtual tokens in the
attention plus a *scaled parallel adapter* (s = 4) at the feed-forward block; :func:`apply_mam`.

Shapes: ``x``, ``h``: ``(..., d)``; ``down.weight``: ``(r, d_in)``; ``up.weight``: ``(d_out, r)``.
Parameters of one Δh: ``r * (d_in + d_out)`` plus ``r + d_out`` with biases
(LoRA: ``r (d + k)``; adapter: ``2 d m + d + m``); :func:`unified_parameter_count`.

Why one module of this length: the Δh module, the unified layer, the rewrite of every method into
it and MAM are one idea (He et al.); splitting them would split the equivalence checks from what they check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .adapters import NON_LINEARITIES, AdapterLayer, BottleneckAdapter, decoder_blocks, hidden_size_of
from .catalog import Perspective
from .lora import LoraLayer
from .targets import find_targets, is_linear, linear_shape, matches, set_module

FORMS = ("sequential", "parallel")
SUBLAYERS = ("attention", "ffn")
FUNCTIONS = tuple(NON_LINEARITIES)       # relu, gelu, silu, swish, tanh, identity
INITS = ("zero-up", "random")

#: He et al.'s Table 1 as data: what each method is in the unified view.
UNIFIED_TABLE = {
    "LoRA": dict(delta_h="s · x W_down W_up", function="identity", insertion="weight (W_q, W_v)",
                 form="parallel", modified="W x (head attention's q, v)", scaling="lora_alpha / r"),
    "prefix tuning": dict(delta_h="softmax(x W_q P_Kᵀ) P_V", function="softmax", insertion="attention heads",
                          form="parallel", modified="head output", scaling="gate λ(x): (1-λ) h + λ Δh"),
    "adapter": dict(delta_h="ReLU(h W_down) W_up", function="ReLU", insertion="attention / FFN output",
                    form="sequential", modified="sublayer output h", scaling="1"),
    "parallel adapter": dict(delta_h="ReLU(x W_down) W_up", function="ReLU", insertion="attention / FFN output",
                             form="parallel", modified="sublayer output h", scaling="1 (scaled: 4)"),
    "MAM": dict(delta_h="prefix (l tokens) + scaled parallel adapter", function="softmax + ReLU",
                insertion="attention heads + FFN", form="parallel", modified="head output + FFN output",
                scaling="λ(x) and 4"),
}


@dataclass
class UnifiedConfig:
    """The four design choices of He et al. plus the size of Δh.

    ``insertion``: ``"attention"`` or ``"ffn"`` (the output of that sublayer, before the residual add, as
    in :mod:`~course_lib.methods.adapters`), or a list of linear-layer names such as ``["q_proj",
    "v_proj"]`` (the output ``W x`` of those matrices, as in LoRA). ``form``: ``"sequential"`` (Δh reads
    the output ``h``) or ``"parallel"`` (Δh reads the input ``x``). ``function``: f, one of
    :data:`FUNCTIONS`. ``bottleneck_size``: r (LoRA's rank, the adapter's m). ``scaling``: s.
    ``bias``: biases in ``down`` and ``up`` (adapters have them, LoRA has not). ``init``: ``"zero-up"``
    (``up`` is zero, so the model is unchanged at step 0) or ``"random"`` (for tests).
    ``layers_to_transform``: block indices for sublayer insertion (None: every block).
    """

    insertion: str | list[str] = "ffn"
    form: str = "parallel"
    function: str = "relu"
    bottleneck_size: int = 8
    scaling: float = 1.0
    bias: bool = True
    init: str = "zero-up"
    layers_to_transform: list[int] | None = None

    def __post_init__(self):
        if isinstance(self.insertion, str):
            if self.insertion not in SUBLAYERS:
                raise ConfigError(f"insertion={self.insertion!r} is neither a sublayer nor a list of layer names.",
                                  "use 'attention', 'ffn', or a list of linear layers such as ['q_proj', 'v_proj'].")
        else:
            names = list(self.insertion)
            if not names or not all(isinstance(n, str) and n for n in names):
                raise ConfigError(f"insertion list {names!r} must hold at least one layer name.",
                                  "use e.g. insertion=['q_proj', 'v_proj'].")
            self.insertion = names
        if self.form not in FORMS:
            raise ConfigError(f"form={self.form!r} is not known.", "use 'sequential' or 'parallel'.")
        if self.function not in FUNCTIONS:
            raise ConfigError(f"function={self.function!r} is not known.",
                              f"use one of {list(FUNCTIONS)} (prefix tuning's softmax is prefix_delta_h).")
        if isinstance(self.bottleneck_size, bool) or not isinstance(self.bottleneck_size, int) or self.bottleneck_size <= 0:
            raise ConfigError(f"bottleneck_size must be a positive integer, got {self.bottleneck_size!r}.",
                              "use a small r such as 8.")
        if isinstance(self.scaling, bool) or not isinstance(self.scaling, (int, float)) or not math.isfinite(self.scaling):
            raise ConfigError(f"scaling must be a finite number, got {self.scaling!r}.",
                              "use 1.0 (adapter), 4.0 (scaled parallel adapter) or lora_alpha / r (LoRA).")
        if self.init not in INITS:
            raise ConfigError(f"init={self.init!r} is not known.", f"use one of {list(INITS)}.")
        if self.layers_to_transform is not None:
            layers = list(self.layers_to_transform)
            if not layers or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers):
                raise ConfigError(f"layers_to_transform must list block indices >= 0, got {layers!r}.",
                                  "use e.g. layers_to_transform=[0, 1], or None for every block.")
            self.layers_to_transform = sorted(set(layers))

    @property
    def at_sublayer(self) -> bool:
        return isinstance(self.insertion, str)

    @classmethod
    def lora(cls, r: int = 8, lora_alpha: float = 8, target_modules=("q_proj", "v_proj")) -> "UnifiedConfig":
        """LoRA: parallel, identity, at the weights' outputs, no biases, ``s = lora_alpha / r``."""
        return cls(insertion=list(target_modules), form="parallel", function="identity", bottleneck_size=r,
                   scaling=lora_alpha / r, bias=False)

    @classmethod
    def adapter(cls, bottleneck_size: int = 8, sublayer: str = "ffn", non_linearity: str = "relu") -> "UnifiedConfig":
        """The (Pfeiffer) adapter: sequential, ReLU, at the FFN output, biases, ``s = 1``."""
        return cls(insertion=sublayer, form="sequential", function=non_linearity, bottleneck_size=bottleneck_size,
                   scaling=1.0, bias=True)

    @classmethod
    def parallel_adapter(cls, bottleneck_size: int = 8, scaling: float = 4.0, sublayer: str = "ffn") -> "UnifiedConfig":
        """He et al.'s scaled parallel adapter: parallel, ReLU, at the FFN, ``s = 4`` by default."""
        return cls(insertion=sublayer, form="parallel", function="relu", bottleneck_size=bottleneck_size,
                   scaling=scaling, bias=True)


def unified_parameter_count(d_in: int, d_out: int, r: int, bias: bool = True) -> int:
    """Parameters of one Δh: ``down`` ``r d_in`` (+ ``r``) and ``up`` ``d_out r`` (+ ``d_out``)."""
    return r * (d_in + d_out) + ((r + d_out) if bias else 0)


class DeltaH(nn.Module):
    """``Δh(z) = s * up(f(down(z)))``: ``z`` ``(..., d_in)`` -> ``(..., d_out)``.

    ``down``: ``nn.Linear(d_in, r)`` (weight ``(r, d_in)``, LoRA's ``A``, the adapter's ``W_down``);
    ``up``: ``nn.Linear(r, d_out)`` (weight ``(d_out, r)``, LoRA's ``B``, the adapter's ``W_up``).
    With ``init="zero-up"`` ``up`` starts at zero, so Δh = 0 at step 0.
    """

    def __init__(self, d_in: int, d_out: int, r: int, function: str = "relu", scaling: float = 1.0,
                 bias: bool = True, init: str = "zero-up"):
        super().__init__()
        if function not in FUNCTIONS:
            raise ConfigError(f"function={function!r} is not known.", f"use one of {list(FUNCTIONS)}.")
        self.d_in, self.d_out, self.r, self.function, self.scaling = d_in, d_out, r, function, float(scaling)
        self.down = nn.Linear(d_in, r, bias=bias)
        self.f = NON_LINEARITIES[function]()
        self.up = nn.Linear(r, d_out, bias=bias)
        if init == "zero-up":
            if bias:
                nn.init.zeros_(self.down.bias)
                nn.init.zeros_(self.up.bias)
            nn.init.zeros_(self.up.weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scaling * self.up(self.f(self.down(z)))

    @classmethod
    def from_lora(cls, layer: LoraLayer) -> "DeltaH":
        """The Δh of a course :class:`LoraLayer` (same tensors copied): identity f, no bias, s = its scaling."""
        if layer.use_dora:
            raise ConfigError("DoRA rescales W0 too, so it is not an additive Δh of this form.",
                              "convert plain LoRA layers (use_dora=False).")
        w = layer.lora_A.weight
        delta = cls(layer.in_features, layer.out_features, layer.r, "identity", layer.scaling, bias=False)
        delta.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            delta.down.weight.copy_(layer.lora_A.weight)
            delta.up.weight.copy_(layer.lora_B.weight)
        return delta

    @classmethod
    def from_adapter(cls, adapter: BottleneckAdapter) -> "DeltaH":
        """The Δh of a course :class:`BottleneckAdapter` (same tensors copied)."""
        fn = next(k for k, v in NON_LINEARITIES.items() if type(adapter.non_linearity) is v)
        w = adapter.adapter_down.weight
        delta = cls(adapter.hidden_size, adapter.hidden_size, adapter.bottleneck_size, fn, adapter.scaling, bias=True)
        delta.to(device=w.device, dtype=w.dtype)
        delta.load_state_dict({"down.weight": adapter.adapter_down.weight, "down.bias": adapter.adapter_down.bias,
                               "up.weight": adapter.adapter_up.weight, "up.bias": adapter.adapter_up.bias})
        return delta

    def num_parameters(self) -> int:
        return unified_parameter_count(self.d_in, self.d_out, self.r, self.down.bias is not None)

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}, r={self.r}, f={self.function}, s={self.scaling:g}"


class UnifiedLayer(nn.Module):
    """A frozen module (``base_layer``: a sublayer or a linear layer) plus one Δh on its output.

    ``forward(x)``: ``h = base_layer(x)`` (first element if a tuple), then
    ``h + delta(h)`` (sequential) or ``h + delta(x)`` (parallel); other tuple elements pass through.
    """

    def __init__(self, base_layer: nn.Module, delta: DeltaH, form: str):
        super().__init__()
        if form not in FORMS:
            raise ConfigError(f"form={form!r} is not known.", "use 'sequential' or 'parallel'.")
        self.base_layer, self.delta, self.form = base_layer, delta, form

    def forward(self, *args, **kwargs):
        out = self.base_layer(*args, **kwargs)
        h = out[0] if isinstance(out, tuple) else out
        if self.form == "parallel":
            x = args[0] if args else kwargs["hidden_states"]
            new = h + self.delta(x)
        else:
            new = h + self.delta(h)
        return (new, *out[1:]) if isinstance(out, tuple) else new

    def extra_repr(self) -> str:
        return f"form={self.form}"


def unified_layers(model: nn.Module) -> dict[str, UnifiedLayer]:
    return {n: m for n, m in model.named_modules() if isinstance(m, UnifiedLayer)}


def apply_unified(model: nn.Module, config: UnifiedConfig | None = None, **kwargs) -> nn.Module:
    """Freeze ``model`` and insert one trainable Δh where ``config`` says; returns ``model`` (in place).

    ``apply_unified(model, UnifiedConfig.parallel_adapter(bottleneck_size=16))`` or keyword arguments.
    Only the Δh parameters require grad afterwards.
    """
    if config is not None and kwargs:
        raise ConfigError("apply_unified got both a UnifiedConfig and keyword arguments.",
                          "pass either config=UnifiedConfig(...) or the keyword arguments, not both.")
    config = config if config is not None else UnifiedConfig(**kwargs)
    if not isinstance(config, UnifiedConfig):
        raise ConfigError(f"apply_unified expects a UnifiedConfig, got {type(config).__name__}.",
                          "build one: UnifiedConfig(insertion='ffn', form='parallel', bottleneck_size=8).")
    model.requires_grad_(False)
    opts = dict(function=config.function, scaling=config.scaling, bias=config.bias, init=config.init)
    ref = next(model.parameters())
    if config.at_sublayer:
        blocks, children = decoder_blocks(model)
        d = hidden_size_of(model)
        if config.layers_to_transform is not None and max(config.layers_to_transform) >= len(blocks):
            raise ConfigError(f"layers_to_transform {config.layers_to_transform} names a block the model does not "
                              f"have (it has {len(blocks)}).", f"use indices from 0 to {len(blocks) - 1}.")
        for i, block in enumerate(blocks):
            if config.layers_to_transform is not None and i not in config.layers_to_transform:
                continue
            child = children[config.insertion]
            base = getattr(block, child)
            if isinstance(base, (UnifiedLayer, AdapterLayer)):
                raise ConfigError(f"block {i}'s {config.insertion} already carries an adapter or a Δh.",
                                  "apply_unified to a freshly loaded model.")
            delta = DeltaH(d, d, config.bottleneck_size, **opts).to(device=ref.device, dtype=ref.dtype)
            setattr(block, child, UnifiedLayer(base, delta, config.form))
        return model
    found = find_targets(model, config.insertion, method="apply_unified",
                         what="linear layers (or 'attention' / 'ffn' for a whole sublayer)")
    for name in found:
        base = model.get_submodule(name)
        d_out, d_in = linear_shape(base)
        delta = DeltaH(d_out if config.form == "sequential" else d_in, d_out, config.bottleneck_size, **opts)
        set_module(model, name, UnifiedLayer(base, delta.to(device=ref.device, dtype=ref.dtype), config.form))
    return model


def expected_unified_parameters(model: nn.Module, config: UnifiedConfig) -> int:
    """What :func:`apply_unified` will add, from the formula (no model change)."""
    if config.at_sublayer:
        blocks, _ = decoder_blocks(model)
        n = len(blocks) if config.layers_to_transform is None else len(config.layers_to_transform)
        d = hidden_size_of(model)
        return n * unified_parameter_count(d, d, config.bottleneck_size, config.bias)
    total = 0
    for name, m in model.named_modules():
        if name and matches(name, config.insertion) and is_linear(m):
            d_out, d_in = linear_shape(m)
            total += unified_parameter_count(d_out if config.form == "sequential" else d_in, d_out,
                                             config.bottleneck_size, config.bias)
    return total


def to_unified(model: nn.Module) -> nn.Module:
    """Rewrite, in place, every course LoRA layer and every (single, active) bottleneck adapter as a
    :class:`UnifiedLayer` holding the same tensors. The model computes the same function afterwards.
    Returns ``model``; the Δh parameters are trainable, the base stays frozen."""
    converted = 0
    for name, layer in list(model.named_modules()):
        if isinstance(layer, LoraLayer):
            if layer.merged:
                raise ConfigError(f"{name} is merged, so its Δh is inside W0 already.",
                                  "call unmerge_lora(model) before to_unified.")
            set_module(model, name, UnifiedLayer(layer.base_layer, DeltaH.from_lora(layer), "parallel"))
            converted += 1
        elif isinstance(layer, AdapterLayer):
            active = layer.active_adapter
            if active is None or not isinstance(active, str):
                raise ConfigError(f"{name} has no single active adapter (active: {active!r}); a fusion is not one Δh.",
                                  "set_active_adapter(model, name) first.")
            if active not in layer.adapters:  # the adapter does not sit at this site
                set_module(model, name, layer.base_layer)
                continue
            form = "parallel" if layer.parallel[active] else "sequential"
            set_module(model, name, UnifiedLayer(layer.base_layer, DeltaH.from_adapter(layer.adapters[active]), form))
            converted += 1
    if not converted:
        raise ConfigError("to_unified found no LoRA layer and no adapter in the model.",
                          "apply_lora(...) or apply_adapters(...) first.")
    return model


# ----------------------------------------------------------------------------------------- prefix tuning
def prefix_delta_h(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prefix_k: torch.Tensor,
                   prefix_v: torch.Tensor, mask: torch.Tensor | None = None,
                   scale: float | None = None) -> dict[str, torch.Tensor]:
    """Prefix tuning as a gated Δh on each attention head's output (He et al., eq. 7-8)::

        h  = softmax(q K^T s + mask) V                the head without prefix
        Δh = softmax(q P_K^T s) P_V                   f = softmax, W_down = W_q P_K^T, W_up = P_V
        λ  = Σ_i e^{q·P_K,i s} / (Σ_i e^{q·P_K,i s} + Σ_j e^{q·K_j s + mask_j})
        out = (1 - λ) h + λ Δh

    Shapes: ``q`` ``(..., T, d_h)``, ``k``, ``v`` ``(..., S, d_h)``, ``prefix_k``, ``prefix_v``
    ``(..., P, d_h)`` (leading dims broadcast: batch, heads); ``mask``: additive ``(..., T, S)`` with
    ``-inf`` or a large negative number where a key is hidden (None: causal when S == T, else none).
    ``scale``: ``1/sqrt(d_h)`` by default. Returns ``out``, ``h``, ``delta_h`` ``(..., T, d_h)`` and
    ``lam`` ``(..., T, 1)``.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = q @ k.transpose(-1, -2) * scale
    if mask is None and k.shape[-2] == q.shape[-2]:
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    prefix_scores = q @ prefix_k.transpose(-1, -2) * scale
    h = torch.softmax(scores, dim=-1) @ v
    delta_h = torch.softmax(prefix_scores, dim=-1) @ prefix_v
    log_p, log_r = torch.logsumexp(prefix_scores, -1, keepdim=True), torch.logsumexp(scores, -1, keepdim=True)
    lam = torch.sigmoid(log_p - log_r)          # = e^{log_p} / (e^{log_p} + e^{log_r})
    return {"out": (1 - lam) * h + lam * delta_h, "h": h, "delta_h": delta_h, "lam": lam}


UNIFIED_ATTENTION = "unified_prefix"


def _unified_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """A transformers attention function: the first ``S - T`` keys/values are the prefix, the rest the
    real tokens; the head output is computed as ``(1 - λ) h + λ Δh`` (:func:`prefix_delta_h`)."""
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:  # grouped-query attention: one KV head serves several query heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    T, S = query.shape[-2], key.shape[-2]
    P = S - T
    mask = attention_mask[..., :S] if attention_mask is not None else None
    pk, pv, k, v = key[..., :P, :], value[..., :P, :], key[..., P:, :], value[..., P:, :]
    if mask is not None:
        if bool((mask[..., :P] != 0).any()):
            raise ConfigError("the unified prefix attention expects every query to see every prefix position.",
                              "use it with PrefixTuningModel.forward (the prefix mask is all ones).")
        mask = mask[..., P:]
    else:
        mask = torch.zeros(T, T, dtype=query.dtype, device=query.device).masked_fill(
            ~torch.ones(T, T, dtype=torch.bool, device=query.device).tril(), float("-inf"))
    if P == 0:
        out = torch.softmax(query @ k.transpose(-1, -2) * scaling + mask, dim=-1) @ v
        lam = torch.zeros(*out.shape[:-1], 1, dtype=out.dtype, device=out.device)
    else:
        res = prefix_delta_h(query, k, v, pk, pv, mask=mask, scale=scaling)
        out, lam = res["out"], res["lam"]
    module.last_prefix_gate = lam.detach()
    return out.transpose(1, 2).contiguous(), None


def unified_prefix_attention(model) -> None:
    """Make every attention layer of ``model`` (a transformers model, or the base of a
    :class:`PrefixTuningModel`) compute ``(1 - λ) h + λ Δh`` explicitly (see :func:`prefix_delta_h`).

    Registers the attention function ``"unified_prefix"`` with transformers and selects it; the
    gate of the latest forward pass is left on each attention module as ``last_prefix_gate``
    ``(B, heads, T, 1)``. Undo with ``model.set_attn_implementation("eager")``.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    base = getattr(model, "base_model", model)
    AttentionInterface.register(UNIFIED_ATTENTION, _unified_attention_forward)
    AttentionMaskInterface.register(UNIFIED_ATTENTION, eager_mask)
    base.set_attn_implementation(UNIFIED_ATTENTION)


def prefix_gates(model) -> list[torch.Tensor]:
    """``λ`` of the latest forward pass per layer (after :func:`unified_prefix_attention`)."""
    return [m.last_prefix_gate for m in model.modules() if hasattr(m, "last_prefix_gate")]


# ----------------------------------------------------------------------------------------- MAM
@dataclass
class MAMConfig:
    """Mix-and-match (He et al. 2022, section 4.5): ``num_virtual_tokens`` prefix vectors in every
    attention layer plus a scaled parallel adapter (``bottleneck_size``, ``scaling``) at every FFN.
    The paper's large-model setting is l = 30 and r = 512 with s = 4."""

    num_virtual_tokens: int = 4
    bottleneck_size: int = 16
    scaling: float = 4.0
    prefix_projection: bool = False

    def __post_init__(self):
        from .prefix_tuning import PrefixTuningConfig
        PrefixTuningConfig(num_virtual_tokens=self.num_virtual_tokens, prefix_projection=self.prefix_projection)
        UnifiedConfig.parallel_adapter(self.bottleneck_size, self.scaling)

    def adapter_config(self) -> UnifiedConfig:
        return UnifiedConfig.parallel_adapter(self.bottleneck_size, self.scaling, "ffn")


def mam_parameter_count(model, config: MAMConfig) -> int:
    """Prefix (``L * 2 * l * d_kv``) plus one parallel adapter per block (``2 d r + d + r``)."""
    from .prefix_tuning import KVLayout, PrefixTuningConfig, prefix_tuning_cost

    prefix = prefix_tuning_cost(KVLayout.from_config(model.config),
                                PrefixTuningConfig(num_virtual_tokens=config.num_virtual_tokens,
                                                   prefix_projection=config.prefix_projection))
    return prefix + expected_unified_parameters(model, config.adapter_config())


def apply_mam(model, config: MAMConfig | None = None):
    """Freeze ``model``, add a scaled parallel adapter at every FFN and a prefix in every attention layer.

    Returns the :class:`~course_lib.methods.prefix_tuning.PrefixTuningModel` wrapper; the trainable
    parameters are the prefix and the adapters.
    """
    from .prefix_tuning import PrefixTuningConfig, apply_prefix_tuning

    config = config or MAMConfig()
    if not isinstance(config, MAMConfig):
        raise ConfigError(f"apply_mam expects a MAMConfig, got {type(config).__name__}.",
                          "build one: MAMConfig(num_virtual_tokens=4, bottleneck_size=16, scaling=4.0).")
    apply_unified(model, config.adapter_config())
    wrapped = apply_prefix_tuning(model, PrefixTuningConfig(num_virtual_tokens=config.num_virtual_tokens,
                                                            prefix_projection=config.prefix_projection))
    for layer in unified_layers(model).values():  # apply_prefix_tuning froze the base, adapters included
        layer.delta.requires_grad_(True)
    return wrapped


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = UnifiedConfig
ParallelAdapterConfig = UnifiedConfig.parallel_adapter   # He et al.'s scaled parallel adapter (s = 4) at the FFN
apply = apply_unified
expected_parameters = expected_unified_parameters


# where the methods of this module sit (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("parallel adapter", "function", "additive", "He et al. 2022",
                "the bottleneck function reads the sublayer's input, in parallel (scaled: s = 4)"),
    Perspective("MAM adapter", "input + function", "additive", "He et al. 2022",
                "combines prefix tuning (input) in attention with a scaled parallel adapter (function) at the FFN"),
)

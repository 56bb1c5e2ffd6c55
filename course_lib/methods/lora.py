"""LoRA: low-rank adaptation of frozen weight matrices (Hu et al., 2021, arXiv:2106.09685).

A frozen weight ``W0`` of shape ``(d, k)`` (``d = out_features``, ``k = in_features``) gets a trainable
low-rank update::

    h = W0 x + (lora_alpha / r) * B A dropout(x)         B: (d, r), A: (r, k), r << min(d, k)

so a layer trains ``r * (d + k)`` numbers instead of ``d * k``. ``A`` starts Kaiming-uniform
(``a = sqrt(5)``, the ``nn.Linear`` default and peft's default), ``B`` starts at zero, so the adapted
model equals the base model at step 0. The paper draws ``A`` from a random Gaussian instead (Hu et al.,
section 4.1; here ``init_lora_weights="gaussian"``, as in peft). The scale ``lora_alpha / r`` is the
paper's (section 4.1); the course notes write ``W0 + alpha * B A``, which folds the ``1 / r`` into alpha. After training, ``W0 + s B A`` can be merged into one matrix: no extra latency.

Variants (flags of :class:`LoraConfig`):

* rsLoRA (Kalajdzievski, 2023, arXiv:2312.03732): ``scaling = lora_alpha / sqrt(r)``, which keeps
  the update's size stable as ``r`` grows.
* DoRA (Liu et al., 2024, arXiv:2402.09353): ``W = m * (W0 + s B A) / ||W0 + s B A||_row``; a trainable
  magnitude ``m`` (one number per output feature, initialised to the row norms of ``W0``) and the
  low-rank direction. As in the paper (section 4.3) and peft, the norm is treated as a constant
  (detached) in the backward pass.

The names follow peft (``lora_A``, ``lora_B``, ``scaling``, ``base_layer``, ``lora_magnitude_vector``,
``merge``, ``unmerge``, ``merge_and_unload``) so that weights can be copied across and compared; the
tests check forward, gradients and merged weights against peft 0.21.2.

GPT-2's ``Conv1D`` stores its weight as ``(in, out)`` (``fan_in_fan_out``); the update is transposed
when merged into it.

Why one module of this length: the layer, its merge/unmerge, DoRA and rsLoRA, applying to a model,
saving adapters and the rank/spectrum helpers of lecture 04 all act on the same ``LoraLayer``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from .catalog import Perspective
from .targets import find_targets, is_linear, linear_names, linear_shape, set_module

#: Matrices a lecture or exercise picks by name, per family (Llama/Qwen2 naming, GPT-2 naming).
TARGET_PRESETS = {
    "q,v": ["q_proj", "v_proj"],
    "k,o": ["k_proj", "o_proj"],
    "q,k,v,o": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mlp": ["gate_proj", "up_proj", "down_proj"],
    "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}

#: peft's defaults (``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``) for the families we use.
DEFAULT_TARGETS = {"gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
                   "mistral": ["q_proj", "v_proj"]}


def lora_param_count(d: int, k: int, r: int) -> int:
    """Trainable numbers of one LoRA pair on a ``(d, k)`` matrix: ``B`` is ``d x r``, ``A`` is ``r x k``."""
    return r * (d + k)


@dataclass
class LoraConfig:
    """What to adapt and how; validates itself.

    r: rank of the update. lora_alpha: numerator of the scale (``alpha / r``, or ``alpha / sqrt(r)`` with
    ``use_rslora``). lora_dropout: dropout probability on the LoRA input only. target_modules: names of
    the layers to wrap, matched as in peft (a module whose full name equals a target or ends with
    ``"." + target``; a single string is a regular expression matched against full names); ``None``
    picks peft's default for the model family. init_lora_weights: ``True`` (A Kaiming-uniform, B zero),
    ``"gaussian"`` (A normal with std 1/r, B zero) or ``False`` (B random too: not an identity, for tests).
    """

    r: int = 8
    lora_alpha: float = 8
    lora_dropout: float = 0.0
    target_modules: list[str] | str | None = None
    use_rslora: bool = False
    use_dora: bool = False
    init_lora_weights: bool | str = True

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ConfigError(f"LoraConfig.r must be a positive integer, got {self.r!r}.",
                              "Pick a small rank such as r=8 (1 <= r <= min(d, k) of the adapted matrices).")
        if not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            raise ConfigError(f"LoraConfig.lora_alpha must be a positive number, got {self.lora_alpha!r}.",
                              "Use lora_alpha > 0; a common choice is lora_alpha = r or 2 * r.")
        if not isinstance(self.lora_dropout, (int, float)) or not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"LoraConfig.lora_dropout must lie in [0, 1), got {self.lora_dropout!r}.",
                              "Use a probability such as 0.0 or 0.05.")
        if self.target_modules is not None:
            if isinstance(self.target_modules, str):
                if not self.target_modules:
                    raise ConfigError("LoraConfig.target_modules is an empty string.",
                                      "Name the layers to adapt, e.g. target_modules=['q_proj', 'v_proj'].")
            else:
                self.target_modules = list(self.target_modules)
                if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
                    raise ConfigError(f"LoraConfig.target_modules must be a non-empty list of layer names, "
                                      f"got {self.target_modules!r}.",
                                      "Name the layers to adapt, e.g. target_modules=['q_proj', 'v_proj'], "
                                      "or leave it None for the model family's default.")
        if self.init_lora_weights not in (True, False, "gaussian"):
            raise ConfigError(f"LoraConfig.init_lora_weights={self.init_lora_weights!r} is not known.",
                              "Use True (A Kaiming-uniform, B zero), 'gaussian' or False.")

    @property
    def scaling(self) -> float:
        """The factor on ``B A``: ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA."""
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)


class LoraLayer(nn.Module):
    """A frozen ``nn.Linear`` or GPT-2 ``Conv1D`` (``base_layer``) plus ``scaling * lora_B(lora_A(dropout(x)))``.

    Shapes: x ``(..., k)``; ``lora_A.weight`` ``(r, k)``; ``lora_B.weight`` ``(d, r)``; output ``(..., d)``.
    With DoRA, ``lora_magnitude_vector`` has shape ``(d,)``.
    """

    def __init__(self, base_layer: nn.Module, r: int = 8, lora_alpha: float = 8, lora_dropout: float = 0.0,
                 use_rslora: bool = False, use_dora: bool = False, init_lora_weights: bool | str = True):
        super().__init__()
        if not is_linear(base_layer):
            raise ConfigError(f"LoRA wraps nn.Linear or transformers' Conv1D, not {type(base_layer).__name__}.",
                              "Target the linear projections (e.g. q_proj, v_proj, or c_attn for GPT-2).")
        cfg = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_rslora=use_rslora,
                         use_dora=use_dora, init_lora_weights=init_lora_weights)  # validates
        self.base_layer = base_layer
        self.fan_in_fan_out = not isinstance(base_layer, nn.Linear)  # Conv1D keeps weight as (in, out)
        if self.fan_in_fan_out:
            self.in_features, self.out_features = base_layer.weight.shape
        else:
            self.out_features, self.in_features = base_layer.weight.shape
        self.r, self.lora_alpha, self.use_rslora, self.use_dora = r, lora_alpha, use_rslora, use_dora
        self.scaling = cfg.scaling
        w = base_layer.weight
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=w.device, dtype=w.dtype)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=w.device, dtype=w.dtype)
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.reset_lora_parameters(init_lora_weights)
        for p in base_layer.parameters():
            p.requires_grad_(False)
        self.lora_magnitude_vector = None
        if use_dora:  # m = ||W0 + s B A|| per output feature (= ||W0|| rows when B = 0)
            with torch.no_grad():
                self.lora_magnitude_vector = nn.Parameter(self._weight_norm(self.lora_weight()))
        self.merged = False
        self._merged_norm = None

    @torch.no_grad()
    def reset_lora_parameters(self, init_lora_weights: bool | str = True):
        if init_lora_weights is False:  # both keep nn.Linear's random init: not an identity
            return
        if init_lora_weights == "gaussian":
            nn.init.normal_(self.lora_A.weight, std=1 / self.r)
        else:
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    # --- the update as a matrix -------------------------------------------------------------------
    def base_weight(self) -> torch.Tensor:
        """``W0`` in the ``(out, in)`` convention whatever the base layer stores."""
        w = self.base_layer.weight
        return w.T if self.fan_in_fan_out else w

    def lora_weight(self) -> torch.Tensor:
        """``B @ A``, shape ``(out, in)``, without the scale."""
        return self.lora_B.weight @ self.lora_A.weight

    def get_delta_weight(self) -> torch.Tensor:
        """``scaling * B @ A`` in the base layer's own layout (transposed for Conv1D)."""
        delta = self.lora_weight()
        return (delta.T if self.fan_in_fan_out else delta) * self.scaling

    def _weight_norm(self, lora_weight: torch.Tensor, scaling: float | None = None) -> torch.Tensor:
        """Row norms of ``W0 + s B A`` (one per output feature), shape ``(out,)``."""
        s = self.scaling if scaling is None else scaling
        return torch.linalg.norm(self.base_weight() + s * lora_weight, dim=1)

    # --- forward ------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if self.merged:
            return result
        dropped = self.lora_dropout(x)
        lora_out = self.lora_B(self.lora_A(dropped)) * self.scaling
        if not self.use_dora:
            return result + lora_out
        # DoRA: m / ||W0 + s B A|| rescales the whole (W0 + s B A) x; the norm is a constant for autograd.
        norm = self._weight_norm(self.lora_weight().detach()).detach()
        mag_scale = (self.lora_magnitude_vector / norm).view(1, -1)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            base_out = result if self.base_layer.bias is None else result - self.base_layer.bias
        else:  # with dropout, the rescaled base path sees the dropped input like the LoRA path
            base_out = F.linear(dropped, self.base_weight())
        return result + (mag_scale - 1) * base_out + mag_scale * lora_out

    # --- merging ------------------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base_layer.weight`` in place: ``W0 <- W0 + s B A`` (DoRA: rescaled rows)."""
        if self.merged:
            return
        delta = self.get_delta_weight()
        weight = self.base_layer.weight
        if self.use_dora:
            norm = self._weight_norm(self.lora_weight())
            factor = (self.lora_magnitude_vector / norm).view(-1, 1)
            factor = factor.T if self.fan_in_fan_out else factor
            self._merged_norm = norm
            weight.data = factor * (weight.data + delta)
        else:
            weight.data += delta
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`: ``W <- W - s B A`` (exact up to float rounding)."""
        if not self.merged:
            return
        delta = self.get_delta_weight()
        weight = self.base_layer.weight
        if self.use_dora:
            factor = (self.lora_magnitude_vector / self._merged_norm).view(-1, 1)
            factor = factor.T if self.fan_in_fan_out else factor
            weight.data = weight.data / factor - delta
            self._merged_norm = None
        else:
            weight.data -= delta
        self.merged = False

    def extra_repr(self) -> str:
        return (f"r={self.r}, lora_alpha={self.lora_alpha}, scaling={self.scaling:.4g}, "
                f"dora={self.use_dora}, merged={self.merged}")


# --- applying to a model ------------------------------------------------------------------------------
def adaptable_module_names(model: nn.Module) -> list[str]:
    """The distinct short names of the layers LoRA can wrap (``nn.Linear`` / ``Conv1D``), e.g. ``q_proj``."""
    return linear_names(model)


def resolve_target_modules(model: nn.Module, config: LoraConfig):
    if config.target_modules is not None:
        return config.target_modules
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in DEFAULT_TARGETS:
        raise ConfigError(f"No default LoRA targets for model type {model_type!r}.",
                          f"Set target_modules explicitly; this model has: {adaptable_module_names(model)}.")
    return DEFAULT_TARGETS[model_type]


def check_rank(model: nn.Module, names: list[str], r: int, method: str = "LoRA") -> None:
    """Refuse a rank no target can hold: ``B A`` has rank at most ``min(d, k)``, so ``r`` above it only adds
    parameters that can never add expressiveness."""
    too_small = [(n, linear_shape(model.get_submodule(n))) for n in names
                 if r > min(linear_shape(model.get_submodule(n)))]
    if too_small:
        name, (d, k) = too_small[0]
        raise ConfigError(f"{method}: r={r} is larger than min(d, k)={min(d, k)} of {name} (d={d}, k={k})"
                          + (f" and {len(too_small) - 1} more target(s)" if len(too_small) > 1 else "") + ".",
                          f"use 1 <= r <= {min(min(s) for _, s in too_small)}, or target larger layers.")


def apply_lora(model: nn.Module, config: LoraConfig | None = None, **kwargs) -> nn.Module:
    """Wrap every target layer of ``model`` in a :class:`LoraLayer`, in place, and freeze all else.

    ``apply_lora(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))`` or the same with keyword
    arguments. Returns ``model``; afterwards only ``lora_A``, ``lora_B`` (and DoRA's magnitude) require grad.
    Targets are found by :func:`course_lib.methods.targets.find_targets` (peft's matching rule).
    """
    if config is not None and kwargs:
        raise ConfigError("apply_lora got both a LoraConfig and keyword arguments.",
                          "Pass either config=LoraConfig(...) or the keyword arguments, not both.")
    config = config if config is not None else LoraConfig(**kwargs)
    targets = resolve_target_modules(model, config)
    found = find_targets(model, targets, method="LoRA", accept=lambda m: is_linear(m) or isinstance(m, LoraLayer))
    if any(isinstance(model.get_submodule(n), LoraLayer) for n in found):
        raise ConfigError("The model already has LoRA layers on these targets.",
                          "Apply LoRA to a fresh copy of the base model, or call merge_and_unload() first.")
    check_rank(model, found, config.r)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in found:
        set_module(model, name, LoraLayer(model.get_submodule(name), r=config.r, lora_alpha=config.lora_alpha,
                                          lora_dropout=config.lora_dropout, use_rslora=config.use_rslora,
                                          use_dora=config.use_dora, init_lora_weights=config.init_lora_weights))
    return model


def lora_layers(model: nn.Module) -> dict[str, LoraLayer]:
    """``{full name: LoraLayer}`` for every wrapped layer."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer (the wrappers stay, so :func:`unmerge_lora` can undo it)."""
    for layer in lora_layers(model).values():
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    for layer in lora_layers(model).values():
        layer.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer and put the plain base layer back: the model has its original classes."""
    for name, layer in list(lora_layers(model).items()):
        layer.merge()
        set_module(model, name, layer.base_layer)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter alone (A, B and DoRA's magnitude), detached copies: what you save per task."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if ".lora_A." in k or ".lora_B." in k or k.endswith("lora_magnitude_vector")}


@torch.no_grad()
def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Put an adapter saved with :func:`lora_state_dict` into the LoRA layers (they must be unmerged)."""
    params = dict(model.named_parameters())
    if any(layer.merged for layer in lora_layers(model).values()):
        raise ConfigError("Cannot load adapter weights into merged LoRA layers.",
                          "Call unmerge_lora(model) first, load, then merge_lora(model) again.")
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise ConfigError(f"Adapter keys {unknown[:3]} do not exist in this model.",
                          "Apply LoRA with the same targets and rank as the adapter was trained with.")
    for k, v in state.items():
        params[k].copy_(v)
    return model


@dataclass
class LoraParameterReport:
    """Trainable against total parameters, and the trainable count of each LoRA layer."""

    trainable: int
    total: int
    per_module: dict[str, int] = field(default_factory=dict)

    @property
    def percentage(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (f"trainable params: {self.trainable:,} || all params: {self.total:,} || "
                f"trainable%: {self.percentage:.4f} || LoRA layers: {len(self.per_module)}")


def lora_parameter_report(model: nn.Module) -> LoraParameterReport:
    """Counts like peft's ``print_trainable_parameters`` plus a per-layer breakdown."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    per_module = {name: sum(p.numel() for n, p in layer.named_parameters()
                            if p.requires_grad and not n.startswith("base_layer."))
                  for name, layer in lora_layers(model).items()}
    return LoraParameterReport(trainable, total, per_module)


# --- analysis: low intrinsic rank -------------------------------------------------------------------
def singular_values(delta: torch.Tensor) -> torch.Tensor:
    """Singular values (descending) of a weight update ``delta`` (2-D), in float64."""
    return torch.linalg.svdvals(delta.detach().double().cpu())


def rank_r_error(delta_or_singular_values: torch.Tensor, r: int) -> float:
    """Relative Frobenius error of the best rank-``r`` approximation (Eckart-Young):
    ``sqrt(sum_{i > r} s_i^2) / sqrt(sum_i s_i^2)``. Accepts a matrix or its singular values."""
    s = delta_or_singular_values
    s = singular_values(s) if s.dim() == 2 else s.double()
    total = (s ** 2).sum()
    if total == 0:
        return 0.0
    return float(((s[r:] ** 2).sum() / total).sqrt())


def rank_error_curve(delta_or_singular_values: torch.Tensor, max_rank: int | None = None) -> list[float]:
    """:func:`rank_r_error` for ``r = 0, 1, ..., n`` (``n``: the number of singular values, or ``max_rank``)."""
    s = delta_or_singular_values
    s = singular_values(s) if s.dim() == 2 else s
    n = min(len(s), max_rank) if max_rank else len(s)
    return [rank_r_error(s, r) for r in range(n + 1)]


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = LoraConfig
apply = apply_lora


def expected_parameters(model: nn.Module, config: LoraConfig) -> int:
    """``sum over targets of r (d + k)`` (plus ``d`` per layer for DoRA's magnitude), from the shapes alone."""
    names = find_targets(model, resolve_target_modules(model, config), method="LoRA")
    shapes = [linear_shape(model.get_submodule(n)) for n in names]
    return sum(lora_param_count(d, k, config.r) + (d if config.use_dora else 0) for d, k in shapes)


# where the methods of this module sit (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("LoRA", "parameter", "reparameterisation", "Hu et al. 2021",
                "the update of a frozen weight written as a low-rank product (alpha / r) B A"),
)

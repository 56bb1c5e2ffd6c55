"""QLoRA: LoRA on a frozen 4-bit base (Dettmers et al., 2023, arXiv:2305.14314).

Every linear layer of the base model (but ``lm_head``) is stored as NF4 codes with blockwise scales
(:mod:`course_lib.methods.nf4`) and dequantised on the fly in each forward pass; the trainable LoRA
pair stays in the compute precision (``bfloat16`` on a GPU, ``float32`` here)::

    Y = X  doubleDequant(c1, c2, W_nf4)  +  s X L1 L2          (the paper's eq. 5, row-vector form)
    h = dequant(W_nf4) x + (lora_alpha / r) B A dropout(x)     (the same in LoRA's notation)

with ``x`` of shape ``(..., in)``, ``W`` ``(out, in)``, ``A`` ``(r, in)``, ``B`` ``(out, r)``.
Gradients flow through the dequantised weight to the input, never into the 4-bit codes: only ``A``
and ``B`` train. Memory: the base costs ~4.127 bits a weight instead of 16.

Merging ``W + s B A`` into a 4-bit base has to re-quantise the sum, so it is lossy (unlike LoRA
on a 16-bit base); :func:`merge_error` measures it.

The same thing with the libraries, :func:`course_lib.models.load_qlora_bnb`: transformers loads the model with a
``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)``,
``peft.prepare_model_for_kbit_training`` freezes it and casts the small fp16/bf16 parameters to fp32,
and ``peft.get_peft_model`` adds the LoRA pairs. ``tests/test_qlora.py`` checks that
:class:`QLoraLinear` gives peft's ``lora.bnb.Linear4bit`` output with the same weights.

The LoRA side is :class:`course_lib.methods.lora.LoraLayer` (same names as peft); memory accounting
of full, LoRA and QLoRA fine-tuning is :mod:`course_lib.memory`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from . import nf4
from .catalog import Perspective
from .lora import LoraConfig, LoraLayer, check_rank, lora_layers, lora_param_count, resolve_target_modules
from .targets import find_targets, linear_shape, matches, set_module

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class QLoraConfig(LoraConfig):
    """LoRA's fields (``r``, ``lora_alpha``, ``lora_dropout``, ``target_modules``, ...) plus the 4-bit storage.

    blocksize, quant_type, double_quant, dq_blocksize: see :class:`~course_lib.methods.nf4.QuantConfig`.
    compute_dtype: dtype the weight is dequantised to and LoRA computes in ("float32", "bfloat16").
    skip_modules: linear layers left in full precision (transformers keeps ``lm_head`` unquantised).
    """

    blocksize: int = 64
    quant_type: str = "nf4"
    double_quant: bool = True
    dq_blocksize: int = 256
    compute_dtype: str = "float32"
    skip_modules: tuple = ("lm_head",)

    def __post_init__(self):
        super().__post_init__()
        self.quant_config()  # validates blocksize, quant_type, double_quant, dq_blocksize
        if self.use_dora:
            raise ConfigError("QLoraConfig(use_dora=True) is not supported by the from-scratch QLoRA layer.",
                              "use use_dora=False, or apply DoRA to a full-precision base with apply_lora.")
        if self.compute_dtype not in _DTYPES:
            raise ConfigError(f"compute_dtype={self.compute_dtype!r} is not one of {', '.join(_DTYPES)}.",
                              "use 'float32' on CPU or 'bfloat16' on a GPU.")
        self.skip_modules = tuple(self.skip_modules)

    def quant_config(self) -> nf4.QuantConfig:
        return nf4.QuantConfig(blocksize=self.blocksize, quant_type=self.quant_type,
                               double_quant=self.double_quant, dq_blocksize=self.dq_blocksize)

    def lora_config(self) -> LoraConfig:
        return LoraConfig(r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=self.target_modules, use_rslora=self.use_rslora,
                          init_lora_weights=self.init_lora_weights)


class _MatMul4bit(torch.autograd.Function):
    """``y = x W^T`` with ``W`` dequantised in the forward pass and again in the backward pass.

    Plain ``F.linear(x, layer.weight)`` would make autograd keep every layer's dequantised
    full-precision ``W`` until the backward pass, so a training step would cost the base model's
    full size and QLoRA would save nothing. Here only ``x``'s gradient is needed (the base is frozen):
    ``dL/dx = dL/dy W``, with ``W`` rebuilt from the 4-bit codes. bitsandbytes does the same.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: "Linear4bit") -> torch.Tensor:
        ctx.layer = layer
        return F.linear(x, layer.weight)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return grad_out @ ctx.layer.weight, None


class Linear4bit(nn.Module):
    """A frozen linear layer stored in 4 bits: packed codes and scales as buffers, dequantised in ``forward``.

    Buffers: ``qweight`` uint8 ``(ceil(out*in/2),)``; ``absmax`` fp32 ``(n_blocks,)`` or, with double
    quantisation, uint8 plus ``offset`` (scalar) and ``absmax2`` fp32 ``(ceil(n_blocks/256),)``.
    ``bias`` (if any) stays a frozen parameter in the compute dtype.
    """

    def __init__(self, in_features: int, out_features: int, packed: torch.Tensor, state: nf4.QuantState,
                 bias: torch.Tensor | None = None, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.blocksize, self.quant_type, self.dq_blocksize = state.blocksize, state.quant_type, state.dq_blocksize
        self.compute_dtype = compute_dtype
        self.register_buffer("qweight", packed)
        self.register_buffer("absmax", state.absmax)
        self.register_buffer("offset", state.offset)
        self.register_buffer("absmax2", state.absmax2)
        self.register_buffer("code", nf4.levels_for(state.quant_type).to(packed.device), persistent=False)
        self.register_buffer("code2", state.code2, persistent=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(compute_dtype).clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, config: nf4.QuantConfig | None = None,
                    compute_dtype: torch.dtype = torch.float32) -> "Linear4bit":
        """Quantise an ``nn.Linear`` (its weight ``(out, in)``)."""
        if not isinstance(linear, nn.Linear):
            raise ConfigError(f"Linear4bit.from_linear needs an nn.Linear, got {type(linear).__name__}.",
                              "quantise the model's nn.Linear layers (GPT-2's Conv1D: transpose its weight first).")
        packed, state = nf4.quantize_4bit(linear.weight.data, config or nf4.QuantConfig())
        return cls(linear.in_features, linear.out_features, packed, state, linear.bias, compute_dtype)

    @classmethod
    def from_bnb(cls, layer) -> "Linear4bit":
        """Take over the codes and state of a ``bitsandbytes.nn.Linear4bit`` (already quantised)."""
        qs = layer.weight.quant_state
        state = nf4.from_bnb_state(qs)
        return cls(layer.in_features, layer.out_features, layer.weight.data.reshape(-1).view(torch.uint8).clone(), state,
                   layer.bias, layer.compute_dtype or torch.float32)

    def quant_state(self) -> nf4.QuantState:
        return nf4.QuantState((self.out_features, self.in_features), self.compute_dtype, self.blocksize,
                              self.quant_type, self.absmax, offset=self.offset, absmax2=self.absmax2,
                              code2=self.code2, dq_blocksize=self.dq_blocksize, code=self.code)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight ``(out, in)`` in the compute dtype (a fresh tensor, not a parameter)."""
        return nf4.dequantize_4bit(self.qweight, self.quant_state())

    @torch.no_grad()
    def requantize(self, weight: torch.Tensor) -> None:
        """Store a new ``(out, in)`` weight (quantised again: lossy)."""
        config = nf4.QuantConfig(blocksize=self.blocksize, quant_type=self.quant_type,
                                 double_quant=self.offset is not None, dq_blocksize=self.dq_blocksize or 256)
        packed, state = nf4.quantize_4bit(weight.float(), config)
        self.qweight, self.absmax, self.offset, self.absmax2 = packed, state.absmax, state.offset, state.absmax2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.compute_dtype)
        if torch.is_grad_enabled() and x.requires_grad:
            out = _MatMul4bit.apply(x, self)  # keeps no full-precision weight for the backward pass
        else:
            out = F.linear(x, self.weight)
        if self.bias is not None:
            out = out + self.bias
        return out.to(x.dtype)

    def storage_bytes(self) -> int:
        """Bytes of the codes and scales (what the 4-bit storage costs)."""
        return sum(t.numel() * t.element_size() for t in (self.qweight, self.absmax, self.offset, self.absmax2)
                   if t is not None)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, quant_type={self.quant_type}, "
                f"blocksize={self.blocksize}, double_quant={self.offset is not None}")


class QLoraLinear(LoraLayer):
    """LoRA on a :class:`Linear4bit` base: ``base_layer(x) + scaling * lora_B(lora_A(dropout(x)))``.

    Forward, initialisation and names come from :class:`~course_lib.methods.lora.LoraLayer`; ``merge``
    adds ``s B A`` to the dequantised weight and quantises again (lossy, as in peft).
    """

    def __init__(self, base_layer: Linear4bit, r: int = 8, lora_alpha: float = 8, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init_lora_weights: bool | str = True):
        nn.Module.__init__(self)
        if not isinstance(base_layer, Linear4bit):
            raise ConfigError(f"QLoraLinear wraps a Linear4bit, not {type(base_layer).__name__}.",
                              "quantise first: Linear4bit.from_linear(layer), or use apply_qlora(model, config).")
        cfg = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_rslora=use_rslora,
                         init_lora_weights=init_lora_weights)
        self.base_layer = base_layer
        self.fan_in_fan_out = False
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r, self.lora_alpha, self.use_rslora, self.use_dora = r, lora_alpha, use_rslora, False
        self.scaling = cfg.scaling
        kw = dict(bias=False, device=base_layer.qweight.device, dtype=base_layer.compute_dtype)
        self.lora_A = nn.Linear(self.in_features, r, **kw)
        self.lora_B = nn.Linear(r, self.out_features, **kw)
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.reset_lora_parameters(init_lora_weights)
        for p in base_layer.parameters():
            p.requires_grad_(False)
        self.lora_magnitude_vector = None
        self.merged = False
        self._merged_norm = None

    @torch.no_grad()
    def merge(self) -> None:
        """``W_nf4 <- quantise(dequant(W_nf4) + s B A)``: the sum is re-quantised, so this is lossy."""
        if self.merged:
            return
        self.base_layer.requantize(self.base_layer.weight.float() + self.get_delta_weight().float())
        self.merged = True

    def unmerge(self) -> None:
        raise ConfigError("a merge into a 4-bit base cannot be undone exactly (the sum was re-quantised).",
                          "keep the unmerged model (or the adapter weights) and merge a copy.")


# ----------------------------------------------------------------------------------------- applying
def quantize_model(model: nn.Module, config: QLoraConfig | None = None) -> nn.Module:
    """Replace every ``nn.Linear`` (but ``config.skip_modules``) by a :class:`Linear4bit`, in place; freeze all."""
    config = config or QLoraConfig(target_modules=["q_proj", "v_proj"])
    qc, dtype = config.quant_config(), _DTYPES[config.compute_dtype]
    for p in model.parameters():
        p.requires_grad_(False)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not matches(n, config.skip_modules)]
    for name in names:
        set_module(model, name, Linear4bit.from_linear(model.get_submodule(name), qc, dtype))
    return model


def apply_qlora(model: nn.Module, config: QLoraConfig | None = None, **kwargs) -> nn.Module:
    """Quantise the base to 4 bits and put LoRA on ``config.target_modules``, in place.

    ``apply_qlora(model, QLoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))``.
    Afterwards only ``lora_A`` and ``lora_B`` require grad; embeddings, norms and ``lm_head`` stay
    frozen in full precision (as with transformers' 4-bit loading).
    """
    if config is not None and kwargs:
        raise ConfigError("apply_qlora got both a QLoraConfig and keyword arguments.",
                          "pass either config=QLoraConfig(...) or the keyword arguments, not both.")
    config = config if config is not None else QLoraConfig(**kwargs)
    targets = resolve_target_modules(model, config)  # the config is left as given
    if any(isinstance(m, (LoraLayer, Linear4bit)) for m in model.modules()):
        raise ConfigError("the model already has LoRA or 4-bit layers.",
                          "apply QLoRA to a freshly loaded full-precision model.")
    found = find_targets(model, targets, method="QLoRA", accept=lambda m: isinstance(m, nn.Linear),
                         skip=config.skip_modules, what="linear layers that get quantised")
    check_rank(model, found, config.r, method="QLoRA")
    quantize_model(model, config)
    for name in found:
        set_module(model, name, QLoraLinear(model.get_submodule(name), r=config.r, lora_alpha=config.lora_alpha,
                                             lora_dropout=config.lora_dropout, use_rslora=config.use_rslora,
                                             init_lora_weights=config.init_lora_weights))
    return model


def linear4bit_layers(model: nn.Module) -> dict[str, Linear4bit]:
    return {n: m for n, m in model.named_modules() if isinstance(m, Linear4bit)}


def quantized_storage_bytes(model: nn.Module) -> int:
    """Bytes held by the 4-bit codes and their scales (buffers, so ``model.parameters()`` misses them)."""
    return sum(m.storage_bytes() for m in linear4bit_layers(model).values())


def merge_qlora(model: nn.Module) -> nn.Module:
    """Merge every QLoRA layer into its 4-bit base and unwrap it (lossy; see :func:`merge_error`)."""
    for name, layer in list(lora_layers(model).items()):
        layer.merge()
        set_module(model, name, layer.base_layer)
    return model


@torch.no_grad()
def merge_error(layer: QLoraLinear) -> dict:
    """How far the re-quantised merge is from the exact ``dequant(W) + s B A`` for one layer.

    Returns max and mean absolute weight differences and the relative Frobenius error.
    """
    base = layer.base_layer
    exact = base.weight.float() + layer.get_delta_weight().float()
    requant = nf4.fake_quantize(exact, blocksize=base.blocksize, quant_type=base.quant_type,
                                double_quant=base.offset is not None, dq_blocksize=base.dq_blocksize or 256)
    diff = requant - exact
    return {"max_abs": diff.abs().max().item(), "mean_abs": diff.abs().mean().item(),
            "relative": (diff.norm() / exact.norm()).item()}


# ----------------------------------------------------------------------------------------- the libraries
def bnb_config(double_quant: bool = True, quant_type: str = "nf4", compute_dtype=torch.float32):
    """transformers' ``BitsAndBytesConfig`` for QLoRA loading (NF4, double quantisation)."""
    from ..errors import require

    require("bitsandbytes", "4-bit loading")
    from transformers import BitsAndBytesConfig

    if quant_type not in ("nf4", "fp4"):
        raise ConfigError(f"bitsandbytes 4-bit loading supports 'nf4' and 'fp4', not {quant_type!r}.",
                          "use quant_type='nf4'.")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type,
                              bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=compute_dtype)


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = QLoraConfig
apply = apply_qlora


def expected_parameters(model: nn.Module, config: QLoraConfig) -> int:
    """Trainable numbers: LoRA's ``r (d + k)`` per target; the 4-bit base trains nothing."""
    names = find_targets(model, resolve_target_modules(model, config), method="QLoRA",
                         accept=lambda m: isinstance(m, nn.Linear), skip=config.skip_modules)
    return sum(lora_param_count(*linear_shape(model.get_submodule(n)), config.r) for n in names)


# where the methods of this module sit (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("QLoRA", "parameter", "reparameterisation", "Dettmers et al. 2023",
                "LoRA's reparameterisation on a quantised (NF4) frozen base; the quantisation "
                "saves memory, it is not what trains"),
)

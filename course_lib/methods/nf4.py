"""NF4 from scratch: 4-bit NormalFloat, blockwise absmax quantisation and double quantisation.

QLoRA (Dettmers et al., 2023, https://arxiv.org/abs/2305.14314) stores a frozen weight matrix
``W`` (shape ``(out, in)``) in 4 bits a value:

1. **Levels.** Pretrained weights are roughly normal, so the 16 levels ``q_0 < ... < q_15`` are
   quantiles of N(0, 1), rescaled to [-1, 1]: 8 positive levels at the quantiles
   ``linspace(delta, 1/2, 9)[:-1]``, 7 negative ones at ``linspace(delta, 1/2, 8)[:-1]`` (mirrored),
   and an exact zero, with ``delta = 0.9677083`` (bitsandbytes' value; it puts the outermost
   level at ``Phi^{-1}(delta)`` = 1.85 standard deviations). Each level then carries about the same
   probability mass, which is what makes the data type "information-theoretically optimal" for
   normal data.
2. **Blockwise absmax.** The flattened weight is cut into blocks of ``blocksize = 64`` values.
   Block ``b`` stores ``c_b = max |w|`` over the block (fp32) and each value becomes the index of
   the level nearest to ``w / c_b`` in [-1, 1] (ties go to the lower level). A size that is not a
   multiple of the block gets a shorter last block; an all-zero block has ``c_b = 0`` and decodes
   to zeros. Dequantisation is ``w_hat = q[idx] * c_b``.
3. **Packing.** Two 4-bit indices share a byte, the first value in the high nibble:
   ``byte = idx[2i] << 4 | idx[2i+1]`` (an odd count is padded with the code of 0).
4. **Double quantisation.** The fp32 scales cost ``32/64 = 0.5`` bits a parameter. QLoRA
   quantises them again: subtract their mean, quantise with the 8-bit *dynamic* map (blocks of
   256 scales, each with an fp32 absmax of its own). Bits per parameter:
   ``4 + 8/64 + 32/(64*256) = 4.127`` instead of ``4 + 32/64 = 4.5``.

FP4 (bitsandbytes' E2M1 table) and int4 (uniform levels ``k/7``) are here for comparison; they go
through the same blockwise code with another table of levels. Every function is checked against
``bitsandbytes.functional.quantize_4bit`` / ``dequantize_4bit`` in ``tests/test_nf4.py``: the packed
4-bit codes are byte for byte bitsandbytes'; of the 8-bit codes of double-quantised scales a small
share differ, because bitsandbytes' CPU kernel does not always pick the nearest level of the dynamic
map and this module does (:func:`nearest_scale_codes`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import ConfigError

QUANT_TYPES = ("nf4", "fp4", "int4")
NF4_OFFSET = 0.9677083


# ------------------------------------------------------------------------------ the levels ----
def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 levels (sorted, fp32, in [-1, 1]) from quantiles of the standard normal.

    ``offset`` is the outermost quantile (probability); 9 positive quantiles including 1/2 and 8
    negative ones including 1/2 are taken, the two 1/2 become the single level 0, and the set is
    divided by its largest value so that it spans exactly [-1, 1].
    """
    if not 0.5 < offset < 1.0:
        raise ConfigError(f"offset={offset} is not a probability in (0.5, 1).",
                          "pass the outermost quantile, e.g. offset=0.9677083 (bitsandbytes' value).")
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))

    def quantiles(count):  # probabilities in float32, the inverse CDF in float64, stored as float32
        return normal.icdf(torch.linspace(offset, 0.5, count)[:-1].double()).float()

    positive = quantiles(9)  # 8 values > 0
    negative = -quantiles(8)  # 7 values < 0
    levels = torch.cat([negative, torch.zeros(1), positive]).sort().values
    return levels / levels.max()


def fp4_levels() -> torch.Tensor:
    """bitsandbytes' FP4 table in code order (bit 3 = sign, 3 bits of exponent/mantissa).

    Magnitudes (times 1/6): code 0 -> 0, 1 -> 1/32 (subnormal), 2 -> 4, 3 -> 6, 4 -> 2, 5 -> 3,
    6 -> 1, 7 -> 1.5; codes 8..15 are the same with a minus sign. The levels are not sorted by code.
    """
    magnitude = torch.tensor([0.0, 1 / 32, 4.0, 6.0, 2.0, 3.0, 1.0, 1.5]) / 6.0
    return torch.cat([magnitude, -magnitude])


def int4_levels() -> torch.Tensor:
    """Symmetric uniform int4 with absmax scaling: levels ``k/7`` for k = -7..7 at code k + 8.

    Code 0 would be -8/7, outside [-1, 1]; it is clamped to -1 and never produced.
    """
    return ((torch.arange(16, dtype=torch.float32) - 8) / 7).clamp(-1, 1)


def levels_for(quant_type: str) -> torch.Tensor:
    """The 16-entry code table (value of each 4-bit code) of ``quant_type``."""
    if quant_type == "nf4":
        return nf4_levels()
    if quant_type == "fp4":
        return fp4_levels()
    if quant_type == "int4":
        return int4_levels()
    raise ConfigError(f"unknown quant_type {quant_type!r}.", f"use one of {', '.join(QUANT_TYPES)}.")


def dynamic_map(bits: int = 8) -> torch.Tensor:
    """The signed 8-bit *dynamic* data type that double quantisation uses for the scales (256 values).

    A value is ``sign * 10**e * m``: for decade ``e = -6 .. 0`` the ``2**(e+6)`` mantissas ``m`` are
    the midpoints of an even grid on [0.1, 1] (more mantissas for larger numbers), plus 0 and 1.
    This gives 2 * 127 + 2 = 256 sorted values with a relative precision that is roughly constant
    over seven decades (bitsandbytes ``create_dynamic_map(signed=True)``).
    """
    if bits != 8:
        raise ConfigError(f"dynamic_map(bits={bits}) is only defined for 8 bits here.", "call dynamic_map() with bits=8.")
    values = [0.0, 1.0]
    for decade in range(7):
        grid = torch.linspace(0.1, 1.0, 2 ** decade + 1, dtype=torch.float32)
        mantissas = (grid[:-1] + grid[1:]) / 2
        scale = 10.0 ** (decade - 6)
        values += (scale * mantissas).tolist() + (-scale * mantissas).tolist()
    return torch.tensor(sorted(values), dtype=torch.float32)


# ------------------------------------------------------------------------------ config --------
@dataclass
class QuantConfig:
    """How a weight is stored in 4 bits.

    blocksize: values sharing one absmax scale (bitsandbytes: 64 for 4-bit).
    quant_type: "nf4", "fp4" or "int4".
    double_quant: quantise the scales again (8-bit dynamic map, mean subtracted).
    dq_blocksize: scales sharing one second-level fp32 scale (bitsandbytes: 256).
    """

    blocksize: int = 64
    quant_type: str = "nf4"
    double_quant: bool = True
    dq_blocksize: int = 256

    def __post_init__(self):
        for name in ("blocksize", "dq_blocksize"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive integer.",
                                  f"use {name}={64 if name == 'blocksize' else 256} (the QLoRA default).")
        if self.quant_type not in QUANT_TYPES:
            raise ConfigError(f"unknown quant_type {self.quant_type!r}.",
                              f"use one of {', '.join(QUANT_TYPES)} (QLoRA uses 'nf4').")
        if not isinstance(self.double_quant, bool):
            raise ConfigError(f"double_quant={self.double_quant!r} must be True or False.",
                              "pass double_quant=True (QLoRA) or False.")


@dataclass
class QuantState:
    """Everything needed to dequantise: shapes, the scales, and the second-level state if nested.

    absmax: fp32 of shape (n_blocks,), or uint8 codes of the mean-centred scales when nested.
    offset, absmax2, code2, dq_blocksize: the double-quantisation state (None when not nested).
    """

    shape: tuple
    dtype: torch.dtype
    blocksize: int
    quant_type: str
    absmax: torch.Tensor
    offset: torch.Tensor | None = None
    absmax2: torch.Tensor | None = None
    code2: torch.Tensor | None = None
    dq_blocksize: int | None = None
    code: torch.Tensor = field(default=None, repr=False)

    @property
    def nested(self) -> bool:
        return self.offset is not None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def nbytes(self) -> int:
        """Bytes of the scales (the 16-entry and 256-entry tables are shared and not counted)."""
        total = self.absmax.numel() * self.absmax.element_size()
        if self.nested:
            total += self.absmax2.numel() * self.absmax2.element_size() + self.offset.numel() * 4
        return total


# ------------------------------------------------------------------------------ core ----------
def _check_tensor(x, what: str):
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{what} must be a torch.Tensor, got {type(x).__name__}.", "pass a tensor, e.g. layer.weight.data.")
    if not x.is_floating_point():
        raise ConfigError(f"{what} has dtype {x.dtype}; quantisation needs floating-point values.",
                          "pass the full-precision weight (float32, bfloat16 or float16).")
    if x.numel() == 0:
        raise ConfigError(f"{what} is empty.", "pass a tensor with at least one value.")
    if x.is_meta:
        raise ConfigError(f"{what} is on the 'meta' device: it has a shape but no values to quantise "
                          "(a model built under init_empty_weights or loaded with device_map='meta').",
                          "load the real weights first (from_pretrained without a meta device map), then quantise.")
    if not torch.isfinite(x).all():
        raise ConfigError(f"{what} contains inf or NaN; its block scales would be meaningless.",
                          "check the weights (a diverged training run?) before quantising.")


def nearest_code(scaled: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index into ``code`` of the value nearest to each entry of ``scaled`` (ties -> the lower value).

    The table may be in any order (FP4 is not sorted): sort it, bucketize against the midpoints of
    neighbours, map back to code positions.
    """
    order = torch.sort(code, stable=True).indices
    ordered = code[order]
    midpoints = (ordered[:-1] + ordered[1:]) / 2
    return order[torch.bucketize(scaled, midpoints)]


def blockwise_absmax(x: torch.Tensor, code: torch.Tensor, blocksize: int):
    """Quantise ``x`` (any shape) block by block to indices into ``code``.

    Returns ``(idx, absmax)``: ``idx`` long of shape (numel,), ``absmax`` fp32 of shape
    (ceil(numel / blocksize),). The last block may be shorter (zero padding leaves its max alone).
    Values are scaled with ``x * (1 / absmax)`` (``x / absmax`` in a short last block) as bitsandbytes
    does, so values that fall exactly between two levels break the same way.
    """
    scaled, absmax = _absmax_scaled(x, blocksize)
    return nearest_code(scaled, code.to(scaled.device)), absmax


def _absmax_scaled(x: torch.Tensor, blocksize: int):
    """``(x / absmax of its block, clamped to [-1, 1], flat; absmax per block)``, rounded as bitsandbytes rounds."""
    flat = x.detach().reshape(-1).float()
    n = flat.numel()
    blocks = torch.nn.functional.pad(flat, (0, (-n) % blocksize)).view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    safe = absmax.clamp(min=1e-38)
    scaled = blocks * (1.0 / safe)[:, None]
    if n % blocksize:  # bnb divides in the short last block: the same value up to one rounding
        scaled[-1] = blocks[-1] / safe[-1]
    return scaled.clamp(-1, 1).reshape(-1)[:n], absmax


def pack(idx: torch.Tensor, pad_code: int = 0) -> torch.Tensor:
    """Two 4-bit codes a byte, the first in the high nibble; an odd count is padded with ``pad_code``."""
    idx = idx.reshape(-1).to(torch.uint8)
    if idx.numel() % 2:
        idx = torch.cat([idx, idx.new_tensor([pad_code])])
    return (idx[0::2] << 4) | idx[1::2]


def unpack(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack`: the first ``n`` codes (long)."""
    packed = packed.reshape(-1).to(torch.uint8)
    idx = torch.stack([packed >> 4, packed & 0xF], dim=1).reshape(-1)
    return idx[:n].long()


def quantize_4bit(x: torch.Tensor, config: QuantConfig | None = None, **overrides):
    """Quantise ``x`` to packed 4-bit codes: ``(packed uint8 (ceil(numel/2),), QuantState)``.

    ``quantize_4bit(W)`` is NF4, blocksize 64, with double quantisation; override with a
    :class:`QuantConfig` or keywords (``quant_type="fp4"``, ``double_quant=False``, ...).
    The bytes equal ``bitsandbytes.functional.quantize_4bit(W, quant_type=...)`` (flattened).
    """
    config = config or QuantConfig()
    if overrides:
        config = QuantConfig(**{**config.__dict__, **overrides})
    _check_tensor(x, "the tensor to quantise")
    code = levels_for(config.quant_type)
    idx, absmax = blockwise_absmax(x, code, config.blocksize)
    zero_code = int(nearest_code(torch.zeros(1), code))
    state = QuantState(tuple(x.shape), x.dtype, config.blocksize, config.quant_type, absmax, code=code)
    if config.double_quant:
        state = double_quantize(state, config.dq_blocksize)
    return pack(idx, zero_code).to(x.device), state


def double_quantize(state: QuantState, dq_blocksize: int = 256) -> QuantState:
    """Quantise the fp32 scales of ``state``: subtract their mean, 8-bit dynamic map, blocks of 256."""
    if state.nested:
        raise ConfigError("the scales are already double-quantised.", "call double_quantize on a state made with double_quant=False.")
    absmax = state.absmax.float()
    offset = absmax.mean()
    code2 = dynamic_map()
    idx2, absmax2 = blockwise_absmax(absmax - offset, code2, dq_blocksize)
    return QuantState(state.shape, state.dtype, state.blocksize, state.quant_type, idx2.to(torch.uint8),
                      offset=offset, absmax2=absmax2, code2=code2, dq_blocksize=dq_blocksize, code=state.code)


def nearest_scale_codes(state: QuantState, absmax: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
    """Per block scale, whether its 8-bit code names a nearest level of the dynamic map (bool, ``(n_blocks,)``).

    ``absmax``: the fp32 block scales before double quantisation; ``codes``: the 8-bit codes to check,
    by default the state's own (always nearest: :func:`double_quantize` picks the nearest level), or
    e.g. bitsandbytes' ``quant_state.absmax`` for the same tensor. A code stands for
    ``(absmax - offset) / absmax2`` of its block of ``dq_blocksize`` scales. bitsandbytes' CPU kernel
    does not always pick the nearest level, so a small share of its scale codes differ from the course's
    (measured in ``benchmarks/results/nf4.json``) while the packed 4-bit codes are identical.
    """
    if not state.nested:
        raise ConfigError("the state has no double-quantised scales to check.",
                          "quantise with double_quant=True (the default) first.")
    codes = (state.absmax if codes is None else codes).reshape(-1).long().cpu()
    table = state.code2.cpu()
    scaled, _ = _absmax_scaled(absmax.float().cpu() - state.offset.cpu(), state.dq_blocksize)
    best = (table[nearest_code(scaled, table)] - scaled).abs()
    return (table[codes] - scaled).abs() <= best + 1e-7


def dequantize_absmax(state: QuantState) -> torch.Tensor:
    """The fp32 block scales: stored as is, or decoded from the double quantisation."""
    if not state.nested:
        return state.absmax.float()
    n = state.absmax.numel()
    values = state.code2.to(state.absmax.device)[state.absmax.long()]
    blocks = torch.nn.functional.pad(values, (0, (-n) % state.dq_blocksize)).view(-1, state.dq_blocksize)
    return (blocks * state.absmax2[:, None]).reshape(-1)[:n] + state.offset


def dequantize_4bit(packed: torch.Tensor, state: QuantState) -> torch.Tensor:
    """Back to a tensor of ``state.shape`` and ``state.dtype``: ``code[idx] * absmax`` per block (in fp32)."""
    if not isinstance(state, QuantState):
        raise ConfigError(f"state must be the QuantState returned by quantize_4bit, got {type(state).__name__}.",
                          "pass both outputs of quantize_4bit: dequantize_4bit(*quantize_4bit(W)).")
    n = state.numel
    if packed.numel() != (n + 1) // 2:
        raise ConfigError(f"{packed.numel()} packed bytes cannot hold {n} values (needs {(n + 1) // 2}).",
                          "pass the packed tensor and the state from the same quantize_4bit call.")
    code = (state.code if state.code is not None else levels_for(state.quant_type)).to(packed.device)
    values = code[unpack(packed, n)]
    absmax = dequantize_absmax(state).to(packed.device)
    blocks = torch.nn.functional.pad(values, (0, (-n) % state.blocksize)).view(-1, state.blocksize)
    return (blocks * absmax[:, None]).reshape(-1)[:n].reshape(state.shape).to(state.dtype)


def fake_quantize(x: torch.Tensor, config: QuantConfig | None = None, **overrides) -> torch.Tensor:
    """Quantise and dequantise: what the network sees of ``x`` after 4-bit storage."""
    return dequantize_4bit(*quantize_4bit(x, config, **overrides))


# ------------------------------------------------------------------------------ accounting ----
def bits_per_parameter(blocksize: int = 64, double_quant: bool = True, dq_blocksize: int = 256) -> float:
    """Storage cost in bits a weight: ``4 + 32/blocksize``, or ``4 + 8/blocksize + 32/(blocksize*dq_blocksize)``
    with double quantisation (4.127 for 64 and 256; the single fp32 mean is negligible)."""
    QuantConfig(blocksize=blocksize, double_quant=double_quant, dq_blocksize=dq_blocksize)
    if double_quant:
        return 4 + 8 / blocksize + 32 / (blocksize * dq_blocksize)
    return 4 + 32 / blocksize


def measured_bits_per_parameter(packed: torch.Tensor, state: QuantState) -> float:
    """Bits per weight actually stored: packed codes plus scales (and their scales)."""
    return 8 * (packed.numel() * packed.element_size() + state.nbytes()) / state.numel


def from_bnb_state(bnb_state) -> QuantState:
    """A :class:`QuantState` holding bitsandbytes' own state (to dequantise bnb's codes from scratch)."""
    nested = bool(getattr(bnb_state, "nested", False))
    return QuantState(tuple(bnb_state.shape), bnb_state.dtype, bnb_state.blocksize, bnb_state.quant_type,
                      bnb_state.absmax, offset=bnb_state.offset if nested else None,
                      absmax2=bnb_state.state2.absmax if nested else None,
                      code2=bnb_state.state2.code if nested else None,
                      dq_blocksize=bnb_state.state2.blocksize if nested else None,
                      code=levels_for(bnb_state.quant_type))


def quantization_error(x: torch.Tensor, quant_types=QUANT_TYPES, blocksize: int = 64) -> dict:
    """Mean absolute and root-mean-square error of each 4-bit type on ``x`` (no double quantisation)."""
    out = {}
    xf = x.detach().float()
    for qt in quant_types:
        err = fake_quantize(xf, quant_type=qt, blocksize=blocksize, double_quant=False) - xf
        out[qt] = {"mae": err.abs().mean().item(), "rmse": err.pow(2).mean().sqrt().item()}
    return out

"""LoReFT: low-rank linear subspace representation fine-tuning (Wu et al., 2024, arXiv:2404.03592).

ReFT leaves every weight frozen and edits *hidden representations* instead. LoReFT (the paper's eq. 2)
replaces the residual stream ``h`` (shape ``(d,)``) leaving one decoder block, at chosen positions only, by::

    Phi(h) = h + R^T (W h + b - R h)        R: (r, d) with orthonormal rows (R R^T = I_r); W: (r, d); b: (r,)

so inside the ``r``-dimensional subspace spanned by ``R``'s rows the component ``R h`` is replaced by the
learned projection ``W h + b``, and the orthogonal complement passes unchanged. Trainable numbers:
``r d`` (R) ``+ r d + r`` (W and b) ``= 2 r d + r`` for one intervened layer, whatever the sequence length.
``R``'s rows stay orthonormal through training because ``R`` is parametrised by
``torch.nn.utils.parametrizations.orthogonal`` (as in the authors' pyreft library), and ``W``, ``b`` start
as ``nn.Linear``'s default: unlike LoRA, the intervened model is not the base model at step 0. The map is
``orthogonal_map="matrix_exp"``: torch's default for a non-square matrix, Householder, keeps the signs of
``R`` as +-1 on the diagonal of the raw parameter and casts them to integers, so AdamW's decoupled weight
decay (0.01 by default) shrinks them below 1 in one step and ``R`` collapses to zero (seen with torch 2.13).

Positions follow pyreft's notation: ``"all"`` (every real token), ``"f3"`` (the first 3 real tokens of each
row), ``"l3"`` (the last 3), ``"f3+l3"`` (both). Real tokens are read from ``attention_mask`` (left or
right padding), so the wrapper is an :class:`~course_lib.methods.base.AdaptedModel`: it needs the mask on
every call. pyreft itself intervenes on the *prompt's* first and last tokens, positions its data collator
computes from the prompt length; the course's training loop and scorer pass whole ``prompt + answer``
sequences without that boundary, so lecture 08 intervenes at ``"all"`` positions of one layer.
Generation with a key-value cache is not supported (positions would be counted per decoding step).

pyreft is not installed in the course's environment (it pins its own torch and transformers), so this
module is not checked against it; ``tests/test_reft.py`` checks the defining invariants instead: the count
``2 r d + r``, ``R R^T = I`` after optimiser steps, ``Phi`` computed at the chosen positions and nowhere else
(every other hidden state unchanged), and clear errors for a rank above ``d`` or a layer the model lacks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import orthogonal

from ..errors import ConfigError
from .adapters import decoder_blocks, hidden_size_of
from .base import AdaptedModel
from .catalog import Perspective

_POSITIONS = re.compile(r"all|f(\d+)|l(\d+)|f(\d+)\+l(\d+)")


def reft_param_count(d: int, r: int) -> int:
    """Trainable numbers of one LoReFT intervention: ``R`` is ``r x d``, ``W`` is ``r x d``, ``b`` has ``r``."""
    return 2 * r * d + r


@dataclass
class ReftConfig:
    """Where and how large: ``layer`` (index of the decoder block whose output is edited), ``rank`` (``r``,
    the dimension of the edited subspace) and ``positions`` (``"all"``, ``"fN"``, ``"lN"`` or ``"fN+lM"``)."""

    layer: int = 2
    rank: int = 4
    positions: str = "all"

    def __post_init__(self):
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 0:
            raise ConfigError(f"ReftConfig.layer must be a block index >= 0, got {self.layer!r}.",
                              "use e.g. layer=2 (the residual stream leaving decoder block 2).")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ConfigError(f"ReftConfig.rank must be a positive integer, got {self.rank!r}.",
                              "use a small rank such as rank=4 (1 <= rank <= the hidden size).")
        m = _POSITIONS.fullmatch(self.positions) if isinstance(self.positions, str) else None
        if m is None or any(g is not None and int(g) == 0 for g in m.groups()):
            raise ConfigError(f"ReftConfig.positions={self.positions!r} is not understood.",
                              "use 'all', 'f3' (first 3 tokens), 'l3' (last 3) or 'f3+l3' (pyreft's notation), "
                              "with counts >= 1.")

    @property
    def first_last(self) -> tuple[int, int] | None:
        """``(first, last)`` token counts, or ``None`` for every position."""
        if self.positions == "all":
            return None
        f1, l1, f2, l2 = _POSITIONS.fullmatch(self.positions).groups()
        return int(f1 or f2 or 0), int(l1 or l2 or 0)


class LoreftIntervention(nn.Module):
    """``Phi(h) = h + R^T (W h + b - R h)`` on the last dimension of ``h`` (shape ``(..., d)``).

    ``rotate_layer.weight`` is ``R``, shape ``(r, d)``, kept with orthonormal rows by the orthogonal
    parametrisation; ``learned_source`` is ``W`` (weight ``(r, d)``) with bias ``b`` (``(r,)``).
    """

    def __init__(self, d: int, r: int):
        super().__init__()
        self.rotate_layer = orthogonal(nn.Linear(d, r, bias=False), orthogonal_map="matrix_exp")
        self.learned_source = nn.Linear(d, r)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        R = self.rotate_layer.weight
        return h + (self.learned_source(h) - h @ R.T) @ R


def position_mask(config: ReftConfig, shape: tuple[int, int], attention_mask: torch.Tensor | None = None,
                  device=None) -> torch.Tensor:
    """Boolean ``(B, T)``: where ``config.positions`` intervenes; only real tokens (``attention_mask`` 1)."""
    real = (torch.ones(shape, dtype=torch.bool, device=device) if attention_mask is None
            else attention_mask.to(device=device).bool())
    counts = config.first_last
    if counts is None:
        return real
    first, last = counts
    from_start = real.long().cumsum(1)                       # 1 at the first real token, 2 at the second, ...
    from_end = real.long().flip(1).cumsum(1).flip(1)         # 1 at the last real token, ...
    return real & ((from_start <= first) | (from_end <= last))


class _EditBlockOutput:
    """Forward hook on the intervened block: applies the intervention where ``owner``'s mask says.

    A plain object (not a closure), so that ``copy.deepcopy`` of the model carries it over to the copy's
    intervention."""

    def __init__(self, intervention: LoreftIntervention, config: ReftConfig):
        self.intervention, self.config = intervention, config

    def __call__(self, module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        where = position_mask(self.config, h.shape[:2], self.intervention.attention_mask, h.device)
        edited = torch.where(where.unsqueeze(-1), self.intervention(h).to(h.dtype), h)
        return (edited, *output[1:]) if isinstance(output, tuple) else edited


class ReftModel(AdaptedModel):
    """A frozen causal LM whose block ``config.layer`` has its output edited by a :class:`LoreftIntervention`.

    ``forward(input_ids, attention_mask, labels, ...)`` is the base model's; the mask tells the hook which
    tokens are real. The edited block is ``base_model``'s own (the hook stays with it).
    """

    def __init__(self, base_model: nn.Module, config: ReftConfig):
        super().__init__()
        d = _check(base_model, config)
        self.base_model, self.config = base_model, config
        weight = next(base_model.parameters())
        self.intervention = LoreftIntervention(d, config.rank).to(device=weight.device, dtype=weight.dtype)
        self.intervention.attention_mask = None
        blocks, _ = decoder_blocks(base_model)
        blocks[config.layer].register_forward_hook(_EditBlockOutput(self.intervention, config))

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        self.intervention.attention_mask = attention_mask
        try:
            return self.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:
            self.intervention.attention_mask = None


def _check(model: nn.Module, config: ReftConfig) -> int:
    """The hidden size ``d``; a clear error when the layer or the rank does not fit ``model``."""
    blocks, _ = decoder_blocks(model)
    if config.layer >= len(blocks):
        raise ConfigError(f"ReFT: layer {config.layer} does not exist; {type(model).__name__} has {len(blocks)} "
                          f"decoder blocks (0 to {len(blocks) - 1}).", f"use 0 <= layer <= {len(blocks) - 1}.")
    d = hidden_size_of(model)
    if config.rank > d:
        raise ConfigError(f"ReFT: rank {config.rank} is larger than the hidden size d = {d}: R cannot have more "
                          "orthonormal rows than the space has dimensions.", f"use 1 <= rank <= {d} (e.g. 4).")
    return d


def apply_reft(model: nn.Module, config: ReftConfig | None = None) -> ReftModel:
    """Freeze ``model`` and put one LoReFT intervention on the output of block ``config.layer``."""
    config = config or ReftConfig()
    if not isinstance(config, ReftConfig):
        raise ConfigError(f"apply_reft expects a ReftConfig, got {type(config).__name__}.",
                          "build one: ReftConfig(layer=2, rank=4, positions='all').")
    for p in model.parameters():
        p.requires_grad_(False)
    return ReftModel(model, config)


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = ReftConfig
apply = apply_reft


def expected_parameters(model: nn.Module, config: ReftConfig) -> int:
    """``2 r d + r`` from the hidden size alone (one intervened layer, any number of positions)."""
    return reft_param_count(_check(model, config), config.rank)


# where the method of this module sits (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("LoReFT", "function", "additive", "Wu et al. 2024",
                "edits the residual stream of one layer at chosen positions: h + R^T (W h + b - R h), R with "
                "orthonormal rows"),
)

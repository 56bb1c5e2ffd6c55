"""Full fine-tuning: the baseline every parameter-efficient method is measured against.

Every parameter trains: ``|θ|`` numbers, a full copy of the model per task (Howard & Ruder 2018;
the notes' starting point for why PEFT exists). ``train_embeddings=False`` keeps the input and output
embeddings frozen (a common way to save memory on large vocabularies).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..errors import ConfigError
from .catalog import Perspective


@dataclass
class FullFineTuningConfig:
    """``train_embeddings``: whether the input (and tied output) embedding table trains too."""

    train_embeddings: bool = True

    def __post_init__(self):
        if not isinstance(self.train_embeddings, bool):
            raise ConfigError(f"train_embeddings must be True or False, got {self.train_embeddings!r}.",
                              "use FullFineTuningConfig(train_embeddings=True).")


def _embedding_parameters(model: nn.Module) -> set[int]:
    tables = [getattr(model, f)() for f in ("get_input_embeddings", "get_output_embeddings") if hasattr(model, f)]
    return {id(p) for t in tables if t is not None for p in t.parameters()}


def apply_full(model: nn.Module, config: FullFineTuningConfig | None = None) -> nn.Module:
    """Make every parameter trainable (but the embeddings when ``train_embeddings=False``); in place."""
    config = config or FullFineTuningConfig()
    frozen = set() if config.train_embeddings else _embedding_parameters(model)
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen)
    return model


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = FullFineTuningConfig
apply = apply_full


def expected_parameters(model: nn.Module, config: FullFineTuningConfig) -> int:
    """``|θ|`` (shared tensors counted once), less the embedding tables when they stay frozen."""
    frozen = set() if config.train_embeddings else _embedding_parameters(model)
    return sum(p.numel() for p in model.parameters() if id(p) not in frozen)


# where the methods of this module sit (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("full fine-tuning", "baseline", "none", "Howard & Ruder 2018",
                "every weight trains: the baseline the other methods are measured against, not PEFT"),
)

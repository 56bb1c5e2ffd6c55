"""The one wrapper type, for the methods that change how the model is called.

Most methods change a model in place and return it (LoRA, QLoRA, BitFit, adapters, a Δh, full
fine-tuning). Prefix tuning, prompt tuning and MAM cannot: the prefix or soft prompt has to be fed
in on every call, so :func:`apply` returns an :class:`AdaptedModel` that holds the frozen
``base_model`` and its own trainable parts, and forwards calls to the base with them added.
"""
from __future__ import annotations

import torch.nn as nn

from ..errors import ConfigError


class AdaptedModel(nn.Module):
    """A frozen ``base_model`` behind trainable parameters that enter on every call."""

    base_model: nn.Module

    def trainable_parameters(self) -> int:
        """Numbers that train (prefix, soft prompt, encoders, adapters), counted on the model."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def unwrap(self) -> nn.Module:
        """The frozen base model (shared, not a copy)."""
        return self.base_model


def freeze_for_input_method(model: nn.Module, config, config_type: type, *, apply_name: str, example: str,
                            purpose: str) -> nn.Module:
    """Check ``config`` and ``model`` for a method that feeds learned vectors in at the input (prompt tuning,
    P-tuning), then freeze every parameter of ``model``; returns ``model``.

    ``example``: a config to build in the fix; ``purpose``: what the embedding table is needed for.
    """
    if not isinstance(config, config_type):
        raise ConfigError(f"{apply_name} expects a {config_type.__name__}, got {type(config).__name__}.",
                          f"build one: {example}.")
    if not hasattr(model, "get_input_embeddings") or model.get_input_embeddings() is None:
        raise ConfigError(f"{type(model).__name__} has no input embedding table to {purpose}.",
                          "pass a transformers causal LM (e.g. from course_lib.models.load_model()).")
    for param in model.parameters():
        param.requires_grad_(False)
    return model

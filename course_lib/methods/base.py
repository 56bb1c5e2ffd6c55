"""The one wrapper type, for the methods that change how the model is called.

Most methods change a model in place and return it (LoRA, QLoRA, BitFit, adapters, a Δh, full
fine-tuning). Prefix tuning, prompt tuning and MAM cannot: the prefix or soft prompt has to be fed
in on every call, so :func:`apply` returns an :class:`AdaptedModel` that holds the frozen
``base_model`` and its own trainable parts, and forwards calls to the base with them added.
"""
from __future__ import annotations

import torch.nn as nn


class AdaptedModel(nn.Module):
    """A frozen ``base_model`` behind trainable parameters that enter on every call."""

    base_model: nn.Module

    def trainable_parameters(self) -> int:
        """Numbers that train (prefix, soft prompt, encoders, adapters), counted on the model."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def unwrap(self) -> nn.Module:
        """The frozen base model (shared, not a copy)."""
        return self.base_model

"""Freeze-tuning: train only the last few decoder blocks, the oldest parameter-efficient baseline.

Fine-tuning only the top of a pretrained network goes back to transfer learning in vision; for
transformers, Lee, Tang & Lin (2019, "What Would Elsa Do? Freezing Layers During Transformer
Fine-Tuning", arXiv:1911.03090) found that fine-tuning only the last quarter of BERT's layers keeps about
90% of full fine-tuning's quality, and Howard & Ruder (2018, ULMFiT) unfreeze from the top down
for the same reason: the lower layers hold general features, the upper ones the task-specific ones.
LLaMA-Factory ships it as ``finetuning_type="freeze"``; peft has no equivalent (its
``layers_to_transform`` restricts *where an adapter goes*, not which original weights train).

For a model with ``L`` blocks ``f_1 ... f_L``, the output is ``h_L = f_L(... f_1(E x))`` and freeze-tuning
with ``k = last_layers`` trains ``θ(f_{L-k+1}), ..., θ(f_L)`` (and, with ``train_final_norm``, the final
norm's gain), everything else keeps ``θ_0``. Nothing is added, so the model is the pretrained one at
step 0 and the trained copy is a full-size model again (no module to remove afterwards: the trained
blocks *are* the base's blocks). Trainable count::

    k · |θ(block)| + (|γ_final| if train_final_norm else 0)          # |γ_final| = d for RMSNorm

The input embeddings and the (tied) ``lm_head`` stay frozen, so the label words are scored with the
pretrained output layer, as for every other method of the course.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..errors import ConfigError
from .adapters import decoder_blocks
from .catalog import Perspective


@dataclass
class FreezeTuningConfig:
    """``last_layers``: how many of the top decoder blocks train (k >= 1); ``train_final_norm``: also train the
    normalisation after the last block (``model.norm`` in Llama, ``transformer.ln_f`` in GPT-2)."""

    last_layers: int = 1
    train_final_norm: bool = True

    def __post_init__(self):
        if isinstance(self.last_layers, bool) or not isinstance(self.last_layers, int) or self.last_layers <= 0:
            raise ConfigError(f"last_layers must be a positive integer, got {self.last_layers!r}.",
                              "use e.g. FreezeTuningConfig(last_layers=1) to train the top block only.")
        if not isinstance(self.train_final_norm, bool):
            raise ConfigError(f"train_final_norm must be True or False, got {self.train_final_norm!r}.",
                              "use FreezeTuningConfig(train_final_norm=True).")


_FINAL_NORMS = ("model.norm", "transformer.ln_f")


def _blocks(model: nn.Module, config: FreezeTuningConfig) -> list[nn.Module]:
    blocks, _ = decoder_blocks(model)
    if config.last_layers > len(blocks):
        raise ConfigError(f"last_layers={config.last_layers}, but the model has only {len(blocks)} decoder blocks.",
                          f"use last_layers between 1 and {len(blocks)} ({len(blocks)} is full fine-tuning "
                          "of the blocks, embeddings frozen).")
    return list(blocks)[-config.last_layers:]


def _final_norm(model: nn.Module) -> nn.Module | None:
    for path in _FINAL_NORMS:
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    return None


def _required_norm(model: nn.Module) -> nn.Module:
    norm = _final_norm(model)
    if norm is None:
        raise ConfigError(f"no final normalisation layer found in a {type(model).__name__} "
                          f"(looked for {', '.join(_FINAL_NORMS)}).",
                          "use FreezeTuningConfig(train_final_norm=False).")
    return norm


def _trained(model: nn.Module, config: FreezeTuningConfig) -> dict[int, nn.Parameter]:
    modules = _blocks(model, config)
    if config.train_final_norm:
        modules.append(_required_norm(model))
    return {id(p): p for m in modules for p in m.parameters()}


def apply_freeze(model: nn.Module, config: FreezeTuningConfig | None = None) -> nn.Module:
    """Freeze every parameter, then unfreeze the last ``config.last_layers`` blocks (and the final norm); in place."""
    config = config or FreezeTuningConfig()
    trained = _trained(model, config)
    for p in model.parameters():
        p.requires_grad_(id(p) in trained)
    return model


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = FreezeTuningConfig
apply = apply_freeze


def expected_parameters(model: nn.Module, config: FreezeTuningConfig) -> int:
    """``k · |θ(block)|`` (+ the final norm's parameters), from the architecture; ``model`` is not changed."""
    blocks = _blocks(model, config)
    per_block = sum(p.numel() for p in blocks[0].parameters())
    norm = _required_norm(model) if config.train_final_norm else None
    return config.last_layers * per_block + (sum(p.numel() for p in norm.parameters()) if norm is not None else 0)


# where the methods of this module sit (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("freeze-tuning (last k blocks)", "parameter", "selective", "Lee, Tang & Lin 2019",
                "trains a subset of the existing weights (the top blocks), like BitFit but by depth instead of "
                "by kind; nothing is added, so nothing can be removed afterwards"),
)

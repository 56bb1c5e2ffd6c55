"""The first parameter-efficient baselines: BitFit (train only the biases) and probing (train only the head).

**BitFit** (Ben Zaken et al. 2022) freezes every weight matrix and trains only the bias terms
``b`` of ``y = W x + b``: about 0.1% of a BERT's parameters. Llama-style models (the embedded
model, SmolLM2, Llama 2) have **no biases** (``attention_bias=False``, ``mlp_bias=False``), so
BitFit as published has nothing to train. The course's decision: ``add_missing_biases=True``
(the default) gives every targeted linear layer without a bias a new bias initialised to zero,
which leaves the model's function unchanged at initialisation. This is the closest Llama analogue
of the paper's set, not the same set: on BERT, BitFit trains every bias, the LayerNorm biases
included, and the task's classification head (Ben Zaken et al. 2022, §3); RMSNorm has no bias and
the course scores label words with the frozen ``lm_head``, so here one bias per projection trains. The alternative ``train_norms=True`` also trains the RMSNorm
gains, the only vector-shaped parameters Llama has (the "norm-weights" variant); combine both or
use either. ``BitFitConfig(add_missing_biases=False)`` on a bias-free model raises an error that
says so.

**Probing** (the linear probe of Alain & Bengio 2016, as in the notes): freeze the body and train
only the output layer. Our models classify by scoring label words, so the "head" is ``lm_head``
(``hidden -> vocab``). With tied embeddings (``lm_head.weight is embed_tokens.weight``) training it
would also change the input embeddings, so :func:`apply_probing` unties it into a separate copy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import ConfigError
from .catalog import Perspective
from .targets import find_targets, is_linear, linear_shape


@dataclass
class BitFitConfig:
    """``target_modules``: names (or last name parts) of the linear layers whose bias trains;
    ``None``: every linear layer except ``lm_head``. ``add_missing_biases``: give bias-free layers a
    zero bias. ``train_norms``: also train normalisation weights (LayerNorm/RMSNorm)."""

    target_modules: tuple[str, ...] | None = None
    add_missing_biases: bool = True
    train_norms: bool = False

    def __post_init__(self):
        if isinstance(self.target_modules, str):
            self.target_modules = (self.target_modules,)
        if self.target_modules is not None and not self.target_modules:
            raise ConfigError("target_modules is empty.", "pass None for every linear layer, or names like ('q_proj',).")


def _linear_layers(model, target_modules):
    if target_modules is None:
        return {n: m for n, m in model.named_modules() if n and is_linear(m) and not n.endswith("lm_head")}
    names = find_targets(model, list(target_modules), method="BitFit", skip=["lm_head"])
    return {n: model.get_submodule(n) for n in names}


def _is_norm(module) -> bool:
    return isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()


def apply_bitfit(model: nn.Module, config: BitFitConfig | None = None) -> list[str]:
    """Freeze everything, then unfreeze the biases (adding zero ones where missing, if configured)
    and optionally the norm weights. Returns the names of the trainable parameters."""
    config = config or BitFitConfig()
    layers = _linear_layers(model, config.target_modules)
    missing = [n for n, m in layers.items() if m.bias is None]
    if missing and not config.add_missing_biases and not config.train_norms \
            and len(missing) == len(layers):
        raise ConfigError(f"the model has no biases in its linear layers ({len(missing)} layers without one, "
                          "as in every Llama-style model), so BitFit has nothing to train.",
                          "use BitFitConfig(add_missing_biases=True) to add zero-initialised biases, "
                          "or train_norms=True to train the normalisation weights instead.")
    for p in model.parameters():
        p.requires_grad_(False)
    for name, m in layers.items():
        if m.bias is None:
            if not config.add_missing_biases:
                continue
            out, _ = linear_shape(m)
            m.bias = nn.Parameter(torch.zeros(out, dtype=m.weight.dtype, device=m.weight.device))
        m.bias.requires_grad_(True)
    if config.train_norms:
        for m in model.modules():
            if _is_norm(m):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def apply_probing(model: nn.Module, untie: bool = True) -> list[str]:
    """Freeze the body; train only the output layer (``get_output_embeddings()``, i.e. ``lm_head``).

    With tied input/output embeddings and ``untie=True`` the head becomes an independent copy, so
    the body (input embeddings included) stays exactly as it was. Returns the trainable names.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ConfigError("the model has no output layer to probe.", "pass a causal LM (e.g. from load_model()).")
    inputs = model.get_input_embeddings()
    tied = inputs is not None and head.weight is inputs.weight
    if tied and not untie:
        raise ConfigError("lm_head shares its weight with the input embeddings, so training it changes the body.",
                          "call apply_probing(model, untie=True).")
    for p in model.parameters():
        p.requires_grad_(False)
    if tied:
        head.weight = nn.Parameter(head.weight.detach().clone())
        if hasattr(model.config, "tie_word_embeddings"):
            model.config.tie_word_embeddings = False
    head.weight.requires_grad_(True)
    if getattr(head, "bias", None) is not None:
        head.bias.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


# --- the method protocol (course_lib.methods.catalog) ---------------------------------------------
Config = BitFitConfig


def apply(model: nn.Module, config: BitFitConfig | None = None) -> nn.Module:
    """:func:`apply_bitfit`, returning the model (in place) like every other method."""
    apply_bitfit(model, config)
    return model


def expected_parameters(model: nn.Module, config: BitFitConfig) -> int:
    """One bias per output feature of every targeted linear layer (existing biases, and the zero ones it
    adds when ``add_missing_biases``), plus the norm weights and biases with ``train_norms``."""
    layers = _linear_layers(model, config.target_modules)
    total = sum(linear_shape(m)[0] for m in layers.values() if m.bias is not None or config.add_missing_biases)
    if config.train_norms:
        total += sum(p.numel() for m in model.modules() if _is_norm(m) for p in m.parameters(recurse=False))
    return total


# where the methods of this module sit (course_lib.methods.catalog.perspective_table)
PERSPECTIVES = (
    Perspective("BitFit", "parameter", "selective", "Ben Zaken et al. 2022",
                "trains the existing biases; on bias-free Llama models the course adds zero biases, "
                "which makes it additive there"),
    Perspective("probing", "function", "selective", "Alain & Bengio 2016",
                "the head is the function on top of a frozen body; the course retrains the existing lm_head "
                "(a selective subset), a new head would be additive"),
)

"""The peft workflow end to end, and finding ``target_modules`` for an architecture you have not seen.

What a practitioner does with the real ``peft`` library after training an adapter (lecture 04, sections 11-12):

* ``peft_model.save_pretrained(dir)`` writes only the adapter (``adapter_model.safetensors`` and
  ``adapter_config.json``); :func:`files_size` measures it against the base model's own files;
* ``PeftModel.from_pretrained(base, dir)`` (or ``AutoPeftModelForCausalLM.from_pretrained(dir)``, which loads
  the base from the ``base_model_name_or_path`` recorded in the config) gives back the same function:
  :func:`max_logit_diff` compares two models on the same inputs;
* ``load_adapter(dir, adapter_name)`` puts a second adapter on the same base, ``set_adapter(name)`` picks
  the active one; ``merge_and_unload()`` folds the active adapter into the weights for serving.

Before any of that one has to name ``target_modules``. :func:`adaptable_layers` lists a model's leaf layers
that own parameters, grouped by the last component of their name (the *suffix* peft matches: ``q_proj``
matches ``model.layers.0.self_attn.q_proj``), with their type, shapes and counts, and says which of them
peft's LoRA can wrap (``nn.Linear``, transformers' GPT-2 ``Conv1D``, ``nn.Embedding``; peft 0.21's
``peft.tuners.lora.layer.dispatch_default`` also takes ``nn.Conv1d/2d/3d`` and ``nn.MultiheadAttention``, which
the course's models do not have). :func:`peft_lora` validates the names with the course's matching rule
(:func:`course_lib.methods.targets.find_targets`, peft's rule) before calling ``get_peft_model``, so a name
the model does not have gets an error that lists the names it does have.

PiSSA (Meng et al., 2024, arXiv:2404.02948) starts LoRA from the principal part of ``W0`` instead of zero:
:func:`pissa_split` computes it from the SVD, the reference peft's ``init_lora_weights="pissa"`` is tested
against in ``tests/test_peft_workflow.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .errors import ConfigError, require
from .methods.targets import Targets, find_targets, is_conv1d, is_linear, linear_shape

#: The layer types peft's LoRA wraps that the course's architectures contain.
PEFT_LORA_TYPES = ("Linear", "Conv1D", "Embedding")


def peft_accepts(module: nn.Module) -> bool:
    """Can peft's LoRA wrap ``module``? ``nn.Linear``, GPT-2 ``Conv1D`` or ``nn.Embedding``."""
    return is_linear(module) or isinstance(module, nn.Embedding)


def _shape(module: nn.Module) -> tuple[int, ...]:
    """``(d, k) = (out, in)`` for a linear layer, ``(num_embeddings, dim)`` for an embedding, else the weight's."""
    if is_linear(module):
        return linear_shape(module)
    if isinstance(module, nn.Embedding):
        return (module.num_embeddings, module.embedding_dim)
    weight = getattr(module, "weight", None)
    return tuple(weight.shape) if isinstance(weight, torch.Tensor) else ()


@dataclass
class LayerGroup:
    """The leaf layers of one name suffix: ``suffix``, ``kind`` (type name), ``shapes`` ({shape: count}),
    ``count``, ``example`` (one full name) and ``peft_lora`` (whether peft's LoRA can wrap them)."""

    suffix: str
    kind: str
    shapes: dict
    count: int
    example: str
    peft_lora: bool

    def __str__(self) -> str:
        shapes = ", ".join(f"{'x'.join(map(str, s))}" + (f" ({n}x)" if n > 1 else "") for s, n in self.shapes.items())
        return (f"{self.suffix:<26} {self.kind:<14} {self.count:>3} x  {shapes:<24} "
                f"{'yes' if self.peft_lora else 'no':<4} e.g. {self.example}")


class TargetReport(list):
    """:func:`adaptable_layers`' answer: a list of :class:`LayerGroup`, printable as a table."""

    @property
    def accepted(self) -> list[str]:
        """The suffixes peft's LoRA can wrap: candidates for ``target_modules``."""
        return [g.suffix for g in self if g.peft_lora]

    def __str__(self) -> str:
        head = f"{'suffix (target_modules)':<26} {'type':<14} {'n':>3}    {'shape (d x k)':<24} {'peft':<4} example"
        return "\n".join([head, "-" * len(head), *map(str, self)])


def adaptable_layers(model: nn.Module) -> TargetReport:
    """Every leaf layer of ``model`` that owns parameters, grouped by name suffix (peft's ``target_modules`` unit).

    Groups that peft's LoRA can wrap come first (``peft_lora=True``), then the others (norms: parameters, but
    no LoRA layer exists for them). A suffix whose layers have different types is split by type.
    Shapes are ``(d, k) = (out_features, in_features)`` for linear layers, whatever their weight layout.
    """
    groups: dict[tuple[str, str], LayerGroup] = {}
    for name, module in model.named_modules():
        if not name or list(module.children()) or not any(True for _ in module.parameters(recurse=False)):
            continue
        suffix = name.rsplit(".", 1)[-1]
        kind = "Conv1D" if is_conv1d(module) else type(module).__name__
        group = groups.setdefault((suffix, kind), LayerGroup(suffix, kind, {}, 0, name, peft_accepts(module)))
        shape = _shape(module)
        group.shapes[shape] = group.shapes.get(shape, 0) + 1
        group.count += 1
    return TargetReport(sorted(groups.values(), key=lambda g: (not g.peft_lora, g.suffix)))


def peft_lora(model: nn.Module, target_modules: Targets, *, r: int = 8, lora_alpha: float = 16, **kwargs):
    """``get_peft_model(model, LoraConfig(...))`` after checking ``target_modules`` against the model.

    Every entry of ``target_modules`` must select a layer peft's LoRA can wrap (:func:`peft_accepts`), matched by
    peft's rule; otherwise a :class:`ConfigError` names the entry and lists the suffixes that would work
    (peft itself says only that the target modules were not found). ``"all-linear"`` is passed to peft as is. ``kwargs`` go to peft's ``LoraConfig``
    (e.g. ``init_lora_weights="pissa"``). Changes ``model`` in place, as peft does; returns the ``PeftModel``.
    """
    require("peft", "the peft workflow")
    import warnings

    from peft import LoraConfig, get_peft_model

    if target_modules != "all-linear":   # peft's shorthand: every linear layer but the output head
        find_targets(model, target_modules, method="peft LoRA", accept=peft_accepts,
                     what="layers peft's LoRA can wrap (nn.Linear, Conv1D, nn.Embedding)")
    config = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=target_modules, task_type="CAUSAL_LM", **kwargs)
    with warnings.catch_warnings():   # peft warns about tied embeddings and fan_in_fan_out; the course's models are fine
        warnings.simplefilter("ignore")
        return get_peft_model(model, config)


# --- files and logits -----------------------------------------------------------------------------
def files_size(path: str | Path) -> int:
    """Bytes of every file under ``path`` (or of ``path`` itself when it is a file)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"nothing at {path} to measure.", "save the model or adapter there first "
                                                             "(model.save_pretrained(path)).")
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_files(path: str | Path) -> dict[str, int]:
    """``{relative file name: bytes}`` under the directory ``path``, sorted by name."""
    path = Path(path)
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


@torch.no_grad()
def logits_of(model: nn.Module, inputs: dict) -> torch.Tensor:
    """``model(**inputs).logits`` in eval mode (dropout off), as float32 on the CPU."""
    was_training = model.training
    model.eval()
    out = model(**inputs).logits.float().cpu()
    model.train(was_training)
    return out


def max_logit_diff(a: nn.Module | torch.Tensor, b: nn.Module | torch.Tensor, inputs: dict | None = None) -> float:
    """Largest ``|logits_a - logits_b|`` on ``inputs``; ``a`` and ``b`` are models or logits already computed."""
    la, lb = (x if isinstance(x, torch.Tensor) else logits_of(x, inputs) for x in (a, b))
    if la.shape != lb.shape:
        raise ConfigError(f"logits of shapes {tuple(la.shape)} and {tuple(lb.shape)} cannot be compared.",
                          "run both models on the same inputs.")
    return (la.float().cpu() - lb.float().cpu()).abs().max().item()  # logits of models on two devices


# --- PiSSA ----------------------------------------------------------------------------------------
@torch.no_grad()
def pissa_split(weight: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(principal, residual)`` of ``weight`` (``(d, k)``, the ``(out, in)`` layout): ``principal = U_r S_r V_r^T``
    from the top-``r`` singular triplets, ``residual = weight - principal``.

    PiSSA (Meng et al., 2024, eq. 2-4) sets ``A = S_r^{1/2} V_r^T`` and ``B = U_r S_r^{1/2}`` so that
    ``B A = principal``, and freezes ``residual`` in place of ``W0``: the model is unchanged at init and the
    trainable part holds the directions that matter most. peft divides ``S_r`` by the LoRA scale so that
    ``scaling * B A = principal`` with any ``lora_alpha``.
    """
    if weight.dim() != 2 or isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= min(weight.shape):
        raise ConfigError(f"pissa_split needs a 2-D weight and 1 <= r <= min(d, k); got shape "
                          f"{tuple(weight.shape)} and r={r!r}.", f"use r between 1 and {min(weight.shape[-2:])}.")
    w = weight.detach().float()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    principal = u[:, :r] @ torch.diag(s[:r]) @ vh[:r]
    return principal, w - principal

"""Finding the layers a method touches, knowing their shapes, and swapping them: shared by every method.

The matching rule is peft's (``peft.tuners.tuners_utils.check_target_module_exists``):

* a **list** of names matches a module whose full name equals an entry or ends with ``"." + entry``:
  ``["q_proj"]`` matches ``model.layers.0.self_attn.q_proj`` in every block;
* a **single string** is a regular expression matched against the *whole* full name
  (``re.fullmatch``): ``"q_proj"`` alone matches nothing in a real model, ``r".*\\.q_proj"`` matches
  every ``q_proj``, ``r".*\\.(0|1)\\.self_attn\\.q_proj"`` only those of blocks 0 and 1.

A linear layer is an ``nn.Linear`` (bitsandbytes' ``Linear4bit`` is one), a GPT-2 ``Conv1D`` (weight
stored transposed, ``(in, out)``), or the course's own 4-bit :class:`~course_lib.methods.qlora.Linear4bit`
(anything with integer ``in_features`` and ``out_features`` and a packed weight). Shapes are given as
``(d, k) = (out_features, in_features)``, the convention of the LoRA paper (``W0`` is ``d x k``).
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import torch.nn as nn

from ..errors import ConfigError

Targets = Sequence[str] | str


def conv1d_class():
    """transformers' GPT-2 ``Conv1D`` class, or ``None`` where transformers is missing."""
    try:
        from transformers.pytorch_utils import Conv1D
        return Conv1D
    except ImportError:  # only nn.Linear then
        return None


def is_conv1d(module: nn.Module) -> bool:
    conv = conv1d_class()
    return conv is not None and isinstance(module, conv)


def is_linear(module: nn.Module) -> bool:
    """``nn.Linear`` or GPT-2 ``Conv1D``: the layers LoRA, adapters-as-Δh and pruning work on."""
    return isinstance(module, nn.Linear) or is_conv1d(module)


def linear_shape(module: nn.Module) -> tuple[int, int]:
    """``(d, k) = (out_features, in_features)`` of a linear layer, whatever its weight layout."""
    if is_conv1d(module):
        k, d = module.weight.shape  # Conv1D keeps its weight as (in, out)
        return int(d), int(k)
    d, k = getattr(module, "out_features", None), getattr(module, "in_features", None)
    if isinstance(d, int) and isinstance(k, int):
        return d, k
    raise ConfigError(f"{type(module).__name__} is not a linear layer with a known shape.",
                      "target nn.Linear (or GPT-2 Conv1D) layers.")


def matches(name: str, targets: Targets) -> bool:
    """Does the module called ``name`` match ``targets`` (peft's rule, see the module docstring)?"""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def linear_names(model: nn.Module, accept: Callable[[nn.Module], bool] = is_linear) -> list[str]:
    """The distinct short names of the layers ``accept`` takes, e.g. ``['down_proj', ..., 'v_proj']``."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if name and accept(m)})


def _example_name(model: nn.Module, short: str | None) -> str:
    for name, _ in model.named_modules():
        if name and (short is None or name.endswith("." + short) or name == short):
            return name
    return "model.layers.0.self_attn.q_proj"


def find_targets(model: nn.Module, targets: Targets, *, method: str = "LoRA",
                 accept: Callable[[nn.Module], bool] = is_linear, skip: Targets = (),
                 what: str = "linear layers") -> list[str]:
    """Full names of the modules of ``model`` that ``targets`` selects; every entry must select one.

    Raises :class:`ConfigError` naming the entry that selects nothing, the module that ``accept``
    refuses, or a bare string that is read as a regular expression and matches no full name.
    ``skip``: names never selected (e.g. ``lm_head``), matched by the same rule.
    """
    valid = [n for n in linear_names(model, accept) if not (skip and matches(n, skip))]
    if isinstance(targets, str):
        found = [n for n, _ in model.named_modules() if n and matches(n, targets)]
        if not found:
            short = targets if targets in valid else None
            hint = (f"{targets!r} is a short name: pass a list, target_modules=[{targets!r}], "
                    f"or a pattern over the full name such as {'.*' + re.escape('.' + targets)!r}"
                    if short else f"pass a list of short names from {valid}")
            raise ConfigError(
                f"{method}: target_modules={targets!r} is a single string, so it is read as a regular expression "
                f"that must match a module's whole name (e.g. {_example_name(model, short)!r}), and it matches none.",
                hint + ".")
    else:
        found = [n for n, _ in model.named_modules() if n and matches(n, targets)]
        missing = [t for t in targets if not any(matches(n, [t]) for n in found)]
        if missing:
            raise ConfigError(f"{method}: target module(s) {missing} not found in {type(model).__name__}.",
                              f"choose from its {what}: {valid}.")
    if skip:
        skipped = [n for n in found if matches(n, skip)]
        if skipped:
            raise ConfigError(f"{method}: target(s) {skipped[:4]} are not {what}: this method excludes {list(skip)}.",
                              f"pick among {valid}.")
    wrong = [n for n in found if not accept(model.get_submodule(n))]
    if wrong:
        raise ConfigError(f"{method}: target(s) {wrong[:4]} are {type(model.get_submodule(wrong[0])).__name__}, "
                          f"not {what}.", f"pick {what}: {valid}.")
    return found


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` where ``model.get_submodule(name)`` was."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def context_length(model) -> int | None:
    """The longest sequence the model's position embeddings cover (``max_position_embeddings`` or
    ``n_positions`` of its config), or ``None`` when the config does not say."""
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(cfg, name, None) if cfg is not None else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def check_fits(model, virtual_tokens: int, input_length: int = 0, method: str = "prefix tuning") -> None:
    """Refuse ``virtual_tokens`` + ``input_length`` positions beyond the model's context.

    A prefix or soft prompt of ``P`` tokens shifts every real token by ``P`` positions, so the model must
    cover ``P + T``; past its position table it either crashes with an index error deep inside or (with
    rotary embeddings) runs silently on positions it never saw in pretraining.
    """
    limit = context_length(model)
    if limit is None or (virtual_tokens < limit and virtual_tokens + input_length <= limit):
        return
    if virtual_tokens >= limit:
        raise ConfigError(f"{method}: {virtual_tokens} virtual tokens do not fit the model's context of {limit} "
                          "positions, and every real token comes after them.",
                          f"use num_virtual_tokens well below {limit} (e.g. 8 to {max(1, limit // 4)}).")
    raise ConfigError(f"{method}: {virtual_tokens} virtual tokens + {input_length} input tokens = "
                      f"{virtual_tokens + input_length} positions, more than the model's context of {limit}.",
                      f"shorten the inputs to at most {limit - virtual_tokens} tokens (e.g. max_length="
                      f"{limit - virtual_tokens}) or use fewer virtual tokens.")

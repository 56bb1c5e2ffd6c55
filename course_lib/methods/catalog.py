"""Every method behind one protocol, and the table the capstone loops over.

Each method module exposes the same three names:

* ``Config``: a dataclass that validates itself (a bad value raises a ``ConfigError`` with the fix);
* ``apply(model, config) -> model``: changes ``model`` in place and returns it, the frozen base plus the
  method's trainable parts; prefix tuning, prompt tuning and MAM must feed something in on every call,
  so they return the one wrapper type, :class:`~course_lib.methods.base.AdaptedModel`;
* ``expected_parameters(model, config) -> int``: the trainable count from the method's formula and
  the architecture alone, without changing ``model``.

:data:`METHODS` names each method once, in peft's vocabulary where peft has the method. Modules are
imported when a method is first used, so importing this table does no work::

    for key, method in METHODS.items():
        tuned = method.apply(copy.deepcopy(model), method.Config())
        assert count_trainable(tuned) == method.expected_parameters(model, method.Config())
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class Method:
    """One entry of :data:`METHODS`: where the method lives and how it is shown."""

    key: str
    label: str
    module: str                      # course_lib.methods.<module>
    config_name: str = "Config"
    apply_name: str = "apply"
    expected_name: str = "expected_parameters"
    paper: str = ""

    def _get(self, name: str):
        return getattr(importlib.import_module(f"{__package__}.{self.module}"), name)

    @property
    def Config(self) -> Callable:  # noqa: N802  (the config class, or a factory such as UnifiedConfig.parallel_adapter)
        return self._get(self.config_name)

    @property
    def apply(self) -> Callable:
        return self._get(self.apply_name)

    @property
    def expected_parameters(self) -> Callable[..., int]:
        return self._get(self.expected_name)


METHODS: dict[str, Method] = {m.key: m for m in (
    Method("full", "full fine-tuning", "full", paper="Howard & Ruder 2018"),
    Method("bitfit", "BitFit", "bitfit", paper="Ben Zaken et al. 2022"),
    Method("lora", "LoRA", "lora", paper="Hu et al. 2021"),
    Method("qlora", "QLoRA", "qlora", paper="Dettmers et al. 2023"),
    Method("prefix", "prefix tuning", "prefix_tuning", paper="Li & Liang 2021"),
    Method("prompt", "prompt tuning", "prompt_tuning", paper="Lester et al. 2021"),
    Method("adapter", "adapter (sequential)", "adapters", paper="Houlsby et al. 2019; Pfeiffer et al. 2021"),
    Method("parallel_adapter", "parallel adapter (s=4)", "unified", config_name="ParallelAdapterConfig",
           paper="He et al. 2022"),
    Method("mam", "MAM (prefix + parallel adapter)", "unified", config_name="MAMConfig", apply_name="apply_mam",
           expected_name="mam_parameter_count", paper="He et al. 2022"),
)}


def get_method(key: str) -> Method:
    """The :class:`Method` called ``key``; a clear error lists the keys."""
    if key not in METHODS:
        raise ConfigError(f"unknown method {key!r}.", f"use one of {list(METHODS)}.")
    return METHODS[key]

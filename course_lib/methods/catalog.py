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

Each *method* module also declares where its methods sit, as ``PERSPECTIVES``: a tuple of
:class:`Perspective` rows, one per method it holds (``bitfit`` holds BitFit and probing, ``unified`` the
parallel adapter and MAM). Support modules (``base``, ``catalog``, ``targets``, ``nf4``: the 4-bit data
type QLoRA stores its base in) declare none, so :func:`perspective_table` leaves them out by construction.
Two vocabularies, both kept:

* the lecture's (the notes, after the CS224n slides): **parameter** (change a subset or a
  re-parameterisation of the existing weights), **input** (learn extra inputs), **function** (add small
  trainable functions to the frozen network);
* the survey's (Lialin, Deshpande & Rumshisky 2023, "Scaling Down to Scale Up: A Guide to
  Parameter-Efficient Fine-Tuning", arXiv:2303.15647, Fig. 2): **additive** (new parameters: adapters and
  soft prompts), **selective** (train a subset of the existing ones), **reparameterisation** (train a
  low-rank or otherwise compact form of the update).

A method that combines two writes both joined by ``" + "`` (MAM: ``input + function``); full fine-tuning is
the ``baseline``, not a parameter-efficient method, and has no survey family (``none``).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, dataclass
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


PERSPECTIVE_NAMES = ("parameter", "input", "function")
SURVEY_FAMILIES = ("additive", "selective", "reparameterisation")
BASELINE, NO_FAMILY = "baseline", "none"


def _check_terms(value: str, allowed: tuple[str, ...], alone: str, what: str) -> None:
    parts = value.split(" + ")
    if value != alone and not (parts and all(p in allowed for p in parts) and len(set(parts)) == len(parts)):
        raise ConfigError(f"{what} {value!r} is not in the vocabulary.",
                          f"use one of {list(allowed)}, several joined by ' + ' for a combination, or {alone!r}.")


@dataclass(frozen=True)
class Perspective:
    """One row of the perspectives table: a method, where it sits, and why.

    ``perspective`` is in the lecture's vocabulary (:data:`PERSPECTIVE_NAMES`, or :data:`BASELINE`),
    ``survey`` in Lialin et al.'s (:data:`SURVEY_FAMILIES`, or :data:`NO_FAMILY` for the baseline);
    ``note`` says where a method combines two or departs from its paper.
    """

    method: str
    perspective: str
    survey: str
    paper: str
    note: str = ""

    def __post_init__(self):
        _check_terms(self.perspective, PERSPECTIVE_NAMES, BASELINE, "perspective")
        _check_terms(self.survey, SURVEY_FAMILIES, NO_FAMILY, "survey family")
        if (self.perspective == BASELINE) != (self.survey == NO_FAMILY):
            raise ConfigError(f"{self.method}: only the baseline has no survey family.",
                              f"give both perspective={BASELINE!r} and survey={NO_FAMILY!r}, or neither.")


def method_modules() -> dict[str, tuple[Perspective, ...]]:
    """Every module of :mod:`course_lib.methods` that declares ``PERSPECTIVES``, with its rows (imports them)."""
    found = {}
    for info in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
        rows = getattr(importlib.import_module(f"{__package__}.{info.name}"), "PERSPECTIVES", None)
        if rows is not None:
            found[info.name] = tuple(rows)
    return found


def perspective_table() -> list[dict[str, str]]:
    """One row per method the course ships: ``module``, ``method``, ``perspective``, ``survey``, ``paper``, ``note``.

    Generated from the modules' ``PERSPECTIVES``, sorted by perspective then module; modules that hold
    no method declare none and do not appear.
    """
    rows = [{"module": name, **asdict(row)} for name, rows in method_modules().items() for row in rows]
    return sorted(rows, key=lambda r: (r["perspective"], r["module"], r["method"]))


def get_method(key: str) -> Method:
    """The :class:`Method` called ``key``; a clear error lists the keys."""
    if key not in METHODS:
        raise ConfigError(f"unknown method {key!r}.", f"use one of {list(METHODS)}.")
    return METHODS[key]

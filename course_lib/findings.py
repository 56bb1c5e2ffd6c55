"""Findings: sentences about a lecture's results that hold only when its own numbers say so.

A lecture's prose must never state more than its output shows. Instead of writing "LoRA matches
full fine-tuning" into a Markdown cell, a notebook builds a :class:`Finding` from the numbers a cell
just printed: the claim is rendered when its condition holds, and otherwise the finding says what was
measured instead. Every finding carries the measurement it rests on, so the reader can check it::

    from course_lib import findings as F
    F.show(F.finding("accuracy rises with model size", F.increasing([0.3, 0.9, 0.95]),
                     measured="k=8: xs 30%, s 90%, m 95%",
                     otherwise="accuracy does not rise monotonically with model size"))

The helpers below are the conditions lectures use: :func:`increasing`, :func:`separated` (two
measurements whose spreads do not overlap), :func:`at_ceiling`, :func:`spread` and
:func:`entropy_bits`. Importing this module does no work.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from .errors import ConfigError


@dataclass(frozen=True)
class Finding:
    """One sentence about a result: ``claim`` if ``holds``, else ``otherwise``; ``measured`` always shown."""

    claim: str
    holds: bool
    measured: str
    otherwise: str

    @property
    def text(self) -> str:
        """The sentence to show: the claim or the fallback, followed by the measurement in parentheses."""
        sentence = self.claim if self.holds else self.otherwise
        sentence = sentence[:1].upper() + sentence[1:]
        return f"{sentence.rstrip('.')} (measured: {self.measured})." if self.measured else f"{sentence.rstrip('.')}."

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def finding(claim: str, holds: bool, measured: str = "", otherwise: str | None = None) -> Finding:
    """A :class:`Finding`; ``otherwise`` defaults to "Not shown by this run: <claim>"."""
    if not isinstance(claim, str) or not claim.strip():
        raise ConfigError(f"a finding needs a non-empty claim, got {claim!r}",
                          "pass the sentence to render when the condition holds")
    if not isinstance(holds, bool):
        # numpy and one-element torch booleans are accepted; a list or a string is a mistake
        if type(holds).__name__ not in ("bool", "bool_", "Tensor") or getattr(holds, "ndim", 0) != 0:
            raise ConfigError(f"holds must be a bool, got {type(holds).__name__} {holds!r}",
                              "pass the result of a comparison, e.g. holds=a > b")
        holds = bool(holds)
    return Finding(claim, holds, measured, otherwise if otherwise is not None else f"not shown by this run: {claim}")


@dataclass(frozen=True)
class Report:
    """Several findings shown as one Markdown list (under an optional bold title)."""

    findings: tuple[Finding, ...]
    title: str = ""

    @property
    def text(self) -> str:
        lines = [f"**{self.title}**", ""] if self.title else []
        return "\n".join(lines + [f"* {f.text}" for f in self.findings])

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def report(*findings: Finding, title: str = "") -> Report:
    """Bundle findings for display; in a notebook the returned object renders as Markdown."""
    for f in findings:
        if not isinstance(f, Finding):
            raise ConfigError(f"report() takes Finding objects, got {type(f).__name__}",
                              "build each one with findings.finding(claim, holds, measured, otherwise)")
    return Report(tuple(findings), title)


def show(*findings: Finding, title: str = "") -> None:
    """Display the findings as Markdown (IPython) or print them (a plain interpreter).

    Returns nothing, so a notebook cell that ends with ``show(...)`` renders the findings once; use
    :func:`report` to keep them as an object.
    """
    rep = report(*findings, title=title)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
        if get_ipython() is not None:
            display(Markdown(rep.text))
            return
    except ImportError:
        pass
    print(rep.text)


# --- conditions on measured numbers ---------------------------------------------------------------

def _numbers(values: Iterable[float], what: str) -> list[float]:
    out = [float(v) for v in values]
    if not out or any(math.isnan(v) for v in out):
        raise ConfigError(f"{what} needs at least one number and no NaN, got {out}",
                          "pass the measured values (accuracies, milliseconds, ...) as a list")
    return out


def increasing(values: Sequence[float], tolerance: float = 0.0) -> bool:
    """True when each value is at least the previous one minus ``tolerance`` and the last exceeds the first."""
    v = _numbers(values, "increasing()")
    return len(v) > 1 and all(b >= a - tolerance for a, b in zip(v, v[1:])) and v[-1] > v[0]


def spread(samples: Iterable[float]) -> tuple[float, float, float]:
    """(median, lowest, highest) of repeated measurements."""
    v = _numbers(samples, "spread()")
    return statistics.median(v), min(v), max(v)


def separated(a: Iterable[float], b: Iterable[float]) -> int:
    """+1 if every sample of ``a`` exceeds every sample of ``b``, -1 if the reverse, 0 if the ranges overlap.

    A difference between two noisy measurements is only claimed when their ranges (over seeds or
    repeats) do not overlap; a single sample per side has no spread and is compared as is.
    """
    a, b = _numbers(a, "separated()"), _numbers(b, "separated()")
    if min(a) > max(b):
        return 1
    if min(b) > max(a):
        return -1
    return 0


def at_ceiling(accuracies: Iterable[float], ceiling: float = 0.97) -> bool:
    """True when any accuracy (a fraction in [0, 1]) reaches ``ceiling``: the task cannot rank those runs."""
    v = _numbers(accuracies, "at_ceiling()")
    if any(x < 0 or x > 1 for x in v):
        raise ConfigError(f"accuracies must be fractions in [0, 1], got {v}", "divide percentages by 100")
    return max(v) >= ceiling


def entropy_bits(frequencies: Iterable[float]) -> float:
    """Shannon entropy in bits of a distribution given as counts or frequencies (zeros are skipped)."""
    v = _numbers(frequencies, "entropy_bits()")
    if any(x < 0 for x in v) or sum(v) <= 0:
        raise ConfigError(f"frequencies must be non-negative with a positive sum, got {v}",
                          "pass counts or frequencies of each code")
    total = sum(v)
    return -sum(p / total * math.log2(p / total) for p in v if p > 0)


def pct(x: float, digits: int = 0) -> str:
    """A fraction as a percentage string: ``pct(0.934) == '93%'``."""
    return f"{100 * float(x):.{digits}f}%"

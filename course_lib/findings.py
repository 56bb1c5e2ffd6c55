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

Checking a lecture against its findings
---------------------------------------
:func:`show` (and a :class:`Report` or :class:`Finding` left as a cell's value) displays the Markdown
text together with a machine-readable copy under the MIME type :data:`MIME_TYPE`: every finding's claim,
``holds``, measurement, fallback, the text shown and its ``key``. :func:`check_notebook` reads an
executed notebook and returns every contradiction between what it says and what it measured:

* a finding whose shown text is not the one its condition selects (the claim when it holds, else the
  fallback), e.g. an output edited by hand or a stale copy;
* prose that states a result the run did not show: a Markdown cell that cites a finding with the
  comment ``<!-- finding: KEY -->`` (invisible when rendered) while that finding does not hold, or
  cites a key that no finding of the run has; and a Markdown cell that repeats, word for word, the
  claim of a finding that does not hold.

``tests/test_notebooks.py`` runs it on every executed lecture, so a new finding is checked by
adding it to a lecture, without touching the test.
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from .errors import ConfigError

#: The MIME type under which :func:`show` records its findings in a notebook's output, next to the Markdown.
MIME_TYPE = "application/vnd.course.findings+json"

#: How a Markdown cell says that a sentence relies on a finding of the run: ``<!-- finding: KEY -->``.
CITATION = re.compile(r"<!--\s*finding:\s*([A-Za-z0-9_.\-]+)\s*-->")
_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class Finding:
    """One sentence about a result: ``claim`` if ``holds``, else ``otherwise``; ``measured`` always shown."""

    claim: str
    holds: bool
    measured: str
    otherwise: str
    key: str = ""   # the name prose cites it by, ``<!-- finding: KEY -->`` (empty: not cited)

    @property
    def text(self) -> str:
        """The sentence to show: the claim or the fallback, followed by the measurement in parentheses."""
        return render(self.claim if self.holds else self.otherwise, self.measured)

    def record(self) -> dict:
        """The machine-readable form stored under :data:`MIME_TYPE`: the fields and the text shown."""
        return {**asdict(self), "text": self.text}

    def _repr_markdown_(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return report(self)._repr_mimebundle_(include, exclude)

    def __str__(self) -> str:
        return self.text


def render(sentence: str, measured: str) -> str:
    """A finding's sentence as shown: capitalised, then the measurement in parentheses, then a full stop."""
    sentence = sentence[:1].upper() + sentence[1:]
    return f"{sentence.rstrip('.')} (measured: {measured})." if measured else f"{sentence.rstrip('.')}."


def finding(claim: str, holds: bool, measured: str = "", otherwise: str | None = None, *, key: str = "") -> Finding:
    """A :class:`Finding`; ``otherwise`` defaults to "Not shown by this run: <claim>".

    ``key`` names the finding for prose that relies on it: a Markdown cell containing
    ``<!-- finding: KEY -->`` states the claim as a result of the lecture, and :func:`check_notebook`
    fails the lecture when that finding does not hold in the executed notebook.
    """
    if not isinstance(claim, str) or not claim.strip():
        raise ConfigError(f"a finding needs a non-empty claim, got {claim!r}",
                          "pass the sentence to render when the condition holds")
    if key and not _KEY.match(key):
        raise ConfigError(f"a finding's key must be letters, digits, '.', '_' or '-', got {key!r}",
                          "use a short slug such as key='lora-vs-full'")
    if not isinstance(holds, bool):
        # numpy and one-element torch booleans are accepted; a list or a string is a mistake
        if type(holds).__name__ not in ("bool", "bool_", "Tensor") or getattr(holds, "ndim", 0) != 0:
            raise ConfigError(f"holds must be a bool, got {type(holds).__name__} {holds!r}",
                              "pass the result of a comparison, e.g. holds=a > b")
        holds = bool(holds)
    return Finding(claim, holds, measured, otherwise if otherwise is not None else f"not shown by this run: {claim}", key)


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

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """Markdown for the reader, plain text for a terminal, and the findings for :func:`check_notebook`."""
        return {"text/markdown": self.text, "text/plain": self.text,
                MIME_TYPE: {"title": self.title, "findings": [f.record() for f in self.findings]}}

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
        from IPython.display import display
        if get_ipython() is not None:
            display(rep._repr_mimebundle_(), raw=True)
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


def separated(a: Iterable[float], b: Iterable[float], gap: float = 0.0) -> int:
    """+1 if every sample of ``a`` exceeds every sample of ``b`` by more than ``gap``, -1 if the reverse, 0 otherwise.

    A difference between two noisy measurements is only claimed when their ranges (over seeds or
    repeats) do not overlap; a single sample per side has no spread and is compared as is. ``gap``: how far
    apart the ranges must be, e.g. the sampling noise of the evaluation items (:func:`binomial_margin`), so that
    a one-item difference between the closest seeds decides nothing.
    """
    a, b = _numbers(a, "separated()"), _numbers(b, "separated()")
    if min(a) > max(b) + gap:
        return 1
    if min(b) > max(a) + gap:
        return -1
    return 0


def binomial_margin(n_items: int, z: float = 2.0) -> float:
    """How far apart two accuracies measured on ``n_items`` items each must be before a run may rank them.

    ``z`` standard errors of the difference of two independent proportions at their widest (p = 1/2):
    ``z * sqrt(1 / (2 n))``, so 0.20 (20 points) on 50 items and 0.09 on 250. A smaller difference is
    within the sampling noise of the items drawn. Samples of one run, not seeds: use :func:`separated`
    where several seeds ran.
    """
    if not isinstance(n_items, int) or isinstance(n_items, bool) or n_items < 1:
        raise ValueError(f"binomial_margin(): n_items={n_items!r} must be a whole number of items >= 1")
    return z * math.sqrt(1.0 / (2 * n_items))


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


# --- checking an executed notebook against its findings --------------------------------------------

def _normalise(text: str) -> str:
    return " ".join(text.lower().replace("*", "").split()).rstrip(".")


def notebook_findings(nb) -> list[dict]:
    """Every finding an executed notebook recorded (:data:`MIME_TYPE` outputs), in order, with its cell index."""
    out = []
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
            if MIME_TYPE in data:
                shown = data.get("text/markdown", "")
                shown = shown if isinstance(shown, str) else "".join(shown)   # nbformat's JSON splits lines
                out += [{**f, "cell": index, "shown": shown} for f in data[MIME_TYPE]["findings"]]
    return out


def check_notebook(nb) -> list[str]:
    """Contradictions between an executed notebook's text and its findings; an empty list when there are none.

    ``nb`` is the notebook as read by ``nbformat.read`` (or ``json.load``). See the module docstring for
    what is checked. A notebook without findings and without citations passes.
    """
    problems, found = [], notebook_findings(nb)
    by_key: dict[str, dict] = {}
    for f in found:
        where = f"cell {f['cell']}"
        expected = render(f["claim"] if f["holds"] else f["otherwise"], f["measured"])
        if f["text"] != expected or expected not in f["shown"]:
            problems.append(f"{where}: the finding {f['claim']!r} shows {f['shown']!r}, but its condition "
                            f"({'holds' if f['holds'] else 'does not hold'}) selects {expected!r}")
        if f.get("key"):
            if f["key"] in by_key:
                problems.append(f"{where}: two findings have the key {f['key']!r}; prose could cite either")
            by_key[f["key"]] = f
    for index, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for key in CITATION.findall(source):
            if key not in by_key:
                problems.append(f"cell {index}: the prose cites the finding {key!r}, which no finding of this run has "
                                f"(keys: {', '.join(sorted(by_key)) or 'none'})")
            elif not by_key[key]["holds"]:
                f = by_key[key]
                problems.append(f"cell {index}: the prose relies on {f['claim']!r} (finding {key!r}), which this run "
                                f"does not show: {f['text']}")
        prose = _normalise(CITATION.sub("", source))
        for f in found:
            if not f["holds"] and len(f["claim"]) >= 20 and _normalise(f["claim"]) in prose:
                problems.append(f"cell {index}: the prose states {f['claim']!r}, which the finding in cell {f['cell']} "
                                f"does not show: {f['text']}")
    return problems

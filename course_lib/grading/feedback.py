"""The feedback preprocessor: learners see their score and the assertion message of every failed test,
never the hidden tests nor a traceback (whose frames would quote hidden test lines).

nbgrader's own feedback shows the autograded notebook as it ran, hidden tests included (by design).
``nbgrader_config.py`` puts :class:`StripHiddenTests` in ``GenerateFeedback.preprocessors``.

Learner code runs in the same kernel as the tests, so it can read the test cell that is calling it
(``get_ipython().user_ns["In"][-1]``, ``inspect``, the history) and print it: the hidden tests would then
come back in the feedback as an *output*. Every output (streams, rich displays, error messages) that
quotes a line of a hidden test or a hidden-test marker is therefore replaced by a notice saying why.
"""
from __future__ import annotations

import json

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor

from .notebook import HIDDEN_BEGIN, HIDDEN_END, MARKER_LIKE, hidden_secrets, strip_region

HIDDEN_PLACEHOLDER = "# (hidden tests are not shown)"
WITHHELD = ("[output not shown in feedback: it quoted the hidden tests, which stay hidden. Your notebook "
            "printed test code instead of its own results.]\n")


def short_error(output) -> str:
    """``ename: evalue`` of an error output, the only part of it a learner gets back."""
    return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")


def output_text(output) -> str:
    """All the text an output would show: a stream, every textual mime type of a display, an error."""
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    if output.get("output_type") == "error":
        return short_error(output) + "\n" + "\n".join(output.get("traceback", []))
    parts = []
    for mime, value in (output.get("data") or {}).items():
        if mime.startswith("text/") or mime.endswith(("json", "javascript")):
            parts.append(value if isinstance(value, str) else json.dumps(value))
    return "\n".join(parts)


def quotes_hidden(text: str, secrets: set[str]) -> bool:
    """Whether ``text`` contains a hidden-test line or anything that looks like a hidden-test marker."""
    if any("hidden" in m.group(0).lower() or "test" in m.group(0).lower() for m in MARKER_LIKE.finditer(text)):
        return True
    return any(s in text for s in secrets)


class StripHiddenTests(NbGraderPreprocessor):
    """Remove hidden-test regions from cell sources, reduce every traceback to its last line, and withhold
    any output that quotes a hidden test."""

    def preprocess(self, nb, resources):
        self._secrets = hidden_secrets(nb)  # the autograded notebook holds the hidden tests it ran
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            cell.source = strip_region(cell.source, HIDDEN_BEGIN, HIDDEN_END, HIDDEN_PLACEHOLDER)
            secrets = getattr(self, "_secrets", set())
            outputs = []
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [short_error(out)]
                if quotes_hidden(output_text(out), secrets):
                    out = new_output("stream", name="stdout", text=WITHHELD)
                outputs.append(out)
            cell["outputs"] = outputs
        return cell, resources

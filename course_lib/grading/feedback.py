"""The feedback preprocessor: learners see their score and the assertion message of every failed test,
never the hidden tests nor a traceback (whose frames would quote hidden test lines).

nbgrader's own feedback shows the autograded notebook as it ran, hidden tests included (by design).
``nbgrader_config.py`` puts :class:`StripHiddenTests` in ``GenerateFeedback.preprocessors``.
"""
from __future__ import annotations

from nbgrader.preprocessors import NbGraderPreprocessor

from .notebook import HIDDEN_BEGIN, HIDDEN_END, strip_region

HIDDEN_PLACEHOLDER = "# (hidden tests are not shown)"


def short_error(output) -> str:
    """``ename: evalue`` of an error output, the only part of it a learner gets back."""
    return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")


class StripHiddenTests(NbGraderPreprocessor):
    """Remove hidden-test regions from cell sources and reduce every traceback to its last line."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            cell.source = strip_region(cell.source, HIDDEN_BEGIN, HIDDEN_END, HIDDEN_PLACEHOLDER)
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [short_error(out)]
        return cell, resources

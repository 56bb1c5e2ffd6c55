"""A test cell scores by its asserts alone: what it writes to stderr is shown, not counted as a failure.

nbgrader scores a test cell 0 when any of its outputs is an error *or a stderr stream*
(``nbgrader.utils.determine_grade``). A correct answer that logs, warns, or draws a tqdm bar when a test
calls it would lose the whole part, with no message saying why: unfair to an honest learner (issue 19).
The course's tests fail by raising (an ``assert`` with a message), so stderr carries no verdict.

:class:`StderrIsOutput` runs in ``Autograde.autograde_preprocessors`` right after ``Execute`` (see
``nbgrader_config.py``): in graded test cells it turns each stderr stream into a stdout stream that
starts with :data:`LABEL`, so the learner still sees it in the feedback and only an error costs points.
Other cells keep their stderr as it was. ``course check`` judges wrong answers by the same rule
(:func:`course_lib.grading.checker.judge`).
"""
from __future__ import annotations

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor

from .notebook import is_test

LABEL = "[stderr, not graded] "


def relabel(output):
    """A stderr stream as a labelled stdout stream; any other output unchanged."""
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        text = "".join(LABEL + line for line in str(output.get("text", "")).splitlines(keepends=True))
        return new_output("stream", name="stdout", text=text)
    return output


class StderrIsOutput(NbGraderPreprocessor):
    """In graded test cells, stderr becomes labelled stdout: shown to the learner, never scored."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and is_test(cell):
            cell["outputs"] = [relabel(out) for out in cell.get("outputs", [])]
        return cell, resources

"""Intake of a submission (course_lib/grading/intake.py): the grading structure comes from the release,
whatever the learner did to the notebook's JSON, and every change is reported to that learner."""
import copy
from pathlib import Path

import nbformat
import pytest

from course_lib.grading.intake import normalize
from course_lib.grading.notebook import grade_id, is_solution, is_test, nbgrader_meta

RELEASE = Path(__file__).resolve().parents[1] / "exercises" / "00_warmup" / "00_warmup.ipynb"


@pytest.fixture
def release():
    return nbformat.read(RELEASE, as_version=4)


def _structure(nb):
    return [(c.cell_type, grade_id(c), nbgrader_meta(c)) for c in nb.cells if nbgrader_meta(c)]


def _answered(release):
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = "answer = 1  # the learner's own code"
    return nb


def test_a_clean_submission_is_unchanged(release):
    nb = _answered(release)
    out, notes = normalize(nb, release)
    assert notes == [] and out == nb and out is not nb


def test_edited_points_and_flags_are_restored_and_reported(release):
    nb = _answered(release)
    test = next(c for c in nb.cells if is_test(c))
    test.metadata.nbgrader["points"] = 100
    answer = next(c for c in nb.cells if is_solution(c))
    answer.metadata.nbgrader["grade"], answer.metadata.nbgrader["points"] = True, 5
    out, notes = normalize(nb, release)
    assert _structure(out) == _structure(release)
    assert len(notes) == 2 and "points 100 -> " in notes[0] + notes[1] and "grade True -> False" in notes[0] + notes[1]
    assert [c.source for c in out.cells if is_solution(c)] == [c.source for c in nb.cells if is_solution(c)]
    assert test.metadata.nbgrader["points"] == 100  # the submission itself is not modified


def test_invented_and_duplicated_graded_cells_earn_nothing(release):
    nb = _answered(release)
    test = next(c for c in nb.cells if is_test(c))
    fake = nbformat.v4.new_code_cell("print('free points')", metadata={"nbgrader": {
        "grade": True, "grade_id": "bonus_tests", "points": 50, "locked": True, "solution": False, "schema_version": 3}})
    nb.cells.insert(3, fake)
    nb.cells.append(copy.deepcopy(test))
    out, notes = normalize(nb, release)
    assert _structure(out) == _structure(release)
    assert len(out.cells) == len(release.cells) + 2   # both stay, as ordinary cells
    assert any("('bonus_tests') is not a cell of the release" in n for n in notes)
    assert any(f"('{grade_id(test)}') repeats a cell" in n for n in notes)


def test_deleted_cells_come_back_in_place(release):
    nb = _answered(release)
    first_test = next(i for i, c in enumerate(nb.cells) if is_test(c))
    last_answer = max(i for i, c in enumerate(nb.cells) if is_solution(c))
    removed = [grade_id(nb.cells[i]) for i in (first_test, last_answer)]
    for i in sorted((first_test, last_answer), reverse=True):
        del nb.cells[i]
    nb.cells[0].cell_type = "markdown" if nb.cells[0].cell_type == "code" else nb.cells[0].cell_type
    out, notes = normalize(nb, release)
    assert [grade_id(c) for c in out.cells if nbgrader_meta(c)] == [grade_id(c) for c in release.cells if nbgrader_meta(c)]
    back = next(c for c in out.cells if grade_id(c) == removed[1])
    assert back.source == next(c for c in release.cells if grade_id(c) == removed[1]).source  # blank again
    assert any(f"{removed[0]!r} was missing" in n for n in notes)
    assert any(f"{removed[1]!r} was missing" in n and "scores 0" in n for n in notes)


def test_kernelspec_and_cell_type_edits_are_undone(release):
    nb = _answered(release)
    nb.metadata["kernelspec"] = {"name": "evil", "display_name": "Evil", "language": "python"}
    answer = next(c for c in nb.cells if is_solution(c))
    answer.cell_type = "markdown"
    del answer["outputs"], answer["execution_count"]
    out, notes = normalize(nb, release)
    assert out.metadata["kernelspec"] == release.metadata["kernelspec"]
    restored = next(c for c in out.cells if grade_id(c) == grade_id(answer))
    assert restored.cell_type == "code" and restored.outputs == [] and restored.source == answer.source
    nbformat.validate(out)
    assert any("kernelspec" in n for n in notes) and any("grading metadata was edited" in n for n in notes)

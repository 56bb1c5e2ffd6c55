"""The wrong-answer banks derive their mistakes from the solution notebooks instead of keeping retyped copies.

A bank builds each part's correct answer with ``solution(cell)`` (``tests/wrong_answers/_edits.py``) and edits it.
A retyped copy of an answer (a string constant that repeats a function of a solution cell: its ``def``/``class``
line and most of its lines) drifts from the solution unnoticed, so that a "mistake" tests another code than the
learner's; this test finds such constants. No notebook is executed.
"""
from __future__ import annotations

import ast
import re
import runpy
from pathlib import Path

import nbformat
import pytest

from course_lib.grading.notebook import grade_id, is_solution, solution_body

ROOT = Path(__file__).resolve().parents[1]
BANKS = sorted(p.stem for p in (ROOT / "tests" / "wrong_answers").glob("[0-9]*.py"))
MIN_LINES = 3       # a constant shorter than this is an edit's anchor or replacement, not a copy of an answer
MOSTLY = 0.6        # share of a constant's lines found in one answer cell that makes it a copy of that cell
SLOT = re.compile(r"\{\w+\}")  # a str.format slot: a template line that is not the solution's is not counted


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def answer_cells(assignment: str) -> dict[str, str]:
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    return {grade_id(c): solution_body(c.source) for c in nb.cells if is_solution(c)}


def retyped_copies(bank_source: str, cells: dict[str, str]) -> list[str]:
    """The string constants of ``bank_source`` that retype (part of) an answer cell: each has at least MIN_LINES
    code lines, one of them a ``def``/``class`` line of the cell, and at least MOSTLY of them are lines of it
    (a template's lines with a ``{slot}`` are left out of the count)."""
    found = []
    for node in ast.walk(ast.parse(bank_source)):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        for cell, source in cells.items():
            known = set(_lines(source))
            lines = [ln for ln in _lines(node.value) if ln in known or not SLOT.search(ln)]
            if len(lines) < MIN_LINES:
                continue
            heads = [ln for ln in lines if ln.startswith(("def ", "class ")) and ln in known]
            share = sum(ln in known for ln in lines) / len(lines)
            if heads and share >= MOSTLY:
                found.append(f"line {node.lineno}: a retyped copy of {cell!r} ({heads[0]!r}, {share:.0%} of its "
                             "lines are the solution's)")
    return found


@pytest.mark.parametrize("assignment", BANKS)
def test_bank_keeps_no_retyped_copy_of_the_solution(assignment):
    source = (ROOT / "tests" / "wrong_answers" / f"{assignment}.py").read_text()
    problems = retyped_copies(source, answer_cells(assignment))
    assert not problems, (f"tests/wrong_answers/{assignment}.py: " + "; ".join(problems)
                          + ". Fix: build the correct answer with solution(cell) and derive the mistake with edit(...).")


def test_a_retyped_copy_is_found_and_a_derived_mistake_is_not():
    cells = answer_cells("00_warmup")
    step = cells["step_answer"]
    # what the banks used to do: the answer typed again (here without its docstring), then edited
    body = "\n".join(ln for ln in step.splitlines() if '"""' not in ln)
    retyped = f"_STEP_OK = {body!r}\nWRONG = [edit(_STEP_OK, 'loss.item()', 'loss')]\n"
    assert retyped_copies(retyped, cells) and "'step_answer'" in retyped_copies(retyped, cells)[0]
    # a template of the answer with slots for the mistakes is a retyped copy too
    template = body.replace("    optimizer.step()", "    {step}").replace("    loss.backward()", "    {backward}")
    assert retyped_copies(f"_STEP = {template!r}\n", cells)
    # the same mistake derived from the solution, and an edit whose anchor spans two lines
    derived = ("_STEP_OK = solution('step_answer')\n"
               "WRONG = [edit(_STEP_OK, 'loss.item()', 'loss'),\n"
               "         edit(_STEP_OK, '    loss.backward()\\n    optimizer.step()\\n', '')]\n")
    assert retyped_copies(derived, cells) == []
    # another implementation written out (shares the def line only) is not a copy
    other = "CODE = '''def count_trainable_parameters(model):\n    n = 0\n    for t in model.state_dict().values():\n" \
            "        n += t.numel()\n    return n\n'''\n"
    assert retyped_copies(other, cells) == []


def test_solution_returns_the_cell_course_check_substitutes_and_names_the_answer_cells():
    shared = runpy.run_path(str(ROOT / "tests" / "wrong_answers" / "_edits.py"))
    solution = shared["solutions_of"](str(ROOT / "tests" / "wrong_answers" / "00_warmup.py"))
    cells = answer_cells("00_warmup")
    assert solution("step_answer") == cells["step_answer"]
    assert "### BEGIN SOLUTION" not in solution("step_answer") and "optimizer.step()" in solution("step_answer")
    with pytest.raises(KeyError, match="answer cells: load_answer, count_answer, step_answer"):
        solution("step_tests")

"""Static checks of an nbgrader source notebook: the mechanical conventions of solutions/README.md.

Each finding names the assignment, the cell, what is wrong and how to fix it.
"""
from __future__ import annotations

import ast
from pathlib import Path

from .audit import audit, forbidden_names
from .notebook import (HIDDEN_BEGIN, HIDDEN_END, MARKER_LIKE, MARKERS, SOLUTION_BEGIN, SOLUTION_END, grade_id,
                       is_locked, is_solution, is_test, nbgrader_meta, points)

# Comparison helpers a learner can monkeypatch; tests use the names captured in the `references` cell.
PATCHABLE = {
    ("torch", "allclose"), ("torch", "equal"), ("torch", "isclose"), ("torch", "testing"),
    ("np", "allclose"), ("np", "isclose"), ("np", "array_equal"), ("np", "testing"),
    ("numpy", "allclose"), ("numpy", "isclose"), ("numpy", "array_equal"), ("numpy", "testing"),
    ("math", "isclose"),
}
IGNORED_FILES = {".ipynb_checkpoints", "__pycache__", ".DS_Store"}
MIN_PARTS = 3


def _where(assignment: str, cell_index: int, cell) -> str:
    gid = grade_id(cell)
    return f"{assignment}: cell {cell_index}" + (f" ({gid})" if gid else "")


def lint_markers(assignment: str, nb) -> list[str]:
    """Marker spelling and placement. A misspelled marker is released verbatim by nbgrader."""
    problems = []
    for i, cell in enumerate(nb.cells):
        where = _where(assignment, i, cell)
        stack = []
        for n, line in enumerate(cell.source.splitlines(), 1):
            text = line.strip()
            if text in MARKERS:
                if text in (SOLUTION_BEGIN, SOLUTION_END) and not is_solution(cell):
                    problems.append(f"{where}, line {n}: {text!r} in a cell that is not an answer cell. "
                                    "Fix: solution markers belong in cells with nbgrader solution=True.")
                if text in (HIDDEN_BEGIN, HIDDEN_END) and not is_test(cell):
                    problems.append(f"{where}, line {n}: {text!r} in a cell that is not a graded test cell; "
                                    "nbgrader would release it verbatim. Fix: move hidden tests into a test cell.")
                if text.startswith("### BEGIN"):
                    if stack:
                        problems.append(f"{where}, line {n}: {text!r} opens a region inside {stack[-1]!r}. "
                                        "Fix: close the first region before opening another.")
                    stack.append(text)
                else:
                    want = text.replace("END", "BEGIN")
                    if not stack or stack[-1] != want:
                        problems.append(f"{where}, line {n}: {text!r} without a matching {want!r}. "
                                        "Fix: pair every END marker with its BEGIN marker.")
                    else:
                        stack.pop()
            elif MARKER_LIKE.search(text):
                problems.append(f"{where}, line {n}: {text!r} looks like an nbgrader marker but is not one of "
                                f"{', '.join(repr(m) for m in MARKERS)}; nbgrader would release it (and what it "
                                "guards) verbatim. Fix: spell the marker exactly, alone on its line.")
        for text in stack:
            problems.append(f"{where}: {text!r} is never closed. Fix: add {text.replace('BEGIN', 'END')!r}.")
    return problems


def _patchable_uses(tree) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and (node.value.id, node.attr) in PATCHABLE:
            found.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("torch", "numpy", "math"):
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if (node.module, a.name) in PATCHABLE or (node.module == "numpy" and ("np", a.name) in PATCHABLE)]
    return sorted(set(found))


def lint_test_cell(where: str, source: str) -> list[str]:
    problems = []
    code = "\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except SyntaxError as err:
        return [f"{where}: syntax error line {err.lineno}: {err.msg}. Fix: the test cell must be valid Python."]
    for name in _patchable_uses(tree):
        problems.append(f"{where}: uses {name} directly; an answer cell can monkeypatch it (torch.allclose = lambda "
                        "*a, **k: True) and pass every test. Fix: capture it in the locked `references` cell "
                        "(_allclose = torch.allclose) and use the captured name.")
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and node.msg is None:
            problems.append(f"{where}, line {node.lineno}: assert without a message; feedback shows only the "
                            "message (no traceback, no hidden code). Fix: assert cond, \"what is wrong, how to fix\".")
    if tree.body:
        last = tree.body[-1]
        is_print = (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
                    and isinstance(last.value.func, ast.Name) and last.value.func.id == "print")
        if isinstance(last, ast.Expr) and not is_print:
            problems.append(f"{where}: ends with a bare expression; if it evaluates to a number nbgrader takes it as "
                            "partial credit. Fix: end with a statement such as print(\"part ok\").")
    return problems


def lint_notebook(assignment: str, nb) -> list[str]:
    problems = lint_markers(assignment, nb)
    if nb.get("nbformat", 4) < 4 or (nb.get("nbformat") == 4 and nb.get("nbformat_minor", 0) < 5):
        problems.append(f"{assignment}: nbformat {nb.get('nbformat')}.{nb.get('nbformat_minor')} has no cell ids, "
                        "so every release would differ. Fix: write the notebook with nbformat >= 4.5.")
    seen, parts = {}, 0
    references_at = None
    first_answer = None
    for i, cell in enumerate(nb.cells):
        where = _where(assignment, i, cell)
        meta = nbgrader_meta(cell)
        gid = grade_id(cell)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            problems.append(f"{where}: has outputs or an execution count. Fix: clear outputs before committing "
                            "(jupyter nbconvert --clear-output --inplace <notebook>).")
        if not cell.get("id"):
            problems.append(f"{where}: has no cell id. Fix: give every cell a fixed id (course_lib.authoring does).")
        if meta and not gid:
            problems.append(f"{where}: nbgrader cell without a grade_id. Fix: set metadata.nbgrader.grade_id.")
        if gid:
            if gid in seen:
                problems.append(f"{where}: grade_id {gid!r} repeats cell {seen[gid]}. Fix: make grade ids unique.")
            seen[gid] = i
            if cell.get("id") and cell.id != gid.replace("_", "-"):
                problems.append(f"{where}: cell id {cell.id!r} is not derived from its grade_id (expected "
                                f"{gid.replace('_', '-')!r}). Fix: build cells with course_lib.authoring.")
        if gid == "references":
            references_at = i
            if not is_locked(cell):
                problems.append(f"{where}: the references cell must be locked. Fix: authoring.code(..., locked=True).")
        if is_solution(cell) and cell.cell_type == "code":
            first_answer = i if first_answer is None else first_answer
            if not gid.endswith("_answer"):
                problems.append(f"{where}: answer cell grade_id should end in '_answer'. Fix: name it '<part>_answer'.")
            if SOLUTION_BEGIN not in cell.source:
                problems.append(f"{where}: answer cell without '{SOLUTION_BEGIN}'; the solution would be released. "
                                f"Fix: wrap the solution in {SOLUTION_BEGIN} / {SOLUTION_END}.")
        if is_test(cell):
            parts += 1
            if is_solution(cell):
                problems.append(f"{where}: a test cell that is also an answer cell needs manual grading. "
                                "Fix: separate the answer cell and the test cell.")
            if not gid.endswith("_tests"):
                problems.append(f"{where}: test cell grade_id should end in '_tests'. Fix: name it '<part>_tests'.")
            if points(cell) <= 0:
                problems.append(f"{where}: test cell worth {points(cell)} points. Fix: give it points > 0.")
            if first_answer is None:
                problems.append(f"{where}: test cell before any answer cell. Fix: put tests after the answer they test.")
            problems += lint_test_cell(where, cell.source)
        elif cell.cell_type == "markdown" and meta.get("grade"):
            problems.append(f"{where}: a graded markdown cell needs manual grading. Fix: grade code only.")
    if references_at is None:
        problems.append(f"{assignment}: no locked code cell with grade_id 'references'. Fix: add one before the first "
                        "answer cell that captures _allclose, _equal, _isclose = torch.allclose, torch.equal, "
                        "torch.isclose and the reference values the tests use.")
    elif first_answer is not None and references_at > first_answer:
        problems.append(f"{assignment}: the references cell comes after the first answer cell, which could then "
                        "replace what it captures. Fix: move it before every answer cell.")
    if parts < MIN_PARTS:
        problems.append(f"{assignment}: {parts} graded test cells; the course wants at least {MIN_PARTS}. "
                        "Fix: add graded parts.")
    return problems


def lint_folder(root: Path, assignment: str) -> list[str]:
    """The source folder holds exactly ``<assignment>.ipynb``: nbgrader copies anything else into the release."""
    folder = root / "solutions" / assignment
    problems = []
    expected = folder / f"{assignment}.ipynb"
    if not expected.is_file():
        problems.append(f"{assignment}: no notebook {expected.relative_to(root)}. Fix: name the notebook after its "
                        "folder (solutions/NN_topic/NN_topic.ipynb).")
    for path in sorted(folder.iterdir()):
        if path.name in IGNORED_FILES or path == expected:
            continue
        problems.append(f"{assignment}: extra file {path.relative_to(root)}; nbgrader copies everything beside "
                        "the source notebook into the release (a solution module would leak). Fix: move it into "
                        "course_lib/ or delete it.")
    return problems


def lint_forbidden(assignment: str, nb) -> list[str]:
    """What the grader refuses to run (:mod:`.audit`) must be what the learner was told, and the solution
    itself must pass the audit."""
    problems = []
    try:
        table, allowed = forbidden_names(nb)
    except (AttributeError, TypeError):
        return [f"{assignment}: notebook metadata course.forbidden must be a list of dotted names or a dict from an "
                "answer cell's grade_id (or '*') to such a list. Fix: see course_lib/grading/audit.py."]
    answers = {grade_id(c) for c in nb.cells if is_solution(c)}
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for key, names in table.items():
        if key != "*" and key not in answers:
            problems.append(f"{assignment}: course.forbidden names {key!r}, which is not an answer cell "
                            f"({', '.join(sorted(answers))}). Fix: use an answer cell's grade_id or '*'.")
        for name in sorted(names):
            if f"`{name}`" not in text and f"`{name.rsplit('.', 1)[-1]}`" not in text:
                problems.append(f"{assignment}: the grader refuses answers that use {name} (course.forbidden), but no "
                                f"instruction says so. Fix: name `{name}` in the instructions.")
    for r in audit(nb, nb):
        problems.append(f"{assignment}: cell {r.cell} ({r.grade_id}) of the solution would be refused by the grader: "
                        f"{r.message()}. Fix: the solution must not use what answers may not.")
    return problems


def lint(root: Path, assignment: str) -> list[str]:
    import nbformat

    problems = lint_folder(root, assignment)
    path = root / "solutions" / assignment / f"{assignment}.ipynb"
    if path.is_file():
        nb = nbformat.read(path, as_version=4)
        problems += lint_notebook(assignment, nb) + lint_forbidden(assignment, nb)
    return problems

"""Cell roles and nbgrader markers, shared by lint, check, grade and the feedback preprocessor."""
from __future__ import annotations

import re

SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKERS = (SOLUTION_BEGIN, SOLUTION_END, HIDDEN_BEGIN, HIDDEN_END)
# Anything that looks like a marker: BEGIN/END next to HIDDEN/SOLUTION/TEST, in any case or spacing.
MARKER_LIKE = re.compile(r"(?i)\b(begin|end)\b[\s_#:-]{0,4}(hidden|solution|tests?)\b"
                         r"|\b(hidden|solution)[\s_#:-]{0,4}(begin|end)\b")


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id(cell) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_solution(cell) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_test(cell) -> bool:
    """A graded code cell (autograder tests)."""
    return cell.cell_type == "code" and bool(nbgrader_meta(cell).get("grade"))


def is_locked(cell) -> bool:
    return bool(nbgrader_meta(cell).get("locked"))


def points(cell) -> float:
    return float(nbgrader_meta(cell).get("points") or 0)


def find_cell(nb, gid: str):
    for i, cell in enumerate(nb.cells):
        if grade_id(cell) == gid:
            return i, cell
    raise KeyError(gid)


def region_lines(source: str, begin: str, end: str) -> list[str]:
    """Lines strictly inside ``begin`` ... ``end`` regions."""
    out, inside = [], False
    for line in source.splitlines():
        if line.strip() == begin:
            inside = True
        elif line.strip() == end:
            inside = False
        elif inside:
            out.append(line)
    return out


def strip_region(source: str, begin: str, end: str, placeholder: str | None = None) -> str:
    """``source`` without its ``begin`` ... ``end`` regions (markers included)."""
    out, inside = [], False
    for line in source.splitlines():
        if line.strip() == begin:
            inside = True
            if placeholder is not None:
                out.append(line[: len(line) - len(line.lstrip())] + placeholder)
        elif line.strip() == end:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def solution_body(source: str) -> str:
    """An answer cell's source with the solution markers removed (what a perfect learner writes)."""
    return "\n".join(ln for ln in source.splitlines() if ln.strip() not in (SOLUTION_BEGIN, SOLUTION_END))


def _loose(line: str) -> tuple[str, str] | None:
    """("begin"|"end", "hidden"|"solution") for a marker, exact or misspelled; None otherwise."""
    m = MARKER_LIKE.search(line)
    if not m:
        return None
    text = line.lower()
    kind = "hidden" if ("hidden" in text or "test" in text) else "solution"
    return ("begin" if "begin" in text else "end"), kind


def secret_lines(nb, min_len: int = 12) -> set[str]:
    """Distinctive lines of solutions and hidden tests that must never reach a learner.

    Regions are found by exact *and* misspelled markers (a misspelled one is released verbatim,
    with what it guards). Lines that also appear outside every region (an import, a name used in
    the task text) are not secrets; very short lines (``return x``) are too generic to search for.
    """
    secret, public = set(), []
    for cell in nb.cells:
        inside, outside = None, []
        for line in cell.source.splitlines():
            marker = _loose(line)
            if marker and marker[0] == "begin":
                inside = marker[1]
            elif marker and marker[0] == "end":
                inside = None
            elif inside:
                secret.add(line.strip())
            else:
                outside.append(line)
        public.append("\n".join(outside))
    public_text = "\n".join(public)
    return {s for s in secret if len(s) >= min_len and not s.startswith("#") and s not in public_text}


def hidden_secrets(nb) -> set[str]:
    """The lines of a source notebook's hidden tests that must never appear in what learners get."""
    lines = {ln.strip() for c in nb.cells for ln in region_lines(c.source, HIDDEN_BEGIN, HIDDEN_END)}
    return {s for s in lines if s in secret_lines(nb)}

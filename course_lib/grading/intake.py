"""What the grader takes from a submission and what it takes from the release (issue 19, "taken from the
source, never from the submission").

nbgrader grades a submitted notebook by the nbgrader metadata *inside it*: which cells are graded, their
ids and their points. A learner can edit that JSON. Measured on nbgrader 0.9: a submission with an extra
graded cell or changed points is left NOT GRADED (autograde fails for it, and its log names other
learners), a deleted test cell makes its points vanish, a changed kernelspec stops the kernel from starting.
:func:`normalize` rebuilds the grading structure from the released notebook before nbgrader sees it:

- every cell that carries nbgrader metadata gets the release's metadata for its ``grade_id``, so points,
  ``grade``, ``locked`` and ``solution`` are the instructor's (nbgrader then also restores the source of
  locked and test cells from its database, as it always does);
- a cell whose ``grade_id`` the release does not have, or a second copy of one, loses its nbgrader metadata:
  it runs as an ordinary cell and earns nothing;
- a graded, locked or answer cell missing from the submission is put back from the release after the
  release cell that precedes it (an answer cell comes back blank, so its part scores 0);
- notebook metadata that decides how it runs (``kernelspec``, ``language_info``) is the release's.

Each change is reported as a note for that learner alone; a clean submission comes back unchanged.
"""
from __future__ import annotations

import copy

from .notebook import grade_id, nbgrader_meta

RUN_METADATA = ("kernelspec", "language_info")


def _describe(old: dict, new: dict) -> str:
    keys = [k for k in ("points", "grade", "solution", "locked", "task") if old.get(k) != new.get(k)]
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "metadata changed"


def normalize(submitted, release) -> tuple[object, list[str]]:
    """``(notebook, notes)``: ``submitted`` with its grading structure taken from ``release`` (both
    nbformat v4 notebooks; neither is modified), and one note per change made."""
    nb = copy.deepcopy(submitted)
    notes: list[str] = []
    released = [c for c in release.cells if nbgrader_meta(c)]
    by_id = {grade_id(c): c for c in released}
    order = [grade_id(c) for c in released]

    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if not meta:
            continue
        gid = grade_id(cell)
        source = by_id.get(gid)
        if source is None or gid in seen:
            why = "is not a cell of the release" if source is None else "repeats a cell already in the notebook"
            cell.metadata.pop("nbgrader", None)
            notes.append(f"cell {i} ({gid!r}) {why}: it was graded as an ordinary cell, worth no points.")
            continue
        seen.add(gid)
        if meta != nbgrader_meta(source) or cell.cell_type != source.cell_type:
            notes.append(f"cell {i} ({gid}): its grading metadata was edited ({_describe(meta, nbgrader_meta(source))}); "
                         "the release's was used.")
            cell.metadata["nbgrader"] = copy.deepcopy(nbgrader_meta(source))
            if cell.cell_type != source.cell_type:
                cell.cell_type = source.cell_type
                if cell.cell_type == "code":
                    cell.setdefault("outputs", [])
                    cell.setdefault("execution_count", None)
                else:
                    cell.pop("outputs", None)
                    cell.pop("execution_count", None)

    for k, gid in enumerate(order):
        if gid in seen:
            continue
        position = 0
        for earlier in reversed(order[:k]):
            found = [j for j, c in enumerate(nb.cells) if nbgrader_meta(c) and grade_id(c) == earlier]
            if found:
                position = found[0] + 1
                break
        nb.cells.insert(position, copy.deepcopy(by_id[gid]))
        seen.add(gid)
        kind = "answer" if nbgrader_meta(by_id[gid]).get("solution") else "locked or test"
        notes.append(f"the {kind} cell {gid!r} was missing: it was put back from the release"
                     + (" (blank, so that part scores 0)." if kind == "answer" else "."))

    for key in RUN_METADATA:
        if key in release.metadata and nb.metadata.get(key) != release.metadata[key]:
            notes.append(f"the notebook's {key} was changed; the release's was used.")
            nb.metadata[key] = copy.deepcopy(release.metadata[key])
    return nb, notes

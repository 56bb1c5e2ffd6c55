"""What the wrong-answer banks share: the solution's answer cells, and small edits that turn them into mistakes.

Not a bank (``course check`` loads ``<assignment>.py`` only). A bank loads it by path, since banks are
loaded from their file and not as a package, and binds ``solution`` to its own assignment (its file name)::

    import runpy
    from pathlib import Path

    _shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
    edit, solution = _shared["edit"], _shared["solutions_of"](__file__)
"""
from __future__ import annotations

import functools
from pathlib import Path

import nbformat

from course_lib.grading.notebook import find_cell, grade_id, is_solution, solution_body

ROOT = Path(__file__).resolve().parents[2]


def edit(text: str, *changes: str) -> str:
    """``text`` with each ``old`` replaced by ``new`` (every occurrence), in the order given.

    ``changes`` alternates ``old, new, old, new, ...``. Every ``old`` must occur in the text as edited so far:
    when the correct code changes and an edit no longer applies, the bank fails to load with the edit named,
    instead of silently offering the correct code (or another mistake) as the intended one.
    """
    if not changes or len(changes) % 2:
        raise TypeError(f"edit(text, old, new, ...) takes pairs of old and new texts, got {len(changes)} texts")
    for old, new in zip(changes[::2], changes[1::2]):
        if old not in text:
            raise ValueError(f"wrong-answer bank: the text to replace, {old!r}, is not in the code it edits:\n"
                             f"{text}\nFix: update the edit to match the correct code it derives from.")
        text = text.replace(old, new)
    return text


@functools.lru_cache(maxsize=None)
def _notebook(assignment: str):
    path = ROOT / "solutions" / assignment / f"{assignment}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"wrong-answer bank {assignment}.py: no solution notebook {path}. Fix: name the bank "
                                "after its assignment (tests/wrong_answers/<assignment>.py).")
    return nbformat.read(path, as_version=4)


def solution(assignment: str, cell: str) -> str:
    """The answer cell ``cell`` of ``solutions/<assignment>/<assignment>.ipynb`` as ``course check`` substitutes
    the solution itself (its control variant): the whole cell source, the solution markers removed."""
    nb = _notebook(assignment)
    try:
        _, found = find_cell(nb, cell)
    except KeyError:
        found = None
    if found is None or not is_solution(found):
        answers = ", ".join(grade_id(c) for c in nb.cells if is_solution(c))
        raise KeyError(f"wrong-answer bank {assignment}.py: {cell!r} is not an answer cell of {assignment} "
                       f"(answer cells: {answers}). Fix: use one of those grade ids.")
    return solution_body(found.source)


def solutions_of(bank_file: str):
    """``solution`` bound to the assignment a bank is named after: ``solutions_of(__file__)("<part>_answer")``."""
    return functools.partial(solution, Path(bank_file).stem)

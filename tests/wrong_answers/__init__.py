"""Wrong-answer banks for ``course check``: one module per assignment, ``<assignment>.py``.

Each defines ``WRONG_ANSWERS``, a list of entries::

    dict(cell="<part>_answer",            # grade_id of the answer cell to replace
         name="alpha instead of alpha/r",  # the mistake, as a learner would make it
         code='''...''',                   # the full replacement source of that answer cell
         fails=["<part>_tests"])           # test cells that must lose their points

``course check`` substitutes each entry into the solution notebook, runs the cells up to the last
test cell in ``fails`` (skipping the other test cells) and requires every test cell in ``fails`` to
fail (an error: output on stderr alone costs nothing, see course_lib/grading/streams.py). It adds generic
entries itself: for every part an answer that raises, for the first an endless loop and an endless loop that
swallows KeyboardInterrupt.

``load(assignment)`` returns the entries of one bank (for tests and interactive use).
"""
from __future__ import annotations

from pathlib import Path


def load(assignment: str) -> list[dict]:
    import importlib.util

    path = Path(__file__).with_name(f"{assignment}.py")
    spec = importlib.util.spec_from_file_location(f"_wrong_answers_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.WRONG_ANSWERS)

"""Autograding pipeline: nbgrader source notebooks in ``solutions/`` -> release in ``exercises/``.

* :func:`release` (``course release [--check]``): sync badges, regenerate ``exercises/`` with nbgrader.
* :func:`grade` (``course grade SUBMISSIONS``): autograde, feedback without hidden tests, CSV of scores;
  one job per submission on N local workers or a Dask cluster (:mod:`.workers`), merged into one gradebook.
* :func:`publish` (``course publish DIR``): the learner edition, checked for leaks (see :mod:`.publishing`).
* :func:`check` (``course check``): the proof that every assignment grades right (see :mod:`.checker`).

Both ``grade`` and ``check`` run every kernel in the grading sandbox (:mod:`.sandbox`: bubblewrap, no network,
no ``solutions/`` or gradebook, resource limits; ``--no-sandbox`` opts out, loudly), and pin the runtime first (``--runtime embedded``, the default: CPU, offline;
``--runtime gpu``: the GPU runtime with its own cell limits), see :func:`.config.grading_environment`.

Before a submission runs, ``grade`` takes its grading structure from the release (:mod:`.intake`) and
refuses, unrun, every cell that reaches for the grader (:mod:`.audit`); a test cell's stderr is shown, not
scored (:mod:`.streams`).

Modules: :mod:`.config` (loads and verifies ``nbgrader_config.py``, runs nbgrader), :mod:`.notebook`
(cell roles, markers), :mod:`.execute` (cell-by-cell execution with time limits and recovery),
:mod:`.lint`, :mod:`.intake`, :mod:`.audit`, :mod:`.streams`, :mod:`.feedback` (the feedback preprocessor),
:mod:`.releasing`, :mod:`.grader`, :mod:`.workers`, :mod:`.checker`.
"""
from __future__ import annotations


def release(check: bool = False) -> int:
    from .config import require_nbgrader
    require_nbgrader("course release")
    from .releasing import release as _release
    return _release(check=check)


def grade(submissions, csv_path=None, runtime: str = "embedded", sandbox: bool = True, **options) -> int:
    """``options``: ``workers``, ``students``, ``only``, ``force``, ``scheduler`` (see :func:`.grader.grade`)."""
    from .config import pin_runtime, require_nbgrader
    require_nbgrader("course grade")
    from .grader import grade as _grade
    from .sandbox import activate
    from .workers import require_dask, worker_count

    worker_count(options.get("workers"))  # bad options fail before anything starts
    if options.get("scheduler"):
        require_dask()
    pin_runtime(runtime)  # before nbgrader_config.py is read: it sizes the cell limits by runtime
    activate(sandbox, runtime)  # learner code runs in bubblewrap; refuses where it cannot, unless --no-sandbox
    return _grade(submissions, csv_path=csv_path, **options)


def publish(dest, force: bool = False) -> int:
    from .config import require_nbgrader
    require_nbgrader("course publish")
    from .publishing import publish as _publish
    return _publish(dest, force=force)


def check(assignments=None, runtime: str = "embedded", sandbox: bool = True) -> int:
    from .config import require_nbgrader
    require_nbgrader("course check")
    from .checker import check as _check
    from .config import pin_runtime
    from .sandbox import activate

    pin_runtime(runtime)
    activate(sandbox, runtime)
    return _check(assignments)

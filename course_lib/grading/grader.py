"""``course grade SUBMISSIONS``: autograde ``SUBMISSIONS/<student>/<assignment>/*.ipynb``.

Steps per assignment: register it in the gradebook (a release into ``build/nbgrader/release``, so
``exercises/`` is untouched), copy the submissions under ``build/nbgrader/submitted``, run nbgrader
autograde, write feedback HTML (hidden tests and tracebacks stripped by
:class:`~course_lib.grading.feedback.StripHiddenTests`), and export one CSV row per submission.

A submission whose autograde fails, typically because a cell never finishes (an endless loop, even
one that swallows ``KeyboardInterrupt``: nbgrader stops at the first cell past its limit), is run
cell by cell to find the cells that hang or kill the kernel; the answer cell responsible is replaced
by one that raises a clear error and the submission is graded again. The student loses that part,
not the notebook, and the other students are not affected.
"""
from __future__ import annotations

import csv
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CourseError
from .config import GradingConfig, assignments, last_error, load_config, nbgrader
from .execute import run_steps, solution_steps
from .notebook import grade_id, is_solution

STOPPED = ('raise RuntimeError("The grader stopped this cell: {why}. It was replaced by this error so that the '
           'rest of your notebook could be graded; make it finish within {limit} s.")')


@dataclass
class Outcome:
    student: str
    assignment: str
    graded: bool = False
    score: float = 0.0
    max_score: float = 0.0
    notes: list[str] = field(default_factory=list)
    feedback: str = ""


def _submitted(cfg: GradingConfig, student: str, assignment: str) -> Path:
    return cfg.root / "build" / "nbgrader" / "submitted" / student / assignment


def _collect(submissions: Path, known: list[str]) -> tuple[dict[str, list[tuple[str, Path]]], list[Outcome]]:
    """{assignment: [(student, notebook)]} and the submissions that cannot be graded at all."""
    todo: dict[str, list[tuple[str, Path]]] = {}
    bad: list[Outcome] = []
    for sdir in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for adir in sorted(p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if adir.name not in known:
                bad.append(Outcome(sdir.name, adir.name, notes=[f"unknown assignment (known: {', '.join(known)})"]))
                continue
            nbs = sorted(p for p in adir.glob("*.ipynb"))
            expected = adir / f"{adir.name}.ipynb"
            if expected in nbs:
                todo.setdefault(adir.name, []).append((sdir.name, expected))
            elif len(nbs) == 1:
                todo.setdefault(adir.name, []).append((sdir.name, nbs[0]))
            else:
                bad.append(Outcome(sdir.name, adir.name, notes=[
                    f"expected {adir.name}.ipynb in {adir}, found {[p.name for p in nbs] or 'no notebook'}"]))
    return todo, bad


def _graded(cfg: GradingConfig, student: str, assignment: str) -> bool:
    return (cfg.root / "build" / "nbgrader" / "autograded" / student / assignment / f"{assignment}.ipynb").is_file()


def _budget(cfg: GradingConfig, nb, n: int = 1) -> float:
    return n * 2 * sum(cfg.timeout_for(c) for c in nb.cells if c.cell_type == "code") + 120


def rescue(cfg: GradingConfig, student: str, assignment: str, log: str) -> Outcome:
    """Find the cells that made autograde fail, neutralise their answer cells, grade again."""
    import nbformat

    out = Outcome(student, assignment)
    path = _submitted(cfg, student, assignment) / f"{assignment}.ipynb"
    for _ in range(3):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as err:
            out.notes.append(f"the notebook cannot be read: {err}")
            return out
        runs = run_steps(nb, solution_steps(nb), path.parent, cfg.timeout_for)
        stuck = [r for r in runs if r.status in ("timeout", "dead")]
        if not stuck:
            out.notes.append(f"autograde failed: {last_error(log)}")
            return out
        for r in stuck:
            answer = next((j for j in range(r.index, -1, -1) if is_solution(nb.cells[j])), None)
            if answer is None:
                out.notes.append(f"cell {r.index} {r.describe()} and no answer cell precedes it")
                return out
            cell = nb.cells[answer]
            why = "it did not finish in time" if r.status == "timeout" else "it killed the Python kernel"
            where = "this cell" if answer == r.index else f"cell {r.index} ({grade_id(nb.cells[r.index])}), which uses it,"
            cell.source = STOPPED.format(why=f"{where} {r.describe()}".replace('"', "'"),
                                         limit=cfg.timeout_for(nb.cells[r.index]))
            out.notes.append(f"{grade_id(cell)} replaced by an error: {where} {r.describe()}")
        nbformat.write(nb, path)
        proc = nbgrader(["autograde", assignment, f"--student={student}", "--force"], cfg,
                        timeout=_budget(cfg, nb))
        if proc.returncode == 0 and _graded(cfg, student, assignment):
            out.graded = True
            return out
        log = proc.stdout
    out.notes.append(f"autograde still fails: {last_error(log)}")
    return out


def grade(submissions, csv_path=None) -> int:
    import nbformat
    from nbgrader.api import Gradebook

    cfg = load_config()
    submissions = Path(submissions).resolve()
    if not submissions.is_dir():
        raise CourseError(f"no submissions directory {submissions}.",
                          "give a directory laid out as SUBMISSIONS/<student>/<assignment>/<assignment>.ipynb.")
    csv_path = Path(csv_path or cfg.root / "build" / "grades.csv").resolve()
    todo, outcomes = _collect(submissions, assignments(cfg.root))
    if not todo and not outcomes:
        raise CourseError(f"{submissions} holds no submissions.",
                          "lay them out as SUBMISSIONS/<student>/<assignment>/<assignment>.ipynb.")
    t0 = time.time()
    for assignment, subs in sorted(todo.items()):
        print(f"== {assignment}: {len(subs)} submission(s)", flush=True)
        reg = nbgrader(["generate_assignment", assignment, "--force",
                        "--CourseDirectory.release_directory=build/nbgrader/release"], cfg)
        if reg.returncode != 0:
            raise CourseError(f"cannot register {assignment} in the gradebook: {last_error(reg.stdout)}",
                              f"run `course check {assignment}`.")
        for student, nb_path in subs:
            dst = _submitted(cfg, student, assignment)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.rmtree(cfg.root / "build" / "nbgrader" / "autograded" / student / assignment, ignore_errors=True)
            dst.mkdir(parents=True)
            shutil.copy2(nb_path, dst / f"{assignment}.ipynb")
        src = nbformat.read(cfg.root / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
        proc = nbgrader(["autograde", assignment, "--force"], cfg, timeout=_budget(cfg, src, len(subs)))
        results = []
        for student, _ in subs:
            if _graded(cfg, student, assignment):
                results.append(Outcome(student, assignment, graded=True))
            else:
                print(f"   {student}: autograde failed; looking for the cell that hangs or crashes", flush=True)
                results.append(rescue(cfg, student, assignment, proc.stdout))
        fb = nbgrader(["generate_feedback", assignment, "--force"], cfg, timeout=600)
        if fb.returncode != 0:
            print(f"   warning: generate_feedback: {last_error(fb.stdout)}", file=sys.stderr)
        db = f"sqlite:///{cfg.root / 'build' / 'nbgrader' / 'gradebook.db'}"
        with Gradebook(db, course_id=cfg.config.CourseDirectory.course_id) as gb:
            for o in results:
                if not o.graded:
                    continue
                s = gb.find_submission(assignment, o.student)
                o.score, o.max_score = float(s.score), float(s.max_score)
                if s.needs_manual_grade:
                    o.notes.append("needs manual grading")
                page = cfg.root / "build" / "nbgrader" / "feedback" / o.student / assignment / f"{assignment}.html"
                o.feedback = str(page.relative_to(cfg.root)) if page.is_file() else ""
        for o in results:
            print(f"   {o.student:<20} {o.score:5g}/{o.max_score:<5g}" if o.graded else f"   {o.student:<20} NOT GRADED",
                  ("; ".join(o.notes)) if o.notes else "", flush=True)
        outcomes += results
    from .sandbox import UNSANDBOXED, enabled
    if not enabled():
        for o in outcomes:
            o.notes.insert(0, UNSANDBOXED)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "assignment", "score", "max_score", "graded", "feedback", "notes"])
        for o in sorted(outcomes, key=lambda o: (o.assignment, o.student)):
            w.writerow([o.student, o.assignment, f"{o.score:g}", f"{o.max_score:g}", "yes" if o.graded else "no",
                        o.feedback, "; ".join(o.notes)])
    failed = [o for o in outcomes if not o.graded]
    print(f"graded {len(outcomes) - len(failed)} of {len(outcomes)} submission(s) in {time.time() - t0:.0f} s; "
          f"grades in {csv_path}")
    if failed:
        print("course grade: these submissions could not be graded:", file=sys.stderr)
        for o in failed:
            print(f"  - {o.student}/{o.assignment}: {'; '.join(o.notes)}", file=sys.stderr)
        return 1
    return 0

"""``course grade SUBMISSIONS``: autograde ``SUBMISSIONS/<student>/<assignment>/*.ipynb``, in parallel.

One **job** per submission (:func:`grade_submission`): in a scratch course directory of its own
(``build/nbgrader/jobs/<assignment>/<student>``, with a private copy of a gradebook where only that
assignment is registered) it runs nbgrader autograde for that one learner, writes the feedback HTML
(hidden tests and tracebacks stripped by :class:`~course_lib.grading.feedback.StripHiddenTests`) and
returns the grades as plain data (:func:`export_grades`). No two nbgrader processes ever write one
SQLite file: the parent alone merges each job's result into the real gradebook
(``build/nbgrader/gradebook.db``, through nbgrader's :class:`~nbgrader.api.Gradebook` API), moves its
notebooks into ``build/nbgrader/{submitted,autograded,feedback}``, and writes one CSV for the class.
Jobs run on N local worker processes (:mod:`.workers`; default one per core, torch threads per kernel
``cores // N``) or on a Dask cluster; the same job gives the same grades wherever it runs.

A job whose autograde fails, typically because a cell never finishes (an endless loop, even one that
swallows ``KeyboardInterrupt``: nbgrader stops at the first cell past its limit), runs the notebook cell
by cell to find the cells that hang or kill the kernel; the answer cell responsible is replaced by one
that raises a clear error and the submission is graded again. The learner loses that part, not the
notebook, and the other learners are not affected.

Resuming: each merged submission leaves a record (``build/nbgrader/records/<assignment>/<student>.json``:
the outcome, its grades and the SHA-256 of the submission and of the source notebook). A later run skips
a submission whose record matches (the same notebook graded against the same tests), so an interrupted
run goes on where it stopped; ``--force`` regrades. ``--student``/``--assignment`` grade only those; the
CSV always lists every submission of SUBMISSIONS that has a grade.

Before nbgrader sees a submission, its grading structure (graded cells, ids, points, kernelspec) is taken
from the release (:mod:`.intake`), and every cell that reaches for the grader (a forbidden import, the tests'
references, the kernel, builtins, frames, patching) is replaced by an error that says why (:mod:`.audit`):
that part scores 0 and the code never runs. Both are reported in that learner's notes.

Why one module of this length: a job, its rescue, the records it resumes from and the merge into the one
gradebook share the job's paths and the exported-grades format; split, each part would restate them.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError, CourseError
from .audit import refuse
from .config import GradingConfig, assignments, gradebook_path, gradebook_url, last_error, load_config, nbgrader
from .execute import run_steps, solution_steps
from .intake import normalize
from .notebook import grade_id, is_solution

STOPPED = ('raise RuntimeError("The grader stopped this cell: {why}. It was replaced by this error so that the '
           'rest of your notebook could be graded; make it finish within {limit} s.")')
# what a job's kernels inherit from the grader (the runtime pin, the sandbox switch and limits, the threads)
JOB_ENV = ("COURSE_RUNTIME", "COURSE_SANDBOX", "COURSE_SANDBOX_MEMORY_MB", "COURSE_SANDBOX_CPU_S",
           "COURSE_SANDBOX_NPROC", "COURSE_SANDBOX_FSIZE_MB", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES")


@dataclass
class Outcome:
    student: str
    assignment: str
    graded: bool = False
    score: float = 0.0
    max_score: float = 0.0
    notes: list[str] = field(default_factory=list)
    feedback: str = ""


@dataclass
class Job:
    """One submission to grade; plain data, so it can travel to a worker process or a Dask worker."""
    root: str           # the course root (on a cluster: a path every worker sees)
    assignment: str
    student: str
    notebook: str       # the submitted notebook
    template: str       # the gradebook with only this assignment registered
    env: dict           # environment for nbgrader and the kernels (runtime, sandbox, threads)

    @property
    def scratch(self) -> Path:
        return Path(self.root) / "build" / "nbgrader" / "jobs" / self.assignment / self.student


def _nbdir(root: Path, kind: str, student: str, assignment: str) -> Path:
    return Path(root) / "build" / "nbgrader" / kind / student / assignment


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


def _graded(root: Path, student: str, assignment: str) -> bool:
    return (_nbdir(root, "autograded", student, assignment) / f"{assignment}.ipynb").is_file()


def _budget(cfg: GradingConfig, nb, n: int = 1) -> float:
    return n * 2 * sum(cfg.timeout_for(c) for c in nb.cells if c.cell_type == "code") + 120


def rescue(cfg: GradingConfig, student: str, assignment: str, log: str, root: Path | None = None) -> Outcome:
    """Find the cells that made autograde fail, neutralise their answer cells, grade again (in ``root``,
    the job's scratch course directory; default the course)."""
    import nbformat

    root = Path(root or cfg.root)
    out = Outcome(student, assignment)
    path = _nbdir(root, "submitted", student, assignment) / f"{assignment}.ipynb"
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
        proc = nbgrader(["autograde", assignment, f"--student={student}", "--force"], cfg, nb_root=root,
                        timeout=_budget(cfg, nb))
        if proc.returncode == 0 and _graded(root, student, assignment):
            out.graded = True
            return out
        log = proc.stdout
    out.notes.append(f"autograde still fails: {last_error(log)}")
    return out


# ------------------------------------------------------------------------------------ grades as plain data
def export_grades(gb, assignment: str, student: str) -> dict:
    """What the gradebook holds about one submission, as JSON-able data (no database ids): the learner,
    the submission's timestamp and extension, and per notebook its flags and every grade and comment."""
    sub = gb.find_submission(assignment, student)
    st = sub.student
    return {
        "student": {k: getattr(st, k) for k in ("first_name", "last_name", "email", "lms_user_id")},
        "timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
        "extension": sub.extension.total_seconds() if sub.extension else None,
        "notebooks": {nb.name: {
            "flagged": nb.flagged, "late_submission_penalty": nb.late_submission_penalty,
            "grades": {g.name: {"auto_score": g.auto_score, "manual_score": g.manual_score,
                                "extra_credit": g.extra_credit, "needs_manual_grade": g.needs_manual_grade}
                       for g in sorted(nb.grades, key=lambda g: g.name)},
            "comments": {c.name: {"auto_comment": c.auto_comment, "manual_comment": c.manual_comment}
                         for c in sorted(nb.comments, key=lambda c: c.name)},
        } for nb in sorted(sub.notebooks, key=lambda nb: nb.name)},
    }


def import_grades(gb, assignment: str, student: str, data: dict) -> None:
    """Write :func:`export_grades`' data into ``gb`` (creating or replacing that submission's grades)."""
    import warnings
    from datetime import datetime, timedelta

    from sqlalchemy.exc import SAWarning

    gb.update_or_create_student(student, **data["student"])
    with warnings.catch_warnings():  # nbgrader's add_submission autoflushes before it adds (as in its autograde)
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_submission(
            assignment, student, timestamp=datetime.fromisoformat(data["timestamp"]) if data["timestamp"] else None,
            extension=timedelta(seconds=data["extension"]) if data["extension"] is not None else None)
    for name, nbd in data["notebooks"].items():
        nb = gb.find_submission_notebook(name, assignment, student)
        nb.flagged, nb.late_submission_penalty = nbd["flagged"], nbd["late_submission_penalty"]
        for gname, values in nbd["grades"].items():
            g = gb.find_grade(gname, name, assignment, student)
            for k, v in values.items():
                setattr(g, k, v)
        for cname, values in nbd["comments"].items():
            c = gb.find_comment(cname, name, assignment, student)
            for k, v in values.items():
                setattr(c, k, v)
    gb.db.commit()


def gradebook_contents(root: Path, course_id: str) -> dict:
    """Every submission of the gradebook at ``root`` as {(assignment, student): export_grades(...)}."""
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(root), course_id=course_id) as gb:
        return {(a.name, s.student.id): export_grades(gb, a.name, s.student.id)
                for a in gb.assignments for s in a.submissions}


# ------------------------------------------------------------------------------------------- one job
def grade_submission(job: Job) -> dict:
    """Grade one submission in its scratch directory (runs in a worker process, or on a Dask worker).

    Returns ``{"outcome": Outcome as a dict, "grades": export_grades(...) or None, "seconds": float}``;
    the autograded notebook and the feedback page stay under ``job.scratch`` for the parent to merge.
    A failure of the grader itself costs this submission (NOT GRADED, with the reason), not the class.
    """
    from ..startup import skip_iri_grammar
    from .workers import thread_env

    skip_iri_grammar()  # a worker process reads notebooks: start it as `course` starts
    t0 = time.time()
    os.environ.update(job.env)  # the same for every job of a run: the worker's kernels inherit it
    for k, v in thread_env(1).items():  # on a remote Dask worker: one job at a time, on the worker's cores
        os.environ.setdefault(k, v)
    try:
        out, grades = _autograde(job)
    except Exception as err:  # noqa: BLE001 (reported in the CSV; the other jobs go on)
        out, grades = Outcome(job.student, job.assignment, notes=[f"the grader failed: {type(err).__name__}: {err}"]), None
    return {"outcome": asdict(out), "grades": grades, "seconds": time.time() - t0}


def _take_in(job: Job, dst: Path) -> list[str]:
    """Write the submission to ``dst`` with its grading structure taken from the release
    (:func:`.intake.normalize`) and every cell that reaches for the grader replaced by an error that says
    why (:func:`.audit.refuse`); the notes say what the learner had changed and what was not run. A file
    that is not a notebook is copied as it is, and nbgrader reports it."""
    import nbformat

    release = Path(job.template).parents[2] / "exercises" / job.assignment / f"{job.assignment}.ipynb"
    source = Path(job.root) / "solutions" / job.assignment / f"{job.assignment}.ipynb"
    try:
        submitted = nbformat.read(job.notebook, as_version=4)
        fixed, notes = normalize(submitted, nbformat.read(release, as_version=4))
    except Exception:  # unreadable JSON, a foreign format: nbgrader's own error names it
        shutil.copy2(job.notebook, dst)
        return []
    fixed, refused = refuse(fixed, nbformat.read(source, as_version=4))
    nbformat.write(fixed, dst)
    return notes + refused


def _autograde(job: Job) -> tuple[Outcome, dict | None]:
    import nbformat
    from nbgrader.api import Gradebook

    cfg = load_config(Path(job.root))
    scratch = job.scratch
    shutil.rmtree(scratch, ignore_errors=True)
    dst = _nbdir(scratch, "submitted", job.student, job.assignment)
    dst.mkdir(parents=True)
    intake_notes = _take_in(job, dst / f"{job.assignment}.ipynb")
    shutil.copy2(job.template, gradebook_path(scratch))
    src = nbformat.read(cfg.root / "solutions" / job.assignment / f"{job.assignment}.ipynb", as_version=4)
    proc = nbgrader(["autograde", job.assignment, f"--student={job.student}", "--force"], cfg, nb_root=scratch,
                    timeout=_budget(cfg, src))
    if proc.returncode == 0 and _graded(scratch, job.student, job.assignment):
        out = Outcome(job.student, job.assignment, graded=True)
    else:
        out = rescue(cfg, job.student, job.assignment, proc.stdout, root=scratch)
    out.notes[:0] = intake_notes
    if not out.graded:
        return out, None
    fb = nbgrader(["generate_feedback", job.assignment, f"--student={job.student}", "--force"], cfg,
                  nb_root=scratch, timeout=600)
    if fb.returncode != 0:
        out.notes.append(f"no feedback page: {last_error(fb.stdout)}")
    with Gradebook(gradebook_url(scratch), course_id=cfg.config.CourseDirectory.course_id) as gb:
        return out, export_grades(gb, job.assignment, job.student)


# ------------------------------------------------------------------------------------------- the class
def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _record_path(root: Path, assignment: str, student: str) -> Path:
    return root / "build" / "nbgrader" / "records" / assignment / f"{student}.json"


def _load_record(root: Path, assignment: str, student: str, key: dict) -> Outcome | None:
    """The outcome of an earlier run if it graded this very notebook against these very tests."""
    path = _record_path(root, assignment, student)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("key") != key or not _graded(root, student, assignment):
        return None
    return Outcome(**rec["outcome"])


def _merge(cfg: GradingConfig, job: Job, result: dict, key: dict) -> Outcome:
    """Bring a finished job into the course: gradebook, notebooks, feedback, record."""
    from nbgrader.api import Gradebook

    out = Outcome(**result["outcome"])
    root, s, a = cfg.root, job.student, job.assignment
    for kind in ("submitted", "autograded", "feedback"):
        dst = _nbdir(root, kind, s, a)
        shutil.rmtree(dst, ignore_errors=True)
        src = _nbdir(job.scratch, kind, s, a)
        if src.is_dir():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), str(dst))
    if out.graded:
        with Gradebook(gradebook_url(root), course_id=cfg.config.CourseDirectory.course_id) as gb:
            import_grades(gb, a, s, result["grades"])
            sub = gb.find_submission(a, s)
            out.score, out.max_score = float(sub.score), float(sub.max_score)
            if sub.needs_manual_grade:
                out.notes.append("needs manual grading")
        page = _nbdir(root, "feedback", s, a) / f"{a}.html"
        out.feedback = str(page.relative_to(root)) if page.is_file() else ""
        rec = _record_path(root, a, s)
        rec.parent.mkdir(parents=True, exist_ok=True)
        rec.write_text(json.dumps({"key": key, "outcome": asdict(out), "grades": result["grades"]}, indent=1))
    else:
        _record_path(root, a, s).unlink(missing_ok=True)
    shutil.rmtree(job.scratch, ignore_errors=True)
    return out


def register(cfg: GradingConfig, assignment: str) -> Path:
    """Register ``assignment`` in the course's gradebook and in a template gradebook for the jobs.

    Two nbgrader runs (about 10 s); skipped when an earlier run registered this very source notebook with this
    very ``nbgrader_config.py`` and both gradebooks still hold it, so regrading one learner, resuming, or a
    second pass costs only the submissions."""
    from nbgrader.api import Gradebook, MissingEntry

    from .releasing import generate

    template = cfg.root / "build" / "nbgrader" / "jobs" / assignment / ".template"  # no learner folder starts with "."
    stamp = template.parent / "registered.json"
    key = {"source_sha256": _sha256(cfg.root / "solutions" / assignment / f"{assignment}.ipynb"),
           "config_sha256": _sha256(cfg.root / "nbgrader_config.py")}
    release = template / "exercises" / assignment / f"{assignment}.ipynb"
    try:
        if json.loads(stamp.read_text()) == key and release.is_file() and gradebook_path(template).is_file():
            with Gradebook(gradebook_url(cfg.root), course_id=cfg.config.CourseDirectory.course_id) as gb:
                gb.find_assignment(assignment)
            return gradebook_path(template)
    except (OSError, ValueError, MissingEntry):
        pass
    stamp.unlink(missing_ok=True)
    reg = nbgrader(["generate_assignment", assignment, "--force",
                    "--CourseDirectory.release_directory=build/nbgrader/release"], cfg)
    if reg.returncode != 0:
        raise CourseError(f"cannot register {assignment} in the gradebook: {last_error(reg.stdout)}",
                          f"run `course check {assignment}`.")
    shutil.rmtree(template, ignore_errors=True)
    generate(cfg, [assignment], template)
    stamp.write_text(json.dumps(key))
    return gradebook_path(template)


def _select(names: list[str] | None, what: str, known: list[str]) -> None:
    if names:
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ConfigError(f"--{what} {' '.join(unknown)}: not among the submissions ({', '.join(known) or 'none'}).",
                              f"give a {what} that has a folder in SUBMISSIONS, or drop --{what}.")


def _line(o: Outcome) -> str:
    score = f"{o.score:5g}/{o.max_score:<5g}" if o.graded else "NOT GRADED"
    return f"   {o.student:<20} {o.assignment:<24} {score:>11}  {'; '.join(o.notes)}".rstrip()


def write_csv(outcomes: list[Outcome], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "assignment", "score", "max_score", "graded", "feedback", "notes"])
        for o in sorted(outcomes, key=lambda o: (o.assignment, o.student)):
            w.writerow([o.student, o.assignment, f"{o.score:g}", f"{o.max_score:g}", "yes" if o.graded else "no",
                        o.feedback, "; ".join(o.notes)])


def grade(submissions, csv_path=None, workers: int | None = None, students: list[str] | None = None,
          only: list[str] | None = None, force: bool = False, scheduler: str | None = None) -> int:
    """Grade a class. ``workers``: local worker processes (default one per core); ``students``/``only``:
    grade just those learners / assignments; ``force``: regrade what an earlier run graded;
    ``scheduler``: ``"local"`` for a Dask LocalCluster, or the address of a running Dask scheduler."""
    from tqdm.auto import tqdm

    from . import workers as pool
    from .sandbox import UNSANDBOXED, enabled

    cfg = load_config()
    submissions = Path(submissions).resolve()
    if not submissions.is_dir():
        raise CourseError(f"no submissions directory {submissions}.",
                          "give a directory laid out as SUBMISSIONS/<student>/<assignment>/<assignment>.ipynb.")
    csv_path = Path(csv_path or cfg.root / "build" / "grades.csv").resolve()
    n_workers = pool.worker_count(workers)
    todo, bad = _collect(submissions, assignments(cfg.root))
    if not todo and not bad:
        raise CourseError(f"{submissions} holds no submissions.",
                          "lay them out as SUBMISSIONS/<student>/<assignment>/<assignment>.ipynb.")
    _select(students, "student", sorted({s for subs in todo.values() for s, _ in subs} | {o.student for o in bad}))
    _select(only, "assignment", sorted(todo))
    chosen = lambda s, a: (not students or s in students) and (not only or a in only)  # noqa: E731
    outcomes = [o for o in bad if chosen(o.student, o.assignment)]
    env = {k: os.environ[k] for k in JOB_ENV if k in os.environ}
    env["COURSE_ROOT"] = str(cfg.root)
    if scheduler in (None, "local"):  # N jobs on this machine's cores; a remote worker sizes its own
        env.update(pool.thread_env(n_workers))
    jobs, keys, done = [], {}, []
    for a, subs in sorted(todo.items()):
        src_hash = _sha256(cfg.root / "solutions" / a / f"{a}.ipynb")
        pending = []
        for s, nb in subs:
            key = {"submission_sha256": _sha256(nb), "source_sha256": src_hash, "sandbox": enabled(),
                   "runtime": os.environ.get("COURSE_RUNTIME", "embedded")}
            old = None if force and chosen(s, a) else _load_record(cfg.root, a, s, key)
            if old is not None:
                done.append(old)
            elif chosen(s, a):
                pending.append((s, nb, key))
        if pending:
            template = register(cfg, a)
            for s, nb, key in pending:
                jobs.append(Job(str(cfg.root), a, s, str(nb), str(template), env))
                keys[(a, s)] = key
    t0 = time.time()
    print(f"course grade: {len(jobs)} submission(s) to grade on {pool.describe(n_workers, scheduler)}"
          + (f"; {len(done)} already graded (unchanged; --force regrades them)" if done else ""), flush=True)
    results = []
    with tqdm(total=len(jobs), unit="submission", desc="grading", file=sys.stderr, dynamic_ncols=True,
              disable=not jobs) as bar:
        for job, result in pool.run(jobs, n_workers, scheduler):
            o = _merge(cfg, job, result, keys[(job.assignment, job.student)])
            results.append(o)
            bar.write(_line(o))
            bar.update(1)
    outcomes += done + results
    if not enabled():
        for o in outcomes:
            o.notes.insert(0, UNSANDBOXED)
    write_csv(outcomes, csv_path)
    failed = [o for o in outcomes if not o.graded]
    print(f"graded {len(results) - len([o for o in results if not o.graded])} of {len(jobs)} submission(s) in "
          f"{time.time() - t0:.0f} s" + (f" ({len(done)} kept from an earlier run)" if done else "")
          + f"; {len(outcomes)} row(s) in {csv_path}")
    if failed:
        print("course grade: these submissions could not be graded:", file=sys.stderr)
        for o in failed:
            print(f"  - {o.student}/{o.assignment}: {'; '.join(o.notes)}", file=sys.stderr)
        return 1
    return 0

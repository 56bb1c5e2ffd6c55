"""The ``course`` command.

    course doctor                 what this machine has and which runtime the course will use
    course lab [ARGS...]          JupyterLab at the course root
    course run [NOTEBOOK ...]     execute notebooks headless (default: every lecture and solution, one per core at once)
    course release [--check]      regenerate exercises/ from solutions/ with nbgrader
    course grade SUBMISSIONS      autograde SUBMISSIONS/<student>/<assignment>/*.ipynb
    course check [ASSIGNMENT ...] prove the grader right (see course_lib.grading)
    course publish DIR [--force]  write the learner edition (no solutions, hidden tests or banks) into DIR
    course bench [--quick] [--only NAME ...]  benchmarks vs peft/bitsandbytes and the hardware (benchmarks/)
    course book [--solutions] [--out DIR] [--no-execute]  the course as a static web site (build/book/)
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from .errors import CourseError


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


def cmd_doctor(args: argparse.Namespace) -> int:
    t0 = time.time()
    fatal = []
    print(f"python        {platform.python_version()} ({platform.platform()})")
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "datasets", "nbgrader", "jupyterlab", "ipywidgets"):
        v = _version(pkg)
        print(f"{pkg:<13} {v}")
        if v == "not installed" and pkg in ("torch", "transformers"):
            fatal.append(f"{pkg} is not installed")
    try:
        import torch

        cuda = torch.cuda.is_available()
        print(f"cuda          {'yes: ' + torch.cuda.get_device_name(0) if cuda else 'no'}")
    except ImportError:
        cuda = False
    from . import embedded
    from .runtime import hub_offline_by_env, hub_reachable, select_runtime

    hub = hub_reachable()
    print(f"hub           {'reachable' if hub else 'not reachable'}"
          + (" (HF_HUB_OFFLINE is set)" if hub_offline_by_env() else ""))
    members = embedded.available_members()
    print(f"embedded      {', '.join('embedded-' + m for m in members) or 'none shipped'}"
          f" (default: embedded-{embedded.DEFAULT_MEMBER})")
    try:
        rt = select_runtime(args.runtime)
        print(rt)
    except CourseError as err:
        print(f"runtime       cannot be chosen: {err}")
        fatal.append("no runtime")
        rt = None
    if rt is not None and rt.name == "embedded" and embedded.DEFAULT_MEMBER not in members:
        fatal.append(f"the default embedded model embedded-{embedded.DEFAULT_MEMBER} is missing")
    print(f"checked in {time.time() - t0:.1f} s")
    if fatal:
        print("The course cannot run: " + "; ".join(fatal), file=sys.stderr)
        return 1
    print("The course can run here.")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    import subprocess

    from .errors import require
    from .lab import install_overrides, lab_command, prepare_root
    from .project import course_root

    require("jupyterlab", "course lab", extra="lab")
    root = course_root()
    prepare_root(root)
    install_overrides()
    # nbgrader's formgrader runs `alembic` from PATH and reads nbgrader_config.py from the working
    # directory: put this environment's bin/ first and start at the course root, venv activated or not.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.call(lab_command(root, args.extra), cwd=root, env=env)


#: ``course run``'s default ``--jobs`` is one per core up to this many (each kernel holds a model in memory).
MAX_RUN_JOBS = 4


def cmd_run(args: argparse.Namespace) -> int:
    from .errors import require

    for module in ("nbformat", "nbclient", "ipykernel"):
        require(module, "course run (executing notebooks headless)", extra="lab")
    from .notebooks import default_notebooks, format_table, run_notebooks
    from .project import course_root

    root = course_root()
    paths = [Path(p).resolve() for p in args.notebooks] or default_notebooks(root)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CourseError(f"no such notebook: {', '.join(missing)}", "give paths to .ipynb files, or none to run all.")
    if not paths:
        print("no notebooks found under lectures/ or solutions/")
        return 0
    if args.jobs is not None and args.jobs < 1:
        raise CourseError(f"--jobs {args.jobs}: the number of notebooks run at once must be 1 or more.",
                          f"pass e.g. --jobs 2, or leave it out: one per core, at most {MAX_RUN_JOBS}.")
    from .threads import cores
    jobs = args.jobs or min(cores(), MAX_RUN_JOBS)   # run_notebooks runs no more at once than there are notebooks
    t0 = time.time()
    results = run_notebooks(paths, root, root / "build", timeout=args.timeout, jobs=jobs)
    print(format_table(results, wall=time.time() - t0, jobs=jobs))
    return 0 if all(r.ok for r in results) else 1


def _grading():
    """The instructor tools; the learner edition (``course publish``) ships without them."""
    if not (Path(__file__).resolve().parent / "grading" / "__init__.py").is_file():
        raise CourseError("this is the learner edition of the course: it has no grading tools "
                          "(course release/grade/check/publish).",
                          "run these commands in the instructors' repository, the one `course publish` ran in.")
    from . import grading
    return grading


def cmd_release(args: argparse.Namespace) -> int:
    grading = _grading()
    return grading.release(check=args.check)


def cmd_grade(args: argparse.Namespace) -> int:
    grading = _grading()
    scheduler = args.scheduler or ("local" if args.dask else None)
    return grading.grade(Path(args.submissions), csv_path=Path(args.csv) if args.csv else None, runtime=args.runtime,
                         sandbox=not args.no_sandbox, workers=args.workers, students=args.student,
                         only=args.assignment, force=args.force, scheduler=scheduler)


def cmd_check(args: argparse.Namespace) -> int:
    grading = _grading()
    return grading.check(args.assignments or None, runtime=args.runtime, sandbox=not args.no_sandbox)


def cmd_publish(args: argparse.Namespace) -> int:
    return _grading().publish(Path(args.dest), force=args.force)


def bench_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m benchmarks ...`` command line that ``course bench`` runs (``--out`` made absolute,
    because the command runs in the course root, not in the caller's folder)."""
    argv = [sys.executable, "-m", "benchmarks"]
    if args.quick:
        argv.append("--quick")
    if args.only:
        argv += ["--only", *args.only]
    if args.out:
        argv += ["--out", str(Path(args.out).resolve())]
    return argv + ["--threads", str(args.threads)]


def cmd_bench(args: argparse.Namespace) -> int:
    """Run ``python -m benchmarks`` in the course root as its own process: the benchmarks are a folder of
    the repository, not part of the installed package, so ``course_lib`` never imports them."""
    from .project import course_root

    root = course_root()
    if not (root / "benchmarks" / "__main__.py").is_file():
        raise CourseError(f"no benchmarks/ folder under {root} (the learner edition does not ship it).",
                          "run `course bench` from a checkout of the course repository, where benchmarks/ sits "
                          "next to course_lib/.")
    return subprocess.run(bench_command(args), cwd=root).returncode


def cmd_book(args: argparse.Namespace) -> int:
    from .book import build

    result = build(solutions=args.solutions, out=Path(args.out) if args.out else None, execute=not args.no_execute,
                   quiet=not args.verbose)
    print(f"course book: {len(result.pages)} pages in {result.out} (built in {result.seconds_building:.1f} s"
          + (f"; executed {len(result.executed)} notebook(s) first in {result.seconds_executing:.0f} s" if result.executed
             else "") + ")")
    print(f"   open {result.out / 'index.html'}, or serve it: python -m http.server -d {result.out}")
    return 0


NO_SANDBOX_HELP = ("run learner code WITHOUT the bubblewrap sandbox (it can then read solutions/ and the gradebook, "
                   "and reach the network); only where bwrap cannot run, and said so in the output and the CSV")
GRADING_RUNTIME_HELP = ("runtime of the grader's kernels (default: embedded, on the CPU and offline, so scores never "
                        "depend on the grader's hardware; gpu: the GPU runtime from the local model cache, own cell limits)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description="Efficient adaptation of language models: the course.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("doctor", help="report the machine and the runtime the course will use")
    d.add_argument("--runtime", default=None, help="embedded, gpu or auto (default: $COURSE_RUNTIME or auto)")
    d.set_defaults(func=cmd_doctor)
    lab = sub.add_parser("lab", help="start JupyterLab at the course root")
    lab.add_argument("extra", nargs=argparse.REMAINDER,
                     help="arguments passed to jupyter lab, e.g. course lab --no-browser --port=8899")
    lab.set_defaults(func=cmd_lab)
    r = sub.add_parser("run", help="execute notebooks headless and print a table")
    r.add_argument("notebooks", nargs="*", help="notebooks to run (default: every lecture and solution)")
    r.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    r.add_argument("--jobs", type=int, default=None,
                   help="notebooks run at once, the cores split between them (default: one per core, at most "
                        f"{MAX_RUN_JOBS}; 1: one after the other with every core)")
    r.set_defaults(func=cmd_run)
    rel = sub.add_parser("release", help="regenerate exercises/ from solutions/ (nbgrader generate_assignment)")
    rel.add_argument("--check", action="store_true", help="fail if the committed exercises/ differ from a fresh release")
    rel.set_defaults(func=cmd_release)
    g = sub.add_parser("grade", help="autograde SUBMISSIONS/<student>/<assignment>/*.ipynb")
    g.add_argument("submissions")
    g.add_argument("--csv", default=None, help="where to write the grades (default: build/grades.csv)")
    g.add_argument("--runtime", choices=("embedded", "gpu"), default="embedded", help=GRADING_RUNTIME_HELP)
    g.add_argument("--no-sandbox", action="store_true", help=NO_SANDBOX_HELP)
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="submissions graded at once (default: one per core; torch threads per kernel: cores // N)")
    g.add_argument("--student", action="append", metavar="NAME", help="grade only this learner (repeatable)")
    g.add_argument("--assignment", action="append", metavar="NAME", help="grade only this assignment (repeatable)")
    g.add_argument("--force", action="store_true",
                   help="regrade submissions an earlier run graded (default: skip those unchanged, i.e. resume)")
    cl = g.add_mutually_exclusive_group()
    cl.add_argument("--dask", action="store_true", help="run the jobs on a Dask LocalCluster of --workers processes")
    cl.add_argument("--scheduler", metavar="ADDRESS",
                    help="run the jobs on a running Dask cluster, e.g. tcp://host:8786 (needs .[cluster])")
    g.set_defaults(func=cmd_grade)
    c = sub.add_parser("check", help="prove every assignment grades right (solution full, release zero, wrong answers lose)")
    c.add_argument("assignments", nargs="*")
    c.add_argument("--runtime", choices=("embedded", "gpu"), default="embedded", help=GRADING_RUNTIME_HELP)
    c.add_argument("--no-sandbox", action="store_true", help=NO_SANDBOX_HELP)
    c.set_defaults(func=cmd_check)
    pub = sub.add_parser("publish", help="write the learner edition (no solutions/, hidden tests, banks) into DEST")
    pub.add_argument("dest", help="an empty folder, or a clone of the learner repository with --force")
    pub.add_argument("--force", action="store_true", help="replace what DEST holds (a .git folder is kept)")
    pub.set_defaults(func=cmd_publish)
    b = sub.add_parser("bench", help="benchmark the methods against peft/bitsandbytes; JSON and plots in benchmarks/results")
    b.add_argument("--quick", action="store_true", help="tiny models and few repeats (seconds; for tests)")
    b.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only these: lora_step, inference, nf4, memory, notebooks, threads")
    b.add_argument("--out", default=None, help="where to write JSON and plots (default: benchmarks/results)")
    b.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    b.set_defaults(func=cmd_bench)
    bk = sub.add_parser("book", help="build the course as a static web site from the executed notebooks (Jupyter Book)")
    bk.add_argument("--solutions", action="store_true",
                    help="the instructor edition with the solutions (default folder build/book-instructor/)")
    bk.add_argument("--out", default=None, help="where to write the site (default: build/book/)")
    bk.add_argument("--no-execute", action="store_true",
                    help="never execute notebooks; show a stale or missing one without outputs")
    bk.add_argument("--verbose", action="store_true", help="show Jupyter Book's and Sphinx's log")
    bk.set_defaults(func=cmd_book)
    return p


def main(argv: list[str] | None = None) -> int:
    from .startup import skip_iri_grammar

    skip_iri_grammar()  # 2 s of CPU less wherever this command reads a notebook (see course_lib.startup)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lab"]:  # everything after `lab` is JupyterLab's (argparse would reject --port=...)
        if argv[1:2] in (["-h"], ["--help"]):
            build_parser().parse_args(argv)
        args = argparse.Namespace(command="lab", extra=argv[1:], func=cmd_lab)
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CourseError as err:
        print(f"course {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

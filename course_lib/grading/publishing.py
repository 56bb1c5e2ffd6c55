"""``course publish DIR``: write the learner edition of the course into ``DIR``.

The learner edition is what Colab and Binder badges point at (pyproject's ``[project.urls]
Repository``): the course as learners should get it, without anything that gives answers away.

It holds: ``lectures/``, the released ``exercises/`` (as committed; a stale release is refused),
``course_lib/`` without ``course_lib/grading/`` (the instructor pipeline: release, autograde, the
checker that loads the wrong-answer banks), ``binder/``, ``pyproject.toml``, ``constraints.txt``,
``nbgrader_config.py`` (Binder's Validate button reads its time limits), a README for learners and the
LICENSE if there is one. It never holds ``solutions/``, ``tests/`` (hidden tests are in solutions/,
wrong-answer banks in tests/wrong_answers/), ``benchmarks/``, ``tools/`` or ``build/``.

Before anything is written to ``DIR``, the edition is assembled in a scratch folder and every text
file of it is scanned with the release's leak check (:func:`course_lib.grading.checker.scan_text`):
nbgrader markers anywhere; each released exercise for the lines of its own solutions and hidden tests
(the rule of ``course check``); every file for the hidden-test lines of every assignment. On a leak
nothing is written and the command fails.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import CourseError
from .config import assignments, load_config

LEARNER_DIRS = ("lectures", "exercises", "course_lib", "binder")
LEARNER_FILES = ("pyproject.toml", "constraints.txt", "nbgrader_config.py", "LICENSE", "LICENSE.txt", "LICENSE.md")
INSTRUCTOR_ONLY = ("course_lib/grading",)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")
KEEP_IN_DEST = (".git",)
DISTINCTIVE = 24  # characters: a shorter hidden-test line is searched for only in its own release
TEXT_SUFFIXES = (".ipynb", ".py", ".md", ".txt", ".json", ".toml", ".cfg", ".yml", ".yaml", "")  # publishing into a clone of the learner repository keeps its history


def secrets(root: Path, names: list[str]) -> tuple[dict[str, set[str]], set[str]]:
    """``({assignment: its solution and hidden-test lines}, hidden-test lines of every assignment)``.

    Per assignment: :func:`~.notebook.secret_lines`, the set the release check scans that assignment's
    release for. Course-wide: the hidden-test lines, less any line that some solution notebook shows
    outside its regions (``with torch.no_grad():`` in a visible test is not a secret of another one) and
    any shorter than ``DISTINCTIVE`` characters (``total, count = 0.0, 0`` also opens library code).
    """
    import nbformat

    from .notebook import hidden_secrets
    from .notebook import HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END, secret_lines, strip_region

    own, hidden, public = {}, set(), []
    for name in names:
        own[name] = set()
        for path in sorted((root / "solutions" / name).glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            own[name] |= secret_lines(nb)
            hidden |= hidden_secrets(nb)
            public += [strip_region(strip_region(c.source, SOLUTION_BEGIN, SOLUTION_END), HIDDEN_BEGIN, HIDDEN_END)
                       for c in nb.cells]
    public_lines = {ln.strip() for text in public for ln in text.splitlines()}
    return own, {s for s in hidden - public_lines if len(s) >= DISTINCTIVE}


def leaks(edition: Path, own: dict[str, set[str]], hidden: set[str]) -> list[str]:
    """What in ``edition`` a learner must not see: forbidden folders, nbgrader markers anywhere, a line of an
    assignment's solution or hidden tests in its released folder (the release check's rule), and a
    hidden-test line anywhere. (Lectures and ``course_lib`` teach the methods the exercises ask for, so a
    solution line may appear there; no hidden test may.)"""
    from .checker import file_text, scan_text

    problems = [f"{rel}/ is in the learner edition (it holds solutions, hidden tests or the wrong-answer bank)."
                for rel in ("solutions", "tests", *INSTRUCTOR_ONLY) if (edition / rel).exists()]
    for path in sorted(p for p in edition.rglob("*") if p.is_file()):
        rel = path.relative_to(edition)
        if ".git" in rel.parts or path.suffix not in TEXT_SUFFIXES:
            continue
        text = file_text(path)
        if "\x00" in text:
            continue
        secret = hidden | (own.get(rel.parts[1], set()) if rel.parts[0] == "exercises" and len(rel.parts) > 2 else set())
        problems += scan_text(rel.as_posix(), text, secret)
    return problems


def learner_readme(root: Path) -> str:
    """The learner edition's README: the instructor README's course part, without the instructor sections."""
    from .. import project

    text = (root / "README.md").read_text(encoding="utf-8")
    drop = ("## Quickstart", "## For instructors", "## Benchmarks", "## Layout", "## The learner edition")
    parts, keep = [], True
    for line in text.splitlines():
        if line.startswith("## "):
            keep = not line.startswith(drop)
        if keep:
            parts.append(line)
    parts += ["", "## Getting started on your machine", "", "```bash",
              'python3 -m venv .venv && . .venv/bin/activate && pip install -c constraints.txt -e ".[lab]" && course lab',
              "```", "",
              "`course doctor` tells you what the machine has and which runtime the course will use, and why.",
              "", "## Layout", "", "```",
              "course_lib/     the library the notebooks use (runtime, models, methods, plots, widgets)",
              "lectures/       one notebook per topic", "exercises/      the exercises, graded by nbgrader's Validate",
              "binder/         what Binder (repo2docker) reads", "```", "",
              f"This is the learner edition of the course, published from the instructors' repository with "
              f"`course publish`. Its address is {project.repository()}.", ""]
    return "\n".join(parts)


def assemble(root: Path, stage: Path) -> None:
    for d in LEARNER_DIRS:
        if (root / d).is_dir():
            shutil.copytree(root / d, stage / d, ignore=IGNORE)
    for rel in INSTRUCTOR_ONLY:
        shutil.rmtree(stage / rel, ignore_errors=True)
    for f in LEARNER_FILES:
        if (root / f).is_file():
            shutil.copy2(root / f, stage / f)
    (stage / "README.md").write_text(learner_readme(root), encoding="utf-8")


def publish(dest: Path, *, force: bool = False, check_release: bool = True) -> int:
    """Write the learner edition into ``dest``; 1 (and nothing written) on a leak or a stale release."""
    from .releasing import report_stale

    cfg = load_config()
    root, names = cfg.root, assignments(cfg.root)
    dest = Path(dest).resolve()
    if dest == root or root in dest.parents:
        raise CourseError(f"{dest} is inside the course checkout {root}.",
                          "publish to a folder outside the checkout, e.g. a clone of the learner repository.")
    existing = [p for p in dest.iterdir() if p.name not in KEEP_IN_DEST] if dest.is_dir() else []
    if existing and not force:
        raise CourseError(f"{dest} is not empty ({len(existing)} entries).",
                          f"give an empty or new folder, or `course publish {dest} --force` to replace its "
                          "contents (a .git folder there is kept).")
    if check_release and report_stale(cfg, names, "course publish",
                                      "run `course release`, commit exercises/, then publish."):
        return 1
    with tempfile.TemporaryDirectory(prefix="course-publish-") as tmp:
        stage = Path(tmp) / "edition"
        stage.mkdir()
        assemble(root, stage)
        found = leaks(stage, *secrets(root, names))
        if found:
            print(f"course publish: refused, {len(found)} leak(s) in the learner edition (nothing written to {dest}):",
                  file=sys.stderr)
            for p in found:
                print(f"  - {p}", file=sys.stderr)
            return 1
        for p in existing:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage, dest, dirs_exist_ok=True)
    n = sum(1 for p in dest.rglob("*") if p.is_file() and ".git" not in p.relative_to(dest).parts)
    print(f"learner edition written to {dest}: {n} files; no solutions/, tests/ or course_lib/grading/, "
          f"no solution or hidden-test line of {len(names)} assignments, no nbgrader marker.")
    return 0

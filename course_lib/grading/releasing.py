"""``course release [--check]``: regenerate ``exercises/`` from ``solutions/`` with nbgrader.

Always ``--force`` (without it nbgrader silently keeps an existing release). ``--check`` releases into
a scratch directory and compares it, file by file, with the committed ``exercises/``.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import CourseError
from .config import GradingConfig, assignments, last_error, load_config, nbgrader


def generate(cfg: GradingConfig, names: list[str], nb_root: Path | None = None, copy_sources: bool = True) -> Path:
    """Release ``names`` under ``nb_root`` (default: the course itself); returns the release directory.

    With another ``nb_root`` the sources are copied there first, so the course is left untouched.
    """
    nb_root = Path(nb_root or cfg.root)
    if nb_root != cfg.root and copy_sources:
        for name in names:
            dst = nb_root / "solutions" / name
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(cfg.root / "solutions" / name, dst,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for name in names:
        proc = nbgrader(["generate_assignment", name, "--force"], cfg, nb_root=nb_root)
        out = nb_root / "exercises" / name
        if proc.returncode != 0:
            raise CourseError(f"nbgrader generate_assignment {name} failed: {last_error(proc.stdout)}",
                              f"run `course check {name}` for a readable diagnosis of solutions/{name}.")
        if not out.is_dir():
            raise CourseError(f"nbgrader reported success but wrote no {out}: it did not use nbgrader_config.py.",
                              "run nbgrader from the course root, where nbgrader_config.py is.")
    return nb_root / "exercises"


def _files(base: Path) -> dict[str, bytes]:
    if not base.is_dir():
        return {}
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file() and ".ipynb_checkpoints" not in p.parts}


# What JupyterLab rewrites when it saves a notebook (or Validate runs it) without the author changing a
# cell: the kernel and language versions, widget state, execution timings, cell ids, view state.
LAB_NOTEBOOK_METADATA = ("kernelspec", "language_info", "widgets", "toc", "toc-autonumbering", "vscode",
                         "colab", "celltoolbar", "varInspector")
LAB_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled", "jupyter", "trusted")


def _significant(raw: bytes):
    """A released notebook as far as learners and the grader are concerned (None: not a notebook)."""
    import json

    try:
        nb = json.loads(raw)
    except ValueError:
        return None
    meta = {k: v for k, v in nb.get("metadata", {}).items() if k not in LAB_NOTEBOOK_METADATA}
    cells = []
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        cells.append({"cell_type": cell.get("cell_type"), "source": "".join(src) if isinstance(src, list) else src,
                      "metadata": {k: v for k, v in cell.get("metadata", {}).items() if k not in LAB_CELL_METADATA},
                      "outputs": cell.get("outputs", [])})
    return {"nbformat": nb.get("nbformat"), "metadata": meta, "cells": cells}


def notebook_difference(old: bytes, new: bytes) -> str | None:
    """What differs between two notebooks beyond JupyterLab's metadata, in words; None if nothing does."""
    a, b = _significant(old), _significant(new)
    if a is None or b is None:
        return "the file differs"
    if a == b:
        return None
    if a["metadata"] != b["metadata"]:
        keys = sorted(k for k in set(a["metadata"]) | set(b["metadata"]) if a["metadata"].get(k) != b["metadata"].get(k))
        return f"notebook metadata {', '.join(keys)}"
    if len(a["cells"]) != len(b["cells"]):
        return f"{len(a['cells'])} cells committed, {len(b['cells'])} in a fresh release"
    for i, (x, y) in enumerate(zip(a["cells"], b["cells"])):
        if x != y:
            what = [k for k in ("cell_type", "source", "outputs") if x[k] != y[k]]
            what += [f"metadata {k}" for k in sorted(set(x["metadata"]) | set(y["metadata"]))
                     if x["metadata"].get(k) != y["metadata"].get(k)]
            gid = (y["metadata"].get("nbgrader") or {}).get("grade_id")
            return f"cell {i}{f' ({gid})' if gid else ''}: {', '.join(what)}"
    return "the file differs"


def compare(committed: Path, fresh: Path, names: list[str]) -> list[str]:
    """Differences between the committed release and a fresh one, for ``names``; [] if identical.

    Notebooks are compared as learners and the grader see them: metadata that JupyterLab rewrites on
    save (``LAB_NOTEBOOK_METADATA``, ``LAB_CELL_METADATA``, cell ids) is ignored, and any other
    difference is named (which cell, which part).
    """
    problems = []
    for name in names:
        old, new = _files(committed / name), _files(fresh / name)
        for rel in sorted(set(old) | set(new)):
            path = f"exercises/{name}/{rel}"
            if rel not in old:
                problems.append(f"{path} is missing from the committed release.")
            elif rel not in new:
                problems.append(f"{path} is committed but a fresh release has no such file (stale).")
            elif old[rel] != new[rel]:
                what = notebook_difference(old[rel], new[rel]) if rel.endswith(".ipynb") else "the file differs"
                if what is not None:
                    problems.append(f"{path} differs from a fresh release of solutions/{name} ({what}): "
                                    "stale or edited by hand.")
    return problems


def stale(cfg: GradingConfig, names: list[str]) -> list[str]:
    """What differs between the committed ``exercises/`` and a fresh release (headers synced first)."""
    from .. import authoring

    committed = cfg.root / "exercises"
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        tmp = Path(tmp)
        for name in names:
            shutil.copytree(cfg.root / "solutions" / name, tmp / "solutions" / name,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        (tmp / "lectures").mkdir()
        problems = [f"solutions/{p.relative_to(tmp / 'solutions').as_posix()}: badges or setup cell out of date."
                    for p in authoring.sync_headers(tmp)]
        fresh = generate(cfg, names, tmp, copy_sources=False)
        problems += compare(committed, fresh, names)
    if authoring.sync_readme(cfg.root, write=False):
        problems.append("README.md: badges or install line differ from pyproject.toml's Repository.")
    if committed.is_dir():
        problems += [f"exercises/{d.name}/ has no source solutions/{d.name}/ (git rm -r it)."
                     for d in sorted(committed.iterdir()) if d.is_dir() and d.name not in names]
    return problems


def report_stale(cfg: GradingConfig, names: list[str], command: str, fix: str) -> bool:
    """Print what :func:`stale` finds, with ``fix``, to stderr; True if anything is stale."""
    problems = stale(cfg, names)
    if problems:
        print(f"{command}: the committed exercises/ is not what solutions/ releases:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        print(f"How to fix: {fix}", file=sys.stderr)
    return bool(problems)


def release(check: bool = False) -> int:
    from .. import authoring

    cfg = load_config()
    names = assignments(cfg.root)
    if check:
        if report_stale(cfg, names, "course release --check",
                        "run `course release` and commit exercises/ (never edit exercises/ by hand)."):
            return 1
        print(f"exercises/ is up to date ({len(names)} assignments).")
        return 0
    if authoring.sync_readme(cfg.root):
        print("updated README.md: badges and install line from pyproject.toml's Repository")
    changed = authoring.sync_headers(cfg.root)
    for path in changed:
        print(f"updated header/setup cells: {path.relative_to(cfg.root)}")
    generate(cfg, names)
    for name in names:
        print(f"released exercises/{name}/")
    known = set(names)
    for d in sorted((cfg.root / "exercises").iterdir()) if (cfg.root / "exercises").is_dir() else []:
        if d.is_dir() and d.name not in known:
            print(f"note: exercises/{d.name}/ has no source in solutions/; remove it (git rm -r).")
    return 0

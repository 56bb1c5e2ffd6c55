"""Where the course lives: the one configured repository URL and the course root on disk.

Badges (Colab, Binder) and the Colab setup cell are all derived from ``REPOSITORY`` and
``BRANCH``; change them here and run ``course release`` to regenerate the notebooks' badges.
"""
from __future__ import annotations

import os
from pathlib import Path

REPOSITORY = "https://github.com/efficient-adaptation/course"
BRANCH = "main"


def _github_path() -> str:
    return REPOSITORY.removeprefix("https://github.com/").rstrip("/")


def colab_url(notebook: str) -> str:
    """Open-in-Colab link for a notebook path relative to the course root."""
    return f"https://colab.research.google.com/github/{_github_path()}/blob/{BRANCH}/{notebook}"


def binder_url(notebook: str) -> str:
    """mybinder.org link that opens ``notebook`` in JupyterLab."""
    return f"https://mybinder.org/v2/gh/{_github_path()}/{BRANCH}?urlpath=lab/tree/{notebook}"


def pip_spec() -> str:
    """What Colab's setup cell installs."""
    return f"git+{REPOSITORY}.git@{BRANCH}"


def course_root(start: str | os.PathLike | None = None) -> Path:
    """The directory holding ``lectures/`` and ``solutions/``.

    ``COURSE_ROOT`` wins; otherwise the nearest parent of ``start`` (default: the working
    directory) that has ``pyproject.toml`` and ``lectures/`` or ``solutions/``; otherwise the
    checkout this package was installed from (editable installs).
    """
    def is_root(d: Path) -> bool:
        return (d / "pyproject.toml").is_file() and ((d / "lectures").is_dir() or (d / "solutions").is_dir())

    if os.environ.get("COURSE_ROOT"):
        return Path(os.environ["COURSE_ROOT"]).resolve()
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if is_root(d):
            return d
    pkg_parent = Path(__file__).resolve().parents[1]
    if is_root(pkg_parent):
        return pkg_parent
    from .errors import CourseError
    raise CourseError(f"no course checkout found at or above {here}.",
                      "cd into the cloned course repository, or set COURSE_ROOT=/path/to/course.")

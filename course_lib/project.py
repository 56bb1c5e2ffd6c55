"""Where the course lives: the one configured repository URL and the course root on disk.

The URL is pyproject.toml's ``[project.urls] Repository`` (read from the checkout's pyproject.toml, or
from the installed package's metadata on Colab). It must name the *published learner edition* (what
``course publish`` writes: no solutions, no hidden tests), because Colab and Binder badges, the Colab
setup cell's install line and the README's links are all derived from it. Change it in pyproject.toml
and run ``course release``: that regenerates every notebook's badges and the README's links, and
``tests/test_entry_points.py`` fails while any of them disagrees.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

DISTRIBUTION = "efficient-adaptation-course"
BRANCH = "main"


@lru_cache(maxsize=1)
def repository() -> str:
    """The configured repository URL (pyproject's ``[project.urls] Repository``), without a trailing /."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        m = re.search(r'(?m)^Repository\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"))
        if m:
            return m.group(1).rstrip("/")
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        for entry in metadata(DISTRIBUTION).get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip() == "Repository":
                return url.strip().rstrip("/")
    except PackageNotFoundError:
        pass
    from .errors import ConfigError
    raise ConfigError("no repository URL configured: pyproject.toml has no [project.urls] Repository.",
                      'add Repository = "https://github.com/OWNER/NAME" under [project.urls] in pyproject.toml.')


def __getattr__(name: str):  # project.REPOSITORY, read lazily (importing the package does no work)
    if name == "REPOSITORY":
        return repository()
    raise AttributeError(name)


def _github_path() -> str:
    return repository().removeprefix("https://github.com/").rstrip("/")


def colab_url(notebook: str) -> str:
    """Open-in-Colab link for a notebook path relative to the course root."""
    return f"https://colab.research.google.com/github/{_github_path()}/blob/{BRANCH}/{notebook}"


def binder_url(notebook: str) -> str:
    """mybinder.org link that opens ``notebook`` in JupyterLab."""
    return f"https://mybinder.org/v2/gh/{_github_path()}/{BRANCH}?urlpath=lab/tree/{notebook}"


def pip_spec() -> str:
    """What Colab's setup cell installs (a pip requirement naming the published repository)."""
    return f"{DISTRIBUTION} @ git+{repository()}.git@{BRANCH}"


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

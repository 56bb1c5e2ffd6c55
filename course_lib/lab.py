"""JupyterLab for the course: ``course lab [ARGS...]`` and the course's Lab settings.

The course ships default Lab settings in ``course_lib/data/jupyterlab-overrides.json`` (JupyterLab's
"overrides" mechanism: defaults a user can still change in Settings). Today they switch off the
"Would you like to get notified about official Jupyter news?" pop-up and the update check, which cover
the notebook on a first start. :func:`install_overrides` merges them into the environment's
``share/jupyter/lab/settings/overrides.json`` (where JupyterLab reads them); ``course lab`` does this
before starting, and Binder's ``postBuild`` runs ``python -m course_lib.lab --install-overrides``.
"""
from __future__ import annotations

import json
import os
import sys
from importlib.resources import files
from pathlib import Path


def course_overrides() -> dict:
    return json.loads(files("course_lib.data").joinpath("jupyterlab-overrides.json").read_text())


def overrides_path(prefix: str | os.PathLike | None = None) -> Path:
    """Where JupyterLab (app_settings_dir) reads ``overrides.json`` in the environment ``prefix``."""
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def install_overrides(prefix: str | os.PathLike | None = None) -> Path:
    """Merge the course's Lab settings into ``overrides.json`` of ``prefix``; other plugins' keys stay."""
    path = overrides_path(prefix)
    current = {}
    if path.is_file():
        try:
            current = json.loads(path.read_text() or "{}")
        except ValueError:
            from .errors import ConfigError
            raise ConfigError(f"{path} is not valid JSON, so the course cannot add its Lab settings to it.",
                              f"fix or delete {path}, then run `course lab` again.") from None
    merged = dict(current)
    for plugin, settings in course_overrides().items():
        merged[plugin] = {**current.get(plugin, {}), **settings}
    if merged != current:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2) + "\n")
    return path


def lab_command(root: Path, extra: list[str]) -> list[str]:
    """The JupyterLab command line: the course root as Lab's root, then the user's own arguments."""
    return [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", *extra]


def prepare_root(root: Path) -> None:
    """What the formgrader needs on a fresh clone: the folder of nbgrader's gradebook database."""
    (root / "build" / "nbgrader").mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--install-overrides"]:
        print(f"JupyterLab settings of the course written to {install_overrides()}")
    else:
        sys.exit("usage: python -m course_lib.lab --install-overrides")

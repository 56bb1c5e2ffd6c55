"""Installing the course on Colab without breaking Colab.

Colab pins its own Jupyter stack (IPython 7.34, notebook 6.5, ipywidgets 7.7 at the time of writing)
and its front end depends on those versions: upgrading them (what installing JupyterLab or nbgrader
does) is a known cause of crashed runtimes and of widgets that do not render. So the setup cell of
every notebook installs in two steps:

1. ``pip install --no-deps "efficient-adaptation-course @ git+REPOSITORY"``: the course alone (this line
   has to be in the cell itself, since ``course_lib`` is not there yet);
2. :func:`install_dependencies`: the core dependencies of the package (never the ``lab``/``grade``
   extras), with a pip constraints file that pins every Jupyter package at the version already
   installed, so pip leaves them alone or fails saying which requirement conflicts. pip's output is
   shown as it runs; a failure raises :class:`~course_lib.errors.CourseError` with the command to rerun.
   Then, with ipywidgets 8 or newer, Colab's custom widget manager is enabled (Colab's built-in one
   renders only ipywidgets 7).
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from .errors import CourseError
from .project import DISTRIBUTION

# What Colab's front end and kernel are built on: pip must not move any of these.
JUPYTER_PACKAGES = ("ipython", "notebook", "ipywidgets", "ipykernel", "jupyter-client", "jupyter-core",
                    "jupyter-server", "jupyterlab-widgets", "widgetsnbextension", "traitlets", "tornado",
                    "pyzmq", "nbformat", "nbconvert", "nbclient", "google-colab")


def installed_versions(names=JUPYTER_PACKAGES) -> dict[str, str]:
    """``{name: version}`` of the packages among ``names`` that are installed."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def core_requirements() -> list[str]:
    """The package's own dependencies without extras, for this platform (from the installed metadata)."""
    from packaging.requirements import Requirement

    out = []
    for line in requires(DISTRIBUTION) or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra's requirement (lab, grade, ...) or another platform's
        req.marker = None
        out.append(str(req))
    return out


def constraints_file(pins: dict[str, str], path: Path | None = None) -> Path:
    """Write ``name==version`` lines for pip's ``-c``; kept (not deleted) so the rerun command works."""
    path = path or Path(tempfile.gettempdir()) / "course-colab-constraints.txt"
    path.write_text("".join(f"{name}=={v}\n" for name, v in sorted(pins.items())))
    return path


def install_command(constraints: Path, requirements: list[str]) -> list[str]:
    return [sys.executable, "-m", "pip", "install", "-c", str(constraints), *requirements]


def _run_showing_output(cmd: list[str]) -> tuple[int, str]:
    """Run ``cmd``, printing its output line by line as it comes (a notebook shows Python's prints)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        print(line, end="", flush=True)
    return proc.wait(), "".join(lines)


def enable_widget_manager() -> bool:
    """On Colab with ipywidgets >= 8, switch on Colab's custom widget manager; True if it was enabled."""
    try:
        from google.colab import output
    except ImportError:
        return False
    major = int(installed_versions(["ipywidgets"]).get("ipywidgets", "0").split(".")[0])
    if major >= 8:
        output.enable_custom_widget_manager()
        return True
    return False


def install_dependencies(run=_run_showing_output) -> dict[str, tuple[str, str | None]]:
    """Install the core dependencies with Colab's Jupyter packages pinned; returns what changed among
    them (``{}`` when, as intended, nothing did). Raises :class:`CourseError` if pip fails."""
    before = installed_versions()
    cmd = install_command(constraints_file(before), core_requirements())
    print("Installing the course's dependencies; Colab's Jupyter packages stay as they are "
          f"({', '.join(f'{k} {v}' for k, v in before.items() if k in ('ipython', 'notebook', 'ipywidgets'))}).")
    print("$ " + shlex.join(cmd), flush=True)
    code, _ = run(cmd)
    if code != 0:
        raise CourseError(f"pip could not install the course's dependencies (exit status {code}); its output "
                          "above names the package that failed or conflicts with Colab's pinned Jupyter packages.",
                          f"run the setup cell again, or in a new cell: !{shlex.join(cmd)}   If it keeps failing, "
                          "choose Runtime > Disconnect and delete runtime, then run the setup cell first.")
    after = installed_versions()
    changed = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
    if changed:
        print("warning: pip changed Colab's Jupyter packages: "
              + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
              + ". Choose Runtime > Restart session if widgets or outputs misbehave.", file=sys.stderr)
    if enable_widget_manager():
        print("Colab's custom widget manager is on (ipywidgets 8).")
    return changed

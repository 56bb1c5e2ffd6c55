"""Helpers for authors of lecture and exercise notebooks.

Every notebook starts with two generated cells, tagged in their metadata:

* ``course: header``: the title, the objectives and the Colab and Binder badges. Badge links
  come from :mod:`course_lib.project`, so one configured repository URL drives them all.
* ``course: setup``: on Colab it installs the course package (the course alone, then its core
  dependencies with Colab's Jupyter packages pinned: :mod:`course_lib.colab`); everywhere it then
  selects the runtime and prints what was chosen (device, model, budget, CPU threads).

``sync_headers()`` (run by ``course release``) rewrites the badges and the setup cell of every
notebook from the current configuration. The cell builders below also set nbgrader metadata with
fixed cell ids, for writing source notebooks with nbformat.
"""
from __future__ import annotations

import re
from pathlib import Path

from . import project

SETUP_TEMPLATE = '''# Setup: on Colab this installs the course, leaving Colab's IPython, notebook and ipywidgets as they are
# (course_lib/colab.py); elsewhere it changes nothing. Then it selects the runtime and prints it.
import sys
if "google.colab" in sys.modules:
    import subprocess  # first the course alone, then its dependencies with Colab's Jupyter pinned
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "{pip_spec}"], check=True)
    from course_lib.colab import install_dependencies
    install_dependencies()

from course_lib.runtime import select_runtime
runtime = select_runtime()  # COURSE_RUNTIME=embedded|gpu overrides the automatic choice
print(runtime)'''

BADGE_LINE = re.compile(r"^\[!\[(Open In Colab|Binder)\]")


def badges(notebook: str) -> str:
    """Markdown for the two badges of ``notebook`` (a path relative to the course root)."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({project.colab_url(notebook)}) "
            f"[![Binder](https://mybinder.org/badge_logo.svg)]({project.binder_url(notebook)})")


def setup_source() -> str:
    return SETUP_TEMPLATE.format(pip_spec=project.pip_spec())


def header_markdown(title: str, objectives: list[str], notebook: str, intro: str = "") -> str:
    lines = [f"# {title}", "", badges(notebook), ""]
    if intro:
        lines += [intro, ""]
    lines += ["**After this notebook you can:**", ""] + [f"- {o}" for o in objectives]
    return "\n".join(lines)


def _nbgrader(grade_id: str, *, grade=False, solution=False, locked=False, points=None) -> dict:
    meta = {"schema_version": 3, "grade": grade, "solution": solution, "locked": locked, "grade_id": grade_id}
    if grade:
        meta["points"] = points
    return meta


def markdown(source: str, grade_id: str | None = None, **course_meta):
    """A markdown cell; with ``grade_id`` it is a locked nbgrader cell with that fixed id."""
    from nbformat.v4 import new_markdown_cell

    cell = new_markdown_cell(source)
    if grade_id:
        cell.metadata["nbgrader"] = _nbgrader(grade_id, locked=True)
        cell.id = grade_id.replace("_", "-")
    if course_meta:
        cell.metadata["course"] = course_meta.get("role", "")
    return cell


def code(source: str, grade_id: str | None = None, *, locked=False, solution=False, points=None, role: str = ""):
    """A code cell. ``solution=True`` makes an answer cell, ``points`` a graded test cell,
    ``locked=True`` a read-only cell (setup, references)."""
    from nbformat.v4 import new_code_cell

    cell = new_code_cell(source)
    if grade_id:
        cell.metadata["nbgrader"] = _nbgrader(grade_id, grade=points is not None, solution=solution,
                                              locked=locked or points is not None, points=points)
        cell.id = grade_id.replace("_", "-")
    if role:
        cell.metadata["course"] = role
    return cell


def header_cells(title: str, objectives: list[str], notebook: str, intro: str = "", graded: bool = False):
    """The two generated cells; ``graded=True`` gives them locked nbgrader metadata."""
    head = markdown(header_markdown(title, objectives, notebook, intro), "header" if graded else None)
    head.metadata["course"] = "header"
    setup = code(setup_source(), "setup" if graded else None, locked=graded, role="setup")
    return [head, setup]


def sync_notebook(path: Path, root: Path) -> bool:
    """Regenerate badges and the setup cell of one notebook; True if it changed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    if rel.startswith("solutions/"):
        rel = "exercises/" + rel.removeprefix("solutions/")  # learners open the release
    changed = False
    for cell in nb.cells:
        role = cell.metadata.get("course")
        if role == "header":
            lines = [ln for ln in cell.source.splitlines() if not BADGE_LINE.match(ln)]
            rest = "\n".join(lines[1:]).strip("\n")
            new = f"{lines[0]}\n\n{badges(rel)}" + (f"\n\n{rest}" if rest else "")
        elif role == "setup":
            new = setup_source()
        else:
            continue
        if new != cell.source:
            cell.source, changed = new, True
    if changed:
        nbformat.write(nb, path)
    return changed


README_BEGIN = "<!-- course:links: generated by `course release` from pyproject.toml's Repository; do not edit -->"
README_END = "<!-- /course:links -->"


def readme_links() -> str:
    """The README's generated block: Binder and Colab badges of the learner edition and its install line."""
    return "\n".join([
        README_BEGIN,
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({project.binder_url('lectures')}) "
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({project.colab_url('lectures/01_in_context_learning.ipynb')})",
        "",
        "```bash",
        f'pip install "{project.pip_spec()}"',
        "```",
        README_END])


def sync_readme(root: Path | None = None, write: bool = True) -> bool:
    """Regenerate the links block of ``README.md``; True if it was (or, with ``write=False``, would be) changed."""
    path = (root or project.course_root()) / "README.md"
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        from .errors import ConfigError
        raise ConfigError(f"{path} has no generated links block ({README_BEGIN} ... {README_END}).",
                          "put the two marker lines back where the badges and install line belong, then run "
                          "`course release`.")
    new = text[:start] + readme_links() + text[end + len(README_END):]
    if new != text and write:
        path.write_text(new, encoding="utf-8")
    return new != text


def sync_headers(root: Path | None = None) -> list[Path]:
    """Rewrite badges and setup cells in lectures/ and solutions/; returns the notebooks changed."""
    root = root or project.course_root()
    paths = sorted((root / "lectures").glob("*.ipynb")) + sorted((root / "solutions").glob("*/*.ipynb"))
    return [p for p in paths if sync_notebook(p, root)]

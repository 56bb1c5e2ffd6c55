"""Every lecture notebook runs top to bottom on the embedded default, as a learner would run it.

(Solution notebooks are executed by ``course check``, through nbgrader, in test_assignments.py.)
"""
from pathlib import Path

import pytest

from course_lib.notebooks import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("*.ipynb"))


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_lecture_runs_top_to_bottom(path, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_RUNTIME", "embedded")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the backend a learner's kernel uses: plots are kept as PNG outputs, which `course book` shows
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    result = execute_notebook(path, ROOT / "build" / "executed" / "lectures" / path.name, progress=False)
    assert result.ok, f"{path.name} failed: {result.error}"


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_lecture_is_committed_clean_and_starts_with_the_generated_cells(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), \
        f"{path.name} has outputs: clear them before committing"
    assert nb.cells[0].metadata.get("course") == "header" and nb.cells[1].metadata.get("course") == "setup"
    assert "colab.research.google.com" in nb.cells[0].source and "mybinder.org" in nb.cells[0].source

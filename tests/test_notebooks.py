"""Every lecture notebook runs top to bottom on the embedded default, as a learner would run it, and says
nothing its own output contradicts.

(Solution notebooks are executed by ``course check``, through nbgrader, in test_assignments.py.)
"""
import re
from pathlib import Path

import pytest

from course_lib import findings
from course_lib.notebooks import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("*.ipynb"))


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_lecture_runs_top_to_bottom(path, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_RUNTIME", "embedded")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the backend a learner's kernel uses: plots are kept as PNG outputs, which `course book` shows
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    executed = ROOT / "build" / "executed" / "lectures" / path.name
    result = execute_notebook(path, executed, progress=False)
    assert result.ok, f"{path.name} failed: {result.error}"
    assert_findings_agree_with_prose(executed)


def assert_findings_agree_with_prose(executed: Path):
    """The executed lecture's findings are recorded, shown as their conditions select, and every sentence of
    prose that relies on one (``<!-- finding: KEY -->``, or its claim word for word) is backed by a finding that
    holds in this run (:func:`course_lib.findings.check_notebook`)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    calls = re.compile(r"\b(?:F|findings)\.show\(")
    silent = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and calls.search(c.source)
              and not any(findings.MIME_TYPE in o.get("data", {}) for o in c.get("outputs", []))]
    assert not silent, f"{executed.name}: cells {silent} call findings.show() but recorded no findings"
    problems = findings.check_notebook(nb)
    assert not problems, f"{executed.name} says what its own output contradicts:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_lecture_is_committed_clean_and_starts_with_the_generated_cells(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), \
        f"{path.name} has outputs: clear them before committing"
    assert nb.cells[0].metadata.get("course") == "header" and nb.cells[1].metadata.get("course") == "setup"
    assert "colab.research.google.com" in nb.cells[0].source and "mybinder.org" in nb.cells[0].source


def test_a_lecture_whose_prose_a_finding_contradicts_fails(tmp_path):
    """The check above on an executed lecture built by hand: prose relying on a finding that did not hold."""
    import nbformat

    claim = findings.finding("full fine-tuning beats LoRA", False, "full 80%, LoRA 85%", key="full-wins")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Full fine-tuning wins. <!-- finding: full-wins -->"),
                nbformat.v4.new_code_cell("F.show(full_wins)", outputs=[nbformat.v4.new_output(
                    "display_data", data=findings.report(claim)._repr_mimebundle_())])]
    nbformat.write(nb, tmp_path / "contradicted.ipynb")
    with pytest.raises(AssertionError, match="full-wins"):
        assert_findings_agree_with_prose(tmp_path / "contradicted.ipynb")
    nb.cells[0].source = "Which method wins is stated by the finding below."
    nb.cells.append(nbformat.v4.new_code_cell("F.show(silent)"))          # a findings cell with no record
    nbformat.write(nb, tmp_path / "silent.ipynb")
    with pytest.raises(AssertionError, match=r"cells \[2\] call findings.show\(\) but recorded no findings"):
        assert_findings_agree_with_prose(tmp_path / "silent.ipynb")
    nb.cells.pop()
    nbformat.write(nb, tmp_path / "honest.ipynb")
    assert_findings_agree_with_prose(tmp_path / "honest.ipynb")

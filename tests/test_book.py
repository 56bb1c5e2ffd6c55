"""`course book` on a tiny course: two lectures, one exercise with its solution.

The lectures' executed copies are written here as `course run` would write them (outputs plus the
source hash), so the build needs no kernel. Needs the [book] extra (Jupyter Book); CI runs this
file in its book stage, after `pip install -e ".[book]"`.
"""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from course_lib import book
from course_lib.errors import CourseError
from course_lib.notebooks import source_sha256

pytest.importorskip("jupyter_book", reason='course book needs the [book] extra: pip install -e ".[book]"')

ROOT = Path(__file__).resolve().parents[1]
SECRET = "answer = sorted(words, key=len)[::-1][:3]  # the secret solution line"
HIDDEN = "assert top_three(['a', 'bb', 'ccc', 'dddd']) == ['dddd', 'ccc', 'bb']  # hidden"


def _png() -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, 1, 4])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _lecture(n: int, title: str) -> nbformat.NotebookNode:
    v4 = nbformat.v4
    return v4.new_notebook(cells=[
        v4.new_markdown_cell(f"# Lecture {n:02d}: {title}\n\n[![Open In Colab](https://colab.research.google.com/"
                             f"assets/colab-badge.svg)](https://colab.research.google.com/x)\n\n"
                             f"The update is $h = W_0x + \\frac{{\\alpha}}{{r}}BAx$ and\n\n$$\\sum_{{i=1}}^{{{n}}} i^2$$"),
        v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1, 2], [0, 1, 4]); plt.show()"),
    ])


def _executed(nb: nbformat.NotebookNode, source: Path, widget: bool = False) -> nbformat.NotebookNode:
    """What `course run` writes: outputs, and the hash of the source it ran."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    png = base64.b64encode(_png()).decode()
    code = nb.cells[1]
    code.execution_count = 1
    code.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})]
    if widget:  # as nbclient records them: the explorer (a slider above an Output widget that drew a figure),
        # a finished tqdm bar (HTML, progress, HTML) and a bar closed with leave=False (gone from the state)
        for model_id in ("box", "bar", "closed"):
            code.outputs.append(nbformat.v4.new_output("display_data", data={
                book.WIDGET_VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0},
                "text/plain": "VBox(children=(Output(),))"}))
        nb.metadata["widgets"] = {book.WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": {
            "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_rank", "IPY_MODEL_out"]}},
            "rank": {"model_name": "IntSliderModel", "state": {"description": "rank r", "value": 8}},
            "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_b1", "IPY_MODEL_b2", "IPY_MODEL_b3"]}},
            "b1": {"model_name": "HTMLModel", "state": {"value": "training: 100%"}},
            "b2": {"model_name": "FloatProgressModel", "state": {"value": 30.0, "max": 30.0}},
            "b3": {"model_name": "HTMLModel", "state": {"value": " 30/30 [00:01&lt;00:00, loss=0.125]"}},
            "out": {"model_name": "OutputModel", "state": {"outputs": [
                {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}, "metadata": {}},
                {"output_type": "stream", "name": "stdout", "text": "r = 8, alpha = 16: widget text\n"}]}}}}}
    nb.metadata[book.EXECUTED_KEY] = {"source_sha256": source_sha256(source), "ok": True}
    return nb


def _assignment(with_solution: bool) -> nbformat.NotebookNode:
    v4 = nbformat.v4
    answer = (f"def top_three(words):\n    ### BEGIN SOLUTION\n    {SECRET}\n    return answer\n    ### END SOLUTION"
              if with_solution else "def top_three(words):\n    # YOUR CODE HERE\n    raise NotImplementedError()")
    test = ("assert top_three(['a', 'bb']) == ['bb', 'a']\n" +
            (f"### BEGIN HIDDEN TESTS\n{HIDDEN}\n### END HIDDEN TESTS" if with_solution else ""))
    return v4.new_notebook(cells=[
        v4.new_markdown_cell("# Exercise 01: the three longest words\n\nWrite `top_three(words)`."),
        v4.new_code_cell(answer, metadata={"nbgrader": {"grade_id": "answer", "solution": True, "grade": False,
                                                        "locked": False, "schema_version": 3}}),
        v4.new_code_cell(test, metadata={"nbgrader": {"grade_id": "test", "solution": False, "grade": True,
                                                      "locked": True, "points": 1, "schema_version": 3}}),
    ])


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("course")
    shutil.copy2(ROOT / "README.md", root / "README.md")  # the landing page is made from the real README
    (root / "pyproject.toml").write_text("[project]\nname = 'tiny'\n")
    for n, title in ((1, "in-context learning"), (4, "LoRA")):
        path = root / "lectures" / f"{n:02d}_tiny.ipynb"
        path.parent.mkdir(exist_ok=True)
        nbformat.write(_lecture(n, title), path)
        executed = root / "build" / "executed" / "lectures" / path.name
        executed.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(_executed(_lecture(n, title), path, widget=n == 4), executed)
    for folder, solved in (("solutions", True), ("exercises", False)):
        path = root / folder / "01_tiny" / "01_tiny.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(_assignment(solved), path)
    return root


@pytest.fixture(scope="module")
def learner(course) -> tuple[Path, book.BookResult]:
    return course, book.build(root=course, execute=False)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_learner_edition_has_pages_images_math_and_no_solution(learner):
    course, result = learner
    site = result.out
    assert site == course / "build" / "book" and result.executed == [] and result.unexecuted == []
    for page in ("index.html", "lectures/01_tiny.html", "lectures/04_tiny.html", "exercises/01_tiny.html",
                 "benchmarks.html"):
        assert (site / page).is_file(), f"{page} missing; pages: {result.pages}"
    lecture = _text(site / "lectures" / "01_tiny.html")
    # the executed plot is an image file of the site, referenced by the page
    images = re.findall(r'<img[^>]+src="([^"]+)"', lecture)
    local = [src for src in images if not src.startswith(("http:", "https:", "data:"))]
    assert local and all((site / "lectures" / src).resolve().is_file() for src in local), images
    assert not [src for src in images if src.startswith("http")], f"images from other sites: {images}"
    # math is left for MathJax, which is loaded from the site itself
    assert "\\frac{\\alpha}{r}" in lecture and 'class="math' in lecture
    mathjax = re.findall(r'<script[^>]+src="([^"]*tex-chtml[^"]*)"', lecture)
    assert mathjax and not mathjax[0].startswith("http"), mathjax
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert not re.search(r'<script[^>]+src="https?://', lecture), "a script is loaded from another site"
    # the exercise as learners get it: the task and the visible test, no solution, no hidden test
    everything = "\n".join(_text(p) for p in site.rglob("*.html"))
    assert "top_three" in _text(site / "exercises" / "01_tiny.html")
    assert "NotImplementedError" in _text(site / "exercises" / "01_tiny.html")
    assert "sorted(words, key=len)" not in everything and "dddd" not in everything
    assert "BEGIN SOLUTION" not in everything


def test_widgets_are_replaced_by_what_they_showed(learner):
    course, result = learner
    page = _text(result.out / "lectures" / "04_tiny.html")
    assert "r = 8, alpha = 16: widget text" in page and "rank r: 8" in page
    assert "training: 100%  30/30 [00:01&lt;00:00, loss=0.125]" in page  # the bar as it ended
    nb = _executed(_lecture(4, "LoRA"), course / "lectures" / "04_tiny.ipynb", widget=True)
    assert book.static_widgets(nb) == 3 and "widgets" not in nb.metadata
    kinds = [(o.output_type, o.get("text", "")[:12]) for o in nb.cells[1].outputs]
    # the plot; the explorer's control, figure and text; the finished bar; nothing for the closed bar
    assert kinds == [("display_data", ""), ("stream", "rank r: 8\n"), ("display_data", ""),
                     ("stream", "r = 8, alpha"), ("stream", "training: 10")], kinds
    assert len(re.findall(r"<img[^>]+src=\"[^\"]*_images", page)) >= 2  # the plot and the widget's figure
    assert "VBox(children" not in page and "widget-view+json" not in page


def test_landing_page_comes_from_the_readme_and_links_every_page(learner):
    _, result = learner
    index = _text(result.out / "index.html")
    readme = (ROOT / "README.md").read_text()
    runtimes = book.readme_sections(readme)["Two runtimes"]
    assert re.search(r"Two runtimes", index) and "embedded (default)" in runtimes and "embedded (default)" in index
    for href in ("lectures/01_tiny.html", "lectures/04_tiny.html", "exercises/01_tiny.html", "benchmarks.html"):
        assert f'href="{href}' in index, f"the landing page does not link {href}"
    assert "colab.research.google.com" in index and "mybinder.org" in index


def test_instructor_edition_goes_to_its_own_folder_with_the_solutions(learner):
    course, learner_result = learner
    result = book.build(root=course, solutions=True, execute=False)
    assert result.out == course / "build" / "book-instructor" and result.out != learner_result.out
    page = _text(result.out / "exercises" / "01_tiny.html")
    assert "sorted(words, key=len)" in page and "dddd" in page
    assert "sorted(words, key=len)" not in _text(learner_result.out / "exercises" / "01_tiny.html")
    assert result.unexecuted == ["solutions/01_tiny/01_tiny.ipynb"]  # --no-execute: shown as it is


def test_leak_check_catches_a_solution_line_in_the_learner_edition(learner):
    course, result = learner
    assert book.leak_problems(course, result.out, course / "build" / "book-src" / "learner") == []
    leaked = course / "leaked"
    shutil.copytree(result.out, leaked)
    page = leaked / "exercises" / "01_tiny.html"
    page.write_text(_text(page).replace("</body>", f"<pre>{SECRET}</pre></body>"))
    problems = book.leak_problems(course, leaked, course / "build" / "book-src" / "learner")
    assert any("sorted(words, key=len)" in p for p in problems), problems


def test_freshness_follows_the_source_hash(course, tmp_path):
    src = course / "lectures" / "01_tiny.ipynb"
    executed = book.executed_copy(course, src)
    assert book.is_fresh(src, executed)
    changed = tmp_path / "changed.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.cells[0].source += "\n\nOne more sentence."
    nbformat.write(nb, changed)
    assert not book.is_fresh(changed, executed), "an edited source must make the executed copy stale"
    failed = tmp_path / "failed.ipynb"
    bad = nbformat.read(executed, as_version=4)
    bad.metadata[book.EXECUTED_KEY]["ok"] = False
    nbformat.write(bad, failed)
    assert not book.is_fresh(src, failed) and not book.is_fresh(src, tmp_path / "missing.ipynb")


def test_a_stale_notebook_is_executed_before_the_build(tmp_path):
    """ensure_executed runs a stale notebook in a kernel and records the hash that makes it fresh."""
    root = tmp_path / "c"
    path = root / "lectures" / "01_x.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")]), path)
    shown, executed, _ = book.ensure_executed(root, [path])
    assert executed == ["lectures/01_x.ipynb"] and shown[path] == book.executed_copy(root, path)
    assert book.is_fresh(path, shown[path])
    assert "42" in json.dumps(nbformat.read(shown[path], as_version=4).cells[0].outputs)
    assert book.ensure_executed(root, [path])[1] == [], "a fresh copy must not be executed again"


def test_missing_readme_section_is_a_clear_error():
    with pytest.raises(CourseError, match="Opening the course"):
        book.readme_sections("# Title\n\n## Quickstart\nx\n## Two runtimes\ny\n")


def test_cli_refuses_to_write_the_learner_edition_over_the_instructor_edition(course):
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "course_lib.cli", "book", "--no-execute", "--out",
                        str(course / "build" / "book-instructor")], capture_output=True, text=True,
                       env=dict(os.environ, COURSE_ROOT=str(course)), timeout=120)
    assert r.returncode == 2 and "would overwrite the instructor edition" in r.stderr, r.stderr[-500:]

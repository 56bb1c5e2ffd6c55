"""``course book``: the course as a static web site, built by Jupyter Book 1 (Sphinx, MyST-NB,
sphinx-book-theme) from the executed notebooks.

Two editions, each into its own folder:

* learner (default, ``build/book/``): the landing page, every lecture executed, every exercise as
  ``course release`` gives it to learners (``exercises/``, not executed), the embedded models' cards
  and the benchmarks. After the build every page and every copied source is scanned with the leak
  check of ``course check`` (:func:`course_lib.grading.checker.scan_text`): no line of a solution or
  a hidden test, no nbgrader marker.
* instructor (``--solutions``, ``build/book-instructor/``): the same with the solution notebooks
  (``solutions/``, executed) in place of the exercises.

Executed notebooks come from ``build/executed/`` (written by ``course run`` and by
``tests/test_notebooks.py``). A copy is *fresh* when it records the SHA-256 of the source notebook
file it was executed from and that execution succeeded (:func:`course_lib.notebooks.execute_notebook`
writes both into ``metadata.course_executed``); a file hash, because a fresh clone gives every file
the same modification time. Anything else (missing, other hash, failed) is executed again on the
embedded runtime, with a progress bar, unless ``--no-execute`` is given. Changes to ``course_lib``
do not make a copy stale; run ``course run`` after changing the library.

The site is fully offline, at build time and when it is viewed: the theme and its fonts come in the
pip packages, MathJax 3.2.2 comes from the pip package ``sphinx-mathjax-offline``, whose Sphinx
extension copies it into ``_static/mathjax/``, and ipywidgets are replaced by what the widget drew when the notebook was executed
(its ``Output`` widget's recorded outputs), so no widget JavaScript is loaded from a CDN.

Why one module of this length: page generation, the freshness rule, widget replacement and the
learner-edition leak check run as one build; the Sphinx configuration is written here in one place.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CourseError, MissingDependencyError, require
from .notebooks import source_sha256

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
EXECUTED_KEY = "course_executed"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"  # a kernel's default; "Agg" would keep no plot
# README sections shown on the landing page, by the start of their heading (the README stays the one source).
README_SECTIONS = ("Quickstart", "Two runtimes", "Opening the course")


@dataclass
class Page:
    """One page of the book: ``target`` (relative to the book's source folder) made from ``source``."""
    target: str
    title: str
    source: Path | None = None


@dataclass
class BookResult:
    out: Path
    seconds_executing: float = 0.0
    seconds_building: float = 0.0
    executed: list[str] = field(default_factory=list)
    unexecuted: list[str] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- executed notebooks

def executed_copy(root: Path, notebook: Path) -> Path:
    """Where ``course run`` and the lecture tests write the executed copy of ``notebook``."""
    return root / "build" / "executed" / Path(notebook).resolve().relative_to(root)


def is_fresh(source: Path, executed: Path) -> bool:
    """The executed copy exists, ran without error, and was executed from this exact source file."""
    if not executed.is_file():
        return False
    try:
        meta = json.loads(executed.read_text(encoding="utf-8")).get("metadata", {}).get(EXECUTED_KEY, {})
    except ValueError:
        return False
    return bool(meta.get("ok")) and meta.get("source_sha256") == source_sha256(source)


def ensure_executed(root: Path, notebooks: list[Path], execute: bool = True,
                    timeout: int = 900) -> tuple[dict[Path, Path], list[str], float]:
    """Map each notebook to the copy the book shows: its fresh executed copy, executed now if needed.

    Returns (mapping, names executed now, seconds). With ``execute=False`` a stale notebook is shown
    unexecuted (its source) and named in a warning.
    """
    import os

    from tqdm.auto import tqdm

    from .notebooks import execute_notebook

    shown, stale = {}, []
    for nb in notebooks:
        copy = executed_copy(root, nb)
        if is_fresh(nb, copy):
            shown[nb] = copy
        else:
            stale.append(nb)
    if not stale:
        return shown, [], 0.0
    rels = [str(nb.relative_to(root)) for nb in stale]
    if not execute:
        print(f"course book: not executed (--no-execute), shown without outputs: {', '.join(rels)}", file=sys.stderr)
        shown.update({nb: nb for nb in stale})
        return shown, [], 0.0
    print(f"course book: executing {len(stale)} notebook(s) whose executed copy is missing or stale: {', '.join(rels)}")
    env = {"COURSE_RUNTIME": "embedded", "HF_HUB_OFFLINE": "1", "MPLBACKEND": INLINE_BACKEND}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernels inherit them: the embedded runtime, no hub, plots kept as PNG outputs
    t0, failed = time.time(), []
    try:
        for nb in tqdm(stale, desc="executing notebooks", unit="nb"):
            copy = executed_copy(root, nb)
            result = execute_notebook(nb, copy, timeout=timeout)
            if not result.ok:
                failed.append(f"{nb.relative_to(root)}: {result.error}")
            shown[nb] = copy
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if failed:
        raise CourseError("notebooks failed to execute, so the book would show their errors:\n  " + "\n  ".join(failed),
                          "run them with `course run PATH` to see the error, fix it, then run `course book` again.")
    return shown, rels, time.time() - t0


# ---------------------------------------------------------------- notebook preparation

def _widget_parts(state: dict, model_id: str, seen: set) -> tuple[list[str], list[dict]]:
    """What widget ``model_id`` showed at the end of the run, depth first: (text, outputs).

    Text: the value of each HTML or Label widget (tqdm's bar writes its description and counts there)
    and ``description: value`` of each control (slider, menu); outputs: what each ``Output`` widget
    recorded (the LoRA explorer's figure and numbers). A closed widget is no longer in the state.
    """
    import html

    if model_id in seen or model_id not in state:
        return [], []
    seen.add(model_id)
    model = state[model_id]
    name, st = model.get("model_name", ""), model.get("state", {})
    if name == "OutputModel":
        return [], list(st.get("outputs", []))
    if name in ("HTMLModel", "HTMLMathModel", "LabelModel"):
        value = html.unescape(re.sub(r"<[^>]+>", "", str(st.get("value", "")))).strip()
        return ([value] if value else []), []
    if "_options_labels" in st and st.get("index") is not None:
        return [f"{st.get('description', '')}: {st['_options_labels'][st['index']]}"], []
    if "value" in st and st.get("description") and "Progress" not in name:
        return [f"{st['description']}: {st['value']:g}" if isinstance(st["value"], float) else
                f"{st['description']}: {st['value']}"], []
    texts, outputs = [], []
    for child in st.get("children", []):
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            t, o = _widget_parts(state, child.removeprefix("IPY_MODEL_"), seen)
            texts, outputs = texts + t, outputs + o
    return texts, outputs


def static_widgets(nb) -> int:
    """Replace every widget view in ``nb`` by what it showed when the run ended; drop the widget state.

    A view becomes one line of its text (a progress bar's counts, a control's value) followed by its
    Output widgets' recorded outputs (figures, printed text); a closed widget, which shows nothing in
    JupyterLab either, is dropped. Returns the number of widget views replaced.
    """
    import nbformat

    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW) if out.get("output_type") in ("display_data", "execute_result") else None
            if view is None:
                outputs.append(out)
                continue
            replaced += 1
            texts, recorded = _widget_parts(state, view.get("model_id", ""), set())
            if texts:
                outputs.append(nbformat.v4.new_output("stream", name="stdout", text="  ".join(texts) + "\n"))
            outputs += [nbformat.from_dict(o) for o in recorded]
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    return replaced


BADGE = re.compile(r"\[!\[([^\]]*)\]\([^)]*\)\]\(([^)]*)\)")  # [![Open In Colab](badge.svg)](url)


def prepare_notebook(src: Path, dest: Path) -> None:
    """The copy the book renders: widgets made static, badge images (from other sites) as plain links."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    static_widgets(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = BADGE.sub(r"[\1](\2)", cell.source)
    nb.metadata.pop(EXECUTED_KEY, None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)


def notebook_title(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return path.stem


# ---------------------------------------------------------------- pages from the README and other files

def readme_sections(readme: str, names=README_SECTIONS) -> dict[str, str]:
    """The README's level-2 sections whose headings start with ``names``: {heading: markdown}."""
    parts = re.split(r"(?m)^## ", readme)
    found = {}
    for part in parts[1:]:
        heading, _, body = part.partition("\n")
        for name in names:
            if heading.startswith(name):
                found[name] = f"## {heading}\n{body.rstrip()}\n"
    missing = [n for n in names if n not in found]
    if missing:
        raise CourseError(f"README.md has no section '## {missing[0]}...' for the book's landing page.",
                          "keep those README sections, or update README_SECTIONS in course_lib/book.py.")
    return found


def readme_intro(readme: str) -> tuple[str, str]:
    """(title, first paragraphs) of the README: the text before its first table or level-2 heading."""
    lines = readme.splitlines()
    title = lines[0].lstrip("# ").strip()
    intro = []
    for ln in lines[1:]:
        if ln.startswith("## ") or ln.startswith("|"):
            break
        intro.append(ln)
    return title, "\n".join(intro).strip()


def landing_page(root: Path, lectures: list[Page], exercises: list[Page], models: list[Page],
                 edition: str) -> str:
    from . import project

    readme = (root / "README.md").read_text(encoding="utf-8")
    title, intro = readme_intro(readme)
    sections = readme_sections(readme)
    by_number = {}
    for p in lectures:
        by_number.setdefault(Path(p.target).name[:2], {})["lecture"] = p
    for p in exercises:
        by_number.setdefault(Path(p.target).name[:2], {})["exercise"] = p
    rows = ["| # | lecture | exercise | open the lecture |", "|---|---|---|---|"]
    for num in sorted(by_number):
        lec, ex = by_number[num].get("lecture"), by_number[num].get("exercise")
        lec_cell = f"[{lec.title}]({lec.target})" if lec else "-"
        ex_cell = f"[{ex.title}]({ex.target})" if ex else "-"
        if lec:
            rel = f"lectures/{Path(lec.source).name}"
            links = f"[Colab]({project.colab_url(rel)}) · [Binder]({project.binder_url(rel)})"
        else:
            links = "-"
        rows.append(f"| {num} | {lec_cell} | {ex_cell} | {links} |")
    what = ("the solutions (nbgrader source notebooks, executed), for instructors" if edition == "instructor"
            else "the exercises as learners receive them (no solutions)")
    cards = (f"the model cards ({', '.join(f'[{m.title}]({m.target})' for m in models)}) and " if models else "")
    return "\n".join([
        f"# {title}", "", intro, "",
        f"This is the {edition} edition of the course as a book: the lectures executed on the embedded runtime "
        f"(every plot and number in them was produced by the notebook itself), {what}, {cards}"
        "the [benchmarks](benchmarks.md).", "",
        "## Lectures and exercises", "", *rows, "",
        sections["Two runtimes"], sections["Quickstart"], sections["Opening the course"],
    ])


def benchmarks_page(root: Path, plots_dir: Path) -> str:
    """benchmarks/README.md followed by every plot in benchmarks/results/ (copied into ``plots_dir``)."""
    bench = root / "benchmarks"
    text = (bench / "README.md").read_text(encoding="utf-8") if (bench / "README.md").is_file() else "# Benchmarks\n"
    plots = sorted((bench / "results").glob("*.png"))
    if plots:
        plots_dir.mkdir(parents=True, exist_ok=True)
        text += "\n\n## Plots (benchmarks/results/)\n"
        for png in plots:
            shutil.copy2(png, plots_dir / png.name)
            text += f"\n### {png.stem}\n\n![{png.stem}]({plots_dir.name}/{png.name})\n"
    return text


# ---------------------------------------------------------------- the book

MATHJAX_EXTENSION = "sphinx-mathjax-offline"  # the pip package's module name has hyphens


def _require_book_tools() -> None:
    import importlib.util

    require("nbformat", "course book", extra="book")
    for module, what in (("jupyter_book", "Jupyter Book 1"), (MATHJAX_EXTENSION, "a local MathJax")):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(f"course book needs {what} ({module}), which is not installed.",
                                         'pip install -c constraints.txt -e ".[book]"')


def config_yaml(title: str, edition: str) -> str:
    config = {
        "title": f"{title} ({edition} edition)",
        "author": "the course authors",
        "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "html": {"use_repository_button": False, "use_issues_button": False, "use_edit_page_button": False,
                 "home_page_in_navbar": True, "use_multitoc_numbering": False},
        "launch_buttons": {"notebook_interface": "classic", "binderhub_url": "", "colab_url": "", "thebe": False},
        "sphinx": {"extra_extensions": [MATHJAX_EXTENSION], "config": {
            # MathJax 3 from _static/mathjax (the extension copies it there from its pip package), never a CDN
            "mathjax_path": "mathjax/tex-chtml.js",
            # widgets are replaced by their recorded outputs: load no widget JavaScript (it would come from a CDN)
            "nb_ipywidgets_js": {},
            "suppress_warnings": ["myst.header", "mystnb.unknown_mime_type"],
        }},
    }
    return json.dumps(config, indent=2)  # JSON is YAML


def toc_yaml(chapters: list[tuple[str, list[str]]]) -> str:
    lines = ["format: jb-book", "root: index", "parts:"]
    for caption, files in chapters:
        lines += [f"  - caption: {json.dumps(caption)}", "    chapters:"]
        lines += [f"      - file: {f}" for f in files]
    return "\n".join(lines) + "\n"


def default_out(root: Path, solutions: bool) -> Path:
    return root / "build" / ("book-instructor" if solutions else "book")


def collect(root: Path, solutions: bool) -> tuple[list[Path], list[Path]]:
    lectures = sorted(p for p in (root / "lectures").glob("*.ipynb"))
    folder = "solutions" if solutions else "exercises"
    exercises = sorted(p for p in (root / folder).glob("*/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not lectures:
        raise CourseError(f"no lectures under {root / 'lectures'}.", "run `course book` in a course checkout.")
    return lectures, exercises


def leak_problems(root: Path, site: Path, sources: Path) -> list[str]:
    """The leak check of ``course check`` on the built site and the notebooks it was built from.

    Every page and downloadable notebook of the site, and every notebook under ``sources``, may hold no
    nbgrader marker text; the page and the
    notebook of exercise A may hold no line of solution A or of its hidden tests (the rule that
    ``course check`` applies to ``exercises/A``). Secrets are per assignment: one assignment's answer,
    such as ``loss.backward()``, is ordinary code in another's task or in a lecture. On a page, a line
    that the exercise's own markdown shows once rendered (``for i in range(n)`` written in backticks)
    is not counted.
    """
    import nbformat

    from .grading.checker import html_text, file_text, scan_text
    from .grading.notebook import secret_lines

    def secrets_of(name: str, rendered: bool) -> set[str]:
        solution = root / "solutions" / name / f"{name}.ipynb"
        if not solution.is_file():
            return set()
        found = secret_lines(nbformat.read(solution, as_version=4))
        release = sources / "exercises" / f"{name}.ipynb"
        if rendered and release.is_file():
            shown = "\n".join(re.sub(r"[`*_]", "", c.source) for c in nbformat.read(release, as_version=4).cells
                              if c.cell_type == "markdown")
            found = {s for s in found if s not in shown}
        return found

    problems = []
    for base in (site, sources):
        for f in sorted(base.rglob("*")):
            rel = f.relative_to(base)
            if f.suffix not in (".html", ".ipynb") or "_static" in rel.parts or "_build" in rel.parts:
                continue
            rendered = f.suffix == ".html"
            text = html_text(f) if rendered else file_text(f)
            # exercises/A.html, or the downloadable source _sources/exercises/A.ipynb
            exercise = "exercises" in rel.parts[:2]
            secrets = secrets_of(Path(f.stem).stem, rendered) if exercise else set()
            problems += scan_text(f"{base.name}/{rel}", text, secrets)
    return problems


def build(solutions: bool = False, out: Path | None = None, execute: bool = True, root: Path | None = None,
          timeout: int = 900, quiet: bool = True) -> BookResult:
    """Build the learner (or, with ``solutions``, the instructor) edition into ``out``; see the module doc."""
    from .project import course_root

    _require_book_tools()
    root = Path(root or course_root()).resolve()
    edition = "instructor" if solutions else "learner"
    out = Path(out or default_out(root, solutions)).resolve()
    if not solutions and out == default_out(root, True):
        raise CourseError(f"the learner edition would overwrite the instructor edition in {out}.",
                          "give another --out, or add --solutions.")
    lecture_nbs, exercise_nbs = collect(root, solutions)
    to_execute = lecture_nbs + (exercise_nbs if solutions else [])
    shown, executed_now, t_exec = ensure_executed(root, to_execute, execute=execute, timeout=timeout)
    result = BookResult(out=out, seconds_executing=t_exec, executed=executed_now,
                        unexecuted=[str(p.relative_to(root)) for p, s in shown.items() if p == s])

    t0 = time.time()
    src = root / "build" / "book-src" / edition
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)

    lectures = []
    for nb in lecture_nbs:
        target = f"lectures/{nb.stem}.ipynb"
        prepare_notebook(shown[nb], src / target)
        lectures.append(Page(target, notebook_title(nb), nb))
    exercises = []
    for nb in exercise_nbs:
        target = f"exercises/{nb.stem}.ipynb"
        prepare_notebook(shown.get(nb, nb), src / target)
        exercises.append(Page(target, notebook_title(nb), nb))
    models = []
    for card in sorted((root / "course_lib" / "embedded" / "models").glob("*/MODEL_CARD.md"),
                       key=lambda p: ("xs", "s", "m", "l").index(p.parent.name) if p.parent.name in ("xs", "s", "m", "l") else 9):
        target = f"models/embedded-{card.parent.name}.md"
        (src / "models").mkdir(exist_ok=True)
        shutil.copy2(card, src / target)
        models.append(Page(target, f"embedded-{card.parent.name}", card))
    (src / "benchmarks.md").write_text(benchmarks_page(root, src / "benchmarks_plots"), encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    (src / "index.md").write_text(BADGE.sub(r"[\1](\2)", landing_page(root, lectures, exercises, models, edition)),
                                   encoding="utf-8")  # badges from other sites as plain links: the book is offline
    (src / "_config.yml").write_text(config_yaml(readme_intro(readme)[0], edition), encoding="utf-8")
    (src / "_toc.yml").write_text(toc_yaml([
        ("Lectures", [p.target for p in lectures]),
        ("Solutions" if solutions else "Exercises", [p.target for p in exercises]),
        ("Models and benchmarks", [p.target for p in models] + ["benchmarks.md"]),
    ]), encoding="utf-8")

    work = root / "build" / "book-work" / edition
    shutil.rmtree(work, ignore_errors=True)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(src), "--path-output", str(work), "--builder", "html",
           "--keep-going"]
    print(f"course book: building the {edition} edition with Jupyter Book ...", flush=True)
    run = subprocess.run(cmd + (["-q"] if quiet else []), cwd=src, capture_output=quiet, text=True)
    html = work / "_build" / "html"
    if run.returncode != 0 or not (html / "index.html").is_file():
        tail = ((run.stdout or "") + (run.stderr or ""))[-3000:] if quiet else ""
        raise CourseError(f"Jupyter Book failed (exit {run.returncode}):\n{tail}",
                          "read the error above; `course book` with --verbose shows Sphinx's whole log.")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(html, out, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees"))
    (out / ".nojekyll").touch()  # GitHub Pages: serve _static/ and _images/ as they are
    result.seconds_building = time.time() - t0
    result.pages = sorted(str(p.relative_to(out)) for p in out.rglob("*.html") if "_static" not in p.parts)
    if not solutions:
        problems = leak_problems(root, out, src)
        if problems:
            shutil.rmtree(out)
            raise CourseError("the learner edition holds solution text (removed it):\n  " + "\n  ".join(problems[:10]),
                              "build it only from lectures/ and exercises/; run `course release` after changing solutions/.")
    return result

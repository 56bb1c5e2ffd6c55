"""Issue 23: the editions and the first minutes off the development machine (fast checks).

* the core install is what a notebook needs; JupyterLab and nbgrader are extras, and a command whose
  extra is missing names the pip command (never a bare ImportError); only guarded modules import them;
* the Colab installer pins Colab's Jupyter packages, shows failures with the command to rerun and
  enables the widget manager with ipywidgets 8;
* `course lab` passes its arguments to JupyterLab and installs the course's Lab settings;
* the formgrader's database folder is created on a fresh clone;
* `course release --check` ignores what JupyterLab rewrites and names any other difference;
* `course publish` writes a learner edition without solutions, hidden tests or banks, refuses a leak,
  and the edition installs and runs a lecture's setup cell.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from course_lib import authoring, colab, lab, project
from course_lib.errors import CourseError, MissingDependencyError, require

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
JUPYTER_SIDE = {"jupyterlab", "notebook", "nbgrader", "nbclient", "nbformat", "nbconvert", "ipykernel",
                "jupyter-server", "jupyter-client"}


# ------------------------------------------------------------------------------ dependencies

def test_core_install_has_no_jupyter_side_packages_and_admits_colabs_widgets():
    core = {Requirement(r).name.lower(): Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not JUPYTER_SIDE & set(core), f"the core install must not pull {sorted(JUPYTER_SIDE & set(core))}"
    for need in ("torch", "transformers", "peft", "datasets", "matplotlib", "ipywidgets", "tqdm"):
        assert need in core, f"a notebook needs {need}: add it to [project] dependencies"
    assert "7.7.1" in core["ipywidgets"].specifier, "Colab ships ipywidgets 7.7: the core bound must admit it"
    extras = PYPROJECT["project"]["optional-dependencies"]
    names = {k: {Requirement(r).name.lower() for r in v} for k, v in extras.items()}
    assert "jupyterlab" in names["lab"] and "nbgrader" in names["grade"] and "playwright" in names["browser"]
    dev = [Requirement(r) for r in extras["dev"]]
    assert any(r.name == project.DISTRIBUTION and r.extras >= {"lab", "grade"} for r in dev), \
        "[dev] must include [lab] and [grade]"


LOWEST_TESTED = ("transformers", "peft", "datasets", "accelerate", "safetensors")


def test_lowest_constraints_match_the_lower_bounds():
    """constraints-lowest.txt pins the libraries whose API the course uses at pyproject's lower bounds
    (torch stays at the tested build: see the file)."""
    pins = {}
    for line in (ROOT / "constraints-lowest.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            r = Requirement(line)
            pins[r.name.lower()] = str(r.specifier).removeprefix("==")
    for raw in PYPROJECT["project"]["dependencies"]:
        r = Requirement(raw)
        lower = [s.version for s in r.specifier if s.operator == ">="]
        if r.name not in LOWEST_TESTED:
            continue
        assert r.name.lower() in pins and Version(pins[r.name.lower()]) == Version(lower[0]), \
            f"constraints-lowest.txt should pin {r.name}=={lower[0]} (pyproject's lower bound), found {pins.get(r.name)}"


GUARDED = {  # module -> the modules of course_lib that may import it (each is behind require(..., extra=...))
    "nbformat": {"authoring.py", "notebooks.py", "book.py"}, "nbclient": {"notebooks.py"}, "jupyterlab": set(),
    "nbgrader": set(), "ipykernel": set(), "traitlets": set(),
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_guarded_modules_import_the_extras():
    offenders = []
    for path in sorted((ROOT / "course_lib").rglob("*.py")):
        rel = path.relative_to(ROOT / "course_lib").as_posix()
        if rel.startswith("grading/"):
            continue  # every entry into grading/ goes through require_nbgrader (grading/__init__.py)
        for mod in _imports(path) & set(GUARDED):
            if rel not in GUARDED[mod]:
                offenders.append(f"course_lib/{rel} imports {mod}")
    assert not offenders, f"{offenders}: an extra's package must be imported only behind require(..., extra=...)"


@pytest.mark.parametrize("blocked, argv, extra", [
    ("nbgrader", ["release", "--check"], "grade"), ("nbgrader", ["check", "00_warmup"], "grade"),
    ("nbgrader", ["publish", "/tmp/x"], "grade"), ("nbclient", ["run", "lectures/01_in_context_learning.ipynb"], "lab"),
    ("jupyterlab", ["lab", "--no-browser"], "lab")])
def test_a_missing_extra_names_the_pip_command(blocked, argv, extra):
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            f"from course_lib.cli import main\nsys.exit(main({argv!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert f"pip install '{project.DISTRIBUTION}[{extra}]'" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_require_raises_a_course_error_that_is_an_import_error():
    with pytest.raises(MissingDependencyError, match=r"\[grade\]") as info:
        require("no_such_module_xyz", "testing", extra="grade")
    assert isinstance(info.value, ImportError) and "How to fix" in str(info.value)


# ------------------------------------------------------------------------------ one repository URL

def test_repository_comes_from_pyproject():
    assert project.repository() == PYPROJECT["project"]["urls"]["Repository"].rstrip("/")
    assert project.pip_spec() == f"{project.DISTRIBUTION} @ git+{project.repository()}.git@{project.BRANCH}"


def test_readme_links_block_is_the_generated_one():
    text = (ROOT / "README.md").read_text()
    assert authoring.readme_links() in text, "README.md's links block is stale: run `course release`"
    assert not authoring.sync_readme(ROOT, write=False)


URL = re.compile(r"https?://[^\s)\"'<>\]]+")


def _link_files():
    yield ROOT / "README.md"
    yield from sorted(ROOT.glob("binder/*"))
    yield from sorted([*ROOT.glob("lectures/*.ipynb"), *ROOT.glob("solutions/*/*.ipynb"), *ROOT.glob("exercises/*/*.ipynb")])


def test_every_repository_link_names_the_configured_repository():
    """Colab, Binder, GitHub and git+ links anywhere a learner clicks must name pyproject's Repository."""
    owner_repo = project.repository().removeprefix("https://github.com/")
    bad = []
    for path in _link_files():
        for url in URL.findall(path.read_text(errors="replace")):
            url = url.rstrip(".,`")
            if "colab.research.google.com/github/" in url:
                ok = f"/github/{owner_repo}/blob/{project.BRANCH}/" in url
            elif "mybinder.org/v2/gh/" in url:
                ok = f"/v2/gh/{owner_repo}/{project.BRANCH}" in url
            elif re.match(r"https://github\.com/[\w.-]+/[\w.-]+", url) and "OWNER" not in url:
                ok = url.startswith(project.repository())
            else:
                continue
            if not ok:
                bad.append(f"{path.relative_to(ROOT)}: {url}")
    assert not bad, f"links that disagree with pyproject's Repository ({project.repository()}): {bad[:10]}"


def test_readme_says_the_url_must_point_at_the_learner_edition():
    text = (ROOT / "README.md").read_text()
    assert "must point at the\npublished learner edition" in text or "must point at the published learner edition" \
        in text.replace("\n", " ")
    assert "placeholder" in text


# ------------------------------------------------------------------------------ Colab

def test_colab_install_pins_jupyter_and_installs_only_the_core(monkeypatch, tmp_path, capsys):
    seen = {}
    monkeypatch.setattr(colab, "constraints_file",
                        lambda pins, path=None: Path(tmp_path / "c.txt").write_text(
                            "".join(f"{k}=={v}\n" for k, v in pins.items())) and tmp_path / "c.txt")

    def fake_run(cmd):
        seen["cmd"] = cmd
        return 0, "Successfully installed nothing\n"

    changed = colab.install_dependencies(run=fake_run)
    assert changed == {}
    cmd = seen["cmd"]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"] and "-q" not in cmd
    assert cmd[cmd.index("-c") + 1] == str(tmp_path / "c.txt")
    pins = (tmp_path / "c.txt").read_text()
    for pkg in ("ipython", "ipywidgets", "ipykernel"):
        assert f"{pkg}=={colab.installed_versions([pkg])[pkg]}" in pins, f"{pkg} must be pinned at its version"
    names = {Requirement(r).name.lower() for r in cmd[cmd.index("-c") + 2:]}
    assert "torch" in names and "transformers" in names and not names & JUPYTER_SIDE, names
    assert "$ " in capsys.readouterr().out, "the command must be shown"


def test_colab_install_failure_is_plain_with_the_command_to_rerun(tmp_path, monkeypatch):
    monkeypatch.setattr(colab, "constraints_file", lambda pins, path=None: tmp_path / "c.txt")
    with pytest.raises(CourseError) as info:
        colab.install_dependencies(run=lambda cmd: (1, "ERROR: no matching distribution\n"))
    assert "exit status 1" in str(info.value) and "!" + sys.executable in str(info.value)


def test_colab_widget_manager_is_enabled_for_ipywidgets_8(monkeypatch):
    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(1))
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    google.colab.output = output
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google.colab)
    monkeypatch.setattr(colab, "installed_versions", lambda names=None: {"ipywidgets": "8.1.5"})
    assert colab.enable_widget_manager() and calls == [1]
    monkeypatch.setattr(colab, "installed_versions", lambda names=None: {"ipywidgets": "7.7.1"})
    assert not colab.enable_widget_manager() and calls == [1], "Colab's own manager renders ipywidgets 7"


def test_setup_cell_installs_the_course_alone_then_its_dependencies():
    src = authoring.setup_source()
    assert f'"--no-deps", "{project.pip_spec()}"' in src and "-q" not in src
    assert "install_dependencies()" in src and src.count("\n") < 14, "the setup cell must stay short"


# ------------------------------------------------------------------------------ instructor flow

def test_course_lab_passes_every_argument_to_jupyterlab(monkeypatch, tmp_path):
    from course_lib import cli

    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: calls.append((cmd, kw)) or 0)
    monkeypatch.setattr(lab, "overrides_path", lambda prefix=None: tmp_path / "settings" / "overrides.json")
    assert cli.main(["lab", "--no-browser", "--port=8899"]) == 0
    cmd, kw = calls[0]
    assert cmd[-2:] == ["--no-browser", "--port=8899"] and kw["cwd"] == project.course_root()
    assert cli.main(["lab", ".", "--no-browser"]) == 0 and calls[1][0][-2:] == [".", "--no-browser"]
    settings = json.loads((tmp_path / "settings" / "overrides.json").read_text())
    assert settings["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"


def test_lab_overrides_merge_and_keep_other_settings(tmp_path):
    path = lab.overrides_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
                                "@jupyterlab/apputils-extension:notification": {"doNotDisturbMode": True}}))
    lab.install_overrides(tmp_path)
    got = json.loads(path.read_text())
    assert got["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    assert got["@jupyterlab/apputils-extension:notification"] == {"doNotDisturbMode": True, "fetchNews": "false",
                                                                  "checkForUpdates": False}


def test_nbgrader_config_creates_the_gradebook_folder_on_a_fresh_clone(tmp_path):
    from traitlets.config.loader import PyFileConfigLoader

    shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config()
    assert (tmp_path / "build" / "nbgrader").is_dir(), "sqlite cannot create gradebook.db without its folder"
    assert cfg.CourseDirectory.db_url == f"sqlite:///{tmp_path / 'build' / 'nbgrader' / 'gradebook.db'}"


def _lab_saved(raw: bytes) -> bytes:
    """What JupyterLab does to a notebook it saves: new kernel/language metadata, execution times, ids."""
    nb = json.loads(raw)
    nb["metadata"]["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.9", "mimetype": "text/x-python"}
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"lab-{i}"
        cell["metadata"]["execution"] = {"iopub.status.busy": "2026-11-30T00:00:00Z"}
        cell["metadata"]["trusted"] = True
    return json.dumps(nb, indent=2).encode()


def test_release_compare_ignores_lab_metadata_and_names_real_changes(tmp_path):
    from course_lib.grading.releasing import compare

    src = ROOT / "exercises" / "00_warmup" / "00_warmup.ipynb"
    committed, fresh = tmp_path / "committed" / "00_warmup", tmp_path / "fresh" / "00_warmup"
    committed.mkdir(parents=True)
    fresh.mkdir(parents=True)
    (committed / src.name).write_bytes(src.read_bytes())
    (fresh / src.name).write_bytes(_lab_saved(src.read_bytes()))
    assert compare(committed.parent, fresh.parent, ["00_warmup"]) == []
    nb = json.loads(_lab_saved(src.read_bytes()))
    i = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and i > 1)
    nb["cells"][i]["source"] = "print('changed')"
    (fresh / src.name).write_text(json.dumps(nb))
    problems = compare(committed.parent, fresh.parent, ["00_warmup"])
    assert len(problems) == 1 and f"cell {i}" in problems[0] and "source" in problems[0], problems


# ------------------------------------------------------------------------------ the learner edition

@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    from course_lib.grading.publishing import publish

    dest = tmp_path_factory.mktemp("pub") / "learner"
    assert publish(dest, check_release=False) == 0
    return dest


def test_publish_writes_the_learner_edition_without_answers(edition):
    assert (edition / "lectures").is_dir() and (edition / "exercises" / "00_warmup" / "00_warmup.ipynb").is_file()
    assert (edition / "course_lib" / "runtime.py").is_file() and (edition / "binder" / "postBuild").is_file()
    for gone in ("solutions", "tests", "course_lib/grading", "benchmarks", "tools"):
        assert not (edition / gone).exists(), f"{gone} must not be in the learner edition"
    grep = subprocess.run(["grep", "-rIl", "-e", "BEGIN SOLUTION", "-e", "BEGIN HIDDEN", "-e", "END HIDDEN", "."],
                          cwd=edition, capture_output=True, text=True)
    assert grep.stdout == "", f"nbgrader markers in the learner edition: {grep.stdout}"
    readme = (edition / "README.md").read_text()
    assert "## For instructors" not in readme and "course publish" in readme and ".[lab]" in readme
    assert authoring.readme_links() in readme, "the learner README keeps the badges of the learner edition"


def test_publish_refuses_a_leak_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from course_lib.grading import publishing
    from course_lib.grading.config import assignments

    own, hidden = publishing.secrets(ROOT, assignments(ROOT))
    solution_line = sorted(own["00_warmup"] - hidden)[0]
    hidden_line = sorted(hidden)[0]
    real = publishing.assemble

    def leaky(root, stage):
        real(root, stage)
        (stage / "lectures" / "notes.md").write_text(f"a hint: {hidden_line}\n")
        (stage / "exercises" / "00_warmup" / "hint.txt").write_text(f"{solution_line}\n")

    monkeypatch.setattr(publishing, "assemble", leaky)
    dest = tmp_path / "learner"
    assert publishing.publish(dest, check_release=False) == 1
    assert not dest.exists(), "nothing may be written on a leak"
    err = capsys.readouterr().err
    assert "lectures/notes.md" in err and "exercises/00_warmup/hint.txt" in err, err


def test_publish_refuses_a_non_empty_folder_and_the_checkout(tmp_path):
    from course_lib.grading.publishing import publish

    (tmp_path / "something").write_text("x")
    with pytest.raises(CourseError, match="not empty"):
        publish(tmp_path, check_release=False)
    with pytest.raises(CourseError, match="inside the course checkout"):
        publish(ROOT / "build" / "pub", check_release=False)


def test_the_learner_edition_installs_and_a_lecture_setup_cell_runs(edition, tmp_path):
    """pip builds and installs the published folder (no deps: they are this environment's) and a
    lecture's setup cell runs from it; its `course` command knows it has no grading tools."""
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                        "--target", str(target), str(edition)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert not (target / "course_lib" / "grading").exists()
    setup = next(c for c in nbformat.read(edition / "lectures" / "04_lora.ipynb", as_version=4).cells
                 if c.metadata.get("course") == "setup").source
    env = dict(os.environ, PYTHONPATH=str(target), HF_HUB_OFFLINE="1", COURSE_RUNTIME="embedded")
    code = ("import course_lib, sys; assert course_lib.__file__.startswith(sys.argv[1]), course_lib.__file__\n"
            + setup + "\nfrom course_lib.models import load_model\nload_model()\n")
    r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=300,
                       cwd=edition / "lectures", env=env)
    assert r.returncode == 0 and "runtime: embedded" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-c", "from course_lib.cli import main; import sys; sys.exit(main(['check']))"],
                       capture_output=True, text=True, cwd=edition, env=env, timeout=60)
    assert r.returncode == 2 and "learner edition" in r.stderr, r.stderr

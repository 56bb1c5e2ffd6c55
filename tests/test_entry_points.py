"""How people open the course without a checkout: Colab badges, Binder badges and ``binder/``.

Mechanical checks, fast, always run:

* every Colab/Binder badge of every lecture, solution and released exercise is a well-formed link
  to this repository and branch, and to a notebook that exists at that path in the repository;
* ``binder/`` is what repo2docker reads: requirements.txt parses as pip requirements, pins exact
  versions (the CPU torch of constraints.txt among them) and covers every dependency of the
  package (postBuild installs it with ``--no-deps``); postBuild is an executable bash script with a
  shebang whose nbgrader names exist; runtime.txt names a Python the package supports;
* the Colab setup cell installs the package (alone, then its core dependencies through
  ``course_lib.colab``) from ``course_lib.project``'s repository URL when ``google.colab`` is
  imported, and does nothing but select the runtime elsewhere.
"""
from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import types
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import nbformat
import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from course_lib import authoring, project

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
NOTEBOOKS = sorted([*ROOT.glob("lectures/*.ipynb"), *ROOT.glob("solutions/*/*.ipynb"),
                    *ROOT.glob("exercises/*/*.ipynb")])
IDS = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS]
LINK = re.compile(r"\[!\[(Open In Colab|Binder)\]\([^)]*\)\]\(([^)\s]+)\)")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _role_cell(nb, role: str):
    cells = [c for c in nb.cells if c.metadata.get("course") == role]
    assert len(cells) == 1, f"expected one cell with metadata course: {role!r}, found {len(cells)}"
    return cells[0]


def _learner_path(path: Path) -> str:
    """The notebook a badge of ``path`` opens: itself, or for a solution its released exercise."""
    rel = path.relative_to(ROOT).as_posix()
    return "exercises/" + rel.removeprefix("solutions/") if rel.startswith("solutions/") else rel


def _badge_target(kind: str, url: str) -> str:
    """The repository path a badge URL opens; asserts the URL names this repository and branch."""
    owner_repo = project.REPOSITORY.removeprefix("https://github.com/").rstrip("/")
    u = urlparse(url)
    assert u.scheme == "https", f"{kind} badge link is not https: {url}"
    if kind == "Open In Colab":
        assert u.netloc == "colab.research.google.com", f"Colab badge goes to {u.netloc}: {url}"
        prefix = f"/github/{owner_repo}/blob/{project.BRANCH}/"
        assert u.path.startswith(prefix), f"Colab badge should start with {prefix} (project.py): {url}"
        return u.path.removeprefix(prefix)
    assert u.netloc == "mybinder.org", f"Binder badge goes to {u.netloc}: {url}"
    assert u.path == f"/v2/gh/{owner_repo}/{project.BRANCH}", \
        f"Binder badge should build /v2/gh/{owner_repo}/{project.BRANCH} (project.py): {url}"
    urlpath = parse_qs(u.query).get("urlpath", [""])[0]
    assert urlpath.startswith("lab/tree/"), f"Binder badge should open JupyterLab (urlpath=lab/tree/...): {url}"
    return urlpath.removeprefix("lab/tree/")


def test_there_are_notebooks_to_check():
    assert any(p.parts[-2] == "lectures" for p in NOTEBOOKS) and any("solutions" in p.parts for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_badges_open_a_notebook_that_exists(path):
    header = _role_cell(_read(path), "header")
    links = LINK.findall(header.source)
    kinds = sorted(kind for kind, _ in links)
    assert kinds == ["Binder", "Open In Colab"], f"{path.name}: expected one Colab and one Binder badge, got {kinds}"
    want = _learner_path(path)
    for kind, url in links:
        target = _badge_target(kind, url)
        assert target == want, (f"{path.name}: the {kind} badge opens {target}, expected {want}. "
                                "How to fix: `course release` regenerates the badges (course_lib.authoring.sync_headers)")
        assert (ROOT / target).is_file(), \
            (f"{path.name}: the {kind} badge opens {target}, which is not in the repository. "
             "How to fix: `course release` (exercises/ is generated from solutions/), or fix the path")
    assert authoring.badges(want) in header.source, \
        f"{path.name}: badges differ from course_lib.authoring.badges(); run `course release` to regenerate them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_setup_cell_is_the_generated_one(path):
    setup = _role_cell(_read(path), "setup")
    assert setup.source == authoring.setup_source(), \
        f"{path.name}: the setup cell differs from course_lib.authoring.setup_source(); run `course release`"
    nb = _read(path)
    assert nb.cells.index(setup) == 1, f"{path.name}: the setup cell must be the second cell (first code cell)"


def _run_setup_cell(monkeypatch, colab: bool):
    """Execute the generated setup cell as a kernel would; returns the subprocess.run calls it made."""
    calls = []

    def fake_run(*args, **kwargs):
        calls.append((args, kwargs))
        return subprocess.CompletedProcess(args[0] if args else kwargs.get("args"), 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setenv("COURSE_RUNTIME", "embedded")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if colab:
        google = types.ModuleType("google")
        google.colab = types.ModuleType("google.colab")
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setitem(sys.modules, "google.colab", google.colab)
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    namespace = {"__name__": "__main__"}
    exec(compile(authoring.setup_source(), "<setup cell>", "exec"), namespace)
    return calls, namespace


def test_setup_cell_does_nothing_but_select_the_runtime_off_colab(monkeypatch, capsys):
    calls, namespace = _run_setup_cell(monkeypatch, colab=False)
    assert calls == [], f"off Colab the setup cell must not run anything, it ran {calls}"
    assert namespace["runtime"].name == "embedded"
    assert "embedded" in capsys.readouterr().out, "the setup cell should print the runtime it selected"


def test_setup_cell_installs_the_configured_repository_on_colab(monkeypatch):
    from course_lib import colab

    installed = []
    monkeypatch.setattr(colab, "install_dependencies", lambda: installed.append(True) or {})
    calls, namespace = _run_setup_cell(monkeypatch, colab=True)
    assert len(calls) == 1, f"on Colab the setup cell should run one pip install itself, it ran {calls}"
    (args, kwargs), = calls
    assert args[0] == [sys.executable, "-m", "pip", "install", "--no-deps", project.pip_spec()], args
    assert kwargs.get("check") is True, "a failed install must stop the notebook (check=True)"
    assert installed == [True], "then course_lib.colab.install_dependencies() installs the core dependencies"
    assert project.pip_spec() == f"{project.DISTRIBUTION} @ git+{project.REPOSITORY}.git@{project.BRANCH}"
    assert namespace["runtime"].name == "embedded"


def test_repository_url_is_the_one_in_pyproject():
    assert PYPROJECT["project"]["urls"]["Repository"].rstrip("/") == project.REPOSITORY.rstrip("/"), \
        "course_lib.project.REPOSITORY must be read from pyproject.toml [project.urls] Repository"
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", project.REPOSITORY), \
        f"Colab and Binder links need a GitHub repository URL, got {project.REPOSITORY}"


# ---------------------------------------------------------------- binder/ (repo2docker)

def _binder_requirements() -> tuple[list[str], list[Requirement]]:
    options, reqs = [], []
    for n, raw in enumerate((BINDER / "requirements.txt").read_text().splitlines(), 1):
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        try:
            reqs.append(Requirement(line))
        except InvalidRequirement as exc:
            pytest.fail(f"binder/requirements.txt line {n} is not a pip requirement: {raw!r} ({exc})")
    return options, reqs


def test_binder_has_only_what_repo2docker_should_read():
    names = sorted(p.name for p in BINDER.iterdir())
    assert names == ["postBuild", "requirements.txt", "runtime.txt"], \
        f"binder/ holds {names}; an environment.yml or Dockerfile there would override requirements.txt"


def test_binder_requirements_parse_and_pin_the_cpu_torch():
    options, reqs = _binder_requirements()
    for opt in options:
        assert re.fullmatch(r"--(extra-)?index-url https://\S+", opt), f"unexpected pip option in binder: {opt!r}"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in options, \
        "binder/requirements.txt should take torch from PyTorch's CPU index (Binder has no GPU)"
    by_name = {r.name.lower(): r for r in reqs}
    assert len(by_name) == len(reqs), "a package is listed twice in binder/requirements.txt"
    unpinned = [str(r) for r in reqs if not re.fullmatch(r"==\d[\w.+]*", str(r.specifier))]
    assert not unpinned, f"pin exact versions in binder/requirements.txt (reproducible builds): {unpinned}"
    constraints = [Requirement(line) for line in (ROOT / "constraints.txt").read_text().splitlines()
                   if line.strip() and not line.startswith("#")]
    torch_pin = next(r for r in constraints if r.name == "torch")
    assert "torch" in by_name and by_name["torch"].specifier == torch_pin.specifier, \
        f"binder pins {by_name.get('torch')}, constraints.txt pins {torch_pin}: keep them the same"


def test_binder_requirements_cover_the_package_dependencies():
    """postBuild installs the course with --no-deps, so every dependency must come from requirements.txt."""
    _, reqs = _binder_requirements()
    pinned = {r.name.lower(): Version(str(r.specifier).removeprefix("==")) for r in reqs}
    for dep in map(Requirement, PYPROJECT["project"]["dependencies"]):
        if dep.marker is not None and not dep.marker.evaluate({"platform_system": "Linux", "sys_platform": "linux"}):
            continue
        name = dep.name.lower()
        assert name in pinned, f"binder/requirements.txt lacks {dep.name}, a dependency in pyproject.toml"
        assert pinned[name] in dep.specifier, \
            f"binder pins {dep.name}=={pinned[name]}, outside pyproject.toml's {dep.specifier}"
    assert "ipykernel" in pinned or "jupyterlab" in pinned, "Binder needs JupyterLab"


def test_binder_runtime_is_a_supported_python():
    text = (BINDER / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(3\.\d+)", text)
    assert m, f"runtime.txt should read python-3.X (repo2docker's format), not {text!r}"
    assert Version(m.group(1)) in SpecifierSet(PYPROJECT["project"]["requires-python"]), \
        f"runtime.txt asks for Python {m.group(1)}, pyproject.toml requires {PYPROJECT['project']['requires-python']}"


def test_binder_postbuild_is_an_executable_bash_script():
    post = BINDER / "postBuild"
    text = post.read_text()
    assert text.startswith(("#!/bin/bash\n", "#!/usr/bin/env bash\n")), "postBuild must start with a bash shebang"
    assert post.stat().st_mode & stat.S_IXUSR, "postBuild must be executable (chmod +x; git mode 100755)"
    if (ROOT / ".git").exists() and shutil.which("git"):
        mode = subprocess.run(["git", "ls-files", "-s", "binder/postBuild"], cwd=ROOT, capture_output=True,
                              text=True).stdout.split()
        if mode:  # tracked: the mode a clone gets is the one in git
            assert mode[0] == "100755", f"binder/postBuild is {mode[0]} in git; `git update-index --chmod=+x`"
    assert "set -euo pipefail" in text or "set -e" in text, "postBuild should stop at the first failing command"
    check = subprocess.run(["bash", "-n", str(post)], capture_output=True, text=True)
    assert check.returncode == 0, f"postBuild has a bash syntax error: {check.stderr}"
    assert re.search(r"pip install .*-e \.", text), "postBuild should install the course from the repository root"


def test_binder_postbuild_names_nbgrader_parts_that_exist():
    """The lab plugins and server extensions postBuild switches on or off are the installed nbgrader's."""
    import importlib.util

    text = (BINDER / "postBuild").read_text()
    plugins = set(re.findall(r"@jupyter/nbgrader:[\w-]+", text))
    assert plugins, "postBuild names no nbgrader lab plugin"
    lab_ext = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "@jupyter" / "nbgrader"
    if not lab_ext.is_dir():
        pytest.skip(f"nbgrader's lab extension is not installed at {lab_ext}")
    bundled = "".join(p.read_text(errors="replace") for p in (lab_ext / "static").glob("*.js"))
    missing = sorted(p for p in plugins if f'"{p}"' not in bundled)
    assert not missing, f"postBuild names lab plugins nbgrader {_version('nbgrader')} does not have: {missing}"
    server = json.loads(re.search(r"<<'JSON'\n(.*?)\nJSON", text, re.S).group(1))
    modules = server["ServerApp"]["jpserver_extensions"]
    for module in modules:
        assert importlib.util.find_spec(module) is not None, f"postBuild names server extension {module}: not found"
    assert modules.get("nbgrader.server_extensions.formgrader") is False, "learners on Binder must not get the formgrader"
    assert modules.get("nbgrader.server_extensions.validate_assignment") is True, "learners keep Validate"


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


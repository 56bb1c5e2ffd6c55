"""The course as a learner and an instructor use it: JupyterLab in headless Chromium.

These tests start a real JupyterLab server on 127.0.0.1 (with a token) in a temporary copy of the
course, drive Debian's Chromium through playwright (``executable_path``: playwright never downloads
a browser here) and save screenshots under ``build/screenshots/``.

They run in their own CI stage, ``pytest -m browser -n 0 tests/browser`` (see ``.ci/run``),
and are skipped, with the reason, when

* they were not selected with ``-m browser`` (the plain ``pytest`` does not start a browser), or
* no Chromium is installed (``apt-get install chromium``; or set ``CHROMIUM=/path/to/chrome``), or
* playwright is missing (``pip install -e ".[browser]"``).

The lecture runs with a reduced training budget (an IPython startup file in the kernel shrinks
``runtime.budget``): this stage checks that the notebook works in the browser, not its numbers,
which ``tests/test_notebooks.py`` checks at the full budget. ``COURSE_BROWSER_FULL_BUDGET=1``
keeps the full budget.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# What the course copy needs: the notebooks, the nbgrader configuration, and the files by which
# course_lib.project.course_root() recognises a course checkout.
COPIED = ("lectures", "exercises", "solutions", "nbgrader_config.py", "pyproject.toml")

# Settings of the JupyterLab under test: every cell stays in the DOM (no windowing, so a check of
# "no cell shows an error" sees every cell), no news pop-up over the screenshots.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}

SMALL_BUDGET = '''# Written by tests/browser/conftest.py: a short training budget for the browser test.
import dataclasses
import course_lib.runtime as _rt
_rt.BUDGETS["embedded"] = dataclasses.replace(_rt.BUDGETS["embedded"], train_steps=30, batch_size=8,
                                               eval_examples=48)
del _rt, dataclasses
'''


def find_chromium() -> str | None:
    """Path of an installed Chromium/Chrome: ``$CHROMIUM`` if set, else the first on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"] if Path(os.environ["CHROMIUM"]).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def pytest_collection_modifyitems(config, items):
    selected = "browser" in (config.getoption("markexpr", "") or "")
    chromium = find_chromium()
    try:
        import playwright  # noqa: F401
        has_playwright = True
    except ImportError:
        has_playwright = False
    if not selected:
        reason = 'browser tests run in their own stage: pytest -m browser -n 0 tests/browser (see .ci/run)'
    elif chromium is None:
        reason = ("no Chromium found (looked for $CHROMIUM, " + ", ".join(CHROMIUM_NAMES)
                  + "). How to fix: apt-get install chromium, or set CHROMIUM=/path/to/chromium")
    elif not has_playwright:
        reason = ('playwright is not installed. How to fix: pip install -c constraints.txt -e ".[browser]" '
                  "(the Python package only; the browser is the system's Chromium)")
    else:
        return
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    def __init__(self, url: str, token: str, root: Path, proc: subprocess.Popen, log: Path):
        self.url, self.token, self.root, self.proc, self.log = url, token, root, proc, log

    def api(self, path: str):
        req = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read().decode())

    def lab_url(self, path: str) -> str:
        return f"{self.url}{path}{'&' if '?' in path else '?'}token={self.token}"

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@contextlib.contextmanager
def running_lab(base: Path, extra_env: dict | None = None):
    """JupyterLab on 127.0.0.1 with a random token, serving a temporary copy of the course in ``base``."""
    root = base / "course"
    root.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name)
        elif src.is_file():
            shutil.copy2(src, root / name)
    (root / "build" / "nbgrader").mkdir(parents=True)  # where nbgrader_config.py puts the gradebook

    settings = base / "lab-settings"
    for rel, value in LAB_SETTINGS.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    ipython = base / "ipython"
    startup = ipython / "profile_default" / "startup"
    startup.mkdir(parents=True)
    if not os.environ.get("COURSE_BROWSER_FULL_BUDGET"):
        (startup / "00-small-budget.py").write_text(SMALL_BUDGET)

    token, port = secrets.token_hex(16), _free_port()
    env = dict(os.environ, COURSE_RUNTIME="embedded", HF_HUB_OFFLINE="1", JUPYTERLAB_SETTINGS_DIR=str(settings),
               IPYTHONDIR=str(ipython), JUPYTER_RUNTIME_DIR=str(base / "runtime"), COURSE_ROOT=str(root),
               # as in an activated virtualenv: nbgrader's gradebook runs `alembic` from PATH
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    env.setdefault("OMP_NUM_THREADS", "2")
    env.update(extra_env or {})
    log = base / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
           "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT)
    server = LabServer(f"http://127.0.0.1:{port}", token, root, proc, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within 120 s:\n{server.log_tail()}")
                time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """The instructor's and a local learner's JupyterLab: nbgrader as installed (formgrader on)."""
    with running_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="module")  # stopped when its test module is done
def binder_lab_server(tmp_path_factory):
    """JupyterLab configured the way binder/postBuild configures it for learners on Binder.

    postBuild's jupyter commands run for real, but write to a temporary config dir instead of this
    virtualenv's ``etc/jupyter``: ``--level=user`` instead of ``--level=sys_prefix`` (with
    JUPYTER_CONFIG_DIR pointing there) and that dir instead of ``sys.prefix/etc/jupyter``. The dir
    first gets a copy of the environment's server config (nbgrader.json, which switches everything
    on) and is then put first on JUPYTER_CONFIG_PATH, so that the files postBuild writes have to win
    against nbgrader's own in the same directory, as on Binder. postBuild's ``pip install`` line is
    skipped (the course is installed already).
    """
    base = tmp_path_factory.mktemp("binder")
    config_dir = base / "jupyter-config"
    env_conf = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d"
    if env_conf.is_dir():
        shutil.copytree(env_conf, config_dir / "jupyter_server_config.d")
    script = (ROOT / "binder" / "postBuild").read_text()
    assert "$(python -c 'import sys; print(sys.prefix)')/etc/jupyter" in script, \
        "tests/browser/conftest.py redirects postBuild's sys.prefix config dir; update it with postBuild"
    script = script.replace("$(python -c 'import sys; print(sys.prefix)')/etc/jupyter", str(config_dir))
    script = script.replace("--level=sys_prefix", "--level=user")
    script = re.sub(r"^python -m pip install .*$", ":  # (pip install skipped in the test)", script, flags=re.M)
    (base / "postBuild").write_text(script)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config_dir),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    run = subprocess.run(["bash", str(base / "postBuild")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"binder/postBuild failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    with running_lab(base, {"JUPYTER_CONFIG_DIR": str(config_dir), "JUPYTER_CONFIG_PATH": str(config_dir)}) as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
        b = pw.chromium.launch(executable_path=find_chromium(), headless=True,
                               args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


@pytest.fixture
def page(browser, request):
    (SCREENSHOTS / f"FAILED_{request.node.name}.png").unlink(missing_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.page_errors = errors
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:  # what the page showed when the test failed
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            pg.screenshot(path=str(SCREENSHOTS / f"FAILED_{request.node.name}.png"), full_page=True)
        except Exception:  # noqa: BLE001  (a screenshot must not hide the failure)
            pass
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS

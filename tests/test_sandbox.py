"""The grading sandbox (course_lib/grading/sandbox.py): what learner code can reach during `course grade`.

The kernel tests run cells in a sandboxed kernel laid out as nbgrader lays out an autograded notebook
(``build/nbgrader/autograded/<student>/<assignment>``, next to the gradebook and other learners' folders)
and assert that what the grader must keep away from learner code is out of its reach.
"""
from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course_lib.grading import sandbox

REPO = Path(__file__).resolve().parents[1]
A = "00_warmup"
needs_bwrap = pytest.mark.skipif(sandbox.probe() is not None, reason=f"no grading sandbox here: {sandbox.probe()}")


def _course_layout(tmp_path: Path) -> dict[str, Path]:
    nb = tmp_path / "build" / "nbgrader"
    paths = {"gradebook": nb / "gradebook.db", "other": nb / "submitted" / "bob" / A / f"{A}.ipynb",
             "own": nb / "autograded" / "alice" / A}
    for p in paths.values():
        (p if p.suffix == "" else p.parent).mkdir(parents=True, exist_ok=True)
    paths["gradebook"].write_text("grades of the whole class")
    paths["other"].write_text("bob's answers")
    (paths["own"] / "data.txt").write_text("alice's own file")
    return paths


def _run(cells: list[str], cwd: Path, monkeypatch, **limits) -> list:
    """Run ``cells`` in one sandboxed kernel (a fresh one after a cell that kills it); one CellRun per cell."""
    from course_lib.grading.execute import run_steps, solution_steps

    monkeypatch.setenv(sandbox.ENV_FLAG, "on")
    for name, value in limits.items():
        monkeypatch.setenv(f"COURSE_SANDBOX_{name.upper()}", str(value))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    return run_steps(nb, solution_steps(nb), cwd, lambda cell: 120)


def _blocked(path: Path, mode: str = "r") -> str:
    return (f"try:\n    open({str(path)!r}, {mode!r}).{'read()' if mode == 'r' else 'write(chr(35))'}\n"
            f"    print('REACHED')\nexcept OSError as e:\n    print('BLOCKED', type(e).__name__)")


@needs_bwrap
def test_learner_code_cannot_reach_solutions_gradebook_others_or_the_network(tmp_path, monkeypatch):
    paths = _course_layout(tmp_path)
    listener = socket.socket()  # a service of the grader's machine, on localhost
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    marker = Path("/tmp") / f"course-sandbox-test-{os.getpid()}"
    marker.write_text("the grader's /tmp")
    solution = REPO / "solutions" / A / f"{A}.ipynb"
    home_file = next((p for p in Path.home().iterdir() if p.is_file()), None)
    assert solution.is_file() and (REPO / "nbgrader_config.py").is_file()
    connect = ("try:\n    socket.create_connection(({host!r}, {port}), timeout=5)\n    print('REACHED')\n"
               "except OSError as e:\n    print('BLOCKED', type(e).__name__)")
    cells = [
        _blocked(solution),
        _blocked(paths["gradebook"]),
        _blocked(paths["gradebook"], "w"),
        _blocked(REPO / "nbgrader_config.py", "w"),
        _blocked(paths["other"]),
        _blocked(home_file) if home_file else "print('BLOCKED no file in HOME')",
        "import socket\n" + connect.format(host="127.0.0.1", port=port),
        connect.format(host="1.1.1.1", port=53),
        f"import os\nprint(open('data.txt').read(), sorted(os.listdir('/tmp')), os.path.exists({str(marker)!r}))",
        "open('/tmp/scratch', 'w').write('x'); import os; print(os.path.expanduser('~'), open('/tmp/scratch').read())",
        _blocked(paths["own"] / "data.txt", "w"),
        "import course_lib, torch; print('IMPORTS', course_lib.__name__, torch.__version__)",
    ]
    try:
        runs = _run(cells, paths["own"], monkeypatch)
    finally:
        listener.close()
        marker.unlink()
    out = [r.stdout.strip() for r in runs]
    assert all(r.status == "ok" for r in runs), [(r.index, r.describe()) for r in runs]
    for i in range(8):
        assert out[i].startswith("BLOCKED"), (cells[i], out[i])
    assert out[8].startswith("alice's own file") and str(marker) not in out[8] and out[8].endswith("False")
    assert out[9] == "/tmp/home x"
    assert out[10].startswith("BLOCKED")  # its own folder is read-only too
    assert out[11].startswith("IMPORTS course_lib")
    assert paths["gradebook"].read_text() == "grades of the whole class"
    assert not (Path("/tmp") / "scratch").exists() or (Path("/tmp") / "scratch").read_text() != "x"


@needs_bwrap
def test_limits_stop_a_huge_allocation_a_fork_bomb_and_a_huge_file(tmp_path, monkeypatch):
    paths = _course_layout(tmp_path)
    bomb = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    while True:\n"
            "        try:\n            os.fork()\n        except OSError:\n            time.sleep(0.05)\n"
            "time.sleep(3)\n"
            "try:\n    os.fork() or os._exit(0)\n    print('FORKED')\nexcept OSError as e:\n    print('STOPPED', type(e).__name__)")
    cells = [
        "import os\nprint(os.getuid())",
        "try:\n    b = bytearray(2**40)\n    print('ALLOCATED')\nexcept MemoryError:\n    print('STOPPED')",
        bomb,
        "try:\n    open('/tmp/big', 'wb').write(bytes(3 * 2**20))\n    print('WRITTEN')\nexcept OSError as e:\n"
        "    print('STOPPED', e.errno)",
        "import os\nos._exit(3)",
        "import os\nprint(os.getuid())\nprint('NEXT CELL RUNS')",
    ]
    runs = _run(cells, paths["own"], monkeypatch, nproc=64, fsize_mb=2)
    assert [r.stdout.strip() for r in runs[1:4]] == ["STOPPED", "STOPPED BlockingIOError", "STOPPED 27"]
    assert runs[4].status == "dead" and runs[5].stdout.strip().endswith("NEXT CELL RUNS")
    # the grader survives: it still starts processes, and nothing of the sandbox is left running
    assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, text=True).stdout == "1\n"
    if os.geteuid() == 0:
        # only this test's kernels (the one the bomb ran in, and its replacement): another xdist worker may be
        # grading in a sandbox of its own right now, under ids of its own
        ours = {int(runs[0].stdout.split()[0]), int(runs[5].stdout.split()[0])}
        assert min(ours) >= sandbox.SANDBOX_UID_BASE, ours
        for _ in range(60):  # the kernel sends SIGKILL to the whole pid namespace; exiting takes a moment
            left = [p for p in os.listdir("/proc") if p.isdigit() and _uid(p) in ours]
            if not left:
                break
            time.sleep(0.5)
        assert left == []


def _uid(pid: str) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1


def test_limits_come_from_the_environment_and_are_checked(monkeypatch):
    monkeypatch.setenv("COURSE_SANDBOX_MEMORY_MB", "3000")
    monkeypatch.setenv("COURSE_SANDBOX_NPROC", "50")
    lim = sandbox.limits("embedded")
    assert lim["memory_mb"] == 3000 and lim["nproc"] == 50 and lim["cpu_s"] > 0 and lim["fsize_mb"] > 0
    monkeypatch.delenv("COURSE_SANDBOX_MEMORY_MB")
    assert sandbox.limits("gpu")["memory_mb"] is None  # CUDA reserves more address space than it uses
    monkeypatch.setenv("COURSE_SANDBOX_CPU_S", "lots")
    with pytest.raises(sandbox.SandboxUnavailableError, match="COURSE_SANDBOX_CPU_S"):
        sandbox.limits()


def test_the_sandbox_binds_only_what_the_kernel_needs(tmp_path, monkeypatch):
    if shutil.which("bwrap") is None:
        pytest.skip("bwrap not installed")
    monkeypatch.setenv("HF_TOKEN", "secret")
    own = tmp_path / "autograded" / "alice" / A
    own.mkdir(parents=True)
    args = sandbox.bwrap_args(str(own), str(tmp_path / "sock"), "embedded", str(REPO))
    bound = {args[i + 2] for i, a in enumerate(args) if a in ("--ro-bind", "--bind")}
    assert str(own) in bound and str(tmp_path / "sock") in bound and str(REPO / "course_lib") in bound
    assert not any(b == str(REPO) or b.startswith(str(REPO / "solutions")) or "gradebook" in b for b in bound)
    assert "--unshare-net" in args or "--unshare-all" in args
    assert ("--unsetenv", "HF_TOKEN") in list(zip(args, args[1:]))
    assert not any(a.startswith("/dev/nvidia") for a in args)


def test_grading_refuses_without_bwrap_and_says_how_to_fix(monkeypatch, tmp_path, capsys):
    from course_lib.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    assert sandbox.probe() == "bubblewrap (bwrap) is not installed"
    for argv in (["grade", str(tmp_path)], ["check", A]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"course {argv[0]}: the grading sandbox cannot run: bubblewrap (bwrap) is not installed" in err
        assert "How to fix: apt-get install bubblewrap" in err and "--no-sandbox" in err


def test_no_sandbox_is_explicit_and_loud(monkeypatch, capsys):
    from jupyter_client.manager import AsyncKernelManager

    assert sandbox.activate(enabled=False) is False
    assert "UNSANDBOXED" in capsys.readouterr().err
    assert sandbox.manager_class() is AsyncKernelManager
    monkeypatch.setenv(sandbox.ENV_FLAG, "on")
    assert sandbox.manager_class() is sandbox.SandboxKernelManager


def test_nbgrader_kernels_use_the_sandbox_only_when_grading_turns_it_on(monkeypatch):
    from course_lib.grading.config import load_config

    monkeypatch.setenv(sandbox.ENV_FLAG, "on")
    assert load_config(REPO).config.Execute.kernel_manager_class == "course_lib.grading.sandbox.SandboxKernelManager"
    monkeypatch.setenv(sandbox.ENV_FLAG, "off")
    assert "kernel_manager_class" not in load_config(REPO).config.Execute


@pytest.mark.slow
def test_course_grade_sandboxed_keeps_honest_marks_and_blocks_the_course_files(tmp_path, monkeypatch):
    """Through `course grade`: an honest warm-up scores 7/7 in the sandbox; the same answers plus a peek at
    nbgrader_config.py lose that part. Without bwrap grading refuses; --no-sandbox grades (the peek then
    succeeds: what the sandbox prevents) and every CSV row says the learner code ran unsandboxed."""
    import csv

    from test_grading import _course_copy

    from course_lib.cli import main
    from course_lib.grading.notebook import find_cell

    root = _course_copy(tmp_path, monkeypatch)
    src = nbformat.read(root / "solutions" / A / f"{A}.ipynb", as_version=4)
    for student in ("ann", "eve"):
        nb = copy.deepcopy(src)
        if student == "eve":
            cell = find_cell(nb, "load_answer")[1]
            cell.source = f"open({str(root / 'nbgrader_config.py')!r}).read()\n" + cell.source
        (tmp_path / "subs" / student / A).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "subs" / student / A / f"{A}.ipynb")
    out_csv = tmp_path / "g.csv"

    def grades(*flags):
        assert main(["grade", str(tmp_path / "subs"), "--csv", str(out_csv), *flags]) == 0
        return {r["student"]: r for r in csv.DictReader(out_csv.open())}

    if sandbox.probe() is None:
        rows = grades()
        assert float(rows["ann"]["score"]) == float(rows["ann"]["max_score"]) == 7
        assert float(rows["eve"]["score"]) < 7
        assert not any("UNSANDBOXED" in r["notes"] for r in rows.values())
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                               if not (Path(p) / "bwrap").exists()))
    assert shutil.which("bwrap") is None
    assert main(["grade", str(tmp_path / "subs"), "--csv", str(out_csv)]) == 2  # refuses
    rows = grades("--no-sandbox")
    assert {s: float(r["score"]) for s, r in rows.items()} == {"ann": 7, "eve": 7}
    assert all(r["notes"].startswith("UNSANDBOXED") for r in rows.values())


def test_course_grade_and_check_pass_no_sandbox(monkeypatch):
    from course_lib import cli, grading

    seen = []
    monkeypatch.setattr(grading, "check", lambda names=None, runtime="embedded", sandbox=True: seen.append(sandbox) or 0)
    monkeypatch.setattr(grading, "grade", lambda subs, csv_path=None, runtime="embedded", sandbox=True, **options:
                        seen.append(sandbox) or 0)  # options: workers, students, only, force, scheduler
    for argv in (["check", A], ["check", "--no-sandbox", A], ["grade", "subs"], ["grade", "subs", "--no-sandbox"]):
        args = cli.build_parser().parse_args(argv)
        assert args.func(args) == 0
    assert seen == [True, False, True, False]

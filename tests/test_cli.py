"""The course command: doctor, run, and its errors."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]


def course(*args, env_extra=None, cwd=ROOT, timeout=300):
    import os
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "course_lib.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def test_doctor_names_the_embedded_runtime_and_why():
    r = course("doctor")
    assert r.returncode == 0, r.stderr
    assert "runtime: embedded" in r.stdout and "why:" in r.stdout and "no CUDA GPU" in r.stdout
    assert "hub           not reachable" in r.stdout
    assert "cpu threads: " in r.stdout and "affinity" in r.stdout, "doctor should say how many torch threads and why"
    assert "checked in " in r.stdout   # doctor reports its own time (timings belong in benchmarks, not asserts)


def test_doctor_reports_an_impossible_runtime():
    r = course("doctor", "--runtime", "gpu")
    assert r.returncode == 1
    assert "cannot be chosen" in r.stdout and "How to fix" in r.stdout


def _notebook(path: Path, source: str) -> Path:
    nb = new_notebook(cells=[new_code_cell(source)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)
    return path


def test_run_executes_and_reports(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "lectures").mkdir()
    good = _notebook(tmp_path / "lectures" / "good.ipynb", "x = 6 * 7\nprint(x)")
    bad = _notebook(tmp_path / "lectures" / "bad.ipynb", "raise ValueError('boom')")
    r = course("run", str(good), str(bad), cwd=tmp_path)
    assert r.returncode == 1
    assert "good.ipynb" in r.stdout and "ok" in r.stdout and "FAILED" in r.stdout and "boom" in r.stdout
    executed = nbformat.read(tmp_path / "build" / "executed" / "lectures" / "good.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "42"
    r = course("run", str(good), cwd=tmp_path)
    assert r.returncode == 0 and "1 notebooks, 0 failed" in r.stdout


def test_run_with_jobs_splits_the_cores_between_side_by_side_kernels(tmp_path, monkeypatch):
    """Two notebooks with ``jobs=8``: both run at once (no more jobs than notebooks), results in the order given,
    and each kernel *starts* with cores // 2 threads in its environment (torch.set_num_threads inside a kernel is
    not enough, see course_lib.threads.job_env); the summary gives the wall clock. ``--jobs 0`` is refused."""
    from course_lib import threads

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "lectures").mkdir()
    probe = "import os, torch\nprint(os.environ.get('OMP_NUM_THREADS'), torch.get_num_threads())"
    paths = [_notebook(tmp_path / "lectures" / f"{name}.ipynb", probe) for name in ("b_second", "a_first")]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.setattr(threads, "affinity", lambda: 4)   # run_notebooks reads the cores in this process
    monkeypatch.setattr(threads, "cgroup_quota", lambda: None)
    from course_lib.notebooks import format_table, run_notebooks

    results = run_notebooks(paths, tmp_path, tmp_path / "build", timeout=120, jobs=8)
    assert [r.notebook for r in results] == ["lectures/b_second.ipynb", "lectures/a_first.ipynb"]
    assert all(r.ok for r in results), [r.error for r in results]
    for path in paths:
        executed = nbformat.read(tmp_path / "build" / "executed" / "lectures" / path.name, as_version=4)
        assert executed.cells[0].outputs[0]["text"].split() == ["2", "2"]   # 4 cores // 2 jobs (8 asked, 2 notebooks), read at start-up
    assert "2 notebooks, 0 failed" in format_table(results, wall=3.0, jobs=2) and \
        "3.0 s wall clock (2 at once)" in format_table(results, wall=3.0, jobs=2)
    r = course("run", "--jobs", "0", str(paths[0]), cwd=tmp_path)
    assert r.returncode == 2 and "--jobs 0" in r.stderr and "--jobs 2" in r.stderr


def test_run_rejects_a_missing_notebook(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "lectures").mkdir()
    r = course("run", "nope.ipynb", cwd=tmp_path)
    assert r.returncode == 2 and "no such notebook" in r.stderr


def test_help_lists_every_command():
    r = course("--help")
    for cmd in ("doctor", "lab", "run", "release", "grade", "check"):
        assert cmd in r.stdout

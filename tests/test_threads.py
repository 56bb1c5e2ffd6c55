"""Thread count from the CPU limits: cgroup v1/v2 quota parsing on fake cgroup trees, the choice rule,
the environment overrides, and that the runtime sets torch's count once and reports it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from course_lib import threads
from course_lib.errors import ConfigError


def _tree(tmp_path, files: dict[str, str], proc: str):
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    proc_file = tmp_path / "proc_self_cgroup"
    proc_file.write_text(proc)
    return root, proc_file


@pytest.mark.parametrize("text, cpus", [("max 100000", None), ("200000 100000", 2.0), ("150000 100000", 1.5),
                                        ("50000", 0.5), ("", None), ("garbage here", None)])
def test_parse_cpu_max(text, cpus):
    assert threads.parse_cpu_max(text) == cpus


@pytest.mark.parametrize("quota, period, cpus", [("-1", "100000", None), ("100000", "100000", 1.0),
                                                 ("250000", "100000", 2.5), ("x", "100000", None)])
def test_parse_cfs(quota, period, cpus):
    assert threads.parse_cfs(quota, period) == cpus


def test_v2_quota_of_own_cgroup_and_the_tightest_ancestor(tmp_path):
    root, proc = _tree(tmp_path, {"cpu.max": "max 100000", "kubepods/cpu.max": "150000 100000",
                                  "kubepods/pod1/cpu.max": "400000 100000"}, "0::/kubepods/pod1\n")
    assert threads.cgroup_quota(root, proc) == 1.5


def test_v2_without_limits_is_none(tmp_path):
    root, proc = _tree(tmp_path, {"cpu.max": "max 100000"}, "0::/\n")
    assert threads.cgroup_quota(root, proc) is None
    assert threads.cgroup_quota(tmp_path / "absent", tmp_path / "absent-proc") is None


def test_v1_quota(tmp_path):
    root, proc = _tree(tmp_path, {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000",
                                  "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
                                  "cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
                       "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    assert threads.cgroup_quota(root, proc) == 2.0


@pytest.mark.parametrize("aff, quota, want", [(8, None, 8), (8, 1.5, 1), (8, 2.0, 2), (2, 4.0, 2), (4, 0.5, 1)])
def test_choice_is_floor_of_the_tighter_limit(aff, quota, want):
    assert threads.choose_threads(aff, quota) == want


def test_plan_uses_affinity_and_quota(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.setattr(threads, "affinity", lambda: 16)
    monkeypatch.setattr(threads, "cgroup_quota", lambda: 1.0)
    choice = threads.plan()
    assert (choice.threads, choice.source) == (1, "cpu limits")
    assert "affinity 16 CPUs, cgroup quota 1 CPUs" in str(choice)


def test_environment_overrides_win_and_bad_values_are_explained(monkeypatch):
    monkeypatch.setattr(threads, "affinity", lambda: 16)
    monkeypatch.setattr(threads, "cgroup_quota", lambda: None)
    monkeypatch.setenv(threads.ENV_VAR, "3")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert (threads.plan().threads, threads.plan().source) == (3, "COURSE_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert (threads.plan().threads, threads.plan().source) == (5, "OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS"):
        threads.plan()


def _fresh_python(code: str, **env) -> str:
    import os

    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", threads.ENV_VAR)}
    clean.update(env, COURSE_RUNTIME="embedded", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=clean).stdout.strip()


def test_select_runtime_sets_torch_threads_once_and_prints_them():
    code = ("import torch\nfrom course_lib import threads\nfrom course_lib.runtime import select_runtime\n"
            "threads.affinity = lambda: 4\nthreads.cgroup_quota = lambda: 1.0\n"
            "rt = select_runtime()\nprint(torch.get_num_threads())\n"
            "torch.set_num_threads(3)\nselect_runtime()\nprint(torch.get_num_threads())\nprint(rt)")
    first, after_user, *text = _fresh_python(code).splitlines()
    assert first == "1", "a 1-CPU quota should give torch 1 thread"
    assert after_user == "3", "a learner's torch.set_num_threads after the setup cell must not be undone"
    assert "cpu threads: 1 (affinity 4 CPUs, cgroup quota 1 CPUs)" in "\n".join(text)


def test_omp_num_threads_is_left_alone():
    code = ("import torch\nfrom course_lib.runtime import select_runtime\nrt = select_runtime()\n"
            "print(torch.get_num_threads(), rt.threads.source)")
    assert _fresh_python(code, OMP_NUM_THREADS="2") == "2 OMP_NUM_THREADS"


def test_grading_kernels_share_the_usable_cpus_and_respect_a_thread_ceiling(monkeypatch):
    """`course grade` gives each of N kernels cores // N threads, where cores counts the cgroup quota, and never
    more than the grader's own environment allows (two graders side by side, each told OMP_NUM_THREADS=1)."""
    from course_lib.grading import workers

    monkeypatch.setattr(threads, "affinity", lambda: 8)
    monkeypatch.setattr(threads, "cgroup_quota", lambda: 4.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    assert workers.cores() == 4
    assert [workers.threads_per_kernel(n) for n in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert workers.threads_per_kernel(1) == 1
    assert workers.thread_env(1) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COURSE_THREADS": "1"}
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv(threads.ENV_VAR, "3")
    assert workers.threads_per_kernel(1) == 3 and workers.threads_per_kernel(2) == 2

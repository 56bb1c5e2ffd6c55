"""How many CPU threads torch should use: what this process may really run on.

torch starts one intra-op thread per core it *sees*. In a container (Binder, CI, a shared server)
the process usually sees the host's cores but may use far fewer: its CPU affinity
(``os.sched_getaffinity``) and its cgroup CPU quota (cgroup v2 ``cpu.max``, cgroup v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) say how many. Threads beyond that only wait for each
other: beside another job, 100 greedy tokens of the default model took 3.3 s with 2 threads and
0.16 s with 1 (issue 23; ``python -m benchmarks --only threads`` measures it on your machine).

:func:`configure_threads` is called once, by the first :func:`course_lib.runtime.select_runtime`:

* ``OMP_NUM_THREADS`` set in the environment (before Python started) wins: the course leaves torch's
  count alone and says so;
* ``COURSE_THREADS=N`` asks the course for N threads;
* otherwise the course sets ``floor(min(affinity, quota))`` threads, at least 1.

To choose yourself inside a notebook, call ``torch.set_num_threads(n)`` *after* the setup cell: the
course sets the count only once per process, so later calls are never undone.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "COURSE_THREADS"
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count in force and where it came from."""

    threads: int
    affinity: int             # CPUs this process may be scheduled on
    quota: float | None       # CPUs' worth of time the cgroup allows per period (None: no limit)
    source: str               # "cpu limits", "OMP_NUM_THREADS", "COURSE_THREADS"

    def __str__(self) -> str:
        limits = f"affinity {self.affinity} CPU{'s' if self.affinity != 1 else ''}, cgroup quota " \
                 + (f"{self.quota:g} CPUs" if self.quota is not None else "none")
        if self.source == "cpu limits":
            return f"{self.threads} ({limits})"
        return f"{self.threads} (set by {self.source}; {limits})"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def parse_cpu_max(text: str | None) -> float | None:
    """cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD") -> CPUs, or None for no limit."""
    parts = (text or "").split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str | None, period_text: str | None) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` -> CPUs, or None (quota -1: no limit)."""
    try:
        quota, period = int(quota_text or ""), int(period_text or "")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The tightest CPU quota on this process's cgroup and its ancestors, in CPUs (None: no limit).

    cgroup v2: ``cpu.max`` in the process's own cgroup (from ``/proc/self/cgroup``, line ``0::PATH``)
    and every parent up to ``root``. cgroup v1: ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` under
    ``root/cpu`` (or ``root/cpu,cpuacct``) at the process's path and at the top of the hierarchy.
    """
    v2_path, v1_path = "", ""
    for line in (_read(proc_cgroup) or "").splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):
            v1_path = path
    limits = []
    d = root / v2_path.lstrip("/")
    while True:  # v2: this cgroup and its ancestors
        limits.append(parse_cpu_max(_read(d / "cpu.max")))
        if d == root or root not in d.parents:
            break
        d = d.parent
    for ctrl in ("cpu", "cpu,cpuacct"):  # v1: the process's cgroup and the hierarchy's top
        for base in (root / ctrl / v1_path.lstrip("/"), root / ctrl):
            limits.append(parse_cfs(_read(base / "cpu.cfs_quota_us"), _read(base / "cpu.cfs_period_us")))
    limits = [x for x in limits if x is not None]
    return min(limits) if limits else None


def affinity() -> int:
    """CPUs this process may be scheduled on (``os.sched_getaffinity``; ``os.cpu_count`` where absent)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_threads(n_affinity: int, quota: float | None) -> int:
    """``floor(min(affinity, quota))``, at least 1: a 1.5-CPU quota gets 1 thread, not 2."""
    usable = n_affinity if quota is None else min(n_affinity, quota)
    return max(1, math.floor(usable + 1e-9))


def _positive_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        from .errors import ConfigError
        raise ConfigError(f"{name}={raw!r} is not a positive whole number of threads.",
                          f"set {name} to e.g. 1 or 2, or unset it to let the course choose.")
    return value


def plan() -> ThreadChoice:
    """What :func:`configure_threads` would choose, without touching torch."""
    n_aff, quota = affinity(), cgroup_quota()
    omp, course = _positive_int("OMP_NUM_THREADS"), _positive_int(ENV_VAR)
    if omp is not None:
        return ThreadChoice(omp, n_aff, quota, "OMP_NUM_THREADS")
    if course is not None:
        return ThreadChoice(course, n_aff, quota, ENV_VAR)
    return ThreadChoice(choose_threads(n_aff, quota), n_aff, quota, "cpu limits")


_CHOSEN: ThreadChoice | None = None


def configure_threads() -> ThreadChoice:
    """Set torch's intra-op thread count once per process (see the module docstring); returns the choice.

    Later calls return the first choice and touch nothing, so a learner's ``torch.set_num_threads``
    after the setup cell stands.
    """
    global _CHOSEN
    if _CHOSEN is not None:
        return _CHOSEN
    import torch

    choice = plan()
    if choice.source != "OMP_NUM_THREADS":  # torch already read OMP_NUM_THREADS at start-up
        torch.set_num_threads(choice.threads)
    else:
        choice = ThreadChoice(torch.get_num_threads(), choice.affinity, choice.quota, choice.source)
    _CHOSEN = choice
    return choice


def cores() -> int:
    """CPUs this process may use: ``floor(min(affinity, cgroup quota))``, at least 1."""
    return choose_threads(affinity(), cgroup_quota())


def per_job(jobs: int) -> int:
    """Threads for each of ``jobs`` processes that run at once: ``cores() // jobs``, at least 1, and never
    above a count set in this process's environment (``OMP_NUM_THREADS`` or ``COURSE_THREADS``)."""
    n = max(1, cores() // jobs)
    choice = plan()
    return n if choice.source == "cpu limits" else min(n, choice.threads)


def job_env(jobs: int) -> dict[str, str]:
    """The environment a process must *start* with to use :func:`per_job` threads.

    Set before the process starts, not by ``torch.set_num_threads`` inside it: with two processes side by side
    on 2 cores, 20 forward and backward passes of the default model took 5.3 s alone and 46 s each beside the
    other when each had called ``torch.set_num_threads(1)`` after starting, and 7.0-8.6 s each with
    ``OMP_NUM_THREADS=1`` in their environment (issue 20; ``course run --jobs`` and ``course grade --workers``
    rely on this)."""
    n = str(per_job(jobs))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, ENV_VAR: n}

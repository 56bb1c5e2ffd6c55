"""What every benchmark shares: the machine, the versions, repeated timings and their spread, the JSON file.

A result file is one JSON object (``SCHEMA_VERSION``)::

    benchmark, title, schema_version, quick, started_utc, finished_utc, wall_seconds,
    hardware  {cpu_model, logical_cores, torch_threads, ram_total_gb, ram_available_gb, platform, cuda}
    versions  {python, torch, transformers, peft, bitsandbytes, course_lib, git_commit}
    load      {loadavg_start, loadavg_end, cpu_share, contended, note}
    settings  {...}             what was measured and how (sizes, repeats, seeds)
    results   [ {...}, ... ]    rows; every timing is a ``stats`` dict (n, median, q1, q3, min, max, unit)
    headline  {...}             the few numbers the README table shows
    plots     [file names]      PNGs next to the JSON
    notes     [str]             caveats, targets missed and why

``load.cpu_share`` is the CPU time this process got divided by the wall time it spent measuring:
close to 1 on a quiet machine for a one-thread benchmark, lower when other processes take the
cores. With the load average it tells a reader how much to trust the absolute times; the ratios
(course_lib vs library, variant vs base) are measured interleaved, so contention hits both sides.

Timing itself is the library's (:mod:`course_lib.timing`): ``interleaved`` (warm-up, rounds in
alternating order, CUDA synchronisation) and ``stats`` (= ``course_lib.timing.summary``: median,
quartiles, min, max); :class:`CpuClock` is passed to it as ``clock`` to meter the CPU share.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from course_lib.timing import interleaved  # noqa: F401  (the one timer; the benchmarks import it from here)
from course_lib.timing import summary as stats

SCHEMA_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
TOP_KEYS = ("benchmark", "title", "schema_version", "quick", "started_utc", "finished_utc", "wall_seconds",
            "hardware", "versions", "load", "settings", "results", "headline", "plots", "notes")
STATS_KEYS = ("n", "median", "q1", "q3", "min", "max", "unit")


# ----------------------------------------------------------------------------------------- the machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def meminfo_gb() -> dict:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            if key in ("MemTotal", "MemAvailable"):
                out[key] = round(int(value.split()[0]) * 1024 / 1e9, 2)
    except OSError:
        pass
    return {"ram_total_gb": out.get("MemTotal"), "ram_available_gb": out.get("MemAvailable")}


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return [float("nan")] * 3


def hardware() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"cpu_model": cpu_model(), "logical_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            **meminfo_gb(), "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if cuda else None}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg, dist in (("torch", "torch"), ("transformers", "transformers"), ("peft", "peft"),
                      ("bitsandbytes", "bitsandbytes"), ("course_lib", "efficient-adaptation-course")):
        try:
            out[pkg] = version(dist)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["git_commit"] = (commit + ("+uncommitted" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


# ----------------------------------------------------------------------------------------- statistics
def ratio_stats(num: list[float], den: list[float]) -> dict:
    """Spread of a ratio measured interleaved: the per-round ratios ``num[i] / den[i]``."""
    return stats([a / b for a, b in zip(num, den)], "ratio")


class CpuClock:
    """Wall and process-CPU seconds spent inside ``with`` blocks, summed: ``share = cpu / wall``."""

    def __init__(self):
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c

    @property
    def share(self) -> float | None:
        return round(self.cpu / self.wall, 3) if self.wall > 0 else None


# ----------------------------------------------------------------------------------------- a result file
@dataclass
class Result:
    """Collects one benchmark's output; :meth:`write` adds the machine and load and writes the JSON."""

    benchmark: str
    title: str
    quick: bool
    settings: dict = field(default_factory=dict)
    results: list = field(default_factory=list)
    headline: dict = field(default_factory=dict)
    plots: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    clock: CpuClock = field(default_factory=CpuClock)

    def __post_init__(self):
        self._t0 = time.time()
        self.started_utc = _utc()
        self.loadavg_start = loadavg()

    def write(self, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        hw = hardware()
        end = loadavg()
        cores = hw["logical_cores"] or 1
        share = self.clock.share
        busy = max(self.loadavg_start[0], end[0]) > 0.75 * cores
        starved = share is not None and share < 0.85 * min(hw["torch_threads"], cores)
        contended = bool(busy or starved)
        note = (f"1-min load average {self.loadavg_start[0]} at start, {end[0]} at end on {cores} logical cores; "
                f"this process got {share if share is not None else 'n/a'} CPU-seconds per wall second while measuring "
                f"({hw['torch_threads']} torch thread(s)). ")
        note += ("CONTENDED: absolute times are inflated by other processes; ratios measured interleaved are "
                 "less affected." if contended else "Quiet enough: absolute times are representative.")
        payload = {
            "benchmark": self.benchmark, "title": self.title, "schema_version": SCHEMA_VERSION, "quick": self.quick,
            "started_utc": self.started_utc, "finished_utc": _utc(), "wall_seconds": round(time.time() - self._t0, 2),
            "hardware": hw, "versions": versions(),
            "load": {"loadavg_start": self.loadavg_start, "loadavg_end": end, "cpu_share": share,
                     "contended": contended, "note": note},
            "settings": self.settings, "results": self.results, "headline": self.headline, "plots": self.plots,
            "notes": self.notes,
        }
        path = out_dir / f"{self.benchmark}.json"
        path.write_text(json.dumps(_clean(payload), indent=1) + "\n")
        return path


def _utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(x):
    """Round floats to 6 significant digits and turn NaN into None (valid JSON, short diffs)."""
    if isinstance(x, float):
        return None if x != x else float(f"{x:.6g}")
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def new_figure(width: float = 7.0, height: float = 4.0, ncols: int = 1):
    """``(figure, list of axes)`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, out_dir: Path, name: str, result: Result) -> None:
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    result.plots.append(name)


def error_bars(rows: list[dict], key: str = "median", scale: float = 1.0):
    """(medians, [lower, upper]) for matplotlib's ``yerr`` from stats dicts (quartile spread)."""
    med = [r[key] * scale for r in rows]
    lower = [(r[key] - r["q1"]) * scale for r in rows]
    upper = [(r["q3"] - r[key]) * scale for r in rows]
    return med, [lower, upper]


def contention_label(result: Result) -> str:
    """Suffix for plot titles: the load when the machine is busy now, else an empty string."""
    cores = os.cpu_count() or 1
    load = max(result.loadavg_start[0], loadavg()[0])
    return f" (contended: load {load:.1f} on {cores} cores)" if load > 0.75 * cores else ""

"""(h) ``course grade`` throughput: submissions per minute with 1 and 2 local workers, and the speed-up.

A class of warm-up submissions (``00_warmup``: the honest solution, alternating with the blank
release, which fails its tests quickly) is graded with ``--workers 1`` and ``--workers 2 --force`` in
a scratch copy of the course, alternately (one of each per round, order alternating), so a machine
that gets busier slows both alike; the speed-up is the per-round ratio ``time(1) / time(2)``. Each
grading is the real thing: one job per submission (nbgrader autograde + feedback in a scratch course
directory, kernels in the sandbox when bubblewrap runs here), merged into one gradebook and CSV.

The assignment is registered once before timing (``course grade`` does that once per source notebook, see
``course_lib.grading.grader.register``), so the times are the submissions' own.

Projection to a class of 300 learners x 9 assignments: a submission costs the grader's fixed
overhead (measured here: the warm-up's seconds per submission with one worker) plus its notebook's
own work beyond the warm-up's (the solution notebooks' wall times in ``results/notebooks.json``, when
present). On one 2-core machine the class takes ``submissions x seconds / speed-up``; on a 64-core
cluster (64 workers, one thread each) ``submissions x seconds / (64 x speed-up / 2)``, i.e. assuming
the per-worker efficiency measured here with 2 workers holds at 64: an assumption, said so in the JSON.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path

from .common import RESULTS_DIR, ROOT, Result, interleaved, new_figure, ratio_stats, save_figure, stats

NAME = "grading"
A = "00_warmup"
CLASS = (300, 9)  # learners x assignments of the projection
CLUSTER_CORES = 64


def _course(dest: Path) -> Path:
    """A scratch course holding only the warm-up (the grader writes its build/ there, not in the checkout)."""
    (dest / "lectures").mkdir(parents=True)
    for rel in ("pyproject.toml", "nbgrader_config.py", f"solutions/{A}", f"exercises/{A}"):
        src, dst = ROOT / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    return dest


def _class(root: Path, n: int) -> Path:
    """``n`` submissions: the blank release (even learners) and the solution (odd ones)."""
    subs = root / "submissions"
    for i in range(n):
        kind = "exercises" if i % 2 == 0 else "solutions"
        d = subs / f"learner{i:02d}" / A
        d.mkdir(parents=True)
        shutil.copy2(root / kind / A / f"{A}.ipynb", d / f"{A}.ipynb")
    return subs


def _grading(subs: Path, workers: int, sandbox_flag: list[str], scores: list):
    def call():
        from course_lib.cli import main

        out = subs.parent / f"grades-{workers}.csv"
        rc = main(["grade", str(subs), "--csv", str(out), "--workers", str(workers), "--force", *sandbox_flag])
        if rc != 0:
            raise RuntimeError(f"course grade --workers {workers} failed (rc {rc})")
        scores.append((workers, out.read_text()))
    return call


def _extra_seconds() -> tuple[float | None, dict]:
    """Mean wall time of the 9 solution notebooks beyond the warm-up's, from results/notebooks.json."""
    path = RESULTS_DIR / "notebooks.json"
    try:
        rows = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return None, {}
    walls = {Path(r["notebook"]).stem: r["wall_seconds"] for r in rows
             if r["notebook"].startswith("solutions/") and r.get("wall_seconds")}
    if A not in walls or len(walls) < 2:
        return None, walls
    return statistics.mean(walls.values()) - walls[A], walls


def run(out_dir, quick: bool = False) -> Result:
    import tempfile
    from contextlib import redirect_stdout
    from io import StringIO
    from unittest import mock

    from course_lib.grading import sandbox
    from course_lib.grading.config import load_config
    from course_lib.grading.grader import register
    from course_lib.grading.workers import cores

    result = Result(NAME, "course grade: submissions per minute with 1 and 2 workers, and the speed-up", quick)
    why = sandbox.probe()
    flag = ["--no-sandbox"] if why else []
    n, repeats, warmup = (1, 1, 0) if quick else (6, 2, 0)  # a round grades the class twice: minutes each here
    scores: list = []
    with mock.patch.dict(os.environ), tempfile.TemporaryDirectory(prefix="course-grading-bench-") as d:
        root = _course(Path(d) / "course")
        os.environ["COURSE_ROOT"] = str(root)
        subs = _class(root, n)
        register(load_config(), A)  # once per assignment and source, as in a class's grading: not timed
        log = StringIO()
        with redirect_stdout(log):
            t = interleaved({"1 worker": _grading(subs, 1, flag, scores), "2 workers": _grading(subs, 2, flag, scores)},
                            repeats, warmup, clock=result.clock, progress="grading 1 vs 2 workers")
    csvs = {text for _, text in scores}
    speedup = ratio_stats(t["1 worker"], t["2 workers"])
    per_min = {k: stats([n * 60 / s for s in v], "submissions/min") for k, v in t.items()}
    serial_s = statistics.median(t["1 worker"]) / n
    extra, walls = _extra_seconds()
    subs_total = CLASS[0] * CLASS[1]
    per_sub = serial_s + (extra or 0.0)
    s2 = speedup["median"]
    projection = {
        "class": f"{CLASS[0]} learners x {CLASS[1]} assignments = {subs_total} submissions",
        "seconds_per_submission_serial": per_sub,
        "how": "warm-up seconds per submission with 1 worker (measured here)"
               + (f" + {extra:.1f} s, the mean wall time of the 9 solution notebooks beyond the warm-up's "
                  "(results/notebooks.json)" if extra is not None else " (results/notebooks.json missing: "
                                                                       "warm-up-sized submissions)"),
        "hours_one_2core_machine_2_workers": subs_total * per_sub / s2 / 3600,
        "hours_64core_cluster_64_workers": subs_total * per_sub / (CLUSTER_CORES * s2 / 2) / 3600,
        "cluster_assumption": "the per-worker efficiency measured here with 2 workers (speed-up / 2) holds with 64 "
                              "workers on 64 cores, one torch thread each, and the parent's merging (serial, not "
                              "measured separately) keeps up",
    }
    result.results.append({"workload": f"{n} submission(s) of {A} (half blank, half solution), --force",
                           "seconds": {k: stats(v, "s") for k, v in t.items()},
                           "submissions_per_minute": per_min, "speedup_1_to_2_workers": speedup,
                           "identical_csv_across_runs": len(csvs) == 1, "projection": projection})
    result.headline = {"submissions/min, 1 worker": per_min["1 worker"]["median"],
                       "submissions/min, 2 workers": per_min["2 workers"]["median"],
                       "speed-up 2 vs 1 workers": s2,
                       "hours for 300x9, one 2-core machine": projection["hours_one_2core_machine_2_workers"],
                       "hours for 300x9, 64-core cluster": projection["hours_64core_cluster_64_workers"]}
    result.settings = {"assignment": A, "submissions": n, "repeats": repeats, "warmup_rounds": warmup,
                       "cores": cores(), "sandbox": "off (--no-sandbox): " + why if why else "bubblewrap",
                       "solution_walls_s": walls, "threads_per_kernel": {"1 worker": max(1, cores()),
                                                                          "2 workers": max(1, cores() // 2)}}
    result.notes.append("The machine is shared with other jobs (see load): the absolute rates are inflated, the "
                        "interleaved speed-up less so; the 2-core speed-up is bounded by what the other jobs leave.")
    if len(csvs) != 1:
        result.notes.append("the CSVs of the runs DIFFER: grading is not reproducible here")
    fig, axes = new_figure(5, 3.6)
    axes[0].bar(list(per_min), [v["median"] for v in per_min.values()], color=["#4c72b0", "#dd8452"])
    axes[0].set_ylabel("submissions per minute (median)")
    axes[0].set_title(f"speed-up {s2:.2f}x with 2 workers ({cores()} cores)", fontsize=9)
    save_figure(fig, out_dir, f"{NAME}.png", result)
    return result

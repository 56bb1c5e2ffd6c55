"""The benchmark runner (benchmarks/) in --quick mode: it runs, writes JSON of the documented schema and plots.

No timing is asserted (the machine is shared); the checks are on structure and on numbers that do not
depend on timing: the two LoRA implementations compute the same loss, NF4 storage costs 4 + 8/64 +
32/(64*256) bits a weight up to the partial-block overhead, merged LoRA equals unmerged LoRA.
"""
import json
import functools
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import BENCHMARKS  # noqa: E402
from benchmarks.common import STATS_KEYS, TOP_KEYS, stats  # noqa: E402

pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")


def _stats_dicts(x):
    """Every dict in ``x`` that looks like a stats dict (has 'median')."""
    if isinstance(x, dict):
        if "median" in x:
            yield x
        for v in x.values():
            yield from _stats_dicts(v)
    elif isinstance(x, list):
        for v in x:
            yield from _stats_dicts(v)


@functools.cache
def _runnable() -> list[str]:
    """Every benchmark, less the grading sandbox's where bubblewrap cannot run (CI installs it)."""
    import warnings

    from course_lib.grading import sandbox

    why = sandbox.probe()
    if why:
        warnings.warn(f"benchmark 'sandbox' not run: {why}")
    return sorted(n for n in BENCHMARKS if not (why and n == "sandbox"))


def _quick_run(out):
    names = _runnable()
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), "--only", *names], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env={**__import__("os").environ,
                                                                            "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"runner failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out, {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


def test_quick_run_writes_json_plots_and_a_report(tmp_path):
    """One test on purpose: under pytest-xdist each worker would run the runner again for a second test."""
    out, results = _quick_run(tmp_path / "bench")
    _check_schema(out, results)
    _check_timings(results)
    _check_sanity(results)
    _check_report(out, tmp_path)


def _check_schema(out, results):
    assert set(results) == set(_runnable())
    for name, d in results.items():
        assert list(d) == list(TOP_KEYS), f"{name}: top-level keys {list(d)}"
        assert d["benchmark"] == name and d["quick"] is True and d["schema_version"] == 1
        hw = d["hardware"]
        assert hw["cpu_model"] and hw["logical_cores"] >= 1 and hw["torch_threads"] == 1 and hw["ram_total_gb"] > 0
        assert d["versions"]["torch"] and d["versions"]["peft"] and d["versions"]["bitsandbytes"]
        load = d["load"]
        assert len(load["loadavg_start"]) == 3 and len(load["loadavg_end"]) == 3
        assert isinstance(load["contended"], bool) and load["note"]
        assert d["results"] and d["headline"]
        for plot in d["plots"]:
            assert (out / plot).is_file() and (out / plot).read_bytes()[:4] == b"\x89PNG", plot
        assert d["plots"], f"{name} made no plot"


def _check_timings(results):
    n = 0
    for name in ("lora_step", "inference", "nf4"):
        for s in _stats_dicts(results[name]["results"]):
            assert set(STATS_KEYS) <= set(s), s
            assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"], s
            assert s["n"] >= 2
            n += 1
    assert n >= 10


def _check_sanity(r):
    for row in r["lora_step"]["results"]:
        assert row["loss_abs_diff"] < 1e-4, "course_lib and peft LoRA must compute the same loss"
        assert row["ratio"]["median"] > 0
    for row in r["inference"]["results"]:
        assert set(row["latency_ms"]) == {"base", "lora merged", "lora merged (wrappers kept)", "lora unmerged",
                                          "adapter", "prefix"}
        assert row["merged_vs_unmerged_max_abs_logit_diff"] <= 1e-4 * max(1.0, row["logit_scale"])
    storage = r["nf4"]["results"][-1]
    assert storage["bits_per_parameter"]["formula"] == pytest.approx(4.127, abs=5e-4)
    assert storage["bits_per_parameter"]["course_lib"] == pytest.approx(storage["bits_per_parameter"]["bitsandbytes"])
    assert storage["packed_codes_identical_fraction"] == 1.0 and storage["scale_codes_nearest_fraction"]["course_lib"] == 1.0
    # where bitsandbytes' scale code equals ours it is a nearest one (an exact tie may make a differing code nearest too)
    assert storage["scale_codes_nearest_fraction"]["bitsandbytes"] >= storage["scale_codes_identical_fraction"]
    mem = r["memory"]["results"]
    assert {row["method"] for row in mem} >= {"full", "lora", "qlora"}
    for row in mem:
        assert row["measured_peak_bytes"] > 0 and row["estimate_bytes"]["total"] > 0
        assert row["tensor_bytes"]["gradients"] > 0
    full = next(row for row in mem if row["method"] == "full")
    lora = next(row for row in mem if row["method"] == "lora")
    assert full["trainable"] == full["params"] and lora["trainable"] == lora["estimated_trainable"]
    assert {row["status"] for row in r["notebooks"]["results"]} <= {"ok", "stale", "not run", "failed or incomplete"}
    rows = r["threads"]["results"]
    assert {(row["condition"]) for row in rows} == {"idle", "busy"} and len(rows) == 4
    for row in rows:
        assert set(row["seconds"]) == {"1 thread", "2 threads"} and row["ratio_2_to_1"]["median"] > 0
    grading = r["grading"]["results"][0]
    assert grading["identical_csv_across_runs"], "grading the same class twice must give the same CSV"
    assert grading["speedup_1_to_2_workers"]["median"] > 0 and grading["projection"]["hours_one_2core_machine_2_workers"] > 0


def test_stats_quartiles():
    s = stats([4, 1, 3, 2, 5], "ms")
    assert (s["min"], s["q1"], s["median"], s["q3"], s["max"], s["n"]) == (1, 2, 3, 4, 5, 5)
    with pytest.raises(ValueError):
        stats([], "ms")


def test_unknown_benchmark_name_is_refused():
    from benchmarks.runner import main

    with pytest.raises(SystemExit):
        main(["--only", "nope"])


def _check_report(out, tmp_path):
    from benchmarks.report import END, START, render, update_readme, load

    text = render(load(out))
    assert "| benchmark | measured |" in text and "--quick results" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\nrest\n")
    assert update_readme(out, readme)
    body = readme.read_text()
    assert "old" not in body and body.startswith("intro\n") and body.endswith("rest\n") and "LoRA step" in body


def test_course_bench_subcommand_is_wired():
    from course_lib.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick", "--only", "nf4", "--out", "x"])
    assert args.quick and args.only == ["nf4"] and args.out == "x" and args.threads == 1
    assert args.func.__name__ == "cmd_bench"


def test_course_bench_runs_the_benchmarks_folder_as_a_process(tmp_path, monkeypatch):
    """`course bench` runs `python -m benchmarks` in the course root (no sys.path change), passing its arguments."""
    from course_lib import cli, project

    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__main__.py").write_text(
        "import os, sys\nopen('argv.txt', 'w').write(os.getcwd() + '|' + ' '.join(sys.argv[1:]))\nsys.exit(3)\n")
    monkeypatch.setattr(project, "course_root", lambda: tmp_path)
    monkeypatch.chdir(tmp_path.parent)
    path_before = list(sys.path)
    args = cli.build_parser().parse_args(["bench", "--quick", "--only", "nf4", "memory", "--out", "res"])
    assert args.func(args) == 3  # the benchmarks' exit status comes back
    cwd, argv = (tmp_path / "argv.txt").read_text().split("|")
    assert Path(cwd) == tmp_path and sys.path == path_before
    assert argv == f"--quick --only nf4 memory --out {tmp_path.parent / 'res'} --threads 1"


def test_course_bench_without_the_benchmarks_folder_says_so(tmp_path, monkeypatch):
    from course_lib import cli, project
    from course_lib.errors import CourseError

    monkeypatch.setattr(project, "course_root", lambda: tmp_path)
    args = cli.build_parser().parse_args(["bench", "--quick"])
    with pytest.raises(CourseError, match="no benchmarks/ folder") as err:
        args.func(args)
    assert "checkout of the course repository" in str(err.value)

"""Run the benchmarks: ``python -m benchmarks [--quick] [--only NAME ...] [--out DIR] [--threads N]``."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

from . import BENCHMARKS
from .common import RESULTS_DIR, ROOT, loadavg

QUICK_DIR = ROOT / "build" / "benchmarks-quick"  # quick results never overwrite the committed ones


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Benchmark the course's methods against peft, "
                                "bitsandbytes and the hardware; write JSON and PNG plots.")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny models and few repeats (seconds; for tests)")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(BENCHMARKS),
                   help=f"run only these benchmarks ({', '.join(BENCHMARKS)})")
    p.add_argument("--out", default=None, help=f"where to write JSON and plots (default: {RESULTS_DIR}; "
                   f"with --quick: {QUICK_DIR})")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: comparable on a shared machine)")


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        print("--threads must be >= 1 (How to fix: pass e.g. --threads 1).", file=sys.stderr)
        return 2
    unknown = sorted(set(args.only or []) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {unknown} (How to fix: use names from {', '.join(BENCHMARKS)}).", file=sys.stderr)
        return 2
    # subprocesses (the memory benchmark's workers) inherit this; set before torch starts its pool
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else (QUICK_DIR if args.quick else RESULTS_DIR)
    names = args.only or list(BENCHMARKS)
    failed = []
    t_all = time.time()
    for name in names:
        t0 = time.time()
        print(f"[{name}] starting (load average {loadavg()})", flush=True)
        try:
            module = importlib.import_module(BENCHMARKS[name])
            result = module.run(out, quick=args.quick)
            path = result.write(out)
        except Exception:  # one broken benchmark must not lose the others' results
            traceback.print_exc()
            failed.append(name)
            print(f"[{name}] FAILED after {time.time() - t0:.1f} s", flush=True)
            continue
        head = ", ".join(f"{k}: {_fmt(v)}" for k, v in result.headline.items())
        print(f"[{name}] {time.time() - t0:.1f} s -> {path}\n    {head}", flush=True)
        for note in result.notes:
            print(f"    note: {note}", flush=True)
    if out.resolve() == RESULTS_DIR.resolve() and not args.quick:
        from .report import update_readme

        if update_readme(out):
            print("benchmarks/README.md: headline tables regenerated from the JSON")
    print(f"{len(names) - len(failed)} of {len(names)} benchmarks done in {time.time() - t_all:.1f} s; "
          f"load average now {loadavg()}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))

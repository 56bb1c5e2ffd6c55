"""(g) The grading sandbox's cost per submission: a kernel in bubblewrap against a plain kernel.

What the sandbox adds to grading one submission is paid once per kernel: the wrapper process, bwrap
setting up its namespaces and mounts, the switch to the sandbox's user id, the unix-socket transport.
Code inside runs at the same speed (same CPU, same libraries). So one "submission" here is the life of
a grading kernel with a notebook's usual first work: start the kernel, run a cell that imports torch
and course_lib and loads the runtime's model (``load_model()``: the embedded default on the CPU), and
shut the kernel down, as :func:`course_lib.grading.execute.run_steps` does for ``course grade``.
Sandboxed and plain kernels alternate, one of each per round (order alternating); reported: seconds
per submission and the per-round ratio ``sandboxed / plain``. A full warm-up notebook takes ~40 s
under ``course grade`` here; the absolute overhead (sandboxed - plain) tells what it adds to that.
"""
from __future__ import annotations

import os
from pathlib import Path

from .common import Result, interleaved, new_figure, ratio_stats, save_figure, stats

NAME = "sandbox"
CELL = ("import torch\nfrom course_lib.models import load_model\nmodel, tok = load_model()\n"
        "print(sum(p.numel() for p in model.parameters()))")


def _submission(sandboxed: bool, folder: Path):
    import nbformat

    from course_lib.grading import sandbox
    from course_lib.grading.execute import run_steps, solution_steps

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])

    def call():
        os.environ[sandbox.ENV_FLAG] = "on" if sandboxed else "off"
        runs = run_steps(nb, solution_steps(nb), folder, lambda cell: 300)
        if runs[0].status != "ok" or not runs[0].stdout.strip().isdigit():
            raise RuntimeError(f"the benchmark cell failed ({'sandboxed' if sandboxed else 'plain'}): "
                               f"{runs[0].describe()}")
    return call


def run(out_dir, quick: bool = False) -> Result:
    import tempfile
    from unittest import mock

    from course_lib.grading import sandbox
    from course_lib.grading.config import pin_runtime

    result = Result(NAME, "grading sandbox: cost per submission (bubblewrap kernel vs plain kernel)", quick)
    why = sandbox.probe()
    if why:
        raise sandbox.SandboxUnavailableError(f"cannot measure the sandbox: {why}.", "apt-get install bubblewrap")
    repeats, warmup = (1, 0) if quick else (8, 1)
    with mock.patch.dict(os.environ), tempfile.TemporaryDirectory(prefix="course-sandbox-bench-") as d:
        pin_runtime("embedded")  # what course grade does: the CPU, offline (the environment is restored after)
        t = interleaved({"sandboxed": _submission(True, Path(d)), "plain": _submission(False, Path(d))},
                        repeats, warmup, clock=result.clock, progress="sandboxed vs plain kernel")
    ratio = ratio_stats(t["sandboxed"], t["plain"])
    overhead = stats([a - b for a, b in zip(t["sandboxed"], t["plain"])], "s")
    result.results.append({"workload": "kernel start + load_model() cell + shutdown",
                           "seconds": {k: stats(v, "s") for k, v in t.items()},
                           "ratio_sandboxed_to_plain": ratio, "overhead_seconds": overhead})
    result.headline = {"sandboxed / plain": ratio["median"], "overhead s per submission": overhead["median"]}
    result.settings = {"what": "one grading kernel per submission, sandboxed and plain alternating per round",
                       "cell": CELL, "runtime": "embedded", "repeats": repeats, "warmup_rounds": warmup,
                       "limits": sandbox.limits("embedded"), "as_root": os.geteuid() == 0}
    result.notes.append("The sandbox costs once per kernel (setup), not per cell; a notebook that trains for "
                        "tens of seconds pays the same absolute overhead, so its ratio is closer to 1.")
    fig, axes = new_figure(5, 3.6)
    axes[0].bar(["plain", "sandboxed"], [result.results[0]["seconds"][k]["median"] for k in ("plain", "sandboxed")],
                color=["#4c72b0", "#dd8452"])
    axes[0].set_ylabel("seconds per submission (median)")
    axes[0].set_title(f"sandboxed / plain = {ratio['median']:.2f}", fontsize=9)
    save_figure(fig, out_dir, f"{NAME}.png", result)
    return result

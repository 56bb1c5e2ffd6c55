"""(f) torch threads: 1 against 2, on an idle machine and beside a busy process.

Why the course sets torch's thread count from the CPU limits (:mod:`course_lib.threads`): a thread
that has no core of its own makes every parallel region wait for it. Two workloads of the embedded
default model: greedy generation of new tokens (``model.generate``, batch 1) and LoRA training steps
(forward, backward, AdamW; r=8 on q/v). Each runs with ``torch.set_num_threads(1)`` and ``(2)``,
interleaved (one call of each per round, order alternating), in two conditions: *idle* (nothing else
started by the benchmark) and *busy* (one extra process spinning on a core, what a notebook meets
beside another job or on a Binder pod that sees the host's cores). Conditions alternate in blocks,
so a machine whose load drifts affects both. Reported: seconds per call and the per-round ratio
``time(2 threads) / time(1 thread)``: below 1 the second thread helps, above 1 it hurts.
"""
from __future__ import annotations

import os
import subprocess
import sys

from .common import Result, interleaved, new_figure, ratio_stats, save_figure, stats

NAME = "threads"
THREADS = (1, 2)
CONDITIONS = ("idle", "busy")


def _busy_process() -> subprocess.Popen:
    """One process that keeps a core busy until killed (pure Python: no threads of its own)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _workloads(quick: bool):
    import torch

    from course_lib.methods.lora import LoraConfig, apply_lora

    from . import models

    label, model, tok = models.embedded(quick)
    new_tokens = 4 if quick else 100
    steps = 1 if quick else 6
    prompt = tok("reverse: stone ->", return_tensors="pt")

    def generate():
        with torch.no_grad():
            model.generate(**prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tok.pad_token_id)

    torch.manual_seed(0)
    lora_model = apply_lora(models.embedded(quick)[1], LoraConfig(r=8, lora_alpha=16,
                                                                   target_modules=["q_proj", "v_proj"]))
    batch = models.embedded_batch(tok, 8)
    opt = torch.optim.AdamW([p for p in lora_model.parameters() if p.requires_grad], lr=1e-3)

    def train():
        lora_model.train()
        for _ in range(steps):
            loss = lora_model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()

    return label, {f"generate {new_tokens} tokens": generate, f"{steps} LoRA training steps": train}


def _with_threads(fn, n: int):
    import torch

    def call():
        torch.set_num_threads(n)
        fn()
    return call


def run(out_dir, quick: bool = False) -> Result:
    import torch

    result = Result(NAME, "torch threads: 1 vs 2, idle and beside a busy process (CPU)", quick)
    blocks, repeats, warmup = (1, 2, 0) if quick else (3, 4, 1)
    label, work = _workloads(quick)
    before = torch.get_num_threads()
    times = {(w, c, n): [] for w in work for c in CONDITIONS for n in THREADS}
    try:
        for block in range(blocks):
            for cond in (CONDITIONS if block % 2 == 0 else CONDITIONS[::-1]):
                busy = _busy_process() if cond == "busy" else None
                try:
                    for w, fn in work.items():
                        t = interleaved({n: _with_threads(fn, n) for n in THREADS}, repeats, warmup,
                                        clock=result.clock, progress=f"{w}, {cond}, block {block + 1}/{blocks}")
                        for n in THREADS:
                            times[(w, cond, n)] += t[n]
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
    finally:
        torch.set_num_threads(before)
    for w in work:
        for cond in CONDITIONS:
            one, two = times[(w, cond, 1)], times[(w, cond, 2)]
            result.results.append({"workload": w, "model": label, "condition": cond,
                                   "seconds": {f"{n} thread{'s' if n > 1 else ''}": stats(times[(w, cond, n)], "s")
                                               for n in THREADS},
                                   "ratio_2_to_1": ratio_stats(two, one)})
            result.headline[f"{w}, {cond}: 2 threads / 1 thread"] = result.results[-1]["ratio_2_to_1"]["median"]
    result.settings = {"what": "torch.set_num_threads(1) vs (2), interleaved per round; conditions alternate in blocks",
                       "workloads": list(work), "model": label, "conditions": {
                           "idle": "nothing started by the benchmark (other jobs on the machine are not controlled)",
                           "busy": "one extra process spinning `while True: pass` on a core"},
                       "blocks": blocks, "repeats_per_block": repeats, "warmup_rounds": warmup,
                       "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    result.notes.append("On a machine whose cores are shared with other jobs (the development machine: 2 cores, "
                        "shared with other sessions) 'idle' is not idle; rerun on a quiet machine for clean numbers. "
                        "The ratios are measured interleaved, so a load that drifts affects both thread counts.")
    fig, axes = new_figure(8, 3.6, ncols=len(work))
    for ax, w in zip(axes, work):
        rows = [r for r in result.results if r["workload"] == w]
        ax.bar([r["condition"] for r in rows], [r["ratio_2_to_1"]["median"] for r in rows], color=["#4c72b0", "#dd8452"])
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_title(w, fontsize=9)
        ax.set_ylabel("time with 2 threads / 1 thread")
    save_figure(fig, out_dir, f"{NAME}.png", result)
    return result

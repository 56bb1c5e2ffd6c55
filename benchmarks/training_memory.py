"""(d) Peak training memory of full fine-tuning, LoRA and QLoRA on architecture-true random models,
measured on CPU and compared with :func:`course_lib.memory.estimate_training_memory`.

How it is measured, and why this way:

* Each configuration runs in a process of its own, forked from one worker that has imported torch,
  transformers and course_lib but built nothing (importing costs ~5 CPU-seconds, so forking saves
  minutes; the child starts with no model and its own address space).
* The worker is started with ``MALLOC_MMAP_THRESHOLD_=65536``: glibc then serves every allocation of
  64 kB or more with ``mmap`` and returns it to the kernel on ``free``, so the resident set size
  (RSS) follows the bytes actually live instead of keeping freed heap pages (torch's CPU allocator
  does not cache; it calls ``posix_memalign``/``free``).
* ``rss0``: the child's RSS before it builds the model. The model is built in fp32 and the method
  applied (QLoRA quantises the linear layers and frees the fp32 copies). Then the kernel's peak-RSS
  counter is reset (``echo 5 > /proc/self/clear_refs`` resets ``VmHWM``) and two training steps run
  (forward, backward, ``AdamW(foreach=False).step``, ``zero_grad``; the second step is the steady
  state, with optimiser states allocated). **Measured peak = VmHWM - rss0**: everything the step
  holds at its worst moment, weights included, without the transient of building the model. Where
  ``clear_refs`` is not writable the fallback is ``ru_maxrss - rss0`` (includes the build; flagged).
* ``tracemalloc`` is not used: it sees Python's allocator only, not torch's tensors. The live-tensor
  meter of :mod:`course_lib.memory` (a ``TorchDispatchMode``) counts tensor storages exactly but not
  what the process really holds; the tensor byte counts (weights, gradients, optimiser states) are
  reported next to the RSS figure for reference.

The estimate is ``estimate_training_memory(model, method, "fp32", "adamw", r=8, target_modules=
("q_proj", "v_proj"), batch_size, seq_len)`` (for QLoRA with ``base_dtype="fp32"``: the CPU model keeps
embeddings, norms and ``lm_head`` in fp32): weights + gradients + AdamW states + a rough activation
term (Korthikanti et al.), computed on a ``meta`` copy of the same architecture.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .common import Result, contention_label, new_figure, save_figure

NAME = "memory"
TARGET = 0.15
METHODS = ("full", "lora", "qlora")
SIZES = (("smollm2-135m", "smollm2-135m", {}), ("smollm2-360m", "smollm2-360m", {}),
         ("qwen2.5-0.5b", "qwen2.5-0.5b", {}))
_TINY = dict(num_hidden_layers=2, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2, vocab_size=512)
QUICK_SIZES = (("tiny-128", "smollm2-135m", dict(_TINY, hidden_size=128)),)
LORA = dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
#: what the measured models keep unquantised parameters in: fp32 on CPU (the estimator's QLoRA default is
#: the paper's bf16, so it is told)
BASE_DTYPE = {"full": None, "lora": None, "qlora": "fp32"}
# ----------------------------------------------------------------------------------------- in the child
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(cfg: dict) -> dict:
    """One configuration, in the current (fresh, forked) process: build, apply, two steps, read the peak."""
    import gc
    import resource

    import torch

    from course_lib.memory import estimate_training_memory
    from course_lib.methods.lora import LoraConfig, apply_lora
    from course_lib.methods.qlora import QLoraConfig, apply_qlora, quantized_storage_bytes
    from course_lib.registry import build_random_model

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    key, overrides, method = cfg["key"], cfg["overrides"], cfg["method"]
    bs, T = cfg["batch_size"], cfg["seq_len"]
    meta = build_random_model(key, device="meta", **overrides)
    est = estimate_training_memory(meta, method, "fp32", "adamw", r=LORA["r"], base_dtype=BASE_DTYPE[method],
                                   target_modules=tuple(LORA["target_modules"]), batch_size=bs, seq_len=T)
    vocab = meta.config.vocab_size
    del meta
    gc.collect()
    rss0 = _rss()
    t0 = time.time()
    model = build_random_model(key, seed=0, **overrides)
    if method == "lora":
        apply_lora(model, LoraConfig(**LORA))
    elif method == "qlora":
        apply_qlora(model, QLoraConfig(**LORA))
    model.train()
    gc.collect()
    build_s = time.time() - t0
    rss_model = _rss() - rss0
    build_peak = _hwm() - rss0
    reset = _reset_hwm()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, foreach=False)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (bs, T), generator=g)
    grad_bytes, step_s = 0, []
    for _ in range(cfg["steps"]):
        t = time.time()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grad_bytes = sum(p.grad.nbytes for p in params if p.grad is not None)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_s.append(time.time() - t)
    if reset:
        peak, how = _hwm() - rss0, "VmHWM after clear_refs, minus RSS before the model was built"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
        how = "ru_maxrss minus RSS before the model was built (clear_refs not writable: includes the build)"
    uniq = {id(p): p for p in model.parameters()}.values()
    state_bytes = sum(v.nbytes for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    return {"label": cfg["label"], "model": key, "overrides": overrides, "method": method,
            "params": est.n_params, "trainable": sum(p.numel() for p in params),
            "estimated_trainable": est.n_trainable, "batch_size": bs, "seq_len": T, "steps": cfg["steps"],
            "measured_peak_bytes": peak, "how": how, "rss_after_build_bytes": rss_model,
            "build_peak_bytes": build_peak,
            "tensor_bytes": {"parameters": sum(p.nbytes for p in uniq), "buffers": sum(b.nbytes for b in model.buffers()),
                             "quantized_storage": quantized_storage_bytes(model) if "qlora" in method else 0,
                             "gradients": grad_bytes, "optimizer_states": state_bytes},
            "estimate_bytes": {"weights": est.weights, "gradients": est.gradients, "optimizer": est.optimizer,
                               "activations": est.activations, "total": est.total,
                               "total_without_activations": est.total - est.activations},
            "estimate_notes": est.notes, "build_seconds": build_s, "step_seconds": step_s,
            "loss": float(loss.detach())}


def worker() -> int:
    """Read configurations (JSON list) on stdin; fork one child per configuration; print one JSON line each."""
    import course_lib.memory  # noqa: F401  (imports shared by every child)
    import course_lib.methods.qlora  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM  # noqa: F401

    from course_lib.registry import build_random_model

    configs = json.loads(sys.stdin.read())
    for key in {c["key"] for c in configs}:  # import the modelling code once, not in every child
        build_random_model(key, device="meta", num_hidden_layers=1)
    for cfg in configs:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: measure, send, exit without running the parent's atexit handlers
            os.close(r)
            try:
                out = measure(cfg)
            except BaseException as err:  # noqa: BLE001 - reported to the parent
                out = {"label": cfg["label"], "method": cfg["method"], "error": f"{type(err).__name__}: {err}"}
            with os.fdopen(w, "w") as f:
                f.write(json.dumps(out))
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            data = json.dumps({"label": cfg["label"], "method": cfg["method"],
                               "error": f"child died (wait status {status}; killed for memory?)"})
        print(data, flush=True)
        print(f"  memory: {cfg['label']} {cfg['method']} done", file=sys.stderr, flush=True)
    return 0


# ----------------------------------------------------------------------------------------- the benchmark
def _available() -> float:
    from .common import meminfo_gb

    return (meminfo_gb()["ram_available_gb"] or 0) * 1e9


def run(out_dir, quick: bool = False) -> Result:
    from course_lib.memory import estimate_training_memory
    from course_lib.registry import build_random_model

    result = Result(NAME, "Peak training memory on CPU: measured (RSS) vs course_lib.memory's estimate", quick)
    sizes = QUICK_SIZES if quick else SIZES
    bs, T, steps = (1, 16, 2) if quick else (1, 32, 2)
    result.settings = {"methods": list(METHODS), "sizes": [s[0] for s in sizes], "batch_size": bs, "seq_len": T,
                       "steps": steps, "precision": "fp32", "optimizer": "AdamW(foreach=False)",
                       "lora": dict(LORA), "qlora": "course_lib.methods.qlora.apply_qlora: NF4, blocksize 64, "
                       "double quantisation; embeddings, norms and lm_head stay fp32",
                       "measurement": "VmHWM - RSS before build, forked process per configuration, "
                                      "MALLOC_MMAP_THRESHOLD_=65536 (see module docstring)",
                       "target": f"estimate within {TARGET:.0%} of the measurement"}
    configs, skipped = [], []
    for label, key, overrides in sizes:
        for method in METHODS:
            est = estimate_training_memory(build_random_model(key, device="meta", **overrides), method, "fp32",
                                           "adamw", r=LORA["r"], target_modules=tuple(LORA["target_modules"]),
                                           base_dtype=BASE_DTYPE[method], batch_size=bs, seq_len=T)
            if est.total * 1.5 > _available():
                skipped.append(f"{label} {method}: needs ~{est.total / 1e9:.1f} GB, "
                               f"{_available() / 1e9:.1f} GB available")
                continue
            configs.append({"label": label, "key": key, "overrides": overrides, "method": method,
                            "batch_size": bs, "seq_len": T, "steps": steps})
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONWARNINGS="ignore")
    import resource

    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    # stdout carries the results (one JSON line per configuration); stderr shows progress
    proc = subprocess.run([sys.executable, "-m", "benchmarks.training_memory", "--worker"], input=json.dumps(configs),
                          stdout=subprocess.PIPE, text=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)),
                          timeout=3600)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(rows) != len(configs):
        raise RuntimeError(f"memory worker failed (exit {proc.returncode}); its error is printed above.")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker's and its children's CPU time
    result.clock.wall += time.perf_counter() - t0
    result.clock.cpu += (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    for row in rows:
        if "error" in row:
            result.notes.append(f"{row['label']} {row['method']}: {row['error']}")
            continue
        est, meas = row["estimate_bytes"]["total"], row["measured_peak_bytes"]
        row["relative_error"] = (est - meas) / meas
        row["relative_error_without_activations"] = (row["estimate_bytes"]["total_without_activations"] - meas) / meas
        row["within_target"] = abs(row["relative_error"]) <= TARGET
        result.results.append(row)
        result.headline[f"{row['label']} {row['method']} measured GB"] = meas / 1e9
        result.headline[f"{row['label']} {row['method']} estimate error"] = row["relative_error"]
        if not row["within_target"] and not quick:
            result.notes.append(_explain(row))
    result.notes += [f"skipped {s}" for s in skipped]
    result.notes.append("The measured bytes do not depend on the machine's load; only build_seconds and "
                        "step_seconds do.")
    if quick:
        result.notes.append("quick mode: toy models, so the fixed costs of a process and a step dominate and the "
                            "estimate errors mean nothing; run without --quick for the real comparison.")
    _plot(result, out_dir)
    return result


def _explain(row: dict) -> str:
    err = row["relative_error"]
    why = []
    if row["method"] == "qlora":
        why.append("the 4-bit base is dequantised layer by layer in the forward and again in the backward pass: "
                   "those transient full-precision weights and the per-op temporaries are not in the estimate")
    if row["method"] != "full" and row["measured_peak_bytes"] < 5e8:
        why.append("at this size the fixed costs of the step (logits and loss over the vocabulary, "
                   "temporaries, per-op allocations) are a large share of the total")
    if row["method"] == "full":
        why.append("AdamW's per-parameter temporaries and the activation term's roughness")
    return (f"{row['label']} {row['method']}: estimate {row['estimate_bytes']['total'] / 1e9:.3f} GB vs measured "
            f"{row['measured_peak_bytes'] / 1e9:.3f} GB ({err:+.1%}, outside {TARGET:.0%}): " + "; ".join(why) + ".")


def _plot(result: Result, out_dir) -> None:
    import numpy as np

    fig, axes = new_figure(12.0, 4.0, ncols=len(METHODS))
    labels = result.settings["sizes"]
    for ax, method in zip(axes, METHODS):
        rows = {r["label"]: r for r in result.results if r["method"] == method}
        x = np.arange(len(labels))
        meas = [rows[lab]["measured_peak_bytes"] / 1e9 if lab in rows else 0 for lab in labels]
        est = [rows[lab]["estimate_bytes"]["total"] / 1e9 if lab in rows else 0 for lab in labels]
        ax.bar(x - 0.2, meas, 0.4, label="measured peak RSS", color="tab:blue")
        ax.bar(x + 0.2, est, 0.4, label="course_lib.memory estimate", color="tab:orange")
        for i, lab in enumerate(labels):
            if lab in rows:
                ax.annotate(f"{rows[lab]['relative_error']:+.0%}", (x[i] + 0.2, est[i]), ha="center",
                            va="bottom", fontsize=8)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("peak training memory (GB)")
        ax.set_title(method, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Training-step memory on CPU, fp32, batch "
                 f"{result.settings['batch_size']} x {result.settings['seq_len']} tokens" + contention_label(result),
                 fontsize=10)
    save_figure(fig, out_dir, f"{NAME}.png", result)


if __name__ == "__main__" and "--worker" in sys.argv:
    sys.exit(worker())

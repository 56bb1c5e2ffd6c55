"""The GPU check: the GPU path of the course on a CUDA machine with no hub, in one run, as JSON.

    bash tools/gpu_check.sh                      # on a CUDA machine (installs .whl/ wheels if present)
    python tools/gpu_check.py --device cpu --quick   # dry run here: every check but the CUDA-only ones

Checks, each PASS / FAIL / SKIP with its numbers (``benchmarks/results/gpu.json``; rendered by
``benchmarks.gpu_report``):

* ``environment``: device, compute capability, precision policy, versions, commit;
* ``standins``: architecture-true stand-ins of the registry's models (real configs and vocabularies,
  random bf16 weights, a BPE tokenizer with the real special tokens and chat template) in a local
  Hugging Face cache, and SST-2/GSM8K with the hub's splits and columns (:mod:`course_lib.standins`);
* ``gpu_runtime_load``: every stand-in through the course's own loader (``load_model(key)``, offline
  from the cache), a chat-templated greedy answer and a label score on the device;
* ``nf4_vs_bnb``: the course's NF4 codes, absmax and dequantisation against bitsandbytes' CUDA kernels;
* ``lora_vs_peft``: the course's LoRA against peft's on the device (same init, same logits);
* ``paged_adamw``: one step of bitsandbytes' PagedAdamW against torch's AdamW;
* ``memory``: ``torch.cuda.max_memory_allocated`` of a training step against :mod:`course_lib.memory`'s estimate;
* ``heavy_cells``: each cell of ``memory.HEAVY_CELLS`` re-enacted at full size, measured against its prediction;
* ``notebooks``: every lecture and solution under ``COURSE_RUNTIME=embedded`` on the device, and (CUDA only)
  under the gpu runtime on the stand-ins; accuracy thresholds on random weights are expected to fail and listed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
QUICK_NOTEBOOKS = ("solutions/00_warmup/00_warmup.ipynb",)


def _check(name: str, results: list, fn, *args):
    """Run one check; record PASS/FAIL/SKIP, its numbers and its time."""
    t0 = time.time()
    try:
        status, numbers = fn(*args)
    except Exception as err:  # noqa: BLE001  a check that raises is a FAIL with its message
        status, numbers = "FAIL", {"error": f"{type(err).__name__}: {err}"[:500],
                                   "trace": traceback.format_exc(limit=3)[-800:]}
    results.append({"check": name, "status": status, "seconds": round(time.time() - t0, 1), **numbers})
    print(f"[{status}] {name} ({results[-1]['seconds']} s) {json.dumps(numbers)[:300]}", flush=True)


def environment(device: str) -> dict:
    import torch
    import transformers

    from course_lib.precision import precision_for

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__}
    for name in ("peft", "bitsandbytes", "datasets", "accelerate", "nbclient"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            versions[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    info = {"device": device, "versions": versions, "commit": commit or os.environ.get("COURSE_COMMIT", "unknown"),
            "precision": precision_for(device).name}
    if device == "cuda":
        info.update(gpu=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                    gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1))
    return info


def standins(root: Path, device: str, quick: bool):
    from course_lib import standins as S

    keys = ("smollm2-135m", "qwen2.5-0.5b-instruct", "qwen2.5-0.5b") if quick else S.STANDIN_MODELS
    overrides = {"num_hidden_layers": 2} if quick else {}
    env = S.build_all(root, keys=keys, device=device, progress=False, **overrides)
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    return "PASS", {"models": list(keys), "layers": "2 (quick)" if quick else "real", "bytes": size, "env": env}


def gpu_runtime_load(device: str, keys):
    import torch

    from course_lib import prompting
    from course_lib.models import load_model
    from course_lib.runtime import select_runtime
    from course_lib.tasks import sst2

    rt = select_runtime("embedded", device=device)  # the loader itself; the gpu runtime needs CUDA
    task = sst2(max_train=8)
    out = {}
    for key in keys:
        model, tok = load_model(key, runtime=rt, purpose="prompting")
        answer = prompting.generate(model, tok, "Say yes.", max_new_tokens=4, chat="auto")
        scores = prompting.score_continuations(model, tok, task.prompt(task["validation"][0]), [" negative", " positive"])
        out[key] = {"device": str(next(model.parameters()).device), "dtype": str(model.dtype),
                    "vocab": model.config.vocab_size, "answer": answer[0][:40],
                    "scores_finite": all(map(lambda s: s == s and abs(s) < float("inf"), scores))}
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    ok = all(v["device"].startswith(device) and v["scores_finite"] for v in out.values())
    return ("PASS" if ok else "FAIL"), {"models": out, "sst2_splits": {k: len(v) for k, v in task.splits.items()}}


def nf4_vs_bnb(device: str):
    import torch

    if device != "cuda":
        return "SKIP", {"why": "CUDA kernels only (the CPU kernels are compared in tests/test_nf4.py)"}
    import bitsandbytes.functional as BF

    from course_lib.methods import nf4

    torch.manual_seed(0)
    out, ok = {}, True
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        w = torch.randn(1024, 4096, device="cuda", dtype=dtype) * 0.02
        q, st = BF.quantize_4bit(w, quant_type="nf4", compress_statistics=False)
        packed, state = nf4.quantize_4bit(w, quant_type="nf4", double_quant=False)
        codes_equal = torch.equal(packed, q.reshape(-1))
        absmax_equal = torch.equal(state.absmax, st.absmax)
        deq_equal = torch.equal(nf4.dequantize_4bit(packed, state), BF.dequantize_4bit(q, st))
        mismatched = int((packed != q.reshape(-1)).sum())
        out[str(dtype)] = {"codes_equal": codes_equal, "absmax_equal": absmax_equal, "dequant_equal": deq_equal,
                           "mismatched_bytes": mismatched, "bytes": packed.numel()}
        ok &= codes_equal and absmax_equal
    return ("PASS" if ok else "FAIL"), out


def lora_vs_peft(device: str):
    import copy

    import torch
    from peft import LoraConfig as PeftConfig
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from course_lib.methods.lora import LoraConfig, apply_lora

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2)).to(device).eval()
    torch.manual_seed(1)
    theirs = get_peft_model(copy.deepcopy(base), PeftConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                            lora_dropout=0.0, init_lora_weights=True))
    torch.manual_seed(1)
    mine = apply_lora(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # B = 0 at init: give both the same non-zero B so the adapters matter
        for (n1, p1), (n2, p2) in zip(sorted((n, p) for n, p in theirs.named_parameters() if "lora_B" in n),
                                      sorted((n, p) for n, p in mine.named_parameters() if "lora_B" in n)):
            p1.copy_(torch.randn_like(p1) * 0.1)
            p2.copy_(p1)
    x = torch.randint(0, 512, (4, 64), device=device)
    with torch.no_grad():
        diff = (theirs(input_ids=x).logits - mine(input_ids=x).logits).abs().max().item()
    return ("PASS" if diff <= 1e-5 else "FAIL"), {"max_abs_logit_diff": diff, "device": device}


def paged_adamw(device: str):
    import torch

    if device != "cuda":
        return "SKIP", {"why": "paged optimiser states need CUDA unified memory"}
    import bitsandbytes as bnb

    torch.manual_seed(0)
    p1 = torch.nn.Parameter(torch.randn(4096, 1024, device="cuda"))
    p2 = torch.nn.Parameter(p1.detach().clone())
    o1, o2 = bnb.optim.PagedAdamW([p1], lr=1e-3), torch.optim.AdamW([p2], lr=1e-3)
    for _ in range(3):
        g = torch.randn_like(p1)
        p1.grad, p2.grad = g.clone(), g.clone()
        o1.step()
        o2.step()
    diff = (p1 - p2).abs().max().item()
    return ("PASS" if diff < 1e-5 else "FAIL"), {"max_abs_param_diff_after_3_steps": diff}


def memory_vs_estimate(device: str, quick: bool):
    import torch

    from course_lib import memory
    from course_lib.registry import build_random_model

    rows = {}
    overrides = {"num_hidden_layers": 2} if quick else {}
    for method in ("full", "lora"):
        model = build_random_model("smollm2-135m", device=device, **overrides)
        b, s = 8, 128
        est = memory.estimate_training_memory(model, method, "fp32", r=8, target_modules=("q_proj", "v_proj"),
                                              batch_size=b, seq_len=s)
        if method == "lora":
            from course_lib.methods.lora import LoraConfig, apply_lora
            model = apply_lora(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
        batch = {"input_ids": torch.randint(0, 49152, (b, s), device=device)}
        batch["labels"] = batch["input_ids"].clone()
        if device == "cuda":
            torch.cuda.empty_cache()
        measured = memory.measure_training_step(model, batch)
        states = est.weights + est.gradients + est.optimizer
        rows[method] = {"estimate_gb": round(est.total / 1e9, 3), "measured_peak_gb": round(measured.peak / 1e9, 3),
                        "states_estimate_gb": round(states / 1e9, 3),
                        "states_measured_gb": round((measured.weights + measured.gradients + measured.optimizer) / 1e9, 3),
                        "ratio_peak": round(measured.peak / est.total, 3), "how": measured.how}
        del model
    ok = all(abs(r["states_estimate_gb"] - r["states_measured_gb"]) <= 0.001 for r in rows.values())
    within = all(0.8 <= r["ratio_peak"] <= 1.2 for r in rows.values())
    return ("PASS" if ok and within else "FAIL"), {"smollm2-135m": rows, "peak_within_20pct": within}


def heavy_cells(device: str):
    """Each heavy cell of the T4 budget re-enacted at full size on the GPU: peak against the prediction."""
    import torch

    if device != "cuda":
        return "SKIP", {"why": "full-size models on CUDA only"}
    from course_lib import memory
    from course_lib.precision import precision_for
    from course_lib.registry import build_random_model

    cap = torch.cuda.get_device_capability(0)
    policy = precision_for("cuda")
    rows, ok = {}, True
    for cell in memory.HEAVY_CELLS:
        label = f"{cell.notebook.split('/')[-1]}:{cell.cell} {cell.model}"
        if cell.opt_in or cell.method == "qlora":
            rows[label] = {"measured": None, "why": "opt-in" if cell.opt_in else "QLoRA: measured by the notebook run"}
            continue
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        keep = [build_random_model(k, device="cuda", dtype=policy.inference_dtype if d == "inference" else torch.float32)
                for k, d in cell.resident]
        ids = torch.randint(0, 1000, (cell.batch_size, cell.seq_len), device="cuda")
        if cell.kind == "infer":
            model = build_random_model(cell.model, device="cuda", dtype=policy.inference_dtype)
            with torch.no_grad():
                model(input_ids=ids, logits_to_keep=cell.logits_positions or 0)
        else:
            model = build_random_model(cell.model, device="cuda", dtype=torch.float32)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
            with policy.autocast():
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            del opt
        peak = torch.cuda.max_memory_allocated() - before
        predicted = memory.predict_cell_peak(cell, "cuda", cap)
        rows[label] = {"measured_gb": round(peak / 1e9, 2), "predicted_gb": round(predicted / 1e9, 2),
                       "ratio": round(peak / predicted, 3)}
        ok &= 0.8 <= peak / predicted <= 1.2
        del model, keep
    torch.cuda.empty_cache()
    return ("PASS" if ok else "FAIL"), {"capability": list(cap), "cells": rows}


def notebooks(paths, env_extra: dict, label: str, timeout: int, jobs: int):
    from concurrent.futures import ThreadPoolExecutor

    from course_lib.notebooks import execute_notebook

    build = Path(tempfile.mkdtemp(prefix=f"gpu-check-{label}-"))
    saved = dict(os.environ)
    os.environ.update(env_extra)   # the kernels inherit it
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            runs = list(pool.map(lambda p: execute_notebook(ROOT / p, build / p, timeout=timeout, progress=False),
                                 paths))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    rows = {str(p): {"ok": r.ok, "seconds": round(r.seconds, 1), "error": r.error} for p, r in zip(paths, runs)}
    return ("PASS" if all(r.ok for r in runs) else "FAIL"), {"runtime": label, "notebooks": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="2-layer stand-ins, one notebook: a dry run of the script")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: benchmarks/results/gpu.json for a full CUDA run, build/gpu-dry.json otherwise")
    ap.add_argument("--work", type=Path, default=None, help="where the stand-ins go (default: a temporary dir)")
    ap.add_argument("--notebooks", nargs="*", default=None, help="notebooks to run (default: all; --quick: one)")
    ap.add_argument("--jobs", type=int, default=4, help="notebooks run at once")
    ap.add_argument("--cell-timeout", type=int, default=300)
    args = ap.parse_args(argv)
    if args.out is None:
        real = args.device == "cuda" and not args.quick
        args.out = ROOT / ("benchmarks/results/gpu.json" if real else "build/gpu-dry.json")
    t0 = time.time()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    # before transformers is imported: the hub client reads these once
    stand_env = {"HF_HUB_CACHE": str(work / "hub"), "HF_HUB_OFFLINE": "1", "COURSE_SST2_PATH": str(work / "sst2"),
                 "COURSE_GSM8K_PATH": str(work / "gsm8k")}
    os.environ.update(stand_env)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --device cpu for the dry run", file=sys.stderr)
        return 2
    from course_lib.notebooks import default_notebooks

    results: list = []
    env = environment(args.device)
    _check("standins", results, standins, work, args.device, args.quick)
    keys = results[-1].get("models", [])
    _check("gpu_runtime_load", results, gpu_runtime_load, args.device, keys)
    _check("nf4_vs_bnb", results, nf4_vs_bnb, args.device)
    _check("lora_vs_peft", results, lora_vs_peft, args.device)
    _check("paged_adamw", results, paged_adamw, args.device)
    _check("memory", results, memory_vs_estimate, args.device, args.quick)
    _check("heavy_cells", results, heavy_cells, args.device)
    paths = args.notebooks if args.notebooks is not None else (
        list(QUICK_NOTEBOOKS) if args.quick else [str(p.relative_to(ROOT)) for p in default_notebooks(ROOT)])
    embedded_env = {"COURSE_RUNTIME": "embedded"}
    if args.device == "cpu":
        embedded_env["CUDA_VISIBLE_DEVICES"] = ""
    _check("notebooks_embedded", results, notebooks, paths, embedded_env, f"embedded-on-{args.device}",
           args.cell_timeout, args.jobs)
    if args.device == "cuda":
        _check("notebooks_gpu_standins", results, notebooks, paths, {**stand_env, "COURSE_RUNTIME": "gpu"},
               "gpu-standins", args.cell_timeout, args.jobs)
    else:
        results.append({"check": "notebooks_gpu_standins", "status": "SKIP", "seconds": 0.0,
                        "why": "the gpu runtime needs CUDA"})
    report = {"benchmark": "gpu", "dry_run": args.quick or args.device != "cuda", **env,
              "wall_seconds": round(time.time() - t0, 1), "checks": results,
              "summary": {s: sum(r["status"] == s for r in results) for s in ("PASS", "FAIL", "SKIP")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"wrote {args.out}: {report['summary']} in {report['wall_seconds']} s")
    return 0 if report["summary"]["FAIL"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

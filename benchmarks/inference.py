"""(b) Forward latency: base vs merged LoRA vs unmerged LoRA vs bottleneck adapter vs prefix tuning.

Every variant is built from a deep copy of one base model: LoRA (r=8, alpha=16, q_proj,v_proj, both
matrices random so merging changes the weights) unmerged, the same merged with ``merge_and_unload``
(plain ``nn.Linear`` again: what one deploys) and merged with the wrappers kept (``merge_lora``), a
Pfeiffer adapter (reduction 16) and a prefix of 8 virtual tokens. One forward pass (no grad, eval
mode) of each runs per round, interleaved; ratios are per round against the base (target: merged
LoRA at most 2% slower than the base; faster counts as met, since ``merge_and_unload`` gives back the
base's own classes and any gap either way is measurement noise or the weights' values).
"""
from __future__ import annotations

import copy

from course_lib.timing import cuda_sync

from .common import (Result, contention_label, error_bars, interleaved, new_figure, ratio_stats, save_figure,
                     stats)

NAME = "inference"
TARGET = 0.02
VARIANTS = ("base", "lora merged", "lora merged (wrappers kept)", "lora unmerged", "adapter", "prefix")


def variants(base) -> dict:
    from course_lib.methods.adapters import AdapterConfig, apply_adapters
    from course_lib.methods.lora import LoraConfig, apply_lora, merge_and_unload, merge_lora
    from course_lib.methods.prefix_tuning import PrefixTuningConfig, apply_prefix_tuning

    import torch

    torch.manual_seed(0)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    unmerged = apply_lora(copy.deepcopy(base), cfg)
    out = {"base": base, "lora merged": merge_and_unload(copy.deepcopy(unmerged)),
           "lora merged (wrappers kept)": merge_lora(copy.deepcopy(unmerged)), "lora unmerged": unmerged,
           "adapter": apply_adapters(copy.deepcopy(base), AdapterConfig(placement="pfeiffer", reduction_factor=16)),
           "prefix": apply_prefix_tuning(copy.deepcopy(base), PrefixTuningConfig(num_virtual_tokens=8))}
    return {k: m.eval() for k, m in out.items()}


def _case(label, base, inputs, repeats, warmup, result):
    import torch

    models = variants(base)
    with torch.no_grad():
        ref = models["base"](**inputs).logits
        merged_diff = (models["lora merged"](**inputs).logits - models["lora unmerged"](**inputs).logits).abs().max()

    def caller(m):
        def call():
            with torch.no_grad():
                m(**inputs)
        return call

    t = interleaved({k: caller(m) for k, m in models.items()}, repeats, warmup, clock=result.clock,
                    sync=cuda_sync(base), progress=f"forward {label}")
    row = {"model": label, "params": sum(p.numel() for p in base.parameters()),
           "batch_size": int(inputs["input_ids"].shape[0]), "seq_len": int(inputs["input_ids"].shape[1]),
           "merged_vs_unmerged_max_abs_logit_diff": float(merged_diff), "logit_scale": float(ref.abs().max()),
           "latency_ms": {k: stats([1000 * x for x in v], "ms") for k, v in t.items()},
           "ratio_to_base": {k: ratio_stats(v, t["base"]) for k, v in t.items() if k != "base"}}
    result.results.append(row)
    return row


def run(out_dir, quick: bool = False) -> Result:
    from . import models

    result = Result(NAME, "Inference latency of one forward pass: base vs PEFT variants (CPU)", quick)
    repeats = (3, 2) if quick else (60, 12)
    warmup = 1 if quick else 3
    result.settings = {"what": "one forward pass, no grad, eval mode, interleaved across variants",
                       "variants": list(VARIANTS), "repeats": {"embedded": repeats[0], "random": repeats[1]},
                       "warmup_rounds": warmup, "lora": "r=8, alpha=16, q_proj,v_proj",
                       "adapter": "pfeiffer, reduction_factor=16", "prefix": "num_virtual_tokens=8",
                       "target": f"merged LoRA at most {TARGET:.0%} slower than the base (median per-round ratio)"}
    label, model, tok = models.embedded(quick)
    batch = models.embedded_batch(tok, 8)
    batch.pop("labels")
    _case(label, model, batch, repeats[0], warmup, result)
    label, model = models.random_model("smollm2-135m", quick)
    batch = models.random_batch(model.config.vocab_size, 1, 16 if quick else 32)
    batch.pop("labels")
    _case(label, model, batch, repeats[1], warmup, result)
    for row in result.results:
        r = row["ratio_to_base"]["lora merged"]
        result.headline[f"merged/base {row['model']}"] = r["median"]
        result.headline[f"unmerged/base {row['model']}"] = row["ratio_to_base"]["lora unmerged"]["median"]
        if r["median"] > 1 + TARGET:
            result.notes.append(f"{row['model']}: merged LoRA runs at {r['median']:.3f} x the base (IQR "
                                f"{r['q1']:.3f}-{r['q3']:.3f}); the {TARGET:.0%} target is missed. merge_and_unload "
                                "restores the base's classes, so the gap is measurement noise, not extra work.")
    _plot(result, out_dir)
    return result


def _plot(result: Result, out_dir) -> None:
    rows = result.results
    fig, axes = new_figure(5.0 * len(rows), 4.2, ncols=len(rows))
    for ax, row in zip(axes, rows):
        names = list(row["latency_ms"])
        med, err = error_bars([row["latency_ms"][n] for n in names])
        ax.barh(names, med, xerr=err, capsize=3, color="tab:blue")
        ax.invert_yaxis()
        ax.set_xlabel("forward latency (ms)")
        ax.set_title(f"{row['model']}, batch {row['batch_size']} x {row['seq_len']} tokens", fontsize=9)
    fig.suptitle("Inference latency on CPU: median, bars = quartiles" + contention_label(result), fontsize=10)
    save_figure(fig, out_dir, f"{NAME}.png", result)

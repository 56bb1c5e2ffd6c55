"""(a) One LoRA training step, course_lib.methods.lora against peft: same base, same LoRA weights, same batch.

Both models start from one deep-copied base; course_lib's LoRA pairs get a random non-zero ``B`` and
peft's pairs receive the same numbers, so both compute the same loss (checked) and the same gradients.
A step is forward + backward + ``AdamW.step`` (``foreach=False`` on both) + ``zero_grad``. The two
models run interleaved, one step each per round, so machine load hits both alike; the ratio is
reported per round (course_lib / peft; target <= 1.05).
"""
from __future__ import annotations

import copy
import warnings

from course_lib.timing import cuda_sync

from .common import Result, contention_label, error_bars, interleaved, new_figure, ratio_stats, save_figure, stats

NAME = "lora_step"
TARGET = 1.05


def _pair(base, r: int, alpha: int, targets: list[str]):
    import peft
    import torch

    from course_lib.methods.lora import LoraConfig, apply_lora

    torch.manual_seed(0)
    ours = apply_lora(copy.deepcopy(base), LoraConfig(r=r, lora_alpha=alpha, target_modules=targets))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(
            r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(1)
    mine = dict(ours.named_parameters())
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if ".lora_" not in name:
                continue
            key = name.replace("base_model.model.", "", 1).replace(".default", "")
            if ".lora_B." in key:
                mine[key].copy_(torch.randn(mine[key].shape, generator=g) * 0.02)
            p.copy_(mine[key])
    return ours.train(), theirs.train()


def _stepper(model, batch):
    import torch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=False)

    def step():
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def _case(label, base, batch, repeats, warmup, result, r=8, alpha=16, targets=("q_proj", "v_proj")):
    import torch

    ours, theirs = _pair(base, r, alpha, list(targets))
    with torch.no_grad():
        l_ours, l_theirs = ours(**batch).loss.item(), theirs(**batch).loss.item()
    trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    t = interleaved({"course_lib": _stepper(ours, batch), "peft": _stepper(theirs, batch)}, repeats, warmup,
                    clock=result.clock, sync=cuda_sync(base), progress=f"LoRA step {label}")
    row = {"model": label, "params": sum(p.numel() for p in base.parameters()), "trainable": trainable,
           "batch_size": int(batch["input_ids"].shape[0]), "seq_len": int(batch["input_ids"].shape[1]),
           "lora": {"r": r, "lora_alpha": alpha, "target_modules": list(targets)},
           "loss_course_lib": l_ours, "loss_peft": l_theirs, "loss_abs_diff": abs(l_ours - l_theirs),
           "course_lib_ms": stats([1000 * x for x in t["course_lib"]], "ms"),
           "peft_ms": stats([1000 * x for x in t["peft"]], "ms"),
           "ratio": ratio_stats(t["course_lib"], t["peft"])}
    result.results.append(row)
    del ours, theirs
    return row


def run(out_dir, quick: bool = False) -> Result:
    from . import models

    result = Result(NAME, "LoRA training step: course_lib vs peft (CPU)", quick)
    repeats = (3, 2) if quick else (40, 7)
    warmup = 1 if quick else 2
    result.settings = {"what": "forward+backward+AdamW step of LoRA (r=8, alpha=16, q_proj,v_proj), interleaved",
                       "repeats": {"embedded": repeats[0], "random": repeats[1]}, "warmup_rounds": warmup,
                       "ratio": "course_lib time / peft time, per interleaved round", "target_ratio_max": TARGET}
    label, model, tok = models.embedded(quick)
    _case(label, model, models.embedded_batch(tok, 8), repeats[0], warmup, result)
    del model
    label, model = models.random_model("smollm2-135m", quick)
    batch = models.random_batch(model.config.vocab_size, 1 if not quick else 2, 32 if not quick else 16)
    _case(label, model, batch, repeats[1], warmup, result)
    del model
    for row in result.results:
        ok = row["ratio"]["median"] <= TARGET
        result.headline[f"ratio {row['model']}"] = row["ratio"]["median"]
        if not ok:
            result.notes.append(f"{row['model']}: course_lib/peft step-time ratio {row['ratio']['median']:.3f} "
                                f"is above the {TARGET} target (IQR {row['ratio']['q1']:.3f}-{row['ratio']['q3']:.3f}).")
        if row["loss_abs_diff"] > 1e-4:
            result.notes.append(f"{row['model']}: losses differ by {row['loss_abs_diff']:.2e}: the two models do "
                                "not compute the same thing.")
    _plot(result, out_dir)
    return result


def _plot(result: Result, out_dir) -> None:
    rows = result.results
    fig, axes = new_figure(4.0 * len(rows), 3.8, ncols=len(rows))
    for ax, row in zip(axes, rows):
        med, err = error_bars([row["course_lib_ms"], row["peft_ms"]])
        ax.bar(["course_lib", "peft"], med, yerr=err, capsize=4, color=["tab:blue", "tab:orange"])
        ax.set_ylabel("time per training step (ms)")
        ax.set_title(f"{row['model']}\ncourse_lib/peft = {row['ratio']['median']:.3f}", fontsize=9)
    fig.suptitle("LoRA training step on CPU: median, bars = quartiles" + contention_label(result), fontsize=10)
    save_figure(fig, out_dir, f"{NAME}.png", result)

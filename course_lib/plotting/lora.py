"""Plots for lecture 04 (LoRA). Each function draws on ``ax`` (or a new figure) and returns the axes."""
from __future__ import annotations

from .axes import axes, accuracy_bars


def _ax(ax, figsize=(5, 3.5)):
    return axes(ax, figsize)


def plot_parameter_counts(d: int, k: int, counts: dict, ax=None):
    """Trainable numbers of one LoRA pair (``counts``: rank -> ``r (d + k)``, from
    :func:`course_lib.methods.lora.lora_param_count`) against the full ``d k`` matrix, log scale."""
    ax = _ax(ax)
    ranks = sorted(counts)
    ax.plot(ranks, [counts[r] for r in ranks], "o-", label="LoRA: r (d + k)")
    ax.axhline(d * k, color="k", ls="--", label=f"full matrix: d k = {d * k:,}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rank r")
    ax.set_ylabel("trainable parameters (count)")
    ax.set_title(f"one {d} x {k} matrix")
    ax.legend(fontsize=8)
    return ax


def plot_training_curves(losses: dict, ax=None, smooth: int = 10, title: str | None = None):
    """Training loss per optimiser step for each run (moving average over ``smooth`` steps)."""
    import numpy as np

    ax = _ax(ax)
    for name, values in losses.items():
        v = np.asarray(values, dtype=float)
        if smooth > 1 and len(v) >= smooth:
            v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
        ax.plot(np.arange(len(v)) + 1, v, label=name)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (nats / target token)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def plot_method_comparison(rows: list[dict], ax=None):
    """Bars of accuracy with the trainable-parameter count written on each; ``rows``: name, accuracy, trainable."""
    ax = _ax(ax, (6, 3.5))
    return accuracy_bars(ax, rows, "name", lambda r: None if r.get("trainable") is None else f"{r['trainable']:,} params",
                         color=["0.6"] + ["C%d" % i for i in range(len(rows) - 1)], ylabel="validation accuracy (%)")


def plot_latency(times_ms: dict, ax=None):
    """Median forward time per configuration, in milliseconds."""
    ax = _ax(ax, (5, 3))
    names = list(times_ms)
    ax.barh(names, [times_ms[n] for n in names], color=["C0", "C1", "C2", "C3"][:len(names)])
    for i, n in enumerate(names):
        ax.text(times_ms[n], i, f" {times_ms[n]:.2f} ms", va="center", fontsize=8)
    ax.set_xlabel("forward pass time (ms, median)")
    ax.set_xlim(0, 1.3 * max(times_ms.values()))
    return ax


def plot_sweep(results: list[dict], baseline: float | None = None, full: float | None = None, ax=None,
               current: tuple | None = None):
    """Accuracy against rank for each target group; ``results``: dicts with targets, r, accuracy (0..1).

    ``baseline``/``full``: the untrained model and full fine-tuning, drawn as horizontal lines.
    ``current``: ``(targets, r)`` to circle (the widgets use it).
    """
    ax = _ax(ax)
    groups = []
    for row in results:
        if row["targets"] not in groups:
            groups.append(row["targets"])
    for i, g in enumerate(groups):
        pts = sorted((row["r"], 100 * row["accuracy"]) for row in results if row["targets"] == g)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=f"LoRA on {g}")
    if full is not None:
        ax.axhline(100 * full, color="k", ls="--", label="full fine-tuning")
    if baseline is not None:
        ax.axhline(100 * baseline, color="0.5", ls=":", label="untrained")
    if current is not None:
        hit = [row for row in results if row["targets"] == current[0] and row["r"] == current[1]]
        if hit:
            ax.plot([current[1]], [100 * hit[0]["accuracy"]], "o", ms=14, mfc="none", mec="red", mew=2)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rank r")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=7)
    return ax


def plot_singular_values(spectra: dict, ax=None, top: int | None = None):
    """Normalised singular values ``s_i / s_1`` of weight updates, one line per matrix, log scale."""
    ax = _ax(ax)
    for name, s in spectra.items():
        s = s[:top] if top else s
        ax.plot(range(1, len(s) + 1), (s / s[0]).tolist(), ".-", label=name, ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("index i of the singular value")
    ax.set_ylabel("s_i / s_1 (log scale)")
    ax.legend(fontsize=7)
    return ax


def plot_rank_error(curves: dict, ax=None, current: int | None = None):
    """Relative Frobenius error of the best rank-r approximation of each update against r
    (``curves``: name -> errors for r = 0, 1, ..., from :func:`course_lib.methods.lora.rank_error_curve`)."""
    ax = _ax(ax)
    for name, errors in curves.items():
        ax.plot(range(len(errors)), errors, label=name)
    if current is not None:
        ax.axvline(current, color="red", lw=1)
    ax.set_xlabel("rank r of the approximation")
    ax.set_ylabel("relative error ||ΔW - ΔW_r|| / ||ΔW||")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    return ax


def plot_alpha_effect(scales, accuracies, ax=None, trained_scale: float | None = None, current: float | None = None):
    """Accuracy of one trained adapter when its update is multiplied by a different scale at inference."""
    ax = _ax(ax)
    ax.plot(list(scales), [100 * a for a in accuracies], "o-")
    if trained_scale is not None:
        ax.axvline(trained_scale, color="k", ls="--", lw=1, label="scale it was trained with")
    if current is not None:
        ax.axvline(current, color="red", lw=1.5, label="alpha / r (sliders)")
    ax.set_xlabel("scale s = alpha / r applied to BA")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=7)
    return ax


def plot_rank_allocation(ranks: dict, initial: int, ax=None):
    """AdaLoRA: the rank each adapted matrix kept after budget allocation, against the initial rank."""
    ax = _ax(ax, (6, 3))
    names = list(ranks)
    ax.bar(range(len(names)), [ranks[n] for n in names])
    ax.axhline(initial, color="k", ls="--", label=f"initial rank {initial}")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("rank kept (count)")
    ax.legend(fontsize=8)
    return ax

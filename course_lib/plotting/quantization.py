"""Plots for lecture 05 (QLoRA): 4-bit levels, weight histograms, quantisation error, memory, paging.

Each function draws on ``ax`` (or a new figure) and returns the axes (or the array of axes).
"""
from __future__ import annotations

from .axes import axes, finish

COLORS = {"nf4": "tab:blue", "fp4": "tab:orange", "int4": "tab:green"}


def _ax(ax, figsize=(5, 3.5)):
    return axes(ax, figsize)


def plot_levels(levels: dict, ax=None):
    """The 16 values of each 4-bit type as ticks on [-1, 1], one row per type."""
    ax = _ax(ax, (6, 0.6 + 0.5 * len(levels)))
    for row, (name, values) in enumerate(levels.items()):
        v = sorted(set(float(x) for x in values))
        ax.plot(v, [row] * len(v), "|", ms=18, mew=2, color=COLORS.get(name.split()[0].lower(), None))
        ax.text(-1.12, row, name, ha="right", va="center", fontsize=9)
    ax.set_yticks([])
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-0.7, len(levels) - 0.3)
    ax.set_xlabel("level value (units of the block's absmax)")
    ax.set_title("the 16 levels of each 4-bit data type")
    return ax


def plot_level_comparison(mine, reference, ax=None):
    """Our NF4 levels against bitsandbytes' table: value per code, and the difference."""
    import numpy as np

    ax = _ax(ax)
    codes = np.arange(len(mine))
    ax.plot(codes, np.asarray(reference, dtype=float), "s", ms=9, mfc="none", label="bitsandbytes table")
    ax.plot(codes, np.asarray(mine, dtype=float), "x", ms=7, label="from normal quantiles")
    ax.set_xlabel("4-bit code")
    ax.set_ylabel("level value (x absmax)")
    diff = float(np.abs(np.asarray(mine, dtype=float) - np.asarray(reference, dtype=float)).max())
    ax.set_title(f"NF4 levels (max difference {diff:.1e})")
    ax.legend(fontsize=8)
    return ax


def plot_normalised_histogram(normalised, levels: dict, bins: int = 120, axes=None, title: str = ""):
    """Histogram of block-normalised weights ``w / absmax(block)`` with each type's levels drawn on it.

    One panel per type in ``levels``; the levels are vertical lines, so you can see where a 4-bit
    type spends its 16 values relative to where the weights are.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.asarray(normalised, dtype=float).ravel()
    if axes is None:
        _, axes = plt.subplots(1, len(levels), figsize=(4 * len(levels), 3), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (name, lv) in zip(axes, levels.items()):
        ax.hist(values, bins=bins, range=(-1, 1), density=True, color="0.75")
        for v in sorted(set(float(x) for x in lv)):
            ax.axvline(v, color=COLORS.get(name, "k"), lw=1)
        ax.set_title(f"{name}{': ' + title if title else ''}", fontsize=10)
        ax.set_xlabel("w / absmax of its block")
    axes[0].set_ylabel("density")
    return axes


def plot_quantization_errors(errors: dict, metric: str = "mae", ax=None):
    """Grouped bars: ``errors[dataset][quant_type][metric]`` (e.g. from ``nf4.quantization_error``)."""
    import numpy as np

    ax = _ax(ax, (6, 3.5))
    datasets = list(errors)
    types = list(next(iter(errors.values())))
    width = 0.8 / len(types)
    x = np.arange(len(datasets))
    for i, qt in enumerate(types):
        rel = [errors[d][qt][metric] / errors[d][types[0]][metric] for d in datasets]
        bars = ax.bar(x + i * width, rel, width, label=qt, color=COLORS.get(qt))
        ax.bar_label(bars, labels=[f"{errors[d][qt][metric]:.2e}" for d in datasets], fontsize=7, rotation=90,
                     padding=2)
    ax.set_xticks(x + width * (len(types) - 1) / 2, datasets)
    ax.set_ylabel(f"{metric.upper()} relative to {types[0]} (ratio)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    ax.set_title(f"4-bit quantisation error (blocksize 64); labels: absolute {metric.upper()}")
    ax.legend(fontsize=8)
    return ax


def plot_memory(estimates: dict, ax=None, unit: float = 1e9, unit_name: str = "GB", budget: float | None = None):
    """Stacked bars of weights / gradients / optimizer states: ``estimates[label] = MemoryEstimate``."""
    import numpy as np

    ax = _ax(ax, (7, 3.8))
    labels = list(estimates)
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    for part, color in (("weights", "tab:blue"), ("gradients", "tab:orange"), ("optimizer", "tab:green")):
        vals = np.array([getattr(estimates[k], part) / unit for k in labels])
        ax.bar(x, vals, bottom=bottom, label=part if part != "optimizer" else "optimizer states", color=color)
        bottom += vals
    for xi, total in zip(x, bottom):
        ax.text(xi, total, f"{total:.3g}", ha="center", va="bottom", fontsize=8)
    if budget is not None:
        ax.axhline(budget, color="k", ls="--", lw=1, label=f"one GPU: {budget:g} {unit_name}")
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"memory ({unit_name})")
    ax.set_yscale("log")
    ax.set_title("fine-tuning memory without activations")
    ax.legend(fontsize=8)
    return ax


def plot_estimate_vs_measured(rows: dict, ax=None):
    """``rows[label] = (estimated bytes, measured bytes)``: paired bars in kB."""
    import numpy as np

    ax = _ax(ax, (6, 3.5))
    labels = list(rows)
    x = np.arange(len(labels))
    est = np.array([rows[k][0] for k in labels]) / 1e3
    meas = np.array([rows[k][1] for k in labels]) / 1e3
    ax.bar(x - 0.2, est, 0.4, label="estimate (weights + grads + optimizer)")
    ax.bar(x + 0.2, meas, 0.4, label="measured tensors after one step")
    ax.set_xticks(x, labels)
    ax.set_ylabel("memory (kB)")
    ax.set_title("accounting checked against real tensors")
    ax.legend(fontsize=8)
    return ax


def plot_paging(trace, ax=None, unit: float = 2 ** 20, unit_name: str = "MiB"):
    """Device memory per step without and with a paged optimiser (a :class:`course_lib.paging.PagingTrace`):
    the capacity as a dashed line, out-of-memory steps marked with a red x, steps that paged shaded."""
    ax = _ax(ax, (7, 3.5))
    steps = range(len(trace.without))
    ax.plot(steps, [b / unit for b in trace.without], "o-", ms=3, color="tab:orange", label="without paging")
    ax.plot(steps, [b / unit for b in trace.paged], "s-", ms=3, color="tab:blue", label="paged optimizer")
    ax.axhline(trace.capacity / unit, color="k", ls="--", lw=1, label="device capacity")
    if trace.oom_without:
        ax.plot(trace.oom_without, [trace.without[t] / unit for t in trace.oom_without], "x", color="red", ms=10,
                mew=2, label="out of memory (no paging)")
    for t, pages in enumerate(trace.evicted_pages):
        if pages:
            ax.axvspan(t - 0.4, t + 0.4, color="tab:blue", alpha=0.12, lw=0)
            ax.annotate(f"{pages} pages\nout and back", (t, trace.paged[t] / unit), textcoords="offset points",
                        xytext=(0, -26), ha="center", fontsize=7, color="tab:blue")
    ax.margins(y=0.2)
    return finish(ax, xlabel="training step", ylabel=f"device memory ({unit_name})",
                  title="simulated device: states paged to CPU RAM during spikes")

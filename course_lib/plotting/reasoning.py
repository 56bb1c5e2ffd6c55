"""Plots for lecture 02 (chain-of-thought).

Each function draws on ``ax`` (or a new figure) and returns it. Accuracies are fractions (0..1), plotted as
percentages. Addition results use the layout of :func:`course_lib.plotting.embedded.plot_addition`, which
:func:`addition_evaluation` builds from ``{digits: {"direct": acc, "cot": acc}}`` rows.
"""
from __future__ import annotations

import textwrap

from .axes import axes, finish


def _ax(ax, figsize=(6, 3.5)):
    return axes(ax, figsize)


def addition_evaluation(rows: dict, parameters: int | None = None) -> dict:
    """``{digits: {"direct": acc, "cot": acc}}`` in the layout ``plot_addition`` reads (CoT = scratchpad)."""
    return {"parameters": parameters, "addition": {"digits": {
        str(d): {"direct": r["direct"], "scratchpad": r["cot"]} for d, r in rows.items()}}}


def plot_conditions(table: dict, conditions, digits, ax=None, title: str = "zero-shot and few-shot, with and without reasoning"):
    """Grouped bars: one group per prompting condition, one bar per digit count.

    ``table[(condition, digits)]`` is an accuracy.
    """
    ax = _ax(ax, figsize=(6.5, 3.5))
    conditions, digits = list(conditions), list(digits)
    width = 0.8 / len(digits)
    for i, d in enumerate(digits):
        ax.bar([j + i * width for j in range(len(conditions))], [100 * table[c, d] for c in conditions],
               width, label=f"{d}-digit sums")
    ax.set_xticks([j + width * (len(digits) - 1) / 2 for j in range(len(conditions))])
    ax.set_xticklabels([textwrap.fill(c, 16) for c in conditions], fontsize=8)
    ax.set_ylabel("exact-match accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    return ax


def plot_cot_gain_by_size(evaluations: dict, digits, ax=None):
    """CoT accuracy minus direct accuracy (points) against parameters (log scale), one line per digit count.

    ``evaluations``: ``{name: addition_evaluation(rows, parameters)}``.
    """
    ax = _ax(ax)
    order = sorted(evaluations, key=lambda k: evaluations[k]["parameters"])
    params = [evaluations[k]["parameters"] for k in order]
    for d in digits:
        rows = [evaluations[k]["addition"]["digits"][str(d)] for k in order]
        ax.plot(params, [100 * (r["scratchpad"] - r["direct"]) for r in rows], marker="o", label=f"{d}-digit sums")
    ax.axhline(0, color="grey", linewidth=0.8)
    return finish(ax, xlog=True, xlabel="parameters (log scale)", ylabel="CoT accuracy - direct accuracy (points)",
                  title="chain-of-thought benefit against model size", grid=True)


def plot_self_consistency(curve: dict, greedy: float, ax=None, title: str = "self-consistency"):
    """Accuracy of the majority vote over the first m sampled chains against m; the greedy chain dashed."""
    ax = _ax(ax)
    ax.plot(list(curve), [100 * a for a in curve.values()], marker="o", label="majority vote over m sampled chains")
    ax.axhline(100 * greedy, color="grey", linestyle="--", label="one greedy chain")
    ax.set_xlabel("sampled chains m")
    ax.set_ylabel("exact-match accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_supervision(before: dict, after: dict, losses: dict, labels: dict | None = None, axes=None,
                     title: str = "fine-tuning on worked examples"):
    """Two panels for fine-tuning with different targets (e.g. the working vs the answer alone).

    Left: training loss per step for each run. Right: accuracy before and after, per run.
    ``before``/``after``/``losses`` are keyed by run (``"cot"``, ``"direct"``); ``labels`` names them.
    """
    import matplotlib.pyplot as plt

    from .lora import plot_training_curves

    labels = labels or {k: k for k in losses}
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    plot_training_curves({labels[k]: v for k, v in losses.items()}, ax=axes[0], smooth=5, title=title)
    runs = list(after)
    xs = range(len(runs))
    for shift, values, label, color in ((-0.2, before, "before fine-tuning", "lightgrey"),
                                        (0.2, after, "after fine-tuning", None)):
        bars = axes[1].bar([x + shift for x in xs], [100 * values[k] for k in runs], 0.4, label=label, color=color)
        axes[1].bar_label(bars, fmt="%.0f%%", fontsize=8)
    axes[1].set_xticks(list(xs))
    axes[1].set_xticklabels([labels[k] for k in runs], fontsize=8)
    axes[1].set_ylabel("exact-match accuracy (%)")
    axes[1].set_ylim(0, 105)
    axes[1].legend(fontsize=8)
    axes[1].grid(axis="y", alpha=0.3)
    return axes

"""Plots for lecture 01 (in-context learning) and lecture 06 (prefix and prompt tuning).

Each function draws on ``ax`` (or a new figure) and returns it. Accuracies are given as fractions (0..1)
and plotted as percentages.
"""
from __future__ import annotations

from .axes import axes, finish


def _ax(ax, figsize=(5, 3.5)):
    return axes(ax, figsize)


def plot_loss_curves(losses: dict, ax=None, smooth: int = 10, title: str | None = None):
    """Training loss per optimiser step for each run (moving average over ``smooth`` steps)."""
    from .lora import plot_training_curves

    return plot_training_curves(losses, ax=ax, smooth=smooth, title=title)


def plot_lr_sensitivity(results: dict, baseline: float | None = None, ax=None):
    """Validation accuracy against learning rate, one line per setting.

    ``results``: ``{label: {lr: accuracy (0..1)}}``; ``baseline``: the untrained model (dashed line).
    """
    ax = _ax(ax)
    for label, by_lr in results.items():
        lrs = sorted(by_lr)
        ax.plot(lrs, [100 * by_lr[lr] for lr in lrs], "o-", label=label)
    if baseline is not None:
        ax.axhline(100 * baseline, color="k", ls="--", lw=1, label="untrained")
    return finish(ax, xlog=True, xlabel="learning rate (log scale)", ylabel="validation accuracy (%)", ylim=(0, 105))


def plot_scale(sizes: dict, results: dict, baseline: dict | None = None, ax=None):
    """Accuracy against the frozen model's size for each method (the Lester et al. plot, in small).

    ``sizes``: ``{model name: parameter count}``; ``results``: ``{method: {model name: accuracy}}``;
    ``baseline``: ``{model name: accuracy}`` of the untrained model.
    """
    ax = _ax(ax, (5.5, 3.5))
    names = sorted(sizes, key=sizes.get)
    x = [sizes[n] for n in names]
    for method, by_model in results.items():
        ax.plot(x, [100 * by_model[n] for n in names], "o-", label=method)
    if baseline:
        ax.plot(x, [100 * baseline[n] for n in names], "k--", lw=1, label="untrained")
    for n, xi in zip(names, x):
        ax.annotate(n, (xi, 2), ha="center", fontsize=7)
    return finish(ax, xlog=True, xlabel="frozen model size (parameters, log scale)", ylabel="validation accuracy (%)",
                  ylim=(0, 105))


def plot_sequence_cost(lengths, times_ms: dict, ax=None, real_tokens: int | None = None):
    """Forward time against the number of virtual tokens, one line per method (``{method: [ms, ...]}``)."""
    ax = _ax(ax)
    for method, values in times_ms.items():
        ax.plot(list(lengths), values, "o-", label=method)
    ax.set_xlabel("virtual tokens p")
    ax.set_ylabel("forward time per batch (ms, median)")
    if real_tokens:
        ax.set_title(f"batch of {real_tokens}-token inputs")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return ax


def plot_prefix_attention(weights, labels=None, ax=None, num_virtual_tokens: int = 0):
    """Attention of one head (queries x keys) with the prefix columns marked; ``weights``: (T, P + T)."""
    import numpy as np

    ax = _ax(ax, (5.5, 3.5))
    w = np.asarray(weights, dtype=float)
    im = ax.imshow(w, aspect="auto", cmap="viridis", vmin=0)
    if num_virtual_tokens:
        ax.axvline(num_virtual_tokens - 0.5, color="w", lw=1.5)
        ax.text(num_virtual_tokens / 2 - 0.5, -0.8, "prefix", ha="center", fontsize=8)
    if labels is not None:
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("key position (prefix, then real tokens)")
    ax.set_ylabel("query (real token)")
    ax.figure.colorbar(im, ax=ax, label="attention weight")
    return ax


def plot_parameter_costs(rows: dict, ax=None):
    """Horizontal bars of trainable parameters per method (log scale); ``rows``: ``{method: count}``."""
    ax = _ax(ax, (5.5, 0.45 * len(rows) + 1))
    names = list(rows)
    ax.barh(names, [rows[n] for n in names], color=[f"C{i}" for i in range(len(names))])
    for i, n in enumerate(names):
        ax.text(rows[n], i, f" {rows[n]:,}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (count, log scale)")
    ax.set_xlim(right=max(rows.values()) * 30)
    return ax


# ----------------------------------------------------------------------------- lecture 01: prompting
def plot_accuracy_bars(rows: dict, chance: float | None = None, ax=None, title: str | None = None,
                       ylabel: str = "validation accuracy (%)"):
    """One bar per condition (``{name: accuracy}``), value written on each bar; ``chance`` dotted."""
    ax = _ax(ax, (0.9 * len(rows) + 2.5, 3.5))
    names = list(rows)
    vals = [100 * rows[n] for n in names]
    ax.bar(range(len(names)), vals, color=[f"C{i}" for i in range(len(names))])
    for i, v in enumerate(vals):
        ax.text(i, v + 1.5, f"{v:.0f}", ha="center", fontsize=8)
    if chance is not None:
        ax.axhline(100 * chance, color="grey", ls=":", label="chance")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=15, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 105)
    if title:
        ax.set_title(title)
    return ax


def plot_sensitivity(groups: dict, ax=None, title: str | None = None, ylabel: str = "exact match (%)"):
    """The spread over prompt variants: for each group (``{group: {variant: accuracy}}``) one dot per
    variant and a bar from the worst to the best variant, labelled with the range in points."""
    ax = _ax(ax, (1.3 * len(groups) + 2.5, 3.5))
    for i, (group, variants) in enumerate(groups.items()):
        vals = [100 * v for v in variants.values()]
        ax.vlines(i, min(vals), max(vals), color="grey", lw=6, alpha=0.3)
        ax.scatter([i] * len(vals), vals, s=18, zorder=3, color=f"C{i}")
        ax.text(i + 0.08, max(vals) + 2, f"range {max(vals) - min(vals):.0f}", fontsize=7)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(list(groups), rotation=15, fontsize=8)
    ax.set_xlim(-0.5, len(groups) - 0.2)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 105)
    if title:
        ax.set_title(title)
    return ax


def plot_prompt_cost(ks, tokens, ms_per_query, ax=None):
    """Prompt length (tokens, left axis) and forward time per query (ms, right axis) against k."""
    ax = _ax(ax)
    ks = list(ks)
    ax.plot(ks, list(tokens), "o-", color="C0", label="tokens per query")
    ax.set_xlabel("demonstrations in the prompt, k")
    ax.set_ylabel("prompt length (tokens)", color="C0")
    ax.set_ylim(bottom=0)
    right = ax.twinx()
    right.plot(ks, list(ms_per_query), "s--", color="C1", label="time per query")
    right.set_ylabel("forward time per query (ms, median)", color="C1")
    right.set_ylim(bottom=0)
    ax.set_title("every query re-reads the demonstrations")
    return ax

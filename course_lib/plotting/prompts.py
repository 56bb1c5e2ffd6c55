"""Plots for lecture 06 (prefix and prompt tuning). Each function draws on ``ax`` (or a new figure) and returns it."""
from __future__ import annotations


def _ax(ax, figsize=(5, 3.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_loss_curves(losses: dict, ax=None, smooth: int = 10, title: str | None = None):
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
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    return ax


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
    ax.set_xscale("log")
    ax.set_xlabel("frozen model size (parameters, log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    return ax


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

"""Plots for lecture 07 (bottleneck adapters)."""
from __future__ import annotations

from .axes import axes


def _plt():
    import matplotlib.pyplot as plt
    return plt


def plot_parameters_vs_bottleneck(sizes, counts: dict[str, list[int]], base_parameters: int, ax=None):
    """Adapter parameters (as % of the base model) against the bottleneck size m, one line per placement."""
    ax = axes(ax, (6, 3.6))
    for label, values in counts.items():
        ax.plot(sizes, [100 * v / base_parameters for v in values], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bottleneck size m (log scale)")
    ax.set_ylabel("adapter parameters (% of base model)")
    ax.set_title("Adapter size grows linearly with m")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_method_comparison(results: dict[str, dict], baseline: float | None = None):
    """Three panels per method: test accuracy, trainable parameters (log), training time (s).

    ``results[name] = {"accuracy": float, "trainable": int, "seconds": float}``.
    """
    plt = _plt()
    names = list(results)
    fig, panels = plt.subplots(1, 3, figsize=(12, 3.4))
    colors = [f"C{i}" for i in range(len(names))]
    panels[0].bar(names, [100 * results[n]["accuracy"] for n in names], color=colors)
    if baseline is not None:
        panels[0].axhline(100 * baseline, color="gray", ls="--", label="before training")
        panels[0].legend(loc="lower right")
    panels[0].set_ylabel("test accuracy (%)")
    panels[0].set_ylim(0, 100)
    panels[1].bar(names, [results[n]["trainable"] for n in names], color=colors)
    panels[1].set_yscale("log")
    panels[1].set_ylabel("trainable parameters (log scale)")
    panels[2].bar(names, [results[n]["seconds"] for n in names], color=colors)
    panels[2].set_ylabel("training time (s)")
    for ax in panels:
        ax.tick_params(axis="x", rotation=20)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_inference_cost(timings: dict[str, list[float]], ax=None):
    """Median forward time per batch (ms) with the spread (min to max) of repeats, one bar per model variant.

    ``timings``: milliseconds per pass for each variant, as :func:`course_lib.timing.forward_latency_samples`
    returns them."""
    import statistics

    ax = axes(ax, (6, 3.4))
    names = list(timings)
    med = [statistics.median(timings[n]) for n in names]
    lo = [m - min(timings[n]) for m, n in zip(med, names)]
    hi = [max(timings[n]) - m for m, n in zip(med, names)]
    ax.bar(names, med, yerr=[lo, hi], capsize=4, color=[f"C{i}" for i in range(len(names))])
    ax.set_ylabel("forward pass per batch (ms, median)")
    ax.set_title("Inference cost: extra modules vs merged weights")
    ax.tick_params(axis="x", rotation=15)
    ax.grid(axis="y", alpha=0.3)
    return ax


def plot_accuracy_matrix(matrix, rows: list[str], cols: list[str], ax=None, title: str = ""):
    """Accuracy (%) of each model variant (rows) on each domain (columns), as an annotated heat map."""
    ax = axes(ax, (5, 0.6 * len(rows) + 1.6))
    values = [[100 * v for v in row] for row in matrix]
    im = ax.imshow(values, vmin=0, vmax=100, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="white" if v < 60 else "black")
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("active adapter")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, label="test accuracy (%)")
    return ax


def plot_fusion_weights(weights: dict[str, list[float]], adapter_names: list[str], ax=None):
    """Mean AdapterFusion weight given to each adapter, per input domain (grouped bars)."""
    import numpy as np

    ax = axes(ax, (6, 3.4))
    domains = list(weights)
    x = np.arange(len(domains))
    width = 0.8 / len(adapter_names)
    for k, name in enumerate(adapter_names):
        ax.bar(x + (k - (len(adapter_names) - 1) / 2) * width, [weights[d][k] for d in domains], width,
               label=f"adapter '{name}'")
    ax.set_xticks(x, [f"inputs: {d}" for d in domains])
    ax.set_ylabel("mean fusion weight (softmax, 0-1)")
    ax.set_ylim(0, 1)
    ax.axhline(1 / len(adapter_names), color="gray", ls="--", lw=1)
    ax.set_title("What AdapterFusion attends to")
    ax.legend()
    return ax

"""Plots for lecture 08 (the unified view and the capstone comparison)."""
from __future__ import annotations

from .axes import axes, finish


def _plt():
    import matplotlib.pyplot as plt
    return plt


def plot_accuracy_vs_parameters(rows: list[dict], baseline: float | None = None, ax=None,
                                title: str = "Every method on one task"):
    """Test accuracy (%) against trainable parameters (log scale), one labelled point per method.

    ``rows``: dicts with ``label``, ``trainable`` and ``accuracy`` (e.g. ``Comparison.rows``);
    ``baseline``: the untrained model's accuracy, drawn as a dashed line.
    """
    ax = axes(ax, (7.5, 4.5))
    for i, r in enumerate(rows):
        ax.scatter(r["trainable"], 100 * r["accuracy"], s=60, color=f"C{i % 10}", zorder=3)
        ax.annotate(r["label"], (r["trainable"], 100 * r["accuracy"]), textcoords="offset points",
                    xytext=(6, 4 if i % 2 else -10), fontsize=8)
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", ls="--", lw=1, label=f"untrained model ({baseline:.0%})")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("test accuracy (%)")
    top = max([100 * r["accuracy"] for r in rows] + [100 * (baseline or 0)])
    ax.set_ylim(min(40, 100 * (baseline or 50) - 5), min(101, top + 5))
    xs = [r["trainable"] for r in rows]
    ax.set_xlim(min(xs) / 3, max(xs) * 6)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    return ax


def plot_accuracy_over_steps(rows: list[dict], baseline: float | None = None, ax=None, ceiling: float | None = 0.97,
                             title: str = "Test accuracy during training"):
    """Test accuracy (%) against training step, one line per method, from each row's ``curve``
    (``[[step, accuracy], ...]``, as :meth:`course_lib.comparison.Capstone.measure` records it).

    ``baseline`` (the untrained model) starts every line at step 0 and is drawn dashed; ``ceiling`` is drawn
    dotted (None: not drawn): where lines meet it, that step cannot rank them.
    """
    ax = axes(ax, (9.5, 4.5))
    for i, r in enumerate(rows):
        steps = [s for s, _ in r["curve"]]
        accs = [100 * a for _, a in r["curve"]]
        if baseline is not None:
            steps, accs = [0, *steps], [100 * baseline, *accs]
        ax.plot(steps, accs, marker="o", ms=4, color=f"C{i % 10}", label=r["label"])
    if baseline is not None:
        ax.axhline(100 * baseline, color="gray", ls="--", lw=1)
    if ceiling is not None:
        ax.axhline(100 * ceiling, color="black", ls=":", lw=1)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))   # beside the lines, not over them
    return finish(ax, xlabel="training step", ylabel="test accuracy (%)", title=title, grid=True, legend=None)


def plot_cost_panels(rows: list[dict]):
    """Two panels per method: training time (s) and peak training-step memory (MB)."""
    plt = _plt()
    labels = [r["label"] for r in rows]
    fig, panels = plt.subplots(1, 2, figsize=(12, 3.6))
    colors = [f"C{i % 10}" for i in range(len(rows))]
    panels[0].barh(labels, [r["seconds"] for r in rows], color=colors)
    panels[0].set_xlabel("training time (s)")
    mem = [(r["peak_memory_bytes"] or 0) / 1e6 for r in rows]
    panels[1].barh(labels, mem, color=colors)
    panels[1].set_xlabel("peak memory of one training step (MB)")
    panels[1].set_yticklabels([])
    for ax in panels:
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_prefix_gate(gates, ax=None):
    """Histogram of prefix tuning's gate λ (the weight of Δh), per layer.

    ``gates``: one tensor per layer (any shape; values in (0, 1)), e.g. from
    :func:`course_lib.methods.unified.prefix_gates`.
    """
    ax = axes(ax, (6, 3.4))
    for i, g in enumerate(gates):
        ax.hist(g.detach().flatten().cpu().numpy(), bins=30, range=(0, 1), alpha=0.5, label=f"layer {i}")
    return finish(ax, xlabel="λ: weight of the prefix's Δh in the head output", ylabel="query positions × heads (count)",
                  title="Prefix tuning is a gated Δh", grid=True)

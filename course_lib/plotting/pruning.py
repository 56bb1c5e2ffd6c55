"""Plots of lecture 03: training curves, memory breakdowns, accuracy against sparsity, masks, tickets."""
from __future__ import annotations

from .axes import axes, accuracy_bars


def _ax(ax, figsize=(6, 3.5)):
    return axes(ax, figsize)


def plot_losses(curves: dict[str, list[float]], ax=None, smooth: int = 10):
    """Training loss (nats per target token) against step, one line per run (moving average)."""
    import numpy as np
    ax = _ax(ax)
    for name, losses in curves.items():
        y = np.asarray(losses, dtype=float)
        if smooth > 1 and len(y) > smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            x = np.arange(smooth, len(losses) + 1)
        else:
            x = np.arange(1, len(y) + 1)
        ax.plot(x, y, label=name)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss on target tokens (nats)")
    ax.set_title("training loss")
    ax.legend()
    return ax


def plot_memory_breakdown(estimates, ax=None, unit: float = 1e9, gpu_gb: float | None = 80):
    """Stacked bars (GB): weights, gradients, optimiser states (and activations) per estimate."""
    import numpy as np
    ax = _ax(ax, (8, 3.8))
    labels = [f"{e.model}\n{e.method}, {e.precision}" for e in estimates]
    parts = [("weights", "weights"), ("gradients", "gradients"), ("optimizer states", "optimizer"),
             ("activations", "activations")]
    bottom = np.zeros(len(estimates))
    for name, attr in parts:
        vals = np.array([getattr(e, attr) / unit for e in estimates])
        if vals.any():
            ax.bar(range(len(estimates)), vals, bottom=bottom, label=name)
            bottom += vals
    if gpu_gb:
        ax.axhline(gpu_gb * 1e9 / unit, color="k", ls="--", lw=1, label=f"one {gpu_gb:g} GB GPU")
    ax.set_yscale("log")
    ax.set_xticks(range(len(estimates)), labels, fontsize=7)
    ax.set_ylabel("memory (GB, log scale)")
    ax.set_title("memory to fine-tune (AdamW)")
    ax.legend(fontsize=7)
    return ax


def plot_estimated_vs_measured(pairs: dict[str, tuple], ax=None):
    """``pairs``: name -> (MemoryEstimate, MeasuredMemory). Grouped bars in MB per component."""
    import numpy as np
    ax = _ax(ax, (7, 3.5))
    comps = ["weights", "gradients", "optimizer"]
    width = 0.8 / (2 * len(pairs))
    for i, (name, (est, meas)) in enumerate(pairs.items()):
        e = [getattr(est, c) / 1e6 for c in comps] + [est.total / 1e6]
        m = [getattr(meas, c) / 1e6 for c in comps] + [meas.peak / 1e6]
        x = np.arange(4)
        ax.bar(x + (2 * i) * width, e, width, label=f"{name}: estimate")
        ax.bar(x + (2 * i + 1) * width, m, width, label=f"{name}: measured", hatch="//")
    ax.set_xticks(np.arange(4) + width * (len(pairs) - 0.5),
                  ["weights", "gradients", "optimizer states", "total (est.) / peak (meas.)"], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("MB (log scale)")
    ax.set_title("estimate vs measured tensor bytes of one training step")
    ax.legend(fontsize=7)
    return ax


def plot_method_comparison(rows: list[dict], ax=None):
    """``rows``: dicts with "method", "accuracy" and "trainable" (fraction). Bars of accuracy, labelled with the fraction."""
    ax = _ax(ax, (6.5, 3.5))
    return accuracy_bars(ax, rows, "method", lambda r: f"{100 * r['trainable']:.3g}% trained", color="tab:blue",
                         ylabel="test accuracy (%)", title="accuracy and share of parameters trained")


def plot_accuracy_vs_sparsity(curves: dict[str, tuple], dense: float | None = None, chance: float | None = None,
                              ax=None, xlabel: str = "sparsity (% of weights removed)"):
    """``curves``: name -> (sparsities, accuracies) in [0, 1]. Dashed lines at the dense and chance accuracy."""
    ax = _ax(ax, (6.5, 3.8))
    for name, (s, a) in curves.items():
        ax.plot([100 * x for x in s], [100 * y for y in a], marker="o", label=name)
    if dense is not None:
        ax.axhline(100 * dense, color="k", ls="--", lw=1, label="dense fine-tuned")
    if chance is not None:
        ax.axhline(100 * chance, color="grey", ls=":", lw=1, label="chance")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    return ax


def plot_mask(mask, ax=None, title: str = "binary mask b"):
    """A 2-D mask as an image: white = kept (b = 1), black = pruned (b = 0)."""
    ax = _ax(ax, (5, 3))
    m = mask.detach().float().cpu().numpy()
    ax.imshow(m, cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xlabel("input feature")
    ax.set_ylabel("output feature")
    ax.set_title(f"{title} ({100 * (1 - m.mean()):.0f}% zeros)")
    return ax


def plot_layer_sparsities(per_scope: dict[str, dict[str, float]], ax=None):
    """Per-tensor sparsity for several mask sets (e.g. global vs per-layer) as grouped bars."""
    import numpy as np
    ax = _ax(ax, (8, 3.5))
    names = list(next(iter(per_scope.values())))
    width = 0.8 / len(per_scope)
    for i, (scope, sp) in enumerate(per_scope.items()):
        ax.bar(np.arange(len(names)) + i * width, [100 * sp[n] for n in names], width, label=scope)
    short = [n.replace("model.layers.", "L").replace(".weight", "").replace("self_attn.", "").replace("mlp.", "")
             for n in names]
    ax.set_xticks(np.arange(len(names)) + width * (len(per_scope) - 1) / 2, short, rotation=60, fontsize=7)
    ax.set_ylabel("sparsity (%)")
    ax.set_title("where the zeros go")
    ax.legend(fontsize=8)
    return ax


def plot_lottery(results: dict[str, dict[str, float]], ax=None):
    """``results``: sparsity label -> {"dense", "ticket", "random mask"} accuracies, as grouped bars."""
    import numpy as np
    ax = _ax(ax, (6.5, 3.5))
    keys = ["dense", "ticket", "random mask"]
    labels = list(results)
    width = 0.8 / len(keys)
    for i, k in enumerate(keys):
        ax.bar(np.arange(len(labels)) + i * width, [100 * results[l][k] for l in labels], width, label=k)
    ax.set_xticks(np.arange(len(labels)) + width, labels)
    ax.set_xlabel("sparsity")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("winning ticket vs random mask of the same sparsity")
    ax.legend(fontsize=8)
    return ax


def plot_costs(rows: list[dict], key: str = "money", ax=None, unit: str = "USD"):
    """Bars of ``row[key]`` per ``row["method"]`` (e.g. money or energy of fine-tuning)."""
    ax = _ax(ax, (6, 3.2))
    ax.bar([r["method"] for r in rows], [r[key] for r in rows], color="tab:green")
    ax.set_ylabel(f"{key} ({unit})")
    ax.set_yscale("log")
    ax.set_title(f"estimated {key} per fine-tuning run")
    return ax

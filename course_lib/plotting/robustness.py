"""Plots of a seeded study (:mod:`course_lib.robustness`): mean and spread over seeds, every seed shown."""
from __future__ import annotations

from .axes import finish


def _seed_points(ax, x: float, values: list[float], color: str) -> None:
    """The mean as a bar, the lowest-to-highest range as an error bar, each seed as a dot."""
    mean = sum(values) / len(values)
    ax.bar(x, mean, width=0.38, color=color, alpha=0.55)
    ax.errorbar(x, mean, yerr=[[mean - min(values)], [max(values) - mean]], color="black", capsize=4, lw=1)
    ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)


def plot_seed_study(study, *, title: str | None = None):
    """Two panels. Left: accuracy (%) per arm on every split of the study, mean bar, range over seeds, one dot per
    seed, the pretrained model's accuracy dashed. Right: the general-ability probe (held-out pretraining loss,
    nats per character) per arm, the pretrained model's loss dashed; arms that keep the base intact are marked.
    A study run without the probe (``general_docs=0``) gets the left panel only."""
    import matplotlib.pyplot as plt

    arms = study.arms
    if not study.general_docs:
        fig, left = plt.subplots(figsize=(8, 3.8))
    else:
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.4
    for j, split in enumerate(study.splits):
        offset = (j - (len(study.splits) - 1) / 2) * width
        for i, arm in enumerate(arms):
            _seed_points(left, i + offset, [100 * v for v in study.values(arm, split)], f"C{j}")
        left.bar([], [], color=f"C{j}", alpha=0.55, label=split)
        left.axhline(100 * study.baseline[split], color=f"C{j}", ls="--", lw=1)
    left.set_xticks(range(len(arms)), arms, rotation=15, fontsize=8)
    finish(left, ylabel="accuracy (%)", ylim=(0, 105), grid=True,
           title=title or f"{len(study.seeds)} seeds, {study.steps} steps: mean, range, each seed (dashed: untrained)")
    if not study.general_docs:
        fig.tight_layout()
        return fig
    intact = {row["arm"]: row["base_intact"] for row in study.summary()}
    for i, arm in enumerate(arms):
        _seed_points(right, i, study.values(arm, "general_loss"), "C2" if intact[arm] else "C3")
    right.axhline(study.baseline["general_loss"], color="gray", ls="--", lw=1, label="pretrained model")
    right.bar([], [], color="C2", alpha=0.55, label="base intact (remove the module: pretrained again)")
    right.bar([], [], color="C3", alpha=0.55, label="base overwritten")
    right.set_xticks(range(len(arms)), arms, rotation=15, fontsize=8)
    finish(right, ylabel="held-out pretraining loss (nats/char)", title="General ability after tuning (lower is better)",
           grid=True, legend=7)
    fig.tight_layout()
    return fig


def plot_seed_sweep(study, split: str, *, reference: str | None = None, ax=None, title: str | None = None):
    """Accuracy (%) on ``split`` against trainable parameters (log scale), one point per arm: the mean over the
    seeds, a bar from the lowest to the highest seed, every seed as a dot, the arms joined in their order (a
    rank sweep). ``reference`` (e.g. full fine-tuning) is drawn as a band from its lowest to its highest seed
    with its mean as a line, instead of a point; the pretrained model's accuracy is dashed."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    rows = {row["arm"]: row for row in study.summary()}
    swept = [a for a in study.arms if a != reference]
    xs = [rows[a]["trainable"] for a in swept]
    means = [100 * rows[a][f"{split} mean"] for a in swept]
    ax.plot(xs, means, color="C0", lw=1, zorder=1)
    for a, x, m in zip(swept, xs, means):
        vals = [100 * v for v in study.values(a, split)]
        ax.errorbar(x, m, yerr=[[m - min(vals)], [max(vals) - m]], fmt="o", color="C0", capsize=4, zorder=2)
        ax.scatter([x] * len(vals), vals, color="black", s=10, zorder=3)
        ax.annotate(a, (x, m), textcoords="offset points", xytext=(6, -12), fontsize=8)
    if reference is not None:
        ref = [100 * v for v in study.values(reference, split)]
        ax.axhspan(min(ref), max(ref), color="C3", alpha=0.15)
        ax.axhline(sum(ref) / len(ref), color="C3", lw=1.5,
                   label=f"{reference} ({rows[reference]['trainable']:,} trainable): mean, range")
    ax.axhline(100 * study.baseline[split], color="gray", ls="--", lw=1, label="untrained")
    finish(ax, xlog=True, xlabel="trainable parameters (log scale)", ylabel=f"accuracy on {split} (%)", grid=True, legend=8,
           title=title or f"{len(study.seeds)} seeds, {study.steps} steps: mean, range, each seed")
    return ax

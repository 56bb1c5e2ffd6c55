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
    nats per character) per arm, the pretrained model's loss dashed; arms that keep the base intact are marked."""
    import matplotlib.pyplot as plt

    arms = study.arms
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

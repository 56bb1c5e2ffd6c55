"""Plot of lecture 01's instruction-tuning experiment (:func:`course_lib.instructions.compare`)."""
from __future__ import annotations

from .axes import axes, finish


def plot_instruction_tuning(result: dict, ax=None, title: str | None = None):
    """One group of bars per evaluation set, one bar per condition: the mean over seeds, a dot per seed
    (a condition without seeds, plain prompting, has one dot). Accuracies (fractions) are shown in percent."""
    conditions, sets = result["conditions"], result["eval_sets"]
    ax = axes(ax, (2.2 * len(sets) + 3.5, 3.6))
    width = 0.8 / len(conditions)
    for j, condition in enumerate(conditions):
        for i, which in enumerate(sets):
            values = [100 * v for v in result["accuracy"][condition][which]]
            x = i + (j - (len(conditions) - 1) / 2) * width
            ax.bar(x, sum(values) / len(values), width * 0.9, color=f"C{j}", alpha=0.55,
                   label=condition if i == 0 else None)
            ax.scatter([x] * len(values), values, s=12, color=f"C{j}", edgecolor="black", linewidth=0.4, zorder=3)
    ax.set_xticks(range(len(sets)))
    ax.set_xticklabels([f"{which}\n({len(next(iter(result['per_cell'].values()))[which])} templates)"
                        for which in sets], fontsize=8)
    top = max(100 * v for c in conditions for w in sets for v in result["accuracy"][c][w])
    return finish(ax, ylabel=f"exact match (%), {result['n_per_cell']} items per template",
                  title=title or f"bars: mean over seeds {result['seeds']}; dots: one per seed",
                  ylim=(0, max(10, 1.25 * top)), legend=7)

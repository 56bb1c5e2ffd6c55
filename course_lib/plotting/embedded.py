"""Plots of the embedded family's evaluations (:mod:`course_lib.family_eval`).

Every function takes the plain dicts the evaluation returns (or ``{size: evaluation}`` for several
members, as :func:`course_lib.family_eval.load_evaluations` gives), draws on ``ax`` (a new
figure if ``None``) and returns the axes. Accuracies are plotted as percentages.
"""
from __future__ import annotations

from .axes import axes, finish

SIZE_ORDER = ("xs", "s", "m", "l")


def _axes(ax, figsize=(5.5, 3.8)):
    return axes(ax, figsize)


def _sorted_sizes(evaluations: dict) -> list[str]:
    return sorted(evaluations, key=lambda s: (evaluations[s].get("parameters") or 0,
                                              SIZE_ORDER.index(s) if s in SIZE_ORDER else 99))


def _label(size: str, ev: dict) -> str:
    p = ev.get("parameters")
    return f"{size} ({p / 1e6:.2f}M params)" if p else size


def plot_few_shot_by_size(evaluations: dict, ax=None, task: str | None = None):
    """GPT-3's Figure 1.2 in miniature: accuracy against k, one line per model size.

    ``task=None`` plots the mean over the word transforms, otherwise one transform.
    """
    ax = _axes(ax)
    for size in _sorted_sizes(evaluations):
        fs = evaluations[size]["few_shot"]
        curve = fs["mean"] if task is None else fs["per_task"][task]
        ks = [int(k) for k in curve]
        ax.plot(ks, [100 * curve[str(k)] for k in ks], marker="o", label=_label(size, evaluations[size]))
    ax.set_xlabel("demonstrations in the prompt, k")
    ax.set_ylabel("exact match on held-out words (%)")
    ax.set_title(f"few-shot learning vs model size: {task or 'mean over word transforms'}")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_few_shot_by_task(evaluation: dict, ax=None, tasks=None):
    """One member: accuracy against k, one line per word transform (thick line: the mean)."""
    ax = _axes(ax)
    fs = evaluation["few_shot"]
    for task in tasks or fs["per_task"]:
        curve = fs["per_task"][task]
        ks = [int(k) for k in curve]
        ax.plot(ks, [100 * curve[str(k)] for k in ks], marker=".", alpha=0.8, label=task)
    ks = [int(k) for k in fs["mean"]]
    ax.plot(ks, [100 * fs["mean"][str(k)] for k in ks], color="black", linewidth=2.5, label="mean")
    ax.set_xlabel("demonstrations in the prompt, k")
    ax.set_ylabel("exact match on held-out words (%)")
    ax.set_title(f"{evaluation.get('member', 'model')}: accuracy against k")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_addition(evaluations: dict, ax=None):
    """Direct (dashed) vs scratchpad (solid) accuracy against the number of digits, one colour per size.

    Accepts one evaluation dict (with an ``"addition"`` key) or ``{size: evaluation}``.
    """
    import matplotlib.pyplot as plt

    if "addition" in evaluations:
        evaluations = {evaluations.get("member", "model"): evaluations}
    ax = _axes(ax)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, size in enumerate(_sorted_sizes(evaluations)):
        digits = evaluations[size]["addition"]["digits"]
        d = [int(x) for x in digits]
        c = colors[i % len(colors)]
        ax.plot(d, [100 * digits[str(x)]["scratchpad"] for x in d], marker="o", color=c,
                label=f"{size}: scratchpad")
        ax.plot(d, [100 * digits[str(x)]["direct"] for x in d], marker="x", linestyle="--", color=c,
                label=f"{size}: direct")
    ax.set_xlabel("digits per number")
    ax.set_ylabel("exact-match accuracy of the sum (%)")
    ax.set_title("addition: answer directly vs write the scratchpad first")
    ax.set_xticks(sorted({int(x) for ev in evaluations.values() for x in ev["addition"]["digits"]}))
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_instruction_vs_few_shot(evaluation: dict, ax=None):
    """Grouped bars per word transform: no prompt, instruction only, k-shot, instruction + k-shot."""
    import numpy as np

    ax = _axes(ax, figsize=(8, 3.8))
    ins = evaluation["instruction"]
    tasks = list(ins["per_task"]) + ["mean"]
    conds = ins["conditions"]
    x = np.arange(len(tasks))
    w = 0.8 / len(conds)
    for j, cond in enumerate(conds):
        vals = [100 * (ins["mean"][cond] if t == "mean" else ins["per_task"][t][cond]) for t in tasks]
        ax.bar(x + (j - (len(conds) - 1) / 2) * w, vals, w, label=cond)
    ax.set_xticks(x)
    ax.set_xticklabels(tasks, rotation=20, fontsize=8)
    ax.set_ylabel("exact match on held-out words (%)")
    ax.set_title("instruction vs demonstrations")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    return ax


def plot_label_mapping(evaluation: dict, ax=None):
    """Accuracy against k for natural, flipped, seen-arbitrary and never-seen label words (chance dotted)."""
    ax = _axes(ax)
    lab = evaluation["labels"]
    for name, curve in lab["accuracy"].items():
        ks = [int(k) for k in curve]
        ax.plot(ks, [100 * curve[str(k)] for k in ks], marker="o", label=name)
    ax.axhline(50, color="grey", linestyle=":", label="chance")
    return finish(ax, xlabel="demonstrations in the prompt, k", ylabel="sentiment accuracy (%)",
                  title="in-context classification with different label words", ylim=(0, 100), legend=7, grid=True)


def plot_adaptation_speed(result: dict, ax=None):
    """Validation accuracy against LoRA steps from pretrained vs random initialisation (target dotted)."""
    ax = _axes(ax)
    styles = {"pretrained": "-", "random": "--"}
    for init, runs in result["runs"].items():
        for run in runs:
            steps, acc = zip(*run["curve"])
            ax.plot(steps, [100 * a for a in acc], linestyle=styles.get(init, "-"), marker=".",
                    label=f"{init} init (seed {run['seed']})")
    ax.axhline(100 * result["target"], color="grey", linestyle=":", label=f"target {100 * result['target']:.0f}%")
    return finish(ax, xlabel="LoRA optimiser steps", ylabel="validation accuracy (%)",
                  title=f"{result['member']}: LoRA on {result['task']}", ylim=(0, 100), legend=7, grid=True)


def plot_perplexity_by_size(evaluations: dict, ax=None):
    """Held-out perplexity per character against parameter count (log x axis)."""
    ax = _axes(ax)
    sizes = _sorted_sizes(evaluations)
    params = [evaluations[s]["parameters"] for s in sizes]
    ppl = [evaluations[s]["perplexity"]["perplexity"] for s in sizes]
    ax.plot(params, ppl, marker="o")
    for s, p, y in zip(sizes, params, ppl):
        ax.annotate(s, (p, y), textcoords="offset points", xytext=(4, 4))
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("held-out perplexity per character")
    ax.set_title("held-out perplexity vs model size")
    ax.grid(alpha=0.3)
    return ax

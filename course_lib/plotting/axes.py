"""What every course plot shares: a fresh axes when none is given, and the same finishing touches
(axis labels with units, a log x axis, a percentage y range, legend and grid), so each plotting
function states only what is particular to its figure."""
from __future__ import annotations


def axes(ax=None, figsize=(5, 3.5)):
    """``ax`` itself, or the axes of a new figure of ``figsize`` inches when ``ax`` is None."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def finish(ax, *, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
           xlog: bool = False, ylim: tuple | None = None, legend: int | None = 8, grid: bool = False):
    """Label and scale ``ax``; ``legend`` is the legend's font size (None: no legend)."""
    if xlog:
        ax.set_xscale("log")
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if legend:
        ax.legend(fontsize=legend)
    if grid:
        ax.grid(alpha=0.3)
    return ax


def accuracy_bars(ax, rows: list[dict], name: str, label, *, color, ylabel: str, title: str | None = None):
    """One bar per row: its ``"accuracy"`` (a fraction) in percent, named by ``row[name]``, with the text
    ``label(row)`` above it (None: no text)."""
    bars = ax.bar([r[name] for r in rows], [100 * r["accuracy"] for r in rows], color=color)
    for bar, text in zip(bars, map(label, rows)):
        if text is not None:
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1, text, ha="center", fontsize=8)
    return finish(ax, ylabel=ylabel, title=title, ylim=(0, 110), legend=None)

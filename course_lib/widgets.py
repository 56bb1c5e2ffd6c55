"""Interactive explorers for the lectures (ipywidgets), each with a static fallback figure.

:func:`lora_explorer` (lecture 04): sliders for LoRA's rank ``r`` and ``lora_alpha`` and a choice of
target matrices. Every change redraws, from numbers the lecture has measured (nothing trains here):

* the trainable-parameter count of that choice on the lecture's model (``r (d + k)`` per matrix);
* the effective scale ``alpha / r`` (and rsLoRA's ``alpha / sqrt(r)``);
* the relative error of the best rank-``r`` approximation of a real update: the full fine-tuning
  update ``Delta W`` of the chosen matrices;
* the accuracy the rank/target sweep measured, and a trained adapter's accuracy at scale ``alpha / r``.

Where widgets do not render (a static HTML export, GitHub, a plain ``jupyter nbconvert``), the
explorer draws the same panels as a static figure for a grid of settings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class LoraExplorerData:
    """What the explorer shows, all measured by the lecture beforehand.

    shapes: target group -> list of ``(d, k)`` for every matrix LoRA would wrap (all layers).
    spectra: target group -> list of singular-value tensors of the full fine-tuning update, one per matrix.
    sweep: dicts ``{"targets": group, "r": r, "accuracy": acc}``; baseline / full: reference accuracies.
    alpha_curve: ``(scales, accuracies)`` of one trained adapter evaluated at several scales, and the
    scale it was trained with; total_params: parameters of the base model.
    """

    shapes: dict
    spectra: dict
    sweep: list = field(default_factory=list)
    baseline: float | None = None
    full: float | None = None
    alpha_curve: tuple | None = None
    trained_scale: float | None = None
    total_params: int | None = None

    @property
    def groups(self) -> list[str]:
        return list(self.shapes)

    @property
    def max_rank(self) -> int:
        return min(min(d, k) for shapes in self.shapes.values() for d, k in shapes)


def explorer_data(base_model, tuned_model, sweep=(), groups=None, **extra) -> LoraExplorerData:
    """Collect shapes and the spectra of ``tuned - base`` for each target group of ``base_model``.

    ``groups``: group name -> target names (default: the presets ``q,v``, ``k,o`` and ``mlp``).
    """
    import torch.nn as nn

    from .methods.lora import TARGET_PRESETS, singular_values
    from .methods.targets import is_linear, matches

    groups = groups or {g: TARGET_PRESETS[g] for g in ("q,v", "k,o", "mlp")}
    tuned = dict(tuned_model.named_modules())
    shapes, spectra = {}, {}
    for group, targets in groups.items():
        shapes[group], spectra[group] = [], []
        for name, module in base_model.named_modules():
            if name and matches(name, targets) and is_linear(module):
                w0 = module.weight if isinstance(module, nn.Linear) else module.weight.T
                w1 = tuned[name].weight if isinstance(module, nn.Linear) else tuned[name].weight.T
                shapes[group].append(tuple(w0.shape))
                spectra[group].append(singular_values(w1.detach() - w0.detach()))
    total = sum(p.numel() for p in base_model.parameters())
    return LoraExplorerData(shapes, spectra, list(sweep), total_params=total, **extra)


def explorer_state(data: LoraExplorerData, r: int, alpha: float, group: str) -> dict:
    """The numbers the explorer shows for one setting (no drawing; the tests check these)."""
    from .methods.lora import lora_param_count, rank_r_error

    if group not in data.shapes:
        from .errors import ConfigError
        raise ConfigError(f"unknown target group {group!r}.", f"choose one of {data.groups}.")
    shapes = data.shapes[group]
    trainable = sum(lora_param_count(d, k, r) for d, k in shapes)
    full_matrices = sum(d * k for d, k in shapes)
    errors = [rank_r_error(s, r) for s in data.spectra[group]]
    swept = {row["r"]: row["accuracy"] for row in data.sweep if row["targets"] == group}
    nearest = min(swept, key=lambda x: abs(math.log2(x) - math.log2(r))) if swept else None
    return {
        "group": group, "r": r, "alpha": alpha,
        "trainable": trainable, "full_matrices": full_matrices, "n_matrices": len(shapes),
        "percent_of_model": 100 * trainable / data.total_params if data.total_params else None,
        "scaling": alpha / r, "rslora_scaling": alpha / math.sqrt(r),
        "rank_error": sum(errors) / len(errors) if errors else float("nan"),
        "sweep_r": nearest, "sweep_accuracy": swept.get(nearest) if nearest else None,
    }


def describe(state: dict) -> str:
    lines = [f"targets {state['group']} at r = {state['r']}, alpha = {state['alpha']:.3g}:",
             f"  trainable parameters: {state['trainable']:,} in {state['n_matrices']} matrices "
             f"(the matrices hold {state['full_matrices']:,})"
             + (f", {state['percent_of_model']:.2f}% of the model" if state["percent_of_model"] else ""),
             f"  effective scale alpha/r = {state['scaling']:.3g}   (rsLoRA alpha/sqrt(r) = {state['rslora_scaling']:.3g})",
             f"  rank-{state['r']} approximation of the full fine-tuning update: "
             f"{100 * state['rank_error']:.1f}% relative error (mean over matrices)"]
    if state["sweep_accuracy"] is not None:
        lines.append(f"  sweep: LoRA on {state['group']} at r = {state['sweep_r']} reached "
                     f"{100 * state['sweep_accuracy']:.1f}% validation accuracy")
    return "\n".join(lines)


def draw_explorer(data: LoraExplorerData, r: int, alpha: float, group: str, fig=None):
    """The four panels for one setting: parameters, approximation error, sweep accuracy, scale."""
    import matplotlib.pyplot as plt

    from .methods.lora import lora_param_count, rank_error_curve
    from .plotting import lora as lp

    state = explorer_state(data, r, alpha, group)
    if fig is None:
        fig = plt.figure(figsize=(13, 3.4))
    fig.clear()
    axes = fig.subplots(1, 4)
    ranks = [2 ** i for i in range(int(math.log2(data.max_rank)) + 1)]
    for g in data.groups:
        counts = [sum(lora_param_count(d, k, rr) for d, k in data.shapes[g]) for rr in ranks]
        axes[0].plot(ranks, counts, "-", label=g, lw=2.5 if g == group else 1)
    axes[0].plot([r], [state["trainable"]], "o", color="red")
    axes[0].set(xscale="log", yscale="log", xlabel="rank r", ylabel="trainable parameters (count)",
                title="parameters")
    axes[0].set_xscale("log", base=2)
    axes[0].legend(fontsize=7)
    curves = {f"{group} #{i}": rank_error_curve(s) for i, s in enumerate(data.spectra[group][:4])}
    lp.plot_rank_error(curves, ax=axes[1], current=r)
    axes[1].set_title(f"rank-r error of full-FT ΔW ({group})")
    if data.sweep:
        lp.plot_sweep(data.sweep, data.baseline, data.full, ax=axes[2], current=(group, state["sweep_r"]))
        axes[2].set_title("measured sweep")
    else:
        axes[2].set_axis_off()
    if data.alpha_curve is not None:
        lp.plot_alpha_effect(*data.alpha_curve, ax=axes[3], trained_scale=data.trained_scale,
                             current=state["scaling"])
        axes[3].set_title("one trained adapter at scale alpha/r")
    else:
        axes[3].set_axis_off()
    fig.suptitle(f"r = {r}, alpha = {alpha:.3g}: {state['trainable']:,} trainable, scale {state['scaling']:.3g}, "
                 f"rank-r error {100 * state['rank_error']:.0f}%", fontsize=10)
    fig.tight_layout()
    return fig


def draw_static_grid(data: LoraExplorerData, ranks=(1, 4, 16), alpha: float = 16):
    """The fallback: parameter count, scale and rank-r error for every group at a few ranks, as a table figure."""
    import matplotlib.pyplot as plt

    ranks = [r for r in ranks if r <= data.max_rank]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    width = 0.8 / len(data.groups)
    for i, g in enumerate(data.groups):
        states = [explorer_state(data, r, alpha, g) for r in ranks]
        xs = [j + i * width for j in range(len(ranks))]
        axes[0].bar(xs, [s["trainable"] for s in states], width, label=g)
        axes[1].bar(xs, [100 * s["rank_error"] for s in states], width, label=g)
        axes[2].bar(xs, [100 * s["sweep_accuracy"] if s["sweep_accuracy"] is not None else 0 for s in states],
                    width, label=g)
    for ax, ylabel in zip(axes, ["trainable parameters (count)", "rank-r error of full-FT ΔW (%)",
                                 "sweep accuracy at nearest r (%)"]):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(ranks))])
        ax.set_xticklabels([f"r={r}\ns={alpha / r:.3g}" for r in ranks])
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    fig.suptitle(f"static view (alpha = {alpha}; s = alpha/r under each rank)", fontsize=10)
    fig.tight_layout()
    return fig


def lora_explorer(data: LoraExplorerData, r: int = 8, alpha: float = 16, group: str | None = None,
                  static: bool = True):
    """Sliders for r and alpha and a target-group choice, redrawn live; returns the widget box.

    With ``static=True`` (default) it also draws :func:`draw_static_grid`, which shows in exports
    where widgets do not render. Without ipywidgets it draws the static figures only and returns None.
    """
    import matplotlib.pyplot as plt

    group = group or data.groups[0]
    if static:
        draw_static_grid(data, alpha=alpha)
        plt.show()
    try:
        import ipywidgets as w
        from IPython.display import display
    except ImportError:
        draw_explorer(data, r, alpha, group)
        plt.show()
        print(describe(explorer_state(data, r, alpha, group)))
        return None
    r_slider = w.IntSlider(value=r, min=1, max=data.max_rank, description="rank r", continuous_update=False)
    a_slider = w.FloatLogSlider(value=alpha, base=2, min=0, max=7, step=1, description="alpha",
                                continuous_update=False)
    choice = w.Dropdown(options=data.groups, value=group, description="targets")
    out = w.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            fig = draw_explorer(data, r_slider.value, a_slider.value, choice.value)
            plt.show()
            plt.close(fig)
            print(describe(explorer_state(data, r_slider.value, a_slider.value, choice.value)))

    for control in (r_slider, a_slider, choice):
        control.observe(redraw, names="value")
    box = w.VBox([w.HBox([r_slider, a_slider, choice]), out])
    redraw()
    display(box)
    return box

"""The plotting helpers every figure shares (course_lib/plotting/axes.py), and the figures built on them:
they draw what their data says, with the labels and ranges a learner reads."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib.plotting import axes as common  # noqa: E402
from course_lib.plotting import embedded, lora, prompts, pruning, reasoning, unified  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_axes_reuses_what_it_is_given_and_makes_a_figure_otherwise():
    fig, ax = plt.subplots()
    assert common.axes(ax) is ax
    new = common.axes(None, (4, 2))
    assert new is not ax and tuple(new.figure.get_size_inches()) == (4, 2)


def test_finish_labels_scales_and_adds_a_legend_only_when_asked():
    ax = common.axes()
    ax.plot([1, 10], [0, 50], label="a line")
    common.finish(ax, xlabel="x (units)", ylabel="y (%)", title="t", xlog=True, ylim=(0, 100), grid=True)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("x (units)", "y (%)", "t")
    assert ax.get_xscale() == "log" and ax.get_ylim() == (0, 100) and ax.get_legend() is not None
    bare = common.finish(common.axes(), legend=None)
    assert bare.get_legend() is None and bare.get_xscale() == "linear"


def test_accuracy_bars_draw_percent_and_skip_missing_labels():
    rows = [{"name": "frozen", "accuracy": 0.5, "trainable": None}, {"name": "lora", "accuracy": 0.875, "trainable": 1234}]
    ax = lora.plot_method_comparison(rows)
    assert [p.get_height() for p in ax.patches] == [50.0, 87.5]
    assert [t.get_text() for t in ax.texts] == ["1,234 params"]
    assert ax.get_ylim() == (0, 110) and ax.get_ylabel() == "validation accuracy (%)"
    rows = [{"method": "magnitude", "accuracy": 0.75, "trainable": 0.125}]
    ax = pruning.plot_method_comparison(rows)
    assert [t.get_text() for t in ax.texts] == ["12.5% trained"] and ax.get_title()


def test_line_plots_keep_their_axes():
    ax = prompts.plot_lr_sensitivity({"prompt": {1e-3: 0.5, 1e-2: 0.75}}, baseline=0.5)
    assert ax.get_xscale() == "log" and ax.get_ylim() == (0, 105) and len(ax.get_legend().texts) == 2
    ax = prompts.plot_scale({"a": 1e6, "b": 1e7}, {"prompt": {"a": 0.5, "b": 0.75}}, baseline={"a": 0.5, "b": 0.5})
    assert list(ax.lines[0].get_xdata()) == [1e6, 1e7] and list(ax.lines[0].get_ydata()) == [50, 75]
    ev = {m: {"parameters": p, "addition": {"digits": {"2": {"direct": 0.5, "scratchpad": s}}}}
          for m, p, s in (("s", 1e6, 0.5), ("m", 1e7, 0.75))}
    ax = reasoning.plot_cot_gain_by_size(ev, digits=[2])
    assert list(ax.lines[0].get_ydata()) == [0, 25] and ax.get_xscale() == "log"
    ax = embedded.plot_label_mapping({"labels": {"accuracy": {"natural": {"0": 0.5, "4": 0.75}}}})
    assert list(ax.lines[0].get_ydata()) == [50, 75] and ax.get_ylim() == (0, 100)
    result = {"runs": {"pretrained": [{"seed": 0, "curve": [(0, 0.5), (10, 0.9)]}]}, "target": 0.8,
              "member": "embedded-m", "task": "reviews"}
    ax = embedded.plot_adaptation_speed(result)
    assert list(ax.lines[0].get_xdata()) == [0, 10] and "embedded-m" in ax.get_title()
    ax = unified.plot_prefix_gate([torch.full((2, 3), 0.25), torch.full((2, 3), 0.75)])
    assert len(ax.patches) == 60 and ax.get_legend() is not None


def test_the_paging_plot_draws_both_traces_the_capacity_and_the_out_of_memory_steps():
    from course_lib.paging import simulate_paging
    from course_lib.plotting.quantization import plot_paging

    trace = simulate_paging(2 ** 20 * 10, 2 ** 20 * 4, [2 ** 20 * 4], [2 ** 20, 2 ** 20 * 3, 2 ** 20], page_bytes=2 ** 18)
    ax = plot_paging(trace)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["without paging"].get_ydata()) == [9, 11, 9] and list(lines["paged optimizer"].get_ydata()) == [9, 10, 9]
    assert list(lines["out of memory (no paging)"].get_xdata()) == [1]
    assert lines["device capacity"].get_ydata()[0] == 10
    assert "4 pages" in " ".join(t.get_text() for t in ax.texts)


def test_the_seed_study_plot_shows_every_seed_the_means_and_which_arms_keep_the_base():
    from course_lib.plotting.robustness import plot_seed_study
    from course_lib.robustness import SeedRun, Study

    study = Study(("test", "test_unseen"), (0, 1), 10, {"test": 0.5, "test_unseen": 0.5, "general_loss": 0.6})
    for arm, accs, loss, intact in [("full", (1.0, 0.9), 2.0, False), ("LoRA", (0.8, 0.7), 1.0, True)]:
        for seed in (0, 1):
            study.runs.append(SeedRun(arm, seed, 10, {"test": accs[0], "test_unseen": accs[1] - 0.1 * seed},
                                      loss + seed, intact, 1.0))
    fig = plot_seed_study(study)
    left, right = fig.axes
    # one dot per seed: 2 arms x 2 splits on the left, 2 arms on the right
    from matplotlib.collections import PathCollection

    dots = [c for c in left.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in dots) == 8
    assert sorted(round(float(y), 3) for c in dots for _, y in c.get_offsets()) == [60.0, 70.0, 80.0, 80.0, 80.0, 90.0, 100.0, 100.0]
    heights = sorted(round(p.get_height(), 3) for p in left.patches if p.get_height())
    assert heights == sorted([100.0, 85.0, 80.0, 65.0])       # the means over seeds, in percent
    assert [round(p.get_height(), 3) for p in right.patches if p.get_height()] == [2.5, 1.5]
    assert [line.get_ydata()[0] for line in left.get_lines() if line.get_linestyle() == "--"] == [50.0, 50.0]
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert any("base intact" in t for t in labels) and any("overwritten" in t for t in labels)


def test_the_seed_sweep_plot_puts_each_arm_at_its_trainable_count_and_the_reference_as_a_band():
    from matplotlib.collections import PathCollection

    from course_lib.plotting.robustness import plot_seed_study, plot_seed_sweep
    from course_lib.robustness import SeedRun, Study

    study = Study(("validation",), (0, 1), 10, {"validation": 0.5}, general_docs=0)
    for arm, trainable, accs in [("r=1", 100, (0.6, 0.7)), ("r=8", 800, (0.7, 0.9)), ("full", 10_000, (0.8, 1.0))]:
        for seed, a in zip((0, 1), accs):
            study.runs.append(SeedRun(arm, seed, trainable, {"validation": a}, None, arm != "full", 1.0))
    ax = plot_seed_sweep(study, "validation", reference="full")
    assert ax.get_xscale() == "log"
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sorted((float(x), round(float(y), 3)) for c in dots for x, y in c.get_offsets()) == \
        [(100.0, 60.0), (100.0, 70.0), (800.0, 70.0), (800.0, 90.0)]          # the swept arms' seeds, not the reference's
    joined = next(line for line in ax.get_lines() if len(line.get_xdata()) == 2)
    assert list(joined.get_xdata()) == [100, 800] and [round(y, 3) for y in joined.get_ydata()] == [65.0, 80.0]
    band = [p for p in ax.patches if p.get_alpha() == 0.15]
    assert len(band) == 1
    assert any(line.get_ydata()[0] == 90.0 and "full" in line.get_label() for line in ax.get_lines())
    assert any(line.get_linestyle() == "--" and line.get_ydata()[0] == 50.0 for line in ax.get_lines())
    assert len(plot_seed_study(study).axes) == 1                 # no general probe: one panel


def test_accuracy_over_steps_starts_each_line_at_the_untrained_model_and_draws_the_ceiling():
    rows = [{"label": "LoRA", "curve": [[50, 0.8], [150, 1.0]]}, {"label": "prompt tuning", "curve": [[50, 0.5], [150, 0.6]]}]
    ax = unified.plot_accuracy_over_steps(rows, baseline=0.5)
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert sorted(lines) == ["LoRA", "prompt tuning"]
    assert list(lines["LoRA"].get_xdata()) == [0, 50, 150] and list(lines["LoRA"].get_ydata()) == [50, 80, 100]
    levels = sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_label().startswith("_"))
    assert levels == [50, 97]                                  # the untrained model and the ceiling
    bare = unified.plot_accuracy_over_steps(rows[:1], ceiling=None)
    assert len(bare.get_lines()) == 1 and list(bare.get_lines()[0].get_xdata()) == [50, 150]
    assert bare.get_xlabel() == "training step" and [t.get_text() for t in bare.get_legend().get_texts()] == ["LoRA"]

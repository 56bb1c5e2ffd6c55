"""The seeded study: several seeds per method, a shifted split, forgetting and whether the base survives."""
import pytest

from course_lib import robustness
from course_lib.errors import ConfigError
from course_lib.methods import freeze, full, lora
from course_lib.models import weights_fingerprint
from course_lib.tasks import review_verdicts


@pytest.fixture(scope="module")
def study(embedded):
    model, tokenizer = embedded
    before = weights_fingerprint(model)
    task = review_verdicts({"train": 64, "validation": 8, "test": 16, "test_unseen": 16})
    arms = [robustness.Arm("full", full, full.Config(), 1e-3),
            robustness.Arm("top block", freeze, freeze.Config(last_layers=1), 1e-3),
            robustness.Arm("LoRA", lora, lora.Config(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]), 5e-3)]
    s = robustness.run_study(model, tokenizer, task, arms, steps=3, seeds=(0, 1), batch_size=4, n_eval=16,
                             general_docs=4, keep_seed=1, progress=False)
    assert weights_fingerprint(model) == before   # the pretrained model is not changed
    return s, model, tokenizer, task, arms


def test_every_arm_on_every_seed(study):
    s, *_ = study
    assert s.arms == ["full", "top block", "LoRA"]
    assert [(r.arm, r.seed) for r in s.runs] == [(a, seed) for a in s.arms for seed in (0, 1)]
    for r in s.runs:
        assert set(r.accuracy) == {"test", "test_unseen"} and len(r.losses) == 3
        assert all(0 <= v <= 1 for v in r.accuracy.values()) and r.general_loss > 0


def test_only_added_parameters_leave_the_base_intact(study):
    s, *_ = study
    intact = {row["arm"]: row["base_intact"] for row in s.summary()}
    assert intact == {"full": False, "top block": False, "LoRA": True}


def test_training_changes_the_general_loss_and_the_baseline_is_the_pretrained_model(study):
    s, model, tokenizer, task, _ = study
    from course_lib.family_eval import heldout_perplexity
    from course_lib.training import accuracy

    assert s.baseline["general_loss"] == robustness.general_loss(model, tokenizer, 4)
    # the probe leaves PROBE_ROOM positions free for soft prompts: documents are cut to the context less that
    cut = heldout_perplexity(model, tokenizer, n_docs=4, max_length=tokenizer.model_max_length - robustness.PROBE_ROOM,
                             progress=False)
    assert s.baseline["general_loss"] == cut["loss"]
    assert s.baseline["test_unseen"] == accuracy(model, tokenizer, task, task["test_unseen"][:16])
    assert all(r.general_loss != s.baseline["general_loss"] for r in s.runs)


def test_summary_is_mean_and_range_of_the_seeds(study):
    s, *_ = study
    for row in s.summary():
        for metric in ("test", "test_unseen", "general_loss"):
            v = s.values(row["arm"], metric)
            assert len(v) == 2 and row[f"{metric} min"] == min(v) and row[f"{metric} max"] == max(v)
            assert row[f"{metric} mean"] == pytest.approx(sum(v) / 2)
    assert "base intact" in s.table() and "pretrained (untrained)" in s.table()


def test_keep_seed_keeps_that_seeds_trained_models(study):
    s, model, tokenizer, task, arms = study
    from course_lib.training import accuracy

    assert list(s.models) == s.arms
    for arm, m in s.models.items():
        run = next(r for r in s.runs if r.arm == arm and r.seed == 1)
        assert accuracy(m, tokenizer, task, task["test"][:16]) == run.accuracy["test"]
    with pytest.raises(ConfigError, match="keep_seed"):
        robustness.run_study(model, tokenizer, task, arms, steps=1, keep_seed=5, progress=False)


def test_a_seed_reproduces_its_run(study):
    s, model, tokenizer, task, arms = study
    again = robustness.run_study(model, tokenizer, task, arms[2:], steps=3, seeds=(1,), batch_size=4, n_eval=16,
                                 general_docs=4, progress=False)
    first = next(r for r in s.runs if r.arm == "LoRA" and r.seed == 1)
    assert again.runs[0].losses == first.losses and again.runs[0].accuracy == first.accuracy


def test_bad_input_is_a_clear_error(study):
    s, model, tokenizer, task, arms = study
    kw = dict(steps=1, progress=False)
    with pytest.raises(ConfigError, match="no arms"):
        robustness.run_study(model, tokenizer, task, [], **kw)
    with pytest.raises(ConfigError, match="labels repeat"):
        robustness.run_study(model, tokenizer, task, [arms[0], arms[0]], **kw)
    with pytest.raises(ConfigError, match="no repeats"):
        robustness.run_study(model, tokenizer, task, arms, seeds=(0, 0), **kw)
    with pytest.raises(ConfigError, match="no split"):
        robustness.run_study(model, tokenizer, task, arms, splits=("shifted",), **kw)
    with pytest.raises(ConfigError, match="has no apply"):
        robustness.Arm("x", object(), None, 1e-3)
    with pytest.raises(ConfigError, match="positive"):
        robustness.Arm("x", lora, None, 0)
    with pytest.raises(ConfigError, match="unknown metric"):
        s.values("LoRA", "accuracy")
    with pytest.raises(ConfigError, match="no arm"):
        s.values("adapter", "test")


def test_the_numbers_do_not_depend_on_the_number_of_workers(study):
    s, model, tokenizer, task, arms = study
    kw = dict(steps=3, seeds=(0, 1), batch_size=4, n_eval=16, general_docs=4, progress=False)
    one = robustness.run_study(model, tokenizer, task, arms[1:], workers=1, **kw)
    two = robustness.run_study(model, tokenizer, task, arms[1:], workers=2, **kw)
    assert [(r.arm, r.seed) for r in two.runs] == [(r.arm, r.seed) for r in one.runs]
    for a, b in zip(one.runs, two.runs):
        assert (a.losses, a.accuracy, a.general_loss, a.base_intact) == (b.losses, b.accuracy, b.general_loss, b.base_intact)
    for r in s.runs:                                              # and the fixture's own runs agree with them
        if r.arm != "full":
            twin = next(x for x in one.runs if (x.arm, x.seed) == (r.arm, r.seed))
            assert twin.losses == r.losses


def test_a_study_without_the_general_probe(study):
    _, model, tokenizer, task, arms = study
    s = robustness.run_study(model, tokenizer, task, arms[2:], steps=2, seeds=(0,), batch_size=4, n_eval=8,
                             splits=("validation",), general_docs=0, progress=False)
    assert s.metrics == ("validation",) and robustness.GENERAL not in s.baseline
    assert s.runs[0].general_loss is None and robustness.GENERAL not in s.table()
    assert set(s.summary()[0]) >= {"validation mean", "validation min", "validation max"}
    with pytest.raises(ConfigError, match="without the general probe"):
        s.values("LoRA", robustness.GENERAL)
    with pytest.raises(ConfigError, match="negative"):
        robustness.run_study(model, tokenizer, task, arms, steps=1, general_docs=-1, progress=False)


def test_a_seed_run_reads_as_a_train_result(study):
    s, *_ = study
    run = s.runs[0]
    res = run.train_result("test")
    assert res.losses == run.losses and res.trainable == run.trainable and res.final_accuracy == run.accuracy["test"]
    with pytest.raises(ConfigError, match="not evaluated"):
        run.train_result("validation")

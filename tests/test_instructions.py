"""Tests of course_lib.instructions: templates per task, the split of tasks and templates, determinism,
the course's errors, and the experiment run for one short step on the embedded model."""
import pytest
import torch

from course_lib import instructions as I
from course_lib.embedded import corpus
from course_lib.errors import ConfigError


def test_every_task_has_k_distinct_templates_with_its_phrasings():
    assert I.K == len(I.LAYOUTS) >= 8                       # FLAN: about ten templates per task
    for task in I.TASKS.values():
        templates = task.templates()
        assert len(templates) == I.K == len(task.phrasings)
        queries = [t.query("plant") for t in templates]
        assert len(set(queries)) == I.K, task.name
        for query, phrase in zip(queries, task.phrasings):
            assert phrase in query and "plant" in query
        assert templates[0].render("plant", "tnalp").endswith("tnalp")


def test_templates_and_tasks_split_disjointly():
    mix = I.mixture(heldout_templates=3, seed=0)
    assert set(mix.train_tasks).isdisjoint(mix.heldout_tasks) and mix.heldout_tasks == ("last letter",)
    for task in mix.train_tasks:
        train, held = set(mix.train_templates[task]), set(mix.heldout_templates[task])
        assert train.isdisjoint(held) and train | held == set(range(I.K)) and len(held) == 3
    # the split is not the same for every task (a seeded shuffle per task)
    assert len({mix.heldout_templates[t] for t in mix.train_tasks}) > 1
    assert mix.eval_cells("held-out tasks") == [("last letter", i) for i in range(I.K)]
    assert {t for t, _ in mix.eval_cells("held-out templates")} == set(mix.train_tasks)


def test_tuning_data_uses_training_templates_only_and_one_wording_per_task_when_asked():
    mix = I.mixture(("reverse", "uppercase"), ("double",), heldout_templates=4)

    def templates_used(pairs, task):
        used = set()
        for prompt, target in pairs:
            assert target.endswith("\n")
            used.update(i for i in range(I.K) if _input_of(prompt, mix.template(task, i)))
        return used

    all_pairs = mix.training_pairs(60, templates="all", seed=1)
    one_pairs = mix.training_pairs(60, templates="one", seed=1)
    assert len(all_pairs) == len(one_pairs) == 120
    for task in mix.train_tasks:
        used_all, used_one = templates_used(all_pairs, task), templates_used(one_pairs, task)
        assert used_all == set(mix.train_templates[task])
        assert used_one == {mix.one_template(task, 1)}
    # the same inputs and outputs in both conditions: only the wording differs
    assert [t for _, t in all_pairs] == [t for _, t in one_pairs]
    assert all(_input_of(a, mix.template(task, i)) == _input_of(o, mix.template(task, j))
               for (a, _), (o, _) in zip(all_pairs, one_pairs) for task in mix.train_tasks
               for i in range(I.K) for j in range(I.K)
               if _input_of(a, mix.template(task, i)) and _input_of(o, mix.template(task, j)))


def _input_of(prompt: str, template) -> str:
    """The input a template's query was filled with (the text between its fixed prefix and suffix)."""
    before, after = template.query("\0").split("\0")
    if prompt.startswith(before) and prompt.endswith(after) and len(prompt) > len(before) + len(after):
        return prompt[len(before): len(prompt) - len(after)]
    return ""


def test_evaluation_items_use_held_out_templates_and_unseen_words():
    mix = I.mixture()
    prompts, targets, cells = mix.eval_items("held-out templates", 5)
    assert len(prompts) == len(targets) == len(cells) == 5 * len(mix.eval_cells("held-out templates"))
    heldout = set(corpus.heldout_words())
    for prompt, target, (task, index) in zip(prompts, targets, cells):
        assert index in mix.heldout_templates[task]
        word = _input_of(prompt, mix.template(task, index))
        assert word and prompt == mix.template(task, index).query(word)
        if task != "sentiment":
            assert word in heldout                           # tuning draws from the training words
            assert corpus.transform_example(task, word, None) == (word, target)
    few, few_targets, few_cells = mix.eval_items("held-out tasks", 3, k=2)
    zero, zero_targets, _ = mix.eval_items("held-out tasks", 3, k=0)
    assert few_targets == zero_targets and all(f.endswith(z) and len(f) > len(z) for f, z in zip(few, zero))
    assert all(f.count(" => ") == 3 for f in few)            # two demonstrations and the query, same template


def test_everything_is_deterministic_for_a_seed():
    assert I.mixture(seed=3) == I.mixture(seed=3) and I.mixture(seed=3) != I.mixture(seed=4)
    mix = I.mixture()
    assert mix.training_pairs(20, seed=2) == mix.training_pairs(20, seed=2) != mix.training_pairs(20, seed=5)
    assert mix.eval_items("held-out templates", 4, k=1) == mix.eval_items("held-out templates", 4, k=1)


@pytest.mark.parametrize("call, match", [
    (lambda: I.mixture(("reverse", "unknown task")), "unknown instruction task"),
    (lambda: I.mixture(("reverse",), ("reverse",)), "both tuned on and held out"),
    (lambda: I.mixture((), ("reverse",)), "no training task"),
    (lambda: I.mixture(heldout_templates=0), "heldout_templates=0"),
    (lambda: I.mixture(heldout_templates=I.K), f"heldout_templates={I.K}"),
    (lambda: I.mixture().training_pairs(5, templates="some"), "templates='some'"),
    (lambda: I.mixture().training_pairs(0), "must be a positive integer"),
    (lambda: I.mixture().eval_items("test set", 3), "unknown evaluation set"),
    (lambda: I.mixture().items("reverse", 3, "validation"), "split='validation'"),
])
def test_bad_input_names_the_problem_and_the_fix(call, match):
    with pytest.raises(ConfigError, match=match) as err:
        call()
    assert "How to fix:" in str(err.value)


def test_compare_runs_every_condition_and_leaves_the_prompted_model_unchanged(embedded):
    from course_lib.models import weights_fingerprint

    model, tokenizer = embedded
    before = weights_fingerprint(model)
    torch.set_num_threads(1)
    mix = I.mixture(("reverse", "uppercase"), ("double",), heldout_templates=2)
    with pytest.raises(ConfigError, match="seeds"):
        I.compare(model, tokenizer, mix, seeds=(), progress=False)
    result = I.compare(model, tokenizer, mix, seeds=(0, 1), steps=2, batch_size=2, train_per_task=4, n=1, k=1,
                       progress=False)
    assert weights_fingerprint(model) == before
    assert result["conditions"] == ["prompted, zero-shot", "prompted, 1-shot", "tuned on one template per task",
                                    "instruction-tuned, all templates"]
    for condition in result["conditions"]:
        runs = 2 if condition.startswith(("tuned", "instruction")) else 1
        for which in ("held-out templates", "held-out tasks"):
            accs = result["accuracy"][condition][which]
            assert len(accs) == runs and all(0 <= a <= 1 for a in accs)
        assert len(result["per_cell"][condition]["held-out templates"]) == 4     # 2 tasks x 2 held-out templates
        assert len(result["per_cell"][condition]["held-out tasks"]) == I.K
    assert result["train_seconds"] > 0

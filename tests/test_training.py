"""The shared fine-tuning loop: the masked objective, the encoding, TextPairs, reproducibility."""
import copy

import pytest
import torch
import torch.nn.functional as F

from course_lib import reasoning as R
from course_lib import training
from course_lib.errors import ConfigError


def test_conditional_loss_is_cross_entropy_on_labelled_positions_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, 2, 6, 0]])
    want = []
    for b in range(2):
        for t in range(1, 5):
            if labels[b, t] != -100:
                want.append(F.cross_entropy(logits[b, t - 1][None], labels[b, t][None]))
    assert torch.allclose(training.conditional_lm_loss(logits, labels), torch.stack(want).mean())
    with pytest.raises(ConfigError, match="disagree"):
        training.conditional_lm_loss(logits, labels[:, :4])


def test_encode_masks_prompt_and_padding(embedded):
    _, tok = embedded
    task = training.TextPairs([("ab => ", "AB\n"), ("abcd => ", "ABCD\n")])
    batch = training.encode_examples(tok, task, task["train"])
    for i, (prompt, target) in enumerate(task["train"]):
        ids = tok(prompt + target).input_ids
        n_prompt = len(tok(prompt).input_ids)
        row = batch["labels"][i]
        assert row[:n_prompt].eq(-100).all() and row[len(ids):].eq(-100).all()
        assert row[n_prompt:len(ids)].tolist() == ids[n_prompt:]
        assert batch["attention_mask"][i].sum().item() == len(ids)
        assert tok.decode(row[n_prompt:len(ids)].tolist()) == target


def test_text_pairs_validate_themselves():
    with pytest.raises(ConfigError, match="non-empty list"):
        training.TextPairs([])
    with pytest.raises(ConfigError, match="prompt, target"):
        training.TextPairs([("only a prompt",)])
    with pytest.raises(ConfigError, match="only the split 'train'"):
        training.TextPairs([("a", "b")])["validation"]


def test_training_on_text_pairs_lowers_the_loss_and_is_reproducible(embedded):
    model, tok = embedded
    pairs = [R.training_pair(d) for d in R.worked_examples(3, 32, seed=1)]
    runs, weights = [], []
    for _ in range(2):
        tuned = copy.deepcopy(model)
        runs.append(training.train(tuned, tok, training.TextPairs(pairs),
                                   training.TrainConfig(steps=8, batch_size=8, lr=1e-3, seed=4), progress=False))
        weights.append(torch.cat([p.detach().flatten() for p in tuned.parameters()]))
    assert runs[0].losses == runs[1].losses and torch.equal(weights[0], weights[1])
    assert len(runs[0].losses) == 8 and runs[0].history == []     # no validation split: losses only
    assert runs[0].trainable == sum(p.numel() for p in model.parameters())
    original = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.equal(original, weights[0])


def test_nothing_to_train_is_a_clear_error(embedded):
    model, tok = embedded
    frozen = copy.deepcopy(model).requires_grad_(False)
    with pytest.raises(ConfigError, match="nothing to train"):
        training.train(frozen, tok, training.TextPairs([("a", "b")]), training.TrainConfig(steps=1), progress=False)


def test_train_across_models_runs_each_method_on_each_model_with_one_progress_bar(capsys):
    from course_lib.models import load_model
    from course_lib.runtime import select_runtime
    from course_lib.tasks import downstream_task

    runtime = select_runtime("embedded")
    task = downstream_task(runtime)
    config = training.TrainConfig(steps=3, batch_size=4, eval_examples=16)
    methods = {"full": lambda m, tok: (copy.deepcopy(m).requires_grad_(True), 1e-3),
               "head only": lambda m, tok: (_head_only(copy.deepcopy(m)), 3e-3)}
    grid = training.train_across_models(["embedded-xs"], methods, task, config, runtime=runtime)
    err = capsys.readouterr().err
    assert "runs" in err and "2/2" in err, f"one bar over the 2 runs expected on stderr: {err[-300:]!r}"
    model, tok = load_model("embedded-xs", runtime=runtime)
    direct = training.train(_head_only(copy.deepcopy(model)), tok, task,
                            training.TrainConfig(steps=3, batch_size=4, eval_examples=16, lr=3e-3), progress=False)
    assert grid.accuracy["head only"]["embedded-xs"] == direct.final_accuracy
    assert set(grid.accuracy) == {"full", "head only"} and grid.sizes["embedded-xs"] == sum(
        p.numel() for p in model.parameters())
    assert grid.baseline["embedded-xs"] == training.accuracy(model, tok, task, task["validation"][:16])


def _head_only(model):
    model.requires_grad_(False)
    model.get_output_embeddings().requires_grad_(True)
    return model


def test_every_evaluation_records_the_label_accuracy_and_nll_of_the_trained_model(embedded):
    from course_lib.runtime import select_runtime
    from course_lib.tasks import downstream_task

    model, tok = embedded
    task = downstream_task(select_runtime("embedded"))
    tuned = _head_only(copy.deepcopy(model))
    run = training.train(tuned, tok, task, training.TrainConfig(steps=4, batch_size=4, eval_every=2, eval_examples=16,
                                                                lr=3e-3), progress=False)
    assert [h["step"] for h in run.history] == [2, 4]
    after = training.label_scores(tuned, tok, task, task["validation"][:16])
    assert run.final_accuracy == after["accuracy"] and run.final_nll == pytest.approx(after["nll"], abs=1e-6)
    # the label NLL is -log p(right label word), not the training loss over every target token
    gold = training.label_log_likelihoods(tuned, tok, task, task["validation"][:16])
    right = gold[torch.arange(16), torch.tensor([ex.label for ex in task["validation"][:16]])]
    assert run.final_nll == pytest.approx(-right.mean().item(), abs=1e-6) and run.final_nll > 0
    assert run.history[0]["nll"] != run.history[1]["nll"]

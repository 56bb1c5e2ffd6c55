"""The embedded model family: corpus, word list, shipped members, evaluation code, the default's floor."""
from __future__ import annotations

import json
import re

import pytest
import torch

from course_lib import family_eval
from course_lib.embedded import DEFAULT_MEMBER, MEMBERS, available_members, corpus, member_dir


# ----------------------------------------------------------------------------- corpus and word list
def test_corpus_is_deterministic_and_seeded():
    a, b, c = corpus.corpus(40, seed=3), corpus.corpus(40, seed=3), corpus.corpus(40, seed=4)
    assert a == b, "the same seed must give the same documents"
    assert a != c, "another seed must give other documents"
    assert all(0 < len(d) <= corpus.MAX_CHARS for d in a), "every document fits the 256-token context"


def test_corpus_carries_every_format_the_lectures_need():
    docs = "\n".join(corpus.corpus(600, seed=1))
    assert re.search(r"^task: \w", docs, re.M), "instruction headers (`task: name`)"
    assert re.search(r"^[a-z.,!?*#]+ => [a-zA-Z]+$", docs, re.M), "few-shot transform lines"
    assert f" {corpus.REASONING_TRIGGER} " in docs and f" {corpus.ANSWER_TRIGGER} " in docs, "scratchpad triggers"
    assert re.search(r"Q: \d+\+\d+ A: \d+$", docs, re.M), "direct addition"
    assert re.search(r"Q: \d+\+\d+ S: .+ A: \d+$", docs, re.M), "scratchpad addition"
    # the scratchpad is correct arithmetic
    for a, b in [(7, 5), (58, 67), (999, 1), (1234, 8766)]:
        line = corpus.addition_example(a, b, use_scratchpad=True)
        assert line.endswith(f"{corpus.ANSWER_TRIGGER} {a + b}"), line


def test_word_list_is_split_and_held_out_words_never_appear_as_words():
    train, held = set(corpus.train_words()), set(corpus.heldout_words())
    assert len(train) >= 2000 and len(held) >= 200 and not train & held
    assert all(re.fullmatch(r"[a-z]+", w) for w in train | held)
    docs = corpus.corpus(1500, seed=11)
    # transform inputs and outputs use training words only (a held-out word may only occur by chance
    # inside a longer token, e.g. `re#s!pond`, never as a line's input word)
    inputs = {m.group(1) for d in docs for m in re.finditer(r"^([a-z]+) => ", d, re.M)}
    assert inputs and not inputs & held, sorted(inputs & held)[:5]


def test_downstream_task_is_absent_from_pretraining():
    from course_lib.tasks import LABEL_WORDS, review_verdicts

    docs = "\n".join(corpus.corpus(1500, seed=12))
    assert "verdict:" not in docs and "review:" not in docs
    task = review_verdicts()
    sizes = {s: len(task[s]) for s in ("train", "validation", "test", "test_unseen")}
    assert sizes == {"train": 2000, "validation": 200, "test": 400, "test_unseen": 400}
    assert task.label_words == LABEL_WORDS
    for split in sizes:
        share = sum(e.label for e in task[split]) / sizes[split]
        assert 0.4 < share < 0.6, f"{split} is unbalanced: {share:.2f} positive"
    assert review_verdicts()["validation"] == task["validation"], "deterministic"
    assert len({e.text for e in task["test"]} - {e.text for e in task["train"]}) > 100, "test is mostly unseen"


# ----------------------------------------------------------------------------- shipped members
def test_at_least_three_members_ship_and_the_default_is_one_of_them():
    shipped = available_members()
    assert len(shipped) >= 3 and DEFAULT_MEMBER in shipped, shipped
    sizes = {}
    for m in shipped:
        d = member_dir(m)
        for f in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                  "training.json", "evaluation.json", "MODEL_CARD.md"):
            assert (d / f).is_file(), f"embedded-{m} lacks {f}"
        sizes[m] = json.loads((d / "training.json").read_text())
    # the same corpus and token budget for every member
    assert len({(t["steps"], t["batch_size"], t["context"], t["seed"]) for t in sizes.values()}) == 1
    params = [sizes[m]["parameters"] for m in shipped]
    assert params == sorted(params) and len(set(params)) == len(params), "members are ordered by size"
    total = sum(f.stat().st_size for m in shipped for f in member_dir(m).iterdir())
    assert total < 60e6, f"shipped weights are {total / 1e6:.1f} MB (limit 60 MB)"


def test_model_cards_are_up_to_date():
    from course_lib.embedded.model_card import render

    for m in available_members():
        d = member_dir(m)
        card = render(json.loads((d / "training.json").read_text()), json.loads((d / "evaluation.json").read_text()))
        assert (d / "MODEL_CARD.md").read_text() == card, \
            f"embedded-{m}: MODEL_CARD.md is stale; run python -m course_lib.embedded.model_card --all"


def test_unknown_and_missing_members_give_clear_errors():
    from course_lib.errors import UnknownModelError
    from course_lib.models import load_model

    with pytest.raises(UnknownModelError, match="embedded-xxl") as err:
        load_model("embedded-xxl")
    assert "How to fix" in str(err.value) and f"embedded-{DEFAULT_MEMBER}" in str(err.value)
    assert set(MEMBERS) >= set(available_members())
    for missing in sorted(set(MEMBERS) - set(available_members())):  # a member that is defined but not shipped
        with pytest.raises(FileNotFoundError, match=f"--size {missing}"):
            load_model(f"embedded-{missing}")


@pytest.mark.parametrize("member", available_members())
def test_every_member_loads_offline_with_from_pretrained(member, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from course_lib.models import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_model(f"embedded-{member}")
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tok)
    plain = AutoModelForCausalLM.from_pretrained(member_dir(member))  # no course code involved
    ids = tok("cat => tac\ndog =>", return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id and ids.shape[1] == 1 + len("cat => tac\ndog =>"), "one token per char"
    with torch.no_grad():
        assert torch.equal(model(ids).logits, plain.eval()(ids).logits)
    assert AutoTokenizer.from_pretrained(member_dir(member)).decode(ids[0, 1:]) == "cat => tac\ndog =>"


def test_greedy_generation_is_stable_and_does_the_task(embedded):
    from course_lib import prompting

    model, tok = embedded
    words = corpus.heldout_words()[:12]
    demos = "".join(f"{w} => {w[::-1]}\n" for w in corpus.train_words()[:4])
    prompts = [demos + f"{w} =>" for w in words]
    first = prompting.generate(model, tok, prompts, max_new_tokens=16)
    assert prompting.generate(model, tok, prompts, max_new_tokens=16, batch_size=5) == first, \
        "greedy decoding must not depend on the batch"
    correct = sum(g == w[::-1] for g, w in zip(first, words))
    assert correct >= 8, f"only {correct}/12 held-out words reversed: {list(zip(words, first))}"


# ----------------------------------------------------------------------------- evaluation code
def test_evaluation_functions_on_the_smallest_member():
    from course_lib.models import load_model

    model, tok = load_model("embedded-" + available_members()[0])
    curve = family_eval.few_shot_curve(model, tok, ks=(0, 2), n=4, tasks=["reverse", "uppercase"], progress=False)
    assert set(curve["per_task"]) == {"reverse", "uppercase"} and set(curve["mean"]) == {"0", "2"}
    assert all(0 <= v <= 1 for t in curve["per_task"].values() for v in t.values())
    add = family_eval.addition(model, tok, digits=(2,), n=4, progress=False)
    assert set(add["digits"]["2"]) == {"direct", "scratchpad", "gap"}
    assert add["digits"]["2"]["gap"] == pytest.approx(add["digits"]["2"]["scratchpad"] - add["digits"]["2"]["direct"])
    fit = family_eval.fit_pairs(model, tok, n=4, progress=False)
    labels = family_eval.label_mapping(model, tok, ks=(0,), n=4, progress=False)
    ppl = family_eval.heldout_perplexity(model, tok, n_docs=4, progress=False)
    assert fit and labels["accuracy"] and ppl["perplexity"] > 1
    assert ppl["perplexity"] == pytest.approx(torch.tensor(ppl["loss"]).exp().item(), rel=1e-3)
    with pytest.raises(ValueError, match="positive integer"):
        family_eval.few_shot_curve(model, tok, n=0)


def test_items_are_held_out_and_comparable_across_k():
    p0, t0 = family_eval.transform_items("reverse", 0, 10)
    p4, t4 = family_eval.transform_items("reverse", 4, 10)
    assert t0 == t4, "the same queries for every k"
    held = set(corpus.heldout_words())
    assert all(p.rsplit("\n", 1)[-1].split(" =>")[0] in held for p in p4)
    assert all(p.count("\n") == 4 for p in p4) and all("\n" not in p for p in p0)


def test_scaling_table_and_targets_from_the_shipped_evaluations():
    evals = family_eval.load_evaluations()
    assert set(evals) == set(available_members())
    table = family_eval.scaling_table(evals)
    assert table["order"] == available_members()
    targets = evals[DEFAULT_MEMBER]["targets"]
    assert targets == family_eval.check_targets(evals[DEFAULT_MEMBER])


def test_the_default_member_clears_its_recorded_floor(embedded):
    """A regression test on a small held-out sample (n=40 per cell): within 0.15 of the shipped numbers."""
    model, tok = embedded
    recorded = json.loads((member_dir(DEFAULT_MEMBER) / "evaluation.json").read_text())
    curve = family_eval.few_shot_curve(model, tok, ks=(0, 8), n=40, seed=1, progress=False)
    assert curve["mean"]["8"] >= recorded["few_shot"]["mean"]["8"] - 0.15, curve["mean"]
    assert curve["mean"]["8"] - curve["mean"]["0"] >= 0.45, curve["mean"]
    add = family_eval.addition(model, tok, digits=(2,), n=40, seed=1, progress=False)["digits"]["2"]
    assert add["gap"] >= recorded["addition"]["digits"]["2"]["gap"] - 0.2, add

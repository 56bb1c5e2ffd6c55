"""Prompt tuning and P-tuning from scratch (course_lib.methods.prompt_tuning) against peft and its invariants."""
import copy
import warnings

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.methods.prompt_tuning import (PromptTuningConfig, SoftPrompt, apply_prompt_tuning,
                                              prompt_tuning_cost)

peft = pytest.importorskip("peft")


def _peft_model(base, encoder="none", p=6, hidden=16, **kw):
    if encoder == "none":
        cfg = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=p, **kw)
    else:
        cfg = peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=p, encoder_hidden_size=hidden,
                                       encoder_reparameterization_type=encoder.upper())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.get_peft_model(copy.deepcopy(base), cfg).eval()


def _batch(vocab, B=3, T=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, T), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, -2:] = 0  # one right-padded row
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :2] = -100  # prompt positions
    return ids, mask, labels


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
@pytest.mark.parametrize("encoder", ["none", "mlp", "lstm"])
def test_logits_and_loss_equal_peft_with_copied_weights(arch, encoder, request):
    base = request.getfixturevalue(arch)
    ref = _peft_model(base, encoder)
    ours = apply_prompt_tuning(copy.deepcopy(base), PromptTuningConfig(6, encoder=encoder, encoder_hidden_size=16)).eval()
    ours.prompt_encoder.load_state_dict(ref.prompt_encoder["default"].state_dict())
    ids, mask, labels = _batch(base.config.vocab_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ref(input_ids=ids, attention_mask=mask, labels=labels)
        got = ours(input_ids=ids, attention_mask=mask, labels=labels)
    assert got.logits.shape == (3, 6 + 7, base.config.vocab_size)  # virtual positions included, as in peft
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.loss, want.loss, rtol=0, atol=1e-6)


def test_embedded_model_equals_peft(embedded_model):
    model, tok = embedded_model
    ref = _peft_model(model, "none", p=5)
    ours = apply_prompt_tuning(copy.deepcopy(model), PromptTuningConfig(5)).eval()
    ours.prompt_encoder.load_state_dict(ref.prompt_encoder["default"].state_dict())
    enc = tok(["review: tasty soup | verdict: plus", "review: rude"], padding=True, return_tensors="pt")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ref(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        got = ours(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_text_init_equals_peft_with_local_tokenizer(embedded_model):
    """TEXT init: the label words, tokenised by the model's own tokenizer (a local directory for peft)."""
    model, tok = embedded_model
    text = "plus minus"
    ref = _peft_model(model, "none", p=16, prompt_tuning_init="TEXT", prompt_tuning_init_text=text,
                      tokenizer_name_or_path=model.name_or_path)
    ours = apply_prompt_tuning(copy.deepcopy(model), PromptTuningConfig(16, init="text", init_text=text), tokenizer=tok)
    torch.testing.assert_close(ours.prompt_encoder.embedding.weight, ref.prompt_encoder["default"].embedding.weight,
                               rtol=0, atol=0)
    ids = tok(text)["input_ids"]
    assert len(ids) < 16  # so the ids were repeated: row len(ids) starts the second copy
    emb = model.get_input_embeddings().weight
    torch.testing.assert_close(ours.prompt_encoder.embedding.weight[len(ids)], emb[ids[0]], rtol=0, atol=0)
    short = apply_prompt_tuning(copy.deepcopy(model), PromptTuningConfig(3, init="text", init_text=text), tokenizer=tok)
    torch.testing.assert_close(short.prompt_encoder.embedding.weight, emb[ids[:3]], rtol=0, atol=0)  # truncated


def test_vocab_init_samples_rows_of_the_embedding_table_like_peft(tiny_llama):
    torch.manual_seed(5)
    ref = _peft_model(tiny_llama, "none", p=6, prompt_tuning_init="SAMPLE_VOCAB")
    torch.manual_seed(5)
    ours = apply_prompt_tuning(copy.deepcopy(tiny_llama), PromptTuningConfig(6, init="vocab"))
    w = ours.prompt_encoder.embedding.weight
    torch.testing.assert_close(w, ref.prompt_encoder["default"].embedding.weight, rtol=0, atol=0)
    table = tiny_llama.get_input_embeddings().weight
    assert all((table == row).all(dim=1).any() for row in w)  # every row is some token's embedding


def test_random_init_is_standard_normal():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(100, 8)
    sp = SoftPrompt(PromptTuningConfig(400), emb)
    assert abs(sp.embedding.weight.std().item() - 1.0) < 0.05


def test_mask_extended_and_labels_ignored_on_virtual_positions(tiny_llama):
    from course_lib.training import conditional_lm_loss

    p = 4
    ours = apply_prompt_tuning(tiny_llama, PromptTuningConfig(p)).eval()
    ids, mask, labels = _batch(tiny_llama.config.vocab_size)
    embeds, mask2, labels2 = ours.prepare_inputs(ids, mask, labels)
    assert embeds.shape == (3, p + 7, tiny_llama.config.hidden_size)
    assert torch.equal(mask2[:, :p], torch.ones(3, p, dtype=mask.dtype)) and torch.equal(mask2[:, p:], mask)
    assert (labels2[:, :p] == -100).all() and torch.equal(labels2[:, p:], labels)
    torch.testing.assert_close(embeds[0, :p], ours.prompt_encoder.embedding.weight)  # prepended, not appended
    with torch.no_grad():
        out = ours(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.loss, conditional_lm_loss(out.logits[:, -7:], labels))


def test_padding_row_equals_the_unpadded_row_alone(tiny_llama):
    ours = apply_prompt_tuning(tiny_llama, PromptTuningConfig(4)).eval()
    ids, mask, _ = _batch(tiny_llama.config.vocab_size)
    with torch.no_grad():
        full = ours(input_ids=ids, attention_mask=mask).logits
        alone = ours(input_ids=ids[-1:, :5]).logits
    torch.testing.assert_close(full[-1:, :4 + 5], alone, rtol=0, atol=1e-5)


def test_only_the_prompt_trains_and_costs_p_times_d(tiny_llama):
    from course_lib.models import weights_fingerprint

    p, d = 5, tiny_llama.config.hidden_size
    before = weights_fingerprint(tiny_llama)
    ours = apply_prompt_tuning(tiny_llama, PromptTuningConfig(p))
    trainable = {n for n, q in ours.named_parameters() if q.requires_grad}
    assert trainable == {"prompt_encoder.embedding.weight"}
    assert ours.trainable_parameters() == prompt_tuning_cost(p, d) == p * d
    start = ours.prompt_encoder.embedding.weight.detach().clone()
    opt = torch.optim.AdamW([q for q in ours.parameters() if q.requires_grad], lr=1e-2)
    ids, mask, labels = _batch(tiny_llama.config.vocab_size)
    ours.train()
    ours(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    opt.step()
    assert weights_fingerprint(tiny_llama) == before
    assert not torch.equal(start, ours.prompt_encoder.embedding.weight)


@pytest.mark.parametrize("encoder", ["mlp", "lstm"])
def test_p_tuning_parameter_count_equals_peft(tiny_gpt2, encoder):
    ref = _peft_model(tiny_gpt2, encoder, p=6, hidden=16)
    ours = apply_prompt_tuning(copy.deepcopy(tiny_gpt2), PromptTuningConfig(6, encoder=encoder, encoder_hidden_size=16))
    assert ours.trainable_parameters() == ref.get_nb_trainable_parameters()[0] > 6 * 32


def test_generate_equals_peft_and_greedy_decoding(tiny_llama):
    ref = _peft_model(tiny_llama, "none", p=6)
    ours = apply_prompt_tuning(copy.deepcopy(tiny_llama), PromptTuningConfig(6)).eval()
    ours.prompt_encoder.load_state_dict(ref.prompt_encoder["default"].state_dict())
    ids = _batch(64, B=1, T=4)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ref.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                            eos_token_id=None)
    got = ours.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=None)
    assert torch.equal(got, want)
    x = ids
    with torch.no_grad():
        for _ in range(6):
            x = torch.cat([x, ours(input_ids=x).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(got, x)


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_virtual_tokens=0), "num_virtual_tokens"),
    (dict(num_virtual_tokens=2.5), "num_virtual_tokens"),
    (dict(init="zeros"), "init"),
    (dict(init="text"), "init_text"),
    (dict(encoder="gru"), "encoder"),
    (dict(encoder="mlp", encoder_hidden_size=0), "encoder_hidden_size"),
    (dict(encoder="lstm", encoder_num_layers=0), "encoder_num_layers"),
])
def test_config_errors_name_problem_and_fix(kwargs, words):
    with pytest.raises(ConfigError, match=words) as err:
        PromptTuningConfig(**kwargs)
    assert "How to fix:" in str(err.value)


def test_usage_errors(tiny_llama):
    with pytest.raises(ConfigError, match="tokenizer"):
        apply_prompt_tuning(copy.deepcopy(tiny_llama), PromptTuningConfig(4, init="text", init_text="plus"))
    with pytest.raises(ConfigError, match="PromptTuningConfig"):
        apply_prompt_tuning(copy.deepcopy(tiny_llama), {"num_virtual_tokens": 4})
    ours = apply_prompt_tuning(tiny_llama, PromptTuningConfig(4))
    ids = torch.ones(1, 3, dtype=torch.long)
    with pytest.raises(ConfigError, match="position_ids"):
        ours(input_ids=ids, position_ids=torch.arange(3)[None])
    with pytest.raises(ConfigError, match="input_ids"):
        ours()


# --- multitask prompt tuning (peft's, objective 6.8) ---------------------------------------------
def test_multitask_prompt_counts_equal_the_formula(tiny_llama):
    from course_lib.methods.prompt_tuning import multitask_prompt_cost, multitask_prompt_tuning

    p, n, r, d = 6, 3, 2, tiny_llama.config.hidden_size
    cost = multitask_prompt_cost(p, d, num_tasks=n, rank=r)
    assert cost == {"shared": p * d, "per_task": (p + d) * r, "total": p * d + n * (p + d) * r}
    mpt = multitask_prompt_tuning(copy.deepcopy(tiny_llama), PromptTuningConfig(p), num_tasks=n, rank=r)
    assert mpt.get_nb_trainable_parameters()[0] == cost["total"]
    enc = mpt.prompt_encoder["default"]
    assert enc.prefix_task_cols[0].numel() + enc.prefix_task_rows[0].numel() == cost["per_task"]
    with pytest.raises(ConfigError, match="num_tasks"):
        multitask_prompt_cost(p, d, num_tasks=0)


def test_the_shared_prompt_starts_from_vocabulary_and_a_bound_task_id_is_used(tiny_llama):
    from course_lib.methods.prompt_tuning import TaskIdModel, multitask_prompt_tuning

    torch.manual_seed(0)
    mpt = multitask_prompt_tuning(copy.deepcopy(tiny_llama), PromptTuningConfig(4, init="vocab"), num_tasks=2)
    vocab = tiny_llama.get_input_embeddings().weight
    prompt = mpt.prompt_encoder["default"].embedding.weight
    assert all((vocab == row).all(dim=1).any() for row in prompt)   # every virtual token starts as a real token
    with torch.no_grad():
        mpt.prompt_encoder["default"].prefix_task_rows[1].mul_(-3.0)  # make task 1's factor differ from task 0's
    x = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        for k in (0, 1):
            direct = mpt(input_ids=x, task_ids=torch.tensor([k, k])).logits
            assert torch.equal(TaskIdModel(mpt, k)(input_ids=x).logits, direct)
        assert not torch.allclose(TaskIdModel(mpt, 0)(input_ids=x).logits, TaskIdModel(mpt, 1)(input_ids=x).logits)
    with pytest.raises(ConfigError):
        TaskIdModel(mpt, -1)
    with pytest.raises(ConfigError, match="without an encoder"):
        multitask_prompt_tuning(copy.deepcopy(tiny_llama), PromptTuningConfig(4, encoder="mlp"), num_tasks=2)


def test_a_multitask_prompt_trains_on_a_mixture_with_one_task_id_per_row(embedded_model):
    from course_lib import training
    from course_lib.methods.prompt_tuning import TaskIdModel, multitask_prompt_tuning
    from course_lib.training import multitask_scores
    from course_lib.tasks import TaskMixture, contrarian_task, review_verdicts

    model, tokenizer = embedded_model
    task = review_verdicts({"train": 40, "validation": 16, "test": 4, "test_unseen": 4})
    mixture = TaskMixture((task, contrarian_task(task)))
    torch.manual_seed(0)
    mpt = multitask_prompt_tuning(copy.deepcopy(model), PromptTuningConfig(4, init="vocab"), num_tasks=2)
    base = {n: p.detach().clone() for n, p in mpt.base_model.named_parameters()}
    enc = mpt.prompt_encoder["default"]
    rows0 = enc.prefix_task_rows.detach().clone()
    before = training.label_scores(TaskIdModel(mpt, 0), tokenizer, task, task["validation"])
    run = training.train(mpt, tokenizer, mixture, training.TrainConfig(steps=6, batch_size=8, lr=0.3),
                         forward_kwargs=mixture.forward_kwargs, progress=False)
    assert len(run.losses) == 6 and run.trainable == mpt.get_nb_trainable_parameters()[0]
    assert all(not torch.equal(enc.prefix_task_rows[k], rows0[k]) for k in (0, 1))   # both tasks' factors trained
    assert all(torch.equal(p, base[n]) for n, p in mpt.base_model.named_parameters())  # the model stays frozen
    after, after_contrarian = multitask_scores(mpt, tokenizer, mixture.tasks, task["validation"])
    assert after["nll"] != before["nll"] and 0 <= after["accuracy"] <= 1 and after["nll"] > 0
    assert after["accuracy"] == training.accuracy(TaskIdModel(mpt, 0), tokenizer, task, task["validation"])
    assert after_contrarian == training.label_scores(TaskIdModel(mpt, 1), tokenizer, mixture.tasks[1], task["validation"])

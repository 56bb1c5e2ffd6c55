"""P-tuning v1 with freely placed virtual tokens (course_lib.methods.p_tuning) against peft and its invariants."""
import copy
import warnings

import pytest
import torch

from course_lib import training
from course_lib.errors import ConfigError
from course_lib.methods import p_tuning
from course_lib.methods.p_tuning import SLOT_TOKEN, PTuningConfig, apply_p_tuning
from course_lib.tasks import review_verdicts

peft = pytest.importorskip("peft")

HIDDEN = 16


@pytest.fixture(scope="module")
def char_tokenizer():
    from course_lib.embedded.tokenizer import build_tokenizer

    return build_tokenizer(model_max_length=64)


@pytest.fixture
def char_llama(char_tokenizer):
    """A 2-layer Llama whose vocabulary covers the char-level tokenizer (the tasks' texts), random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(char_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval()


def _peft_lstm(base, m):
    cfg = peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=m, encoder_hidden_size=HIDDEN,
                                   encoder_reparameterization_type="LSTM", encoder_num_layers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.get_peft_model(copy.deepcopy(base), cfg).eval()


def _ours(base, tokenizer, template):
    return apply_p_tuning(copy.deepcopy(base), PTuningConfig(template, encoder_hidden_size=HIDDEN), tokenizer).eval()


def test_the_encoder_equals_peft_prompt_encoder_with_the_same_state_dict(tiny_llama, char_tokenizer):
    from peft.tuners.p_tuning.model import PromptEncoder

    ours = _ours(tiny_llama, char_tokenizer, "[P][P] a {text} [P] b:")
    torch.manual_seed(3)   # different weights from ours, so the load below is what makes them agree
    ref = PromptEncoder(peft.PromptEncoderConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=3, token_dim=32, num_transformer_submodules=1,
        encoder_hidden_size=HIDDEN, encoder_reparameterization_type="LSTM", encoder_num_layers=2)).eval()
    indices = torch.arange(3).unsqueeze(0)
    with torch.no_grad():
        assert (ref(indices)[0] - ours.prompt_encoder()).abs().max() > 1e-3
        ref.load_state_dict(ours.prompt_encoder.state_dict())   # strict: the same names and shapes
        torch.testing.assert_close(ref(indices)[0], ours.prompt_encoder(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_all_slots_at_the_start_give_peft_p_tuning_logits(arch, char_tokenizer, request):
    base, m = request.getfixturevalue(arch), 4
    ref = _peft_lstm(base, m)
    ours = _ours(base, char_tokenizer, "[P]" * m + "{text}")
    ours.prompt_encoder.load_state_dict(ref.prompt_encoder["default"].state_dict())
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 40, (3, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, -2:] = 0
    slots = torch.full((3, m), ours.slot_id)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ref(input_ids=ids, attention_mask=mask).logits
        got = ours(input_ids=torch.cat([slots, ids], 1), attention_mask=torch.cat([torch.ones_like(slots), mask], 1)).logits
    assert got.shape == want.shape == (3, m + 7, base.config.vocab_size)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_slots_anywhere_get_the_encoder_outputs_in_order_and_other_tokens_their_embeddings(char_llama, char_tokenizer):
    ours = _ours(char_llama, char_tokenizer, "[P][P] a {text} [P] b:")
    task = ours.task(review_verdicts({"train": 4, "validation": 4, "test": 1, "test_unseen": 1}))
    assert task.prompt(task["train"][0]).count(SLOT_TOKEN) == 3
    batch = training.encode_examples(ours.tokenizer, task, task["train"][:3])
    ids = batch["input_ids"]
    embeds, mask, labels = ours.prepare_inputs(ids, batch["attention_mask"], batch["labels"])
    assert embeds.shape == (*ids.shape, 32) and mask is batch["attention_mask"] and labels is batch["labels"]
    slot = ids == ours.slot_id
    with torch.no_grad():
        h = ours.prompt_encoder()
        frozen = char_llama.get_input_embeddings()(ids.masked_fill(slot, 0))
    for row in range(ids.shape[0]):
        pos = slot[row].nonzero().flatten()
        assert pos.tolist()[:2] == [1, 2] and pos[2] > 5          # two after <bos>, one after the text
        torch.testing.assert_close(embeds[row, pos], h, rtol=0, atol=1e-6)   # LSTM with and without grad: float rounding
    assert torch.equal(embeds[~slot], frozen[~slot])             # every real token keeps its frozen embedding
    assert (labels[slot] == -100).all()                          # slots are prompt: no loss on them


def test_trainable_parameters_equal_the_formula_and_only_the_encoder_trains(char_llama, char_tokenizer):
    cfg = PTuningConfig("[P] x {text} [P][P] y:", encoder_hidden_size=HIDDEN, encoder_num_layers=2)
    d, h, m = 32, HIDDEN, 3
    lstm = 2 * 4 * h * (d + h + 2) + 2 * 4 * h * (2 * h + h + 2)
    formula = m * d + lstm + (2 * h * 2 * h + 2 * h) + (2 * h * d + d)
    assert p_tuning.expected_parameters(char_llama, cfg) == formula
    ours = apply_p_tuning(copy.deepcopy(char_llama), cfg, char_tokenizer)
    assert training.trainable_parameters(ours) == ours.trainable_parameters() == formula
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompt_encoder.") for n in trainable)
    frozen = {n: p.detach().clone() for n, p in ours.base_model.named_parameters()}
    encoder = {n: p.detach().clone() for n, p in ours.prompt_encoder.named_parameters()}
    task = ours.task(review_verdicts({"train": 8, "validation": 4, "test": 1, "test_unseen": 1}))
    run = training.train(ours, ours.tokenizer, task, training.TrainConfig(steps=2, batch_size=4, lr=1e-2, eval_examples=4),
                         progress=False)
    assert run.final_accuracy is not None and run.trainable == formula
    assert all(torch.equal(p, frozen[n]) for n, p in ours.base_model.named_parameters())
    assert any(not torch.equal(p, encoder[n]) for n, p in ours.prompt_encoder.named_parameters())


def test_accuracy_scores_the_label_words_after_the_template(char_llama, char_tokenizer):
    """training.accuracy on the wrapped task equals scoring by hand: the label word's log-likelihood after the prompt."""
    ours = _ours(char_llama, char_tokenizer, "[P] a {text} [P] b:")
    task = ours.task(review_verdicts({"train": 1, "validation": 6, "test": 1, "test_unseen": 1}))
    scores = training.label_log_likelihoods(ours, ours.tokenizer, task, task["validation"])
    ex = task["validation"][0]
    prompt_ids = ours.tokenizer(task.prompt(ex)).input_ids
    with torch.no_grad():
        for k, word in enumerate(task.label_words):
            ids = torch.tensor([ours.tokenizer(task.prompt(ex) + " " + word).input_ids])
            logp = ours(input_ids=ids).logits[0].log_softmax(-1)
            want = sum(logp[t - 1, ids[0, t]].item() for t in range(len(prompt_ids), ids.shape[1]))
            assert scores[0, k].item() == pytest.approx(want, abs=1e-4)


def test_the_original_tokenizer_is_left_alone(tiny_llama, char_tokenizer):
    before = len(char_tokenizer)
    ours = _ours(tiny_llama, char_tokenizer, "[P] {text}")
    assert len(char_tokenizer) == before and len(ours.tokenizer) == before + 1


@pytest.mark.parametrize("template,words", [
    ("[P][P] review: verdict:", "{text}"),
    ("review: {text} verdict:", "no virtual token"),
    ("[P] {text} {label}", "braces"),
])
def test_bad_templates_are_refused_with_a_fix(template, words):
    with pytest.raises(ConfigError, match="How to fix") as err:
        PTuningConfig(template)
    assert words in str(err.value)


def test_more_virtual_tokens_than_the_context_are_refused(tiny_llama, char_tokenizer):
    with pytest.raises(ConfigError, match="How to fix") as err:
        apply_p_tuning(copy.deepcopy(tiny_llama), PTuningConfig("[P]" * 64 + " {text}", encoder_hidden_size=HIDDEN),
                       char_tokenizer)
    assert "context" in str(err.value)


def test_a_row_missing_a_slot_is_refused(tiny_llama, char_tokenizer):
    ours = _ours(tiny_llama, char_tokenizer, "[P][P] {text}")
    ids = torch.tensor([[1, ours.slot_id, 5, 6]])
    with pytest.raises(ConfigError, match="virtual tokens"):
        ours(input_ids=ids)

"""One place for generation settings: a checkpoint's generation_config.json must not change what the lessons decode."""
import pytest
import torch

from course_lib import generation, prompting, reasoning
from course_lib.errors import ConfigError


@pytest.fixture(scope="module")
def penalised(tmp_path_factory):
    """A stand-in Qwen2.5-Instruct tokenizer (real special tokens and chat template) and a 1-layer model saved
    with a generation_config.json that sets what Qwen2.5-Instruct ships and more (repetition penalty, n-gram
    blocking, sampling, a minimum length), reloaded from disk like a hub checkpoint. Its logits are all zero, so
    plain greedy decoding repeats token 0 while the checkpoint's n-gram block forbids any repeat, and plain
    sampling draws from all 151,936 tokens while the checkpoint's top_k=3 draws from three."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from course_lib.standins import build_tokenizer

    tok = build_tokenizer("qwen2.5-0.5b-instruct")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=151936, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # every logit 0: greedy repeats token 0, and any leaked processor shows
        model.lm_head.weight.zero_()
    model.generation_config.update(repetition_penalty=5.0, no_repeat_ngram_size=1, do_sample=True, top_k=3,
                                   temperature=0.7, min_new_tokens=6)
    path = tmp_path_factory.mktemp("penalised")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path).eval(), tok


def _argmax_decode(model, ids, steps):
    """Greedy decoding by hand: append the argmax of the last position's logits, no processors at all."""
    ids = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(steps):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0].tolist()


def test_checkpoint_settings_would_change_greedy_output(penalised):
    model, tok = penalised
    assert model.generation_config.repetition_penalty == 5.0
    prompt_ids = tok("the film was").input_ids
    manual = _argmax_decode(model, prompt_ids, 8)[len(prompt_ids):]
    assert manual == [0] * 8
    # what an unguarded model.generate(do_sample=False) does: the checkpoint's penalty and n-gram block apply
    leaked = model.generate(input_ids=torch.tensor([prompt_ids]), max_new_tokens=8, do_sample=False)[0, len(prompt_ids):]
    assert leaked.tolist() != manual and len(set(leaked.tolist())) == len(leaked)


def test_generate_ignores_the_checkpoint_settings(penalised):
    model, tok = penalised
    prompt_ids = tok("the film was").input_ids
    manual = _argmax_decode(model, prompt_ids, 8)[len(prompt_ids):]
    out = prompting.generate(model, tok, "the film was", max_new_tokens=8, stop_at_newline=False, strip=False)
    assert out[0] == tok.decode(manual, skip_special_tokens=True)
    assert model.generation_config.repetition_penalty == 5.0   # the checkpoint's config is restored afterwards


def test_config_from_scratch():
    greedy = generation.generation_config(max_new_tokens=5, eos_token_id=[3, 4], pad_token_id=0)
    assert (greedy.do_sample, greedy.repetition_penalty, greedy.no_repeat_ngram_size, greedy.num_beams) == (False, 1.0, 0, 1)
    assert greedy.eos_token_id == [3, 4] and greedy.max_new_tokens == 5 and greedy.min_length == 0
    sample = generation.generation_config(max_new_tokens=5, temperature=0.5)
    assert (sample.do_sample, sample.temperature, sample.top_k, sample.top_p) == (True, 0.5, 0, 1.0)
    with pytest.raises(ConfigError, match="temperature"):
        generation.generation_config(max_new_tokens=5, temperature=-1)


def test_sampler_uses_the_same_settings_and_is_reproducible(penalised):
    model, tok = penalised
    a = reasoning.sampler(model, tok, temperature=1.0, seed=3, max_new_tokens=6, stop_at_newline=False)
    b = reasoning.sampler(model, tok, temperature=1.0, seed=3, max_new_tokens=6, stop_at_newline=False)
    assert a(["the film was"] * 4) == b(["the film was"] * 4)
    # the checkpoint's top_k=3 is not applied: pure softmax sampling over 151,936 equally likely tokens
    torch.manual_seed(0)
    enc = tok(["the film was"] * 32, return_tensors="pt")
    cfg = generation.generation_config(max_new_tokens=1, temperature=1.0, pad_token_id=tok.pad_token_id)
    first = generation.run_generate(model, enc["input_ids"], enc["attention_mask"], cfg)[:, -1]
    assert len(set(first.tolist())) > 3


def test_chat_template_for_instruct_models(penalised):
    model, tok = penalised
    text = generation.chat_prompt(tok, "reverse the word plant")
    assert text.startswith("<|im_start|>system\nYou are Qwen") and text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nreverse the word plant<|im_end|>" in text
    ids = tok(text, add_special_tokens=False).input_ids
    assert ids[0] == 151644 and tok.convert_ids_to_tokens(151645) == "<|im_end|>"
    assert not generation.wants_chat(model, tok, "auto")          # a local dir: not a registry instruct model
    model.name_or_path = "Qwen/Qwen2.5-0.5B-Instruct"
    try:
        assert generation.wants_chat(model, tok, "auto")
    finally:
        model.name_or_path = ""
    chat = prompting.generate(model, tok, "hi", max_new_tokens=3, chat=True, stop_at_newline=False, strip=False)
    manual = _argmax_decode(model, tok(text.replace("reverse the word plant", "hi"), add_special_tokens=False).input_ids, 3)
    assert chat[0] == tok.decode(manual[-3:], skip_special_tokens=True)


def test_chat_needs_a_template(tiny_llama):
    from course_lib.standins import build_tokenizer

    tok = build_tokenizer("smollm2-135m")
    tok.chat_template = None
    with pytest.raises(ConfigError, match="chat template"):
        generation.chat_prompt(tok, "hi")
    with pytest.raises(ConfigError, match="auto"):
        generation.wants_chat(tiny_llama, tok, "yes")


def test_a_wrapper_cannot_leak_its_base_models_settings(penalised):
    """Prompt tuning wraps the model and calls the base model's generate: the base's config is replaced too."""
    from course_lib.methods.prompt_tuning import PromptTuningConfig, apply_prompt_tuning

    model, tok = penalised
    wrapped = apply_prompt_tuning(model, PromptTuningConfig(num_virtual_tokens=2)).eval()
    enc = tok(["the film was"], return_tensors="pt")
    cfg = generation.generation_config(max_new_tokens=6, pad_token_id=tok.pad_token_id)
    out = generation.run_generate(wrapped, enc["input_ids"], enc["attention_mask"], cfg)
    assert out[0, -6:].tolist() == [0] * 6        # zero logits, no n-gram block: token 0 six times
    assert model.generation_config.no_repeat_ngram_size == 1   # the base model's own config is restored

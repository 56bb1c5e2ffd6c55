"""One place for every generation setting the lessons rely on.

A checkpoint ships its own ``generation_config.json``, and ``model.generate`` applies it: Qwen2.5-Instruct
sets ``repetition_penalty=1.1``, ``top_k=20``, ``top_p=0.8``, ``temperature=0.7`` and ``do_sample=True``.
A repetition penalty divides the logit of every token already in the context, so greedy *copy* tasks
(reverse a word, repeat a value from the passage, continue a chain of digits) are penalised for exactly
what they must do. Passing a few keyword arguments does not help: ``generate(generation_config=cfg)``
fills every field of ``cfg`` that the caller left unset from the checkpoint's generation config
(transformers 5; transformers 4.50+ did so for every field still at the library default), so a
field nobody thought of (``no_repeat_ngram_size``, ``min_length``, ``top_k``...) still leaks.

So the course never lets a checkpoint decide: :func:`generation_config` builds a
:class:`~transformers.GenerationConfig` from scratch (every field at the library's neutral default:
no repetition penalty, no n-gram blocking, no length penalty, no forced or suppressed tokens, no
minimum length, one beam, one sequence), sets only greedy or pure-softmax sampling, the length and
the stop/pad tokens, and :func:`run_generate` installs it as the model's own generation config for
the duration of the call, so there is nothing left to fall back to.

Instruct models answer a *conversation*, not raw text: :func:`chat_prompt` wraps a prompt in the
tokenizer's chat template (``tokenizer.apply_chat_template``) with the assistant turn opened. The
registry (:func:`course_lib.registry.is_instruct`) says which models are instruct-tuned; lessons
about prompting an assistant pass ``chat="auto"`` to :func:`course_lib.prompting.generate`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

from .errors import ConfigError


def generation_config(*, max_new_tokens: int, temperature: float = 0.0, eos_token_id: int | Sequence[int] | None = None,
                      pad_token_id: int | None = None):
    """A fresh :class:`~transformers.GenerationConfig`: greedy (``temperature=0``) or pure softmax sampling.

    Sampling divides the logits by ``temperature`` and samples from the full softmax: ``top_k=0``
    and ``top_p=1.0`` switch both truncations off. Every other field keeps the library's neutral
    default, whatever the checkpoint's ``generation_config.json`` says.
    """
    from transformers import GenerationConfig

    if temperature < 0:
        raise ConfigError(f"temperature={temperature}: it must be >= 0.",
                          "use 0 for greedy decoding, 0.5-1.0 for diverse samples.")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens}: it must be >= 1.", "pass a positive number of tokens.")
    if isinstance(eos_token_id, Sequence):
        eos_token_id = list(eos_token_id) or None
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=None, min_length=0, num_beams=1,
                           num_return_sequences=1, repetition_penalty=1.0, no_repeat_ngram_size=0,
                           length_penalty=1.0, bad_words_ids=None, suppress_tokens=None,
                           begin_suppress_tokens=None, forced_bos_token_id=None, forced_eos_token_id=None,
                           eos_token_id=eos_token_id, pad_token_id=pad_token_id, use_cache=True)
    if temperature > 0:
        cfg.do_sample, cfg.temperature, cfg.top_k, cfg.top_p = True, float(temperature), 0, 1.0
    else:  # greedy: the sampling fields stay unset (they do not apply, and transformers warns about set ones)
        cfg.do_sample = False
    return cfg


@contextmanager
def _installed(model, config):
    """Make ``config`` the generation config of ``model`` and of every module inside it that has one (a wrapper
    such as prompt tuning or peft calls its base model's ``generate``) for the duration of the block."""
    owners = [m for m in model.modules() if getattr(m, "generation_config", None) is not None]
    if model not in owners:
        owners.insert(0, model)
    saved = [getattr(m, "generation_config", None) for m in owners]
    for m in owners:
        m.generation_config = config
    try:
        yield
    finally:
        for m, cfg in zip(owners, saved):
            m.generation_config = cfg


def run_generate(model, input_ids, attention_mask, config):
    """``model.generate`` under ``config`` alone: the checkpoint's generation config is out of the way."""
    with _installed(model, config):
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)


def end_of_text_ids(model, tokenizer) -> list[int]:
    """The tokens that end an answer: the checkpoint's end-of-sequence ids and the tokenizer's.

    These are the only values taken from the checkpoint's generation config: an instruct model ends
    its turn with its own token (Qwen2.5-Instruct: ``<|im_end|>``), which the tokenizer may not call EOS.
    """
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer, prompt: str, *, system: str | None = None) -> str:
    """``prompt`` as the user's turn of a conversation, with the assistant's turn opened for the answer.

    Uses the tokenizer's own chat template (``apply_chat_template(..., add_generation_prompt=True)``);
    a tokenizer without one raises :class:`ConfigError` (base and embedded models read raw text).
    """
    if not has_chat_template(tokenizer):
        raise ConfigError("this tokenizer has no chat template, so the prompt cannot be posed as a conversation.",
                          "prompt an instruct model (e.g. load_model('qwen2.5-0.5b-instruct')), or pass chat=False.")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def wants_chat(model, tokenizer, chat: bool | str) -> bool:
    """Resolve ``chat`` (True, False or ``"auto"``): auto means an instruct model of the registry with a template."""
    if chat == "auto":
        from .registry import is_instruct
        return is_instruct(getattr(model, "name_or_path", "")) and has_chat_template(tokenizer)
    if chat not in (True, False):
        raise ConfigError(f"chat={chat!r}: use True, False or 'auto'.",
                          "'auto' uses the chat template for the registry's instruct models only.")
    return bool(chat)

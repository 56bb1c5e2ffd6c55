"""The character-level tokenizer of the embedded models.

One token per character: lowercase and uppercase letters, digits, space, newline and common
punctuation, plus four special tokens. It is a ``tokenizers`` BPE model with no merges wrapped as a
``PreTrainedTokenizerFast``, so it saves with ``save_pretrained`` and loads with
``AutoTokenizer.from_pretrained`` like any hub tokenizer. Every sequence starts with ``<bos>``.
Characters outside the alphabet map to ``<unk>``.
"""
from __future__ import annotations

import string

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
ALPHABET = list(string.ascii_lowercase + string.ascii_uppercase + string.digits
                + " \n.,:;!?'\"-+=*/#()<>[]_|@&%$")
CONTEXT_LENGTH = 256


def build_tokenizer(model_max_length: int = CONTEXT_LENGTH):
    """Build the char-level tokenizer (ids: pad 0, bos 1, eos 2, unk 3, then the alphabet)."""
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + ALPHABET)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.add_special_tokens(SPECIAL_TOKENS)
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", clean_up_tokenization_spaces=False, model_max_length=model_max_length)


# transformers 5 writes "TokenizersBackend" as the class of a fast tokenizer, a name transformers 4.x
# does not know ("Tokenizer class TokenizersBackend does not exist"); PreTrainedTokenizerFast loads in
# both (in 5.x it is the same class), so the shipped configs name it: the course runs on Colab's 4.x.
PORTABLE_CLASS = "PreTrainedTokenizerFast"


def save_tokenizer(tokenizer, out) -> None:
    """``tokenizer.save_pretrained(out)`` with a ``tokenizer_class`` that transformers 4.x and 5.x both load."""
    import json
    from pathlib import Path

    tokenizer.save_pretrained(out)
    path = Path(out) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = PORTABLE_CLASS
    config["model_input_names"] = ["input_ids", "attention_mask"]  # 4.x would also return token_type_ids
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def vocab_size() -> int:
    return len(SPECIAL_TOKENS) + len(ALPHABET)

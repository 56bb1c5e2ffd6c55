"""The models and batches the benchmarks use (built offline: embedded weights or architecture-true random ones)."""
from __future__ import annotations

#: a tiny stand-in of SmolLM2's architecture for --quick runs (same classes, toy sizes)
TINY = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256)


def embedded(quick: bool):
    """(label, model, tokenizer): the default embedded member (the smallest shipped one with --quick)."""
    from course_lib import embedded as family
    from course_lib.models import load_model
    from course_lib.runtime import select_runtime

    members = family.available_members()
    member = members[0] if quick else (family.DEFAULT_MEMBER if family.DEFAULT_MEMBER in members else members[-1])
    model, tok = load_model(f"embedded-{member}", runtime=select_runtime("embedded"))
    return f"embedded-{member}", model, tok


def embedded_batch(tokenizer, batch_size: int):
    """``batch_size`` training examples of the embedded downstream task (prompt masked in the labels)."""
    from course_lib.tasks import review_verdicts
    from course_lib.training import encode_examples

    task = review_verdicts()
    return encode_examples(tokenizer, task, task["train"][:batch_size])


def random_model(key: str, quick: bool, seed: int = 0):
    """(label, model): an architecture-true random model of registry ``key`` (toy sizes with --quick)."""
    from course_lib.registry import build_random_model

    if quick:
        return f"{key} (tiny: {TINY['num_hidden_layers']} layers, d={TINY['hidden_size']})", \
            build_random_model(key, seed=seed, **TINY).eval()
    return key, build_random_model(key, seed=seed).eval()


def random_batch(vocab_size: int, batch_size: int, seq_len: int, seed: int = 0):
    """Random token ids; labels are the inputs (plain causal LM loss)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())

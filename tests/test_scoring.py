"""Scoring only the needed positions gives the full log-softmax computation's numbers, with fewer logits."""
import random

import pytest
import torch

from course_lib.scoring import continuation_log_probs


def _old_full_log_softmax(model, rows, pad_id, batch_size):
    """The computation before: right-padded batches in the given order, log_softmax over every position."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        x = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(x)
        for i, (ids, _) in enumerate(chunk):
            x[i, :len(ids)] = torch.tensor(ids)
            mask[i, :len(ids)] = 1
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=x, attention_mask=mask).logits.float(), dim=-1)
        for i, (ids, n) in enumerate(chunk):
            out.append(logp[i, torch.arange(n - 1, len(ids) - 1), torch.tensor(ids[n:])].sum().item())
    return out


def _rows(n, seed=0, vocab=64):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rng.randint(3, 40)
        ids = [rng.randrange(1, vocab) for _ in range(length)]
        rows.append((ids, rng.randint(1, length - 1)))
    return rows


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_equals_full_log_softmax(fixture, request):
    model = request.getfixturevalue(fixture)
    rows = _rows(37)
    expected = _old_full_log_softmax(model, rows, 0, batch_size=8)
    got = continuation_log_probs(model, rows, pad_id=0, batch_size=8)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-4)


def test_asks_only_for_the_needed_positions(tiny_llama):
    shapes = []
    hook = tiny_llama.lm_head.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    rows = [([5, 6, 7, 8, 9, 10, 11, 12], 7), ([5, 6, 7, 8, 9, 10, 11, 13], 7), ([3, 4, 5, 6, 7, 8, 9], 6)]
    try:
        got = continuation_log_probs(tiny_llama, rows, pad_id=0, batch_size=3)
    finally:
        hook.remove()
    assert shapes == [(3, 3, 64)]     # 3 columns (covering positions 5..7), not all 8
    assert got == pytest.approx(_old_full_log_softmax(tiny_llama, rows, 0, 3), abs=1e-5)


def test_label_log_likelihoods_unchanged_on_the_embedded_model(embedded):
    """training.label_log_likelihoods (the course's accuracy) against the old computation on real prompts."""
    from course_lib import training
    from course_lib.tasks import review_verdicts

    model, tok = embedded
    task = review_verdicts({"validation": 24})
    exs = task["validation"]
    rows = []
    for ex in exs:
        for w in task.label_words:
            ids = tok(task.prompt(ex) + " " + w).input_ids
            rows.append((ids, training._prompt_length(tok, task.prompt(ex), ids)))
    expected = torch.tensor(_old_full_log_softmax(model, rows, tok.pad_token_id or 0, 64)).view(len(exs), 2)
    got = training.label_log_likelihoods(model, tok, task, exs)
    assert torch.allclose(got, expected, atol=1e-4)

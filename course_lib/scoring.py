"""Log-likelihood of continuations, computed only where it is needed.

``log p(c | x) = sum_t [ z_{t-1}[c_t] - logsumexp(z_{t-1}) ]`` over the continuation tokens ``c_t``,
where ``z_{t-1}`` (vocab,) are the logits at the position before token ``t``.

A naive implementation takes ``log_softmax`` over the whole vocabulary at every position of every
row: for 64 few-shot prompts of 165 tokens and Qwen2.5's 151,936-token vocabulary that is a
(64, 165, 151936) fp32 tensor, 6.4 GB, for the two or three positions per row that are read. Here:

1. rows are batched by length (so a batch's rows end at nearly the same column);
2. the model is asked for the logits of the last ``k`` columns only (``logits_to_keep=k``, which
   every transformers causal LM accepts, and the course's wrappers pass on), where ``k`` covers the
   earliest continuation position in the batch: (B, k, vocab) instead of (B, T, vocab);
3. only the needed (row, position) logit vectors are gathered, cast to fp32, and reduced with one
   ``logsumexp`` each. Nothing of vocabulary size per position ever reaches the host.

Results equal the full ``log_softmax`` computation to float rounding (``tests/test_scoring.py``).
"""
from __future__ import annotations

from typing import Sequence

Row = tuple[Sequence[int], int]   # (token ids of context + continuation, number of context tokens)


def _forward_last(model, ids, mask, keep: int):
    """Logits of the last ``keep`` columns: (B, keep, vocab). Falls back to all logits for a model
    whose forward does not take ``logits_to_keep``."""
    try:
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    except TypeError:
        logits = model(input_ids=ids, attention_mask=mask).logits
    return logits[:, -keep:]


def continuation_log_probs(model, rows: Sequence[Row], *, pad_id: int, batch_size: int = 64,
                           progress: bool = False, desc: str | None = None) -> list[float]:
    """``log p(ids[n:] | ids[:n])`` for each row ``(ids, n)``, summed over the continuation tokens.

    Runs under ``torch.no_grad()`` on the model's device; right padding; returns floats in the
    order of ``rows``. Every row needs ``1 <= n < len(ids)``.
    """
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    scores = [0.0] * len(rows)
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=desc or "score", leave=False)
    with torch.no_grad():
        for start in starts:
            chunk = order[start:start + batch_size]
            width = max(len(rows[i][0]) for i in chunk)
            keep = width - min(rows[i][1] for i in chunk) + 1   # covers position n-1 of every row
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for b, i in enumerate(chunk):
                seq = rows[i][0]
                ids[b, :len(seq)] = torch.as_tensor(list(seq))
                mask[b, :len(seq)] = 1
            logits = _forward_last(model, ids.to(device), mask.to(device), keep)
            row_idx, col_idx, targets, owner = [], [], [], []
            for b, i in enumerate(chunk):
                seq, n = rows[i]
                for t in range(n, len(seq)):   # logits at column t-1 predict token t
                    row_idx.append(b)
                    col_idx.append(t - 1 - (width - keep))
                    targets.append(seq[t])
                    owner.append(i)
            z = logits[torch.tensor(row_idx, device=logits.device), torch.tensor(col_idx, device=logits.device)].float()
            tgt = torch.tensor(targets, device=z.device)
            token_logp = (z.gather(1, tgt[:, None]).squeeze(1) - torch.logsumexp(z, dim=-1)).cpu()
            for i, lp in zip(owner, token_logp.tolist()):
                scores[i] += lp
    return scores

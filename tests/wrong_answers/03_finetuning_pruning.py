"""Plausible mistakes in solutions/03_finetuning_pruning: each must cost the points of the test cells in `fails`.

Every mistake is the solution's own answer cell (``solution(cell)``) with a few edits; ``edit`` fails
loudly when an edit no longer applies. Entries that are another implementation keep the solution's cell and
replace one function body (``_loss``, ``_masks``), each marked by a comment.
"""
import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
edit, solution = _shared["edit"], _shared["solutions_of"](__file__)

_LOSS_CELL = solution("loss_answer")
_MASKS_OK = solution("mask_answer")
_PRUNE_OK = solution("prune_answer")
_DIFF_OK = solution("diff_answer")

_LOSS_BODY = _LOSS_CELL[_LOSS_CELL.index("    logits = logits[:, :-1]"):]
_MASKS_BODY = _MASKS_OK[_MASKS_OK.index("    names = list(weights)"):]
_DIFF_BODY = _DIFF_OK[_DIFF_OK.index("    theta0 = "):_DIFF_OK.index("\n\n\nKEEP = ")]


def _loss(body: str) -> str:
    """The solution's labels with another masked_lm_loss body (another implementation, not an edit)."""
    return edit(_LOSS_CELL, _LOSS_BODY, body)


def _masks(body: str) -> str:
    """global_magnitude_masks with another body (another implementation, not an edit)."""
    return edit(_MASKS_OK, _MASKS_BODY, body)


# the plausible mistake of part 2: one threshold per layer instead of one over all layers
_PER_LAYER_MASKS = _masks('''    masks = {}
    for n, w in weights.items():
        flat = w.detach().abs().flatten()
        k = int(round(sparsity * flat.numel()))
        keep = torch.ones(flat.numel(), dtype=torch.bool)
        keep[torch.argsort(flat, stable=True)[:k]] = False
        masks[n] = keep.view_as(w).to(w.dtype)
    return masks
''')

# the rounds of iterative pruning with the mask applied once; the retraining lines are edited away or changed
_REAPPLY = _PRUNE_OK[_PRUNE_OK.index("\n        def reapply("):_PRUNE_OK.index("        config = ")]
_RETRAIN = "        training.train(model, tokenizer, task, config, after_step=reapply, progress=False)\n"
_APPLY_ONCE = '''        with torch.no_grad():
            for name, b in masks.items():
                weights[name].mul_(b)
'''

WRONG_ANSWERS = [
    # ------------------------------------------------------------------ part 1: labels and loss
    dict(cell="loss_answer", name="no shift: logits at t scored against the label at t", code=edit(_LOSS_CELL,
        "logits = logits[:, :-1].reshape(", "logits = logits.reshape(", "labels = labels[:, 1:].reshape(",
        "labels = labels.reshape("), fails=["loss_tests"]),
    # another implementation (one cross-entropy per row), not an edit
    dict(cell="loss_answer", name="mean per row, then mean over rows", code=_loss('''\
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    rows = []
    for b in range(labels.shape[0]):
        keep = labels[b] != -100
        if keep.any():
            rows.append(torch.nn.functional.cross_entropy(logits[b][keep], labels[b][keep]))
    return torch.stack(rows).mean()
'''), fails=["loss_tests"]),
    dict(cell="loss_answer", name="sum over target tokens instead of the mean", code=edit(_LOSS_CELL,
        "labels[keep]].mean()", "labels[keep]].sum()"), fails=["loss_tests"]),
    dict(cell="loss_answer", name="off by one: the last prompt token is labelled as a target", code=edit(_LOSS_CELL,
        "device=input_ids.device)[:, None]", "device=input_ids.device)[:, None] - 1"), fails=["loss_tests"]),
    dict(cell="loss_answer", name="padding left in the loss (attention_mask ignored)", code=edit(_LOSS_CELL,
        "keep = (positions >= starts) & (attention_mask == 1)", "keep = positions >= starts"), fails=["loss_tests"]),
    # ------------------------------------------------------------------ part 2: global magnitude mask
    dict(cell="mask_answer", name="per-layer masks instead of one global threshold", code=_PER_LAYER_MASKS,
         fails=["mask_tests"]),
    # another implementation (a kthvalue threshold), not an edit
    dict(cell="mask_answer", name="threshold with <=: ties prune too many", code=_masks('''\
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    k = int(round(sparsity * flat.numel()))
    if k == 0:
        return {n: torch.ones_like(w) for n, w in weights.items()}
    threshold = torch.kthvalue(flat, k).values
    return {n: (w.detach().abs() > threshold).to(w.dtype) for n, w in weights.items()}
'''), fails=["mask_tests"]),
    dict(cell="mask_answer", name="ranks the signed value instead of the magnitude", code=edit(_MASKS_OK,
        ".detach().abs().flatten()", ".detach().flatten()"), fails=["mask_tests"]),
    dict(cell="mask_answer", name="int(sparsity * n): floor instead of round", code=edit(_MASKS_OK,
        "k = int(round(sparsity * flat.numel()))", "k = int(sparsity * flat.numel())"), fails=["mask_tests"]),
    # a monkeypatch attack prepended to a mistake, not an edit of the solution
    dict(cell="mask_answer", name="monkeypatches torch.equal/allclose and prunes per layer", code='''
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)

''' + _PER_LAYER_MASKS, fails=["mask_tests"]),
    # ------------------------------------------------------------------ part 3: iterative pruning
    dict(cell="prune_answer", name="a linear schedule s * j / rounds instead of 1 - (1 - s)^(j / rounds)", code=edit(
        _PRUNE_OK, "1 - (1 - sparsity) ** (j / rounds)", "sparsity * j / rounds"), fails=["prune_tests"]),
    dict(cell="prune_answer", name="prunes in rounds but never retrains", code=edit(_PRUNE_OK,
        _REAPPLY, _APPLY_ONCE,
        "        config = training.TrainConfig.from_runtime(runtime, steps=steps_per_round, lr=LR, eval_examples=0)\n"
        + _RETRAIN, ""), fails=["prune_tests"]),
    dict(cell="prune_answer", name="retrains without re-applying the mask (Adam revives pruned weights)", code=edit(
        _PRUNE_OK, _REAPPLY, _APPLY_ONCE, _RETRAIN,
        "        training.train(model, tokenizer, task, config, progress=False)\n"), fails=["prune_tests"]),
]

WRONG_ANSWERS += [
    # ------------------------------------------------------------------ part 4: diff pruning
    # another implementation (a top-k per tensor, written inline), not an edit
    dict(cell="diff_answer", name="keeps the top fraction of phi in each tensor separately", code=edit(_DIFF_OK,
        _DIFF_BODY, '''\
    theta0 = dict(pretrained.named_parameters())
    out = copy.deepcopy(pretrained)
    with torch.no_grad():
        for (n, p), (_, q) in zip(out.named_parameters(), finetuned.named_parameters()):
            phi = (q - theta0[n]).detach()
            k = int(round(keep * phi.numel()))
            mask = torch.zeros(phi.numel())
            if k:
                mask[torch.topk(phi.abs().flatten(), k).indices] = 1
            p.add_(phi * mask.view_as(phi))
    return out'''), fails=["diff_tests"]),
    dict(cell="diff_answer", name="keeps the smallest entries of phi", code=edit(_DIFF_OK,
        "global_magnitude_masks(phi, 1 - keep)", "global_magnitude_masks(phi, keep)",
        "p.add_(phi[n] * masks[n])", "p.add_(phi[n] * (1 - masks[n]))"), fails=["diff_tests"]),
    dict(cell="diff_answer", name="changes the pretrained model in place", code=edit(_DIFF_OK,
        "theta0 = dict(pretrained.named_parameters())",
        "theta0 = {n: p.detach().clone() for n, p in pretrained.named_parameters()}",
        "theta0[n].detach()", "theta0[n]", "    out = copy.deepcopy(pretrained)\n", "",
        "for n, p in out.named_parameters()", "for n, p in pretrained.named_parameters()",
        "return out", "return pretrained"), fails=["diff_tests"]),
    dict(cell="diff_answer", name="magnitude-prunes the fine-tuned weights instead of the task vector", code=edit(
        _DIFF_OK, _DIFF_BODY, '''\
    out = copy.deepcopy(finetuned)
    weights = dict(out.named_parameters())
    masks = global_magnitude_masks(weights, 1 - keep)
    with torch.no_grad():
        for n, p in weights.items():
            p.mul_(masks[n])
    return out'''), fails=["diff_tests"]),
]

"""Plausible mistakes in solutions/03_finetuning_pruning: each must cost the points of the test cells in `fails`.

Mistakes are edits of one correct piece (``_LABELS_OK``, ``_GLOBAL_MASKS_OK``, ``_DIFF_OK``, ...): ``edit`` fails
loudly when an edit no longer applies. Entries that are another implementation are written out.
"""
import runpy
from pathlib import Path

edit = runpy.run_path(str(Path(__file__).with_name("_edits.py")))["edit"]

_LOSS_OK = '''

def masked_lm_loss(logits, labels):
    logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    labels = labels[:, 1:].reshape(-1)
    keep = labels != -100
    logp = torch.log_softmax(logits[keep].float(), dim=-1)
    return -logp[torch.arange(int(keep.sum())), labels[keep]].mean()
'''

_LABELS_OK = '''
def target_labels(input_ids, attention_mask, prompt_lengths):
    positions = torch.arange(input_ids.shape[1])[None, :]
    starts = torch.as_tensor(prompt_lengths)[:, None]
    keep = (positions >= starts) & (attention_mask == 1)
    return torch.where(keep, input_ids, torch.full_like(input_ids, -100))
'''

# the correct diff pruning: a copy of pretrained plus the largest entries of the task vector phi
_DIFF_OK = '''
def diff_prune(pretrained, finetuned, keep):
    theta0 = dict(pretrained.named_parameters())
    phi = {n: (p.detach() - theta0[n].detach()) for n, p in finetuned.named_parameters()}
    masks = global_magnitude_masks(phi, 1 - keep)
    out = copy.deepcopy(pretrained)
    with torch.no_grad():
        for n, p in out.named_parameters():
            p.add_(phi[n] * masks[n])
    return out
'''

_ITERATIVE_TAIL = '''

torch.manual_seed(0)
_candidate = copy.deepcopy(dense)
prune_masks = iterative_prune(_candidate, SPARSITY, rounds=ROUNDS, steps_per_round=STEPS_PER_ROUND)
pruned = _candidate
iterative_accuracy = training.accuracy(pruned, tokenizer, task, val)
'''

_DIFF_TAIL = '''

KEEP = 0.2
diff_model = diff_prune(model, dense, KEEP)
diff_accuracy = training.accuracy(diff_model, tokenizer, task, val)
'''

# the rounds of iterative pruning, masks applied, but no retraining step (variants add it, or not)
_PRUNE_WITHOUT_RETRAINING = '''
def iterative_prune(model, sparsity, rounds, steps_per_round):
    masks = None
    for j in range(1, rounds + 1):
        s_j = sparsity if j == rounds else 1 - (1 - sparsity) ** (j / rounds)
        weights = pruning.prunable_parameters(model)
        masks = global_magnitude_masks(weights, s_j)
        with torch.no_grad():
            for name, b in masks.items():
                weights[name].mul_(b)
'''

# the plausible mistake of part 2: one threshold per layer instead of one over all layers
_PER_LAYER_MASKS = '''
def global_magnitude_masks(weights, sparsity):
    masks = {}
    for n, w in weights.items():
        flat = w.detach().abs().flatten()
        k = int(round(sparsity * flat.numel()))
        keep = torch.ones(flat.numel(), dtype=torch.bool)
        keep[torch.argsort(flat, stable=True)[:k]] = False
        masks[n] = keep.view_as(w).to(w.dtype)
    return masks
'''

# a correct global magnitude mask, for variants that change one line of it
_GLOBAL_MASKS_OK = '''
def global_magnitude_masks(weights, sparsity):
    names = list(weights)
    flat = torch.cat([weights[n].detach().abs().flatten() for n in names])
    k = int(round(sparsity * flat.numel()))
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[torch.argsort(flat, stable=True)[:k]] = False
    masks, start = {}, 0
    for n in names:
        w = weights[n]
        masks[n] = keep[start:start + w.numel()].view_as(w).to(w.dtype)
        start += w.numel()
    return masks
'''

WRONG_ANSWERS = [
    # ------------------------------------------------------------------ part 1: labels and loss
    dict(cell="loss_answer", name="no shift: logits at t scored against the label at t", code=_LABELS_OK + '''

def masked_lm_loss(logits, labels):
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                             ignore_index=-100)
''', fails=["loss_tests"]),
    dict(cell="loss_answer", name="mean per row, then mean over rows", code=_LABELS_OK + '''

def masked_lm_loss(logits, labels):
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    rows = []
    for b in range(labels.shape[0]):
        keep = labels[b] != -100
        if keep.any():
            rows.append(torch.nn.functional.cross_entropy(logits[b][keep], labels[b][keep]))
    return torch.stack(rows).mean()
''', fails=["loss_tests"]),
    dict(cell="loss_answer", name="sum over target tokens instead of the mean", code=_LABELS_OK + '''

def masked_lm_loss(logits, labels):
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                             labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
''', fails=["loss_tests"]),
    dict(cell="loss_answer", name="off by one: the last prompt token is labelled as a target", code=edit(_LABELS_OK,
        "torch.as_tensor(prompt_lengths)[:, None]", "torch.as_tensor(prompt_lengths)[:, None] - 1") + _LOSS_OK,
        fails=["loss_tests"]),
    dict(cell="loss_answer", name="padding left in the loss (attention_mask ignored)", code='''
def target_labels(input_ids, attention_mask, prompt_lengths):
    labels = input_ids.clone()
    for i, n in enumerate(prompt_lengths):
        labels[i, :n] = -100
    return labels
''' + _LOSS_OK, fails=["loss_tests"]),
    # ------------------------------------------------------------------ part 2: global magnitude mask
    dict(cell="mask_answer", name="per-layer masks instead of one global threshold", code=_PER_LAYER_MASKS, fails=["mask_tests"]),
    dict(cell="mask_answer", name="threshold with <=: ties prune too many", code='''
def global_magnitude_masks(weights, sparsity):
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    k = int(round(sparsity * flat.numel()))
    if k == 0:
        return {n: torch.ones_like(w) for n, w in weights.items()}
    threshold = torch.kthvalue(flat, k).values
    return {n: (w.detach().abs() > threshold).to(w.dtype) for n, w in weights.items()}
''', fails=["mask_tests"]),
    dict(cell="mask_answer", name="ranks the signed value instead of the magnitude", code=edit(_GLOBAL_MASKS_OK,
        ".detach().abs().flatten()", ".detach().flatten()"), fails=["mask_tests"]),
    dict(cell="mask_answer", name="int(sparsity * n): floor instead of round", code=edit(_GLOBAL_MASKS_OK,
        "k = int(round(sparsity * flat.numel()))", "k = int(sparsity * flat.numel())"), fails=["mask_tests"]),
    dict(cell="mask_answer", name="monkeypatches torch.equal/allclose and prunes per layer", code='''
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)

''' + _PER_LAYER_MASKS, fails=["mask_tests"]),
    # ------------------------------------------------------------------ part 3: iterative pruning
    dict(cell="prune_answer", name="prunes in rounds but never retrains", code=(
        _PRUNE_WITHOUT_RETRAINING + "    return masks\n" + _ITERATIVE_TAIL), fails=["prune_tests"]),
    dict(cell="prune_answer", name="retrains without re-applying the mask (Adam revives pruned weights)", code=
        _PRUNE_WITHOUT_RETRAINING + '''        config = training.TrainConfig.from_runtime(runtime, steps=steps_per_round, lr=LR, eval_examples=0)
        training.train(model, tokenizer, task, config, progress=False)
    return masks
''' + _ITERATIVE_TAIL, fails=["prune_tests"]),
]

WRONG_ANSWERS += [
    # ------------------------------------------------------------------ part 4: diff pruning
    dict(cell="diff_answer", name="keeps the top fraction of phi in each tensor separately", code='''
def diff_prune(pretrained, finetuned, keep):
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
    return out
''' + _DIFF_TAIL, fails=["diff_tests"]),
    dict(cell="diff_answer", name="keeps the smallest entries of phi", code=edit(_DIFF_OK,
        "global_magnitude_masks(phi, 1 - keep)", "global_magnitude_masks(phi, keep)",
        "p.add_(phi[n] * masks[n])", "p.add_(phi[n] * (1 - masks[n]))") + _DIFF_TAIL, fails=["diff_tests"]),
    dict(cell="diff_answer", name="changes the pretrained model in place", code=edit(_DIFF_OK,
        "theta0 = dict(pretrained.named_parameters())",
        "theta0 = {n: p.detach().clone() for n, p in pretrained.named_parameters()}",
        "theta0[n].detach()", "theta0[n]", "    out = copy.deepcopy(pretrained)\n", "",
        "for n, p in out.named_parameters()", "for n, p in pretrained.named_parameters()",
        "return out", "return pretrained") + _DIFF_TAIL, fails=["diff_tests"]),
    dict(cell="diff_answer", name="magnitude-prunes the fine-tuned weights instead of the task vector", code='''
def diff_prune(pretrained, finetuned, keep):
    out = copy.deepcopy(finetuned)
    weights = dict(out.named_parameters())
    masks = global_magnitude_masks(weights, 1 - keep)
    with torch.no_grad():
        for n, p in weights.items():
            p.mul_(masks[n])
    return out
''' + _DIFF_TAIL, fails=["diff_tests"]),
]

"""Magnitude pruning, masks, diff pruning and lottery tickets, checked against torch.nn.utils.prune."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as tprune

from course_lib.errors import ConfigError
from course_lib.methods import pruning as P


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def _torch_global(model, names, amount):
    ref = copy.deepcopy(model)
    modules = dict(ref.named_modules())
    pairs = [(modules[n.rsplit(".", 1)[0]], "weight") for n in names]
    tprune.global_unstructured(pairs, pruning_method=tprune.L1Unstructured, amount=amount)
    return {n: m.weight_mask for n, (m, _) in zip(names, pairs)}


@pytest.mark.parametrize("amount", [0.0, 0.1, 1 / 3, 0.5, 0.9, 0.99])
def test_global_masks_equal_torch_global_l1(tiny_llama, amount):
    for model in (_mlp(), tiny_llama):
        params = P.prunable_parameters(model)
        ours = P.magnitude_masks(params, amount, "global")
        ref = _torch_global(model, list(params), amount)
        for n in params:
            assert torch.equal(ours[n], ref[n]), n
        n_total = sum(p.numel() for p in params.values())
        assert P.sparsity(model, ours) == pytest.approx(round(amount * n_total) / n_total, abs=1e-12)


@pytest.mark.parametrize("quantile", [0.3, 0.55, 0.8])
def test_global_mask_problem_accepts_any_tie_break_and_rejects_wrong_masks(quantile):
    """Tied |w| at the cutoff (as bf16 weights of a large model have): two correct masks differ, both pass;
    wrong ones do not."""
    model = _mlp(2)
    with torch.no_grad():
        for p in model.parameters():   # 1,664 weights on a grid of 33 values, stored as bf16: ties everywhere
            p.copy_(((p * 64).round() / 64).to(torch.bfloat16).float())
    params = P.prunable_parameters(model)
    mags = torch.cat([w.detach().abs().flatten() for w in params.values()]).sort().values
    tied = (mags == mags[int(quantile * len(mags))]).nonzero().flatten()
    amount = int(tied.float().mean()) / len(mags)      # the cutoff falls inside a run of equal |w|
    assert len(tied) > 2
    ours = P.magnitude_masks(params, amount, "global")
    ref = _torch_global(model, list(params), amount)
    assert P.global_mask_problem(params, ours, amount) is None
    assert P.global_mask_problem(params, ref, amount) is None
    backwards = P.magnitude_masks({n: params[n].flatten().flip(0) for n in reversed(params)}, amount, "global")
    reversed_ties = {n: backwards[n].flip(0).view_as(params[n]) for n in params}   # the last of a tie goes first
    assert any(not torch.equal(reversed_ties[n], ours[n]) for n in params), "the weights have no tie at the cutoff"
    assert P.global_mask_problem(params, reversed_ties, amount) is None
    per_layer = P.magnitude_masks(params, amount, "layer")
    assert "prune the smallest |w|" in P.global_mask_problem(params, per_layer, amount)
    signed = P.magnitude_masks(params, amount, "global", scores={n: w.detach() - w.detach().min() for n, w in params.items()})
    assert P.global_mask_problem(params, signed, amount) is not None
    one_more = {n: m.clone() for n, m in ours.items()}
    first = next(iter(one_more))
    one_more[first].view(-1)[one_more[first].view(-1).argmax()] = 0.0
    assert "zeros" in P.global_mask_problem(params, one_more, amount)
    half = {n: m * 0.5 for n, m in ours.items()}
    assert "0 (prune) and 1 (keep)" in P.global_mask_problem(params, half, amount)


@pytest.mark.parametrize("amount", [0.2, 0.5, 0.75])
def test_layer_masks_equal_torch_l1_unstructured(amount):
    model = _mlp(1)
    ours = P.magnitude_masks(model, amount, "layer")
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            ref = copy.deepcopy(module)
            tprune.l1_unstructured(ref, "weight", amount=amount)
            assert torch.equal(ours[f"{name}.weight"], ref.weight_mask)
            k = round(amount * module.weight.numel())
            assert int((ours[f"{name}.weight"] == 0).sum()) == k


def test_global_and_layer_scopes_differ():
    model = _mlp(2)
    with torch.no_grad():
        model[4].weight.add_(model[4].weight.sign())   # |w| > 1 in one layer: global pruning spares it
    g = P.layer_sparsities(P.magnitude_masks(model, 0.5, "global"))
    lay = P.layer_sparsities(P.magnitude_masks(model, 0.5, "layer"))
    assert g["4.weight"] == 0.0 and all(abs(s - 0.5) < 0.01 for s in lay.values())


def test_ties_give_exact_sparsity_deterministically():
    w = torch.tensor([[0.5, 0.1, 0.5, 0.5], [0.1, 0.5, 2.0, 0.5]])
    params = {"a": w, "b": torch.full((3,), 0.5)}
    for s in (0.25, 0.5, 0.6):
        masks = P.magnitude_masks(params, s)
        k = round(s * 11)
        assert sum(int((m == 0).sum()) for m in masks.values()) == k
        kept = torch.cat([p[m.bool()].flatten() for p, m in zip(params.values(), masks.values())])
        gone = torch.cat([p[~m.bool()].flatten() for p, m in zip(params.values(), masks.values())])
        assert gone.abs().max() <= kept.abs().min()
        assert all(torch.equal(x, y) for x, y in zip(masks.values(), P.magnitude_masks(params, s).values()))
    masks = P.magnitude_masks(params, 0.5)   # k = round(5.5) = 6: both 0.1s, then the first four 0.5s in order
    assert masks["a"].tolist() == [[0, 0, 0, 0], [0, 0, 1, 1]] and masks["b"].tolist() == [1, 1, 1]


def test_iterative_masks_are_nested_and_match_torch_repeated_pruning():
    model = _mlp(3)
    names = list(P.prunable_parameters(model))
    n = sum(p.numel() for p in P.prunable_parameters(model).values())
    ref = copy.deepcopy(model)
    modules = dict(ref.named_modules())
    pairs = [(modules[x.rsplit(".", 1)[0]], "weight") for x in names]
    ours, pruned = None, 0
    for _ in range(3):   # torch prunes 30% of what remains each call
        tprune.global_unstructured(pairs, pruning_method=tprune.L1Unstructured, amount=0.3)
        pruned += round(0.3 * (n - pruned))
        new = P.magnitude_masks(model, pruned / n, current=ours)
        if ours is not None:
            assert all(bool((new[x] <= ours[x]).all()) for x in names)   # once pruned, always pruned
        ours = new
        for x, (m, _) in zip(names, pairs):
            assert torch.equal(ours[x], m.weight_mask)


def test_schedule_reaches_target_sparsity():
    cfg = P.PruningConfig(0.9, schedule="iterative", rounds=3)
    s = cfg.schedule_sparsities()
    assert s[-1] == 0.9 and s == sorted(s)
    assert 1 - s[0] == pytest.approx(0.1 ** (1 / 3))


def _train_tiny(model, after_step, steps=30, seed=0, lr=1e-2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 16, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    for step in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if after_step is not None:
            after_step(step, model)
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def test_masked_weights_stay_exactly_zero_through_training():
    model = _mlp(4)
    masks = P.prune(model, P.PruningConfig(0.8))
    _train_tiny(model, P.keep_masked(masks))
    for name, p in P.prunable_parameters(model).items():
        assert bool((p[masks[name] == 0] == 0).all())
        assert bool((p[masks[name] == 1] != 0).all())
    assert P.sparsity(model) == pytest.approx(P.sparsity(model, masks))
    unmasked = _mlp(4)                 # without the callback AdamW revives pruned weights
    masks2 = P.prune(unmasked, P.PruningConfig(0.8))
    _train_tiny(unmasked, None)
    assert P.sparsity(unmasked) < 0.5


def test_iterative_prune_runs_rounds_and_retrains():
    model = _mlp(5)
    cfg = P.PruningConfig(0.75, schedule="iterative", rounds=3, retrain_steps=10)
    calls = []
    res = P.iterative_prune(model, cfg, lambda m, cb: calls.append(1) or _train_tiny(m, cb, steps=cfg.retrain_steps),
                            progress=False)
    assert len(calls) == 3 and [h["round"] for h in res.history] == [1, 2, 3]
    assert res.history[-1]["sparsity"] == pytest.approx(0.75, abs=1e-3)
    assert P.sparsity(model) == pytest.approx(P.sparsity(model, res.masks))


def test_diff_pruning_keeps_top_fraction_of_task_vector():
    base = _mlp(6)
    theta0 = P.snapshot(base)
    ft = copy.deepcopy(base)
    _train_tiny(ft, None)
    phi = P.task_vector(ft, base)
    assert all(torch.allclose(theta0[n] + phi[n], p) for n, p in ft.named_parameters())
    sparse, masks = P.diff_prune(phi, keep=0.1)
    n = sum(v.numel() for v in phi.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * n)
    kept = torch.cat([phi[k][masks[k].bool()] for k in phi]).abs()
    dropped = torch.cat([phi[k][~masks[k].bool()] for k in phi]).abs()
    assert dropped.max() <= kept.min()
    model = copy.deepcopy(base)
    P.apply_diff(model, theta0, phi, masks)
    for name, p in model.named_parameters():
        assert torch.equal(p, theta0[name] + phi[name] * masks[name])
    P.apply_diff(model, theta0, phi)        # keep everything: the fine-tuned model again
    assert all(torch.allclose(p, q) for p, q in zip(model.parameters(), ft.parameters()))
    _train_tiny(model, P.keep_diff_masked(theta0, masks), steps=5)
    for name, p in model.named_parameters():
        assert torch.equal((p - theta0[name])[masks[name] == 0], torch.zeros_like(p)[masks[name] == 0])


def test_lottery_ticket_rewinds_and_compares_with_random_mask():
    model = _mlp(7)
    theta0 = P.snapshot(model)
    seen = []

    def train_fn(m, cb):
        seen.append({n: p.detach().clone() for n, p in m.named_parameters()})
        return _train_tiny(m, cb, steps=40)

    res = P.lottery_ticket(model, train_fn, P.PruningConfig(0.8, schedule="iterative", rounds=2), progress=False)
    assert len(seen) == 4   # dense, 2 rounds, random control
    for n in theta0:        # each retraining starts from θ0 ∘ b
        if n in res.masks:
            assert torch.equal(seen[2][n], theta0[n] * res.masks[n])
        else:
            assert torch.equal(seen[2][n], theta0[n])
    assert res.sparsity == pytest.approx(0.8, abs=1e-3)
    rnd = P.random_masks_like(res.masks, 0)
    assert P.layer_sparsities(rnd) == pytest.approx(P.layer_sparsities(res.masks))
    assert not all(torch.equal(rnd[n], res.masks[n]) for n in rnd)
    assert 0 <= res.random_mask <= 1 and 0 <= res.ticket <= 1 and 0 <= res.dense <= 1


def test_config_and_input_errors(tiny_llama):
    for kw in (dict(sparsity=1.0), dict(sparsity=-0.1), dict(sparsity="half"), dict(sparsity=0.5, scope="row"),
               dict(sparsity=0.5, schedule="cubic"), dict(sparsity=0.5, rounds=3),
               dict(sparsity=0.5, schedule="iterative", rounds=1), dict(sparsity=0.5, retrain_steps=-1)):
        with pytest.raises(ConfigError, match="How to fix"):
            P.PruningConfig(**kw)
    with pytest.raises(ConfigError, match="q_proj"):
        P.prunable_parameters(tiny_llama, ("query",))
    with pytest.raises(ConfigError):
        P.magnitude_masks(tiny_llama, 1.5)
    with pytest.raises(ConfigError):
        P.diff_prune({"a": torch.ones(3)}, keep=0)
    with pytest.raises(ConfigError, match="not a parameter"):
        P.apply_masks(tiny_llama, {"nope.weight": torch.ones(1)})


def test_default_targets_skip_lm_head_and_embeddings(tiny_llama):
    names = list(P.prunable_parameters(tiny_llama))
    assert names and all(n.endswith("_proj.weight") for n in names)
    assert len(names) == 2 * 7

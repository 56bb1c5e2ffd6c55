"""course_lib.methods.reft (LoReFT) against its defining invariants (pyreft is not installed to compare with)."""
import copy

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.methods import reft


def _count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _block_outputs(model, blocks, ids, mask):
    """Output hidden state of every decoder block, recorded after any hook already on the block."""
    seen, handles = [], [b.register_forward_hook(lambda m, a, o: seen.append((o[0] if isinstance(o, tuple) else o)
                                                                            .detach().clone())) for b in blocks]
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("fixture,d", [("tiny_llama", 32), ("tiny_gpt2", 32)])
@pytest.mark.parametrize("rank", [1, 4])
def test_trainable_count_is_the_formula_and_only_the_intervention_trains(request, fixture, d, rank):
    base = request.getfixturevalue(fixture)
    config = reft.ReftConfig(layer=1, rank=rank)
    tuned = reft.apply(copy.deepcopy(base), config)
    assert _count(tuned) == reft.expected_parameters(base, config) == 2 * rank * d + rank
    assert all(n.startswith("intervention.") for n, p in tuned.named_parameters() if p.requires_grad)


def test_R_keeps_orthonormal_rows_through_training(tiny_llama):
    tuned = reft.apply(copy.deepcopy(tiny_llama), reft.ReftConfig(layer=0, rank=4))
    R = tuned.intervention.rotate_layer.weight
    before = R.detach().clone()
    # AdamW's default weight decay (0.01) included: it breaks torch's Householder map (see reft's docstring)
    opt = torch.optim.AdamW([p for p in tuned.parameters() if p.requires_grad], lr=5e-2)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (3, 10), generator=g)
    for _ in range(5):
        loss = tuned(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    R = tuned.intervention.rotate_layer.weight
    assert (R - before).abs().max() > 1e-3                           # R did move
    assert torch.allclose(R @ R.T, torch.eye(4), atol=1e-5)          # and its rows stayed orthonormal


@pytest.mark.parametrize("positions", ["f2", "l3", "f1+l2", "all"])
def test_the_intervention_acts_at_the_chosen_positions_only(tiny_llama, positions):
    config = reft.ReftConfig(layer=1, rank=4, positions=positions)
    tuned = reft.apply(copy.deepcopy(tiny_llama), config)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 64, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0                                                  # row 1: 6 real tokens, right padding
    blocks = reft.decoder_blocks(tuned.base_model)[0]
    edited = _block_outputs(tuned, blocks, ids, mask)
    plain = _block_outputs(tiny_llama, reft.decoder_blocks(tiny_llama)[0], ids, mask)
    assert torch.equal(edited[0], plain[0])                          # the block before is untouched
    where = {"f2": [[0, 1], [0, 1]], "l3": [[6, 7, 8], [3, 4, 5]], "f1+l2": [[0, 7, 8], [0, 4, 5]],
             "all": [list(range(9)), list(range(6))]}[positions]
    expected = torch.zeros(2, 9, dtype=torch.bool)
    for row, cols in enumerate(where):
        expected[row, cols] = True
    assert torch.equal(reft.position_mask(config, (2, 9), mask), expected)
    changed = (edited[1] - plain[1]).abs().amax(-1) > 0
    assert torch.equal(changed, expected)                            # changed exactly there
    R, W = tuned.intervention.rotate_layer.weight, tuned.intervention.learned_source
    h = plain[1][expected]
    with torch.no_grad():                                            # and by Phi(h) = h + R^T (W h + b - R h)
        assert torch.allclose(edited[1][expected], h + (W(h) - h @ R.T) @ R, atol=1e-5)


def test_a_deep_copy_keeps_its_own_intervention(tiny_llama):
    tuned = reft.apply(copy.deepcopy(tiny_llama), reft.ReftConfig(layer=1, rank=2))
    twin = copy.deepcopy(tuned)
    with torch.no_grad():
        twin.intervention.learned_source.bias.add_(1.0)
    ids = torch.arange(1, 9).unsqueeze(0)
    with torch.no_grad():
        a, b = tuned(input_ids=ids).logits, twin(input_ids=ids).logits
    assert not torch.allclose(a, b)                                  # the copy's hook uses the copy's weights


@pytest.mark.parametrize("kwargs,match", [(dict(layer=1, rank=33), "larger than the hidden size d = 32"),
                                          (dict(layer=2), "layer 2 does not exist.*0 to 1"),
                                          (dict(layer=-1), "block index >= 0"),
                                          (dict(rank=0), "positive integer"),
                                          (dict(positions="first3"), "not understood"),
                                          (dict(positions="f0"), "not understood")])
def test_bad_config_gets_a_clear_error(tiny_llama, kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        reft.apply(copy.deepcopy(tiny_llama), reft.ReftConfig(**kwargs))
    assert "How to fix" in str(err.value)

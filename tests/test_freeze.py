"""Freeze-tuning: only the last k decoder blocks (and the final norm) train; nothing is added."""
import copy

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.methods import freeze
from course_lib.methods.catalog import perspective_table
from test_bitfit import _step as _changed_after_a_step   # one AdamW step -> the names of the parameters it moved


@pytest.mark.parametrize("arch, blocks, norm", [("tiny_llama", "model.layers", "model.norm"),
                                                ("tiny_gpt2", "transformer.h", "transformer.ln_f")])
@pytest.mark.parametrize("k", [1, 2])
def test_only_the_top_blocks_and_final_norm_train(arch, blocks, norm, k, request):
    base = request.getfixturevalue(arch)
    model = freeze.apply(copy.deepcopy(base), freeze.Config(last_layers=k))
    n_blocks = len(base.get_submodule(blocks))
    trained_prefixes = tuple(f"{blocks}.{i}." for i in range(n_blocks - k, n_blocks)) + (f"{norm}.",)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(trained_prefixes) for n in trainable)
    # every parameter of the chosen blocks and the norm trains, none other
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith(trained_prefixes)}
    # the count from the formula k * |block| + |norm|, from one block's size alone
    block = sum(p.numel() for p in base.get_submodule(blocks)[0].parameters())
    norm_size = sum(p.numel() for p in base.get_submodule(norm).parameters())
    assert freeze.expected_parameters(base, freeze.Config(last_layers=k)) == k * block + norm_size
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == k * block + norm_size
    # identity at step 0: nothing is added or changed
    x = torch.randint(0, 64, (2, 7))
    with torch.no_grad():
        assert torch.equal(model(input_ids=x).logits, base(input_ids=x).logits)
    # a step moves exactly the trainable set (the tied embeddings and lower blocks stay)
    assert _changed_after_a_step(model) == trainable


def test_without_final_norm(tiny_llama):
    model = freeze.apply(copy.deepcopy(tiny_llama), freeze.Config(last_layers=1, train_final_norm=False))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.layers.1.") for n in trainable)
    block = sum(p.numel() for p in tiny_llama.model.layers[0].parameters())
    assert freeze.expected_parameters(tiny_llama, freeze.Config(1, False)) == block
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == block


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_bad_last_layers_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="last_layers must be a positive integer"):
        freeze.Config(last_layers=bad)


def test_more_layers_than_the_model_has(tiny_llama):
    with pytest.raises(ConfigError, match="only 2 decoder blocks"):
        freeze.apply(copy.deepcopy(tiny_llama), freeze.Config(last_layers=3))
    with pytest.raises(ConfigError, match="only 2 decoder blocks"):
        freeze.expected_parameters(tiny_llama, freeze.Config(last_layers=3))


def test_in_the_perspectives_table():
    rows = [r for r in perspective_table() if r["module"] == "freeze"]
    assert [(r["perspective"], r["survey"]) for r in rows] == [("parameter", "selective")]

"""BitFit (only biases train) and probing (only the head trains)."""
import copy

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.methods.bitfit import BitFitConfig, apply_bitfit, apply_probing


def _step(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 64, (2, 10), generator=g)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}


def test_bitfit_on_gpt2_trains_exactly_the_biases(tiny_gpt2):
    model = copy.deepcopy(tiny_gpt2)
    names = apply_bitfit(model)
    lin_biases = {f"{n}.bias" for n, m in model.named_modules() if type(m).__name__ == "Conv1D"}
    assert set(names) == lin_biases
    changed = _step(model)
    assert changed == lin_biases


def test_bitfit_on_llama_adds_zero_biases_keeping_the_function(tiny_llama):
    model = copy.deepcopy(tiny_llama)
    assert not any(n.endswith("bias") for n, _ in model.named_parameters())
    names = apply_bitfit(model)
    assert len(names) == 2 * 7 and all(n.endswith("_proj.bias") for n in names)
    x = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        assert torch.allclose(model(input_ids=x).logits, tiny_llama(input_ids=x).logits, atol=1e-6)
    expected = sum(m.out_features for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head"))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    assert _step(model) == set(names)


def test_bitfit_norm_variant_and_error_without_biases(tiny_llama):
    with pytest.raises(ConfigError, match="no biases"):
        apply_bitfit(copy.deepcopy(tiny_llama), BitFitConfig(add_missing_biases=False))
    model = copy.deepcopy(tiny_llama)
    names = apply_bitfit(model, BitFitConfig(add_missing_biases=False, train_norms=True))
    assert names and all("norm" in n for n in names)
    assert _step(model) == set(names)
    with pytest.raises(ConfigError, match="choose from"):
        apply_bitfit(copy.deepcopy(tiny_llama), BitFitConfig(target_modules=("query",)))
    names = apply_bitfit(copy.deepcopy(tiny_llama), BitFitConfig(target_modules=("q_proj", "v_proj")))
    assert len(names) == 4


def test_probing_trains_only_an_untied_head(tiny_gpt2):
    model = copy.deepcopy(tiny_gpt2)
    assert model.lm_head.weight is model.transformer.wte.weight
    names = apply_probing(model)
    assert names == ["lm_head.weight"]
    assert model.lm_head.weight is not model.transformer.wte.weight
    emb = model.transformer.wte.weight.detach().clone()
    assert _step(model) == {"lm_head.weight"}
    assert torch.equal(model.transformer.wte.weight, emb)
    with pytest.raises(ConfigError, match="untie"):
        apply_probing(copy.deepcopy(tiny_gpt2), untie=False)

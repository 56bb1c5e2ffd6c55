"""course_lib.methods.lora against peft 0.21.2 (weights copied across) and against LoRA's invariants."""
import copy
import math
import warnings

import pytest
import torch
import torch.nn as nn

from course_lib.errors import ConfigError
from course_lib.methods.lora import (LoraConfig, LoraLayer, apply_lora, lora_layers, lora_param_count,
                                     lora_parameter_report, lora_state_dict, load_lora_state_dict, merge_and_unload,
                                     merge_lora, rank_r_error, unmerge_lora)

peft = pytest.importorskip("peft")


@pytest.fixture(scope="module")
def embedded_model(embedded_model):
    """The model alone (conftest's fixture gives the model and its tokenizer)."""
    return embedded_model[0].eval()


def _peft_model(base, targets, **kw):
    cfg = peft.LoraConfig(target_modules=targets, task_type="CAUSAL_LM", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft warns that it sets fan_in_fan_out for GPT-2's Conv1D
        return peft.get_peft_model(copy.deepcopy(base), cfg)


def _pair(base, targets, seed=1, **kw):
    """(peft model, our model) with the same base, B made non-zero in peft and all LoRA weights copied to ours."""
    pm = _peft_model(base, targets, **kw)
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in pm.modules():
            if hasattr(m, "lora_B") and "default" in getattr(m, "lora_B", {}):
                m.lora_B["default"].weight.normal_(0, 0.05)
    ours = apply_lora(copy.deepcopy(base), LoraConfig(target_modules=targets, **kw))
    pmods = dict(pm.named_modules())
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            ref = pmods["base_model.model." + name]
            layer.lora_A.weight.copy_(ref.lora_A["default"].weight)
            layer.lora_B.weight.copy_(ref.lora_B["default"].weight)
            if layer.use_dora:
                layer.lora_magnitude_vector.copy_(ref.lora_magnitude_vector["default"].weight)
    return pm.eval(), ours.eval()


def _ids(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, model.config.vocab_size, (2, 12), generator=g)


CASES = [
    ("tiny_gpt2", ["c_attn"], dict(r=4, lora_alpha=16)),
    ("tiny_gpt2", ["c_attn", "c_proj", "c_fc"], dict(r=8, lora_alpha=8, use_rslora=True)),
    ("tiny_llama", ["q_proj", "v_proj"], dict(r=4, lora_alpha=16)),
    ("tiny_llama", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
     dict(r=2, lora_alpha=4, use_rslora=True)),
    ("embedded_model", ["q_proj", "v_proj"], dict(r=4, lora_alpha=8)),
]
DORA_CASES = [
    ("tiny_gpt2", ["c_attn"], dict(r=4, lora_alpha=16, use_dora=True)),
    ("tiny_llama", ["q_proj", "v_proj"], dict(r=4, lora_alpha=16, use_dora=True)),
    ("embedded_model", ["q_proj", "k_proj", "v_proj", "o_proj"], dict(r=4, lora_alpha=8, use_dora=True)),
]


def _loss(model, ids):
    logits = model(ids).logits
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def _check_against_peft(base, targets, kw, tol):
    pm, ours = _pair(base, targets, **kw)
    ids = _ids(base)
    with torch.no_grad():
        ref0 = base(ids).logits
        lp, lo = pm(ids).logits, ours(ids).logits
    assert (lp - ref0).abs().max() > 1e-3, "the check is vacuous: the adapter does not change the output"
    # exact for LoRA; DoRA's norm is computed in a different order by peft, so to ~1e-6 of the logits' size
    assert torch.allclose(lo, lp, rtol=0, atol=tol * max(1.0, float(lp.abs().max()))), f"forward differs from peft by {(lo - lp).abs().max():.2e}"
    # gradients of A, B (and magnitude) with the same loss
    _loss(pm, ids).backward()
    _loss(ours, ids).backward()
    pmods = dict(pm.named_modules())
    for name, layer in lora_layers(ours).items():
        ref = pmods["base_model.model." + name]
        for mine, theirs in [(layer.lora_A.weight, ref.lora_A["default"].weight),
                             (layer.lora_B.weight, ref.lora_B["default"].weight)] + (
                [(layer.lora_magnitude_vector, ref.lora_magnitude_vector["default"].weight)] if layer.use_dora else []):
            assert theirs.grad is not None and theirs.grad.abs().max() > 0
            scale = float(theirs.grad.abs().max())
            assert torch.allclose(mine.grad, theirs.grad, rtol=0, atol=10 * tol * scale), \
                f"{name}: gradient differs from peft by {(mine.grad - theirs.grad).abs().max():.2e}"
    # merged weights and merged outputs
    merged_ref = pm.merge_and_unload()
    merged = merge_and_unload(ours)
    assert not lora_layers(merged)
    ref_w = {n: p for n, p in merged_ref.named_parameters()}
    for n, p in merged.named_parameters():
        assert p.shape == ref_w[n].shape
        assert torch.allclose(p, ref_w[n], rtol=0, atol=tol), f"merged weight {n} differs"  # exact even for DoRA
    for name in [n for n, _ in merged.named_modules() if n.split(".")[-1] in targets]:
        assert type(merged.get_submodule(name)) is type(base.get_submodule(name))
    with torch.no_grad():
        # merging reorders float sums, so equal to rounding relative to the logits' size
        lm = merged(ids).logits
        assert torch.allclose(lm, lo, rtol=0, atol=1e-5 * max(1.0, float(lo.abs().max()))), \
            f"merged model differs from the unmerged one by {(lm - lo).abs().max():.2e}"


@pytest.mark.parametrize("fixture,targets,kw", CASES, ids=lambda v: str(v) if not isinstance(v, dict) else
                         ",".join(f"{k}={x}" for k, x in v.items()))
def test_matches_peft_exactly(request, fixture, targets, kw):
    _check_against_peft(request.getfixturevalue(fixture), targets, kw, tol=0.0)


@pytest.mark.parametrize("fixture,targets,kw", DORA_CASES, ids=lambda v: str(v) if not isinstance(v, dict) else "dora")
def test_dora_matches_peft(request, fixture, targets, kw):
    _check_against_peft(request.getfixturevalue(fixture), targets, kw, tol=1e-6)


def test_init_matches_peft_distribution_and_shapes(tiny_llama):
    """Same seed -> same A as peft (Kaiming-uniform, a=sqrt 5), B zero, scaling alpha/r; shapes (r,k), (d,r)."""
    torch.manual_seed(3)
    pm = _peft_model(tiny_llama, ["q_proj"], r=4, lora_alpha=16)
    torch.manual_seed(3)
    ours = apply_lora(copy.deepcopy(tiny_llama), LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj"]))
    ref = pm.base_model.model.model.layers[0].self_attn.q_proj
    mine = ours.model.layers[0].self_attn.q_proj
    assert isinstance(mine, LoraLayer)
    assert mine.lora_A.weight.shape == (4, 32) and mine.lora_B.weight.shape == (32, 4)
    assert torch.equal(mine.lora_A.weight, ref.lora_A["default"].weight)
    assert torch.count_nonzero(mine.lora_B.weight) == 0
    assert mine.scaling == ref.scaling["default"] == 4.0
    bound = 1 / math.sqrt(32)  # kaiming_uniform(a=sqrt 5) bound is 1/sqrt(fan_in)
    assert mine.lora_A.weight.abs().max() <= bound


def test_conv1d_shapes(tiny_gpt2):
    model = apply_lora(copy.deepcopy(tiny_gpt2), LoraConfig(r=2, target_modules=["c_attn"]))
    layer = model.transformer.h[0].attn.c_attn
    assert layer.fan_in_fan_out and (layer.in_features, layer.out_features) == (32, 96)
    assert layer.lora_A.weight.shape == (2, 32) and layer.lora_B.weight.shape == (96, 2)
    assert layer.get_delta_weight().shape == layer.base_layer.weight.shape == (32, 96)


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_llama", "embedded_model"])
@pytest.mark.parametrize("kw", [{}, {"use_rslora": True}, {"use_dora": True}])
def test_identity_at_init(request, fixture, kw):
    base = request.getfixturevalue(fixture)
    targets = ["c_attn", "c_proj"] if fixture == "tiny_gpt2" else ["q_proj", "v_proj", "down_proj"]
    model = apply_lora(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=32, target_modules=targets, **kw))
    ids = _ids(base)
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, base(ids).logits, rtol=0, atol=1e-6)


def test_not_identity_without_zero_b(tiny_llama):
    model = apply_lora(copy.deepcopy(tiny_llama), LoraConfig(target_modules=["q_proj"], init_lora_weights=False))
    ids = _ids(tiny_llama)
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, tiny_llama(ids).logits, atol=1e-4)


def test_scaling_values():
    assert LoraConfig(r=8, lora_alpha=16).scaling == 2.0
    assert LoraConfig(r=16, lora_alpha=16, use_rslora=True).scaling == 4.0
    layer = LoraLayer(nn.Linear(6, 5), r=2, lora_alpha=6)
    assert layer.scaling == 3.0
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    x = torch.randn(4, 6)
    expected = layer.base_layer(x) + 3.0 * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_dropout_only_on_lora_path():
    torch.manual_seed(0)
    layer = LoraLayer(nn.Linear(8, 8), r=2, lora_alpha=2, lora_dropout=0.5).train()
    x = torch.randn(64, 8)
    # B = 0: the output is the base output exactly, whatever the dropout does
    assert torch.equal(layer(x), layer.base_layer(x))
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    torch.manual_seed(1)
    out = layer(x)
    torch.manual_seed(1)
    dropped = nn.functional.dropout(x, 0.5, training=True)
    assert torch.allclose(out, layer.base_layer(x) + layer.lora_B(layer.lora_A(dropped)), atol=1e-6)
    layer.eval()
    assert torch.allclose(layer(x), layer.base_layer(x) + layer.lora_B(layer.lora_A(x)), atol=1e-6)


@pytest.mark.parametrize("kw", [{}, {"use_dora": True}])
@pytest.mark.parametrize("fixture,targets", [("tiny_gpt2", ["c_attn", "c_fc"]), ("tiny_llama", ["q_proj", "v_proj"])])
def test_merge_unmerge_round_trip(request, fixture, targets, kw):
    base = request.getfixturevalue(fixture)
    model = apply_lora(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=targets, **kw))
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.weight.normal_(0, 0.1)
            if layer.use_dora:
                layer.lora_magnitude_vector.mul_(1.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = _ids(base)
    with torch.no_grad():
        unmerged = model(ids).logits
        merge_lora(model)
        assert all(layer.merged for layer in lora_layers(model).values())
        changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
        assert changed and all("base_layer.weight" in n for n in changed)
        merged = model(ids).logits
        unmerge_lora(model)
        again = model(ids).logits
    assert (unmerged - base(ids).logits).abs().max() > 1e-3
    assert torch.allclose(merged, unmerged, rtol=0, atol=1e-5)
    assert torch.allclose(again, unmerged, rtol=0, atol=1e-5)
    for n, p in model.named_parameters():
        assert torch.allclose(p, before[n], rtol=0, atol=1e-6), n


def test_task_switch_by_subtracting_and_adding(tiny_llama):
    model = apply_lora(copy.deepcopy(tiny_llama), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            for layer in lora_layers(model).values():
                layer.lora_B.weight.normal_(0, 0.1)
        adapters.append(lora_state_dict(model))
    ids = _ids(tiny_llama)
    with torch.no_grad():
        out2 = model(ids).logits
        load_lora_state_dict(model, adapters[0])
        out1 = model(ids).logits
        merge_lora(model)  # serve task 1 from merged weights
        assert torch.allclose(model(ids).logits, out1, atol=1e-5)
        with pytest.raises(ConfigError, match="unmerge"):
            load_lora_state_dict(model, adapters[1])
        unmerge_lora(model)
        load_lora_state_dict(model, adapters[1])
        merge_lora(model)
        assert torch.allclose(model(ids).logits, out2, atol=1e-5)


@pytest.mark.parametrize("fixture,targets", [("tiny_gpt2", ["c_attn", "c_proj"]),
                                             ("tiny_llama", ["q_proj", "k_proj", "v_proj", "down_proj"]),
                                             ("embedded_model", ["q_proj", "v_proj"])])
def test_parameter_count_equals_formula_and_peft(request, fixture, targets):
    base = request.getfixturevalue(fixture)
    r = 4
    model = apply_lora(copy.deepcopy(base), LoraConfig(r=r, target_modules=targets))
    report = lora_parameter_report(model)
    expected = 0
    for name, layer in lora_layers(model).items():
        assert report.per_module[name] == lora_param_count(layer.out_features, layer.in_features, r)
        expected += lora_param_count(layer.out_features, layer.in_features, r)
    assert report.trainable == expected == sum(report.per_module.values())
    assert report.total == sum(p.numel() for p in base.parameters()) + expected
    assert report.percentage == pytest.approx(100 * expected / report.total)
    trainable, total = _peft_model(base, targets, r=r).get_nb_trainable_parameters()
    assert (report.trainable, report.total) == (trainable, total)
    assert lora_param_count(4096, 4096, 8) == 65_536


def test_only_a_and_b_require_grad(tiny_llama):
    model = apply_lora(copy.deepcopy(tiny_llama), LoraConfig(target_modules=["q_proj", "v_proj"]))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert len(names) == 2 * len(lora_layers(model))
    dora = apply_lora(copy.deepcopy(tiny_llama), LoraConfig(target_modules=["q_proj"], use_dora=True))
    assert {n.split(".")[-1] for n, p in dora.named_parameters() if p.requires_grad} == {"weight",
                                                                                         "lora_magnitude_vector"}


def test_default_targets_follow_peft(tiny_gpt2, tiny_llama):
    assert {n.split(".")[-1] for n in lora_layers(apply_lora(copy.deepcopy(tiny_gpt2), LoraConfig()))} == {"c_attn"}
    assert {n.split(".")[-1] for n in lora_layers(apply_lora(copy.deepcopy(tiny_llama)))} == {"q_proj", "v_proj"}


def test_suffix_match_and_regex(tiny_llama):
    model = apply_lora(copy.deepcopy(tiny_llama), LoraConfig(target_modules=["self_attn.q_proj"]))
    assert len(lora_layers(model)) == 2
    model = apply_lora(copy.deepcopy(tiny_llama), LoraConfig(target_modules=r".*layers\.0\.self_attn\.(q|v)_proj"))
    assert sorted(lora_layers(model)) == ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]


@pytest.mark.parametrize("kw,match", [(dict(r=0), "positive integer"), (dict(r=-2), "positive integer"),
                                      (dict(r=2.5), "positive integer"), (dict(lora_alpha=0), "lora_alpha"),
                                      (dict(lora_alpha=-1.0), "lora_alpha"), (dict(lora_dropout=1.0), r"\[0, 1\)"),
                                      (dict(lora_dropout=-0.1), r"\[0, 1\)"), (dict(target_modules=[]), "non-empty"),
                                      (dict(init_lora_weights="pissa"), "init_lora_weights")])
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match) as err:
        LoraConfig(**kw)
    assert "How to fix:" in str(err.value)


def test_unknown_target_lists_existing_names(tiny_llama):
    with pytest.raises(ConfigError, match="q_proj") as err:
        apply_lora(copy.deepcopy(tiny_llama), LoraConfig(target_modules=["query", "v_proj"]))
    assert "'query'" in err.value.problem and "down_proj" in err.value.fix


def test_non_linear_target_and_double_apply(tiny_llama):
    with pytest.raises(ConfigError, match="not linear"):
        apply_lora(copy.deepcopy(tiny_llama), LoraConfig(target_modules=["input_layernorm"]))
    model = apply_lora(copy.deepcopy(tiny_llama), LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(ConfigError, match="already"):
        apply_lora(model, LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(ConfigError, match="nn.Linear"):
        LoraLayer(nn.LayerNorm(4))
    with pytest.raises(ConfigError, match="both"):
        apply_lora(model, LoraConfig(), r=2)


def test_rank_r_error():
    torch.manual_seed(0)
    u, v = torch.randn(20, 3), torch.randn(3, 15)
    low = u @ v
    assert rank_r_error(low, 3) < 1e-6 and rank_r_error(low, 2) > 0.01
    m = torch.randn(10, 10)
    s = torch.linalg.svdvals(m.double())
    errs = [rank_r_error(s, r) for r in range(11)]
    assert errs[0] == pytest.approx(1.0) and errs[-1] == 0.0
    assert all(a >= b for a, b in zip(errs, errs[1:]))
    u2, s2, vh2 = torch.linalg.svd(m.double())
    approx = u2[:, :4] @ torch.diag(s2[:4]) @ vh2[:4]
    assert errs[4] == pytest.approx(float(torch.linalg.norm(m.double() - approx) / torch.linalg.norm(m.double())))


def test_dora_with_dropout_matches_peft_in_training(tiny_llama):
    """With dropout active, DoRA's rescaled base path sees the dropped input, as in peft."""
    pm, ours = _pair(tiny_llama, ["q_proj", "v_proj"], r=4, lora_alpha=8, use_dora=True, lora_dropout=0.3)
    pm.train(); ours.train()
    ids = _ids(tiny_llama)
    torch.manual_seed(5)
    lp = pm(ids).logits
    torch.manual_seed(5)
    lo = ours(ids).logits
    pm.eval()
    with torch.no_grad():
        assert (lp - pm(ids).logits).abs().max() > 1e-4  # dropout really acted
    assert torch.allclose(lo, lp, rtol=0, atol=1e-5 * max(1.0, float(lp.detach().abs().max())))


def test_explorer_state_numbers(tiny_llama):
    """The widgets' numbers: counts by the formula, alpha/r, the rank-r error of the real update, the sweep."""
    from course_lib.widgets import draw_explorer, draw_static_grid, explorer_data, explorer_state

    tuned = copy.deepcopy(tiny_llama)
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in tuned.model.layers:  # a rank-2 update of q and v, a full-rank one of the MLP
            for proj in (layer.self_attn.q_proj, layer.self_attn.v_proj):
                proj.weight += torch.randn(proj.weight.shape[0], 2) @ torch.randn(2, proj.weight.shape[1])
            for proj in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
                proj.weight += torch.randn_like(proj.weight)
    sweep = [dict(targets="q,v", r=1, accuracy=0.6), dict(targets="q,v", r=4, accuracy=0.8)]
    data = explorer_data(tiny_llama, tuned, sweep, baseline=0.5, full=0.9)
    assert data.groups == ["q,v", "k,o", "mlp"] and len(data.shapes["q,v"]) == 4
    s = explorer_state(data, r=2, alpha=16, group="q,v")
    q_shape, v_shape = (32, 32), (16, 32)  # 2 KV heads of size 8
    assert s["trainable"] == 2 * (lora_param_count(*q_shape, 2) + lora_param_count(*v_shape, 2))
    assert s["scaling"] == 8.0 and s["rslora_scaling"] == pytest.approx(16 / math.sqrt(2))
    assert s["rank_error"] < 1e-6 and explorer_state(data, 1, 16, "q,v")["rank_error"] > 0.05
    assert explorer_state(data, 2, 16, "mlp")["rank_error"] > 0.5
    assert s["sweep_r"] == 1 or s["sweep_r"] == 4
    assert explorer_state(data, 4, 16, "q,v")["sweep_accuracy"] == 0.8
    assert explorer_state(data, 4, 16, "k,o")["sweep_accuracy"] is None
    with pytest.raises(ConfigError, match="target group"):
        explorer_state(data, 2, 16, "attention")
    import matplotlib
    matplotlib.use("Agg")
    assert len(draw_explorer(data, 2, 16, "q,v").axes) == 4
    assert len(draw_static_grid(data).axes) == 3

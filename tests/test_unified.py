"""The unified view (course_lib.methods.unified): the course's LoRA, adapters and prefix tuning are
special cases of one Δh parameterisation, equal on the same weights; invariants and errors."""
import copy

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.methods import adapters as A
from course_lib.methods import unified as U
from course_lib.methods.lora import LoraConfig, LoraLayer, apply_lora, lora_param_count
from course_lib.methods.prefix_tuning import (KVLayout, PrefixTuningConfig, apply_prefix_tuning,
                                              attention_with_prefix, prefix_tuning_cost)

ARCHS = ["tiny_gpt2", "tiny_llama"]
D = 32


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding in one row
    return {"input_ids": ids, "attention_mask": mask}


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def _randomise(params, seed=3, std=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g) * std)


def _lora_targets(model):
    return ["c_attn"] if hasattr(model, "transformer") else ["q_proj", "v_proj"]


# ----------------------------------------------------------------------------- Δh module
def test_delta_h_matches_hand_computation():
    torch.manual_seed(0)
    delta = U.DeltaH(6, 5, 3, "tanh", scaling=0.7, init="random")
    z = torch.randn(4, 6)
    expected = 0.7 * (torch.tanh(z @ delta.down.weight.T + delta.down.bias) @ delta.up.weight.T + delta.up.bias)
    torch.testing.assert_close(delta(z), expected)
    assert delta.down.weight.shape == (3, 6) and delta.up.weight.shape == (5, 3)


def test_zero_up_init_gives_zero_delta_but_a_gradient_on_up():
    torch.manual_seed(0)
    delta = U.DeltaH(D, D, 4, "relu")
    z = torch.randn(5, D)
    assert torch.count_nonzero(delta(z)) == 0
    (delta(z) * torch.randn(5, D)).sum().backward()
    assert delta.up.weight.grad.abs().sum() > 0          # so training moves away from zero
    assert delta.down.weight.grad.abs().sum() == 0       # up = 0 blocks down's gradient at step 0


# ----------------------------------------------------------------------------- LoRA as a special case
@pytest.mark.parametrize("arch", ARCHS)
def test_to_unified_rewrites_course_lora_with_identical_logits(arch, request):
    base = request.getfixturevalue(arch)
    lora = apply_lora(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=12, target_modules=_lora_targets(base),
                                                      init_lora_weights=False))
    batch = _batch()
    ref = _logits(lora, batch)
    U.to_unified(lora)
    assert not any(isinstance(m, LoraLayer) for m in lora.modules())
    layers = U.unified_layers(lora)
    assert layers and all(l.form == "parallel" and l.delta.function == "identity" for l in layers.values())
    assert all(l.delta.scaling == pytest.approx(12 / 4) for l in layers.values())
    torch.testing.assert_close(_logits(lora, batch), ref, rtol=0, atol=1e-6)


def test_unified_lora_config_equals_course_lora_on_copied_weights(tiny_llama):
    lora = apply_lora(copy.deepcopy(tiny_llama), LoraConfig(r=4, lora_alpha=8, init_lora_weights=False))
    uni = U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig.lora(r=4, lora_alpha=8))
    for name, layer in U.unified_layers(uni).items():
        src = lora.get_submodule(name)
        with torch.no_grad():
            layer.delta.down.weight.copy_(src.lora_A.weight)
            layer.delta.up.weight.copy_(src.lora_B.weight)
    batch = _batch()
    torch.testing.assert_close(_logits(uni, batch), _logits(lora, batch), rtol=0, atol=1e-6)


def test_unified_lora_equals_peft_lora(tiny_llama):
    peft = pytest.importorskip("peft")
    pm = peft.get_peft_model(copy.deepcopy(tiny_llama), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                                         init_lora_weights=False))
    uni = U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig.lora(r=4, lora_alpha=8))
    for name, layer in U.unified_layers(uni).items():
        src = pm.base_model.model.get_submodule(name)
        with torch.no_grad():
            layer.delta.down.weight.copy_(src.lora_A["default"].weight)
            layer.delta.up.weight.copy_(src.lora_B["default"].weight)
    batch = _batch()
    torch.testing.assert_close(_logits(uni, batch), _logits(pm, batch), rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- adapters as special cases
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("parallel", [False, True])
def test_to_unified_rewrites_course_adapters_with_identical_logits(arch, parallel, request):
    base = request.getfixturevalue(arch)
    model = A.apply_adapters(copy.deepcopy(base), A.AdapterConfig(placement="houlsby", bottleneck_size=4,
                                                                  parallel=parallel, scaling=2.0), name="task")
    _randomise([p for _, l in A.adapter_layers(model) for p in l.adapters["task"].parameters()])
    batch = _batch()
    ref = _logits(model, batch)
    U.to_unified(model)
    assert not A.adapter_layers(model)
    layers = U.unified_layers(model)
    assert len(layers) == 2 * 2 and {l.form for l in layers.values()} == {"parallel" if parallel else "sequential"}
    torch.testing.assert_close(_logits(model, batch), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_unified_adapter_configs_equal_course_adapters_on_copied_weights(arch, request):
    base = request.getfixturevalue(arch)
    for uconf, aconf in [(U.UnifiedConfig.adapter(4), A.AdapterConfig(placement="pfeiffer", bottleneck_size=4)),
                         (U.UnifiedConfig.parallel_adapter(4, scaling=4.0),
                          A.AdapterConfig(placement="pfeiffer", bottleneck_size=4, parallel=True, scaling=4.0))]:
        course = A.apply_adapters(copy.deepcopy(base), aconf, name="x")
        _randomise([p for _, l in A.adapter_layers(course) for p in l.adapters["x"].parameters()])
        uni = U.apply_unified(copy.deepcopy(base), uconf)
        for name, layer in U.unified_layers(uni).items():
            src = course.get_submodule(name).adapters["x"]
            with torch.no_grad():
                layer.delta.down.weight.copy_(src.adapter_down.weight)
                layer.delta.down.bias.copy_(src.adapter_down.bias)
                layer.delta.up.weight.copy_(src.adapter_up.weight)
                layer.delta.up.bias.copy_(src.adapter_up.bias)
        batch = _batch()
        torch.testing.assert_close(_logits(uni, batch), _logits(course, batch), rtol=0, atol=1e-6)


def test_sequential_and_parallel_differ_on_the_same_weights(tiny_llama):
    seq = U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig(form="sequential", init="random"))
    par = copy.deepcopy(seq)
    for layer in U.unified_layers(par).values():
        layer.form = "parallel"
    batch = _batch()
    assert (_logits(seq, batch) - _logits(par, batch)).abs().max() > 1e-3


# ----------------------------------------------------------------------------- prefix tuning
def test_prefix_delta_h_equals_course_attention_with_prefix():
    torch.manual_seed(0)
    T, P, dh = 6, 3, 8
    q, k, v = torch.randn(T, dh), torch.randn(T, dh), torch.randn(T, dh)
    pk, pv = torch.randn(P, dh), torch.randn(P, dh)
    ref = attention_with_prefix(q, k, v, pk, pv)
    res = U.prefix_delta_h(q, k, v, pk, pv)
    torch.testing.assert_close(res["out"], ref["output"])
    torch.testing.assert_close(res["lam"][:, 0], ref["lam"])
    torch.testing.assert_close(res["h"], ref["plain"])
    assert bool(((res["lam"] > 0) & (res["lam"] < 1)).all())


@pytest.mark.parametrize("arch", ARCHS)
def test_unified_prefix_attention_keeps_prefix_model_logits(arch, request):
    base = request.getfixturevalue(arch)
    torch.manual_seed(1)
    model = apply_prefix_tuning(copy.deepcopy(base), PrefixTuningConfig(num_virtual_tokens=3))
    batch = _batch()
    ref = _logits(model, batch)
    U.unified_prefix_attention(model)
    out = _logits(model, batch)
    gates = U.prefix_gates(model)
    model.base_model.set_attn_implementation("eager")
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert len(gates) == 2 and gates[0].shape == (3, 4, 9, 1)
    assert bool(((gates[0] > 0) & (gates[0] < 1)).all())


def test_prefix_parameters_are_the_down_and_up_of_delta_h(tiny_llama):
    """Δh = softmax(x W_q P_K^T) P_V: per layer W_up = P_V (l x d_kv), P_K (l x d_kv): 2 l d_kv numbers."""
    layout = KVLayout.from_config(tiny_llama.config)
    l = 5
    assert prefix_tuning_cost(layout, PrefixTuningConfig(num_virtual_tokens=l)) == \
        layout.num_layers * 2 * l * layout.token_dim
    model = apply_prefix_tuning(copy.deepcopy(tiny_llama), PrefixTuningConfig(num_virtual_tokens=l))
    assert model.trainable_parameters() == layout.num_layers * 2 * l * layout.token_dim


# ----------------------------------------------------------------------------- identity at init, counts
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("config", [U.UnifiedConfig(), U.UnifiedConfig.adapter(4, "attention"),
                                    U.UnifiedConfig.parallel_adapter(8), U.UnifiedConfig(function="gelu", form="sequential")])
def test_identity_at_init(arch, config, request):
    base = request.getfixturevalue(arch)
    batch = _batch()
    model = U.apply_unified(copy.deepcopy(base), copy.deepcopy(config))
    torch.testing.assert_close(_logits(model, batch), _logits(base, batch), rtol=0, atol=0)


def test_lora_config_identity_at_init(tiny_llama):
    model = U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig.lora(r=4, lora_alpha=8))
    torch.testing.assert_close(_logits(model, _batch()), _logits(tiny_llama, _batch()), rtol=0, atol=0)


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts_match_the_formulas(arch, request):
    base = request.getfixturevalue(arch)
    n_layers = 2
    for config, formula in [
        (U.UnifiedConfig.adapter(4), n_layers * A.adapter_parameter_count(D, 4)),
        (U.UnifiedConfig.parallel_adapter(6), n_layers * (2 * D * 6 + D + 6)),
        (U.UnifiedConfig(insertion="attention", bias=False, bottleneck_size=3), n_layers * 3 * 2 * D),
    ]:
        model = U.apply_unified(copy.deepcopy(base), config)
        assert _trainable(model) == formula == U.expected_unified_parameters(base, config)
    targets = _lora_targets(base)
    model = U.apply_unified(copy.deepcopy(base), U.UnifiedConfig.lora(r=4, target_modules=targets))
    lora = apply_lora(copy.deepcopy(base), LoraConfig(r=4, target_modules=targets))
    d_out = 3 * D if targets == ["c_attn"] else None
    expected = n_layers * (lora_param_count(d_out, D, 4) if d_out else
                           lora_param_count(D, D, 4) + lora_param_count(16, D, 4))  # v_proj: 2 KV heads x 8
    assert _trainable(model) == _trainable(lora) == expected


def test_layers_to_transform(tiny_llama):
    model = U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig(layers_to_transform=[1]))
    assert list(U.unified_layers(model)) == ["model.layers.1.mlp"]


def test_mam_counts_identity_of_its_adapter_and_training_signal(tiny_llama):
    cfg = U.MAMConfig(num_virtual_tokens=3, bottleneck_size=5, scaling=4.0)
    model = U.apply_mam(copy.deepcopy(tiny_llama), cfg)
    layout = KVLayout.from_config(tiny_llama.config)
    expected = 2 * 3 * layout.num_layers * layout.token_dim + 2 * (2 * D * 5 + D + 5)
    assert model.trainable_parameters() == expected == U.mam_parameter_count(tiny_llama, cfg)
    layers = U.unified_layers(model)
    assert len(layers) == 2 and all(l.form == "parallel" and l.delta.scaling == 4.0 for l in layers.values())
    # the adapter half starts at zero: MAM equals prefix tuning alone on the same prefix
    prefix_only = apply_prefix_tuning(copy.deepcopy(tiny_llama), PrefixTuningConfig(num_virtual_tokens=3))
    prefix_only.prefixes.load_state_dict(model.prefixes.state_dict())
    batch = _batch()
    torch.testing.assert_close(_logits(model, batch), _logits(prefix_only, batch), rtol=0, atol=1e-6)
    batch["labels"] = batch["input_ids"]
    model(**batch).loss.backward()
    assert all(l.delta.up.weight.grad.abs().sum() > 0 for l in layers.values())
    assert all(p.grad is None for n, p in model.base_model.named_parameters() if "delta" not in n)


def test_parallel_adapter_trains(tiny_llama):
    model = U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig.parallel_adapter(8))
    batch = _batch()
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(15):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,needle", [
    (dict(form="diagonal"), "form"), (dict(function="softmax"), "prefix_delta_h"),
    (dict(bottleneck_size=0), "bottleneck_size"), (dict(bottleneck_size=True), "bottleneck_size"),
    (dict(scaling=float("nan")), "scaling"), (dict(insertion="mlp"), "insertion"), (dict(insertion=[]), "insertion"),
    (dict(init="ones"), "init"), (dict(layers_to_transform=[-1]), "layers_to_transform"),
])
def test_config_errors_name_problem_and_fix(kwargs, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        U.UnifiedConfig(**kwargs)
    assert "How to fix" in str(err.value)


def test_apply_errors(tiny_llama):
    with pytest.raises(ConfigError, match="not found"):
        U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig(insertion=["query"]))
    with pytest.raises(ConfigError, match="not linear layers"):
        U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig(insertion=["mlp"]))
    with pytest.raises(ConfigError, match="block"):
        U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig(layers_to_transform=[5]))
    with pytest.raises(ConfigError, match="UnifiedConfig"):
        U.apply_unified(copy.deepcopy(tiny_llama), A.AdapterConfig())
    with pytest.raises(ConfigError, match="both"):
        U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig(), form="parallel")
    twice = U.apply_unified(copy.deepcopy(tiny_llama), U.UnifiedConfig())
    with pytest.raises(ConfigError, match="already"):
        U.apply_unified(twice, U.UnifiedConfig())
    with pytest.raises(ConfigError, match="no LoRA layer"):
        U.to_unified(copy.deepcopy(tiny_llama))
    with pytest.raises(ConfigError, match="DoRA"):
        U.to_unified(apply_lora(copy.deepcopy(tiny_llama), LoraConfig(r=2, use_dora=True)))
    with pytest.raises(ConfigError, match="MAMConfig"):
        U.apply_mam(copy.deepcopy(tiny_llama), U.UnifiedConfig())
    with pytest.raises(ConfigError):
        U.MAMConfig(num_virtual_tokens=0)
    fused = A.apply_adapters(copy.deepcopy(tiny_llama), A.AdapterConfig(bottleneck_size=2), name="a")
    A.add_adapter(fused, "b", A.AdapterConfig(bottleneck_size=2))
    A.add_fusion(fused, ["a", "b"])
    with pytest.raises(ConfigError, match="fusion"):
        U.to_unified(fused)


def test_unified_table_names_the_four_choices():
    for method in ("LoRA", "prefix tuning", "adapter", "parallel adapter", "MAM"):
        assert {"function", "insertion", "form", "scaling"} <= set(U.UNIFIED_TABLE[method])
    assert U.UNIFIED_TABLE["adapter"]["form"] == "sequential" and U.UNIFIED_TABLE["LoRA"]["form"] == "parallel"


# ----------------------------------------------------------------------------- the capstone comparison
def test_every_method_builds_with_the_formula_count(tiny_llama):
    from course_lib.comparison import METHODS, build_method
    from course_lib.tasks import review_verdicts

    task = review_verdicts({"train": 4, "validation": 2, "test": 2, "test_unseen": 2})
    before = {k: v.clone() for k, v in tiny_llama.state_dict().items()}
    for method in METHODS:
        m, formula = build_method(method, tiny_llama, None if method != "prompt" else _CharTokenizer(), task)
        assert _trainable(m) == formula, method
    assert all(torch.equal(before[k], v) for k, v in tiny_llama.state_dict().items())  # base untouched
    with pytest.raises(ConfigError, match="unknown method"):
        build_method("dora", tiny_llama, None, task)


class _CharTokenizer:
    def __call__(self, text):
        return {"input_ids": [ord(c) % 64 for c in text]}


def test_compare_methods_rows_and_json(tmp_path):
    from course_lib.comparison import compare_methods, load_comparison, save_comparison
    from course_lib.models import load_model
    from course_lib.runtime import select_runtime
    from course_lib.tasks import review_verdicts

    rt = select_runtime("embedded")
    model, tok = load_model("embedded-xs", runtime=rt)
    task = review_verdicts({"train": 32, "validation": 8, "test": 8, "test_unseen": 8})
    res = compare_methods(rt, ["lora", "mam"], model=model, tokenizer=tok, task=task, steps=2, batch_size=4,
                          eval_examples=8, progress=False)
    assert [r["method"] for r in res.rows] == ["lora", "mam"]
    for r in res.rows:
        assert r["trainable"] == r["formula"] and 0 <= r["accuracy"] <= 1 and r["peak_memory_bytes"] > 0
        assert r["seconds"] > 0 and r["steps"] == 2
    assert "lora" in res.table().lower() or "LoRA" in res.table()
    # part-way test accuracy at the default checkpoint (a third of 2 steps rounds to 0: only step 1), then the last step
    assert res.meta["checkpoints"] == [1]
    for r in res.rows:
        assert [s for s, _ in r["curve"]] == [1, 2] and r["curve"][-1][1] == r["accuracy"]
    # measuring part way does not change the training: same losses and accuracy without checkpoints
    again = compare_methods(rt, ["lora", "mam"], model=model, tokenizer=tok, task=task, steps=2, batch_size=4,
                            eval_examples=8, progress=False, checkpoints=())
    for r, q in zip(res.rows, again.rows):
        assert (q["final_loss"], q["accuracy"], q["shifted_accuracy"]) == (r["final_loss"], r["accuracy"], r["shifted_accuracy"])
        assert q["curve"] == [[2, q["accuracy"]]]
    from course_lib.comparison import Capstone, build_method

    def lora_row(steps, checkpoints):   # the same seed, so the same batches in the same order
        bench = Capstone.prepare(rt, model=model, tokenizer=tok, task=task, steps=steps, batch_size=4, eval_examples=8,
                                 progress=False, measure_memory=False, checkpoints=checkpoints)
        torch.manual_seed(0)
        return bench.measure("lora", build_method("lora", model, tok, task)[0], 0)

    three, one = lora_row(3, (1,)), lora_row(1, ())
    assert [s for s, _ in three["curve"]] == [1, 3] and three["curve"][0][1] == one["accuracy"]   # step 1 of 3 = 1 step alone
    for bad in ((0,), (3,), (1, 1), (1.5,)):
        with pytest.raises(ConfigError, match="checkpoints"):
            Capstone.prepare(rt, model=model, tokenizer=tok, task=task, steps=3, batch_size=4, eval_examples=8,
                             checkpoints=bad)
    # the shifted split (unseen adjectives) is measured beside the test split, untrained model included
    from course_lib.training import accuracy

    assert res.meta["shifted_baseline"] == accuracy(model, tok, task, task["test_unseen"])
    assert all(0 <= r["shifted_accuracy"] <= 1 for r in res.rows) and "shifted" in res.table()
    without = review_verdicts({"train": 32, "validation": 8, "test": 8, "test_unseen": 8})
    del without.splits["test_unseen"]
    plain = compare_methods(rt, ["lora"], model=model, tokenizer=tok, task=without, steps=1, batch_size=4,
                            eval_examples=8, progress=False)
    assert plain.rows[0]["shifted_accuracy"] is None and "shifted" not in plain.table()
    path = save_comparison(res, tmp_path / "c.json")
    back = load_comparison(path)
    assert back.rows == res.rows and back.meta["environment"]["torch"] == torch.__version__
    with pytest.raises(ConfigError, match="unknown"):
        compare_methods(rt, ["sgd"], model=model, tokenizer=tok, task=task)
    with pytest.raises(ConfigError, match="tokenizer"):
        compare_methods(rt, ["lora"], model=model, task=task)


def test_accuracy_plot_has_log_x_and_labels():
    import matplotlib
    matplotlib.use("Agg")
    from course_lib.plotting.unified import plot_accuracy_vs_parameters

    rows = [{"label": "a", "trainable": 100, "accuracy": 0.9}, {"label": "b", "trainable": 10**6, "accuracy": 0.95}]
    ax = plot_accuracy_vs_parameters(rows, baseline=0.5)
    assert ax.get_xscale() == "log" and "trainable" in ax.get_xlabel() and "%" in ax.get_ylabel()

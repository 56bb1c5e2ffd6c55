"""Bottleneck adapters (course_lib.methods.adapters): invariants and hand computations.

peft has no Houlsby/Pfeiffer adapters and AdapterHub's ``adapters`` does not import with
transformers 5, so the reference is a hand computation of the adapter and of one decoder block.
"""
import copy

import pytest
import torch
import torch.nn.functional as F

from course_lib.errors import ConfigError
from course_lib.methods import adapters as A

D = 32  # hidden size of the conftest models
ARCHS = ["tiny_gpt2", "tiny_llama"]


def _ids(seed=1, shape=(2, 9)):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 64, shape, generator=g)


def _randomise(model, name, std=0.2, seed=3):
    """Give adapter ``name`` non-zero weights (as training would)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in A.adapter_layers(model):
            if name in layer.adapters:
                for p in layer.adapters[name].parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * std)


def _blocks(model):
    return model.transformer.h if hasattr(model, "transformer") else model.model.layers


# ----------------------------------------------------------------------------- the module
def test_bottleneck_adapter_matches_hand_computation():
    torch.manual_seed(0)
    ad = A.BottleneckAdapter(D, 4, "relu", scaling=0.5)
    _ = [torch.nn.init.normal_(p) for p in ad.parameters()]
    h = torch.randn(3, 5, D)
    Wd, bd, Wu, bu = ad.adapter_down.weight, ad.adapter_down.bias, ad.adapter_up.weight, ad.adapter_up.bias
    assert Wd.shape == (4, D) and Wu.shape == (D, 4)
    expected = h + 0.5 * (torch.relu(h @ Wd.T + bd) @ Wu.T + bu)
    torch.testing.assert_close(ad(h), expected)
    torch.testing.assert_close(ad.delta(h), expected - h)


@pytest.mark.parametrize("act,fn", [("relu", torch.relu), ("gelu", F.gelu), ("silu", F.silu), ("tanh", torch.tanh)])
def test_non_linearities(act, fn):
    torch.manual_seed(0)
    ad = A.BottleneckAdapter(D, 4, act)
    torch.nn.init.normal_(ad.adapter_up.weight)
    h = torch.randn(2, D)
    torch.testing.assert_close(ad(h), h + fn(ad.adapter_down(h)) @ ad.adapter_up.weight.T + ad.adapter_up.bias)


def test_zero_up_init_is_exact_identity_and_houlsby_init_is_near_identity():
    torch.manual_seed(0)
    h = torch.randn(4, 7, D)
    zero = A.BottleneckAdapter(D, 8)
    assert torch.equal(zero(h), h)
    assert zero.adapter_down.weight.abs().sum() > 0, "W_down must be random so W_up gets a gradient"
    near = A.BottleneckAdapter(D, 8, init="houlsby", init_std=1e-2)
    diff = (near(h) - h).abs().max().item()
    assert 0 < diff < 1e-2 * h.abs().max().item()


def test_parameter_formula_of_one_adapter():
    for d, m in [(32, 2), (64, 4), (576, 36)]:
        ad = A.BottleneckAdapter(d, m)
        assert sum(p.numel() for p in ad.parameters()) == A.adapter_parameter_count(d, m) == 2 * d * m + d + m


# ----------------------------------------------------------------------------- insertion
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer", ["attention"]])
@pytest.mark.parametrize("parallel", [False, True])
def test_identity_at_init(arch, placement, parallel, request):
    base = request.getfixturevalue(arch)
    ids = _ids()
    with torch.no_grad():
        ref = base(ids).logits
        model = A.apply_adapters(copy.deepcopy(base), A.AdapterConfig(placement=placement, parallel=parallel,
                                                                      reduction_factor=4))
        out = model(ids).logits
    assert torch.equal(out, ref)
    _randomise(model, "default")
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, ref, atol=1e-3), "a trained adapter must change the output"


@pytest.mark.parametrize("arch", ARCHS)
def test_only_adapter_parameters_train(arch, request):
    model = A.apply_adapters(copy.deepcopy(request.getfixturevalue(arch)), A.AdapterConfig(placement="houlsby",
                                                                                          bottleneck_size=4))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".adapters.default." in n for n in trainable)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    ids = _ids(shape=(4, 12))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    loss = model(ids, labels=ids).loss
    loss.backward()
    ad = A.adapter_layers(model)[0][1].adapters["default"]
    assert ad.adapter_up.weight.grad.abs().sum() > 0, "zero-up: W_up gets a gradient at step 0"
    assert ad.adapter_down.weight.grad.abs().sum() == 0, "zero-up: W_down gets no gradient while W_up = 0"
    down_init = ad.adapter_down.weight.detach().clone()
    losses = [loss.item()]
    opt.step()
    opt.zero_grad()
    for _ in range(20):
        loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05
    for n, p in model.named_parameters():
        if n in base_before:
            assert torch.equal(p, base_before[n]), f"{n} is frozen but changed"
    assert not torch.equal(ad.adapter_down.weight, down_init), "W_down trains once W_up is non-zero"
    assert ad.adapter_up.weight.abs().sum() > 0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("config,sites", [
    (A.AdapterConfig(placement="houlsby", reduction_factor=16), 2),
    (A.AdapterConfig(placement="pfeiffer", bottleneck_size=5), 1),
    (A.AdapterConfig(placement=["attention", "ffn"], bottleneck_size=3, layers_to_transform=[1]), 2),
])
def test_parameter_count_equals_formula(arch, config, sites, request):
    model = A.apply_adapters(copy.deepcopy(request.getfixturevalue(arch)), config)
    m = config.bottleneck_size or D // config.reduction_factor
    n_blocks = len(config.layers_to_transform or range(2))
    formula = n_blocks * sites * (2 * D * m + D + m)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == formula == A.count_adapter_parameters(model, "default") == A.expected_adapter_parameters(model, config)


def _count_calls(model, name="default"):
    calls = {}
    for qual, layer in A.adapter_layers(model):
        if name in layer.adapters:
            calls[qual] = 0

            def hook(mod, inp, out, qual=qual):
                calls[qual] += 1
            layer.adapters[name].adapter_down.register_forward_hook(hook)
    return calls


@pytest.mark.parametrize("arch,attn", [("tiny_gpt2", "attn"), ("tiny_llama", "self_attn")])
def test_placement_houlsby_and_pfeiffer(arch, attn, request):
    base = request.getfixturevalue(arch)
    for placement, children in [("houlsby", {attn, "mlp"}), ("pfeiffer", {"mlp"})]:
        model = A.apply_adapters(copy.deepcopy(base), A.AdapterConfig(placement=placement, reduction_factor=8))
        calls = _count_calls(model)
        with torch.no_grad():
            model(_ids())
        assert {q.rsplit(".", 1)[1] for q in calls} == children
        assert len(calls) == 2 * len(children)  # two blocks
        assert all(c == 1 for c in calls.values()), calls


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("parallel", [False, True])
def test_block_output_equals_hand_computation(arch, parallel, request):
    """Recompute block 0 by hand: the adapter acts on the sublayer output before the residual add
    (sequential), or reads the sublayer input and adds to its output (parallel)."""
    model = A.apply_adapters(copy.deepcopy(request.getfixturevalue(arch)),
                             A.AdapterConfig(placement="houlsby", bottleneck_size=4, parallel=parallel, scaling=0.7))
    _randomise(model, "default")
    block = _blocks(model)[0]
    seen = {}
    block.register_forward_pre_hook(lambda mod, args, kwargs: seen.update(args=args, kwargs=kwargs), with_kwargs=True)
    block.register_forward_hook(lambda mod, args, out: seen.update(out=out))
    with torch.no_grad():
        model(_ids())
    x = seen["args"][0] if seen["args"] else seen["kwargs"]["hidden_states"]
    kw = {k: v for k, v in seen["kwargs"].items() if k != "hidden_states"}

    def adapter(ad, h):
        Wd, bd, Wu, bu = ad.adapter_down.weight, ad.adapter_down.bias, ad.adapter_up.weight, ad.adapter_up.bias
        return 0.7 * (torch.relu(h @ Wd.T + bd) @ Wu.T + bu)

    if arch == "tiny_gpt2":
        ln1, attn, ln2, mlp = block.ln_1, block.attn, block.ln_2, block.mlp
        attn_kw = {"attention_mask": kw.get("attention_mask")}
    else:
        ln1, attn, ln2, mlp = block.input_layernorm, block.self_attn, block.post_attention_layernorm, block.mlp
        attn_kw = {k: kw[k] for k in ("attention_mask", "position_embeddings", "position_ids") if k in kw}
    with torch.no_grad():
        u = ln1(x)
        a = attn.base_layer(u, **attn_kw)[0]
        a = a + adapter(attn.adapters["default"], u if parallel else a)
        h = x + a
        v = ln2(h)
        f = mlp.base_layer(v)
        f = f + adapter(mlp.adapters["default"], v if parallel else f)
        expected = h + f
    out = seen["out"][0] if isinstance(seen["out"], tuple) else seen["out"]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_embedded_model_identity_at_init_and_formula():
    from course_lib.models import load_model

    model, tok = load_model("embedded-xs", device="cpu")
    ids = tok(["review: the soup was tasty | verdict:"], return_tensors="pt").input_ids
    with torch.no_grad():
        ref = model(ids).logits
    cfg = A.AdapterConfig(placement="houlsby")
    A.apply_adapters(model, cfg)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref)
    d, n = model.config.hidden_size, model.config.num_hidden_layers
    m = d // 16
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == n * 2 * (2 * d * m + d + m)


# ----------------------------------------------------------------------------- names, save/load
@pytest.mark.parametrize("arch", ARCHS)
def test_swapping_adapters_by_name(arch, request):
    base = request.getfixturevalue(arch)
    ids = _ids()
    with torch.no_grad():
        ref = base(ids).logits
    model = A.apply_adapters(copy.deepcopy(base), A.AdapterConfig(placement="pfeiffer", bottleneck_size=4), name="a")
    _randomise(model, "a", seed=1)
    A.add_adapter(model, "b", A.AdapterConfig(placement="houlsby", bottleneck_size=2))
    _randomise(model, "b", seed=2)
    assert A.active_adapter(model) == "b"
    assert [n for n, p in model.named_parameters() if p.requires_grad] and \
        all(".adapters.b." in n for n, p in model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        out_b = model(ids).logits
        A.set_active_adapter(model, "a")
        out_a = model(ids).logits
        assert all(".adapters.a." in n for n, p in model.named_parameters() if p.requires_grad)
        assert not torch.allclose(out_a, out_b, atol=1e-3)
        A.set_active_adapter(model, "b")
        assert torch.equal(model(ids).logits, out_b)
        A.set_active_adapter(model, None)
        assert torch.equal(model(ids).logits, ref)
        assert not any(p.requires_grad for p in model.parameters())
        A.set_active_adapter(model, "a")
        assert torch.equal(model(ids).logits, out_a)
        A.delete_adapter(model, "a")
        assert A.active_adapter(model) is None and set(A.adapter_configs(model)) == {"b"}
        A.set_active_adapter(model, "b")
        assert torch.equal(model(ids).logits, out_b)
        A.delete_adapter(model, "b")
        assert A.adapter_layers(model) == []
        assert list(model.state_dict()) == list(base.state_dict())
        assert torch.equal(model(ids).logits, ref)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip(arch, request, tmp_path):
    base = request.getfixturevalue(arch)
    ids = _ids()
    cfg = A.AdapterConfig(placement=["attention", "ffn"], bottleneck_size=3, non_linearity="gelu", parallel=True,
                          scaling=2.0, layers_to_transform=[1])
    model = A.apply_adapters(copy.deepcopy(base), cfg, name="task")
    _randomise(model, "task")
    with torch.no_grad():
        expected = model(ids).logits
    path = A.save_adapter(model, tmp_path / "task", "task")
    from safetensors.torch import load_file
    saved = load_file(str(path / A.WEIGHTS_FILE))
    assert len(saved) == 2 * 4 and all(".adapter_" in k and ".1." in k for k in saved), "adapter weights only"
    assert sum(v.numel() for v in saved.values()) == A.expected_adapter_parameters(model, cfg)
    fresh = A.load_adapter(copy.deepcopy(base), path)
    assert set(A.adapter_configs(fresh)) == {"task"} and A.adapter_configs(fresh)["task"] == cfg
    with torch.no_grad():
        assert torch.equal(fresh(ids).logits, expected)
    renamed = A.load_adapter(copy.deepcopy(base), path, name="other")
    assert A.active_adapter(renamed) == "other"


# ----------------------------------------------------------------------------- AdapterFusion
def test_fusion_module_matches_hand_computation():
    torch.manual_seed(0)
    fus = A.AdapterFusion(D, ["a", "b", "c"])
    assert torch.equal(fus.value.weight, torch.eye(D)) and torch.equal(fus.value.bias, torch.zeros(D))
    torch.nn.init.normal_(fus.value.weight)
    h, z = torch.randn(2, 5, D), torch.randn(2, 5, 3, D)
    q = h @ fus.query.weight.T + fus.query.bias
    k = z @ fus.key.weight.T + fus.key.bias
    v = z @ fus.value.weight.T + fus.value.bias
    w = torch.softmax((q.unsqueeze(-2) * k).sum(-1) / D ** 0.5, dim=-1)
    torch.testing.assert_close(fus(h, z), (w.unsqueeze(-1) * v).sum(-2))
    torch.testing.assert_close(fus.last_weights.sum(-1), torch.ones(2, 5))


@pytest.mark.parametrize("arch", ARCHS)
def test_fusion_over_two_adapters(arch, request):
    base = request.getfixturevalue(arch)
    ids = _ids()
    model = A.apply_adapters(copy.deepcopy(base), A.AdapterConfig(bottleneck_size=4), name="a")
    A.add_adapter(model, "b", A.AdapterConfig(bottleneck_size=4))
    _randomise(model, "a", seed=5)
    with torch.no_grad():  # b = a: a mixture of identical outputs with V = I is that output
        for _, layer in A.adapter_layers(model):
            layer.adapters["b"].load_state_dict(layer.adapters["a"].state_dict())
        A.set_active_adapter(model, "a")
        out_a = model(ids).logits
    A.add_fusion(model, ["a", "b"])
    assert A.active_adapter(model) == ["a", "b"]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".fusions.a,b." in n for n in trainable)
    assert sum(p.numel() for n, p in model.named_parameters() if p.requires_grad) == 2 * 3 * (D * D + D)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, out_a, rtol=1e-5, atol=1e-5)
    weights = A.fusion_weights(model)
    assert len(weights) == 2 and all(w.shape == (2, 9, 2) for w in weights.values())
    _randomise(model, "b", seed=6)  # now the fusion output lies between the two adapters' outputs
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if ".adapters." in n}
    for _ in range(3):
        model(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before), "adapters frozen"
    A.delete_adapter(model, "b")
    assert A.active_adapter(model) is None and not any(len(l.fusions) for _, l in A.adapter_layers(model))


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,word", [
    (dict(bottleneck_size=0), "bottleneck_size"),
    (dict(bottleneck_size=2.5), "bottleneck_size"),
    (dict(reduction_factor=0), "reduction_factor"),
    (dict(non_linearity="sigmoidish"), "non_linearity"),
    (dict(placement="everywhere"), "placement"),
    (dict(placement=[]), "placement"),
    (dict(placement=["ffn", "ffn"]), "placement"),
    (dict(placement=["mlp.c_proj"]), "placement"),
    (dict(init="kaiming"), "init"),
    (dict(scaling=float("nan")), "scaling"),
    (dict(layers_to_transform=[-1]), "layers_to_transform"),
])
def test_config_errors(kwargs, word):
    with pytest.raises(ConfigError, match=word) as err:
        A.AdapterConfig(**kwargs)
    assert "How to fix:" in str(err.value)


def test_usage_errors(tiny_llama, tmp_path):
    model = A.apply_adapters(copy.deepcopy(tiny_llama), A.AdapterConfig(), name="a")
    cases = [
        (lambda: A.add_adapter(model, "a"), "already exists"),
        (lambda: A.add_adapter(model, "x.y"), "name"),
        (lambda: A.add_adapter(model, "c", {"placement": "houlsby"}), "AdapterConfig"),
        (lambda: A.add_adapter(model, "c", A.AdapterConfig(layers_to_transform=[5])), "layers_to_transform"),
        (lambda: A.add_adapter(model, "c", A.AdapterConfig(reduction_factor=64)), "bottleneck of 0"),
        (lambda: A.set_active_adapter(model, "nope"), "no adapter named 'nope'"),
        (lambda: A.delete_adapter(model, "nope"), "no adapter named"),
        (lambda: A.add_fusion(model, ["a"]), "at least two"),
        (lambda: A.set_active_adapter(model, ["a", "a2"]), "no adapter named 'a2'"),
        (lambda: A.load_adapter(model, tmp_path), "no saved adapter"),
        (lambda: A.apply_adapters(torch.nn.Linear(3, 3), A.AdapterConfig()), "GPT-2 or Llama"),
    ]
    for call, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            call()
        assert "How to fix:" in str(err.value)
    A.add_adapter(model, "b")
    with pytest.raises(ConfigError, match="add_fusion"):
        A.set_active_adapter(model, ["a", "b"])
    assert set(A.adapter_configs(model)) == {"a", "b"}, "failed calls must not leave adapters behind"


def test_loading_into_a_different_model_fails(tiny_llama, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    model = A.apply_adapters(copy.deepcopy(tiny_llama), A.AdapterConfig(bottleneck_size=2))
    A.save_adapter(model, tmp_path / "a", "default")
    deeper = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                          num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(ConfigError, match="does not fit"):
        A.load_adapter(deeper, tmp_path / "a")
    assert A.adapter_layers(deeper) == [] and A.adapter_configs(deeper) == {}

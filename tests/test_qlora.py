"""From-scratch QLoRA against peft's 4-bit LoRA layer (bitsandbytes on CPU), and its invariants."""
import copy
import warnings

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.methods import nf4, qlora
from course_lib.methods.lora import LoraLayer

pytest.importorskip("bitsandbytes")
peft = pytest.importorskip("peft")
warnings.filterwarnings("ignore", message=".*(kernels|Paged|rounding errors|deprecated).*")

TARGETS = ["q_proj", "v_proj"]


@pytest.fixture
def llama64():
    """A 2-layer Llama with hidden size 64 (bnb's CPU kernels want rows of at least one block)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def _peft_qlora(model, tmp_path, double_quant):
    from transformers import AutoModelForCausalLM

    model.save_pretrained(tmp_path)
    # dtype stated, as course_lib.models.load_model does: with dtype=None transformers 4.x loads every
    # non-quantised weight in fp16 (its bitsandbytes default) and quantises from fp16 copies; 5.x's
    # "auto" reads this checkpoint's fp32. Both sides of the comparison then start from the same fp32.
    q = AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=qlora.bnb_config(double_quant),
                                             dtype=torch.float32, device_map="cpu")
    pm = peft.get_peft_model(q, peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    with torch.no_grad():
        for m in pm.modules():
            if hasattr(m, "lora_B") and isinstance(m.lora_B, torch.nn.ModuleDict):
                m.lora_B["default"].weight.normal_(0, 0.1)
    return pm.train()  # train mode: bnb's eval-mode CPU path repacks the weight for another kernel


def _copy_lora(pm, mine):
    pairs = 0
    with torch.no_grad():
        for name, m in pm.named_modules():
            if hasattr(m, "lora_A") and isinstance(m.lora_A, torch.nn.ModuleDict):
                me = mine.get_submodule(name.removeprefix("base_model.model."))
                me.lora_A.weight.copy_(m.lora_A["default"].weight)
                me.lora_B.weight.copy_(m.lora_B["default"].weight)
                pairs += 1
    return pairs


def test_qlora_model_equals_peft_4bit_lora(llama64, tmp_path):
    pm = _peft_qlora(llama64, tmp_path, double_quant=False)
    mine = qlora.apply_qlora(copy.deepcopy(llama64), r=4, lora_alpha=8, target_modules=TARGETS,
                             double_quant=False).train()
    assert _copy_lora(pm, mine) == 4
    # every quantised layer holds the same bytes and scales as transformers' 4-bit loading
    bnb_layers = {n.removeprefix("base_model.model."): m for n, m in pm.named_modules()
                  if type(m).__name__ == "Linear4bit" and not hasattr(m, "lora_A")}
    mine_layers = qlora.linear4bit_layers(mine)
    assert set(bnb_layers) == set(mine_layers) and len(mine_layers) == 14  # 7 linears x 2 layers, not lm_head
    for name, layer in mine_layers.items():
        assert torch.equal(layer.qweight, bnb_layers[name].weight.data.reshape(-1)), name
        assert torch.equal(layer.absmax, bnb_layers[name].weight.quant_state.absmax), name
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    out_peft = pm(input_ids=ids, labels=ids)
    out_mine = mine(input_ids=ids, labels=ids)
    assert torch.equal(out_mine.logits, out_peft.logits)
    out_peft.loss.backward()
    out_mine.loss.backward()
    g_peft = pm.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight.grad
    g_mine = mine.model.layers[0].self_attn.q_proj.lora_A.weight.grad
    assert torch.allclose(g_mine, g_peft, atol=1e-6, rtol=1e-5)


def test_qlora_layer_with_double_quant_equals_peft(llama64, tmp_path):
    pm = _peft_qlora(llama64, tmp_path, double_quant=True)
    peft_layer = pm.base_model.model.model.layers[1].self_attn.v_proj
    layer = qlora.QLoraLinear(qlora.Linear4bit.from_bnb(peft_layer.base_layer), r=4, lora_alpha=8)
    with torch.no_grad():
        layer.lora_A.weight.copy_(peft_layer.lora_A["default"].weight)
        layer.lora_B.weight.copy_(peft_layer.lora_B["default"].weight)
        x = torch.randn(3, 5, 64)
        assert torch.equal(layer(x), peft_layer(x))
    # a from-scratch double quantisation differs from bnb's only in the few 8-bit scale codes where bnb's CPU
    # kernel does not pick the nearest level (tests/test_nf4.py)
    mine = qlora.apply_qlora(copy.deepcopy(llama64), r=4, lora_alpha=8, target_modules=TARGETS).train()
    _copy_lora(pm, mine)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(mine(ids).logits, pm(ids).logits, atol=1e-4)


def test_identity_at_init_and_only_lora_trains(llama64):
    base = qlora.quantize_model(copy.deepcopy(llama64), qlora.QLoraConfig(target_modules=TARGETS))
    model = qlora.apply_qlora(copy.deepcopy(llama64), qlora.QLoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    ids = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, base(ids).logits)  # B = 0
        assert not torch.equal(model(ids).logits, llama64(ids).logits)  # but the base is quantised
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_A." in n or ".lora_B." in n for n in trainable) and len(trainable) == 8
    expected = 2 * (4 * (64 + 64) + 4 * (64 + 32))  # q_proj 64->64, v_proj 64->32 (2 KV heads of 16)
    assert sum(trainable.values()) == expected
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, qlora.QLoraLinear) and isinstance(layer, LoraLayer)
    assert layer.base_layer.qweight.dtype == torch.uint8 and not layer.base_layer.qweight.requires_grad
    before = layer.base_layer.qweight.clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(layer.base_layer.qweight, before)
    assert layer.lora_B.weight.abs().sum() > 0


def test_merge_into_4bit_base_is_lossy(llama64):
    model = qlora.apply_qlora(copy.deepcopy(llama64), r=4, lora_alpha=8, target_modules=TARGETS).eval()
    with torch.no_grad():
        for layer in qlora.lora_layers(model).values():
            layer.lora_B.weight.normal_(0, 0.05)
    ids = torch.randint(0, 64, (2, 10))
    layer = model.model.layers[0].self_attn.q_proj
    err = qlora.merge_error(layer)
    assert 0 < err["mean_abs"] <= err["max_abs"] and err["relative"] < 0.2
    exact = layer.base_layer.weight + layer.get_delta_weight()
    with torch.no_grad():
        before = model(ids).logits
        qlora.merge_qlora(model)
        after = model(ids).logits
    assert not qlora.lora_layers(model) and isinstance(model.model.layers[0].self_attn.q_proj, qlora.Linear4bit)
    merged_w = model.model.layers[0].self_attn.q_proj.weight
    assert torch.allclose((merged_w - exact).abs().max(), torch.tensor(err["max_abs"]))
    diff = (after - before).abs().max().item()
    assert 1e-4 < diff < 1.0, diff
    with pytest.raises(ConfigError, match="cannot be undone"):
        layer.unmerge()


def test_storage_is_about_4127_bits_per_weight(llama64):
    model = qlora.quantize_model(copy.deepcopy(llama64), qlora.QLoraConfig(target_modules=TARGETS))
    n = sum(m.in_features * m.out_features for m in qlora.linear4bit_layers(model).values())
    bits = 8 * qlora.quantized_storage_bytes(model) / n
    assert 4.12 < bits < 4.2  # small matrices pay a partly filled second-level block
    single = qlora.Linear4bit.from_linear(torch.nn.Linear(1024, 1024))
    assert 8 * single.storage_bytes() / 1024 ** 2 == pytest.approx(nf4.bits_per_parameter(), abs=1e-4)


def test_load_qlora_bnb_trains_on_cpu():
    from course_lib.runtime import select_runtime

    from course_lib.models import load_qlora_bnb

    pm, tok = load_qlora_bnb("embedded-xs", qlora.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS),
                             runtime=select_runtime("embedded"))
    assert type(pm).__name__ == "PeftModelForCausalLM"
    trainable = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    n4 = sum(type(m).__name__ == "Linear4bit" for m in pm.modules())
    assert n4 >= 14
    ids = tok(["review: good film | verdict: plus"] * 2, return_tensors="pt")["input_ids"]
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2)
    pm.train()
    losses = []
    for _ in range(4):
        loss = pm(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_paged_adamw_equals_adamw_on_cpu():
    import bitsandbytes as bnb

    torch.manual_seed(0)
    a, b = torch.nn.Linear(32, 32), torch.nn.Linear(32, 32)
    b.load_state_dict(a.state_dict())
    oa = torch.optim.AdamW(a.parameters(), lr=1e-2, weight_decay=0.01)
    ob = bnb.optim.PagedAdamW(b.parameters(), lr=1e-2, weight_decay=0.01)
    for _ in range(5):
        x = torch.randn(8, 32)
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6)
    assert not torch.equal(a.weight, torch.nn.Linear(32, 32).weight)


def test_bad_input_raises_clear_errors(llama64):
    for bad in (dict(r=0), dict(quant_type="nf3"), dict(blocksize=0), dict(use_dora=True),
                dict(compute_dtype="float8"), dict(lora_dropout=1.5)):
        with pytest.raises(ConfigError, match="How to fix"):
            qlora.QLoraConfig(target_modules=TARGETS, **bad)
    with pytest.raises(ConfigError, match="not found"):
        qlora.apply_qlora(copy.deepcopy(llama64), target_modules=["query"])
    with pytest.raises(ConfigError, match="not linear layers that get quantised"):
        qlora.apply_qlora(copy.deepcopy(llama64), target_modules=["lm_head"])
    with pytest.raises(ConfigError, match="both"):
        qlora.apply_qlora(copy.deepcopy(llama64), qlora.QLoraConfig(target_modules=TARGETS), r=4)
    twice = qlora.apply_qlora(copy.deepcopy(llama64), target_modules=TARGETS)
    with pytest.raises(ConfigError, match="already"):
        qlora.apply_qlora(twice, target_modules=TARGETS)
    with pytest.raises(ConfigError, match="Linear4bit"):
        qlora.QLoraLinear(torch.nn.Linear(4, 4))
    with pytest.raises(ConfigError, match="nn.Linear"):
        qlora.Linear4bit.from_linear(torch.nn.Conv1d(4, 4, 1))
    with pytest.raises(ConfigError, match="nf4"):
        qlora.bnb_config(quant_type="int4")


def test_linear4bit_backward_dequantises_again_and_saves_no_weight():
    """The frozen 4-bit base must not leave its full-precision weight to autograd (else QLoRA saves
    no memory in a training step): the gradient w.r.t. the input is right, and no (out, in) tensor is saved."""
    from course_lib.methods.qlora import Linear4bit

    torch.manual_seed(0)
    dense = torch.nn.Linear(128, 64, bias=True)
    layer = Linear4bit.from_linear(dense)
    x = torch.randn(3, 5, 128, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        y = layer(x)
    assert (64, 128) not in saved and (128, 64) not in saved, f"a full weight is saved for backward: {saved}"
    y.square().sum().backward()
    ref_x = x.detach().clone().requires_grad_(True)
    ref = torch.nn.functional.linear(ref_x, layer.weight, layer.bias)
    ref.square().sum().backward()
    assert torch.allclose(y, ref, atol=1e-6) and torch.allclose(x.grad, ref_x.grad, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(layer(x), y.detach())

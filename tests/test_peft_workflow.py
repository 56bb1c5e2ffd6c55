"""course_lib.peft_workflow: the peft save/reload/switch/merge workflow, target_modules discovery, PiSSA's split."""
import copy

import pytest
import torch

from course_lib import peft_workflow as pw
from course_lib.errors import ConfigError

peft = pytest.importorskip("peft")


def _inputs(vocab=64, seed=0):
    ids = torch.randint(1, vocab, (2, 7), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _nonzero_b(model, seed):
    """Give every lora_B a random value, so the adapter changes the model (as training would)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def test_adaptable_layers_of_a_llama(tiny_llama):
    report = pw.adaptable_layers(tiny_llama)
    groups = {g.suffix: g for g in report}
    assert report.accepted == ["down_proj", "embed_tokens", "gate_proj", "k_proj", "lm_head", "o_proj", "q_proj",
                               "up_proj", "v_proj"]
    assert groups["q_proj"].count == 2 and groups["q_proj"].shapes == {(32, 32): 2}
    assert groups["k_proj"].shapes == {(16, 32): 2}                       # 2 KV heads of 8: d = 16, k = 32
    assert groups["gate_proj"].kind == "Linear" and groups["down_proj"].shapes == {(32, 64): 2}
    assert groups["embed_tokens"].kind == "Embedding" and groups["embed_tokens"].shapes == {(64, 32): 1}
    assert not groups["input_layernorm"].peft_lora and groups["input_layernorm"].count == 2
    assert [g.peft_lora for g in report] == sorted((g.peft_lora for g in report), reverse=True)
    assert "q_proj" in str(report) and "model.layers.0.self_attn.q_proj" in str(report)


def test_adaptable_layers_of_a_gpt2_finds_its_conv1d_names(tiny_gpt2):
    groups = {g.suffix: g for g in pw.adaptable_layers(tiny_gpt2)}
    assert groups["c_attn"].kind == "Conv1D" and groups["c_attn"].shapes == {(96, 32): 2}   # q, k, v fused: 3 x 32
    assert groups["c_proj"].shapes == {(32, 32): 2, (32, 128): 2}          # attention and MLP share the suffix
    assert groups["c_fc"].shapes == {(128, 32): 2}
    assert {"wte", "wpe"} <= set(pw.adaptable_layers(tiny_gpt2).accepted)
    assert not any(s in groups for s in ("q_proj", "v_proj"))


@pytest.mark.parametrize("fixture,targets", [("tiny_gpt2", ["c_attn", "c_fc"]), ("tiny_llama", ["q_proj", "up_proj"])])
def test_found_names_work_as_peft_targets(request, fixture, targets):
    base = request.getfixturevalue(fixture)
    model = pw.peft_lora(copy.deepcopy(base), targets, r=4)
    shapes = [s for g in pw.adaptable_layers(base) if g.suffix in targets for s, n in g.shapes.items() for _ in range(n)]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(4 * (d + k) for d, k in shapes)


def test_all_linear_is_peft_s_shorthand(tiny_gpt2):
    model = pw.peft_lora(copy.deepcopy(tiny_gpt2), "all-linear", r=2)
    wrapped = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == {"c_attn", "c_proj", "c_fc"}                      # not lm_head, not the embeddings


@pytest.mark.parametrize("targets,match", [(["q_proj"], r"(?s)\['q_proj'\] not found in GPT2LMHeadModel.*c_attn"),
                                           (["ln_1"], r"LayerNorm, not layers peft's LoRA can wrap")])
def test_a_name_the_model_lacks_gets_the_course_error(tiny_gpt2, targets, match):
    with pytest.raises(ConfigError, match=match) as err:
        pw.peft_lora(copy.deepcopy(tiny_gpt2), targets)
    assert "How to fix" in str(err.value) and "c_attn" in str(err.value)


def test_save_reload_switch_and_merge(tiny_llama, tmp_path):
    inputs = _inputs()
    first = _nonzero_b(pw.peft_lora(copy.deepcopy(tiny_llama), ["q_proj", "v_proj"], r=4), seed=1)
    second = _nonzero_b(pw.peft_lora(copy.deepcopy(tiny_llama), ["q_proj", "v_proj"], r=4), seed=2)
    first.save_pretrained(tmp_path / "first")
    second.save_pretrained(tmp_path / "second")
    tiny_llama.save_pretrained(tmp_path / "base")
    files = pw.list_files(tmp_path / "first")
    assert set(files) == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    assert pw.files_size(tmp_path / "first") == sum(files.values())
    lora_numbers = sum(p.numel() for p in first.parameters() if p.requires_grad)
    assert lora_numbers * 4 < files["adapter_model.safetensors"] < lora_numbers * 4 + 4096   # fp32 + a header
    assert pw.files_size(tmp_path / "first") < pw.files_size(tmp_path / "base") / 5

    reloaded = peft.PeftModel.from_pretrained(copy.deepcopy(tiny_llama), tmp_path / "first")
    assert pw.max_logit_diff(reloaded, first, inputs) == 0.0
    reloaded.load_adapter(tmp_path / "second", adapter_name="second")
    reloaded.set_adapter("second")
    assert pw.max_logit_diff(reloaded, second, inputs) == 0.0
    assert pw.max_logit_diff(reloaded, first, inputs) > 1e-3
    reloaded.set_adapter("default")
    assert pw.max_logit_diff(reloaded, first, inputs) == 0.0

    merged = reloaded.merge_and_unload()
    assert pw.max_logit_diff(merged, first, inputs) < 1e-5
    assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in tiny_llama.parameters())
    assert not any("lora" in n for n, _ in merged.named_modules())


def test_auto_peft_model_loads_the_base_from_a_local_path(tiny_llama, tmp_path):
    tiny_llama.save_pretrained(tmp_path / "base")
    base = type(tiny_llama).from_pretrained(tmp_path / "base").eval()   # name_or_path is now the local directory
    adapter = _nonzero_b(pw.peft_lora(copy.deepcopy(base), ["q_proj"], r=2), seed=3)
    adapter.save_pretrained(tmp_path / "adapter")
    auto = peft.AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter")
    assert pw.max_logit_diff(auto, adapter, _inputs()) == 0.0


def test_files_size_and_logit_diff_errors(tmp_path):
    with pytest.raises(ConfigError, match="nothing at"):
        pw.files_size(tmp_path / "missing")
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    assert pw.files_size(tmp_path / "a.bin") == 10 == pw.files_size(tmp_path)
    with pytest.raises(ConfigError, match="cannot be compared"):
        pw.max_logit_diff(torch.zeros(2, 3), torch.zeros(3, 2))


def test_pissa_split_is_what_peft_initialises(tiny_llama):
    r, alpha = 4, 8
    original = tiny_llama.model.layers[0].self_attn.q_proj.weight.detach().clone()
    principal, residual = pw.pissa_split(original, r)
    assert torch.linalg.matrix_rank(principal) == r
    assert torch.allclose(principal + residual, original, atol=1e-6)
    s = torch.linalg.svdvals(original)
    assert torch.allclose(torch.linalg.svdvals(residual)[:len(s) - r], s[r:], atol=1e-5)   # the tail is left

    model = pw.peft_lora(copy.deepcopy(tiny_llama), ["q_proj"], r=r, lora_alpha=alpha, init_lora_weights="pissa")
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    scale = layer.scaling["default"]
    product = scale * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    assert torch.allclose(product, principal, atol=1e-5)
    assert torch.allclose(layer.base_layer.weight, residual, atol=1e-5)
    assert pw.max_logit_diff(model, tiny_llama, _inputs()) < 1e-4        # unchanged at init
    with pytest.raises(ConfigError, match="1 <= r <= min"):
        pw.pissa_split(original, 0)

"""The shared layer-finding machinery (course_lib.methods.targets) and the configs that refuse what cannot work."""
import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.methods import targets
from course_lib.methods.lora import LoraConfig, apply_lora


def test_list_matches_exact_and_dotted_suffix_only(tiny_llama):
    found = targets.find_targets(tiny_llama, ["q_proj"])
    assert found == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    assert not targets.matches("model.layers.0.self_attn.xq_proj", ["q_proj"])  # a suffix must follow a dot


def test_string_is_a_regex_over_the_whole_name(tiny_llama):
    assert targets.find_targets(tiny_llama, r".*\.1\.self_attn\.(q|v)_proj") == [
        "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]


def test_bare_short_name_as_string_explains_the_regex_rule(tiny_llama):
    with pytest.raises(ConfigError) as err:
        targets.find_targets(tiny_llama, "q_proj")
    text = str(err.value)
    assert "regular expression" in text and "whole name" in text
    assert "target_modules=['q_proj']" in text  # the fix names the list form


def test_unknown_target_lists_the_valid_names(tiny_llama):
    with pytest.raises(ConfigError, match="not found") as err:
        targets.find_targets(tiny_llama, ["query"])
    assert "q_proj" in str(err.value) and "down_proj" in str(err.value)


def test_non_linear_target_and_skip(tiny_llama):
    with pytest.raises(ConfigError, match="not linear layers"):
        targets.find_targets(tiny_llama, ["input_layernorm"])
    with pytest.raises(ConfigError, match="excludes"):
        targets.find_targets(tiny_llama, ["lm_head"], skip=["lm_head"])


def test_shapes_for_linear_and_conv1d(tiny_llama, tiny_gpt2):
    assert targets.linear_shape(tiny_llama.model.layers[0].mlp.up_proj) == (64, 32)     # (d, k) = (out, in)
    assert targets.linear_shape(tiny_gpt2.transformer.h[0].attn.c_attn) == (96, 32)     # Conv1D stores (in, out)
    with pytest.raises(ConfigError, match="known shape"):
        targets.linear_shape(torch.nn.LayerNorm(4))


def test_set_module_swaps_in_place(tiny_llama):
    new = torch.nn.Identity()
    targets.set_module(tiny_llama, "model.layers.0.mlp", new)
    assert tiny_llama.model.layers[0].mlp is new


def test_context_length(tiny_llama, tiny_gpt2):
    assert targets.context_length(tiny_llama) == 64 and targets.context_length(tiny_gpt2) == 64
    assert targets.context_length(torch.nn.Linear(2, 2)) is None


# --- configs that refuse what cannot work ------------------------------------------------------------
def test_lora_rank_above_min_d_k_is_refused(tiny_llama):
    # q_proj is 32 x 32 and k_proj 16 x 32 (2 KV heads of 8): r=20 fits q but not k
    with pytest.raises(ConfigError, match=r"r=20 is larger than min\(d, k\)=16") as err:
        apply_lora(tiny_llama, LoraConfig(r=20, target_modules=["q_proj", "k_proj"]))
    assert "1 <= r <= 16" in str(err.value)
    assert all(p.requires_grad for p in tiny_llama.parameters())  # refused before anything changed
    apply_lora(tiny_llama, LoraConfig(r=16, target_modules=["q_proj", "k_proj"]))  # the bound itself is fine


def test_qlora_rank_and_regex_errors(tiny_llama):
    from course_lib.methods.qlora import QLoraConfig, apply_qlora

    config = QLoraConfig(r=64, target_modules=["q_proj"])
    with pytest.raises(ConfigError, match="QLoRA: r=64"):
        apply_qlora(tiny_llama, config)
    with pytest.raises(ConfigError, match="regular expression"):
        apply_qlora(tiny_llama, QLoraConfig(r=4, target_modules="v_proj"))


def test_apply_qlora_leaves_its_config_as_given(tiny_llama):
    from course_lib.methods.qlora import QLoraConfig, apply_qlora

    config = QLoraConfig(r=4)
    apply_qlora(tiny_llama, config)
    assert config.target_modules is None


@pytest.mark.parametrize("module", ["prefix_tuning", "prompt_tuning"])
@pytest.mark.parametrize("bad", [True, False, 0, -3, 2.0])
def test_num_virtual_tokens_must_be_a_positive_int(module, bad):
    import importlib

    mod = importlib.import_module(f"course_lib.methods.{module}")
    cls = mod.PrefixTuningConfig if module == "prefix_tuning" else mod.PromptTuningConfig
    with pytest.raises(ConfigError, match="positive integer"):
        cls(num_virtual_tokens=bad)


def test_prefix_longer_than_the_context_is_refused(tiny_llama):
    from course_lib.methods.prefix_tuning import PrefixTuningConfig, apply_prefix_tuning

    with pytest.raises(ConfigError, match="context of 64"):
        apply_prefix_tuning(tiny_llama, PrefixTuningConfig(num_virtual_tokens=64))
    model = apply_prefix_tuning(tiny_llama, PrefixTuningConfig(num_virtual_tokens=16))
    model(torch.zeros(1, 48, dtype=torch.long))                       # 16 + 48 = 64 fits exactly
    with pytest.raises(ConfigError, match=r"16 virtual tokens \+ 49 input tokens") as err:
        model(torch.zeros(1, 49, dtype=torch.long))
    assert "max_length=48" in str(err.value)


def test_soft_prompt_longer_than_the_context_is_refused(tiny_llama):
    from course_lib.methods.prompt_tuning import PromptTuningConfig, apply_prompt_tuning

    with pytest.raises(ConfigError, match="do not fit"):
        apply_prompt_tuning(tiny_llama, PromptTuningConfig(num_virtual_tokens=100))
    model = apply_prompt_tuning(tiny_llama, PromptTuningConfig(num_virtual_tokens=8))
    with pytest.raises(ConfigError, match="shorten the inputs to at most 56"):
        model(torch.zeros(2, 60, dtype=torch.long))


def test_nf4_refuses_a_meta_tensor_clearly():
    from course_lib.methods.nf4 import quantize_4bit

    with pytest.raises(ConfigError, match="'meta' device") as err:
        quantize_4bit(torch.empty(64, 64, device="meta"))
    assert "load the real weights" in str(err.value)

"""Memory arithmetic of fine-tuning, checked against the bytes of real tensors."""
import copy

import pytest
import torch

from course_lib import memory, registry
from course_lib.errors import ConfigError


def _batch(vocab=64, b=2, t=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (b, t), generator=g)
    return {"input_ids": x, "labels": x}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd-momentum", "sgd"])
def test_full_finetuning_estimate_equals_measured_tensor_bytes(tiny_llama, optimizer):
    est = memory.estimate_training_memory(tiny_llama, "full", "fp32", optimizer)
    measured = memory.measure_training_step(copy.deepcopy(tiny_llama), _batch(), optimizer=optimizer)
    n = sum(p.numel() for p in tiny_llama.parameters())
    assert est.n_params == n == est.n_trainable
    assert est.weights == measured.weights == 4 * n
    assert est.gradients == measured.gradients == 4 * n
    assert est.optimizer == measured.optimizer, (est.optimizer, measured.optimizer)
    assert measured.peak >= measured.weights + measured.gradients + measured.optimizer


def test_adamw_keeps_two_fp32_states_and_a_step_counter_per_tensor(tiny_gpt2):
    est = memory.estimate_training_memory(tiny_gpt2, "full", "fp32", "adamw")
    n = sum(p.numel() for p in tiny_gpt2.parameters())
    n_tensors = len(list(tiny_gpt2.parameters()))
    assert est.optimizer == 8 * n + 4 * n_tensors
    measured = memory.measure_training_step(copy.deepcopy(tiny_gpt2), _batch())
    assert measured.optimizer == est.optimizer and measured.gradients == est.gradients


@pytest.mark.parametrize("fixture,targets", [("tiny_llama", ("q_proj", "v_proj")), ("tiny_llama", ("q_proj", "k_proj", "down_proj")),
                                             ("tiny_gpt2", ("c_attn",))])
def test_lora_estimate_matches_peft(request, fixture, targets):
    from peft import LoraConfig, get_peft_model

    model = copy.deepcopy(request.getfixturevalue(fixture))
    est = memory.estimate_training_memory(model, "lora", "fp32", r=4, target_modules=targets)
    assert est.n_trainable == memory.lora_parameters(model, r=4, target_modules=targets)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=list(targets), lora_dropout=0.0,
                                                  fan_in_fan_out=fixture == "tiny_gpt2"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert est.n_trainable == trainable
    measured = memory.measure_training_step(peft_model, _batch())
    assert measured.weights == est.weights        # fp32 base + fp32 adapters
    assert measured.gradients == est.gradients and measured.optimizer == est.optimizer


@pytest.mark.parametrize("key", ["llama-2-7b", "qwen2-72b", "gpt3-175b"])
def test_registry_sizes_and_sixteen_bytes_per_parameter(key):
    n = memory.count_params(key)
    stated = registry.MODELS[key].params
    assert abs(n - stated) / stated < 0.01
    for precision in ("fp32", "mixed"):
        est = memory.estimate_training_memory(key, "full", precision, "adamw")
        assert est.n_params == n
        assert 16 <= est.bytes_per_param < 16.001, est.bytes_per_param   # + step counters
    assert memory.estimate_training_memory(key, "full", "fp32", "sgd").bytes_per_param == 8
    lora = memory.estimate_training_memory(key, "lora", "mixed")
    qlora = memory.estimate_training_memory(key, "qlora", "mixed")
    assert lora.n_trainable < 1e-3 * n and qlora.n_trainable == lora.n_trainable
    assert qlora.total < lora.total / 3 < memory.estimate_training_memory(key, "full", "mixed").total / 3
    text = str(memory.estimate_training_memory(key, "full", "mixed"))
    assert all(word in text for word in ("weights", "gradients", "optimizer states", "total", key))


def test_llama_7b_numbers():
    est = memory.estimate_training_memory("llama-2-7b", "full", "mixed")
    n = 6_738_415_616
    assert est.n_params == n
    assert est.weights == 6 * n and est.gradients == 2 * n
    assert est.optimizer == 8 * n + 4 * len(memory.parameter_inventory("llama-2-7b"))
    lora = memory.estimate_training_memory("llama-2-7b", "lora", "fp32", r=8)
    assert lora.n_trainable == 32 * 8 * 2 * (4096 + 4096)   # q_proj and v_proj in 32 layers


def test_nf4_double_quant_bits_equal_bitsandbytes_storage():
    bnb = pytest.importorskip("bitsandbytes")
    n_in, n_out = 1024, 1024
    weight = torch.nn.Linear(n_in, n_out, bias=False).weight.data
    p = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", compress_statistics=True)
    layer = bnb.nn.Linear4bit(n_in, n_out, bias=False, quant_type="nf4", compress_statistics=True)
    layer.weight = p
    layer = layer.to("cpu")
    qs = layer.weight.quant_state
    stored = layer.weight.nbytes + qs.absmax.nbytes + qs.state2.absmax.nbytes
    assert stored * 8 / (n_in * n_out) == pytest.approx(memory.NF4_DQ_BITS, abs=1e-12)
    assert round(memory.NF4_DQ_BITS, 3) == 4.127


def test_qlora_base_is_quantised_linear_layers_only(tiny_llama):
    est = memory.estimate_training_memory(tiny_llama, "qlora", "mixed", r=2)
    inv = memory.parameter_inventory(tiny_llama)
    n_lin = sum(t.numel for t in inv if t.linear is not None and not t.module.endswith("lm_head"))
    n = sum(t.numel for t in inv)
    trainable = memory.lora_parameters(tiny_llama, r=2)
    assert est.weights == pytest.approx(n_lin * memory.NF4_DQ_BITS / 8 + (n - n_lin) * 2 + trainable * 6)
    no_dq = memory.estimate_training_memory(tiny_llama, "qlora", "mixed", r=2, double_quant=False)
    assert no_dq.weights > est.weights


def test_storage_per_task():
    full = memory.storage_per_task("llama-2-7b", 10, "full")
    lora = memory.storage_per_task("llama-2-7b", 10, "lora", r=8)
    n = memory.count_params("llama-2-7b")
    assert full["total"] == 10 * full["per_task"] == 10 * 2 * n
    assert lora["base"] == 2 * n and lora["per_task"] == 2 * memory.lora_parameters("llama-2-7b", 8)
    assert lora["total"] == lora["base"] + 10 * lora["per_task"]


def test_cpu_meter_counts_allocations_and_frees():
    meter = memory.LiveTensorBytes("cpu")
    with meter:
        a = torch.empty(1000, dtype=torch.float32)
        start = meter.current
        b = torch.zeros(500, dtype=torch.float64)
        view = b[:10]
        assert meter.current - start == 4000
        del b
        assert meter.current - start == 4000    # the view keeps the storage alive
        del view
        assert meter.current == start
    assert meter.peak >= start + 4000 and a.numel() == 1000


def test_measured_peak_exceeds_states_by_activations(tiny_llama):
    small = memory.measure_training_step(copy.deepcopy(tiny_llama), _batch(t=8))
    large = memory.measure_training_step(copy.deepcopy(tiny_llama), _batch(b=8, t=48))
    assert large.weights == small.weights and large.optimizer == small.optimizer
    assert large.peak > small.peak        # activations grow with batch x length
    rough = memory.activation_bytes(tiny_llama, 8, 48, bytes_per_value=4)
    assert rough > 0


def test_errors_name_the_problem_and_the_fix(tiny_llama):
    cases = [lambda: memory.estimate_training_memory(tiny_llama, method="prefix"),
             lambda: memory.estimate_training_memory(tiny_llama, precision="fp8"),
             lambda: memory.estimate_training_memory(tiny_llama, optimizer="lion"),
             lambda: memory.estimate_training_memory(tiny_llama, "lora", r=0),
             lambda: memory.estimate_training_memory(tiny_llama, "lora", batch_size=4),
             lambda: memory.storage_per_task(tiny_llama, 0)]
    for case in cases:
        with pytest.raises(ConfigError, match="How to fix"):
            case()
    with pytest.raises(ConfigError, match="q_proj"):
        memory.lora_parameters(tiny_llama, 4, target_modules=("query",))
    with pytest.raises(ConfigError, match="labels"):
        memory.measure_training_step(tiny_llama, {"input_ids": torch.zeros(1, 3, dtype=torch.long)})


# ------------------------------------------------------------------------------ inference and the T4 budget
def test_inference_estimate_counts_weights_logits_and_cache():
    from course_lib.registry import architecture_config

    cfg = architecture_config("qwen2.5-0.5b-instruct")
    n = memory.count_params("qwen2.5-0.5b-instruct")
    all_pos = memory.estimate_inference_memory("qwen2.5-0.5b-instruct", batch_size=64, seq_len=165, dtype="bf16")
    few = memory.estimate_inference_memory("qwen2.5-0.5b-instruct", batch_size=64, seq_len=165, dtype="bf16",
                                           logits_positions=8)
    assert all_pos.weights == few.weights == 2 * n and all_pos.gradients == 0 == all_pos.optimizer
    assert all_pos.activations - few.activations == 64 * (165 - 8) * cfg.vocab_size * 2   # the logits saved
    gen = memory.estimate_inference_memory("qwen2.5-0.5b-instruct", batch_size=4, seq_len=100, new_tokens=28)
    no_cache = memory.estimate_inference_memory("qwen2.5-0.5b-instruct", batch_size=4, seq_len=100)
    kv = 2 * cfg.num_hidden_layers * 4 * 128 * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 2
    assert gen.activations - no_cache.activations == kv


def test_inference_estimate_bounds_a_measured_no_grad_forward(tiny_llama):
    """The live-tensor peak of a no-grad forward (weights excluded: they exist before) stays within the estimate."""
    from course_lib.memory import LiveTensorBytes

    est = memory.estimate_inference_memory(tiny_llama, batch_size=4, seq_len=32, dtype="fp32")
    x = torch.randint(0, 64, (4, 32))
    with torch.no_grad(), LiveTensorBytes() as live:
        tiny_llama(input_ids=x)
    assert 0 < live.peak <= est.activations


def test_device_dtypes_follow_the_precision_policy(monkeypatch):
    assert memory.device_dtypes("cpu") == ("fp32", "fp32")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))
    assert memory.device_dtypes("cuda") == ("amp", "fp16")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))
    assert memory.device_dtypes("cuda") == ("amp", "bf16")


def test_every_heavy_cell_fits_a_t4_unless_opted_in():
    table = memory.heavy_cell_table("cuda", (7, 5))
    assert len(table) == len(memory.HEAVY_CELLS) >= 4
    for row in table:
        if row["opt_in"]:
            assert row["predicted GB"] > 15, row       # why it is an opt-in
        else:
            assert 0 < row["predicted GB"] < 15, row

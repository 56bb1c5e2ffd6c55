"""One protocol for every method: Config, apply(model, config), expected_parameters(model, config)."""
import copy
import importlib

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.methods.base import AdaptedModel
from course_lib.methods.catalog import METHODS, get_method

WRAPPING = {"prefix", "prompt", "mam"}  # the methods that must feed something in on every call


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("key", list(METHODS))
def test_every_method_counts_what_it_trains(key, tiny_llama):
    method = METHODS[key]
    config = method.Config()
    expected = method.expected_parameters(tiny_llama, config)
    before = {n: p.detach().clone() for n, p in tiny_llama.state_dict().items()}
    tuned = method.apply(copy.deepcopy(tiny_llama), config)
    assert _trainable(tuned) == expected > 0
    assert isinstance(tuned, AdaptedModel) == (key in WRAPPING)
    assert all(torch.equal(before[n], p) for n, p in tiny_llama.state_dict().items())  # the formula reads only
    ids = torch.randint(0, 64, (2, 5))
    assert tuned(input_ids=ids).logits.shape[-1] == 64


@pytest.mark.parametrize("key", ["lora", "qlora", "bitfit", "prefix", "prompt", "adapter", "parallel_adapter", "full"])
def test_each_module_exposes_the_protocol(key):
    module = importlib.import_module(f"course_lib.methods.{METHODS[key].module}")
    for name in ("Config", "apply", "expected_parameters"):
        assert callable(getattr(module, name)), f"{module.__name__} lacks {name}"


@pytest.mark.parametrize("key,kwargs", [("lora", dict(r=4, use_dora=True, target_modules=["q_proj", "down_proj"])),
                                        ("prompt", dict(num_virtual_tokens=3, encoder="lstm", encoder_hidden_size=6)),
                                        ("prompt", dict(num_virtual_tokens=3, encoder="mlp", encoder_hidden_size=6)),
                                        ("prefix", dict(num_virtual_tokens=3, prefix_projection=True)),
                                        ("bitfit", dict(train_norms=True)),
                                        ("full", dict(train_embeddings=False))])
def test_formula_holds_beyond_the_defaults(key, kwargs, tiny_llama):
    method = METHODS[key]
    config = method.Config(**kwargs)
    assert _trainable(method.apply(copy.deepcopy(tiny_llama), config)) == method.expected_parameters(tiny_llama, config)


def test_bitfit_formula_on_gpt2_conv1d(tiny_gpt2):
    method = METHODS["bitfit"]
    config = method.Config()
    assert _trainable(method.apply(copy.deepcopy(tiny_gpt2), config)) == method.expected_parameters(tiny_gpt2, config)


def test_unknown_method_lists_the_keys():
    with pytest.raises(ConfigError, match="lora"):
        get_method("loraa")


def test_capstone_builds_every_method_through_the_catalog(tiny_llama):
    from course_lib.comparison import MethodSettings, build_method

    class Task:
        label_words = ("yes", "no")

    class Tok:
        def __call__(self, text):
            return {"input_ids": [1, 2]}

    settings = MethodSettings(r=2, bottleneck_size=2, num_virtual_tokens=2, mam_virtual_tokens=2)
    for key in METHODS:
        model, formula = build_method(key, tiny_llama, Tok(), Task(), settings)
        assert _trainable(model) == formula, key

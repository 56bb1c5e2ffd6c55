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


# --- the perspectives table (objective 3.3) -------------------------------------------------------
SUPPORT_MODULES = {"base", "catalog", "targets", "nf4"}  # hold no method: the wrapper, this table, matching, a data type


def test_every_method_module_declares_its_perspectives():
    import pkgutil

    import course_lib.methods
    from course_lib.methods.catalog import method_modules

    modules = {info.name for info in pkgutil.iter_modules(course_lib.methods.__path__)}
    declared = method_modules()
    assert set(declared) == modules - SUPPORT_MODULES   # a new method module without PERSPECTIVES fails here
    assert {m.module for m in METHODS.values()} <= set(declared)
    assert all(len(rows) >= 1 for rows in declared.values())


def test_the_perspectives_table_places_every_method():
    from course_lib.methods.catalog import BASELINE, PERSPECTIVE_NAMES, SURVEY_FAMILIES, perspective_table

    table = perspective_table()
    assert not any("?" in str(v) for row in table for v in row.values())
    assert SUPPORT_MODULES.isdisjoint(row["module"] for row in table)
    by_method = {row["method"]: row for row in table}
    assert len(by_method) == len(table)                          # one row per method
    assert by_method["parallel adapter"]["module"] == by_method["MAM adapter"]["module"] == "unified"
    assert by_method["parallel adapter"]["perspective"] == "function"
    assert by_method["MAM adapter"]["perspective"] == "input + function"
    assert by_method["QLoRA"]["survey"] == by_method["LoRA"]["survey"] == "reparameterisation"
    assert by_method["full fine-tuning"]["perspective"] == BASELINE
    for row in table:
        parts = row["perspective"].split(" + ")
        assert row["perspective"] == BASELINE or set(parts) <= set(PERSPECTIVE_NAMES)
        assert row["survey"] == "none" or set(row["survey"].split(" + ")) <= set(SURVEY_FAMILIES)
    assert {row["perspective"] for row in table} >= set(PERSPECTIVE_NAMES)   # all three perspectives are populated


@pytest.mark.parametrize("perspective,survey", [("adaptive", "additive"), ("parameter + parameter", "selective"),
                                                ("input", "none"), ("baseline", "additive"), ("?", "additive")])
def test_a_perspective_outside_the_vocabulary_is_refused(perspective, survey):
    from course_lib.methods.catalog import Perspective

    with pytest.raises(ConfigError, match="How to fix"):
        Perspective("m", perspective, survey, "paper")

"""The registry: one table of hub models, architecture-true configs that build offline."""
import pytest
import torch

from course_lib import registry
from course_lib.errors import UnknownModelError
from course_lib.models import count_parameters


@pytest.mark.parametrize("key", sorted(registry.MODELS))
def test_architecture_true_configs_have_the_stated_parameter_count(key):
    model = registry.build_random_model(key, device="meta")
    n = count_parameters(model)
    stated = registry.MODELS[key].params
    assert abs(n - stated) / stated < 0.02, f"{key}: built {n:,} parameters, the model card says {stated:,.0f}"


def test_small_architecture_true_model_runs_with_real_weights():
    model = registry.build_random_model("smollm2-135m", num_hidden_layers=2)
    assert model.config.hidden_size == 576 and model.config.num_key_value_heads == 3
    out = model(input_ids=torch.tensor([[1, 2, 3]]))
    assert out.logits.shape == (1, 3, 49152)


def test_seeded_random_weights_are_reproducible():
    a = registry.build_random_model("gpt2", n_layer=1, seed=3)
    b = registry.build_random_model("gpt2", n_layer=1, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_every_model_has_a_config_and_defaults_point_into_the_registry():
    for key in registry.MODELS:
        registry.architecture_config(key)
    for purpose, key in registry.DEFAULTS["gpu"].items():
        assert key in registry.MODELS, purpose
    assert registry.DATASETS["sst2"].label_names == ("negative", "positive")


def test_unknown_key_is_a_clear_error():
    with pytest.raises(UnknownModelError, match="smollm2-135m"):
        registry.model_info("smollm-135")

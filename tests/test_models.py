"""load_model: embedded members, local directories (the hub code path offline), and clear errors."""
import time

import pytest
import torch

from course_lib import runtime as rtm
from course_lib.embedded.tokenizer import build_tokenizer, vocab_size
from course_lib.errors import HubUnavailableError, ModelNotFoundError, UnknownModelError
from course_lib.models import count_parameters, load_model, weights_fingerprint
from course_lib.registry import build_random_model


@pytest.fixture
def embedded_rt():
    return rtm.select_runtime("embedded", device="cpu")


@pytest.fixture
def standin_dir(tmp_path):
    """A stand-in for a hub model: the smollm2-135m architecture (2 layers), random weights, saved locally."""
    model = build_random_model("smollm2-135m", num_hidden_layers=2, vocab_size=vocab_size())
    tok = build_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return tmp_path, model


def test_default_is_the_embedded_member(embedded_rt):
    model, tok = load_model(runtime=embedded_rt)
    assert model.config.model_type == "llama" and not model.training
    assert 0.5e6 < count_parameters(model) < 5e6
    ids = tok("cat => ").input_ids
    assert ids[0] == tok.bos_token_id and len(ids) == len("cat => ") + 1


def test_local_directory_round_trip(standin_dir, embedded_rt):
    path, original = standin_dir
    model, tok = load_model(str(path), runtime=embedded_rt)
    x = torch.tensor([tok("hello").input_ids])
    with torch.no_grad():
        assert torch.equal(model(input_ids=x).logits, original.eval()(input_ids=x).logits)
    assert model.config.hidden_size == 576 and model.config.num_key_value_heads == 3


def test_errors_name_the_problem_and_the_fix(tmp_path, embedded_rt):
    with pytest.raises(UnknownModelError, match="embedded") as err:
        load_model("no-such-model", runtime=embedded_rt)
    assert "How to fix" in str(err.value)
    with pytest.raises(ModelNotFoundError, match="no model directory"):
        load_model(str(tmp_path / "missing"), runtime=embedded_rt)
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(str(tmp_path), runtime=embedded_rt)
    with pytest.raises(UnknownModelError, match="no member"):
        load_model("embedded-xxl", runtime=embedded_rt)
    with pytest.raises(UnknownModelError, match="no public checkpoint"):
        load_model("gpt3-175b", runtime=embedded_rt)


@pytest.mark.parametrize("name", ["smollm2-135m", "some-org/some-model"])
def test_hub_model_offline_fails_fast_and_points_to_embedded(monkeypatch, tmp_path, name, embedded_rt):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    rtm._HUB_CACHE.clear()
    t0 = time.time()
    with pytest.raises(HubUnavailableError) as err:
        load_model(name, runtime=embedded_rt)
    assert time.time() - t0 < 10
    assert "embedded" in err.value.fix


def test_fingerprint_ignores_inference_and_sees_training(embedded_rt):
    model, tok = load_model(runtime=embedded_rt)
    before = weights_fingerprint(model)
    with torch.no_grad():
        model.generate(**tok(["abc => "], return_tensors="pt"), max_new_tokens=3)
    assert weights_fingerprint(model) == before
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert weights_fingerprint(model) != before

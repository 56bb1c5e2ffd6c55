"""Runtime selection: automatic, forced by argument or environment, offline, and the errors."""
import time
from pathlib import Path

import pytest

from course_lib import runtime as rtm
from course_lib.errors import ConfigError, DeviceUnavailableError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("COURSE_RUNTIME", raising=False)
    rtm._HUB_CACHE.clear()
    yield
    rtm._HUB_CACHE.clear()


def test_auto_on_cpu_is_embedded_with_reason(monkeypatch):
    monkeypatch.setattr(rtm, "detect_device", lambda: "cpu")
    rt = rtm.select_runtime()
    assert rt.name == "embedded" and rt.device == "cpu"
    assert "no CUDA GPU" in rt.reason
    assert rt.budget == rtm.BUDGETS["embedded"]
    assert rtm.get_runtime() is rt


def test_auto_with_cuda_and_hub_is_gpu(monkeypatch):
    monkeypatch.setattr(rtm, "detect_device", lambda: "cuda")
    monkeypatch.setattr(rtm, "hub_reachable", lambda *a, **k: True)
    rt = rtm.select_runtime()
    assert rt.name == "gpu" and rt.is_gpu and rt.budget.train_steps > rtm.BUDGETS["embedded"].train_steps
    assert rt.default_model == "smollm2-135m"


def test_auto_with_cuda_but_offline_is_embedded(monkeypatch):
    monkeypatch.setattr(rtm, "detect_device", lambda: "cuda")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rt = rtm.select_runtime()
    assert rt.name == "embedded" and rt.device == "cuda"
    assert "HF_HUB_OFFLINE" in rt.reason


def test_env_override_and_argument_wins(monkeypatch):
    monkeypatch.setattr(rtm, "detect_device", lambda: "cuda")
    monkeypatch.setattr(rtm, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setenv("COURSE_RUNTIME", "embedded")
    rt = rtm.select_runtime()
    assert rt.name == "embedded" and "$COURSE_RUNTIME" in rt.reason
    assert rtm.select_runtime("gpu").name == "gpu"  # the argument beats the variable


def test_forced_cpu_device(monkeypatch):
    monkeypatch.setattr(rtm, "detect_device", lambda: "cuda")
    monkeypatch.setattr(rtm, "hub_reachable", lambda *a, **k: True)
    rt = rtm.select_runtime(device="cpu")
    assert rt.name == "embedded" and rt.device == "cpu"


def test_gpu_requested_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(rtm, "detect_device", lambda: "cpu")
    with pytest.raises(DeviceUnavailableError) as err:
        rtm.select_runtime("gpu")
    assert "no CUDA GPU" in str(err.value) and "How to fix" in str(err.value) and "embedded" in str(err.value)
    monkeypatch.setenv("COURSE_RUNTIME", "gpu")
    with pytest.raises(DeviceUnavailableError, match=r"\$COURSE_RUNTIME"):
        rtm.select_runtime()


def test_unknown_runtime_and_device(monkeypatch):
    with pytest.raises(ConfigError, match="unknown runtime 'tpu'"):
        rtm.select_runtime("tpu")
    monkeypatch.setenv("COURSE_RUNTIME", "fast")
    with pytest.raises(ConfigError, match="COURSE_RUNTIME"):
        rtm.select_runtime()
    with pytest.raises(ConfigError, match="unknown device"):
        rtm.select_runtime("embedded", device="tpu")


def test_hub_offline_env_short_circuits(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(rtm.socket, "create_connection", lambda *a, **k: pytest.fail("must not touch the network"))
    assert rtm.hub_reachable() is False


def test_hub_probe_never_hangs(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def hang(*a, **k):
        time.sleep(30)
    monkeypatch.setattr(rtm.socket, "create_connection", hang)
    t0 = time.time()
    assert rtm.hub_reachable(timeout=0.5) is False
    assert time.time() - t0 < 2


def test_with_budget_changes_only_budget(monkeypatch):
    monkeypatch.setattr(rtm, "detect_device", lambda: "cpu")
    rt = rtm.select_runtime("embedded")
    short = rtm.with_budget(rt, train_steps=5)
    assert short.budget.train_steps == 5 and short.name == rt.name and rt.budget.train_steps != 5


def test_importing_the_package_does_no_work():
    import subprocess
    import sys
    code = "import sys, course_lib, course_lib.runtime, course_lib.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ----------------------------------------------------------------------------- the runtime profile
@pytest.fixture(params=["embedded", "gpu"])
def any_runtime(request, monkeypatch):
    """Each runtime in turn; the gpu one built without CUDA (detect_device and the hub probe stand in)."""
    monkeypatch.setattr(rtm, "detect_device", lambda: "cuda" if request.param == "gpu" else "cpu")
    monkeypatch.setattr(rtm, "hub_reachable", lambda *a, **k: request.param == "gpu")
    return rtm.select_runtime(request.param)


def test_every_purpose_has_a_learning_rate_on_every_runtime(any_runtime):
    from course_lib.comparison import METHODS

    purposes = set(rtm.LEARNING_RATES["embedded"])
    assert purposes == set(rtm.LEARNING_RATES["gpu"]) and set(METHODS) <= purposes
    assert all(0 < any_runtime.learning_rate(p) < 1 for p in purposes)
    with pytest.raises(ConfigError, match="no learning rate for 'lorra'") as err:
        any_runtime.learning_rate("lorra")
    assert "lora" in str(err.value) and "lr=" in str(err.value)


def test_full_fine_tuning_is_gentler_than_the_methods_that_train_few_parameters(any_runtime):
    lr = any_runtime.learning_rate
    assert all(lr("full") < lr(m) for m in ("bitfit", "lora", "prefix", "prompt", "adapter"))


def test_train_steps_fall_back_to_the_budget(any_runtime):
    assert any_runtime.train_steps() == any_runtime.train_steps("no such run") == any_runtime.budget.train_steps
    for purpose in rtm.TRAIN_STEPS[any_runtime.name]:
        assert 0 < any_runtime.train_steps(purpose) <= any_runtime.budget.train_steps


def test_scale_series_and_default_models(any_runtime):
    from course_lib import registry
    from course_lib.embedded import DEFAULT_MEMBER, available_members

    series = any_runtime.scale_series()
    if any_runtime.name == "embedded":
        assert series == [f"embedded-{m}" for m in available_members()] == any_runtime.scale_series(False)
        assert any_runtime.model_name("prompting") == any_runtime.default_model == f"embedded-{DEFAULT_MEMBER}"
        assert any_runtime.model_name("prompting") in series  # lecture 01 reuses the prompted model's curve
    else:
        assert series == list(rtm.SCALE_SERIES["gpu"]) and all(k in registry.MODELS for k in series)
        params = [registry.MODELS[k].params for k in series]
        assert params == sorted(params), "smallest first"
        assert any_runtime.scale_series(include_largest=False) == series[:-1]
        assert any_runtime.model_name("prompting") == "qwen2.5-0.5b-instruct" and registry.is_instruct("qwen2.5-0.5b-instruct")
        assert any_runtime.model_name("prompting") not in series
    with pytest.raises(Exception, match="unknown purpose"):
        any_runtime.model_name("pretraining")


def test_budget_and_costs_per_runtime(any_runtime):
    b, cost = any_runtime.budget, any_runtime.cost
    assert cost.watts > 0 and cost.price_per_device_hour > 0 and "W" in cost.source and "Assumptions" in cost.source
    if any_runtime.name == "embedded":
        assert b.gsm8k_problems == 0 and 0 < b.capstone_eval_examples < b.eval_examples
        assert b.architecture_layers < 30  # SmolLM2-135M has 30
    else:
        assert 0 < b.gsm8k_problems <= b.eval_examples and b.capstone_eval_examples is None
        assert b.architecture_layers is None
    assert rtm.COSTS["gpu"].watts > rtm.COSTS["embedded"].watts


def test_no_notebook_branches_on_the_runtime():
    """Notebooks read numbers from the runtime (learning_rate, train_steps, scale_series, ...); none asks which
    runtime it is (the library may)."""
    root = Path(rtm.__file__).resolve().parent.parent
    files = [*root.glob("lectures/*.ipynb"), *root.glob("solutions/*/*.ipynb"), *root.glob("exercises/*/*.ipynb"),
             *root.glob("tests/wrong_answers/*.py")]
    assert len(files) > 20, files
    branching = [str(f.relative_to(root)) for f in files if "is_gpu" in f.read_text()]
    assert not branching, f"these branch on runtime.is_gpu; read the number from the runtime instead: {branching}"

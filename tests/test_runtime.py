"""Runtime selection: automatic, forced by argument or environment, offline, and the errors."""
import time

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

"""The precision policy per device: fp32 on CPU, bf16 from Ampere on, fp16 with grad scaling on a T4."""
import pytest
import torch

from course_lib.precision import precision_for


def test_cpu_is_plain_fp32():
    p = precision_for("cpu")
    assert (p.name, p.autocast_dtype, p.grad_scaling, p.inference_dtype) == ("fp32", None, False, torch.float32)
    x = torch.randn(4, 4)
    with p.autocast():
        assert (x @ x).dtype == torch.float32
    scaler = p.grad_scaler()
    loss = (x.sum() * 2)
    assert scaler.scale(loss) is loss and not scaler.is_enabled()


@pytest.mark.parametrize("capability, name, dtype, scaling", [
    ((7, 5), "fp16-mixed", torch.float16, True),     # T4
    ((7, 0), "fp16-mixed", torch.float16, True),     # V100
    ((8, 0), "bf16-mixed", torch.bfloat16, False),   # A100
    ((9, 0), "bf16-mixed", torch.bfloat16, False),   # H100 / H200
])
def test_cuda_policy_follows_the_compute_capability(monkeypatch, capability, name, dtype, scaling):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    # a T4 reports bf16 as supported (emulated): the rule must not ask is_bf16_supported
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    p = precision_for("cuda")
    assert (p.name, p.autocast_dtype, p.grad_scaling, p.inference_dtype) == (name, dtype, scaling, dtype)


def test_load_model_dtype_per_purpose(monkeypatch):
    """Training loads fp32 master weights; prompting loads the device policy's inference dtype."""
    from course_lib import models, precision
    from course_lib.runtime import select_runtime

    rt = select_runtime("embedded", device="cpu")
    assert models.load_model("embedded", runtime=rt, purpose="prompting")[0].dtype == torch.float32
    bf16 = precision.Precision("bf16-mixed", "cpu", torch.bfloat16, False, torch.bfloat16)   # as on an H100
    monkeypatch.setattr(precision, "precision_for", lambda device: bf16)
    assert models.load_model("embedded", runtime=rt, purpose="prompting")[0].dtype == torch.bfloat16
    assert models.load_model("embedded", runtime=rt, purpose="finetune")[0].dtype == torch.float32

"""Numeric precision chosen from the device, in one place.

=====================  =================================  ==========================  =====================
device                 training (``training.train``)      gradient scaling            inference weights
=====================  =================================  ==========================  =====================
CPU, MPS               fp32                               none                        fp32
CUDA, compute >= 8.0   bf16 autocast, fp32 master weights none (bf16 has fp32's range) bf16
(A100, H100, H200)
CUDA, compute < 8.0    fp16 autocast, fp32 master weights ``torch.amp.GradScaler``    fp16
(T4, V100)
=====================  =================================  ==========================  =====================

Mixed precision (Micikevicius et al. 2018) keeps the trainable weights and AdamW's states in fp32 and
runs the matrix products in 16 bits under ``torch.autocast``. fp16 has 5 exponent bits: gradients
below ~6e-8 flush to zero, so the loss is multiplied by a scale before ``backward`` and the
gradients divided by it before the step (skipped when they overflow). A T4 has fp16 tensor cores
and only *emulates* bf16 (``torch.cuda.is_bf16_supported()`` says True there through emulation, so
the rule reads the compute capability instead). On CPU everything stays fp32, so results are
reproducible and identical to a plain fp32 loop.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    name: str             # "fp32", "bf16-mixed" or "fp16-mixed" (the keys of memory.PRECISIONS)
    device_type: str      # "cpu", "cuda" or "mps"
    autocast_dtype: object  # torch dtype of the autocast region, or None (no autocast)
    grad_scaling: bool
    inference_dtype: object  # dtype of weights loaded for inference only

    def autocast(self):
        """The forward's context: ``torch.autocast`` in 16 bits on CUDA, nothing elsewhere."""
        import torch

        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)

    def grad_scaler(self):
        """A ``torch.amp.GradScaler`` for fp16, else a disabled one (``scale`` and ``step`` pass through)."""
        import torch

        return torch.amp.GradScaler(self.device_type if self.grad_scaling else "cpu", enabled=self.grad_scaling)


def precision_for(device) -> Precision:
    """The precision policy of ``device`` (a string or ``torch.device``)."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return Precision("fp32", dev.type, None, False, torch.float32)
    if torch.cuda.get_device_capability(dev) >= (8, 0):
        return Precision("bf16-mixed", "cuda", torch.bfloat16, False, torch.bfloat16)
    return Precision("fp16-mixed", "cuda", torch.float16, True, torch.float16)

"""Where tensors live: the course's one convention for placing them on a model's device.

Every helper that builds tensors for a model takes ``device=`` and accepts the model itself there, so a
notebook writes ``device=model`` and never needs to know which device the runtime chose. Low in the layers
(only :mod:`course_lib.errors` below it) so that methods, models and training all place tensors the same way;
:mod:`course_lib.training` re-exports both functions.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .errors import ConfigError

def device_of(where) -> torch.device | None:
    """The device ``where`` names: a model or layer (the device of its first parameter or buffer), a
    tensor, a ``torch.device`` or a string such as ``"cuda"``; None stays None."""
    if where is None or isinstance(where, torch.device):
        return where
    if isinstance(where, str):
        return torch.device(where)
    if isinstance(where, torch.Tensor):
        return where.device
    if isinstance(where, torch.nn.Module):
        for t in (*where.parameters(), *where.buffers()):
            return t.device
        raise ConfigError(f"{type(where).__name__} has no parameters or buffers, so it names no device.",
                          "pass a device instead, e.g. device='cpu' or device=model.")
    raise ConfigError(f"cannot tell a device from {type(where).__name__}.",
                      "pass a model, a tensor, a torch.device or a string such as 'cuda' or 'cpu'.")


def to_device(batch, where):
    """``batch`` (a tensor, or a dict/list/tuple of them) moved to :func:`device_of` ``(where)``.

    ``where=None`` returns ``batch`` unchanged; non-tensor values pass through.
    """
    device = device_of(where)
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):  # a dict, or a tokenizer's BatchEncoding
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch

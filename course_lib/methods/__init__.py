"""From-scratch implementations of the adaptation methods, one module per method.

Each module has a config dataclass that validates itself, a small ``nn.Module`` and an ``apply_*``
function, and is verified in ``tests/`` against the library that does it for real (peft,
bitsandbytes, ``torch.nn.utils.prune``).
"""

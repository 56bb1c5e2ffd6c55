"""Load a model and its tokenizer, the same way on every runtime.

``load_model()`` returns ``(model, tokenizer)`` through ``AutoModelForCausalLM.from_pretrained``
and ``AutoTokenizer.from_pretrained`` in every case. ``name`` may be:

* ``None``: the active runtime's default (see :mod:`course_lib.runtime`);
* ``"embedded"`` or ``"embedded-xs"``, ``"embedded-s"``, ``"embedded-m"``: a member shipped in the package;
* a registry key such as ``"smollm2-135m"`` (see :mod:`course_lib.registry`), or a hub id
  ``"org/name"``: downloaded from the hub, or taken from the local cache when offline;
* a local directory made by ``save_pretrained``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DeviceUnavailableError, HubUnavailableError, ModelNotFoundError, UnknownModelError, require


def _resolve(name: str) -> tuple[str, str]:
    """Map a name to ``(kind, location)`` with kind in embedded/local/hub."""
    from . import embedded, registry

    if name == "embedded" or name.startswith("embedded-"):
        size = embedded.DEFAULT_MEMBER if name == "embedded" else name.removeprefix("embedded-")
        return "embedded", str(embedded.member_dir(size))
    if name in registry.MODELS:
        info = registry.MODELS[name]
        if info.hub_id is None:
            raise UnknownModelError(f"{name!r} has no public checkpoint ({info.used_for}).",
                                    f"build it with random weights: build_random_model({name!r}, device='meta').")
        return "hub", info.hub_id
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} exists but holds no model (no config.json).",
                                     "pass a directory written by model.save_pretrained(...).")
        return "local", str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"no model directory at {path}.",
                                 "check the path, or save a model there with model.save_pretrained(path).")
    if name.count("/") != 1:
        raise UnknownModelError(
            f"unknown model {name!r}: not an embedded member, not in the registry, not a directory.",
            f"use 'embedded' (or embedded-xs/s/m), a registry key ({', '.join(registry.MODELS)}), "
            "a hub id 'org/name', or a local directory.")
    return "hub", name


def load_model(name: str | None = None, *, runtime=None, purpose: str = "finetune", device: str | None = None,
               dtype=None, quantization_config=None, **kwargs):
    """Return ``(model, tokenizer)`` in eval mode, on the runtime's device.

    ``dtype`` defaults to fp32, except ``purpose="prompting"`` (inference only) on a CUDA GPU: bf16, or fp16
    on a pre-Ampere GPU such as a T4 (:func:`course_lib.precision.precision_for`).

    ``quantization_config`` (e.g. a ``BitsAndBytesConfig``) is passed to ``from_pretrained``;
    ``kwargs`` go there too. Hub models while offline raise :class:`HubUnavailableError`
    within seconds unless they are already in the local cache.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .runtime import get_runtime, hub_reachable

    rt = runtime or get_runtime()
    if name is None:
        from .registry import default_model_for
        name = default_model_for(rt.name, purpose)
    device = device or rt.device
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("device 'cuda' was requested but no CUDA GPU is available.",
                                     "use device='cpu', or the embedded runtime.")
    kind, location = _resolve(name)
    if dtype is None:  # inference-only lessons load 16-bit weights on a GPU; training keeps fp32 master weights
        from .precision import precision_for
        dtype = precision_for(device).inference_dtype if purpose == "prompting" else torch.float32
    load_kw = dict(kwargs, dtype=dtype)
    if quantization_config is not None:
        load_kw["quantization_config"] = quantization_config
    if kind == "hub":
        try:  # the local cache first: works offline for models downloaded before
            tok = AutoTokenizer.from_pretrained(location, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(location, local_files_only=True, **load_kw)
        except OSError:
            if not hub_reachable():
                raise HubUnavailableError(
                    f"the model {name!r} ({location}) is not cached and the Hugging Face hub cannot be reached.",
                    "use the embedded runtime, which needs no network: load_model('embedded') or "
                    "COURSE_RUNTIME=embedded.") from None
            tok = AutoTokenizer.from_pretrained(location)
            model = AutoModelForCausalLM.from_pretrained(location, **load_kw)
    else:
        tok = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, **load_kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if quantization_config is None:
        model = model.to(device)
    return model.eval(), tok


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of parameters (tied weights counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def weights_fingerprint(model) -> str:
    """SHA-256 over every parameter and buffer: equal before and after prompting, different after training."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_qlora_bnb(name: str | None = None, lora_config: LoraConfig | None = None, *, runtime=None,
                   purpose: str = "qlora", double_quant: bool = True, compute_dtype=None,
                   gradient_checkpointing: bool = False):
    """The library way: 4-bit loading + ``prepare_model_for_kbit_training`` + peft LoRA.

    Returns ``(peft_model, tokenizer)``. ``name`` (default: the runtime's model for ``purpose``) is
    anything :func:`load_model` accepts (the embedded model, a registry key, a local directory);
    ``lora_config`` is the course's :class:`~course_lib.methods.lora.LoraConfig`. Works on CPU with
    bitsandbytes >= 0.45 and on CUDA.
    """
    import torch

    from .methods.lora import LoraConfig
    from .methods.qlora import bnb_config
    from .runtime import get_runtime

    require("peft", "QLoRA with peft")
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    compute_dtype = torch.float32 if compute_dtype is None else compute_dtype
    lora_config = lora_config or LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    rt = runtime or get_runtime()
    model, tok = load_model(name, runtime=rt, purpose=purpose, device_map=rt.device,
                            quantization_config=bnb_config(double_quant, compute_dtype=compute_dtype))
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    targets = lora_config.target_modules
    peft_cfg = PeftLoraConfig(r=lora_config.r, lora_alpha=lora_config.lora_alpha, lora_dropout=lora_config.lora_dropout,
                              target_modules=targets, use_rslora=lora_config.use_rslora, task_type="CAUSAL_LM")
    return get_peft_model(model, peft_cfg), tok

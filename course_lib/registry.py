"""The models and datasets the course uses, in one table each.

``MODELS`` lists the hub models of the GPU runtime (and the large configurations the memory
lectures reason about; the rows are data, in ``course_lib/data/hub_models.json``); ``DATASETS`` the
hub datasets. A renamed hub id is a one-line fix here.
Each model also ships its hyperparameters (``course_lib/configs/<key>.json``, no weights), so the
course can build an *architecture-true* model with random weights offline, for memory and speed
work, or on the ``meta`` device to count the parameters of a 72B model without allocating it.

The embedded runtime's models are the course's own (``embedded-xs``, ``-s``, ``-m``; ``-l`` can be trained); see
:mod:`course_lib.embedded`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files

from .errors import UnknownModelError


@dataclass(frozen=True)
class HubModel:
    key: str
    hub_id: str | None      # None: no public checkpoint (GPT-3); the config still builds on "meta"
    params: float           # parameter count stated by the model card
    licence: str
    min_gpu_gb: float       # enough GPU memory for the course's use (LoRA fine-tuning in bf16)
    used_for: str
    instruct: bool = False  # instruction-tuned: prompted as a conversation through its chat template


#: The hub models, read from ``course_lib/data/hub_models.json`` (one row per model, the fields of
#: :class:`HubModel`): a renamed hub id or a new model is a one-line change there.
MODELS: dict[str, HubModel] = {row["key"]: HubModel(**row) for row in
                               json.loads(files("course_lib.data").joinpath("hub_models.json").read_text())}

#: What ``load_model()`` returns with no name, per runtime and purpose (read through
#: :meth:`course_lib.runtime.Runtime.model_name`; the series compared across scale is on the runtime too).
DEFAULTS = {
    "embedded": {"finetune": "embedded", "prompting": "embedded", "qlora": "embedded"},
    "gpu": {"finetune": "smollm2-135m", "prompting": "qwen2.5-0.5b-instruct", "qlora": "qwen2.5-0.5b"},
}


@dataclass(frozen=True)
class HubDataset:
    key: str
    hub_id: str
    config: str | None
    text_column: str
    label_column: str | None
    label_names: tuple[str, ...]
    used_for: str


DATASETS: dict[str, HubDataset] = {d.key: d for d in (
    HubDataset("sst2", "stanfordnlp/sst2", None, "sentence", "label", ("negative", "positive"),
               "the downstream task of lectures 03-08 on the GPU runtime"),
    HubDataset("gsm8k", "openai/gsm8k", "main", "question", "answer", (),
               "chain-of-thought word problems on the GPU runtime"),
)}


def default_model_for(runtime: str, purpose: str = "finetune") -> str:
    if runtime not in DEFAULTS:
        raise UnknownModelError(f"unknown runtime {runtime!r}.", f"use one of {sorted(DEFAULTS)}.")
    if purpose not in DEFAULTS[runtime]:
        raise UnknownModelError(f"unknown purpose {purpose!r}.", f"use one of {sorted(DEFAULTS[runtime])}.")
    return DEFAULTS[runtime][purpose]


def is_instruct(name: str) -> bool:
    """True for a registry model (key or hub id) that is instruction-tuned (see ``HubModel.instruct``)."""
    return any(m.instruct and name in (m.key, m.hub_id) for m in MODELS.values())


def model_info(key: str) -> HubModel:
    if key not in MODELS:
        raise UnknownModelError(f"{key!r} is not in the course's model registry.",
                                f"use one of: {', '.join(MODELS)}; or pass a local directory or a hub id 'org/name'.")
    return MODELS[key]


def architecture_config(key: str, **overrides):
    """The transformers config of ``key``'s architecture (hyperparameters only, no download).

    ``overrides`` change fields, e.g. ``num_hidden_layers=2`` for a shallow stand-in of the same
    width, or ``vocab_size=...`` to match a local tokenizer.
    """
    from transformers import AutoConfig

    model_info(key)
    fields = json.loads(files("course_lib.configs").joinpath(f"{key}.json").read_text())
    fields.update(overrides)
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


def build_random_model(key: str, *, device: str = "cpu", dtype=None, seed: int = 0, **overrides):
    """An architecture-true causal LM with random weights.

    ``device="meta"`` allocates nothing (count parameters of any size); ``overrides`` go to
    :func:`architecture_config`.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = architecture_config(key, **overrides)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    return model


def table() -> list[dict]:
    """The registry as rows (for display in notebooks and ``course doctor``)."""
    return [{"key": m.key, "hub id": m.hub_id or "-", "params": f"{m.params / 1e9:.2f}B" if m.params >= 1e9
             else f"{m.params / 1e6:.0f}M", "licence": m.licence, "min GPU GB": m.min_gpu_gb,
             "used for": m.used_for} for m in MODELS.values()]

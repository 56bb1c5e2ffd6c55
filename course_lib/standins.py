"""Architecture-true stand-ins for the GPU runtime's hub models and datasets, built offline.

The GPU runtime loads hub models by name (``from_pretrained("HuggingFaceTB/SmolLM2-135M")``) and
SST-2/GSM8K from the hub. A machine without the hub (a CI box, the GPU check) can still run that
*code path* on stand-ins that have everything but the trained values:

* a model per registry key, built from the registry's config (:func:`course_lib.registry.architecture_config`):
  the real layer count, widths, vocabulary size and special-token ids, random weights in bf16,
  written with ``save_pretrained`` into a Hugging Face cache directory laid out as the hub client
  writes it (``models--Org--Name/snapshots/<rev>/``, ``refs/main``), so the *real* loading code
  (``from_pretrained(hub_id, local_files_only=True)`` in :func:`course_lib.models.load_model`) finds it;
* a byte-level BPE tokenizer trained on the embedded corpus (a few thousand tokens), with the
  family's real special tokens *at their real ids* and its ChatML chat template;
* SST-2 and GSM8K with the hub's splits and columns (SST-2's test labels are ``-1``, as on the hub),
  written with ``datasets``' ``save_to_disk`` for ``$COURSE_SST2_PATH`` / ``$COURSE_GSM8K_PATH``.

Accuracies on stand-ins are meaningless (random weights); shapes, devices, dtypes, memory and
speed are those of the real models. :func:`build_all` writes everything and returns the
environment variables that point the course at it.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from .errors import ConfigError

REVISION = "0" * 40   # the snapshot name in the cache (a hub commit hash has 40 hex digits)

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
_CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
           "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
           "{% endif %}")
_QWEN_CHAT = ("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n" + QWEN_SYSTEM
              + "<|im_end|>\\n' }}{% endif %}" + _CHATML)

#: per family: special tokens at their real ids, and the tokenizer's bos/eos/pad and chat template
FAMILIES = {
    "smollm2": {"specials": {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2},
                "bos": "<|endoftext|>", "eos": "<|endoftext|>", "pad": None, "chat_template": _CHATML},
    "qwen2.5": {"specials": {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645},
                "bos": None, "eos": "<|endoftext|>", "pad": "<|endoftext|>", "chat_template": _QWEN_CHAT},
}
STANDIN_MODELS = ("smollm2-135m", "smollm2-360m", "smollm2-1.7b", "qwen2.5-0.5b-instruct", "qwen2.5-0.5b",
                  "qwen2.5-1.5b")


def family_of(key: str) -> str:
    for fam in FAMILIES:
        if key.startswith(fam):
            return fam
    raise ConfigError(f"no stand-in tokenizer for {key!r}.", f"use one of {', '.join(STANDIN_MODELS)}.")


def _corpus_text(n: int = 3000, seed: int = 0) -> list[str]:
    from .embedded import corpus

    rng = random.Random(seed)
    return [corpus.sentiment_sentence(rng)[0] for _ in range(n)] + [f"{a} + {b} = {a + b}" for a in range(60)
                                                                     for b in range(0, 60, 7)]


def build_tokenizer(key: str, vocab_size: int = 4000, *, instruct: bool | None = None):
    """A byte-level BPE tokenizer with ``key``'s family's special tokens at their real ids and its chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from .registry import model_info

    fam = FAMILIES[family_of(key)]
    instruct = model_info(key).instruct if instruct is None else instruct
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    core.train_from_iterator(_corpus_text(), trainer)
    vocab = core.get_vocab()
    merges = json.loads(core.to_str())["model"]["merges"]
    offset = max(fam["specials"].values()) + 1 if min(fam["specials"].values()) < len(fam["specials"]) else 0
    vocab = {tok: i + offset for tok, i in vocab.items()}   # leave the low ids to specials that live there
    vocab.update(fam["specials"])
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                                                    for m in merges]))
    bpe.pre_tokenizer, bpe.decoder = core.pre_tokenizer, core.decoder
    bpe.add_special_tokens(list(fam["specials"]))
    eos = "<|im_end|>" if instruct else fam["eos"]
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=fam["bos"], eos_token=eos,
                                  pad_token=fam["pad"], unk_token=None, clean_up_tokenization_spaces=False)
    tok.chat_template = fam["chat_template"]
    return tok


def hub_cache_dir(cache: Path, hub_id: str) -> Path:
    """Where the hub client keeps a snapshot of ``hub_id`` under ``cache`` (``$HF_HUB_CACHE``)."""
    return Path(cache) / ("models--" + hub_id.replace("/", "--")) / "snapshots" / REVISION


def build_model(key: str, cache: Path, *, device: str = "cpu", **overrides) -> Path:
    """Write ``key``'s stand-in (random bf16 weights, stand-in tokenizer) into the hub cache ``cache``.

    ``overrides`` change the architecture (e.g. ``num_hidden_layers=2`` for a quick CPU run);
    the vocabulary size is always the real one.
    """
    import torch

    from .registry import build_random_model, model_info

    info = model_info(key)
    snap = hub_cache_dir(cache, info.hub_id)
    model = build_random_model(key, device=device, dtype=torch.bfloat16, **overrides)
    model.generation_config.do_sample = False
    if info.instruct:  # what Qwen2.5-Instruct's generation_config.json ships: the lessons must override it
        model.generation_config.update(do_sample=True, repetition_penalty=1.1, temperature=0.7, top_p=0.8, top_k=20,
                                       eos_token_id=[151645, 151643])
    model.save_pretrained(snap)
    build_tokenizer(key).save_pretrained(snap)
    refs = snap.parent.parent / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(REVISION)
    return snap


def _sst2_rows(n: int, seed: int, labelled: bool = True) -> dict:
    from .embedded import corpus

    rng = random.Random(seed)
    rows = [corpus.sentiment_sentence(rng) for _ in range(n)]
    return {"idx": list(range(n)), "sentence": [s + " " for s, _ in rows],
            "label": [int(pos) if labelled else -1 for _, pos in rows]}


def build_sst2(path: Path, sizes: dict | None = None) -> Path:
    """SST-2's splits and columns (``idx``, ``sentence``, ``label``; test labels ``-1``) via ``save_to_disk``."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    sizes = {"train": 2000, "validation": 872, "test": 1821, **(sizes or {})}
    feats = Features({"idx": Value("int32"), "sentence": Value("string"),
                      "label": ClassLabel(names=["negative", "positive"])})
    dd = DatasetDict({split: Dataset.from_dict(_sst2_rows(n, seed, split != "test"), features=feats)
                      for seed, (split, n) in enumerate(sizes.items())})
    dd.save_to_disk(str(path))
    return Path(path)


def build_gsm8k(path: Path, sizes: dict | None = None) -> Path:
    """GSM8K's splits (``train``, ``test``) and columns (``question``, ``answer`` ending ``#### N``)."""
    from datasets import Dataset, DatasetDict

    sizes = {"train": 200, "test": 100, **(sizes or {})}

    def rows(n, seed):
        rng = random.Random(seed)
        q, a = [], []
        for _ in range(n):
            x, y = rng.randint(2, 90), rng.randint(2, 90)
            q.append(f"Ann has {x} apples and buys {y} more. How many apples does she have now?")
            a.append(f"She has {x} + {y} = <<{x}+{y}={x + y}>>{x + y} apples.\n#### {x + y}")
        return {"question": q, "answer": a}
    DatasetDict({s: Dataset.from_dict(rows(n, i)) for i, (s, n) in enumerate(sizes.items())}).save_to_disk(str(path))
    return Path(path)


def build_all(root: Path, *, keys=STANDIN_MODELS, device: str = "cpu", progress: bool = True, **overrides) -> dict:
    """Every stand-in under ``root``; returns the environment that points the course at them."""
    from tqdm.auto import tqdm

    root = Path(root)
    cache = root / "hub"
    for key in tqdm(list(keys), desc="stand-in models", disable=not progress):
        build_model(key, cache, device=device, **overrides)
    build_sst2(root / "sst2")
    build_gsm8k(root / "gsm8k")
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "COURSE_SST2_PATH": str(root / "sst2"),
            "COURSE_GSM8K_PATH": str(root / "gsm8k")}

"""Pretrain one member of the embedded model family on the synthetic corpus.

    python -m course_lib.embedded.train --size m --out runs/m

The schedule is fixed by step count (never by wall clock), the data stream and the initialisation
are seeded, so the same command on the same thread count reproduces the same weights. It runs on
CPU or CUDA (``--device``). Each member is a Llama-architecture causal LM with the char-level
tokenizer of :mod:`course_lib.embedded.tokenizer`; all members see the same token budget
(``--steps`` x ``--batch-size`` documents of ~250 characters).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Size:
    layers: int
    hidden: int
    heads: int
    ffn: int


#: The family. ``m`` is the default member the lectures load.
SIZES = {
    "xs": Size(2, 64, 2, 192),
    "s": Size(4, 96, 4, 256),
    "m": Size(4, 128, 4, 384),
    "l": Size(6, 192, 6, 512),
}


def build_config(size: str):
    from transformers import LlamaConfig

    from .tokenizer import CONTEXT_LENGTH, vocab_size

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    sz = SIZES[size]
    return LlamaConfig(
        vocab_size=vocab_size(), hidden_size=sz.hidden, intermediate_size=sz.ffn,
        num_hidden_layers=sz.layers, num_attention_heads=sz.heads, num_key_value_heads=sz.heads,
        max_position_embeddings=CONTEXT_LENGTH, rope_theta=10000.0, tie_word_embeddings=True,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, attention_dropout=0.0)


def batch_from_documents(tokenizer, docs: list[str], context: int):
    """Token ids and next-token labels (padding masked with -100), each document ended by <eos>."""
    import torch

    ids = [seq + [tokenizer.eos_token_id] if len(seq) < context else seq
           for seq in tokenizer(docs, truncation=True, max_length=context).input_ids]
    width = max(len(s) for s in ids)
    x = torch.full((len(ids), width), tokenizer.pad_token_id)
    y = torch.full((len(ids), width), -100)
    for i, seq in enumerate(ids):
        x[i, :len(seq)] = torch.tensor(seq)
        y[i, :len(seq)] = torch.tensor(seq)
    return x, y


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="m", choices=sorted(SIZES))
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    p.add_argument("--eval-every", type=int, default=200)
    a = p.parse_args(argv)

    import torch
    from tqdm.auto import tqdm
    from transformers import LlamaForCausalLM

    from . import corpus
    from .tokenizer import CONTEXT_LENGTH, build_tokenizer, save_tokenizer

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tok = build_tokenizer()
    model = LlamaForCausalLM(build_config(a.size)).to(a.device)
    n_params = sum(p.numel() for p in model.parameters())
    rng = random.Random(a.seed + 1)
    val_x, val_y = batch_from_documents(tok, corpus.corpus(64, seed=999), CONTEXT_LENGTH)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10%
        progress = min(1.0, step / a.steps)
        return a.lr * min(1.0, step / a.warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log, tokens, t0 = [], 0, time.time()
    bar = tqdm(range(1, a.steps + 1), desc=f"pretrain {a.size} ({n_params / 1e6:.2f}M)", mininterval=5)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        model.train()
        x, y = batch_from_documents(tok, [corpus.document(rng) for _ in range(a.batch_size)], CONTEXT_LENGTH)
        loss = model(input_ids=x.to(a.device), labels=y.to(a.device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int((y != -100).sum())
        if step % a.eval_every == 0 or step == a.steps:
            model.eval()
            with torch.no_grad():
                val = model(input_ids=val_x.to(a.device), labels=val_y.to(a.device)).loss.item()
            entry = {"step": step, "loss": round(loss.item(), 4), "val_loss": round(val, 4),
                     "tokens": tokens, "wall_s": round(time.time() - t0, 1)}
            log.append(entry)
            bar.set_postfix(loss=entry["loss"], val=entry["val_loss"])
            print(json.dumps(entry), flush=True)
    model = model.cpu().eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("\n")
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    save_tokenizer(tok, out)
    info = {"size": a.size, "architecture": asdict(SIZES[a.size]), "parameters": n_params,
            "steps": a.steps, "batch_size": a.batch_size, "context": CONTEXT_LENGTH, "lr": a.lr,
            "seed": a.seed, "tokens": tokens, "wall_s": round(time.time() - t0, 1),
            "hardware": f"{platform.processor() or platform.machine()}, {a.threads} threads, {a.device}",
            "torch": torch.__version__, "log": log,
            "command": f"python -m course_lib.embedded.train --size {a.size} --steps {a.steps} "
                       f"--batch-size {a.batch_size} --lr {a.lr} --seed {a.seed} --threads {a.threads}"}
    (out / "training.json").write_text(json.dumps(info, indent=1))
    print(f"saved {out} after {info['wall_s']} s, {tokens} tokens", flush=True)


if __name__ == "__main__":
    main()

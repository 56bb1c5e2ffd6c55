"""Evaluate members of the embedded family: the tables and curves lectures 01-04 show.

An experiment over the models, not model-family code: it sits above :mod:`course_lib.embedded`
(and :mod:`course_lib.prompting`, :mod:`course_lib.training`), which never import it.

    python -m course_lib.family_eval --size m [--quick]

writes ``course_lib/embedded/models/<size>/evaluation.json``. Every evaluation item is built from
material pretraining never saw (held-out words, fresh random numbers, a corpus seed the training
stream never used) and with a fixed seed, so the numbers reproduce on CPU. Built on
:mod:`course_lib.prompting` and :mod:`course_lib.reasoning`; every function returns a plain dict of floats
(JSON-ready, string keys).

* :func:`few_shot_curve` — exact match against the number of demonstrations k per word transform
  (simplified, fixed forms of GPT-3's cycle letters, random insertion and reversed words, see
  :mod:`course_lib.embedded.corpus`, and four more), the miniature of GPT-3's
  "few-shot ability emerges with scale" figure when run for several members.
* :func:`instruction_vs_few_shot` — ``task: <name>`` header alone (k=0) against demonstrations.
* :func:`addition` — answering directly against writing the digit-by-digit scratchpad first
  (lecture 02's task and answer rule, from :mod:`course_lib.reasoning`).
* :func:`fit_pairs` — Winograd-style pairs scored by sequence probability.
* :func:`label_mapping` — in-context classification with natural, flipped and never-seen label words.
* :func:`heldout_perplexity` — per-character perplexity on fresh corpus documents.
* :func:`adaptation_speed` — LoRA on the downstream task from the pretrained weights against the
  same architecture randomly initialised: steps to reach a validation accuracy.

Why one module of this length: every table of the model cards comes from here, with one command
(``python -m course_lib.family_eval``); each evaluation is a short function over the same model.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from . import prompting, reasoning
from .errors import ConfigError
from .embedded import MEMBERS, corpus, member_dir

#: Corpus seed for held-out documents. Training draws its stream from ``random.Random(seed + 1)``
#: (seed 0 -> 1) and validates on ``corpus(64, seed=999)``; this seed is neither.
HELDOUT_SEED = 20261124
DEFAULT_KS = (0, 1, 2, 4, 8)
TRANSFORM_TEMPLATE = prompting.PromptTemplate("{input} => {output}")
LABEL_PAIRS = {  # (positive, negative) label words
    "natural (pos/neg)": ("pos", "neg"),
    "flipped (neg/pos)": ("neg", "pos"),
    "seen arbitrary (red/blue)": ("red", "blue"),
    "unseen (foo/bar)": (corpus.UNSEEN_LABELS[0], corpus.UNSEEN_LABELS[1]),
}


def _check_n(n: int, what: str) -> None:
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r} items per cell for {what}: it must be a positive integer.",
                          "use n >= 200 for reported numbers, n of a few dozen for a quick look.")


# ----------------------------------------------------------------------------- word transforms
def transform_pool(task: str, seed: int = 0) -> list[tuple[str, str]]:
    """``(input, output)`` of one transform for every held-out word (``clean`` inserts symbols at random)."""
    rng = random.Random(f"pool-{task}-{seed}")
    return [corpus.transform_example(task, w, rng) for w in corpus.heldout_words()]


def transform_items(task: str, k: int, n: int, *, seed: int = 0, instruction: bool = False
                    ) -> tuple[list[str], list[str]]:
    """``n`` prompts and targets for one transform with ``k`` demonstrations, all from held-out words.

    The queries are the same for every k (same seed), and the demonstrations for k are the first k
    of those for a larger k, so the curves compare like with like.
    """
    pool = transform_pool(task, seed)
    rng = random.Random(f"queries-{task}-{seed}")
    prompts, targets = [], []
    for i in range(n):
        query = pool[rng.randrange(len(pool))]
        shots = prompting.select_examples(pool, k, seed=_stable_seed(seed, task, i), exclude=query)
        prompts.append(prompting.build_prompt(query[0], shots, TRANSFORM_TEMPLATE,
                                              instruction=f"task: {task}" if instruction else None))
        targets.append(query[1])
    return prompts, targets


def _stable_seed(*parts) -> int:
    import zlib
    return zlib.crc32(repr(parts).encode())


def _transform_accuracy(model, tokenizer, tasks, k, n, seed, instruction, batch_size, progress, desc):
    prompts, targets, owner = [], [], []
    for task in tasks:
        p, t = transform_items(task, k, n, seed=seed, instruction=instruction)
        prompts += p
        targets += t
        owner += [task] * n
    res = prompting.evaluate(model, tokenizer, prompts, targets, max_new_tokens=20, batch_size=batch_size,
                             progress=progress, desc=desc)
    per_task = {task: round(sum(c for c, o in zip(res["correct"], owner) if o == task) / n, 4) for task in tasks}
    return per_task, round(res["accuracy"], 4)


def few_shot_curve(model, tokenizer, *, ks=DEFAULT_KS, n: int = 200, tasks=None, seed: int = 0,
                   instruction: bool = False, batch_size: int = 64, progress: bool = True) -> dict:
    """Exact match on held-out words against k, per transform and averaged over transforms.

    Returns ``{"ks": [...], "n_per_cell": n, "per_task": {task: {"k": acc}}, "mean": {"k": acc}}``.
    """
    _check_n(n, "few_shot_curve")
    tasks = list(tasks or corpus.TRANSFORMS)
    per_task: dict = {t: {} for t in tasks}
    mean = {}
    for k in ks:
        accs, m = _transform_accuracy(model, tokenizer, tasks, k, n, seed, instruction, batch_size, progress,
                                      f"transforms k={k}")
        for t in tasks:
            per_task[t][str(k)] = accs[t]
        mean[str(k)] = m
    return {"ks": list(ks), "n_per_cell": n, "instruction": instruction, "per_task": per_task, "mean": mean}


def instruction_vs_few_shot(model, tokenizer, *, k: int = 4, n: int = 200, tasks=None, seed: int = 0,
                            few_shot: dict | None = None, batch_size: int = 64, progress: bool = True) -> dict:
    """The same transforms posed four ways: nothing (k=0), the ``task: <name>`` header alone (k=0),
    k demonstrations, and header + k demonstrations. ``{"per_task": {task: {cond: acc}}, "mean": {cond: acc}}``.

    ``few_shot``: a :func:`few_shot_curve` result on the same items (same n, seed, tasks) whose k=0
    and k cells are reused instead of being recomputed.
    """
    _check_n(n, "instruction_vs_few_shot")
    tasks = list(tasks or corpus.TRANSFORMS)
    conditions = {"zero-shot": (0, False), "instruction only": (0, True),
                  f"{k}-shot": (k, False), f"instruction + {k}-shot": (k, True)}
    per_task: dict = {t: {} for t in tasks}
    mean = {}
    for cond, (kk, header) in conditions.items():
        if (not header and few_shot is not None and few_shot["n_per_cell"] == n and not few_shot["instruction"]
                and str(kk) in few_shot["mean"] and all(str(kk) in few_shot["per_task"].get(t, {}) for t in tasks)):
            accs = {t: few_shot["per_task"][t][str(kk)] for t in tasks}
            m = few_shot["mean"][str(kk)]
        else:
            accs, m = _transform_accuracy(model, tokenizer, tasks, kk, n, seed, header, batch_size, progress, cond)
        for t in tasks:
            per_task[t][cond] = accs[t]
        mean[cond] = m
    return {"k": k, "n_per_cell": n, "conditions": list(conditions), "per_task": per_task, "mean": mean}


# ----------------------------------------------------------------------------- addition
def addition(model, tokenizer, *, digits=(1, 2, 3, 4), n: int = 200, shots: int = 2, seed: int = 0,
             batch_size: int = 64, progress: bool = True) -> dict:
    """Accuracy of the sum, direct vs scratchpad, per digit count: lecture 02's experiment
    (:func:`course_lib.reasoning.addition_problems`, :func:`course_lib.reasoning.evaluate` in modes
    ``direct`` and ``cot``, answers read by :func:`course_lib.reasoning.extract_answer`), on the
    problem stream ``"addition"`` with ``shots`` worked examples each; both conditions see the same numbers.

    ``{"shots": s, "n_per_cell": n, "digits": {"2": {"direct": acc, "scratchpad": acc, "gap": sp - direct}}}``.
    """
    _check_n(n, "addition")
    out = {}
    for d in digits:
        problems = reasoning.addition_problems(d, n, shots=shots, seed=seed, stream="addition")
        row = {}
        for mode, cot_mode, new_tokens in (("direct", "direct", 8), ("scratchpad", "cot", 16 + 16 * d)):
            generate = reasoning.greedy(model, tokenizer, max_new_tokens=new_tokens, batch_size=batch_size,
                                        progress=progress, desc=f"addition {d}d {mode}")
            row[mode] = round(reasoning.evaluate(problems, generate, cot_mode)["accuracy"], 4)
        row["gap"] = round(row["scratchpad"] - row["direct"], 4)
        out[str(d)] = row
    return {"shots": shots, "n_per_cell": n, "digits": out}


# ----------------------------------------------------------------------------- Winograd-style pairs
def fit_items(n: int, seed: int = 0) -> tuple[list[str], list[list[str]], list[int]]:
    """Contexts ``the X did not fit in the Y because the`` with two options each and the correct index.

    "too big" questions are answered by the object that did not fit (X), "too small" by the
    container (Y); the correct option's position is random.
    """
    rng = random.Random(f"fit-{seed}")
    contexts, options, labels = [], [], []
    for _ in range(n):
        big, small = rng.sample(corpus.FIT_OBJECTS, 2)
        blame_big = rng.random() < 0.5
        adj = "big" if blame_big else "small"
        right, wrong = (big, small) if blame_big else (small, big)
        opts = [f" {right} was too {adj}", f" {wrong} was too {adj}"]
        label = rng.randrange(2)
        if label == 1:
            opts.reverse()
        contexts.append(f"the {big} did not fit in the {small} because the")
        options.append(opts)
        labels.append(label)
    return contexts, options, labels


def fit_pairs(model, tokenizer, *, n: int = 200, seed: int = 0, batch_size: int = 64, progress: bool = True) -> dict:
    """Pick the sentence with the higher probability. The two sentences share the prefix, so comparing
    ``log p(option | prefix)`` is comparing whole-sentence log-probabilities. Objects and sentences
    occur in pretraining (the ``fit`` family), so this measures what was learned, not transfer."""
    _check_n(n, "fit_pairs")
    contexts, options, labels = fit_items(n, seed)
    out = {"n": n}
    for key, norm in (("accuracy_sum", False), ("accuracy_per_token", True)):
        res = prompting.evaluate(model, tokenizer, contexts, labels, options=options, normalize=norm,
                                 batch_size=batch_size, progress=progress)
        out[key] = round(res["accuracy"], 4)
    return out


# ----------------------------------------------------------------------------- label mappings
def label_items(labels: tuple[str, str], k: int, n: int, seed: int = 0):
    """Sentiment prompts with ``k`` demonstrations labelled by ``labels`` = (positive word, negative word)."""
    rng = random.Random(f"labels-{seed}")
    prompts, gold = [], []
    for _ in range(n):
        sentences = [corpus.sentiment_sentence(rng) for _ in range(k + 1)]
        demos = [(s, labels[0] if pos else labels[1]) for s, pos in sentences[:k]]
        prompts.append(prompting.build_prompt(sentences[-1][0], demos, TRANSFORM_TEMPLATE))
        gold.append(0 if sentences[-1][1] else 1)
    return prompts, [w + "\n" for w in labels], gold


def label_mapping(model, tokenizer, *, ks=(0, 2, 4), n: int = 200, pairs=None, seed: int = 0,
                  batch_size: int = 64, progress: bool = True) -> dict:
    """Sentiment by in-context demonstrations, label words scored as options.

    Natural labels are known from pretraining; flipped labels test whether demonstrations can
    override that prior; unseen labels (``foo``/``bar``) need a mapping learned from the prompt alone,
    which the embedded models cannot do (close to chance, 0.5). ``{"accuracy": {pair: {"k": acc}}}``.
    """
    _check_n(n, "label_mapping")
    pairs = pairs or LABEL_PAIRS
    acc: dict = {}
    for name, words in pairs.items():
        acc[name] = {}
        for k in ks:
            prompts, options, gold = label_items(tuple(words), k, n, seed)
            res = prompting.evaluate(model, tokenizer, prompts, gold, options=options, batch_size=batch_size,
                                     progress=progress)
            acc[name][str(k)] = round(res["accuracy"], 4)
    return {"ks": list(ks), "n_per_cell": n, "pairs": {k: list(v) for k, v in pairs.items()}, "accuracy": acc}


# ----------------------------------------------------------------------------- perplexity
def heldout_perplexity(model, tokenizer, *, n_docs: int = 256, seed: int = HELDOUT_SEED, batch_size: int = 32,
                       max_length: int | None = None, progress: bool = True) -> dict:
    """Mean next-character loss on ``corpus(n_docs, seed)`` documents (each ended by ``<eos>``, as in
    training), its exponential (perplexity per character) and bits per character. ``max_length``: cut each
    document to that many tokens (default: the model's context), e.g. to leave room for a soft prompt."""
    import math

    import torch

    from .embedded.train import batch_from_documents

    if seed in (1, 999):
        raise ConfigError(f"corpus seed {seed} is used by training (1: the training stream, 999: validation).",
                          f"use a fresh seed, e.g. HELDOUT_SEED={HELDOUT_SEED}.")
    docs = corpus.corpus(n_docs, seed=seed)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    starts = range(0, n_docs, batch_size)
    with torch.no_grad():
        for s in prompting.progress_bar(starts, len(starts), "perplexity", progress):
            x, y = batch_from_documents(tokenizer, docs[s:s + batch_size], max_length or tokenizer.model_max_length)
            mask = (x != tokenizer.pad_token_id).long()
            logits = model(input_ids=x.to(device), attention_mask=mask.to(device)).logits.float().cpu()
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     y[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
            total += loss.item()
            count += int((y[:, 1:] != -100).sum())
    mean = total / count
    return {"n_docs": n_docs, "seed": seed, "tokens": count, "loss": round(mean, 4),
            "perplexity": round(math.exp(mean), 4), "bits_per_char": round(mean / math.log(2), 4)}


# ----------------------------------------------------------------------------- one member
def evaluate_model(model, tokenizer, *, quick: bool = False, seed: int = 0, batch_size: int = 64,
                   progress: bool = True) -> dict:
    """Every evaluation above on one model. ``quick``: 40 items per cell and fewer settings (a smoke test)."""
    n = 40 if quick else 200
    t0 = time.time()
    curve = few_shot_curve(model, tokenizer, ks=(0, 1, 4, 8) if quick else DEFAULT_KS, n=n, seed=seed,
                           batch_size=batch_size, progress=progress)
    out = {
        "quick": quick, "seed": seed,
        "few_shot": curve,
        "instruction": instruction_vs_few_shot(model, tokenizer, n=n, seed=seed, few_shot=curve,
                                               batch_size=batch_size, progress=progress),
        "addition": addition(model, tokenizer, digits=(2, 3) if quick else (1, 2, 3, 4), n=n, seed=seed,
                             batch_size=batch_size, progress=progress),
        "fit": fit_pairs(model, tokenizer, n=n, seed=seed, batch_size=batch_size, progress=progress),
        "labels": label_mapping(model, tokenizer, ks=(0, 4) if quick else (0, 2, 4), n=n, seed=seed,
                                batch_size=batch_size, progress=progress),
        "perplexity": heldout_perplexity(model, tokenizer, n_docs=64 if quick else 256, progress=progress),
    }
    out["seconds"] = round(time.time() - t0, 1)
    return out


def check_targets(evaluation: dict) -> dict:
    """The issue's targets for one member: ``{target: {"value": x, "threshold": t, "met": bool}}``."""
    fs, add = evaluation["few_shot"]["mean"], evaluation["addition"]["digits"]
    out = {}
    if "8" in fs and "0" in fs:
        out["transforms k=8 >= 0.9"] = {"value": fs["8"], "threshold": 0.9, "met": fs["8"] >= 0.9}
        gain = round(fs["8"] - fs["0"], 4)
        out["transforms k=8 - k=0 >= 0.6"] = {"value": gain, "threshold": 0.6, "met": gain >= 0.6}
    for d, t in (("2", 0.5), ("3", 0.4)):
        if d in add:
            out[f"scratchpad - direct at {d} digits >= {t}"] = {"value": add[d]["gap"], "threshold": t,
                                                               "met": add[d]["gap"] >= t}
    return out


def scaling_table(evaluations: dict) -> dict:
    """``{size: {"parameters": p, "few_shot": mean-by-k, "addition_gap": by digits}}`` for the members given
    (``{size: evaluation dict}``), and whether mean few-shot accuracy (k>0) rises with parameters."""
    rows = {}
    for size, ev in evaluations.items():
        rows[size] = {"parameters": ev.get("parameters"), "few_shot": ev["few_shot"]["mean"],
                      "addition_gap": {d: r["gap"] for d, r in ev["addition"]["digits"].items()}}
    order = sorted(rows, key=lambda s: rows[s]["parameters"] or 0)
    ks = [k for k in next(iter(rows.values()))["few_shot"] if k != "0"] if rows else []
    rises = {k: all(rows[a]["few_shot"].get(k, 0) < rows[b]["few_shot"].get(k, 0) for a, b in zip(order, order[1:]))
             for k in ks}
    return {"order": order, "rows": rows, "few_shot_rises_with_size": rises}


def load_evaluations(sizes=None) -> dict:
    """``{size: evaluation dict}`` read from the shipped ``evaluation.json`` files."""
    out = {}
    for size in sizes or MEMBERS:
        try:
            path = member_dir(size) / "evaluation.json"
        except FileNotFoundError:
            continue
        if path.is_file():
            out[size] = json.loads(path.read_text())
    return out


def evaluate_member(size: str = "m", *, quick: bool = False, seed: int = 0, device: str = "cpu",
                    save: bool = True, progress: bool = True) -> dict:
    """Load ``embedded-<size>``, evaluate it, and (``save``) write ``evaluation.json`` next to its weights."""
    from .models import count_parameters, load_model

    t0 = time.time()
    model, tok = load_model(f"embedded-{size}", device=device)
    load_s = time.time() - t0
    out = {"member": f"embedded-{size}", "parameters": count_parameters(model), "device": device,
           "load_seconds": round(load_s, 2)}
    out.update(evaluate_model(model, tok, quick=quick, seed=seed, progress=progress))
    out["targets"] = check_targets(out)
    if save:
        (member_dir(size) / "evaluation.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


# ----------------------------------------------------------------------------- adaptation speed
def adaptation_speed(size: str = "m", *, target: float = 0.9, max_steps: int = 300, eval_every: int = 10,
                     lr: float = 2e-3, batch_size: int = 16, seeds=(0,), r: int = 8, lora_alpha: int = 16,
                     eval_examples: int = 200, progress: bool = True) -> dict:
    """Steps of LoRA fine-tuning on review verdicts to reach ``target`` validation accuracy, from the
    pretrained member and from the same architecture with random weights.

    LoRA via peft: ``LoraConfig(r, lora_alpha, target_modules=["q_proj","k_proj","v_proj","o_proj"])``.
    Accuracy compares the label words' log-likelihoods (:func:`course_lib.training.accuracy`) every
    ``eval_every`` steps on the validation split. A run that never reaches the target reports
    ``None`` steps. Returns ``{"runs": {"pretrained"|"random": [per seed {...}]}, ...}``.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from . import training
    from .models import load_model
    from .tasks import review_verdicts

    task = review_verdicts()
    val = task["validation"][:eval_examples]
    runs: dict = {"pretrained": [], "random": []}
    for init in runs:
        for seed in seeds:
            model, tok = load_model(f"embedded-{size}", device="cpu")
            if init == "random":
                torch.manual_seed(seed)
                model = AutoModelForCausalLM.from_config(model.config).eval()
            torch.manual_seed(seed)
            config = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=0.0, bias="none",
                                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
            model = get_peft_model(model, config)
            curve = [(0, round(training.accuracy(model.eval(), tok, task, val), 4))]

            class _Reached(Exception):
                pass

            def check(step, m):  # after every optimiser step: evaluate every eval_every steps, stop at target
                if step % eval_every == 0:
                    acc = round(training.accuracy(m.eval(), tok, task, val), 4)
                    m.train()
                    curve.append((step, acc))
                    if progress:
                        print(f"{init} seed {seed}: step {step} validation accuracy {acc:.3f}", flush=True)
                    if acc >= target:
                        raise _Reached

            t0 = time.time()
            if curve[0][1] < target:
                cfg = training.TrainConfig(steps=max_steps, batch_size=batch_size, lr=lr, seed=seed)
                try:
                    training.train(model, tok, task, cfg, progress=False, after_step=check)
                except _Reached:
                    pass
            reached = next((step for step, acc in curve if acc >= target), None)
            runs[init].append({"seed": seed, "steps_to_target": reached, "curve": curve,
                               "seconds": round(time.time() - t0, 1)})
    def summary(rs):
        steps = [x["steps_to_target"] for x in rs]
        return {"steps": steps, "all_reached": all(s is not None for s in steps)}
    out = {"member": f"embedded-{size}", "task": task.name, "target": target, "max_steps": max_steps,
           "eval_every": eval_every, "lr": lr, "batch_size": batch_size, "seeds": list(seeds),
           "lora": {"r": r, "lora_alpha": lora_alpha, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
           "validation_examples": len(val), "runs": runs,
           "summary": {k: summary(v) for k, v in runs.items()}}
    pre, rnd = out["summary"]["pretrained"]["steps"], out["summary"]["random"]["steps"]
    out["pretrained_faster"] = all(p is not None and (q is None or p < q) for p, q in zip(pre, rnd))
    return out


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Evaluate one embedded member and write its evaluation.json.")
    p.add_argument("--size", default="m", choices=("xs", "s", "m", "l"))
    p.add_argument("--quick", action="store_true", help="40 items per cell, fewer settings (a smoke test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a shared CPU: tiny matrices, no spin-waiting)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--adaptation", action="store_true",
                   help="also run adaptation_speed and store it in evaluation.json (minutes)")
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    out = evaluate_member(a.size, quick=a.quick, seed=a.seed, device=a.device, save=not a.no_save)
    if a.adaptation:
        from . import member_dir
        out["adaptation_speed"] = adaptation_speed(a.size)
        if not a.no_save:
            (member_dir(a.size) / "evaluation.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("member", "parameters", "seconds", "targets")}, indent=1))
    print("few-shot mean:", out["few_shot"]["mean"])
    print("addition:", out["addition"]["digits"])


if __name__ == "__main__":
    main()

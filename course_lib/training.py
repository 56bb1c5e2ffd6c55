"""Fine-tuning a causal LM on a task posed as text, and measuring it.

The conditional language-modelling objective of fine-tuning: given a prompt ``x`` and a target
``y`` (the label word), maximise ``log p(y | x) = sum_t log p(y_t | x, y_<t)``. The prompt tokens
are context only: their labels are ``-100`` so they add nothing to the loss, and neither does
padding. Every method in the course (full fine-tuning, BitFit, LoRA, QLoRA, prefix and prompt
tuning, adapters) trains with this same loop; what differs is which parameters have
``requires_grad=True``.

Shapes: ``input_ids``, ``attention_mask``, ``labels``: (batch, T); ``logits``: (batch, T, vocab).
Models that prepend virtual tokens (prompt tuning) may return more than T positions; the loop
keeps the last T, which belong to the real tokens.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .devices import device_of, to_device  # notebooks call them as training.device_of / training.to_device
from .errors import ConfigError
from .precision import precision_for


def conditional_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions whose label is not -100.

    ``logits[:, t]`` predicts token ``t + 1``, so logits drop the last position and labels the
    first. ``logits``: (B, T, V); ``labels``: (B, T). Averaged over target tokens in the batch.
    """
    if logits.shape[:2] != labels.shape:
        raise ConfigError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on (batch, length).",
                          "pass logits of shape (B, T, V) and labels of shape (B, T) for the same batch.")
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shift_labels = labels[:, 1:].reshape(-1)
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=-100)


def _prompt_length(tokenizer, prompt: str, full_ids: list[int]) -> int:
    ids = tokenizer(prompt).input_ids
    if full_ids[:len(ids)] != ids:  # the tokenizer merged across the boundary: find the longest common prefix
        n = 0
        while n < min(len(ids), len(full_ids)) and ids[n] == full_ids[n]:
            n += 1
        return n
    return len(ids)


def encode_examples(tokenizer, task, examples, max_length: int | None = None, *,
                    device=None) -> dict[str, torch.Tensor]:
    """Tokenise ``prompt + target`` per example; labels are -100 on prompt tokens and padding.

    Right padding. Sequences longer than ``max_length`` lose tokens from the left of the prompt,
    so the target always survives. ``device``: where the tensors go; pass the model that will read
    them (``device=model``) so they land on its device (see :func:`device_of`). None: the CPU.
    """
    rows = []
    for ex in examples:
        prompt, full = task.prompt(ex), task.prompt(ex) + task.target(ex)
        ids = tokenizer(full).input_ids
        n_prompt = _prompt_length(tokenizer, prompt, ids)
        if max_length and len(ids) > max_length:
            cut = len(ids) - max_length
            ids, n_prompt = ids[cut:], max(0, n_prompt - cut)
        rows.append((ids, n_prompt))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention_mask[i, :len(ids)] = 1
        labels[i, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
    return to_device({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}, device)


@dataclass
class TextPairs:
    """Generation data for :func:`train`: ``(prompt, target)`` strings, the loss on the target only.

    ``TextPairs([("plant => ", "PLANT\\n"), ...])`` has one split, ``train`` (no ``validation``, so
    :func:`train` only records the loss). Evaluate what it learned by generating.
    """

    pairs: list[tuple[str, str]]
    name: str = "text pairs"

    def __post_init__(self):
        self.pairs = [tuple(p) for p in self.pairs]
        bad = [p for p in self.pairs if len(p) != 2 or not all(isinstance(x, str) for x in p)]
        if bad or not self.pairs:
            raise ConfigError(f"TextPairs needs a non-empty list of (prompt, target) strings; got {bad[:1] or 'nothing'}.",
                              "pass e.g. [('plant => ', 'PLANT\\n')].")

    @property
    def splits(self) -> dict[str, list[tuple[str, str]]]:
        return {"train": self.pairs}

    def prompt(self, pair: tuple[str, str]) -> str:
        return pair[0]

    def target(self, pair: tuple[str, str]) -> str:
        return pair[1]

    def __getitem__(self, split: str) -> list[tuple[str, str]]:
        if split != "train":
            raise ConfigError(f"TextPairs has only the split 'train', not {split!r}.", "use task['train'].")
        return self.pairs


@torch.no_grad()
def label_log_likelihoods(model, tokenizer, task, examples, batch_size: int = 64) -> torch.Tensor:
    """``log p(" " + label_word | prompt)`` for every example and label word: shape (n, n_labels)."""
    from .scoring import continuation_log_probs

    was_training = model.training
    model.eval()
    n_labels = len(task.label_words)
    rows = []
    for ex in examples:
        prompt = task.prompt(ex)
        for word in task.label_words:
            ids = tokenizer(prompt + " " + word).input_ids
            rows.append((ids, _prompt_length(tokenizer, prompt, ids)))
    scores = continuation_log_probs(model, rows, pad_id=tokenizer.pad_token_id or 0, batch_size=batch_size)
    model.train(was_training)
    return torch.tensor(scores).view(len(examples), n_labels)


def label_scores(model, tokenizer, task, examples, batch_size: int = 64) -> dict[str, float]:
    """``accuracy`` (fraction whose most likely label word is the right one) and ``nll``: the mean
    ``-log p(" " + right label word | prompt)`` in nats (0 when the model is sure and right)."""
    examples = list(examples)
    if not examples:
        raise ConfigError("accuracy() got no examples.", "pass a non-empty list, e.g. task['validation'].")
    scores = label_log_likelihoods(model, tokenizer, task, examples, batch_size)
    gold = torch.tensor([ex.label for ex in examples])
    return {"accuracy": (scores.argmax(dim=1) == gold).float().mean().item(),
            "nll": -scores[torch.arange(len(examples)), gold].mean().item()}


def accuracy(model, tokenizer, task, examples, batch_size: int = 64) -> float:
    """Fraction of examples whose most likely label word is the right one."""
    return label_scores(model, tokenizer, task, examples, batch_size)["accuracy"]


def trainable_parameters(model) -> int:
    """Number of parameters with ``requires_grad`` (shared tensors counted once)."""
    seen = {id(p): p.numel() for p in model.parameters() if p.requires_grad}
    return sum(seen.values())


@dataclass
class TrainConfig:
    steps: int
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    eval_every: int = 0          # 0: evaluate only at the end
    eval_examples: int = 200     # validation examples per evaluation
    max_length: int | None = None

    def __post_init__(self):
        if self.steps < 0 or self.batch_size <= 0:
            raise ConfigError(f"steps={self.steps} and batch_size={self.batch_size} must be >= 0 and > 0.",
                              "use e.g. TrainConfig(steps=runtime.budget.train_steps, batch_size=runtime.budget.batch_size).")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be positive.", "typical values: 5e-4 full fine-tuning, 3e-3 LoRA.")

    @classmethod
    def from_runtime(cls, runtime, **overrides) -> "TrainConfig":
        b = runtime.budget
        kw = dict(steps=b.train_steps, batch_size=b.batch_size, max_length=b.max_length,
                  eval_examples=b.eval_examples)
        kw.update(overrides)
        return cls(**kw)


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)   # {"step", "accuracy", "nll"} at each evaluation
    seconds: float = 0.0                                # training time, evaluations excluded
    trainable: int = 0

    @property
    def final_accuracy(self) -> float | None:
        return self.history[-1]["accuracy"] if self.history else None

    @property
    def final_nll(self) -> float | None:
        """Validation NLL of the right label word at the last evaluation (:func:`label_scores`), in nats.

        Unlike ``losses`` (every target token, including the answer's format), it measures only the label."""
        return self.history[-1]["nll"] if self.history else None


def train(model, tokenizer, task, config: TrainConfig, *, parameters=None, progress: bool = True,
          after_step: Callable[[int, torch.nn.Module], None] | None = None, split: str = "train",
          forward_kwargs: Callable[[list], dict] | None = None) -> TrainResult:
    """Train the parameters that require grad (or ``parameters``) with AdamW on ``task[split]``.

    Batches are drawn with a seeded RNG, so a run is reproducible on CPU. ``after_step(step, model)``
    runs after every optimiser step (pruning re-applies its masks there). ``forward_kwargs(rows)``: extra
    keyword arguments of the forward pass for the sampled rows (e.g. :meth:`course_lib.tasks.TaskMixture.forward_kwargs`:
    one task id per row). Evaluates validation
    accuracy and label NLL (:func:`label_scores`) every ``eval_every`` steps and at the end. The forward runs in the device's mixed precision
    (:func:`course_lib.precision.precision_for`: fp32 on CPU, bf16 or fp16 with grad scaling on CUDA).
    """
    from tqdm.auto import tqdm

    params = list(parameters) if parameters is not None else [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: no parameter has requires_grad=True.",
                          "apply a method first (e.g. apply_lora(model, config)) or unfreeze parameters.")
    data = task[split]
    val = task["validation"][:config.eval_examples] if "validation" in task.splits else None
    device = device_of(model)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    precision = precision_for(device)   # fp32 on CPU; bf16 autocast, or fp16 autocast + grad scaling, on CUDA
    scaler = precision.grad_scaler()
    result = TrainResult(trainable=sum(p.numel() for p in {id(p): p for p in params}.values()))
    bar = tqdm(range(1, config.steps + 1), desc="training", disable=not progress, mininterval=0.5)
    for step in bar:
        t0 = time.perf_counter()
        model.train()
        rows = rng.sample(data, min(config.batch_size, len(data)))
        batch = encode_examples(tokenizer, task, rows, config.max_length, device=device)
        extra = to_device(forward_kwargs(rows), device) if forward_kwargs else {}
        T = batch["input_ids"].shape[1]
        with precision.autocast():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **extra)
        loss = conditional_lm_loss(out.logits[:, -T:], batch["labels"])
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(step, model)
        result.seconds += time.perf_counter() - t0
        result.losses.append(loss.item())
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
        if val and ((config.eval_every and step % config.eval_every == 0) or step == config.steps):
            result.history.append({"step": step, **label_scores(model, tokenizer, task, val)})
    model.eval()
    return result


@dataclass
class ScaleResult:
    """What :func:`train_across_models` measured: parameters, untrained and trained accuracy per model."""
    sizes: dict[str, int] = field(default_factory=dict)                  # {model: parameters}
    baseline: dict[str, float] = field(default_factory=dict)             # {model: accuracy before training}
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # {method: {model: final accuracy}}


def train_across_models(models: list[str], methods: dict[str, Callable], task, config: TrainConfig, *,
                        runtime=None, progress: bool = True) -> ScaleResult:
    """Train every method on every model with the same budget; one progress bar over all the runs.

    ``methods`` maps a name to ``make(model, tokenizer) -> (wrapped_model, lr)``; ``make`` must not
    change ``model`` (wrap a ``copy.deepcopy``). For each model (loaded with
    :func:`course_lib.models.load_model`) each method's model is made in the order given and trained with
    ``config`` at its own learning rate (:func:`train` seeds with ``config.seed``), one copy at a time.
    Accuracies, before and after, are on the first ``config.eval_examples`` validation examples.
    Used by lecture 06 to compare methods across model sizes.
    """
    import dataclasses

    from tqdm.auto import tqdm

    from .models import count_parameters, load_model

    result = ScaleResult(accuracy={name: {} for name in methods})
    bar = tqdm(total=len(models) * len(methods), desc="runs", unit="run", disable=not progress)
    for name in models:
        model, tokenizer = load_model(name, runtime=runtime)
        result.sizes[name] = count_parameters(model)
        result.baseline[name] = accuracy(model, tokenizer, task, task["validation"][:config.eval_examples])
        rng = torch.get_rng_state()
        for method, make in methods.items():
            # one trained copy in memory at a time; each is made from the RNG state the previous make left,
            # so the numbers equal making them all first (training reseeds the global RNG)
            torch.set_rng_state(rng)
            wrapped, lr = make(model, tokenizer)
            rng = torch.get_rng_state()
            bar.set_postfix_str(f"{name}: {method}")
            run = train(wrapped, tokenizer, task, dataclasses.replace(config, lr=lr), progress=False)
            result.accuracy[method][name] = run.final_accuracy
            bar.update(1)
            del wrapped, run
        del model
    bar.close()
    return result


def multitask_scores(model: torch.nn.Module, tokenizer, tasks, examples) -> list[dict[str, float]]:
    """:func:`label_scores` of each task on ``examples``, the model told the task's id (its index in ``tasks``)
    on every row: a multitask prompt (:func:`course_lib.methods.prompt_tuning.multitask_prompt_tuning`)."""
    from .methods.prompt_tuning import TaskIdModel

    return [label_scores(TaskIdModel(model, k), tokenizer, task, examples) for k, task in enumerate(tasks)]


def train_side_by_side(tokenizer, runs: list[tuple], *, workers: int | None = None) -> list[TrainResult]:
    """Train several models at once, each **in place**, as :func:`train` would one after another.

    ``runs``: ``(model, task, config)`` triples. On a CPU the runs are spread over the cores
    (:func:`course_lib.forkpool.fork_map`): a run trained in a forked worker sends its state dict back and
    the caller's model loads it, so afterwards every model holds its trained weights whichever process
    trained it. With more than one worker every run uses one torch thread, so the numbers do not depend on
    ``workers`` (default :func:`~course_lib.forkpool.default_workers`: 1 on a GPU). Returns the
    :class:`TrainResult` of each run, in order.
    """
    from .forkpool import cpu_state, default_workers, fork_map

    runs = list(runs)
    if not runs:
        raise ConfigError("no runs to train.", "pass a list of (model, task, TrainConfig) triples.")
    for i, run in enumerate(runs):
        if len(run) != 3 or not isinstance(run[2], TrainConfig):
            raise ConfigError(f"run {i} is not a (model, task, TrainConfig) triple.",
                              "build each run as (model, task, TrainConfig(...)).")
    if len({id(m) for m, _, _ in runs}) != len(runs):
        raise ConfigError("the same model object appears in two runs.", "train a copy.deepcopy of it in the second run.")

    def one(i):
        model, task, config = runs[i]
        result = train(model, tokenizer, task, config, progress=False)
        return result, cpu_state(model)

    n = default_workers(runs[0][0], len(runs)) if workers is None else workers
    out = fork_map(one, list(range(len(runs))), workers=n)
    results = []
    for (model, _, _), (result, state) in zip(runs, out):
        model.load_state_dict(state)
        results.append(result)
    return results

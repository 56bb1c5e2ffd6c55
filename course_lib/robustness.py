"""Several seeds per method, judged where the task has headroom, and what training cost the model elsewhere.

On the embedded runtime the review-verdicts task is at its ceiling *in distribution*: full fine-tuning and
LoRA reach 97-100% on ``test`` within the lecture budget, so a comparison there cannot rank methods. Its
``test_unseen`` split is the same task on reviews whose adjectives never occur in the training split (their
polarity was seen only in pretraining, :func:`course_lib.tasks.review_verdicts`): a **shifted split**, where
a method has to carry over what the pretrained model knew instead of memorising the training adjectives.
There, full fine-tuning lands well below 100% and the methods separate, so it is the split the course
decides claims on, with several seeds and their spread.

:func:`run_study` trains each :class:`Arm` (a method module of :mod:`course_lib.methods`, its ``Config`` and a
learning rate) once per seed, each run on a fresh copy of the same pretrained model with the shared loop
(:func:`course_lib.training.train`: the seed fixes the initialisation and the data order). Per run it records:

* ``accuracy[split]``: label-word accuracy on the first ``n_eval`` examples of every split in ``splits``
  (robustness out of distribution is the gap between ``test`` and ``test_unseen``);
* ``general_loss``: :func:`general_loss`, the mean next-character loss on held-out pretraining documents,
  the general-ability probe: **catastrophic
  forgetting** is how far it rises above the pretrained model's (Kirkpatrick et al. 2017; for fine-tuned LMs
  e.g. Luo et al. 2023, arXiv:2308.08747);
* ``base_intact``: whether every tensor of the pretrained model is still in the trained one bit for bit. Then
  removing (or disabling) what the method added gives the pretrained model back exactly: true for LoRA,
  adapters and soft prompts, false for full fine-tuning and freeze-tuning, which overwrite the base.

The runs are independent, so on a CPU they are spread over every core (:mod:`course_lib.forkpool`: forked
workers, one torch thread each; on 2 cores a study takes about half the time), with the same numbers as one
process.

:class:`Study` keeps the runs and summarises each arm as mean, lowest and highest over its seeds
(:meth:`Study.values` feeds :func:`course_lib.findings.separated`).
"""
from __future__ import annotations

import copy
import hashlib
import statistics
from dataclasses import dataclass, field
from types import ModuleType

import torch

from .errors import ConfigError

GENERAL = "general_loss"
#: Tokens the general-ability probe leaves free in the context (soft prompts and prefixes take positions).
PROBE_ROOM = 64


@dataclass(frozen=True)
class Arm:
    """One configuration to train on every seed: ``method`` is a method module (``course_lib.methods.lora``,
    ``...freeze``, ...) whose ``apply(model, config)`` adapts a fresh copy; ``lr`` its AdamW learning rate."""

    label: str
    method: ModuleType
    config: object
    lr: float

    def __post_init__(self):
        if not callable(getattr(self.method, "apply", None)):
            raise ConfigError(f"Arm {self.label!r}: {self.method!r} has no apply(model, config).",
                              "pass a method module, e.g. course_lib.methods.lora with lora.Config(...).")
        if not self.lr > 0:
            raise ConfigError(f"Arm {self.label!r}: lr={self.lr} must be positive.",
                              "use runtime.learning_rate(<method>) for the course's rates.")


@dataclass
class SeedRun:
    arm: str
    seed: int
    trainable: int
    accuracy: dict[str, float]
    general_loss: float | None      # None when the study skipped the general probe (general_docs=0)
    base_intact: bool
    seconds: float
    losses: list[float] = field(default_factory=list)

    def train_result(self, split: str):
        """This run as a :class:`course_lib.training.TrainResult`: its losses, its trainable count, and its accuracy
        on ``split`` as the one evaluation (for code written against :func:`course_lib.training.train`)."""
        from .training import TrainResult

        if split not in self.accuracy:
            raise ConfigError(f"this run was not evaluated on {split!r}.", f"use one of {sorted(self.accuracy)}.")
        return TrainResult(list(self.losses), [{"step": len(self.losses), "accuracy": self.accuracy[split]}],
                           trainable=self.trainable)


@dataclass
class Study:
    """The runs of :func:`run_study` and the pretrained model's numbers (``baseline``: ``{split: accuracy}``
    plus :data:`GENERAL`)."""

    splits: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    baseline: dict[str, float]
    runs: list[SeedRun] = field(default_factory=list)
    general_docs: int = 32                                   # documents of the general-ability probe
    models: dict = field(default_factory=dict, repr=False)   # {arm: trained model of ``keep_seed``}

    @property
    def metrics(self) -> tuple[str, ...]:
        """The splits, then :data:`GENERAL` when the study ran the general probe."""
        return (*self.splits, GENERAL) if self.general_docs else tuple(self.splits)

    @property
    def arms(self) -> list[str]:
        return list(dict.fromkeys(r.arm for r in self.runs))

    def values(self, arm: str, metric: str) -> list[float]:
        """One number per seed: ``metric`` is a split (accuracy) or :data:`GENERAL`."""
        if arm not in self.arms:
            raise ConfigError(f"no arm {arm!r} in this study.", f"use one of {self.arms}.")
        if metric == GENERAL and not self.general_docs:
            raise ConfigError("this study ran without the general probe (general_docs=0).",
                              "run it with general_docs > 0, or ask for a split's accuracy.")
        if metric != GENERAL and metric not in self.splits:
            raise ConfigError(f"unknown metric {metric!r}.", f"use a split of {list(self.splits)} or {GENERAL!r}.")
        return [r.general_loss if metric == GENERAL else r.accuracy[metric] for r in self.runs if r.arm == arm]

    def mean(self, arm: str, metric: str) -> float:
        return statistics.fmean(self.values(arm, metric))

    def summary(self) -> list[dict]:
        """One row per arm: trainable parameters, mean/lowest/highest of every metric, and ``base_intact``
        (true only when it held on every seed)."""
        rows = []
        for arm in self.arms:
            runs = [r for r in self.runs if r.arm == arm]
            row = {"arm": arm, "trainable": runs[0].trainable, "seeds": len(runs)}
            for metric in self.metrics:
                v = self.values(arm, metric)
                row.update({f"{metric} mean": statistics.fmean(v), f"{metric} min": min(v), f"{metric} max": max(v)})
            row["base_intact"] = all(r.base_intact for r in runs)
            rows.append(row)
        return rows

    def table(self) -> str:
        """The summary as fixed-width text: mean [lowest, highest] over the seeds."""
        cols = list(self.metrics)
        head = f"{'arm':30s} {'trainable':>9s} " + " ".join(f"{c:>21s}" for c in cols) + "  base intact"
        lines = [head, "-" * len(head)]
        base = " ".join(f"{self.baseline[c]:>21.3f}" for c in cols)
        lines.append(f"{'pretrained (untrained)':30s} {'':>9s} {base}  yes")
        for row in self.summary():
            cells = " ".join(f"{row[c + ' mean']:>7.3f} [{row[c + ' min']:.3f},{row[c + ' max']:.3f}]" for c in cols)
            lines.append(f"{row['arm']:30s} {row['trainable']:>9,} {cells}  {'yes' if row['base_intact'] else 'no'}")
        return "\n".join(lines)


def _tensor_digests(model: torch.nn.Module) -> list[str]:
    out = []
    for t in model.state_dict().values():
        t = t.detach().cpu().contiguous()
        out.append(hashlib.sha256(str((t.dtype, tuple(t.shape))).encode()
                                  + t.view(-1).view(torch.uint8).numpy().tobytes()).hexdigest())
    return out


def base_intact(pretrained_digests: list[str], model: torch.nn.Module) -> bool:
    """True when every tensor of the pretrained model (given as :func:`_tensor_digests`) is still somewhere in
    ``model`` with the same dtype, shape and bytes: the method only added to it (names may differ, as when
    LoRA wraps a layer and its weight becomes ``base_layer.weight``)."""
    have = set(_tensor_digests(model))
    return all(d in have for d in pretrained_digests)


def general_loss(model, tokenizer, n_docs: int = 32) -> float:
    """The general-ability probe: mean next-character loss (nats) on ``n_docs`` held-out pretraining documents
    (:func:`course_lib.family_eval.heldout_perplexity`), each cut to the context less :data:`PROBE_ROOM` tokens
    so that a soft prompt or prefix fits. Lower is better; catastrophic forgetting is its rise after tuning."""
    from .family_eval import heldout_perplexity

    context = min(getattr(tokenizer, "model_max_length", 0) or 256, 4096)   # hub tokenizers may say 1e30
    return heldout_perplexity(model, tokenizer, n_docs=n_docs, max_length=max(16, context - PROBE_ROOM),
                              progress=False)["loss"]


def run_study(model, tokenizer, task, arms: list[Arm], *, steps: int, seeds=(0, 1, 2), batch_size: int = 16,
              max_length: int | None = None, splits=("test", "test_unseen"), n_eval: int = 200,
              general_docs: int = 32, keep_seed: int | None = None, progress: bool = True,
              workers: int | None = None) -> Study:
    """Train every arm on every seed (``len(arms) * len(seeds)`` runs, one progress bar) and measure each run.

    ``model`` is the pretrained model and is not changed. Accuracies use the first ``n_eval`` examples of each
    split; the general loss is :func:`general_loss` on ``general_docs`` documents (on a hub model it is the same
    probe on the course's synthetic documents; ``general_docs=0`` skips the probe). ``keep_seed``: keep that
    seed's trained model of every arm in ``Study.models`` (for later cells); the others are dropped after
    measuring. ``workers``: processes that train runs side by side (:func:`course_lib.forkpool.fork_map`; default
    :func:`~course_lib.forkpool.default_workers`: one per CPU core on a CPU, 1 on a GPU). The numbers do not
    depend on it: with more than one worker every run uses one torch thread, wherever it runs.
    """
    from tqdm.auto import tqdm

    from .forkpool import cpu_state, default_workers, fork_map
    from .training import TrainConfig, accuracy, train

    if not arms:
        raise ConfigError("no arms to train.", "pass a list of Arm(label, method module, config, lr).")
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"arm labels repeat: {labels}.", "give every arm its own label.")
    seeds = tuple(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={seeds}: need at least one seed and no repeats.", "use e.g. seeds=(0, 1, 2).")
    if not splits:
        raise ConfigError("no splits to evaluate on.", "pass e.g. splits=(\"test\",).")
    for s in splits:
        task[s]   # a clear error for an unknown split
    if general_docs < 0:
        raise ConfigError(f"general_docs={general_docs} is negative.", "use 0 to skip the general probe, or e.g. 32.")
    if keep_seed is not None and keep_seed not in seeds:
        raise ConfigError(f"keep_seed={keep_seed} is not one of the seeds {seeds}.", "pick one of them, or None.")

    def measure(m) -> tuple[dict[str, float], float | None]:
        acc = {s: accuracy(m, tokenizer, task, task[s][:n_eval]) for s in splits}
        return acc, (general_loss(m, tokenizer, general_docs) if general_docs else None)

    base_acc, base_loss = measure(model)
    baseline = {**base_acc, **({GENERAL: base_loss} if general_docs else {})}
    study = Study(tuple(splits), seeds, steps, baseline, general_docs=general_docs)
    digests = _tensor_digests(model)
    jobs = [(arm, seed) for arm in arms for seed in seeds]

    def one(job):
        arm, seed = job
        torch.manual_seed(seed)
        tuned = arm.method.apply(copy.deepcopy(model), arm.config)
        cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=arm.lr, seed=seed, max_length=max_length,
                          eval_examples=0)
        run = train(tuned, tokenizer, task, cfg, progress=False)
        acc, loss = measure(tuned)
        result = SeedRun(arm.label, seed, run.trainable, acc, loss, base_intact(digests, tuned), run.seconds, run.losses)
        if seed != keep_seed:
            return result
        return result, cpu_state(tuned)   # the weights travel, not the module

    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)

    def done(i, result) -> None:
        bar.set_postfix_str(f"{jobs[i][0].label}, seed {jobs[i][1]}")
        bar.update(1)

    n = default_workers(model, len(jobs)) if workers is None else workers
    results = fork_map(one, jobs, workers=n, on_done=done)
    bar.close()
    for (arm, seed), result in zip(jobs, results):
        if seed == keep_seed:        # rebuild the kept run's model as it was made, then load its trained weights
            result, state = result
            torch.manual_seed(seed)
            kept = arm.method.apply(copy.deepcopy(model), arm.config)
            kept.load_state_dict(state)
            study.models[arm.label] = kept
        study.runs.append(result)
    return study

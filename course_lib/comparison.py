"""The capstone of lectures 03-08: every adaptation method on one downstream task.

:func:`compare_methods` loads the runtime's model and task, then for each method builds a fresh
copy of the model with that method applied, trains it with the same loop (:func:`course_lib.training.train`),
the same number of steps, batch size and data order, and records one row:

=====================  ================================================================
``method``             key (``"full"``, ``"bitfit"``, ``"lora"``, ``"qlora"``, ``"prefix"``, ``"prompt"``,
                       ``"adapter"``, ``"parallel_adapter"``, ``"mam"``)
``trainable``          parameters with ``requires_grad`` (counted on the model)
``formula``            the same number from the method's own formula (``r (d + k)``, ``2 d m + d + m``, ...)
``fraction``           ``trainable / base parameters``
``accuracy``           test accuracy after training (the untrained model's is ``baseline``)
``shifted_accuracy``   accuracy on the task's shifted split (``test_unseen``: reviews whose adjectives training
                       never shows, where the methods are not at their ceiling), or None when the task has none
``curve``              ``[[step, test accuracy], ...]`` at the capstone's ``checkpoints`` and after the last step (the
                       last pair is ``accuracy``): a split at its ceiling at the end may still rank the methods earlier
``seconds``            training time (evaluations excluded)
``peak_memory_bytes``  peak bytes of live tensors in one training step (CPU: counted through a
                       ``TorchDispatchMode``; CUDA: ``torch.cuda.max_memory_allocated``)
=====================  ================================================================

:func:`save_comparison` writes rows plus hardware and library versions as JSON.
Sizes per method are :class:`MethodSettings`; learning rates and the test size come from the runtime
(:meth:`course_lib.runtime.Runtime.learning_rate`, ``budget.capstone_eval_examples``).
"""
from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .errors import ConfigError
from .methods.catalog import METHODS as CATALOG
from .methods.catalog import get_method

METHODS = tuple(CATALOG)
#: The split a row's ``shifted_accuracy`` is measured on, when the task has it (:func:`course_lib.tasks.review_verdicts`).
SHIFTED_SPLIT = "test_unseen"
LABELS = {key: method.label for key, method in CATALOG.items()}


@dataclass
class MethodSettings:
    """Sizes of every method (shared where methods correspond: the adapter's m is LoRA's r)."""

    r: int = 8                      # LoRA / QLoRA rank
    lora_alpha: float = 16
    target_modules: tuple = ("q_proj", "v_proj")
    num_virtual_tokens: int = 8     # prefix and prompt length
    mam_virtual_tokens: int = 4     # MAM's prefix (He et al. use fewer tokens than plain prefix tuning)
    bottleneck_size: int = 8        # adapter m (sequential and parallel), MAM's r
    parallel_scaling: float = 4.0

    def config(self, method: str, task=None, tokenizer=None):
        """The validated ``Config`` of ``method`` at these sizes (prompt tuning starts from the task's
        label words, so it needs ``task`` and ``tokenizer``)."""
        lora = dict(r=self.r, lora_alpha=self.lora_alpha, target_modules=list(self.target_modules))
        kwargs = {"full": {}, "bitfit": {}, "lora": lora, "qlora": lora,
                  "prefix": dict(num_virtual_tokens=self.num_virtual_tokens),
                  "prompt": dict(num_virtual_tokens=self.num_virtual_tokens, init="text", tokenizer=tokenizer,
                                 init_text=" ".join(task.label_words) if task is not None else None),
                  "adapter": dict(placement="pfeiffer", bottleneck_size=self.bottleneck_size),
                  "parallel_adapter": dict(bottleneck_size=self.bottleneck_size, scaling=self.parallel_scaling),
                  "mam": dict(num_virtual_tokens=self.mam_virtual_tokens, bottleneck_size=self.bottleneck_size,
                              scaling=self.parallel_scaling)}
        return get_method(method).Config(**kwargs[method])

    def __post_init__(self):
        for name in ("r", "num_virtual_tokens", "mam_virtual_tokens", "bottleneck_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"MethodSettings.{name} must be a positive integer, got {v!r}.",
                                  f"use e.g. {name}=8.")


def build_method(method: str, model, tokenizer, task, settings: MethodSettings | None = None):
    """A fresh copy of ``model`` with ``method`` applied: ``(model to train, formula count)``.

    The base model is left unchanged. Every method goes through the same three calls of
    :mod:`course_lib.methods.catalog`: its ``Config`` (from ``settings``), ``apply`` and
    ``expected_parameters`` (the formula, from the architecture, not from the built model).
    """
    spec = get_method(method)
    config = (settings or MethodSettings()).config(method, task, tokenizer)
    return spec.apply(copy.deepcopy(model), config), spec.expected_parameters(model, config)


@dataclass
class Comparison:
    """Rows (one dict per method) and the facts needed to reproduce them."""

    rows: list[dict]
    baseline: float
    meta: dict = field(default_factory=dict)

    def table(self) -> str:
        """The rows as a fixed-width text table (with a ``shifted`` column when the rows have a shifted split)."""
        shifted = any(r.get("shifted_accuracy") is not None for r in self.rows)
        extra = f" {'shifted':>8s}" if shifted else ""
        head = (f"{'method':34s} {'trainable':>10s} {'% of base':>9s} {'accuracy':>8s}{extra} {'time (s)':>8s} "
                f"{'peak MB':>8s}")
        lines = [head, "-" * len(head)]
        for r in self.rows:
            cell = f" {r['shifted_accuracy']:>8.1%}" if shifted else ""
            peak = f"{r['peak_memory_bytes'] / 1e6:>8.2f}" if r.get("peak_memory_bytes") is not None else f"{'-':>8s}"
            lines.append(f"{r['label']:34s} {r['trainable']:>10,} {100 * r['fraction']:>8.3f}% {r['accuracy']:>8.1%}{cell} "
                         f"{r['seconds']:>8.1f} {peak}")
        base_shifted = self.meta.get("shifted_baseline")
        cell = f" {base_shifted:>8.1%}" if shifted and base_shifted is not None else ""
        lines.append(f"{'untrained model':34s} {'':>10s} {'':>9s} {self.baseline:>8.1%}{cell}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "baseline": self.baseline, "meta": self.meta}


def environment() -> dict:
    """Hardware and library versions, for the JSON next to the results."""
    import os

    import torch
    import transformers

    from . import __version__
    info = {"python": platform.python_version(), "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__, "course_lib": __version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import peft
        info["peft"] = peft.__version__
    except ImportError:
        info["peft"] = None
    return info


@dataclass
class Capstone:
    """The fixed part of the capstone: the model, task, training settings, test split and baseline.

    Built by :meth:`prepare`; then, for each method, :meth:`measure` trains an adapted copy with the
    shared loop and returns its row, and :meth:`result` gathers the rows. Every method starts from the
    same weights and sees the same batches (same ``seed``).
    """

    runtime: object
    model: object
    tokenizer: object
    task: object
    train_config: object
    test: list
    learning_rates: dict
    base_parameters: int
    baseline: float
    settings: MethodSettings
    measure_memory: bool = True
    progress: bool = True
    started: float = field(default_factory=time.perf_counter)
    shifted: list = field(default_factory=list)    # the shifted split's first eval_examples ([] when the task has none)
    shifted_baseline: float | None = None
    checkpoints: tuple = ()                        # steps (before the last) after which test accuracy is also measured

    @classmethod
    def prepare(cls, runtime=None, *, model=None, tokenizer=None, task=None, settings: MethodSettings | None = None,
                steps: int | None = None, batch_size: int | None = None, eval_examples: int | None = None,
                learning_rates: dict | None = None, seed: int = 0, measure_memory: bool = True,
                progress: bool = True, checkpoints: Sequence[int] | None = None) -> "Capstone":
        """``steps``/``batch_size`` default to ``runtime.budget``, ``eval_examples`` to
        ``runtime.budget.capstone_eval_examples``; ``model``/``tokenizer`` to ``load_model(runtime=runtime)``; ``task`` to
        ``downstream_task(runtime)``; ``learning_rates`` override ``runtime.learning_rate(method)`` per method.
        ``checkpoints``: steps before the last after which each method's test accuracy is measured too (a row's
        ``curve``); default: a third and two thirds of the way, ``()`` for none. They do not change the training."""
        from .models import count_parameters, load_model
        from .runtime import get_runtime
        from .tasks import downstream_task
        from .training import TrainConfig, accuracy

        rt = runtime or get_runtime()
        if model is None:
            model, tokenizer = load_model(runtime=rt)
        elif tokenizer is None:
            raise ConfigError("the capstone got a model but no tokenizer.", "pass tokenizer= as well.")
        task = task or downstream_task(rt)
        if eval_examples is None:
            eval_examples = rt.budget.capstone_eval_examples
        config = TrainConfig.from_runtime(rt, seed=seed, **{k: v for k, v in dict(
            steps=steps, batch_size=batch_size, eval_examples=eval_examples).items() if v is not None})
        test = task["test"][:config.eval_examples]
        if checkpoints is None:
            checkpoints = sorted({config.steps // 3, 2 * config.steps // 3} - {0})
        checkpoints = tuple(checkpoints)
        bad = [c for c in checkpoints if isinstance(c, bool) or not isinstance(c, int) or not 0 < c < config.steps]
        if bad or len(set(checkpoints)) != len(checkpoints):
            raise ConfigError(f"checkpoints {list(checkpoints)} must be distinct whole steps between 1 and {config.steps - 1} "
                              f"(the last step, {config.steps}, is always measured).",
                              f"use e.g. checkpoints=({config.steps // 2},), or checkpoints=() for none.")
        lrs = {**{m: rt.learning_rate(m) for m in METHODS}, **(learning_rates or {})}
        bench = cls(rt, model, tokenizer, task, config, test, lrs, count_parameters(model),
                    accuracy(model, tokenizer, task, test), settings or MethodSettings(), measure_memory, progress,
                    checkpoints=checkpoints)
        if SHIFTED_SPLIT in task.splits:
            bench.shifted = task[SHIFTED_SPLIT][:config.eval_examples]
            bench.shifted_baseline = accuracy(model, tokenizer, task, bench.shifted)
        return bench

    def method_config(self, method: str):
        """The validated ``Config`` of ``method`` at the capstone's shared sizes."""
        return self.settings.config(method, self.task, self.tokenizer)

    def measure(self, method: str, tuned, formula: int) -> dict:
        """Train ``tuned`` (the adapted copy) with the shared loop; one row of the table."""
        import torch

        from .memory import measure_training_step
        from .training import TrainConfig, accuracy, encode_examples, train

        config, task, lr = self.train_config, self.task, self.learning_rates[method]
        peak = None
        if self.measure_memory:
            probe = copy.deepcopy(tuned)
            g = torch.Generator().manual_seed(config.seed)
            idx = torch.randperm(len(task["train"]), generator=g)[:config.batch_size].tolist()
            batch = encode_examples(self.tokenizer, task, [task["train"][i] for i in idx], config.max_length)
            peak = measure_training_step(probe, batch, lr=lr).peak
            del probe
        curve, eval_seconds, marks = [], 0.0, set(self.checkpoints)

        def checkpoint(step, model):
            # test accuracy part way; scoring draws no random numbers, so the training run is the same without it
            nonlocal eval_seconds
            if step in marks:
                t0 = time.perf_counter()
                curve.append([step, accuracy(model, self.tokenizer, task, self.test)])
                eval_seconds += time.perf_counter() - t0

        torch.manual_seed(config.seed)
        # eval_examples=0: no validation pass at the end of training; the row's accuracy is on the test split below
        result = train(tuned, self.tokenizer, task,
                       TrainConfig(**{**asdict(config), "lr": lr, "eval_every": 0, "eval_examples": 0}),
                       progress=self.progress, after_step=checkpoint if marks else None)
        final = accuracy(tuned, self.tokenizer, task, self.test)
        curve.append([config.steps, final])
        return {"method": method, "label": LABELS.get(method, method), "trainable": result.trainable,
                "formula": formula, "base_parameters": self.base_parameters,
                "fraction": result.trainable / self.base_parameters,
                "accuracy": final, "baseline": self.baseline, "curve": curve,
                "shifted_accuracy": accuracy(tuned, self.tokenizer, task, self.shifted) if self.shifted else None,
                "seconds": result.seconds - eval_seconds, "peak_memory_bytes": peak, "lr": lr, "steps": config.steps,
                "final_loss": sum(result.losses[-10:]) / max(1, len(result.losses[-10:]))}

    def result(self, rows: list[dict]) -> Comparison:
        """The rows, the untrained baseline and what it takes to reproduce them."""
        config = self.train_config
        meta = {"runtime": self.runtime.name, "device": str(self.runtime.device),
                "model": getattr(self.model, "name_or_path", type(self.model).__name__), "task": self.task.name,
                "test_examples": len(self.test), "shifted_baseline": self.shifted_baseline, "steps": config.steps,
                "checkpoints": list(self.checkpoints), "batch_size": config.batch_size,
                "seed": config.seed, "settings": asdict(self.settings),
                "wall_seconds": time.perf_counter() - self.started,
                "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "environment": environment()}
        return Comparison(rows, self.baseline, meta)


def compare_methods(runtime=None, methods=None, *, steps: int | None = None, batch_size: int | None = None,
                    model=None, tokenizer=None, task=None, settings: MethodSettings | None = None,
                    learning_rates: dict | None = None, eval_examples: int | None = None, seed: int = 0,
                    measure_memory: bool = True, progress: bool = True, checkpoints: Sequence[int] | None = None,
                    on_row: Callable[[dict], None] | None = None) -> Comparison:
    """Train every method in ``methods`` (default: all of :data:`METHODS`) on the runtime's task: the
    loop of lecture 08's capstone (see :class:`Capstone` for the arguments). ``on_row(row)`` is called
    after each method (to print as it goes)."""
    import torch
    from tqdm.auto import tqdm

    methods = list(METHODS if methods is None else methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"unknown or no methods: {unknown or methods}.", f"pick from {list(METHODS)}.")
    bench = Capstone.prepare(runtime, model=model, tokenizer=tokenizer, task=task, settings=settings, steps=steps,
                             batch_size=batch_size, eval_examples=eval_examples, learning_rates=learning_rates,
                             seed=seed, measure_memory=measure_memory, progress=progress, checkpoints=checkpoints)
    rows = []
    for key in tqdm(methods, desc="methods", disable=not progress):
        torch.manual_seed(seed)
        tuned, formula = build_method(key, bench.model, bench.tokenizer, bench.task, bench.settings)
        rows.append(bench.measure(key, tuned, formula))
        if on_row is not None:
            on_row(rows[-1])
        del tuned
    return bench.result(rows)


def save_comparison(comparison: Comparison, path: str | Path) -> Path:
    """Write the rows, the baseline, hardware and versions to ``path`` (JSON); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(comparison.to_dict(), indent=2, default=str))
    return path


def load_comparison(path: str | Path) -> Comparison:
    data = json.loads(Path(path).read_text())
    return Comparison(data["rows"], data["baseline"], data.get("meta", {}))

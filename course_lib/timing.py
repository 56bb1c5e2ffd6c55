"""Wall-clock timing of callables and forward passes: warm-up, repeats, interleaving, median and spread.

One timer for the whole course: lecture 04 (merged vs unmerged LoRA), lecture 06 (the cost of a
soft prompt or a prefix), lecture 07 (adapters vs merged LoRA), :func:`course_lib.prompting.prompt_cost`
and the ``benchmarks/`` folder all measure through :func:`interleaved`.

How a measurement runs (:func:`interleaved`):

* ``warmup`` untimed rounds first (allocator, kernel selection, caches), then ``repeats`` timed rounds;
* one round calls every callable once, and the order reverses from one round to the next
  (``a b``, ``b a``, ``a b``, ...), so a machine that gets busier during the measurement slows every
  variant alike and no variant always runs first; the per-round ratio of two variants stays meaningful;
* on CUDA, kernels run asynchronously: ``sync`` (:func:`cuda_sync` for models on a GPU) is called
  before the clock starts and before it stops, so a call is charged for its own kernels only;
* each call is timed with :func:`time.perf_counter`; the result is the list of samples per name,
  in seconds. :func:`summary` gives their median and spread (quartiles, min, max).

:func:`forward_latency_samples` applies this to ``model(**inputs)`` for a dict of models (eval
mode, ``torch.no_grad()``, the inputs moved to each model's device) and reports milliseconds;
:func:`forward_latency` is its median per model.

Timings are measurements of one machine at one moment: the course shows them with their spread
and never asserts them in tests (``benchmarks/`` stores them with the hardware noted).
"""
from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from typing import Callable, Mapping

import torch

from .devices import device_of, to_device
from .errors import ConfigError


def cuda_sync(*where) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` if any of ``where`` (models, tensors, devices) is on CUDA, else ``None``."""
    if any(getattr(device_of(w), "type", None) == "cuda" for w in where):
        return torch.cuda.synchronize
    return None


def interleaved(fns: Mapping[str, Callable[[], object]], repeats: int = 20, warmup: int = 1, *,
                sync: Callable[[], None] | None = None, clock=None, progress: str | None = None
                ) -> dict[str, list[float]]:
    """Seconds per call of each callable in ``fns``: ``repeats`` timed rounds after ``warmup`` untimed ones.

    One call of each per round, the order reversed every other round (see the module docstring).
    ``sync`` is called before starting and before stopping the clock (``torch.cuda.synchronize`` on a
    GPU, :func:`cuda_sync`). ``clock``: a context manager entered around every call (the benchmarks'
    CPU-share meter); ``progress``: a label to show a progress bar, ``None`` for none.
    Returns ``{name: [seconds, ...]}`` with ``repeats`` samples per name, in ``fns``' order.
    """
    from tqdm.auto import tqdm

    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError(f"repeats={repeats!r}: a timing needs at least one timed call.", "use repeats=10 or more.")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ConfigError(f"warmup={warmup!r}: it must be an integer >= 0.", "use warmup=1 or more.")
    if not fns:
        raise ConfigError("nothing to time: no callables were given.", "pass {name: function, ...}.")
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    clock = clock if clock is not None else nullcontext()
    for i in tqdm(range(warmup + repeats), desc=progress or "timing", leave=False, disable=progress is None):
        for name in names if i % 2 == 0 else names[::-1]:
            with clock:
                if sync:
                    sync()
                t0 = time.perf_counter()
                fns[name]()
                if sync:
                    sync()
                dt = time.perf_counter() - t0
            if i >= warmup:
                times[name].append(dt)
    return times


def summary(values, unit: str) -> dict:
    """Median and spread of repeated measurements: ``n, median, q1, q3, min, max, unit`` (quartiles by the
    inclusive method, so one sample gives q1 = q3 = the sample)."""
    vals = sorted(float(v) for v in values)
    if not vals:
        raise ConfigError("no measurements to summarise.", "time at least one call (repeats >= 1).")
    q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive") if len(vals) > 1 else (vals[0],) * 3
    return {"n": len(vals), "median": statistics.median(vals), "q1": q1, "q3": q3, "min": vals[0],
            "max": vals[-1], "unit": unit}


def forward_latency_samples(models: Mapping[str, torch.nn.Module], inputs: Mapping, repeats: int = 20,
                            warmup: int = 3) -> dict[str, list[float]]:
    """Milliseconds of each of ``repeats`` forward passes ``model(**inputs)``, for each model in ``models``.

    Interleaved as :func:`interleaved` (one pass of each model per round, order alternating), after
    ``warmup`` untimed rounds; models in eval mode, no gradients; ``inputs`` (``input_ids``, ...) are
    moved to each model's device first, and a model on CUDA is synchronised around each pass.
    The spread of the samples says how noisy the machine is.
    """
    placed = {name: to_device(dict(inputs), model) for name, model in models.items()}
    for model in models.values():
        model.eval()
    calls = {name: (lambda m=model, x=placed[name]: m(**x)) for name, model in models.items()}
    with torch.no_grad():
        seconds = interleaved(calls, repeats, warmup, sync=cuda_sync(*models.values()))
    return {name: [1000 * s for s in samples] for name, samples in seconds.items()}


def forward_latency(models: Mapping[str, torch.nn.Module], inputs: Mapping, repeats: int = 20,
                    warmup: int = 3) -> dict[str, float]:
    """Median of :func:`forward_latency_samples`: one number per model, in milliseconds."""
    return {name: statistics.median(t) for name, t in forward_latency_samples(models, inputs, repeats, warmup).items()}

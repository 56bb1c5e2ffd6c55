"""What a paged optimiser does, simulated from measured sizes (objective 5.4).

QLoRA's *paged optimizers* (Dettmers et al. 2023, section 2 "Paged Optimizers") allocate the optimiser
states in NVIDIA unified memory (``cudaMallocManaged``). When a training step needs more GPU memory than
is free (a long sequence, a gradient-checkpointing recomputation), the driver evicts pages of those
states to CPU RAM instead of failing with out-of-memory, and faults them back when the optimiser step
touches them. bitsandbytes' ``PagedAdamW`` does this; on a CPU there is no device memory to page from
and it falls back to ordinary memory, so the course *simulates* the device here, with sizes measured on
the real model:

* ``resident``: bytes that never leave the device: the weights (parameters and buffers, e.g. 4-bit codes)
  and the gradients;
* ``state_tensors``: the bytes of each optimiser state tensor (AdamW's ``exp_avg``, ``exp_avg_sq``, ``step``)
  after one real step, each split into pages of ``page_bytes`` (the last page of a tensor may be short);
* ``activations[t]``: the activation bytes of step ``t``: what autograd saves for the backward pass at the
  step's sequence length (measured).

Each step has two phases. Forward and backward need ``resident + S_dev + a_t`` with ``S_dev`` the state
bytes on the device (an upper bound: it counts every gradient while all activations are live, where a
real backward frees activations as the gradients appear); the optimiser step needs ``resident + S`` (every state page back, activations freed).
The device memory of step ``t`` is the larger of the two.

* **Without paging** ``S_dev = S``: a step with ``resident + S + a_t > capacity`` is an out-of-memory
  step (the job would die there; the trace goes on to show every step that would).
* **With paging**, before the forward pass the fewest whole pages are evicted (in tensor order) so that
  ``resident + S_dev + a_t <= capacity``; the optimiser step faults them back. Each evicted byte crosses
  the bus twice, out and back: ``bytes moved = 2 * evicted bytes`` and ``pages moved = 2 * evicted pages``.
  A step that would not fit even with every state page on the CPU (``resident + a_t > capacity``) is an
  out-of-memory step with paging too.

When no step exceeds the capacity nothing is evicted and both traces are identical: paging costs nothing
unless memory is short, and costs a transfer every step if it always is.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .errors import ConfigError

UNIFIED_MEMORY_PAGE = 2 ** 16   # 64 KiB: a modelling choice; unified memory migrates between 4 KiB and 2 MiB at a time


@dataclass(frozen=True)
class PagingTrace:
    """Device bytes per step without and with paging, and what paging moved. Steps are numbered from 0."""

    capacity: int
    resident: int
    state_bytes: int
    page_bytes: int
    activations: tuple[int, ...]
    without: tuple[int, ...]          # device bytes at each step's peak, no paging (may exceed capacity)
    paged: tuple[int, ...]            # the same with paging
    evicted_bytes: tuple[int, ...]    # state bytes sent to CPU RAM before each step's forward pass
    evicted_pages: tuple[int, ...]
    oom_without: tuple[int, ...] = field(default=())   # steps that exceed the capacity without paging
    oom_paged: tuple[int, ...] = field(default=())     # steps that exceed it even with paging

    @property
    def bytes_moved(self) -> int:
        """Bytes over the bus: every evicted byte goes to the CPU and back."""
        return 2 * sum(self.evicted_bytes)

    @property
    def pages_moved(self) -> int:
        return 2 * sum(self.evicted_pages)

    def summary(self) -> str:
        mib = 2 ** 20
        spikes = [t for t, e in enumerate(self.evicted_pages) if e]
        return (f"capacity {self.capacity / mib:.2f} MiB (weights and gradients {self.resident / mib:.2f} MiB, "
                f"optimizer states {self.state_bytes / mib:.2f} MiB in pages of {self.page_bytes / 1024:g} KiB)\n"
                f"without paging: peak {max(self.without) / mib:.2f} MiB, out of memory at steps "
                f"{list(self.oom_without) or 'none'}\n"
                f"with paging:    peak {max(self.paged) / mib:.2f} MiB, out of memory at steps "
                f"{list(self.oom_paged) or 'none'}; pages evicted at steps {spikes or 'none'}: "
                f"{self.pages_moved} pages moved ({self.bytes_moved / mib:.2f} MiB there and back)")


def _pages(state_tensors, page_bytes: int) -> list[int]:
    """The byte size of every page, tensor by tensor (a tensor's last page may be short)."""
    pages = []
    for size in state_tensors:
        full, rest = divmod(int(size), page_bytes)
        pages += [page_bytes] * full + ([rest] if rest else [])
    return pages


def simulate_paging(capacity: int, resident: int, state_tensors, activations, *,
                    page_bytes: int = UNIFIED_MEMORY_PAGE) -> PagingTrace:
    """Device memory of each step without and with a paged optimiser (see the module docstring).

    ``capacity``, ``resident`` in bytes; ``state_tensors``: bytes of each optimiser state tensor;
    ``activations``: activation bytes of each step, in order.
    """
    state_tensors = [int(s) for s in state_tensors]
    activations = tuple(int(a) for a in activations)
    if page_bytes < 1:
        raise ConfigError(f"page_bytes={page_bytes} must be a positive number of bytes.",
                          f"use the default {UNIFIED_MEMORY_PAGE} (64 KiB) or e.g. 4096.")
    if not activations or min(activations) < 0 or min(state_tensors, default=0) < 0:
        raise ConfigError("activations must be a non-empty sequence of bytes >= 0, and state sizes >= 0.",
                          "pass the measured bytes, e.g. from measure_paging_sizes(...).activations.")
    states = sum(state_tensors)
    if capacity <= resident:
        raise ConfigError(f"a device of {capacity:,} bytes cannot hold the weights and gradients ({resident:,} bytes), "
                          "which never leave it.",
                          f"choose a capacity above {resident:,} bytes (plus room for activations).")
    if capacity < resident + states:
        raise ConfigError(f"the optimizer states ({states:,} bytes) do not fit next to the weights and gradients "
                          f"even between spikes (capacity {capacity:,}, resident {resident:,}): every step would page.",
                          f"choose a capacity of at least {resident + states:,} bytes; paging helps with occasional spikes.")
    pages = _pages(state_tensors, page_bytes)
    without, paged, ev_bytes, ev_pages, oom_without, oom_paged = [], [], [], [], [], []
    for t, act in enumerate(activations):
        optimizer_phase = resident + states
        without.append(max(resident + states + act, optimizer_phase))
        if without[-1] > capacity:
            oom_without.append(t)
        overflow, freed, n = resident + states + act - capacity, 0, 0
        while freed < overflow and n < len(pages):
            freed, n = freed + pages[n], n + 1
        if freed < overflow:
            oom_paged.append(t)
        paged.append(max(resident + states - freed + act, optimizer_phase))
        ev_bytes.append(freed)
        ev_pages.append(n)
    return PagingTrace(capacity, resident, states, page_bytes, activations, tuple(without), tuple(paged),
                       tuple(ev_bytes), tuple(ev_pages), tuple(oom_without), tuple(oom_paged))


@dataclass(frozen=True)
class PagingSizes:
    """Sizes measured on a real model: bytes that stay on the device, each optimiser state tensor, and
    the activation bytes of one training step at each sequence length."""

    weights: int
    gradients: int
    state_tensors: tuple[int, ...]
    activations: dict[int, int]

    @property
    def resident(self) -> int:
        return self.weights + self.gradients


def measure_paging_sizes(model, lengths, *, batch_size: int = 4, optimizer: str = "adamw",
                         seed: int = 0) -> PagingSizes:
    """Sizes for :func:`simulate_paging`, measured on ``model`` with random token batches ``(batch_size, T)``.

    ``weights``: parameter and buffer bytes (buffers hold e.g. a 4-bit base's codes); ``gradients`` and
    ``state_tensors``: from one real training step on a copy
    (:func:`course_lib.memory.measure_training_step`); ``activations[T]``: the bytes autograd saves for the
    backward pass of a forward at length ``T`` (:func:`course_lib.memory.measure_saved_activations`).
    ``model`` is not changed.
    """
    import torch

    from . import memory

    lengths = sorted({int(n) for n in lengths})
    if not lengths or lengths[0] < 1:
        raise ConfigError(f"lengths={lengths} must be positive sequence lengths.", "pass e.g. [32, 64, 256].")

    def batch(n):
        ids = torch.randint(0, model.config.vocab_size, (batch_size, n), generator=torch.Generator().manual_seed(seed))
        return {"input_ids": ids, "labels": ids}

    step = memory.measure_training_step(copy.deepcopy(model), batch(lengths[0]), optimizer=optimizer)
    activations = {n: memory.measure_saved_activations(model, batch(n)) for n in lengths}
    weights = sum(t.nbytes for t in {id(t): t for t in list(model.parameters()) + list(model.buffers())}.values())
    return PagingSizes(weights, step.gradients, step.state_tensors, activations)

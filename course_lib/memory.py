"""How much memory fine-tuning needs: weights, gradients, optimiser states (and a rough activation term).

Training keeps, per parameter ``θ_i`` (Rajbhandari et al. 2020, *ZeRO*, section 3.1):

============================  =====================  ========================================
precision                     weights                gradients / AdamW states (m, v)
============================  =====================  ========================================
``fp32``                      4 B                    4 B / 4 + 4 B           -> 16 B/param
``mixed`` (bf16/fp16 + fp32   2 B half copy          2 B (half) / 4 + 4 B    -> 16 B/param
master weights)               + 4 B fp32 master
``bf16`` / ``fp16`` (pure)    2 B                    2 B / 2 + 2 B           ->  8 B/param
============================  =====================  ========================================

so full fine-tuning with AdamW costs about 16 bytes per parameter before activations: 108 GB for
a 7B model, 1.16 TB for 72B, 2.8 TB for GPT-3's 175B. Parameter-efficient methods train few
parameters: gradients and optimiser states shrink to the adapter's size, the frozen base is
stored once at the compute precision (``lora``) or quantised to 4-bit NormalFloat (``qlora``;
Dettmers et al. 2023: 4 bits per weight plus one 8-bit absmax constant per block of 64 and one
fp32 constant per 256 of those with double quantisation: ``4 + 8/64 + 32/(64*256) = 4.127`` bits).

The estimate counts parameters on the ``meta`` device (nothing is allocated, so a 175B model
costs no memory) and is exact for what it counts: :func:`measure_training_step` checks it against
the bytes of the real tensors after one AdamW step (``tests/test_memory.py``).

Measuring on CPU: ``tracemalloc`` does not see torch's allocations and process RSS mixes in the
allocator's caching and every other object, so :func:`measure_training_step` counts the bytes of
the live tensor *storages*: a ``TorchDispatchMode`` sees every tensor an operator creates (forward,
backward and the optimiser), registers its storage once and subtracts it when the storage is freed.
The peak of that running sum is what ``torch.cuda.max_memory_allocated`` reports on a GPU, minus the
CUDA allocator's rounding of each block to 512 bytes and kernels' private workspaces.

Why one module of this length: the estimator, the measurement it is checked against and the
per-cell predictions (``HEAVY_CELLS``) must use the same accounting; keeping them together keeps them equal.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from .errors import ConfigError

GB = 1e9  # the notes and vendors quote decimal gigabytes

#: bits per stored value of a frozen base weight
NF4_BITS = 4.0
NF4_DQ_BITS = 4 + 8 / 64 + 32 / (64 * 256)   # 4.127: NF4 + double-quantised absmax constants
NF4_NO_DQ_BITS = 4 + 32 / 64                 # 4.5: NF4 + one fp32 absmax per 64 weights
BASE_BITS = {"fp32": 32.0, "fp16": 16.0, "bf16": 16.0, "int8": 8.0, "nf4": NF4_DQ_BITS}

#: (bytes of the stored weights, of an fp32 master copy, of a gradient, of an optimiser state) for trainable params
PRECISIONS = {
    "fp32": (4, 0, 4, 4),
    "mixed": (2, 4, 2, 4),
    "bf16-mixed": (2, 4, 2, 4),
    "fp16-mixed": (2, 4, 2, 4),
    "bf16": (2, 0, 2, 2),
    "fp16": (2, 0, 2, 2),
    # torch.autocast over fp32 parameters (what training.train does on CUDA, course_lib.precision): fp32 weights,
    # gradients and states, plus the 16-bit copies autocast casts for the forward (kept for backward)
    "amp": (2, 4, 4, 4),
}
#: states per parameter and whether torch keeps a step counter (one fp32 scalar per parameter tensor)
OPTIMIZERS = {"adamw": (2, True), "adam": (2, True), "adamw-8bit": (2, False), "sgd": (0, False),
              "sgd-momentum": (1, False)}
METHODS = ("full", "lora", "qlora")
#: peft's default LoRA targets per architecture
DEFAULT_TARGETS = {"llama": ("q_proj", "v_proj"), "qwen2": ("q_proj", "v_proj"), "gpt2": ("c_attn",)}


def _check(value, allowed, what, example):
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}.", f"use one of {', '.join(map(repr, allowed))}, e.g. {example}.")


# --------------------------------------------------------------------------------------------- inventory
@dataclass(frozen=True)
class Tensor:
    """One parameter tensor: ``name``, ``numel``, the module it belongs to and, for linear layers,
    ``(in_features, out_features)``."""
    name: str
    numel: int
    module: str
    linear: tuple[int, int] | None = None


def parameter_inventory(model_or_key) -> list[Tensor]:
    """Every distinct parameter tensor of a model or of a registry key (built on ``meta``).

    Tied weights (GPT-2's ``lm_head`` = ``wte``) are listed once, as ``named_parameters`` does.
    """
    if isinstance(model_or_key, str):
        return list(_inventory_of_key(model_or_key))
    return _inventory(model_or_key)


_CACHE: dict[str, tuple] = {}


def _inventory_of_key(key: str) -> tuple:
    if key not in _CACHE:
        from .registry import build_random_model
        model = build_random_model(key, device="meta")
        _CACHE[key] = (tuple(_inventory(model)), getattr(model.config, "model_type", ""))
    return _CACHE[key][0]


def _model_type(model_or_key) -> str:
    if isinstance(model_or_key, str):
        _inventory_of_key(model_or_key)
        return _CACHE[model_or_key][1]
    return getattr(getattr(model_or_key, "config", None), "model_type", "")


def _linear_shape(module) -> tuple[int, int] | None:
    import torch.nn as nn
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D":  # transformers' GPT-2 layer: weight is (in, out)
        return tuple(module.weight.shape)
    if hasattr(module, "in_features") and hasattr(module, "out_features"):  # bnb Linear4bit/8bit
        return module.in_features, module.out_features
    return None


def _inventory(model) -> list[Tensor]:
    owner = {}
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            owner.setdefault(id(p), (mname, pname, module))
    out = []
    for name, p in model.named_parameters():
        mname, pname, module = owner[id(p)]
        shape = _linear_shape(module) if pname == "weight" else None
        out.append(Tensor(name, p.numel(), mname, shape))
    return out


def count_params(model_or_key) -> int:
    """Total number of distinct parameters."""
    return sum(t.numel for t in parameter_inventory(model_or_key))


def lora_parameters(model_or_key, r: int = 8, target_modules=None) -> int:
    """``sum over targeted linear layers of r * (in_features + out_features)`` (A is r x in, B is out x r)."""
    return sum(r * (i + o) for i, o in _targeted(model_or_key, r, target_modules))


def _targeted(model_or_key, r, target_modules) -> list[tuple[int, int]]:
    if not isinstance(r, int) or r <= 0:
        raise ConfigError(f"LoRA rank r={r!r} must be a positive integer.", "use r=8 (the notes suggest 4 or 8).")
    inv = parameter_inventory(model_or_key)
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    targets = tuple(target_modules) if target_modules else DEFAULT_TARGETS.get(_model_type(model_or_key))
    if not targets:
        raise ConfigError("no target_modules given and no default for this architecture.",
                          "pass target_modules=('q_proj', 'v_proj') or the names of its linear layers.")
    linear = [t for t in inv if t.linear is not None and not t.module.endswith("lm_head")]
    chosen = [t.linear for t in linear if t.module.split(".")[-1] in targets or t.module in targets]
    names = sorted({t.module.split(".")[-1] for t in linear})
    for target in targets:
        if not any(t.module.split(".")[-1] == target or t.module == target for t in linear):
            raise ConfigError(f"target module {target!r} matches no linear layer of this model.",
                              f"choose from its linear layers: {', '.join(names)}.")
    return chosen


def _quantisable(inv) -> int:
    """Parameters that bitsandbytes quantises: weights of linear layers except ``lm_head``."""
    return sum(t.numel for t in inv if t.linear is not None and not t.module.endswith("lm_head"))


# --------------------------------------------------------------------------------------------- estimates
@dataclass
class MemoryEstimate:
    """Bytes of one fine-tuning setup. ``total`` = weights + gradients + optimizer + activations."""
    model: str
    method: str
    precision: str
    optimizer_name: str
    n_params: int
    n_trainable: int
    weights: float
    gradients: float
    optimizer: float
    activations: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def bytes_per_param(self) -> float:
        """Total (without activations) divided by the model's parameter count."""
        return (self.weights + self.gradients + self.optimizer) / self.n_params

    def as_dict(self) -> dict:
        return {"model": self.model, "method": self.method, "precision": self.precision,
                "optimizer": self.optimizer_name, "params": self.n_params, "trainable": self.n_trainable,
                "weights GB": self.weights / GB, "gradients GB": self.gradients / GB,
                "optimizer GB": self.optimizer / GB, "activations GB": self.activations / GB,
                "total GB": self.total / GB}

    def __str__(self) -> str:
        rows = [("weights", self.weights), ("gradients", self.gradients), ("optimizer states", self.optimizer)]
        if self.activations:
            rows.append(("activations (rough)", self.activations))
        rows.append(("total", self.total))
        head = (f"{self.model}: {self.method} fine-tuning, {self.precision}, {self.optimizer_name} "
                f"({self.n_params / 1e9:.3g}B params, {self.n_trainable:,} trainable = "
                f"{100 * self.n_trainable / self.n_params:.3g}%)")
        width = max(len(r[0]) for r in rows)
        lines = [head] + [f"  {name:<{width}}  {_fmt(b)}" for name, b in rows]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _fmt(b: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:10.3f} {unit}"
    return f"{b:10.0f} B"


def estimate_training_memory(model_or_key, method: str = "full", precision: str = "fp32",
                             optimizer: str = "adamw", *, r: int = 8, target_modules=None,
                             base_dtype: str | None = None, double_quant: bool = True,
                             batch_size: int | None = None, seq_len: int | None = None) -> MemoryEstimate:
    """Bytes to fine-tune ``model_or_key`` (an ``nn.Module`` or a registry key such as ``"llama-2-7b"``).

    ``method``: ``"full"`` (every parameter trains), ``"lora"`` (frozen base at ``base_dtype``,
    by default the compute precision; rank-``r`` adapters on ``target_modules``) or ``"qlora"``
    (LoRA on a base whose linear layers are stored in NF4, 4.127 bits with ``double_quant``; the
    other base parameters at ``base_dtype``, by default bf16 as in the QLoRA paper).
    ``precision``: one of :data:`PRECISIONS` (the trainable parameters' regime). ``optimizer``:
    ``adamw`` (2 fp32 states and a step counter per tensor, as torch keeps them), ``adamw-8bit``,
    ``sgd`` (no state) or ``sgd-momentum`` (one). ``batch_size`` and ``seq_len`` add a rough
    activation term (:func:`activation_bytes`).
    """
    _check(method, METHODS, "method", "'full', 'lora' or 'qlora'")
    _check(precision, tuple(PRECISIONS), "precision", "'fp32' or 'mixed'")
    _check(optimizer, tuple(OPTIMIZERS), "optimizer", "'adamw'")
    if base_dtype is not None:
        _check(base_dtype, tuple(BASE_BITS), "base_dtype", "'bf16' or 'int8'")
    w_bytes, master, g_bytes, s_bytes = PRECISIONS[precision]
    n_states, step_counter = OPTIMIZERS[optimizer]
    if optimizer == "adamw-8bit":
        s_bytes = 1
    inv = parameter_inventory(model_or_key)
    n_params = sum(t.numel for t in inv)
    notes = []
    if method == "full":
        n_train, n_tensors = n_params, len(inv)
        weights = n_params * (w_bytes + master)
    else:
        targeted = _targeted(model_or_key, r, target_modules)
        n_train, n_tensors = sum(r * (i + o) for i, o in targeted), 2 * len(targeted)
        compute_bits = 8.0 * w_bytes
        if method == "qlora":
            bits = NF4_DQ_BITS if double_quant else NF4_NO_DQ_BITS
            n_q = _quantisable(inv)
            rest = base_dtype or "bf16"  # embeddings, norms, lm_head: bf16 in the paper; fp32 in the course's CPU QLoRA
            base = n_q * bits / 8 + (n_params - n_q) * BASE_BITS[rest] / 8
            notes.append(f"{n_q / n_params:.1%} of the base (linear layers) in NF4 at {bits:.3f} bits, the rest in {rest}")
        else:
            bits = BASE_BITS[base_dtype] if base_dtype else compute_bits
            base = n_params * bits / 8
        weights = base + n_train * (w_bytes + master)
    gradients = n_train * g_bytes
    opt = n_train * n_states * s_bytes + (4 * n_tensors if step_counter else 0)
    acts = 0.0
    if batch_size or seq_len:
        if not (batch_size and seq_len):
            raise ConfigError("the activation term needs both batch_size and seq_len.",
                              "pass e.g. batch_size=8, seq_len=512, or neither.")
        acts = activation_bytes(model_or_key, batch_size, seq_len, bytes_per_value=w_bytes)
        notes.append("activations: Korthikanti et al. 2022's per-layer count, no recomputation (rough)")
    name = model_or_key if isinstance(model_or_key, str) else type(model_or_key).__name__
    return MemoryEstimate(name, method, precision, optimizer, n_params, n_train, float(weights), float(gradients),
                          float(opt), float(acts), notes)


def _config(model_or_key):
    if isinstance(model_or_key, str):
        from .registry import architecture_config
        return architecture_config(model_or_key)
    return model_or_key.config


def activation_bytes(model_or_key, batch_size: int, seq_len: int, bytes_per_value: int = 2) -> float:
    """Rough bytes of the activations kept for the backward pass of one step.

    Korthikanti et al. 2022 count ``s*b*h*(34 + 5*a*s/h)`` bytes per transformer layer with 16-bit
    activations (attention scores included, no recomputation); we scale by ``bytes_per_value/2``
    and add the logits (``b*s*V`` values, in fp32 for the loss). An order of magnitude, not an
    exact figure: kernels such as flash attention store far less.
    """
    cfg = _config(model_or_key)
    h = getattr(cfg, "hidden_size", None) or cfg.n_embd
    L = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    a = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    per_layer = seq_len * batch_size * h * (34 + 5 * a * seq_len / h) * bytes_per_value / 2
    return L * per_layer + batch_size * seq_len * cfg.vocab_size * 4


def measure_saved_activations(model, batch: dict) -> int:
    """Bytes of the tensors autograd saves for the backward pass in one forward of ``batch`` (measured:
    the activations :func:`activation_bytes` estimates). Each storage counts once, parameters and buffers
    (saved as inputs of their layers) not at all. The model runs in train mode; nothing is updated."""
    import torch

    existing = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in existing and storage.device.type != "meta":
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    from .devices import to_device

    was_training = model.training
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
        model(**to_device(batch, model))
    model.train(was_training)
    return sum(seen.values())


def storage_per_task(model_or_key, n_tasks: int = 1, method: str = "full", dtype: str = "bf16", *,
                     r: int = 8, target_modules=None) -> dict:
    """Disk bytes to keep ``n_tasks`` fine-tuned versions: a full copy each, or one base + one adapter each."""
    if n_tasks < 1:
        raise ConfigError(f"n_tasks={n_tasks} must be >= 1.", "pass the number of tasks you fine-tune for.")
    _check(method, METHODS, "method", "'full' or 'lora'")
    _check(dtype, ("fp32", "fp16", "bf16"), "dtype", "'bf16'")
    b = BASE_BITS[dtype] / 8
    n = count_params(model_or_key)
    if method == "full":
        return {"base": 0.0, "per_task": n * b, "total": n_tasks * n * b}
    per = lora_parameters(model_or_key, r, target_modules) * b
    if method == "lora":
        base = n * b
    else:  # the 4-bit base is shared by every task
        n_q = _quantisable(parameter_inventory(model_or_key))
        base = n_q * NF4_DQ_BITS / 8 + (n - n_q) * 2
    return {"base": float(base), "per_task": float(per), "total": float(base + n_tasks * per)}


# --------------------------------------------------------------------------------------------- measurement
@dataclass
class MeasuredMemory:
    """Bytes measured around real training steps. ``peak`` is the high-water mark of live tensor bytes."""
    device: str
    how: str
    weights: int
    gradients: int
    optimizer: int
    peak: int
    baseline: int   # bytes live before the step (weights, buffers, the batch)
    state_tensors: tuple[int, ...] = ()   # bytes of each optimiser state tensor (their sum is ``optimizer``)

    def __str__(self) -> str:
        return (f"measured on {self.device} ({self.how}): weights {_fmt(self.weights).strip()}, gradients "
                f"{_fmt(self.gradients).strip()}, optimizer {_fmt(self.optimizer).strip()}, "
                f"peak {_fmt(self.peak).strip()} (activations and temporaries: {_fmt(self.peak - self.weights - self.gradients - self.optimizer).strip()})")


class LiveTensorBytes:
    """Context manager: running sum and peak of the bytes of live tensor storages on one device.

    Every tensor an operator returns inside the context is registered once per storage; a
    ``weakref.finalize`` on the storage subtracts its bytes when it is freed. ``track(tensors)``
    adds tensors that existed before (parameters, the batch).
    """

    def __init__(self, device: str = "cpu"):
        from torch.utils._python_dispatch import TorchDispatchMode

        self.device, self.current, self.peak = device, 0, 0
        self._live: dict[int, int] = {}
        meter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                meter._register_tree(out)
                return out

        self._mode = _Mode()

    def _register_tree(self, out):
        from torch.utils._pytree import tree_flatten
        import torch
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._register(t)

    def _register(self, t):
        if t.device.type != self.device or t.is_sparse:
            return
        s = t.untyped_storage()
        key, n = s.data_ptr(), s.nbytes()
        if n == 0 or key in self._live:
            return
        self._live[key] = n
        self.current += n
        self.peak = max(self.peak, self.current)
        weakref.finalize(s, self._free, key)

    def _free(self, key):
        self.current -= self._live.pop(key, 0)

    def track(self, tensors):
        for t in tensors:
            self._register(t)
        return self

    def __enter__(self):
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)


def _make_optimizer(params, optimizer: str, lr: float):
    import torch
    _check(optimizer, ("adamw", "adam", "sgd", "sgd-momentum"), "optimizer for measurement", "'adamw'")
    if optimizer in ("adamw", "adam"):
        cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=lr, foreach=False)
    return torch.optim.SGD(params, lr=lr, momentum=0.9 if optimizer == "sgd-momentum" else 0.0, foreach=False)


def measure_training_step(model, batch: dict, *, optimizer: str = "adamw", lr: float = 1e-4,
                          steps: int = 1) -> MeasuredMemory:
    """Run ``steps`` training steps (forward with ``labels`` in ``batch``, backward, optimiser step)
    and measure: parameter, gradient and optimiser-state bytes from the tensors themselves, and the
    peak of live tensor bytes (CPU: :class:`LiveTensorBytes`; CUDA: ``torch.cuda.max_memory_allocated``).

    Gradients are measured before they are released, so ``peak`` includes them. The model is
    changed by the steps; pass a copy if you need it unchanged.
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to measure: no parameter has requires_grad=True.",
                          "unfreeze parameters or apply a PEFT method first.")
    if "labels" not in batch:
        raise ConfigError("the batch has no 'labels', so the model returns no loss.",
                          "pass e.g. training.encode_examples(...) or {'input_ids': x, 'labels': x}.")
    device = params[0].device
    batch = {k: v.to(device) for k, v in batch.items()}
    opt = _make_optimizer(params, optimizer, lr)
    grads = [0]

    def one_step():
        model.train()
        loss = model(**batch).loss
        loss.backward()
        grads[0] = sum(p.grad.nbytes for p in params if p.grad is not None)
        opt.step()
        opt.zero_grad(set_to_none=True)

    existing = list(model.parameters()) + list(model.buffers()) + list(batch.values())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        for _ in range(steps):
            one_step()
        torch.cuda.synchronize(device)
        peak, how = torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    else:
        meter = LiveTensorBytes(device.type).track(existing)
        baseline = meter.current
        with meter:
            for _ in range(steps):
                one_step()
        peak, how = meter.peak, "live tensor bytes via a TorchDispatchMode"
    weights = sum(p.nbytes for p in {id(p): p for p in model.parameters()}.values())
    state_tensors = tuple(v.nbytes for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    return MeasuredMemory(str(device), how, weights, grads[0], sum(state_tensors), peak, baseline, state_tensors)


# --------------------------------------------------------------------------------------------- energy and money
def energy_and_money(seconds: float, *, watts: float, price_per_kwh: float | None = None,
                     price_per_device_hour: float | None = None, n_devices: int = 1) -> dict:
    """Energy (kWh) and money of a run that took ``seconds`` on ``n_devices`` drawing ``watts`` each.

    Money is ``kWh * price_per_kwh`` (own hardware) and/or ``device-hours * price_per_device_hour``
    (rented). All inputs are assumptions the caller states; nothing here is measured.
    """
    if seconds < 0 or watts <= 0 or n_devices < 1:
        raise ConfigError(f"seconds={seconds}, watts={watts}, n_devices={n_devices} out of range.",
                          "pass seconds >= 0, watts > 0 (e.g. 700 for an H100) and n_devices >= 1.")
    kwh = seconds / 3600 * watts * n_devices / 1000
    out = {"seconds": seconds, "device_hours": seconds / 3600 * n_devices, "kwh": kwh}
    if price_per_kwh is not None:
        out["electricity"] = kwh * price_per_kwh
    if price_per_device_hour is not None:
        out["rent"] = out["device_hours"] * price_per_device_hour
    return out


def finetune_flops(model_or_key, tokens: float, method: str = "full") -> float:
    """Training FLOPs for ``tokens`` tokens: ``6 N`` per token for full fine-tuning (forward 2N,
    backward 4N), ``4 N`` for a frozen base (the backward still propagates through every layer, but
    skips the weight gradients); adapters add a negligible ``6 N_adapter``."""
    _check(method, METHODS, "method", "'full' or 'lora'")
    n = count_params(model_or_key)
    if method == "full":
        return 6.0 * n * tokens
    return (4.0 * n + 6.0 * lora_parameters(model_or_key)) * tokens


def scaled_finetune_cost(key: str, tokens: float, method: str = "full", *, precision: str = "mixed",
                         gpu_memory_gb: float = 80, gpu_flops: float = 989e12, mfu: float = 0.4,
                         watts: float = 700, price_per_gpu_hour: float = 2.5, price_per_kwh: float = 0.3,
                         batch_size: int | None = None, seq_len: int | None = None) -> dict:
    """Fine-tuning cost of a registry model on GPUs, from the memory estimate and the FLOP count.

    GPUs needed: ``ceil(total memory / gpu_memory_gb)`` (ideal sharding, ZeRO-3 style); time:
    ``flops / (n_gpus * gpu_flops * mfu)``. Defaults describe an H100 (989 TFLOP/s dense bf16,
    700 W) at 40% utilisation, rented at 2.5 per GPU-hour, electricity at 0.3 per kWh: assumptions.
    """
    import math
    est = estimate_training_memory(key, method, precision, batch_size=batch_size, seq_len=seq_len)
    n_gpus = max(1, math.ceil(est.total / (gpu_memory_gb * 1e9)))
    flops = finetune_flops(key, tokens, method)
    seconds = flops / (n_gpus * gpu_flops * mfu)
    out = energy_and_money(seconds, watts=watts, price_per_kwh=price_per_kwh,
                           price_per_device_hour=price_per_gpu_hour, n_devices=n_gpus)
    out.update({"model": key, "method": method, "memory_gb": est.total / 1e9, "gpus": n_gpus, "flops": flops,
                "hours": seconds / 3600})
    return out


# --------------------------------------------------------------------------------------------- per runtime
#: bytes per value of each dtype name
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def device_dtypes(device) -> tuple[str, str]:
    """(training precision for :func:`estimate_training_memory`, inference dtype) of ``device``'s policy
    (:func:`course_lib.precision.precision_for`): ``("fp32", "fp32")`` on CPU, ``("amp", "bf16"|"fp16")`` on CUDA."""
    from .precision import precision_for

    p = precision_for(device)
    if p.autocast_dtype is None:
        return "fp32", "fp32"
    return "amp", "bf16" if p.name.startswith("bf16") else "fp16"


def estimate_inference_memory(model_or_key, *, batch_size: int, seq_len: int, dtype: str = "bf16",
                              logits_positions: int | None = None, new_tokens: int = 0) -> MemoryEstimate:
    """Peak bytes of a no-grad forward (scoring) or of generation, at weights stored in ``dtype``.

    Without gradients a layer's activations are freed once the next layer has them, so the working set
    is one layer's largest transients: the MLP's ``b*s*4*intermediate`` values (gate, up, activation, product),
    the residual stream and
    attention's ``b*heads*s*s`` scores (an upper bound: fused attention kernels store none). Added: the
    logits, ``b * logits_positions * vocab`` values (``logits_positions`` defaults to every position; the
    course's scoring keeps a few, :mod:`course_lib.scoring`), and for generation the KV cache,
    ``2 * layers * b * (s + new_tokens) * kv_heads * head_dim`` values.
    """
    _check(dtype, tuple(DTYPE_BYTES), "dtype", "'bf16'")
    nb = DTYPE_BYTES[dtype]
    cfg = _config(model_or_key)
    n_params = count_params(model_or_key)
    h = getattr(cfg, "hidden_size", None) or cfg.n_embd
    L = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    a = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    inter = getattr(cfg, "intermediate_size", None) or 4 * h
    kv = getattr(cfg, "num_key_value_heads", None) or a
    head_dim = getattr(cfg, "head_dim", None) or h // a
    b, s = batch_size, seq_len
    layer = b * s * (4 * inter + 4 * h) * nb + b * a * s * s * nb
    logits = b * (logits_positions or s) * cfg.vocab_size * nb
    kv_cache = 2 * L * b * (s + new_tokens) * kv * head_dim * nb if new_tokens else 0
    name = model_or_key if isinstance(model_or_key, str) else type(model_or_key).__name__
    notes = [f"one layer's transients {layer / GB:.2f} GB, logits {logits / GB:.2f} GB, KV cache {kv_cache / GB:.2f} GB"]
    return MemoryEstimate(name, "inference", dtype, "none", n_params, 0, float(n_params * nb), 0.0, 0.0,
                          float(layer + logits + kv_cache), notes)


@dataclass(frozen=True)
class HeavyCell:
    """A notebook cell whose GPU-runtime memory matters: what it holds at its peak."""
    notebook: str
    cell: int              # index among the notebook's cells (0-based, markdown included)
    what: str
    model: str             # registry key on the gpu runtime
    kind: str              # "train" (method full/lora/qlora) or "infer"
    method: str = "full"
    batch_size: int = 32
    seq_len: int = 96      # SST-2 prompt + label: the longest sentence in a batch of 32 is ~60-90 tokens
    logits_positions: int | None = None
    resident: tuple[tuple[str, str], ...] = ()   # other models alive meanwhile: (key, dtype)
    opt_in: bool = False   # runs only when the learner asks for it (not in the T4 budget)


#: The heavy cells of the GPU runtime (cell indices at this commit), predicted by the functions above.
HEAVY_CELLS = (
    HeavyCell("lectures/01_in_context_learning.ipynb", 15, "in-context scoring, 4 demonstrations (64 rows x 165 tokens)",
              "qwen2.5-0.5b-instruct", "infer", batch_size=64, seq_len=165, logits_positions=8),
    HeavyCell("lectures/01_in_context_learning.ipynb", 17, "full fine-tuning of a copy (the prompted model stays)",
              "qwen2.5-0.5b-instruct", "train", resident=(("qwen2.5-0.5b-instruct", "inference"),)),
    HeavyCell("lectures/02_chain_of_thought.ipynb", 30, "full fine-tuning of a copy on worked sums (batch 16)",
              "qwen2.5-0.5b-instruct", "train", batch_size=16, seq_len=160,
              resident=(("qwen2.5-0.5b-instruct", "inference"),)),
    HeavyCell("lectures/05_qlora.ipynb", 30, "QLoRA on the registry's QLoRA base", "qwen2.5-0.5b", "train",
              method="qlora", resident=(("qwen2.5-0.5b", "inference"),)),
    HeavyCell("lectures/06_prefix_prompt_tuning.ipynb", 28, "scale series: full fine-tuning of SmolLM2-360M",
              "smollm2-360m", "train", resident=(("smollm2-360m", "fp32"),)),
    HeavyCell("lectures/06_prefix_prompt_tuning.ipynb", 28, "scale series with include_largest: SmolLM2-1.7B",
              "smollm2-1.7b", "train", resident=(("smollm2-1.7b", "fp32"),), opt_in=True),
)


def predict_cell_peak(cell: HeavyCell, device="cuda", capability: tuple[int, int] = (7, 5)) -> float:
    """Predicted peak bytes of ``cell`` under ``device``'s precision policy (CUDA: of the given compute
    capability, by default a T4's 7.5: fp16)."""
    from unittest import mock

    import torch

    with mock.patch.object(torch.cuda, "get_device_capability", lambda *a, **k: capability):
        train_precision, infer_dtype = device_dtypes(device)
    resident = sum(count_params(key) * DTYPE_BYTES[infer_dtype if d == "inference" else d] for key, d in cell.resident)
    if cell.kind == "infer":
        est = estimate_inference_memory(cell.model, batch_size=cell.batch_size, seq_len=cell.seq_len,
                                        dtype=infer_dtype, logits_positions=cell.logits_positions)
    else:
        est = estimate_training_memory(cell.model, cell.method, train_precision, batch_size=cell.batch_size,
                                       seq_len=cell.seq_len)
    return est.total + resident


def heavy_cell_table(device="cuda", capability: tuple[int, int] = (7, 5)) -> list[dict]:
    """Every heavy cell with its predicted peak (GB) on ``device`` (default: a T4 under the gpu runtime)."""
    return [{"notebook": c.notebook, "cell": c.cell, "what": c.what, "model": c.model, "opt_in": c.opt_in,
             "predicted GB": round(predict_cell_peak(c, device, capability) / GB, 2)} for c in HEAVY_CELLS]

"""A fake CUDA device on a CPU machine: catches device mismatches without a GPU.

Why: on a GPU, ``load_model`` puts the model on ``cuda``; any tensor that host code builds
(``torch.tensor(...)``, ``encode_examples`` without ``device=``, ``nn.Linear(d, r)``) stays on the
CPU, and the first op that mixes the two raises ``Expected all tensors to be on the same device``.
On a CPU machine every tensor is on the CPU and the bug is invisible. This guard makes it visible.

How it works: :class:`FakeCuda` is a ``torch.overrides.TorchFunctionMode`` that keeps a weak set
of the tensors that are "on cuda". Its rules follow what CUDA does:

* ``torch.cuda.is_available()`` answers True (so ``select_runtime`` picks device ``cuda``, as in
  "embedded on a GPU"); memory statistics answer 0; ``synchronize`` does nothing.
* A tensor becomes "on cuda" when it is made with ``device="cuda"`` (any factory function), moved
  with ``.to("cuda")``/``.to(cuda_tensor)``/``.cuda()``, or computed by an op from an "on cuda" input.
  ``.cpu()`` and ``.to("cpu")`` give a host tensor. Parameters follow ``param.data = ...`` (which is
  how ``Module.to`` moves them), ``nn.Parameter(t)`` and ``deepcopy``.
* ``t.device`` answers ``cuda:0`` for an "on cuda" tensor, so code that reads the model's device
  (``model.device``, ``base.weight.device``) and builds on it is correct, as on a real GPU.
* An op that mixes an "on cuda" tensor with a host tensor of one or more dimensions raises
  :class:`DeviceMismatch` (a ``RuntimeError`` with CUDA's message), like CUDA does. Host 0-dim
  tensors are allowed (CUDA allows them); so are indexing a cuda tensor with host indices and
  ``cuda_t.copy_(host_t)``; indexing a host tensor with cuda indices is not. ``.numpy()`` on an
  "on cuda" tensor raises, as on CUDA. A CPU ``torch.Generator`` with ``device="cuda"`` raises.

What it found on f1c5213 (run with ``run_notebook``; "cell N" counts code cells from 1): lecture 03
cell 3 (a CPU batch into the model); lecture 04 cells 5, 7 (``probe``; ``forward_latency``'s inputs);
lecture 06 cells 4, 7, 8, 12 (a cuda prefix beside CPU q/k/v; CPU batches into the prefix, prompt and
timing models); solution 01 cells 5, 6 (``torch.tensor([ids])`` in the answer and the hidden test);
solution 03 cells 4, 6, 9, 11 (the hidden test's CPU batch; a CPU mask indexed by a cuda argsort);
solution 04 cells 2, 6, 8, 10, 11 (the locked ``_probe``; ``LoraLinear``'s layers built on the CPU);
solution 06 cells 2, 3, 4, 8 (the locked ``batch``; ``SoftPrompt``'s prompt and masks on the CPU);
solution 05 cell 10 (the hidden test's CPU probe); solution 07 cells 6, 8, 9 (adapters built on the CPU);
solution 08 cell 8 (parallel adapters on the CPU). Lectures 01, 02, 05 and solutions 00, 02 raised none.

Use ``with FakeCuda(): ...`` in a test, or :func:`install` once at the top of a notebook kernel (it
imports bitsandbytes and peft first, so they pick their CPU backend). :func:`run_notebook` reports
device errors, and lists the cells that need real CUDA (the fake failing there), so no cell is skipped
silently. On the course today that is one cell: lecture 05's ``load_qlora_bnb`` (bitsandbytes quantises on load).

What it cannot catch: code that never runs (a branch only the gpu runtime takes); mismatches
inside C++ kernels that create tensors without going through Python (none in the course's
paths); ops that never reach ``__torch_function__`` (e.g. some ``torch._C`` internals, compiled
code, custom C++/Triton extensions like bitsandbytes kernels); CUDA-only behaviour that is not about
placement (out of memory, dtype support such as bf16 on a T4, non-determinism, ``torch.cuda``
memory numbers, which answer 0 here); and a second accelerator (``cuda:1``) is treated as ``cuda:0``.
It also cannot see tensors passed to a model as Python numbers or lists (those are fine on CUDA).
"""
from __future__ import annotations

import traceback
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

FAKE = torch.device("cuda", 0)
_T = torch.Tensor


class DeviceMismatch(RuntimeError):
    """Raised where a real GPU would raise: an op mixes a cuda tensor with a host tensor."""


def _is_cuda_arg(d) -> bool:
    if isinstance(d, torch.device):
        return d.type == "cuda"
    if isinstance(d, str):
        return d.split(":")[0] == "cuda"
    return False


def _is_cpu_arg(d) -> bool:
    if isinstance(d, torch.device):
        return d.type == "cpu"
    return isinstance(d, str) and d.split(":")[0] == "cpu"


def _where() -> str:
    """The innermost frame outside torch and this file: the line a learner or the library wrote."""
    for fr in reversed(traceback.extract_stack()[:-2]):
        f = fr.filename
        if "/torch/" in f or f.endswith("device_guard.py") or "/transformers/" in f or "/peft/" in f:
            continue
        return f"{f}:{fr.lineno} {fr.line or ''}".strip()
    return "?"


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _tensors(args, kwargs) -> list:
    """The tensors among the arguments, and inside lists and tuples one level down (``torch.cat([...])``,
    index tuples): cheaper than a full pytree flatten, which matters on every op."""
    out = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, _T):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(b for b in a if isinstance(b, _T))
    return out


class FakeCuda(TorchFunctionMode):
    """See the module docstring. ``seen`` records each mismatch (message, site) before raising."""

    def __init__(self):
        super().__init__()
        self.on_cuda = WeakIdKeyDictionary()
        self.seen: list[str] = []
        self._patched: list[tuple[object, str, object]] = []

    # ---- bookkeeping ----------------------------------------------------------------------------
    def is_cuda(self, t) -> bool:
        return isinstance(t, _T) and t in self.on_cuda

    def _tag(self, out):
        for t in tree_flatten(out)[0]:
            if isinstance(t, _T):
                self.on_cuda[t] = True
        return out

    def _fail(self, what: str):
        msg = (f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! "
               f"(device guard: {what} at {_where()})")
        self.seen.append(msg)
        raise DeviceMismatch(msg)

    # ---- the fake torch.cuda ---------------------------------------------------------------------
    def __enter__(self):
        fakes = {"is_available": lambda: True, "device_count": lambda: 1, "current_device": lambda: 0,
                 "synchronize": lambda *a, **k: None, "empty_cache": lambda: None,
                 "reset_peak_memory_stats": lambda *a, **k: None, "memory_allocated": lambda *a, **k: 0,
                 "max_memory_allocated": lambda *a, **k: 0, "memory_reserved": lambda *a, **k: 0,
                 "get_device_name": lambda *a, **k: "FakeCuda (device guard)",
                 "is_bf16_supported": lambda *a, **k: True, "get_device_capability": lambda *a, **k: (8, 0),
                 "manual_seed": lambda *a, **k: None, "manual_seed_all": lambda *a, **k: None}
        for name, fn in fakes.items():
            self._patched.append((torch.cuda, name, getattr(torch.cuda, name, None)))
            setattr(torch.cuda, name, fn)
        # nn.Parameter(t) is made by Tensor._make_subclass, which no mode sees: follow it here
        new = torch.nn.Parameter.__new__

        def parameter_new(cls, data=None, requires_grad=True):
            p = new(cls, data, requires_grad)
            if self.is_cuda(data):
                self.on_cuda[p] = True
            return p

        self._patched.append((torch.nn.Parameter, "__new__", new))
        torch.nn.Parameter.__new__ = parameter_new
        return super().__enter__()

    def __exit__(self, *exc):
        for obj, name, old in reversed(self._patched):
            setattr(obj, name, old)
        self._patched.clear()
        return super().__exit__(*exc)

    # ---- the rules -------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = _name(func)
        if func == _T.device.__get__:
            return FAKE if self.is_cuda(args[0]) else func(*args)
        if func == _T.is_cuda.__get__:
            return self.is_cuda(args[0]) or func(*args)
        if func is _T.get_device:
            return 0 if self.is_cuda(args[0]) else func(*args)
        if func == _T.data.__get__:
            out = func(*args)
            return self._tag(out) if self.is_cuda(args[0]) else out
        if func == _T.data.__set__:
            self_, value = args
            func(*args)
            if self.is_cuda(value):
                self.on_cuda[self_] = True
            else:
                self.on_cuda.pop(self_, None)
            return None
        if func is _T.numpy and self.is_cuda(args[0]):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                            f"tensor to host memory first. (device guard at {_where()})")
        if func in (_T.cuda, _T.cpu, _T.to):
            return self._move(func, args, kwargs)

        # factory functions (and anything else) asked for device="cuda": run on the CPU, tag the result
        to_cuda = _is_cuda_arg(kwargs.get("device")) and not name.endswith("_parse_to")  # parsing makes no tensor
        if to_cuda:
            gen = kwargs.get("generator")
            if isinstance(gen, torch.Generator) and gen.device.type == "cpu":
                self._fail(f"a CPU torch.Generator used with device='cuda' in {name}")
            kwargs["device"] = "cpu"
        flat = _tensors(args, kwargs)
        cuda_in = [a for a in flat if self.is_cuda(a)]
        if cuda_in and not name.endswith(_MIXING_ALLOWED):
            host = [a for a in flat if not self.is_cuda(a) and a.dim() > 0]
            if host:
                self._fail(f"{name} got a cuda tensor and a host tensor of shape {tuple(host[0].shape)}")
        if name.endswith(("__getitem__", "__setitem__")):
            self._check_index(name, args)
        out = func(*args, **kwargs)
        if to_cuda or cuda_in:
            if name.endswith(("tolist", "item", "__bool__", "__int__", "__float__", "__index__", "__len__")):
                return out
            return self._tag(out)
        return out

    def _check_index(self, name, args):
        self_, index = args[0], args[1]
        idx = [a for a in tree_flatten(index)[0] if isinstance(a, _T)]
        if not self.is_cuda(self_):
            if any(self.is_cuda(i) for i in idx):
                self._fail(f"{name}: a host tensor indexed by a cuda tensor (indices should be either on cpu "
                           "or on the same device as the indexed tensor (cpu))")
            if len(args) > 2 and self.is_cuda(args[2]) and args[2].dim() > 0:
                self._fail(f"{name}: a cuda value written into a host tensor")
        elif len(args) > 2 and isinstance(args[2], _T) and not self.is_cuda(args[2]) and args[2].dim() > 0:
            self._fail(f"{name}: a host value of shape {tuple(args[2].shape)} written into a cuda tensor")

    def _move(self, func, args, kwargs):
        self_, rest = args[0], list(args[1:])
        if func is _T.cuda:
            return self._tag(self_.view_as(self_))
        if func is _T.cpu:
            return self_.view_as(self_) if self.is_cuda(self_) else self_
        target = kwargs.get("device")
        for i, a in enumerate(rest):
            if isinstance(a, (torch.device, str)):
                target = a
                rest[i] = "cpu"
            elif isinstance(a, _T):  # .to(other): other's device and dtype
                target = FAKE if self.is_cuda(a) else torch.device("cpu")
        if "device" in kwargs:
            kwargs["device"] = "cpu"
        out = func(self_, *rest, **kwargs)
        if _is_cuda_arg(target):
            return self._tag(out.view_as(out) if out is self_ else out)
        if _is_cpu_arg(target):
            return out.view_as(out) if out is self_ and self.is_cuda(self_) else out
        return self._tag(out) if self.is_cuda(self_) else out   # dtype-only move: stays where it was


# functions that take tensors on two devices on CUDA too (index and copy rules are in _check_index)
_MIXING_ALLOWED = ("copy_", "__setitem__", "__getitem__", "_has_compatible_shallow_copy_type",
                   "swap_tensors", "is_same_size", "Tensor.set_", "__deepcopy__", "__reduce_ex__")

_INSTALLED: FakeCuda | None = None


def install() -> FakeCuda:
    """Enter a :class:`FakeCuda` for the rest of the process (a notebook kernel). Idempotent."""
    global _INSTALLED
    if _INSTALLED is None:
        for name in ("bitsandbytes", "peft"):   # they pick their backend at import: the real (CPU) one
            try:
                __import__(name)
            except ImportError:
                pass
        _INSTALLED = FakeCuda()
        _INSTALLED.__enter__()
    return _INSTALLED


SMOKE = dict(train_steps=2, batch_size=4, max_length=64, eval_examples=16)


def _smoke() -> None:
    """Shrink the embedded budget and every ``TrainConfig`` so a notebook runs its code paths in seconds.

    Accuracy thresholds then fail; :func:`run_notebook` only reports device errors.
    """
    from dataclasses import replace

    from course_lib import runtime, training

    runtime.BUDGETS["embedded"] = replace(runtime.BUDGETS["embedded"], **SMOKE)
    series = runtime.Runtime.scale_series  # two members run every code path of a sweep over sizes

    def two_sizes(self, include_largest: bool = True) -> list[str]:
        return series(self, include_largest)[:2]

    runtime.Runtime.scale_series = two_sizes
    post_init = training.TrainConfig.__post_init__

    def small(cfg):
        cfg.steps = min(cfg.steps, SMOKE["train_steps"])
        cfg.eval_examples = min(cfg.eval_examples, SMOKE["eval_examples"])
        post_init(cfg)

    training.TrainConfig.__post_init__ = small


def install_cell(smoke: bool = True) -> str:
    """The code cell :func:`run_notebook` puts first: installs the guard in the notebook's kernel."""
    here = str(Path(__file__).resolve().parent)
    return (f"import sys; sys.path.insert(0, {here!r})\n"
            f"import device_guard; device_guard.install(); {'device_guard._smoke()' if smoke else ''}")


def run_notebook(path, smoke: bool = True, timeout: int = 300) -> list[str]:
    """Run a notebook under the guard, every cell even after errors; return the device errors as
    ``"cell N: message"`` (cell numbers count code cells from 1, the guard's cell excluded), and the
    cells that need real CUDA (e.g. bitsandbytes quantising on load) as ``"unchecked cell N: ..."``."""
    import nbformat

    from course_lib.notebooks import notebook_client

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(install_cell(smoke)))
    client = notebook_client(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                             resources={"metadata": {"path": str(Path(path).parent)}})
    client.execute()
    found, n = [], -1
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        n += 1
        for out in cell.get("outputs", []):
            text = f"{out.get('ename', '')}: {out.get('evalue', '')}" if out.get("output_type") == "error" else ""
            if n == 0 and text:
                found.append(f"guard cell: {text}")
            elif "device guard" in text:
                found.append(f"cell {n}: {text}")
            elif "cuda" in text.lower():   # the fake cannot stand in for CUDA here: say so, never skip silently
                found.append(f"unchecked cell {n}: needs real CUDA (the fake cannot run it): {text}")
    return found

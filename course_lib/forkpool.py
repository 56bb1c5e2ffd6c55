"""Independent training runs on every CPU core: forked workers for seeded studies.

A study of several methods over several seeds (:func:`course_lib.robustness.run_study`) is a list of
independent runs. On a CPU, torch's own threads do not speed up a model as small as the embedded one (one
step is too little work to split), but separate processes do: on 2 cores two runs take about the time of
one. :func:`fork_map` runs ``fn(job)`` for every job in up to ``workers`` forked children at once (the caller
only waits, and replaces a finished child at once), and returns the results in the order of ``jobs``.

* A child is a copy of the caller (``os.fork``): it sees the model, tokenizer and task without pickling
  them, runs one job with **one torch thread** (OpenMP pools do not survive a fork), sends its result back
  pickled through a pipe and exits. Its stdout and stderr go to ``/dev/null`` (in a notebook they belong
  to the parent's kernel).
* Jobs in ``in_parent`` run in the caller, one after another, before any fork (their results need not be
  picklable). Those jobs also use one torch thread, so a job gives the same numbers wherever it runs: the
  result does not depend on ``workers``. To bring a trained model back from a child, return its state dict
  and load it into a copy built the same way (:func:`course_lib.training.train_side_by_side` does).
* ``workers=1``, a platform without ``fork`` (Windows) or a model on a GPU (CUDA does not survive a fork,
  and one GPU runs the jobs one after another anyway) run everything in the caller, in order, with its
  threads untouched. :func:`default_workers` chooses.

An error in a child is raised in the caller as :class:`WorkerError`, with the child's traceback.
"""
from __future__ import annotations

import os
import pickle
import select
import sys
import traceback
from typing import Callable, Iterable, Sequence

from .errors import CourseError

ENV_VAR = "COURSE_WORKERS"


class WorkerError(CourseError, RuntimeError):
    """A job failed in a forked worker."""


def available_cpus() -> int:
    """CPUs this process may use: its affinity and cgroup quota (:mod:`course_lib.threads`), at least 1."""
    from .threads import affinity, cgroup_quota, choose_threads

    return choose_threads(affinity(), cgroup_quota())


def default_workers(model=None, n_jobs: int | None = None) -> int:
    """Processes for :func:`fork_map`: ``COURSE_WORKERS`` if set, else one per available CPU; 1 where forking
    cannot help or is unsafe (no ``os.fork``, or ``model`` on a GPU); never more than ``n_jobs``."""
    if not hasattr(os, "fork"):
        return 1
    if model is not None:
        try:
            if next(model.parameters()).device.type != "cpu":
                return 1
        except StopIteration:
            pass
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise CourseError(f"{ENV_VAR}={raw!r} is not a positive whole number.",
                              f"set {ENV_VAR}=1 to run studies in one process, or unset it to use every core.")
        n = int(raw)
    else:
        n = available_cpus()
    return max(1, min(n, n_jobs if n_jobs is not None else n))


def _silence_kernel() -> None:
    """In a child forked from a Jupyter kernel: nothing may reach the kernel's ZeroMQ sockets, which belong to
    the parent (a message sent from a copy corrupts the parent's connection: its next reply never arrives).
    Every Python path that sends (output streams, the session, the sockets) becomes a no-op, logging and
    warnings are off, and every inherited descriptor but the standard ones and the result pipe is closed, so
    anything that still tries fails in the child instead."""
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    noop = lambda *a, **k: None  # noqa: E731
    for module, cls, names in (("ipykernel.iostream", "OutStream", ("flush", "_flush", "_schedule_flush")),
                               ("ipykernel.iostream", "IOPubThread", ("schedule", "send_multipart")),
                               ("jupyter_client.session", "Session", ("send", "send_raw")),
                               ("zmq", "Socket", ("send", "send_multipart", "send_string", "send_json", "send_pyobj"))):
        owner = getattr(sys.modules.get(module), cls, None)
        for name in names:
            if owner is not None and hasattr(owner, name):
                try:
                    setattr(owner, name, noop)
                except (AttributeError, TypeError):
                    pass
    out = getattr(sys.modules.get("ipykernel.iostream"), "OutStream", None)
    if out is not None:
        out.write = lambda self, s: len(s)


def cpu_state(model) -> dict:
    """``model``'s state dict on the CPU, detached: what a worker sends back so the caller can load the weights."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _child(fn: Callable, job, wfd: int) -> None:
    """In the forked child: run one job quietly with one thread, send ("ok", result) or ("error", ...), exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        sys.stdout = sys.stderr = open(os.devnull, "w")
        _silence_kernel()
        keep = sorted({0, 1, 2, wfd, sys.stdout.fileno()})
        for low, high in zip(keep, keep[1:] + [os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 4096]):
            os.closerange(low + 1, high)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        payload = ("ok", fn(job))
    except BaseException as exc:  # noqa: BLE001 (everything is reported to the parent)
        payload = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    try:
        data = pickle.dumps(payload)
    except Exception as exc:  # noqa: BLE001
        data = pickle.dumps(("error", f"the result could not be pickled ({exc})", ""))
    view = memoryview(data)
    while view:
        view = view[os.write(wfd, view):]
    os.close(wfd)
    os._exit(0)


def fork_map(fn: Callable, jobs: Sequence, *, workers: int = 1, in_parent: Iterable[int] = (),
             on_done: Callable[[int, object], None] | None = None) -> list:
    """``[fn(job) for job in jobs]``, the jobs spread over up to ``workers`` forked children.

    ``in_parent``: indices of jobs that must run in the caller (their results are returned as they are, not
    pickled). ``on_done(index, result)`` is called in the caller as each job finishes (a progress bar).
    """
    jobs = list(jobs)
    results: list = [None] * len(jobs)
    done = [False] * len(jobs)

    def finish(i: int, result) -> None:
        results[i], done[i] = result, True
        if on_done is not None:
            on_done(i, result)

    if workers <= 1 or len(jobs) <= 1 or not hasattr(os, "fork"):
        for i, job in enumerate(jobs):
            finish(i, fn(job))
        return results

    import torch

    mine = [i for i in dict.fromkeys(in_parent) if 0 <= i < len(jobs)]
    shared = [i for i in range(len(jobs)) if i not in set(mine)]
    running: dict[int, tuple[int, int, bytearray]] = {}   # read fd -> (pid, job index, bytes so far)

    def collect() -> None:
        """Wait for a worker to send or finish, then take whatever else is ready without waiting."""
        timeout = None
        while running:
            ready, _, _ = select.select(list(running), [], [], timeout)
            if not ready:
                return
            for fd in ready:
                pid, i, buf = running[fd]
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    buf += chunk
                    continue
                os.close(fd)
                del running[fd]
                _, status = os.waitpid(pid, 0)
                try:
                    payload = pickle.loads(bytes(buf))
                except Exception:  # noqa: BLE001 (a child that died before writing)
                    raise WorkerError(f"job {i} ended without a result (worker exit status {status}).",
                                      f"rerun with {ENV_VAR}=1 to run it in this process and see the error.") from None
                if payload[0] != "ok":
                    raise WorkerError(f"job {i} failed in a worker: {payload[1]}\n{payload[2]}",
                                      f"fix the error above; {ENV_VAR}=1 runs the jobs in this process.")
                finish(i, payload[1])
            timeout = 0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i in mine:                  # the caller's own jobs first, before any fork
            finish(i, fn(jobs[i]))
        while shared or running:
            while shared and len(running) < workers:
                i = shared.pop(0)
                r, w = os.pipe()
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    os.close(r)
                    _child(fn, jobs[i], w)
                os.close(w)
                running[r] = (pid, i, bytearray())
            collect()                   # the caller only waits: a finished worker is replaced at once
    finally:
        for fd, (pid, _, _) in list(running.items()):
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
            os.close(fd)
        torch.set_num_threads(threads)
    assert all(done)
    return results

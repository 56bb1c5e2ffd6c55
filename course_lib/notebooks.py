"""Execute notebooks headless (nbclient) and report what happened.

Used by ``course run``: each notebook runs in its own kernel with its directory as the working
directory; the executed copy is written under ``build/executed/`` with the same relative path. The
copy records what it was executed from in ``metadata.course_executed`` (the source file's SHA-256 and
whether every cell ran), which ``course book`` reads to decide whether the copy is fresh.

Every headless run of the course (``course run``, the notebook tests, ``course grade`` and ``course check``)
makes its client with :func:`notebook_client`: nbclient's, with waits for a kernel message that look at
the socket again every :data:`POLL_SLICE` seconds instead of once. A single wait can miss a message that
has already arrived: with an ipywidgets ``Output`` in a cell (lecture 04's explorer), nbclient sends comm
messages on the shell socket while it waits for the cell's reply on it, and ZeroMQ's edge-triggered
descriptor may then never wake the wait, so the run stalls until the cell timeout although the kernel
is idle (jupyter/nbclient#312). Seen here on lecture 04 in ``course run``: 896 s idle after the explorer cell,
until the wait's own 900 s deadline ran out and its last poll found the reply that had been there all along.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunResult:
    notebook: str
    ok: bool
    seconds: float
    error: str = ""


#: Seconds a wait for a kernel message blocks before it polls the socket again (see the module docstring).
POLL_SLICE = 1.0


def _sliced(get_msg, slice_s: float):
    """``get_msg(timeout)`` of a kernel client channel, made of waits of at most ``slice_s`` seconds.

    Each slice ends in a fresh poll of the socket, which finds a message that is already queued even when
    the descriptor's wake-up was lost. The overall ``timeout`` (``None``: none) is kept, and ``Empty`` is
    raised only once it has passed.
    """
    from queue import Empty

    async def get_msg_in_slices(timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(timeout=slice_s if left is None else min(slice_s, left))
            except Empty:
                if left is not None and left <= slice_s:
                    raise

    get_msg_in_slices.__wrapped__ = get_msg
    return get_msg_in_slices


_CLIENT_CLASS = None


def notebook_client(nb, slice_s: float = POLL_SLICE, **kwargs):
    """An ``nbclient.NotebookClient`` for ``nb`` (``kwargs`` as nbclient takes them) whose kernel client polls
    its shell and IOPub sockets in slices of ``slice_s`` seconds: a run cannot stall on a reply that has
    already arrived (module docstring)."""
    global _CLIENT_CLASS
    if _CLIENT_CLASS is None:
        from jupyter_core.utils import run_sync
        from nbclient import NotebookClient

        class SteadyNotebookClient(NotebookClient):
            """nbclient's client; every wait for a shell or IOPub message re-polls its socket each slice."""

            poll_slice = POLL_SLICE

            async def async_start_new_kernel_client(self):
                kc = await super().async_start_new_kernel_client()
                for channel in (kc.shell_channel, kc.iopub_channel):
                    if not hasattr(channel.get_msg, "__wrapped__"):
                        channel.get_msg = _sliced(channel.get_msg, self.poll_slice)
                return kc

            # nbclient binds the blocking form to its own coroutine (setup_kernel calls it): bind it to this one
            start_new_kernel_client = run_sync(async_start_new_kernel_client)

        _CLIENT_CLASS = SteadyNotebookClient
    client = _CLIENT_CLASS(nb, **kwargs)
    client.poll_slice = slice_s
    return client


def source_sha256(path: Path) -> str:
    """SHA-256 of a notebook file as committed: what an executed copy records it was made from."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_notebooks(root: Path) -> list[Path]:
    """Every lecture and every solution (nbgrader source) notebook, in course order."""
    lectures = sorted((root / "lectures").glob("*.ipynb"))
    solutions = sorted((root / "solutions").glob("*/*.ipynb"))
    return [p for p in lectures + solutions if ".ipynb_checkpoints" not in p.parts]


def execute_notebook(path: Path, out_path: Path, timeout: int = 900, kernel_name: str = "python3",
                     progress: bool = True, env: dict[str, str] | None = None) -> RunResult:
    """Run one notebook top to bottom; write the executed copy to ``out_path``. ``env``: variables set in the
    kernel's environment on top of this process's (e.g. :func:`course_lib.threads.job_env`)."""
    import os

    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from tqdm.auto import tqdm

    nb = nbformat.read(path, as_version=4)
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    bar = tqdm(total=n_code, desc=path.name, unit="cell", leave=False, disable=not progress)
    client = notebook_client(nb, timeout=timeout, kernel_name=kernel_name,
                             resources={"metadata": {"path": str(path.parent)}},
                             on_cell_executed=lambda **_: bar.update(1))
    t0, error = time.time(), ""
    try:
        client.execute(**({"env": {**os.environ, **env}} if env else {}))
    except CellExecutionError as err:
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        error = lines[-1] if lines else "cell failed"
    except CellTimeoutError:
        error = f"a cell ran longer than {timeout} s"
    except DeadKernelError as err:
        error = f"the kernel died: {err}"
    finally:
        bar.close()
    nb.metadata["course_executed"] = {"source_sha256": source_sha256(path), "ok": not error}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_path)
    return RunResult(str(path), not error, time.time() - t0, error[:200])


def run_notebooks(paths: list[Path], root: Path, build_dir: Path, timeout: int = 900,
                  jobs: int = 1) -> list[RunResult]:
    """Execute ``paths`` (results in their order). ``jobs`` > 1: that many at once, each kernel started with
    ``cores // jobs`` threads (:func:`course_lib.threads.job_env`), one progress bar for the notebooks only.

    On a small model torch's threads gain little and side-by-side kernels that each kept all cores' threads
    slow each other down many times over, so jobs split the cores instead: on 2 cores, ``course run`` of lectures
    02 and 05 took 200.5 s wall clock with ``--jobs 1`` (2 threads) and 148.5 s with ``--jobs 2`` (1 thread each)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from .threads import job_env

    def rel(path: Path) -> Path:
        return path.resolve().relative_to(root) if path.resolve().is_relative_to(root) else Path(path.name)

    def one(path: Path, progress: bool = True, env: dict | None = None) -> RunResult:
        where = rel(path)
        result = execute_notebook(path, build_dir / "executed" / where, timeout=timeout, progress=progress, env=env)
        result.notebook = str(where)
        return result

    jobs = min(jobs, len(paths))   # more jobs than notebooks would only leave cores idle
    if jobs <= 1:
        return [one(path) for path in tqdm(paths, desc="notebooks", unit="nb")]
    env = job_env(jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool, \
            tqdm(total=len(paths), desc=f"notebooks ({jobs} at once, {env['OMP_NUM_THREADS']} thread(s) each)",
                 unit="nb") as bar:
        futures = [pool.submit(one, path, False, env) for path in paths]
        for future in futures:
            future.add_done_callback(lambda _: bar.update(1))
        return [future.result() for future in futures]


def format_table(results: list[RunResult], wall: float | None = None, jobs: int = 1) -> str:
    """The results as a table; the last line sums the notebooks' own times and, given ``wall``, says how long
    the whole run took with ``jobs`` notebooks at once."""
    width = max([len("notebook")] + [len(r.notebook) for r in results])
    rows = [f"{'notebook':<{width}}  status  seconds", f"{'-' * width}  ------  -------"]
    for r in results:
        rows.append(f"{r.notebook:<{width}}  {'ok' if r.ok else 'FAILED':<6}  {r.seconds:7.1f}")
        if r.error:
            rows.append(f"{'':<{width}}    {r.error}")
    total = sum(r.seconds for r in results)
    line = f"{len(results)} notebooks, {sum(not r.ok for r in results)} failed, {total:.1f} s in all"
    jobs = min(jobs, len(results))   # as run_notebooks ran them
    if wall is not None:
        line += f"; {wall:.1f} s wall clock ({jobs} at once)" if jobs > 1 else f"; {wall:.1f} s wall clock"
    rows.append(line)
    return "\n".join(rows)

"""Where ``course grade``'s jobs run: N local worker processes, or a Dask distributed cluster.

Each job (:func:`.grader.grade_submission`) starts its own nbgrader and kernel processes, so a worker
is mostly waiting on them; what matters is how many kernels run at once (``workers``) and how many
threads each may use: ``cores // workers`` (``OMP_NUM_THREADS`` and ``COURSE_THREADS`` in the
environment the kernels inherit, see :mod:`course_lib.threads`), so N kernels never fight over the
same cores. Cores are those this process may use: its CPU affinity and its cgroup quota
(:func:`course_lib.threads.choose_threads`). A thread count already set in the grader's own
environment (``OMP_NUM_THREADS`` or ``COURSE_THREADS``, e.g. by a batch system or by tests that run
two graders side by side) is a ceiling: a kernel never gets more threads than its grader was given.

* local (default): a ``concurrent.futures.ProcessPoolExecutor`` of ``workers`` processes (spawned,
  not forked: the parent has threads), results yielded as jobs finish;
* Dask (``scheduler="local"``: a ``LocalCluster`` of ``workers`` single-threaded processes;
  ``scheduler="tcp://host:8786"``: a running cluster, e.g. dask-jobqueue's ``SLURMCluster``): the same
  job function is submitted with ``client.submit``; the workers must see the course root at the same
  path (a shared file system) and have the course installed. Needs ``pip install -e ".[cluster]"``.

Only the parent writes the gradebook (:func:`.grader._merge`), whatever runs the jobs.
"""
from __future__ import annotations

from collections.abc import Iterator

from .. import threads
from ..errors import ConfigError


def cores() -> int:
    """CPUs this process may use: ``floor(min(affinity, cgroup quota))``, at least 1."""
    return threads.cores()


def worker_count(workers: int | None) -> int:
    """``workers`` checked, or the default: one per core."""
    if workers is None:
        return cores()
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"--workers {workers!r}: the number of submissions graded at once must be a whole number >= 1.",
                          f"pass e.g. --workers {cores()} (one per core, the default) or --workers 1 (serial).")
    return workers


def threads_per_kernel(workers: int) -> int:
    """``cores() // workers``, at least 1, and never above a count set in this process's environment."""
    return threads.per_job(workers)


def thread_env(workers: int) -> dict[str, str]:
    """The thread settings every grading kernel inherits when ``workers`` grade at once."""
    return threads.job_env(workers)


def describe(workers: int, scheduler: str | None) -> str:
    if scheduler == "local":
        return f"a Dask LocalCluster of {workers} worker(s)"
    if scheduler:
        return f"the Dask cluster at {scheduler}"
    return f"{workers} local worker(s), {threads_per_kernel(workers)} torch thread(s) per kernel"


def run(jobs: list, workers: int, scheduler: str | None = None) -> Iterator[tuple[object, dict]]:
    """Run :func:`.grader.grade_submission` on every job; yield ``(job, result)`` as each finishes."""
    if not jobs:
        return
    if scheduler:
        yield from _dask(jobs, workers, scheduler)
    else:
        yield from _local(jobs, workers)


def _local(jobs: list, workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from .grader import grade_submission

    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(grade_submission, job): job for job in jobs}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    finally:  # an interrupt (or an error) cancels what has not started; merged results stay merged
        pool.shutdown(wait=True, cancel_futures=True)


def require_dask() -> None:
    from ..errors import require

    for module in ("dask", "distributed"):
        require(module, "course grade --dask/--scheduler (grading on a Dask cluster)", extra="cluster")


def _dask(jobs: list, workers: int, scheduler: str):
    require_dask()
    from dask.distributed import Client, LocalCluster, as_completed

    from .grader import grade_submission

    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as err:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {err}",
                              "start the cluster first (e.g. dask-jobqueue's SLURMCluster, see the README) and pass "
                              "its scheduler address, e.g. --scheduler tcp://HOST:8786; or grade locally without "
                              "--scheduler.") from None
    try:
        futures = {client.submit(grade_submission, job, pure=False): job
                   for job in jobs}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

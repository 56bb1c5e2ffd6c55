"""Run chosen cells of a notebook in a kernel, one by one, with per-cell time limits and recovery.

A cell past its limit (an endless loop, even one that swallows ``KeyboardInterrupt``) or one that
kills the kernel is recorded as ``timeout``/``dead``; the kernel is then killed, a fresh one replays
every cell that had finished, and the run goes on. The offending cell thus costs what an answer
cell that raises would cost, and nothing more. Used by ``course check`` (wrong answers, released
notebooks) and by ``course grade`` to find the cell that made nbgrader's autograde fail.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .notebook import grade_id


@dataclass
class CellRun:
    index: int
    grade_id: str | None
    status: str = "ok"  # ok | error | timeout | dead
    ename: str = ""
    evalue: str = ""
    stderr: str = ""
    stdout: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        if self.status == "timeout":
            return f"did not finish within its time limit ({self.seconds:.0f} s)"
        if self.status == "dead":
            return "killed the kernel"
        if self.status == "error":
            return f"raised {self.ename}: {self.evalue}"[:300]
        return "passed"


@dataclass
class Step:
    """Execute cell ``index`` with ``source`` (default: the cell's own) and limit ``timeout``."""
    index: int
    source: str | None = None
    timeout: int | None = None
    record: bool = True
    label: str = ""
    results: list = field(default_factory=list)


def _collect(cell, run: CellRun) -> CellRun:
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            run.status, run.ename, run.evalue = "error", out.ename, out.evalue
        elif out.output_type == "stream":
            if out.name == "stderr":
                run.stderr += out.text
            else:
                run.stdout += out.text
    return run


def run_steps(nb, steps: list[Step], cwd: Path, timeout_for: Callable[[object], int],
              kernel_name: str = "python3", startup_timeout: int = 120) -> list[CellRun]:
    """Execute ``steps`` in order; returns one :class:`CellRun` per step."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from ..notebooks import notebook_client
    from .sandbox import manager_class

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    results: list[CellRun] = []
    finished: list[tuple[int, str]] = []  # replayed after a kernel restart
    pending = list(steps)
    while pending:
        client = notebook_client(nb, kernel_name=kernel_name, kernel_manager_class=manager_class(),
                                 allow_errors=True, interrupt_on_timeout=False,
                                 startup_timeout=startup_timeout, shutdown_kernel="immediate", resources={"metadata": {"path": str(cwd)}})
        with client.setup_kernel():
            for index, source in finished:
                cell = copy.deepcopy(nb.cells[index])
                cell.source, cell.outputs = source, []
                client.timeout = timeout_for(cell)
                client.execute_cell(cell, index, store_history=False)
            while pending:
                step = pending.pop(0)
                cell = copy.deepcopy(nb.cells[step.index])
                if step.source is not None:
                    cell.source = step.source
                cell.outputs = []
                limit = step.timeout or timeout_for(cell)
                client.timeout = limit
                run = CellRun(step.index, grade_id(cell))
                t0 = time.time()
                try:
                    client.execute_cell(cell, step.index)
                except CellTimeoutError:
                    run.status, run.seconds = "timeout", float(limit)
                    results.append(run)
                    break  # kill this kernel, replay what finished in a new one
                except DeadKernelError:
                    run.status, run.seconds = "dead", time.time() - t0
                    results.append(run)
                    break
                run.seconds = time.time() - t0
                results.append(_collect(cell, run))
                finished.append((step.index, cell.source))
    return results


def solution_steps(nb, upto: int | None = None, skip: Callable[[int, object], bool] | None = None) -> list[Step]:
    """Steps for every code cell (up to and including ``upto``), minus those ``skip`` rejects."""
    last = len(nb.cells) - 1 if upto is None else upto
    return [Step(i) for i, c in enumerate(nb.cells[: last + 1])
            if c.cell_type == "code" and not (skip and skip(i, c))]

"""Run variants of a notebook's remaining cells in forked copies of a live kernel (``course check``).

The checker executes the solution notebook once in a kernel; where a variant (a wrong answer)
replaces an answer cell, the kernel forks and the child runs the variant's cells while the parent
stays untouched, so every variant starts from the same state without re-running the (slow) cells
before it. This module runs *inside that kernel*; :mod:`.checker` drives it.

Each child runs the cells of its plan with ``exec`` (IPython syntax transformed first), its output
captured: stderr is recorded per cell (nbgrader scores a test cell that writes to stderr 0), stdout
and rich displays are dropped. The parent kills a child that overruns a cell's limit, whatever the
child does with ``KeyboardInterrupt``, and continues the plan in a new child from the next cell,
after replaying the cells that had finished.
"""
from __future__ import annotations

import base64
import json
import os
import select
import signal
import sys
import time


def _child(ns: dict, replay: list[str], plan: list[dict], wfd: int) -> None:
    import io
    import logging
    import tempfile

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)  # OpenMP thread pools do not survive fork
    try:
        ip = get_ipython()  # noqa: F821 (the kernel's shell)
        ip.display_pub.publish = lambda *a, **k: None  # no messages from a forked kernel:
        if getattr(ip, "kernel", None) is not None:     # its sockets belong to the parent
            ip.kernel.session.send = lambda *a, **k: None
        from IPython.core.inputtransformer2 import TransformerManager
        transform = TransformerManager().transform_cell
    except Exception:
        transform = lambda s: s  # noqa: E731
    errfile = tempfile.TemporaryFile(mode="w+b")
    os.dup2(errfile.fileno(), 2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sink = open(os.devnull, "w")

    def send(msg: dict) -> None:
        os.write(wfd, (json.dumps(msg) + "\n").encode())

    redirected = [sys.stdout, sys.stderr]  # streams that logging handlers may hold

    def run(src: str, capture):
        sys.stdout, sys.stderr = sink, capture
        for logger in [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                               if isinstance(v, logging.Logger)]:
            for h in logger.handlers:
                if isinstance(h, logging.StreamHandler) and any(h.stream is r for r in redirected):
                    try:
                        h.setStream(capture)
                    except Exception:
                        pass
        redirected.append(capture)
        exec(compile(transform(src), "<cell>", "exec"), ns)

    for src in replay:
        try:
            run(src, io.StringIO())
        except BaseException:
            pass
    for step in plan:
        send({"start": step["index"]})
        capture = io.StringIO()
        pos = errfile.seek(0, 2)
        result = {"index": step["index"], "status": "ok", "ename": "", "evalue": ""}
        try:
            run(step["source"], capture)
        except BaseException as err:  # noqa: B902 - a learner's SystemExit/KeyboardInterrupt is a failure too
            result.update(status="error", ename=type(err).__name__, evalue=str(err)[:500])
        errfile.seek(pos)
        result["stderr"] = (capture.getvalue() + errfile.read().decode(errors="replace"))[-2000:]
        send(result)
    send({"done": True})


def run_plan(ns: dict, plan: list[dict]) -> list[dict]:
    """Run ``plan`` (dicts: index, source, timeout) in forked children; one result per step."""
    results: list[dict] = []
    finished: list[str] = []
    while len(results) < len(plan):
        before = len(results)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(rfd)
            try:
                _child(ns, finished, plan[before:], wfd)
            finally:
                os._exit(0)
        os.close(wfd)
        buf, current, started, done = b"", None, time.time(), False
        while not done:
            ready, _, _ = select.select([rfd], [], [], 0.5)
            if ready:
                chunk = os.read(rfd, 65536)
                if not chunk:  # the child is gone
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if "start" in msg:
                        current, started = len(results), time.time()
                    elif "done" in msg:
                        done = True
                    else:
                        msg["seconds"] = time.time() - started
                        results.append(msg)
                        finished.append(plan[current]["source"])
                        current = None
            elif current is not None and time.time() - started > plan[current]["timeout"]:
                results.append({"index": plan[current]["index"], "status": "timeout", "ename": "", "evalue": "",
                                "stderr": "", "seconds": float(plan[current]["timeout"])})
                break
            elif current is None and time.time() - started > 600:
                break
        os.close(rfd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        if not done and len(results) < len(plan) and (current is not None or len(results) == before):
            # the child died inside a cell (os._exit, a crash) or before it: that cell fails, the rest goes on
            k = current if current is not None else len(results)
            if k == len(results):
                results.append({"index": plan[k]["index"], "status": "dead", "ename": "", "evalue": "",
                                "stderr": "", "seconds": 0.0})
    return results


def run_encoded(ns: dict, payload: str) -> None:
    """Entry point for the driver: ``payload`` is base64 JSON {"variants": [[step, ...], ...]}."""
    variants = json.loads(base64.b64decode(payload))["variants"]
    out = [run_plan(ns, plan) for plan in variants]
    print("COURSE-FORKRUN " + base64.b64encode(json.dumps(out).encode()).decode())

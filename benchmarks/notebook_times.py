"""(e) Wall time of every lecture and solution notebook, read from what ``course run`` left in ``build/``.

``course run`` executes each notebook with nbclient and writes the executed copy to
``build/executed/<same path>``; nbclient stamps every code cell with ``metadata.execution``
(``iopub.execute_input`` when the cell started, ``shell.execute_reply`` when it finished). A
notebook's wall time here is first cell start to last cell end (the kernel's start-up, a few
seconds, is not included); the sum of the cells' own times is given too. Nothing is executed:
the lead runs the notebooks. A notebook whose executed copy is missing is listed as "not run",
one whose code differs from the committed source as "stale" (the source changed after the run).
The budget is 3 minutes per notebook on the embedded default on 2 cores (course standard).

How busy the machine was while ``course run`` ran is not recorded in the executed copies, so these
times carry no load figure of their own: on a shared machine they are upper bounds.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from .common import ROOT, Result, new_figure, save_figure

NAME = "notebooks"
BUDGET_S = 180.0


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def notebook_timing(path: Path) -> dict:
    """Times and errors of one executed notebook (from nbclient's cell metadata)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    starts, ends, cells, errors = [], [], [], 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        ex = cell.get("metadata", {}).get("execution", {})
        start = ex.get("iopub.execute_input") or ex.get("iopub.status.busy")
        end = ex.get("shell.execute_reply") or ex.get("iopub.status.idle")
        if start and end:
            s, e = _ts(start), _ts(end)
            starts.append(s)
            ends.append(e)
            cells.append((e - s).total_seconds())
        errors += sum(o.get("output_type") == "error" for o in cell.get("outputs", []))
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    return {"wall_seconds": (max(ends) - min(starts)).total_seconds() if starts else None,
            "cell_seconds_sum": sum(cells) if cells else None, "slowest_cell_seconds": max(cells) if cells else None,
            "timed_cells": len(cells), "code_cells": n_code, "error_outputs": errors,
            "run_started_utc": min(starts).strftime("%Y-%m-%dT%H:%M:%SZ") if starts else None}


def _code(path: Path) -> list[str]:
    import nbformat

    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def collect(root: Path, build: Path) -> list[dict]:
    from course_lib.notebooks import default_notebooks

    rows = []
    for src in default_notebooks(root):
        rel = src.relative_to(root)
        executed = build / "executed" / rel
        row = {"notebook": str(rel), "executed_copy": str(executed.relative_to(root)) if executed.is_relative_to(root)
               else str(executed)}
        if not executed.is_file():
            row.update(status="not run")
        else:
            row.update(notebook_timing(executed))
            stale = _code(src) != _code(executed)
            if row["timed_cells"] < row["code_cells"] or row["error_outputs"]:
                row["status"] = "failed or incomplete"
            else:
                row["status"] = "stale" if stale else "ok"
            row["over_budget"] = bool(row["wall_seconds"] and row["wall_seconds"] > BUDGET_S)
        rows.append(row)
    return rows


def run(out_dir, quick: bool = False, root: Path | None = None, build: Path | None = None) -> Result:
    root = Path(root or ROOT)
    build = Path(build or root / "build")
    result = Result(NAME, "Notebook wall times from `course run` (build/executed/)", quick)
    with result.clock:
        rows = collect(root, build)
    result.settings = {"source": str(build / "executed"), "budget_seconds": BUDGET_S,
                       "wall": "first cell start to last cell end (nbclient metadata); kernel start-up excluded"}
    result.results = rows
    timed = [r for r in rows if r.get("wall_seconds") is not None]
    result.headline = {"notebooks": len(rows), "timed": len(timed),
                       "not run": sum(r["status"] == "not run" for r in rows),
                       "total seconds": round(sum(r["wall_seconds"] for r in timed), 1),
                       "over budget": sum(bool(r.get("over_budget")) for r in rows)}
    result.notes.append("The machine's load while `course run` executed the notebooks is not recorded in the "
                        "executed copies; this file's load figures are from reading them, not from running them.")
    for r in rows:
        if r["status"] != "ok":
            result.notes.append(f"{r['notebook']}: {r['status']}")
        elif r.get("over_budget"):
            result.notes.append(f"{r['notebook']}: {r['wall_seconds']:.0f} s, over the {BUDGET_S:.0f} s budget")
    _plot(result, out_dir)
    return result


def _plot(result: Result, out_dir) -> None:
    rows = result.results
    fig, (ax,) = new_figure(7.5, 0.8 + 0.35 * max(1, len(rows)))
    names = [r["notebook"] for r in rows]
    secs = [r.get("wall_seconds") or 0 for r in rows]
    colors = ["tab:red" if r.get("over_budget") else "tab:gray" if r["status"] != "ok" else "tab:blue" for r in rows]
    ax.barh(names, secs, color=colors)
    for i, r in enumerate(rows):
        if r["status"] != "ok":
            ax.annotate(r["status"], (secs[i], i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.axvline(BUDGET_S, ls="--", color="k", lw=1, label=f"budget {BUDGET_S:.0f} s")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("wall time (s), from course run's executed copies")
    ax.legend(fontsize=7)
    ax.set_title("Notebook wall times (embedded default, CPU)", fontsize=10)
    save_figure(fig, out_dir, f"{NAME}.png", result)

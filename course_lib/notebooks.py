"""Execute notebooks headless (nbclient) and report what happened.

Used by ``course run``: each notebook runs in its own kernel with its directory as the working
directory; the executed copy is written under ``build/executed/`` with the same relative path. The
copy records what it was executed from in ``metadata.course_executed`` (the source file's SHA-256 and
whether every cell ran), which ``course book`` reads to decide whether the copy is fresh.
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
                     progress: bool = True) -> RunResult:
    """Run one notebook top to bottom; write the executed copy to ``out_path``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from tqdm.auto import tqdm

    nb = nbformat.read(path, as_version=4)
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    bar = tqdm(total=n_code, desc=path.name, unit="cell", leave=False, disable=not progress)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(path.parent)}},
                            on_cell_executed=lambda **_: bar.update(1))
    t0, error = time.time(), ""
    try:
        client.execute()
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


def run_notebooks(paths: list[Path], root: Path, build_dir: Path, timeout: int = 900) -> list[RunResult]:
    from tqdm.auto import tqdm

    results = []
    for path in tqdm(paths, desc="notebooks", unit="nb"):
        rel = path.resolve().relative_to(root) if path.resolve().is_relative_to(root) else Path(path.name)
        results.append(execute_notebook(path, build_dir / "executed" / rel, timeout=timeout))
        results[-1].notebook = str(rel)
    return results


def format_table(results: list[RunResult]) -> str:
    width = max([len("notebook")] + [len(r.notebook) for r in results])
    rows = [f"{'notebook':<{width}}  status  seconds", f"{'-' * width}  ------  -------"]
    for r in results:
        rows.append(f"{r.notebook:<{width}}  {'ok' if r.ok else 'FAILED':<6}  {r.seconds:7.1f}")
        if r.error:
            rows.append(f"{'':<{width}}    {r.error}")
    total = sum(r.seconds for r in results)
    rows.append(f"{len(results)} notebooks, {sum(not r.ok for r in results)} failed, {total:.1f} s in all")
    return "\n".join(rows)

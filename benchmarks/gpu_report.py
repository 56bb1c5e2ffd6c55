"""Render ``benchmarks/results/gpu.json`` (written by ``tools/gpu_check.py``) as the README's GPU section.

    python -m benchmarks.gpu_report [--results FILE] [--readme PATH] [--print]

Replaces the text between ``<!-- gpu:start -->`` and ``<!-- gpu:end -->`` in the README. With no
results file it says that no GPU run has been made (nothing is ever typed in by hand).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import RESULTS_DIR

START, END = "<!-- gpu:start -->", "<!-- gpu:end -->"
RESULTS = RESULTS_DIR / "gpu.json"
README = Path(__file__).resolve().parent.parent / "README.md"
NO_RUN = ("No GPU run yet: the GPU check (`bash tools/gpu_check.sh`) has not been run on a CUDA machine, so "
          "everything GPU-side in this README is an estimate.\n")


def _numbers(check: dict) -> str:
    """The check's own numbers, compactly (notebook tables are rendered separately)."""
    skip = {"check", "status", "seconds", "notebooks", "trace", "env"}
    parts = []
    for key, value in check.items():
        if key in skip:
            continue
        text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
        parts.append(f"{key}: {text[:160]}")
    return "; ".join(parts).replace("|", "/")


def render(data: dict | None) -> str:
    if not data:
        return NO_RUN
    v = data.get("versions", {})
    gpu = data.get("gpu") or "no GPU"
    head = (f"GPU check at commit `{data.get('commit', '?')[:10]}` on **{gpu}**"
            + (f" (compute {'.'.join(map(str, data['capability']))}, {data.get('gpu_memory_gb')} GB)"
               if data.get("capability") else "")
            + f", device `{data.get('device')}`, precision {data.get('precision')}; torch {v.get('torch')}, "
            f"transformers {v.get('transformers')}, peft {v.get('peft')}, bitsandbytes {v.get('bitsandbytes')}. "
            f"{data['summary']['PASS']} passed, {data['summary']['FAIL']} failed, {data['summary']['SKIP']} skipped "
            f"in {data.get('wall_seconds')} s.")
    lines = [head, ""]
    if data.get("dry_run"):
        lines += ["**Dry run (no CUDA or --quick): not a GPU result.**", ""]
    lines += ["| check | status | seconds | numbers |", "|---|---|---|---|"]
    for c in data["checks"]:
        lines.append(f"| {c['check']} | {c['status']} | {c['seconds']} | {_numbers(c)} |")
    for c in data["checks"]:
        if "notebooks" in c:
            lines += ["", f"Notebooks, {c.get('runtime', c['check'])}:", "", "| notebook | ok | seconds | error |",
                      "|---|---|---|---|"]
            for name, r in c["notebooks"].items():
                lines.append(f"| {name} | {'yes' if r['ok'] else '**no**'} | {r['seconds']} | "
                             f"{(r.get('error') or '').replace('|', '/')[:120]} |")
    return "\n".join(lines) + "\n"


def render_t4_predictions() -> str:
    """The heavy cells of the gpu runtime with their predicted peak on a T4 (computed by course_lib.memory)."""
    from course_lib.memory import heavy_cell_table

    lines = ["Predicted peak GPU memory of the heavy cells on a 16 GB T4 under the gpu runtime "
             "(`course_lib.memory.heavy_cell_table()`: fp16 autocast over fp32 master weights for training, fp16 "
             "weights for inference; an estimate until the GPU check measures it):", "",
             "| notebook | cell | what | model | predicted GB |", "|---|---|---|---|---|"]
    for r in heavy_cell_table("cuda", (7, 5)):
        what = r["what"] + (" (opt-in, not in the T4 budget)" if r["opt_in"] else "")
        lines.append(f"| {r['notebook']} | {r['cell']} | {what} | {r['model']} | {r['predicted GB']} |")
    return "\n".join(lines) + "\n"


def load(path: Path = RESULTS) -> dict | None:
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def update_readme(results: Path = RESULTS, readme: Path = README) -> bool:
    text = Path(readme).read_text()
    if START not in text or END not in text:
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    Path(readme).write_text(head + START + "\n" + render(load(results)) + "\n" + render_t4_predictions() + END + tail)
    return True


def main(argv: list[str] | None = None) -> int:
    from .report import cli

    return cli(argv, prog="python -m benchmarks.gpu_report", doc=__doc__, results=RESULTS, readme=README,
               printed=lambda r: render(load(r)), update=update_readme, markers=(START, END))


if __name__ == "__main__":
    sys.exit(main())

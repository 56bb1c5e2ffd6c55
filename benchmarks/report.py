"""Render the headline tables of ``benchmarks/README.md`` from the JSON results (no typed numbers).

    python -m benchmarks.report [--results DIR] [--readme PATH] [--print]

Replaces the text between ``<!-- results:start -->`` and ``<!-- results:end -->`` in the README
(``--print`` writes the tables to stdout instead).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import RESULTS_DIR

START, END = "<!-- results:start -->", "<!-- results:end -->"
README = Path(__file__).resolve().parent / "README.md"


def load(results_dir: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("benchmark") != "gpu":   # the GPU check has its own section (benchmarks.gpu_report)
            out[data["benchmark"]] = data
    return out


def _iqr(s: dict, fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['q1'])}-{fmt.format(s['q3'])})"


def _load(d: dict) -> str:
    ld = d["load"]
    flag = "**contended**" if ld["contended"] else "quiet"
    return f"{flag}: load {ld['loadavg_start'][0]}->{ld['loadavg_end'][0]}, CPU share {ld['cpu_share']}"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def render(results: dict[str, dict]) -> str:
    lines = []
    any_d = next(iter(results.values()), None)
    if any_d is None:
        return "No results yet: run `python -m benchmarks`.\n"
    hw, v = any_d["hardware"], any_d["versions"]
    lines += [f"Measured on **{hw['cpu_model']}**, {hw['logical_cores']} logical cores (shared), "
              f"{hw['torch_threads']} torch thread(s), {hw['ram_total_gb']} GB RAM, "
              f"GPU: {hw['cuda'] or 'none'}; torch {v['torch']}, transformers {v['transformers']}, "
              f"peft {v['peft']}, bitsandbytes {v['bitsandbytes']}, course_lib {v['git_commit']}. "
              "Medians over repeated runs, quartiles in brackets. *Load* is the 1-minute load average at the "
              "start and end of the benchmark and the CPU-seconds per wall-second the benchmark got: on a "
              "contended machine absolute times are inflated, interleaved ratios much less.", ""]
    if any(d.get("quick") for d in results.values()):
        lines += ["**These are --quick results (toy models): not for quoting.**", ""]
    lines += ["| benchmark | measured | target | met | load |", "|---|---|---|---|---|"]
    d = results.get("lora_step")
    if d:
        for r in d["results"]:
            lines.append(f"| LoRA step, {r['model']} (batch {r['batch_size']} x {r['seq_len']}) | course_lib/peft time "
                         f"{_iqr(r['ratio'])}; {r['course_lib_ms']['median']:.1f} vs {r['peft_ms']['median']:.1f} ms | "
                         f"<= {d['settings']['target_ratio_max']} | {_yes(r['ratio']['median'] <= d['settings']['target_ratio_max'])} "
                         f"| {_load(d)} |")
    d = results.get("inference")
    if d:
        for r in d["results"]:
            rt = r["ratio_to_base"]
            others = ", ".join(f"{k} {rt[k]['median']:.3f}" for k in rt if k != "lora merged")
            lines.append(f"| Forward latency, {r['model']}: base {r['latency_ms']['base']['median']:.2f} ms | merged "
                         f"LoRA/base {_iqr(rt['lora merged'])}; {others} | merged <= 1.02 x base | "
                         f"{_yes(rt['lora merged']['median'] <= 1.02)} | {_load(d)} |")
    d = results.get("nf4")
    if d:
        q, dq, st = d["results"]
        for row in (q, dq):
            t = row["throughput_M_per_s"]
            lines.append(f"| NF4 {row['operation']}, {row['weights'] / 1e6:.1f}M weights | course_lib "
                         f"{_iqr(t['course_lib'], '{:.1f}')} vs bitsandbytes {_iqr(t['bitsandbytes'], '{:.1f}')} M weights/s "
                         f"| - | - | {_load(d)} |")
        b = st["bits_per_parameter"]
        scale_codes = (f"; 8-bit scale codes identical: {st['scale_codes_identical_fraction']:.2%}"
                       if "scale_codes_identical_fraction" in st else "")   # results written before it was measured lack it
        lines.append(f"| NF4 + double quantisation storage | {b['course_lib']:.4f} (course_lib), {b['bitsandbytes']:.4f} "
                     f"(bitsandbytes) bits/param; 4-bit codes identical: {st['packed_codes_identical_fraction']:.2%}{scale_codes} | "
                     f"{b['expected']:.3f} | {_yes(abs(b['course_lib'] - b['expected']) < 1e-3)} | - |")
    d = results.get("memory")
    if d:
        ok = sum(r["within_target"] for r in d["results"])
        lines.append(f"| Peak training memory vs estimate ({len(d['results'])} configurations) | "
                     f"{ok} of {len(d['results'])} within 15% (table below) | within 15% | "
                     f"{_yes(ok == len(d['results']))} | bytes do not depend on the load |")
    d = results.get("notebooks")
    if d:
        h = d["headline"]
        lines.append(f"| Notebook wall times (`course run`) | {h['timed']} of {h['notebooks']} timed, "
                     f"{h['total seconds']:.0f} s in all; {h['not run']} not run (table below) | <= 180 s each | "
                     f"{_yes(h['over budget'] == 0)} ({h['over budget']} over) | not recorded |")
    d = results.get("threads")
    if d:
        for r in d["results"]:
            sec = r["seconds"]
            lines.append(f"| {r['workload']}, {r['model']}, {r['condition']}: torch threads 2 vs 1 | time ratio "
                         f"{_iqr(r['ratio_2_to_1'])}; {sec['1 thread']['median']:.2f} s vs "
                         f"{sec['2 threads']['median']:.2f} s | - | - | {_load(d)} |")
    d = results.get("sandbox")
    if d:
        r = d["results"][0]
        lines.append(f"| Grading sandbox, one submission ({r['workload']}) | sandboxed/plain time "
                     f"{_iqr(r['ratio_sandboxed_to_plain'])}; {r['overhead_seconds']['median']:+.2f} s per submission | "
                     f"- | - | {_load(d)} |")
    d = results.get("grading")
    if d:
        r = d["results"][0]
        pm, p = r["submissions_per_minute"], r["projection"]
        lines.append(f"| `course grade`, {r['workload']} | speed-up 2 vs 1 workers {_iqr(r['speedup_1_to_2_workers'], '{:.2f}')}; "
                     f"{pm['1 worker']['median']:.2f} vs {pm['2 workers']['median']:.2f} submissions/min; 300 x 9: "
                     f"{p['hours_one_2core_machine_2_workers']:.1f} h on 2 cores, {p['hours_64core_cluster_64_workers']:.2f} h "
                     f"on 64 (projected) | >= 1.7x | {_yes(r['speedup_1_to_2_workers']['median'] >= 1.7)} | {_load(d)} |")
    d = results.get("memory")
    if d:
        lines += ["", f"**Training memory** (fp32, AdamW, batch {d['settings']['batch_size']} x "
                  f"{d['settings']['seq_len']} tokens, {d['settings']['steps']} steps; peak RSS of a fresh process "
                  "minus its RSS before the model was built):", "",
                  "| model | params | method | measured GB | estimate GB | of which activations | error | within 15% |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in d["results"]:
            e = r["estimate_bytes"]
            lines.append(f"| {r['label']} | {r['params'] / 1e6:.0f}M | {r['method']} | {r['measured_peak_bytes'] / 1e9:.3f} | "
                         f"{e['total'] / 1e9:.3f} | {e['activations'] / 1e9:.3f} | {r['relative_error']:+.1%} | "
                         f"{_yes(r['within_target'])} |")
    d = results.get("notebooks")
    if d:
        lines += ["", "**Notebooks** (from `build/executed/`, first cell start to last cell end):", "",
                  "| notebook | status | wall s | slowest cell s | run at (UTC) |", "|---|---|---|---|---|"]
        for r in d["results"]:
            w = f"{r['wall_seconds']:.1f}" if r.get("wall_seconds") is not None else "-"
            c = f"{r['slowest_cell_seconds']:.1f}" if r.get("slowest_cell_seconds") is not None else "-"
            lines.append(f"| {r['notebook']} | {r['status']} | {w} | {c} | {r.get('run_started_utc') or '-'} |")
    notes = [f"- {name}: {n}" for name, dd in results.items() if name != "notebooks" for n in dd["notes"]]
    if notes:
        lines += ["", "Notes written by the benchmarks:", ""] + notes
    return "\n".join(lines) + "\n"


def update_readme(results_dir: Path = RESULTS_DIR, readme: Path = README) -> bool:
    """Rewrite the generated block of ``readme``; False if it has no markers."""
    if not readme.is_file():
        return False
    text = readme.read_text()
    if START not in text or END not in text:
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + render(load(results_dir)) + END + tail)
    return True


def cli(argv, *, prog: str, doc: str, results: Path, readme: Path, printed, update, markers: tuple[str, str]) -> int:
    """The command line of a README renderer: ``--print`` writes ``printed(results)``, else ``update(results, readme)``."""
    p = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    p.add_argument("--results", default=str(results))
    p.add_argument("--readme", default=str(readme))
    p.add_argument("--print", action="store_true", help="print the tables instead of editing the README")
    args = p.parse_args(argv)
    if args.print:
        sys.stdout.write(printed(Path(args.results)))
        return 0
    if not update(Path(args.results), Path(args.readme)):
        print(f"{args.readme} has no {markers[0]} ... {markers[1]} block (How to fix: add the two markers).",
              file=sys.stderr)
        return 1
    print(f"updated {args.readme}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli(argv, prog="python -m benchmarks.report", doc=__doc__, results=RESULTS_DIR, readme=README,
               printed=lambda r: render(load(r)), update=update_readme, markers=(START, END))


if __name__ == "__main__":
    sys.exit(main())

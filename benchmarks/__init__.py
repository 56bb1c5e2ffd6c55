"""Benchmarks of the course's methods against the reference libraries and the hardware.

    python -m benchmarks [--quick] [--only NAME ...] [--out DIR] [--threads N]
    course bench [same options]

Each benchmark writes ``<out>/<name>.json`` (schema in :mod:`benchmarks.common`) and PNG plots next
to it; ``python -m benchmarks.report`` renders the headline table of ``benchmarks/README.md`` from
the JSON files. ``BENCHMARKS`` maps a name to its module (each has ``run(out_dir, quick) -> Result``).
"""
from __future__ import annotations

BENCHMARKS = {
    "lora_step": "benchmarks.lora_step",
    "inference": "benchmarks.inference",
    "nf4": "benchmarks.nf4_throughput",
    "memory": "benchmarks.training_memory",
    "notebooks": "benchmarks.notebook_times",
    "threads": "benchmarks.threads",
    "sandbox": "benchmarks.sandbox_overhead",
    "grading": "benchmarks.grading_throughput",
}

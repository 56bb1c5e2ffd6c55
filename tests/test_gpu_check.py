"""The GPU check's pieces that run without a GPU: the stand-in builder and the results renderer."""
import json

import pytest

from benchmarks import gpu_report

SAMPLE = {
    "benchmark": "gpu", "dry_run": False, "device": "cuda", "gpu": "NVIDIA H200", "capability": [9, 0],
    "gpu_memory_gb": 150.0, "precision": "bf16-mixed", "commit": "0123456789abcdef",
    "versions": {"torch": "2.11.0", "transformers": "5.17.0", "peft": "0.18", "bitsandbytes": "0.50.2"},
    "wall_seconds": 412.5, "summary": {"PASS": 2, "FAIL": 1, "SKIP": 0},
    "checks": [
        {"check": "nf4_vs_bnb", "status": "PASS", "seconds": 1.2, "torch.bfloat16": {"codes_equal": True}},
        {"check": "memory", "status": "FAIL", "seconds": 3.0, "peak_within_20pct": False},
        {"check": "notebooks_embedded", "status": "PASS", "seconds": 200.0, "runtime": "embedded-on-cuda",
         "notebooks": {"lectures/01_in_context_learning.ipynb": {"ok": True, "seconds": 80.0, "error": ""},
                       "solutions/03/03.ipynb": {"ok": False, "seconds": 9.0, "error": "AssertionError: a | b"}}},
    ],
}


def test_render_sample():
    text = gpu_report.render(SAMPLE)
    assert "**NVIDIA H200** (compute 9.0, 150.0 GB)" in text and "commit `0123456789`" in text
    assert "2 passed, 1 failed, 0 skipped in 412.5 s" in text
    assert "| nf4_vs_bnb | PASS | 1.2 |" in text and "| memory | FAIL | 3.0 | peak_within_20pct: False |" in text
    assert "| lectures/01_in_context_learning.ipynb | yes | 80.0 |" in text
    assert "| solutions/03/03.ipynb | **no** | 9.0 | AssertionError: a / b |" in text   # a pipe cannot break the table
    assert "Dry run" not in text
    assert "Dry run" in gpu_report.render({**SAMPLE, "dry_run": True})


def test_no_results_says_so(tmp_path):
    assert gpu_report.render(gpu_report.load(tmp_path / "missing.json")) == gpu_report.NO_RUN
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{gpu_report.START}\nold\n{gpu_report.END}\ntail\n")
    (tmp_path / "gpu.json").write_text(json.dumps(SAMPLE))
    assert gpu_report.update_readme(tmp_path / "gpu.json", readme)
    text = readme.read_text()
    assert "old" not in text and "NVIDIA H200" in text and text.endswith(f"{gpu_report.END}\ntail\n")
    readme.write_text("no markers\n")
    assert not gpu_report.update_readme(tmp_path / "gpu.json", readme)


def test_benchmark_report_ignores_the_gpu_json(tmp_path):
    from benchmarks import report

    (tmp_path / "gpu.json").write_text(json.dumps(SAMPLE))
    assert report.load(tmp_path) == {}


@pytest.mark.parametrize("key, specials, vocab", [
    ("qwen2.5-0.5b-instruct", {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}, 151936),
    ("smollm2-135m", {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}, 49152),
])
def test_standin_model_loads_through_the_hub_cache_layout(tmp_path, key, specials, vocab):
    """A 1-layer stand-in written into a hub-cache layout loads by its hub id, offline, with the real vocab
    size, bf16 weights, the real special-token ids and a chat template."""
    import subprocess
    import sys

    from course_lib import standins

    snap = standins.build_model(key, tmp_path / "hub", num_hidden_layers=1)
    assert (tmp_path / "hub" / snap.relative_to(tmp_path / "hub").parts[0] / "refs" / "main").read_text() == standins.REVISION
    code = (f"from course_lib.models import load_model\n"
            f"m, t = load_model({key!r}, device='cpu', dtype=None)\n"
            "import json; print(json.dumps([m.config.vocab_size, str(m.dtype), {s: t.convert_tokens_to_ids(s) "
            f"for s in {list(specials)!r}}}, bool(t.chat_template), m.name_or_path]))")
    env = {**__import__("os").environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    vocab_size, dtype, ids, has_template, name = json.loads(out.stdout.strip().splitlines()[-1])
    assert vocab_size == vocab and ids == specials and has_template
    assert dtype == "torch.float32"   # load_model's training default; the stored weights are bf16
    from safetensors import safe_open
    with safe_open(str(snap / "model.safetensors"), "pt") as f:
        assert f.get_slice(next(iter(f.keys()))).get_dtype() == "BF16"
    from course_lib.registry import MODELS
    assert name == MODELS[key].hub_id


def test_standin_datasets_have_the_hub_splits_and_columns(tmp_path):
    from datasets import load_from_disk

    from course_lib import reasoning, standins
    from course_lib.tasks import sst2

    standins.build_sst2(tmp_path / "sst2", {"train": 200, "validation": 30, "test": 20})
    ds = load_from_disk(str(tmp_path / "sst2"))
    assert set(ds) == {"train", "validation", "test"} and ds["train"].column_names == ["idx", "sentence", "label"]
    assert set(ds["test"]["label"]) == {-1} and set(ds["train"]["label"]) == {0, 1}
    task = sst2(path=str(tmp_path / "sst2"))
    assert len(task["validation"]) == 30 and len(task["test"]) == 20 and len(task["train"]) == 180
    standins.build_gsm8k(tmp_path / "gsm8k", {"train": 5, "test": 3})
    rows = reasoning.load_gsm8k("test", path=str(tmp_path / "gsm8k"))
    assert len(rows) == 3 and reasoning.gsm8k_final_answer(rows[0]["answer"]) == eval(
        rows[0]["answer"].split("<<")[1].split("=")[0])

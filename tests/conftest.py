"""Shared fixtures: tiny random models of the architectures the course adapts, and the embedded model."""
import os

import pytest
import torch

from course_lib.startup import skip_iri_grammar

skip_iri_grammar()  # as `course` does: 2 s of CPU less in each worker that reads a notebook (course_lib/startup.py)
torch.set_num_threads(1)
# select_runtime() sets torch's threads from the CPU limits (course_lib.threads): keep the tests at one.
os.environ.setdefault("COURSE_THREADS", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest runs one worker per core: kernels and nbgrader started by a worker get one thread too,
    # or two workers' notebooks would each spin two threads on the same cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _environment_restored():
    """Give every test the environment the session started with. ``course grade``/``course check`` pin
    their runtime into ``os.environ`` (their kernels inherit it); called in-process by a test, that pin
    would otherwise leak into the next test on the same worker (e.g. ``course doctor`` would report the
    runtime as requested by $COURSE_RUNTIME)."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def sandbox_flags():
    """``course grade/check`` arguments for this machine: none where the grading sandbox (bubblewrap) runs,
    which CI installs; ``--no-sandbox`` where it cannot, with a warning in the summary, so the grading tests
    still prove the grader there while tests/test_sandbox.py skips with the reason."""
    import warnings

    from course_lib.grading import sandbox

    why = sandbox.probe()
    if why:
        warnings.warn(f"grading tests run WITHOUT the grading sandbox: {why}")
        return ["--no-sandbox"]
    return []


@pytest.fixture
def tiny_llama():
    """A 2-layer Llama with grouped-query attention (4 heads, 2 KV heads), random weights, eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture
def tiny_gpt2():
    """A 2-layer GPT-2 (Conv1D projections) with dropout off, random weights, eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="session")
def embedded():
    """The default embedded model and its tokenizer (loaded once per test session)."""
    from course_lib.models import load_model
    from course_lib.runtime import select_runtime

    return load_model("embedded", runtime=select_runtime("embedded"))


@pytest.fixture(scope="module")
def embedded_model():
    """A fresh default embedded model and its tokenizer for one test module (its tests may change the model)."""
    from course_lib.models import load_model

    return load_model("embedded")


# Long tests, with their seconds in CI (2 workers on 2 cores, the durations list of a CI run; rough weights,
# only used to balance the workers). pytest-xdist's worksteal scheduler (addopts) first gives each worker a
# contiguous slice of the collected list, then moves tests from the *end* of the longest queue to an idle
# worker. So the long tests are dealt out over the workers' slices by weight (longest first, each to the
# least loaded slice) at the front of each slice, the short tests fill the slices up, and stealing evens out
# the end with short tests. (Sorting them all to the front put every `course check` on one worker, in turn.)
_LONG = {"tests/test_assignments.py::test_course_check[": {"07": 405, "08": 395, "04": 226, "02": 224, "03": 221,
                                                           "01": 189, "05": 158, "06": 138, "00": 84},
         "tests/test_notebooks.py::test_lecture_runs_top_to_bottom[": {"04": 272, "07": 245, "08": 212, "06": 177,
                                                                      "01": 127, "03": 125, "05": 89, "02": 81},
         "tests/test_device_guard.py::test_notebook_has_no_device_error_on_a_fake_gpu[": {"01_in_context_learning]": 163},
         "tests/test_grading.py::test_grade_a_class_with_1_and_2_workers": {"": 565},
         "tests/test_benchmarks.py::test_quick_run": {"": 98},
         "tests/test_sandbox.py::test_course_grade_sandboxed": {"": 64},
         "tests/test_grading.py::test_grade_on_a_dask_local_cluster": {"": 46}}
_DEFAULT_LONG = 40  # any other test under a prefix above (a guard run, a new lecture)


def _weight(nodeid: str) -> float | None:
    for prefix, known in _LONG.items():
        if nodeid.startswith(prefix):
            rest = nodeid[len(prefix):]
            return next((w for key, w in known.items() if rest.startswith(key)), _DEFAULT_LONG)
    return None


def pytest_collection_modifyitems(session, config, items):
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    weighted = sorted(((w, i) for i, it in enumerate(items) if (w := _weight(it.nodeid)) is not None),
                      key=lambda wi: (-wi[0], wi[1]))
    lanes, load = [[] for _ in range(workers)], [0.0] * workers
    for w, i in weighted:
        lane = min(range(workers), key=lambda k: (load[k], k))
        lanes[lane].append(items[i])
        load[lane] += w
    long_ids = {i for _, i in weighted}
    short = [it for i, it in enumerate(items) if i not in long_ids]
    ordered = []   # worksteal gives worker k the slice [k * len // workers, (k + 1) * len // workers)
    for k, lane in enumerate(lanes):
        end = len(items) if k == workers - 1 else (k + 1) * len(items) // workers
        take = max(0, end - len(ordered) - len(lane))
        ordered += lane + short[:take]
        short = short[take:]
    ordered += short
    assert len(ordered) == len(items)
    items[:] = ordered

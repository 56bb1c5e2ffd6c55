"""Shared fixtures: tiny random models of the architectures the course adapts, and the embedded model."""
import os

import pytest
import torch

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


# The longest tests (a `course check` runs one assignment's whole proof: ~2-19 min; a lecture runs 1-5 min)
# go first, the longest first, so the two workers finish together instead of one running the last long
# test alone (CI measured `course check 08` at 1142 s as the final test while the other worker idled).
_LONG_FIRST = ("tests/test_assignments.py::test_course_check", "tests/test_notebooks.py::test_lecture_runs_top_to_bottom",
               "tests/test_device_guard.py::test_notebook_has_no_device_error_on_a_fake_gpu")


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        for i, prefix in enumerate(_LONG_FIRST):
            if item.nodeid.startswith(prefix):
                return (i, tuple(-ord(c) for c in item.nodeid))   # later assignments/lectures are longer
        return (len(_LONG_FIRST), ())
    items.sort(key=rank)   # stable: every other test keeps its order

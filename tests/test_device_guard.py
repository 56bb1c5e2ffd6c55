"""Device placement: every lecture and solution runs against a fake CUDA device without a device error.

The guard (tests/device_guard.py, its docstring says how it works and what it cannot catch) makes the
model's tensors report ``cuda:0`` on a CPU machine and raises where a real GPU would: an op that mixes
them with a tensor host code left on the CPU. The notebooks run in "smoke" mode (2 training steps,
16 evaluation examples), so accuracy thresholds fail there and are not reported: only device errors are,
and cells that need real CUDA (bitsandbytes quantising on load) are named in a warning.
"""
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from course_lib import training
from course_lib.notebooks import default_notebooks

from device_guard import DeviceMismatch, FakeCuda, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = default_notebooks(ROOT)


def test_guard_raises_where_cuda_would_and_not_elsewhere(tiny_llama):
    with FakeCuda() as guard:
        assert torch.cuda.is_available()
        model = tiny_llama.to("cuda")
        assert model.device == torch.device("cuda", 0) and model.model.embed_tokens.weight.is_cuda
        ids = torch.randint(0, 64, (2, 5))
        with pytest.raises(DeviceMismatch, match="same device"):
            model(input_ids=ids)                                     # host ids into a cuda model
        out = model(input_ids=ids.to(model.device)).logits
        assert out.device.type == "cuda"
        assert model(input_ids=training.to_device(ids, model)).logits.device.type == "cuda"
        base = model.model.layers[0].self_attn.q_proj
        x = torch.randn(3, base.in_features, device=base.weight.device)
        with pytest.raises(DeviceMismatch):
            nn.Linear(base.in_features, 4)(x)                        # a layer built on the CPU
        good = nn.Linear(base.in_features, 4, device=base.weight.device, dtype=base.weight.dtype)
        assert good(x).is_cuda
        mask = torch.ones(x.numel(), dtype=torch.bool)
        with pytest.raises(DeviceMismatch, match="indexed by a cuda tensor"):
            mask[x.flatten().argsort()[:3]] = False                  # a CPU mask indexed by a CUDA argsort
        x[torch.tensor([0, 1])] = 0.0                                # host indices into cuda: fine on CUDA
        assert (x * torch.tensor(2.0)).is_cuda                       # a host 0-dim tensor: fine on CUDA
        with pytest.raises(TypeError, match="numpy"):
            out.detach().numpy()
        assert out.detach().cpu().numpy().shape == tuple(out.shape)
        assert len(guard.seen) == 3
    assert not torch.cuda.is_available() or torch.version.cuda      # the fake is gone on exit


def test_guard_follows_parameters_through_copies_and_training(tiny_llama):
    import copy

    with FakeCuda():
        model = tiny_llama.to("cuda")
        twin = copy.deepcopy(model)
        assert all(p.is_cuda for p in twin.parameters())
        twin.requires_grad_(True)
        twin(input_ids=torch.randint(0, 64, (2, 5), device="cuda")).logits.sum().backward()
        assert all(p.grad is None or p.grad.is_cuda for p in twin.parameters())
        assert nn.Parameter(torch.zeros(3, device="cuda")).is_cuda
        assert not twin.cpu().lm_head.weight.is_cuda


def test_library_helpers_place_tensors_on_the_model_device(tiny_llama):
    from course_lib.timing import forward_latency
    from course_lib.tasks import review_verdicts

    class Tok:  # a character tokenizer: enough for encode_examples
        pad_token_id = 0

        def __call__(self, text):
            from types import SimpleNamespace
            return SimpleNamespace(input_ids=[1 + ord(c) % 60 for c in text])

    task = review_verdicts({"train": 8, "validation": 4, "test": 4})
    with FakeCuda() as guard:
        model = tiny_llama.to("cuda")
        batch = training.encode_examples(Tok(), task, task["train"][:4], device=model)
        assert all(t.is_cuda for t in batch.values())
        assert not training.encode_examples(Tok(), task, task["train"][:4])["input_ids"].is_cuda
        forward_latency({"m": model}, {"input_ids": batch["input_ids"].cpu()}, repeats=1, warmup=0)
        cfg = training.TrainConfig(steps=1, batch_size=2, eval_examples=2)
        training.train(model.requires_grad_(True), Tok(), task, cfg, progress=False)
        assert not guard.seen


def test_device_of_names_the_device_or_says_what_to_pass():
    from course_lib.errors import ConfigError

    assert training.device_of(nn.Linear(2, 2)) == torch.device("cpu")
    assert training.device_of("cpu") == torch.device("cpu") and training.device_of(None) is None
    assert training.device_of(torch.zeros(1)) == torch.device("cpu")
    with pytest.raises(ConfigError, match="no parameters"):
        training.device_of(nn.ReLU())
    with pytest.raises(ConfigError, match="cannot tell a device"):
        training.device_of(3)
    moved = training.to_device({"a": torch.zeros(1), "b": [torch.ones(1)], "n": 3}, "cpu")
    assert moved["n"] == 3 and isinstance(moved["b"], list)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.parent.name + "/" + p.stem if p.parent.name != "lectures"
                                                 else p.stem for p in NOTEBOOKS])
def test_notebook_has_no_device_error_on_a_fake_gpu(path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNTIME", "embedded")   # "embedded on a GPU": CUDA present, hub unreachable
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    found = run_notebook(path)
    unchecked = [f for f in found if f.startswith("unchecked")]
    if unchecked:
        warnings.warn(f"{path.relative_to(ROOT)}: the fake GPU could not check " + "; ".join(unchecked))
    errors = [f for f in found if not f.startswith("unchecked")]
    assert not errors, f"{path.relative_to(ROOT)} would fail on a GPU:\n" + "\n".join(errors)

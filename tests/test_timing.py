"""course_lib.timing: the one timer (lectures 04, 06, 07, prompting.prompt_cost, benchmarks/).

Only the protocol is asserted (rounds, order, warm-up, synchronisation, units, errors), never a duration."""
import statistics

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.timing import cuda_sync, forward_latency, forward_latency_samples, interleaved, summary


def test_interleaved_alternates_the_order_and_drops_the_warmup():
    calls = []
    t = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b"), "c": lambda: calls.append("c")},
                    repeats=3, warmup=2)
    assert calls == ["a", "b", "c", "c", "b", "a"] * 2 + ["a", "b", "c"]
    assert list(t) == ["a", "b", "c"] and all(len(v) == 3 and all(x >= 0 for x in v) for v in t.values())


def test_interleaved_synchronises_around_every_call_and_enters_the_clock():
    events = []

    class Clock:
        def __enter__(self):
            events.append("enter")

        def __exit__(self, *exc):
            events.append("exit")

    interleaved({"f": lambda: events.append("call")}, repeats=2, warmup=0, sync=lambda: events.append("sync"),
                clock=Clock())
    assert events == ["enter", "sync", "call", "sync", "exit"] * 2


def test_interleaved_refuses_what_cannot_be_timed():
    for kwargs in ({"repeats": 0}, {"repeats": True}, {"warmup": -1}):
        with pytest.raises(ConfigError):
            interleaved({"f": lambda: None}, **{"repeats": 2, **kwargs})
    with pytest.raises(ConfigError, match="nothing to time"):
        interleaved({}, repeats=2)


def test_summary_quartiles_and_a_single_sample():
    s = summary([4, 1, 3, 2, 5], "ms")
    assert (s["min"], s["q1"], s["median"], s["q3"], s["max"], s["n"], s["unit"]) == (1, 2, 3, 4, 5, 5, "ms")
    one = summary([7.5], "s")
    assert (one["q1"], one["median"], one["q3"]) == (7.5, 7.5, 7.5)
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        summary([], "ms")


def test_cuda_sync_only_for_something_on_cuda():
    assert cuda_sync(torch.nn.Linear(2, 2), torch.zeros(1), "cpu") is None
    assert cuda_sync(torch.zeros(1), "cuda") is torch.cuda.synchronize


def _ids(model):
    return torch.randint(3, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))


def test_forward_latency_samples_interleaves_models_in_eval_mode_without_grad(tiny_llama):
    order, grad = [], []

    class Recorder(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name, self.w = name, torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids):
            order.append(self.name)
            grad.append(torch.is_grad_enabled() or self.training)
            return tiny_llama(input_ids=input_ids)

    models = {"a": Recorder("a").train(), "b": Recorder("b").train()}
    samples = forward_latency_samples(models, {"input_ids": _ids(tiny_llama)}, repeats=4, warmup=1)
    assert {k: len(v) for k, v in samples.items()} == {"a": 4, "b": 4}
    assert order == ["a", "b", "b", "a"] * 2 + ["a", "b"] and not any(grad)
    assert all(t > 0 for v in samples.values() for t in v)


def test_forward_latency_is_the_median_in_milliseconds(tiny_llama, monkeypatch):
    import course_lib.timing as timing

    fake = {"a": [3.0, 1.0, 2.0], "b": [5.0, 4.0, 9.0]}
    monkeypatch.setattr(timing, "forward_latency_samples", lambda *a, **k: fake)
    assert forward_latency({"a": tiny_llama, "b": tiny_llama}, {}) == {"a": 2.0, "b": 5.0}
    monkeypatch.undo()
    ms = forward_latency({"m": tiny_llama}, {"input_ids": _ids(tiny_llama)}, repeats=3, warmup=1)
    s = forward_latency_samples({"m": tiny_llama}, {"input_ids": _ids(tiny_llama)}, repeats=3, warmup=1)
    assert set(ms) == {"m"} and ms["m"] > 0 and statistics.median(s["m"]) > 0

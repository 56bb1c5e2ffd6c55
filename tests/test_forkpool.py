"""Forked workers for independent runs: same results, same order, errors reported, as one process."""
import os

import pytest
import torch

from course_lib import forkpool
from course_lib.errors import CourseError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _square_and_pid(x):
    return x * x, os.getpid()


def test_results_come_back_in_job_order_from_several_processes():
    seen = []
    out = forkpool.fork_map(_square_and_pid, list(range(7)), workers=3, on_done=lambda i, r: seen.append(i))
    assert [r[0] for r in out] == [x * x for x in range(7)]
    assert sorted(seen) == list(range(7))                        # on_done once per job
    pids = {r[1] for r in out}
    assert os.getpid() not in pids and len(pids) >= 3            # forked children did the work, the caller waited


def test_in_parent_jobs_run_in_the_caller_and_may_return_what_cannot_be_pickled():
    out = forkpool.fork_map(lambda x: ((lambda: x) if x == 1 else x, os.getpid()), [0, 1, 2], workers=2, in_parent=[1])
    assert out[1][1] == os.getpid() and out[1][0]() == 1
    assert [out[0][0], out[2][0]] == [0, 2] and os.getpid() not in (out[0][1], out[2][1])


def test_a_child_result_that_cannot_be_pickled_is_a_clear_error():
    with pytest.raises(forkpool.WorkerError, match="could not be pickled"):
        forkpool.fork_map(lambda x: (lambda: x) if x == 0 else x, [0, 1, 2, 3], workers=2, in_parent=[1, 2, 3])


def test_an_error_in_a_child_is_raised_with_its_traceback_and_the_threads_come_back():
    def boom(x):
        if x == 0:
            raise ValueError("bad job")
        return x

    threads = torch.get_num_threads()
    with pytest.raises(forkpool.WorkerError, match="ValueError: bad job") as err:
        forkpool.fork_map(boom, [0, 1], workers=2, in_parent=[1])
    assert "Traceback" in str(err.value) and "COURSE_WORKERS=1" in str(err.value)
    assert torch.get_num_threads() == threads


def test_a_child_that_dies_is_reported():
    with pytest.raises(forkpool.WorkerError, match="without a result"):
        forkpool.fork_map(lambda x: os._exit(3) if x == 0 else x, [0, 1], workers=2, in_parent=[1])


def test_one_worker_runs_everything_here_in_order():
    out = forkpool.fork_map(_square_and_pid, [3, 1, 2], workers=1)
    assert out == [(9, os.getpid()), (1, os.getpid()), (4, os.getpid())]


def test_default_workers_follow_the_environment_the_cpus_and_the_device(monkeypatch):
    monkeypatch.setenv("COURSE_WORKERS", "3")
    assert forkpool.default_workers(n_jobs=10) == 3 and forkpool.default_workers(n_jobs=2) == 2
    monkeypatch.setenv("COURSE_WORKERS", "zero")
    with pytest.raises(CourseError, match="COURSE_WORKERS"):
        forkpool.default_workers()
    monkeypatch.delenv("COURSE_WORKERS")
    assert forkpool.default_workers(n_jobs=100) == forkpool.available_cpus()
    model = torch.nn.Linear(2, 2)
    assert forkpool.default_workers(model, n_jobs=100) == forkpool.available_cpus()
    monkeypatch.setattr(torch.Tensor, "device", property(lambda self: torch.device("cuda", 0)))
    assert forkpool.default_workers(model, n_jobs=100) == 1       # CUDA does not survive a fork


def test_train_side_by_side_leaves_each_model_trained_as_one_process_would(embedded):
    import copy

    from course_lib import training
    from course_lib.errors import ConfigError
    from course_lib.methods import lora
    from course_lib.tasks import review_verdicts

    model, tokenizer = embedded
    task = review_verdicts({"train": 32, "validation": 8, "test": 8, "test_unseen": 8})
    cfg = training.TrainConfig(steps=3, batch_size=4, lr=1e-3, eval_examples=8)

    def fresh():
        torch.manual_seed(0)
        return [copy.deepcopy(model), lora.apply(copy.deepcopy(model), lora.Config(r=2, lora_alpha=4, target_modules=["q_proj"]))]

    serial, side = fresh(), fresh()
    expected = [training.train(m, tokenizer, task, cfg, progress=False) for m in serial]
    got = training.train_side_by_side(tokenizer, [(m, task, cfg) for m in side], workers=2)
    for a, b, ra, rb in zip(serial, side, expected, got):
        assert ra.losses == rb.losses and ra.final_accuracy == rb.final_accuracy
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(side[0].model.layers[0].self_attn.q_proj.weight, model.model.layers[0].self_attn.q_proj.weight)
    with pytest.raises(ConfigError, match="same model"):
        training.train_side_by_side(tokenizer, [(side[0], task, cfg), (side[0], task, cfg)])
    with pytest.raises(ConfigError, match="triple"):
        training.train_side_by_side(tokenizer, [(side[0], task)])

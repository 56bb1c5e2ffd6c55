"""The downstream task on both runtimes: review verdicts (embedded) and SST-2 (GPU), the latter from a
local stand-in with the hub dataset's columns and label names (no network)."""
import pytest

from course_lib.runtime import select_runtime
from course_lib.errors import ConfigError
from course_lib.tasks import Example, downstream_task, review_verdicts, sentiment_items, sst2


def _sst2_standin(path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from course_lib.registry import DATASETS

    info = DATASETS["sst2"]
    feats = Features({"idx": Value("int32"), info.text_column: Value("string"),
                      info.label_column: ClassLabel(names=list(info.label_names))})
    rows = lambda n, off: {"idx": list(range(n)), info.text_column: [f"a {'fine' if i % 2 else 'dull'} film {i + off} "
                                                                     for i in range(n)],
                           info.label_column: [i % 2 for i in range(n)]}
    DatasetDict({"train": Dataset.from_dict(rows(30, 0), features=feats),
                 "validation": Dataset.from_dict(rows(250, 100), features=feats)}).save_to_disk(str(path))
    return path


def test_review_verdicts_prompt_and_target():
    task = review_verdicts({"train": 4})
    ex = task["train"][0]
    assert task.prompt(ex) == f"review: {ex.text} | verdict:"
    assert task.target(ex) == " " + ("plus" if ex.label else "minus") + "\n"
    assert task.prompt("x") == "review: x | verdict:"
    with pytest.raises(ValueError, match="no split 'dev'"):
        task["dev"]


def test_sst2_from_a_local_copy(tmp_path, monkeypatch):
    path = _sst2_standin(tmp_path / "sst2")
    task = sst2(max_train=10, path=str(path))
    assert task.label_words == ("negative", "positive")
    # validation: the copy's whole validation split; test: the first 1/10 of train (3 of 30), held out of train
    assert len(task["train"]) == 10 and len(task["validation"]) == 250 and len(task["test"]) == 3
    assert task["test"][1] == Example("a fine film 1", 1), "text stripped, label kept"
    assert task["train"][0] == Example("a fine film 3", 1)
    assert not {e.text for e in task["test"]} & {e.text for e in task["train"]}
    whole = sst2(path=str(path))
    assert len(whole["train"]) == 27 and whole["test"] == task["test"] and whole["train"][:10] == task["train"]


def test_the_gpu_runtime_uses_sst2(tmp_path, monkeypatch):
    path = _sst2_standin(tmp_path / "sst2")
    monkeypatch.setenv("COURSE_SST2_PATH", str(path))
    gpu_like = type("Runtime", (), {"is_gpu": True})()  # the GPU runtime itself needs CUDA
    assert downstream_task(gpu_like).name == "sst2"
    assert downstream_task(select_runtime("embedded")).name == "review verdicts"


def test_sst2_offline_without_a_copy_says_what_to_do(monkeypatch):
    from course_lib.errors import HubUnavailableError

    monkeypatch.delenv("COURSE_SST2_PATH", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="COURSE_SST2_PATH"):
        sst2()


def test_a_copy_with_other_columns_is_rejected(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_dict({"text": ["x"], "label": [0]}),
                 "validation": Dataset.from_dict({"text": ["x"], "label": [0]})}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(ValueError, match="lacks the column"):
        sst2(path=str(tmp_path / "d"))


def test_a_few_training_rows_stream_from_the_hub(monkeypatch):
    """downstream_task(gpu, max_train=8) reads 1821 + 8 train rows by streaming, not the whole dataset."""
    import datasets

    from course_lib import runtime as rt_module

    calls, read = [], [0]

    def rows():
        for i in range(100_000):
            read[0] += 1
            yield {"sentence": f"film {i} ", "label": i % 2}

    def fake_load(hub_id, config=None, split=None, streaming=False):
        calls.append((hub_id, split, streaming))
        assert streaming, "a prefix must be streamed"
        return rows() if split == "train" else iter([{"sentence": "ok ", "label": 1}] * 872)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(rt_module, "hub_reachable", lambda *a, **k: True)
    monkeypatch.delenv("COURSE_SST2_PATH", raising=False)
    gpu_like = type("Runtime", (), {"is_gpu": True})()
    task = downstream_task(gpu_like, max_train=8)
    assert [c[1] for c in calls] == ["train", "validation"]
    assert len(task["train"]) == 8 and len(task["test"]) == 1821 and len(task["validation"]) == 872
    assert read[0] <= 1821 + 8 + 1 and task["train"][0].text == "film 1821"


def test_the_contrarian_task_swaps_the_label_words_of_the_same_reviews():
    from course_lib.tasks import contrarian_task

    task = review_verdicts({"train": 20, "validation": 4, "test": 4, "test_unseen": 4})
    other = contrarian_task(task)
    ex = task["train"][0]
    assert other["train"] is task["train"] and other.prompt(ex) == task.prompt(ex)
    assert other.target(ex) != task.target(ex) and other.target(ex).strip() == task.label_words[1 - ex.label]


def test_a_mixture_tags_each_row_with_its_task_and_alternates_them():
    import torch

    from course_lib.errors import ConfigError
    from course_lib.tasks import TaskMixture, contrarian_task

    task = review_verdicts({"train": 20, "validation": 4, "test": 4, "test_unseen": 4})
    mixture = TaskMixture((task, contrarian_task(task)))
    rows = mixture["train"]
    assert len(rows) == 40 and [r.task_id for r in rows[:4]] == [0, 1, 0, 1]
    assert rows[0].example == rows[1].example == task["train"][0]
    assert mixture.target(rows[0]) != mixture.target(rows[1]) and mixture.prompt(rows[0]) == mixture.prompt(rows[1])
    assert torch.equal(mixture.forward_kwargs(rows[:3])["task_ids"], torch.tensor([0, 1, 0]))
    with pytest.raises(ConfigError, match="two or more"):
        TaskMixture((task,))
    with pytest.raises(ConfigError, match="no split"):
        mixture["validation"]


def test_sentiment_items_label_every_review_by_its_polarity_and_repeat_per_seed():
    from course_lib.embedded import corpus

    items = sentiment_items(5, ("pos", "neg"), k=3, seed=4)
    assert len(items) == 5 and all(len(demos) == 3 for demos, _ in items)
    polarity = {w: True for w in corpus.POSITIVE} | {w: False for w in corpus.NEGATIVE}
    for demos, query in items:
        for text, label in demos + [query]:
            assert label == ("pos" if polarity[text.split()[-1]] else "neg"), (text, label)   # the adjective ends it
    assert sentiment_items(5, ("pos", "neg"), k=3, seed=4) == items
    assert sentiment_items(5, ("pos", "neg"), k=3, seed=5) != items
    assert sentiment_items(0, ("a", "b")) == []


@pytest.mark.parametrize("labels, n, k", [(("pos",), 2, 4), (("pos", ""), 2, 4), (("a", "b"), -1, 4), (("a", "b"), 2, -1)])
def test_sentiment_items_refuse_bad_arguments(labels, n, k):
    with pytest.raises(ConfigError):
        sentiment_items(n, labels, k=k)

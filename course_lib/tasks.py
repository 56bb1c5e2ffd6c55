"""The downstream task that lectures 03-08 fine-tune on.

Embedded runtime: **review verdicts**, a sentiment task in a format that pretraining never shows::

    review: the soup was really tasty | verdict: plus
    review: the staff seemed rude | verdict: minus

The label words ``plus``/``minus`` never occur as labels in the pretraining corpus, so the
untrained model is at chance; the pretrained model knows the adjectives' polarity from its corpus,
so it adapts in a few dozen steps, while a randomly initialised model must learn everything.
Splits: ``train``, ``validation`` and ``test`` draw from 70% of the adjectives, with disjoint
seeds; ``test_unseen`` uses the other 30% of adjectives (their polarity was only ever seen in
pretraining), so transfer from pretraining is measurable.

GPU runtime: SST-2 from the hub (``registry.DATASETS["sst2"]``) in the same prompt format with the
label words ``negative``/``positive``. ``validation`` is SST-2's validation split; ``test`` is held out of
SST-2's train split (the hub's test labels are hidden); see :func:`sst2`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from .embedded import corpus


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # index into the task's label_words


@dataclass
class ClassificationTask:
    """A text classification task posed to a causal LM as ``template`` + label word."""

    name: str
    label_words: tuple[str, ...]
    template: str = "review: {text} | verdict:"
    splits: dict[str, list[Example]] = field(default_factory=dict)

    def prompt(self, example: Example | str) -> str:
        """The context the model sees (no trailing space; the label word follows a space)."""
        text = example.text if isinstance(example, Example) else example
        return self.template.format(text=text)

    def target(self, example: Example) -> str:
        """What the model should produce after the prompt: a space, the label word, a newline."""
        return " " + self.label_words[example.label] + "\n"

    def __getitem__(self, split: str) -> list[Example]:
        if split not in self.splits:
            from .errors import ConfigError
            raise ConfigError(f"the task {self.name!r} has no split {split!r}.", f"use one of {sorted(self.splits)}.")
        return self.splits[split]


LABEL_WORDS = ("minus", "plus")  # label 0 = negative, 1 = positive


def sentiment_items(n: int, labels, *, k: int = 4, seed: int = 0) -> list[tuple[list[tuple[str, str]], tuple[str, str]]]:
    """``n`` in-context sentiment items: ``k`` labelled demonstrations and one query each.

    Every item is ``(demos, (text, label))`` with ``demos`` a list of ``k`` ``(text, label)`` pairs, all
    reviews drawn with one ``random.Random(seed)`` (``k + 1`` per item, in order) and labelled
    ``labels[0]`` if positive, ``labels[1]`` if negative. The format of ``prompting.build_prompt``'s
    examples, so ``build_prompt(query[0], demos)`` is the item's prompt.
    """
    from .errors import ConfigError

    labels = tuple(labels)
    if len(labels) != 2 or not all(isinstance(w, str) and w for w in labels):
        raise ConfigError(f"labels must be two words (positive, negative), got {labels!r}.",
                          'pass e.g. labels=("pos", "neg").')
    if n < 0 or k < 0:
        raise ConfigError(f"n and k must be >= 0, got n={n}, k={k}.", "pass the number of items and of demonstrations.")
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        reviews = [(text, labels[0] if positive else labels[1])
                   for text, positive in (corpus.sentiment_sentence(rng) for _ in range(k + 1))]
        items.append((reviews[:k], reviews[k]))
    return items


def _adjective_split(words: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    w = list(words)
    random.Random(7).shuffle(w)
    k = int(0.7 * len(w))
    return tuple(w[:k]), tuple(w[k:])


def review_verdicts(sizes: dict[str, int] | None = None) -> ClassificationTask:
    """The embedded downstream task (deterministic)."""
    sizes = {"train": 2000, "validation": 200, "test": 400, "test_unseen": 400, **(sizes or {})}
    (pos_seen, pos_unseen), (neg_seen, neg_unseen) = _adjective_split(corpus.POSITIVE), _adjective_split(corpus.NEGATIVE)
    seeds = {"train": 11, "validation": 12, "test": 13, "test_unseen": 14}
    splits = {}
    for split, n in sizes.items():
        rng = random.Random(seeds[split])
        adjectives = (pos_unseen, neg_unseen) if split == "test_unseen" else (pos_seen, neg_seen)
        splits[split] = [Example(text, int(pos)) for text, pos in
                         (corpus.sentiment_sentence(rng, adjectives=adjectives) for _ in range(n))]
    return ClassificationTask("review verdicts", LABEL_WORDS, splits=splits)


#: SST-2's test labels are hidden on the hub (``-1``), so the course holds out this many labelled training rows
#: (the size of the hub's test split) as its ``test`` split; 1/10 of the rows for a smaller local copy.
SST2_HELDOUT = 1821


def _sst2_rows(info, path: str | None, max_train: int | None) -> tuple[list[dict], list[dict], int]:
    """(train rows, validation rows, number of held-out rows at the start of train) of SST-2: from a local
    copy, or streamed from the hub when a prefix of train is enough (nothing beyond the rows read is
    downloaded), or loaded whole."""
    from datasets import load_dataset, load_from_disk

    if path:
        ds = load_from_disk(path)
        missing = [c for c in (info.text_column, info.label_column) if c not in ds["train"].column_names]
        if missing:
            from .errors import ConfigError
            raise ConfigError(f"the SST-2 copy lacks the column(s) {missing} (it has {ds['train'].column_names}).",
                              f"save a dataset with the hub's columns {info.text_column!r} and {info.label_column!r}.")
        train, held = ds["train"], _heldout(len(ds["train"]))
        if max_train:
            train = train.select(range(min(len(train), held + max_train)))
        return list(train), list(ds["validation"]), held
    if max_train:
        import itertools

        stream = load_dataset(info.hub_id, info.config, split="train", streaming=True)
        train = list(itertools.islice(stream, SST2_HELDOUT + max_train))
        return train, list(load_dataset(info.hub_id, info.config, split="validation", streaming=True)), SST2_HELDOUT
    ds = load_dataset(info.hub_id, info.config)
    return list(ds["train"]), list(ds["validation"]), _heldout(len(ds["train"]))


def _heldout(n_train_rows: int) -> int:
    return min(SST2_HELDOUT, n_train_rows // 10)


def sst2(max_train: int | None = None, *, path: str | None = None) -> ClassificationTask:
    """SST-2 (GPU runtime) from the hub (``registry.DATASETS["sst2"]``), or from ``path`` (or
    ``$COURSE_SST2_PATH``), a ``save_to_disk`` copy with the hub's splits and the columns ``sentence`` and ``label``.
    Offline without a copy -> :class:`~course_lib.errors.HubUnavailableError`.

    Splits: ``validation`` is SST-2's labelled validation split (872 sentences); ``test`` is the first
    :data:`SST2_HELDOUT` rows of SST-2's train split, held out (the hub's test labels are hidden); ``train`` is
    the rest of train (its first ``max_train`` rows if given: then only those rows are read from the hub, by
    streaming, not the whole dataset).
    """
    import os

    from .errors import HubUnavailableError, require
    from .registry import DATASETS
    from .runtime import hub_reachable

    require("datasets", "loading SST-2")
    info = DATASETS["sst2"]
    path = path or os.environ.get("COURSE_SST2_PATH")
    if not path and not hub_reachable():
        raise HubUnavailableError(
            f"SST-2 ({info.hub_id}) needs the Hugging Face hub, which cannot be reached.",
            "use the embedded runtime (COURSE_RUNTIME=embedded: the review-verdicts task instead), or save a copy "
            "with datasets' save_to_disk and set COURSE_SST2_PATH to it.")
    train_rows, val_rows, held = _sst2_rows(info, path, max_train)

    def conv(rows):
        return [Example(r[info.text_column].strip(), int(r[info.label_column])) for r in rows]

    train = conv(train_rows[held:])
    splits = {"train": train[:max_train] if max_train else train, "validation": conv(val_rows),
              "test": conv(train_rows[:held])}
    return ClassificationTask("sst2", info.label_names, splits=splits)


def downstream_task(runtime=None, max_train: int | None = None) -> ClassificationTask:
    """The task of the active runtime: review verdicts (embedded) or SST-2 (gpu).

    ``max_train`` keeps only the first training examples (on the GPU runtime only those are read from the hub).
    """
    from .runtime import get_runtime

    rt = runtime or get_runtime()
    if rt.is_gpu:
        return sst2(max_train)
    task = review_verdicts()
    if max_train:
        task.splits["train"] = task.splits["train"][:max_train]
    return task


def contrarian_task(task: ClassificationTask) -> ClassificationTask:
    """The same inputs with the label words swapped (``plus`` for a negative review): a second task that the
    input alone cannot tell from ``task``, so a model serving both must be told which one a row belongs to."""
    return ClassificationTask("contrarian " + task.name, tuple(reversed(task.label_words)), task.template, task.splits)


@dataclass(frozen=True)
class TaskRow:
    """One example of a :class:`TaskMixture`: ``task_id`` indexes the mixture's tasks."""

    task_id: int
    example: Example


@dataclass
class TaskMixture:
    """Several tasks as one training set, each row tagged with its task id (multitask prompt tuning,
    Wang et al. 2023). Rows alternate between the tasks, so a sample of a split is balanced on average.

    ``prompt``/``target`` delegate to the row's task, so :func:`course_lib.training.encode_examples` and
    :func:`course_lib.training.train` read it like one task; :meth:`forward_kwargs` gives the rows'
    ``task_ids`` (shape ``(batch,)``) that peft's ``MultitaskPromptTuning`` model needs on every call. Only
    ``train`` is kept: accuracy is per task (bind the task id with
    :class:`course_lib.methods.prompt_tuning.TaskIdModel`).
    """

    tasks: tuple[ClassificationTask, ...]
    name: str = "task mixture"
    splits: dict[str, list[TaskRow]] = field(default_factory=dict)

    def __post_init__(self):
        from .errors import ConfigError

        self.tasks = tuple(self.tasks)
        if len(self.tasks) < 2 or not all(isinstance(t, ClassificationTask) for t in self.tasks):
            raise ConfigError(f"a TaskMixture needs two or more ClassificationTasks, got {len(self.tasks)}.",
                              "pass e.g. TaskMixture((task, contrarian_task(task))).")
        if not self.splits:
            per_task = [t["train"] for t in self.tasks]
            self.splits = {"train": [TaskRow(k, rows[i]) for i in range(min(map(len, per_task)))
                                     for k, rows in enumerate(per_task)]}

    def prompt(self, row: TaskRow) -> str:
        return self.tasks[row.task_id].prompt(row.example)

    def target(self, row: TaskRow) -> str:
        return self.tasks[row.task_id].target(row.example)

    def forward_kwargs(self, rows: list[TaskRow]) -> dict:
        """``{"task_ids": (batch,) long tensor}`` for a batch of ``rows``."""
        import torch

        return {"task_ids": torch.tensor([row.task_id for row in rows], dtype=torch.long)}

    __getitem__ = ClassificationTask.__getitem__

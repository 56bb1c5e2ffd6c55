"""Instruction tuning with several templates per task (FLAN-style), against plain prompting.

Instruction tuning (Wei et al. 2022, "Finetuned Language Models Are Zero-Shot Learners", FLAN,
arXiv:2109.01652; Sanh et al. 2022, T0, arXiv:2110.08207) fine-tunes a language model on a
*mixture* of tasks, each phrased as natural-language instructions in many wordings, so that the
model learns to follow an instruction rather than to continue a format. FLAN writes about ten
templates per task (Wei et al. §2.1, Fig. 4) and reports, at test time, the accuracy averaged over
the templates of a task; it evaluates on task clusters held out of the mixture.

The miniature here uses the synthetic tasks of the embedded corpus (:mod:`course_lib.embedded.corpus`):
the word transforms of lecture 01, sentiment, addition and the made-up dictionary. Each task
(:data:`TASKS`) has ``K`` instruction phrasings; template ``i`` of a task puts its phrasing ``i`` into
layout ``i`` of :data:`LAYOUTS`, so two templates differ in wording *and* layout::

    layout 1:  "Please {instruction}: {input}\\nAnswer: {output}"
    reverse:   "Please write the word backwards: plant\\nAnswer: tnalp"

A template is a :class:`course_lib.prompting.PromptTemplate`, so the prompts of plain prompting
(zero-shot, or k demonstrations in the same template) come from :mod:`course_lib.prompting`.

:func:`mixture` splits the tasks into **training tasks** and **held-out tasks** (never seen in
tuning) and, for every training task, its templates into **training templates** and **held-out
templates** (a seeded shuffle per task). :class:`InstructionMixture` then builds

* the tuning data (:meth:`InstructionMixture.training_pairs`): ``(prompt, target)`` pairs for
  :class:`course_lib.training.TextPairs`, each example in one of the task's training templates
  (``templates="all"``, instruction tuning) or always in the same one (``templates="one"``: fine-tuning
  on one wording per task, the baseline FLAN's ablation of templates compares with);
* the evaluation items (:meth:`InstructionMixture.eval_items`): the held-out templates of the training
  tasks, or every template of the held-out tasks, on inputs the tuning data never uses (held-out words
  of the corpus for the transforms, a different seed elsewhere).

:func:`compare` runs the experiment of lecture 01, section 10: the untuned model prompted (zero-shot
and k-shot), fine-tuned on one template per training task, and instruction-tuned on all training
templates, each tuned condition over several seeds, all scored by exact match of the generated line.

Every function is deterministic for its seed; importing this module does no work.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import prompting
from .embedded import corpus
from .errors import ConfigError

Pair = tuple[str, str]

#: Layouts of the templates: template ``i`` of every task uses layout ``i`` with the task's phrasing ``i``.
LAYOUTS = (
    "Task: {instruction}.\n{line}",
    "Please {instruction}.\n{line}",
    "Instruction: {instruction}\n{line}",
    "{instruction}:\n{line}",
    "Q: can you {instruction}?\n{line}",
    "You will {instruction}.\n{line}",
    "# {instruction}\n{line}",
    "Now {instruction}!\n{line}",
    "({instruction}) {line}",
    "{instruction}; {line}",
)


@dataclass(frozen=True)
class InstructionTask:
    """One task of the mixture: ``phrasings`` (one instruction per layout) and ``make(rng, split)``,
    which returns one ``(input, output)`` pair; ``split`` is ``"train"`` (tuning data) or ``"eval"``."""

    name: str
    phrasings: tuple[str, ...]
    make: Callable[[random.Random, str], Pair]
    line: str = "{input} => {output}"

    def templates(self) -> list[prompting.PromptTemplate]:
        """The task's ``K`` templates: phrasing ``i`` in layout ``i`` (``{input}``/``{output}`` left open)."""
        return [prompting.PromptTemplate(layout.replace("{instruction}", phrase).replace("{line}", self.line))
                for layout, phrase in zip(LAYOUTS, self.phrasings)]


def _word_task(transform: str) -> Callable[[random.Random, str], Pair]:
    def make(rng: random.Random, split: str) -> Pair:
        words = corpus.train_words() if split == "train" else corpus.heldout_words()
        return corpus.transform_example(transform, rng.choice(words), rng)
    return make


def _sentiment(rng: random.Random, split: str) -> Pair:
    text, positive = corpus.sentiment_sentence(rng)
    return text, "positive" if positive else "negative"


def _addition(rng: random.Random, split: str) -> Pair:
    a, b = corpus.random_number(rng, rng.choice((1, 2))), corpus.random_number(rng, rng.choice((1, 2)))
    return f"{a}+{b}", str(a + b)


def _dictionary(rng: random.Random, split: str) -> Pair:
    dictionary = corpus.made_up_dictionary()
    words = sorted(dictionary)                      # the tuning data and the evaluation use different halves
    word = rng.choice(words[: len(words) // 2] if split == "train" else words[len(words) // 2:])
    return word, dictionary[word]


#: The tasks, each with one instruction phrasing per layout of :data:`LAYOUTS`.
TASKS: dict[str, InstructionTask] = {t.name: t for t in (
    InstructionTask("reverse", (
        "reverse the word", "write the word backwards", "spell it from the end", "turn the word around",
        "read it right to left", "give the word in reverse", "flip the letters", "mirror the word",
        "write it back to front", "reverse its letters"), _word_task("reverse")),
    InstructionTask("uppercase", (
        "write the word in capitals", "uppercase the word", "use upper case", "make all letters capitals",
        "use block letters", "shout the word", "capitalise it", "write it in all caps", "use big letters",
        "give the word in upper case"), _word_task("uppercase")),
    InstructionTask("first letter", (
        "give the first letter", "write the word's first letter", "say which letter it starts with",
        "keep only the first letter", "give the initial", "write the opening letter", "first letter only",
        "give its first letter", "name the letter it begins with", "return the first letter"),
        _word_task("first letter")),
    InstructionTask("last letter", (
        "give the last letter", "write the word's last letter", "say which letter it ends with",
        "keep only the last letter", "give the final letter", "write the closing letter", "last letter only",
        "give its last letter", "name the letter it finishes with", "return the last letter"),
        _word_task("last letter")),
    InstructionTask("double", (
        "double every letter", "write each letter twice", "repeat each letter", "say every letter two times",
        "double the letters", "duplicate each letter", "give each letter twice", "write two of each letter",
        "double it", "repeat every letter once more"), _word_task("double")),
    InstructionTask("cycle", (
        "move the first letter to the end", "put the first letter last", "rotate the word by one letter",
        "shift the first letter to the back", "cycle the letters", "send the initial to the end",
        "rotate it once", "move its first letter last", "cycle the word by one", "take the first letter to the end"),
        _word_task("cycle")),
    InstructionTask("clean", (
        "remove the symbols", "delete the punctuation", "clean up the word", "strip the symbols",
        "drop the marks", "remove every symbol", "give the word without symbols", "clean it",
        "take out the punctuation", "keep only the letters"), _word_task("clean")),
    InstructionTask("sentiment", (
        "say if the review is positive or negative", "classify the sentiment", "tell the mood of the review",
        "rate the review", "give the sentiment", "judge the opinion", "answer positive or negative",
        "label the review's sentiment", "is the review positive or negative", "decide the polarity"), _sentiment),
    InstructionTask("addition", (
        "add the numbers", "compute the sum", "work out the total", "give the sum", "add them up",
        "calculate the result", "find the sum", "add these two", "sum the numbers", "tell me the total"),
        _addition, "Q: {input} A: {output}"),
    InstructionTask("dictionary", (
        "translate into the made-up language", "give the made-up word", "translate the word",
        "say it in the invented language", "give the translation", "find its made-up word",
        "translate it", "write the word in the made-up language", "give the word's translation",
        "translate this"), _dictionary, "en: {input} fr: {output}"),
)}

#: How many templates every task has (FLAN: about ten).
K = len(LAYOUTS)
#: The split lecture 01 uses: five word transforms and sentiment tuned; "last letter" held out (its
#: instructions differ from those of "first letter" by one word, so following them means reading them).
DEFAULT_TRAIN_TASKS = ("reverse", "uppercase", "first letter", "double", "cycle", "sentiment")
DEFAULT_HELDOUT_TASKS = ("last letter",)


def get_task(name: str) -> InstructionTask:
    """The task called ``name`` in :data:`TASKS`; a :class:`ConfigError` naming the tasks otherwise."""
    if not isinstance(name, str) or name not in TASKS:
        raise ConfigError(f"unknown instruction task {name!r}.", f"use one of {sorted(TASKS)}.")
    return TASKS[name]


def _task_seed(seed: int, *parts) -> str:
    return "-".join(map(str, (seed, *parts)))


@dataclass(frozen=True)
class InstructionMixture:
    """Training tasks with their training and held-out template indices, and the held-out tasks.

    Built by :func:`mixture`; ``train_templates[task]`` and ``heldout_templates[task]`` are disjoint
    and together are ``range(K)``; a held-out task's every template is an evaluation template.
    """

    train_tasks: tuple[str, ...]
    heldout_tasks: tuple[str, ...]
    train_templates: dict[str, tuple[int, ...]] = field(hash=False)
    heldout_templates: dict[str, tuple[int, ...]] = field(hash=False)
    seed: int = 0

    def template(self, task: str, index: int) -> prompting.PromptTemplate:
        """Template ``index`` (0..K-1) of ``task``."""
        return get_task(task).templates()[index]

    def items(self, task: str, n: int, split: str, seed: int = 0) -> list[Pair]:
        """``n`` ``(input, output)`` pairs of ``task`` from the ``"train"`` or ``"eval"`` inputs (seeded)."""
        _check_count(n, "items per task")
        if split not in ("train", "eval"):
            raise ConfigError(f"split={split!r}: items come from 'train' or 'eval' inputs.",
                              "use split='train' for tuning data, split='eval' for evaluation.")
        rng = random.Random(_task_seed(seed, "items", task, split))
        make = get_task(task).make
        return [make(rng, split) for _ in range(n)]

    def one_template(self, task: str, seed: int = 0) -> int:
        """The single training template of ``task`` that ``templates="one"`` uses with ``seed``."""
        return random.Random(_task_seed(seed, "one", task)).choice(self.train_templates[task])

    def training_pairs(self, n_per_task: int, *, templates: str = "all", seed: int = 0) -> list[Pair]:
        """Tuning data: ``n_per_task`` examples of every training task as ``(prompt, output + "\\n")``.

        ``templates="all"``: each example in a training template drawn at random (instruction tuning);
        ``"one"``: every example of a task in :meth:`one_template` (one wording per task). Both draw the same
        inputs for the same seed, so the two conditions differ only in the wording. Shuffled, seeded.
        """
        if templates not in ("all", "one"):
            raise ConfigError(f"templates={templates!r}: tuning uses 'all' training templates or 'one' per task.",
                              "pass templates='all' (instruction tuning) or templates='one' (one wording per task).")
        wording = random.Random(_task_seed(seed, "wording"))
        pairs = []
        for task in self.train_tasks:
            one = self.one_template(task, seed)
            for x, y in self.items(task, n_per_task, "train", seed):
                index = one if templates == "one" else wording.choice(self.train_templates[task])
                pairs.append((self.template(task, index).query(x), y + "\n"))
        order = list(range(len(pairs)))         # the same order for "one" and "all"
        random.Random(_task_seed(seed, "order")).shuffle(order)
        return [pairs[i] for i in order]

    def eval_cells(self, which: str) -> list[tuple[str, int]]:
        """The ``(task, template index)`` cells of an evaluation set: ``"held-out templates"`` (of the
        training tasks), ``"held-out tasks"`` (every template) or ``"training templates"``."""
        if which == "held-out templates":
            return [(t, i) for t in self.train_tasks for i in self.heldout_templates[t]]
        if which == "held-out tasks":
            return [(t, i) for t in self.heldout_tasks for i in range(K)]
        if which == "training templates":
            return [(t, i) for t in self.train_tasks for i in self.train_templates[t]]
        raise ConfigError(f"unknown evaluation set {which!r}.", f"use one of {list(EVAL_SETS)}.")

    def eval_items(self, which: str, n: int, *, k: int = 0, seed: int = 0
                   ) -> tuple[list[str], list[str], list[tuple[str, int]]]:
        """Prompts, targets and the ``(task, template)`` cell of each, ``n`` items per cell of ``which``.

        ``k`` demonstrations (evaluation inputs of the same task, never the query) precede each query in
        the same template (:func:`course_lib.prompting.build_prompt`): plain few-shot prompting.
        The queries are the same for every ``k`` and every template of a task.
        """
        _check_count(n, "evaluation items per template")
        prompts, targets, cells = [], [], []
        for task, index in self.eval_cells(which):
            template = self.template(task, index)
            pool = self.items(task, n + max(k, 1) * 8, "eval", seed)
            shot_seeds = random.Random(_task_seed(seed, "shots", task, index))
            for x, y in pool[:n]:
                shots = prompting.select_examples(pool[n:], k, seed=shot_seeds.randrange(2 ** 31), exclude=x)
                prompts.append(prompting.build_prompt(x, shots, template))
                targets.append(y)
                cells.append((task, index))
        return prompts, targets, cells


#: The evaluation sets of :meth:`InstructionMixture.eval_cells`.
EVAL_SETS = ("held-out templates", "held-out tasks", "training templates")


def _check_count(n, what: str) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{what} = {n!r}: it must be a positive integer.", "use e.g. 8 for a quick look, 50+ to report.")


def mixture(train_tasks: Sequence[str] = DEFAULT_TRAIN_TASKS, heldout_tasks: Sequence[str] = DEFAULT_HELDOUT_TASKS,
            *, heldout_templates: int = 3, seed: int = 0) -> InstructionMixture:
    """Split tasks and templates for instruction tuning (deterministic for ``seed``).

    Every training task keeps ``K - heldout_templates`` templates for tuning and holds out
    ``heldout_templates`` (chosen by a seeded shuffle per task); the held-out tasks are never tuned on.
    Raises :class:`ConfigError` for an unknown task, a task on both sides, no training task, or a number
    of held-out templates that leaves no template on one side.
    """
    train_tasks, heldout_tasks = tuple(train_tasks), tuple(heldout_tasks)
    for name in train_tasks + heldout_tasks:
        get_task(name)
    if not train_tasks:
        raise ConfigError("no training task: instruction tuning needs at least one task to tune on.",
                          f"pass train_tasks, e.g. {DEFAULT_TRAIN_TASKS}.")
    both = sorted(set(train_tasks) & set(heldout_tasks))
    if both:
        raise ConfigError(f"the tasks {both} are both tuned on and held out, so the held-out result would not "
                          "be about unseen tasks.", "list each task in train_tasks or in heldout_tasks, not both.")
    if len(set(train_tasks + heldout_tasks)) != len(train_tasks + heldout_tasks):
        raise ConfigError("a task is listed twice.", "list every task once.")
    if not isinstance(heldout_templates, int) or not 1 <= heldout_templates <= K - 1:
        raise ConfigError(f"heldout_templates={heldout_templates!r}: each task has {K} templates, and both the "
                          "tuning and the evaluation need at least one.", f"use 1 <= heldout_templates <= {K - 1}.")
    train_idx, heldout_idx = {}, {}
    for task in train_tasks:
        order = list(range(K))
        random.Random(_task_seed(seed, "templates", task)).shuffle(order)
        heldout_idx[task] = tuple(sorted(order[:heldout_templates]))
        train_idx[task] = tuple(sorted(order[heldout_templates:]))
    return InstructionMixture(train_tasks, heldout_tasks, train_idx, heldout_idx, seed)


# ----------------------------------------------------------------------------- the experiment
#: The conditions of :func:`compare`, in the order they are plotted (``{k}`` is the number of demonstrations).
CONDITIONS = ("prompted, zero-shot", "prompted, {k}-shot", "tuned on one template per task",
              "instruction-tuned, all templates")


def compare(model, tokenizer, mix: InstructionMixture, *, seeds: Sequence[int] = (0, 1, 2), steps: int = 60,
            batch_size: int = 8, lr: float = 1e-3, train_per_task: int = 200, n: int = 8, k: int = 2,
            eval_sets: Sequence[str] = ("held-out templates", "held-out tasks"), max_new_tokens: int = 16,
            progress: bool = True) -> dict:
    """Plain prompting against tuning on one template per task against instruction tuning on all of them.

    * ``"prompted, zero-shot"`` and ``"prompted, k-shot"``: ``model`` itself, untouched, the query alone or
      after ``k`` demonstrations in the same template. Greedy decoding depends on no seed, so each has one
      value (the demonstrations are drawn with seed 0).
    * ``"tuned on one template per task"`` and ``"instruction-tuned, all templates"``: for every seed, a
      float32 copy of ``model`` fully fine-tuned (:func:`course_lib.training.train`, AdamW, ``steps`` steps of
      ``batch_size``) on :meth:`InstructionMixture.training_pairs` with ``templates="one"`` or ``"all"``:
      the same inputs in the same order, only the wording differs. One copy in memory at a time.

    Every condition is scored on the same items (:meth:`InstructionMixture.eval_items`, ``n`` per
    ``(task, template)`` cell, exact match of the generated line), so an evaluation set's accuracy is the
    mean over its templates, as FLAN reports it. Returns ``{"accuracy": {condition: {eval set: [one
    accuracy per seed]}}, "per_cell": {condition: {eval set: {"task #i": mean over seeds}}}, "seeds",
    "n_per_cell", "steps", "batch_size", "lr", "k", "train_seconds"}``.
    """
    from tqdm.auto import tqdm

    from . import training

    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={seeds!r}: the tuned conditions need one or more distinct seeds.",
                          "pass e.g. seeds=(0, 1, 2); three or more give a spread to compare.")
    _check_count(steps, "training steps")
    for which in eval_sets:
        mix.eval_cells(which)                     # an unknown evaluation set fails before any training
    names = [c.format(k=k) for c in CONDITIONS]
    items = {(which, kk): mix.eval_items(which, n, k=kk) for which in eval_sets for kk in (0, k)}
    accuracy = {c: {which: [] for which in eval_sets} for c in names}
    cells: dict = {c: {which: {} for which in eval_sets} for c in names}

    def score(m, condition: str, shots: int) -> None:
        for which in eval_sets:
            prompts, targets, where = items[(which, shots)]
            res = prompting.evaluate(m, tokenizer, prompts, targets, max_new_tokens=max_new_tokens, progress=False)
            accuracy[condition][which].append(res["accuracy"])
            for ok, (task, index) in zip(res["correct"], where):
                cells[condition][which].setdefault(f"{task} #{index}", []).append(ok)

    runs = 1 + 2 * len(seeds)
    bar = tqdm(total=runs, desc="instruction tuning", unit="model", disable=not progress)
    score(model, names[0], 0)
    score(model, names[1], k)
    bar.update(1)
    train_seconds = 0.0
    for seed in seeds:
        for condition, templates in ((names[2], "one"), (names[3], "all")):
            bar.set_postfix_str(f"{templates} template{'s' if templates == 'all' else ''}, seed {seed}")
            tuned = copy.deepcopy(model).float()   # fp32 for training (a GPU runtime loads the model in 16 bits)
            data = training.TextPairs(mix.training_pairs(train_per_task, templates=templates, seed=seed),
                                      name=f"instructions ({templates})")
            run = training.train(tuned, tokenizer, data, training.TrainConfig(steps=steps, batch_size=batch_size,
                                                                              lr=lr, seed=seed), progress=False)
            train_seconds += run.seconds
            score(tuned, condition, 0)
            del tuned
            bar.update(1)
    bar.close()
    per_cell = {c: {which: {cell: sum(v) / len(v) for cell, v in by.items()} for which, by in sets.items()}
                for c, sets in cells.items()}
    return {"accuracy": accuracy, "per_cell": per_cell, "conditions": names, "eval_sets": list(eval_sets),
            "seeds": seeds, "n_per_cell": n, "steps": steps, "batch_size": batch_size, "lr": lr, "k": k,
            "train_seconds": train_seconds}

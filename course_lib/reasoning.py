"""Chain-of-thought prompting: few-shot CoT, two-stage zero-shot CoT, answer extraction, self-consistency.

This is the library of lecture 02. Like :mod:`course_lib.prompting`, nothing here changes a
parameter: every function only builds text, calls a *generate function* and reads its output.
A generate function is any callable ``generate(prompts: list[str]) -> list[str]`` that returns one
continuation per prompt (:func:`greedy` and :func:`sampler` make one from a model; a test can pass a
stub).

Prompt layout (:class:`CoTFormat`, the embedded model's corpus format by default)::

    demonstration (CoT)    Q: 347+285 S: 7+5+0=12,2 4+8+1=13,32 3+2+1=06,632 A: 632
    demonstration (direct) Q: 347+285 A: 632
    query (CoT)            Q: 51+78 S:          <- the model writes the reasoning, then "A: <answer>"
    query (direct)         Q: 51+78 A:          <- the model writes the answer at once

Demonstrations are joined by ``separator`` (a newline), the parts of one line by one space.
``S:`` plays the part of "Let's think step by step" (the *reasoning trigger*) and ``A:`` that of
"Therefore, the answer is" (the *answer trigger*). The GPU runtime's format (:data:`FORMATS`
``"gsm8k"``) uses those English sentences.

* Few-shot CoT (Wei et al. 2022): demonstrations of ⟨input, reasoning, answer⟩, then the query
  with the reasoning trigger (:func:`cot_prompt`); the model writes the reasoning and the answer.
* Zero-shot CoT in two stages (Kojima et al. 2022, :func:`two_stage_cot`). Stage 1: the question +
  reasoning trigger -> the reasoning ``z`` (cut before the answer trigger if the model writes
  it). Stage 2: question + reasoning trigger + ``z`` + answer trigger -> the answer.
* Answer extraction (:func:`extract_answer`), the rule the course uses everywhere:

  1. if the text contains the answer trigger, the answer is the FIRST number after its LAST
     occurrence (``None`` if no number follows it);
  2. otherwise the answer is the LAST number in the text;
  3. no number at all -> ``None``.

  A number is an optional minus sign (only when no digit stands right before it: ``5-3`` holds
  5 and 3), digits with optional thousands separators (``1,234`` -> 1234: a comma followed by
  exactly three digits, after a first group of 1-3 digits that does not start with 0), and an
  optional decimal part (``2.5``; a trailing full stop is punctuation). Integers come back as
  ``int``, decimals as ``float``. Scoring (:func:`is_correct`) is exact numeric equality.
* Self-consistency (Wang et al. 2023, :func:`majority_vote`): sample several chains, extract each
  answer, return the most frequent one. ``None`` votes are ignored; a tie goes to the tied answer
  that was reached first (the earliest in sampling order); no valid vote -> ``None``.

Why one module of this length: few-shot CoT, zero-shot CoT, answer extraction and self-consistency
share the formats (``FORMATS``) and the addition task; lecture 02 and exercise 02 import them together.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .errors import ConfigError, HubUnavailableError, from_table
from .prompting import generator

GenerateFn = Callable[[list[str]], list[str]]
Number = int | float


# ----------------------------------------------------------------------------- formats
@dataclass(frozen=True)
class CoTFormat:
    """How questions, reasoning and answers are written.

    ``question`` has one field ``{question}``; ``reasoning_trigger`` opens the reasoning,
    ``answer_trigger`` opens the final answer after it; ``direct_trigger`` opens the answer when
    there is no reasoning (defaults to ``answer_trigger``). ``separator`` joins demonstrations;
    ``stops`` are strings at which a continuation is cut (the start of a new question, say).
    """

    question: str = "Q: {question}"
    reasoning_trigger: str = "S:"
    answer_trigger: str = "A:"
    direct_trigger: str | None = None
    separator: str = "\n"
    stops: tuple[str, ...] = ()
    instruction: str | None = None

    def __post_init__(self):
        if "{question}" not in self.question:
            raise ConfigError(f"the question template {self.question!r} has no {{question}} field.",
                              "write it like 'Q: {question}'.")
        for name in ("reasoning_trigger", "answer_trigger"):
            if not getattr(self, name).strip():
                raise ConfigError(f"the {name.replace('_', ' ')} is empty, so the model gets no cue.",
                                  "use e.g. reasoning_trigger='S:' (\"Let's think step by step\") and "
                                  "answer_trigger='A:' (\"Therefore, the answer is\").")
        if self.answer_trigger in self.reasoning_trigger:
            raise ConfigError(f"the answer trigger {self.answer_trigger!r} occurs inside the reasoning trigger "
                              f"{self.reasoning_trigger!r}, so the answer could not be found after it.",
                              "choose two different triggers, e.g. 'S:' and 'A:'.")
        if not self.separator:
            raise ConfigError("the separator is empty, so demonstrations would run into each other.",
                              "use '\\n' (one demonstration per line).")

    @property
    def direct(self) -> str:
        return self.direct_trigger or self.answer_trigger


#: ``scratchpad``: the embedded corpus (``S:``/``A:``); ``gsm8k``: Kojima et al.'s wording for hub models.
FORMATS = {
    "scratchpad": CoTFormat(),
    "gsm8k": CoTFormat(reasoning_trigger="A: Let's think step by step.",
                       answer_trigger="Therefore, the answer (arabic numerals) is",
                       direct_trigger="A: The answer (arabic numerals) is", separator="\n\n",
                       stops=("\nQ:", "\n\n")),
}


def get_format(fmt: CoTFormat | str | None) -> CoTFormat:
    """A :class:`CoTFormat` from itself, a name in :data:`FORMATS`, or ``None`` (``scratchpad``)."""
    return from_table(fmt, FORMATS, CoTFormat, "scratchpad", "chain-of-thought format")


@dataclass(frozen=True)
class Demonstration:
    """One worked example: ⟨input, reasoning, answer⟩."""

    question: str
    reasoning: str
    answer: Number | str


@dataclass(frozen=True)
class Problem:
    """A question, its gold answer, and the demonstrations shown with it (may be empty)."""

    question: str
    answer: Number
    demos: tuple[Demonstration, ...] = field(default=(), compare=False)


# ----------------------------------------------------------------------------- prompts
def _line(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _check_demos(demos) -> list[Demonstration]:
    out = []
    for d in demos:
        if isinstance(d, Demonstration):
            out.append(d)
        elif isinstance(d, (tuple, list)) and len(d) == 3:
            out.append(Demonstration(*d))
        else:
            raise ConfigError(f"the demonstration {d!r} is not (question, reasoning, answer).",
                              "pass Demonstration(question, reasoning, answer) objects or 3-tuples.")
    return out


def format_demonstration(demo: Demonstration | tuple, fmt: CoTFormat | str | None = None, *, cot: bool = True) -> str:
    """One demonstration line.

    ``cot=True``: ``"Q: 347+285 S: 7+5+0=12,2 4+8+1=13,32 3+2+1=06,632 A: 632"``;
    ``cot=False`` (the reasoning left out): ``"Q: 347+285 A: 632"``.
    """
    f = get_format(fmt)
    (d,) = _check_demos([demo])
    q = f.question.format(question=d.question)
    if cot:
        return _line(q, f.reasoning_trigger, d.reasoning.strip(), f.answer_trigger, str(d.answer))
    return _line(q, f.direct, str(d.answer))


def _join(fmt: CoTFormat, lines: list[str]) -> str:
    head = [fmt.instruction] if fmt.instruction else []
    return fmt.separator.join(head + lines)


def cot_prompt(question: str, demos: Sequence = (), fmt: CoTFormat | str | None = None) -> str:
    """Few-shot (or, without demos, zero-shot) CoT prompt: CoT demonstrations, then the question and
    the reasoning trigger, no trailing space: ``"Q: 12+34 S: 2+4+0=06,6 1+3+0=04,46 A: 46\\nQ: 51+78 S:"``."""
    f = get_format(fmt)
    lines = [format_demonstration(d, f, cot=True) for d in _check_demos(demos)]
    return _join(f, lines + [_line(f.question.format(question=question), f.reasoning_trigger)])


def direct_prompt(question: str, demos: Sequence = (), fmt: CoTFormat | str | None = None) -> str:
    """Direct prompt: demonstrations without their reasoning, then the question and the answer
    trigger: ``"Q: 12+34 A: 46\\nQ: 51+78 A:"``."""
    f = get_format(fmt)
    lines = [format_demonstration(d, f, cot=False) for d in _check_demos(demos)]
    return _join(f, lines + [_line(f.question.format(question=question), f.direct)])


def cut(text: str, fmt: CoTFormat | str | None = None) -> str:
    """``text`` up to the first of ``fmt.stops`` (where a continuation starts a new question)."""
    f = get_format(fmt)
    for stop in f.stops:
        text = text.split(stop, 1)[0]
    return text


def cut_reasoning(text: str, fmt: CoTFormat | str | None = None) -> str:
    """Stage 1's output as reasoning: cut before the first answer trigger (and any stop), stripped."""
    f = get_format(fmt)
    return cut(text, f).split(f.answer_trigger, 1)[0].strip()


def answer_prompt(question: str, reasoning: str, demos: Sequence = (), fmt: CoTFormat | str | None = None) -> str:
    """Stage 2's prompt: the stage-1 prompt, the reasoning, the answer trigger:
    ``"Q: 51+78 S: 1+8+0=09,9 5+7+0=12,129 A:"``."""
    f = get_format(fmt)
    return _line(cot_prompt(question, demos, f), reasoning.strip(), f.answer_trigger)


# ----------------------------------------------------------------------------- answers
_NUMBER = re.compile(r"(?:(?<!\d)-)?(?:[1-9]\d{0,2}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def parse_number(token: str) -> Number:
    """``"-1,234"`` -> -1234, ``"2.50"`` -> 2.5 (one number as the extraction rule reads it)."""
    token = token.replace(",", "")
    value = float(token)
    return int(token) if re.fullmatch(r"-?\d+", token) else value


def find_numbers(text: str) -> list[Number]:
    """Every number in ``text``, in order, read by the module's number rule."""
    return [parse_number(m.group()) for m in _NUMBER.finditer(text)]


def extract_answer(text: str | None, answer_trigger: str | None = "A:") -> Number | None:
    """The final answer in a model's output (the rule in the module docstring).

    ``extract_answer("... 3+2+1=06,632 A: 632")`` -> 632; ``extract_answer("the sum is 1,234.")`` ->
    1234; ``extract_answer("A: 12 A: -15 apples")`` -> -15; ``extract_answer("no idea")`` -> None.
    ``answer_trigger=None`` skips rule 1 (last number in the text).
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise ConfigError(f"extract_answer got a {type(text).__name__}, not the model's text.",
                          "pass the generated string (one continuation), e.g. outputs[0].")
    if answer_trigger and answer_trigger in text:
        numbers = find_numbers(text.rsplit(answer_trigger, 1)[1])
        return numbers[0] if numbers else None
    numbers = find_numbers(text)
    return numbers[-1] if numbers else None


def is_correct(prediction: Number | str | None, gold: Number | str) -> bool:
    """Exact numeric match (``632 == 632.0``; a gold string like ``"1,234"`` is read as a number)."""
    if prediction is None:
        return False
    if isinstance(gold, str):
        found = find_numbers(gold)
        if len(found) != 1:
            raise ConfigError(f"the gold answer {gold!r} is not one number.", "pass the gold answer as a number.")
        gold = found[0]
    if isinstance(prediction, str):
        found = find_numbers(prediction)
        if len(found) != 1:
            return False
        prediction = found[0]
    return float(prediction) == float(gold)


def accuracy(predictions: Sequence, golds: Sequence) -> float:
    """Fraction of exact numeric matches."""
    if len(predictions) != len(golds):
        raise ConfigError(f"{len(predictions)} predictions but {len(golds)} gold answers.",
                          "pass one prediction per problem.")
    if not golds:
        raise ConfigError("no predictions to score.", "pass at least one problem.")
    return sum(is_correct(p, g) for p, g in zip(predictions, golds)) / len(golds)


# ----------------------------------------------------------------------------- pipelines
def _call(generate: GenerateFn, prompts: list[str], stage: str) -> list[str]:
    if not callable(generate):
        raise ConfigError(f"generate is a {type(generate).__name__}, not a function.",
                          "pass a function prompts -> continuations, e.g. reasoning.greedy(model, tokenizer).")
    out = list(generate(prompts))
    if len(out) != len(prompts):
        raise ConfigError(f"the generate function returned {len(out)} texts for {len(prompts)} prompts ({stage}).",
                          "it must return exactly one continuation per prompt, in order.")
    return out


@dataclass(frozen=True)
class CoTResult:
    """Everything one question went through: prompts, the reasoning, the raw answer, the extracted number."""

    question: str
    prompt: str
    reasoning: str
    answer_prompt: str
    answer_text: str
    prediction: Number | None


def two_stage_cot(questions: Sequence[str], generate: GenerateFn, *, fmt: CoTFormat | str | None = None,
                  demos: Sequence = (), answer_generate: GenerateFn | None = None) -> list[CoTResult]:
    """Zero-shot CoT in two stages (Kojima et al. 2022); with ``demos``, the few-shot variant.

    Stage 1: ``generate([cot_prompt(q)])`` -> reasoning (cut before the answer trigger, if the
    model writes it). Stage 2: ``(answer_generate or generate)([answer_prompt(q, reasoning)])``
    -> the answer text, from which :func:`extract_answer` reads the first number (it sees the
    answer trigger followed by the stage-2 text). Both stages are one batched call each.
    """
    f = get_format(fmt)
    questions = list(questions)
    if not questions:
        raise ConfigError("no questions were given.", "pass a list of at least one question.")
    prompts = [cot_prompt(q, demos, f) for q in questions]
    reasoning = [cut_reasoning(r, f) for r in _call(generate, prompts, "stage 1")]
    second = [answer_prompt(q, z, demos, f) for q, z in zip(questions, reasoning)]
    texts = [cut(t, f) for t in _call(answer_generate or generate, second, "stage 2")]
    return [CoTResult(q, p, z, s, t, extract_answer(f"{f.answer_trigger} {t}", f.answer_trigger))
            for q, p, z, s, t in zip(questions, prompts, reasoning, second, texts)]


def few_shot_cot(questions: Sequence[str], generate: GenerateFn, *, fmt: CoTFormat | str | None = None,
                 demos: Sequence | Sequence[Sequence] = ()) -> list[tuple[str, Number | None]]:
    """Few-shot CoT in one pass: the model writes reasoning AND answer; returns ``(output, answer)``.

    ``demos`` is one list shared by all questions, or one list per question.
    """
    f = get_format(fmt)
    per_q = _per_question(demos, len(questions))
    outs = [cut(o, f) for o in _call(generate, [cot_prompt(q, d, f) for q, d in zip(questions, per_q)], "few-shot CoT")]
    return [(o, extract_answer(o, f.answer_trigger)) for o in outs]


def direct_answers(questions: Sequence[str], generate: GenerateFn, *, fmt: CoTFormat | str | None = None,
                   demos: Sequence | Sequence[Sequence] = ()) -> list[tuple[str, Number | None]]:
    """Answer at once (no reasoning); returns ``(output, answer)`` (the first number of the output)."""
    f = get_format(fmt)
    per_q = _per_question(demos, len(questions))
    outs = [cut(o, f) for o in _call(generate, [direct_prompt(q, d, f) for q, d in zip(questions, per_q)], "direct")]
    return [(o, extract_answer(f"{f.answer_trigger} {o}", f.answer_trigger)) for o in outs]


def _is_demo_list(x) -> bool:
    return isinstance(x, (list, tuple)) and all(isinstance(e, (Demonstration, list, tuple)) for e in x)


def _per_question(demos, n: int) -> list:
    """One list of demonstrations per question, from a shared list or a list of lists."""
    demos = list(demos)
    if demos and all(_is_demo_list(d) for d in demos):
        if len(demos) != n:
            raise ConfigError(f"{len(demos)} demonstration lists for {n} questions.",
                              "pass one shared list, or one list per question.")
        return [list(d) for d in demos]
    return [demos] * n


# ----------------------------------------------------------------------------- self-consistency
def majority_vote(answers: Sequence[Number | None]) -> Number | None:
    """The most frequent answer. ``None`` votes are ignored; among tied answers the one that
    occurs first in ``answers`` wins; no valid vote -> ``None``. Answers compare as numbers."""
    counts: dict[float, int] = {}
    first: dict[float, Number] = {}
    for a in answers:
        if a is None:
            continue
        key = float(a)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, a)
    if not counts:
        return None
    best = max(counts.values())
    return next(first[k] for k in counts if counts[k] == best)  # dicts keep first-seen order


def sample_chains(questions: Sequence[str], sample: GenerateFn, n_chains: int, *,
                  fmt: CoTFormat | str | None = None, demos: Sequence | Sequence[Sequence] = ()
                  ) -> list[list[Number | None]]:
    """``n_chains`` sampled few-shot CoT chains per question (one batched call); the extracted
    answers, ``[question][chain]`` in sampling order."""
    if not isinstance(n_chains, int) or n_chains < 1:
        raise ConfigError(f"n_chains={n_chains!r}: it must be an integer >= 1.", "sample at least one chain.")
    questions = list(questions)
    per_q = _per_question(demos, len(questions))
    rep_q = [q for q in questions for _ in range(n_chains)]
    rep_d = [d for d in per_q for _ in range(n_chains)]
    answers = [a for _, a in few_shot_cot(rep_q, sample, fmt=fmt, demos=rep_d)]
    return [answers[i * n_chains:(i + 1) * n_chains] for i in range(len(questions))]


def self_consistency_curve(chains: Sequence[Sequence[Number | None]], golds: Sequence[Number],
                           ms: Sequence[int] | None = None) -> dict[int, float]:
    """Accuracy of the majority vote over the first ``m`` chains, for each ``m`` in ``ms``."""
    n = min(len(c) for c in chains)
    ms = list(ms) if ms is not None else list(range(1, n + 1))
    if any(m < 1 or m > n for m in ms):
        raise ConfigError(f"ms={ms} asks for votes over more chains than were sampled ({n}) or fewer than 1.",
                          f"use 1 <= m <= {n}.")
    return {m: accuracy([majority_vote(c[:m]) for c in chains], golds) for m in ms}


# ----------------------------------------------------------------------------- generate functions
def greedy(model, tokenizer, *, max_new_tokens: int = 64, batch_size: int = 64, stop_at_newline: bool = True,
           progress: bool = False, desc: str | None = None) -> GenerateFn:
    """A generate function: greedy decoding with :func:`course_lib.prompting.generate` (batched, left
    padding, the first line of each continuation); :func:`course_lib.prompting.generator` at temperature 0."""
    return generator(model, tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size,
                     stop_at_newline=stop_at_newline, progress=progress, desc=desc)


def sampler(model, tokenizer, *, temperature: float = 0.7, seed: int = 0, max_new_tokens: int = 64,
            batch_size: int = 64, stop_at_newline: bool = True, progress: bool = False) -> GenerateFn:
    """A generate function that samples at ``temperature`` (pure softmax sampling, no top-k/top-p).

    Reproducible: the ``i``-th call seeds torch with ``seed * 100_003 + i``, so the same sequence of
    calls returns the same texts. ``temperature=0`` is greedy decoding. It is
    :func:`course_lib.prompting.generator`; batching as in :func:`course_lib.prompting.generate`.
    """
    return generator(model, tokenizer, temperature=temperature, seed=seed, max_new_tokens=max_new_tokens,
                     batch_size=batch_size, stop_at_newline=stop_at_newline, progress=progress,
                     desc="sample" if temperature else None)


# ----------------------------------------------------------------------------- data: addition
def addition_demonstration(a: int, b: int) -> Demonstration:
    """``a+b`` with the corpus's digit-by-digit scratchpad as the reasoning."""
    from .embedded import corpus

    return Demonstration(f"{a}+{b}", corpus.scratchpad(a, b), a + b)


#: Pretraining shows sums of 1-4 digits; longer sums (up to this many digits) are out of distribution,
#: which is what the scratchpad fine-tuning experiment (lecture 02, section 8; exercise 02, part 6) uses them for.
PRETRAINED_DIGITS = 4
MAX_DIGITS = 8


def _check_digits(digits) -> None:
    if not isinstance(digits, int) or not 1 <= digits <= MAX_DIGITS:
        raise ConfigError(f"digits={digits!r}: sums of 1 to {MAX_DIGITS} digits are supported (the embedded models "
                          f"were pretrained on 1-{PRETRAINED_DIGITS}).", f"use digits in 1..{MAX_DIGITS}.")


def addition_problems(digits: int, n: int, *, shots: int = 2, seed: int = 0, stream: str = "reasoning-addition"
                      ) -> list[Problem]:
    """``n`` sums of two ``digits``-digit numbers, each with ``shots`` fresh worked examples of the
    same size (deterministic for a seed; the numbers are random, so almost all are unseen in pretraining).
    Sums of more than :data:`PRETRAINED_DIGITS` digits never occur in the pretraining corpus.

    The addition task of the course: lecture 02, exercise 02 and the model cards'
    (:func:`course_lib.family_eval.addition`) all draw from here. ``stream`` names the random stream
    (``random.Random(f"{stream}-{digits}-{seed}")``): the model cards use ``"addition"``, so their
    numbers stay those they were made with; the lectures use the default."""
    from .embedded import corpus

    _check_digits(digits)
    if not isinstance(n, int) or n < 1 or not isinstance(shots, int) or shots < 0:
        raise ConfigError(f"n={n!r}, shots={shots!r}: n must be >= 1 and shots >= 0.", "e.g. n=50, shots=2.")
    rng = random.Random(f"{stream}-{digits}-{seed}")
    out = []
    for _ in range(n):
        pairs = [(corpus.random_number(rng, digits), corpus.random_number(rng, digits)) for _ in range(shots + 1)]
        a, b = pairs[-1]
        out.append(Problem(f"{a}+{b}", a + b, tuple(addition_demonstration(x, y) for x, y in pairs[:-1])))
    return out


def worked_examples(digits: int, n: int, *, seed: int = 0) -> list[Demonstration]:
    """``n`` solved sums of two ``digits``-digit numbers (question, scratchpad, answer): training data
    for fine-tuning on the reasoning. The seed stream is separate from :func:`addition_problems`'s."""
    from .embedded import corpus

    _check_digits(digits)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r}: ask for at least one worked example.", "e.g. n=200.")
    rng = random.Random(f"reasoning-worked-{digits}-{seed}")
    return [addition_demonstration(corpus.random_number(rng, digits), corpus.random_number(rng, digits))
            for _ in range(n)]


def training_pair(demo: Demonstration | tuple, mode: str = "cot", fmt: CoTFormat | str | None = None
                  ) -> tuple[str, str]:
    """A worked example as ``(prompt, target)`` for fine-tuning; the loss falls on the target only.

    ``mode="cot"`` supervises the reasoning and the answer (Nye et al. 2021, "Show your work"):
    ``("Q: 347+285 S:", " 7+5+0=12,2 4+8+1=13,32 3+2+1=06,632 A: 632\\n")``.
    ``mode="direct"`` supervises the answer alone: ``("Q: 347+285 A:", " 632\\n")``. The prompt is the
    zero-shot prompt of that mode; the target ends with the format's separator so that a tuned model
    learns where to stop.
    """
    f = get_format(fmt)
    (d,) = _check_demos([demo])
    if mode == "cot":
        return cot_prompt(d.question, (), f), " " + _line(d.reasoning.strip(), f.answer_trigger, str(d.answer)) + f.separator
    if mode == "direct":
        return direct_prompt(d.question, (), f), " " + str(d.answer) + f.separator
    raise ConfigError(f"unknown training mode {mode!r}.", "use 'cot' (reasoning and answer) or 'direct' (answer only).")


# ----------------------------------------------------------------------------- data: GSM8K (GPU runtime)
def gsm8k_final_answer(solution: str) -> Number:
    """The number after ``####`` in a GSM8K solution (``"... #### 1,234"`` -> 1234)."""
    if "####" not in solution:
        raise ConfigError("a GSM8K answer has no '####' line, so its final answer cannot be read.",
                          "pass the dataset's 'answer' column, which ends with '#### <number>'.")
    found = find_numbers(solution.rsplit("####", 1)[1])
    if not found:
        raise ConfigError(f"no number after '####' in {solution[-40:]!r}.", "check the dataset's answer column.")
    return found[0]


def gsm8k_reasoning(solution: str) -> str:
    """The worked solution before ``####``, calculator annotations ``<<48/2=24>>`` removed, on one line."""
    text = re.sub(r"<<[^>]*>>", "", solution.split("####", 1)[0])
    return " ".join(text.split())


def problems_from_dataset(rows, *, n: int | None = None, demos: Sequence[Demonstration] = ()) -> list[Problem]:
    """GSM8K-shaped rows (columns ``question``, ``answer``) -> problems, each with ``demos``."""
    from .registry import DATASETS

    info = DATASETS["gsm8k"]
    cols = getattr(rows, "column_names", None)
    if cols is not None and not {info.text_column, info.label_column} <= set(cols):
        raise ConfigError(f"the dataset has the columns {cols}, not {info.text_column!r} and {info.label_column!r}.",
                          "pass GSM8K (openai/gsm8k, config 'main') or a copy with the same columns.")
    out = []
    for i, row in enumerate(rows):
        if n is not None and i >= n:
            break
        out.append(Problem(row[info.text_column].strip(), gsm8k_final_answer(row[info.label_column]), tuple(demos)))
    return out


def gsm8k_demonstrations(rows, k: int = 4) -> list[Demonstration]:
    """The first ``k`` rows of a GSM8K split as CoT demonstrations."""
    from .registry import DATASETS

    info = DATASETS["gsm8k"]
    return [Demonstration(r[info.text_column].strip(), gsm8k_reasoning(r[info.label_column]),
                          gsm8k_final_answer(r[info.label_column])) for r in list(rows)[:k]]


def load_gsm8k(split: str = "test", *, path: str | None = None):
    """The GSM8K split from the hub (``registry.DATASETS["gsm8k"]``), or from ``path`` (or
    ``$COURSE_GSM8K_PATH``), a ``save_to_disk`` copy. Offline without a copy ->
    :class:`HubUnavailableError`."""
    import os

    from .errors import require
    from .registry import DATASETS
    from .runtime import hub_reachable

    require("datasets", "loading GSM8K")
    from datasets import load_dataset, load_from_disk

    info = DATASETS["gsm8k"]
    path = path or os.environ.get("COURSE_GSM8K_PATH")
    if path:
        ds = load_from_disk(path)
        return ds[split] if hasattr(ds, "keys") and split in ds.keys() else ds
    if not hub_reachable():
        raise HubUnavailableError(
            f"GSM8K ({info.hub_id}, config {info.config!r}) needs the Hugging Face hub, which cannot be reached.",
            "run on the embedded runtime (COURSE_RUNTIME=embedded: addition instead of word problems), or save a "
            "copy with datasets' save_to_disk and set COURSE_GSM8K_PATH to it.")
    return load_dataset(info.hub_id, info.config, split=split)


# ----------------------------------------------------------------------------- evaluation
MODES = ("direct", "cot", "zero_shot_direct", "zero_shot_cot")


def evaluate(problems: Sequence[Problem], generate: GenerateFn, mode: str = "cot", *,
             fmt: CoTFormat | str | None = None, answer_generate: GenerateFn | None = None) -> dict:
    """Accuracy of one prompting mode on ``problems``.

    ``direct``/``cot``: few-shot with each problem's demonstrations, one pass; ``zero_shot_direct``:
    no demonstrations; ``zero_shot_cot``: the two-stage pipeline without demonstrations. Returns
    ``{"accuracy", "n", "predictions", "correct", "outputs"}``.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}.", f"use one of {MODES}.")
    problems = list(problems)
    if not problems:
        raise ConfigError("no problems to evaluate.", "pass at least one Problem.")
    qs = [p.question for p in problems]
    demos = [list(p.demos) for p in problems]
    if mode == "zero_shot_cot":
        res = two_stage_cot(qs, generate, fmt=fmt, answer_generate=answer_generate)
        outputs = [f"{r.reasoning} || {r.answer_text}" for r in res]
        preds = [r.prediction for r in res]
    else:
        fn = few_shot_cot if mode == "cot" else direct_answers
        pairs = fn(qs, generate, fmt=fmt, demos=[[] for _ in qs] if mode == "zero_shot_direct" else demos)
        outputs, preds = [o for o, _ in pairs], [a for _, a in pairs]
    correct = [is_correct(p, q.answer) for p, q in zip(preds, problems)]
    return {"accuracy": sum(correct) / len(correct), "n": len(correct), "predictions": preds,
            "correct": correct, "outputs": outputs}


def accuracy_by_digits(generate: GenerateFn, *, digits: Sequence[int] = (1, 2, 3, 4), n: int = 50, shots: int = 2,
                       modes: Sequence[str] = ("direct", "cot"), seed: int = 0, progress: bool = True,
                       desc: str = "addition") -> dict:
    """Accuracy per digit count and mode on fresh addition problems:
    ``{"1": {"direct": 0.9, "cot": 1.0, "gain": 0.1}, ...}`` (gain = cot - direct when both are run)."""
    from tqdm.auto import tqdm

    cells = [(d, m) for d in digits for m in modes]
    out: dict = {}
    for d, m in tqdm(cells, desc=desc, disable=not progress, leave=False):
        problems = addition_problems(d, n, shots=shots, seed=seed)
        out.setdefault(str(d), {})[m] = evaluate(problems, generate, m)["accuracy"]
    for row in out.values():
        if "direct" in row and "cot" in row:
            row["gain"] = row["cot"] - row["direct"]
    return out


def cot_benefit_by_size(members: Sequence[str] | None = None, *, digits: Sequence[int] = (1, 2, 3, 4), n: int = 50,
                        shots: int = 2, seed: int = 0, progress: bool = True, device: str | None = None) -> dict:
    """:func:`accuracy_by_digits` for each member of the embedded family that is shipped:
    ``{"embedded-m": {"parameters": 870000, "digits": {...}}, ...}``."""
    from . import embedded
    from .models import count_parameters, load_model

    members = list(members) if members is not None else [f"embedded-{m}" for m in embedded.available_members()]
    if not members:
        raise ConfigError("no embedded model is shipped, so there is nothing to compare.",
                          "train one: python -m course_lib.embedded.train --size m")
    out = {}
    for name in members:
        model, tok = load_model(name, device=device)
        gen = greedy(model, tok, max_new_tokens=16 + 16 * max(digits))
        out[name] = {"parameters": count_parameters(model),
                     "digits": accuracy_by_digits(gen, digits=digits, n=n, shots=shots, seed=seed,
                                                  progress=progress, desc=name)}
    return out

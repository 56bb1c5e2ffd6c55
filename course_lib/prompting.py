"""Prompting: build zero-, one- and few-shot prompts, generate answers, score options.

This is the library of lecture 01 (in-context learning). Nothing here changes a parameter: every
function runs the model in ``torch.no_grad()`` and only reads its outputs.

Prompts (GPT-3, Brown et al. 2020, section 2)::

    [instruction + separator]                       e.g. "task: reverse\\n"
    demo_1 + separator + ... + demo_k + separator   e.g. "house => esuoh\\n" (k demonstrations)
    query                                           e.g. "plant => "  (the model continues)

:class:`PromptTemplate` turns an ``(input, output)`` pair into one demonstration and an input into
the query (the template's text up to ``{output}``). :func:`select_examples` draws the ``k``
demonstrations from a pool with a seed, never the query itself; :func:`build_prompt` joins the
pieces (``zero_shot``, ``one_shot``, ``few_shot`` are its three named cases).

Two ways to read an answer off the model:

* :func:`generate` — batched greedy (or sampled) decoding with left padding, stopped at the first
  newline; it returns the first generated line of each prompt. :func:`generator` binds it to a model
  as a function of the prompts alone, seeded when it samples (lecture 02's pipelines call one).
* :func:`score_continuations` — the log-likelihood of a given continuation ``c`` after a context
  ``x``: ``log p(c | x) = sum_t log softmax(logits_{t-1})[c_t]``, summed over the continuation
  tokens, or divided by their number (``normalize=True``, the per-token mean). Multiple choice
  (:func:`predict_choice`) picks the option with the highest score (Radford et al. 2019 score
  Winograd sentences this way; GPT-3 classifies by comparing label likelihoods).

Tokenisation at the context/continuation boundary. A BPE tokenizer may merge characters across
the boundary (``"verdict:" + " plus"`` can tokenise differently from the two halves), so the
tokens of ``x + c`` need not start with the tokens of ``x``. :func:`split_tokens` first tokenises
``x`` and ``x + c``; if the ids of ``x`` are a prefix of the ids of ``x + c`` (always true for the
char-level embedded tokenizer), the continuation is the rest of the joint tokenisation, exactly
the text the model would read. Otherwise it falls back to tokenising ``c`` separately (without
special tokens) and concatenating, so the context is scored identically for every option and the
continuation tokens are the tokenizer's own encoding of ``c``. The result says which case applied.

Works with the char-level embedded tokenizer and with ordinary hub tokenizers (GPT-2, Llama):
special tokens are added the way the tokenizer adds them (the embedded tokenizer and Llama
prepend a BOS token, GPT-2 adds nothing).

Why one module of this length: templates, demonstration sampling, batched generation and option
scoring are the four halves of one experiment (lecture 01); they share the tokenizer handling.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from .errors import ConfigError, from_table
from .methods.targets import context_length
from .timing import cuda_sync, interleaved

Pair = tuple[str, str]


# ----------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class PromptTemplate:
    """How one demonstration reads: ``example`` with the fields ``{input}`` and ``{output}``.

    ``example`` must contain ``{input}`` and end with ``{output}``; the query is ``example`` up to
    ``{output}`` (``"{input} => {output}"`` gives the query ``"plant => "``). ``separator`` joins
    the demonstrations (a newline: the embedded corpus puts one example per line).
    ``instruction`` is an optional header put first, e.g. ``"task: reverse"``.
    """

    example: str = "{input} => {output}"
    separator: str = "\n"
    instruction: str | None = None

    def __post_init__(self):
        fields = [f for _, f, _, _ in string.Formatter().parse(self.example) if f is not None]
        if sorted(fields) != ["input", "output"]:
            raise ConfigError(f"the template {self.example!r} has the fields {fields}; it needs exactly one "
                              "{input} and one {output}.",
                              "write it like '{input} => {output}' (escape literal braces as {{ and }}).")
        if not self.example.endswith("{output}"):
            raise ConfigError(f"the template {self.example!r} does not end with {{output}}, so the query "
                              "(the template up to {output}) would leave text after the answer.",
                              "put {output} last, e.g. 'Q: {input} A: {output}'.")
        if not self.separator:
            raise ConfigError("the separator is empty, so demonstrations would run into each other.",
                              "use a separator such as '\\n' (one example per line).")

    def render(self, input: str, output: str) -> str:
        """One demonstration: ``render("house", "esuoh") == "house => esuoh"``."""
        return self.example.format(input=input, output=output)

    def query(self, input: str) -> str:
        """The prompt's last line, which the model completes: ``query("plant") == "plant => "``."""
        return self.example[: -len("{output}")].format(input=input)

    def with_instruction(self, instruction: str | None) -> "PromptTemplate":
        return PromptTemplate(self.example, self.separator, instruction)


#: Templates the lectures use. ``arrow`` is the embedded corpus's format.
TEMPLATES = {
    "arrow": PromptTemplate("{input} => {output}"),
    "qa": PromptTemplate("Q: {input} A: {output}"),
    "colon": PromptTemplate("{input}: {output}"),
    "translate": PromptTemplate("en: {input} fr: {output}"),
}


def get_template(template: PromptTemplate | str | None) -> PromptTemplate:
    """A :class:`PromptTemplate` from itself, a name in :data:`TEMPLATES`, or ``None`` (``arrow``)."""
    return from_table(template, TEMPLATES, PromptTemplate, "arrow", "prompt template")


# ----------------------------------------------------------------------------- building prompts
def select_examples(pool: Sequence[Pair], k: int, *, seed: int = 0, exclude: str | Pair | None = None
                    ) -> list[Pair]:
    """Draw ``k`` distinct demonstrations from ``pool`` with a seeded RNG.

    ``exclude`` is the query (its input, or the whole pair): every pool item with that input is
    left out, so the answer is never shown in the prompt. Same ``seed`` -> same demonstrations in
    the same order. Raises :class:`ConfigError` if ``k`` is negative or larger than what is left.
    """
    if not isinstance(k, int) or k < 0:
        raise ConfigError(f"k={k!r} demonstrations: k must be an integer >= 0.", "use k = 0, 1, 2, ...")
    excluded = exclude[0] if isinstance(exclude, tuple) else exclude
    candidates = [tuple(p) for p in pool if excluded is None or p[0] != excluded]
    if k > len(candidates):
        raise ConfigError(f"k={k} demonstrations were asked for, but the pool has only {len(candidates)} "
                          f"usable examples{' once the query is excluded' if excluded is not None else ''}.",
                          f"use k <= {len(candidates)}, or a larger pool.")
    return random.Random(seed).sample(candidates, k)


def build_prompt(query: str, examples: Iterable[Pair] = (), template: PromptTemplate | str | None = None,
                 instruction: str | None = None) -> str:
    """The full prompt: [instruction] + demonstrations + the query, joined by the separator.

    ``instruction`` overrides ``template.instruction``. Example (arrow template)::

        build_prompt("plant", [("house", "esuoh")], instruction="task: reverse")
        == "task: reverse\\nhouse => esuoh\\nplant => "
    """
    t = get_template(template)
    header = t.instruction if instruction is None else instruction
    parts = [header] if header else []
    for ex in examples:
        if not (isinstance(ex, (tuple, list)) and len(ex) == 2):
            raise ConfigError(f"the demonstration {ex!r} is not an (input, output) pair.",
                              "pass demonstrations as a list of (input, output) tuples.")
        parts.append(t.render(*ex))
    parts.append(t.query(query))
    return t.separator.join(parts)


def zero_shot(query: str, template: PromptTemplate | str | None = None, instruction: str | None = None) -> str:
    """No demonstrations: the instruction (if any) and the query."""
    return build_prompt(query, (), template, instruction)


def one_shot(query: str, example: Pair, template: PromptTemplate | str | None = None,
             instruction: str | None = None) -> str:
    """Exactly one demonstration."""
    return build_prompt(query, [example], template, instruction)


def few_shot(query: str, pool: Sequence[Pair], k: int, *, seed: int = 0,
             template: PromptTemplate | str | None = None, instruction: str | None = None) -> str:
    """``k`` demonstrations drawn from ``pool`` by :func:`select_examples` (the query excluded)."""
    return build_prompt(query, select_examples(pool, k, seed=seed, exclude=query), template, instruction)


# ----------------------------------------------------------------------------- generation
def _no_grad_eval(model):
    import torch

    if model.training:
        raise ConfigError("the model is in training mode (dropout on), so answers would be random.",
                          "call model.eval() before prompting it.")
    return torch.no_grad()


def newline_token_ids(tokenizer) -> list[int]:
    """Ids of every vocabulary token whose text contains a newline (generation stops at any of them)."""
    cache = getattr(tokenizer, "_course_newline_ids", None)
    if cache is not None and cache[0] == len(tokenizer):
        return cache[1]
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    ids = [i for i, t in enumerate(texts) if "\n" in t]
    if not ids:
        raise ConfigError("the tokenizer has no token containing a newline, so generation cannot stop at one.",
                          "use a tokenizer that can encode '\\n', or pass stop_at_newline=False.")
    try:
        tokenizer._course_newline_ids = (len(tokenizer), ids)
    except AttributeError:
        pass
    return ids


def progress_bar(iterable, total: int, desc: str | None, progress: bool):
    """``iterable`` wrapped in a tqdm bar (auto: widget in Jupyter, text elsewhere) when ``progress``."""
    if not progress:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False)


def generate(model, tokenizer, prompts: str | Sequence[str], *, max_new_tokens: int = 32, batch_size: int = 64,
             stop_at_newline: bool = True, strip: bool = True, progress: bool = False, desc: str | None = None,
             temperature: float = 0.0, chat: bool | str = False) -> list[str]:
    """Greedy (or sampled) continuations of ``prompts``; returns the first line of each (a list, even for one prompt).

    Prompts are batched with LEFT padding (the new tokens of every row start at the same column),
    decoding is greedy (``temperature=0``; else pure softmax sampling at that temperature, seeded by
    the caller) and stops once every row has produced a newline token (or after ``max_new_tokens``).
    Every generation setting comes from :func:`course_lib.generation.generation_config`, never from the
    checkpoint (no repetition penalty, no top-k/top-p). ``chat=True`` (or ``"auto"``: instruct models of
    the registry only) poses each prompt as a user turn through the tokenizer's chat template.
    The generated text is cut at its first newline and, with ``strip``, stripped of surrounding
    spaces. If the model has a context limit (``max_position_embeddings``), ``max_new_tokens`` is
    reduced so that prompt + answer fits; a prompt that alone exceeds it raises :class:`ConfigError`.
    """
    from .generation import chat_prompt, end_of_text_ids, generation_config, run_generate, wants_chat

    if isinstance(prompts, str):
        prompts = [prompts]
    if max_new_tokens < 1 or batch_size < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens}, batch_size={batch_size}: both must be >= 1.",
                          "pass positive values.")
    if not prompts:
        return []
    as_chat = wants_chat(model, tokenizer, chat)
    if as_chat:  # the template writes the special tokens itself
        prompts = [chat_prompt(tokenizer, p) for p in prompts]
    device = next(model.parameters()).device
    eos = newline_token_ids(tokenizer) if stop_at_newline else end_of_text_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    limit = context_length(model)
    outputs: list[str] = []
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        with _no_grad_eval(model):
            starts = range(0, len(prompts), batch_size)
            for start in progress_bar(starts, len(starts), desc or "generate", progress):
                batch = list(prompts[start:start + batch_size])
                enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=not as_chat)
                width = enc["input_ids"].shape[1]
                new = max_new_tokens
                if limit is not None:
                    if width >= limit:
                        raise ConfigError(f"a prompt is {width} tokens long, and the model reads at most {limit}.",
                                          "use fewer demonstrations (smaller k) or shorter examples.")
                    new = min(new, limit - width)
                config = generation_config(max_new_tokens=new, temperature=temperature, eos_token_id=eos,
                                           pad_token_id=pad_id)
                out = run_generate(model, enc["input_ids"].to(device), enc["attention_mask"].to(device), config)
                for row in out[:, width:]:
                    text = tokenizer.decode(row, skip_special_tokens=True)
                    line = text.split("\n")[0] if stop_at_newline else text
                    outputs.append(line.strip() if strip else line)
    finally:
        tokenizer.padding_side = old_side
    return outputs


def generator(model, tokenizer, *, temperature: float = 0.0, seed: int = 0, max_new_tokens: int = 64,
              batch_size: int = 64, stop_at_newline: bool = True, progress: bool = False, desc: str | None = None
              ) -> Callable[[list[str]], list[str]]:
    """:func:`generate` as a function of the prompts alone: ``gen(prompts) -> continuations``.

    This is the *generate function* that :mod:`course_lib.reasoning`'s pipelines call
    (``reasoning.greedy`` and ``reasoning.sampler`` are this function). ``temperature=0`` is greedy
    decoding; ``temperature > 0`` samples from the full softmax at that temperature (no top-k/top-p,
    :func:`course_lib.generation.generation_config`), and the ``i``-th call (``i = 0, 1, ...``) seeds
    torch with ``seed * 100_003 + i``, so the same sequence of calls returns the same texts.
    Every other argument is :func:`generate`'s.
    """
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature < 0:
        raise ConfigError(f"temperature={temperature!r}: it must be a number >= 0.",
                          "use 0 for greedy decoding, 0.5-1.0 for diverse samples.")
    calls = [0]

    def run(prompts: list[str]) -> list[str]:
        if temperature > 0:
            import torch

            torch.manual_seed(seed * 100_003 + calls[0])
            calls[0] += 1
        return generate(model, tokenizer, list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size,
                        stop_at_newline=stop_at_newline, progress=progress, desc=desc, temperature=temperature)
    return run


# ----------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class TokenSplit:
    """Token ids of a context and its continuation; ``joint`` says how they were obtained."""

    context: list[int]
    continuation: list[int]
    joint: bool  # True: split of tokenize(x + c); False: tokenize(x) + tokenize(c) concatenated


def split_tokens(tokenizer, context: str, continuation: str) -> TokenSplit:
    """Tokenise ``context + continuation`` and find the continuation's tokens (see the module docstring)."""
    if not continuation:
        raise ConfigError("the continuation to score is empty: it has no tokens, so no log-likelihood.",
                          "pass a non-empty continuation, e.g. ' plus'.")
    ctx = tokenizer(context)["input_ids"]
    full = tokenizer(context + continuation)["input_ids"]
    if len(full) > len(ctx) and full[:len(ctx)] == ctx:
        split = TokenSplit(list(ctx), list(full[len(ctx):]), True)
    else:
        split = TokenSplit(list(ctx), list(tokenizer(continuation, add_special_tokens=False)["input_ids"]), False)
    if not split.context:
        raise ConfigError("the context has no tokens (empty text and a tokenizer that adds no BOS token), "
                          "so the first continuation token has nothing to be predicted from.",
                          "pass a non-empty context, or a tokenizer that prepends a BOS token.")
    return split


def score_continuations(model, tokenizer, contexts: str | Sequence[str], continuations: str | Sequence[str], *,
                        normalize: bool = False, batch_size: int = 64, progress: bool = False,
                        desc: str | None = None) -> list[float]:
    """``log p(continuation | context)`` for each pair, summed over the continuation's tokens.

    With ``normalize=True`` the sum is divided by the number of continuation tokens (the mean
    per-token log-likelihood), which removes the bias towards short options. A single context is
    broadcast to every continuation. Sequences are right-padded; the logits at position ``t-1``
    predict token ``t``; only the continuation's positions are scored (:mod:`course_lib.scoring`).
    """
    if isinstance(continuations, str):
        continuations = [continuations]
    if isinstance(contexts, str):
        contexts = [contexts] * len(continuations)
    if len(contexts) != len(continuations):
        raise ConfigError(f"{len(contexts)} contexts but {len(continuations)} continuations.",
                          "pass one context per continuation, or a single context string for all.")
    from .scoring import continuation_log_probs

    splits = [split_tokens(tokenizer, x, c) for x, c in zip(contexts, continuations)]
    limit = context_length(model)
    rows = [(s.context + s.continuation, len(s.context)) for s in splits]
    longest = max(len(ids) for ids, _ in rows)
    if limit is not None and longest > limit:
        raise ConfigError(f"a context + continuation is {longest} tokens long; the model reads at most {limit}.",
                          "shorten the prompt (fewer demonstrations).")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with _no_grad_eval(model):
        totals = continuation_log_probs(model, rows, pad_id=pad_id, batch_size=batch_size, progress=progress,
                                        desc=desc)
    return [t / len(s.continuation) if normalize else t for t, s in zip(totals, splits)]


def predict_choice(model, tokenizer, contexts: str | Sequence[str], options: Sequence[str] | Sequence[Sequence[str]],
                   *, normalize: bool = False, batch_size: int = 64, progress: bool = False,
                   return_scores: bool = False):
    """Multiple choice: for each context, the index of the option with the highest log-likelihood.

    ``options`` is either one list shared by every context (e.g. label words ``[" minus", " plus"]``)
    or one list per context. With ``return_scores`` also returns the score matrix (list of lists).
    """
    single = isinstance(contexts, str)
    contexts = [contexts] if single else list(contexts)
    if options and isinstance(options[0], str):
        per_context = [list(options)] * len(contexts)
    else:
        per_context = [list(o) for o in options]
    if len(per_context) != len(contexts):
        raise ConfigError(f"{len(contexts)} contexts but {len(per_context)} option lists.",
                          "pass one option list per context, or a single shared list of options.")
    if any(len(o) < 2 for o in per_context):
        raise ConfigError("a multiple-choice question has fewer than two options.", "give at least two options.")
    flat_ctx = [x for x, opts in zip(contexts, per_context) for _ in opts]
    flat_opt = [o for opts in per_context for o in opts]
    flat = score_continuations(model, tokenizer, flat_ctx, flat_opt, normalize=normalize,
                               batch_size=batch_size, progress=progress, desc="choices")
    matrix, pos = [], 0
    for opts in per_context:
        matrix.append(flat[pos:pos + len(opts)])
        pos += len(opts)
    preds = [max(range(len(row)), key=row.__getitem__) for row in matrix]
    if single:
        preds, matrix = preds[0], matrix[0]
    return (preds, matrix) if return_scores else preds


# ----------------------------------------------------------------------------- evaluation
def evaluate(model, tokenizer, prompts: Sequence[str], targets: Sequence, *, options=None,
             normalize: bool = False, parse: Callable[[str], str] | None = None, max_new_tokens: int = 32,
             batch_size: int = 64, progress: bool = True, desc: str | None = None, chat: bool | str = False) -> dict:
    """Accuracy of the model on ``prompts``, batched, with a progress bar.

    Without ``options``: greedy generation (:func:`generate`), the first line (after ``parse``,
    e.g. extracting what follows ``A:``) must equal the target string exactly; ``chat`` as in :func:`generate`.
    With ``options``
    (shared list or one list per prompt): multiple choice (:func:`predict_choice`); ``targets``
    are the correct option indices. Returns a plain dict: ``accuracy``, ``n``, ``predictions``,
    ``correct`` (list of bools).
    """
    if len(prompts) != len(targets):
        raise ConfigError(f"{len(prompts)} prompts but {len(targets)} targets.", "pass one target per prompt.")
    if not prompts:
        raise ConfigError("nothing to evaluate: the prompt list is empty.", "pass at least one prompt.")
    if options is None:
        raw = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                       progress=progress, desc=desc, chat=chat)
        preds = [parse(r) if parse else r for r in raw]
    else:
        preds = predict_choice(model, tokenizer, prompts, options, normalize=normalize,
                               batch_size=batch_size, progress=progress)
    correct = [p == t for p, t in zip(preds, targets)]
    return {"accuracy": sum(correct) / len(correct), "n": len(correct), "predictions": preds, "correct": correct}


# ----------------------------------------------------------------------------- sensitivity and cost
def orders(examples: Sequence[Pair], n: int, *, seed: int = 0) -> list[list[Pair]]:
    """``n`` distinct orderings of the same demonstrations; the first is the order given.

    Used to measure order sensitivity: every ordering holds exactly the same examples, so any
    change in accuracy comes from the order alone. Raises :class:`ConfigError` if ``n`` exceeds the
    number of distinct orderings (``len(examples)!`` for distinct examples).
    """
    import math

    examples = [tuple(e) for e in examples]
    possible = math.factorial(len(examples)) // math.prod(math.factorial(examples.count(e)) for e in set(examples))
    if not isinstance(n, int) or n < 1 or n > possible:
        raise ConfigError(f"n={n!r} orderings of {len(examples)} demonstrations: there are {possible} distinct ones.",
                          f"use 1 <= n <= {possible}, or more demonstrations.")
    rng = random.Random(seed)
    out, seen = [list(examples)], {tuple(examples)}
    while len(out) < n:
        perm = list(examples)
        rng.shuffle(perm)
        if tuple(perm) not in seen:
            seen.add(tuple(perm))
            out.append(perm)
    return out


def random_labels(examples: Sequence[Pair], labels: Sequence[str], *, seed: int = 0) -> list[Pair]:
    """The same demonstrations with each output replaced by a label drawn uniformly from ``labels``.

    Min et al. (2022) found that such random labels hurt in-context classification much less than
    one would expect: the format and the input distribution carry much of the signal.
    """
    labels = list(labels)
    if len(labels) < 2:
        raise ConfigError(f"random labels need at least two label words, got {labels!r}.",
                          "pass the task's label words, e.g. ['pos', 'neg'].")
    rng = random.Random(seed)
    return [(x, rng.choice(labels)) for x, _ in examples]


def spread(values: Sequence[float]) -> dict:
    """How much a result varies over prompt variants: ``min``, ``max``, ``range`` (max - min),
    ``mean`` and ``std`` (population standard deviation) of ``values``."""
    values = [float(v) for v in values]
    if not values:
        raise ConfigError("no values to summarise.", "pass the accuracy of at least one prompt variant.")
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return {"min": min(values), "max": max(values), "range": max(values) - min(values), "mean": mean, "std": std}


def prompt_cost(model, tokenizer, prompts: Sequence[str], *, repeats: int = 3) -> dict:
    """What one query costs: mean prompt length in tokens and the median time (ms) of one forward
    pass over one prompt (batch 1, the prompt's prefill), over ``repeats`` timings of every prompt
    (each after one warm-up pass, timed by :func:`course_lib.timing.interleaved`).

    A few-shot prompt is re-read on every query, so its demonstrations are paid for again each time.
    Returns ``{"tokens": float, "ms_per_query": float, "n": len(prompts)}``.
    """
    import statistics

    import torch

    if not prompts:
        raise ConfigError("no prompts to time.", "pass at least one prompt.")
    if repeats < 1:
        raise ConfigError(f"repeats={repeats}: it must be >= 1.", "use repeats=3 or more.")
    device = next(model.parameters()).device
    lengths, times = [], []
    with _no_grad_eval(model):
        for p in prompts:
            ids = torch.tensor([tokenizer(p)["input_ids"]], device=device)
            lengths.append(ids.shape[1])
            seconds = interleaved({"prompt": lambda ids=ids: model(input_ids=ids)}, repeats, warmup=1, sync=cuda_sync(device))
            times += [1000 * t for t in seconds["prompt"]]
    return {"tokens": sum(lengths) / len(lengths), "ms_per_query": statistics.median(times), "n": len(prompts)}

"""The synthetic pretraining corpus of the embedded models.

Every document is plain text of at most ~250 characters that repeats ONE task several times in a
row, one example per line. That few-shot layout is what rewards in-context learning during
pretraining: to predict the third line well, the model has to infer the task from the first two.

Task families (``FAMILIES``):

``transform``
    GPT-3's word-manipulation tasks over a curated word list: ``reverse`` (reversed words),
    ``cycle`` (a fixed, simplified cycle letters: ``apple => pplea``; GPT-3's task, Brown et al. 2020
    section 3.9.2, recovers the word from a rotation by an unknown amount, ``pleap => apple``), ``clean`` (remove randomly inserted symbols: GPT-3's random
    insertion), ``first letter``, ``last letter``, ``uppercase``, ``double``. Lines read
    ``input => output``. Held-out words (``HELDOUT_WORDS``) never occur in the corpus.
``sentiment``
    ``the film was dull => neg``; half of the documents use natural label words, half an
    arbitrary pair (``red``/``blue``) that is fixed within the document.
``addition``
    1-4 digit sums, answered directly (``Q: 347+285 A: 632``) or through a digit-by-digit
    scratchpad (``Q: 347+285 S: 7+5+0=12,2 4+8+1=13,32 3+2+1=06,632 A: 632``). ``S:`` is the
    reasoning trigger and ``A:`` the answer trigger, so a two-stage zero-shot chain of thought
    ("let's think step by step", then "therefore the answer is") works in miniature.
``dictionary``
    A fixed made-up language: ``en: house fr: bavoli``.
``recall``
    In-context key/value recall: ``cat:12 dog:7`` then ``? dog = 7`` lines.
``fit``
    Winograd-style sentences: ``the cat did not fit in the hat because the cat was too big``.

About a quarter of transform, sentiment and addition documents open with an instruction line
``task: <name>``, so "instruction only" prompts can be compared with few-shot prompts.

Everything is a pure function of a ``random.Random``: ``corpus(n, seed)`` is deterministic.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Callable

MAX_CHARS = 250  # characters per document; the context is 256 tokens including <bos>


# ----------------------------------------------------------------------------- word lists
@lru_cache(maxsize=1)
def _word_lists() -> tuple[tuple[str, ...], tuple[str, ...]]:
    train, heldout, current = [], [], None
    for line in files("course_lib.data").joinpath("words.txt").read_text().splitlines():
        if line.startswith("# heldout"):
            current = heldout
        elif line and not line.startswith("#"):
            (train if current is None else current).append(line)
    return tuple(train), tuple(heldout)


def train_words() -> tuple[str, ...]:
    """The 2,700 words that pretraining documents use."""
    return _word_lists()[0]


def heldout_words() -> tuple[str, ...]:
    """The 300 words no pretraining document contains: every evaluation draws from these."""
    return _word_lists()[1]


# ----------------------------------------------------------------------------- transforms
SYMBOLS = ".,!?*#"


def _clean(word: str, rng: random.Random) -> tuple[str, str]:
    noisy = "".join(c + (rng.choice(SYMBOLS) if rng.random() < 0.5 else "") for c in word)
    return noisy, word


TRANSFORMS: dict[str, Callable[[str, random.Random], tuple[str, str]]] = {
    "reverse": lambda w, r: (w, w[::-1]),
    "cycle": lambda w, r: (w, w[1:] + w[0]),
    "clean": _clean,
    "first letter": lambda w, r: (w, w[0]),
    "last letter": lambda w, r: (w, w[-1]),
    "uppercase": lambda w, r: (w, w.upper()),
    "double": lambda w, r: (w, "".join(c + c for c in w)),
}
#: The three GPT-3 word tasks the lectures name, mapped to the corpus's transforms.
GPT3_WORD_TASKS = {"reversed words": "reverse", "cycle letters": "cycle", "random insertion": "clean"}


def transform_example(task: str, word: str, rng: random.Random) -> tuple[str, str]:
    """Return ``(input, output)`` for one transform of ``word``."""
    if task not in TRANSFORMS:
        raise ValueError(f"unknown transform {task!r}; choose one of {sorted(TRANSFORMS)}")
    return TRANSFORMS[task](word, rng)


# ----------------------------------------------------------------------------- sentiment
POSITIVE = ("good", "great", "wonderful", "excellent", "amazing", "lovely", "superb", "fantastic",
            "pleasant", "brilliant", "delightful", "charming", "fun", "nice", "perfect", "beautiful",
            "enjoyable", "fresh", "tasty", "friendly", "clever", "splendid", "marvelous", "terrific",
            "cozy", "elegant", "gorgeous", "happy", "joyful", "stellar", "solid", "smooth", "warm",
            "bright", "fabulous", "neat")
NEGATIVE = ("bad", "awful", "terrible", "horrible", "boring", "dull", "poor", "nasty", "ugly", "rude",
            "bland", "dreadful", "lousy", "weak", "sad", "stale", "gross", "messy", "noisy", "slow",
            "cheap", "broken", "painful", "annoying", "awkward", "dirty", "clumsy", "grim", "lame",
            "sloppy", "tedious", "cold", "harsh", "greasy", "gloomy", "shabby")
SUBJECTS = ("the film", "the movie", "the food", "the hotel", "the book", "the song", "the show",
            "the staff", "the room", "the game", "the trip", "the meal", "the play", "the cafe",
            "the plot", "the band", "my day", "the park", "the class", "the soup", "the car", "the app",
            "the view", "the beer")
VERBS = ("was", "is", "seemed", "felt", "looked")
ADVERBS = ("", "", "", "very ", "really ", "quite ", "so ", "truly ")
NATURAL_LABELS = (("pos", "neg"), ("positive", "negative"), ("good", "bad"), ("yes", "no"), ("1", "0"))
ARBITRARY_LABELS = ("red", "blue", "cat", "dog", "sun", "moon", "up", "down", "left", "right", "hot",
                    "ice", "x", "y", "a", "b", "tree", "rock", "big", "tiny", "one", "two", "east", "west")
#: Label words that pretraining never uses: a new mapping must be learned from the prompt alone.
UNSEEN_LABELS = ("foo", "bar", "zip", "zap", "plum", "kiwi")


def sentiment_sentence(rng: random.Random, positive: bool | None = None,
                       adjectives: tuple[tuple[str, ...], tuple[str, ...]] = (POSITIVE, NEGATIVE)) -> tuple[str, bool]:
    """A short review sentence and whether it is positive."""
    if positive is None:
        positive = rng.random() < 0.5
    adj = rng.choice(adjectives[0] if positive else adjectives[1])
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(ADVERBS)}{adj}", positive


# ----------------------------------------------------------------------------- addition
REASONING_TRIGGER = "S:"
ANSWER_TRIGGER = "A:"


def random_number(rng: random.Random, digits: int) -> int:
    """A number with exactly ``digits`` digits (0-9 for one digit)."""
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1)


def scratchpad(a: int, b: int) -> str:
    """Digit-by-digit working for ``a + b``, least significant digit first.

    Each step is ``x+y+carry=ss,partial``: the two digits, the incoming carry, their two-digit sum,
    then the result built so far. ``scratchpad(347, 285) == '7+5+0=12,2 4+8+1=13,32 3+2+1=06,632'``.
    """
    da, db = str(a)[::-1], str(b)[::-1]
    carry, partial, steps = 0, "", []
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        carry_in = carry
        s = x + y + carry_in
        partial = str(s % 10) + partial
        carry = s // 10
        if carry and i == max(len(da), len(db)) - 1:
            partial = "1" + partial
        steps.append(f"{x}+{y}+{carry_in}={s:02d},{partial}")
    return " ".join(steps)


def addition_question(a: int, b: int) -> str:
    return f"Q: {a}+{b}"


def addition_example(a: int, b: int, use_scratchpad: bool) -> str:
    """One full line: the question, optionally the scratchpad, and the answer."""
    if use_scratchpad:
        return f"{addition_question(a, b)} {REASONING_TRIGGER} {scratchpad(a, b)} {ANSWER_TRIGGER} {a + b}"
    return f"{addition_question(a, b)} {ANSWER_TRIGGER} {a + b}"


# ----------------------------------------------------------------------------- dictionary, fit
@lru_cache(maxsize=1)
def made_up_dictionary() -> dict[str, str]:
    """400 training words mapped to made-up words of 2-3 syllables (fixed)."""
    rng = random.Random(99)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    out, used = {}, set()
    for word in train_words()[:400]:
        while True:
            fake = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3)))
            if fake not in used:
                break
        used.add(fake)
        out[word] = fake
    return out


FIT_OBJECTS = ("cat", "hat", "dog", "box", "bag", "cup", "ball", "shoe", "book", "vase", "car", "drum",
               "lamp", "jar", "coat", "bed", "pot", "bowl", "desk", "kite", "sofa", "door", "tent", "case")


def fit_sentence(big: str, small: str, blame_big: bool) -> str:
    """``the {big} did not fit in the {small} because the {big} was too big`` (or the small one too small)."""
    reason = f"the {big} was too big" if blame_big else f"the {small} was too small"
    return f"the {big} did not fit in the {small} because {reason}"


# ----------------------------------------------------------------------------- documents
def _fill(make_line: Callable[[], str], header: str = "") -> str:
    out = header
    while True:
        line = make_line() + "\n"
        if len(out) + len(line) > MAX_CHARS:
            return out
        out += line


def _header(rng: random.Random, name: str, p: float) -> str:
    return f"task: {name}\n" if rng.random() < p else ""


def doc_transform(rng: random.Random) -> str:
    task = rng.choice(list(TRANSFORMS))
    words = train_words()
    return _fill(lambda: "{} => {}".format(*transform_example(task, rng.choice(words), rng)),
                 _header(rng, task, 0.3))


def doc_sentiment(rng: random.Random) -> str:
    pos_label, neg_label = (rng.choice(NATURAL_LABELS) if rng.random() < 0.5
                            else tuple(rng.sample(ARBITRARY_LABELS, 2)))

    def line() -> str:
        text, positive = sentiment_sentence(rng)
        return f"{text} => {pos_label if positive else neg_label}"
    return _fill(line, _header(rng, "sentiment", 0.2))


def doc_addition(rng: random.Random) -> str:
    use_scratchpad = rng.random() < 0.6

    def line() -> str:
        da = rng.choice((1, 2, 2, 3, 3, 4))
        db = da if rng.random() < 0.7 else rng.randint(1, 4)
        return addition_example(random_number(rng, da), random_number(rng, db), use_scratchpad)
    return _fill(line, _header(rng, "addition", 0.2))


def doc_dictionary(rng: random.Random) -> str:
    table = made_up_dictionary()
    keys = list(table)

    def line() -> str:
        w = rng.choice(keys)
        return f"en: {w} fr: {table[w]}" if rng.random() < 0.7 else f"fr: {table[w]} en: {w}"
    return _fill(line)


def doc_recall(rng: random.Random) -> str:
    keys = rng.sample(train_words(), rng.randint(3, 6))
    values = [str(rng.randint(0, 99)) for _ in keys]
    out = " ".join(f"{k}:{v}" for k, v in zip(keys, values)) + "\n"
    while True:
        i = rng.randrange(len(keys))
        line = f"? {keys[i]} = {values[i]}\n"
        if len(out) + len(line) > MAX_CHARS:
            return out
        out += line


def doc_fit(rng: random.Random) -> str:
    def line() -> str:
        big, small = rng.sample(FIT_OBJECTS, 2)
        return fit_sentence(big, small, rng.random() < 0.5)
    return _fill(line)


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[random.Random], str]
    weight: float


FAMILIES = (
    Family("transform", doc_transform, 0.30),
    Family("sentiment", doc_sentiment, 0.20),
    Family("addition", doc_addition, 0.27),
    Family("dictionary", doc_dictionary, 0.08),
    Family("recall", doc_recall, 0.08),
    Family("fit", doc_fit, 0.07),
)


def document(rng: random.Random) -> str:
    """One pretraining document, its family drawn by the mixture weights."""
    x, acc = rng.random() * sum(f.weight for f in FAMILIES), 0.0
    for family in FAMILIES:
        acc += family.weight
        if x < acc:
            return family.make(rng)
    return FAMILIES[-1].make(rng)


def corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` documents, deterministic for a given seed."""
    rng = random.Random(seed)
    return [document(rng) for _ in range(n)]


if __name__ == "__main__":  # python -m course_lib.embedded.corpus: one document of each family
    demo = random.Random(0)
    for fam in FAMILIES:
        print(f"----- {fam.name}\n{fam.make(demo)}")

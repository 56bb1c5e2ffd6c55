"""Plausible mistakes in solutions/02_chain_of_thought: each must cost the points of the test cells in `fails`.

Each part's correct answer is written once (``_PROMPT_OK``, ``_EXTRACT_OK``, ``_TWO_STAGE_OK``, ...) and a mistake
is that answer with a few edits; ``edit`` fails loudly when an edit no longer applies. The entries that are another
implementation rather than an edit of the right one (``Counter``, ``statistics.mode``, one call per question, a
hard-coded result) are written out.
"""
import runpy
from pathlib import Path

edit = runpy.run_path(str(Path(__file__).with_name("_edits.py")))["edit"]

# ----------------------------------------------------------------- part 1: prompts
_COT_BODY = '''    lines = [f"Q: {q} S: {str(r).strip()} A: {a}" for q, r, a in demos]
    return "\\n".join(lines + [f"Q: {question} S:"])
'''
_DIRECT_BODY = '''    lines = [f"Q: {q} A: {a}" for q, _, a in demos]
    return "\\n".join(lines + [f"Q: {question} A:"])
'''

_PROMPT_OK = ("\ndef build_cot_prompt(question, demos):\n" + _COT_BODY
              + "\n\ndef build_direct_prompt(question, demos):\n" + _DIRECT_BODY)

_PROMPT_DEMOS = '''

demos = [("12+34", "2+4+0=06,6 1+3+0=04,46", 46), ("58+67", "8+7+0=15,5 5+6+1=12,125", 125)]
print(build_cot_prompt("51+78", demos))
'''


def _prompt(*changes: str) -> str:
    return edit(_PROMPT_OK, *changes) + _PROMPT_DEMOS


# ----------------------------------------------------------------- part 2: extraction
_EXTRACT_HEAD = '''import re

NUMBER = r"(?:(?<!\\d)-)?(?:[1-9]\\d{0,2}(?:,\\d{3})+(?!\\d)|\\d+)(?:\\.\\d+)?"


def _numbers(s):
    out = []
    for m in re.finditer(NUMBER, s):
        token = m.group().replace(",", "")
        out.append(float(token) if "." in token else int(token))
    return out

'''
_EXTRACT_FN = '''
def extract_answer(text):
    if text is None:
        return None
    if "A:" in text:
        found = _numbers(text.rsplit("A:", 1)[1])
        return found[0] if found else None
    found = _numbers(text)
    return found[-1] if found else None
'''
_EXTRACT_OK = _EXTRACT_HEAD + _EXTRACT_FN


def _own_numbers(numbers: str) -> str:
    """extract_answer with its own number reader ``nums`` (defined inside) instead of _numbers."""
    return edit("import re\n\n" + _EXTRACT_FN, "        return None\n", "        return None\n" + numbers,
                "_numbers(", "nums(")


# ----------------------------------------------------------------- part 3: two stages
_TWO_STAGE_OK = '''
def zero_shot_cot(questions, generate):
    questions = list(questions)
    first = generate([build_cot_prompt(q, []) for q in questions])
    reasoning = [text.split("A:", 1)[0].strip() for text in first]
    second = generate([f"{build_cot_prompt(q, [])} {z} A:" for q, z in zip(questions, reasoning)])
    return [extract_answer("A: " + text) for text in second]
'''

# ----------------------------------------------------------------- part 4: vote
_VOTE_OK = '''
def majority_vote(answers):
    counts, first = {}, {}
    for a in answers:
        if a is None:
            continue
        key = float(a)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, a)
    if not counts:
        return None
    best = max(counts.values())
    return next(first[k] for k in counts if counts[k] == best)
'''


def _vote_keyed_by(expr: str) -> str:
    """The right vote, but answers counted under ``expr`` (written out at each use) instead of float(a)."""
    return edit(_VOTE_OK, "        key = float(a)\n", "", "key", expr)


_VOTE_LARGEST = '''
from collections import Counter


def majority_vote(answers):
    c = Counter(a for a in answers if a is not None)
    if not c:
        return None
    best = max(c.values())
    return max(a for a in c if c[a] == best)
'''

# ----------------------------------------------------------------- part 5: experiment
_EXPERIMENT_OK = '''
def run_experiment(generate, problems):
    problems = list(problems)
    result = {}
    for mode, build in (("direct", build_direct_prompt), ("cot", build_cot_prompt)):
        prompts = [build(p.question, [(d.question, d.reasoning, d.answer) for d in p.demos]) for p in problems]
        outputs = generate(prompts)
        preds = [extract_answer("A: " + o) if mode == "direct" else extract_answer(o) for o in outputs]
        result[mode] = sum(pred == p.answer for pred, p in zip(preds, problems)) / len(problems)
    return result
'''
_PREDS_OK = '        preds = [extract_answer("A: " + o) if mode == "direct" else extract_answer(o) for o in outputs]\n'

# ----------------------------------------------------------------- part 6: fine-tuning on the working
_PAIR_OK = """    if mode == "cot":
        return build_cot_prompt(question, []), f" {reasoning.strip()} A: {answer}\\n"
    if mode == "direct":
        return build_direct_prompt(question, []), f" {answer}\\n"
    raise ValueError(f"unknown mode {mode!r}: use 'cot' or 'direct'")
"""

_FINE_TUNE_OK = """

def fine_tune(model, tokenizer, demos, mode, steps, lr, batch_size=16, seed=0):
    tuned = copy.deepcopy(model)
    pairs = [training_pair(d, mode) for d in demos]
    run = training.train(tuned, tokenizer, training.TextPairs(pairs),
                         training.TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed), progress=False)
    return tuned, run.losses
"""


def _pair(body: str) -> str:
    return ("import copy\n\nfrom course_lib import training\n\n\ndef training_pair(demo, mode):\n"
            "    question, reasoning, answer = demo\n" + body + _FINE_TUNE_OK)


_FINETUNE_OK = _pair(_PAIR_OK)

WRONG_ANSWERS = [
    # ----------------------------------------------------------------- part 1: prompts
    dict(cell="prompt_answer", name="trailing space after the trigger", code=_prompt(
        ' S:"])', ' S: "])', ' A:"])', ' A: "])'), fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="a newline after every line, the last one included", code=_prompt(
        _COT_BODY, '''    return "".join(f"Q: {q} S: {str(r).strip()} A: {a}\\n" for q, r, a in demos) + f"Q: {question} S:\\n"
''', _DIRECT_BODY, '''    return "".join(f"Q: {q} A: {a}\\n" for q, _, a in demos) + f"Q: {question} A:\\n"
'''), fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="direct prompt keeps the reasoning", code=_prompt(
        'lines = [f"Q: {q} A: {a}" for q, _, a in demos]',
        'lines = [f"Q: {q} S: {str(r).strip()} A: {a}" for q, r, a in demos]'), fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="reasoning not stripped", code=_prompt("{str(r).strip()}", "{r}"),
         fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="newline before the query even without demonstrations", code=_prompt(
        _COT_BODY, '''    head = "".join(f"Q: {q} S: {str(r).strip()} A: {a}\\n" for q, r, a in demos)
    return (head or "\\n") + f"Q: {question} S:"
''', _DIRECT_BODY, '''    head = "".join(f"Q: {q} A: {a}\\n" for q, _, a in demos)
    return (head or "\\n") + f"Q: {question} A:"
'''), fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="only the last two demonstrations are used", code=_prompt(
        " in demos]", " in list(demos)[-2:]]"), fails=["prompt_tests"]),

    # ----------------------------------------------------------------- part 2: extraction
    dict(cell="extract_answer", name="always the last number (ignores the answer trigger)", code=edit(_EXTRACT_OK,
        '''    if "A:" in text:
        found = _numbers(text.rsplit("A:", 1)[1])
        return found[0] if found else None
''', ""), fails=["extract_tests"]),
    dict(cell="extract_answer", name="first number after the FIRST trigger", code=edit(_EXTRACT_OK,
        'text.rsplit("A:", 1)', 'text.split("A:", 1)'), fails=["extract_tests"]),
    dict(cell="extract_answer", name="falls back to the last number when nothing follows the trigger", code=edit(
        _EXTRACT_OK,
        "        return found[0] if found else None\n", "        if found:\n            return found[0]\n"),
        fails=["extract_tests"]),
    dict(cell="extract_answer", name="plain \\d+ (no sign, no separators, no decimals)", code=edit(
        "import re\n\n" + _EXTRACT_FN, "_numbers(", 're.findall(r"\\d+", ',
        "found[0] if", "int(found[0]) if", "found[-1] if", "int(found[-1]) if"), fails=["extract_tests"]),
    dict(cell="extract_answer", name="any comma-digit run is one number ([\\d,]+)", code=_own_numbers('''    def nums(s):
        return [float(t) if "." in t else int(t) for t in
                (m.replace(",", "") for m in re.findall(r"-?\\d[\\d,]*(?:\\.\\d+)?", s)) if t.lstrip("-")]
'''), fails=["extract_tests"]),
    dict(cell="extract_answer", name="a hyphen after a digit read as a minus sign", code=edit(_EXTRACT_OK,
        'NUMBER = r"(?:(?<!\\d)-)?', 'NUMBER = r"-?', '''    out = []
    for m in re.finditer(NUMBER, s):
        token = m.group().replace(",", "")
        out.append(float(token) if "." in token else int(token))
    return out
''', '''    return [float(t) if "." in t else int(t) for t in (m.group().replace(",", "") for m in re.finditer(NUMBER, s))]
'''), fails=["extract_tests"]),
    dict(cell="extract_answer", name="everything as float", code=edit(_EXTRACT_OK, '''    if "A:" in text:
        found = _numbers(text.rsplit("A:", 1)[1])
        return found[0] if found else None
    found = _numbers(text)
    return found[-1] if found else None
''', '''    part = text.rsplit("A:", 1)[1] if "A:" in text else text
    found = [float(x) for x in _numbers(part)]
    if not found:
        return None
    return found[0] if "A:" in text else found[-1]
'''), fails=["extract_tests"]),
    dict(cell="extract_answer", name="a trailing full stop read as a decimal point", code=_own_numbers('''\
    pattern = r"(?:(?<!\\d)-)?(?:[1-9]\\d{0,2}(?:,\\d{3})+(?!\\d)|\\d+)(?:\\.\\d*)?"
    def nums(s):
        return [float(t) if "." in t else int(t) for t in (m.group().replace(",", "") for m in re.finditer(pattern, s))]
'''), fails=["extract_tests"]),

    # ----------------------------------------------------------------- part 3: two stages
    dict(cell="two_stage_answer", name="reasoning not cut before 'A:'", code=edit(_TWO_STAGE_OK,
        '    reasoning = [text.split("A:", 1)[0].strip() for text in first]\n', "",
        "{z} A:", "{z.strip()} A:", "zip(questions, reasoning)", "zip(questions, first)"), fails=["two_stage_tests"]),
    dict(cell="two_stage_answer", name="answer read from stage 1", code=edit(_TWO_STAGE_OK,
        "    second = generate(", "    generate(",
        'extract_answer("A: " + text) for text in second', "extract_answer(text) for text in first"),
        fails=["two_stage_tests"]),
    dict(cell="two_stage_answer", name="one generate call per question", code='''
def zero_shot_cot(questions, generate):
    out = []
    for q in questions:
        z = generate([build_cot_prompt(q, [])])[0].split("A:", 1)[0].strip()
        out.append(extract_answer("A: " + generate([f"{build_cot_prompt(q, [])} {z} A:"])[0]))
    return out
''', fails=["two_stage_tests"]),
    dict(cell="two_stage_answer", name="stage 2 drops the reasoning trigger", code=edit(_TWO_STAGE_OK,
        'f"{build_cot_prompt(q, [])} {z} A:"', 'f"Q: {q} {z} A:"'), fails=["two_stage_tests"]),
    dict(cell="two_stage_answer", name="last number of the stage-2 text", code=edit(_TWO_STAGE_OK,
        'extract_answer("A: " + text)', "extract_answer(text)"), fails=["two_stage_tests"]),

    # ----------------------------------------------------------------- part 4: vote
    dict(cell="vote_answer", name="max over a set (tie broken by set order)", code='''
def majority_vote(answers):
    votes = [a for a in answers if a is not None]
    if not votes:
        return None
    return max(set(votes), key=votes.count)
''', fails=["vote_tests"]),
    dict(cell="vote_answer", name="None counted as a vote", code='''
from collections import Counter


def majority_vote(answers):
    answers = list(answers)
    if not answers:
        return None
    return Counter(answers).most_common(1)[0][0]
''', fails=["vote_tests"]),
    dict(cell="vote_answer", name="tie goes to the answer reached last", code=edit(_vote_keyed_by("float(a)"),
        "counts, first", "counts, last", "first.setdefault(float(a), a)", "last[float(a)] = a",
        "return next(first[k] for k in counts if counts[k] == best)",
        "return [last[k] for k in counts if counts[k] == best][-1]"), fails=["vote_tests"]),
    dict(cell="vote_answer", name="tie goes to the largest answer", code=_VOTE_LARGEST, fails=["vote_tests"]),
    dict(cell="vote_answer", name="answers compared as strings (7 and 7.0 differ)", code=_vote_keyed_by("str(a)"),
         fails=["vote_tests"]),
    dict(cell="vote_answer", name="statistics.mode (raises without votes)", code='''
import statistics


def majority_vote(answers):
    return statistics.mode([a for a in answers if a is not None])
''', fails=["vote_tests"]),

    # ----------------------------------------------------------------- part 5: experiment
    dict(cell="experiment_answer", name="modes swapped", code=edit(_EXPERIMENT_OK,
        '(("direct", build_direct_prompt), ("cot", build_cot_prompt))',
        '(("cot", build_direct_prompt), ("direct", build_cot_prompt))',
        "        outputs = generate(prompts)\n" + _PREDS_OK,
        "        preds = [extract_answer(o) for o in generate(prompts)]\n"), fails=["experiment_tests"]),
    dict(cell="experiment_answer", name="demonstrations left out (zero-shot)", code=edit(_EXPERIMENT_OK,
        "        prompts = [build(p.question, [(d.question, d.reasoning, d.answer) for d in p.demos]) for p in problems]\n"
        "        outputs = generate(prompts)\n",
        "        outputs = generate([build(p.question, []) for p in problems])\n"), fails=["experiment_tests"]),
    dict(cell="experiment_answer", name="counts correct answers instead of the fraction", code=edit(_EXPERIMENT_OK,
        " / len(problems)", ""), fails=["experiment_tests"]),
    dict(cell="experiment_answer", name="predictions compared as strings with an int gold", code=edit(_EXPERIMENT_OK,
        _PREDS_OK, '        preds = [o.rsplit("A:", 1)[-1].strip() for o in outputs]\n'), fails=["experiment_tests"]),
    dict(cell="experiment_answer", name="hard-coded accuracies", code='''
def run_experiment(generate, problems):
    return {"direct": 0.075, "cot": 1.0}
''', fails=["experiment_tests"]),

    # ----------------------------------------------------------------- monkeypatching
    dict(cell="vote_answer", name="monkeypatches torch.allclose/equal/isclose, tie to the largest", code=edit(
        _VOTE_LARGEST, "from collections import Counter\n", '''import torch
from collections import Counter

torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)
'''), fails=["vote_tests"]),

    # ----------------------------------------------------------------- part 6: fine-tuning on the working
    dict(cell="finetune_answer", name="the CoT target leaves out the reasoning", code=edit(_FINETUNE_OK,
        'f" {reasoning.strip()} A: {answer}\\n"', 'f" A: {answer}\\n"'), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="no newline at the end of the target", code=edit(_FINETUNE_OK,
        'A: {answer}\\n"', 'A: {answer}"', 'f" {answer}\\n"', 'f" {answer}"'), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="the prompt ends with a space, the target starts without one", code=edit(
        _FINETUNE_OK,
        'build_cot_prompt(question, []), f" {reasoning', 'build_cot_prompt(question, []) + " ", f"{reasoning',
        'build_direct_prompt(question, []), f" {answer}', 'build_direct_prompt(question, []) + " ", f"{answer}'),
        fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="reasoning not stripped", code=edit(_FINETUNE_OK,
        "{reasoning.strip()}", "{reasoning}"), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="unknown modes fall back to direct", code=edit(_FINETUNE_OK,
        '    if mode == "direct":\n        return', '    return',
        '    raise ValueError(f"unknown mode {mode!r}: use \'cot\' or \'direct\'")\n', ''),
        fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="the wrong exception for an unknown mode", code=edit(_FINETUNE_OK,
        "raise ValueError(", "raise KeyError("), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="the CoT prompt carries the whole worked example (answer leaked)", code=edit(
        _FINETUNE_OK,
        'build_cot_prompt(question, []), f" {reasoning', 'build_cot_prompt(question, [demo]), f" {reasoning'),
        fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="fine_tune trains the model it was given", code=edit(_FINETUNE_OK,
        "    tuned = copy.deepcopy(model)\n", "    tuned = model\n"), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="fine_tune ignores the mode (always the working)", code=edit(_FINETUNE_OK,
        "training_pair(d, mode) for d in demos", 'training_pair(d, "cot") for d in demos'), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="fine_tune ignores the seed and batch size", code=edit(_FINETUNE_OK,
        "batch_size=batch_size, lr=lr, seed=seed)", "batch_size=16, lr=lr)"), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="fine_tune returns the untrained model", code=edit(_FINETUNE_OK,
        "    return tuned, run.losses\n", "    return model, run.losses\n"), fails=["finetune_pair_tests"]),
]

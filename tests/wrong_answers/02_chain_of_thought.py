"""Plausible mistakes in solutions/02_chain_of_thought: each must cost the points of the test cells in `fails`."""

_PROMPT_DEMOS = '''

demos = [("12+34", "2+4+0=06,6 1+3+0=04,46", 46), ("58+67", "8+7+0=15,5 5+6+1=12,125", 125)]
print(build_cot_prompt("51+78", demos))
'''

_EXTRACT_HEAD = '''import re

NUMBER = r"(?:(?<!\\d)-)?(?:[1-9]\\d{0,2}(?:,\\d{3})+(?!\\d)|\\d+)(?:\\.\\d+)?"


def _numbers(s):
    out = []
    for m in re.finditer(NUMBER, s):
        token = m.group().replace(",", "")
        out.append(float(token) if "." in token else int(token))
    return out

'''


def _pair(body: str) -> str:
    return ("import copy\n\nfrom course_lib import training\n\n\ndef training_pair(demo, mode):\n"
            "    question, reasoning, answer = demo\n" + body + _FINE_TUNE_OK)


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

WRONG_ANSWERS = [
    # ----------------------------------------------------------------- part 1: prompts
    dict(cell="prompt_answer", name="trailing space after the trigger", code='''
def build_cot_prompt(question, demos):
    lines = [f"Q: {q} S: {str(r).strip()} A: {a}" for q, r, a in demos]
    return "\\n".join(lines + [f"Q: {question} S: "])


def build_direct_prompt(question, demos):
    lines = [f"Q: {q} A: {a}" for q, _, a in demos]
    return "\\n".join(lines + [f"Q: {question} A: "])
''' + _PROMPT_DEMOS, fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="a newline after every line, the last one included", code='''
def build_cot_prompt(question, demos):
    return "".join(f"Q: {q} S: {str(r).strip()} A: {a}\\n" for q, r, a in demos) + f"Q: {question} S:\\n"


def build_direct_prompt(question, demos):
    return "".join(f"Q: {q} A: {a}\\n" for q, _, a in demos) + f"Q: {question} A:\\n"
''' + _PROMPT_DEMOS, fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="direct prompt keeps the reasoning", code='''
def build_cot_prompt(question, demos):
    lines = [f"Q: {q} S: {str(r).strip()} A: {a}" for q, r, a in demos]
    return "\\n".join(lines + [f"Q: {question} S:"])


def build_direct_prompt(question, demos):
    lines = [f"Q: {q} S: {str(r).strip()} A: {a}" for q, r, a in demos]
    return "\\n".join(lines + [f"Q: {question} A:"])
''' + _PROMPT_DEMOS, fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="reasoning not stripped", code='''
def build_cot_prompt(question, demos):
    lines = [f"Q: {q} S: {r} A: {a}" for q, r, a in demos]
    return "\\n".join(lines + [f"Q: {question} S:"])


def build_direct_prompt(question, demos):
    lines = [f"Q: {q} A: {a}" for q, _, a in demos]
    return "\\n".join(lines + [f"Q: {question} A:"])
''' + _PROMPT_DEMOS, fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="newline before the query even without demonstrations", code='''
def build_cot_prompt(question, demos):
    head = "".join(f"Q: {q} S: {str(r).strip()} A: {a}\\n" for q, r, a in demos)
    return (head or "\\n") + f"Q: {question} S:"


def build_direct_prompt(question, demos):
    head = "".join(f"Q: {q} A: {a}\\n" for q, _, a in demos)
    return (head or "\\n") + f"Q: {question} A:"
''' + _PROMPT_DEMOS, fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="only the last two demonstrations are used", code='''
def build_cot_prompt(question, demos):
    lines = [f"Q: {q} S: {str(r).strip()} A: {a}" for q, r, a in list(demos)[-2:]]
    return "\\n".join(lines + [f"Q: {question} S:"])


def build_direct_prompt(question, demos):
    lines = [f"Q: {q} A: {a}" for q, _, a in list(demos)[-2:]]
    return "\\n".join(lines + [f"Q: {question} A:"])
''' + _PROMPT_DEMOS, fails=["prompt_tests"]),

    # ----------------------------------------------------------------- part 2: extraction
    dict(cell="extract_answer", name="always the last number (ignores the answer trigger)", code=_EXTRACT_HEAD + '''
def extract_answer(text):
    if text is None:
        return None
    found = _numbers(text)
    return found[-1] if found else None
''', fails=["extract_tests"]),
    dict(cell="extract_answer", name="first number after the FIRST trigger", code=_EXTRACT_HEAD + '''
def extract_answer(text):
    if text is None:
        return None
    if "A:" in text:
        found = _numbers(text.split("A:", 1)[1])
        return found[0] if found else None
    found = _numbers(text)
    return found[-1] if found else None
''', fails=["extract_tests"]),
    dict(cell="extract_answer", name="falls back to the last number when nothing follows the trigger", code=_EXTRACT_HEAD + '''
def extract_answer(text):
    if text is None:
        return None
    if "A:" in text:
        found = _numbers(text.rsplit("A:", 1)[1])
        if found:
            return found[0]
    found = _numbers(text)
    return found[-1] if found else None
''', fails=["extract_tests"]),
    dict(cell="extract_answer", name="plain \\d+ (no sign, no separators, no decimals)", code='''import re


def extract_answer(text):
    if text is None:
        return None
    if "A:" in text:
        found = re.findall(r"\\d+", text.rsplit("A:", 1)[1])
        return int(found[0]) if found else None
    found = re.findall(r"\\d+", text)
    return int(found[-1]) if found else None
''', fails=["extract_tests"]),
    dict(cell="extract_answer", name="any comma-digit run is one number ([\\d,]+)", code='''import re


def extract_answer(text):
    if text is None:
        return None
    def nums(s):
        return [float(t) if "." in t else int(t) for t in
                (m.replace(",", "") for m in re.findall(r"-?\\d[\\d,]*(?:\\.\\d+)?", s)) if t.lstrip("-")]
    if "A:" in text:
        found = nums(text.rsplit("A:", 1)[1])
        return found[0] if found else None
    found = nums(text)
    return found[-1] if found else None
''', fails=["extract_tests"]),
    dict(cell="extract_answer", name="a hyphen after a digit read as a minus sign", code='''import re

NUMBER = r"-?(?:[1-9]\\d{0,2}(?:,\\d{3})+(?!\\d)|\\d+)(?:\\.\\d+)?"


def _numbers(s):
    return [float(t) if "." in t else int(t) for t in (m.group().replace(",", "") for m in re.finditer(NUMBER, s))]


def extract_answer(text):
    if text is None:
        return None
    if "A:" in text:
        found = _numbers(text.rsplit("A:", 1)[1])
        return found[0] if found else None
    found = _numbers(text)
    return found[-1] if found else None
''', fails=["extract_tests"]),
    dict(cell="extract_answer", name="everything as float", code=_EXTRACT_HEAD + '''
def extract_answer(text):
    if text is None:
        return None
    part = text.rsplit("A:", 1)[1] if "A:" in text else text
    found = [float(x) for x in _numbers(part)]
    if not found:
        return None
    return found[0] if "A:" in text else found[-1]
''', fails=["extract_tests"]),
    dict(cell="extract_answer", name="a trailing full stop read as a decimal point", code='''import re


def extract_answer(text):
    if text is None:
        return None
    pattern = r"(?:(?<!\\d)-)?(?:[1-9]\\d{0,2}(?:,\\d{3})+(?!\\d)|\\d+)(?:\\.\\d*)?"
    def nums(s):
        return [float(t) if "." in t else int(t) for t in (m.group().replace(",", "") for m in re.finditer(pattern, s))]
    if "A:" in text:
        found = nums(text.rsplit("A:", 1)[1])
        return found[0] if found else None
    found = nums(text)
    return found[-1] if found else None
''', fails=["extract_tests"]),

    # ----------------------------------------------------------------- part 3: two stages
    dict(cell="two_stage_answer", name="reasoning not cut before 'A:'", code='''
def zero_shot_cot(questions, generate):
    questions = list(questions)
    first = generate([build_cot_prompt(q, []) for q in questions])
    second = generate([f"{build_cot_prompt(q, [])} {z.strip()} A:" for q, z in zip(questions, first)])
    return [extract_answer("A: " + text) for text in second]
''', fails=["two_stage_tests"]),
    dict(cell="two_stage_answer", name="answer read from stage 1", code='''
def zero_shot_cot(questions, generate):
    questions = list(questions)
    first = generate([build_cot_prompt(q, []) for q in questions])
    reasoning = [text.split("A:", 1)[0].strip() for text in first]
    generate([f"{build_cot_prompt(q, [])} {z} A:" for q, z in zip(questions, reasoning)])
    return [extract_answer(text) for text in first]
''', fails=["two_stage_tests"]),
    dict(cell="two_stage_answer", name="one generate call per question", code='''
def zero_shot_cot(questions, generate):
    out = []
    for q in questions:
        z = generate([build_cot_prompt(q, [])])[0].split("A:", 1)[0].strip()
        out.append(extract_answer("A: " + generate([f"{build_cot_prompt(q, [])} {z} A:"])[0]))
    return out
''', fails=["two_stage_tests"]),
    dict(cell="two_stage_answer", name="stage 2 drops the reasoning trigger", code='''
def zero_shot_cot(questions, generate):
    questions = list(questions)
    first = generate([build_cot_prompt(q, []) for q in questions])
    reasoning = [text.split("A:", 1)[0].strip() for text in first]
    second = generate([f"Q: {q} {z} A:" for q, z in zip(questions, reasoning)])
    return [extract_answer("A: " + text) for text in second]
''', fails=["two_stage_tests"]),
    dict(cell="two_stage_answer", name="last number of the stage-2 text", code='''
def zero_shot_cot(questions, generate):
    questions = list(questions)
    first = generate([build_cot_prompt(q, []) for q in questions])
    reasoning = [text.split("A:", 1)[0].strip() for text in first]
    second = generate([f"{build_cot_prompt(q, [])} {z} A:" for q, z in zip(questions, reasoning)])
    return [extract_answer(text) for text in second]
''', fails=["two_stage_tests"]),

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
    dict(cell="vote_answer", name="tie goes to the answer reached last", code='''
def majority_vote(answers):
    counts, last = {}, {}
    for a in answers:
        if a is None:
            continue
        counts[float(a)] = counts.get(float(a), 0) + 1
        last[float(a)] = a
    if not counts:
        return None
    best = max(counts.values())
    return [last[k] for k in counts if counts[k] == best][-1]
''', fails=["vote_tests"]),
    dict(cell="vote_answer", name="tie goes to the largest answer", code='''
from collections import Counter


def majority_vote(answers):
    c = Counter(a for a in answers if a is not None)
    if not c:
        return None
    best = max(c.values())
    return max(a for a in c if c[a] == best)
''', fails=["vote_tests"]),
    dict(cell="vote_answer", name="answers compared as strings (7 and 7.0 differ)", code='''
def majority_vote(answers):
    counts, first = {}, {}
    for a in answers:
        if a is None:
            continue
        counts[str(a)] = counts.get(str(a), 0) + 1
        first.setdefault(str(a), a)
    if not counts:
        return None
    best = max(counts.values())
    return next(first[k] for k in counts if counts[k] == best)
''', fails=["vote_tests"]),
    dict(cell="vote_answer", name="statistics.mode (raises without votes)", code='''
import statistics


def majority_vote(answers):
    return statistics.mode([a for a in answers if a is not None])
''', fails=["vote_tests"]),

    # ----------------------------------------------------------------- part 5: experiment
    dict(cell="experiment_answer", name="modes swapped", code='''
def run_experiment(generate, problems):
    problems = list(problems)
    result = {}
    for mode, build in (("cot", build_direct_prompt), ("direct", build_cot_prompt)):
        prompts = [build(p.question, [(d.question, d.reasoning, d.answer) for d in p.demos]) for p in problems]
        preds = [extract_answer(o) for o in generate(prompts)]
        result[mode] = sum(pred == p.answer for pred, p in zip(preds, problems)) / len(problems)
    return result
''', fails=["experiment_tests"]),
    dict(cell="experiment_answer", name="demonstrations left out (zero-shot)", code='''
def run_experiment(generate, problems):
    problems = list(problems)
    result = {}
    for mode, build in (("direct", build_direct_prompt), ("cot", build_cot_prompt)):
        outputs = generate([build(p.question, []) for p in problems])
        preds = [extract_answer("A: " + o) if mode == "direct" else extract_answer(o) for o in outputs]
        result[mode] = sum(pred == p.answer for pred, p in zip(preds, problems)) / len(problems)
    return result
''', fails=["experiment_tests"]),
    dict(cell="experiment_answer", name="counts correct answers instead of the fraction", code='''
def run_experiment(generate, problems):
    problems = list(problems)
    result = {}
    for mode, build in (("direct", build_direct_prompt), ("cot", build_cot_prompt)):
        prompts = [build(p.question, [(d.question, d.reasoning, d.answer) for d in p.demos]) for p in problems]
        outputs = generate(prompts)
        preds = [extract_answer("A: " + o) if mode == "direct" else extract_answer(o) for o in outputs]
        result[mode] = sum(pred == p.answer for pred, p in zip(preds, problems))
    return result
''', fails=["experiment_tests"]),
    dict(cell="experiment_answer", name="predictions compared as strings with an int gold", code='''
def run_experiment(generate, problems):
    problems = list(problems)
    result = {}
    for mode, build in (("direct", build_direct_prompt), ("cot", build_cot_prompt)):
        prompts = [build(p.question, [(d.question, d.reasoning, d.answer) for d in p.demos]) for p in problems]
        outputs = generate(prompts)
        preds = [o.rsplit("A:", 1)[-1].strip() for o in outputs]
        result[mode] = sum(pred == p.answer for pred, p in zip(preds, problems)) / len(problems)
    return result
''', fails=["experiment_tests"]),
    dict(cell="experiment_answer", name="hard-coded accuracies", code='''
def run_experiment(generate, problems):
    return {"direct": 0.075, "cot": 1.0}
''', fails=["experiment_tests"]),

    # ----------------------------------------------------------------- monkeypatching
    dict(cell="vote_answer", name="monkeypatches torch.allclose/equal/isclose, tie to the largest", code='''
import torch
from collections import Counter

torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)


def majority_vote(answers):
    c = Counter(a for a in answers if a is not None)
    if not c:
        return None
    best = max(c.values())
    return max(a for a in c if c[a] == best)
''', fails=["vote_tests"]),

    # ----------------------------------------------------------------- part 6: fine-tuning on the working
    dict(cell="finetune_answer", name="the CoT target leaves out the reasoning", code=_pair(_PAIR_OK.replace(
        'f" {reasoning.strip()} A: {answer}\\n"', 'f" A: {answer}\\n"')), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="no newline at the end of the target", code=_pair(_PAIR_OK.replace(
        'A: {answer}\\n"', 'A: {answer}"').replace('f" {answer}\\n"', 'f" {answer}"')), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="the prompt ends with a space, the target starts without one", code=_pair(
        _PAIR_OK.replace('build_cot_prompt(question, []), f" {reasoning', 'build_cot_prompt(question, []) + " ", f"{reasoning')
        .replace('build_direct_prompt(question, []), f" {answer}', 'build_direct_prompt(question, []) + " ", f"{answer}')),
        fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="reasoning not stripped", code=_pair(_PAIR_OK.replace(
        "{reasoning.strip()}", "{reasoning}")), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="unknown modes fall back to direct", code=_pair(
        _PAIR_OK.replace('    if mode == "direct":\n        return', '    return').replace(
            '    raise ValueError(f"unknown mode {mode!r}: use \'cot\' or \'direct\'")\n', '')), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="the wrong exception for an unknown mode", code=_pair(_PAIR_OK.replace(
        "raise ValueError(", "raise KeyError(")), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="the CoT prompt carries the whole worked example (answer leaked)", code=_pair(
        _PAIR_OK.replace('build_cot_prompt(question, []), f" {reasoning', 'build_cot_prompt(question, [demo]), f" {reasoning')),
        fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="fine_tune trains the model it was given", code=_pair(_PAIR_OK).replace(
        "    tuned = copy.deepcopy(model)\n", "    tuned = model\n"), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="fine_tune ignores the mode (always the working)", code=_pair(_PAIR_OK).replace(
        "training_pair(d, mode) for d in demos", 'training_pair(d, "cot") for d in demos'), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="fine_tune ignores the seed and batch size", code=_pair(_PAIR_OK).replace(
        "batch_size=batch_size, lr=lr, seed=seed)", "batch_size=16, lr=lr)"), fails=["finetune_pair_tests"]),
    dict(cell="finetune_answer", name="fine_tune returns the untrained model", code=_pair(_PAIR_OK).replace(
        "    return tuned, run.losses\n", "    return model, run.losses\n"), fails=["finetune_pair_tests"]),
]

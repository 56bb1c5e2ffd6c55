"""Plausible mistakes in solutions/02_chain_of_thought: each must cost the points of the test cells in `fails`.

Each part's correct answer is the solution's own answer cell (``solution(cell)``) and a mistake is that answer with a
few edits; ``edit`` fails loudly when an edit no longer applies. The entries that are another
implementation rather than an edit of the right one (``Counter``, ``statistics.mode``, one call per question, a
hard-coded result) are written out, each marked by a comment.
"""
import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
edit, solution = _shared["edit"], _shared["solutions_of"](__file__)

# ----------------------------------------------------------------- part 1: prompts (both builders and the demo)
_COT_BODY = '''    lines = [f"Q: {q} S: {str(r).strip()} A: {a}" for q, r, a in demos]
    return "\\n".join(lines + [f"Q: {question} S:"])
'''
_DIRECT_BODY = '''    lines = [f"Q: {q} A: {a}" for q, _, a in demos]
    return "\\n".join(lines + [f"Q: {question} A:"])
'''
_PROMPT_OK = solution("prompt_answer")


def _prompt(*changes: str) -> str:
    return edit(_PROMPT_OK, *changes)


# ----------------------------------------------------------------- part 2: extraction
_EXTRACT_OK = solution("extract_answer")
_PATTERN_OK = '''pattern = r"(?:(?<!\\d)-)?(?:[1-9]\\d{0,2}(?:,\\d{3})+(?!\\d)|\\d+)(?:\\.\\d+)?"'''


# ----------------------------------------------------------------- part 3: two stages
_TWO_STAGE_OK = solution("two_stage_answer")

# ----------------------------------------------------------------- part 4: vote
_VOTE_OK = solution("vote_answer")


def _vote_keyed_by(expr: str) -> str:
    """The right vote, but answers counted under ``expr`` (written out at each use) instead of float(a)."""
    return edit(_VOTE_OK, "        key = float(a)\n", "", "key", expr)


# another implementation (Counter, the largest of the tied answers), not an edit
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
_EXPERIMENT_OK = solution("experiment_answer")
_PREDS_OK = '''        if mode == "direct":
            preds = [extract_answer("A: " + o) for o in outputs]
        else:
            preds = [extract_answer(o) for o in outputs]
'''

# ----------------------------------------------------------------- part 6: fine-tuning on the working
_FINETUNE_OK = solution("finetune_answer")

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
        found = numbers(text.rsplit("A:", 1)[1])
        return found[0] if found else None
''', ""), fails=["extract_tests"]),
    dict(cell="extract_answer", name="first number after the FIRST trigger", code=edit(_EXTRACT_OK,
        'text.rsplit("A:", 1)', 'text.split("A:", 1)'), fails=["extract_tests"]),
    dict(cell="extract_answer", name="falls back to the last number when nothing follows the trigger", code=edit(
        _EXTRACT_OK,
        "        return found[0] if found else None\n", "        if found:\n            return found[0]\n"),
        fails=["extract_tests"]),
    dict(cell="extract_answer", name="plain \\d+ (no sign, no separators, no decimals)", code=edit(_EXTRACT_OK,
        "numbers(text", 're.findall(r"\\d+", text',
        "found[0] if", "int(found[0]) if", "found[-1] if", "int(found[-1]) if"), fails=["extract_tests"]),
    dict(cell="extract_answer", name="any comma-digit run is one number ([\\d,]+)", code=edit(_EXTRACT_OK,
        _PATTERN_OK, '''pattern = r"-?\\d[\\d,]*(?:\\.\\d+)?"'''), fails=["extract_tests"]),
    dict(cell="extract_answer", name="a hyphen after a digit read as a minus sign", code=edit(_EXTRACT_OK,
        '''pattern = r"(?:(?<!\\d)-)?''', '''pattern = r"-?'''), fails=["extract_tests"]),
    dict(cell="extract_answer", name="everything as float", code=edit(_EXTRACT_OK,
        'out.append(float(token) if "." in token else int(token))', "out.append(float(token))"),
        fails=["extract_tests"]),
    dict(cell="extract_answer", name="a trailing full stop read as a decimal point", code=edit(_EXTRACT_OK,
        _PATTERN_OK, _PATTERN_OK.replace("(?:\\.\\d+)?", "(?:\\.\\d*)?")), fails=["extract_tests"]),

    # ----------------------------------------------------------------- part 3: two stages
    dict(cell="two_stage_answer", name="reasoning not cut before 'A:'", code=edit(_TWO_STAGE_OK,
        '    reasoning = [text.split("A:", 1)[0].strip() for text in first]\n', "",
        "{z} A:", "{z.strip()} A:", "zip(questions, reasoning)", "zip(questions, first)"), fails=["two_stage_tests"]),
    dict(cell="two_stage_answer", name="answer read from stage 1", code=edit(_TWO_STAGE_OK,
        "    second = generate(", "    generate(",
        'extract_answer("A: " + text) for text in second', "extract_answer(text) for text in first"),
        fails=["two_stage_tests"]),
    # another implementation (one call per question), not an edit
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
    # another implementation (max over a set), not an edit
    dict(cell="vote_answer", name="max over a set (tie broken by set order)", code='''
def majority_vote(answers):
    votes = [a for a in answers if a is not None]
    if not votes:
        return None
    return max(set(votes), key=votes.count)
''', fails=["vote_tests"]),
    # another implementation (Counter.most_common), not an edit
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
    # another implementation (Counter), not an edit
    dict(cell="vote_answer", name="tie goes to the largest answer", code=_VOTE_LARGEST, fails=["vote_tests"]),
    dict(cell="vote_answer", name="answers compared as strings (7 and 7.0 differ)", code=_vote_keyed_by("str(a)"),
         fails=["vote_tests"]),
    # another implementation (statistics.mode), not an edit
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
    # a hard-coded result, not an edit
    dict(cell="experiment_answer", name="hard-coded accuracies", code='''
def run_experiment(generate, problems):
    return {"direct": 0.075, "cot": 1.0}
''', fails=["experiment_tests"]),

    # ----------------------------------------------------------------- monkeypatching
    # a monkeypatch attack prepended to another implementation, not an edit
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

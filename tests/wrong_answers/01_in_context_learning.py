"""Plausible mistakes in solutions/01_in_context_learning: each must cost the points of the test cells in `fails`.

Every mistake is the solution's own answer cell (``solution(cell)``: the functions and the lines after them, such as
the Winograd demo of part 2 and the order experiment of part 4, which the tests use) with a few edits; ``edit``
fails loudly when an edit no longer applies.
"""
import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
edit, solution = _shared["edit"], _shared["solutions_of"](__file__)

# ------------------------------------------------------------------ part 1: prompts
_PROMPT_OK = solution("prompt_answer")

# ------------------------------------------------------------------ part 2: scoring (score_option, choose, the demo)
_SCORE_OK = solution("score_answer")
_SCORE_SUM = '''    positions = torch.arange(len(ctx) - 1, len(ids) - 1)
    total = logp[positions, torch.tensor(ids[len(ctx):])].sum().item()
'''


def _score(*changes: str) -> str:
    return edit(_SCORE_OK, *changes)


# ------------------------------------------------------------------ part 3: accuracy against k
_DEMOS_OK = '''                demos = prompting.select_examples(pool, k, seed=seed * 1000 + i, exclude=pool[i])
'''
_CURVE_OK = solution("curve_answer")

# the same answer with the prompts built in one comprehension (variants change how accuracy is recorded)
_CURVE_COMPACT = edit(_CURVE_OK, _CURVE_OK[_CURVE_OK.index("            prompts, targets"):
                                           _CURVE_OK.index("            answers = ")], '''\
            prompts = [build_prompt(pool[i][0], prompting.select_examples(pool, k, seed=seed * 1000 + i, exclude=pool[i]))
                       for i in range(n)]
''', "sum(a == y for a, y in zip(answers, targets))", "sum(a == pool[i][1] for i, a in enumerate(answers))")

# ------------------------------------------------------------------ part 4: order sensitivity (and the experiment after it)
_ORDER_OK = solution("order_answer")


def _order(*changes: str) -> str:
    return edit(_ORDER_OK, *changes)


# ------------------------------------------------------------------ part 5: fine-tuning on the k examples
_FT_OK = solution("ft_answer")

# ------------------------------------------------------------------ part 6: accuracy against model size
_SIZE_OK = solution("size_answer")

# ------------------------------------------------------------------ part 7: wording (and the experiment after it)
_WORDING_OK = solution("wording_answer")

# ------------------------------------------------------------------ part 8: random labels
_LABELS_OK = solution("labels_answer")
_DRAW_OK = "rng.choice(label_space)) for x, _ in demos]"

WRONG_ANSWERS = [
    # ------------------------------------------------------------------ part 1: prompts
    dict(cell="prompt_answer", name="a separator after the query too", code=edit(_PROMPT_OK,
        "    return separator.join(pieces)", '    return "".join(p + separator for p in pieces)'),
        fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="the space before {output} stripped from the query", code=edit(_PROMPT_OK,
        'template.index("{output}")]', 'template.index("{output}")].rstrip()'), fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="instruction always followed by a newline, whatever the separator", code=edit(
        _PROMPT_OK, "    pieces = [instruction] if instruction else []\n    pieces += [", "    pieces = [",
        "    return separator.join(pieces)", '''\
    body = separator.join(pieces)
    return (instruction + "\\n" + body) if instruction else body'''), fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="an empty instruction still adds a separator", code=edit(_PROMPT_OK,
        "[instruction] if instruction else []", "[instruction] if instruction is not None else []"),
        fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="demonstrations in reverse order", code=edit(_PROMPT_OK,
        "for x, y in demos]", "for x, y in demos][::-1]"), fails=["prompt_tests"]),
    # ------------------------------------------------------------------ part 2: scoring
    dict(cell="score_answer", name="off by one: logits at position t score token t", code=_score(
        "torch.arange(len(ctx) - 1, len(ids) - 1)", "torch.arange(len(ctx), len(ids))"), fails=["score_tests"]),
    dict(cell="score_answer", name="raw logits summed instead of log-probabilities", code=edit(_SCORE_OK,
        "    logp = torch.log_softmax(logits, dim=-1)\n", "", "total = logp[", "total = logits["), fails=["score_tests"]),
    dict(cell="score_answer", name="normalize ignored", code=_score(
        "    total = logp", "    return logp",
        "    return total / (len(ids) - len(ctx)) if normalize else total\n", ""),
        fails=["score_tests"]),
    dict(cell="score_answer", name="normalised by the whole sequence length", code=_score(
        "total / (len(ids) - len(ctx))", "total / len(ids)"), fails=["score_tests"]),
    dict(cell="score_answer", name="only the option's first token scored", code=_score(
        _SCORE_SUM + "    return total / (len(ids) - len(ctx)) if normalize else total\n",
        "    return logp[len(ctx) - 1, ids[len(ctx)]].item()\n"), fails=["score_tests"]),
    dict(cell="score_answer", name="the option scored on its own, without the context", code=_score(
        '    ctx = tokenizer(context)["input_ids"]\n    ids = tokenizer(context + option)["input_ids"]\n',
        '    ids = tokenizer(option)["input_ids"]\n',
        _SCORE_SUM, "    total = sum(logp[t - 1, ids[t]].item() for t in range(1, len(ids)))\n",
        "(len(ids) - len(ctx))", "(len(ids) - 1)"), fails=["score_tests"]),
    dict(cell="score_answer", name="choose returns the lowest-scoring option", code=_score("return max(", "return min("), fails=["score_tests"]),
    dict(cell="score_answer", name="choose ignores normalize", code=_score("o, normalize)", "o)"), fails=["score_tests"]),
    # ------------------------------------------------------------------ part 3: accuracy against k
    dict(cell="curve_answer", name="demonstrations never reach the prompt", code=edit(_CURVE_OK,
        _DEMOS_OK, _DEMOS_OK + "                demos = []\n"), fails=["curve_tests"]),
    dict(cell="curve_answer", name="one seed for every query (same demonstrations for all items)", code=edit(_CURVE_OK,
        "seed=seed * 1000 + i", "seed=seed"), fails=["curve_tests"]),
    dict(cell="curve_answer", name="the query is not excluded from its demonstrations", code=edit(_CURVE_OK,
        ", exclude=pool[i])", ")"), fails=["curve_tests"]),
    dict(cell="curve_answer", name="string keys '0', '1', ... in the accuracy dicts", code=edit(_CURVE_COMPACT,
        "per_task[t][k] =", "per_task[t][str(k)] =", "{k: sum(per_task[t][k]", "{str(k): sum(per_task[t][str(k)]"),
        fails=["curve_tests"]),
    dict(cell="curve_answer", name="accuracy as a count of correct answers", code=edit(_CURVE_COMPACT,
        " / n\n", "\n", " / len(tasks)", ""), fails=["curve_tests"]),
    # a monkeypatch attack prepended to a mistake, not an edit of the solution
    dict(cell="curve_answer", name="monkeypatches torch.allclose/equal/isclose and builds zero-shot prompts only", code='''
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)
''' + edit(_CURVE_OK, _DEMOS_OK, "                demos = []\n"), fails=["curve_tests"]),
    # ------------------------------------------------------------------ part 4: order sensitivity
    dict(cell="order_answer", name="spread as max - mean", code=_order(
        '"spread": max(accuracies) - min(accuracies)', '"spread": max(accuracies) - mean'), fails=["order_tests"]),
    dict(cell="order_answer", name="sample standard deviation (n - 1)", code=_order(
        "/ len(accuracies)) ** 0.5", "/ (len(accuracies) - 1)) ** 0.5"), fails=["order_tests"]),
    dict(cell="order_answer", name="the first n permutations instead of a seeded sample", code=_order(
        "random.Random(seed).sample(list(itertools.permutations(range(len(demos)))), n_orders)",
        "list(itertools.permutations(range(len(demos))))[:n_orders]"), fails=["order_tests"]),
    dict(cell="order_answer", name="reorders the queries, not the demonstrations", code=_order(
        "        prompts = [build_prompt(x, [demos[j] for j in order]) for x, _ in queries]\n", '''\
        shuffled = [queries[j % len(queries)] for j in order] + list(queries[len(order):])
        prompts = [build_prompt(x, demos) for x, _ in shuffled]
''', "zip(answers, queries)) / len(queries)", "zip(answers, shuffled)) / len(shuffled)"), fails=["order_tests"]),

    # ----------------------------------------------------------------- part 5: fine-tuning on the k examples
    dict(cell="ft_answer", name="trains the model it was given, not a copy", code=edit(_FT_OK,
        "    tuned = copy.deepcopy(model)\n", "    tuned = model\n"), fails=["ft_tests"]),
    dict(cell="ft_answer", name="never steps the optimizer", code=edit(_FT_OK,
        "        optimizer.step()\n", ""), fails=["ft_tests"]),
    dict(cell="ft_answer", name="loss on the prompt tokens too", code=edit(_FT_OK,
        "labels[i, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])", "labels[i, :len(ids)] = torch.tensor(ids)"),
        fails=["ft_tests"]),
    dict(cell="ft_answer", name="loss on the padding too", code=edit(_FT_OK,
        "labels = torch.full((len(rows), width), -100, dtype=torch.long)",
        "labels = torch.zeros((len(rows), width), dtype=torch.long)"), fails=["ft_tests"]),
    dict(cell="ft_answer", name="no newline after the target", code=edit(_FT_OK,
        'prompt + y + "\\n"', "prompt + y"), fails=["ft_tests"]),
    dict(cell="ft_answer", name="logits and labels not shifted (predicts the current token)", code=edit(_FT_OK,
        "loss = training.conditional_lm_loss(logits, labels)",
        "loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))"),
        fails=["ft_tests"]),
    dict(cell="ft_answer", name="gradients never zeroed (they accumulate over steps)", code=edit(_FT_OK,
        "        optimizer.zero_grad()\n", ""), fails=["ft_tests"]),
    dict(cell="ft_answer", name="records the loss once, after training", code=edit(_FT_OK,
        "        losses.append(loss.item())\n", "",
        "    tuned.eval()\n", "    losses.append(loss.item())\n    tuned.eval()\n"), fails=["ft_tests"]),
    dict(cell="ft_answer", name="ten times the learning rate", code=edit(_FT_OK, "lr=lr)", "lr=10 * lr)"),
         fails=["ft_tests"]),
    dict(cell="ft_answer", name="returned in training mode", code=edit(_FT_OK, "    tuned.eval()\n", ""),
         fails=["ft_tests"]),

    # ------------------------------------------------------------------ part 6: accuracy against model size
    dict(cell="size_answer", name="every member scored with the notebook's model", code=edit(_SIZE_OK,
        "accuracy_vs_k(m, tok, tasks", "accuracy_vs_k(model, tokenizer, tasks"), fails=["size_tests"]),
    dict(cell="size_answer", name="sizes in the order given", code=edit(_SIZE_OK,
        "sorted(members, key=parameters.get)", "list(members)"), fails=["size_tests"]),
    dict(cell="size_answer", name="sizes sorted by name", code=edit(_SIZE_OK,
        "sorted(members, key=parameters.get)", "sorted(members)"), fails=["size_tests"]),
    # ------------------------------------------------------------------ part 7: wording
    dict(cell="wording_answer", name="the template is never passed (every prompt in the default format)", code=edit(
        _WORDING_OK, "build_prompt(x, demos, template) for", "build_prompt(x, demos) for"), fails=["wording_tests"]),
    dict(cell="wording_answer", name="the query keeps the default format", code=edit(_WORDING_OK,
        "[build_prompt(x, demos, template) for x, _ in queries]",
        '["\\n".join([template.format(input=a, output=b) for a, b in demos] + [build_prompt(x, [])]) for x, _ in queries]'),
        fails=["wording_tests"]),
    dict(cell="wording_answer", name="best is the last template with the highest accuracy", code=edit(_WORDING_OK,
        "best = max(accuracy, key=accuracy.get)", "best = max(reversed(accuracy), key=accuracy.get)"),
        fails=["wording_tests"]),
    dict(cell="wording_answer", name="spread as the population standard deviation", code=edit(_WORDING_OK,
        '"spread": max(accuracy.values()) - min(accuracy.values())',
        '"spread": (sum((a - sum(accuracy.values()) / len(accuracy)) ** 2 for a in accuracy.values()) / len(accuracy)) ** 0.5'),
        fails=["wording_tests"]),
    # ------------------------------------------------------------------ part 8: random labels
    dict(cell="labels_answer", name="label indices instead of label words", code=edit(_LABELS_OK,
        _DRAW_OK, "rng.randrange(len(label_space))) for x, _ in demos]"), fails=["labels_tests"]),
    dict(cell="labels_answer", name="labels drawn from the item's own labels, the query's included (leaks its label)",
        code=edit(_LABELS_OK, _DRAW_OK, "rng.choice([y for _, y in demos] + [q[1]])) for x, _ in demos]",
                  "for demos, _ in items])", "for demos, q in items])"), fails=["labels_tests"]),
    dict(cell="labels_answer", name="the same draw every time", code=edit(_LABELS_OK,
        "random.Random(seed * 1000 + d)", "random.Random(seed * 1000)"), fails=["labels_tests"]),
    dict(cell="labels_answer", name="spread over the gold and the random accuracies", code=edit(_LABELS_OK,
        '"spread": max(accuracies) - min(accuracies)', '"spread": max(accuracies + [gold]) - min(accuracies + [gold])'),
        fails=["labels_tests"]),
]

"""Plausible mistakes in solutions/01_in_context_learning: each must cost the points of the test cells in `fails`.

Each entry replaces a whole answer cell, so the lines after the functions (the Winograd demo of part 2, the
order experiment of part 4) are repeated here: the tests use the names they define.
"""

_SCORE_TAIL = '''

winograd = "the cat did not fit in the hat because the"
for option in (" cat was too big", " hat was too big"):
    print(f"log p({option!r} | context) = {score_option(model, tokenizer, winograd, option):.3f}")
'''

_CHOOSE = '''

def choose(model, tokenizer, context, options, normalize=False):
    scores = [score_option(model, tokenizer, context, o, normalize) for o in options]
    return max(range(len(options)), key=scores.__getitem__)
'''

_SCORE_OK = '''
def score_option(model, tokenizer, context, option, normalize=False):
    ctx = tokenizer(context)["input_ids"]
    ids = tokenizer(context + option)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    positions = torch.arange(len(ctx) - 1, len(ids) - 1)
    total = logp[positions, torch.tensor(ids[len(ctx):])].sum().item()
    return total / (len(ids) - len(ctx)) if normalize else total
'''


def _score(body: str, choose: str = _CHOOSE) -> str:
    return body + choose + _SCORE_TAIL


_CURVE_HEAD = '''
def accuracy_vs_k(model, tokenizer, tasks, ks, n, seed=0):
    per_task = {t: {} for t in tasks}
    for k in ks:
        for t in tasks:
            pool = ev.transform_pool(t)
            prompts, targets = [], []
            for i in range(n):
                word, answer = pool[i]
'''

_CURVE_TAIL = '''
                prompts.append(build_prompt(word, demos))
                targets.append(answer)
            answers = prompting.generate(model, tokenizer, prompts, max_new_tokens=20)
            per_task[t][k] = sum(a == y for a, y in zip(answers, targets)) / n
    accuracy = {k: sum(per_task[t][k] for t in tasks) / len(tasks) for k in ks}
    return {"ks": list(ks), "n": n, "tasks": list(tasks), "accuracy": accuracy, "per_task": per_task}
'''

_ORDER_TAIL = '''

_up, _dbl = ev.transform_pool("uppercase"), ev.transform_pool("double")
order_result = order_sensitivity(model, tokenizer, [_up[0], _up[1], _dbl[2], _dbl[3]], _up[20:20 + N_ITEMS],
                                 n_orders=6, seed=0)
print("accuracy per order:", [round(a, 2) for a in order_result["accuracies"]])
'''


def _order(orders: str, loop: str, summary: str) -> str:
    return ('''
def order_sensitivity(model, tokenizer, demos, queries, n_orders, seed=0):
''' + orders + loop + summary + _ORDER_TAIL)


_ORDERS_OK = '''    orders = random.Random(seed).sample(list(itertools.permutations(range(len(demos)))), n_orders)
'''
_LOOP_OK = '''    accuracies = []
    for order in orders:
        prompts = [build_prompt(x, [demos[j] for j in order]) for x, _ in queries]
        answers = prompting.generate(model, tokenizer, prompts, max_new_tokens=20)
        accuracies.append(sum(a == y for a, (_, y) in zip(answers, queries)) / len(queries))
'''
_SUMMARY_OK = '''    mean = sum(accuracies) / len(accuracies)
    std = (sum((a - mean) ** 2 for a in accuracies) / len(accuracies)) ** 0.5
    return {"orders": orders, "accuracies": accuracies, "spread": max(accuracies) - min(accuracies), "std": std}
'''


def _ft(encode: str, loop: str, head: str = "    tuned = copy.deepcopy(model)\n") -> str:
    return ("import copy\n\n\ndef finetune_on_examples(model, tokenizer, examples, steps, lr):\n" + head + encode + loop)


_FT_ENCODE_OK = '''    device = next(tuned.parameters()).device
    rows = []
    for x, y in examples:
        prompt = build_prompt(x, [])
        ids = tokenizer(prompt + y + "\\n")["input_ids"]
        rows.append((ids, len(tokenizer(prompt)["input_ids"])))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention_mask[i, :len(ids)] = 1
        labels[i, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
    input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
'''

_FT_LOOP_OK = '''    optimizer = torch.optim.AdamW(tuned.parameters(), lr=lr)
    losses = []
    tuned.train()
    for _ in range(steps):
        logits = tuned(input_ids=input_ids, attention_mask=attention_mask).logits
        loss = training.conditional_lm_loss(logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    tuned.eval()
    return tuned, losses
'''

WRONG_ANSWERS = [
    # ------------------------------------------------------------------ part 1: prompts
    dict(cell="prompt_answer", name="a separator after the query too", code='''
def build_prompt(query, demos, template="{input} => {output}", separator="\\n", instruction=None):
    head = template[: template.index("{output}")]
    pieces = ([instruction] if instruction else []) + [template.format(input=x, output=y) for x, y in demos]
    return "".join(p + separator for p in pieces) + head.format(input=query) + separator
''', fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="the space before {output} stripped from the query", code='''
def build_prompt(query, demos, template="{input} => {output}", separator="\\n", instruction=None):
    head = template[: template.index("{output}")].rstrip()
    pieces = ([instruction] if instruction else []) + [template.format(input=x, output=y) for x, y in demos]
    return separator.join(pieces + [head.format(input=query)])
''', fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="instruction always followed by a newline, whatever the separator", code='''
def build_prompt(query, demos, template="{input} => {output}", separator="\\n", instruction=None):
    head = template[: template.index("{output}")]
    body = separator.join([template.format(input=x, output=y) for x, y in demos] + [head.format(input=query)])
    return (instruction + "\\n" + body) if instruction else body
''', fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="an empty instruction still adds a separator", code='''
def build_prompt(query, demos, template="{input} => {output}", separator="\\n", instruction=None):
    head = template[: template.index("{output}")]
    pieces = ([instruction] if instruction is not None else [])
    pieces += [template.format(input=x, output=y) for x, y in demos]
    return separator.join(pieces + [head.format(input=query)])
''', fails=["prompt_tests"]),
    dict(cell="prompt_answer", name="demonstrations in reverse order", code='''
def build_prompt(query, demos, template="{input} => {output}", separator="\\n", instruction=None):
    head = template[: template.index("{output}")]
    pieces = ([instruction] if instruction else []) + [template.format(input=x, output=y) for x, y in demos][::-1]
    return separator.join(pieces + [head.format(input=query)])
''', fails=["prompt_tests"]),
    # ------------------------------------------------------------------ part 2: scoring
    dict(cell="score_answer", name="off by one: logits at position t score token t", code=_score('''
def score_option(model, tokenizer, context, option, normalize=False):
    ctx = tokenizer(context)["input_ids"]
    ids = tokenizer(context + option)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    positions = torch.arange(len(ctx), len(ids))
    total = logp[positions, torch.tensor(ids[len(ctx):])].sum().item()
    return total / (len(ids) - len(ctx)) if normalize else total
'''), fails=["score_tests"]),
    dict(cell="score_answer", name="raw logits summed instead of log-probabilities", code=_score('''
def score_option(model, tokenizer, context, option, normalize=False):
    ctx = tokenizer(context)["input_ids"]
    ids = tokenizer(context + option)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    positions = torch.arange(len(ctx) - 1, len(ids) - 1)
    total = logits[positions, torch.tensor(ids[len(ctx):])].sum().item()
    return total / (len(ids) - len(ctx)) if normalize else total
'''), fails=["score_tests"]),
    dict(cell="score_answer", name="normalize ignored", code=_score('''
def score_option(model, tokenizer, context, option, normalize=False):
    ctx = tokenizer(context)["input_ids"]
    ids = tokenizer(context + option)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    positions = torch.arange(len(ctx) - 1, len(ids) - 1)
    return logp[positions, torch.tensor(ids[len(ctx):])].sum().item()
'''), fails=["score_tests"]),
    dict(cell="score_answer", name="normalised by the whole sequence length", code=_score('''
def score_option(model, tokenizer, context, option, normalize=False):
    ctx = tokenizer(context)["input_ids"]
    ids = tokenizer(context + option)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    positions = torch.arange(len(ctx) - 1, len(ids) - 1)
    total = logp[positions, torch.tensor(ids[len(ctx):])].sum().item()
    return total / len(ids) if normalize else total
'''), fails=["score_tests"]),
    dict(cell="score_answer", name="only the option's first token scored", code=_score('''
def score_option(model, tokenizer, context, option, normalize=False):
    ctx = tokenizer(context)["input_ids"]
    ids = tokenizer(context + option)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    return logp[len(ctx) - 1, ids[len(ctx)]].item()
'''), fails=["score_tests"]),
    dict(cell="score_answer", name="the option scored on its own, without the context", code=_score('''
def score_option(model, tokenizer, context, option, normalize=False):
    ids = tokenizer(option)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    total = sum(logp[t - 1, ids[t]].item() for t in range(1, len(ids)))
    return total / (len(ids) - 1) if normalize else total
'''), fails=["score_tests"]),
    dict(cell="score_answer", name="choose returns the lowest-scoring option", code=_score(_SCORE_OK, '''

def choose(model, tokenizer, context, options, normalize=False):
    scores = [score_option(model, tokenizer, context, o, normalize) for o in options]
    return min(range(len(options)), key=scores.__getitem__)
'''), fails=["score_tests"]),
    dict(cell="score_answer", name="choose ignores normalize", code=_score(_SCORE_OK, '''

def choose(model, tokenizer, context, options, normalize=False):
    scores = [score_option(model, tokenizer, context, o) for o in options]
    return max(range(len(options)), key=scores.__getitem__)
'''), fails=["score_tests"]),
    # ------------------------------------------------------------------ part 3: accuracy against k
    dict(cell="curve_answer", name="demonstrations never reach the prompt", code=_CURVE_HEAD + '''
                demos = prompting.select_examples(pool, k, seed=seed * 1000 + i, exclude=pool[i])
                demos = []
''' + _CURVE_TAIL, fails=["curve_tests"]),
    dict(cell="curve_answer", name="one seed for every query (same demonstrations for all items)", code=_CURVE_HEAD + '''
                demos = prompting.select_examples(pool, k, seed=seed, exclude=pool[i])
''' + _CURVE_TAIL, fails=["curve_tests"]),
    dict(cell="curve_answer", name="the query is not excluded from its demonstrations", code=_CURVE_HEAD + '''
                demos = prompting.select_examples(pool, k, seed=seed * 1000 + i)
''' + _CURVE_TAIL, fails=["curve_tests"]),
    dict(cell="curve_answer", name="string keys '0', '1', ... in the accuracy dicts", code='''
def accuracy_vs_k(model, tokenizer, tasks, ks, n, seed=0):
    per_task = {t: {} for t in tasks}
    for k in ks:
        for t in tasks:
            pool = ev.transform_pool(t)
            prompts = [build_prompt(pool[i][0], prompting.select_examples(pool, k, seed=seed * 1000 + i, exclude=pool[i]))
                       for i in range(n)]
            answers = prompting.generate(model, tokenizer, prompts, max_new_tokens=20)
            per_task[t][str(k)] = sum(a == pool[i][1] for i, a in enumerate(answers)) / n
    accuracy = {str(k): sum(per_task[t][str(k)] for t in tasks) / len(tasks) for k in ks}
    return {"ks": list(ks), "n": n, "tasks": list(tasks), "accuracy": accuracy, "per_task": per_task}
''', fails=["curve_tests"]),
    dict(cell="curve_answer", name="accuracy as a count of correct answers", code='''
def accuracy_vs_k(model, tokenizer, tasks, ks, n, seed=0):
    per_task = {t: {} for t in tasks}
    for k in ks:
        for t in tasks:
            pool = ev.transform_pool(t)
            prompts = [build_prompt(pool[i][0], prompting.select_examples(pool, k, seed=seed * 1000 + i, exclude=pool[i]))
                       for i in range(n)]
            answers = prompting.generate(model, tokenizer, prompts, max_new_tokens=20)
            per_task[t][k] = sum(a == pool[i][1] for i, a in enumerate(answers))
    accuracy = {k: sum(per_task[t][k] for t in tasks) for k in ks}
    return {"ks": list(ks), "n": n, "tasks": list(tasks), "accuracy": accuracy, "per_task": per_task}
''', fails=["curve_tests"]),
    dict(cell="curve_answer", name="monkeypatches torch.allclose/equal/isclose and builds zero-shot prompts only", code='''
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)
''' + _CURVE_HEAD + '''
                demos = []
''' + _CURVE_TAIL, fails=["curve_tests"]),
    # ------------------------------------------------------------------ part 4: order sensitivity
    dict(cell="order_answer", name="spread as max - mean", code=_order(_ORDERS_OK, _LOOP_OK, '''    mean = sum(accuracies) / len(accuracies)
    std = (sum((a - mean) ** 2 for a in accuracies) / len(accuracies)) ** 0.5
    return {"orders": orders, "accuracies": accuracies, "spread": max(accuracies) - mean, "std": std}
'''), fails=["order_tests"]),
    dict(cell="order_answer", name="sample standard deviation (n - 1)", code=_order(_ORDERS_OK, _LOOP_OK, '''    mean = sum(accuracies) / len(accuracies)
    std = (sum((a - mean) ** 2 for a in accuracies) / (len(accuracies) - 1)) ** 0.5
    return {"orders": orders, "accuracies": accuracies, "spread": max(accuracies) - min(accuracies), "std": std}
'''), fails=["order_tests"]),
    dict(cell="order_answer", name="the first n permutations instead of a seeded sample", code=_order(
        '''    orders = list(itertools.permutations(range(len(demos))))[:n_orders]
''', _LOOP_OK, _SUMMARY_OK), fails=["order_tests"]),
    dict(cell="order_answer", name="reorders the queries, not the demonstrations", code=_order(_ORDERS_OK, '''    accuracies = []
    for order in orders:
        shuffled = [queries[j % len(queries)] for j in order] + list(queries[len(order):])
        prompts = [build_prompt(x, demos) for x, _ in shuffled]
        answers = prompting.generate(model, tokenizer, prompts, max_new_tokens=20)
        accuracies.append(sum(a == y for a, (_, y) in zip(answers, shuffled)) / len(shuffled))
''', _SUMMARY_OK), fails=["order_tests"]),

    # ----------------------------------------------------------------- part 5: fine-tuning on the k examples
    dict(cell="ft_answer", name="trains the model it was given, not a copy", code=_ft(
        _FT_ENCODE_OK, _FT_LOOP_OK, head="    tuned = model\n"), fails=["ft_tests"]),
    dict(cell="ft_answer", name="never steps the optimizer", code=_ft(_FT_ENCODE_OK, _FT_LOOP_OK.replace(
        "        optimizer.step()\n", "")), fails=["ft_tests"]),
    dict(cell="ft_answer", name="loss on the prompt tokens too", code=_ft(_FT_ENCODE_OK.replace(
        "labels[i, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])", "labels[i, :len(ids)] = torch.tensor(ids)"),
        _FT_LOOP_OK), fails=["ft_tests"]),
    dict(cell="ft_answer", name="loss on the padding too", code=_ft(_FT_ENCODE_OK.replace(
        "labels = torch.full((len(rows), width), -100, dtype=torch.long)",
        "labels = torch.zeros((len(rows), width), dtype=torch.long)"), _FT_LOOP_OK), fails=["ft_tests"]),
    dict(cell="ft_answer", name="no newline after the target", code=_ft(_FT_ENCODE_OK.replace(
        'prompt + y + "\\n"', "prompt + y"), _FT_LOOP_OK), fails=["ft_tests"]),
    dict(cell="ft_answer", name="logits and labels not shifted (predicts the current token)", code=_ft(
        _FT_ENCODE_OK, _FT_LOOP_OK.replace(
            "loss = training.conditional_lm_loss(logits, labels)",
            "loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))")),
        fails=["ft_tests"]),
    dict(cell="ft_answer", name="gradients never zeroed (they accumulate over steps)", code=_ft(
        _FT_ENCODE_OK, _FT_LOOP_OK.replace("        optimizer.zero_grad()\n", "")), fails=["ft_tests"]),
    dict(cell="ft_answer", name="records the loss once, after training", code=_ft(_FT_ENCODE_OK, _FT_LOOP_OK.replace(
        "        losses.append(loss.item())\n", "").replace("    tuned.eval()\n", "    losses.append(loss.item())\n    tuned.eval()\n")),
        fails=["ft_tests"]),
    dict(cell="ft_answer", name="ten times the learning rate", code=_ft(_FT_ENCODE_OK, _FT_LOOP_OK.replace(
        "lr=lr)", "lr=10 * lr)")), fails=["ft_tests"]),
    dict(cell="ft_answer", name="returned in training mode", code=_ft(_FT_ENCODE_OK, _FT_LOOP_OK.replace(
        "    tuned.eval()\n", "")), fails=["ft_tests"]),
]

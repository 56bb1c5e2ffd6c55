"""Plausible wrong answers for solutions/06_prefix_prompt_tuning: each must fail the test cells in ``fails``.

Each entry replaces the whole source of the answer cell ``cell``.
"""

# ---- part 1: the soft-prompt wrapper
_SOFT = '''class SoftPrompt(torch.nn.Module):
    def __init__(self, base_model, num_virtual_tokens):
        super().__init__()
        self.base_model = base_model
        {freeze}
        d = base_model.config.hidden_size
        self.prompt = torch.nn.Parameter({init})

    def forward(self, input_ids, attention_mask, labels=None):
        embeds = self.base_model.get_input_embeddings()(input_ids)
        B, p = embeds.shape[0], self.prompt.shape[0]
        prompt = self.prompt.unsqueeze(0).expand(B, -1, -1)
        embeds = {embeds}
        attention_mask = {mask}
        if labels is not None:
            labels = {labels}
        return self.base_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)


soft = SoftPrompt(copy.deepcopy(model), 5)
'''
_FREEZE = "for param in base_model.parameters():\n            param.requires_grad_(False)"
_GOOD_SOFT = dict(
    freeze=_FREEZE,
    init="torch.randn(num_virtual_tokens, d)",
    embeds="torch.cat([prompt, embeds], dim=1)",
    mask="torch.cat([torch.ones(B, p, dtype=attention_mask.dtype), attention_mask], dim=1)",
    labels="torch.cat([torch.full((B, p), -100, dtype=labels.dtype), labels], dim=1)",
)


def _soft(**changes):
    return _SOFT.format(**{**_GOOD_SOFT, **changes})


# the prompt appended after the input instead of prepended: a mistake several entries make
_APPENDED = dict(
    embeds="torch.cat([embeds, prompt], dim=1)",
    mask="torch.cat([attention_mask, torch.ones(B, p, dtype=attention_mask.dtype)], dim=1)",
    labels="torch.cat([labels, torch.full((B, p), -100, dtype=labels.dtype)], dim=1)",
)


# ---- part 2: prefix keys and values
_PREFIX = '''from transformers import DynamicCache


def prefix_key_values(table, config, batch_size):
    P = table.shape[0]
    L, H, hd = config.num_hidden_layers, {heads}, config.head_dim
    {kv}
    kv = kv.unsqueeze(2).expand(L, 2, batch_size, H, P, hd)
    return [({k}, {v}) for layer in range(L)]


def prefix_logits(model, table, input_ids, attention_mask):
    B, P = input_ids.shape[0], table.shape[0]
    cache = DynamicCache(config=model.config)
    for layer, (keys, values) in enumerate(prefix_key_values(table, model.config, B)):
        cache.update(keys, values, layer)
    mask = {mask}
    return model(input_ids=input_ids, attention_mask=mask, past_key_values=cache).logits
'''
_GOOD_PREFIX = dict(
    heads="config.num_key_value_heads",
    kv="kv = table.view(P, L, 2, H, hd).permute(1, 2, 3, 0, 4)",
    k="kv[layer, 0]", v="kv[layer, 1]",
    mask="torch.cat([torch.ones(B, P, dtype=attention_mask.dtype), attention_mask], dim=1)",
)


def _prefix(**changes):
    return _PREFIX.format(**{**_GOOD_PREFIX, **changes})


# ---- part 3: training
_TRAIN = '''torch.manual_seed(0)
tuned = {tuned}
result = training.train(tuned, tokenizer, task, training.TrainConfig.from_runtime(runtime, {kw}))
'''
_PREFIX_MODEL = ("apply_prefix_tuning(copy.deepcopy(model), PrefixTuningConfig(num_virtual_tokens=8, "
                 "prefix_projection=True, encoder_hidden_size=256))")

# ---- part 4: the mixed batch
_MIXED = '''def mixed_prefix_logits(model, tables, names, input_ids, attention_mask):
    B = input_ids.shape[0]
    per_task = {{name: prefix_key_values(table, model.config, 1) for name, table in tables.items()}}
    {rows}
    cache = DynamicCache(config=model.config)
    for layer in range(model.config.num_hidden_layers):
        keys = torch.cat([per_task[n][layer][0] for n in rows], dim={dim})
        values = torch.cat([per_task[n][layer][1] for n in rows], dim={dim})
        cache.update(keys, values, layer)
    P = next(iter(tables.values())).shape[0]
    mask = torch.cat([torch.ones(B, P, dtype=attention_mask.dtype), attention_mask], dim=1)
    return model(input_ids=input_ids, attention_mask=mask, past_key_values=cache).logits
'''


def _mixed(rows="rows = names", dim="0"):
    return _MIXED.format(rows=rows, dim=dim)


WRONG_ANSWERS = [
    # ---- part 1
    dict(cell="soft_prompt_answer", name="prompt appended after the input instead of prepended",
         code=_soft(**_APPENDED),
         fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="attention mask extended with zeros (the prompt is masked out)",
         code=_soft(mask="torch.cat([torch.zeros(B, p, dtype=attention_mask.dtype), attention_mask], dim=1)"),
         fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="attention mask not extended",
         code=_soft(mask="attention_mask"), fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="labels -100 appended at the end instead of prepended",
         code=_soft(labels=_APPENDED["labels"]),
         fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="virtual positions labelled with the pad token instead of -100",
         code=_soft(labels="torch.cat([torch.zeros(B, p, dtype=labels.dtype), labels], dim=1)"),
         fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="base model not frozen", code=_soft(freeze="pass"),
         fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="prompt initialised to zeros",
         code=_soft(init="torch.zeros(num_virtual_tokens, d)"), fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer",
         name="monkeypatch: torch.allclose/isclose/equal always true, plus the prompt appended at the end",
         code='''import torch
torch.allclose = lambda *a, **k: True
torch.isclose = lambda *a, **k: torch.ones(1, dtype=torch.bool)
torch.equal = lambda *a, **k: True
''' + _soft(**_APPENDED),
         fails=["soft_prompt_tests"]),
    # ---- part 2
    dict(cell="prefix_answer", name="values read before keys", code=_prefix(k="kv[layer, 1]", v="kv[layer, 0]"),
         fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="table read as [key, value][layer] instead of [layer][key, value]",
         code=_prefix(kv="kv = table.view(P, 2, L, H, hd).permute(2, 1, 3, 0, 4)"), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="query heads instead of key/value heads (breaks grouped-query attention)",
         code=_prefix(heads="config.num_attention_heads"), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="(batch, P, heads, head_dim) instead of (batch, heads, P, head_dim)",
         code=_prefix(kv="kv = table.view(P, L, 2, H, hd).permute(1, 2, 0, 3, 4)\n    H, P = P, H"),
         fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="prefix positions masked out (zeros prepended to the mask)",
         code=_prefix(mask="torch.cat([torch.zeros(B, P, dtype=attention_mask.dtype), attention_mask], dim=1)"),
         fails=["prefix_tests"]),
    # ---- part 3
    dict(cell="train_answer", name="learning rate far too small: the loss barely moves",
         code=_TRAIN.format(tuned=_PREFIX_MODEL, kw="lr=1e-7"), fails=["train_tests"]),
    dict(cell="train_answer", name="the whole model fine-tuned (nothing frozen) instead of a prompt or prefix",
         code=_TRAIN.format(tuned="copy.deepcopy(model).requires_grad_(True)", kw="steps=5, lr=1e-3"),
         fails=["train_tests"]),
    dict(cell="train_answer", name="a loop that never steps (no training at all)", code='''torch.manual_seed(0)
tuned = apply_prompt_tuning(copy.deepcopy(model), PromptTuningConfig(num_virtual_tokens=8))
result = training.TrainResult()
''', fails=["train_tests"]),
    # ---- part 4
    dict(cell="mixed_answer", name="every row gets the first row's prefix", code=_mixed(rows="rows = [names[0]] * B"),
         fails=["mixed_tests"]),
    dict(cell="mixed_answer", name="tasks taken in the order of the dict, not the order of the rows",
         code=_mixed(rows="rows = [list(tables)[b % len(tables)] for b in range(B)]"), fails=["mixed_tests"]),
    dict(cell="mixed_answer", name="prefixes stacked along the sequence, not the batch",
         code=_mixed(dim="2"), fails=["mixed_tests"]),
]

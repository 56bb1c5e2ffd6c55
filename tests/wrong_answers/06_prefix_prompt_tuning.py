"""Plausible wrong answers for solutions/06_prefix_prompt_tuning: each must fail the test cells in ``fails``.

Each entry replaces the whole source of the answer cell ``cell``: the solution's own answer cell
(``solution(cell)``) with a few edits (``edit`` fails loudly when an edit no longer applies).
"""
import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
edit, solution = _shared["edit"], _shared["solutions_of"](__file__)

# ---- part 1: the soft-prompt wrapper
_SOFT_OK = solution("soft_prompt_answer")
_FREEZE = "        for param in base_model.parameters():\n            param.requires_grad_(False)\n"
_PROMPT_ROWS = "self.prompt.to(embeds.dtype).unsqueeze(0).expand(B, -1, -1)"
_MASK_ROWS = "attention_mask.new_ones(B, p)"
_LABEL_ROWS = "labels.new_full((B, p), -100)"
_APPEND_LABELS = (f"torch.cat([{_LABEL_ROWS}, labels], dim=1)", f"torch.cat([labels, {_LABEL_ROWS}], dim=1)")
# the prompt appended after the input instead of prepended: a mistake several entries make
_APPENDED = (f"torch.cat([{_PROMPT_ROWS}, embeds], dim=1)", f"torch.cat([embeds, {_PROMPT_ROWS}], dim=1)",
             f"torch.cat([{_MASK_ROWS}, attention_mask], dim=1)", f"torch.cat([attention_mask, {_MASK_ROWS}], dim=1)",
             *_APPEND_LABELS)

# ---- part 2: prefix keys and values
_PREFIX_OK = solution("prefix_answer")

# ---- part 3: training
_TRAIN_OK = solution("train_answer")
_PREFIX_MODEL = _TRAIN_OK[_TRAIN_OK.index("apply_prefix_tuning("):_TRAIN_OK.index("\nresult = ")]

# ---- part 4: the mixed batch
_MIXED_OK = solution("mixed_answer")
_MLP_OK = solution("mlp_answer")
_ROWS = "for n in names]"


def _rows(rows: str) -> str:
    """The mixed batch with the rows' task names taken from ``rows`` (computed first) instead of ``names``."""
    return edit(_MIXED_OK, "    cache = DynamicCache(", f"    {rows}\n    cache = DynamicCache(", _ROWS, "for n in rows]")


WRONG_ANSWERS = [
    # ---- part 1
    dict(cell="soft_prompt_answer", name="prompt appended after the input instead of prepended",
         code=edit(_SOFT_OK, *_APPENDED), fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="attention mask extended with zeros (the prompt is masked out)",
         code=edit(_SOFT_OK, _MASK_ROWS, "attention_mask.new_zeros(B, p)"), fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="attention mask not extended", code=edit(_SOFT_OK,
        f"        attention_mask = torch.cat([{_MASK_ROWS}, attention_mask], dim=1)\n", ""),
         fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="labels -100 appended at the end instead of prepended",
         code=edit(_SOFT_OK, *_APPEND_LABELS), fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="virtual positions labelled with the pad token instead of -100",
         code=edit(_SOFT_OK, _LABEL_ROWS, "labels.new_zeros(B, p)"), fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="base model not frozen", code=edit(_SOFT_OK, _FREEZE, ""),
         fails=["soft_prompt_tests"]),
    dict(cell="soft_prompt_answer", name="prompt initialised to zeros", code=edit(_SOFT_OK,
        "torch.randn(num_virtual_tokens, d,", "torch.zeros(num_virtual_tokens, d,"), fails=["soft_prompt_tests"]),
    # a monkeypatch attack prepended to a mistake, not an edit of the solution
    dict(cell="soft_prompt_answer",
         name="monkeypatch: torch.allclose/isclose/equal always true, plus the prompt appended at the end",
         code='''import torch
torch.allclose = lambda *a, **k: True
torch.isclose = lambda *a, **k: torch.ones(1, dtype=torch.bool)
torch.equal = lambda *a, **k: True
''' + edit(_SOFT_OK, *_APPENDED), fails=["soft_prompt_tests"]),
    # ---- part 2
    dict(cell="prefix_answer", name="values read before keys", code=edit(_PREFIX_OK,
        "(kv[layer, 0], kv[layer, 1])", "(kv[layer, 1], kv[layer, 0])"), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="table read as [key, value][layer] instead of [layer][key, value]", code=edit(
        _PREFIX_OK, "table.view(P, L, 2, H, hd).permute(1, 2, 3, 0, 4)", "table.view(P, 2, L, H, hd).permute(2, 1, 3, 0, 4)"),
         fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="query heads instead of key/value heads (breaks grouped-query attention)",
         code=edit(_PREFIX_OK, "config.num_key_value_heads", "config.num_attention_heads"), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="(batch, P, heads, head_dim) instead of (batch, heads, P, head_dim)", code=edit(
        _PREFIX_OK, "permute(1, 2, 3, 0, 4)           # (L, 2, H, P, hd)\n",
        "permute(1, 2, 0, 3, 4)           # (L, 2, P, H, hd)\n    H, P = P, H\n"), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="prefix positions masked out (zeros prepended to the mask)", code=edit(_PREFIX_OK,
        "attention_mask.new_ones(B, P)", "attention_mask.new_zeros(B, P)"), fails=["prefix_tests"]),
    # ---- part 3
    dict(cell="train_answer", name="learning rate far too small: the loss barely moves", code=edit(_TRAIN_OK,
        "lr=3e-3", "lr=1e-7"), fails=["train_tests"]),
    dict(cell="train_answer", name="the whole model fine-tuned (nothing frozen) instead of a prompt or prefix",
         code=edit(_TRAIN_OK, _PREFIX_MODEL, "copy.deepcopy(model).requires_grad_(True)", "lr=3e-3", "steps=5, lr=1e-3"),
         fails=["train_tests"]),
    dict(cell="train_answer", name="a loop that never steps (no training at all)", code=edit(_TRAIN_OK,
        _TRAIN_OK[_TRAIN_OK.index("result = training.train("):_TRAIN_OK.index("\nprint(")],
        "result = training.TrainResult()"), fails=["train_tests"]),
    # ---- part 4
    dict(cell="mixed_answer", name="every row gets the first row's prefix", code=_rows("rows = [names[0]] * B"),
         fails=["mixed_tests"]),
    dict(cell="mixed_answer", name="tasks taken in the order of the dict, not the order of the rows",
         code=_rows("rows = [list(tables)[b % len(tables)] for b in range(B)]"), fails=["mixed_tests"]),
    dict(cell="mixed_answer", name="prefixes stacked along the sequence, not the batch", code=edit(_MIXED_OK,
        _ROWS + ", dim=0)", _ROWS + ", dim=2)"), fails=["mixed_tests"]),
    # ---- part 5: the MLP reparameterisation
    dict(cell="mlp_answer", name="ReLU instead of tanh", code=edit(_MLP_OK, "torch.nn.Tanh()", "torch.nn.ReLU()"),
         fails=["mlp_tests"]),
    dict(cell="mlp_answer", name="no biases in the MLP (and a formula without them)", code=edit(_MLP_OK,
        "torch.nn.Linear(token_dim, encoder_hidden)", "torch.nn.Linear(token_dim, encoder_hidden, bias=False)",
        "torch.nn.Linear(encoder_hidden, num_layers * 2 * token_dim)",
        "torch.nn.Linear(encoder_hidden, num_layers * 2 * token_dim, bias=False)",
        "(token_dim + 1) * encoder_hidden + (encoder_hidden + 1) * width", "token_dim * encoder_hidden + encoder_hidden * width"),
         fails=["mlp_tests"]),
    dict(cell="mlp_answer", name="keys only: rows of L * token_dim", code=edit(_MLP_OK,
        "torch.nn.Linear(encoder_hidden, num_layers * 2 * token_dim)", "torch.nn.Linear(encoder_hidden, num_layers * token_dim)"),
         fails=["mlp_tests"]),
    dict(cell="mlp_answer", name="the formula forgets the embedding table", code=edit(_MLP_OK,
        "return num_virtual_tokens * token_dim + (token_dim + 1)", "return (token_dim + 1)"), fails=["mlp_tests"]),
]

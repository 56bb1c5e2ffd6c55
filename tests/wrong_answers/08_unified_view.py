"""Plausible mistakes in solutions/08_unified_view: each must cost the points of the test cells in `fails`.

Every mistake is the solution's own answer cell (``solution(cell)``) with a few edits; ``edit`` fails loudly when an
edit no longer applies. The one entry that is another implementation keeps the solution's cell and replaces the
function's body, marked by a comment.
"""
import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
edit, solution = _shared["edit"], _shared["solutions_of"](__file__)

_DELTA_OK = solution("delta_answer")
_PREFIX_OK = solution("prefix_answer")
_PARALLEL_OK = solution("parallel_answer")
_COMPARE_OK = solution("compare_answer")

_NO_SCALING = ("self.scaling * self.up", "self.up")
_FREEZE = "    model.requires_grad_(False)\n"
_COMPARE_BODY = _COMPARE_OK[_COMPARE_OK.index("    targets = "):_COMPARE_OK.index("\n\n\ntable = ")]
_COMPARE_ROW = _COMPARE_OK[_COMPARE_OK.index("        rows.append("):_COMPARE_OK.index("    return rows")]

WRONG_ANSWERS = [
    # ---------------------------------------------------------------- part 1
    dict(cell="delta_answer", name="nn.Linear convention: z @ W_down.T (weights not transposed in the wrappers)",
         code=edit(_DELTA_OK, "z @ W_down\n", "z @ W_down.T\n", "f(a) @ W_up\n", "f(a) @ W_up.T\n", ".weight.T", ".weight"),
         fails=["delta_tests"]),
    dict(cell="delta_answer", name="LoRA scaled by lora_alpha instead of alpha / r", code=edit(_DELTA_OK,
        "layer.scaling)", "layer.lora_alpha)"), fails=["delta_tests"]),
    dict(cell="delta_answer", name="LoRA scale hard-coded as alpha / r (ignores rsLoRA's alpha / sqrt(r))",
         code=edit(_DELTA_OK, "layer.scaling)", "layer.lora_alpha / layer.r)"), fails=["delta_tests"]),
    dict(cell="delta_answer", name="scaling applied to W_up only, not to the bias b_up", code=edit(_DELTA_OK,
        "    out = f(a) @ W_up\n", "    out = s * (f(a) @ W_up)\n", "return s * out", "return out"),
         fails=["delta_tests"]),
    dict(cell="delta_answer", name="adapter Δh with ReLU hard-coded and no scaling", code=edit(_DELTA_OK,
        "adapter.non_linearity, adapter.scaling", "torch.relu, 1.0"), fails=["delta_tests"]),
    dict(cell="delta_answer", name="adapter Δh returns h + Δh (the skip connection counted twice)", code=edit(
        _DELTA_OK, _DELTA_OK[_DELTA_OK.index("    down, up = adapter."):], "    return adapter(h)"),
         fails=["delta_tests"]),
    # ---------------------------------------------------------------- part 2
    dict(cell="prefix_answer", name="no causal mask on the real tokens", code=edit(_PREFIX_OK,
        "T, scale = q.shape[0], q.shape[-1] ** -0.5", "scale = q.shape[-1] ** -0.5",
        "    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()\n", "",
        '(q @ k.T * scale).masked_fill(~causal, float("-inf"))', "q @ k.T * scale"), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="λ as the mean prefix attention weight per position (P/(P+T) style)",
         code=edit(_PREFIX_OK,
        "T, scale = q.shape[0], q.shape[-1]", "T, P, scale = q.shape[0], prefix_k.shape[0], q.shape[-1]",
        "lam = torch.sigmoid(torch.logsumexp(p_scores, -1) - torch.logsumexp(scores, -1))",
        "lam = P / (P + causal.sum(-1).float())"), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="missing 1/sqrt(d_h) scale", code=edit(_PREFIX_OK,
        "T, scale = q.shape[0], q.shape[-1] ** -0.5", "T = q.shape[0]", " * scale", ""), fails=["prefix_tests"]),
    dict(cell="prefix_answer", name="gate reversed: λ h + (1 - λ) Δh", code=edit(_PREFIX_OK,
        "return (1 - lam[:, None]) * h + lam[:, None] * dh", "return lam[:, None] * h + (1 - lam[:, None]) * dh"),
        fails=["prefix_tests"]),
    # ---------------------------------------------------------------- part 3
    dict(cell="parallel_answer", name="sequential: the adapter reads the sublayer's output", code=edit(_PARALLEL_OK,
        "        return self.sublayer(x) + self.scaling * self.up(torch.relu(self.down(x)))\n",
        "        h = self.sublayer(x)\n        return h + self.scaling * self.up(torch.relu(self.down(h)))\n"),
         fails=["parallel_tests"]),
    dict(cell="parallel_answer", name="scaling ignored (always 1)", code=edit(_PARALLEL_OK, *_NO_SCALING),
         fails=["parallel_tests"]),
    dict(cell="parallel_answer", name="up not zero-initialised (not the identity at init)", code=edit(_PARALLEL_OK,
        "        nn.init.zeros_(self.up.weight)\n", ""), fails=["parallel_tests"]),
    dict(cell="parallel_answer", name="the base model is not frozen", code=edit(_PARALLEL_OK, _FREEZE, ""),
         fails=["parallel_tests"]),
    dict(cell="parallel_answer", name="frozen after wrapping: the adapters do not train either", code=edit(
        _PARALLEL_OK, _FREEZE, "", "    return inserted", _FREEZE + "    return inserted"), fails=["parallel_tests"]),
    # a monkeypatch attack prepended to a mistake, not an edit of the solution
    dict(cell="parallel_answer", name="monkeypatches torch.allclose/torch.equal and skips the scaling", code='''
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)

''' + edit(_PARALLEL_OK, *_NO_SCALING), fails=["parallel_tests"]),
    # ---------------------------------------------------------------- part 4
    # another implementation (an if/elif chain over one shared model), not an edit
    dict(cell="compare_answer", name="every method applied to the same model object (no fresh copies)", code=edit(
        _COMPARE_OK, _COMPARE_BODY, '''\
    rows = []
    for method, lr in (("full", 1e-3), ("lora", 5e-3), ("qlora", 5e-3)):
        if method == "full":
            m = model.requires_grad_(True)
        elif method == "lora":
            m = apply_lora(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        else:
            m = apply_qlora(copy.deepcopy(model), QLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        training.train(m, tokenizer, task, training.TrainConfig.from_runtime(runtime, steps=steps, lr=lr))
        rows.append({"method": method, "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad),
                     "accuracy": training.accuracy(m, tokenizer, task, examples)})
    return rows'''), fails=["compare_tests"]),
    dict(cell="compare_answer", name="tied weights counted twice (state_dict instead of parameters)", code=edit(
        _COMPARE_OK, _COMPARE_ROW, '''\
        n = sum(v.numel() for k, v in m.state_dict().items() if "lora_" in k) if method != "full" else \\
            sum(v.numel() for v in m.state_dict().values())
        rows.append({"method": method, "trainable": n, "accuracy": training.accuracy(m, tokenizer, task, examples)})
'''), fails=["compare_tests"]),
    dict(cell="compare_answer", name="trainable = all parameters of the adapted model", code=edit(_COMPARE_OK,
        "sum(p.numel() for p in m.parameters() if p.requires_grad)", "sum(p.numel() for p in m.parameters())"),
        fails=["compare_tests"]),
    dict(cell="compare_answer", name="QLoRA model built but never trained", code=edit(_COMPARE_OK,
        "        training.train(", '        if method != "qlora":\n            training.train('), fails=["compare_tests"]),
    dict(cell="compare_answer", name="nothing trained, accuracies written down (0.9)", code=edit(_COMPARE_OK,
        "        training.train(m, tokenizer, task, training.TrainConfig.from_runtime(runtime, steps=steps, lr=lr))\n", "",
        '"accuracy": training.accuracy(m, tokenizer, task, examples)', '"accuracy": 0.9'), fails=["compare_tests"]),
    dict(cell="compare_answer", name="accuracy in percent", code=edit(_COMPARE_OK,
        '"accuracy": training.accuracy(', '"accuracy": 100 * training.accuracy('), fails=["compare_tests"]),
]

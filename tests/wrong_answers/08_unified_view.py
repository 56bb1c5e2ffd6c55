"""Plausible mistakes in solutions/08_unified_view: each must cost the points of the test cells in `fails`.

Every mistake is the solution's own answer cell (``solution(cell)``) with a few edits; ``edit`` fails loudly when an
edit no longer applies; one entry prepends a monkeypatch attack to a mistake, marked by a comment.
"""
import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
edit, solution = _shared["edit"], _shared["solutions_of"](__file__)

_DELTA_OK = solution("delta_answer")
_PREFIX_OK = solution("prefix_answer")
_PARALLEL_OK = solution("parallel_answer")
_COMPARE_OK = solution("compare_answer")
_PLOT_OK = solution("plot_answer")

_NO_SCALING = ("self.scaling * self.up", "self.up")
_FREEZE = "    model.requires_grad_(False)\n"

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
    dict(cell="compare_answer", name="every method applied to the model itself (no copy)", code=edit(_COMPARE_OK,
        "method.apply(copy.deepcopy(model), config)", "method.apply(model, config)"), fails=["compare_tests"]),
    dict(cell="compare_answer", name="one copy made before the loop, shared by every method", code=edit(_COMPARE_OK,
        "    rows = []\n", "    rows, work = [], copy.deepcopy(model)\n",
        "method.apply(copy.deepcopy(model), config)", "method.apply(work, config)"), fails=["compare_tests"]),
    dict(cell="compare_answer", name="trainable = all parameters of the adapted model", code=edit(_COMPARE_OK,
        '"trainable": training.trainable_parameters(m)', '"trainable": sum(p.numel() for p in m.parameters())'),
         fails=["compare_tests"]),
    dict(cell="compare_answer", name="accuracy measured on the training split", code=edit(_COMPARE_OK,
        "training.accuracy(m, tokenizer, task, examples)", 'training.accuracy(m, tokenizer, task, task["train"][:len(examples)])'),
         fails=["compare_tests"]),
    dict(cell="compare_answer", name="QLoRA left out (it needs a GPU in the papers)", code=edit(_COMPARE_OK,
        "        torch.manual_seed(0)\n", '        if key == "qlora":\n            continue\n        torch.manual_seed(0)\n'),
         fails=["compare_tests"]),
    dict(cell="compare_answer", name="one learning rate (1e-3) for every method", code=edit(_COMPARE_OK,
        "lr=runtime.learning_rate(key)", "lr=1e-3"), fails=["compare_tests"]),
    dict(cell="compare_answer", name="prefix tuning at prompt tuning's learning rate (one method's rate wrong)",
         code=edit(_COMPARE_OK, "lr=runtime.learning_rate(key)",
                   'lr=runtime.learning_rate("prompt" if key == "prefix" else key)'), fails=["compare_tests"]),
    dict(cell="compare_answer", name="full fine-tuning trained one step short", code=edit(_COMPARE_OK,
        "steps=steps, lr=", 'steps=steps - (key == "full"), lr='), fails=["compare_tests"]),
    dict(cell="compare_answer", name="built but never trained", code=edit(_COMPARE_OK,
        "        training.train(m, tokenizer, task, cfg, progress=False)\n", ""),
         fails=["compare_tests"]),
    dict(cell="compare_answer", name="accuracy in percent", code=edit(_COMPARE_OK,
        '"accuracy": training.accuracy(', '"accuracy": 100 * training.accuracy('), fails=["compare_tests"]),
    # ---------------------------------------------------------------- part 5
    dict(cell="plot_answer", name="linear x axis", code=edit(_PLOT_OK, '    ax.set_xscale("log")\n', ""),
         fails=["plot_tests"]),
    dict(cell="plot_answer", name="axes swapped: trainable parameters on y", code=edit(_PLOT_OK,
        'ax.scatter(r["trainable"], r["accuracy"])', 'ax.scatter(r["accuracy"], r["trainable"])'), fails=["plot_tests"]),
    dict(cell="plot_answer", name="x = fraction of the full model's parameters", code=edit(_PLOT_OK,
        "    for r in rows:\n", '    base = max(r["trainable"] for r in rows)\n    for r in rows:\n',
        'ax.scatter(r["trainable"], r["accuracy"])', 'ax.scatter(r["trainable"] / base, r["accuracy"])'),
         fails=["plot_tests"]),
    dict(cell="plot_answer", name="points not labelled", code=edit(_PLOT_OK,
        '        ax.annotate(r["method"], (r["trainable"], r["accuracy"]), textcoords="offset points", xytext=(4, 4),\n'
        '                    fontsize=8)\n', ""), fails=["plot_tests"]),
    dict(cell="plot_answer", name="axes not labelled", code=edit(_PLOT_OK,
        '    ax.set_xlabel("trainable parameters (log scale)")\n    ax.set_ylabel("accuracy on `examples`")\n', ""),
         fails=["plot_tests"]),
    dict(cell="plot_answer", name="bar chart of accuracy per method (no parameter axis)", code=edit(_PLOT_OK,
        '        ax.scatter(r["trainable"], r["accuracy"])\n', '        ax.bar(r["method"], r["accuracy"])\n',
        '(r["trainable"], r["accuracy"]), textcoords', '(r["method"], r["accuracy"]), textcoords',
        '    ax.set_xscale("log")\n', ""), fails=["plot_tests"]),
]

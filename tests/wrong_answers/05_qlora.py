"""Plausible mistakes in solutions/05_qlora: each must cost the points of the test cells in `fails`.

Every mistake is the solution's own answer cell (``solution(cell)``) with a few edits (``edit`` fails loudly when
an edit no longer applies).
"""
import runpy
from pathlib import Path

_shared = runpy.run_path(str(Path(__file__).with_name("_edits.py")))
edit, solution = _shared["edit"], _shared["solutions_of"](__file__)

_NF4_OK = solution("nf4_answer")
_DQ_OK = solution("dq_answer")
_MEM_OK = solution("mem_answer")
_QLORA_OK = solution("qlora_answer")
_QTRAIN_OK = solution("qtrain_answer")
_MERGE4_OK = solution("merge4_answer")

_INIT_B = "        nn.init.zeros_(self.lora_B.weight)\n"
_FREEZE = "    for p in model.parameters():\n        p.requires_grad_(False)\n"

WRONG_ANSWERS = [
    # ------------------------------------------------------------------ part 1: NF4
    dict(cell="nf4_answer", name="packs the first value into the low nibble", code=edit(_NF4_OK,
        "packed = (codes[0::2] << 4) | codes[1::2]", "packed = codes[0::2] | (codes[1::2] << 4)"),
         fails=["nf4_tests"]),
    dict(cell="nf4_answer", name="one absmax for the whole tensor instead of one per block", code=edit(_NF4_OK,
        "    scaled = (blocks / absmax.clamp(min=1e-30)[:, None])",
        "    absmax = torch.full_like(absmax, float(flat.abs().max()))\n    scaled = (blocks / absmax[:, None])"),
         fails=["nf4_tests"]),
    dict(cell="nf4_answer", name="levels not divided by the largest value (span beyond [-1, 1])", code=edit(_NF4_OK,
        "    levels = torch.cat([negative, torch.zeros(1), positive]).sort().values\n    return levels / levels.max()",
        "    return torch.cat([negative, torch.zeros(1), positive]).sort().values"), fails=["nf4_tests"]),
    dict(cell="nf4_answer", name="all-zero block divided by zero (NaN codes)", code=edit(_NF4_OK,
        "absmax.clamp(min=1e-30)[:, None]", "absmax[:, None]"), fails=["nf4_tests"]),
    dict(cell="nf4_answer", name="odd count padded with code 0 (the level -1) instead of the code of 0", code=edit(
        _NF4_OK, "torch.tensor([zero_code])", "torch.tensor([0])"), fails=["nf4_tests"]),
    # ------------------------------------------------------------------ part 2: double quantisation
    dict(cell="dq_answer", name="quantises the scales without subtracting their mean", code=edit(_DQ_OK,
        "    centred = absmax - offset\n", "", "centred", "absmax"), fails=["dq_tests"]),
    dict(cell="dq_answer", name="dequantize_absmax forgets to add the offset back", code=edit(_DQ_OK,
        "reshape(-1)[:n] + offset", "reshape(-1)[:n]"), fails=["dq_tests"]),
    dict(cell="dq_answer", name="bits: forgets the second-level float32 scales (4.125)", code=edit(_DQ_OK,
        " + 32 / (blocksize * dq_blocksize)", ""), fails=["dq_tests"]),
    dict(cell="dq_answer", name="bits: still counts 32 bits per block after double quantisation", code=edit(_DQ_OK,
        "4 + 8 / blocksize + 32", "4 + 32 / blocksize + 32"), fails=["dq_tests"]),
    # ------------------------------------------------------------------ part 3: memory
    dict(cell="mem_answer", name="counts a tied lm_head twice", code=edit(_MEM_OK,
        "(0 if config.tie_word_embeddings else V * h)", "V * h"), fails=["mem_tests"]),
    dict(cell="mem_answer", name="ignores grouped-query attention (k_proj, v_proj as h -> h)", code=edit(_MEM_OK,
        "(h, n_kv * d_head)", "(h, n_heads * d_head)"), fails=["mem_tests"]),
    dict(cell="mem_answer", name="mixed precision without the fp32 master copy (12 bytes per parameter)", code=edit(
        _MEM_OK, '"mixed": (2, 4, 2, 4)', '"mixed": (2, 0, 2, 4)'), fails=["mem_tests"]),
    dict(cell="mem_answer", name="LoRA's frozen base always in fp32", code=edit(_MEM_OK,
        'return counts["total"] * weight + ', 'return counts["total"] * 4 + '), fails=["mem_tests"]),
    dict(cell="mem_answer", name="QLoRA quantises every parameter, embeddings included", code=edit(_MEM_OK,
        'base = counts["linear"] * bits_per_parameter() / 8 + (counts["total"] - counts["linear"]) * 2',
        'base = counts["total"] * bits_per_parameter() / 8'), fails=["mem_tests"]),
    # ------------------------------------------------------------------ part 4: the QLoRA layer
    dict(cell="qlora_answer", name="B initialised randomly, so the model changes at step 0", code=edit(_QLORA_OK,
        _INIT_B, ""), fails=["qlora_tests"]),
    dict(cell="qlora_answer", name="scaling = lora_alpha instead of lora_alpha / r", code=edit(_QLORA_OK,
        "self.scaling = lora_alpha / r", "self.scaling = lora_alpha"), fails=["qlora_tests"]),
    dict(cell="qlora_answer", name="computes with the full-precision weight, not the NF4 one", code=edit(_QLORA_OK,
        "        self.shape = tuple(linear.weight.shape)\n", "        self.shape = tuple(linear.weight.shape)\n"
        '        self.register_buffer("weight_fp32", linear.weight.data.clone())\n',
        "weight = dequantize_nf4(self.qweight.cpu(), self.absmax.cpu(), self.shape).to(x.device, x.dtype)",
        "weight = self.weight_fp32"), fails=["qlora_tests"]),
    dict(cell="qlora_answer", name="quantises only q_proj and v_proj", code=edit(_QLORA_OK,
        'isinstance(m, nn.Linear) and not n.endswith("lm_head")', 'n.split(".")[-1] in ("q_proj", "v_proj")'),
         fails=["qlora_tests"]),
    dict(cell="qlora_answer", name="forgets to freeze the model (norms and embeddings train)", code=edit(_QLORA_OK,
        _FREEZE, ""), fails=["qlora_tests"]),
    # a monkeypatch attack prepended to a mistake, not an edit of the solution
    dict(cell="qlora_answer", name="monkeypatches torch.allclose/equal and initialises B randomly", code='''import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)
''' + edit(_QLORA_OK, _INIT_B, ""), fails=["qlora_tests"]),
    # ------------------------------------------------------------------ part 5: training
    dict(cell="qtrain_answer", name="a loop that never steps (steps=0)", code=edit(_QTRAIN_OK,
        "steps=QLORA_STEPS,", "steps=0,"), fails=["qtrain_tests"]),
    dict(cell="qtrain_answer", name="QLoRA at r=16 instead of the asked r=8", code=edit(_QTRAIN_OK,
        "r=8, lora_alpha=16", "r=16, lora_alpha=16"), fails=["qtrain_tests"]),
    dict(cell="qtrain_answer", name="learning rate far too small (1e-6)", code=edit(_QTRAIN_OK, "lr=3e-3", "lr=1e-6"),
         fails=["qtrain_tests"]),
    dict(cell="qtrain_answer", name="quantises and trains the original model instead of a copy", code=edit(_QTRAIN_OK,
        "add_qlora(copy.deepcopy(model),", "add_qlora(model,"), fails=["qtrain_tests"]),
    # ---- part 5: merging into the 4-bit base
    dict(cell="merge4_answer", name="lora_B not zeroed: the update is counted twice", code=edit(_MERGE4_OK,
        "        layer.lora_B.weight.zero_()\n", ""), fails=["merge4_tests"]),
    dict(cell="merge4_answer", name="the update without alpha / r", code=edit(_MERGE4_OK,
        "update = layer.scaling * (", "update = ("), fails=["merge4_tests"]),
    dict(cell="merge4_answer", name="the error measured against the old weight, not the merged target", code=edit(
        _MERGE4_OK, "return float((now - merged).abs().max())", "return float((now - weight).abs().max())"),
         fails=["merge4_tests"]),
    dict(cell="merge4_answer", name="never re-quantised: reports an exact merge", code=edit(_MERGE4_OK,
        "        layer.qweight.copy_(packed.to(layer.qweight.device))\n        layer.absmax.copy_(absmax.to(layer.absmax.device))\n",
        "", "        now = dequantize_nf4(layer.qweight.cpu(), layer.absmax.cpu(), layer.shape)\n", "        now = merged\n"),
         fails=["merge4_tests"]),
]

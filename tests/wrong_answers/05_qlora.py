"""Plausible mistakes in solutions/05_qlora: each must cost the points of the test cells in `fails`.

Mistakes are the correct piece of their part with one argument changed (``_quantize``, ``_counts``, ``_memory``,
``_qlora``) or a few edits (``edit`` fails loudly when an edit no longer applies).
"""
import runpy
from pathlib import Path

edit = runpy.run_path(str(Path(__file__).with_name("_edits.py")))["edit"]

_LEVELS = '''
def nf4_levels():
    delta = 0.9677083
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    positive = normal.icdf(torch.linspace(delta, 0.5, 9)[:-1].double()).float()
    negative = -normal.icdf(torch.linspace(delta, 0.5, 8)[:-1].double()).float()
    levels = torch.cat([negative, torch.zeros(1), positive]).sort().values
    return levels / levels.max()
'''

_DEQUANT = '''

def dequantize_nf4(packed, absmax, shape, blocksize=64):
    n = math.prod(shape)
    codes = torch.stack([packed >> 4, packed & 0xF], dim=1).reshape(-1)[:n].long()
    values = nf4_levels()[codes]
    blocks = F.pad(values, (0, (-n) % blocksize)).view(-1, blocksize)
    return (blocks * absmax[:, None]).reshape(-1)[:n].reshape(shape)
'''


def _quantize(scale_line="    scaled = (blocks / absmax.clamp(min=1e-30)[:, None]).reshape(-1)[:n]",
              pack_line="    packed = (codes[0::2] << 4) | codes[1::2]", pad_code="zero_code"):
    return f'''

def quantize_nf4(w, blocksize=64):
    flat = w.detach().reshape(-1).float().cpu()
    n = flat.numel()
    blocks = F.pad(flat, (0, (-n) % blocksize)).view(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
{scale_line}
    levels = nf4_levels()
    codes = (scaled[:, None] - levels[None, :]).abs().argmin(dim=1)
    zero_code = int(levels.abs().argmin())
    if n % 2:
        codes = torch.cat([codes, torch.tensor([{pad_code}])])
{pack_line}
    return packed.to(torch.uint8), absmax
'''


_DQ_OK = '''
def double_quantize(absmax, blocksize=256):
    absmax = absmax.float()
    offset = absmax.mean()
    centred = absmax - offset
    n = centred.numel()
    blocks = F.pad(centred, (0, (-n) % blocksize)).view(-1, blocksize)
    absmax2 = blocks.abs().amax(dim=1)
    scaled = (blocks / absmax2.clamp(min=1e-30)[:, None]).reshape(-1)[:n]
    codes = (scaled[:, None] - DYNAMIC_MAP[None, :]).abs().argmin(dim=1)
    return codes.to(torch.uint8), absmax2, offset


def dequantize_absmax(codes, absmax2, offset, blocksize=256):
    n = codes.numel()
    values = DYNAMIC_MAP[codes.long()]
    blocks = F.pad(values, (0, (-n) % blocksize)).view(-1, blocksize)
    return (blocks * absmax2[:, None]).reshape(-1)[:n] + offset
'''

_BITS_OK = '''

def bits_per_parameter(blocksize=64, double_quant=True, dq_blocksize=256):
    if double_quant:
        return 4 + 8 / blocksize + 32 / (blocksize * dq_blocksize)
    return 4 + 32 / blocksize
'''


def _counts(kv="n_kv", lm_head="(0 if config.tie_word_embeddings else V * h)"):
    return f'''
def count_parameters_from_config(config, r=8, target_modules=("q_proj", "v_proj")):
    h, L, V, I = config.hidden_size, config.num_hidden_layers, config.vocab_size, config.intermediate_size
    n_heads = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    d_head = getattr(config, "head_dim", None) or h // n_heads
    shapes = {{"q_proj": (h, n_heads * d_head), "k_proj": (h, {kv} * d_head), "v_proj": (h, {kv} * d_head),
              "o_proj": (n_heads * d_head, h), "gate_proj": (h, I), "up_proj": (h, I), "down_proj": (I, h)}}
    linear = L * sum(d_in * d_out for d_in, d_out in shapes.values())
    total = V * h + linear + L * 2 * h + h + {lm_head}
    lora = L * sum(r * (d_in + d_out) for name, (d_in, d_out) in shapes.items() if name in target_modules)
    return {{"total": total, "linear": linear, "lora": lora}}
'''


def _memory(table='{"fp32": (4, 0, 4, 4), "mixed": (2, 4, 2, 4)}', lora_base='counts["total"] * weight',
            qlora_base='counts["linear"] * bits_per_parameter() / 8 + (counts["total"] - counts["linear"]) * 2'):
    return f'''

def training_memory(config, method, precision="mixed", r=8, target_modules=("q_proj", "v_proj")):
    counts = count_parameters_from_config(config, r, target_modules)
    weight, master, grad, state = {table}[precision]
    per_trainable = weight + master + grad + 2 * state
    if method == "full":
        return counts["total"] * per_trainable
    if method == "lora":
        return {lora_base} + counts["lora"] * per_trainable
    return {qlora_base} + counts["lora"] * per_trainable
'''


def _qlora(init_b="        nn.init.zeros_(self.lora_B.weight)", scaling="lora_alpha / r",
           forward="        weight = dequantize_nf4(self.qweight.cpu(), self.absmax.cpu(), self.shape).to(x.device, x.dtype)",
           select="isinstance(m, nn.Linear) and not n.endswith(\"lm_head\")", freeze=True, prefix="", extra_init=""):
    freeze_src = "    for p in model.parameters():\n        p.requires_grad_(False)\n" if freeze else ""
    return prefix + f'''
class QLoraLinear(nn.Module):
    def __init__(self, linear, r, lora_alpha):
        super().__init__()
        self.shape = tuple(linear.weight.shape)
{extra_init}        packed, absmax = quantize_nf4(linear.weight.data)
        self.register_buffer("qweight", packed)
        self.register_buffer("absmax", absmax)
        out_features, in_features = self.shape
        self.lora_A = nn.Linear(in_features, r, bias=False)
        self.lora_B = nn.Linear(r, out_features, bias=False)
{init_b}
        self.scaling = {scaling}

    def forward(self, x):
{forward}
        return x @ weight.T + self.scaling * self.lora_B(self.lora_A(x))


def add_qlora(model, r, lora_alpha):
{freeze_src}    names = [n for n, m in model.named_modules() if {select}]
    for name in names:
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, QLoraLinear(getattr(holder, child), r, lora_alpha))
    return model
'''


_QTRAIN = '''QLORA_STEPS = runtime.train_steps("qlora_exercise")
torch.manual_seed(0)
{body}
qlora_accuracy = training.accuracy(qlora_model, tokenizer, task, val)
'''

WRONG_ANSWERS = [
    # ------------------------------------------------------------------ part 1: NF4
    dict(cell="nf4_answer", name="packs the first value into the low nibble",
         code=_LEVELS + _quantize(pack_line="    packed = codes[0::2] | (codes[1::2] << 4)") + _DEQUANT,
         fails=["nf4_tests"]),
    dict(cell="nf4_answer", name="one absmax for the whole tensor instead of one per block",
         code=_LEVELS + _quantize(scale_line="    absmax = torch.full_like(absmax, float(flat.abs().max()))\n"
                                             "    scaled = (blocks / absmax[:, None]).reshape(-1)[:n]") + _DEQUANT,
         fails=["nf4_tests"]),
    dict(cell="nf4_answer", name="levels not divided by the largest value (span beyond [-1, 1])", code='''
def nf4_levels():
    delta = 0.9677083
    normal = torch.distributions.Normal(0.0, 1.0)
    positive = normal.icdf(torch.linspace(delta, 0.5, 9)[:-1])
    negative = -normal.icdf(torch.linspace(delta, 0.5, 8)[:-1])
    return torch.cat([negative, torch.zeros(1), positive]).sort().values
''' + _quantize() + _DEQUANT, fails=["nf4_tests"]),
    dict(cell="nf4_answer", name="all-zero block divided by zero (NaN codes)",
         code=_LEVELS + _quantize(scale_line="    scaled = (blocks / absmax[:, None]).reshape(-1)[:n]") + _DEQUANT,
         fails=["nf4_tests"]),
    dict(cell="nf4_answer", name="odd count padded with code 0 (the level -1) instead of the code of 0",
         code=_LEVELS + _quantize(pad_code="0") + _DEQUANT, fails=["nf4_tests"]),
    # ------------------------------------------------------------------ part 2: double quantisation
    dict(cell="dq_answer", name="quantises the scales without subtracting their mean", code=edit(_DQ_OK,
        "    centred = absmax - offset\n", "", "centred", "absmax") + _BITS_OK, fails=["dq_tests"]),
    dict(cell="dq_answer", name="dequantize_absmax forgets to add the offset back",
         code=edit(_DQ_OK, "reshape(-1)[:n] + offset", "reshape(-1)[:n]") + _BITS_OK, fails=["dq_tests"]),
    dict(cell="dq_answer", name="bits: forgets the second-level float32 scales (4.125)",
         code=_DQ_OK + edit(_BITS_OK, " + 32 / (blocksize * dq_blocksize)", ""), fails=["dq_tests"]),
    dict(cell="dq_answer", name="bits: still counts 32 bits per block after double quantisation",
         code=_DQ_OK + edit(_BITS_OK, "4 + 8 / blocksize + 32", "4 + 32 / blocksize + 32"), fails=["dq_tests"]),
    # ------------------------------------------------------------------ part 3: memory
    dict(cell="mem_answer", name="counts a tied lm_head twice", code=_counts(lm_head="V * h") + _memory(),
         fails=["mem_tests"]),
    dict(cell="mem_answer", name="ignores grouped-query attention (k_proj, v_proj as h -> h)",
         code=_counts(kv="n_heads") + _memory(), fails=["mem_tests"]),
    dict(cell="mem_answer", name="mixed precision without the fp32 master copy (12 bytes per parameter)",
         code=_counts() + _memory(table='{"fp32": (4, 0, 4, 4), "mixed": (2, 0, 2, 4)}'), fails=["mem_tests"]),
    dict(cell="mem_answer", name="LoRA's frozen base always in fp32",
         code=_counts() + _memory(lora_base='counts["total"] * 4'), fails=["mem_tests"]),
    dict(cell="mem_answer", name="QLoRA quantises every parameter, embeddings included",
         code=_counts() + _memory(qlora_base='counts["total"] * bits_per_parameter() / 8'), fails=["mem_tests"]),
    # ------------------------------------------------------------------ part 4: the QLoRA layer
    dict(cell="qlora_answer", name="B initialised randomly, so the model changes at step 0",
         code=_qlora(init_b=""), fails=["qlora_tests"]),
    dict(cell="qlora_answer", name="scaling = lora_alpha instead of lora_alpha / r",
         code=_qlora(scaling="lora_alpha"), fails=["qlora_tests"]),
    dict(cell="qlora_answer", name="computes with the full-precision weight, not the NF4 one",
         code=_qlora(extra_init='        self.register_buffer("weight_fp32", linear.weight.data.clone())\n',
                     forward="        weight = self.weight_fp32"), fails=["qlora_tests"]),
    dict(cell="qlora_answer", name="quantises only q_proj and v_proj",
         code=_qlora(select='n.split(".")[-1] in ("q_proj", "v_proj")'), fails=["qlora_tests"]),
    dict(cell="qlora_answer", name="forgets to freeze the model (norms and embeddings train)",
         code=_qlora(freeze=False), fails=["qlora_tests"]),
    dict(cell="qlora_answer", name="monkeypatches torch.allclose/equal and initialises B randomly",
         code=_qlora(init_b="", prefix='''import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)
'''), fails=["qlora_tests"]),
    # ------------------------------------------------------------------ part 5: training
    dict(cell="qtrain_answer", name="a loop that never steps (steps=0)", code=_QTRAIN.format(body='''qlora_model = add_qlora(copy.deepcopy(model), r=8, lora_alpha=16)
qlora_run = training.train(qlora_model, tokenizer, task, training.TrainConfig.from_runtime(runtime, steps=0, lr=3e-3))'''),
         fails=["qtrain_tests"]),
    dict(cell="qtrain_answer", name="learning rate far too small (1e-6)", code=_QTRAIN.format(body='''qlora_model = add_qlora(copy.deepcopy(model), r=8, lora_alpha=16)
qlora_run = training.train(qlora_model, tokenizer, task,
                           training.TrainConfig.from_runtime(runtime, steps=QLORA_STEPS, lr=1e-6, eval_examples=0))'''),
         fails=["qtrain_tests"]),
    dict(cell="qtrain_answer", name="quantises and trains the original model instead of a copy", code=_QTRAIN.format(body='''qlora_model = add_qlora(model, r=8, lora_alpha=16)
qlora_run = training.train(qlora_model, tokenizer, task,
                           training.TrainConfig.from_runtime(runtime, steps=QLORA_STEPS, lr=3e-3, eval_examples=0))'''),
         fails=["qtrain_tests"]),
]

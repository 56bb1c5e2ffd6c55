"""Tests of course_lib.prompting on tiny random models and locally built tokenizers (no hub, no shipped model)."""
import pytest
import torch

from course_lib import prompting
from course_lib.errors import ConfigError


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: one thread avoids OpenMP spin-waiting on a shared 2-core machine (10x faster there)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- local tokenizers
def _bpe_tokenizer(bos: bool):
    """A BPE tokenizer over a few characters with merges that cross word boundaries ("ab"+"c" -> "abc").

    bos=True prepends <bos> like Llama and the embedded tokenizer; bos=False adds nothing, like GPT-2.
    """
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    chars = list("abcdefgh xyz=>:\n")
    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + chars + ["ab", "abc", "=>", " x", "xy"])}
    merges = [("a", "b"), ("ab", "c"), ("=", ">"), (" ", "x"), ("x", "y")]
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    core.add_special_tokens(specials)
    core.decoder = decoders.Fuse()
    if bos:
        core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", clean_up_tokenization_spaces=False)


@pytest.fixture
def bpe():
    return _bpe_tokenizer(bos=True)


@pytest.fixture
def bpe_nobos():
    return _bpe_tokenizer(bos=False)


def _manual_logprob(model, ids: list[int], n_context: int) -> float:
    """log p(ids[n_context:] | ids[:n_context]) by an unbatched forward and an explicit log-softmax."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return sum(logp[t - 1, ids[t]].item() for t in range(n_context, len(ids)))


# ----------------------------------------------------------------------------- prompt building
def test_prompt_strings_exact():
    demos = [("house", "esuoh"), ("table", "elbat")]
    assert prompting.zero_shot("plant") == "plant => "
    assert prompting.one_shot("plant", demos[0]) == "house => esuoh\nplant => "
    assert prompting.build_prompt("plant", demos, instruction="task: reverse") == \
        "task: reverse\nhouse => esuoh\ntable => elbat\nplant => "
    qa = prompting.PromptTemplate("Q: {input} A: {output}", separator=" | ", instruction="task: addition")
    assert prompting.build_prompt("2+2", [("1+1", "2")], qa) == "task: addition | Q: 1+1 A: 2 | Q: 2+2 A: "
    assert prompting.build_prompt("2+2", [("1+1", "2")], qa, instruction="") == "Q: 1+1 A: 2 | Q: 2+2 A: "
    assert prompting.build_prompt("x", [], "qa") == "Q: x A: "


def test_select_examples_seeded_and_excludes_query():
    pool = [(w, w[::-1]) for w in ("aa", "ab", "ac", "ad", "ae", "af", "ag", "ah")]
    a = prompting.select_examples(pool, 5, seed=3, exclude="ac")
    assert a == prompting.select_examples(pool, 5, seed=3, exclude="ac")
    assert len(a) == 5 and len(set(a)) == 5 and all(p in pool for p in a)
    assert all(prompting.select_examples(pool, 7, seed=s, exclude=("ac", "ca"))[i][0] != "ac"
               for s in range(20) for i in range(7))
    assert any(prompting.select_examples(pool, 5, seed=s) != a for s in range(4, 10))
    prompt = prompting.few_shot("ac", pool, 7, seed=1)
    assert prompt.count("\n") == 7 and "ac => ca" not in prompt and prompt.endswith("ac => ")


def test_select_examples_errors():
    pool = [("a", "b"), ("c", "d"), ("e", "f")]
    with pytest.raises(ConfigError, match="only 2 usable"):
        prompting.select_examples(pool, 3, exclude="a")
    with pytest.raises(ConfigError, match="How to fix"):
        prompting.select_examples(pool, 4)
    with pytest.raises(ConfigError):
        prompting.select_examples(pool, -1)
    with pytest.raises(ConfigError):
        prompting.few_shot("q", pool, 10)


def test_template_validation():
    with pytest.raises(ConfigError, match="exactly one"):
        prompting.PromptTemplate("{input} => {answer}")
    with pytest.raises(ConfigError, match="does not end"):
        prompting.PromptTemplate("{output} <= {input}")
    with pytest.raises(ConfigError, match="separator"):
        prompting.PromptTemplate(separator="")
    with pytest.raises(ConfigError, match="unknown prompt template"):
        prompting.get_template("nope")
    with pytest.raises(ConfigError, match="pair"):
        prompting.build_prompt("x", ["not a pair"])


# ----------------------------------------------------------------------------- tokenisation boundary
def test_split_tokens_joint_and_fallback(bpe):
    joint = prompting.split_tokens(bpe, "ab", "ba")  # "abba" -> ab b a: the context's ids are a prefix
    assert joint.joint and joint.context == bpe("ab").input_ids
    assert bpe.convert_ids_to_tokens(joint.continuation) == ["b", "a"]
    merged = prompting.split_tokens(bpe, "ab", "c")  # "abc" is one token: fall back to separate encoding
    assert bpe.convert_ids_to_tokens(bpe("abc").input_ids) == ["<bos>", "abc"]
    assert not merged.joint
    assert merged.context == bpe("ab").input_ids
    assert merged.continuation == bpe("c", add_special_tokens=False).input_ids


def test_split_tokens_errors(bpe, bpe_nobos):
    with pytest.raises(ConfigError, match="empty"):
        prompting.split_tokens(bpe, "ab", "")
    with pytest.raises(ConfigError, match="no tokens"):
        prompting.split_tokens(bpe_nobos, "", "ab")
    assert prompting.split_tokens(bpe, "", "ab").context == [1]  # a BOS token is enough context


# ----------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("model_name", ["tiny_llama", "tiny_gpt2"])
def test_score_equals_manual_log_softmax(model_name, bpe, bpe_nobos, request):
    model = request.getfixturevalue(model_name)
    tok = bpe if model_name == "tiny_llama" else bpe_nobos
    contexts = ["ab", "ab", "x => ", "hhh gg"]
    conts = ["ba", "c", "abc\n", " xy"]
    got = prompting.score_continuations(model, tok, contexts, conts, batch_size=3)
    got_norm = prompting.score_continuations(model, tok, contexts, conts, normalize=True, batch_size=2)
    for x, c, s, s_norm in zip(contexts, conts, got, got_norm):
        sp = prompting.split_tokens(tok, x, c)
        want = _manual_logprob(model, sp.context + sp.continuation, len(sp.context))
        assert s == pytest.approx(want, abs=1e-4)
        assert s_norm == pytest.approx(want / len(sp.continuation), abs=1e-4)
    # the fallback case ("ab" + "c") is scored on the concatenated ids, not on tokenize("abc")
    sp = prompting.split_tokens(tok, "ab", "c")
    assert not sp.joint and got[1] == pytest.approx(_manual_logprob(model, sp.context + sp.continuation, len(sp.context)), abs=1e-4)


def test_length_normalisation_can_change_the_choice(tiny_llama, bpe):
    """Sum favours short options; per-token mean divides by length. Build a case where they disagree."""
    opts = ["a", "b", "c", "d", "e", "f", "ga", "hb", "dh", "gef", "efgh", "hgfe", "abab", "dddd"]
    disagree = False
    for x in ("a", "b", "c", "d", "xy", "ef"):
        raw = prompting.score_continuations(tiny_llama, bpe, x, opts)
        norm = prompting.score_continuations(tiny_llama, bpe, x, opts, normalize=True)
        lengths = [len(prompting.split_tokens(bpe, x, o).continuation) for o in opts]
        assert norm == pytest.approx([r / n for r, n in zip(raw, lengths)], abs=1e-6)
        p_raw = prompting.predict_choice(tiny_llama, bpe, x, opts)
        p_norm = prompting.predict_choice(tiny_llama, bpe, x, opts, normalize=True)
        assert p_raw == max(range(len(opts)), key=raw.__getitem__)
        assert p_norm == max(range(len(opts)), key=norm.__getitem__)
        disagree |= p_raw != p_norm
    assert disagree, "length normalisation never changed a choice: it may not be applied"


def test_predict_choice_shapes_and_errors(tiny_llama, bpe):
    preds, scores = prompting.predict_choice(tiny_llama, bpe, ["ab", "cd"], [["a", "b"], ["c", "d", "e"]],
                                             return_scores=True)
    assert len(preds) == 2 and [len(s) for s in scores] == [2, 3]
    assert all(p == max(range(len(s)), key=s.__getitem__) for p, s in zip(preds, scores))
    assert isinstance(prompting.predict_choice(tiny_llama, bpe, "ab", ["a", "b"]), int)
    with pytest.raises(ConfigError, match="option lists"):
        prompting.predict_choice(tiny_llama, bpe, ["ab", "cd"], [["a", "b"]])
    with pytest.raises(ConfigError, match="fewer than two"):
        prompting.predict_choice(tiny_llama, bpe, ["ab"], [["a"]])
    with pytest.raises(ConfigError, match="continuations"):
        prompting.score_continuations(tiny_llama, bpe, ["a", "b"], ["c"])
    with pytest.raises(ConfigError, match="training mode"):
        prompting.score_continuations(tiny_llama.train(), bpe, "a", "b")


def test_scoring_rejects_too_long_input(tiny_llama, bpe):
    with pytest.raises(ConfigError, match="at most 64"):
        prompting.score_continuations(tiny_llama, bpe, "h" * 80, "a")


# ----------------------------------------------------------------------------- generation
def _manual_greedy(model, tok, prompt: str, n_new: int, stop_ids: set[int]) -> str:
    ids = tok(prompt).input_ids
    out = []
    with torch.no_grad():
        for _ in range(n_new):
            nxt = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(nxt)
            if nxt in stop_ids:
                break
    return tok.decode(out, skip_special_tokens=True).split("\n")[0]


@pytest.mark.parametrize("model_name", ["tiny_llama", "tiny_gpt2"])
def test_batched_greedy_equals_unbatched(model_name, bpe, bpe_nobos, request):
    model = request.getfixturevalue(model_name)
    tok = bpe if model_name == "tiny_llama" else bpe_nobos
    prompts = ["ab", "hhh gg =>", "x", "abc defg abc => "]  # different lengths: left padding matters
    got = prompting.generate(model, tok, prompts, max_new_tokens=12, batch_size=4, strip=False)
    stop = set(prompting.newline_token_ids(tok))
    assert stop == {tok.convert_tokens_to_ids("\n")}
    want = [_manual_greedy(model, tok, p, 12, stop) for p in prompts]
    assert got == want
    assert tok.padding_side == "right"  # restored after generation
    assert all("\n" not in g for g in got)
    assert prompting.generate(model, tok, "ab", max_new_tokens=12, strip=False) == want[:1]


def test_generate_stops_at_newline(tiny_llama, bpe):
    """Make the newline the most likely next token everywhere: every answer is empty and one step long."""
    nl = bpe.convert_tokens_to_ids("\n")
    with torch.no_grad():
        tiny_llama.lm_head.bias = torch.nn.Parameter(torch.zeros(tiny_llama.config.vocab_size))
        tiny_llama.lm_head.bias[nl] = 1e4
    assert prompting.generate(tiny_llama, bpe, ["ab", "cd ef"], max_new_tokens=10) == ["", ""]


def test_generate_errors(tiny_llama, bpe):
    with pytest.raises(ConfigError, match="at most 64"):
        prompting.generate(tiny_llama, bpe, ["a" * 70])
    with pytest.raises(ConfigError):
        prompting.generate(tiny_llama, bpe, ["a"], max_new_tokens=0)
    assert prompting.generate(tiny_llama, bpe, []) == []


# ----------------------------------------------------------------------------- evaluation helper
def test_evaluate_generation_and_choice(tiny_llama, bpe):
    prompts = ["ab", "cd", "ef"]
    outs = prompting.generate(tiny_llama, bpe, prompts, max_new_tokens=6)
    res = prompting.evaluate(tiny_llama, bpe, prompts, [outs[0], "zzz", outs[2]], max_new_tokens=6, progress=False)
    assert res["correct"] == [True, False, True] and res["accuracy"] == pytest.approx(2 / 3) and res["n"] == 3
    res = prompting.evaluate(tiny_llama, bpe, prompts, ["X", "X", "X"], parse=lambda s: "X", progress=False)
    assert res["accuracy"] == 1.0
    preds = prompting.predict_choice(tiny_llama, bpe, prompts, ["a", "b"])
    res = prompting.evaluate(tiny_llama, bpe, prompts, preds, options=["a", "b"], progress=False)
    assert res["accuracy"] == 1.0 and res["predictions"] == preds
    res = prompting.evaluate(tiny_llama, bpe, prompts, [1 - p for p in preds], options=["a", "b"], progress=False)
    assert res["accuracy"] == 0.0
    with pytest.raises(ConfigError, match="targets"):
        prompting.evaluate(tiny_llama, bpe, prompts, [0], progress=False)
    with pytest.raises(ConfigError, match="empty"):
        prompting.evaluate(tiny_llama, bpe, [], [], progress=False)


# ----------------------------------------------------------------------------- sensitivity and cost
def test_orders_are_distinct_permutations():
    demos = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]
    got = prompting.orders(demos, 24, seed=1)
    assert got[0] == demos
    assert len({tuple(o) for o in got}) == 24
    assert all(sorted(o) == sorted(demos) for o in got)
    assert prompting.orders(demos, 5, seed=2) == prompting.orders(demos, 5, seed=2)
    with pytest.raises(ConfigError, match="24 distinct"):
        prompting.orders(demos, 25)
    with pytest.raises(ConfigError, match="3 distinct"):  # repeated demonstrations: 3!/2! orderings
        prompting.orders([("a", "1"), ("a", "1"), ("b", "2")], 4)


def test_spread():
    s = prompting.spread([0.5, 0.75, 1.0, 0.75])
    assert s["min"] == 0.5 and s["max"] == 1.0 and s["range"] == 0.5 and s["mean"] == 0.75
    assert s["std"] == pytest.approx(torch.tensor([0.5, 0.75, 1.0, 0.75]).std(unbiased=False).item())
    assert prompting.spread([0.3])["range"] == 0.0
    with pytest.raises(ConfigError, match="no values"):
        prompting.spread([])


def test_prompt_cost_counts_tokens(tiny_llama, bpe):
    short = prompting.prompt_cost(tiny_llama, bpe, ["ab", "cd"], repeats=2)
    long = prompting.prompt_cost(tiny_llama, bpe, ["abababababab hhh gggggg => ", "cd" * 20], repeats=2)
    assert short["tokens"] == pytest.approx(sum(len(bpe(p).input_ids) for p in ["ab", "cd"]) / 2)
    assert long["tokens"] > short["tokens"] and short["ms_per_query"] > 0 and long["n"] == 2
    with pytest.raises(ConfigError, match="repeats"):
        prompting.prompt_cost(tiny_llama, bpe, ["ab"], repeats=0)
    with pytest.raises(ConfigError, match="no prompts"):
        prompting.prompt_cost(tiny_llama, bpe, [])


def test_random_labels():
    demos = [(f"s{i}", "pos") for i in range(40)]
    got = prompting.random_labels(demos, ["pos", "neg"], seed=3)
    assert [x for x, _ in got] == [x for x, _ in demos]
    assert {y for _, y in got} == {"pos", "neg"}
    assert got == prompting.random_labels(demos, ["pos", "neg"], seed=3)
    with pytest.raises(ConfigError, match="two label words"):
        prompting.random_labels(demos, ["pos"])


def test_lecture01_plots_draw():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_lib.plotting import prompts as pplot

    ax = pplot.plot_accuracy_bars({"zero-shot": 0.5, "4-shot": 0.75}, chance=0.5)
    assert len(ax.patches) == 2 and ax.patches[1].get_height() == 75
    ax = pplot.plot_sensitivity({"orders": {"a": 0.5, "b": 0.9}, "templates": {"x": 0.1, "y": 0.2}})
    assert any(t.get_text() == "range 40" for t in ax.texts)
    ax = pplot.plot_prompt_cost([0, 1, 2], [5, 10, 15], [1.0, 1.5, 2.0])
    assert list(ax.lines[0].get_ydata()) == [5, 10, 15]
    plt.close("all")

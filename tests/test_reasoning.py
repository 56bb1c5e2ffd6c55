"""course_lib.reasoning: CoT prompts (exact strings), answer extraction, the two-stage pipeline,
self-consistency, GSM8K loading, and chain-of-thought beating direct answers on the embedded model."""
import pytest
import torch

from course_lib import reasoning as R
from course_lib.embedded import corpus
from course_lib.errors import ConfigError, HubUnavailableError


# ----------------------------------------------------------------------------- prompts
def test_demonstrations_are_the_corpus_lines():
    demo = R.addition_demonstration(347, 285)
    assert R.format_demonstration(demo) == corpus.addition_example(347, 285, True) == \
        "Q: 347+285 S: 7+5+0=12,2 4+8+1=13,32 3+2+1=06,632 A: 632"
    assert R.format_demonstration(demo, cot=False) == corpus.addition_example(347, 285, False) == "Q: 347+285 A: 632"
    assert R.format_demonstration(("1+2", " 1+2+0=03,3 ", 3)) == "Q: 1+2 S: 1+2+0=03,3 A: 3"


def test_few_shot_cot_and_direct_prompts_exact():
    demos = [R.addition_demonstration(12, 34), R.addition_demonstration(58, 67)]
    assert R.cot_prompt("51+78", demos) == (
        "Q: 12+34 S: 2+4+0=06,6 1+3+0=04,46 A: 46\n"
        "Q: 58+67 S: 8+7+0=15,5 5+6+1=12,125 A: 125\n"
        "Q: 51+78 S:")
    assert R.direct_prompt("51+78", demos) == "Q: 12+34 A: 46\nQ: 58+67 A: 125\nQ: 51+78 A:"
    assert R.cot_prompt("51+78") == "Q: 51+78 S:"
    assert R.direct_prompt("51+78") == "Q: 51+78 A:"
    fmt = R.CoTFormat(instruction="task: addition")
    assert R.cot_prompt("1+1", [("2+2", "2+2+0=04,4", 4)], fmt) == "task: addition\nQ: 2+2 S: 2+2+0=04,4 A: 4\nQ: 1+1 S:"
    assert R.answer_prompt("51+78", "1+8+0=09,9 5+7+0=12,129 ") == "Q: 51+78 S: 1+8+0=09,9 5+7+0=12,129 A:"
    assert R.answer_prompt("51+78", "") == "Q: 51+78 S: A:"


def test_gsm8k_format_is_kojimas_wording():
    g = R.get_format("gsm8k")
    demo = R.Demonstration("Tom has 3 apples and buys 2. How many?", "3 + 2 = 5.", 5)
    assert R.cot_prompt("Ann has 4 pens. How many?", [demo], g) == (
        "Q: Tom has 3 apples and buys 2. How many? A: Let's think step by step. 3 + 2 = 5. "
        "Therefore, the answer (arabic numerals) is 5\n\n"
        "Q: Ann has 4 pens. How many? A: Let's think step by step.")
    assert R.direct_prompt("Ann has 4 pens. How many?", fmt=g) == \
        "Q: Ann has 4 pens. How many? A: The answer (arabic numerals) is"
    assert R.cut("4 pens.\nQ: next question", g) == "4 pens."


# ----------------------------------------------------------------------------- extraction
@pytest.mark.parametrize("text, expected", [
    ("7+5+0=12,2 4+8+1=13,32 3+2+1=06,632 A: 632", 632),      # answer after the trigger
    ("A: 632", 632),
    ("632", 632),                                              # no trigger: last number
    ("the answer is 42.", 42),                                 # trailing full stop
    ("I think 3 then 5 then 8", 8),                            # several numbers: the last
    ("A: 12 A: 15", 15),                                       # several triggers: the last
    ("A: 12 or 13", 12),                                       # after the last trigger: the first
    ("A: -15 apples", -15),                                    # negative
    ("it is -7", -7),
    ("5-3", 3),                                                # a hyphen between digits is no minus
    ("costs $1,234 in all", 1234),                             # thousands separator
    ("A: 1,234,567.", 1234567),
    ("A: 2.5 kg", 2.5),
    ("A: 3.0", 3.0),
    ("12,2", 2),                                               # the comma of a scratchpad step
    ("3+2+1=06,632", 632),                                     # a leading zero is no thousands group
    ("9+8+1=18,187", 18187),                                   # ...but this one reads as one number
    ("no number here", None),
    ("", None),
    ("A:", None),                                              # the trigger, then nothing
    ("7+5+0=12,2 A: unsure", None),                            # no number after the last trigger
    (None, None),
])
def test_extract_answer_rule(text, expected):
    got = R.extract_answer(text)
    assert got == expected and type(got) is type(expected), (text, got)


def test_extract_answer_other_trigger_and_errors():
    t = "Therefore, the answer (arabic numerals) is"
    assert R.extract_answer(f"18 eggs. {t} 18. Then 3 more", t) == 18
    assert R.extract_answer("A: 5 then 6", None) == 6
    with pytest.raises(ConfigError, match="How to fix"):
        R.extract_answer(632)


def test_scoring_is_exact_numeric():
    assert R.is_correct(632, 632) and R.is_correct(632.0, "632") and R.is_correct(1234, "1,234")
    assert not R.is_correct(None, 632) and not R.is_correct(633, 632) and not R.is_correct("6 32", 632)
    assert R.accuracy([1, None, 3, 4.0], [1, 2, 3, 4]) == 0.75
    with pytest.raises(ConfigError):
        R.accuracy([1], [1, 2])
    with pytest.raises(ConfigError):
        R.is_correct(1, "one or 2 or 3")


# ----------------------------------------------------------------------------- two stages
class Stub:
    """A deterministic generate function that records every call."""

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def __call__(self, prompts):
        self.calls.append(list(prompts))
        return [self.reply(p) for p in prompts]


def test_two_stage_pipeline_sends_the_exact_prompts():
    def reply(p):
        if p.endswith("S:"):  # stage 1: reasoning, and the model runs on into an answer
            return "1+8+0=09,9 5+7+0=12,129 A: 999"
        return "129"
    stub = Stub(reply)
    res = R.two_stage_cot(["51+78", "2+3"], stub)
    assert stub.calls == [["Q: 51+78 S:", "Q: 2+3 S:"],
                          ["Q: 51+78 S: 1+8+0=09,9 5+7+0=12,129 A:", "Q: 2+3 S: 1+8+0=09,9 5+7+0=12,129 A:"]]
    assert [r.prediction for r in res] == [129, 129]  # stage 2 decides, not the answer stage 1 ran on to
    assert res[0].reasoning == "1+8+0=09,9 5+7+0=12,129" and res[0].answer_text == "129"


def test_two_stage_pipeline_with_demos_separate_answer_function_and_gsm8k_cut():
    first, second = Stub(lambda p: " 3 + 4 = 7.\nQ: another"), Stub(lambda p: " 7. Extra 9")
    demos = [R.Demonstration("1 and 1?", "1 + 1 = 2.", 2)]
    res = R.two_stage_cot(["3 and 4?"], first, fmt="gsm8k", demos=demos, answer_generate=second)
    prefix = "Q: 1 and 1? A: Let's think step by step. 1 + 1 = 2. Therefore, the answer (arabic numerals) is 2\n\n"
    assert first.calls == [[prefix + "Q: 3 and 4? A: Let's think step by step."]]
    assert second.calls == [[prefix + "Q: 3 and 4? A: Let's think step by step. 3 + 4 = 7. "
                             "Therefore, the answer (arabic numerals) is"]]
    assert res[0].prediction == 7


def test_pipeline_errors():
    with pytest.raises(ConfigError, match="one continuation per prompt"):
        R.two_stage_cot(["1+1"], lambda ps: [])
    with pytest.raises(ConfigError, match="not a function"):
        R.two_stage_cot(["1+1"], "model")
    with pytest.raises(ConfigError, match="no questions"):
        R.two_stage_cot([], lambda ps: ps)
    with pytest.raises(ConfigError, match="How to fix"):
        R.CoTFormat(question="Q:")
    with pytest.raises(ConfigError, match="inside the reasoning trigger"):
        R.CoTFormat(reasoning_trigger="A: think", answer_trigger="A:")
    with pytest.raises(ConfigError):
        R.get_format("socratic")
    with pytest.raises(ConfigError, match="3-tuples"):
        R.cot_prompt("1+1", ["1+1 = 2"])
    with pytest.raises(ConfigError, match="1 to 8 digits"):
        R.addition_problems(9, 10)
    with pytest.raises(ConfigError, match="1 to 8 digits"):
        R.worked_examples(0, 10)
    with pytest.raises(ConfigError, match="unknown training mode"):
        R.training_pair(("1+1", "1+1+0=02,2", 2), "socratic")
    with pytest.raises(ConfigError):
        R.evaluate(R.addition_problems(1, 2), lambda ps: ps, mode="socratic")


def test_addition_problems_stream_names_the_random_stream():
    """The model cards (family_eval, stream "addition") and the lectures (the default stream) draw the same task
    from two seeded streams: same stream and seed -> same problems; another stream -> other numbers, same shape."""
    lecture = R.addition_problems(3, 6, shots=2, seed=0)
    cards = R.addition_problems(3, 6, shots=2, seed=0, stream="addition")
    assert cards == R.addition_problems(3, 6, shots=2, seed=0, stream="addition") and cards != lecture
    assert all(len(p.demos) == 2 and sum(map(int, p.question.split("+"))) == p.answer
               and all(len(x) == 3 for x in p.question.split("+")) for p in cards)


def test_worked_examples_and_training_pairs():
    demos = R.worked_examples(5, 6, seed=2)
    assert demos == R.worked_examples(5, 6, seed=2) and demos != R.worked_examples(5, 6, seed=3)
    for d in demos:
        a, b = map(int, d.question.split("+"))
        assert len(str(a)) == len(str(b)) == 5 and d.answer == a + b and d.reasoning == corpus.scratchpad(a, b)
    d = R.addition_demonstration(347, 285)
    assert R.training_pair(d) == ("Q: 347+285 S:", " 7+5+0=12,2 4+8+1=13,32 3+2+1=06,632 A: 632\n")
    assert R.training_pair(d, "direct") == ("Q: 347+285 A:", " 632\n")
    # prompt + target is exactly the corpus line a model sees in pretraining (plus the line end)
    assert "".join(R.training_pair(d)) == R.format_demonstration(d) + "\n"
    assert "".join(R.training_pair(d, "direct")) == R.format_demonstration(d, cot=False) + "\n"
    prompt, target = R.training_pair(d, fmt="gsm8k")
    assert prompt == R.cot_prompt("347+285", fmt="gsm8k") and target.endswith("the answer (arabic numerals) is 632\n\n")
    long = R.addition_problems(6, 3, shots=1, seed=0)
    assert all(len(p.question.split("+")[0]) == 6 for p in long) and len(long[0].demos) == 1


def test_few_shot_and_direct_per_question_demos():
    problems = R.addition_problems(2, 3, shots=1, seed=4)
    stub = Stub(lambda p: "x A: 5")
    res = R.evaluate(problems, stub, "cot")
    assert stub.calls[0] == [R.cot_prompt(p.question, p.demos) for p in problems]
    assert res["predictions"] == [5, 5, 5] and res["n"] == 3
    stub = Stub(lambda p: "5")
    R.evaluate(problems, stub, "zero_shot_direct")
    assert stub.calls[0] == [f"Q: {p.question} A:" for p in problems]
    assert R.addition_problems(2, 3, shots=1, seed=4) == problems  # deterministic
    assert all(len(p.demos) == 1 and p.answer == eval(p.question) for p in problems)


# ----------------------------------------------------------------------------- self-consistency
@pytest.mark.parametrize("votes, expected", [
    ([3, 5, 3], 3),
    ([5, 3, 3, 5], 5),          # tie: the answer reached first wins
    ([3, 5, 5, 3], 3),
    ([9, 1, 1, 9, 2], 9),       # not the largest nor the smallest by rule: the first
    ([1, 9, 9, 1], 1),
    ([None, None, 4], 4),       # None votes are ignored
    ([None, 2, None, None], 2),
    ([None, None], None),
    ([], None),
    ([7.0, 7, 8], 7.0),         # numeric comparison: 7.0 and 7 are one answer
    ([-2, -2, 10], -2),
])
def test_majority_vote(votes, expected):
    got = R.majority_vote(votes)
    assert got == expected and type(got) is type(expected)


def test_self_consistency_curve_and_chain_sampling_with_a_stub():
    chains = [[1, 2, 2], [5, None, 5], [3, 4, 4]]
    assert R.self_consistency_curve(chains, [2, 5, 3]) == {1: 2 / 3, 2: 2 / 3, 3: 2 / 3}
    assert R.self_consistency_curve(chains, [2, 5, 4], ms=[3]) == {3: 1.0}
    with pytest.raises(ConfigError):
        R.self_consistency_curve(chains, [2, 5, 4], ms=[4])
    counter = iter(range(100))
    stub = Stub(lambda p: f"A: {next(counter)}")
    got = R.sample_chains(["1+1", "2+2"], stub, 3)
    assert got == [[0, 1, 2], [3, 4, 5]] and stub.calls == [["Q: 1+1 S:"] * 3 + ["Q: 2+2 S:"] * 3]
    with pytest.raises(ConfigError):
        R.sample_chains(["1+1"], stub, 0)


# ----------------------------------------------------------------------------- GSM8K stand-in
def _gsm8k_standin():
    datasets = pytest.importorskip("datasets")
    return datasets.Dataset.from_dict({
        "question": ["Natalia sold 48 clips in April and half as many in May. How many in all? ",
                     "A shop sells 1,200 pens a day. How many in 2 days?"],
        "answer": ["In May she sold 48/2 = <<48/2=24>>24 clips.\nIn all 48+24 = <<48+24=72>>72.\n#### 72",
                   "2 * 1,200 = <<2*1200=2400>>2,400\n#### 2,400"]})


def test_gsm8k_from_a_local_dataset(tmp_path, monkeypatch):
    ds = _gsm8k_standin()
    problems = R.problems_from_dataset(ds)
    assert [p.answer for p in problems] == [72, 2400]
    assert problems[0].question.endswith("How many in all?")
    demos = R.gsm8k_demonstrations(ds, k=1)
    assert demos[0].reasoning == "In May she sold 48/2 = 24 clips. In all 48+24 = 72." and demos[0].answer == 72
    ds.save_to_disk(str(tmp_path / "gsm8k"))
    loaded = R.load_gsm8k(path=str(tmp_path / "gsm8k"))
    assert R.problems_from_dataset(loaded, n=1)[0].answer == 72
    with pytest.raises(ConfigError, match="columns"):
        R.problems_from_dataset(ds.rename_column("answer", "solution"))
    with pytest.raises(ConfigError, match="####"):
        R.gsm8k_final_answer("72")


def test_gsm8k_offline_raises_a_clear_error(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("COURSE_GSM8K_PATH", raising=False)
    with pytest.raises(HubUnavailableError, match="COURSE_GSM8K_PATH"):
        R.load_gsm8k()


def test_registry_names_gsm8k():
    from course_lib.registry import DATASETS

    info = DATASETS["gsm8k"]
    assert (info.hub_id, info.config, info.text_column, info.label_column) == ("openai/gsm8k", "main", "question", "answer")


# ----------------------------------------------------------------------------- the embedded model
def test_sampler_is_reproducible_and_errors(embedded):
    model, tok = embedded
    prompts = [R.cot_prompt(p.question, p.demos) for p in R.addition_problems(2, 4, seed=1)]
    a = R.sampler(model, tok, temperature=1.0, seed=3, max_new_tokens=40)(prompts)
    b = R.sampler(model, tok, temperature=1.0, seed=3, max_new_tokens=40)(prompts)
    assert a == b and len(a) == 4
    assert R.sampler(model, tok, temperature=0, max_new_tokens=40)(prompts) == \
        R.greedy(model, tok, max_new_tokens=40)(prompts)
    with pytest.raises(ConfigError):
        R.sampler(model, tok, temperature=-1)


def test_generator_seeds_its_ith_call_and_is_what_greedy_and_sampler_are(embedded):
    """prompting.generator is the one generate function: its i-th sampling call is seed * 100_003 + i, then
    prompting.generate (so lecture 02's chains keep their texts); at temperature 0 it is plain greedy generate."""
    from course_lib import prompting

    model, tok = embedded
    prompts = [R.cot_prompt(p.question, p.demos) for p in R.addition_problems(2, 3, seed=1)]
    gen = prompting.generator(model, tok, temperature=3.0, seed=2, max_new_tokens=40)
    first, second = gen(prompts), gen(prompts)
    expected = []
    for i in range(2):
        torch.manual_seed(2 * 100_003 + i)
        expected.append(prompting.generate(model, tok, prompts, temperature=3.0, max_new_tokens=40))
    assert [first, second] == expected and first != second and all(first)
    assert R.sampler(model, tok, temperature=3.0, seed=2, max_new_tokens=40)(prompts) == first
    greedy = prompting.generate(model, tok, prompts, max_new_tokens=40)
    assert prompting.generator(model, tok, max_new_tokens=40)(prompts) == greedy == \
        R.greedy(model, tok, max_new_tokens=40)(prompts) != first
    for bad in (-0.5, True, "hot"):
        with pytest.raises(ConfigError, match="temperature"):
            prompting.generator(model, tok, temperature=bad)


def test_cot_beats_direct_on_the_embedded_model(embedded):
    model, tok = embedded
    problems = R.addition_problems(2, 40, shots=2, seed=0)
    gen = R.greedy(model, tok, max_new_tokens=48)
    direct = R.evaluate(problems, gen, "direct")["accuracy"]
    cot = R.evaluate(problems, gen, "cot")["accuracy"]
    assert cot >= direct + 0.25, (direct, cot)
    zero = R.evaluate(problems, gen, "zero_shot_cot")
    assert zero["accuracy"] > R.evaluate(problems, gen, "zero_shot_direct")["accuracy"], zero["outputs"][:3]


def test_gsm8k_lecture_path_runs_offline(tmp_path, embedded):
    """The GPU runtime's GSM8K cell of lecture 02, end to end on a local stand-in: a saved dataset with GSM8K's
    columns, a random Llama (long context) with a real tokenizer, generation without the newline stop, every mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = embedded
    _gsm8k_standin().save_to_disk(str(tmp_path / "gsm8k"))
    rows = R.load_gsm8k("test", path=str(tmp_path / "gsm8k"))
    problems = R.problems_from_dataset(rows, n=2, demos=R.gsm8k_demonstrations(rows, k=1))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024)
    model = LlamaForCausalLM(cfg).eval()
    gen = R.greedy(model, tok, max_new_tokens=12, stop_at_newline=False, batch_size=16)
    sent = []

    def spy(prompts):
        sent.append(list(prompts))
        return gen(prompts)

    for mode in R.MODES:
        res = R.evaluate(problems, spy, mode, fmt="gsm8k")
        assert res["n"] == 2 and 0.0 <= res["accuracy"] <= 1.0
        assert all("\nQ:" not in o and "\n\n" not in o for o in res["outputs"]), res["outputs"]
    direct, cot, zero_direct, zero_stage1, zero_stage2 = sent
    assert direct[0].startswith("Q: Natalia sold 48 clips") and "Therefore" not in direct[0]
    assert direct[1].endswith("How many in 2 days? A: The answer (arabic numerals) is")
    assert cot[1].endswith("How many in 2 days? A: Let's think step by step.") and "#### 72" not in cot[1]
    assert zero_direct == [f"Q: {p.question} A: The answer (arabic numerals) is" for p in problems]
    assert zero_stage1 == [f"Q: {p.question} A: Let's think step by step." for p in problems]
    assert all(s.endswith("Therefore, the answer (arabic numerals) is") for s in zero_stage2)


def test_lecture02_plots_draw():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_lib.plotting import reasoning as rplot

    rows = {1: {"direct": 0.9, "cot": 1.0}, 3: {"direct": 0.1, "cot": 0.8}}
    ev = rplot.addition_evaluation(rows, parameters=1000)
    assert ev["addition"]["digits"]["3"] == {"direct": 0.1, "scratchpad": 0.8} and ev["parameters"] == 1000
    conditions = ["zero-shot direct", "few-shot CoT"]
    ax = rplot.plot_conditions({(c, d): 0.25 * (i + 1) for i, c in enumerate(conditions) for d in (2, 3)}, conditions, (2, 3))
    assert sorted(p.get_height() for p in ax.patches) == [25, 25, 50, 50] and ax.get_ylabel().endswith("(%)")
    ax = rplot.plot_cot_gain_by_size({"big": rplot.addition_evaluation(rows, 10_000), "small": ev}, digits=(1, 3))
    assert ax.get_xscale() == "log" and [round(y) for y in ax.lines[1].get_ydata()] == [70, 70]
    ax = rplot.plot_self_consistency({1: 0.4, 3: 0.6}, greedy=0.5)
    assert list(ax.lines[0].get_ydata()) == [40, 60] and ax.lines[1].get_ydata()[0] == 50
    axes = rplot.plot_supervision({"cot": 0.0, "direct": 0.0}, {"cot": 0.9, "direct": 0.05},
                                  {"cot": [1.0, 0.2], "direct": [3.0, 2.0]}, {"cot": "working", "direct": "answer"})
    assert [p.get_height() for p in axes[1].patches][2:] == [90, 5]
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["working", "answer"]
    plt.close("all")

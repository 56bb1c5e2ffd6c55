"""Write ``MODEL_CARD.md`` for members of the embedded family.

    python -m course_lib.embedded.model_card [--size m] [--all]

The card is generated from the member's ``training.json`` (written by
:mod:`course_lib.embedded.train`) and ``evaluation.json`` (written by
:mod:`course_lib.family_eval`); every number in it comes from those files.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import DEFAULT_MEMBER, MEMBERS, member_dir


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _section(title: str, text: str, header: list[str] | None = None, rows: list[list] | None = None) -> str:
    """A ``###`` section: its title, a paragraph, and a table when ``header`` is given."""
    return f"### {title}\n\n{text}" + (f"\n\n{_table(header, rows)}" if header else "")


def _evaluation_section(ev: dict) -> str:
    parts = []
    fs = ev["few_shot"]
    ks = fs["ks"]
    rows = [[task] + [_pct(curve[str(k)]) for k in ks] for task, curve in fs["per_task"].items()]
    rows.append(["**mean**"] + [f"**{_pct(fs['mean'][str(k)])}**" for k in ks])
    parts.append(_section("Word transforms: exact match against k demonstrations",
                          f"Held-out words (never in the corpus), {fs['n_per_cell']} items per cell, greedy decoding, "
                          "prompt `input => output` lines.", ["transform"] + [f"k={k}" for k in ks], rows))
    ins = ev.get("instruction")
    if ins:
        parts.append(_section("Instruction (`task: <name>` header) vs demonstrations",
                              f"Mean over the word transforms, {ins['n_per_cell']} items per transform and condition.",
                              ["prompt", "accuracy"], [[c, _pct(ins["mean"][c])] for c in ins["conditions"]]))
    add = ev["addition"]
    rows = [[d, _pct(r["direct"]), _pct(r["scratchpad"]), f"{100 * r['gap']:+.1f} points"]
            for d, r in add["digits"].items()]
    parts.append(_section("Addition: direct answer vs scratchpad",
                          f"Two random d-digit numbers, {add['shots']} worked examples in the prompt, "
                          f"{add['n_per_cell']} items per cell, exact match of the sum.",
                          ["digits", "direct", "scratchpad", "gain"], rows))
    fit = ev.get("fit")
    if fit:
        parts.append(_section("Winograd-style pairs (`the X did not fit in the Y because the ...`)",
                              f"The sentence with the higher probability is chosen, {fit['n']} pairs: "
                              f"{_pct(fit['accuracy_sum'])} (summed log-likelihood), {_pct(fit['accuracy_per_token'])} "
                              "(per-token mean). Chance is 50%."))
    lab = ev.get("labels")
    if lab:
        parts.append(_section("In-context sentiment with different label words",
                              f"{lab['n_per_cell']} items per cell, label words scored as options (chance 50%).",
                              ["labels"] + [f"k={k}" for k in lab["ks"]],
                              [[name] + [_pct(c[str(k)]) for k in lab["ks"]] for name, c in lab["accuracy"].items()]))
    ppl = ev.get("perplexity")
    if ppl:
        parts.append(_section("Held-out perplexity",
                              f"{ppl['n_docs']} fresh corpus documents (seed {ppl['seed']}, never used in training), "
                              f"{ppl['tokens']} characters: loss {ppl['loss']:.3f} nats/char, perplexity "
                              f"{ppl['perplexity']:.3f}, {ppl['bits_per_char']:.3f} bits/char."))
    targets = ev.get("targets")
    if targets:
        parts.append(_section("The family's targets",
                              "Set for the default member (`embedded-m`); shown for every member so the sizes compare.",
                              ["target", "measured", "met"],
                              [[name, t["value"], "yes" if t["met"] else "**no**"] for name, t in targets.items()]))
    ad = ev.get("adaptation_speed")
    if ad:
        s = ad["summary"]
        parts.append(
            f"### Adaptation speed (LoRA r={ad['lora']['r']}, alpha={ad['lora']['lora_alpha']}, "
            f"{', '.join(ad['lora']['target_modules'])})\n\nSteps of LoRA on `{ad['task']}` (batch {ad['batch_size']}, "
            f"lr {ad['lr']}) until validation accuracy reaches {_pct(ad['target'])} ({ad['validation_examples']} "
            f"examples, checked every {ad['eval_every']} steps, at most {ad['max_steps']} steps; `None` = not reached), "
            f"seeds {ad['seeds']}:\n\n" + _table(
                ["initialisation", "steps to target"],
                [["pretrained", s["pretrained"]["steps"]], ["random (same architecture)", s["random"]["steps"]]])
            + f"\n\nPretrained reaches the target in fewer steps: {'yes' if ad['pretrained_faster'] else 'no'}.")
    return "\n\n".join(parts)


def render(training: dict, evaluation: dict | None) -> str:
    """The card's Markdown text."""
    size = training["size"]
    arch = training["architecture"]
    default = " (the default member: `load_model()` on the embedded runtime)" if size == "m" else ""
    lines = [
        f"# Model card: embedded-{size}",
        "",
        f"A {training['parameters'] / 1e6:.2f}M-parameter character-level causal language model of the course's "
        f"embedded family{default}. It ships inside the `course_lib` package so that every lecture runs offline "
        f"on a CPU. This card is generated by `python -m course_lib.embedded.model_card` from `training.json` and "
        f"`evaluation.json` in this directory.",
        "",
        "## Model",
        "",
        _table(["", ""], [
            ["parameters", f"{training['parameters']:,} (embeddings tied with the output layer)"],
            ["architecture", f"Llama (`LlamaForCausalLM`): {arch['layers']} layers, hidden size {arch['hidden']}, "
                             f"{arch['heads']} heads, MLP {arch['ffn']}, RoPE, RMSNorm, SwiGLU"],
            ["tokenizer", "one token per character (letters, digits, punctuation, space, newline), `<bos>` prepended"],
            ["context", f"{training['context']} tokens"],
            ["generation", "greedy; a newline ends generation (one answer per line)"],
        ]),
        "",
        "Load it with `course_lib.models.load_model(\"embedded-" + size + "\")`, or with plain transformers: "
        "`AutoModelForCausalLM.from_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)`.",
        "",
        "## Training",
        "",
        _table(["", ""], [
            ["data", "the synthetic corpus of `course_lib.embedded.corpus` (word transforms, sentiment, addition with "
                     "and without scratchpad, a made-up dictionary, key/value recall, `fit` sentences), generated on "
                     "the fly from a seeded RNG"],
            ["tokens", f"{training['tokens']:,} (training targets)"],
            ["steps", f"{training['steps']} x batch {training['batch_size']} documents, AdamW, lr {training['lr']}, "
                      "warm-up then cosine decay"],
            ["final loss", (f"{training['log'][-1]['loss']:.3f} train, {training['log'][-1]['val_loss']:.3f} validation "
                            "(nats/char)") if training.get("log") else "n/a"],
            ["wall time", f"{training['wall_s']:.0f} s"],
            ["hardware", f"{training['hardware']} (torch {training.get('torch', '?')})"],
        ]),
        "",
        "Reproduce:",
        "",
        "```",
        training["command"] + " --out <dir>",
        "```",
        "",
        "## Evaluation",
        "",
    ]
    if evaluation:
        note = " (quick run: few items per cell, indicative only)" if evaluation.get("quick") else ""
        lines += [f"All items are held out from pretraining and fixed by seed {evaluation.get('seed', 0)}; produced by "
                  f"`python -m course_lib.family_eval --size {size}`{note} on {evaluation.get('device', 'cpu')} "
                  f"in {evaluation.get('seconds', '?')} s.", "", _evaluation_section(evaluation), ""]
    else:
        lines += ["Not evaluated yet: run `python -m course_lib.family_eval --size " + size + "`.", ""]
    lines += [
        "## Intended use",
        "",
        "Teaching. The model is small enough to load in about a second and generate on a laptop CPU, and its corpus "
        "was designed so that the phenomena of the course appear in miniature: in-context learning from "
        "demonstrations, instruction headers, chain-of-thought (scratchpad) prompting, scoring options by "
        "log-likelihood, and fast parameter-efficient fine-tuning on the downstream task "
        "(`course_lib.tasks.review_verdicts`). It is not a general language model.",
        "",
        "## Limitations",
        "",
        "- It knows only its synthetic corpus: a 2,700-word vocabulary of lowercase English words, fixed sentence "
        "patterns, characters outside its alphabet become `<unk>`. Anything else is out of distribution.",
        "- It does not learn new arbitrary label mappings in context: sentiment with never-seen label words "
        "(`foo`/`bar`) or flipped labels stays near chance however many demonstrations are given (see the label "
        "table). Demonstrations select a task it already knows; they do not teach a new one.",
        "- Addition degrades with length: 4-digit sums are unreliable even with the scratchpad, and direct "
        "answers beyond one digit are mostly wrong.",
        "- Prompts must follow the corpus format (`input => output` lines, `Q: a+b S: ... A: ...`); a paraphrased "
        "instruction is not understood. Sequences longer than "
        f"{training['context']} characters are outside the trained context.",
        "- The Winograd-style `fit` sentences and their objects occur in pretraining: that score measures what was "
        "learned, not generalisation.",
        "- Results are for greedy decoding on CPU in float32; other dtypes or devices can flip a few close decisions.",
        "",
    ]
    return "\n".join(lines)


def write_card(size: str) -> Path:
    """Write ``MODEL_CARD.md`` for one shipped member; returns its path."""
    d = member_dir(size)
    training = json.loads((d / "training.json").read_text())
    ev_path = d / "evaluation.json"
    evaluation = json.loads(ev_path.read_text()) if ev_path.is_file() else None
    path = d / "MODEL_CARD.md"
    path.write_text(render(training, evaluation))
    return path


def main(argv: list[str] | None = None) -> None:
    from . import available_members

    p = argparse.ArgumentParser(description="Write MODEL_CARD.md for embedded members.")
    p.add_argument("--size", choices=MEMBERS)
    p.add_argument("--all", action="store_true", help="every shipped member (the default without --size)")
    a = p.parse_args(argv)
    for size in [a.size] if a.size and not a.all else available_members():
        print(write_card(size))


if __name__ == "__main__":
    main()

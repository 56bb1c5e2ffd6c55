"""course_lib.findings: a claim is rendered only when its condition on measured numbers holds."""
import math

import numpy as np
import pytest
import torch

from course_lib import findings as F
from course_lib.errors import ConfigError


def test_claim_shown_only_when_it_holds():
    yes = F.finding("the rise grows with size", True, measured="xs 32%, s 93%", otherwise="it does not")
    no = F.finding("the rise grows with size", False, measured="xs 32%, s 93%, m 90%", otherwise="it does not")
    assert yes.text == "The rise grows with size (measured: xs 32%, s 93%)."
    assert no.text == "It does not (measured: xs 32%, s 93%, m 90%)."
    assert "grows" not in no.text


def test_default_fallback_says_not_shown_and_markdown_matches_text():
    f = F.finding("merging is free", False, measured="12 ms vs 10 ms")
    assert f.text.startswith("Not shown by this run: merging is free")
    assert f._repr_markdown_() == f.text == str(f)


def test_numpy_and_torch_booleans_accepted_other_truthy_values_rejected():
    assert F.finding("c", np.bool_(True)).holds is True
    assert F.finding("c", torch.tensor(1.0) > 2).holds is False
    for bad in ([1], "yes", 1.0, torch.tensor([True, False])):
        with pytest.raises(ConfigError, match="holds must be a bool"):
            F.finding("c", bad)
    with pytest.raises(ConfigError, match="non-empty claim"):
        F.finding("  ", True)


def test_report_lists_findings_under_title_and_rejects_strings():
    rep = F.report(F.finding("a", True, "1"), F.finding("b", False, "2", "not b"), title="What this run shows")
    assert rep.text.splitlines() == ["**What this run shows**", "", "* A (measured: 1).", "* Not b (measured: 2)."]
    with pytest.raises(ConfigError, match="Finding objects"):
        F.report("a plain sentence")


def test_show_prints_outside_ipython(capsys):
    assert F.show(F.finding("x", True, "y")) is None    # a cell ending in show() renders once
    assert capsys.readouterr().out.strip() == "* X (measured: y)."


def test_increasing():
    assert F.increasing([0.32, 0.90, 0.93])
    assert not F.increasing([0.32, 0.93, 0.90])           # the L01 case: m below s
    assert F.increasing([0.32, 0.93, 0.92], tolerance=0.02)
    assert not F.increasing([0.5, 0.5])                   # flat is not a rise
    assert not F.increasing([0.5])
    with pytest.raises(ConfigError):
        F.increasing([])
    with pytest.raises(ConfigError):
        F.increasing([0.1, math.nan])


def test_separated_needs_non_overlapping_ranges():
    assert F.separated([10, 11, 12], [7, 8, 9]) == 1
    assert F.separated([7, 8], [10, 12]) == -1
    assert F.separated([344, 406, 500], [300, 592]) == 0  # overlapping spreads: no claim
    assert F.separated([5.0], [5.0]) == 0
    assert F.separated([0.705, 0.72, 0.74], [0.66, 0.695], gap=0.05) == 0   # apart by one point: not by the noise
    assert F.separated([0.76, 0.8], [0.66, 0.695], gap=0.05) == 1
    assert F.separated([0.6], [0.7, 0.75], gap=0.05) == -1


def test_spread_at_ceiling_entropy_pct():
    assert F.spread([3, 1, 2, 10]) == (2.5, 1, 10)
    assert F.at_ceiling([0.8, 0.99]) and not F.at_ceiling([0.8, 0.9])
    assert F.at_ceiling([0.9], ceiling=0.9)
    with pytest.raises(ConfigError, match="fractions"):
        F.at_ceiling([99.0])
    assert F.entropy_bits([1] * 16) == pytest.approx(4.0)
    assert F.entropy_bits([5, 0, 5]) == pytest.approx(1.0)
    assert F.entropy_bits([0.017, 0.093] + [0.89 / 14] * 14) < 4.0
    with pytest.raises(ConfigError):
        F.entropy_bits([0, 0])
    assert F.pct(0.934) == "93%" and F.pct(0.9345, 1) == "93.5%"


# --- the machine-readable record and the notebook check --------------------------------------------

def _executed(cells):
    """A notebook as nbclient writes it: markdown cells, and code cells whose outputs are given mime bundles."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    for cell in cells:
        if isinstance(cell, str):
            nb.cells.append(nbformat.v4.new_markdown_cell(cell))
        else:
            nb.cells.append(nbformat.v4.new_code_cell("F.show(...)", outputs=[
                nbformat.v4.new_output("display_data", data=bundle) for bundle in cell]))
    nbformat.validate(nb)            # the custom MIME type is a valid notebook output
    return nbformat.reads(nbformat.writes(nb), as_version=4)   # through the JSON on disk


def test_report_bundle_carries_markdown_and_the_findings():
    f = F.finding("LoRA is within 2 points of full fine-tuning", False, "LoRA 80%, full 90%", "LoRA lags", key="lora-vs-full")
    bundle = F.report(f, title="T")._repr_mimebundle_()
    assert bundle["text/markdown"] == bundle["text/plain"] == "**T**\n\n* LoRA lags (measured: LoRA 80%, full 90%)."
    (rec,) = bundle[F.MIME_TYPE]["findings"]
    assert rec == {"claim": f.claim, "holds": False, "measured": "LoRA 80%, full 90%", "otherwise": "LoRA lags",
                   "key": "lora-vs-full", "text": "LoRA lags (measured: LoRA 80%, full 90%)."}
    assert f._repr_mimebundle_()[F.MIME_TYPE]["findings"] == [rec]   # a finding left as a cell's value records too
    with pytest.raises(ConfigError, match="key"):
        F.finding("c", True, key="has spaces")


def test_show_in_ipython_displays_the_bundle(monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append((obj, raw)))
    F.show(F.finding("a", True, "1", key="k"))
    ((bundle, raw),) = shown
    assert raw and bundle["text/markdown"] == "* A (measured: 1)." and bundle[F.MIME_TYPE]["findings"][0]["key"] == "k"


def test_check_notebook_passes_prose_that_cites_findings_that_hold():
    holds = F.finding("label words beat random initialisation", True, "label 80%, random 60%", key="init")
    nb = _executed(["The soft prompt starts best from the label words <!-- finding: init -->.",
                    [F.report(holds)._repr_mimebundle_()], "Plain prose, no result stated."])
    assert F.notebook_findings(nb)[0]["key"] == "init"
    assert F.check_notebook(nb) == []


def test_a_contradicted_finding_fails_the_check():
    contra = F.finding("label words beat random initialisation", False, "label 55%, random 60%",
                       otherwise="random initialisation did as well", key="init")
    bundle = F.report(contra)._repr_mimebundle_()
    # prose that relies on it by citation
    (problem,) = F.check_notebook(_executed(["Label words win <!-- finding: init -->.", [bundle]]))
    assert "cell 0" in problem and "'init'" in problem and "does not show" in problem and "label 55%" in problem
    # prose that repeats its claim word for word (case, emphasis and line breaks ignored)
    (problem,) = F.check_notebook(_executed([[bundle], "So **label words\nbeat random initialisation**."]))
    assert "cell 1" in problem and "states" in problem
    # the same prose passes when the finding holds
    holds = F.report(F.finding(contra.claim, True, "label 70%, random 60%", key="init"))._repr_mimebundle_()
    assert F.check_notebook(_executed([[holds], "So label words beat random initialisation."])) == []


def test_check_notebook_catches_stale_citations_duplicate_keys_and_edited_outputs():
    a = F.report(F.finding("the merged model is not slower", True, "1 ms", key="merge"))._repr_mimebundle_()
    problems = F.check_notebook(_executed(["As shown <!-- finding: gone -->.", [a, a]]))
    assert any("'gone'" in p and "no finding" in p for p in problems)
    assert any("two findings have the key 'merge'" in p for p in problems)
    edited = dict(a, **{"text/markdown": "* The merged model is faster (measured: 1 ms)."})   # hand-edited output
    (problem,) = F.check_notebook(_executed([[edited]]))
    assert "selects" in problem
    flipped = F.report(F.finding("x is fast", True, "1 ms"))._repr_mimebundle_()
    flipped[F.MIME_TYPE]["findings"][0]["holds"] = False     # the text shown is not the one the condition selects
    assert len(F.check_notebook(_executed([[flipped]]))) == 1


def test_binomial_margin_is_two_standard_errors_of_a_difference_at_p_one_half():
    import random

    assert F.binomial_margin(50) == pytest.approx(0.2) and F.binomial_margin(72) == pytest.approx(2 * (1 / 144) ** 0.5)
    assert F.binomial_margin(200, z=1.0) == pytest.approx(0.05)
    # it is what it says: two runs of 72 coin flips at p = 1/2 differ by more than it about 5% of the time
    rng, n = random.Random(0), 72
    gaps = [abs(sum(rng.random() < 0.5 for _ in range(n)) - sum(rng.random() < 0.5 for _ in range(n))) / n
            for _ in range(4000)]
    assert 0.03 < sum(g > F.binomial_margin(n) for g in gaps) / len(gaps) < 0.07
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_items"):
            F.binomial_margin(bad)

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

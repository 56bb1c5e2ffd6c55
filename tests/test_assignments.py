"""``course check`` for every assignment: the solution scores full marks, the release scores zero,
every plausible wrong answer loses points, nothing leaks. Runs the real nbgrader."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_course_check(assignment, monkeypatch, sandbox_flags):
    from course_lib import grading

    monkeypatch.setenv("COURSE_ROOT", str(ROOT))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert grading.check([assignment], sandbox=not sandbox_flags) == 0, f"course check {assignment} failed: see the output above"


def test_release_is_up_to_date(monkeypatch):
    from course_lib import grading

    monkeypatch.setenv("COURSE_ROOT", str(ROOT))
    assert grading.release(check=True) == 0, "exercises/ is stale: run `course release` and commit exercises/"

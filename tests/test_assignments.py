"""``course check`` for every assignment: the solution scores full marks, the release scores zero,
every plausible wrong answer loses points, nothing leaks. Runs the real nbgrader."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_course_check(assignment, monkeypatch, capsys, sandbox_flags):
    """`course check ASSIGNMENT` as an instructor types it: exit 0, and every stage of the proof reported."""
    from course_lib.cli import main

    monkeypatch.setenv("COURSE_ROOT", str(ROOT))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["check", assignment, *sandbox_flags])
    out = capsys.readouterr().out
    print(out)
    assert code == 0, f"course check {assignment} failed: see the output above"
    for step in ("lint", "release is fresh", "autograde: solution ", "blank 0/", "feedback",
                 "runs without nbgrader", "wrong answers lose their points"):
        assert step in out, f"course check {assignment} did not report the stage {step!r}"


def test_release_is_up_to_date(monkeypatch):
    from course_lib import grading

    monkeypatch.setenv("COURSE_ROOT", str(ROOT))
    assert grading.release(check=True) == 0, "exercises/ is stale: run `course release` and commit exercises/"

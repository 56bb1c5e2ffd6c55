"""The autograding pipeline: `course check` proves the warm-up right and catches what breaks it;
`course grade` grades mixed submissions, including one that never finishes.

Tests that break something work on a temporary copy of the course (COURSE_ROOT points at it).
"""
from __future__ import annotations

import copy
import csv
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from course_lib.grading.checker import TEST_PRINTER
from course_lib.grading.notebook import find_cell, solution_body

REPO = Path(__file__).resolve().parents[1]
A = "00_warmup"


def _course_copy(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "course"
    root.mkdir()
    for name in ("pyproject.toml", "nbgrader_config.py"):
        shutil.copy2(REPO / name, root / name)
    (root / "lectures").mkdir()
    shutil.copytree(REPO / "solutions" / A, root / "solutions" / A)
    shutil.copytree(REPO / "exercises" / A, root / "exercises" / A)
    shutil.copytree(REPO / "tests" / "wrong_answers", root / "tests" / "wrong_answers",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("COURSE_ROOT", str(root))
    return root


def _source(root: Path):
    return nbformat.read(root / "solutions" / A / f"{A}.ipynb", as_version=4)


def _write_source(root: Path, nb) -> None:
    nbformat.write(nb, root / "solutions" / A / f"{A}.ipynb")


def _check(root: Path, stages):
    from course_lib.grading.checker import check_assignment
    from course_lib.grading.config import load_config

    return check_assignment(load_config(root), A, stages=stages)


def test_config_error_is_loud(tmp_path, monkeypatch, capsys, sandbox_flags):
    from course_lib.cli import main

    root = _course_copy(tmp_path, monkeypatch)
    cfg = root / "nbgrader_config.py"
    cfg.write_text(cfg.read_text() + "\nraise RuntimeError('broken on purpose')\n")
    assert main(["release", "--check"]) == 2
    err = capsys.readouterr().err
    assert "nbgrader_config.py raised RuntimeError: broken on purpose" in err and "How to fix" in err
    cfg.write_text(cfg.read_text().replace("raise RuntimeError('broken on purpose')", "")
                   .replace('COURSE_ID = "efficient-adaptation"', 'COURSE_ID = "other"'))
    assert main(["check", A, *sandbox_flags]) == 2
    assert "sentinel" in capsys.readouterr().err


def test_stale_release_fails_naming_the_file(tmp_path, monkeypatch, capsys):
    from course_lib.cli import main

    root = _course_copy(tmp_path, monkeypatch)
    nb = _source(root)
    _, cell = find_cell(nb, "count_task")
    cell.source += "\n\nA sentence added after the last release."
    _write_source(root, nb)
    assert main(["release", "--check"]) == 1
    err = capsys.readouterr().err
    assert f"exercises/{A}/{A}.ipynb differs from a fresh release" in err and "course release" in err
    problems = _check(root, stages=("lint", "release"))
    assert any(f"exercises/{A}/{A}.ipynb differs" in p for p in problems), problems
    assert main(["release"]) == 0 and main(["release", "--check"]) == 0  # releasing fixes it


def test_misspelled_marker_is_caught_and_its_leak_found(tmp_path, monkeypatch):
    root = _course_copy(tmp_path, monkeypatch)
    nb = _source(root)
    _, cell = find_cell(nb, "count_tests")
    cell.source = cell.source.replace("### BEGIN HIDDEN TESTS", "### BEGIN HIDDEN TEST")
    _write_source(root, nb)
    problems = _check(root, stages=("lint", "leaks"))  # nbgrader releases it without complaint
    assert any("count_tests" in p and "'### BEGIN HIDDEN TEST'" in p and "looks like an nbgrader marker" in p
               for p in problems), problems
    assert any(p.startswith(f"exercises/{A}/{A}.ipynb: contains marker text") for p in problems), problems
    assert any("contains a line of a solution or hidden test" in p and "layers.0." in p for p in problems), problems


def test_solution_that_loses_points_fails(tmp_path, monkeypatch):
    root = _course_copy(tmp_path, monkeypatch)
    nb = _source(root)
    _, cell = find_cell(nb, "count_answer")
    cell.source = cell.source.replace("if p.requires_grad and id(p) not in seen", "if id(p) not in seen")
    _write_source(root, nb)
    problems = _check(root, stages=("autograde",))
    assert any("the solution loses points in cell" in p and "(count_tests): 0.0/2.0" in p and "requires_grad" in p
               for p in problems), problems


def test_wrong_answer_that_keeps_full_marks_fails(tmp_path, monkeypatch):
    root = _course_copy(tmp_path, monkeypatch)
    bank = root / "tests" / "wrong_answers" / f"{A}.py"
    bank.write_text(bank.read_text() + '''
WRONG_ANSWERS.append(dict(cell="count_answer", name="right, written another way (not wrong at all)", code="""
def count_trainable_parameters(model):
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())
""", fails=["count_tests"]))
''')
    problems = _check(root, stages=("wrong",))
    assert [p for p in problems if "keeps the points" in p] == [
        f"{A}: wrong answer 'right, written another way (not wrong at all)' in count_answer keeps the points of count_tests: "
        "its tests pass. Fix: add a test (hidden if it would give the answer away) that catches this mistake, "
        "or correct the entry's `fails`."], problems


def test_lint_flags_test_cell_traps():
    from course_lib.grading.lint import lint_notebook

    nb = nbformat.read(REPO / "solutions" / A / f"{A}.ipynb", as_version=4)
    assert lint_notebook(A, nb) == []
    bad = copy.deepcopy(nb)
    _, cell = find_cell(bad, "step_tests")
    cell.source = cell.source.replace("_allclose(a, b", "torch.allclose(a, b") + "\nassert True\nfinal_loss"
    _, ans = find_cell(bad, "load_answer")
    ans.outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    problems = lint_notebook(A, bad)
    assert any("uses torch.allclose directly" in p and "(step_tests)" in p for p in problems), problems
    assert any("assert without a message" in p for p in problems), problems
    assert any("ends with a bare expression" in p and "partial credit" in p for p in problems), problems
    assert any("(load_answer): has outputs" in p for p in problems), problems


def _mixed_class(tmp_path: Path, root: Path) -> Path:
    """A class of 12 in SUBMISSIONS/<student>/00_warmup: honest with edited points, a made-up graded cell and a
    right answer that writes to stderr when the tests call it (ann), blank (bob), a right answer behind a hook that
    prints every test cell, a wrong answer and a monkeypatch, the two hostile cells refused unrun (cat), an
    interrupt-proof endless loop (dan), an answer that kills its own kernel (eve), right answers written another
    way (fay), a wrong training step (gus), a builtin rebound by ``except ... as`` (hal), a patch through an alias
    (ivy), a 4 TiB allocation (kim), a background thread (lea), right answers and a hostile cell of its own (max)."""
    cfg = root / "nbgrader_config.py"  # a short limit for the cells that will hang
    cfg.write_text(cfg.read_text() + '\nCELL_TIMEOUTS["count_answer"] = 10\n')
    src, rel = _source(root), nbformat.read(root / "exercises" / A / f"{A}.ipynb", as_version=4)
    answers = {gid: solution_body(find_cell(src, gid)[1].source)
               for gid in ("load_answer", "count_answer", "step_answer")}

    def submit(student, **sources):
        nb = copy.deepcopy(rel)
        for gid, code in sources.items():
            find_cell(nb, gid)[1].source = code
        d = tmp_path / "submissions" / student / A
        d.mkdir(parents=True)
        nbformat.write(nb, d / f"{A}.ipynb")

    noisy = "import sys\n" + answers["count_answer"].replace(  # right, but logs to stderr when the tests call it
        "    return total", "    print(f'counted {total:,} parameters', file=sys.stderr)\n    return total")
    assert noisy != "import sys\n" + answers["count_answer"]
    submit("ann", **{**answers, "count_answer": noisy})
    ann = tmp_path / "submissions" / "ann" / A / f"{A}.ipynb"   # honest answers, hand-edited grading metadata
    nb = nbformat.read(ann, as_version=4)
    find_cell(nb, "count_tests")[1].metadata.nbgrader["points"] = 100
    nb.cells.append(nbformat.v4.new_code_cell("print('bonus')", metadata={"nbgrader": {
        "grade": True, "grade_id": "bonus_tests", "points": 50, "locked": True, "solution": False, "schema_version": 3}}))
    nbformat.write(nb, ann)
    submit("bob")
    submit("cat", load_answer=TEST_PRINTER + answers["load_answer"],
           count_answer="def count_trainable_parameters(model):\n    return sum(p.numel() for p in model.parameters())",
           step_answer="import torch\ntorch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
                       "def training_step(model, batch, optimizer):\n    loss = model(**batch).loss\n"
                       "    loss.backward()\n    optimizer.step()\n    return loss.item()")
    submit("dan", load_answer=answers["load_answer"], step_answer=answers["step_answer"],
           count_answer="while True:\n    try:\n        pass\n    except KeyboardInterrupt:\n        pass")
    submit("eve", load_answer=answers["load_answer"], step_answer=answers["step_answer"],
           count_answer="import os\nos.kill(os.getpid(), 9)")  # (os._exit itself is refused unrun: a private name)
    submit("fay", load_answer=answers["load_answer"].replace("load_model('embedded-xs')", 'load_model(name="embedded-xs")'),
           count_answer="def count_trainable_parameters(model):\n"
                        "    return sum({id(p): p.numel() for p in model.parameters() if p.requires_grad}.values())",
           step_answer="def training_step(model, batch, optimizer):\n    optimizer.zero_grad(set_to_none=True)\n"
                       "    out = model(**batch)\n    out.loss.backward()\n    optimizer.step()\n"
                       "    return float(out.loss.detach())")
    submit("gus", load_answer=answers["load_answer"], count_answer=answers["count_answer"],
           step_answer=answers["step_answer"].replace("    optimizer.zero_grad()\n", ""))
    submit("hal", load_answer=answers["load_answer"], step_answer=answers["step_answer"],
           count_answer="try:\n    1 / 0\nexcept ZeroDivisionError as isinstance:\n    pass\n" + answers["count_answer"])
    submit("ivy", load_answer=answers["load_answer"], count_answer=answers["count_answer"],
           step_answer="import torch\n_t = torch\n_t.allclose = lambda *a, **k: True\n" + answers["step_answer"])
    submit("kim", load_answer=answers["load_answer"], step_answer=answers["step_answer"],
           count_answer="_hog = bytearray(1 << 42)\n" + answers["count_answer"])
    submit("lea", load_answer=answers["load_answer"], count_answer=answers["count_answer"],
           step_answer="import threading\nthreading.Thread(target=lambda: None).start()\n" + answers["step_answer"])
    submit("max", **answers)
    mx = tmp_path / "submissions" / "max" / A / f"{A}.ipynb"  # right answers and a cell of its own that reaches out
    nb = nbformat.read(mx, as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell("get_ipython().events.register('pre_run_cell', print)"))
    nbformat.write(nb, mx)
    return tmp_path / "submissions"


def _graded_class(root: Path, out_csv: Path):
    from course_lib.grading.config import COURSE_ID
    from course_lib.grading.grader import gradebook_contents

    rows = {r["student"]: r for r in csv.DictReader(out_csv.open())}
    return rows, gradebook_contents(root, COURSE_ID)


def test_grade_a_class_with_1_and_2_workers_gives_the_same_gradebook(tmp_path, monkeypatch, capsys, sandbox_flags):
    """Serial and parallel grading of a mixed class agree (CSV and gradebook); a rerun resumes (grades nothing),
    ``--student`` with ``--force`` regrades that learner alone; hostile learners cost only their own parts."""
    from course_lib.cli import main

    root = _course_copy(tmp_path, monkeypatch)
    subs = _mixed_class(tmp_path, root)
    out_csv = tmp_path / "grades.csv"
    t0 = time.time()
    assert main(["grade", str(subs), "--csv", str(out_csv), "--workers", "1", *sandbox_flags]) == 0
    serial_s = time.time() - t0
    out = capsys.readouterr().out
    rows, book = _graded_class(root, out_csv)
    from course_lib.grading.checker import html_text

    assert {s: float(r["score"]) for s, r in rows.items()} == {"ann": 7, "bob": 0, "cat": 0, "dan": 5, "eve": 5,
                                                                "fay": 7, "gus": 4, "hal": 5, "ivy": 4, "kim": 5,
                                                                "lea": 4, "max": 7}
    assert all(r["max_score"] == "7" and r["graded"] == "yes" for r in rows.values())
    assert "count_answer replaced by an error" in rows["dan"]["notes"] and "did not finish" in rows["dan"]["notes"]
    assert "count_answer replaced by an error" in rows["eve"]["notes"] and "killed the kernel" in rows["eve"]["notes"]
    assert "12 submission(s) to grade on 1 local worker(s)" in out and "graded 12 of 12 submission(s)" in out
    assert "line 3: except ... as isinstance (rebinds a builtin) (builtins" in rows["hal"]["notes"]
    assert "_t.allclose = ... (patching" in rows["ivy"]["notes"] and "import threading (introspection" in rows["lea"]["notes"]
    assert "(a cell you added) not run, scored 0: line 1: get_ipython (kernel" in rows["max"]["notes"]
    assert "MemoryError" in html_text(root / rows["kim"]["feedback"])
    assert set(book) == {(A, s) for s in rows}
    text = html_text(root / rows["cat"]["feedback"])  # what the learner reads
    # the message of a failed hidden test, and why two of cat's cells never ran (the grader's audit) ...
    assert "count only parameters with requires_grad=True" in text and "The grader did not run this cell" in text
    assert "_r_losses" not in text and "Traceback" not in text  # ... but not the hidden test itself
    notes = rows["cat"]["notes"]
    assert "(load_answer) not run, scored 0: line 1: get_ipython (kernel" in notes   # the test printer
    assert "(step_answer) not run, scored 0: line 2: torch.allclose = ... (patching" in notes
    assert "grading metadata was edited (points 100 -> " in rows["ann"]["notes"]   # honest marks, edits named
    assert "[stderr, not graded] counted" in html_text(root / rows["ann"]["feedback"])  # stderr shown, not scored
    assert "('bonus_tests') is not a cell of the release" in rows["ann"]["notes"]
    assert not any("metadata" in rows[s]["notes"] for s in rows if s != "ann")

    t0 = time.time()
    assert main(["grade", str(subs), "--csv", str(out_csv), "--workers", "2", "--force", *sandbox_flags]) == 0
    print(f"12 submissions: {serial_s:.0f} s with 1 worker, {time.time() - t0:.0f} s with 2")
    assert "12 submission(s) to grade on 2 local worker(s)" in capsys.readouterr().out
    assert _graded_class(root, out_csv) == (rows, book)

    assert main(["grade", str(subs), "--csv", str(out_csv), "--workers", "2", *sandbox_flags]) == 0  # resume: all done
    assert "0 submission(s) to grade" in capsys.readouterr().out and _graded_class(root, out_csv) == (rows, book)
    assert main(["grade", str(subs), "--csv", str(out_csv), "--student", "bob", "--force", *sandbox_flags]) == 0
    out = capsys.readouterr().out
    assert "1 submission(s) to grade" in out and "11 already graded" in out
    assert _graded_class(root, out_csv) == (rows, book)


def test_an_assignment_is_registered_once_until_its_source_or_config_changes(tmp_path, monkeypatch):
    """`course grade` registers an assignment (two nbgrader runs) only when nothing registered this source with
    this config yet, or when a gradebook lost it; a regrade, a resume or a second pass pays for submissions only."""
    from course_lib.grading import grader
    from course_lib.grading.config import load_config

    root = _course_copy(tmp_path, monkeypatch)
    calls = []
    real = grader.nbgrader
    monkeypatch.setattr(grader, "nbgrader", lambda args, *a, **k: calls.append(args[0]) or real(args, *a, **k))
    cfg = load_config()
    template = grader.register(cfg, A)
    assert calls == ["generate_assignment"] and template.is_file()
    assert (template.parents[2] / "exercises" / A / f"{A}.ipynb").is_file()   # the release _take_in reads
    assert grader.register(cfg, A) == template and calls == ["generate_assignment"]    # nothing ran again
    nb = _source(root)
    nb.cells[0].source += "\n"
    _write_source(root, nb)                                                   # a changed source ...
    grader.register(cfg, A)
    assert calls == ["generate_assignment"] * 2                               # ... is registered again
    grader.gradebook_path(root).unlink()                                      # so is a lost gradebook
    grader.register(cfg, A)
    assert calls == ["generate_assignment"] * 3


def test_grade_options_are_checked(tmp_path, monkeypatch, capsys):
    from course_lib.cli import main

    _course_copy(tmp_path, monkeypatch)
    (tmp_path / "subs" / "ann" / A).mkdir(parents=True)
    shutil.copy2(REPO / "exercises" / A / f"{A}.ipynb", tmp_path / "subs" / "ann" / A)
    assert main(["grade", str(tmp_path / "subs"), "--workers", "0", "--no-sandbox"]) == 2
    assert "--workers 0" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "subs"), "--student", "zed", "--no-sandbox"]) == 2
    err = capsys.readouterr().err
    assert "--student zed: not among the submissions (ann)" in err and "How to fix" in err
    assert main(["grade", str(tmp_path / "subs"), "--assignment", "07_adapters", "--no-sandbox"]) == 2
    assert f"--assignment 07_adapters: not among the submissions ({A})" in capsys.readouterr().err


def test_grade_on_a_dask_local_cluster(tmp_path, monkeypatch, sandbox_flags):
    """The same jobs on a Dask LocalCluster of 2 worker processes: the same grades, one gradebook."""
    pytest.importorskip("distributed")
    from course_lib.cli import main
    from course_lib.grading.config import COURSE_ID
    from course_lib.grading.grader import gradebook_contents

    root = _course_copy(tmp_path, monkeypatch)
    for student, kind in (("ann", "solutions"), ("bob", "exercises")):
        (tmp_path / "subs" / student / A).mkdir(parents=True)
        shutil.copy2(root / kind / A / f"{A}.ipynb", tmp_path / "subs" / student / A)
    out_csv = tmp_path / "grades.csv"
    assert main(["grade", str(tmp_path / "subs"), "--csv", str(out_csv), "--dask", "--workers", "2", *sandbox_flags]) == 0
    assert {r["student"]: r["score"] for r in csv.DictReader(out_csv.open())} == {"ann": "7", "bob": "0"}
    book = gradebook_contents(root, COURSE_ID)
    assert set(book) == {(A, "ann"), (A, "bob")}
    assert sum(g["auto_score"] for g in book[(A, "ann")]["notebooks"][A]["grades"].values()) == 7


def test_dask_missing_says_what_to_install(tmp_path, monkeypatch, capsys):
    import sys

    from course_lib.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask.distributed were not installed
    assert main(["grade", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1", "--no-sandbox"]) == 2
    err = capsys.readouterr().err
    assert "'distributed'" in err and "pip install -e '.[cluster]'" in err


def test_grade_reports_ungradable_submissions(tmp_path, monkeypatch, capsys, sandbox_flags):
    from course_lib.cli import main

    _course_copy(tmp_path, monkeypatch)
    (tmp_path / "subs" / "eve" / "99_nope").mkdir(parents=True)
    (tmp_path / "subs" / "fay" / A).mkdir(parents=True)
    assert main(["grade", str(tmp_path / "subs"), "--csv", str(tmp_path / "g.csv"), *sandbox_flags]) == 1
    err = capsys.readouterr().err
    assert "eve/99_nope: unknown assignment" in err
    assert f"fay/{A}: expected {A}.ipynb" in err and "no notebook" in err


def test_grading_environment_pins_the_runtime_whatever_the_machine_says():
    from course_lib.errors import ConfigError
    from course_lib.grading.config import grading_environment

    machine = {"COURSE_RUNTIME": "gpu", "CUDA_VISIBLE_DEVICES": "0", "HF_HUB_OFFLINE": "0", "PATH": "/bin"}
    env = grading_environment("embedded", base=machine)
    assert (env["COURSE_RUNTIME"], env["CUDA_VISIBLE_DEVICES"], env["HF_HUB_OFFLINE"]) == ("embedded", "", "1")
    assert env["PATH"] == "/bin" and machine["COURSE_RUNTIME"] == "gpu"      # the base is not changed
    gpu = grading_environment("gpu", base=machine)
    assert (gpu["COURSE_RUNTIME"], gpu["CUDA_VISIBLE_DEVICES"], gpu["HF_HUB_OFFLINE"]) == ("gpu", "0", "1")
    with pytest.raises(ConfigError, match="--runtime embedded"):
        grading_environment("cuda")


def test_the_graders_kernel_runs_embedded_on_the_cpu_and_offline(monkeypatch):
    """What a notebook sees under `course grade/check`: the runtime pinned, no GPU, no hub, on any machine."""
    from nbclient import NotebookClient

    from course_lib.grading.config import load_config, pin_runtime

    monkeypatch.setenv("COURSE_RUNTIME", "gpu")            # what a GPU grader's shell might say
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)   # monkeypatch restores all three after the test
    pin_runtime("embedded")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, torch\n"
        "from course_lib.runtime import select_runtime\n"
        "rt = select_runtime()\n"
        "print(rt.name, rt.device, rt.hub, repr(os.environ['CUDA_VISIBLE_DEVICES']), torch.cuda.is_available())")])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    assert nb.cells[0].outputs[0]["text"].split() == ["embedded", "cpu", "False", "''", "False"]
    assert load_config(REPO).default_timeout == 300


def test_gpu_grading_has_its_own_cell_limit_and_needs_a_gpu(monkeypatch):
    import torch

    from course_lib.errors import DeviceUnavailableError
    from course_lib.grading.config import load_config, pin_runtime

    monkeypatch.setenv("COURSE_RUNTIME", "gpu")
    assert load_config(REPO).default_timeout == 600
    monkeypatch.setenv("COURSE_RUNTIME", "embedded")
    assert load_config(REPO).default_timeout == 300
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="--runtime embedded"):
            pin_runtime("gpu")


def test_course_grade_and_check_pass_the_runtime(monkeypatch):
    from course_lib import cli, grading

    seen = []
    monkeypatch.setattr(grading, "check", lambda names=None, runtime="embedded", **kw: seen.append(("check", runtime)) or 0)
    monkeypatch.setattr(grading, "grade", lambda subs, csv_path=None, runtime="embedded", **kw: seen.append(("grade", runtime)) or 0)
    for argv in (["check", A], ["check", "--runtime", "gpu", A], ["grade", "subs"], ["grade", "subs", "--runtime", "gpu"]):
        args = cli.build_parser().parse_args(argv)
        assert args.func(args) == 0
    assert seen == [("check", "embedded"), ("check", "gpu"), ("grade", "embedded"), ("grade", "gpu")]

"""``course check [ASSIGNMENT...]``: the proof that every assignment grades right.

For each assignment in ``solutions/``:

1. lint: the mechanical conventions of solutions/README.md (markers, ids, locked references, test cells);
2. release: a fresh nbgrader release equals the committed ``exercises/<assignment>/``;
3. autograde (real nbgrader, once): the solution scores full marks with nothing left for manual grading
   and no stderr in its test cells; the blank release scores 0 without crashing autograde; a submission
   with the bank's first mistake in its first part (the later parts left as released) gets feedback that
   names what was wrong;
4. leaks: no file in ``exercises/`` and no generated feedback holds a solution, a hidden test or a marker;
   feedback has no tracebacks; the wrong submission also prints the source of every cell run after its
   first answer (tests included, as a learner fishing for hidden tests would), and its feedback must
   withhold those outputs;
5. plain run: the released notebook runs top to bottom without nbgrader, failing only with
   ``NotImplementedError`` (and the ``NameError`` that follows from it);
6. wrong answers: every entry of ``tests/wrong_answers/<assignment>.py``, plus an answer that raises, an
   endless loop and an interrupt-proof endless loop (first part), makes each test cell it names fail
   (an error: stderr alone costs nothing, see :mod:`.streams`), or is refused unrun by the grader's audit
   (:mod:`.audit`); every attack of :data:`.wrong.ATTACKS` and every forbidden import, put in front of each
   part's correct answer, must be refused by the audit. The others run cheaply: the solution runs once in a kernel
   that forks at each answer cell (:mod:`.forkrun`); a child runs only the cells up to the last test
   cell it must fail, skipping the other test cells.

Why one module of this length: the stages of the proof (solution, release, wrong answers, leak scan)
share one report and one executed-notebook cache; split, each would re-read the same state.
"""
from __future__ import annotations

import base64
import copy
import html
import json
import re
import shutil
import sys
import time
from pathlib import Path

from ..errors import CourseError
from .audit import Auditor
from .config import GradingConfig, assignments, gradebook_url, last_error, load_config, nbgrader
from .execute import run_steps, solution_steps
from .feedback import WITHHELD, short_error
from .lint import lint
from .notebook import (HIDDEN_BEGIN, HIDDEN_END, MARKER_LIKE, SOLUTION_BEGIN, SOLUTION_END, find_cell, grade_id,
                       hidden_secrets, is_solution, is_test, secret_lines)
from .releasing import compare, generate
from .wrong import Variant, attack_variants, generic_variants, load_bank

TRACEBACK_SIGNS = ("Traceback (most recent call last)", "-" * 40, "Cell In[", "<ipython-input-")
STUDENTS = ("solution", "blank", "wrong")


class Report:
    def __init__(self, assignment: str):
        self.assignment, self.problems, self.t0 = assignment, [], time.time()

    def step(self, name: str, problems: list[str], seconds: float) -> None:
        self.problems += problems
        print(f"  {'ok  ' if not problems else 'FAIL'} {name:<58} {seconds:6.1f} s", flush=True)
        for p in problems:
            print(f"       - {p}", flush=True)


def html_text(path: Path) -> str:
    """The text a reader sees on an HTML page (feedback, a book page): tags, styles and scripts removed."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    raw = re.sub(r"(?is)<(style|script)\b.*?</\1>", "", raw)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def scan_text(label: str, text: str, secrets: set[str], markers: bool = True) -> list[str]:
    found = []
    if markers:
        for m in sorted({m.group(0) for m in MARKER_LIKE.finditer(text)}):
            found.append(f"{label}: contains marker text {m!r}. Fix: spell the markers exactly in the source "
                         "(see course check's lint) and release again.")
    for s in sorted(secrets):
        if s in text:
            found.append(f"{label}: contains a line of a solution or hidden test: {s[:80]!r}. Fix: keep it inside "
                         f"{SOLUTION_BEGIN}/{SOLUTION_END} or {HIDDEN_BEGIN}/{HIDDEN_END}, or out of the notebook.")
    return found


def file_text(path: Path) -> str:
    """What a learner reads in a file: a notebook's cell sources and outputs, any other file's text."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".ipynb":
        try:
            nb = json.loads(raw)
        except ValueError:
            return raw
        parts = [json.dumps(nb.get("metadata", {}))]
        for cell in nb.get("cells", []):
            src = cell.get("source", "")
            parts.append("".join(src) if isinstance(src, list) else src)
            parts.append(json.dumps(cell.get("metadata", {})))
            for out in cell.get("outputs", []):
                parts.append(json.dumps(out, ensure_ascii=False))
        return "\n".join(parts)
    return raw


def _substitute(nb, variants: list[Variant]):
    nb = copy.deepcopy(nb)
    for v in variants:
        _, cell = find_cell(nb, v.cell)
        cell.source = v.code
    return nb


# The wrong submission also prints the source of every cell that runs after its first answer, the tests
# included, as a learner fishing for hidden tests would: its feedback must withhold those outputs.
TEST_PRINTER = 'get_ipython().events.register("pre_run_cell", lambda info: print(info.raw_cell))\n'


def _with_test_printer(nb):
    for cell in nb.cells:
        if is_solution(cell) and cell.cell_type == "code":
            cell.source = TEST_PRINTER + cell.source
            break
    return nb


def _wrong_submission(source_nb, release_nb, bank: list[Variant], auditor: Auditor):
    """The autograde stage's wrong submission: a learner whose first part holds the bank's first mistake there
    that the grader runs (not refused by :mod:`.audit`) and who left the later parts as released, plus the
    checker's probe that prints every cell after it (the feedback must withhold those outputs). The later parts
    fail at once instead of training: every mistake is run in the wrong-answer stage anyway."""
    order = [grade_id(c) for c in source_nb.cells if is_solution(c)]
    chosen = next((v for gid in order for v in bank if v.cell == gid and not auditor.cell(v.code, v.cell)), None)
    if chosen is None:
        return None
    nb = _substitute(source_nb, [chosen])
    for cell in nb.cells:
        if is_solution(cell) and grade_id(cell) != chosen.cell:
            cell.source = find_cell(release_nb, grade_id(cell))[1].source
    return _with_test_printer(nb)


def _plan(nb, v: Variant, cfg: GradingConfig) -> list[dict]:
    start, _ = find_cell(nb, v.cell)
    last = max(find_cell(nb, t)[0] for t in v.fails)
    plan = []
    for i in range(start, last + 1):
        cell = nb.cells[i]
        if cell.cell_type != "code" or (is_test(cell) and grade_id(cell) not in v.fails):
            continue
        source = v.code if i == start else cell.source
        timeout = (v.timeout if i == start and v.timeout else cfg.timeout_for(cell))
        plan.append({"index": i, "source": source, "timeout": int(timeout)})
    return plan


def run_wrong_answers(cfg: GradingConfig, assignment: str, nb, variants: list[Variant],
                      refused: set[int]) -> list[str]:
    """Judge the variants the audit refuses (``refused``: their indices in ``variants``) without running them:
    the grader never runs them, their part scores 0. Run the solution once and fork at each answer cell for
    the others: before it for a wrong answer, after it for the control (the solution's own answer, run once)."""
    from nbclient.exceptions import CellTimeoutError

    from ..notebooks import notebook_client

    problems = []
    by_cell: dict[int, list[Variant]] = {}   # forked before the answer cell: the variant replaces it
    after: dict[int, list[Variant]] = {}     # forked after it: a control reuses the solution's own answer
    for k, v in enumerate(variants):
        if v.attack and k not in refused:
            problems.append(f"{assignment}: {v.name} in {v.cell} is not refused by the grader's audit, so it would "
                            "run in the tests' kernel. Fix: extend course_lib/grading/audit.py to refuse it.")
        if k in refused or v.attack:
            continue
        (after if v.control else by_cell).setdefault(find_cell(nb, v.cell)[0], []).append(v)
    if not by_cell and not after:
        return problems
    work = copy.deepcopy(nb)
    for c in work.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    folder = cfg.root / "solutions" / assignment
    from .sandbox import manager_class

    client = notebook_client(work, kernel_name="python3", kernel_manager_class=manager_class(),
                             allow_errors=True, shutdown_kernel="immediate",
                             resources={"metadata": {"path": str(folder)}})

    def fork(i: int, group: list[Variant], skip_answer: bool) -> None:
        plans = [_plan(nb, v, cfg)[1 if skip_answer else 0:] for v in group]
        payload = base64.b64encode(json.dumps({"variants": plans}).encode()).decode()
        probe = copy.deepcopy(work.cells[i])
        probe.source = ("from course_lib.grading.forkrun import run_encoded as _course_run_encoded\n"
                        f"_course_run_encoded(globals(), {payload!r})")
        probe.outputs = []
        client.timeout = sum(s["timeout"] for p in plans for s in p) + 60
        client.execute_cell(probe, i, store_history=False)
        text = "".join(o.get("text", "") for o in probe.outputs if o.output_type == "stream")
        errors = [short_error(o) for o in probe.outputs if o.output_type == "error"]
        found = re.search(r"COURSE-FORKRUN (\S+)", text)
        if not found:
            problems.append(f"{assignment}: the wrong-answer runner failed at cell {i} ({grade_id(work.cells[i])}): "
                            f"{'; '.join(errors) or text[-300:]}")
            return
        for v, results in zip(group, json.loads(base64.b64decode(found.group(1)))):
            problems.extend(judge(assignment, nb, v, results))

    last_fork = max(by_cell.keys() | after.keys())
    with client.setup_kernel():
        for i, cell in enumerate(work.cells):
            if i in by_cell:
                fork(i, by_cell[i], skip_answer=False)
            if cell.cell_type == "code":
                client.timeout = cfg.timeout_for(cell)
                try:
                    client.execute_cell(cell, i)
                except CellTimeoutError:
                    problems.append(f"{assignment}: the solution's cell {i} ({grade_id(cell) or 'no grade_id'}) did not "
                                    f"finish within {client.timeout} s, so the wrong answers after it were not run. "
                                    "Fix: on a busy machine run `course check` alone; otherwise raise that cell's "
                                    "limit in nbgrader_config.py's CELL_TIMEOUTS.")
                    break
            if i in after:
                fork(i, after[i], skip_answer=True)
            if i >= last_fork:
                break  # no variant forks after this cell: the rest of the solution would run for nothing
    return problems


def judge(assignment: str, nb, v: Variant, results: list[dict]) -> list[str]:
    problems = []
    by_index = {r["index"]: r for r in results}
    answer = by_index.get(find_cell(nb, v.cell)[0], {})
    if v.generic and "loop" in v.name and answer.get("status") != "timeout":
        problems.append(f"{assignment}: {v.name} in {v.cell} was not stopped by its time limit "
                        f"(status {answer.get('status')}).")
    for test in v.fails:
        r = by_index.get(find_cell(nb, test)[0])
        if r is None:
            problems.append(f"{assignment}: wrong answer {v.name!r} ({v.cell}): test cell {test} never ran.")
            continue
        if v.control:
            if r["status"] != "ok" or r.get("stderr", "").strip():
                why = f"{r['ename']}: {r['evalue']}" if r["status"] == "error" else r["status"]
                problems.append(f"{assignment}: with the solution's own {v.cell}, {test} fails when run with the other "
                                f"test cells skipped ({why[:200]}; stderr {r.get('stderr', '')[-120:]!r}). Fix: test "
                                "cells must not depend on each other (define shared values in locked cells).")
            continue
        if r["status"] == "ok":  # the grader's rule: only an error costs the points (stderr is shown, see .streams)
            how = ("Fix: add a test (hidden if it would give the answer away) that catches this mistake"
                   if not v.generic else "Fix: the tests must not pass when the answer cell defines nothing; "
                   "test what the answer must produce")
            noisy = " (it only wrote to stderr, which costs no points)" if r.get("stderr", "").strip() else ""
            problems.append(f"{assignment}: wrong answer {v.name!r} in {v.cell} keeps the points of {test}: "
                            f"its tests pass{noisy}. {how}, or correct the entry's `fails`.")
        elif r["status"] == "error" and r["ename"] == "AssertionError" and not r["evalue"].strip():
            problems.append(f"{assignment}: wrong answer {v.name!r} fails {test} with an assert that has no message; "
                            "feedback would not tell the learner what is wrong. Fix: add a message to that assert.")
    return problems


def plain_run(cfg: GradingConfig, assignment: str, release_nb, cwd: Path) -> list[str]:
    """The released notebook, run as a learner would (no nbgrader): only NotImplementedError allowed."""
    problems, unanswered = [], False
    for r in run_steps(release_nb, solution_steps(release_nb), cwd, cfg.timeout_for):
        if r.status == "ok":
            continue
        if r.ename == "NotImplementedError":
            unanswered = True
            continue
        if r.ename == "NameError" and unanswered:
            continue  # a name the unanswered part would have defined
        where = f"cell {r.index}" + (f" ({r.grade_id})" if r.grade_id else "")
        problems.append(f"{assignment}: the released notebook fails in {where} outside nbgrader: {r.describe()}. "
                        "Fix: locked and given cells must run without the answers; only unanswered parts may "
                        "raise NotImplementedError.")
    return problems


def autograde(cfg: GradingConfig, assignment: str, work: Path, source_nb, release_nb, wrong_nb) -> tuple[list, dict]:
    """Real nbgrader autograde + feedback of solution, blank release and wrong answers in ``work``."""
    import nbformat
    from nbgrader.api import Gradebook

    problems = []
    subs = {"solution": source_nb, "blank": release_nb, "wrong": wrong_nb}
    for student, nb in subs.items():
        if nb is None:
            continue
        d = work / "build" / "nbgrader" / "submitted" / student / assignment
        d.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, d / f"{assignment}.ipynb")
    budget = 3 * sum(cfg.timeout_for(c) for c in source_nb.cells if c.cell_type == "code") + 300
    proc = nbgrader(["autograde", assignment, "--force"], cfg, nb_root=work, timeout=budget)
    if proc.returncode != 0:
        problems.append(f"{assignment}: nbgrader autograde failed (rc {proc.returncode}): {last_error(proc.stdout)}")
    scores = {}
    with Gradebook(gradebook_url(work), course_id=cfg.config.CourseDirectory.course_id) as gb:
        for student in subs:
            if subs[student] is None:
                continue
            try:
                s = gb.find_submission(assignment, student)
            except Exception:
                problems.append(f"{assignment}: autograde produced no grade for the {student} submission.")
                continue
            cells = {}
            for nbsub in s.notebooks:
                for g in nbsub.grades:
                    cells[g.name] = (g.score, g.max_score)
            scores[student] = (s.score, s.max_score, s.needs_manual_grade, cells)
    auto = work / "build" / "nbgrader" / "autograded"
    if "solution" in scores:
        score, max_score, manual, cells = scores["solution"]
        if manual:
            problems.append(f"{assignment}: the solution leaves parts for manual grading. Fix: every graded cell "
                            "must be an autograded test cell (no graded markdown / answer cells with points).")
        executed_path = auto / "solution" / assignment / f"{assignment}.ipynb"
        if not executed_path.is_file():
            problems.append(f"{assignment}: autograde wrote no graded copy of the solution ({executed_path.name}); "
                            "Fix: see the autograde failure above (a cell past its time limit? raise it in "
                            "nbgrader_config.py's CELL_TIMEOUTS).")
            return problems, scores
        executed = nbformat.read(executed_path, as_version=4)
        for i, cell in enumerate(executed.cells):
            if not is_test(cell):
                continue
            gid = grade_id(cell)
            got, full = cells.get(gid, (None, None))
            errs = [short_error(o) for o in cell.outputs if o.output_type == "error"]
            err_text = "".join(o.get("text", "") for o in cell.outputs
                               if o.output_type == "stream" and o.name == "stderr").strip()
            if err_text:
                problems.append(f"{assignment}: cell {i} ({gid}) writes to stderr when the solution runs "
                                f"({err_text.splitlines()[-1][:120]!r}); nbgrader then scores it 0. Fix: no warnings, "
                                "tqdm or training in test cells (warnings.filterwarnings('ignore') in references).")
            if got is not None and got < full:
                problems.append(f"{assignment}: the solution loses points in cell {i} ({gid}): {got}/{full}"
                                + (f" ({'; '.join(errs)[:200]})" if errs else "")
                                + ". Fix: the solution or the test is wrong.")
        if score < max_score and not any("loses points" in p for p in problems):
            problems.append(f"{assignment}: the solution scores {score}/{max_score}, not full marks.")
    if "blank" in scores and scores["blank"][0] != 0:
        cells = {k: v for k, v in scores["blank"][3].items() if v[0]}
        problems.append(f"{assignment}: the blank release scores {scores['blank'][0]} (cells {cells}). Fix: a test "
                        "cell passes without any answer; test what the answer must produce.")
    fb = nbgrader(["generate_feedback", assignment, "--force"], cfg, nb_root=work, timeout=300)
    if fb.returncode != 0:
        problems.append(f"{assignment}: nbgrader generate_feedback failed: {last_error(fb.stdout)}")
    return problems, scores


def check_feedback(cfg: GradingConfig, assignment: str, work: Path, source_nb) -> list[str]:
    import nbformat

    problems = []
    hidden = hidden_secrets(source_nb)
    feedback = work / "build" / "nbgrader" / "feedback"
    pages = sorted(feedback.glob(f"*/{assignment}/*.html"))
    if not pages:
        return [f"{assignment}: no feedback was generated."]
    for page in pages:
        student = page.parts[-3]
        text = html_text(page)
        label = f"feedback for the {student} submission ({page.relative_to(work)})"
        for s in sorted(hidden):
            if s in text:
                problems.append(f"{label}: shows a hidden test line {s[:80]!r}. Fix: the StripHiddenTests feedback "
                                "preprocessor must be configured; hidden tests must be inside the exact markers.")
        for m in ("BEGIN HIDDEN", "END HIDDEN"):
            if m in text:
                problems.append(f"{label}: contains {m!r}.")
        for sign in TRACEBACK_SIGNS:
            if sign in text:
                problems.append(f"{label}: shows a traceback ({sign!r}); tracebacks quote hidden test lines.")
                break
        if student == "wrong" and hidden and WITHHELD.split(":")[0] not in text:
            problems.append(f"{label}: the wrong submission printed every test cell's source, hidden tests "
                            "included, yet its feedback withholds no output. Fix: keep "
                            "course_lib.grading.feedback.StripHiddenTests in c.GenerateFeedback.preprocessors.")
        if student == "wrong":
            graded = nbformat.read(work / "build" / "nbgrader" / "autograded" / student / assignment /
                                   f"{assignment}.ipynb", as_version=4)
            for cell in graded.cells:
                if not is_test(cell):
                    continue
                for out in cell.outputs:
                    if out.output_type == "error":
                        msg = short_error(out).splitlines()[0][:100]
                        if msg not in text:
                            problems.append(f"{label}: does not show why {grade_id(cell)} failed ({msg!r}).")
    return problems


STAGES = ("lint", "release", "leaks", "autograde", "feedback", "plain", "wrong")


def check_assignment(cfg: GradingConfig, assignment: str, stages=STAGES) -> list[str]:
    """All problems of one assignment; ``stages`` selects a subset (tests use this to stay fast)."""
    import nbformat

    from .. import authoring

    rep = Report(assignment)
    print(f"== {assignment}", flush=True)
    src_path = cfg.root / "solutions" / assignment / f"{assignment}.ipynb"
    t = time.time()
    if "lint" in stages:
        rep.step("lint (conventions of solutions/README.md)", lint(cfg.root, assignment), time.time() - t)
    if not src_path.is_file() or set(stages) <= {"lint"}:
        return rep.problems
    source_nb = nbformat.read(src_path, as_version=4)
    work = cfg.root / "build" / "check" / assignment
    shutil.rmtree(work, ignore_errors=True)
    (work / "solutions").mkdir(parents=True)
    shutil.copytree(src_path.parent, work / "solutions" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (work / "lectures").mkdir()

    t = time.time()
    probs = [f"solutions/{assignment}: badges or setup cell out of date. Fix: run `course release`."
             for _ in authoring.sync_headers(work)]
    try:
        generate(cfg, [assignment], work, copy_sources=False)
        probs += compare(cfg.root / "exercises", work / "exercises", [assignment])
        if probs:
            probs.append(f"{assignment}: Fix: run `course release` and commit exercises/{assignment}/ "
                         "(never edit exercises/ by hand).")
    except CourseError as err:
        rep.step("release is fresh (fresh nbgrader release == committed)", [str(err)], time.time() - t)
        return rep.problems
    rep.step("release is fresh (fresh nbgrader release == committed)", probs, time.time() - t)
    release_path = work / "exercises" / assignment / f"{assignment}.ipynb"
    release_nb = nbformat.read(release_path, as_version=4)

    t = time.time()
    secrets = secret_lines(source_nb)
    probs = []
    for base in (cfg.root / "exercises" / assignment, work / "exercises" / assignment):
        for f in sorted(p for p in base.rglob("*") if p.is_file()):
            rel = f.relative_to(base.parent.parent)
            probs += scan_text(str(rel), file_text(f), secrets)
    if "leaks" in stages:
        rep.step("no solution, hidden test or marker in exercises/", sorted(set(probs)), time.time() - t)

    bank, bank_problems = load_bank(cfg.root, assignment, source_nb)
    auditor = Auditor(source_nb)
    wrong_nb = _wrong_submission(source_nb, release_nb, bank, auditor)

    if "autograde" in stages or "feedback" in stages:
        t = time.time()
        probs, scores = autograde(cfg, assignment, work, source_nb, release_nb, wrong_nb)
        summary = ", ".join(f"{s} {v[0]:g}/{v[1]:g}" for s, v in scores.items())
        rep.step(f"autograde: {summary or 'no scores'}", probs, time.time() - t)
    if "feedback" in stages:
        t = time.time()
        rep.step("feedback: no hidden tests, no tracebacks, messages shown",
                 check_feedback(cfg, assignment, work, source_nb), time.time() - t)
    if "plain" in stages:
        t = time.time()
        rep.step("released notebook runs without nbgrader", plain_run(cfg, assignment, release_nb,
                                                                      release_path.parent), time.time() - t)
    if "wrong" in stages:
        t = time.time()
        attacks = attack_variants(source_nb)
        variants = bank + generic_variants(source_nb) + attacks
        refused = {k for k, v in enumerate(variants) if not (v.generic or v.control) and auditor.cell(v.code, v.cell)}
        probs = bank_problems + run_wrong_answers(cfg, assignment, source_nb, variants, refused)
        rep.step(f"wrong answers lose their points ({len(bank)} from the bank, "
                 f"{sum(k < len(bank) for k in refused)} of them refused unrun; "
                 f"{len(variants) - len(bank) - len(attacks)} generic/control; {len(attacks)} attacks refused)",
                 probs, time.time() - t)
    print(f"   {assignment}: {'OK' if not rep.problems else f'{len(rep.problems)} problem(s)'} "
          f"in {time.time() - rep.t0:.0f} s", flush=True)
    return rep.problems


def check(names: list[str] | None = None) -> int:
    cfg = load_config()
    known = assignments(cfg.root)
    names = list(names or known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CourseError(f"no assignment {', '.join(unknown)} in solutions/ (found: {', '.join(known) or 'none'}).",
                          "give folder names of solutions/, e.g. `course check 00_warmup`, or none for all.")
    t0, failed = time.time(), {}
    for name in names:
        problems = check_assignment(cfg, name)
        if problems:
            failed[name] = problems
    print(f"course check: {len(names)} assignment(s) in {time.time() - t0:.0f} s: "
          + ("all graded right." if not failed else f"{sum(map(len, failed.values()))} problem(s) in "
             f"{', '.join(failed)}."))
    if failed:
        print(f"course check FAILED: {', '.join(failed)} (see the problems above, each with its fix).", file=sys.stderr)
    return 1 if failed else 0

"""Wrong answers for the grader proof: the author's bank plus generic entries the checker adds itself.

A bank is ``tests/wrong_answers/<assignment>.py`` defining ``WRONG_ANSWERS``, a list of
``dict(cell="<part>_answer", name="what is wrong", code='''full replacement source''', fails=["<part>_tests"])``.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from .audit import context, forbidden_for, forbidden_names, shared_names
from .notebook import find_cell, grade_id, is_solution, is_test, solution_body

GENERIC_LOOP_TIMEOUT = 5  # seconds: enough to prove a never-ending answer is cut off, cheap in CI


@dataclass
class Variant:
    name: str
    cell: str
    code: str
    fails: list[str]
    timeout: int | None = None
    generic: bool = False
    control: bool = False  # the solution itself: its tests must pass
    attack: bool = False   # reaches for the grader: the audit must refuse it before it runs
    notes: list[str] = field(default_factory=list)


def bank_path(root: Path, assignment: str) -> Path:
    return root / "tests" / "wrong_answers" / f"{assignment}.py"


def load_bank(root: Path, assignment: str, nb) -> tuple[list[Variant], list[str]]:
    """The bank's entries and the problems found in its format (unknown cells, missing keys...)."""
    path = bank_path(root, assignment)
    rel = path.relative_to(root)
    if not path.is_file():
        return [], [f"{assignment}: no wrong-answer bank {rel}. Fix: add one (format in solutions/README.md) with "
                    "plausible mistakes for every part."]
    spec = importlib.util.spec_from_file_location(f"_wrong_answers_{assignment}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        return [], [f"{rel}: importing it raised {type(err).__name__}: {err}. Fix: make it valid Python."]
    entries = getattr(module, "WRONG_ANSWERS", None)
    if not isinstance(entries, list) or not entries:
        return [], [f"{rel}: WRONG_ANSWERS must be a non-empty list of dict(cell, name, code, fails)."]
    answers = {grade_id(c) for c in nb.cells if is_solution(c)}
    tests = {grade_id(c) for c in nb.cells if is_test(c)}
    variants, problems = [], []
    for n, e in enumerate(entries):
        where = f"{rel}: entry {n}" + (f" ({e.get('name')!r})" if isinstance(e, dict) and e.get("name") else "")
        if not isinstance(e, dict) or not {"cell", "name", "code", "fails"} <= set(e):
            problems.append(f"{where}: needs keys cell, name, code, fails.")
            continue
        if e["cell"] not in answers:
            problems.append(f"{where}: cell {e['cell']!r} is not an answer cell of {assignment} "
                            f"(answer cells: {', '.join(sorted(answers))}).")
            continue
        fails = [e["fails"]] if isinstance(e["fails"], str) else list(e["fails"])
        unknown = [f for f in fails if f not in tests]
        if unknown or not fails:
            problems.append(f"{where}: fails={fails} must name test cells of {assignment} "
                            f"(test cells: {', '.join(sorted(tests))}).")
            continue
        variants.append(Variant(e["name"], e["cell"], e["code"], fails, timeout=e.get("timeout")))
    covered = {v.cell for v in variants}
    for missing in sorted(answers - covered):
        problems.append(f"{rel}: no wrong answer for {missing!r}. Fix: add at least one plausible mistake per part.")
    return variants, problems


def part_tests(nb) -> dict[str, list[str]]:
    """Each answer cell's test cells: the graded cells after it, up to the next answer cell."""
    out, current = {}, None
    for cell in nb.cells:
        if is_solution(cell):
            current = grade_id(cell)
            out[current] = []
        elif is_test(cell) and current is not None:
            out[current].append(grade_id(cell))
    return out


GENERIC = [
    ("answer raises", 'raise RuntimeError("generic wrong answer: this part was not done")', None),
    ("endless loop", "while True:\n    pass", GENERIC_LOOP_TIMEOUT),
    ("endless loop that swallows KeyboardInterrupt",
     "while True:\n    try:\n        pass\n    except KeyboardInterrupt:\n        pass", GENERIC_LOOP_TIMEOUT),
]


def generic_variants(nb) -> list[Variant]:
    """For every part: an answer that raises, and a control, the solution's own answer, whose tests must pass
    (proof that the runner itself works). For the first part only: an endless loop and an interrupt-proof one,
    proof that the time limit cuts an answer off (after it, a later part's tests fail just as they do after an
    answer that raises, so one part shows it)."""
    out = []
    for cell, tests in part_tests(nb).items():
        if tests:
            code = solution_body(find_cell(nb, cell)[1].source)
            out.append(Variant("[control] the solution itself", cell, code, tests, control=True))
            out += [Variant(f"[generic] {name}", cell, code, tests, timeout=t, generic=True)
                    for name, code, t in GENERIC if t is None or not any(v.timeout for v in out)]
    return out


# Attacks on the grader from issue 19, each put in front of the part's *correct* answer: the audit
# (course_lib.grading.audit) must refuse every one before it runs, so the part scores 0 although the
# answer itself is right. ``{ref}`` is a name the assignment's locked cells define for the tests; ``{shared}`` a
# value they bind and the tests read (``model``, ``baseline_accuracy``).
ATTACKS = [
    ("an AST transformer that swallows every failing statement",
     "import ast\n\nclass _Swallow(ast.NodeTransformer):\n    def visit_Module(self, node):\n"
     "        return node\n\nget_ipython().ast_transformers.append(_Swallow())\n"),
    ("rebinds a reference the tests captured", "{ref} = lambda *a, **k: True\n"),
    ("shadows a builtin the tests call", "isinstance = lambda *a, **k: True\nall = lambda *a, **k: True\n"),
    ("a str subclass whose == is always true",
     "class AlwaysEqual(str):\n    def __eq__(self, other):\n        return True\n"),
    ("a trace function (sys.settrace)", "import sys\nsys.settrace(lambda *a: None)\n"),
    ("an atexit hook", "import atexit\natexit.register(lambda: None)\n"),
    ("walks to the running test's frame (sys._getframe)", "import sys\n_frame = sys._getframe(0)\n"),
    ("finds the tests' objects through gc", "import gc\n_objects = gc.get_objects()\n"),
    ("reads the tests through inspect", "import inspect\n_frame = inspect.currentframe()\n"),
    ("prints the cell that is running (IPython history)", "print(In[-1])\n"),
    ("patches torch's comparison", "import torch\ntorch.allclose = lambda *a, **k: True\n"),
    ("runs code built from a string", "exec('x' + ' = 1')\n"),
    ("imports through importlib", "import importlib\n_m = importlib.import_module('os')\n"),
    ("patches torch through an alias", "import torch\n_t = torch\n_t.allclose = lambda *a, **k: True\n"),
    ("rebinds a value the tests read", "{shared} = {shared}\n"),
    ("rebinds a builtin with except ... as", "try:\n    1 / 0\nexcept Exception as all:\n    pass\n"),
    ("sets a special method from outside a class",
     "class _Any:\n    pass\n\n_Any.__eq__ = lambda self, other: True\n"),
    ("mock.patch on the library", "from unittest import mock\nmock.patch('torch.allclose', lambda *a, **k: True).start()\n"),
    ("a background thread", "import threading\nthreading.Thread(target=lambda: None).start()\n"),
    ("a star import that shadows all/any/sum", "from numpy import *\n"),
    ("replaces a method of a value the tests read", "{shared}.forward = lambda *a, **k: None\n"),
    ("setattr passed around instead of called", "import torch\n_s = setattr\n_s(torch, 'allclose', lambda *a, **k: True)\n"),
    ("a global forward hook on every module", "import torch\ntorch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o)\n"),
    ("reads a frame through a format string", "_x = '{{0.f_back}}'.format(None)\n"),  # {{ }}: see attack_variants
]


def attack_variants(nb) -> list[Variant]:
    """Every attack of :data:`ATTACKS` in front of every part's correct answer, plus an import of each name
    that part forbids (notebook metadata ``course.forbidden``)."""
    references, _ = context(nb)
    ref = "_allclose" if "_allclose" in references else min(references, default="_reference")
    values = sorted(n for n, imported in shared_names(nb).items() if imported is None)
    shared = "model" if "model" in values else values[0] if values else "torch"
    table, _ = forbidden_names(nb)
    out = []
    for cell, tests in part_tests(nb).items():
        if not tests:
            continue
        code = solution_body(find_cell(nb, cell)[1].source)
        for name, prefix in ATTACKS:
            out.append(Variant(f"[attack] {name}", cell, prefix.format(ref=ref, shared=shared) + code, tests,
                               attack=True))
        for module in sorted(forbidden_for(table, cell)):
            head, _, last = module.rpartition(".")
            imp = f"from {head} import {last}\n" if head else f"import {module}\n"
            out.append(Variant(f"[attack] uses {module}, which this part forbids", cell, imp + code, tests,
                               attack=True))
    return out

"""The grader's audit (course_lib/grading/audit.py): code that reaches for the grader is refused before it runs,
honest code is not, and the release's own lines are the instructor's. No notebook is executed here; the
grading proof in test_grading.py and `course check` (every attack of wrong.ATTACKS on every part) run it
end to end."""
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_lib.grading.audit import REFUSED, Auditor, audit, read_cell, refuse
from course_lib.grading.lint import lint_forbidden
from course_lib.grading.wrong import ATTACKS, attack_variants

REPO = Path(__file__).resolve().parents[1]
IMPORTED = {"torch": "torch", "training": "course_lib.training", "R": "course_lib.reasoning", "np": "numpy",
            "pruning": "course_lib.methods.pruning", "sys": "sys", "copy": "copy", "nn": "torch.nn",
            "logging": "logging", "os": "os"}
FORBIDDEN = {"course_lib.reasoning", "course_lib.methods.pruning", "course_lib.training.conditional_lm_loss", "peft"}
ALLOWED = {"course_lib.methods.pruning.prunable_parameters"}


def rules(source: str) -> list[str]:
    return [rule for rule, _, _ in read_cell(source, FORBIDDEN, {"_allclose", "_ref_model"}, IMPORTED, ALLOWED)]


@pytest.mark.parametrize("source, rule", [
    ("get_ipython().ast_transformers.append(T())", "kernel"),
    ("print(In[-1])", "kernel"),
    ("x = _i2", "kernel"),
    ("!cat ../../solutions/00_warmup/00_warmup.ipynb", "kernel"),
    ("%load_ext autoreload", "kernel"),
    ("%%time\nimport gc", "introspection"),            # the code an allowed magic runs is read too
    ("_allclose = lambda *a, **k: True", "test-reference"),
    ("m = _ref_model", "test-reference"),
    ("def f():\n    global _allclose\n    _allclose = None", "test-reference"),
    ("all = lambda x: True", "builtins"),
    ("def isinstance(a, b):\n    return True", "builtins"),
    ("import builtins", "builtins"),
    ("__builtins__['len'] = None", "builtins"),
    ("class S(str):\n    pass", "rigged-comparison"),
    ("class A:\n    def __eq__(self, other):\n        return True", "rigged-comparison"),
    ("class A:\n    __eq__ = lambda s, o: True", "rigged-comparison"),
    ("class A(metaclass=M):\n    pass", "rigged-comparison"),
    ("import sys\nsys.settrace(f)", "introspection"),
    ("from sys import _getframe", "introspection"),
    ("import atexit", "introspection"),
    ("import gc", "introspection"),
    ("from inspect import currentframe", "introspection"),
    ("import importlib", "introspection"),
    ("import pickle", "introspection"),
    ("g = f.__globals__", "introspection"),
    ("g = frame.f_back.f_locals", "introspection"),
    ("x = getattr(f, '__globals__')", "introspection"),
    ("sys.modules['torch']", "introspection"),
    ("import operator\nf = operator.attrgetter('f_back')", "introspection"),
    ("try:\n    1 / 0\nexcept Exception as e:\n    t = e.__traceback__", "introspection"),
    ("torch.library.impl('aten::allclose', 'CPU')", "introspection"),    # re-registers what _allclose calls
    ("x = np.load('a.npy', allow_pickle=True)", "introspection"),         # a pickle runs code
    ("torch._C._set_grad_enabled(False)", "introspection"),
    ("import os\nos._exit(3)", "introspection"),
    ("f = logging.currentframe()", "introspection"),
    ("S = type('S', (str,), {'__eq__': lambda s, o: True})", "rigged-comparison"),
    ("exec('x = 1')", "dynamic-code"),
    ("f = eval", "dynamic-code"),
    ("m = getattr(training, 'acc' + 'uracy')", "dynamic-code"),
    ("torch.allclose = lambda *a, **k: True", "patching"),
    ("torch.nn.Module.__call__ = f", "patching"),
    ("setattr(training, 'accuracy', f)", "patching"),
    ("del torch.equal", "patching"),
    ("import peft", "forbidden"),
    ("from peft import LoraConfig", "forbidden"),
    ("acc = R.evaluate(g, p)", "forbidden"),
    ("helper = R", "forbidden"),
    ("from course_lib.reasoning import majority_vote", "forbidden"),
    ("from course_lib import reasoning", "forbidden"),
    ("loss = training.conditional_lm_loss(m, b)", "forbidden"),
    ("f = getattr(training, 'conditional_lm_loss')", "forbidden"),
    ("pruning.prune(model, cfg)", "forbidden"),
    # bindings of a builtin's name in every form Python has
    ("try:\n    1 / 0\nexcept Exception as isinstance:\n    pass", "builtins"),
    ("match 1:\n    case all:\n        pass", "builtins"),
    ("(isinstance := lambda *a, **k: True)", "builtins"),
    # patching through an alias, a container, type(x), a special method set from outside, an item
    ("t = torch\nt.allclose = lambda *a, **k: True", "patching"),
    ("T = torch.Tensor\nT.item = lambda self: 1.0", "patching"),
    ("for m in (torch, np):\n    m.allclose = f", "patching"),
    ("[torch][0].allclose = f", "patching"),
    ("type(torch.zeros(1)).item = lambda self: 0.0", "patching"),
    ("import os\nos.environ['COURSE_RUNTIME'] = 'gpu'", "patching"),
    ("os.environ.update(COURSE_RUNTIME='gpu')", "patching"),
    ("training.DEFAULTS.update(steps=0)", "patching"),
    ("class A:\n    pass\nA.__eq__ = lambda s, o: True", "rigged-comparison"),
    ("class A:\n    pass\nsetattr(A, '__e' + 'q__', f)", "rigged-comparison"),
    ("class A:\n    pass\nsetattr(A, name, f)", "dynamic-code"),
    ("setattr(type(x), name, f)", "dynamic-code"),
    # builtins that reach attributes or build classes, passed around instead of called
    ("s = setattr\ns(torch, 'allclose', f)", "dynamic-code"),
    ("list(map(setattr, [torch], ['allclose'], [f]))", "dynamic-code"),
    ("g = getattr\nx = g(torch, name)", "dynamic-code"),
    ("t = type\nS = t('S', (str,), {})", "dynamic-code"),
    # imports that rebind builtins wholesale, or reach what an attribute chain would
    ("from numpy import *", "builtins"),
    ("from torch import library", "introspection"),
    ("from torch.utils import cpp_extension", "introspection"),
    ("from torch import _C", "introspection"),
    # the working directory (a later import would find a planted module there), global hooks
    ("import os\nos.chdir('/tmp')", "introspection"),
    ("import sys\nsys.path.insert(0, '/tmp')", "patching"),
    ("torch.nn.modules.module.register_module_forward_hook(f)", "introspection"),
    ("from torch.nn.modules.module import register_module_forward_hook", "introspection"),
    # attributes read through a str.format field
    ("'{0.__class__}'.format(x)", "introspection"),
    ("'{0.f_back}'.format(x)", "introspection"),
    # subclasses of a library's value type answer for a tensor or a number
    ("class T(torch.Tensor):\n    pass", "rigged-comparison"),
    ("class F(np.float64):\n    pass", "rigged-comparison"),
    # code that keeps running or patching after the cell ends
    ("import threading\nthreading.Thread(target=f).start()", "introspection"),
    ("from unittest import mock\nmock.patch('torch.allclose', f).start()", "introspection"),
    ("import subprocess", "introspection"),
])
def test_each_route_into_the_grader_is_refused(source, rule):
    assert rule in rules(source)


SHARED = {"baseline_accuracy": None, "model": None, "torch": "torch", "nn": "torch.nn", "models": None}


@pytest.mark.parametrize("source", [
    "baseline_accuracy = 0.0",                                  # the tests compare against it
    "model = FakeModel()",
    "del model",
    "def f():\n    global baseline_accuracy\n    baseline_accuracy = -1",
    "import numpy as torch",
    "from mylib import fake as model",
    "class FakeTorch:\n    pass\ntorch = FakeTorch()",
    "for model in [None]:\n    pass",
    "with open('x') as model:\n    pass",
    "baseline_accuracy.clear()",                                # in place: the same object the tests read
    "model.forward = lambda *a, **k: None",
    "model.layers[0].mlp = Adapter(8)",
    "m = model\nm.forward = fake",                                # through an alias
    "def f():\n    model[0] = None",
    "del model['w']",
])
def test_a_name_the_courses_cells_bind_and_the_tests_read_is_not_rebound(source):
    found = [rule for rule, _, _ in read_cell(source, FORBIDDEN, {"_allclose"}, IMPORTED, ALLOWED, SHARED)]
    assert "test-reference" in found


@pytest.mark.parametrize("source", [
    "import torch\nfrom torch import nn",                        # the same module again
    "accs = [evaluate(model) for model in models]",             # a comprehension's own name
    "def f(model):\n    model = model.eval()\n    return model", # a function's local
    "x = baseline_accuracy + 1\ny = model(x)",                  # reading them is what they are for
    "def f(model):\n    model[0] = None\n    model.update(x)",   # a parameter of that name is the function's own
    "model.eval()\nm = copy.deepcopy(model)\nm.layers[0].mlp = Adapter(8)",  # a copy is the learner's own
])
def test_using_the_courses_names_is_not_rebinding(source):
    assert read_cell(source, FORBIDDEN, {"_allclose"}, IMPORTED, ALLOWED, SHARED) == []


@pytest.mark.parametrize("source", [
    "for _ in range(3):\n    pass\n_, b = 1, 2",
    "def f(x):\n    all = [x]\n    return all",               # a local name that shadows a builtin is harmless
    "import sys\nprint('log', file=sys.stderr)",
    "import copy\nm = copy.deepcopy(model)\nsetattr(parent, 'o_proj', nn.Sequential(a, b))",
    "w = pruning.prunable_parameters(model)",                   # allowed inside a forbidden module
    "loss = training.train(model, tok, task, cfg)",
    "%time y = model(x)",
    "class Adapter(nn.Module):\n    def __init__(self, d):\n        super().__init__()\n\n    def forward(self, h):\n"
    "        return h",
    "x = type(model).__name__",
    "for p in model.parameters():\n    p.requires_grad = False",  # attributes of the learner's own objects
    "model.layers[0].mlp.down_proj = Adapter(8)\nmodel.config.use_cache = False",
    "parent = model.get_submodule(path)\nsetattr(parent, name, LoRALinear(old, r=4))",
    "state = {}\nstate['w'] = torch.zeros(2)",
    "from dataclasses import dataclass\n\n@dataclass\nclass Row:\n    rank: int",
    "print('{:.1f} and {0.shape}'.format(x))",                  # format fields of plain attributes
    "kinds = [type(m).__name__ for m in model.modules()]",
    "this is not python (",                                     # fails when it runs, not here
])
def test_honest_code_is_not_refused(source):
    assert rules(source) == []


def _assignment(answer: str, extra: str | None = None, forbidden=("peft",), text="Do not use `peft`."):
    refs = new_code_cell("import torch\n_allclose = torch.allclose\n_ref = 3", metadata={"nbgrader": {
        "grade": False, "solution": False, "locked": True, "grade_id": "references"}})
    ans = new_code_cell(answer, metadata={"nbgrader": {"grade": False, "solution": True, "locked": False,
                                                       "grade_id": "part_answer"}})
    test = new_code_cell("assert _allclose(f(), _ref)", metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": True, "grade_id": "part_tests", "points": 1}})
    cells = [new_markdown_cell(text), refs, ans, test] + ([new_code_cell(extra)] if extra else [])
    nb = new_notebook(cells=cells)
    nb.metadata["course"] = {"forbidden": list(forbidden)}
    return nb


def test_given_lines_are_the_instructors_and_new_ones_are_read():
    source = _assignment("def f():\n    ### BEGIN SOLUTION\n    return 3\n    ### END SOLUTION\n\n\nprint(f(), _ref)")
    assert audit(source, source) == []                          # `print(f(), _ref)` is given by the release
    learner = _assignment("def f():\n    return _ref\n\n\nprint(f(), _ref)")
    [r] = audit(learner, source)                                # ... but `return _ref` is the learner's
    assert (r.cell, r.grade_id, r.rule, r.line, r.what) == (2, "part_answer", "test-reference", 2, "_ref")


def test_refuse_replaces_the_cell_and_says_why_and_leaves_the_rest():
    source = _assignment("def f():\n    ### BEGIN SOLUTION\n    return 3\n    ### END SOLUTION")
    hostile = _assignment("import peft\ndef f():\n    return 3", extra="get_ipython().ast_transformers.clear()")
    fixed, notes = refuse(hostile, source)
    assert fixed is not hostile and hostile.cells[2].source.startswith("import peft")   # the input is not modified
    assert fixed.cells[2].source.startswith(REFUSED.split("{why}")[0]) and "import of peft" in fixed.cells[2].source
    assert fixed.cells[4].source.startswith(REFUSED.split("{why}")[0])                  # a cell the learner added
    assert fixed.cells[3].source == hostile.cells[3].source                              # the tests are untouched
    assert notes[0].startswith("cell 2 (part_answer) not run, scored 0: line 1: import of peft (forbidden")
    assert notes[1].startswith("cell 4 (a cell you added) not run, scored 0: line 1: get_ipython (kernel")
    compile(fixed.cells[2].source, "refused", "exec")                                    # the stub is valid Python
    clean = _assignment("def f():\n    return 3")
    assert refuse(clean, source) == (clean, [])


def test_lint_wants_every_forbidden_name_in_the_instructions_and_a_clean_solution():
    told = _assignment("def f():\n    ### BEGIN SOLUTION\n    return 3\n    ### END SOLUTION")
    assert lint_forbidden("x", told) == []
    untold = _assignment("def f():\n    return 3", text="Write f.")
    assert any("no instruction says so" in p and "`peft`" in p for p in lint_forbidden("x", untold))
    cheating = _assignment("def f():\n    ### BEGIN SOLUTION\n    return _ref\n    ### END SOLUTION")
    assert any("of the solution would be refused" in p for p in lint_forbidden("x", cheating))
    unknown = _assignment("def f():\n    return 3")
    unknown.metadata["course"]["forbidden"] = {"nope_answer": ["peft"]}
    assert any("'nope_answer', which is not an answer cell" in p for p in lint_forbidden("x", unknown))


@pytest.mark.parametrize("assignment", sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir()))
def test_every_attack_is_refused_on_every_part_and_no_solution_or_release_is(assignment):
    """The audit's side of `course check`, for every assignment without running it: every attack of
    wrong.ATTACKS and every forbidden import, in front of each part's correct answer, is refused; the solution
    and the blank release are not."""
    source = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    release = nbformat.read(REPO / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
    auditor = Auditor(source)
    assert auditor.notebook(source) == [] and auditor.notebook(release) == []
    attacks = attack_variants(source)
    assert len({v.cell for v in attacks}) >= 3 and len(attacks) >= 3 * len(ATTACKS)
    assert [v.name for v in attacks if not auditor.cell(v.code, v.cell)] == []

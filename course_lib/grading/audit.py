"""Read a submission before it runs: code that reaches for the grader is refused, not run (issue 19).

nbgrader runs the hidden tests in the learner's kernel, after the learner's cells and while the learner's
functions run. Whatever those cells do, the tests share: an IPython AST transformer that wraps every
later statement in ``try/except: pass``, a rebound ``_allclose`` or ``isinstance``, a ``str`` subclass
whose ``==`` is always true, a frame walk (``sys._getframe``, ``gc``, ``inspect``) into the running
test, a trace function, an ``atexit`` hook, a patched library function. No check *inside* that kernel
can be sound, because the learner's code runs first and during the tests.

So the grader reads every cell the learner controls (answer cells and any cell the learner added; the
locked and test cells are restored by nbgrader from its database) in its own pristine process,
*before* the notebook runs, with Python's :mod:`ast`. A cell that uses one of the constructs below is
not run at all: the grader puts a ``raise RuntimeError`` with the reason in its place
(:func:`refuse`), so the learner loses that part and is told why, and nothing the cell would have done
can touch the tests of other parts. The honest answers of this course never need any of these:

======================  ============================================================================
rule                    what it refuses
======================  ============================================================================
forbidden               a module or function the part says to write yourself (``peft``, the course's
                        own implementation of the part), by import, by name or by attribute
                        (``methods.lora``, ``training.conditional_lm_loss``, ``R.evaluate`` after
                        ``from course_lib import reasoning as R``); declared in the solution notebook's
                        metadata (:func:`forbidden_names`)
test-reference          a name the locked cells define for the tests (``_allclose``, ``_ref_model``...);
                        rebinding (in any form: ``=``, ``del``, ``def``, ``import ... as``, ``for``,
                        ``with ... as``, ``global``) a name the course's cells bind and read again
                        (``baseline_accuracy``, ``val``, ``model``, ``torch``), or changing such a value
                        in place, also through an alias (``val[:] = ...``, ``val.clear()``,
                        ``model.forward = ...``, ``m = model; m.x = ...``); importing the same module again
                        is fine
kernel                  ``get_ipython`` (AST/input transformers, events, the user namespace) and the
                        IPython history (``In``, ``Out``, ``_ih``...); ``%time``/``%timeit`` stay allowed
builtins                ``import builtins``, ``__builtins__``, a module-level binding of a builtin's
                        name in any form (``all = ...``, ``def isinstance``, ``except E as all``,
                        ``case all``, ``(all := ...)``, ``from numpy import *``)
introspection           ``inspect``, ``gc``, ``atexit``, ``ctypes``, ``importlib``, ``pickle``,
                        ``traceback``, ``operator``...; code that runs on after the cell or patches for
                        it (``threading``, ``multiprocessing``, ``subprocess``, ``unittest.mock``);
                        ``sys._getframe``, ``sys.settrace``, ``sys.modules``...; frame, traceback, code
                        and globals attributes (``f_back``, ``__traceback__``, ``__globals__``,
                        ``__dict__``...), also as strings; library entry points to native code, the
                        operator registry or pickles (``torch.library``, ``torch.utils.cpp_extension``,
                        ``torch.load``, ``numpy.load``), also imported by name (``from torch import
                        library``); global module hooks (``register_module_forward_hook``); the working
                        directory (``os.chdir``: a later import would find a planted module); private
                        attributes of an imported module (``torch._C``); attributes read in a
                        ``str.format`` field (``"{0.__class__}"``)
dynamic-code            ``exec``, ``eval``, ``compile``, ``__import__``, ``globals``, ``locals``, ``vars``;
                        ``setattr`` with a computed name on a class or on ``type(x)``; ``getattr``,
                        ``setattr``, ``delattr`` and ``type`` other than called directly (``s = setattr``,
                        ``map(setattr, ...)``)
patching                storing or deleting an attribute or item of an imported module or object, also
                        through an alias (``t = torch; t.allclose = ...``), ``type(x)`` or a literal
                        (``torch.allclose = ...``, ``setattr(training, ...)``, ``os.environ[...] = ...``)
rigged-comparison       a class that derives from a builtin type or a library's value type
                        (``torch.Tensor``, ``numpy.float64``) or defines a comparison, truth or
                        conversion method (``__eq__``, ``__bool__``, ``__float__``...), a special method
                        set from outside (``A.__eq__ = ...``), a metaclass, or a class built with
                        ``type(name, bases, namespace)``
======================  ============================================================================

This is a deny-list over source code, so it is as good as its coverage: the rules refuse the primitives
that every known route into the tests' frame or namespace needs (dynamic code, frames, builtins, the
kernel, module state). The grading sandbox (:mod:`.sandbox`) still confines whatever runs. Cells that do
not parse are left to fail when they run.

Why one module of this length: the rule tables, the reader that applies them, the assignment's context
(references, imports, forbidden names, given lines) and the refusal that rewrites a notebook are one
policy; split, a rule and the message that explains it would live apart.
"""
from __future__ import annotations

import ast
import builtins
import copy
import re
from dataclasses import dataclass

from .notebook import SOLUTION_BEGIN, SOLUTION_END, grade_id, is_locked, is_solution, is_test, strip_region

FIX = {  # the rules, and what each tells the learner to do instead
    "forbidden": "this part asks you to write it yourself: remove that import or call",
    "test-reference": "names the locked cells define for the tests are theirs: use your own names and values",
    "kernel": "an answer needs no access to the notebook's kernel or its history",
    "builtins": "leave Python's builtins alone (rename your variable or function)",
    "introspection": "an answer needs no access to frames, the interpreter's state or serialised code",
    "dynamic-code": "write the code itself instead of building it at run time",
    "patching": "do not change modules or objects you imported; write your own function",
    "rigged-comparison": "return plain values (int, float, str, tensors...), not objects that redefine comparison",
}
KERNEL_NAMES = {"get_ipython", "In", "Out", "_ih", "_oh", "_dh", "_i", "_ii", "_iii", "__", "___", "exit", "quit"}
KERNEL_NAME = re.compile(r"_i?\d+")  # IPython's numbered history: _i3 (input 3), _3 (output 3)
ALLOWED_MAGICS = {"time", "timeit", "matplotlib"}
INTROSPECTION_MODULES = {"inspect", "gc", "atexit", "ctypes", "importlib", "runpy", "pickle", "marshal", "dill",
                         "cloudpickle", "code", "codeop", "dis", "types", "signal", "faulthandler", "builtins",
                         "IPython", "ipykernel", "traitlets", "sysconfig", "site", "imp", "pdb", "bdb", "trace",
                         "tracemalloc", "sys.monitoring", "_thread", "traceback", "operator", "asyncio", "shelve",
                         "copyreg", "joblib", "weakref", "threading", "multiprocessing", "concurrent", "subprocess",
                         "unittest", "mock", "pytest", "_pytest", "sched", "socket", "pty"}
# reach native code, the operator registry or pickles from a library that is itself allowed
DANGEROUS_CHAINS = {"torch.library", "torch.overrides", "torch.utils.cpp_extension", "torch.ops.load_library",
                    "torch.load", "torch.package", "torch.hub", "numpy.ctypeslib", "numpy.load", "pandas.read_pickle",
                    "logging.currentframe", "os.chdir", "os.fchdir", "torch.autograd.graph.saved_tensors_hooks",
                    "torch.autograd.graph.register_multi_grad_hook"}
# global hooks: a function that runs inside every module's forward or backward, the tests' references included
DANGEROUS_PREFIXES = ("torch.nn.modules.module.register_module_",)
# builtins that change or reach attributes, or build classes, when called: only as a direct call
AS_CALL_ONLY = {"getattr", "setattr", "delattr", "type"}
# an attribute in a str.format field ("{0.__class__}", "{0.f_back}"): introspection written as a string
FORMAT_FIELD = re.compile(r"\{[^{}]*\.(_\w*|f_\w+|gi_\w+|cr_\w+|tb_\w+|co_\w+)[^{}]*\}")
SYS_ATTRIBUTES = {"_getframe", "settrace", "setprofile", "gettrace", "getprofile", "modules", "meta_path",
                  "path_hooks", "path_importer_cache", "addaudithook", "monitoring", "displayhook",
                  "excepthook", "breakpointhook", "__dict__", "_current_frames", "setrecursionlimit", "exc_info",
                  "exception", "last_traceback", "last_value", "last_exc"}
THREADING_ATTRIBUTES = {"settrace", "setprofile", "settrace_all_threads", "setprofile_all_threads", "excepthook"}
DUNDER_ATTRIBUTES = {"__globals__", "__code__", "__closure__", "__builtins__", "__subclasses__", "__bases__",
                     "__mro__", "__dict__", "__getattribute__", "__setattr__", "__delattr__", "__reduce__",
                     "__reduce_ex__", "__class__", "__func__", "__self__", "__defaults__", "__kwdefaults__",
                     "__wrapped__", "__loader__", "__spec__", "__traceback__", "__context__", "__cause__"}
FRAME_ATTRIBUTES = {"f_back", "f_locals", "f_globals", "f_builtins", "f_code", "f_trace", "gi_frame", "cr_frame",
                    "ag_frame", "tb_frame", "tb_next", "co_code", "co_consts"}
DYNAMIC = {"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint"}
ATTRIBUTE_FUNCTIONS = {"getattr", "setattr", "delattr", "hasattr"}
# comparison, truth, hashing, conversion, type checks, dispatch and attribute hijacking, creation
RIGGING_METHODS = {"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__", "__hash__",
                   "__float__", "__int__", "__index__", "__complex__", "__instancecheck__", "__subclasscheck__",
                   "__torch_function__", "__torch_dispatch__", "__array__", "__array_ufunc__",
                   "__array_function__", "__getattr__", "__getattribute__", "__new__", "__init_subclass__",
                   "__class_getitem__"}
# library value types a subclass of which could answer for a tensor or a number and compare as it likes
VALUE_TYPES = ("torch.Tensor", "torch.nn.Parameter", "torch.nn.parameter", "torch.Size", "numpy")
# the methods that change a list, dict or set in place: not on a value the tests read
CONTAINER_MUTATORS = {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "update",
                      "setdefault", "popitem", "add", "discard", "difference_update", "intersection_update",
                      "symmetric_difference_update", "__setitem__", "__delitem__"}
BUILTIN_TYPES = {name for name in dir(builtins) if isinstance(getattr(builtins, name), type)}
BUILTIN_NAMES = set(dir(builtins)) - {"__name__", "__doc__", "__package__", "__loader__", "__spec__",
                                      "__build_class__", "__debug__"}


@dataclass(frozen=True)
class Refusal:
    """Why one cell of a submission is not run."""

    cell: int            # index in the notebook
    grade_id: str | None
    rule: str
    line: int
    what: str            # the construct, as written

    def message(self) -> str:
        return f"line {self.line}: {self.what} ({self.rule}: {FIX[self.rule]})"


def _dotted(node) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


def _dangerous(full: str) -> bool:
    """``full`` (a resolved dotted name) is, or is inside, an entry point of :data:`DANGEROUS_CHAINS`."""
    return any(full == c or full.startswith(c + ".") for c in DANGEROUS_CHAINS) or full.startswith(DANGEROUS_PREFIXES)


def _matches(dotted: str, forbidden: set[str], allowed: set[str] = frozenset()) -> str | None:
    """The forbidden name that ``dotted`` (a module path or an attribute chain) reaches, if any.

    ``course_lib.methods.lora`` is reached by ``course_lib.methods.lora.X``, by ``methods.lora`` and by
    ``lora`` imported from ``course_lib.methods`` (an import's full name is checked by the caller);
    a one-part name such as ``peft`` only by that name as a module.
    """
    parts = dotted.split(".")
    if any(parts[:len(a.split("."))] == a.split(".") for a in allowed):
        return None
    for name in forbidden:
        f = name.split(".")
        if parts[:len(f)] == f:
            return name
        if len(f) >= 2:
            tail = f[-2:]
            if any(parts[i:i + 2] == tail for i in range(len(parts) - 1)):
                return name
    return None


class _Reader(ast.NodeVisitor):
    def __init__(self, forbidden: set[str], references: set[str], imported: dict[str, str], allowed: set[str],
                 shared: dict[str, str | None] | None = None, classes: set[str] = frozenset(),
                 aliases: set[str] = frozenset()):
        self.forbidden, self.references, self.imported, self.allowed = forbidden, references, imported, allowed
        self.shared = shared  # names the course's cells bind and read -> what an import there made them
        self.classes = classes  # the classes the cell defines
        self.aliases = aliases  # other names for those values (m = model)
        self.found: list[tuple[str, int, str]] = []
        self.depth = 0  # > 0 inside a function or class body
        self.local: set[int] = set()  # ids of comprehension targets (local to the comprehension)
        self.scopes: list[set[str]] = []  # the local names of the functions around the node
        self.called: set[int] = set()  # ids of the names that are called directly (f in f(...))

    def bind(self, node, name: str, how: str, imports: str | None = None) -> None:
        """A binding of ``name`` in the notebook's namespace (module level, or ``global``): a builtin's name, or
        a name the course's cells bound and read again (``baseline_accuracy``, ``model``, ``torch``); an
        import of what the course's cells imported under that name (``imports``) is no rebinding."""
        if name in BUILTIN_NAMES:
            self.add("builtins", node, f"{how} {name} (rebinds a builtin)")
        elif name in self.shared and (imports is None or self.shared[name] != imports):
            self.add("test-reference", node, f"{how} {name} (a name the course's cells bind and the tests read)")

    def full(self, dotted: str) -> str:
        """``R.evaluate`` -> ``course_lib.reasoning.evaluate`` when a cell did ``from course_lib import reasoning as R``."""
        head, dot, rest = dotted.partition(".")
        return self.imported.get(head, head) + dot + rest

    def add(self, rule: str, node, what: str) -> None:
        self.found.append((rule, getattr(node, "lineno", 0), what))

    # imports ---------------------------------------------------------------------------------------
    def _module(self, node, module: str) -> None:
        hit = _matches(module, self.forbidden, self.allowed)
        if hit:
            self.add("forbidden", node, f"import of {module}")
        top = module.split(".")[0]
        if module in INTROSPECTION_MODULES or top in INTROSPECTION_MODULES:
            self.add("builtins" if top == "builtins" else "kernel" if top in ("IPython", "ipykernel") else
                     "introspection", node, f"import {module}")

    def visit_Import(self, node):
        for alias in node.names:
            self._module(node, alias.name)
            bound = alias.asname or alias.name.split(".")[0]
            if self.depth == 0:
                self.bind(node, bound, "import ... as", alias.name if alias.asname else bound)
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        module = "." * node.level + (node.module or "")
        self._module(node, module)
        for alias in node.names:
            if alias.name == "*":
                if self.depth == 0:
                    self.add("builtins", node, f"from {module} import * (may rebind builtins and names the tests read)")
                continue
            full = f"{module}.{alias.name}"
            resolved = self.full(full) if not node.level else full
            if _dangerous(resolved) or alias.name.startswith("_") and not alias.name.startswith("__"):
                self.add("introspection", node, f"from {module} import {alias.name}")
            if _matches(full, self.forbidden, self.allowed) and not _matches(module, self.forbidden, self.allowed):
                self.add("forbidden", node, f"from {module} import {alias.name}")
            if module == "sys" and alias.name in SYS_ATTRIBUTES or module == "threading" and \
                    alias.name in THREADING_ATTRIBUTES:
                self.add("introspection", node, f"from {module} import {alias.name}")
            if (alias.asname or alias.name) in self.references:
                self.add("test-reference", node, f"import ... as {alias.asname or alias.name}")
            if self.depth == 0:
                self.bind(node, alias.asname or alias.name, "import ... as", full)
        self.generic_visit(node)

    # names and attributes ----------------------------------------------------------------------------
    def visit_Name(self, node, chained: bool = False):
        """``chained``: the name is the start of an attribute chain, which :meth:`visit_Attribute` judged whole
        (``pruning.prunable_parameters`` may be allowed where ``pruning`` alone is forbidden)."""
        if not chained and node.id in self.imported and _matches(self.full(node.id), self.forbidden, self.allowed):
            self.add("forbidden", node, f"{node.id} ({self.full(node.id)})")
        if node.id in self.references:
            self.add("test-reference", node, node.id)
        elif node.id in KERNEL_NAMES or KERNEL_NAME.fullmatch(node.id):
            self.add("kernel", node, node.id)
        elif node.id == "__builtins__":
            self.add("builtins", node, node.id)
        elif node.id in DYNAMIC and isinstance(node.ctx, ast.Load):
            self.add("dynamic-code", node, f"{node.id}(...)")
        elif node.id in AS_CALL_ONLY and isinstance(node.ctx, ast.Load) and id(node) not in self.called:
            self.add("dynamic-code", node, f"{node.id} passed as a value (call it directly)")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and self.depth == 0:
            if node.id in BUILTIN_NAMES or id(node) not in self.local:
                self.bind(node, node.id, "del" if isinstance(node.ctx, ast.Del) else "assignment to")

    def visit_comprehension(self, node):
        self.local |= {id(n) for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        self.generic_visit(node)

    def visit_ExceptHandler(self, node):
        if node.name and self.depth == 0:
            self.bind(node, node.name, "except ... as")
        self.generic_visit(node)

    def _match_name(self, node, name):
        if name and self.depth == 0:
            self.bind(node, name, "case ... as")
        self.generic_visit(node)

    def visit_MatchAs(self, node):
        self._match_name(node, node.name)

    def visit_MatchStar(self, node):
        self._match_name(node, node.name)

    def visit_MatchMapping(self, node):
        self._match_name(node, node.rest)

    def _patched(self, node) -> None:
        """An attribute or item stored into (or deleted from) something the cell did not make: a module, an
        object imported or reached from one (also through an alias, ``t = torch``), ``type(x)``, a literal."""
        base = node.value
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        what = f"{ast.unparse(node)} = ..."
        if (name := self._test_value(base)) is not None:
            self.add("test-reference", node, f"{what} (changes {name}, which the tests read)")
        elif isinstance(base, ast.Name) and base.id in self.imported:
            self.add("patching", node, what)
        elif isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id in ("type", "super"):
            self.add("patching", node, f"{what} (changes a class)")
        elif isinstance(base, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
            self.add("patching", node, what)

    def visit_Subscript(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._patched(node)
        self.generic_visit(node)

    def visit_Attribute(self, node):
        dotted = _dotted(node)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._patched(node)
            if node.attr.startswith("__") and node.attr.endswith("__"):
                self.add("rigged-comparison", node, f"{ast.unparse(node)} = ... (a special method set from outside)")
        if dotted is None:  # the chain starts at a call or a subscript: this attribute, then what it is on
            if node.attr in DUNDER_ATTRIBUTES or node.attr in FRAME_ATTRIBUTES:
                self.add("introspection", node, f".{node.attr}")
            self.generic_visit(node)
            return
        hit = _matches(self.full(dotted), self.forbidden, self.allowed)  # a.b.c, judged as a whole
        if hit:
            self.add("forbidden", node, dotted if hit in dotted else f"{dotted} ({hit})")
        head, _, rest = dotted.partition(".")
        full = self.full(dotted)
        if head == "sys" and rest.split(".")[0] in SYS_ATTRIBUTES or \
                head == "threading" and rest.split(".")[0] in THREADING_ATTRIBUTES:
            self.add("introspection", node, dotted)
        elif _dangerous(full):
            self.add("introspection", node, dotted)
        elif head in self.imported and any(part.startswith("_") for part in rest.split(".")):
            self.add("introspection", node, f"{dotted} (a private attribute of an imported module)")
        link = node
        while isinstance(link, ast.Attribute):
            if link.attr in DUNDER_ATTRIBUTES or link.attr in FRAME_ATTRIBUTES:
                self.add("introspection", link, f".{link.attr}")
            link = link.value
        self.visit_Name(link, chained=True)

    def visit_Constant(self, node):
        if isinstance(node.value, str) and (node.value in DUNDER_ATTRIBUTES or node.value in FRAME_ATTRIBUTES
                                            or node.value in RIGGING_METHODS):
            self.add("introspection", node, f"the string {node.value!r}")
        elif isinstance(node.value, str) and FORMAT_FIELD.search(node.value):
            self.add("introspection", node, f"a format field that reads an attribute ({FORMAT_FIELD.search(node.value)[0]})")

    def visit_Call(self, node):
        self.called.add(id(node.func))
        if isinstance(node.func, ast.Attribute) and node.func.attr in CONTAINER_MUTATORS:
            if (name := self._test_value(node.func.value)) is not None:
                self.add("test-reference", node, f"{name}.{node.func.attr}(...) (changes {name}, which the tests read)")
            root = node.func.value
            while isinstance(root, (ast.Attribute, ast.Subscript)):
                root = root.value
            if isinstance(root, ast.Name) and root.id in self.imported and root is not node.func.value:
                self.add("patching", node, f"{ast.unparse(node.func)}(...) (changes a library's or the course's state)")
        if isinstance(node.func, ast.Name) and node.func.id == "type" and len(node.args) == 3:
            self.add("rigged-comparison", node, "type(name, bases, namespace) (a class built at run time)")
        func = node.func.id if isinstance(node.func, ast.Name) else None
        if func in ATTRIBUTE_FUNCTIONS and node.args:
            target = _dotted(node.args[0]) or ""
            name = node.args[1] if len(node.args) > 1 else None
            literal = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else None
            if target.split(".")[0] in self.imported:
                if func in ("setattr", "delattr"):
                    self.add("patching", node, f"{func}({target}, ...)")
                elif literal is None:
                    self.add("dynamic-code", node, f"{func}({target}, <a computed name>)")
            if func in ("setattr", "delattr"):
                strings = [n.value for n in ast.walk(name) if isinstance(n, ast.Constant) and isinstance(n.value, str)] \
                    if name is not None else []
                if literal is not None and literal.startswith("__") or any("__" in t for t in strings):
                    self.add("rigged-comparison", node, f"{func}(..., a special method's name)")
                elif literal is None and (target in self.classes or isinstance(node.args[0], ast.Call) and
                                          isinstance(node.args[0].func, ast.Name) and node.args[0].func.id == "type"):
                    self.add("dynamic-code", node, f"{func}({target or ast.unparse(node.args[0])}, <a computed name>)")
            if literal is not None and target:
                hit = _matches(self.full(f"{target}.{literal}"), self.forbidden, self.allowed)
                if hit:
                    self.add("forbidden", node, f"{func}({target}, {literal!r}) ({hit})")
                if literal in DUNDER_ATTRIBUTES or literal in FRAME_ATTRIBUTES:
                    self.add("introspection", node, f"{func}(..., {literal!r})")
        self.generic_visit(node)

    # definitions ---------------------------------------------------------------------------------------
    def _define(self, node, name: str) -> None:
        if self.depth == 0:
            self.bind(node, name, "def/class")
        if name in self.references:
            self.add("test-reference", node, f"def/class {name}")

    def visit_FunctionDef(self, node):
        self._define(node, node.name)
        self.depth += 1
        args = node.args
        own = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg] if a}
        own |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        own -= {name for n in ast.walk(node) if isinstance(n, ast.Global) for name in n.names}
        self.scopes.append(own)
        self.generic_visit(node)
        self.scopes.pop()
        self.depth -= 1

    def _test_value(self, node) -> str | None:
        """The name, if ``node`` is a value the course's cells bound for the tests (not a module, not a local)."""
        if isinstance(node, ast.Name) and (self.shared.get(node.id, "") is None or node.id in self.aliases) and \
                not any(node.id in own for own in self.scopes):
            return node.id
        return None

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self._define(node, node.name)
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in BUILTIN_TYPES and base.id != "object":
                self.add("rigged-comparison", node, f"class {node.name}({base.id})")
            dotted = _dotted(base)
            full = self.full(dotted) if dotted else ""
            if any(full == t or full.startswith(t + ".") for t in VALUE_TYPES):
                self.add("rigged-comparison", node, f"class {node.name}({dotted}) (a subclass of a library's value type)")
        for kw in node.keywords:
            if kw.arg == "metaclass":
                self.add("rigged-comparison", node, f"class {node.name}(metaclass=...)")
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in RIGGING_METHODS:
                self.add("rigged-comparison", item, f"{node.name}.{item.name}")
            if isinstance(item, ast.Assign):
                for target in item.targets:
                    if isinstance(target, ast.Name) and target.id in RIGGING_METHODS:
                        self.add("rigged-comparison", item, f"{node.name}.{target.id} = ...")
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_Global(self, node):
        for name in node.names:
            if name in BUILTIN_NAMES or name in self.references or name in self.shared:
                self.add("builtins" if name in BUILTIN_NAMES else "test-reference", node, f"global {name}")
        self.generic_visit(node)

    visit_Nonlocal = visit_Global


def _python(source: str) -> tuple[str, list[tuple[str, int, str]], list[str]]:
    """``source`` as plain Python (IPython's magics and ``!`` commands transformed), the magics it uses
    that are not allowed, and the code that its allowed magics run (``%time stmt``, a ``%%timeit`` body)."""
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(source)
    refused, inner = [], []
    if "get_ipython()" in code and "get_ipython()" not in source:  # a magic or a shell command became a call
        try:
            tree = ast.parse(code)
        except SyntaxError:
            return code, refused, inner
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name) and \
                    node.func.value.func.id == "get_ipython":
                kind = node.func.attr
                magic = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
                if kind in ("run_line_magic", "run_cell_magic") and magic in ALLOWED_MAGICS:
                    node.func.value.func.id = "_course_allowed_magic"  # not a use of get_ipython ...
                    body = node.args[-1] if len(node.args) > 1 else None  # ... but the code it times is read
                    if magic != "matplotlib" and isinstance(body, ast.Constant) and isinstance(body.value, str):
                        inner.append(body.value)
                    continue
                node.func.value.func.id = "_course_refused_magic"  # reported once, by its name:
                shell = kind in ("system", "getoutput")
                refused.append(("kernel", node.lineno, f"!{magic}" if shell else f"%{magic}" if magic else kind))
        code = ast.unparse(tree)
    return code, refused, inner


def read_cell(source: str, forbidden=frozenset(), references=frozenset(), imported=None,
              allowed=frozenset(), shared=None) -> list[tuple[str, int, str]]:
    """``(rule, line, what)`` for every refused construct of one cell's source (empty: it may run).
    ``shared``: names the course's own cells bind and read (the notebook may not rebind them)."""
    code, found, inner = _python(source)
    for body in inner:
        found += read_cell(body, forbidden, references, imported, allowed, shared)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return found
    imported = imported if isinstance(imported, dict) else {name: name for name in imported or ()}
    imported = {**_imported(tree), **imported}  # the cell's own imports; a name the course gave keeps its meaning
    imported = {**_aliases(tree, imported), **imported}  # t = torch: t is torch too
    classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    shared = shared if isinstance(shared, dict) else dict.fromkeys(shared or ())
    values = {n: n for n, meaning in shared.items() if meaning is None}
    aliases = set(_aliases(tree, values)) - set(shared)  # m = model: changing m changes the tests' model
    reader = _Reader(set(forbidden), set(references), imported, set(allowed), shared, classes, aliases)
    reader.visit(tree)
    return found + reader.found


def _aliases(tree, imported: dict[str, str]) -> dict[str, str]:
    """Names bound to an imported module or object, or to an attribute of one (``t = torch``, ``T =
    torch.Tensor``, ``for m in (torch, np)``), with what they stand for: patching through them is patching."""
    out = {}
    for _ in range(3):  # an alias of an alias
        known = {**out, **imported}
        for node in ast.walk(tree):
            pairs = []
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                pairs = [(t, node.value) for t in targets]
            elif isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.iter, (ast.List, ast.Tuple, ast.Set)):
                pairs = [(node.target, e) for e in node.iter.elts]
            for target, value in pairs:
                values = value.elts if isinstance(value, (ast.Tuple, ast.List)) else [value]
                names = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
                if len(names) != len(values) and len(values) != 1:
                    continue
                for k, t in enumerate(names):
                    v = values[k] if len(values) == len(names) else values[0]
                    dotted = _dotted(v)
                    if isinstance(t, ast.Name) and dotted and dotted.split(".")[0] in known:
                        head, dot, rest = dotted.partition(".")
                        out.setdefault(t.id, known[head] + dot + rest)
    return out


def _bound_names(tree) -> set[str]:
    """Names a cell binds at module level (assignments, imports, defs), for the locked cells' references."""
    names = set()
    for node in tree.body:
        targets = []
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.For, ast.With)):
            targets = [node.target] if isinstance(node, ast.For) else [i.optional_vars for i in node.items if i.optional_vars]
        for t in targets:
            names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _imported(tree) -> dict[str, str]:
    """Each name an import binds -> what it stands for (``R`` -> ``course_lib.reasoning``, ``np`` -> ``numpy``)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name != "*":
                    out[a.asname or a.name] = f"{'.' * node.level}{node.module or ''}.{a.name}"
    return out


def _parse(source: str):
    try:
        return ast.parse(_python(source)[0])
    except SyntaxError:
        return None


def forbidden_names(source_nb) -> tuple[dict[str, set[str]], set[str]]:
    """``({grade_id or "*": names}, allowed)`` from the source notebook's metadata ``course``:

    ``"forbidden"``: a list (for every part) or a dict from an answer cell's grade_id (or ``"*"``, every
    part) to a list of dotted names: modules (``peft``, ``course_lib.methods.lora``) or functions
    (``course_lib.training.conditional_lm_loss``). ``"allowed"``: dotted names inside a forbidden module
    that answers may still use (``course_lib.methods.pruning.prunable_parameters``). The instructions must
    name each forbidden name (``course check``'s lint).
    """
    meta = source_nb.metadata.get("course", {})
    raw = meta.get("forbidden", [])
    table = {"*": set(raw)} if isinstance(raw, list) else {k: set(v) for k, v in raw.items()}
    return table, set(meta.get("allowed", []))


def forbidden_for(table: dict[str, set[str]], gid: str | None) -> set[str]:
    """The names forbidden in answer cell ``gid``; a cell the learner added gets every part's."""
    if gid is None:
        return set().union(*table.values()) if table else set()
    return table.get("*", set()) | table.get(gid, set())


def context(source_nb) -> tuple[set[str], dict[str, str]]:
    """``(references, imported)`` of an assignment, from its source notebook: the ``_``-names its locked
    cells bind (references for the tests), and every name bound by an import in any of its cells, with
    what it stands for (modules and objects a learner must not patch)."""
    references, imported = set(), {}
    for cell in source_nb.cells:
        if cell.cell_type != "code":
            continue
        tree = _parse(cell.source)
        if tree is None:
            continue
        imported.update(_imported(tree))
        if not is_solution(cell) and not is_test(cell):
            references |= {n for n in _bound_names(tree) if n.startswith("_") and not n.startswith("__")}
    return references, imported


def shared_names(source_nb) -> dict[str, str | None]:
    """Names the course's own cells (locked and test cells) bind and then read again: the tests' inputs
    (``baseline_accuracy``, ``val``, ``model``, ``torch``...), each with what an import made it (None: not an
    import). A learner's cell may use them, and import the same thing again, but not rebind them."""
    bound, read, meaning = set(), set(), {}
    for cell in source_nb.cells:
        if cell.cell_type != "code" or is_solution(cell):
            continue
        tree = _parse(cell.source)
        if tree is None:
            continue
        if not is_test(cell):
            bound |= _bound_names(tree)
            meaning.update(_imported(ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                                                type_ignores=[])))
        read |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return {n: meaning.get(n) for n in bound & read if not n.startswith("_")}


def given_lines(source_nb) -> dict[str, set[str]]:
    """For each answer cell, the lines the instructor gives outside its solution region (stripped): the
    release's own code may use the references (``pairs = prefix_key_values(_px_table, ...)``)."""
    return {grade_id(c): {line.strip() for line in strip_region(c.source, SOLUTION_BEGIN, SOLUTION_END).splitlines()
                          if line.strip()}
            for c in source_nb.cells if is_solution(c) and c.cell_type == "code"}


class Auditor:
    """The audit of one assignment: its references, imports, forbidden names and given lines, read once from
    the source notebook."""

    def __init__(self, source_nb):
        self.references, self.imported = context(source_nb)
        self.table, self.allowed = forbidden_names(source_nb)
        self.given = given_lines(source_nb)
        self.shared = shared_names(source_nb)
        self.restored = {grade_id(c) for c in source_nb.cells if grade_id(c) and (is_locked(c) or is_test(c))
                         and not is_solution(c)}

    def cell(self, source: str, gid: str | None, index: int = -1, imported: dict[str, str] | None = None):
        """The refusals of one cell the learner controls (``gid``: its grade_id; None for a cell they added)."""
        lines = source.splitlines()
        mine = self.given.get(gid, set())
        forbidden = forbidden_for(self.table, gid if gid in self.given else None)
        out, seen = [], set()
        for rule, line, what in read_cell(source, forbidden, self.references, self.imported if imported is None
                                          else imported, self.allowed, self.shared):
            if 0 < line <= len(lines) and lines[line - 1].strip() in mine or (rule, line) in seen:
                continue  # the instructor's own line, or a second finding of one rule on one line
            seen.add((rule, line))
            out.append(Refusal(index, gid, rule, line, what))
        return out

    def notebook(self, nb) -> list[Refusal]:
        """Every refused construct in the cells the learner controls (every code cell but the locked and test
        cells that nbgrader restores), in notebook order."""
        cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and grade_id(c) not in self.restored]
        imported, trees = {}, [t for i in cells if (t := _parse(nb.cells[i].source)) is not None]
        for tree in trees:  # the learner's own imports count too ...
            imported.update(_imported(tree))
        imported.update(self.imported)  # ... but the course's meaning of a name wins over a learner's rebinding
        for tree in trees:  # and names bound to them in one cell and used in another (t = torch)
            imported = {**_aliases(tree, imported), **imported}
        return [r for i in cells for r in self.cell(nb.cells[i].source, grade_id(nb.cells[i]), i, imported)]


def audit(nb, source_nb) -> list[Refusal]:
    """Every refused construct in the cells of ``nb`` the learner controls (the lines of an answer cell that
    the release gives verbatim are the instructor's and are not refused)."""
    return Auditor(source_nb).notebook(nb)


REFUSED = ('raise RuntimeError("The grader did not run this cell: {why}. An answer may not do this, so the '
           'cell was replaced by this error and its part scores 0; the rest of your notebook was graded.")')


def refuse(nb, source_nb) -> tuple[object, list[str]]:
    """``(notebook, notes)``: ``nb`` (not modified) with every cell that :func:`audit` refuses replaced by
    an error that says why, and one note per refused cell for the learner's record."""
    refusals = audit(nb, source_nb)
    if not refusals:
        return nb, []
    nb = copy.deepcopy(nb)
    notes = []
    by_cell: dict[int, list[Refusal]] = {}
    for r in refusals:
        by_cell.setdefault(r.cell, []).append(r)
    for i, found in by_cell.items():
        why = "; ".join(r.message() for r in found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
        nb.cells[i].source = REFUSED.format(why=why.replace("\\", "/").replace('"', "'"))
        nb.cells[i].outputs = []
        label = found[0].grade_id or "a cell you added"
        notes.append(f"cell {i} ({label}) not run, scored 0: {why}")
    return nb, notes

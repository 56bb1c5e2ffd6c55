"""The import graph of ``course_lib`` reads top-down: no module imports a module of a higher layer.

The rule: every module of ``course_lib`` belongs to one layer of :data:`LAYERS` (a sub-package such as
``methods/``, ``embedded/``, ``plotting/`` or ``grading/`` counts as one module); a module may import
modules of its own layer or of lower layers, never of a higher one. Imports inside functions count as
much as those at the top of a module (a lazy import hides an arrow, it does not remove it). From the
bottom:

1. foundations: the package itself (its version), ``errors``, ``threads``, ``project``, ``precision``,
   ``devices``, ``timing`` (the one timer: lectures, ``prompting.prompt_cost`` and ``benchmarks/``),
   ``startup`` (what the course's processes skip at start-up), ``forkpool`` (independent runs spread over the
   CPU cores in forked workers); data folders (``configs``, ``data``)
2. what exists: the embedded model family (``embedded``) and the hub tables (``registry``)
3. where it runs: ``runtime``
4. the methods, one module each (``methods``): they act on any ``nn.Module``
5. loading models and tasks: ``models``, ``tasks``, ``standins``
6. measuring a model: ``scoring``, ``generation``, ``memory``, ``paging`` (paged optimiser states, simulated
   from measured sizes), ``peft_workflow`` (an adapter's size on disk,
   logits compared, the layers ``target_modules`` can name)
7. ``training``
8. experiments: ``prompting``, ``reasoning``, ``comparison``, ``family_eval``, ``robustness`` (methods on
   several seeds: a shifted split, forgetting, whether the base survives), ``instructions`` (instruction
   tuning against prompting)
9. showing: ``plotting``, ``widgets``, ``show``, ``findings`` (sentences conditioned on measured numbers)
10. the course around the library: ``authoring``, ``notebooks``, ``lab``, ``colab``, ``grading``, ``book``,
    ``cli``

A module that fits no layer (a new one) fails the test until it is placed here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "course_lib"

LAYERS = (
    {"", "errors", "threads", "project", "precision", "devices", "timing", "startup", "forkpool", "configs", "data"},
    {"embedded", "registry"},
    {"runtime"},
    {"methods"},
    {"models", "tasks", "standins"},
    {"scoring", "generation", "memory", "paging", "peft_workflow"},
    {"training"},
    {"prompting", "reasoning", "comparison", "family_eval", "robustness", "instructions"},
    {"plotting", "widgets", "show", "findings"},
    {"authoring", "notebooks", "lab", "colab", "grading", "book", "cli"},
)
LAYER = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str:
    """``course_lib.methods.lora`` -> ``methods``; ``course_lib`` (the package itself) -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every ``course_lib`` module that ``path`` imports, anywhere in the file: ``(line, module)``.
    ``from . import x`` yields ``course_lib.x``, since x may be a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "course_lib"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "course_lib":
                continue
            found.append((node.lineno, module))
            if module == "course_lib":  # from . import x: x is a module or a name of the package itself
                found += [(node.lineno, f"course_lib.{a.name}") for a in node.names
                          if (PACKAGE / a.name).is_dir() or (PACKAGE / f"{a.name}.py").is_file()]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    units = {unit_of(module_name(p)) for p in SOURCES}
    assert len(units) > 20, units  # the walk found the package
    assert units <= set(LAYER), f"place these in LAYERS (and the docstring): {sorted(units - set(LAYER))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path):
    unit = unit_of(module_name(path))
    upward = [f"line {line}: {module} (layer {LAYER[unit_of(module)] + 1}, above {unit or 'course_lib'}'s "
              f"{LAYER[unit] + 1})" for line, module in imported_modules(path)
              if unit_of(module) in LAYER and LAYER[unit_of(module)] > LAYER.get(unit, len(LAYERS))]
    assert not upward, f"{path.relative_to(PACKAGE)} imports upward: " + "; ".join(upward)


def test_the_import_parser_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    """The parser itself: a relative import inside a function, two levels up, is seen (the test could not fail
    otherwise)."""
    fake = tmp_path / "course_lib"
    (fake / "methods").mkdir(parents=True)
    (fake / "methods" / "lora.py").write_text("def f():\n    from ..training import to_device\n")
    (fake / "training.py").write_text("")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    assert imported_modules(fake / "methods" / "lora.py") == [(2, "course_lib.training")]


def private_names_used_across_modules(path: Path) -> list[str]:
    """``from <course_lib module> import _name`` and ``<imported course_lib module>._name`` in ``path``: a
    private name of another module (its own underscore names, and dunders, are fine)."""
    tree = ast.parse(path.read_text(), str(path))
    imported = dict(imported_modules(path))
    aliases = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.lineno in imported:
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {imported[node.lineno]} import {a.name}")
                aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import) and node.lineno in imported:
            aliases |= {(a.asname or a.name).split(".")[0] for a in node.names}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_uses_another_modules_private_names(path):
    found = private_names_used_across_modules(path)
    assert not found, (f"{path.relative_to(PACKAGE)} reaches into another module's private names: "
                       + "; ".join(found) + ". Make the name public (and document it) where it is defined.")


def test_the_private_name_check_sees_both_forms(tmp_path, monkeypatch):
    fake = tmp_path / "course_lib"
    fake.mkdir()
    (fake / "a.py").write_text("def _helper():\n    pass\n")
    (fake / "b.py").write_text("from .a import _helper\nfrom . import a\na._helper()\n_mine = 1\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    assert private_names_used_across_modules(fake / "b.py") == ["line 1: from course_lib.a import _helper",
                                                                "line 3: a._helper"]

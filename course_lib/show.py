"""Show the library's own code next to the maths that a lecture derives.

``show_source(LoraLayer.forward, LoraLayer.merge)`` returns an :class:`IPython.display.Code` object:
the notebook renders it with syntax highlighting (Pygments, through IPython), a terminal prints the
text. Each piece starts with a comment naming its file and line numbers, so a learner can open it.
"""
from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

from .errors import ConfigError


def source_of(obj) -> str:
    """The source of one function, method or class, dedented, under a ``# file:lines, name`` comment."""
    target = inspect.unwrap(getattr(obj, "fget", obj))   # properties show their getter
    try:
        lines, start = inspect.getsourcelines(target)
        path = Path(inspect.getsourcefile(target) or "?")
    except (OSError, TypeError) as err:
        raise ConfigError(f"no Python source to show for {obj!r} ({err}).",
                          "pass a function, method or class defined in Python, e.g. LoraLayer.forward.") from None
    parts = path.parts
    where = "/".join(parts[parts.index("course_lib"):]) if "course_lib" in parts else path.name
    name = getattr(target, "__qualname__", getattr(target, "__name__", repr(obj)))
    return f"# {where}:{start}-{start + len(lines) - 1}, {name}\n" + textwrap.dedent("".join(lines))


def show_source(*objects):
    """The sources of ``objects`` as one highlighted code block (``IPython.display.Code``)."""
    if not objects:
        raise ConfigError("show_source needs at least one function, method or class.",
                          "e.g. show_source(LoraLayer.forward).")
    text = "\n\n".join(source_of(o).rstrip("\n") for o in objects) + "\n"
    try:
        from IPython.display import Code
    except ImportError:  # outside Jupyter: plain text
        return text
    return Code(text, language="python")

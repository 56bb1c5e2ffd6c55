"""Errors a learner can act on: each one names the problem and the fix.

Every class also derives from the built-in exception a Python programmer would expect
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class CourseError(Exception):
    """Base class: ``str(err)`` is the problem, then a line starting with "How to fix:"."""

    def __init__(self, problem: str, fix: str):
        self.problem, self.fix = problem, fix
        super().__init__(f"{problem}\nHow to fix: {fix}")


class ConfigError(CourseError, ValueError):
    """A configuration value is out of range or of the wrong kind."""


class UnknownModelError(CourseError, ValueError):
    """A model name that is neither in the registry, nor an embedded member, nor a local path."""


class ModelNotFoundError(CourseError, FileNotFoundError):
    """A local model directory that does not exist or holds no model."""


class HubUnavailableError(CourseError, ConnectionError):
    """A hub model or dataset was asked for, but the Hugging Face hub cannot be reached."""


class DeviceUnavailableError(CourseError, RuntimeError):
    """A GPU-only request on a machine without that GPU."""


class MissingDependencyError(CourseError, ImportError):
    """An optional package is not installed."""


DISTRIBUTION = "efficient-adaptation-course"


def require(module: str, purpose: str, pip_name: str | None = None, extra: str | None = None):
    """Import ``module`` or raise :class:`MissingDependencyError` saying what needs it.

    ``extra`` names the optional-dependency group of pyproject.toml that brings the module
    (``lab``, ``grade``, ``browser``): the fix then installs that group.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        if extra:
            fix = (f"pip install '{DISTRIBUTION}[{extra}]'   (in a checkout of the course: "
                   f"pip install -e '.[{extra}]')")
        else:
            fix = f"pip install {pip_name or module}   (or reinstall the course: pip install -e .)"
        raise MissingDependencyError(
            f"{purpose} needs the package '{pip_name or module}', which is not installed ({err}).", fix) from None


def from_table(value, table: dict, cls: type, default: str, what: str):
    """``value`` itself if it is a ``cls``, ``table[value]`` if it names an entry, ``table[default]``
    for ``None``; otherwise a :class:`ConfigError` that lists the names (``what`` says what was asked)."""
    if value is None:
        return table[default]
    if isinstance(value, cls):
        return value
    if isinstance(value, str) and value in table:
        return table[value]
    raise ConfigError(f"unknown {what} {value!r}.", f"pass a {cls.__name__}(...) or one of the names {sorted(table)}.")

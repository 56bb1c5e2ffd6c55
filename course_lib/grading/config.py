"""Load and verify ``nbgrader_config.py``, and run nbgrader commands against it.

nbgrader silently ignores a config file that raises and then grades with its defaults (other
directories, no feedback filter: hidden tests would reach learners). So every ``course`` command
loads the file itself first, turning an error into a :class:`ConfigError`, and checks the sentinel
``course_id`` and the directories it relies on.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, CourseError

COURSE_ID = "efficient-adaptation"
EXPECTED = {
    "source_directory": "solutions",
    "release_directory": "exercises",
    "submitted_directory": "build/nbgrader/submitted",
    "autograded_directory": "build/nbgrader/autograded",
    "feedback_directory": "build/nbgrader/feedback",
}
FEEDBACK_FILTER = "course_lib.grading.feedback.StripHiddenTests"


@dataclass
class GradingConfig:
    root: Path
    config: object  # traitlets Config

    @property
    def default_timeout(self) -> int:
        return int(self.config.Execute.timeout)

    def timeout_for(self, cell) -> int:
        """Seconds the autograder allows ``cell`` (the config's ``timeout_func``, keyed by grade_id)."""
        func = self.config.Execute.get("timeout_func")
        value = func(cell) if callable(func) else None
        return int(value or self.default_timeout)


GRADING_RUNTIMES = ("embedded", "gpu")


def grading_environment(runtime: str = "embedded", base: dict | None = None) -> dict[str, str]:
    """The environment the grader's kernels get: the runtime chosen explicitly, never by the hardware.

    ``embedded`` (the default): ``COURSE_RUNTIME=embedded``, ``CUDA_VISIBLE_DEVICES=""`` (the kernel sees
    no GPU even on a GPU machine) and ``HF_HUB_OFFLINE=1``, so a score is the same on every grader.
    ``gpu``: ``COURSE_RUNTIME=gpu`` with the machine's GPUs and ``HF_HUB_OFFLINE=1`` (models come from
    the local cache, nothing downloads at grade time); ``nbgrader_config.py`` gives it its own cell limits.
    ``base``: the environment to start from (default: this process's).
    """
    if runtime not in GRADING_RUNTIMES:
        raise ConfigError(f"unknown grading runtime {runtime!r}.",
                          f"use --runtime {' or --runtime '.join(GRADING_RUNTIMES)} (default: embedded, on the CPU).")
    env = dict(os.environ if base is None else base, COURSE_RUNTIME=runtime, HF_HUB_OFFLINE="1")
    if runtime == "embedded":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def pin_runtime(runtime: str = "embedded") -> None:
    """Put :func:`grading_environment` into this process's environment, which every kernel and every
    nbgrader command started from here inherits (and ``nbgrader_config.py`` reads for its cell limits)."""
    env = grading_environment(runtime)
    if runtime == "gpu":
        import torch

        if not torch.cuda.is_available():
            from ..errors import DeviceUnavailableError
            raise DeviceUnavailableError("--runtime gpu was asked for, but this machine has no CUDA GPU.",
                                         "grade with the default --runtime embedded (CPU), or on a GPU machine.")
    os.environ.update(env)


def load_config(root: Path | None = None) -> GradingConfig:
    """Load ``<root>/nbgrader_config.py`` the way nbgrader does, but loudly."""
    from traitlets.config.loader import PyFileConfigLoader

    from ..project import course_root

    root = Path(root or course_root()).resolve()
    path = root / "nbgrader_config.py"
    if not path.is_file():
        raise ConfigError(f"no nbgrader configuration at {path}.",
                          "run the command from the course checkout (or set COURSE_ROOT); nbgrader_config.py "
                          "belongs at the repository root.")
    try:
        cfg = PyFileConfigLoader(path.name, path=str(root)).load_config()
    except Exception as err:  # nbgrader would ignore this silently and grade with defaults
        raise ConfigError(f"{path} raised {type(err).__name__}: {err}. nbgrader ignores a config file that "
                          "raises and would grade with its defaults.",
                          "fix the error in nbgrader_config.py (try: python nbgrader_config.py).") from None
    cd = cfg.CourseDirectory
    if cd.get("course_id") != COURSE_ID:
        raise ConfigError(f"{path} did not set the sentinel CourseDirectory.course_id = {COURSE_ID!r} "
                          f"(found {cd.get('course_id')!r}).",
                          f"keep `c.CourseDirectory.course_id = {COURSE_ID!r}` in nbgrader_config.py.")
    wrong = {k: cd.get(k) for k, v in EXPECTED.items() if cd.get(k) != v}
    if wrong:
        raise ConfigError(f"{path} sets {wrong}, but the course expects {EXPECTED}.",
                          "restore those directories in nbgrader_config.py.")
    pre = [p if isinstance(p, str) else f"{p.__module__}.{p.__name__}"
           for p in cfg.GenerateFeedback.get("preprocessors", [])]
    if FEEDBACK_FILTER not in pre:
        raise ConfigError(f"{path} does not list {FEEDBACK_FILTER} in GenerateFeedback.preprocessors: "
                          "feedback would show the hidden tests.",
                          f"add {FEEDBACK_FILTER!r} to c.GenerateFeedback.preprocessors.")
    return GradingConfig(root, cfg)


def assignments(root: Path) -> list[str]:
    """Assignment names: the folders of ``solutions/``."""
    base = root / "solutions"
    return sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))) \
        if base.is_dir() else []


def gradebook_path(nb_root: Path) -> Path:
    """Where nbgrader keeps the gradebook of the course (or scratch course) at ``nb_root``."""
    return Path(nb_root) / "build" / "nbgrader" / "gradebook.db"


def gradebook_url(nb_root: Path) -> str:
    """:func:`gradebook_path` as the SQLAlchemy URL that nbgrader and its ``Gradebook`` take."""
    return f"sqlite:///{gradebook_path(nb_root)}"


def nbgrader(args: list[str], cfg: GradingConfig, nb_root: Path | None = None,
             timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` with the course config; ``nb_root`` redirects every directory and the
    gradebook (used to release or grade into a scratch directory). Output is captured: it can hold
    hidden tests, so callers print only what they need."""
    nb_root = Path(nb_root or cfg.root).resolve()
    (nb_root / "build" / "nbgrader").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "course_lib.grading.nbgrader_main", *args, f"--CourseDirectory.root={nb_root}",
           f"--CourseDirectory.db_url={gradebook_url(nb_root)}"]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1",  # nbgrader runs `alembic` from PATH
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    proc = subprocess.Popen(cmd, cwd=cfg.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return subprocess.CompletedProcess(cmd, -9, out + f"\n[course] nbgrader killed after {timeout:.0f} s\n")
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out)


def last_error(output: str, n: int = 3) -> str:
    """The last few meaningful lines of an nbgrader log (for a message)."""
    lines = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith("[course]")]
    errs = [ln for ln in lines if "error" in ln.lower()]
    return " | ".join((errs or lines)[-n:])[-600:]


def require_nbgrader(purpose: str = "grading exercises (course release/grade/check/publish)") -> None:
    """Fail with the pip command of the ``grade`` extra when nbgrader or its runners are missing."""
    from ..errors import require

    for module in ("nbgrader", "nbformat", "nbclient", "ipykernel"):
        require(module, purpose, extra="grade")


__all__ = ["COURSE_ID", "GRADING_RUNTIMES", "GradingConfig", "grading_environment", "pin_runtime", "load_config", "assignments", "nbgrader", "last_error",
           "require_nbgrader", "CourseError"]

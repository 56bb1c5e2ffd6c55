"""The grading sandbox: every kernel that runs learner code during ``course grade``/``course check``
runs inside bubblewrap (``bwrap``, Debian package ``bubblewrap``), with resource limits.

What the kernel sees (everything else of the machine does not exist for it):

* read-only: the system (``/usr``, ``/etc``), the Python environment (``sys.prefix``,
  ``sys.base_prefix``, site-packages), the ``course_lib`` package (with its embedded models), the
  released files of the assignment (``exercises/<assignment>``) and the notebook's own folder (the
  autograded copy nbgrader executes);
* NOT ``solutions/``, ``nbgrader_config.py``, ``build/nbgrader/gradebook.db``, other learners'
  folders, the instructor's ``$HOME``; environment variables that look like credentials are dropped;
* a private writable ``/tmp`` and ``HOME`` (tmpfs, gone with the kernel); matplotlib and Hugging Face
  caches point there, or to the host's model cache bound read-only (``--runtime gpu``);
* no network (``--unshare-net``): the kernel talks to nbgrader over unix sockets (jupyter's ``ipc``
  transport) in a directory of its own, the only host directory it can write;
* limits (``resource.setrlimit``, applied before ``bwrap`` starts): address space (memory), CPU time,
  processes, size of a written file. When the grader runs as root (CI), each kernel runs as an
  unprivileged user id of its own (``SANDBOX_UID_BASE`` + the wrapper's pid, unique among running
  kernels): root ignores the process limit, and a shared id would let one learner's fork bomb use up
  the processes of another learner graded at the same time.
* ``COURSE_RUNTIME=gpu``: the NVIDIA devices are passed through and the address-space limit is
  lifted (CUDA reserves far more address space than it uses).

Mechanism: :class:`SandboxKernelManager` (a jupyter_client kernel manager; nbgrader's
``Execute.kernel_manager_class`` and :func:`.execute.run_steps` use it) prefixes the kernelspec's
command with ``python -m course_lib.grading.sandbox --``; that wrapper (:func:`main`) applies the
limits and execs ``bwrap``. A kernel manager rather than a kernelspec of its own: the wrapped
command is whatever the "python3" kernelspec says, and the socket directory is chosen per kernel.

``course grade``/``course check`` call :func:`activate` first: it refuses (with the fix) where
``bwrap`` is missing or cannot create its namespaces, unless the instructor passed ``--no-sandbox``.
Limits can be changed through ``COURSE_SANDBOX_MEMORY_MB``, ``COURSE_SANDBOX_CPU_S``,
``COURSE_SANDBOX_NPROC`` and ``COURSE_SANDBOX_FSIZE_MB``.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import CourseError

ENV_FLAG = "COURSE_SANDBOX"  # "on" (course grade/check's default) or "off" (--no-sandbox)
SANDBOX_UID_BASE = 1_000_000  # + a pid (< 2**22): ids no account uses
SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|ACCESS_KEY|PRIVATE_KEY|^AWS_|^GITHUB_|^SSH_")
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
UNSANDBOXED = "UNSANDBOXED (--no-sandbox): learner code ran with the grader's rights"


class SandboxUnavailableError(CourseError, RuntimeError):
    """The grading sandbox (bubblewrap) is missing or cannot run on this machine."""


def _ram_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return 8192


def limits(runtime: str | None = None) -> dict[str, int | None]:
    """The resource limits of a sandboxed kernel (``None``: not limited), from the environment or defaults.

    memory_mb: address space, half the RAM (at least 4 GiB); none on the GPU runtime. cpu_s: CPU seconds of
    the kernel process (all cells together; a backstop, the per-cell wall-clock limits of nbgrader_config.py
    come first): 3600, four times that on the GPU runtime (cells of up to 600 s). nproc: processes and threads of the sandbox user. fsize_mb: the
    largest file the kernel may write.
    """
    runtime = runtime or os.environ.get("COURSE_RUNTIME", "embedded")
    default_mem = None if runtime == "gpu" else max(4096, _ram_mb() // 2)

    def pick(name: str, default):
        raw = os.environ.get(f"COURSE_SANDBOX_{name.upper()}")
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise SandboxUnavailableError(f"COURSE_SANDBOX_{name.upper()}={raw!r} is not a whole number.",
                                          f"set COURSE_SANDBOX_{name.upper()} to an integer or unset it.") from None

    return {"memory_mb": pick("memory_mb", default_mem), "cpu_s": pick("cpu_s", 14400 if runtime == "gpu" else 3600),
            "nproc": pick("nproc", 256 + 8 * (os.cpu_count() or 2)), "fsize_mb": pick("fsize_mb", 1024)}


def _tasks_of(uid: int) -> int:
    """Processes + threads owned by ``uid`` now (RLIMIT_NPROC counts them all, not only the sandbox's)."""
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{d}/task"))
            except OSError:
                pass
    return n


def apply_limits(lim: dict, uid: int) -> None:
    import resource

    def setr(which, value):
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))

    if lim["memory_mb"]:
        setr(resource.RLIMIT_AS, lim["memory_mb"] * 2**20)
    if lim["cpu_s"]:
        setr(resource.RLIMIT_CPU, lim["cpu_s"])
    if lim["fsize_mb"]:
        setr(resource.RLIMIT_FSIZE, lim["fsize_mb"] * 2**20)
    if lim["nproc"]:
        setr(resource.RLIMIT_NPROC, lim["nproc"] + (0 if uid >= SANDBOX_UID_BASE else _tasks_of(uid)))
    setr(resource.RLIMIT_CORE, 0)


def _python_dirs() -> list[str]:
    import site
    import sysconfig

    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            *site.getsitepackages(), site.getusersitepackages(), *sysconfig.get_paths().values(),
            str(Path(__file__).resolve().parents[1])}  # course_lib itself (an editable install lives in the checkout)
    return sorted(d for d in dirs if d and os.path.isdir(d))


def _hf_cache() -> str | None:
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    return hub if os.path.isdir(hub) else None


def _parents(path: str, made: set[str]) -> list[str]:
    """``--dir`` for the folders above ``path`` that bwrap would otherwise create with mode 0700."""
    out = []
    for parent in reversed(Path(path).parents):
        p = str(parent)
        if p not in ("/", "/tmp") and p not in made and not any(p == d or p.startswith(d + "/") for d in SYSTEM_DIRS):
            made.add(p)
            out += ["--perms", "0755", "--dir", p]
    return out


def bwrap_args(cwd: str, socket_dir: str | None, runtime: str, root: str | None = None) -> list[str]:
    """The ``bwrap`` command line (without the kernel's own command) for a kernel started in ``cwd``."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailableError("bubblewrap (bwrap) is not installed.", "apt-get install bubblewrap")
    args = [bwrap, "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:  # no user namespace: the kernel takes an unprivileged id inside (see _inner), which needs these
        args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                 "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-all", "--cap-drop", "ALL"]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    home = os.path.expanduser("~")
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
             "--perms", "1777", "--dir", "/tmp/home"]
    if home not in ("/", "/tmp", "/tmp/home"):
        args += ["--tmpfs", home]  # the instructor's home is empty inside (the Python under it is bound below)
    made: set[str] = set()
    for d in _python_dirs():
        if not any(d.startswith(o.rstrip("/") + "/") for o in _python_dirs()):  # nested ones come with it
            args += _parents(d, made) + ["--ro-bind", d, d]
    hf = _hf_cache() if runtime == "gpu" else None
    if hf:
        args += _parents(hf, made) + ["--ro-bind", hf, hf]
    if runtime == "gpu":
        for dev in sorted(glob.glob("/dev/nvidia*")):
            args += ["--dev-bind-try", dev, dev]
        args += ["--ro-bind-try", "/sys", "/sys"]
    if root:
        released = os.path.join(root, "exercises", os.path.basename(cwd))
        if os.path.isdir(released) and os.path.realpath(released) != os.path.realpath(cwd):
            args += _parents(released, made) + ["--ro-bind", released, released]
    args += _parents(cwd, made) + ["--ro-bind", cwd, cwd]
    if socket_dir:
        args += _parents(socket_dir, made) + ["--bind", socket_dir, socket_dir]
    env = {"HOME": "/tmp/home", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/home/.matplotlib",
           "XDG_CACHE_HOME": "/tmp/home/.cache", "HF_HOME": "/tmp/home/.cache/huggingface",
           "HF_HUB_OFFLINE": "1", "COURSE_SANDBOXED": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "JPY_PARENT_PID": "1"}  # the host pid of its parent is not in the sandbox: ipykernel would watch it and exit
    if hf:
        env["HF_HUB_CACHE"] = hf
    for name in os.environ:
        if SECRET_ENV.search(name.upper()):
            args += ["--unsetenv", name]
    for k, v in env.items():
        args += ["--setenv", k, v]
    return args + ["--chdir", cwd]


def _give_to(path: str, uid: int) -> None:
    for dirpath, _, files in os.walk(path):
        os.chown(dirpath, uid, uid)
        for f in files:
            os.chown(os.path.join(dirpath, f), uid, uid)


def _inner(uid: int, cmd: list[str]) -> None:
    """Inside the sandbox, as root (the grader runs as root, e.g. in CI): become ``uid``, then exec the
    kernel. Root is exempt from RLIMIT_NPROC, so without this a fork bomb would not be stopped."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.execv(cmd[0], cmd)


def main(argv: list[str] | None = None) -> None:
    """``python -m course_lib.grading.sandbox [--root ROOT] -- KERNEL COMMAND...``: run the command in bwrap."""
    import resource  # noqa: F401  (fails early on a system without it)

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        sys.exit("usage: python -m course_lib.grading.sandbox [--root ROOT] -- COMMAND ...")
    opts, cmd = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    if "--inner" in opts:
        return _inner(int(opts[opts.index("--inner") + 1]), cmd)
    root = opts[opts.index("--root") + 1] if "--root" in opts else None
    socket_dir = None
    if "-f" in cmd:
        with open(cmd[cmd.index("-f") + 1]) as f:
            info = json.load(f)
        if info.get("transport") == "ipc":
            socket_dir = os.path.dirname(info["ip"])
    runtime = os.environ.get("COURSE_RUNTIME", "embedded")
    args = bwrap_args(os.getcwd(), socket_dir, runtime, root)
    uid = SANDBOX_UID_BASE + os.getpid() if os.geteuid() == 0 else os.getuid()  # this pid becomes bwrap's
    if uid != os.getuid() and socket_dir:
        _give_to(socket_dir, uid)  # the kernel creates its sockets there and reads its connection file
    apply_limits(limits(runtime), uid)
    inner = [sys.executable, "-m", "course_lib.grading.sandbox", "--inner", str(uid), "--"] if uid != os.getuid() else []
    os.execv(args[0], args + ["--", *inner, *cmd])


def probe(runtime: str = "embedded") -> str | None:
    """None if a sandboxed process can run here, else why not (bwrap missing, namespaces refused...)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    with tempfile.TemporaryDirectory(prefix="course-sandbox-probe-") as d:
        cmd = [sys.executable, "-m", "course_lib.grading.sandbox", "--", sys.executable, "-c", "print('ok')"]
        try:
            proc = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return "a test run of bwrap did not finish within 60 s"
    if proc.returncode != 0 or proc.stdout.strip() != "ok":
        return f"bwrap cannot run here (rc {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}"
    return None


def activate(enabled: bool = True, runtime: str = "embedded") -> bool:
    """Called by ``course grade``/``course check`` before any kernel starts: turn the sandbox on (refuse
    where it cannot run), or, with ``enabled=False`` (``--no-sandbox``), say loudly that it is off."""
    if not enabled:
        os.environ[ENV_FLAG] = "off"
        print("!" * 78 + f"\n!! {UNSANDBOXED}.\n!! Learner code can read solutions/ and the gradebook, "
              "write them, and reach the network.\n" + "!" * 78, file=sys.stderr, flush=True)
        return False
    why = probe(runtime)
    if why:
        raise SandboxUnavailableError(
            f"the grading sandbox cannot run: {why}. Without it, learner code runs with your rights "
            "(it could read solutions/ and the gradebook, and reach the network).",
            "apt-get install bubblewrap (and allow unprivileged user namespaces: sysctl "
            "kernel.unprivileged_userns_clone=1), or grade without the sandbox, knowingly, with --no-sandbox.")
    os.environ[ENV_FLAG] = "on"
    return True


def enabled() -> bool:
    return os.environ.get(ENV_FLAG) == "on"


def _manager_base():
    from jupyter_client.manager import AsyncKernelManager
    return AsyncKernelManager


def _make_manager():
    from traitlets import default

    base = _manager_base()

    class SandboxKernelManager(base):
        """A kernel manager whose kernels run in the grading sandbox, talking over unix sockets."""

        def __init__(self, **kw):
            self._sandbox_dir = tempfile.mkdtemp(prefix="course-kernel-")
            super().__init__(**kw)
            self.transport = "ipc"

        @default("transport")
        def _transport_default(self):
            return "ipc"

        @default("connection_file")
        def _connection_file_default(self):
            return os.path.join(self._sandbox_dir, "kernel.json")

        @default("ip")
        def _ip_default(self):
            return os.path.join(self._sandbox_dir, "kernel-ipc")

        def format_kernel_cmd(self, extra_arguments=None):
            from ..project import course_root

            cmd = super().format_kernel_cmd(extra_arguments)
            try:
                root = ["--root", str(course_root())]
            except CourseError:
                root = []
            return [sys.executable, "-m", "course_lib.grading.sandbox", *root, "--", *cmd]

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                shutil.rmtree(self._sandbox_dir, ignore_errors=True)

        cleanup_resources = _async_cleanup_resources

    SandboxKernelManager.__module__ = __name__
    return SandboxKernelManager


def __getattr__(name: str):
    if name == "SandboxKernelManager":
        cls = _make_manager()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def manager_class():
    """The kernel manager for grading kernels: sandboxed unless ``--no-sandbox`` (or never activated)."""
    from . import sandbox
    return sandbox.SandboxKernelManager if enabled() else _manager_base()


if __name__ == "__main__":
    main()

"""Install the course the way the Colab setup cell does, in a Colab-like virtualenv, and run exercise 00.

    python tools/colab_like.py [--venv /tmp/colab-like] [--source GIT_URL_OR_PATH] [--keep]

1. A fresh virtualenv gets what Colab has preinstalled (``COLAB`` below: IPython 7.34, notebook 6.5,
   ipywidgets 7.7, ipykernel 6, a torch and a transformers 4.x) before the course is there.
2. The setup cell of ``exercises/00_warmup`` is executed there as Colab would (a ``google.colab``
   module is present), with its ``pip install`` spec pointed at ``--source`` (default: this checkout
   as ``git+file://``, i.e. what a push of it would give) instead of the published repository.
3. ``pip freeze`` before and after: every Jupyter package must keep its version (exit 1 otherwise).
4. The exercise's solution notebook runs headless in that environment's kernel (nbclient), top to bottom.

Network: the package index only. Takes a few minutes (pip cache warm).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Colab's pinned Jupyter stack and a preinstalled torch/transformers (torch 2.13.0 is the CPU build here).
COLAB = ["ipython==7.34.0", "notebook==6.5.7", "ipywidgets==7.7.1", "ipykernel==6.17.1", "jupyter-client==7.4.9",
         "torch==2.13.0", "transformers==4.57.6", "matplotlib", "tqdm", "numpy", "nbclient", "nbformat"]
JUPYTER = ("ipython", "notebook", "ipywidgets", "ipykernel", "jupyter-client", "jupyter-core", "jupyter-server",
           "widgetsnbextension", "jupyterlab-widgets", "traitlets", "tornado", "pyzmq", "nbformat", "nbclient")

FAKE_COLAB = """
import sys, types
google = types.ModuleType("google"); google.colab = types.ModuleType("google.colab")
google.colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: print("[fake colab] widget manager"))
sys.modules["google"] = google; sys.modules["google.colab"] = google.colab
"""


def freeze(py: Path) -> dict[str, str]:
    out = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out.stdout)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", default="/tmp/colab-like")
    p.add_argument("--source", default=f"git+file://{ROOT}", help="what the setup cell installs instead of the "
                   "published repository (a pip URL: git+file:///path or a path)")
    p.add_argument("--keep", action="store_true", help="reuse an existing venv (skip step 1)")
    a = p.parse_args(argv)
    venv = Path(a.venv)
    py = venv / "bin" / "python"
    t0 = time.time()
    if not (a.keep and py.exists()):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *COLAB], check=True)
        subprocess.run([str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"], check=True,
                       stdout=subprocess.DEVNULL)
    print(f"[1] Colab-like environment ready in {time.time() - t0:.0f} s")
    before = freeze(py)
    if "efficient-adaptation-course" in before:
        subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "efficient-adaptation-course"], check=True)
        before = freeze(py)

    import nbformat

    from course_lib import project

    nb = nbformat.read(ROOT / "exercises" / "00_warmup" / "00_warmup.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("course") == "setup").source
    assert project.pip_spec() in cell, "the setup cell does not install project.pip_spec()"
    cell = cell.replace(project.pip_spec(), f"{project.DISTRIBUTION} @ {a.source}")
    t1 = time.time()
    r = subprocess.run([str(py), "-c", FAKE_COLAB + cell], cwd="/tmp", env={"PATH": "/usr/bin:/bin",
                       "HF_HUB_OFFLINE": "1", "HOME": str(Path.home())})
    if r.returncode != 0:
        print(f"[2] the setup cell FAILED (exit {r.returncode})")
        return 1
    print(f"[2] setup cell ran as on Colab in {time.time() - t1:.0f} s")
    after = freeze(py)
    moved = {k: (before.get(k), after.get(k)) for k in JUPYTER if before.get(k) != after.get(k)}
    others = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v and k not in JUPYTER}
    print(f"[3] Jupyter packages: {', '.join(f'{k} {before.get(k)}' for k in JUPYTER if k in before)}")
    print(f"    installed or changed by the setup cell: {', '.join(f'{k} {a_} -> {b}' for k, (a_, b) in sorted(others.items()))}")
    if moved:
        print(f"[3] FAILED: the setup cell changed Jupyter packages: {moved}")
        return 1
    print("[3] no Jupyter package changed version")
    t2 = time.time()
    sol = ROOT / "solutions" / "00_warmup" / "00_warmup.ipynb"
    run = ("import nbformat, sys\nfrom nbclient import NotebookClient\n"
           f"nb = nbformat.read({str(sol)!r}, as_version=4)\n"
           f"NotebookClient(nb, timeout=600, kernel_name='python3', resources={{'metadata': {{'path': {str(sol.parent)!r}}}}}).execute()\n"
           "errs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']\n"
           "print('cells:', sum(c.cell_type == 'code' for c in nb.cells), 'errors:', len(errs))\n"
           "sys.exit(1 if errs else 0)\n")
    r = subprocess.run([str(py), "-c", run], cwd="/tmp", env={"PATH": f"{venv}/bin:/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                       "COURSE_RUNTIME": "embedded", "HOME": str(Path.home())})
    print(f"[4] exercise 00 (solution) headless in the Colab-like kernel: {'ok' if r.returncode == 0 else 'FAILED'} "
          f"in {time.time() - t2:.0f} s")
    print(f"done in {time.time() - t0:.0f} s")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())

"""course_lib.startup: the course's processes leave out jsonschema's IRI grammar, and nothing they do needs it."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_nbformat_still_validates_without_the_iri_grammar():
    out = _run("from course_lib.startup import skip_iri_grammar\n"
               "skip_iri_grammar()\n"
               "import sys, nbformat\n"
               f"nb = nbformat.read({str(REPO / 'exercises' / '00_warmup' / '00_warmup.ipynb')!r}, as_version=4)\n"
               "nbformat.validate(nb)\n"
               "bad = nbformat.v4.new_notebook(); bad.cells.append({'cell_type': 'nope'})\n"
               "try:\n    nbformat.validate(bad)\nexcept nbformat.ValidationError:\n    print('invalid caught')\n"
               "import jsonschema\n"
               "print('rfc3987_syntax' in sys.modules and sys.modules['rfc3987_syntax'] is None)\n"
               "print('iri' in jsonschema.Draft7Validator.FORMAT_CHECKER.checkers)")
    assert out.split() == ["invalid", "caught", "True", "False"]


def test_a_process_that_already_imported_jsonschema_is_left_alone():
    out = _run("import jsonschema, sys\n"
               "from course_lib.startup import skip_iri_grammar\n"
               "skip_iri_grammar()\n"
               "print(sys.modules.get('rfc3987_syntax', 'absent') is None)")
    assert out.strip() == "False"


def test_the_graders_nbgrader_is_nbgraders_own_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "course_lib.grading.nbgrader_main", "--version"],
                          capture_output=True, text=True, cwd=tmp_path)
    import nbgrader

    assert proc.returncode == 0 and f"nbgrader version {nbgrader.__version__}" in proc.stdout, proc.stdout + proc.stderr

"""Process start-up that the course's own commands share.

:func:`skip_iri_grammar`: ``nbformat`` validates notebooks with ``jsonschema``, whose format checkers import
``rfc3987_syntax`` when it is installed (it is, through ``jsonschema[format-nongpl]``, which the Jupyter stack
asks for). That import compiles some 35 Earley parsers with Lark: measured here 2.0 s of CPU for every process
that imports ``nbformat`` (``python -c "import nbgrader.apps"``: 3.5 s of CPU, 1.4 s without it). Upstream:
python-jsonschema/jsonschema#1428. No notebook schema uses the ``iri``/``iri-reference`` formats it checks, and
``jsonschema`` skips a checker whose library does not import, so the course's processes mark it as not
importable before anything imports ``jsonschema``: ``course`` (:func:`course_lib.cli.main`) and every nbgrader
run it starts (:mod:`course_lib.grading.nbgrader_main`). A grading submission then costs two such imports less.
"""
from __future__ import annotations

import sys


def skip_iri_grammar() -> None:
    """Make ``import rfc3987_syntax`` fail fast in this process (``jsonschema`` then leaves out its two IRI
    format checkers); a no-op when ``jsonschema``'s format checkers were already imported."""
    if "jsonschema._format" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)

"""``python -m course_lib.grading.nbgrader_main ARGS``: nbgrader's own command line (``python -m nbgrader``),
started without the IRI grammar that nothing in nbgrader uses (:func:`course_lib.startup.skip_iri_grammar`):
about 2 s of CPU less for every nbgrader run of ``course grade``, ``check`` and ``release``."""
from course_lib.startup import skip_iri_grammar

skip_iri_grammar()

from nbgrader.apps.nbgraderapp import main  # noqa: E402 (after the start-up above, on purpose)

main()

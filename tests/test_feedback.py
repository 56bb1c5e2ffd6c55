"""The feedback preprocessor (course_lib/grading/feedback.py): what a learner's feedback may show.

Learner code shares the tests' kernel, so it can print the test cell that calls it; those outputs must not
carry the hidden tests into the feedback, while ordinary outputs and the tests' messages stay."""
import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

from course_lib.grading.feedback import WITHHELD, StripHiddenTests

HIDDEN_LINE = "assert _secret_reference(answer) == 42, 'the answer must be 42'"
TEST_SOURCE = ("assert answer is not None, 'define answer'\n### BEGIN HIDDEN TESTS\n" + HIDDEN_LINE
               + "\n### END HIDDEN TESTS\nprint('part 1 ok')")


def _graded(outputs_answer, outputs_test):
    answer = new_code_cell("answer = 41\nprint(get_ipython().user_ns['In'][-1])", outputs=outputs_answer,
                           metadata={"nbgrader": {"solution": True, "grade_id": "answer"}})
    test = new_code_cell(TEST_SOURCE, outputs=outputs_test,
                         metadata={"nbgrader": {"grade": True, "grade_id": "tests", "points": 1, "locked": True}})
    return new_notebook(cells=[answer, test])


def _feedback(nb):
    nb, _ = StripHiddenTests().preprocess(nb, {})
    return nb


def test_outputs_quoting_hidden_tests_are_withheld_and_the_rest_kept():
    quoted = new_output("stream", name="stdout", text=TEST_SOURCE + "\n")
    mine = new_output("stream", name="stdout", text="my answer is 41\n")
    rich = new_output("execute_result", data={"text/plain": "'" + HIDDEN_LINE + "'",
                                              "text/html": "<pre>" + HIDDEN_LINE + "</pre>"}, execution_count=1)
    marker_only = new_output("stream", name="stdout", text="found: ###  begin  hidden\n")
    failed = new_output("error", ename="AssertionError", evalue="the answer must be 42",
                        traceback=["Traceback ...", HIDDEN_LINE, "AssertionError: the answer must be 42"])
    leaking_error = new_output("error", ename="ValueError", evalue="I read: " + HIDDEN_LINE, traceback=["..."])
    nb = _feedback(_graded([quoted, mine, rich, marker_only], [failed, leaking_error]))
    answer, test = nb.cells
    texts = [o.get("text") for o in answer.outputs]
    assert texts == [WITHHELD, "my answer is 41\n", WITHHELD, WITHHELD]
    assert HIDDEN_LINE not in test.source and "BEGIN HIDDEN" not in test.source
    assert "(hidden tests are not shown)" in test.source and "print('part 1 ok')" in test.source
    assert test.outputs[0]["traceback"] == ["AssertionError: the answer must be 42"]   # the message stays
    assert test.outputs[1].get("text") == WITHHELD
    assert HIDDEN_LINE not in nbformat.writes(nb)


def test_feedback_html_of_a_learner_who_prints_the_test_cell_shows_no_hidden_line(tmp_path):
    from nbconvert import HTMLExporter

    nb = _feedback(_graded([new_output("stream", name="stdout", text=TEST_SOURCE)],
                           [new_output("stream", name="stdout", text="part 1 ok\n")]))
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "_secret_reference" not in html and "HIDDEN TESTS" not in html
    assert "part 1 ok" in html and "output not shown in feedback" in html


def test_stderr_of_a_test_cell_is_shown_not_scored_and_errors_still_cost_the_part():
    """nbgrader's determine_grade scores a test cell 0 for any stderr output; after StderrIsOutput only an
    error does, and the learner still sees the stderr text (labelled). Answer cells keep their stderr."""
    from nbgrader.utils import determine_grade

    from course_lib.grading.streams import LABEL, StderrIsOutput

    noisy = new_output("stream", name="stderr", text="counting...\ndone\n")
    passed = _graded([new_output("stream", name="stderr", text="answer cell log\n")],
                     [noisy, new_output("stream", name="stdout", text="part 1 ok\n")])
    assert determine_grade(passed.cells[1], None)[0] == 0   # nbgrader alone: the part is lost
    nb, _ = StderrIsOutput().preprocess(passed, {})
    answer, test = nb.cells
    assert determine_grade(test, None) == (1, 1)
    assert [(o.name, o.text) for o in test.outputs] == [("stdout", f"{LABEL}counting...\n{LABEL}done\n"),
                                                        ("stdout", "part 1 ok\n")]
    assert [(o.name, o.text) for o in answer.outputs] == [("stderr", "answer cell log\n")]
    failed = _graded([], [noisy, new_output("error", ename="AssertionError", evalue="wrong", traceback=[])])
    nb, _ = StderrIsOutput().preprocess(failed, {})
    assert determine_grade(nb.cells[1], None)[0] == 0

"""nbgrader configuration of the course (read by ``nbgrader`` and by the ``course`` command).

Layout: exercises are written once as nbgrader *source* notebooks in ``solutions/``; ``course release``
generates the learner version into ``exercises/`` (committed, never edited by hand). Everything that
holds solutions or hidden tests after grading (submitted copies, autograded notebooks, feedback, the
gradebook) lives under the git-ignored ``build/nbgrader/``.

nbgrader silently ignores a config file that raises. The ``course`` commands therefore load this
file themselves first (an error is reported, not ignored) and check the sentinel ``COURSE_ID`` below.
"""
import os

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

ROOT = os.path.dirname(os.path.abspath(__file__))
COURSE_ID = "efficient-adaptation"  # sentinel: `course release/grade/check` refuse to run unless this was loaded

c.CourseDirectory.root = ROOT
c.CourseDirectory.course_id = COURSE_ID
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "build/nbgrader/submitted"
c.CourseDirectory.autograded_directory = "build/nbgrader/autograded"
c.CourseDirectory.feedback_directory = "build/nbgrader/feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(ROOT, "build", "nbgrader", "gradebook.db")
# sqlite creates the database file but not its folder: without this, the formgrader of a fresh clone hangs
# on "Loading, please wait..." (sqlite3.OperationalError: unable to open database file).
os.makedirs(os.path.join(ROOT, "build", "nbgrader"), exist_ok=True)

# Run every notebook in the kernel "python3", whatever kernelspec the learner's notebook names.
c.Execute.kernel_name = "python3"
# `course grade/check` run that kernel in the grading sandbox (course_lib/grading/sandbox.py: bubblewrap, no
# network, no solutions/ or gradebook, resource limits) unless the instructor passed --no-sandbox.
if os.environ.get("COURSE_SANDBOX") == "on":
    c.Execute.kernel_manager_class = "course_lib.grading.sandbox.SandboxKernelManager"

# Per-cell time limits during autograde, keyed by grade_id (cell metadata is editable by learners,
# grade ids are checked against the gradebook). Cells not listed get DEFAULT_TIMEOUT seconds.
# `course grade/check --runtime R` set COURSE_RUNTIME for the grader (default embedded, on the CPU).
GRADING_RUNTIME = os.environ.get("COURSE_RUNTIME", "embedded")
# embedded: training cells take ~40-60 s on 2 quiet cores; CI runs two notebooks at once.
# gpu: real models and budgets (600 steps x batch 32), plus loading from the cache, on a T4.
DEFAULT_TIMEOUT = {"gpu": 600}.get(GRADING_RUNTIME, 300)
CELL_TIMEOUTS = {
    # "<part>_answer": 120,   # e.g. an answer cell that trains for longer
}


def cell_timeout(cell):
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return CELL_TIMEOUTS.get(grade_id, c.Execute.timeout)


c.Execute.timeout = DEFAULT_TIMEOUT
c.Execute.timeout_func = cell_timeout
# A cell past its limit stops the notebook instead of interrupting the kernel: an answer that
# swallows KeyboardInterrupt would otherwise make every later cell wait out its own limit.
# `course grade` then replaces the offending answer cell by one that raises and grades again,
# so the learner loses that part only.
c.Execute.interrupt_on_timeout = False

# A test cell scores by its asserts. nbgrader alone would score it 0 for any stderr output, so a warning, a log
# line or a progress bar from a correct answer would cost the part; the course shows that stderr to the learner
# as labelled output instead (course_lib/grading/streams.py): nbgrader's own steps, with that one after Execute.
def _autograde_steps():
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute

    steps = list(Autograde.class_traits()["autograde_preprocessors"].default())
    return steps[:steps.index(Execute) + 1] + ["course_lib.grading.streams.StderrIsOutput"] + steps[steps.index(Execute) + 1:]


c.Autograde.autograde_preprocessors = _autograde_steps()

# Feedback shows assertion messages but neither hidden tests nor tracebacks.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "course_lib.grading.feedback.StripHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

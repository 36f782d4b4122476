"""The course's grading machinery, from one test cell to a whole class.

grading          the helper every nbgrader test cell calls (named checks, PASS/FAIL lines, partial credit)
answers          the learner's answers fed to the cells after an exercise, with a visible fallback to the reference
notebook_form    notebooks committed in the form JupyterLab saves them (run by make release)
autograde        real nbgrader in a throwaway course root (the test suite's end-to-end runs)
cli              ``coursegrade``: collect, autograde, feedback, export, selfgrade, isolation
collect          an LMS download into submitted/ with nbgrader's zip_collect and the course's naming rules
classroom        a class autograded in parallel, recorded through nbgrader's autograde converter and gradebook
submission       one submission's job: sanitize, order, plan, sandbox, run
plan             each cell's role, the lesson's order, and the demonstrations a grading run may skip
sandbox          what confines a kernel here (bubblewrap namespaces, a dedicated uid, rlimits) and how
kernel_boot      the first code in a sandbox: limits, privileges dropped, then the IPython kernel and its guard
guard            inside the kernel: the world a test cell sees is the lesson's, whatever the notebook changed
executor         the grading side of a sandboxed kernel: limits, restarts, the guard around each test cell
nbgrader_steps   the course's pieces of nbgrader's pipeline (restore test cells, replay execution, apps)
feedback         feedback pages without a line of the hidden tests
export           grades to CSV, one row per student
formgrader       a Jupyter server extension: formgrader's autograde button runs coursegrade (the class's hub)
exchange         nbgrader's exchange collect, a submission filed under the user who made it (the class's hub)
config, limits   the limits every submission runs under, and where instructors set them
selfgrade        a learner grades their own notebook on the same machinery
"""

"""lessonlib: the working code behind the Efficient LLM Inference course, in layers. A module imports only from
its own layer or the layers listed before it (tests/test_layering.py checks this):

core        timing, units, argument checks: plumbing with no knowledge of models
costs       the analytic cost model (no PyTorch): specs of real LLMs, hardware, roofline, memory, edge budgets
models      the course's PyTorch models: corpus, tiny transformer, MoE, pruning, decoding, training, evaluation
measure     timing those models on this machine: decode steps, overhead calibration, profiles
course      grading machinery: the test-cell helper, the learner's answers fed forward, self-grading, and class
            grading (coursegrade: collect, sandboxed parallel autograde, feedback, export)
display, dashboards, lessons    front-ends the notebooks call: output helpers and figures, ipywidgets
            dashboards, and material that belongs to one lesson
"""

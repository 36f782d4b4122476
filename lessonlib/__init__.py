"""lessonlib: the working code behind the Efficient LLM Inference course. One module per concept:

costs        ModelSpec.from_hf_config: exact parameters, KV-cache bytes, FLOPs and bytes of real LLM configs
hardware     sourced hardware presets and a live probe of this machine
roofline     predicted time of prefill and decode passes (roofline + measured overheads), memory breakdown
calibration  measuring the per-layer overhead and the kernel shortfalls the roofline leaves out
timing       min / median timing of small pieces of work
tinygpt      the course's small decoder-only transformer with a preallocated KV cache
corpus       the synthetic multi-task language it is trained on (no download)
training     a small reproducible training loop
orientation  material of lesson 00
plots, display, dashboards   figures, notebook output helpers and the live ipywidgets dashboards
grading      the helper every nbgrader test cell calls
autograding, selfgrade       real nbgrader runs in a throwaway course (the test suite, `make grade`)
"""

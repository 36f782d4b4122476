"""lessonlib: the working code behind the Efficient LLM Inference course. One module per concept:

costs        ModelSpec.from_hf_config: exact parameters, KV-cache bytes, FLOPs and bytes of real LLM configs
hardware     sourced hardware presets and a live probe of this machine
roofline     predicted time of prefill and decode passes (roofline + measured overheads), memory breakdown
calibration  measuring the per-layer overhead and the kernel shortfalls the roofline leaves out
timing       min / median timing of small pieces of work
tinygpt      the course's small decoder-only transformer with a preallocated KV cache
corpus       the synthetic multi-task language it is trained on (no download)
training     a small reproducible training loop
moe          a top-k mixture-of-experts layer: routing, load-balancing loss, expert usage
pruning      magnitude, N:M and structured pruning, mask-respecting fine-tuning, sparse-format sizes
comparison   dense, MoE and pruned models measured side by side on this machine
edge         will a model fit an edge device: MoE and pruned candidates against a memory budget
orientation  material of lesson 00
plots, display, dashboards   figures, notebook output helpers and the live ipywidgets dashboards
grading      the helper every nbgrader test cell calls
autograding, selfgrade       real nbgrader runs in a throwaway course (the test suite, `make grade`)
"""

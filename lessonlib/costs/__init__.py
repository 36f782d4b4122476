"""The analytic cost model: what a model costs on a piece of hardware, without running it (no PyTorch needed).

spec        ModelSpec.from_hf_config: exact parameters, KV-cache bytes, FLOPs and bytes of real LLM configs
families    the structural traits each model_type leaves implicit in its config.json
presets     real models' shapes shipped as config.json files
precision   bytes per weight and per cached value at each precision
hardware    sourced hardware presets and a live probe of this machine
memory      what must be resident, and whether it fits
overheads   the fixed per-pass and per-layer software cost, and fitting it to measurements
roofline    predicted time of prefill and decode passes and of whole requests
edge        candidate models (dense, MoE, pruned) against an edge device's memory budget
speculative speculative decoding's expected tokens per pass and speedup, and its verify pass on the roofline
"""

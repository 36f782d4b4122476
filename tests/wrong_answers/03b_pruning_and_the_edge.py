"""Submissions for 03b_pruning_and_the_edge graded end to end (see 00_orientation.py for the format).

`fits` (Exercise 3) and the plans of Exercise 4 are checked against the learner's own `moe_params`, so a mistake
in `moe_params` is charged once: its entries expect only the moe_params checks to fail."""

MASKS = '''
def magnitude_mask(weight, sparsity):
    n_remove = {n_remove}
    order = {order}.flatten().argsort()
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    mask[order[:n_remove]] = False
    return mask.view(weight.shape)


def n_m_mask(weight, n, m):
    rows, columns = weight.shape
    groups = {groups}.reshape(rows, columns // m, m)
    keep = groups.topk(n, dim=-1{largest}).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(rows, columns)
'''
RIGHT_MASKS = dict(n_remove="round(sparsity * weight.numel())", order="weight.abs()", groups="weight.abs()",
                   largest="")


def masks_with(**changes):
    return MASKS.format(**{**RIGHT_MASKS, **changes})


MOE_PARAMS = '''
def moe_params(config):
    d, f = config["hidden_size"], config["intermediate_size"]
    layers, vocab = config["num_hidden_layers"], config["vocab_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    n_experts, k = config["num_local_experts"], config["num_experts_per_tok"]
    head_dim = d // heads
    attention = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim
    expert = 3 * d * f
    per_layer = attention + n_experts * expert + {router} + 2 * d
    total = {embeddings} * vocab * d + layers * per_layer + d
    active = {active}
    return total, active


def fits(config, memory_bytes, bytes_per_param):
    return moe_params(config)[{which}] * bytes_per_param {compare} memory_bytes
'''
RIGHT_MOE_PARAMS = dict(router="d * n_experts", embeddings="2", active="total - layers * (n_experts - k) * expert",
                        which="0", compare="<=")


def moe_params_with(**changes):
    return MOE_PARAMS.format(**{**RIGHT_MOE_PARAMS, **changes})


PLAN = '''
def plan(scenario):
    b, budget, bandwidth = scenario["bytes_per_param"], scenario["budget_bytes"], scenario["bandwidth"]
    x_total, x_active = moe_params(X_CONFIG)
    y_params = Y_KEPT * moe_params(Y_BASE_CONFIG)[0]
    c = X_CONFIG
    expert = 3 * c["hidden_size"] * c["intermediate_size"]
    if scenario["experts_in_flash"]:
        all_experts = c["num_hidden_layers"] * c["num_local_experts"] * expert
        active_experts = c["num_hidden_layers"] * c["num_experts_per_tok"] * expert
        x_fits = {flash_fits} * b <= budget
        x_ms = {scale} * ((x_active - active_experts) * b / bandwidth + active_experts * b / {flash_bw})
    else:
        x_fits = x_total * b <= budget
        x_ms = {scale} * {x_read} * b / bandwidth
    y_fits = y_params * b <= budget
    y_ms = {scale} * y_params * b / bandwidth
    fitting = {{name: ms for name, ok, ms in (("X", x_fits, x_ms), ("Y", y_fits, y_ms)) if ok}}
    choice = {choice}
    return x_fits, y_fits, x_ms, y_ms, choice
'''
RIGHT_PLAN = dict(flash_fits="(x_total - all_experts)", scale="1e3", flash_bw='scenario["flash_bandwidth"]',
                  x_read="x_active", choice="min(fitting, key=fitting.get) if fitting else None")


def plan_with(**changes):
    return PLAN.format(**{**RIGHT_PLAN, **changes})


WRONG = {
    # Exercise 1: the multiple-choice trade-off.
    "q1_moe_needs_less_memory": {"replace": {"q1_answer": 'q1_answer = "A"'}, "expect": {"q1_tests": 0}},
    "q1_pruning_is_free": {"replace": {"q1_answer": 'q1_answer = "B"'}, "expect": {"q1_tests": 0}},
    "q1_moe_offloads_for_free": {"replace": {"q1_answer": 'q1_answer = "e"'}, "expect": {"q1_tests": 0}},
    # Exercise 2a: magnitude mask (1 visible, 1 hidden).
    "q2_magnitude_by_signed_value": {
        "replace": {"q2_answer": masks_with(order="weight")}, "expect": {"q2_magnitude_tests": 0}},
    "q2_magnitude_truncates_the_count": {
        "replace": {"q2_answer": masks_with(n_remove="int(sparsity * weight.numel())")},
        "expect": {"q2_magnitude_tests": 1}},
    "q2_magnitude_reaches_the_reference_through_a_helper": {
        "replace": {"q2_answer": masks_with() + '''

def _smallest_out(weight, sparsity):
    from lessonlib.lessons import references
    return references.magnitude_mask(weight, sparsity)


def magnitude_mask(weight, sparsity):
    return _smallest_out(weight, sparsity)
'''}, "expect": {"q2_magnitude_tests": 0}},
    # Exercise 2b: N:M mask (1 visible, 1 hidden).
    "q2_n_m_keeps_the_smallest": {
        "replace": {"q2_answer": masks_with(largest=", largest=False")}, "expect": {"q2_n_m_tests": 0}},
    "q2_n_m_by_signed_value": {
        "replace": {"q2_answer": masks_with(groups="weight")}, "expect": {"q2_n_m_tests": 0}},
    "q2_n_m_groups_down_the_columns": {
        "replace": {"q2_answer": masks_with() + '''

def n_m_mask(weight, n, m):
    rows, columns = weight.shape
    groups = weight.abs().t().reshape(columns, rows // m, m)
    keep = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(columns, rows).t()
'''}, "expect": {"q2_n_m_tests": 0}},
    # Exercise 3: MoE parameters and fit (1 + 1 visible, 1 + 1 hidden); fits carries moe_params forward.
    "q3_active_counts_every_expert": {
        "replace": {"q3_answer": moe_params_with(active="total")}, "expect": {"q3_tests": 2},
        "requires": ["q4_plan_answer"]},
    "q3_forgets_the_router": {
        "replace": {"q3_answer": moe_params_with(router="0")}, "expect": {"q3_tests": 1},
        "requires": ["q4_plan_answer"]},
    "q3_ties_the_embeddings": {
        "replace": {"q3_answer": moe_params_with(embeddings="1")}, "expect": {"q3_tests": 1},
        "requires": ["q4_plan_answer"]},
    "q3_fits_with_active_parameters": {
        "replace": {"q3_answer": moe_params_with(which="1")}, "expect": {"q3_tests": 3},
        "requires": ["q4_plan_answer"]},
    "q3_fits_refuses_weights_that_exactly_fill_memory": {
        "replace": {"q3_answer": moe_params_with(compare="<")}, "expect": {"q3_tests": 3},
        "requires": ["q4_plan_answer"]},
    "q3_counts_through_a_helper_that_runs_the_cost_model": {
        "replace": {"q3_answer": moe_params_with() + '''

def _count(config):
    from lessonlib.costs.spec import ModelSpec
    spec = ModelSpec.from_hf_config({"model_type": "mixtral", **config})
    return spec.n_params(), spec.n_active_params()


def moe_params(config):
    return _count(config)
'''}, "expect": {"q3_tests": 0}, "requires": ["q4_plan_answer"]},
    # Exercise 4a: the plans (1 visible, 3 hidden).
    "q4_moe_reads_every_expert": {
        "replace": {"q4_plan_answer": plan_with(x_read="x_total")}, "expect": {"q4_plan_tests": 3},
        "requires": ["q3_answer"]},
    "q4_always_deploys_the_pruned_model": {
        "replace": {"q4_plan_answer": plan_with(choice='"Y"')}, "expect": {"q4_plan_tests": 3},
        "requires": ["q3_answer"]},
    "q4_deploys_the_faster_design_whether_it_fits_or_not": {
        "replace": {"q4_plan_answer": plan_with(choice='min({"X": x_ms, "Y": y_ms}, key={"X": x_ms, "Y": y_ms}.get)')},
        "expect": {"q4_plan_tests": 2}, "requires": ["q3_answer"]},
    "q4_times_in_seconds": {
        "replace": {"q4_plan_answer": plan_with(scale="1")}, "expect": {"q4_plan_tests": 2},
        "requires": ["q3_answer"]},
    "q4_offloaded_experts_still_counted_in_memory": {
        "replace": {"q4_plan_answer": plan_with(flash_fits="x_total")}, "expect": {"q4_plan_tests": 3},
        "requires": ["q3_answer"]},
    "q4_offloaded_experts_read_at_memory_speed": {
        "replace": {"q4_plan_answer": plan_with(flash_bw="bandwidth")}, "expect": {"q4_plan_tests": 3},
        "requires": ["q3_answer"]},
}

RIGHT = {
    "written_differently": {
        "replace": {
            "q1_answer": 'q1_answer = "(c)"',
            "q2_answer": '''
def magnitude_mask(weight, sparsity):
    keep = weight.numel() - round(sparsity * weight.numel())
    mask = torch.zeros(weight.numel(), dtype=torch.bool)
    if keep:
        mask[weight.flatten().abs().topk(keep).indices] = True
    return mask.reshape(weight.shape)


def n_m_mask(weight, n, m):
    groups = weight.detach().abs().unfold(1, m, m)                 # (rows, columns / m, m)
    ranks = groups.argsort(dim=-1, descending=True).argsort(dim=-1)
    return (ranks < n).reshape(weight.shape).numpy()
''',
            "q3_answer": '''
import numpy as np

def moe_params(config):
    c = config
    d, L, V = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    hd = d // c["num_attention_heads"]
    attn = d * hd * (2 * c["num_attention_heads"] + 2 * c["num_key_value_heads"])
    one_expert = d * c["intermediate_size"] * 3
    shared = V * d * 2 + d + L * (attn + 2 * d + d * c["num_local_experts"])
    return shared + L * c["num_local_experts"] * one_expert, shared + L * c["num_experts_per_tok"] * one_expert


def fits(config, memory_bytes, bytes_per_param):
    total, _ = moe_params(config)
    return np.float64(total) * bytes_per_param <= memory_bytes          # a NumPy boolean
''',
            # NumPy arithmetic, a logging handler configured in the answer cell, a display helper of lessonlib,
            # a warning and a print while the test cell runs: none of it may cost a point.
            "q4_plan_answer": '''
import logging
import warnings

from lessonlib.core.units import human_bytes

logging.basicConfig(level=logging.INFO)


def plan(scenario):
    s = scenario
    total, active = (np.float64(v) for v in moe_params(X_CONFIG))
    kept = Y_KEPT * np.float64(moe_params(Y_BASE_CONFIG)[0])
    per_expert = 3 * X_CONFIG["hidden_size"] * X_CONFIG["intermediate_size"] * X_CONFIG["num_hidden_layers"]
    resident, from_flash = total, 0.0
    if s["experts_in_flash"]:
        resident = total - X_CONFIG["num_local_experts"] * per_expert
        from_flash = X_CONFIG["num_experts_per_tok"] * per_expert
    x_ms = ((active - from_flash) / s["bandwidth"] + from_flash / s["flash_bandwidth"]) * s["bytes_per_param"] * 1000
    y_ms = kept * s["bytes_per_param"] / s["bandwidth"] * 1000
    x_fits = resident * s["bytes_per_param"] <= s["budget_bytes"]
    y_fits = kept * s["bytes_per_param"] <= s["budget_bytes"]
    logging.info("X needs %s", human_bytes(resident * s["bytes_per_param"]))
    warnings.warn("rough numbers: weights only")
    print(f"X {x_ms:.1f} ms, Y {y_ms:.1f} ms")
    if x_fits and (not y_fits or x_ms < y_ms):
        return x_fits, y_fits, float(x_ms), float(y_ms), "Modification X"
    return x_fits, y_fits, float(x_ms), float(y_ms), ("y" if y_fits else None)
''',
        },
        "expect": {},
    },
}

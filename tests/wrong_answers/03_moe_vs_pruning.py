"""Submissions for 03_moe_vs_pruning graded end to end (see 00_orientation.py for the format)."""

ROUTING = '''
def top_k_routing(router_logits, k):
    probs = torch.softmax(router_logits, dim=-1)
    top_probs, experts = torch.topk(probs, k, dim=-1{largest})
    return {weights}, experts


def load_balancing_loss(router_probs, experts, n_experts):
    assignments = torch.bincount(experts.flatten(), minlength=n_experts).float()
    f = assignments / {assignments_total}
    P = router_probs.mean(dim=0)
    return {scale}torch.sum(f * P)
'''
RIGHT_ROUTING = dict(largest="", weights="top_probs / top_probs.sum(dim=-1, keepdim=True)",
                     assignments_total="experts.numel()", scale="n_experts * ")


def routing_with(**changes):
    return ROUTING.format(**{**RIGHT_ROUTING, **changes})


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
    return moe_params(config)[{which}] * bytes_per_param <= memory_bytes
'''
RIGHT_MOE_PARAMS = dict(router="d * n_experts", embeddings="2", active="total - layers * (n_experts - k) * expert",
                        which="0")


def moe_params_with(**changes):
    return MOE_PARAMS.format(**{**RIGHT_MOE_PARAMS, **changes})


NUMBERS = '''
x_total, x_active = moe_params(X_CONFIG)
y_params = Y_KEPT * moe_params(Y_BASE_CONFIG)[0]
q4_x_fits = x_total * BYTES_PER_PARAM <= BUDGET_BYTES
q4_y_fits = y_params * BYTES_PER_PARAM <= BUDGET_BYTES
q4_x_ms = {scale} * {x_read} * BYTES_PER_PARAM / BANDWIDTH
q4_y_ms = {scale} * y_params * BYTES_PER_PARAM / BANDWIDTH
q4_choice = "{choice}"
'''
RIGHT_NUMBERS = dict(scale="1e3", x_read="x_active", choice="Y")


def numbers_with(**changes):
    return NUMBERS.format(**{**RIGHT_NUMBERS, **changes})


WRONG = {
    # Exercise 1a: top-k routing (1 + 1 visible, 0.5 + 0.5 hidden).
    "q1_gates_not_renormalized": {
        "replace": {"q1_answer": routing_with(weights="top_probs")}, "expect": {"q1_routing_tests": 1}},
    "q1_picks_the_least_probable_experts": {
        "replace": {"q1_answer": routing_with(largest=", largest=False")}, "expect": {"q1_routing_tests": 1}},
    "q1_routing_calls_the_reference": {
        "replace": {"q1_answer": '''
from lessonlib.models.moe import load_balancing_loss, route

def top_k_routing(router_logits, k):
    routing = route(router_logits, k)
    return routing.weights, routing.experts
'''}, "expect": {"q1_routing_tests": 0, "q1_balance_tests": 0}},
    # Exercise 1b: the load-balancing loss (1 visible, 1 hidden).
    "q1_balance_forgets_the_factor_n": {
        "replace": {"q1_answer": routing_with(scale="")}, "expect": {"q1_balance_tests": 0}},
    "q1_balance_divides_by_tokens_not_assignments": {
        "replace": {"q1_answer": routing_with(assignments_total="experts.shape[0]")},
        "expect": {"q1_balance_tests": 1}},
    # Exercise 2a: magnitude mask (1 visible, 1 hidden).
    "q2_magnitude_by_signed_value": {
        "replace": {"q2_answer": masks_with(order="weight")}, "expect": {"q2_magnitude_tests": 0}},
    "q2_magnitude_truncates_the_count": {
        "replace": {"q2_answer": masks_with(n_remove="int(sparsity * weight.numel())")},
        "expect": {"q2_magnitude_tests": 1}},
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
    # Exercise 3: MoE parameters and fit (1 + 1 visible, 1 + 1 hidden). 4b carries the mistakes forward.
    "q3_active_counts_every_expert": {
        "replace": {"q3_answer": moe_params_with(active="total")}, "expect": {"q3_tests": 2}},
    "q3_forgets_the_router": {
        "replace": {"q3_answer": moe_params_with(router="0")}, "expect": {"q3_tests": 0}},
    "q3_ties_the_embeddings": {
        "replace": {"q3_answer": moe_params_with(embeddings="1")}, "expect": {"q3_tests": 0}},
    "q3_fits_with_active_parameters": {
        "replace": {"q3_answer": moe_params_with(which="1")}, "expect": {"q3_tests": 3}},
    # Exercise 4a: the multiple-choice trade-off.
    "q4_moe_needs_less_memory": {"replace": {"q4_choice_answer": 'q4_answer = "A"'}, "expect": {"q4_choice_tests": 0}},
    "q4_pruning_is_free": {"replace": {"q4_choice_answer": 'q4_answer = "B"'}, "expect": {"q4_choice_tests": 0}},
    "q4_moe_offloads_for_free": {"replace": {"q4_choice_answer": 'q4_answer = "e"'},
                                 "expect": {"q4_choice_tests": 0}},
    # Exercise 4b: the computed trade-off (1 + 1 + 1 hidden).
    "q4_numbers_moe_reads_every_expert": {
        "replace": {"q4_numbers_answer": numbers_with(x_read="x_total")}, "expect": {"q4_numbers_tests": 2},
        "requires": ["q3_answer"]},
    "q4_numbers_deploys_the_faster_moe_that_does_not_fit": {
        "replace": {"q4_numbers_answer": numbers_with(choice="X")}, "expect": {"q4_numbers_tests": 2},
        "requires": ["q3_answer"]},
    "q4_numbers_in_seconds": {
        "replace": {"q4_numbers_answer": numbers_with(scale="1")}, "expect": {"q4_numbers_tests": 2},
        "requires": ["q3_answer"]},
}

RIGHT = {
    "written_differently": {
        "replace": {
            "q1_answer": '''
import torch.nn.functional as F

def top_k_routing(router_logits, k):
    top_logits, experts = router_logits.topk(k, dim=1)
    # a softmax over the chosen logits is the same as renormalizing the chosen probabilities
    order = torch.argsort(experts, dim=1, descending=True)
    return F.softmax(top_logits, dim=1).gather(1, order).numpy(), experts.gather(1, order).tolist()


def load_balancing_loss(router_probs, experts, n_experts):
    one_hot = F.one_hot(experts, n_experts).float()        # (tokens, k, experts)
    share = one_hot.sum(dim=(0, 1)) / one_hot.sum()
    return float(n_experts * (share * router_probs.mean(0)).sum())
''',
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
    return (ranks < n).reshape(weight.shape)
''',
            "q3_answer": '''
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
    return not total * bytes_per_param > memory_bytes
''',
            "q4_choice_answer": 'q4_answer = "(c)"',
            "q4_numbers_answer": '''
x_total, x_active = moe_params(X_CONFIG)
y_kept = Y_KEPT * moe_params(Y_BASE_CONFIG)[0]
q4_x_fits = bool(np.float64(x_total) <= BUDGET_BYTES)
q4_y_fits = np.float64(y_kept) <= BUDGET_BYTES
q4_x_ms, q4_y_ms = (n / BANDWIDTH * 1000 for n in (x_active, y_kept))
q4_choice = "Modification Y"
''',
        },
        "expect": {},
    },
}

"""Submissions for 03a_mixture_of_experts graded end to end (see 00_orientation.py for the format).

Exercise 2 (the dispatch) accepts the output of the learner's own routing, so a mistake in Exercise 1 is charged
once: the Exercise 1 entries "require" the dispatch cell, which keeps the solution's dispatch in their notebook,
and the dispatch test cell must then still award full marks."""

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


DISPATCH = '''
def moe_forward(x, router_weight, experts, k):
    gates, chosen = top_k_routing(x @ router_weight, k)
    gates, chosen = torch.as_tensor(gates, dtype=x.dtype), torch.as_tensor(chosen).long()
    y = torch.zeros_like(x)
{body}
    return y
'''
BY_EXPERT = '''    for e, expert in enumerate(experts):
        tokens, slot = torch.nonzero(chosen == e, as_tuple=True)
        if len(tokens) == 0:
            continue
        y.index_add_(0, tokens, expert(x[tokens]){gate})'''


def dispatch_with(body):
    return DISPATCH.format(body=body)


WRONG = {
    # Exercise 1a: top-k routing (1 + 1 visible, 0.5 + 0.5 hidden).
    "q1_gates_not_renormalized": {
        "replace": {"q1_answer": routing_with(weights="top_probs")}, "expect": {"q1_routing_tests": 1},
        "requires": ["q2_answer"]},
    "q1_picks_the_least_probable_experts": {
        "replace": {"q1_answer": routing_with(largest=", largest=False")}, "expect": {"q1_routing_tests": 1},
        "requires": ["q2_answer"]},
    "q1_routing_calls_the_reference": {
        "replace": {"q1_answer": '''
from lessonlib.models.moe import load_balancing_loss, route

def top_k_routing(router_logits, k):
    routing = route(router_logits, k)
    return routing.weights, routing.experts
'''}, "expect": {"q1_routing_tests": 0, "q1_balance_tests": 0}, "requires": ["q2_answer"]},
    "q1_routing_reaches_the_reference_through_a_helper": {
        "replace": {"q1_answer": routing_with() + '''

def _choose(logits, k):
    from lessonlib.lessons import references
    return references.top_k_routing(logits, k)


def top_k_routing(router_logits, k):
    return _choose(router_logits, k)
'''}, "expect": {"q1_routing_tests": 0}, "requires": ["q2_answer"]},
    # Exercise 1b: the load-balancing loss (1 visible, 1 hidden).
    "q1_balance_forgets_the_factor_n": {
        "replace": {"q1_answer": routing_with(scale="")}, "expect": {"q1_balance_tests": 0},
        "requires": ["q2_answer"]},
    "q1_balance_uses_the_mixtral_normalization": {   # k at balance: right only for top-1
        "replace": {"q1_answer": routing_with(assignments_total="experts.shape[0]")},
        "expect": {"q1_balance_tests": 1}, "requires": ["q2_answer"]},
    # Exercise 2: the dispatch (1 visible, 3 hidden).
    "q2_token_by_token": {
        "replace": {"q2_answer": dispatch_with('''    for t in range(x.shape[0]):
        for j in range(k):
            y[t] += gates[t, j] * experts[int(chosen[t, j])](x[t:t + 1])[0]''')},
        "expect": {"q2_dispatch_tests": 3}, "requires": ["q1_answer"]},
    "q2_every_expert_on_every_token": {
        "replace": {"q2_answer": dispatch_with('''    dense_gates = torch.zeros(x.shape[0], len(experts))
    dense_gates = dense_gates.scatter_(1, chosen, gates)
    for e, expert in enumerate(experts):
        y += dense_gates[:, e:e + 1] * expert(x)''')},
        "expect": {"q2_dispatch_tests": 2}, "requires": ["q1_answer"]},
    "q2_forgets_the_gates": {
        "replace": {"q2_answer": dispatch_with(BY_EXPERT.format(gate=""))},
        "expect": {"q2_dispatch_tests": 2}, "requires": ["q1_answer"]},
    "q2_gates_from_the_softmax_over_all_experts": {
        "replace": {"q2_answer": '''
def moe_forward(x, router_weight, experts, k):
    probs = torch.softmax(x @ router_weight, dim=-1)
    gates, chosen = probs.topk(k, dim=-1)
    y = torch.zeros_like(x)
    for e, expert in enumerate(experts):
        tokens, slot = torch.nonzero(chosen == e, as_tuple=True)
        if len(tokens):
            y.index_add_(0, tokens, expert(x[tokens]) * gates[tokens, slot, None])
    return y
'''}, "expect": {"q2_dispatch_tests": 2}, "requires": ["q1_answer"]},
    "q2_dispatch_reaches_the_reference_through_a_helper": {
        "replace": {"q2_answer": '''
def _layer(x, w, experts, k):
    from lessonlib.lessons.references import moe_forward as layer
    return layer(x, w, experts, k)


def moe_forward(x, router_weight, experts, k):
    return _layer(x, router_weight, experts, k)
'''}, "expect": {"q2_dispatch_tests": 0}, "requires": ["q1_answer"]},
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
    one_hot = F.one_hot(torch.as_tensor(experts), n_experts).float()        # (tokens, k, experts)
    share = one_hot.sum(dim=(0, 1)) / one_hot.sum()
    return float(n_experts * (share * router_probs.mean(0)).sum())
''',
            # Sorted grouping, a print, a logging handler configured here (it holds the kernel's stderr), a
            # warning and a write to file descriptor 2 while the test cells run: none of it may cost a point.
            "q2_answer": '''
import logging
import os
import warnings

from lessonlib.core.units import human_bytes

logging.basicConfig(level=logging.INFO)
log = logging.getLogger("dispatch")


def moe_forward(x, router_weight, experts, k):
    gates, chosen = top_k_routing(x @ router_weight, k)
    gates = torch.as_tensor(gates, dtype=torch.float32).flatten()
    chosen = torch.as_tensor(chosen).long().flatten()
    token_of = torch.arange(x.shape[0]).repeat_interleave(k)
    order = torch.argsort(chosen, stable=True)
    counts = torch.bincount(chosen, minlength=len(experts)).tolist()
    y = x.new_zeros(x.shape)
    start = 0
    for e, n in enumerate(counts):
        if n:
            rows = order[start:start + n]
            y.index_add_(0, token_of[rows], experts[e](x[token_of[rows]]) * gates[rows, None])
            start += n
    log.info("dispatched %d assignments (%s of activations)", len(chosen), human_bytes(x.numel() * 4))
    warnings.warn("an experimental dispatch")
    os.write(2, b"moe_forward ran\\n")
    print("experts used:", sum(1 for n in counts if n))
    return y
''',
        },
        "expect": {},
    },
}

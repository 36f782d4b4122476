"""Submissions for 04_cascading graded end to end (see 00_orientation.py for the format)."""

CASCADE = '''
def cascade_decision(confidences, threshold):
    confidences = np.asarray(confidences, dtype=float)
    confident = {confident}
    return {decision}


def cascade_cost(costs, answering):
    costs = np.asarray(costs, dtype=float)
    paid = {paid}
    return float(paid[np.asarray(answering), np.arange(costs.shape[1])].mean())
'''
RIGHT_CASCADE = dict(confident="confidences[:-1] >= threshold",
                     decision="np.where(confident.any(axis=0), confident.argmax(axis=0), len(confidences) - 1)",
                     paid="np.cumsum(costs, axis=0)")


def cascade_with(**changes):
    return CASCADE.format(**{**RIGHT_CASCADE, **changes})


THRESHOLD = '''
def cheapest_threshold(correct, confidence, costs, thresholds, target):
    correct = np.asarray(correct, dtype=bool)
    queries = np.arange(correct.shape[1])
    best = None
    for threshold in thresholds:
        answering = cascade_decision(confidence, threshold)
        accuracy = correct[answering, queries].mean()
        if {reaches}:
            key = {key}
            if best is None or key < best:
                best = key
    return None if best is None else best[2]


q2_threshold = cheapest_threshold({split}.correct, {split}.confidence, {split}.flops, THRESHOLDS, TARGET)
test_answering = cascade_decision(TEST.confidence, q2_threshold)
q2_test_accuracy = TEST.correct[test_answering, np.arange(TEST.n_queries)].mean()
q2_test_cost = cascade_cost(TEST.flops, test_answering)
q2_saving = {saving}
'''
RIGHT_THRESHOLD = dict(reaches="accuracy >= target", key="(cascade_cost(costs, answering), -accuracy, threshold)",
                       split="VAL", saving="1 - q2_test_cost / TEST.flops[-1].mean()")


def threshold_with(**changes):
    return THRESHOLD.format(**{**RIGHT_THRESHOLD, **changes})


SPECULATIVE = '''
def speculative_greedy(target, draft, prompt, max_new_tokens, k):
    tokens = list(prompt)
    while len(tokens) - len(prompt) < max_new_tokens:
        drafted = []
        for _ in range(k):
            drafted.append(int(draft(tokens + drafted)[-1].argmax()))
        choices = {choices}
        n = 0
        while n < k and {agree}:
            n += 1
        {keep}
    return tokens[len(prompt):len(prompt) + max_new_tokens]
'''
RIGHT_SPECULATIVE = dict(choices="target(tokens + drafted)[len(tokens) - 1:].argmax(-1).tolist()",
                         agree="drafted[n] == choices[n]", keep="tokens += drafted[:n] + [choices[n]]")


def speculative_with(**changes):
    return SPECULATIVE.format(**{**RIGHT_SPECULATIVE, **changes})


CHATBOT = '''
def conversations_per_gpu(spec, precision):
    from lessonlib.costs.memory import largest_batch
    from lessonlib.costs.roofline import decode_step

    batch = {start}
    while batch > 0 and {too_slow}:
        batch -= 1
    return batch


def gpus_for(conversations, spec, precision):
    per_gpu = conversations_per_gpu(spec, precision)
    return {rounding} if per_gpu else None


q4_gpus = {{name: gpus_for(USERS, spec, precision) for name, (spec, precision) in DESIGNS.items()}}
q4_cascade_gpus = {cascade}
'''
RIGHT_CHATBOT = dict(start="largest_batch(spec, A100.memory_bytes, precision, CONTEXT)",
                     too_slow="decode_step(spec, A100, precision, CONTEXT, batch).seconds > LATENCY_S",
                     rounding="math.ceil(conversations / per_gpu)",
                     cascade='gpus_for(USERS, *CASCADE_SMALL) '
                             '+ gpus_for(math.ceil(DEFERRAL * USERS), LLAMA2_GQA, "bf16")')


def chatbot_with(**changes):
    return CHATBOT.format(**{**RIGHT_CHATBOT, **changes})


EDGE = '''
def edge_plan(target, draft, k):
    on_phone = [assess(model, PHONE, "int8", EDGE_CONTEXT) for model in (target, draft)]
    fits = {fits}
    round_seconds = {round_seconds}
    return fits, 1e3 * round_seconds / {per_pass}


q4_edge_fits, q4_edge_ms = edge_plan(EDGE_TARGET, EDGE_DRAFT, EDGE_K)
'''
RIGHT_EDGE = dict(fits="on_phone[0].memory_needed + on_phone[1].memory_needed <= EDGE_BUDGET",
                  round_seconds="k * on_phone[1].seconds_per_step + on_phone[0].seconds_per_step",
                  per_pass="expected_tokens_per_pass(ALPHA, k)")


def edge_with(**changes):
    return EDGE.format(**{**RIGHT_EDGE, **changes})


WRONG = {
    # Exercise 1: the decision and its cost (1 + 1 visible, 1 + 1 hidden, a gate).
    "q1_strictly_above_the_threshold": {   # a confidence equal to the threshold is passed on
        "replace": {"q1_answer": cascade_with(confident="confidences[:-1] > threshold")},
        "expect": {"q1_tests": 3}},
    "q1_nobody_confident_goes_to_the_first_model": {   # argmax of an all-False column is 0, not the last model
        "replace": {"q1_answer": cascade_with(decision="(confidences >= threshold).argmax(axis=0)")},
        "expect": {"q1_tests": 3}},
    "q1_the_most_confident_model_answers": {
        "replace": {"q1_answer": cascade_with(decision="confidences.argmax(axis=0)")},
        "expect": {"q1_tests": 2}},
    "q1_pays_only_the_answering_model": {
        "replace": {"q1_answer": cascade_with(paid="costs")}, "expect": {"q1_tests": 2}},
    "q1_every_query_pays_every_model": {
        "replace": {"q1_answer": cascade_with(paid="np.broadcast_to(costs.sum(axis=0), costs.shape)")},
        "expect": {"q1_tests": 2}},
    "q1_calls_lessonlib_through_a_helper": {
        "replace": {"q1_answer": '''
from lessonlib.models import cascade as _library


def _route(confidences, threshold):
    return _library.cascade_decision(confidences, threshold)


def cascade_decision(confidences, threshold):
    return _route(confidences, threshold)


def cascade_cost(costs, answering):
    costs = np.asarray(costs, dtype=float)
    return float(np.cumsum(costs, axis=0)[np.asarray(answering), np.arange(costs.shape[1])].mean())
'''}, "expect": {"q1_tests": 0}},
    # Exercise 2: the threshold (1 visible, 1 + 1 + 1 hidden, a gate).
    "q2_the_most_accurate_threshold": {   # ignores the cost once the target is met
        "replace": {"q2_answer": threshold_with(key="(-accuracy, cascade_cost(costs, answering), threshold)")},
        "expect": {"q2_tests": 2}, "requires": ("q1_answer",)},
    "q2_the_cheapest_regardless_of_the_target": {
        "replace": {"q2_answer": threshold_with(reaches="True")},
        "expect": {"q2_tests": 1}, "requires": ("q1_answer",)},
    "q2_tuned_on_the_test_half": {
        "replace": {"q2_answer": threshold_with(split="TEST")},
        "expect": {"q2_tests": 3}, "requires": ("q1_answer",)},
    "q2_saving_as_the_share_paid": {
        "replace": {"q2_answer": threshold_with(saving="q2_test_cost / TEST.flops[-1].mean()")},
        "expect": {"q2_tests": 3}, "requires": ("q1_answer",)},
    # Exercise 3: speculative decoding (1 + 1 visible, 1 + 1 hidden, a gate).
    "q3_keeps_every_draft": {   # never checks the drafts: fast and wrong
        "replace": {"q3_answer": speculative_with(agree="True")}, "expect": {"q3_tests": 2}},
    "q3_keeps_the_draft_s_token_at_the_disagreement": {
        "replace": {"q3_answer": speculative_with(keep="tokens += drafted[:n] + ([choices[n]] if n == k else "
                                                       "[drafted[n]])")},
        "expect": {"q3_tests": 2}},
    "q3_reads_the_target_one_position_late": {
        "replace": {"q3_answer": speculative_with(
            choices="(target(tokens + drafted)[len(tokens):].argmax(-1).tolist() + [0])")},
        "expect": {"q3_tests": 0}},
    "q3_no_bonus_token": {   # exact, but a round where every draft agrees yields k tokens, not k + 1
        "replace": {"q3_answer": speculative_with(keep="tokens += drafted[:n] + ([] if n == k else [choices[n]])")},
        "expect": {"q3_tests": 2}},
    "q3_one_target_call_per_drafted_token": {   # exact, but as many target passes as plain decoding
        "replace": {"q3_answer": '''
def speculative_greedy(target, draft, prompt, max_new_tokens, k):
    tokens = list(prompt)
    while len(tokens) - len(prompt) < max_new_tokens:
        drafted = []
        for _ in range(k):
            drafted.append(int(draft(tokens + drafted)[-1].argmax()))
        for d in drafted:
            choice = int(target(tokens)[-1].argmax())
            tokens.append(choice)
            if choice != d:
                break
    return tokens[len(prompt):len(prompt) + max_new_tokens]
'''}, "expect": {"q3_tests": 2}},
    "q3_calls_lessonlib": {
        "replace": {"q3_answer": '''
import torch

from lessonlib.models.decoding import generate


def speculative_greedy(target, draft, prompt, max_new_tokens, k):
    model = MODELS["large"] if target.vocab_size and target.max_len else None
    return generate(model, torch.tensor([list(prompt)]), max_new_tokens)[0, len(prompt):].tolist()
'''}, "expect": {"q3_tests": 0}},
    # Exercise 4a: the chatbot (3 hidden); a mistake in conversations_per_gpu is charged once.
    "q4_memory_only": {   # forgets the latency target
        "replace": {"q4_numbers_answer": chatbot_with(too_slow="False")}, "expect": {"q4_numbers_tests": 2}},
    "q4_rounds_the_gpus_down": {
        "replace": {"q4_numbers_answer": chatbot_with(rounding="max(1, conversations // per_gpu)")},
        "expect": {"q4_numbers_tests": 1}},
    "q4_cascade_sends_everyone_to_the_large_model": {
        "replace": {"q4_numbers_answer": chatbot_with(
            cascade='gpus_for(USERS, *CASCADE_SMALL) + gpus_for(USERS, LLAMA2_GQA, "bf16")')},
        "expect": {"q4_numbers_tests": 2}, "requires": ("q1_answer", "q2_answer")},   # DEFERRAL: exercises 1-2
    # Exercise 4b: the phone (1 visible, 1 hidden).
    "q4_edge_forgets_the_draft_s_memory": {
        "replace": {"q4_edge_answer": edge_with(fits="on_phone[0].memory_needed <= EDGE_BUDGET")},
        "expect": {"q4_edge_tests": 1}},
    "q4_edge_one_token_per_round": {   # forgets that a round yields several tokens
        "replace": {"q4_edge_answer": edge_with(per_pass="1")}, "expect": {"q4_edge_tests": 1}},
    "q4_edge_plain_decoding_time": {
        "replace": {"q4_edge_answer": edge_with(round_seconds="on_phone[0].seconds_per_step", per_pass="1")},
        "expect": {"q4_edge_tests": 1}},
    # Exercise 4c: the choice (2 hidden).
    "q4_the_moe_everywhere": {"replace": {"q4_choice_answer": 'q4_answer = "A"'}, "expect": {"q4_choice_tests": 0}},
    "q4_speculative_for_capacity": {"replace": {"q4_choice_answer": 'q4_answer = "d"'},
                                    "expect": {"q4_choice_tests": 0}},
}

RIGHT = {
    "q1_with_loops_and_a_warning": {
        "replace": {"q1_answer": '''
import warnings


def cascade_decision(confidences, threshold):
    warnings.warn("deciding query by query")          # a warning must not cost points
    n_models, n_queries = len(confidences), len(confidences[0])
    chosen = []
    for n in range(n_queries):
        model = n_models - 1
        for m in range(n_models - 1):
            if confidences[m][n] >= threshold:
                model = m
                break
        chosen.append(model)
    return np.array(chosen)


def cascade_cost(costs, answering):
    total = 0.0
    for n, last in enumerate(answering):
        total += sum(costs[m][n] for m in range(int(last) + 1))
    return total / len(answering)
'''}},
    "q2_vectorized_with_prints": {
        "replace": {"q2_answer": '''
def cheapest_threshold(correct, confidence, costs, thresholds, target):
    rows = []
    for t in sorted(thresholds):
        who = cascade_decision(confidence, t)
        rows.append((cascade_cost(costs, who), -float(np.mean(np.asarray(correct)[who, np.arange(len(who))])), t))
    ok = [r for r in rows if -r[1] >= target]
    print(f"{len(ok)} of {len(rows)} thresholds reach the target")
    return min(ok)[2] if ok else None


q2_threshold = cheapest_threshold(VAL.correct, VAL.confidence, VAL.flops, THRESHOLDS, TARGET)
who = cascade_decision(TEST.confidence, q2_threshold)
q2_test_accuracy = float(np.mean([TEST.correct[m, n] for n, m in enumerate(who)]))
q2_test_cost = cascade_cost(TEST.flops, who)
large_cost = float(np.mean(TEST.flops[2]))
q2_saving = (large_cost - q2_test_cost) / large_cost
'''}, "requires": ("q1_answer",)},
    "q3_with_a_for_loop_and_logging": {
        "replace": {"q3_answer": '''
import logging

logging.basicConfig(level=logging.INFO)            # its handler keeps the kernel's stderr


def speculative_greedy(target, draft, prompt, max_new_tokens, k):
    out = []
    while len(out) < max_new_tokens:
        context = list(prompt) + out
        proposal = []
        for _ in range(k):
            proposal.append(draft(context + proposal).argmax(dim=-1)[-1].item())
        verdict = target(context + proposal).argmax(dim=-1)[len(context) - 1:]
        logging.info("round with %d drafts", k)
        for i in range(k + 1):
            token = int(verdict[i])
            out.append(token)
            if i == k or proposal[i] != token:
                break
    return out[:max_new_tokens]
'''}},
    "q4_numbers_with_a_binary_search": {
        "replace": {"q4_numbers_answer": '''
from lessonlib.costs import memory, roofline


def conversations_per_gpu(spec, precision):
    low, high = 0, memory.largest_batch(spec, A100.memory_bytes, precision, CONTEXT)
    while low < high:                                  # the largest batch whose step is fast enough
        mid = (low + high + 1) // 2
        if roofline.decode_step(spec, A100, precision, CONTEXT, mid).seconds <= LATENCY_S:
            low = mid
        else:
            high = mid - 1
    return low


q4_gpus = {}
for name, (spec, precision) in DESIGNS.items():
    n = conversations_per_gpu(spec, precision)
    q4_gpus[name] = -(-USERS // n) if n > 0 else None
small_gpus = -(-USERS // conversations_per_gpu(*CASCADE_SMALL))
large_gpus = -(-math.ceil(DEFERRAL * USERS) // conversations_per_gpu(LLAMA2_GQA, "bf16"))
q4_cascade_gpus = small_gpus + large_gpus
'''}},
    "q4_edge_written_out": {
        "replace": {"q4_edge_answer": '''
def edge_plan(target, draft, k):
    t = assess(target, PHONE, "int8", EDGE_CONTEXT)
    d = assess(draft, PHONE, "int8", EDGE_CONTEXT)
    tokens_per_round = sum(ALPHA ** i for i in range(k + 1))
    milliseconds = (k * d.seconds_per_step + t.seconds_per_step) / tokens_per_round * 1000
    return bool(t.memory_needed + d.memory_needed <= 4.8e9), milliseconds


q4_edge_fits, q4_edge_ms = edge_plan(EDGE_TARGET, EDGE_DRAFT, EDGE_K)
'''}},
    "q4_choice_written_in_words": {"replace": {"q4_choice_answer": 'q4_answer = " (b) "'}},
}

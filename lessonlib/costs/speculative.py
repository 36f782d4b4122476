"""Speculative decoding in the cost model: how many tokens a round yields, and what a round costs on given hardware.

Each round the draft model runs ``k`` decode steps, then the target runs one *verify* pass over the last
committed token and the ``k`` drafts (k + 1 positions per sequence). When each drafted token is accepted with
probability alpha, independently, a round yields on average (Leviathan et al., 2023, eq. 1)

    E[tokens per round] = (1 - alpha^(k+1)) / (1 - alpha)          (k + 1 when alpha = 1)

and, when a draft step costs c target steps and a verify pass costs one target step, the expected speedup over
plain decoding of the target is E / (c k + 1) (their Theorem 3.8). The verify pass costs one target step only
while it is memory-bound: it reads the weights and the KV cache once, like a decode step, but does k + 1 times
the arithmetic. :func:`speculative_decode` prices both passes on the roofline, so that the saving shrinks where
the hardware has no compute to spare (a large batch, or a slow processor).

    cost = speculative_decode(target, draft, hardware_preset("phone-snapdragon-8-gen-3"), "int8",
                              context_len=2048, draft_len=4, acceptance_rate=0.8)
    cost.speedup, cost.seconds_per_token, cost.verify.bound
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

from .hardware import HardwareSpec
from .memory import memory_breakdown
from .overheads import NO_OVERHEAD, Overheads
from .precision import kv_bytes, weight_bytes
from .roofline import PassCost, check_pass, decode_step
from .spec import ModelSpec


def check_acceptance_rate(rate) -> None:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate <= 1:
        raise ValueError(f"acceptance_rate is a probability in [0, 1], got {rate!r}")


def check_draft_len(draft_len) -> None:
    if isinstance(draft_len, bool) or not isinstance(draft_len, numbers.Integral) or draft_len < 1:
        raise ValueError(f"draft_len (tokens the draft proposes per round) must be a whole number of at least 1, "
                         f"got {draft_len!r}")


def expected_tokens_per_pass(acceptance_rate: float, draft_len: int) -> float:
    """Expected tokens a speculative round yields per target pass when each drafted token is accepted with
    probability ``acceptance_rate`` (alpha, independently) and ``draft_len`` (k) tokens are drafted:
    (1 - alpha^(k+1)) / (1 - alpha), Leviathan et al. eq. 1 (k + 1 when alpha = 1: every draft and the bonus
    token; 1 when alpha = 0: the target's own token)."""
    check_acceptance_rate(acceptance_rate)
    check_draft_len(draft_len)
    if acceptance_rate == 1:
        return float(draft_len + 1)
    return (1 - acceptance_rate ** (draft_len + 1)) / (1 - acceptance_rate)


def expected_speedup(acceptance_rate: float, draft_len: int, cost_ratio: float) -> float:
    """Expected wall-time speedup over plain target decoding (Leviathan et al., Theorem 3.8):
    (1 - alpha^(k+1)) / ((1 - alpha)(c k + 1)), where ``cost_ratio`` c is the time of a draft step over that of
    a target step, and a target pass over k + 1 tokens is assumed to cost one target step."""
    if isinstance(cost_ratio, bool) or not isinstance(cost_ratio, numbers.Real) or not cost_ratio >= 0:
        raise ValueError(f"cost_ratio is a draft step's time over a target step's, a number >= 0; got {cost_ratio!r}")
    return expected_tokens_per_pass(acceptance_rate, draft_len) / (cost_ratio * draft_len + 1)


def best_draft_len(acceptance_rate: float, cost_ratio: float, longest: int = 16) -> int:
    """The draft length from 1 to ``longest`` with the highest :func:`expected_speedup` (the shortest of equals)."""
    check_draft_len(longest)
    return max(range(1, longest + 1), key=lambda k: (expected_speedup(acceptance_rate, k, cost_ratio), -k))


def verify_pass(model: ModelSpec, hardware: HardwareSpec, precision: str = "bf16", context_len: int = 1024,
                n_tokens: int = 5, batch_size: int = 1, overheads: Overheads = NO_OVERHEAD) -> PassCost:
    """The target's verify pass: ``n_tokens`` new positions (k + 1) for each of ``batch_size`` sequences with
    ``context_len`` tokens cached. Like a decode step it reads the weights once (an MoE: the experts its
    n_tokens x batch tokens pick) and each sequence's cache once; it does ``n_tokens`` times the arithmetic."""
    check_pass(precision, context_len=context_len, n_tokens=n_tokens, batch_size=batch_size)
    positions = range(context_len, context_len + n_tokens)
    return PassCost(
        phase="verify", model=model, hardware=hardware, precision=precision, context_len=context_len,
        batch_size=batch_size,
        weight_bytes_read=model.weight_bytes_read(n_tokens * batch_size, weight_bytes(precision)),
        kv_bytes_read=model.decode_kv_bytes(context_len + n_tokens - 1, batch_size, kv_bytes(precision)),
        flops=batch_size * sum(model.flops_per_token(c) for c in positions),
        memory=memory_breakdown(model, precision, context_len + n_tokens, batch_size),
        overhead_seconds=overheads.seconds(model.n_layers))


@dataclass(frozen=True)
class SpeculativeCost:
    """One speculative configuration on the roofline, against plain decoding of the target."""
    target_step: PassCost          # a plain decode step of the target (the baseline)
    draft_step: PassCost           # one decode step of the draft
    verify: PassCost               # the target's pass over k + 1 positions
    draft_len: int
    acceptance_rate: float

    @property
    def tokens_per_pass(self) -> float:
        return expected_tokens_per_pass(self.acceptance_rate, self.draft_len)

    @property
    def seconds_per_round(self) -> float:
        return self.draft_len * self.draft_step.seconds + self.verify.seconds

    @property
    def seconds_per_token(self) -> float:
        """Expected time per generated token of each sequence."""
        return self.seconds_per_round / self.tokens_per_pass

    @property
    def speedup(self) -> float:
        """Plain target decoding's time per token over speculative decoding's (above 1: faster)."""
        return self.target_step.seconds / self.seconds_per_token

    @property
    def cost_ratio(self) -> float:
        """c: a draft step's time over a target step's."""
        return self.draft_step.seconds / self.target_step.seconds

    @property
    def memory_needed(self) -> float:
        """Both models' weights and caches (and the larger pass's activations) must be resident."""
        return self.verify.memory_needed + sum(v for k, v in self.draft_step.memory.items() if k != "activations")


def speculative_decode(target: ModelSpec, draft: ModelSpec, hardware: HardwareSpec, precision: str = "bf16",
                       context_len: int = 1024, draft_len: int = 4, acceptance_rate: float = 0.8,
                       batch_size: int = 1, overheads: Overheads = NO_OVERHEAD) -> SpeculativeCost:
    """Speculative decoding of ``batch_size`` sequences at ``context_len`` tokens on the roofline: ``draft_len``
    draft decode steps and one target verify pass per round, yielding :func:`expected_tokens_per_pass` tokens at
    ``acceptance_rate``. Draft and target must share a vocabulary (the target checks the draft's tokens)."""
    check_acceptance_rate(acceptance_rate)
    check_draft_len(draft_len)
    if draft.vocab_size != target.vocab_size:
        raise ValueError(f"the draft's vocabulary ({draft.vocab_size:,} tokens) differs from the target's "
                         f"({target.vocab_size:,}): speculative decoding needs a draft with the target's tokenizer")
    return SpeculativeCost(
        target_step=decode_step(target, hardware, precision, context_len, batch_size, overheads),
        draft_step=decode_step(draft, hardware, precision, context_len, batch_size, overheads),
        verify=verify_pass(target, hardware, precision, context_len, draft_len + 1, batch_size, overheads),
        draft_len=draft_len, acceptance_rate=float(acceptance_rate))

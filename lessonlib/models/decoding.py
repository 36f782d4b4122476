"""Turning next-token logits into text: choosing a token (greedy, or sampled with temperature, top-k and top-p),
the generation loop with or without a KV cache, and speculative decoding (a small draft model proposes, the
large target model checks several tokens in one pass). Works with any model that offers TinyGPT's inference
methods (``new_cache``, ``prefill``, ``decode_step``, ``extend``, ``next_token_logits``) and a ``config`` with
``vocab_size`` and ``max_position_embeddings``.

Speculative decoding (Leviathan et al., 2023, "Fast Inference from Transformers via Speculative Decoding"):
each round the draft proposes ``draft_len`` tokens one by one on its own cached path, the target scores all of
them in one ``extend()`` pass, the longest acceptable prefix is kept, and the target supplies one more token (a
correction at the first rejection, or a bonus token when every draft was accepted). Both caches are then rewound
to the kept tokens (``cache.length = ...``). Greedy, the output is the target's own greedy output; sampling, the
accept/reject rule makes every token a sample of the target's distribution. Shapes: B batch, T tokens, V vocab,
k draft length.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..costs.speculative import (  # noqa: F401 - re-exported
    check_draft_len,
    expected_speedup,
    expected_tokens_per_pass,
)


# -- choosing a token ------------------------------------------------------------------------------------------
def check_sampling_settings(temperature: float, top_k: int | None = None, top_p: float | None = None) -> None:
    """Raise a ValueError that says what to fix for a negative temperature, top_k below 1, or top_p outside
    (0, 1]."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature >= 0:
        raise ValueError(f"temperature must be 0 (greedy) or positive, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"top_k must be a whole number of at least 1 (or None for no limit), got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] (1 or None: no limit), got {top_p!r}")


def sampling_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                          top_p: float | None = None) -> torch.Tensor:
    """The distribution sampling draws from (..., V), for logits (..., V): softmax(logits / temperature),
    restricted to the ``top_k`` most likely tokens (ties at the k-th kept), then to the smallest set of most
    likely tokens whose probability adds up to at least ``top_p`` (nucleus sampling; the most likely token is
    always kept), renormalized. ``temperature`` must be positive here (0 means greedy: no distribution)."""
    check_sampling_settings(temperature, top_k, top_p)
    if temperature == 0:
        raise ValueError("temperature 0 is greedy decoding, which samples from no distribution: use a positive "
                         "temperature, or take logits.argmax(-1)")
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[..., -1:]                                   # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs   # probability of the more likely tokens
        drop_sorted = mass_before >= top_p                           # the nucleus is full without this token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def next_token(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None,
               generator: torch.Generator | None = None, top_p: float | None = None) -> torch.Tensor:
    """The next token of each sequence (B,) from its logits (B, V): the most likely one when ``temperature``
    is 0, else a sample of :func:`sampling_distribution` (temperature, ``top_k``, ``top_p``)."""
    check_sampling_settings(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = sampling_distribution(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


# -- the generation loop ---------------------------------------------------------------------------------------
def _check_prompt_and_length(model, idx: torch.Tensor, max_new_tokens: int, role: str = "the model") -> int:
    """The total length (prompt + new tokens), after checking both fit ``model``'s position table."""
    if idx.dim() != 2:
        raise ValueError(f"idx must be (batch, steps) token ids, got shape {tuple(idx.shape)}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a whole number >= 0, got {max_new_tokens!r}")
    total = idx.shape[1] + max_new_tokens
    longest = model.config.max_position_embeddings
    if total > longest:
        raise ValueError(f"prompt ({idx.shape[1]}) + new tokens ({max_new_tokens}) = {total} exceeds {role}'s "
                         f"position table (max_position_embeddings {longest})")
    return total


@torch.inference_mode()
def generate(model, idx: torch.Tensor, max_new_tokens: int, use_cache: bool = True, temperature: float = 0.0,
             top_k: int | None = None, generator: torch.Generator | None = None,
             top_p: float | None = None) -> torch.Tensor:
    """Continue each prompt of ``idx`` (B, T; equal lengths) by ``max_new_tokens`` tokens: greedy when
    ``temperature`` is 0, else sampled (see :func:`next_token`). ``use_cache=False`` recomputes the whole
    prefix at every step, the work a KV cache saves. The cached path never applies dropout: call this on a
    model in eval mode. Returns (B, T + max_new_tokens)."""
    total = _check_prompt_and_length(model, idx, max_new_tokens)
    check_sampling_settings(temperature, top_k, top_p)
    if max_new_tokens == 0:
        return idx.clone()
    new = []
    if use_cache:
        cache = model.new_cache(idx.shape[0], total - 1)   # the last new token is never fed back
        logits = model.prefill(idx, cache)                 # (B, V)
        for _ in range(max_new_tokens - 1):
            new.append(next_token(logits, temperature, top_k, generator, top_p))
            logits = model.decode_step(new[-1], cache)
        new.append(next_token(logits, temperature, top_k, generator, top_p))
    else:
        sequence = idx
        for _ in range(max_new_tokens):
            new.append(next_token(model.next_token_logits(sequence), temperature, top_k, generator, top_p))
            sequence = torch.cat([sequence, new[-1].view(-1, 1)], dim=1)
    return torch.cat([idx, torch.stack(new, dim=1)], dim=1)


@torch.inference_mode()
def greedy_with_logits(model, idx: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy continuation of ``idx`` (B, T) on the cached path, with the logits each new token was chosen
    from: (new tokens (B, n), their logits (B, n, V)) for n = ``max_new_tokens`` (at least 1). Confidence
    measures (cascades, early exit) read the logits."""
    _check_prompt_and_length(model, idx, max_new_tokens)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1 to have logits to return, got {max_new_tokens}")
    cache = model.new_cache(idx.shape[0], idx.shape[1] + max_new_tokens - 1)
    steps = [model.prefill(idx, cache)]                    # (B, V) each
    for _ in range(max_new_tokens - 1):
        steps.append(model.decode_step(steps[-1].argmax(-1), cache))
    logits = torch.stack(steps, dim=1)                     # (B, n, V)
    return logits.argmax(-1), logits


# -- speculative decoding --------------------------------------------------------------------------------------
# The expected-gain formulas (expected_tokens_per_pass, expected_speedup) live with the cost model, which has no
# PyTorch: lessonlib.costs.speculative. They are imported above, so both names also work from here.
@dataclass
class SpeculativeStats:
    """What a speculative run did. ``accepted`` / (``accepted`` + ``rejected``) estimates Leviathan et al.'s
    alpha: drafted tokens after a rejection are never judged, so they count in ``drafted`` only."""
    new_tokens: int = 0
    target_passes: int = 0      # target forward passes: one extend() each (the first one also reads the prompt)
    draft_steps: int = 0        # draft forward passes (its prefill and its decode steps)
    drafted: int = 0            # tokens the draft proposed
    accepted: int = 0           # of them, kept
    rejected: int = 0           # rounds that ended at a rejected draft token

    @property
    def acceptance_rate(self) -> float:
        """Accepted over judged drafted tokens: the estimate of alpha (nan before any was judged)."""
        judged = self.accepted + self.rejected
        return self.accepted / judged if judged else float("nan")

    @property
    def tokens_per_target_pass(self) -> float:
        """New tokens per target forward pass (1 for plain decoding)."""
        return self.new_tokens / self.target_passes if self.target_passes else float("nan")

    def __add__(self, other: SpeculativeStats) -> SpeculativeStats:
        return SpeculativeStats(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


class SpeculativeOutput(NamedTuple):
    tokens: torch.Tensor           # (1, T + max_new_tokens): the prompt and its continuation
    stats: SpeculativeStats


def accept_greedy(target_logits: torch.Tensor, drafted: torch.Tensor) -> tuple[int, int]:
    """Greedy verification: target logits (k + 1, V) after the last kept token and after each of the k
    drafted tokens (k,). Returns (how many drafts agree with the target's argmax before the first that does
    not, the target's token after them: its correction, or the bonus token when all k agree)."""
    choices = target_logits.argmax(-1).tolist()           # k + 1 target tokens
    drafts = drafted.tolist()
    n_accepted = 0
    while n_accepted < len(drafts) and drafts[n_accepted] == choices[n_accepted]:
        n_accepted += 1
    return n_accepted, choices[n_accepted]


def accept_sampled(target_probs: torch.Tensor, draft_probs: torch.Tensor, drafted: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[int, int]:
    """Leviathan et al.'s rule, for target distributions p (k + 1, V), draft distributions q (k, V) and the k
    drafted tokens x_i ~ q_i. Draft i is accepted with probability min(1, p_i(x_i) / q_i(x_i)); at the first
    rejection the token is drawn from the residual max(0, p_i - q_i), normalized; after k acceptances a bonus
    token is drawn from p_{k+1}. Each token so produced is distributed as p. Returns (accepted, next token)."""
    k = drafted.shape[0]
    rows = torch.arange(k)
    p_drafted = target_probs[rows, drafted]                 # (k,)
    q_drafted = draft_probs[rows, drafted]
    u = torch.rand(k, generator=generator)
    # u < p/q, written without a division: q(x) > 0 since x was drawn from q.
    rejected = (u * q_drafted >= p_drafted).nonzero()
    if len(rejected) == 0:
        return k, int(torch.multinomial(target_probs[k], 1, generator=generator))
    i = int(rejected[0])
    residual = (target_probs[i] - draft_probs[i]).clamp_min(0)
    if residual.sum() <= 0:   # p == q to rounding: a rejection is then impossible in exact arithmetic
        residual = target_probs[i]
    return i, int(torch.multinomial(residual, 1, generator=generator))


def _check_speculative_settings(target, draft, idx: torch.Tensor, max_new_tokens: int, draft_len: int) -> int:
    check_draft_len(draft_len)
    if idx.dim() != 2 or idx.shape[0] != 1:
        raise ValueError(f"speculative decoding here runs one sequence at a time: idx must be (1, steps) token "
                         f"ids, got shape {tuple(idx.shape)}; loop over the prompts")
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError(f"the draft's vocabulary ({draft.config.vocab_size} tokens) differs from the target's "
                         f"({target.config.vocab_size}): the target can only check tokens of its own vocabulary; "
                         "use a draft trained with the same tokenizer")
    total = _check_prompt_and_length(target, idx, max_new_tokens, "the target")
    _check_prompt_and_length(draft, idx, max_new_tokens, "the draft")
    for role, model in (("target", target), ("draft", draft)):
        longest = model.config.max_position_embeddings
        if idx.shape[1] + draft_len > longest:
            raise ValueError(f"draft_len ({draft_len}) + prompt ({idx.shape[1]}) = {idx.shape[1] + draft_len} "
                             f"exceeds the {role}'s position table (max_position_embeddings {longest}): draft "
                             "fewer tokens per round")
    return total


def _feed(model, cache, tokens: torch.Tensor) -> torch.Tensor:
    """Run ``tokens`` (1, n) on top of the cache; the logits after the last one (1, V)."""
    if cache.length == 0:
        return model.prefill(tokens, cache)
    if tokens.shape[1] == 1:
        return model.decode_step(tokens[:, 0], cache)
    return model.extend(tokens, cache)[:, -1]


@torch.inference_mode()
def speculative_generate(target, draft, idx: torch.Tensor, max_new_tokens: int, draft_len: int = 4,
                         temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                         generator: torch.Generator | None = None) -> SpeculativeOutput:
    """Continue the prompt ``idx`` (1, T; batch size 1) by ``max_new_tokens`` tokens of ``target``, drafting
    ``draft_len`` tokens per round with ``draft`` (same vocabulary). ``temperature`` 0 is greedy: the result is
    the target's greedy output, token for token (the target scores several tokens in one pass, which sums in
    another order than a decode step: a near-tie within float rounding could break the other way). A positive
    temperature samples with Leviathan et al.'s rule (:func:`accept_sampled`): each token is distributed as the
    target's :func:`sampling_distribution` with the same ``top_k``/``top_p`` (the draft drafts from its own,
    with the same settings). The last round drafts fewer tokens when fewer remain. Returns the tokens
    (1, T + max_new_tokens) and :class:`SpeculativeStats`."""
    total = _check_speculative_settings(target, draft, idx, max_new_tokens, draft_len)
    check_sampling_settings(temperature, top_k, top_p)
    stats = SpeculativeStats()
    if max_new_tokens == 0:
        return SpeculativeOutput(idx.clone(), stats)
    sampled = temperature > 0
    target_cache, draft_cache = target.new_cache(1, total), draft.new_cache(1, total)
    tokens = idx[0].tolist()       # the committed sequence: prompt and kept tokens
    prompt_len = len(tokens)
    # Invariant at the start of a round: each cache holds a prefix of the committed tokens (the last committed
    # token is never in the target's cache: the round feeds it).
    while len(tokens) - prompt_len < max_new_tokens:
        k = min(draft_len, max_new_tokens - (len(tokens) - prompt_len) - 1)   # leave room for the target's token
        committed = len(tokens)
        drafted, draft_probs = [], []
        if k:
            logits = _feed(draft, draft_cache, torch.tensor([tokens[draft_cache.length:]]))   # (1, V)
            stats.draft_steps += 1
            for i in range(k):
                if sampled:
                    draft_probs.append(sampling_distribution(logits[0], temperature, top_k, top_p))
                    drafted.append(torch.multinomial(draft_probs[-1], 1, generator=generator))
                else:
                    drafted.append(logits[0].argmax(-1, keepdim=True))
                if i + 1 < k:
                    logits = draft.decode_step(drafted[-1], draft_cache)
                    stats.draft_steps += 1
        drafts = torch.cat(drafted) if k else torch.empty(0, dtype=torch.long)                 # (k,)
        # One target pass: every committed token it has not seen, then the k drafts.
        fed = torch.cat([torch.tensor(tokens[target_cache.length:]), drafts]).view(1, -1)
        target_logits = target.extend(fed, target_cache)[0, -(k + 1):]                          # (k + 1, V)
        stats.target_passes += 1
        if sampled:
            target_probs = sampling_distribution(target_logits, temperature, top_k, top_p)      # (k + 1, V)
            n_accepted, next_id = accept_sampled(target_probs, torch.stack(draft_probs) if k else
                                                 target_probs[:0], drafts, generator)
        else:
            n_accepted, next_id = accept_greedy(target_logits, drafts)
        tokens += drafts[:n_accepted].tolist() + [next_id]
        stats.drafted += k
        stats.accepted += n_accepted
        stats.rejected += n_accepted < k
        # Rewind: both caches keep only positions of tokens that stay (the last kept draft and before).
        valid = committed + n_accepted
        target_cache.length = valid
        draft_cache.length = min(draft_cache.length, valid)
    stats.new_tokens = len(tokens) - prompt_len
    return SpeculativeOutput(torch.tensor([tokens], dtype=idx.dtype), stats)

"""lessonlib.models.decoding: top-k/top-p sampling, greedy decoding with its logits, and speculative decoding: greedy
output identical to the target's, sampled output distributed as the target's (chi-square tests with fixed seeds),
the expected-tokens formula, clear errors for bad settings; and the speedup measurement runs."""
from statistics import NormalDist

import pytest
import torch

from lessonlib.measure.speculative import measure_speculative_speedup
from lessonlib.models.decoding import (
    SpeculativeStats,
    accept_sampled,
    expected_speedup,
    expected_tokens_per_pass,
    greedy_with_logits,
    next_token,
    sampling_distribution,
    speculative_generate,
)

from .tiny_models import one_thread, random_model  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def make(seed=0, **changes):
    return random_model(seed, varied=True, **changes)


TARGET = make(0)
PROMPT = torch.randint(0, 41, (1, 5), generator=torch.Generator().manual_seed(3))


def perturbed_copy(model, noise, seed=7):
    """The model with Gaussian noise of std ``noise`` on every MLP weight: a draft that mostly agrees."""
    copy = make(0)
    copy.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in copy.h:
            for p in (block.mlp.c_fc.weight, block.mlp.c_proj.weight):
                p.add_(torch.randn(p.shape, generator=generator) * noise)
    return copy


# -- choosing a token ------------------------------------------------------------------------------------------
def test_top_p_keeps_the_smallest_set_of_likely_tokens_reaching_p():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    torch.testing.assert_close(sampling_distribution(logits, top_p=0.8), torch.tensor([0.625, 0.375, 0.0, 0.0]))
    torch.testing.assert_close(sampling_distribution(logits, top_p=0.81),
                               torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95)
    torch.testing.assert_close(sampling_distribution(logits, top_p=0.01), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(sampling_distribution(logits, top_p=1.0), torch.tensor([0.5, 0.3, 0.15, 0.05]))
    # top-k first, then the nucleus of what is left; rows are independent, in any order of the vocabulary
    batch = torch.stack([logits, logits.flip(0)])
    torch.testing.assert_close(sampling_distribution(batch, top_k=3, top_p=0.9)[1],
                               torch.tensor([0.0, 0.15, 0.3, 0.5]) / 0.95)


def test_temperature_sharpens_and_top_p_sampling_is_reproducible():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    assert sampling_distribution(logits, 0.5)[0, 0] > sampling_distribution(logits, 1.0)[0, 0]
    def draw(seed):
        return TARGET.generate(PROMPT, 12, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))
    assert torch.equal(TARGET.generate(PROMPT, 12, temperature=0.7, top_p=1e-6), TARGET.generate(PROMPT, 12))
    # every sampled token is inside the nucleus of its step
    generator = torch.Generator().manual_seed(2)
    for _ in range(200):
        token = next_token(logits, 1.0, top_p=0.7, generator=generator)
        assert token.item() in (0, 1)


@pytest.mark.parametrize("settings, message", [
    (dict(temperature=-1.0), "temperature must be 0"), (dict(temperature=1.0, top_k=0), "top_k must be"),
    (dict(temperature=1.0, top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(temperature=1.0, top_p=1.5), r"top_p must be in \(0, 1\]")])
def test_bad_sampling_settings_fail_clearly(settings, message):
    with pytest.raises(ValueError, match=message):
        next_token(torch.zeros(1, 5), **settings)
    with pytest.raises(ValueError, match=message):
        TARGET.generate(PROMPT, 3, **settings)


def test_greedy_with_logits_returns_generate_s_tokens_and_the_full_forward_s_logits():
    prompts = torch.randint(0, 41, (3, 6), generator=torch.Generator().manual_seed(4))
    tokens, logits = greedy_with_logits(TARGET, prompts, 9)
    assert torch.equal(tokens, TARGET.generate(prompts, 9)[:, 6:]) and logits.shape == (3, 9, 41)
    with torch.inference_mode():
        full = TARGET(torch.cat([prompts, tokens], 1)).logits[:, 5:-1]
    torch.testing.assert_close(logits, full, atol=1e-4, rtol=1e-5)


# -- speculative decoding, greedy ------------------------------------------------------------------------------
@pytest.mark.parametrize("draft_len", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("draft_kind", ["random", "perturbed copy", "smaller random"])
def test_greedy_speculative_output_is_the_target_s_greedy_output(draft_kind, draft_len):
    draft = {"random": lambda: make(1), "perturbed copy": lambda: perturbed_copy(TARGET, 0.05),
             "smaller random": lambda: make(2, n_layers=1, hidden_size=16, n_heads=2)}[draft_kind]()
    expected = TARGET.generate(PROMPT, 40)
    tokens, stats = speculative_generate(TARGET, draft, PROMPT, 40, draft_len=draft_len)
    assert torch.equal(tokens, expected)
    assert stats.new_tokens == 40 and stats.accepted <= stats.drafted
    # every pass yields the accepted drafts and one token of the target's
    assert stats.new_tokens == stats.accepted + stats.target_passes
    assert stats.target_passes <= 40 and stats.draft_steps == stats.drafted


def test_a_draft_identical_to_the_target_is_always_accepted_and_a_random_one_rarely():
    tokens, stats = speculative_generate(TARGET, make(0), PROMPT, 40, draft_len=4)
    assert torch.equal(tokens, TARGET.generate(PROMPT, 40))
    assert stats.acceptance_rate == 1.0 and stats.rejected == 0
    # 8 full rounds of 4 drafts and a bonus token: 40 tokens in 8 passes, the expected k + 1 per pass
    assert stats.target_passes == 8 and stats.tokens_per_target_pass == expected_tokens_per_pass(1.0, 4) == 5
    _, random_stats = speculative_generate(TARGET, make(1), PROMPT, 40, draft_len=4)
    _, close_stats = speculative_generate(TARGET, perturbed_copy(TARGET, 0.05), PROMPT, 40, draft_len=4)
    assert random_stats.acceptance_rate < 0.2 < close_stats.acceptance_rate < 1
    assert random_stats.tokens_per_target_pass < close_stats.tokens_per_target_pass < 5


def test_speculative_edge_lengths():
    draft = make(1)
    one_token_prompt = PROMPT[:, :1]
    for prompt, n in [(one_token_prompt, 1), (one_token_prompt, 63), (PROMPT, 2), (PROMPT, 59)]:
        tokens, stats = speculative_generate(TARGET, draft, prompt, n, draft_len=3)
        assert torch.equal(tokens, TARGET.generate(prompt, n)) and stats.new_tokens == n
    tokens, stats = speculative_generate(TARGET, draft, PROMPT, 0)
    assert torch.equal(tokens, PROMPT) and stats == SpeculativeStats()


def test_bad_speculative_settings_fail_clearly():
    draft = make(1)
    with pytest.raises(ValueError, match="draft_len .* must be a whole number of at least 1"):
        speculative_generate(TARGET, draft, PROMPT, 5, draft_len=0)
    with pytest.raises(ValueError, match=r"draft_len \(62\) \+ prompt \(5\) = 67 exceeds the target's position "
                                         r"table \(max_position_embeddings 64\)"):
        speculative_generate(TARGET, draft, PROMPT, 5, draft_len=62)
    short_draft = make(1, max_position_embeddings=16)
    with pytest.raises(ValueError, match=r"exceeds the draft's position table \(max_position_embeddings 16\)"):
        speculative_generate(TARGET, short_draft, PROMPT, 20, draft_len=2)
    with pytest.raises(ValueError, match=r"draft's vocabulary \(40 tokens\) differs from the target's \(41\)"):
        speculative_generate(TARGET, make(1, vocab_size=40), PROMPT, 5)
    with pytest.raises(ValueError, match="one sequence at a time"):
        speculative_generate(TARGET, draft, PROMPT.expand(2, -1), 5)
    with pytest.raises(ValueError, match=r"prompt \(5\) \+ new tokens \(60\) = 65 exceeds the target's"):
        speculative_generate(TARGET, draft, PROMPT, 60)


def test_expected_tokens_per_pass_is_leviathan_s_geometric_sum():
    assert expected_tokens_per_pass(0.0, 4) == 1 and expected_tokens_per_pass(1.0, 4) == 5
    for alpha in (0.3, 0.8, 0.95):
        for k in (1, 3, 7):
            assert expected_tokens_per_pass(alpha, k) == pytest.approx(sum(alpha**i for i in range(k + 1)))
    assert expected_speedup(0.8, 4, 0.0) == pytest.approx(expected_tokens_per_pass(0.8, 4))
    assert expected_speedup(0.8, 4, 0.25) == pytest.approx((1 - 0.8**5) / (0.2 * 2))
    with pytest.raises(ValueError, match=r"acceptance_rate is a probability in \[0, 1\]"):
        expected_tokens_per_pass(1.2, 4)
    with pytest.raises(ValueError, match="draft_len"):
        expected_tokens_per_pass(0.5, 0)
    with pytest.raises(ValueError, match="cost_ratio"):
        expected_speedup(0.5, 2, -1)


# -- speculative decoding, sampled: the output distribution is the target's --------------------------------------
SIGNIFICANCE = 1e-3   # of every chi-square test below (fixed seeds: each outcome is deterministic)


def chi_square_rejects(counts: torch.Tensor, probs: torch.Tensor) -> bool:
    """Pearson's chi-square goodness-of-fit test of the counts against ``probs`` at SIGNIFICANCE. Cells
    expected fewer than 5 times are pooled into one. The critical value is Wilson and Hilferty's cube-root
    normal approximation of the chi-square quantile (within 1% of the exact value for these degrees of
    freedom; no SciPy needed)."""
    n = counts.sum()
    expected = probs.double() * n
    small = expected < 5
    observed = torch.cat([counts.double()[~small], counts.double()[small].sum().view(1)])
    expected = torch.cat([expected[~small], expected[small].sum().view(1)])
    keep = expected > 0
    assert (observed[~keep] == 0).all(), "a count in a cell of probability 0"
    statistic = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum().item()
    dof = int(keep.sum()) - 1
    z = NormalDist().inv_cdf(1 - SIGNIFICANCE)
    critical = dof * (1 - 2 / (9 * dof) + z * (2 / (9 * dof)) ** 0.5) ** 3
    return statistic > critical


def random_distributions(rows, vocab, seed, sharpness=2.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(rows, vocab, generator=generator) * sharpness, -1)


def test_the_acceptance_rule_yields_the_target_s_distribution_over_20000_draws():
    """Drafts x_i ~ q_i, accepted with probability min(1, p/q), the residual at a rejection: the first token is
    distributed as p_1 (20,000 draws, chi-square at 1e-3). The same test rejects the draft's own distribution
    and the rule without its residual (resampling from p at a rejection), so it can tell them apart."""
    vocab, k, n = 8, 3, 20_000
    p, q = random_distributions(k + 1, vocab, 0), random_distributions(k, vocab, 1)
    generator = torch.Generator().manual_seed(0)
    firsts = torch.zeros(vocab, dtype=torch.long)
    without_residual = torch.zeros(vocab, dtype=torch.long)
    for _ in range(n):
        drafted = torch.multinomial(q, 1, generator=generator)[:, 0]
        n_accepted, token = accept_sampled(p, q, drafted, generator)
        firsts[drafted[0] if n_accepted else token] += 1
        wrong = drafted[0] if n_accepted else torch.multinomial(p[0], 1, generator=generator)
        without_residual[wrong] += 1
    assert not chi_square_rejects(firsts, p[0])
    assert chi_square_rejects(torch.bincount(torch.multinomial(q[0], n, True, generator=generator), minlength=vocab),
                              p[0])
    assert chi_square_rejects(without_residual, p[0])


def target_joint(model, prompt, vocab, temperature, top_p):
    """The target's exact distribution of its first two sampled tokens after ``prompt``: (vocab * vocab,)."""
    with torch.inference_mode():
        first = sampling_distribution(model(prompt).logits[0, -1], temperature, top_p=top_p)       # (V,)
        pairs = torch.cat([prompt.expand(vocab, -1), torch.arange(vocab).view(-1, 1)], 1)
        second = sampling_distribution(model(pairs).logits[:, -1], temperature, top_p=top_p)       # (V, V)
    return (first[:, None] * second).flatten()


@pytest.mark.parametrize("temperature, top_p", [(1.0, None), (0.7, 0.9)])
def test_sampled_speculative_decoding_draws_the_target_s_first_two_tokens(temperature, top_p):
    """End to end, 4,000 runs of speculative_generate (vocabulary of 6, draft_len 2, three new tokens): the
    joint distribution of the first two new tokens (36 cells) matches the target's, computed exactly
    (chi-square at 1e-3); the draft's own joint distribution does not."""
    small = dict(vocab_size=6, n_layers=1, n_heads=2, hidden_size=8)
    target, draft = make(3, **small), make(4, **small)
    with torch.no_grad():
        target.ln_f.weight.mul_(0.1)   # softer than make()'s: every cell is likely enough to be tested
        draft.ln_f.weight.mul_(0.1)
    prompt = torch.tensor([[1, 2, 3]])
    expected = target_joint(target, prompt, 6, temperature, top_p)
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(36, dtype=torch.long)
    total = SpeculativeStats()
    for _ in range(4000):
        tokens, stats = speculative_generate(target, draft, prompt, 3, draft_len=2, temperature=temperature,
                                             top_p=top_p, generator=generator)
        counts[tokens[0, 3] * 6 + tokens[0, 4]] += 1
        total += stats
    assert 0.2 < total.acceptance_rate < 0.95    # both branches of the rule ran many times
    assert not chi_square_rejects(counts, expected)
    assert chi_square_rejects(counts, target_joint(draft, prompt, 6, temperature, top_p))


# -- the measurement -----------------------------------------------------------------------------------------------
def test_the_speedup_measurement_reports_consistent_numbers():
    prompts = torch.randint(0, 41, (2, 5), generator=torch.Generator().manual_seed(5))
    timing = measure_speculative_speedup(TARGET, make(0), prompts, 20, draft_len=4, repeats=1, warmup=0)
    assert timing.identical and timing.stats.acceptance_rate == 1.0 and timing.stats.new_tokens == 40
    assert timing.expected_tokens_per_pass == 5 and timing.stats.tokens_per_target_pass == 5
    assert timing.speedup == timing.target_seconds / timing.speculative_seconds > 0
    assert timing.expected_speedup == pytest.approx(5 / (4 * timing.cost_ratio + 1))
    assert set(timing.timings) == {"target", "draft", "speculative"}
    assert timing.timings["target"].seconds == timing.target_seconds and len(timing.timings["draft"].samples) == 1
    assert timing.reliable == all(t.reliable for t in timing.timings.values())
    sampled = measure_speculative_speedup(TARGET, make(1), [PROMPT], 10, temperature=1.0, repeats=1, warmup=0)
    assert not sampled.identical and sampled.stats.new_tokens == 10

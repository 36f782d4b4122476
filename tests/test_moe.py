"""lessonlib.models.moe: routing picks and weighs the right experts, the load-balancing loss is minimal when routing
is uniform, capacity drops exactly the overflow, and an MoE TinyGPT trains and round-trips (its cached decoding
is checked with the other variants in test_tinygpt.py)."""
import pytest
import torch
import torch.nn.functional as F

from lessonlib.models import corpus, moe
from lessonlib.models.checkpoints import load_checkpoint, save_checkpoint
from lessonlib.models.cost_spec import spec_of
from lessonlib.models.tinygpt import MLP, TinyGPT, TinyGPTConfig

SMALL = dict(vocab_size=41, max_position_embeddings=16, n_layers=1, n_heads=2, hidden_size=16)


def layer(**changes):
    torch.manual_seed(0)
    settings = dict(hidden_size=16, intermediate_size=24, n_experts=4, experts_per_token=2) | changes
    return moe.MoEMLP(**settings)


def brute_force(layer_, x):
    """Token by token, expert by expert: what the vectorized dispatch must equal."""
    w = layer_.weights()
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        probs = torch.softmax(x[t] @ w.router, dim=-1)
        chosen = probs.argsort(descending=True)[:layer_.experts_per_token]
        gates = probs[chosen] / probs[chosen].sum() if layer_.renormalize else probs[chosen]
        for gate, e in zip(gates, chosen, strict=True):
            hidden = F.gelu(x[t] @ w.fc_weight[e] + w.fc_bias[e], approximate="tanh")
            out[t] += gate * (hidden @ w.proj_weight[e] + w.proj_bias[e])
    return out


def test_route_picks_the_most_probable_experts_and_renormalizes_their_gates():
    logits = torch.tensor([[2.0, 0.0, 1.0, -1.0], [0.0, 3.0, 0.0, 2.9]])
    routing = moe.route(logits, 2)
    assert routing.experts.tolist() == [[0, 2], [1, 3]]
    torch.testing.assert_close(routing.weights.sum(-1), torch.ones(2))
    torch.testing.assert_close(routing.weights, routing.probs.gather(1, routing.experts)
                               / routing.probs.gather(1, routing.experts).sum(-1, keepdim=True))
    raw = moe.route(logits, 1, renormalize=False)
    torch.testing.assert_close(raw.weights[:, 0], routing.probs.max(-1).values)


@pytest.mark.parametrize("top_k, renormalize", [(1, False), (2, True), (3, True), (4, False)])
def test_vectorized_dispatch_equals_the_token_by_token_weighted_sum(top_k, renormalize):
    # Tolerance 1e-5: the same products, summed in another order.
    moe_layer = layer(experts_per_token=top_k, renormalize=renormalize)
    x = torch.randn(37, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(moe_layer(x)[0], brute_force(moe_layer, x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(moe_layer(x[:1])[0], brute_force(moe_layer, x[:1]), atol=1e-5, rtol=1e-5)


def test_one_expert_equals_a_dense_mlp_with_the_same_weights():
    config = TinyGPTConfig(**SMALL, intermediate_size=24)
    dense = MLP(config)
    single = layer(n_experts=1, experts_per_token=1, renormalize=True)
    with torch.no_grad():
        for linear in (dense.c_fc, dense.c_proj):   # tinygpt.Linear starts uninitialized (TinyGPT inits it)
            linear.weight.normal_(0, 0.02)
        single.fc_weight[0] = dense.c_fc.weight
        single.fc_bias[0] = torch.randn(24)
        dense.c_fc.bias.copy_(single.fc_bias[0])
        single.proj_weight[0] = dense.c_proj.weight
        dense.c_proj.bias.copy_(torch.randn(16))
        single.proj_bias[0] = dense.c_proj.bias
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(single(x)[0], dense(x), atol=1e-6, rtol=1e-6)


def test_load_balancing_loss_is_one_when_uniform_and_grows_as_routing_collapses():
    uniform = moe.load_balancing_loss(torch.full((8, 4), 0.25), torch.arange(8).remainder(4).view(8, 1), 4)
    assert uniform.item() == pytest.approx(1.0)
    collapsed = moe.load_balancing_loss(torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 5),
                                        torch.zeros(5, 1, dtype=torch.long), 4)
    assert collapsed.item() == pytest.approx(2.8)
    base = torch.randn(4000, 8, generator=torch.Generator().manual_seed(0))
    bias = torch.zeros(8)
    losses = []
    for strength in (0.0, 1.0, 2.0, 4.0):
        bias[0] = strength
        routing = moe.route(base + bias, 2)
        losses.append(moe.load_balancing_loss(routing.probs, routing.experts, 8).item())
    assert losses == sorted(losses) and losses[0] == pytest.approx(1.0, abs=0.02) and losses[-1] > 1.5


@pytest.mark.parametrize("n_experts, k", [(8, 2), (8, 1), (4, 3), (16, 4)])
def test_load_balancing_loss_is_at_most_n_over_k_and_reaches_it_when_routing_collapses(n_experts, k):
    """f_i <= 1/k (a token picks an expert once) and the P_i sum to 1, so N * sum f_i P_i <= N / k; every token
    sending all its probability to the same k experts reaches it (up to the softmax's remaining mass)."""
    bias = torch.zeros(n_experts)
    bias[:k] = 30.0
    logits = torch.randn(500, n_experts, generator=torch.Generator().manual_seed(3))
    collapsed = moe.route(logits + bias, k)
    top = moe.load_balancing_loss(collapsed.probs, collapsed.experts, n_experts).item()
    assert top == pytest.approx(n_experts / k, rel=1e-6)
    for seed in range(20):   # random and skewed routings never exceed the bound
        skewed = torch.randn(200, n_experts, generator=torch.Generator().manual_seed(seed)) * (seed + 1) / 4
        r = moe.route(skewed, k)
        assert moe.load_balancing_loss(r.probs, r.experts, n_experts).item() <= n_experts / k + 1e-6


@pytest.mark.parametrize("n_experts, k", [(8, 2), (8, 1), (4, 3), (16, 4)])
def test_the_mixtral_normalization_scores_k_at_balance_and_at_most_n(n_experts, k):
    """Hugging Face's Mixtral loss counts each of the k slots over T tokens: k times the Switch normalization, so k
    when routing is uniform and N when it collapses."""
    # token t picks experts t, t+1, ..., t+k-1 (mod N): every expert is chosen exactly k times
    balanced_experts = (torch.arange(n_experts)[:, None] + torch.arange(k)) % n_experts
    uniform = torch.full((n_experts, n_experts), 1 / n_experts)
    assert moe.load_balancing_loss(uniform, balanced_experts, n_experts).item() == pytest.approx(1.0)
    assert moe.load_balancing_loss(uniform, balanced_experts, n_experts, "mixtral").item() == pytest.approx(k)
    bias = torch.zeros(n_experts)
    bias[:k] = 30.0
    collapsed = moe.route(torch.randn(300, n_experts, generator=torch.Generator().manual_seed(4)) + bias, k)
    top = moe.load_balancing_loss(collapsed.probs, collapsed.experts, n_experts, "mixtral").item()
    assert top == pytest.approx(n_experts, rel=1e-6)
    for seed in range(10):
        r = moe.route(torch.randn(100, n_experts, generator=torch.Generator().manual_seed(seed)) * seed, k)
        switch = moe.load_balancing_loss(r.probs, r.experts, n_experts)
        mixtral = moe.load_balancing_loss(r.probs, r.experts, n_experts, "mixtral")
        assert mixtral.item() == pytest.approx(k * switch.item(), rel=1e-6) and mixtral.item() <= n_experts + 1e-6


@pytest.mark.parametrize("n_experts, k", [(8, 2), (4, 1), (6, 3)])
def test_the_mixtral_normalization_equals_transformers_load_balancing_loss(n_experts, k):
    pytest.importorskip("transformers")
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    logits = torch.randn(64, n_experts, generator=torch.Generator().manual_seed(n_experts + k)) * 2
    r = moe.route(logits, k)
    ours = moe.load_balancing_loss(r.probs, r.experts, n_experts, "mixtral")
    theirs = load_balancing_loss_func((logits,), n_experts, k)
    torch.testing.assert_close(ours, theirs.to(ours.dtype), atol=1e-6, rtol=1e-5)


def test_an_unknown_normalization_is_refused_clearly():
    with pytest.raises(ValueError, match="switch, mixtral"):
        moe.load_balancing_loss(torch.full((2, 2), 0.5), torch.zeros(2, 1, dtype=torch.long), 2, "gshard")


def test_the_balancing_loss_sends_gradient_to_the_router():
    moe_layer = layer()
    _, stats = moe_layer(torch.randn(10, 16))
    stats.balance_loss.backward()
    assert moe_layer.router.grad is not None and moe_layer.router.grad.abs().sum() > 0


def test_router_z_loss_is_the_mean_squared_log_sum_exp():
    logits = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    expected = (torch.logsumexp(logits, -1) ** 2).mean()
    torch.testing.assert_close(moe.router_z_loss(logits), expected)


def test_capacity_drops_exactly_the_assignments_past_each_experts_limit():
    # Every token prefers expert 0 then 1: with 8 tokens, top-1 and 4 experts, capacity 1.0 lets expert 0
    # take ceil(8 / 4) = 2 tokens (the first two); the other six are dropped and output zero.
    moe_layer = layer(experts_per_token=1, renormalize=False, capacity_factor=1.0)
    with torch.no_grad():
        moe_layer.router.zero_()
        moe_layer.router[0, 0] = 10.0
        moe_layer.router[0, 1] = 5.0
    x = torch.zeros(8, 16)
    x[:, 0] = 1.0
    out, stats = moe_layer(x)
    assert stats.counts.tolist() == [2, 0, 0, 0]
    assert stats.dropped_fraction == pytest.approx(0.75)
    assert out[2:].abs().sum() == 0 and out[:2].abs().sum() > 0
    kept = moe._within_capacity(torch.tensor([0, 0, 1, 0, 1, 2]), 3, 2)
    assert kept.tolist() == [True, True, True, False, True, True]


def test_usage_counts_every_assignment():
    moe_layer = layer(experts_per_token=2)
    _, stats = moe_layer(torch.randn(11, 16))
    assert stats.counts.sum().item() == 22
    assert stats.dropped_fraction == 0


def test_routing_is_returned_by_each_call_and_not_kept_on_the_module():
    """Two calls give each its own statistics; the model's forward returns every MoE layer's, in order."""
    moe_layer = layer()
    _, first = moe_layer(torch.randn(5, 16))
    _, second = moe_layer(torch.randn(9, 16))
    assert first.routing.experts.shape == (5, 2) and second.routing.experts.shape == (9, 2)
    assert not any(isinstance(v, moe.MoEStats | moe.Routing) for v in vars(moe_layer).values())
    out = make_model()(PROMPTS, PROMPTS)
    assert len(out.moe) == 2 and all(s.routing.experts.shape == (21, 2) for s in out.moe)
    assert make_model(n_experts=1, experts_per_token=1)(PROMPTS).moe == ()


def make_model(**changes):
    torch.manual_seed(0)
    config = dict(vocab_size=41, max_position_embeddings=64, n_layers=2, n_heads=4, hidden_size=32,
                  intermediate_size=48, n_experts=4, experts_per_token=2) | changes
    return TinyGPT(TinyGPTConfig(**config)).eval()


PROMPTS = torch.randint(0, 41, (3, 7), generator=torch.Generator().manual_seed(1))


def test_moe_model_trains_with_the_auxiliary_loss_and_round_trips_through_a_checkpoint(tmp_path):
    from lessonlib.models.training import train

    model = make_model()
    data = corpus.split("validation", n_lines=300)
    history = train(model, data, data.fixed_batches(1, 4, 32), steps=5, batch_size=4, seq_len=32, progress=False,
                    loss_fn=moe.training_loss(0.01, z_weight=0.001))
    assert len(history.train_loss) == 5
    save_checkpoint(model, tmp_path / "m.pt", {"note": "test"})
    loaded, report = load_checkpoint(tmp_path / "m.pt")
    assert loaded.config.n_experts == 4 and report == {"note": "test"}
    assert torch.equal(loaded.generate(PROMPTS, 5), loaded.generate(PROMPTS, 5, use_cache=False))


def test_expert_usage_by_task_rows_are_shares():
    model = make_model()
    usage = moe.expert_usage_by_task(model, {"copy": corpus.make_lines(20, 1, tasks=["c"]),
                                             "add": corpus.make_lines(20, 1, tasks=["a"])})
    assert usage.shape == (2, 2, 4)
    torch.testing.assert_close(usage.sum(-1), torch.ones(2, 2))


@pytest.mark.parametrize("bad, message", [(dict(n_experts=4, experts_per_token=5), "experts_per_token"),
                                          (dict(n_experts=4, experts_per_token=0), "experts_per_token"),
                                          (dict(n_experts=-1), "n_experts"),
                                          (dict(n_experts=0), "n_experts"),
                                          (dict(n_experts=4, capacity_factor=0.0), "capacity_factor")])
def test_bad_moe_settings_fail_clearly(bad, message):
    with pytest.raises(ValueError, match=message):
        TinyGPTConfig(**SMALL, **bad)
    with pytest.raises(ValueError, match="k must be"):
        moe.route(torch.randn(3, 4), 5)
    with pytest.raises(ValueError, match="no MoE layers"):
        moe.training_loss()(TinyGPT(TinyGPTConfig(**SMALL)),
                            torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))


def test_active_parameters_count_the_router_and_top_k_experts_only():
    # tiny-moe's shape: 8 experts of width 256, top-2. Per layer the two active experts hold tiny-gpt's width-512
    # MLP plus one more output bias (128), and the router adds 128 * 8: active = tiny-gpt's total + 4 * 1152.
    shape = dict(vocab_size=41, max_position_embeddings=256, n_layers=4, n_heads=4, hidden_size=128)
    dense = TinyGPT(TinyGPTConfig(**shape))
    mixture = TinyGPT(TinyGPTConfig(**shape, intermediate_size=256, n_experts=8, experts_per_token=2))
    dense_spec, mixture_spec = spec_of(dense), spec_of(mixture)
    assert (dense_spec.n_params(), dense_spec.n_active_params()) == (dense.n_params(), dense.n_params())
    assert dense.n_params() == 831_360
    per_expert = 128 * 256 + 256 + 256 * 128 + 128
    assert (mixture_spec.n_params(), mixture_spec.n_active_params()) == (mixture.n_params(),
                                                                         mixture.n_params() - 4 * 6 * per_expert)
    assert mixture_spec.n_active_params() == dense.n_params() + 4 * (128 + 128 * 8)


def test_tinygpt_keeps_the_experts_gpt2_initialization():
    # TinyGPT rescales weights named *c_proj.weight; the experts' projections must get the same depth scaling.
    # Tolerance 5%: a standard deviation estimated from 262,144 samples is within about 0.3%.
    model = make_model(n_layers=4, hidden_size=128, intermediate_size=256, n_experts=8)
    block = model.h[0].mlp
    assert block.proj_weight.std().item() == pytest.approx(0.02 / (2 * 4) ** 0.5, rel=0.05)
    assert block.fc_weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.router.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.fc_bias.abs().sum() == block.proj_bias.abs().sum() == 0


def test_moe_dropout_acts_on_the_layer_output_in_training_mode_only():
    assert make_model(dropout=0.5).h[0].mlp.dropout.p == 0.5  # TinyGPT passes its dropout on to the experts
    moe_layer = layer(dropout=0.5).train()
    x = torch.randn(10, 16)
    assert not torch.equal(moe_layer(x)[0], moe_layer(x)[0])
    moe_layer.eval()
    assert torch.equal(moe_layer(x)[0], moe_layer(x)[0])


def test_an_moe_model_without_biases_is_refused_clearly():
    with pytest.raises(ValueError, match="bias=False is not supported with n_experts > 1"):
        TinyGPTConfig(**SMALL, n_experts=4, bias=False)


def gated_weights(n_experts, hidden=16, intermediate=24, biases=False):
    """Random gated (SwiGLU) experts, Mixtral's kind: without biases unless asked."""
    g = torch.Generator().manual_seed(2)

    def randn(*shape, fan_in=1):
        return torch.randn(*shape, generator=g) * fan_in ** -0.5

    return moe.ExpertWeights(
        router=randn(hidden, n_experts), fc_weight=randn(n_experts, hidden, intermediate, fan_in=hidden),
        fc_bias=randn(n_experts, intermediate) if biases else None,
        proj_weight=randn(n_experts, intermediate, hidden, fan_in=intermediate),
        proj_bias=randn(n_experts, hidden) if biases else None,
        gate_weight=randn(n_experts, hidden, intermediate, fan_in=hidden))


def brute_force_gated(w, x, k):
    """Token by token, expert by expert: sum of gate * (silu(x W_gate) * (x W_up + b_up)) W_down + b_down."""
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        probs = torch.softmax(x[t] @ w.router, dim=-1)
        chosen = probs.argsort(descending=True)[:k]
        for gate, e in zip(probs[chosen] / probs[chosen].sum(), chosen, strict=True):
            up = x[t] @ w.fc_weight[e] + (0 if w.fc_bias is None else w.fc_bias[e])
            hidden = F.silu(x[t] @ w.gate_weight[e]) * up
            out[t] += gate * (hidden @ w.proj_weight[e] + (0 if w.proj_bias is None else w.proj_bias[e]))
    return out


GATED_SETTINGS = [(4, 2, 1), (4, 2, 37), (8, 1, 1), (8, 3, 16)]   # (n_experts, top_k, tokens)


@pytest.mark.parametrize("n_experts, top_k, n_tokens", GATED_SETTINGS)
@pytest.mark.parametrize("biases", [False, True])
def test_gated_experts_equal_the_token_by_token_swiglu_sum(n_experts, top_k, n_tokens, biases):
    # Tolerance 1e-5: the same products, summed in another order.
    w = gated_weights(n_experts, biases=biases)
    x = torch.randn(n_tokens, 16, generator=torch.Generator().manual_seed(1))
    out, routing, kept = moe.moe_mlp(x, w, top_k, renormalize=True)
    torch.testing.assert_close(out, brute_force_gated(w, x, top_k), atol=1e-5, rtol=1e-5)
    assert kept.all() and routing.experts.shape == (n_tokens, top_k)


@pytest.mark.parametrize("n_experts, top_k, n_tokens", GATED_SETTINGS)
@pytest.mark.parametrize("implementation", ["eager", "batched_mm", "grouped_mm"])
def test_gated_experts_equal_transformers_mixtral_sparse_moe_block(n_experts, top_k, n_tokens, implementation):
    """Mixtral's block with our weights copied in: router (E, H) is our router transposed; gate_up_proj (E, 2I, H)
    holds the gate (w1) then the up projection (w3) as (out, in); down_proj (E, H, I) is our proj transposed.
    Tolerance 1e-5: the same products with the weights laid out (out, in) instead of (in, out)."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    w = gated_weights(n_experts)
    config = transformers.MixtralConfig(hidden_size=16, intermediate_size=24, num_local_experts=n_experts,
                                        num_experts_per_tok=top_k, experts_implementation=implementation)
    block = MixtralSparseMoeBlock(config).eval()
    with torch.no_grad():
        block.gate.weight.copy_(w.router.T)
        block.experts.gate_up_proj.copy_(torch.cat([w.gate_weight, w.fc_weight], dim=2).transpose(1, 2))
        block.experts.down_proj.copy_(w.proj_weight.transpose(1, 2))
        x = torch.randn(n_tokens, 16, generator=torch.Generator().manual_seed(1))
        out, routing, _ = moe.moe_mlp(x, w, top_k, renormalize=True)
        _, hf_gates, hf_experts = block.gate(x)
        assert torch.equal(routing.experts, hf_experts)
        torch.testing.assert_close(routing.weights, hf_gates, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(out, block(x.view(1, n_tokens, 16)).view(n_tokens, 16), atol=1e-5, rtol=1e-5)


def test_experts_without_biases_equal_experts_with_zero_biases():
    """A bias of None is a plain matrix product, the same as adding zeros, on both paths (one token, many)."""
    w = layer().weights()
    no_bias = w._replace(fc_bias=None, proj_bias=None)
    zero_bias = w._replace(fc_bias=torch.zeros_like(w.fc_bias), proj_bias=torch.zeros_like(w.proj_bias))
    x = torch.randn(9, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for tokens in (x[:1], x):
            torch.testing.assert_close(moe.moe_mlp(tokens, no_bias, 2, True)[0],
                                       moe.moe_mlp(tokens, zero_bias, 2, True)[0], atol=1e-6, rtol=1e-6)

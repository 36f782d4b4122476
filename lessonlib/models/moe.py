"""A top-k mixture-of-experts feed-forward layer: routing, load balancing, capacity, expert usage.

A dense transformer layer sends every token through one MLP. A mixture-of-experts (MoE) layer holds
``n_experts`` MLPs (the experts) and a router, one matrix ``W_r`` (hidden_size, n_experts):

    probs = softmax(x @ W_r)                      # (tokens, n_experts)
    experts = the k most probable                 # (tokens, k), k = experts_per_token
    gates = probs of those, renormalized to sum to 1 (Mixtral), or as they are (Switch Transformer, top-1)
    y = sum over the chosen experts of gate * expert(x)

Each token runs ``experts_per_token`` experts: its FLOPs grow with that, the parameters in memory with
``n_experts``. The course's experts are GPT-2 MLPs (GELU, with biases); :func:`moe_mlp` also runs gated
experts, ``silu(x @ W_gate) * (x @ W_up)`` then the down projection (SwiGLU, as Mixtral's, without biases),
so it computes the same function as Hugging Face's ``MixtralSparseMoeBlock`` (benchmarks/bench_moe_vs_hf.py).

Dispatch is vectorized: the (token, expert) assignments are sorted by expert and each expert multiplies all
of its tokens in one matrix product, so the Python loop runs over experts, never over tokens. With a
``capacity_factor`` an expert takes at most ``ceil(capacity_factor * tokens * k / n_experts)`` assignments
(in token order); the rest are dropped: they add nothing, and the residual stream carries the token on.
Capacity is counted per call, so with a capacity factor a cached decode (one token per call) can keep tokens
that a full forward over the same sequence drops: the two agree exactly only without one.

Routing is returned by every call, never stored on the module:

    layer = MoEMLP(hidden_size=128, intermediate_size=256, n_experts=8, experts_per_token=2)
    y, stats = layer(x)                            # x: (..., 128)
    stats.balance_loss                             # the load-balancing loss of this call (in the graph)
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class Routing(NamedTuple):
    logits: torch.Tensor    # (tokens, n_experts) router logits
    probs: torch.Tensor     # (tokens, n_experts) softmax over all experts
    weights: torch.Tensor   # (tokens, k) the gates applied to the chosen experts' outputs
    experts: torch.Tensor   # (tokens, k) int64 indices of the chosen experts, most probable first


def route(router_logits: torch.Tensor, k: int, renormalize: bool = True) -> Routing:
    """Choose the ``k`` most probable experts of each token. With ``renormalize`` their probabilities are
    divided by their sum (Mixtral); without, the raw probabilities are the gates (Switch Transformer, whose
    top-1 gate would otherwise always be 1 and give the router no gradient from the model's loss)."""
    if router_logits.dim() != 2:
        raise ValueError(f"router_logits must be (tokens, n_experts), got shape {tuple(router_logits.shape)}")
    n_experts = router_logits.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_experts:
        raise ValueError(f"k must be a whole number of experts between 1 and n_experts ({n_experts}), got {k!r}")
    probs = torch.softmax(router_logits, dim=-1)                  # (tokens, n_experts)
    top, experts = torch.topk(probs, k, dim=-1)                   # (tokens, k) each
    weights = top / top.sum(dim=-1, keepdim=True) if renormalize else top
    return Routing(router_logits, probs, weights, experts)


NORMALIZATIONS = ("switch", "mixtral")


def load_balancing_loss(probs: torch.Tensor, experts: torch.Tensor, n_experts: int,
                        normalization: str = "switch") -> torch.Tensor:
    """The Switch Transformer's auxiliary loss ``N * sum_i f_i * P_i``: ``f_i`` the share of the assignments sent
    to expert i (no gradient: it counts), ``P_i`` the mean router probability of expert i (the gradient flows
    through it). Training adds ``alpha`` times it (alpha = 0.01) to the loss. Two normalizations of ``f`` are in
    use, and they differ by a factor ``k`` (the experts each token picks):

    * ``"switch"`` (the default, and the course's): ``f_i`` = assignments to i / (T x k), so the ``f_i`` sum to 1.
      Exactly 1 when routing is uniform. A token picks an expert at most once, so each ``f_i <= 1/k``, and
      ``sum_i P_i = 1``: the loss is at most ``N / k``, reached when every token sends all its probability to the
      same k experts (8 experts, top-2: 4). For k = 1 this is the Switch Transformer's own loss, bounded by N.
    * ``"mixtral"``: Hugging Face's Mixtral ``load_balancing_loss_func``, which counts each of the k choices
      separately (``f_i`` = assignments to i / T): k times the above, so it scores k at balance and at most N.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    counts = torch.bincount(experts.flatten(), minlength=n_experts).to(probs.dtype)   # (n_experts,)
    f = counts / (experts.numel() if normalization == "switch" else experts.shape[0])
    return n_experts * torch.sum(f * probs.mean(dim=0))


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE's router z-loss: the mean squared log-sum-exp of the router logits. It keeps the logits small,
    which keeps the softmax (and low-precision training) numerically stable."""
    return torch.logsumexp(logits, dim=-1).square().mean()


class ExpertWeights(NamedTuple):
    """An MoE layer's weights as plain tensors (what the cached inference path passes around), stored (in, out).
    Without ``gate_weight`` each expert is a GPT-2 MLP, ``gelu(x @ fc + fc_bias) @ proj + proj_bias``; with it,
    a gated (SwiGLU) one, ``(silu(x @ gate) * (x @ fc + fc_bias)) @ proj + proj_bias``: ``fc`` is then the up
    projection (Mixtral's w3, ``gate`` its w1, ``proj`` its w2). A bias of None is no bias."""
    router: torch.Tensor                        # (hidden_size, n_experts)
    fc_weight: torch.Tensor                     # (n_experts, hidden_size, intermediate_size)
    fc_bias: torch.Tensor | None                # (n_experts, intermediate_size)
    proj_weight: torch.Tensor                   # (n_experts, intermediate_size, hidden_size)
    proj_bias: torch.Tensor | None              # (n_experts, hidden_size)
    gate_weight: torch.Tensor | None = None     # (n_experts, hidden_size, intermediate_size): a gated expert


def expert(x: torch.Tensor, w: ExpertWeights, e: int) -> torch.Tensor:
    """Expert ``e`` on its tokens ``x`` (count, hidden_size): its output (count, hidden_size), not yet weighted
    by the router. Used by both paths of :func:`moe_mlp`, one token or many."""
    y = x @ w.fc_weight[e] if w.fc_bias is None else torch.addmm(w.fc_bias[e], x, w.fc_weight[e])   # (count, inter.)
    if w.gate_weight is None:
        y = F.gelu(y, approximate="tanh")
    else:
        y = F.silu(x @ w.gate_weight[e]) * y                                                        # (count, inter.)
    return y @ w.proj_weight[e] if w.proj_bias is None else torch.addmm(w.proj_bias[e], y, w.proj_weight[e])


def capacity(n_tokens: int, k: int, n_experts: int, capacity_factor: float) -> int:
    """Assignments one expert may take in a call: the fair share times the factor, rounded up."""
    return math.ceil(capacity_factor * n_tokens * k / n_experts)


def _within_capacity(flat_experts: torch.Tensor, n_experts: int, limit: int) -> torch.Tensor:
    """Which assignments (in token order) fit under each expert's limit: an assignment's position among
    those of its expert, counted in order, must be below ``limit``."""
    order = torch.argsort(flat_experts, stable=True)
    counts = torch.bincount(flat_experts, minlength=n_experts)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.empty_like(flat_experts)
    position[order] = torch.arange(len(flat_experts), device=flat_experts.device) - starts[flat_experts[order]]
    return position < limit


def moe_mlp(h: torch.Tensor, w: ExpertWeights, experts_per_token: int, renormalize: bool,
            capacity_factor: float | None = None) -> tuple[torch.Tensor, Routing, torch.Tensor]:
    """The MoE feed-forward block for tokens ``h`` (tokens, hidden_size). Returns the output (tokens,
    hidden_size), the routing, and which assignments (tokens, k) were kept (all, without a capacity factor)."""
    n_tokens = h.shape[0]
    n_experts = w.router.shape[1]
    k = experts_per_token
    routing = route(h @ w.router, k, renormalize)
    out = torch.zeros_like(h)                                             # (tokens, hidden_size)
    if n_tokens == 1 and capacity_factor is None:
        # One token (a batch-1 decode step): run its k experts directly, reading only their weights.
        for gate, e in zip(routing.weights[0], routing.experts[0].tolist(), strict=True):
            out = out + gate * expert(h, w, e)                                   # (1, hidden_size)
        return out, routing, torch.ones_like(routing.experts, dtype=torch.bool)

    flat_experts = routing.experts.flatten()                             # (tokens * k,): a = token * k + choice
    flat_tokens = torch.arange(n_tokens, device=h.device).repeat_interleave(k)
    flat_gates = routing.weights.flatten()
    kept = torch.ones_like(flat_experts, dtype=torch.bool)
    if capacity_factor is not None:
        kept = _within_capacity(flat_experts, n_experts, capacity(n_tokens, k, n_experts, capacity_factor))
    order = torch.argsort(flat_experts.masked_fill(~kept, n_experts), stable=True)   # dropped ones sort last
    counts = torch.bincount(flat_experts[kept], minlength=n_experts).tolist()
    start = 0
    for e, count in enumerate(counts):
        if count == 0:
            continue
        chosen = order[start:start + count]                              # (count,) assignments of expert e
        start += count
        tokens = flat_tokens[chosen]
        y = expert(h[tokens], w, e)                                                            # (count, hidden)
        out.index_add_(0, tokens, y * flat_gates[chosen, None])
    return out, routing, kept.view(n_tokens, k)


class MoEStats(NamedTuple):
    """What one forward call of an MoE layer did: its routing, which assignments were kept, the auxiliary
    losses (in the graph, for training), the assignments each expert received (detached), and the share of
    assignments dropped over capacity."""
    routing: Routing
    kept: torch.Tensor           # (tokens, k) bool
    balance_loss: torch.Tensor
    z_loss: torch.Tensor
    counts: torch.Tensor         # (n_experts,)
    dropped_fraction: float


class MoEMLP(nn.Module):
    """``n_experts`` GPT-2 MLPs (GELU, width ``intermediate_size``) behind a top-k router. Weights are stored
    (in, out) like ``tinygpt.Linear``, stacked over experts. ``renormalize`` defaults to
    ``experts_per_token > 1``. ``proj_std`` is the initial scale of the output projections (GPT-2 scales
    residual projections by depth); ``dropout`` acts on the output in training mode, as in TinyGPT's dense MLP.
    ``forward`` returns the output and the call's :class:`MoEStats`."""

    def __init__(self, hidden_size: int, intermediate_size: int, n_experts: int, experts_per_token: int = 1,
                 renormalize: bool | None = None, capacity_factor: float | None = None, proj_std: float = 0.02,
                 dropout: float = 0.0):
        super().__init__()
        check_settings(n_experts, experts_per_token, capacity_factor)
        self.n_experts, self.experts_per_token = n_experts, experts_per_token
        self.renormalize = experts_per_token > 1 if renormalize is None else renormalize
        self.capacity_factor = capacity_factor
        self.router = nn.Parameter(torch.randn(hidden_size, n_experts) * 0.02)
        self.fc_weight = nn.Parameter(torch.randn(n_experts, hidden_size, intermediate_size) * 0.02)
        self.fc_bias = nn.Parameter(torch.zeros(n_experts, intermediate_size))
        self.proj_weight = nn.Parameter(torch.randn(n_experts, intermediate_size, hidden_size) * proj_std)
        self.proj_bias = nn.Parameter(torch.zeros(n_experts, hidden_size))
        self.dropout = nn.Dropout(dropout)   # on the output, as TinyGPT's dense MLP

    def weights(self) -> ExpertWeights:
        return ExpertWeights(self.router, self.fc_weight, self.fc_bias, self.proj_weight, self.proj_bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, MoEStats]:
        h = x.reshape(-1, x.shape[-1])                                   # (tokens, hidden_size)
        out, routing, kept = moe_mlp(h, self.weights(), self.experts_per_token, self.renormalize,
                                     self.capacity_factor)
        stats = MoEStats(
            routing=routing, kept=kept,
            balance_loss=load_balancing_loss(routing.probs, routing.experts, self.n_experts),
            z_loss=router_z_loss(routing.logits),
            counts=torch.bincount(routing.experts[kept], minlength=self.n_experts).detach(),
            dropped_fraction=1 - kept.float().mean().item())
        return self.dropout(out.view(x.shape)), stats


def check_settings(n_experts: int, experts_per_token: int, capacity_factor: float | None) -> None:
    if isinstance(n_experts, bool) or not isinstance(n_experts, int) or n_experts < 1:
        raise ValueError(f"n_experts must be a positive whole number, got {n_experts!r}")
    if isinstance(experts_per_token, bool) or not isinstance(experts_per_token, int) \
            or not 1 <= experts_per_token <= n_experts:
        raise ValueError(f"experts_per_token must be between 1 and n_experts ({n_experts}), got {experts_per_token!r}")
    if capacity_factor is not None and not capacity_factor > 0:
        raise ValueError(f"capacity_factor must be positive (or None for no limit), got {capacity_factor!r}")


def training_loss(aux_weight: float = 0.01, z_weight: float = 0.0):
    """A ``loss_fn(model, x, y)`` for :func:`lessonlib.models.training.train`: the model's cross-entropy plus
    ``aux_weight`` times the mean load-balancing loss of its MoE layers in that same forward call (plus
    ``z_weight`` times their mean z-loss)."""
    def loss_fn(model, x, y):
        out = model(x, y)
        if not out.moe:
            raise ValueError("the model has no MoE layers: train it without this loss_fn")
        balance = torch.stack([s.balance_loss for s in out.moe]).mean()
        z = torch.stack([s.z_loss for s in out.moe]).mean()
        return out.loss + aux_weight * balance + z_weight * z
    return loss_fn


@torch.no_grad()
def expert_usage_by_task(model: nn.Module, lines_by_task: dict[str, list[str]]) -> torch.Tensor:
    """(n_moe_layers, n_tasks, n_experts): the share of each task's token-expert assignments that go to each
    expert, layer by layer (rows sum to 1). Each task's lines are read as the model saw them in training:
    one stream, each line after a newline, cut into windows of the model's longest sequence."""
    from .corpus import TOKENIZER

    n_experts = model.config.n_experts
    if n_experts < 2:
        raise ValueError("the model has no MoE layers")
    was_training = model.training
    model.eval()
    window = model.config.max_position_embeddings
    usage = torch.zeros(model.config.n_layers, len(lines_by_task), n_experts)
    for t, lines in enumerate(lines_by_task.values()):
        ids = torch.tensor(TOKENIZER.encode("".join("\n" + line for line in lines)))
        for start in range(0, len(ids), window):
            out = model(ids[start:start + window].view(1, -1))
            for i, stats in enumerate(out.moe):
                usage[i, t] += torch.bincount(stats.routing.experts.flatten(), minlength=n_experts)
    model.train(was_training)
    return usage / usage.sum(dim=-1, keepdim=True)

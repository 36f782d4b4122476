"""A top-k mixture-of-experts feed-forward layer: routing, load balancing, capacity, expert usage.

A dense transformer layer sends every token through one MLP. A mixture-of-experts (MoE) layer holds
``n_expert`` MLPs (the experts) and a router, one matrix ``W_r`` (n_embd, n_expert):

    probs = softmax(x @ W_r)                      # (tokens, n_expert)
    experts = the top_k most probable             # (tokens, top_k)
    gates = probs of those, renormalized to sum to 1 (Mixtral), or as they are (Switch Transformer, top-1)
    y = sum over the chosen experts of gate * expert(x)

Each token runs ``top_k`` experts: its FLOPs grow with top_k, the parameters in memory with n_expert.

Dispatch is vectorized: the (token, expert) assignments are sorted by expert and each expert multiplies all
of its tokens in one matrix product, so the Python loop runs over experts, never over tokens. With a
``capacity_factor`` an expert takes at most ``ceil(capacity_factor * tokens * top_k / n_expert)`` assignments
(in token order); the rest are dropped: they add nothing, and the residual stream carries the token on.
Capacity is counted per call, so with a capacity factor a cached decode (one token per call) can keep tokens
that a full forward over the same sequence drops: the two agree exactly only without one.

    layer = MoEMLP(n_embd=128, n_inner=256, n_expert=8, top_k=2)
    y = layer(x)                                   # x: (..., 128)
    layer.last_stats.balance_loss                  # the Switch load-balancing loss of that call (in the graph)
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class Routing(NamedTuple):
    logits: torch.Tensor    # (tokens, n_expert) router logits
    probs: torch.Tensor     # (tokens, n_expert) softmax over all experts
    weights: torch.Tensor   # (tokens, top_k) the gates applied to the chosen experts' outputs
    experts: torch.Tensor   # (tokens, top_k) int64 indices of the chosen experts, most probable first


def route(router_logits: torch.Tensor, k: int, renormalize: bool = True) -> Routing:
    """Choose the ``k`` most probable experts of each token. With ``renormalize`` their probabilities are
    divided by their sum (Mixtral); without, the raw probabilities are the gates (Switch Transformer, whose
    top-1 gate would otherwise always be 1 and give the router no gradient from the model's loss)."""
    if router_logits.dim() != 2:
        raise ValueError(f"router_logits must be (tokens, n_expert), got shape {tuple(router_logits.shape)}")
    n_expert = router_logits.shape[1]
    if not isinstance(k, int) or not 1 <= k <= n_expert:
        raise ValueError(f"k must be a whole number of experts between 1 and n_expert ({n_expert}), got {k!r}")
    probs = torch.softmax(router_logits, dim=-1)
    top, experts = torch.topk(probs, k, dim=-1)
    weights = top / top.sum(dim=-1, keepdim=True) if renormalize else top
    return Routing(router_logits, probs, weights, experts)


def load_balancing_loss(probs: torch.Tensor, experts: torch.Tensor, n_experts: int) -> torch.Tensor:
    """The Switch Transformer's auxiliary loss ``N * sum_i f_i * P_i``: ``f_i`` the share of the tokens x k
    assignments sent to expert i (no gradient: it counts), ``P_i`` the mean router probability of expert i
    (the gradient flows through it). It is exactly 1 when routing is uniform and grows towards ``N`` as the
    routing collapses onto few experts; training adds ``alpha`` times it (alpha = 0.01) to the loss."""
    counts = torch.bincount(experts.flatten(), minlength=n_experts).to(probs.dtype)
    f = counts / experts.numel()
    return n_experts * torch.sum(f * probs.mean(dim=0))


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE's router z-loss: the mean squared log-sum-exp of the router logits. It keeps the logits small,
    which keeps the softmax (and low-precision training) numerically stable."""
    return torch.logsumexp(logits, dim=-1).square().mean()


class ExpertWeights(NamedTuple):
    """An MoE layer's weights as plain tensors (what the cached inference path passes around)."""
    router: torch.Tensor        # (n_embd, n_expert)
    fc_weight: torch.Tensor     # (n_expert, n_embd, n_inner)
    fc_bias: torch.Tensor       # (n_expert, n_inner)
    proj_weight: torch.Tensor   # (n_expert, n_inner, n_embd)
    proj_bias: torch.Tensor     # (n_expert, n_embd)


def capacity(n_tokens: int, top_k: int, n_expert: int, capacity_factor: float) -> int:
    """Assignments one expert may take in a call: the fair share times the factor, rounded up."""
    return math.ceil(capacity_factor * n_tokens * top_k / n_expert)


def _within_capacity(flat_experts: torch.Tensor, n_expert: int, limit: int) -> torch.Tensor:
    """Which assignments (in token order) fit under each expert's limit: an assignment's position among
    those of its expert, counted in order, must be below ``limit``."""
    order = torch.argsort(flat_experts, stable=True)
    counts = torch.bincount(flat_experts, minlength=n_expert)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.empty_like(flat_experts)
    position[order] = torch.arange(len(flat_experts), device=flat_experts.device) - starts[flat_experts[order]]
    return position < limit


def moe_mlp(h: torch.Tensor, w: ExpertWeights, top_k: int, renormalize: bool,
            capacity_factor: float | None = None) -> tuple[torch.Tensor, Routing, torch.Tensor]:
    """The MoE feed-forward block for tokens ``h`` (tokens, n_embd). Returns the output (tokens, n_embd), the
    routing, and which assignments (tokens, top_k) were kept (all, without a capacity factor)."""
    n_tokens = h.shape[0]
    n_expert = w.router.shape[1]
    routing = route(h @ w.router, top_k, renormalize)
    out = torch.zeros_like(h)
    if n_tokens == 1 and capacity_factor is None:
        # One token (a batch-1 decode step): run its k experts directly, reading only their weights.
        for gate, e in zip(routing.weights[0], routing.experts[0].tolist()):
            y = F.gelu(torch.addmm(w.fc_bias[e], h, w.fc_weight[e]), approximate="tanh")
            out = out + gate * torch.addmm(w.proj_bias[e], y, w.proj_weight[e])
        return out, routing, torch.ones_like(routing.experts, dtype=torch.bool)

    flat_experts = routing.experts.flatten()                             # assignment a = token * k + choice
    flat_tokens = torch.arange(n_tokens, device=h.device).repeat_interleave(top_k)
    flat_gates = routing.weights.flatten()
    kept = torch.ones_like(flat_experts, dtype=torch.bool)
    if capacity_factor is not None:
        kept = _within_capacity(flat_experts, n_expert, capacity(n_tokens, top_k, n_expert, capacity_factor))
    order = torch.argsort(flat_experts.masked_fill(~kept, n_expert), stable=True)   # dropped ones sort last
    counts = torch.bincount(flat_experts[kept], minlength=n_expert).tolist()
    start = 0
    for e, count in enumerate(counts):
        if count == 0:
            continue
        chosen = order[start:start + count]
        start += count
        tokens = flat_tokens[chosen]
        y = F.gelu(torch.addmm(w.fc_bias[e], h[tokens], w.fc_weight[e]), approximate="tanh")
        y = torch.addmm(w.proj_bias[e], y, w.proj_weight[e])
        out.index_add_(0, tokens, y * flat_gates[chosen, None])
    return out, routing, kept.view(n_tokens, top_k)


class MoEStats(NamedTuple):
    """What one forward call of an MoE layer did: the auxiliary losses (in the graph, for training), the
    assignments each expert received (detached), and the share of assignments dropped over capacity."""
    balance_loss: torch.Tensor
    z_loss: torch.Tensor
    counts: torch.Tensor
    dropped_fraction: float


class MoEMLP(nn.Module):
    """``n_expert`` GPT-2 MLPs (GELU, width ``n_inner``) behind a top-k router. Weights are stored (in, out)
    like ``tinygpt.Linear``, stacked over experts. ``renormalize`` defaults to ``top_k > 1``. ``proj_std`` is
    the initial scale of the output projections (GPT-2 scales residual projections by depth); ``dropout`` acts on
    the output in training mode, as in TinyGPT's dense MLP."""

    def __init__(self, n_embd: int, n_inner: int, n_expert: int, top_k: int = 1, renormalize: bool | None = None,
                 capacity_factor: float | None = None, proj_std: float = 0.02, dropout: float = 0.0):
        super().__init__()
        check_settings(n_expert, top_k, capacity_factor)
        self.n_expert, self.top_k = n_expert, top_k
        self.renormalize = top_k > 1 if renormalize is None else renormalize
        self.capacity_factor = capacity_factor
        self.router = nn.Parameter(torch.randn(n_embd, n_expert) * 0.02)
        self.fc_weight = nn.Parameter(torch.randn(n_expert, n_embd, n_inner) * 0.02)
        self.fc_bias = nn.Parameter(torch.zeros(n_expert, n_inner))
        self.proj_weight = nn.Parameter(torch.randn(n_expert, n_inner, n_embd) * proj_std)
        self.proj_bias = nn.Parameter(torch.zeros(n_expert, n_embd))
        self.dropout = nn.Dropout(dropout)   # on the output, as TinyGPT's dense MLP
        self.last_routing: Routing | None = None
        self.last_stats: MoEStats | None = None

    def weights(self) -> ExpertWeights:
        return ExpertWeights(self.router, self.fc_weight, self.fc_bias, self.proj_weight, self.proj_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(-1, x.shape[-1])
        out, routing, kept = moe_mlp(h, self.weights(), self.top_k, self.renormalize, self.capacity_factor)
        self.last_routing = routing
        self.last_stats = MoEStats(
            balance_loss=load_balancing_loss(routing.probs, routing.experts, self.n_expert),
            z_loss=router_z_loss(routing.logits),
            counts=torch.bincount(routing.experts[kept], minlength=self.n_expert).detach(),
            dropped_fraction=1 - kept.float().mean().item())
        return self.dropout(out.view(x.shape))


def check_settings(n_expert: int, top_k: int, capacity_factor: float | None) -> None:
    if not isinstance(n_expert, int) or n_expert < 1:
        raise ValueError(f"n_expert must be a positive whole number, got {n_expert!r}")
    if not isinstance(top_k, int) or not 1 <= top_k <= n_expert:
        raise ValueError(f"top_k must be between 1 and n_expert ({n_expert}), got {top_k!r}")
    if capacity_factor is not None and not capacity_factor > 0:
        raise ValueError(f"capacity_factor must be positive (or None for no limit), got {capacity_factor!r}")


def moe_layers(model: nn.Module) -> list[MoEMLP]:
    return [m for m in model.modules() if isinstance(m, MoEMLP)]


def training_loss(aux_weight: float = 0.01, z_weight: float = 0.0):
    """A ``loss_fn(model, x, y)`` for ``lessonlib.training.train``: the model's cross-entropy plus
    ``aux_weight`` times the mean load-balancing loss of its MoE layers (plus ``z_weight`` times the mean
    z-loss)."""
    def loss_fn(model, x, y):
        _, loss = model(x, y)
        layers = moe_layers(model)
        if not layers:
            raise ValueError("the model has no MoE layers: train it without this loss_fn")
        balance = torch.stack([m.last_stats.balance_loss for m in layers]).mean()
        z = torch.stack([m.last_stats.z_loss for m in layers]).mean()
        return loss + aux_weight * balance + z_weight * z
    return loss_fn


@torch.no_grad()
def expert_usage_by_task(model: nn.Module, lines_by_task: dict[str, list[str]]) -> torch.Tensor:
    """(n_moe_layers, n_tasks, n_expert): the share of each task's token-expert assignments that go to each
    expert, layer by layer (rows sum to 1). Each task's lines are read as the model saw them in training:
    one stream, each line after a newline, cut into windows of the model's block size."""
    from .corpus import TOKENIZER

    layers = moe_layers(model)
    if not layers:
        raise ValueError("the model has no MoE layers")
    was_training = model.training
    model.eval()
    block = model.config.block_size
    usage = torch.zeros(len(layers), len(lines_by_task), layers[0].n_expert)
    for t, lines in enumerate(lines_by_task.values()):
        ids = torch.tensor(TOKENIZER.encode("".join("\n" + line for line in lines)))
        for start in range(0, len(ids), block):
            model(ids[start:start + block].view(1, -1))
            for i, layer in enumerate(layers):
                usage[i, t] += torch.bincount(layer.last_routing.experts.flatten(), minlength=layer.n_expert)
    model.train(was_training)
    return usage / usage.sum(dim=-1, keepdim=True)

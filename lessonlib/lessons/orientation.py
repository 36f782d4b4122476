"""Lesson 00: the categories of inference optimization, the deployment challenges learners sort into them, and
a live probe of why token-by-token generation under-uses the hardware.

The answers are not here: they live in the hidden tests of the lesson's notebook.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.timing import min_time

CATEGORIES = {
    "architecture": "Efficient architecture design: change the model's structure so each token needs fewer "
                    "FLOPs or less state (grouped-query or sliding-window attention, mixture-of-experts, "
                    "pruning, smaller distilled designs).",
    "memory": "Memory reduction: keep the same model and its state in fewer bytes (weight quantization, "
              "KV-cache quantization, compression and paging of the cache).",
    "decoding": "Better decoding algorithms: produce the same text with fewer sequential calls of the big "
                "model (speculative decoding, multi-token and parallel decoding).",
    "system": "System-level acceleration: keep the hardware busy and the software lean (batching, request "
              "scheduling, fused kernels, spreading work across devices).",
    "cascade": "Cascading and adaptive computation: spend big-model compute only on inputs that need it "
               "(model cascades, routing, early exit).",
}

# Other ways a learner may name a category; the graders accept these too.
CATEGORY_ALIASES = {
    "efficient architecture design": "architecture", "architecture design": "architecture",
    "efficient architecture": "architecture", "model architecture": "architecture",
    "memory reduction": "memory", "memory reduction techniques": "memory",
    "better decoding algorithms": "decoding", "decoding algorithms": "decoding", "decoding algorithm": "decoding",
    "system-level acceleration": "system", "system level acceleration": "system",
    "system acceleration": "system", "systems": "system",
    "cascading": "cascade", "cascades": "cascade", "cascading inference": "cascade",
    "adaptive computation": "cascade",
}

CHALLENGES = {
    "weights_too_big": "The chosen 13B model answers well, but its 16-bit weights (26 GB) do not fit in the "
                       "16 GB of the target GPU, and there is no budget to train a different model.",
    "one_token_at_a_time": "A 600-token answer needs 600 forward passes of the model, one after another, "
                           "because each token is known only once the previous one has been chosen.",
    "idle_gpu": "Requests arrive one by one and each runs alone: the GPU finishes every small matrix product "
                "quickly and then waits, so its utilisation stays under 10%.",
    "kv_cache_grows": "Long conversations run out of GPU memory: the cached keys and values of all earlier "
                      "turns grow with every token, and the deployed model itself cannot be changed.",
    "easy_queries": "Most user questions are simple look-ups that a small model answers correctly, yet every "
                    "question is sent to the largest model.",
    "too_many_flops": "The team is designing its next model: each generated token must need far fewer FLOPs, "
                      "without shrinking how much knowledge the model can hold.",
    "kernel_overhead": "Profiling shows each token's time goes mostly to launching hundreds of small GPU "
                       "kernels and moving intermediate results between them, not to the arithmetic itself.",
    "long_context_attention": "A model still on the drawing board must read 100k-token documents, and full "
                              "attention's cost grows with the square of the document length.",
}

PRINCIPLE_OPTIONS = {
    "A": "Each category belongs to a different stage of a model's life (architecture at pre-training, decoding "
         "at fine-tuning, systems at deployment); a team uses the one for the stage it is in.",
    "B": "Inference cost is essentially the parameter count; the categories are three routes to fewer "
         "parameters.",
    "C": "The cost has several distinct sources: what the model computes and stores for each token (its "
         "structure), how many sequential steps generation takes (the decoding procedure), and how well the "
         "hardware is kept busy (the system). Each category attacks a different source, so their gains "
         "combine.",
    "D": "Every method trades accuracy for speed; the categories are ordered by how much accuracy each gives "
         "up.",
    "E": "Each category targets a different kind of hardware: architectures for edge devices, decoding for "
         "CPUs, systems for datacenter GPUs.",
}

TRADE_OPTIONS = {
    "A": "It spends extra compute to save memory.",
    "B": "It spends memory (the cache grows with every token) to avoid recomputing the keys and values of the "
         "whole prefix at every step.",
    "C": "It saves both memory and compute, at no cost.",
    "D": "It gives up some accuracy to save compute.",
}


@dataclass(frozen=True)
class SequentialVsParallel:
    n_tokens: int
    parallel_seconds: float
    sequential_seconds: float

    @property
    def slowdown(self) -> float:
        """How many times longer the same tokens take one at a time."""
        return self.sequential_seconds / self.parallel_seconds


def time_sequential_vs_parallel(n_tokens: int = 128, d_model: int = 256, n_layers: int = 4,
                                repeats: int = 3, seed: int = 0) -> SequentialVsParallel:
    """Push ``n_tokens`` token vectors through the same stack of MLP blocks twice: all at once (how a prompt
    is processed) and one at a time (how tokens are generated). Same weights, same FLOPs; best of
    ``repeats`` runs each."""
    import torch

    torch.manual_seed(seed)
    blocks = torch.nn.Sequential(*[
        torch.nn.Sequential(torch.nn.Linear(d_model, 4 * d_model), torch.nn.GELU(),
                            torch.nn.Linear(4 * d_model, d_model)) for _ in range(n_layers)])
    tokens = torch.randn(n_tokens, d_model)

    with torch.inference_mode():
        parallel = min_time(lambda: blocks(tokens), repeats)
        sequential = min_time(lambda: [blocks(tokens[i:i + 1]) for i in range(n_tokens)], repeats)
    return SequentialVsParallel(n_tokens, parallel, sequential)

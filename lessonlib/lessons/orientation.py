"""Lesson 00: the categories of inference optimization, the deployment challenges learners sort into them, and
a live probe of why token-by-token generation under-uses the hardware.

The answers to the matching and multiple-choice questions are not here: they live in the hidden tests of the
lesson's notebook.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.timing import Timing, busy_machine_note, interleaved_timings

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

# Multiple-choice options: alike in length and specificity, each wrong one built on a real misconception
# (tests/test_orientation.py checks the lengths). The notebook shows them in markdown, the same text.
PRINCIPLE_OPTIONS = {
    "A": "Each category belongs to one stage of a model's life: structure is fixed in pre-training, the decoding "
         "algorithm in fine-tuning, the serving system at deployment; a team uses the one for its stage.",
    "B": "Inference cost is set by the parameter count alone: structure, decoding algorithm and serving system "
         "are three separate routes to running fewer parameters for each generated token.",
    "C": "Inference cost has separate sources: the work and state each token needs, the number of sequential "
         "model calls, and how busy the hardware is kept; each category acts on one source, so gains combine.",
    "D": "Every optimization trades accuracy for speed; the categories differ in how much accuracy they give "
         "up, from none for serving-system changes to the most for changes to the model's structure.",
    "E": "Inference cost has separate sources, but they rise and fall together: a fix aimed at any one lowers "
         "the others just as much, so the categories are interchangeable and a team needs only the cheapest.",
}

TRADE_OPTIONS = {
    "A": "It spends extra compute at every step so that the model and its state take less memory.",
    "B": "It spends memory that grows with every token so that each step computes only the new position.",
    "C": "It spends memory on the prompt only; each generated token still recomputes the whole prefix.",
    "D": "It gives up a little accuracy, since stored keys and values go stale as the answer grows.",
}


@dataclass(frozen=True)
class SequentialVsParallel:
    """The same tokens through the same blocks, all at once and one at a time, timed in turns."""
    n_tokens: int
    parallel: Timing
    sequential: Timing
    threads: int

    @property
    def parallel_seconds(self) -> float:
        return self.parallel.seconds

    @property
    def sequential_seconds(self) -> float:
        return self.sequential.seconds

    @property
    def slowdown(self) -> float:
        """How many times longer the same tokens take one at a time."""
        return self.sequential_seconds / self.parallel_seconds

    @property
    def reliable(self) -> bool:
        return self.parallel.reliable and self.sequential.reliable

    def summary(self) -> str:
        """What this run shows, in one paragraph of Markdown: the conclusion follows the numbers, and a
        measurement that repeated runs did not reproduce gives no conclusion at all."""
        numbers = (f"All {self.n_tokens} tokens together: **{self.parallel_seconds * 1e3:.1f} ms**. One at a time: "
                   f"**{self.sequential_seconds * 1e3:.1f} ms** (fastest of {len(self.parallel.samples)} runs "
                   f"each, on {self.threads} CPU thread{'s' if self.threads != 1 else ''}).")
        if not self.reliable:
            return numbers + " " + busy_machine_note("the two orders of the same work",
                                                     (self.parallel, self.sequential))
        if self.slowdown >= 1.25:
            return (numbers + f" One at a time was **{self.slowdown:.1f}x slower** for exactly the same "
                    "arithmetic.")
        if self.slowdown <= 0.8:
            return (numbers + f" On this machine one at a time came out **faster** ({1 / self.slowdown:.1f}x), "
                    "the opposite of what decoding usually sees: this run does not show the effect described "
                    "below.")
        return (numbers + f" The two took about the same time (ratio {self.slowdown:.2f}): this run shows no "
                "clear cost of going one token at a time.")


def time_sequential_vs_parallel(n_tokens: int = 128, d_model: int = 256, n_layers: int = 4, repeats: int = 5,
                                max_repeats: int = 15, threads: int = 1, seed: int = 0) -> SequentialVsParallel:
    """Push ``n_tokens`` token vectors through the same stack of MLP blocks twice: all at once (how a prompt
    is processed) and one at a time (how tokens are generated). Same weights, same FLOPs, the same number of
    threads for both; the two are timed in turns, and more rounds are taken while either's fastest run is
    not reproduced (up to ``max_repeats``)."""
    import torch

    from ..measure.decode import torch_threads

    torch.manual_seed(seed)
    blocks = torch.nn.Sequential(*[
        torch.nn.Sequential(torch.nn.Linear(d_model, 4 * d_model), torch.nn.GELU(),
                            torch.nn.Linear(4 * d_model, d_model)) for _ in range(n_layers)])
    tokens = torch.randn(n_tokens, d_model)

    with torch.inference_mode(), torch_threads(threads):
        timings = interleaved_timings({"parallel": lambda: blocks(tokens),
                                       "sequential": lambda: [blocks(tokens[i:i + 1]) for i in range(n_tokens)]},
                                      repeats, max_repeats=max_repeats)
    return SequentialVsParallel(n_tokens, timings["parallel"], timings["sequential"], threads)

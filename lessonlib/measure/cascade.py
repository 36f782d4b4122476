"""Measured seconds for a cascade's per-query results: each model timed answering the same questions, on this
machine, so that a cascade's cost can be read in time as well as in FLOPs."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from ..core.timing import interleaved_min_times
from ..models.cascade import CascadeResults, question_groups
from ..models.corpus import TOKENIZER
from ..models.decoding import greedy_with_logits


def answer_seconds(models: list, lines: list[str], repeats: int = 3, warmup: int = 1):
    """(M, N) seconds each model takes to answer each question of ``lines``, as :func:`model_results
    <lessonlib.models.cascade.model_results>` answers them: questions of equal lengths as one batch (the right
    answer's length + 1 greedy tokens), the batch's time shared equally by its questions. The models are timed
    in turns on each batch (:func:`lessonlib.core.timing.interleaved_min_times`), so background load slows them
    alike."""
    seconds = np.zeros((len(models), len(lines)))
    for (start, answer_len), indices in question_groups(lines).items():
        prompts = torch.tensor([TOKENIZER.encode("\n" + lines[i][:start]) for i in indices])
        runs = {m: functools.partial(greedy_with_logits, model, prompts, answer_len + 1)
                for m, model in enumerate(models)}
        best = interleaved_min_times(runs, repeats=repeats, warmup=warmup)
        for m in range(len(models)):
            seconds[m, indices] = best[m] / len(indices)
    return seconds


def with_measured_seconds(results: CascadeResults, models: list, lines: list[str], repeats: int = 3
                          ) -> CascadeResults:
    """``results`` (of these models on these lines) with their measured seconds filled in."""
    if len(models) != len(results.names) or len(lines) != results.n_queries:
        raise ValueError(f"results hold {len(results.names)} models x {results.n_queries} queries; got "
                         f"{len(models)} models and {len(lines)} lines: pass the ones the results were computed on")
    return dataclasses.replace(results, seconds=answer_seconds(models, lines, repeats))

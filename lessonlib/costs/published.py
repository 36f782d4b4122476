"""Real models' quality as their published evaluations report it, with the source (``lessonlib/data/
published_quality.json``), for the edge dashboard: the course cannot measure Mixtral or Mistral on a learner's
machine, and the tiny models' measured changes are no forecast for them. A model, or a pruned version of one,
that the source does not evaluate has no figure: ``None``, shown as blank, never a guess."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class PublishedScore:
    value: float          # percent
    metric: str           # "MMLU, 5-shot"
    source: str


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads((resources.files("lessonlib") / "data" / "published_quality.json").read_text())


def published_score(preset: str) -> PublishedScore | None:
    """The published score of the model preset ``preset`` (as named in :mod:`lessonlib.costs.presets`), or None."""
    table = _table()
    value = table["models"].get(preset)
    return None if value is None else PublishedScore(float(value), table["metric"], table["source"])


def published_metric() -> tuple[str, str]:
    """(metric, source) of the published figures."""
    return _table()["metric"], _table()["source"]

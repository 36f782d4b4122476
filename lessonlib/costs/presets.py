"""Real models' shapes, from the ``config.json`` files shipped in ``lessonlib/data/models`` (each with its
source), as :class:`~lessonlib.costs.spec.ModelSpec` objects."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from .spec import ModelSpec


@lru_cache(maxsize=None)
def _preset_configs() -> dict[str, dict[str, Any]]:
    folder = resources.files("lessonlib") / "data" / "models"
    configs = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            config = json.loads(entry.read_text())
            configs[config["_name"]] = config
    return configs


@lru_cache(maxsize=None)
def model_preset_names() -> tuple[str, ...]:
    """Names of the shipped presets, smallest model first."""
    return tuple(sorted(_preset_configs(), key=lambda n: model_preset(n).n_params()))


def model_preset_label(name: str) -> str:
    """The human-readable name of a preset ("Llama-2-7B")."""
    return model_preset(name).name


def model_preset(name: str) -> ModelSpec:
    """A real model's shape, from the config.json shipped in lessonlib/data/models (with its source)."""
    configs = _preset_configs()
    if name not in configs:
        raise KeyError(f"no model preset {name!r}; choose one of: {', '.join(model_preset_names())}")
    return ModelSpec.from_hf_config(configs[name], name=configs[name].get("_label", name))

"""Saving and loading TinyGPT checkpoints, and the course's shipped ones (``lessonlib/data/checkpoints``).

A checkpoint holds the weights in fp16 (half the bytes), the config as a dict, and the report its training
script wrote. Checkpoints saved before the package settled on one vocabulary for model shapes use nanoGPT's
config names (``n_layer``, ``n_embd``, ``block_size``, ...); :func:`config_from_dict` reads both.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from .tinygpt import TinyGPT, TinyGPTConfig

# Config keys of checkpoints written before the rename, and their names now.
LEGACY_CONFIG_NAMES = {
    "block_size": "max_position_embeddings", "n_layer": "n_layers", "n_head": "n_heads",
    "n_kv_head": "n_kv_heads", "n_embd": "hidden_size", "n_inner": "intermediate_size",
    "n_expert": "n_experts", "expert_top_k": "experts_per_token",
}


def config_from_dict(saved: dict) -> TinyGPTConfig:
    """A config from a checkpoint's dict, in today's names or the legacy ones (where ``n_expert = 0`` meant a
    dense model: it is one expert now)."""
    config = {LEGACY_CONFIG_NAMES.get(key, key): value for key, value in saved.items()}
    if config.get("n_experts") == 0:
        config["n_experts"] = 1
    return TinyGPTConfig(**config)


def save_checkpoint(model: TinyGPT, path: str | Path, report: dict) -> None:
    """Weights in fp16, the config and a report."""
    state = {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()}
    torch.save({"config": asdict(model.config), "state_dict": state, "report": report}, path)


def load_checkpoint(path: str | Path) -> tuple[TinyGPT, dict]:
    """An fp32 model in eval mode, and the report its training script wrote."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    model = TinyGPT(config_from_dict(data["config"]))
    model.load_state_dict({k: v.to(torch.float32) for k, v in data["state_dict"].items()})
    return model.eval(), data["report"]


def checkpoint_path(name: str) -> Path:
    """Where a shipped checkpoint lives (lessonlib/data/checkpoints/<name>.pt)."""
    path = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / f"{name}.pt"
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.pt"))
        raise FileNotFoundError(f"no checkpoint {name!r}; shipped: {', '.join(available) or 'none'}; "
                                f"train it with `python scripts/train_tiny_models.py {name}`")
    return path


def load_pretrained(name: str = "tiny-gpt") -> tuple[TinyGPT, dict]:
    """A shipped checkpoint by name: (fp32 model in eval mode, its training report)."""
    return load_checkpoint(checkpoint_path(name))


def load_report(name: str) -> dict:
    """A shipped checkpoint's training report alone (the <name>.json beside its weights), without loading them."""
    return json.loads(checkpoint_path(name).with_suffix(".json").read_text())


def load_answers(name: str) -> dict[tuple[str, str], tuple[bool, ...]]:
    """Which of its report's questions the shipped checkpoint ``name`` answers exactly right: (task, difficulty)
    -> one bool per question of :func:`lessonlib.models.evaluation.report_questions`, in order (written by
    ``python scripts/train_tiny_models.py --answers``). Two models' answers compare question by question."""
    path = checkpoint_path(name).parent / "answers" / f"{name}.json"
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.json"))
        raise FileNotFoundError(f"no stored answers for {name!r}; stored: {', '.join(available) or 'none'}; write "
                                f"them with `python scripts/train_tiny_models.py --answers {name}`")
    right = json.loads(path.read_text())["right"]
    return {(task, level): tuple(bit == "1" for bit in bits) for task, by_level in right.items()
            for level, bits in by_level.items()}

"""Train the course's tiny models and write lessonlib/data/checkpoints/<name>.pt and <name>.json.

    python scripts/train_tiny_models.py tiny-gpt

Deterministic on a given machine (fixed seeds, the synthetic corpus of lessonlib.corpus). The JSON report
records the validation loss that tests/test_checkpoints.py checks the shipped checkpoint still reaches.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from lessonlib import corpus
from lessonlib.tinygpt import TinyGPT, TinyGPTConfig, load_checkpoint, save_checkpoint
from lessonlib.training import evaluate, train

OUT = Path(__file__).resolve().parents[1] / "lessonlib" / "data" / "checkpoints"
VALIDATION = dict(n_batches=8, batch_size=16, block_size=256)   # the fixed validation batches

MODELS = {
    "tiny-gpt": dict(config=dict(n_layer=4, n_head=4, n_embd=128, block_size=256),
                     train=dict(steps=2500, batch_size=16, block_size=256, lr=3e-3, warmup=100, seed=0)),
}


def validation_batches():
    return corpus.split("validation").fixed_batches(**VALIDATION)


def per_task_loss(model: TinyGPT) -> dict[str, float]:
    """Validation loss on lines of one task at a time (a fixed 400-line stream per task)."""
    out = {}
    for task in corpus.TASKS:
        text = "\n".join(corpus.make_lines(400, corpus.VALIDATION_SEED + 1, tasks=[task])) + "\n"
        tokens = torch.tensor(corpus.TOKENIZER.encode(text))
        batches = corpus.Split(tokens).fixed_batches(2, 8, 256)
        out[corpus.TASKS[task]] = round(evaluate(model, batches), 4)
    return out


def train_model(name: str) -> dict:
    spec = MODELS[name]
    torch.manual_seed(spec["train"]["seed"])
    model = TinyGPT(TinyGPTConfig(vocab_size=corpus.TOKENIZER.vocab_size, **spec["config"]))
    history = train(model, corpus.split("train"), validation_batches(), **spec["train"])
    report = {
        "name": name, "config": spec["config"], "training": spec["train"], "n_params": model.n_params(),
        "train_seconds": round(history.seconds, 1), "final_train_loss": round(history.train_loss[-1], 4),
        "validation": VALIDATION, "val_curve": list(zip(history.val_steps, history.val_loss)),
        "torch": str(torch.__version__), "machine": platform.machine(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.pt"
    save_checkpoint(model, path, report)
    # What ships is the fp16 checkpoint: measure the loss of exactly that, as a learner will load it.
    shipped, _ = load_checkpoint(path)
    report["validation_loss"] = evaluate(shipped, validation_batches())
    report["validation_loss_per_task"] = per_task_loss(shipped)
    save_checkpoint(shipped, path, report)
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(MODELS), choices=list(MODELS))
    for name in parser.parse_args().names:
        report = train_model(name)
        print(json.dumps({k: report[k] for k in ("name", "n_params", "train_seconds", "validation_loss")}))

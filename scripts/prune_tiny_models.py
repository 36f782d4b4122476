"""Prune the shipped tiny-gpt, fine-tune each pruned model briefly, and write
lessonlib/data/checkpoints/<name>.pt and <name>.json.

    python scripts/prune_tiny_models.py                          # every recipe, into the shipped files
    python scripts/prune_tiny_models.py tiny-gpt-2of4 --out /tmp/x   # e.g. to check a re-run reproduces one

Deterministic on a given machine: the pruning is a function of tiny-gpt's weights (ties broken by position),
and fine-tuning uses fixed seeds and the data tiny-gpt was trained on (corpus.split("train"), validated on
train_tiny_models' fixed batches) at a lower learning rate. Unstructured checkpoints are stored dense: their
zeros stay exactly zero in fp16. The JSON report (also inside the .pt) records the recipe, the sparsity, the
validation loss right after pruning and after fine-tuning, and per task the answer loss and exact match, in
the same form as train_tiny_models' reports so that the same checks apply.
"""
from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path

import torch
import train_tiny_models

from lessonlib.models import corpus
from lessonlib.models.checkpoints import load_checkpoint, load_pretrained, save_checkpoint
from lessonlib.models.evaluation import evaluate
from lessonlib.models.pruning import (
    apply_masks,
    fine_tune,
    magnitude_masks,
    n_m_masks,
    prunable_weights,
    sparsity,
    structured_prune,
)

OUT = train_tiny_models.OUT
SOURCE = "tiny-gpt"
# The same recipe that continues tiny-gpt as the control (train_tiny_models.UPTRAIN): a tenth of tiny-gpt's
# step count, at a third of its peak learning rate (3e-3): enough to recover most of what pruning lost without
# moving far from the pruned weights. (3e-4 recovered markedly less in 300 steps.)
FINE_TUNE = train_tiny_models.UPTRAIN

RECIPES = {
    "tiny-gpt-magnitude-50": dict(method="magnitude", sparsity=0.5, scope="global"),
    "tiny-gpt-magnitude-80": dict(method="magnitude", sparsity=0.8, scope="global"),
    "tiny-gpt-2of4": dict(method="n:m", n=2, m=4),
    "tiny-gpt-structured-50": dict(method="structured", mlp_keep=0.5, heads_keep=2),
}


def prune(model, recipe: dict):
    """(pruned model, masks to keep during fine-tuning): masks are empty for the compacted structured model,
    which is simply smaller and dense."""
    args = {k: v for k, v in recipe.items() if k != "method"}
    if recipe["method"] == "structured":
        return structured_prune(model, **args), {}
    masks = magnitude_masks(model, **args) if recipe["method"] == "magnitude" else n_m_masks(model, **args)
    apply_masks(model, masks)
    return model, masks


def prune_model(name: str, out: Path = OUT) -> dict:
    recipe = RECIPES[name]
    source, source_report = load_pretrained(SOURCE)
    n_prunable_source = sum(w.numel() for w in prunable_weights(source).values())
    val = train_tiny_models.validation_batches()
    model, masks = prune(source, recipe)
    loss_pruned = evaluate(model, val)
    history = fine_tune(model, masks, corpus.split("train"), val, progress=False, **FINE_TUNE)
    n_prunable = sum(w.numel() for w in prunable_weights(model).values())
    report = {
        "name": name, "source": SOURCE, "recipe": recipe, "fine_tune": FINE_TUNE, "config": asdict(model.config),
        "n_params": model.n_params(),
        # Of the source's block matrices: removed by compaction (structured) or zeroed (unstructured).
        "prunable_params_removed": round(1 - n_prunable * (1 - sparsity(model)) / n_prunable_source, 6),
        "source_validation_loss": source_report["validation_loss"],
        "validation_loss_after_pruning": round(loss_pruned, 4),
        "fine_tune_seconds": round(history.seconds, 1),
        "val_curve": [[s, round(v, 4)] for s, v in zip(history.val_steps, history.val_loss, strict=True)],
        "validation": train_tiny_models.VALIDATION,
        "torch": str(torch.__version__), "machine": platform.machine(), "threads": torch.get_num_threads(),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    save_checkpoint(model, path, report)
    # What ships is the fp16 checkpoint: measure exactly that, as a learner will load it.
    shipped, _ = load_checkpoint(path)
    report["sparsity"] = sparsity(shipped)                     # zeros among the block matrices, as shipped
    report["n_zero_weights"] = sum(int((w == 0).sum()) for w in prunable_weights(shipped).values())
    report["validation_loss"] = evaluate(shipped, val)
    report.update(train_tiny_models.per_task_scores(shipped))
    save_checkpoint(shipped, path, report)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # No choices=: Python 3.11's argparse checks an empty nargs="*" list against them and refuses it.
    parser.add_argument("names", nargs="*", help=f"default: every recipe ({', '.join(RECIPES)})")
    parser.add_argument("--out", type=Path, default=OUT, help="directory for <name>.pt and <name>.json")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in RECIPES]
    if unknown:
        parser.error(f"no recipe {unknown[0]!r}; recipes: {', '.join(RECIPES)}")
    for name in args.names or list(RECIPES):
        report = prune_model(name, args.out)
        print(json.dumps({k: report[k] for k in ("name", "n_params", "sparsity", "validation_loss_after_pruning",
                                                 "validation_loss", "fine_tune_seconds")}), flush=True)
        print(json.dumps(report["exact_match_per_task"]), flush=True)

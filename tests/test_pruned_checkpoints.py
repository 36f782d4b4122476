"""The shipped pruned checkpoints (scripts/prune_tiny_models.py): every recipe is shipped, its zeros survived
fp16 exactly, in the pattern its recipe promises, and it reaches the losses and accuracies its report records."""
import json
import sys
from pathlib import Path

import pytest

from lessonlib.models.checkpoints import checkpoint_path, load_pretrained
from lessonlib.models.evaluation import evaluate, exact_match
from lessonlib.models.pruning import is_n_m, prunable_weights, sparsity

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import prune_tiny_models  # noqa: E402  (the script that wrote them: its recipes, validation data and task lines)
import train_tiny_models  # noqa: E402

PRUNED = list(prune_tiny_models.RECIPES)


def zeros(model):
    return sum(int((w == 0).sum()) for w in prunable_weights(model).values())


@pytest.mark.parametrize("name", PRUNED)
def test_pruned_checkpoint_is_shipped_with_its_report_and_is_small(name):
    path = checkpoint_path(name)
    _, report = load_pretrained(name)
    assert report == json.loads(path.with_suffix(".json").read_text())
    assert report["recipe"] == prune_tiny_models.RECIPES[name]
    assert path.stat().st_size < 1.75e6


@pytest.mark.parametrize("name", PRUNED)
def test_pruned_checkpoint_has_its_recorded_sparsity_exactly(name):
    model, report = load_pretrained(name)
    recipe = report["recipe"]
    n_prunable = sum(w.numel() for w in prunable_weights(model).values())
    assert model.n_params() == report["n_params"]
    assert zeros(model) == report["n_zero_weights"] and sparsity(model) == report["sparsity"]
    if recipe["method"] == "magnitude":   # fine-tuning kept every pruned weight at exactly 0, fp16 kept them too
        assert zeros(model) == round(recipe["sparsity"] * n_prunable)
    elif recipe["method"] == "n:m":
        assert zeros(model) == n_prunable // 2
        assert all(is_n_m(w != 0, recipe["n"], recipe["m"]) for w in prunable_weights(model).values())
    else:                                 # compacted: smaller and dense
        source, _ = load_pretrained(prune_tiny_models.SOURCE)
        assert (model.config.n_heads, model.config.n_kv_heads, model.config.head_dim) == (2, 2, 32)
        assert model.config.intermediate_size == source.config.intermediate_size // 2
        assert model.n_params() < 0.55 * source.n_params() and zeros(model) == report["n_zero_weights"] == 0
    assert report["prunable_params_removed"] == pytest.approx(
        recipe.get("sparsity", 0.5), abs=1e-3)   # 2:4 and structured-50 remove half


@pytest.mark.parametrize("name", PRUNED)
def test_pruned_checkpoint_reaches_its_recorded_validation_loss_and_accuracy(name):
    model, report = load_pretrained(name)
    # Same data, same weights: only the float summation order can differ between machines. Tolerance rel 1e-3.
    assert evaluate(model, train_tiny_models.validation_batches()) == pytest.approx(report["validation_loss"],
                                                                                   rel=1e-3)
    assert report["validation_loss"] < report["validation_loss_after_pruning"]   # fine-tuning recovered some
    tag = {"copy": "c", "reverse": "r", "sort": "s"}
    for task, letter in tag.items():
        # Greedy answers: a near-tie flipped by summation order may change a few of 200 (tolerance 0.02).
        assert exact_match(model, train_tiny_models.task_lines(letter)) == pytest.approx(
            report["exact_match_per_task"][task]["mixed"], abs=0.02), task

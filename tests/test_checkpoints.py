"""The shipped checkpoints: they load fast, reach the validation loss and the accuracies their training script
reported, and tiny-gpt answers the easy tasks."""
import json
import sys
import time
from pathlib import Path

import pytest

from lessonlib.models import corpus, moe
from lessonlib.models.checkpoints import checkpoint_path, load_pretrained
from lessonlib.models.cost_spec import spec_of
from lessonlib.models.evaluation import answer_loss, evaluate, exact_match

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import prune_tiny_models  # noqa: E402
import train_tiny_models  # noqa: E402  (the script that wrote the reports: same validation data, same task lines)

CHECKPOINTS = checkpoint_path("tiny-gpt").parent
SHIPPED = sorted(p.stem for p in CHECKPOINTS.glob("*.pt"))


def test_every_checkpoint_has_its_report_and_a_recipe():
    assert "tiny-gpt" in SHIPPED
    assert sorted(p.stem for p in CHECKPOINTS.glob("*.json")) == SHIPPED
    assert set(SHIPPED) <= set(train_tiny_models.MODELS) | set(prune_tiny_models.RECIPES)


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_loads_fast_and_reaches_its_reported_validation_loss(name, capsys):
    start = time.perf_counter()
    model, report = load_pretrained(name)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n{name}: loaded in {seconds * 1e3:.0f} ms")
    assert seconds < 5
    assert report == json.loads((CHECKPOINTS / f"{name}.json").read_text())
    assert model.n_params() == report["n_params"]
    # Same data, same weights: only the float summation order can differ between machines. Tolerance rel 1e-3.
    assert evaluate(model, train_tiny_models.validation_batches()) == pytest.approx(report["validation_loss"],
                                                                                   rel=1e-3)


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_reaches_its_reported_answer_losses_and_accuracies(name):
    model, report = load_pretrained(name)
    tag = {task: tag for tag, task in corpus.TASKS.items()}
    for task, loss in report["answer_loss_per_task"].items():
        lines = train_tiny_models.task_lines(tag[task])
        assert answer_loss(model, lines) == pytest.approx(loss, rel=1e-2, abs=1e-3), task
        # Greedy answers: a near-tie flipped by summation order may change a few of 200 (tolerance 0.02).
        assert exact_match(model, lines) == pytest.approx(report["exact_match_per_task"][task]["mixed"], abs=0.02)


def test_checkpoints_are_small():
    total = sum(p.stat().st_size for p in CHECKPOINTS.glob("*.pt"))
    # fp16 weights: tiny-gpt-shaped models (its pruned, continued and attention variants) ~1.7 MB each,
    # tiny-moe ~4.8 MB. A clone of the course stays a few tens of MB.
    assert total < 32 * 2**20, f"{total / 2**20:.1f} MiB of checkpoints"
    assert max(p.stat().st_size for p in CHECKPOINTS.glob("*.pt")) < 8 * 2**20


def test_tiny_gpt_answers_easy_questions_and_most_mixed_ones():
    """Threshold: at least 95% of 60 easy copy/reverse/sort questions, and 90% of 60 mixed-length ones."""
    model, _ = load_pretrained("tiny-gpt")
    assert exact_match(model, corpus.make_lines(60, seed=99, tasks="crs", difficulty="easy")) >= 0.95
    assert exact_match(model, corpus.make_lines(60, seed=99, tasks="crs", difficulty="mixed")) >= 0.90


def test_tiny_moe_is_shipped_with_tiny_gpts_active_parameters_and_its_recorded_expert_usage():
    """tiny-moe's two active experts per layer hold as many MLP weights as tiny-gpt's MLP (plus a router and one
    more output bias per layer); its recorded usage by task is what the shipped weights route (tolerance 0.005,
    the report rounds to 0.001)."""
    assert "tiny-moe" in SHIPPED
    model, report = load_pretrained("tiny-moe")
    dense, _ = load_pretrained("tiny-gpt")
    spec = spec_of(model)
    assert spec.n_params() == report["n_params"] and spec.n_active_params() == dense.n_params() + 4 * (128 + 128 * 8)
    lines = {name: train_tiny_models.task_lines(task) for task, name in corpus.TASKS.items()}
    usage = moe.expert_usage_by_task(model, lines)
    for t, name in enumerate(lines):
        assert usage[:, t].tolist() == [pytest.approx(row, abs=5e-3) for row in report["expert_usage_by_task"][name]]

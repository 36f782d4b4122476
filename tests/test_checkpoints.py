"""The shipped checkpoints: they load fast, reach the validation loss their training script reported, and
answer the easy tasks."""
import json
import time

import pytest
import torch

from lessonlib import corpus
from lessonlib.tinygpt import checkpoint_path, load_pretrained
from lessonlib.training import evaluate

SHIPPED = sorted(p.stem for p in checkpoint_path("tiny-gpt").parent.glob("*.pt"))


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_loads_and_reaches_its_reported_validation_loss(name, capsys):
    start = time.perf_counter()
    model, report = load_pretrained(name)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n{name}: loaded in {seconds * 1e3:.0f} ms")
    assert seconds < 5
    assert json.loads(json.dumps(report)) == json.loads(checkpoint_path(name).with_suffix(".json").read_text())
    batches = corpus.split("validation").fixed_batches(**report["validation"])
    # Same data, same weights: only float summation order can differ between machines.
    assert evaluate(model, batches) == pytest.approx(report["validation_loss"], rel=1e-3)


def test_checkpoints_are_small():
    total = sum(p.stat().st_size for p in checkpoint_path("tiny-gpt").parent.glob("*.pt"))
    assert total < 8 * 2**20, f"{total / 2**20:.1f} MiB of checkpoints"


def test_tiny_gpt_answers_most_easy_questions():
    model, _ = load_pretrained("tiny-gpt")
    lines = corpus.make_lines(40, seed=99, tasks="crs", difficulty="easy")
    right = 0
    for line in lines:
        prompt = "\n" + line[:line.index(">") + 1]
        ids = torch.tensor([corpus.TOKENIZER.encode(prompt)])
        out = corpus.TOKENIZER.decode(model.generate(ids, 12)[0, ids.shape[1]:].tolist())
        right += corpus.check_answer(prompt.strip() + out.split("\n")[0])
    assert right >= 30, f"only {right}/40 easy copy/reverse/sort answers right"

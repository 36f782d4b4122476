"""Train the course's tiny models and write lessonlib/data/checkpoints/<name>.pt and <name>.json.

    python scripts/train_tiny_models.py tiny-gpt              # writes the shipped files
    python scripts/train_tiny_models.py tiny-gpt --out /tmp/x  # e.g. to check a re-run reproduces them
    python scripts/train_tiny_models.py tiny-gpt-large --steps 20 --out /tmp/x   # a smoke run of a recipe
    python scripts/train_tiny_models.py tiny-gpt-exits        # exit heads on the shipped tiny-gpt
    python scripts/train_tiny_models.py --answers tiny-gpt    # no training: answers/<name>.json (see write_answers)

Deterministic on a given machine (fixed seeds, the synthetic corpus of lessonlib.models.corpus): a re-run writes the
same weights and the same numbers. The JSON report (also stored inside the .pt) records what
tests/test_checkpoints.py checks the shipped checkpoint still reaches: the loss on the fixed validation
batches, and per task the loss and the exact-match accuracy of the answers.
"""
from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path

import torch

from lessonlib.models import corpus, early_exit, moe
from lessonlib.models.checkpoints import load_checkpoint, load_pretrained, save_checkpoint
from lessonlib.models.conversion import to_grouped_query
from lessonlib.models.evaluation import (
    REPORT_QUESTIONS,
    REPORT_SEED,
    answer_loss,
    answers_right,
    evaluate,
    exact_match,
    report_questions,
)
from lessonlib.models.tinygpt import TinyGPT, TinyGPTConfig
from lessonlib.models.training import train

OUT = Path(__file__).resolve().parents[1] / "lessonlib" / "data" / "checkpoints"
VALIDATION = dict(n_batches=8, batch_size=16, seq_len=256)   # the fixed validation batches
TASK_LINES, TASK_SEED = REPORT_QUESTIONS, REPORT_SEED          # per-task scoring: fixed lines per task

SHAPE = dict(n_layers=4, n_heads=4, hidden_size=128, max_position_embeddings=256)   # tiny-gpt's
TRAIN = dict(steps=2500, batch_size=16, seq_len=256, lr=3e-3, warmup=100, seed=0)
# Continuing a trained model (after pooling its KV heads, or as the control that only trains longer): a tenth of
# the steps at a third of the peak learning rate, the recipe scripts/prune_tiny_models.py fine-tunes with.
UPTRAIN = dict(steps=300, batch_size=16, seq_len=256, lr=1e-3, warmup=30, seed=1, eval_every=100)

MODELS = {
    "tiny-gpt": dict(config=SHAPE, train=TRAIN),
    # Lesson 03a: tiny-gpt's shape with every MLP a mixture of 8 experts of width 256, top-2 (Mixtral style):
    # the same active MLP parameters per token as tiny-gpt's width-512 MLP, 4x the MLP parameters in memory.
    # Trained like tiny-gpt, plus the Switch load-balancing loss (alpha = 0.01).
    "tiny-moe": dict(config=dict(n_layers=4, n_heads=4, hidden_size=128, max_position_embeddings=256,
                                 intermediate_size=256, n_experts=8, experts_per_token=2),
                     train=dict(steps=2500, batch_size=16, seq_len=256, lr=3e-3, warmup=100, seed=0),
                     aux_loss_weight=0.01),
    # Lesson 02: tiny-gpt's shape with another attention, at the same parameter budget (within 0.1%): fewer
    # key/value heads free attention weights, which widen the MLP.
    "tiny-gqa": dict(config=SHAPE | dict(n_kv_heads=2, intermediate_size=576), train=TRAIN),
    "tiny-mqa": dict(config=SHAPE | dict(n_kv_heads=1, intermediate_size=608), train=TRAIN),
    # A window of 16 positions: shorter than the longest questions' answers reach back (a 10-letter reverse
    # needs 20), so it shows what a window that does not cover the dependencies costs.
    "tiny-window": dict(config=SHAPE | dict(sliding_window=16), train=TRAIN),
    # Latent attention caching 32 values per position and layer (multi-head caches 256: K and V of 4 heads x 32).
    "tiny-latent": dict(config=SHAPE | dict(kv_lora_rank=32, intermediate_size=592), train=TRAIN),
    # tiny-gpt trained 300 steps more: the control for every model made from tiny-gpt by further training.
    "tiny-gpt-continued": dict(start_from="tiny-gpt", train=UPTRAIN),
    # tiny-gpt's 4 key/value heads mean-pooled into 2 (GQA's conversion recipe), then uptrained like the control.
    "tiny-gpt-pooled-gqa": dict(start_from="tiny-gpt", convert=dict(n_kv_heads=2), train=UPTRAIN),
    # Lesson 04's family for cascades and speculative decoding: tiny-gpt's data at three sizes. The small one
    # (2 layers x 64, 0.12M parameters, 0.14x tiny-gpt's, tiny-gpt's steps) is cheap and gets many easy questions
    # right: the cascade's first stage and the speculative draft. (A 3 x 96 small, 0.36M parameters, trained the
    # same way, scored 71.6% against tiny-gpt's 74.2% when the two reports' per-task accuracies are weighted as
    # lesson 04's traffic: it would leave the medium model nothing to add.) The large one (6 layers x 192, 6 heads
    # of 32, 2.7M parameters, 3.3x tiny-gpt's) has the depth and width that long sorts and addition's carries
    # need, a lower peak learning rate (2e-3, as wider models want) and twice tiny-gpt's steps (about 53 minutes
    # on 2 cores): at tiny-gpt's 2500 steps it was still under-trained, no more accurate than tiny-gpt (69.7%
    # against 71.9% of lesson 04's traffic) and at 16% on easy additions; at 5000 it answers 86% of the
    # traffic's additions.
    "tiny-gpt-small": dict(config=dict(n_layers=2, n_heads=4, hidden_size=64, max_position_embeddings=256),
                           train=TRAIN),
    "tiny-gpt-large": dict(config=dict(n_layers=6, n_heads=6, hidden_size=192, max_position_embeddings=256),
                           train=TRAIN | dict(steps=5000, lr=2e-3)),
}

# Lesson 04's early exit: heads after blocks 1, 2 and 3 of tiny-gpt (a LayerNorm each, the model frozen), written
# to lessonlib/data/checkpoints/exit_heads/<name>.pt and .json.
EXIT_HEADS = {
    "tiny-gpt-exits": dict(start_from="tiny-gpt", layers=[1, 2, 3],
                           train=dict(steps=300, batch_size=16, seq_len=256, lr=3e-3, warmup=30, seed=0,
                                      eval_every=100)),
}
EXIT_THRESHOLDS = [1.01, 0.95, 0.9, 0.8, 0.6]   # early exit's report: quality and layers used at these


def validation_batches():
    return corpus.split("validation").fixed_batches(**VALIDATION)


def task_lines(task: str, difficulty: str = "mixed") -> list[str]:
    return report_questions(task, difficulty)


def per_task_scores(model: TinyGPT) -> dict:
    """Per task: loss on whole lines (questions are random letters, so this stays high), loss on the answers
    alone, and exact-match accuracy at each difficulty (the text task has no answer to score)."""
    line_loss, answers, accuracy = {}, {}, {}
    for task, name in corpus.TASKS.items():
        batches = corpus.stream(task_lines(task)).fixed_batches(2, 8, 256)
        line_loss[name] = round(evaluate(model, batches), 4)
        if task != "t":
            answers[name] = round(answer_loss(model, task_lines(task)), 4)
            accuracy[name] = {level: exact_match(model, task_lines(task, level)) for level in ("easy", "mixed", "hard")}
    return {"validation_loss_per_task": line_loss, "answer_loss_per_task": answers,
            "exact_match_per_task": accuracy}


def starting_model(spec: dict) -> tuple[TinyGPT, dict]:
    """A fresh model of the recipe's config, or a shipped one (pooled into fewer KV heads if the recipe says so),
    and what the report should record about the start."""
    if "start_from" not in spec:
        torch.manual_seed(spec["train"]["seed"])
        return TinyGPT(TinyGPTConfig(vocab_size=corpus.TOKENIZER.vocab_size, **spec["config"])), {}
    model, source_report = load_pretrained(spec["start_from"])
    start = {"start_from": spec["start_from"], "source_validation_loss": source_report["validation_loss"]}
    if "convert" in spec:
        model = to_grouped_query(model, **spec["convert"])
        start["convert"] = spec["convert"]
        start["validation_loss_before_uptraining"] = round(evaluate(model, validation_batches()), 4)
    return model, start


def train_model(name: str, out: Path = OUT) -> dict:
    spec = MODELS[name]
    model, start = starting_model(spec)
    loss_fn = moe.training_loss(spec["aux_loss_weight"]) if "aux_loss_weight" in spec else None
    history = train(model, corpus.split("train"), validation_batches(), **spec["train"], loss_fn=loss_fn)
    config = {k: v for k, v in asdict(model.config).items() if k != "vocab_size"} if start else spec["config"]
    report = {
        "name": name, **start, "config": config, "training": spec["train"], "n_params": model.n_params(),
        "train_seconds": round(history.seconds, 1), "final_train_loss": round(history.train_loss[-1], 4),
        "validation": VALIDATION,
        "val_curve": [[s, round(v, 4)] for s, v in zip(history.val_steps, history.val_loss, strict=True)],
        "torch": str(torch.__version__), "machine": platform.machine(), "threads": torch.get_num_threads(),
    }
    if "aux_loss_weight" in spec:
        report["aux_loss_weight"] = spec["aux_loss_weight"]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    save_checkpoint(model, path, report)
    # What ships is the fp16 checkpoint: measure exactly that, as a learner will load it.
    shipped, _ = load_checkpoint(path)
    report["validation_loss"] = evaluate(shipped, validation_batches())
    report.update(per_task_scores(shipped))
    if shipped.config.is_moe:
        usage = moe.expert_usage_by_task(shipped, {name: task_lines(task) for task, name in corpus.TASKS.items()})
        report["expert_usage_by_task"] = {name: [[round(x, 3) for x in row] for row in usage[:, t].tolist()]
                                          for t, name in enumerate(corpus.TASKS.values())}
    save_checkpoint(shipped, path, report)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def train_exit_heads_recipe(name: str, out: Path = OUT / "exit_heads", steps: int | None = None) -> dict:
    """Train a recipe of EXIT_HEADS on its shipped base model and write <name>.pt and <name>.json under ``out``."""
    spec = EXIT_HEADS[name]
    settings = spec["train"] | ({"steps": steps} if steps else {})
    model, _ = load_pretrained(spec["start_from"])
    heads, history = early_exit.train_exit_heads(model, spec["layers"], **settings,
                                                 val_batches=validation_batches())
    lines = [line for task in "crsa" for line in task_lines(task)[:50]]
    report = {
        "name": name, "start_from": spec["start_from"], "layers": spec["layers"], "training": settings,
        "train_seconds": round(history.seconds, 1),
        "val_curve": [[s, round(v, 4)] for s, v in zip(history.val_steps, history.val_loss, strict=True)],
        "validation_loss_per_exit": {str(k): round(v, 4) for k, v in
                                     early_exit.exit_losses(model, heads, validation_batches()).items()},
        "early_exit": [vars(point) for point in early_exit.early_exit_report(model, heads, lines, EXIT_THRESHOLDS)],
        "torch": str(torch.__version__), "machine": platform.machine(), "threads": torch.get_num_threads(),
    }
    out.mkdir(parents=True, exist_ok=True)
    early_exit.save_exit_heads(heads, out / f"{name}.pt", report)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# Lesson 02 compares models question by question (a paired comparison: both models answer the same questions).
ANSWERED = ["tiny-gpt", "tiny-gqa", "tiny-mqa", "tiny-window", "tiny-latent", "tiny-gpt-continued",
            "tiny-gpt-pooled-gqa"]


def write_answers(name: str, out: Path = OUT / "answers") -> dict:
    """Which of its report's questions the shipped checkpoint ``name`` answers exactly right, question by question:
    out/<name>.json holds, per task and difficulty, one character per question ("1" right, "0" wrong), in the
    order of lessonlib.models.evaluation.report_questions. Its shares are the report's exact-match accuracies."""
    model, report = load_pretrained(name)
    right = {corpus.TASKS[tag]: {level: "".join("1" if r else "0" for r in answers_right(model, task_lines(tag, level)))
                                 for level in corpus.DIFFICULTIES}
             for tag in "crsa"}
    answers = {"name": name, "questions_per_task": TASK_LINES, "seed": TASK_SEED, "right": right,
               "torch": str(torch.__version__), "machine": platform.machine(), "threads": torch.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(answers, indent=1) + "\n")
    return answers


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"models to train (default: all of {', '.join([*MODELS, *EXIT_HEADS])})")
    parser.add_argument("--out", type=Path, default=None, help="directory for <name>.pt and <name>.json "
                        "(default: the shipped checkpoints, exit heads in their exit_heads/ folder)")
    parser.add_argument("--steps", type=int, default=None,
                        help="override every recipe's training steps, for a smoke run (needs --out)")
    parser.add_argument("--answers", action="store_true",
                        help=f"train nothing: write answers/<name>.json for shipped checkpoints (default: "
                             f"{', '.join(ANSWERED)})")
    args = parser.parse_args()
    if args.answers:
        for name in args.names or ANSWERED:
            answers = write_answers(name, args.out or OUT / "answers")
            print(name, {task: {level: f"{bits.count('1') / len(bits):.3f}" for level, bits in by_level.items()}
                         for task, by_level in answers["right"].items()})
        raise SystemExit
    unknown = set(args.names) - set(MODELS) - set(EXIT_HEADS)
    if unknown:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {', '.join([*MODELS, *EXIT_HEADS])}")
    if args.steps is not None and (args.out is None or args.steps < 1):
        parser.error("--steps is for smoke runs: give a positive number and an --out directory, so that the shipped "
                     "checkpoints are not overwritten by a shortened run")
    for name in args.names or [*MODELS, *EXIT_HEADS]:
        if name in EXIT_HEADS:
            report = train_exit_heads_recipe(name, args.out or OUT / "exit_heads", args.steps)
            print(json.dumps({k: report[k] for k in ("name", "train_seconds", "validation_loss_per_exit")}))
            print(json.dumps(report["early_exit"]))
            continue
        if args.steps is not None:
            MODELS[name] = MODELS[name] | {"train": MODELS[name]["train"] | {"steps": args.steps}}
        report = train_model(name, args.out or OUT)
        print(json.dumps({k: report[k] for k in ("name", "n_params", "train_seconds", "validation_loss")}))
        print(json.dumps(report["exact_match_per_task"]))

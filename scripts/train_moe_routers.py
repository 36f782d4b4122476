"""Retrain only the routers of the shipped tiny-moe with other load-balancing weights, for lesson 03's routing
dashboard: what does the weight alpha of the Switch balance loss change?

    python scripts/train_moe_routers.py          # writes lessonlib/data/checkpoints/moe_routers/tiny-moe-routers.*
    python scripts/train_moe_routers.py --steps 20 --out /tmp/x   # a smoke run

tiny-moe was trained with alpha = 0.01. For each other alpha, the same model is trained further with every
weight frozen but the routers' (4 matrices of 128 x 8), for 200 steps of 8 windows of 256 characters at a peak
learning rate of 3e-3 (tiny-moe's own), on one thread, with loss = cross-entropy + alpha x balance loss. The
shipped alpha = 0.01 routers are trained the same way too, so every variant has had the same extra steps (the
control). The file holds each
variant's routers (fp16) and a report measured on the shipped fp16 weights: validation loss, the balance loss
and each expert's share of the assignments, layer by layer, on the fixed validation batches.
Deterministic on a given machine (fixed seeds).
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from lessonlib.models import corpus, moe
from lessonlib.models.checkpoints import load_pretrained
from lessonlib.models.evaluation import evaluate
from lessonlib.models.training import train

OUT = Path(__file__).resolve().parents[1] / "lessonlib" / "data" / "checkpoints" / "moe_routers"
NAME = "tiny-moe-routers"
ALPHAS = (0.0, 0.01, 0.1, 1.0)
RECIPE = dict(steps=200, batch_size=8, seq_len=256, lr=3e-3, warmup=20, seed=1, eval_every=100)
VALIDATION = dict(n_batches=8, batch_size=16, seq_len=256)


@torch.no_grad()
def routing_report(model) -> dict:
    """Validation loss, and per layer the mean balance loss and each expert's share of the assignments."""
    batches = corpus.split("validation").fixed_batches(**VALIDATION)
    n_experts = model.config.n_experts
    counts = torch.zeros(model.config.n_layers, n_experts)
    balance = torch.zeros(model.config.n_layers)
    for x, _ in batches:
        out = model(x)
        for i, stats in enumerate(out.moe):
            counts[i] += torch.bincount(stats.routing.experts.flatten(), minlength=n_experts)
            balance[i] += stats.balance_loss
    share = counts / counts.sum(dim=1, keepdim=True)
    return {"validation_loss": round(evaluate(model, batches), 4),
            "balance_loss_per_layer": [round(v, 4) for v in (balance / len(batches)).tolist()],
            "expert_share_per_layer": [[round(v, 4) for v in row] for row in share.tolist()]}


def routers_of(model) -> list[torch.Tensor]:
    return [block.mlp.router.detach().clone() for block in model.h]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="override the recipe's steps (needs --out: a smoke run)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.steps and args.out == OUT:
        parser.error("--steps writes a smoke run: give --out so the shipped file stays as it is")
    recipe = RECIPE | ({"steps": args.steps} if args.steps else {})
    torch.set_num_threads(1)   # the routers are tiny: more threads only wait for each other on a busy machine

    shipped, source = load_pretrained("tiny-moe")
    variants, report = {}, {"name": NAME, "start_from": "tiny-moe", "trained_alpha": source["aux_loss_weight"],
                            "training": recipe, "trainable": "the routers only (every other weight frozen)",
                            "torch": str(torch.__version__), "machine": platform.machine(),
                            "threads": torch.get_num_threads(), "as_shipped": routing_report(shipped),
                            "variants": {}}
    for alpha in ALPHAS:
        model, _ = load_pretrained("tiny-moe")
        for name, p in model.named_parameters():
            p.requires_grad_(name.endswith("mlp.router"))
        history = train(model, corpus.split("train"), corpus.split("validation").fixed_batches(**VALIDATION),
                        **recipe, loss_fn=moe.training_loss(alpha))
        routers = [r.to(torch.float16) for r in routers_of(model)]
        for block, router in zip(model.h, routers, strict=True):   # measure what ships: fp16 routers
            block.mlp.router.data.copy_(router.float())
        variants[str(alpha)] = routers
        report["variants"][str(alpha)] = {"train_seconds": round(history.seconds, 1), **routing_report(model)}
        print(alpha, report["variants"][str(alpha)])
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"routers": variants, "report": report}, args.out / f"{NAME}.pt")
    (args.out / f"{NAME}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

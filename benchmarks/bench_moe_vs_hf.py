"""lessonlib's MoE layer vs transformers' Mixtral sparse MoE block, same weights, same routing, one run.

A Mixtral-shaped layer at CPU size (hidden 1024, intermediate 3584 (Mixtral's ratio, 14336 / 4096), 8 gated
SwiGLU experts without biases, top-2, renormalized gates, fp32) runs batches of 1 to 256 tokens (a decode
step to a prefill chunk) in transformers' ``MixtralSparseMoeBlock`` and in ``lessonlib.models.moe.moe_mlp``,
whose ``ExpertWeights`` are copied from the block. Every experts implementation transformers offers on the
CPU is run (``@use_experts_implementation`` dispatches ``MixtralExperts.forward`` on
``config._experts_implementation``). The outputs must agree first (same experts chosen; outputs within
``ATOL``/``RTOL``), then all runs are timed in turns under torch.inference_mode() (interleaved_min_times,
best of ``REPEATS``); the result is the ratio of times, HF / lessonlib. The target is at least 1.0x.

To say why where lessonlib is slower, the report adds three measurements: the same lessonlib code on the
weights stored (out, in) as Mixtral stores them (a column of the table), a profile of both sides at each
slower batch (matrix products vs the rest), and a probe timing the bare matrix product in both layouts.

    make bench            # both benchmarks, into benchmarks/RESULTS.md
    .venv/bin/python benchmarks/bench_moe_vs_hf.py        # this one alone
"""
from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # no implementation here may fetch a kernel from the Hub

import torch
import torch.nn.functional as F
import transformers
from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS
from transformers.models.mixtral.modeling_mixtral import MixtralForCausalLM, MixtralSparseMoeBlock

from lessonlib.core.timing import interleaved_min_times
from lessonlib.models.moe import ExpertWeights, moe_mlp

# Sizes: one expert's three matrices are 3 * 1024 * 3584 * 4 bytes = 44 MB and the layer's eight 352 MB, more
# than this machine's last-level cache (260 MiB of L3, 2 MiB of L2 per core). Each implementation gets its own
# copy of the weights and a buffer twice the cache's size is read between timed calls, so every call fetches the weights
# of the experts it runs from memory, as a real MoE layer does (Mixtral's experts are 90 GB): at small batches
# the time is memory traffic, at large ones arithmetic, as it is for the models the course is about.
HIDDEN, INTERMEDIATE, N_EXPERTS, TOP_K = 1024, 3584, 8, 2
BATCHES = (1, 4, 16, 64, 256)
REPEATS, TARGET = 10, 1.0
ATOL, RTOL = 1e-5, 1e-5        # the same fp32 products, with the weights laid out (out, in) vs (in, out)
# batched_mm gathers every (token, choice)'s expert weights into one tensor before a batched product: 88 MB
# per token here. Past this many bytes (batch 64 would copy 5.6 GB, batch 256 22.5 GB, about all of this
# machine's memory) it is not run.
BATCHED_MM_MAX_BYTES = 1.5e9
# Registered implementations that cannot run on this CPU in fp32 (read from transformers.integrations).
NOT_ON_CPU = {"deepgemm": "bf16 only, a CUDA kernel from the Hub", "sonicmoe": "a CUDA kernel from the Hub"}
EXPERT_BYTES = 3 * HIDDEN * INTERMEDIATE * 4
LESSONLIB, LESSONLIB_OUT_IN = "lessonlib", "lessonlib, (out, in)"
PROBE_ROWS = (1, 2, 3, 4, 8, 16, 32)
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_grouped_mm")


def implementations() -> tuple[list[str], str]:
    """The experts implementations to compare (eager first) and the one transformers picks by default."""
    names = ["eager"] + [name for name in ALL_EXPERTS_FUNCTIONS.keys() if name not in NOT_ON_CPU]
    tiny = transformers.MixtralConfig(vocab_size=8, hidden_size=16, intermediate_size=8, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, num_local_experts=2)
    return names, MixtralForCausalLM(tiny).config._experts_implementation


def mixtral_block(implementation: str) -> MixtralSparseMoeBlock:
    config = transformers.MixtralConfig(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                        num_local_experts=N_EXPERTS, num_experts_per_tok=TOP_K,
                                        experts_implementation=implementation)
    return MixtralSparseMoeBlock(config).eval()


def expert_weights(block: MixtralSparseMoeBlock) -> ExpertWeights:
    """The block's weights in lessonlib's layout, (in, out): router (H, E); gate_up_proj (E, 2I, H) holds the
    gate (w1) then the up projection (w3); down_proj (E, H, I)."""
    gate_up = block.experts.gate_up_proj.detach()
    return ExpertWeights(router=block.gate.weight.detach().T.contiguous(),
                         fc_weight=gate_up[:, INTERMEDIATE:].transpose(1, 2).contiguous(), fc_bias=None,
                         proj_weight=block.experts.down_proj.detach().transpose(1, 2).contiguous(), proj_bias=None,
                         gate_weight=gate_up[:, :INTERMEDIATE].transpose(1, 2).contiguous())


def cache_flusher():
    """A function that reads twice the last-level cache's size, evicting whatever the last call left there."""
    try:
        size = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
        llc = int(size[:-1]) * {"K": 2 ** 10, "M": 2 ** 20}[size[-1]]
    except (OSError, ValueError, KeyError):
        llc = 256 * 2 ** 20
    buffer = torch.ones(2 * llc // 4)
    return lambda: buffer.sum()


def out_in(w: ExpertWeights) -> ExpertWeights:
    """The same experts stored (out, in) like Mixtral's and viewed (in, out): ``moe_mlp`` computes the same
    function with the same code, but its matrix products read the layout transformers' ``F.linear`` reads."""
    def t(weight):
        return weight.transpose(1, 2).contiguous().transpose(1, 2)
    return w._replace(fc_weight=t(w.fc_weight), gate_weight=t(w.gate_weight), proj_weight=t(w.proj_weight))


def profile_ops(fn, flush, calls: int = 5) -> dict[str, tuple[float, int]]:
    """Where ``fn``'s time goes: operator name -> (self CPU ms, calls) in the fastest of ``calls`` profiled calls
    (the same best-of rule as the timing), each after ``flush`` evicted the weights."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    best, best_total = {}, float("inf")
    for _ in range(calls):
        flush()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        ops = {e.key: (round(e.self_cpu_time_total / 1e3, 3), e.count) for e in prof.key_averages()}
        total = sum(ms for ms, _ in ops.values())
        if total < best_total:
            best, best_total = ops, total
    return dict(sorted(best.items(), key=lambda item: -item[1][0]))


def layout_probe(flush, rows=PROBE_ROWS) -> list[dict]:
    """The matrix product at the heart of both layers, alone: ``m`` tokens times each of 8 (hidden,
    intermediate) matrices (117 MB, out of cache), stored (in, out) as lessonlib stores them (``x @ W``) or
    (out, in) as Mixtral does (``F.linear(x, W)``)."""
    g = torch.Generator().manual_seed(0)
    w_in_out = torch.randn(N_EXPERTS, HIDDEN, INTERMEDIATE, generator=g)
    w_out_in = torch.randn(N_EXPERTS, INTERMEDIATE, HIDDEN, generator=g)
    runs = {}
    for m in rows:
        x = torch.randn(m, HIDDEN, generator=g)
        runs[m, "in_out"] = partial(lambda x: [x @ w for w in w_in_out], x)
        runs[m, "in_out", "flush"] = flush
        runs[m, "out_in"] = partial(lambda x: [F.linear(x, w) for w in w_out_in], x)
        runs[m, "out_in", "flush"] = flush
    with torch.inference_mode():
        best = interleaved_min_times(runs, REPEATS)
    nbytes = w_in_out.numel() * 4
    return [{"rows": m, "in_out_ms": round(1e3 * best[m, "in_out"], 2), "out_in_ms": round(1e3 * best[m, "out_in"], 2),
             "in_out_gb_per_s": round(nbytes / 1e9 / best[m, "in_out"], 1),
             "out_in_gb_per_s": round(nbytes / 1e9 / best[m, "out_in"], 1)} for m in rows]


def compare() -> dict:
    names, default = implementations()
    torch.manual_seed(0)
    blocks = {name: mixtral_block(name) for name in names}
    first = blocks[names[0]]
    with torch.no_grad():
        first.gate.weight.normal_(0, HIDDEN ** -0.5)        # logits of unit scale: routing neither flat nor fixed
        first.experts.gate_up_proj.normal_(0, HIDDEN ** -0.5)
        first.experts.down_proj.normal_(0, INTERMEDIATE ** -0.5)
        for block in blocks.values():
            block.load_state_dict(first.state_dict())     # a copy each (see the sizes above)
    ours = {LESSONLIB: expert_weights(first)}
    ours[LESSONLIB_OUT_IN] = out_in(ours[LESSONLIB])
    inputs = {b: torch.randn(b, HIDDEN, generator=torch.Generator().manual_seed(b)) for b in BATCHES}
    hf_inputs = {b: x.view(1, b, HIDDEN) for b, x in inputs.items()}        # (batch, sequence, hidden)
    rows, runs, flush = [], {}, cache_flusher()
    with torch.inference_mode():
        for b, x in inputs.items():
            out, routing, _ = moe_mlp(x, ours[LESSONLIB], TOP_K, renormalize=True)
            counts = torch.bincount(routing.experts.flatten(), minlength=N_EXPERTS)
            row = {"batch": b, "experts_touched": int((counts > 0).sum()),
                   "tokens_per_expert": sorted((c for c in counts.tolist() if c), reverse=True),
                   "max_abs_diff": {}, "skipped": {}}
            row["weights_mb"] = round(row["experts_touched"] * EXPERT_BYTES / 1e6)
            for name, w in ours.items():
                runs[b, name] = partial(moe_mlp, x, w, TOP_K, True)
                runs[b, name, "flush"] = flush
            for name, block in blocks.items():
                if name == "batched_mm" and b * TOP_K * EXPERT_BYTES > BATCHED_MM_MAX_BYTES:
                    row["skipped"][name] = f"would copy {b * TOP_K * EXPERT_BYTES / 1e9:.1f} GB of weights per call"
                    continue
                _, _, hf_experts = block.gate(x)
                assert torch.equal(hf_experts, routing.experts), f"batch {b}, {name}: different experts chosen"
                runs[b, name] = partial(block, hf_inputs[b])
                runs[b, name, "flush"] = flush
            for name in [LESSONLIB_OUT_IN, *names]:
                if (b, name) in runs:
                    other = runs[b, name]()
                    other = (other[0] if isinstance(other, tuple) else other).view(b, HIDDEN)   # moe_mlp's, HF's
                    torch.testing.assert_close(other, out, atol=ATOL, rtol=RTOL,
                                               msg=lambda m, where=f"batch {b}, {name}": f"{where}: {m}")
                    row["max_abs_diff"][name] = (other - out).abs().max().item()
            rows.append(row)
        best = interleaved_min_times(runs, REPEATS)
        for row in rows:
            b = row["batch"]
            row["ms"] = {name: round(1e3 * best[b, name], 2) for name in [*ours, *names] if (b, name) in best}
            row["ratio"] = {name: round(best[b, name] / best[b, LESSONLIB], 2) for name in names if (b, name) in best}
            row["lessonlib_gb_per_s"] = round(row["weights_mb"] / 1e3 / best[b, LESSONLIB], 1)
        slower = []   # every (batch, implementation) where lessonlib is slower: profile both to say why
        for row in rows:
            for name, ratio in row["ratio"].items():
                if ratio < TARGET:
                    b = row["batch"]
                    slower.append({"batch": b, "implementation": name, "ratio": ratio,
                                   "lessonlib_ops": profile_ops(runs[b, LESSONLIB], flush),
                                   "hf_ops": profile_ops(runs[b, name], flush)})
    probe = layout_probe(flush)
    return {"hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE, "n_experts": N_EXPERTS, "top_k": TOP_K,
            "dtype": "float32", "repeats": REPEATS, "target_ratio": TARGET, "atol": ATOL, "rtol": RTOL,
            "implementations": names, "default_implementation": default,
            "not_on_cpu": {name: NOT_ON_CPU[name] for name in ALL_EXPERTS_FUNCTIONS.keys() if name in NOT_ON_CPU},
            "threads": torch.get_num_threads(), "torch": str(torch.__version__),
            "transformers": transformers.__version__, "rows": rows, "slower": slower, "layout_probe": probe}


def target_met(result: dict) -> dict[str, bool]:
    """Per implementation: is lessonlib at least ``TARGET`` times as fast at every batch it ran?"""
    return {name: all(row["ratio"][name] >= result["target_ratio"] for row in result["rows"] if name in row["ratio"])
            for name in result["implementations"]}


def matmul_ms(ops: dict[str, tuple[float, int]]) -> float:
    """Self time of the matrix-product operators in a profile (the rest is dispatch: routing, indexing, adds)."""
    return sum(ms for name, (ms, _) in ops.items() if name in MATMUL_OPS)


def markdown(result: dict) -> str:
    """The MoE section of benchmarks/RESULTS.md."""
    names, default = result["implementations"], result["default_implementation"]
    label = {name: f"{name} (default)" if name == default else name for name in names}
    rows = result["rows"]
    lines = [
        f"Mixtral-shaped sparse MoE layer: hidden {result['hidden_size']}, intermediate {result['intermediate_size']}"
        f", {result['n_experts']} SwiGLU experts, top-{result['top_k']}, {result['dtype']}, "
        f"{result['n_experts'] * EXPERT_BYTES / 1e6:.0f} MB of expert weights. transformers' `MixtralSparseMoeBlock` "
        f"with each experts implementation that runs on this CPU vs `lessonlib.models.moe.moe_mlp` on the same "
        f"weights, stored (in, out) as lessonlib stores them. Checked first: the same experts chosen, outputs equal "
        f"within atol {result['atol']:g}, rtol {result['rtol']:g} (largest difference: "
        f"{max(d for r in rows for d in r['max_abs_diff'].values()):.1e}). Timed: best of {result['repeats']} "
        f"interleaved calls, each starting with the weights out of cache. Ratio = HF time / lessonlib time (above 1: "
        f"lessonlib faster). The column \"lessonlib, (out, in)\" is the same lessonlib code on the weights stored "
        f"(out, in) like Mixtral's (not part of the target): it separates the matrix layout from the dispatch code.",
        "",
        "| tokens | experts touched (tokens each) | weights read | lessonlib | lessonlib, (out, in) | "
        + " | ".join(f"HF {label[n]} | ratio" for n in names) + " |",
        "|---:|---|---:|---:|---:|" + "---:|---:|" * len(names),
    ]
    for row in rows:
        cells = [str(row["batch"]), f"{row['experts_touched']} ({', '.join(map(str, row['tokens_per_expert']))})",
                 f"{row['weights_mb']} MB", f"{row['ms'][LESSONLIB]:.2f} ms ({row['lessonlib_gb_per_s']} GB/s)",
                 f"{row['ms'][LESSONLIB_OUT_IN]:.2f} ms"]
        for name in names:
            if name in row["ratio"]:
                cells += [f"{row['ms'][name]:.2f} ms", f"**{row['ratio'][name]:.2f}x**"]
            else:
                cells += [f"not run: {row['skipped'][name]}", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    met = target_met(result)
    lines += ["", f"Target (lessonlib >= {result['target_ratio']}x at every batch): "
              + "; ".join(f"vs {label[n]}: {'met' if met[n] else '**not met**'}" for n in names) + ". "
              "Registered implementations that cannot run here: "
              + "; ".join(f"{n} ({why})" for n, why in result["not_on_cpu"].items()) + ".", ""]
    probe = result["layout_probe"]
    slow_rows = [p["rows"] for p in probe if p["in_out_ms"] > p["out_in_ms"]]
    if result["slower"]:
        lines += ["**Where lessonlib is slower, and why** (measured: torch.profiler self CPU time per call, weights "
                  "out of cache before each call; matrix products = " + ", ".join(f"`{o}`" for o in MATMUL_OPS)
                  + "):", ""]
        by_batch = {row["batch"]: row for row in rows}
        for s in result["slower"]:
            row = by_batch[s["batch"]]
            ours_mm, hf_mm = matmul_ms(s["lessonlib_ops"]), matmul_ms(s["hf_ops"])
            ours_rest = sum(ms for ms, _ in s["lessonlib_ops"].values()) - ours_mm
            hf_rest = sum(ms for ms, _ in s["hf_ops"].values()) - hf_mm
            where = "in the matrix products" if abs(ours_mm - hf_mm) >= abs(ours_rest - hf_rest) else \
                "outside the matrix products (routing, indexing, dispatch)"
            lines.append(
                f"- {s['batch']} tokens vs {label[s['implementation']]} ({s['ratio']:.2f}x): the "
                f"{row['experts_touched']} experts touched get {', '.join(map(str, row['tokens_per_expert']))} tokens. "
                f"Matrix products: lessonlib {ours_mm:.2f} ms, HF {hf_mm:.2f} ms; everything else: lessonlib "
                f"{ours_rest:.2f} ms, HF {hf_rest:.2f} ms. Most of the gap is {where}. The same lessonlib code on "
                f"weights stored (out, in) takes {row['ms'][LESSONLIB_OUT_IN]:.2f} ms "
                f"({row['ms'][s['implementation']] / row['ms'][LESSONLIB_OUT_IN]:.2f}x vs HF).")
        lines += ["", "The products alone (the probe below): with "
                  + (", ".join(map(str, slow_rows)) if slow_rows else "no")
                  + " rows, MKL's SGEMM reads weights stored (in, out) (`x @ W`, lessonlib and GPT-2's Conv1D) "
                  "more slowly than weights stored (out, in) (`F.linear`, Mixtral); with the other row counts it is "
                  "as fast or faster. A batch of a few tokens gives each expert 1 to 3 of them.", ""]
    else:
        lines += ["lessonlib is at least as fast as every implementation at every batch here.", ""]
    lines += [f"Probe: {result['n_experts']} ({result['hidden_size']}, {result['intermediate_size']}) fp32 matrices "
              f"({result['n_experts'] * EXPERT_BYTES / 3e6:.0f} MB, out of cache) times `rows` tokens:", "",
              "| rows | (in, out): `x @ W` | (out, in): `F.linear(x, W)` |", "|---:|---:|---:|"]
    lines += [f"| {p['rows']} | {p['in_out_ms']:.2f} ms ({p['in_out_gb_per_s']} GB/s) | "
              f"{p['out_in_ms']:.2f} ms ({p['out_in_gb_per_s']} GB/s) |" for p in probe]
    return "\n".join(lines) + "\n"


def main() -> dict:
    result = compare()
    for row in result["rows"]:
        print(f"{row['batch']:>4} tokens, {row['experts_touched']} experts: lessonlib {row['ms'][LESSONLIB]:.2f} ms "
              f"((out, in): {row['ms'][LESSONLIB_OUT_IN]:.2f} ms); "
              + "; ".join(f"HF {n} {row['ms'][n]:.2f} ms ({row['ratio'][n]:.2f}x)" for n in row["ratio"]))
    out = Path(__file__).resolve().parents[1] / "reports" / "bench_moe_vs_hf.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"(written to {out.relative_to(out.parents[1])})")
    return result


if __name__ == "__main__":
    r = main()
    met = target_met(r)
    if not all(met.values()):
        print(f"below the target of {TARGET}x against: {', '.join(n for n, ok in met.items() if not ok)}")

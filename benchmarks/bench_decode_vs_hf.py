"""lessonlib's decode loop vs Hugging Face generate(), same weights, same CPU, one run.

A GPT-2-shaped model of about 3.5M parameters decodes 512 tokens greedily at batch 1, in our TinyGPT
(preallocated KV cache, fused attention, a bare loop) and in transformers' GPT2LMHeadModel.generate() with its
KV cache on. Both produce the same tokens (checked); the ratio of tokens/s is the result. The course's
target is at least 2.5x.

    make bench            # or: .venv/bin/python benchmarks/bench_decode_vs_hf.py
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import transformers

from lessonlib.tinygpt import TinyGPT, TinyGPTConfig, hf_gpt2_state_dict

NEW_TOKENS, PROMPT_LEN, REPEATS = 512, 8, 3
SHAPES = {  # the course's speed target is stated for the first; the second is tiny-gpt's own shape
    "gpt2-shaped-3.5M": TinyGPTConfig(vocab_size=41, block_size=1024, n_layer=4, n_head=4, n_embd=256),
    "tiny-gpt-shaped-0.9M": TinyGPTConfig(vocab_size=41, block_size=1024, n_layer=4, n_head=4, n_embd=128),
}


def best_of(fn, repeats=REPEATS):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def compare(config: TinyGPTConfig) -> dict:
    torch.manual_seed(0)
    ours = TinyGPT(config).eval()
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config.to_hf_config())).eval()
    hf.load_state_dict(hf_gpt2_state_dict(ours), strict=False)
    prompt = torch.randint(0, config.vocab_size, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1))

    ours_s, ours_out = best_of(lambda: ours.generate(prompt, NEW_TOKENS))
    with torch.inference_mode():
        hf_s, hf_out = best_of(lambda: hf.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
            do_sample=False, pad_token_id=0, bos_token_id=None, eos_token_id=None))
    return {
        "params": ours.n_params(), **{k: getattr(config, k) for k in ("n_layer", "n_head", "n_embd")},
        "same_tokens": bool(torch.equal(ours_out, hf_out)),
        "lessonlib_tokens_per_s": round(NEW_TOKENS / ours_s, 1), "hf_tokens_per_s": round(NEW_TOKENS / hf_s, 1),
        "speedup": round(hf_s / ours_s, 2),
    }


def main() -> dict:
    result = {"new_tokens": NEW_TOKENS, "batch": 1, "threads": torch.get_num_threads(),
              "torch": str(torch.__version__), "transformers": transformers.__version__,
              "shapes": {name: compare(config) for name, config in SHAPES.items()}}
    out = Path(__file__).resolve().parents[1] / "reports" / "bench_decode_vs_hf.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    r = main()
    print(json.dumps(r, indent=2))
    if not all(shape["same_tokens"] for shape in r["shapes"].values()):
        raise SystemExit("the two implementations generated different tokens")

"""Run the benchmarks and write one report, benchmarks/RESULTS.md (commit it from a quiet machine): the machine,
its load and versions, then lessonlib's decode loop vs Hugging Face generate(), lessonlib's MoE layer vs
transformers' Mixtral block, and how fast the dashboards answer (callbacks; and in Chromium, key press to changed
output, when Chromium is installed).

    make bench            # or: .venv/bin/python benchmarks/run_all.py

Fails (non-zero exit) if the two sides of a comparison disagree (different tokens, different MoE outputs);
a target missed on this machine is reported in the file, not an error.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from pathlib import Path

import bench_dashboards
import bench_dashboards_browser
import bench_decode_vs_hf
import bench_moe_vs_hf
import torch
import transformers

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def last_level_cache() -> str:
    caches = sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"))
    if not caches:
        return "unknown"
    last = caches[-1]
    return f"L{(last / 'level').read_text().strip()} {(last / 'size').read_text().strip()}"


def header(load_before: tuple[float, ...], seconds: float) -> str:
    return "\n".join([
        "# Benchmark results",
        "",
        "Written by `make bench` (`benchmarks/run_all.py`); what each benchmark does is in "
        "[README.md](README.md). Timing on a shared CPU is noisy: each comparison times both sides in the "
        "same run, and the ratio is the result.",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores ({platform.machine()}, {platform.system()}), "
        f"last-level cache {last_level_cache()}; torch threads: {torch.get_num_threads()}",
        f"- load average (1 min) before the run: {load_before[0]:.2f}; the run took {seconds:.0f} s",
        f"- Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}",
        "",
        *busy_warning(load_before[0]),
    ])


def busy_warning(load: float) -> list[str]:
    """A loud line when other work shared the CPU: the ratios below then say more about the load than the code."""
    cores = os.cpu_count() or 1
    if not load > cores:   # also false for nan
        return []
    return [f"**Not a measurement to rely on:** the load average was {load:.1f} on {cores} cores before the run, "
            "so both sides of every comparison shared the CPU with other work. Re-run `make bench` on a quiet "
            "machine before quoting these ratios.", ""]


def main() -> int:
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),)
    start = time.perf_counter()
    decode = bench_decode_vs_hf.main()
    moe = bench_moe_vs_hf.main()   # checks its outputs against transformers' before timing (raises if they differ)
    dashboards = bench_dashboards.markdown(bench_dashboards.main())
    browser = "Chromium not found: not measured (`apt-get install -y chromium`).\n"
    if bench_dashboards_browser.chromium_path():
        browser = bench_dashboards_browser.markdown(bench_dashboards_browser.main())
    report = "\n".join([
        header(load_before, time.perf_counter() - start),
        "## Decode: lessonlib vs Hugging Face `generate()`",
        "",
        bench_decode_vs_hf.markdown(decode),
        "## MoE layer: lessonlib vs transformers' `MixtralSparseMoeBlock`",
        "",
        bench_moe_vs_hf.markdown(moe),
        "## Dashboards: callback time per control move (compute and redraw)",
        "",
        dashboards,
        "## Dashboards in the browser: key press to changed output (presenter mode, Chromium)",
        "",
        browser,
    ])
    RESULTS.write_text(report)
    print(f"(report written to {RESULTS.relative_to(RESULTS.parents[1])})")
    if not all(shape["same_tokens"] for shape in decode["shapes"].values()):
        print("the two decode implementations generated different tokens", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

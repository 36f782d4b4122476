"""The benchmarks still run: `make bench` is not part of `make test` (it takes minutes and its numbers are
machine-specific), so these smoke tests keep its code in step with lessonlib's names. No timing is asserted."""
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_decode_benchmark_generates_the_same_tokens_as_hugging_face_and_reports_them(monkeypatch, tmp_path):
    import bench_decode_vs_hf as bench

    from lessonlib.models.tinygpt import TinyGPTConfig

    monkeypatch.setattr(bench, "NEW_TOKENS", 6)
    monkeypatch.setattr(bench, "REPEATS", 1)
    monkeypatch.setattr(bench, "SHAPES", {"smoke": TinyGPTConfig(vocab_size=11, max_position_embeddings=32,
                                                                 n_layers=1, n_heads=2, hidden_size=16)})
    result = bench.main(out=tmp_path / "decode.json")
    shape = result["shapes"]["smoke"]
    assert shape["same_tokens"] and shape["n_layers"] == 1 and shape["hidden_size"] == 16
    assert "| smoke (n_layers 1, hidden 16, heads 2)" in bench.markdown(result)


def test_moe_benchmark_imports_and_names_what_it_compares():
    import bench_moe_vs_hf as bench

    names, default = bench.implementations()
    assert names[0] == "eager" and default in names + [None, "eager"]
    assert "bench_moe_vs_hf" in sys.modules


def test_a_run_on_a_busy_machine_is_flagged_in_the_report():
    import run_all

    assert run_all.busy_warning(1000.0) and "quiet machine" in run_all.busy_warning(1000.0)[0]
    assert run_all.busy_warning(0.0) == [] and run_all.busy_warning(float("nan")) == []

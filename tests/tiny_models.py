"""Shared by the decoding, cascade, early-exit and lesson-04 tests: random tiny models, run on one thread."""
import re
from pathlib import Path

import nbformat
import pytest
import torch

from lessonlib.models.tinygpt import TinyGPT, TinyGPTConfig


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and far faster on a busy machine (no thread pool to wake)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_model(seed=0, varied=True, **changes) -> TinyGPT:
    """A random 2-layer model (``changes`` override its config). ``varied``: its greedy text varies, because large
    random positions drown the input token and a sharp final norm makes the logits decisive (a freshly
    initialized model just repeats one token)."""
    torch.manual_seed(seed)
    config = dict(vocab_size=41, max_position_embeddings=64, n_layers=2, n_heads=4, hidden_size=32) | changes
    model = TinyGPT(TinyGPTConfig(**config)).eval()
    if varied:
        with torch.no_grad():
            model.wpe.weight.normal_(0, 0.5)
            model.ln_f.weight.mul_(30)
    return model


def assert_options_balanced(notebook: Path) -> None:
    """Multiple-choice options (markdown lines ``- **A.** ...``) whose longest is at most 1.2x the shortest, so
    no option gives the answer away by its length; the notebook must have at least one such question."""
    found = 0
    for cell in nbformat.read(notebook, as_version=4).cells:
        options = re.findall(r"^- \*\*([A-E])\.\*\* (.+?)(?=\n- \*\*|\Z)", cell.source, re.S | re.M)
        if options:
            found += 1
            lengths = [len(" ".join(text.split())) for _, text in options]
            assert max(lengths) <= 1.2 * min(lengths), f"option lengths {lengths}: balance them"
    assert found, f"no multiple-choice options found in {notebook.name}"

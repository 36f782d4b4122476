"""lessonlib.models.training and lessonlib.models.evaluation: the loop learns, reproducibly; answer loss and exact
match score what they say."""
import pytest
import torch

from lessonlib.models import corpus
from lessonlib.models.evaluation import answer_loss, evaluate, exact_match
from lessonlib.models.tinygpt import LMOutput, TinyGPT, TinyGPTConfig
from lessonlib.models.training import learning_rate, train


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return TinyGPT(TinyGPTConfig(vocab_size=corpus.TOKENIZER.vocab_size, max_position_embeddings=64, n_layers=1,
                                 n_heads=2,
                                 hidden_size=32))


def tiny_run(seed=0):
    model = tiny_model(seed)
    data = corpus.split("train", 500)
    val = corpus.split("validation", 200).fixed_batches(2, 8, 64)
    before = evaluate(model, val)
    history = train(model, data, val, steps=40, batch_size=8, seq_len=64, lr=1e-2, warmup=5,
                    eval_every=20, progress=False, seed=seed)
    return before, history


def test_validation_loss_goes_down_within_40_steps_and_runs_repeat_exactly():
    before, history = tiny_run()
    assert history.val_steps == [20, 40] and len(history.train_loss) == 40 and history.seconds > 0
    assert history.val_loss[-1] < before - 0.5
    assert tiny_run()[1].val_loss == history.val_loss


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    assert learning_rate(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert learning_rate(9, 100, 1.0, 10) == 1.0
    assert learning_rate(100, 100, 1.0, 10) == pytest.approx(0.1)
    rates = [learning_rate(s, 100, 1.0, 10) for s in range(10, 100)]
    assert rates == sorted(rates, reverse=True)


class Oracle(torch.nn.Module):
    """A stand-in model that always predicts the right next character of known lines (and only those)."""

    def __init__(self, lines, wrong=()):
        super().__init__()
        self.next = {}
        for line in lines:
            text = "\n" + line + "\n"
            if line in wrong:  # answers with the last character changed
                text = text[:-2] + ("x" if text[-2] != "x" else "y") + "\n"
            for i in range(1, len(text)):
                self.next[text[:i]] = text[i]

    def _logits(self, idx):
        out = torch.full((*idx.shape, corpus.TOKENIZER.vocab_size), -30.0)
        for b, row in enumerate(idx.tolist()):
            for t in range(len(row)):
                following = self.next.get(corpus.TOKENIZER.decode(row[:t + 1]), "\n")
                out[b, t, corpus.TOKENIZER.encode(following)[0]] = 30.0
        return out

    def forward(self, idx, targets=None):
        return LMOutput(self._logits(idx), None)

    def generate(self, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            idx = torch.cat([idx, self._logits(idx)[:, -1].argmax(-1, keepdim=True)], dim=1)
        return idx


def test_exact_match_and_answer_loss_score_the_answers():
    lines = corpus.make_lines(20, seed=5, tasks="crsa")
    assert exact_match(Oracle(lines), lines) == 1.0
    assert answer_loss(Oracle(lines), lines) < 1e-6
    assert exact_match(Oracle(lines, wrong=lines[:5]), lines) == 0.75
    assert answer_loss(Oracle(lines, wrong=lines[:5]), lines) > 1.0
    with pytest.raises(ValueError, match="has no answer to score"):
        exact_match(Oracle(lines), ["t the dog sees a cat."])

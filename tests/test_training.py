"""lessonlib.training: the loop learns, reproducibly."""
from lessonlib import corpus
from lessonlib.tinygpt import TinyGPT, TinyGPTConfig
from lessonlib.training import evaluate, learning_rate, train


def tiny_run(seed=0):
    import torch

    torch.manual_seed(seed)
    model = TinyGPT(TinyGPTConfig(vocab_size=corpus.TOKENIZER.vocab_size, block_size=64, n_layer=1, n_head=2,
                                  n_embd=32))
    data = corpus.split("train", 500)
    val = corpus.split("validation", 200).fixed_batches(2, 8, 64)
    before = evaluate(model, val)
    history = train(model, data, val, steps=40, batch_size=8, block_size=64, lr=1e-2, warmup=5,
                    eval_every=20, progress=False, seed=seed)
    return before, history


def test_validation_loss_goes_down_and_runs_repeat_exactly():
    before, history = tiny_run()
    assert history.val_loss[-1] < before - 0.5
    assert tiny_run()[1].val_loss == history.val_loss


def test_learning_rate_warms_up_then_decays():
    assert learning_rate(0, 100, 1.0, 10) == 0.1
    assert learning_rate(9, 100, 1.0, 10) == 1.0
    assert learning_rate(99, 100, 1.0, 10) < 0.12

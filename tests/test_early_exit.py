"""lessonlib.models.early_exit: heads on intermediate layers train with the model frozen; never exiting is the
model's own greedy decoding token for token; an exit writes the skipped layers' keys and values from the exited
state (CALM's propagation); fewer layers run as the threshold falls; clear errors."""
import pytest
import torch
import torch.nn.functional as F

from lessonlib.models import corpus
from lessonlib.models.checkpoints import load_pretrained
from lessonlib.models.early_exit import (
    ExitHeads,
    early_exit_generate,
    early_exit_report,
    early_exit_step,
    exit_losses,
    hidden_states,
    load_exit_heads,
    save_exit_heads,
    train_exit_heads,
)
from lessonlib.models.evaluation import exact_match

from .tiny_models import one_thread, random_model  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def make(seed=0, **changes):
    return random_model(seed, **({"n_layers": 4} | changes))


PROMPTS = torch.randint(0, 41, (3, 6), generator=torch.Generator().manual_seed(1))
VARIANTS = {"multi-head": {}, "grouped-query": {"n_kv_heads": 2}, "latent attention": {"kv_lora_rank": 12},
            "sliding window": {"sliding_window": 5},
            "mixture of experts": {"n_experts": 4, "experts_per_token": 2, "intermediate_size": 48}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_threshold_above_1_never_exits_and_is_the_model_s_greedy_decoding(variant):
    model = make(**VARIANTS[variant])
    heads = ExitHeads.for_model(model, [1, 2, 3])
    for prompt in PROMPTS:
        out = early_exit_generate(model, heads, prompt.view(1, -1), 30, threshold=1.01)
        assert torch.equal(out.tokens, model.generate(prompt.view(1, -1), 30))
        assert out.layers_used == [4] * 30
    one_token = early_exit_generate(model, heads, PROMPTS[:1, :1], 10, threshold=2.0)
    assert torch.equal(one_token.tokens, model.generate(PROMPTS[:1, :1], 10))


@pytest.mark.parametrize("variant", ["multi-head", "grouped-query", "latent attention"])
def test_an_exit_writes_the_skipped_layers_keys_and_values_from_the_exited_state(variant):
    """CALM's propagation: after an exit at block 1, blocks 2..4 hold at that position the keys and values
    their own projections make of the hidden state after block 1."""
    model = make(**VARIANTS[variant])
    heads = ExitHeads.for_model(model, [1])
    prompt = PROMPTS[:1]
    with torch.inference_mode():
        cache = model.new_cache(1, 10)
        model.prefill(prompt[:, :-1], cache)
        _, depth = early_exit_step(prompt[0, -1:], cache, heads, threshold=0.0)
        exited = hidden_states(model, prompt)[0][0, -1]                                  # (C,) after block 1
    assert depth == 1 and cache.length == 6
    config = model.config
    for layer in (1, 2, 3):
        attn, store = model.h[layer].attn, cache.layers[layer]
        with torch.inference_mode():
            h = model.h[layer].ln_1(exited)
            if config.kv_lora_rank:
                expected = [attn.c_kv_down(h)]
            else:
                _, k, v = attn.c_attn(h).view(-1, config.head_dim).split(
                    (config.n_heads, config.n_kv_heads, config.n_kv_heads))
                expected = [k, v]
        written = [store.latents[0, 5]] if config.kv_lora_rank else [store.keys[0, :, 5], store.values[0, :, 5]]
        for got, want in zip(written, expected, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_threshold_0_exits_at_the_first_head_every_time_and_its_tokens_are_that_head_s():
    model = make()
    heads = ExitHeads.for_model(model, [2, 3])
    out = early_exit_generate(model, heads, PROMPTS[:1], 12, threshold=0.0)
    assert out.layers_used == [2] * 12
    # the first new token is head 2's argmax on the prompt (the prompt itself runs through every layer)
    with torch.inference_mode():
        state = hidden_states(model, PROMPTS[:1])[1][0, -1]
        assert out.tokens[0, 6] == heads.logits(0, state, model.wte.weight).argmax()


def test_fewer_layers_run_as_the_threshold_falls_and_none_exit_above_1():
    """tiny-gpt with heads after blocks 1, 2 and 3 (each a copy of the final LayerNorm, untrained: the 'logit
    lens'), on 12 easy questions."""
    model, _ = load_pretrained("tiny-gpt")
    heads = ExitHeads.for_model(model, [1, 2, 3])
    lines = corpus.make_lines(12, seed=5, tasks="crsa", difficulty="easy")
    points = early_exit_report(model, heads, lines, [1.01, 0.99, 0.9, 0.6, 0.3, 0.0])
    layers = [p.mean_layers for p in points]
    assert layers[0] == 4 and layers[-1] == 1
    assert all(a >= b for a, b in zip(layers[:-1], layers[1:], strict=True)) and layers[1] > layers[-2]
    assert points[0].exact_match == exact_match(model, lines) and points[0].exit_share[4] == 1
    for point in points:
        assert sum(point.exit_share.values()) == pytest.approx(1) and set(point.exit_share) == {1, 2, 3, 4}


def test_training_the_heads_lowers_their_loss_and_leaves_the_model_unchanged(tmp_path):
    model = make(n_layers=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = corpus.stream(corpus.make_lines(300, seed=1))
    val = corpus.stream(corpus.make_lines(60, seed=2)).fixed_batches(2, 4, 32)
    untrained = exit_losses(model, ExitHeads.for_model(model, [1, 2]), val)
    heads, history = train_exit_heads(model, [1, 2], steps=40, data=data, val_batches=val, batch_size=8, seq_len=32,
                                      warmup=5, eval_every=20, progress=False)
    trained = exit_losses(model, heads, val)
    assert set(trained) == {1, 2, 3} and trained[3] == pytest.approx(untrained[3])
    assert trained[1] < untrained[1] and trained[2] < untrained[2]
    assert history.val_loss[-1] == pytest.approx((trained[1] + trained[2]) / 2, rel=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not heads.training and sum(p.numel() for p in heads.parameters()) == 2 * (2 * 32 + 32 * 32 + 32)
    save_exit_heads(heads, tmp_path / "heads.pt", {"steps": 40})
    loaded, report = load_exit_heads(tmp_path / "heads.pt")
    assert report == {"steps": 40} and loaded.layers == (1, 2)
    x = torch.randn(5, 32)
    torch.testing.assert_close(loaded.logits(1, x, model.wte.weight), heads.logits(1, x, model.wte.weight))
    with torch.inference_mode():
        state = hidden_states(model, PROMPTS[:1])[0]
        translated = state + state @ heads.translators[0].weight + heads.translators[0].bias
        torch.testing.assert_close(heads.logits(0, state, model.wte.weight),
                                   F.linear(heads.norms[0](translated), model.wte.weight))


def test_a_head_starts_as_the_logit_lens_with_or_without_its_translator():
    model = make()
    x = torch.randn(3, 32, generator=torch.Generator().manual_seed(3))
    lens = F.linear(model.ln_f(x), model.wte.weight)
    for translator in (True, False):
        heads = ExitHeads.for_model(model, [1, 3], translator=translator)
        torch.testing.assert_close(heads.logits(1, x, model.wte.weight), lens)
        assert (heads.translators is not None) == translator == heads.config()["translator"]


def test_bad_settings_fail_clearly():
    model = make()
    for layers in ([0], [4], [1, 1], []):
        with pytest.raises(ValueError, match="exit layers must be distinct whole numbers from 1 to 3"):
            ExitHeads.for_model(model, layers)
    heads = ExitHeads.for_model(model, [1])
    for threshold in (-0.5, float("nan")):
        with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\] .* above 1 never to exit"):
            early_exit_generate(model, heads, PROMPTS[:1], 3, threshold)
    with pytest.raises(ValueError, match="one sequence at a time"):
        early_exit_generate(model, heads, PROMPTS, 3, 0.5)
    with pytest.raises(ValueError, match=r"exceeds the model's position table \(max_position_embeddings 64\)"):
        early_exit_generate(model, heads, PROMPTS[:1], 60, 0.5)
    with pytest.raises(ValueError, match="confidence measure must be one of"):
        early_exit_generate(model, heads, PROMPTS[:1], 3, 0.5, measure="logit")
    with pytest.raises(ValueError, match="made for a model of 2 layers, not 4"):
        early_exit_generate(model, ExitHeads.for_model(make(n_layers=2), [1]), PROMPTS[:1], 3, 0.5)


def test_the_timing_reports_layers_used_and_a_speedup_per_threshold():
    from lessonlib.measure.early_exit import measure_early_exit

    model = make()
    heads = ExitHeads.for_model(model, [1, 2])
    timings = measure_early_exit(model, heads, PROMPTS[:2], 8, [2.0, 0.0], repeats=1, warmup=0)
    assert [t.threshold for t in timings] == [2.0, 0.0]
    assert timings[0].mean_layers == 4 and timings[1].mean_layers == 1
    assert all(t.seconds > 0 and t.speedup == t.plain_seconds / t.seconds for t in timings)
    assert all(t.timing.seconds == t.seconds and t.plain_timing.seconds == t.plain_seconds for t in timings)
    assert all(t.reliable == (t.timing.reliable and t.plain_timing.reliable) for t in timings)


def test_the_shipped_exit_heads_reach_their_reported_losses():
    """tiny-gpt-exits (scripts/train_tiny_models.py): the heads load with the model they were trained on and reach
    the validation loss per exit their report recorded, on the same fixed batches (tolerance rel 1e-3: only the
    float summation order may differ between machines)."""
    import sys
    from pathlib import Path

    from lessonlib.models.early_exit import load_pretrained_exit_heads

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import train_tiny_models

    model, heads, report = load_pretrained_exit_heads()
    assert report["start_from"] == "tiny-gpt" and list(heads.layers) == report["layers"]
    losses = exit_losses(model, heads, train_tiny_models.validation_batches())
    assert {str(k): v for k, v in losses.items()} == {
        k: pytest.approx(v, rel=1e-3) for k, v in report["validation_loss_per_exit"].items()}
    with pytest.raises(FileNotFoundError, match="no exit heads 'nope'; shipped: tiny-gpt-exits"):
        load_pretrained_exit_heads("nope")

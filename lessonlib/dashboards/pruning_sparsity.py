"""Dashboard (lesson 03b): prune the shipped tiny-gpt live and watch its answers and its accuracy.

A sparsity slider and a kind of pruning: magnitude (the smallest weights of every block matrix, ranked
together), 2:4 (two of every four consecutive weights along the input dimension; always 50%, so the slider
locks), or structured (the least important MLP channels and heads of every layer; the sparsity is the fraction
of channels removed, the heads rounded to whole ones). The pruned model answers a few fixed questions, and its
exact-match accuracy on 48 questions (16 each of copy, reverse and sort: the dense model gets ~95% of them; it
cannot add, so addition would only add noise) is plotted against the sparsity,
next to the shipped checkpoints that were pruned and then fine-tuned (``scripts/prune_tiny_models.py``): the
slider shows pruning without any fine-tuning, which is why the curve falls so fast.

Accuracy is exact match of greedy answers, computed in one batched forward pass with the answers given
(teacher forcing): greedy decoding gets an answer exactly right if and only if the model's most likely next
character is right at every position of the answer, given the right characters before it.
"""
from __future__ import annotations

import copy
import html
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from ..core.checks import require_sparsity
from ..display.palette import BLUE, ORANGE, verdict
from ..display.svgchart import Axis, Chart
from ..measure.decode import torch_threads
from ..models import pruning
from ..models.checkpoints import load_pretrained
from ..models.corpus import TOKENIZER, answer_span, correct_answer, make_lines
from .controls import LABEL_STYLE, lock_sparsity_for_2_4, outputs_box, problem

KINDS = ("magnitude", "2:4", "structured")
QUESTION_SEED = 404                      # the fixed questions (not the training or validation lines' seeds)
SHOWN = ("c qbrtx>", "r wolfram>", "s hdbgca>", "s pmdkqbz>")
TASKS = {"c": "copy", "r": "reverse", "s": "sort"}
PER_TASK = 16
FINE_TUNED = {"magnitude": {0.5: "tiny-gpt-magnitude-50", 0.8: "tiny-gpt-magnitude-80"},
              "2:4": {0.5: "tiny-gpt-2of4"}, "structured": {0.5: "tiny-gpt-structured-50"}}


def questions() -> list[str]:
    """48 fixed questions: 16 each of copy, reverse and sort, mixed difficulty."""
    return [line for task in TASKS for line in make_lines(PER_TASK, QUESTION_SEED, tasks=[task])]


@torch.no_grad()
def answers_right(model, lines: list[str], groups: int = 2) -> torch.Tensor:
    """(len(lines),) bool: is each line's answer exactly what greedy decoding gives? One forward pass per group of
    lines of similar length: each line after a newline and ended by one, padded at the end to its group's
    longest (a causal model never reads padding that comes after a position)."""
    order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
    size = -(-len(lines) // groups)
    right = torch.zeros(len(lines), dtype=torch.bool)
    for g in range(0, len(order), size):
        members = order[g:g + size]
        texts = ["\n" + lines[i] + "\n" for i in members]
        width = max(len(t) for t in texts)
        ids = torch.tensor([TOKENIZER.encode(t.ljust(width, "\n")) for t in texts])
        predicted = model(ids[:, :-1]).logits.argmax(dim=-1)              # (group, width - 1)
        for row, i in enumerate(members):
            start, end = answer_span(lines[i])
            # Position p predicts character p + 1 of the text; the answer and its newline: text[start+1 : end+2].
            right[i] = bool((predicted[row, start:end + 1] == ids[row, start + 1:end + 2]).all())
    return right


@dataclass
class PruningModel:
    """tiny-gpt, a working copy that is pruned in place, and what has been measured so far."""
    original: torch.nn.Module = None
    working: torch.nn.Module = None
    lines: list[str] = field(default_factory=questions)
    results: dict[tuple[str, float], tuple] = field(default_factory=dict)

    def __post_init__(self):
        if self.original is None:
            self.original, _ = load_pretrained("tiny-gpt")
        self.original.eval()
        if self.working is None:
            self.working = copy.deepcopy(self.original)
        self.working.eval()
        weights = pruning.prunable_weights(self.original)
        flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
        self._order = torch.argsort(flat, stable=True)     # magnitude_masks' ranking, computed once
        self._sizes = [w.numel() for w in weights.values()]
        self._names = list(weights)
        self._two_four = None

    def masks(self, kind: str, sparsity: float) -> dict[str, torch.Tensor]:
        if kind == "magnitude":
            keep = torch.ones(len(self._order), dtype=torch.bool)
            keep[self._order[:round(sparsity * len(self._order))]] = False
            return {n: k.view_as(w) for n, k, w in zip(self._names, keep.split(self._sizes),
                                                        pruning.prunable_weights(self.original).values(),
                                                        strict=True)}
        if kind == "2:4":
            if self._two_four is None:
                self._two_four = pruning.n_m_masks(self.original, 2, 4)
            return self._two_four
        heads = self.original.config.n_heads
        return pruning.structured_masks(self.original, mlp_keep=max(1e-9, 1 - sparsity),
                                        heads_keep=max(1, round(heads * (1 - sparsity))))

    @torch.no_grad()
    def prune(self, kind: str, sparsity: float) -> float:
        """Load the original weights into the working copy and prune it; returns the sparsity reached over the
        prunable weights (what the slider asked for, up to rounding; structured: measured)."""
        for target, source in zip(self.working.parameters(), self.original.parameters(), strict=True):
            target.copy_(source)
        masks = self.masks(kind, sparsity)
        pruning.apply_masks(self.working, masks)
        return pruning.sparsity(self.working)

    def evaluate(self, kind: str, sparsity: float) -> tuple[float, dict[str, float], list[tuple[str, str]], float]:
        """(accuracy, accuracy per task, (question, answer) for the shown questions, sparsity reached); each
        setting is computed once, so sweeping back over the slider answers at once."""
        key = (kind, round(sparsity, 4))
        if key not in self.results:
            with torch_threads(1):
                reached = self.prune(kind, sparsity)
                right = answers_right(self.working, self.lines)
                shown = [(q, greedy_answer(self.working, q, len(correct_answer(q)) + 1)) for q in SHOWN]
            per_task = {task: float(right[i * PER_TASK:(i + 1) * PER_TASK].float().mean())
                        for i, task in enumerate(TASKS.values())}
            self.results[key] = (float(right.float().mean()), per_task, shown, reached)
        return self.results[key]


@torch.no_grad()
def greedy_answer(model, question: str, limit: int = 16) -> str:
    ids = torch.tensor([TOKENIZER.encode("\n" + question)])
    out = model.generate(ids, limit)[0, ids.shape[1]:].tolist()
    text = TOKENIZER.decode(out)
    return text.split("\n", 1)[0]


@lru_cache(maxsize=1)
def fine_tuned_accuracy() -> dict[str, dict[float, float]]:
    """Accuracy of the shipped pruned-and-fine-tuned checkpoints on the same questions (measured once)."""
    lines, result = questions(), {}
    with torch_threads(1):
        for kind, points in FINE_TUNED.items():
            for sparsity, name in points.items():
                try:
                    model, _ = load_pretrained(name)
                except FileNotFoundError:
                    continue
                result.setdefault(kind, {})[sparsity] = float(answers_right(model.eval(), lines).float().mean())
    return result


def accuracy_chart(model: PruningModel, kind: str, current: tuple[float, float]) -> str:
    chart = Chart(Axis(0, 1, label="sparsity (share of the block weights removed)",
                       ticks=tuple((v / 10, f"{v * 10}%") for v in range(0, 11, 2))),
                  Axis(0, 1, label="exact-match accuracy", ticks=tuple((v / 4, f"{v * 25}%") for v in range(5))),
                  width=520, height=320)
    seen = sorted((s, r[0]) for (k, s), r in model.results.items() if k == kind)
    if len(seen) > 1:
        chart.line([s for s, _ in seen], [a for _, a in seen], BLUE, 2.5)
    chart.points([s for s, _ in seen], [a for _, a in seen], BLUE, "circle", 5, "pruned, no fine-tuning")
    tuned = fine_tuned_accuracy().get(kind, {})
    if tuned:
        chart.points(list(tuned), list(tuned.values()), ORANGE, "diamond", 9, "pruned, then fine-tuned (shipped)")
    chart.points([current[0]], [current[1]], "#000", "square", 8, "now", texts=[f"{current[1]:.0%}"])
    return chart.svg()


def pruning_report(model: PruningModel, kind: str = "magnitude", sparsity: float = 0.5) -> tuple[str, str | None]:
    """The dashboard's callback: (HTML report, SVG accuracy chart). Never raises; an impossible setting is
    explained in the HTML (and no chart is returned)."""
    try:
        if kind not in KINDS:
            raise ValueError(f"the kind of pruning must be one of {', '.join(KINDS)}, got {kind!r}")
        sparsity = 0.5 if kind == "2:4" else sparsity
        require_sparsity(sparsity)
        sparsity = float(sparsity)
        accuracy, per_task, shown, reached = model.evaluate(kind, sparsity)
    except (ValueError, TypeError) as error:
        return problem("Cannot prune this way", error), None
    rows = []
    for question, answer in shown:
        right = correct_answer(question)
        rows.append(f"<tr><td style='font-family:monospace;padding:0.1em 0.6em'>{html.escape(question)}</td>"
                    f"<td style='font-family:monospace;padding:0.1em 0.6em'><b>{html.escape(answer) or '(nothing)'}"
                    f"</b></td><td style='padding:0.1em 0.6em'>{verdict(answer == right, 'right', 'wrong')}</td></tr>")
    tasks = ", ".join(f"{task} {value:.0%}" for task, value in per_task.items())
    kept = 1 - reached
    what = {"magnitude": "the smallest weights of all block matrices, ranked together",
            "2:4": "two of every four consecutive weights (always half)",
            "structured": "whole MLP channels and attention heads, in every layer"}[kind]
    report = f"""
<div style="font-family:sans-serif;max-width:40em">
<p><b>tiny-gpt</b> pruned <b>{kind}</b> ({what}) at {sparsity:.0%}: {reached:.1%} of its block weights are zero,
{kept:.1%} kept. No fine-tuning.</p>
<p>Exact-match accuracy on {len(model.lines)} questions: <b style="font-size:130%">{accuracy:.0%}</b> ({tasks}).</p>
<table style="border-collapse:collapse"><tr><th style='text-align:left;padding:0.1em 0.6em'>question</th>
<th style='text-align:left;padding:0.1em 0.6em'>its answer</th><th></th></tr>{''.join(rows)}</table>
</div>"""
    return report, accuracy_chart(model, kind, (sparsity, accuracy))


def pruning_dashboard(kind: str = "magnitude", sparsity: float = 0.5, model: PruningModel | None = None):
    """The kind of pruning and a sparsity slider around :func:`pruning_report`. Returns the widget to display."""
    import ipywidgets as widgets

    model = model or PruningModel()
    kind_box = widgets.ToggleButtons(options=list(KINDS), value=kind, description="pruning", style=LABEL_STYLE)
    sparsity_box = widgets.FloatSlider(value=sparsity, min=0.0, max=0.95, step=0.05, description="sparsity",
                                       readout_format=".0%", style=LABEL_STYLE,
                                       layout=widgets.Layout(width="36em", max_width="100%"))
    report, chart = widgets.HTML(), widgets.HTML()

    def update(_change=None):
        report.value, svg = pruning_report(model, kind_box.value, sparsity_box.value)
        chart.value = svg or ""

    lock_sparsity_for_2_4(kind_box, sparsity_box)
    for control in (kind_box, sparsity_box):
        control.observe(update, names="value")
    update()
    return widgets.VBox([kind_box, sparsity_box, outputs_box(report, chart)])

"""Dashboard (lesson 03a): where the shipped tiny-moe sends each token of a typed prompt.

For every character of the prompt and every layer: the two experts the router picks (the first on its colour,
both as numbers), and which assignments a capacity limit drops; per layer, each expert's load against its fair
share and its capacity, and the Switch balance loss (1 = even, N/k = every token to the same k experts). The
model's greedy answer to the prompt shows what the routing does to the output.

Two knobs:

* **capacity factor** (inference): an expert takes at most ``ceil(factor x tokens x k / N)`` assignments of the
  prompt; the rest are dropped (the token skips that expert; the residual stream carries it on). Counted over
  the whole prompt in one forward pass, as :func:`lessonlib.models.moe.moe_mlp` does; the answer is then
  generated one token per step with the KV cache, and a single token never overflows an expert.
* **balance weight alpha** (training): routers retrained with other weights of the balance loss (every other
  weight frozen; ``scripts/train_moe_routers.py``, shipped in ``checkpoints/moe_routers``). The table under the
  grid gives what each alpha did on the validation data.

The model runs on one thread (see :func:`lessonlib.measure.decode.torch_threads`): a few-million-parameter model
gains nothing from more, and a busy machine's other programs cost it less.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..display.palette import BAD, GREY, LIMIT, expert_color, text_on, verdict
from ..measure.decode import torch_threads
from ..models.checkpoints import checkpoint_path, load_pretrained
from ..models.corpus import TOKENIZER, correct_answer
from ..models.moe import capacity
from .controls import LABEL_STYLE, problem

DEFAULT_PROMPT = "s hdbgca>"
EXAMPLES = ("s hdbgca>", "r wolfram>", "c kqzmw>", "a 123+4567>", "t the red dog sees")
CAPACITY_CHOICES = (("no limit", 0.0), ("2.0", 2.0), ("1.5", 1.5), ("1.25", 1.25), ("1.0", 1.0), ("0.75", 0.75),
                    ("0.5", 0.5), ("0.25", 0.25))
MAX_PROMPT = 120        # characters: the answer must still fit the 256-position table
MAX_ANSWER = 24         # characters generated after the prompt
ROUTERS = "moe_routers/tiny-moe-routers.pt"
SHIPPED = "shipped"
SCROLL = "overflow-x:auto;max-width:calc(100vw - 3em)"   # a wide table scrolls sideways, never squeezes


def _show(ch: str) -> str:
    return {" ": "\u2423", "\n": "\u23ce"}.get(ch, ch)


@dataclass(frozen=True)
class LayerRouting:
    experts: list[list[int]]        # per token: the k chosen experts, most probable first
    gates: list[list[float]]
    kept: list[list[bool]]
    counts: list[int]               # assignments each expert kept
    wanted: list[int]               # assignments each expert was sent (before the capacity limit)
    balance_loss: float
    capacity: int | None


@dataclass(frozen=True)
class Routing:
    tokens: str                     # what the model read: a newline (each line follows one), then the prompt
    layers: list[LayerRouting]
    answer: str | None              # greedy continuation up to the newline, when the prompt asks a question
    n_experts: int
    k: int


class RoutingModel:
    """The shipped tiny-moe and its router variants: route a prompt and answer it, under a capacity factor."""

    def __init__(self, model=None, variants: dict[str, list[torch.Tensor]] | None = None,
                 variants_report: dict | None = None):
        if model is None:
            model, report = load_pretrained("tiny-moe")
            self.trained_alpha = report.get("aux_loss_weight", 0.01)
        else:
            self.trained_alpha = 0.01
        if not model.config.is_moe:
            raise ValueError("the routing dashboard needs a mixture-of-experts model (n_experts > 1)")
        self.model = model.eval()
        self.shipped = [block.mlp.router.detach().clone() for block in model.h]
        if variants is None:
            variants, variants_report = load_router_variants()
        self.variants = variants or {}
        self.variants_report = variants_report or {}
        self.alpha: str | None = None
        self._cache: dict[tuple[str, str, float], Routing] = {}

    @property
    def alphas(self) -> list[str]:
        """The routers offered: "shipped" (trained with the model), then every retrained variant's alpha."""
        return [SHIPPED, *sorted(self.variants, key=float)]

    def use_alpha(self, alpha: str) -> None:
        """Load the shipped routers ("shipped") or those retrained with balance weight ``alpha``."""
        if alpha == self.alpha:
            return
        if alpha != SHIPPED and alpha not in self.variants:
            raise ValueError(f"no routers trained with balance weight {alpha}; choose one of {', '.join(self.alphas)}")
        routers = self.shipped if alpha == SHIPPED else self.variants[alpha]
        with torch.no_grad():
            for block, router in zip(self.model.h, routers, strict=True):
                block.mlp.router.copy_(router.float())
        self.alpha = alpha

    def route(self, prompt: str, capacity_factor: float = 0.0, alpha: str | None = None) -> Routing:
        prompt = check_prompt(prompt)
        if not (isinstance(capacity_factor, (int, float)) and math.isfinite(capacity_factor)
                and capacity_factor >= 0):
            raise ValueError(f"the capacity factor is a positive number (0 for no limit), got {capacity_factor!r}")
        self.use_alpha(alpha or self.alpha or SHIPPED)
        key = (self.alpha, prompt, float(capacity_factor))
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = self._route(prompt, float(capacity_factor))
        return self._cache[key]

    def _route(self, prompt: str, capacity_factor: float) -> Routing:
        cf = capacity_factor or None
        for block in self.model.h:
            block.mlp.capacity_factor = cf
        text = "\n" + prompt
        with torch.no_grad(), torch_threads(1):
            ids = torch.tensor([TOKENIZER.encode(text)])
            out = self.model(ids)
            answer = self._answer(ids) if prompt.rstrip().endswith(">") else None
        n, k = self.model.config.n_experts, self.model.config.experts_per_token
        layers = []
        for stats in out.moe:
            experts, kept = stats.routing.experts, stats.kept
            layers.append(LayerRouting(
                experts=experts.tolist(), gates=[[round(g, 3) for g in row] for row in stats.routing.weights.tolist()],
                kept=kept.tolist(), counts=stats.counts.tolist(),
                wanted=torch.bincount(experts.flatten(), minlength=n).tolist(),
                balance_loss=float(stats.balance_loss),
                capacity=capacity(len(text), k, n, cf) if cf else None))
        return Routing(text, layers, answer, n, k)

    def _answer(self, ids: torch.Tensor) -> str:
        """Greedy answer as a server with a KV cache computes it: the prompt in one pass under the capacity
        limit (the routing the view shows), then one token per step until the newline. A single token never
        overflows an expert (its k choices are k different experts and every capacity is at least 1), so the
        steps run without the limit: the same result, on the fast one-token path."""
        config = self.model.config
        cache = self.model.new_cache(1, min(config.max_position_embeddings, ids.shape[1] + MAX_ANSWER))
        config.capacity_factor = self.model.h[0].mlp.capacity_factor
        try:
            logits = self.model.prefill(ids, cache)
        finally:
            config.capacity_factor = None
        newline, out = TOKENIZER.encode("\n")[0], []
        for _ in range(MAX_ANSWER):
            token = int(logits[0].argmax())
            if token == newline:
                break
            out.append(token)
            logits = self.model.decode_step(torch.tensor([token]), cache)
        return TOKENIZER.decode(out)


def check_prompt(prompt) -> str:
    """A prompt the model can read, or a ValueError saying what to change."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("type a prompt, e.g. 's hdbgca>' (sort these letters) or 'a 12+34>' (add)")
    prompt = prompt.replace("\r", "").replace("\n", " ")
    if len(prompt) > MAX_PROMPT:
        raise ValueError(f"the prompt has {len(prompt)} characters; keep it to {MAX_PROMPT} (the model's position "
                         "table is 256 long, and the answer needs room)")
    unknown = sorted({ch for ch in prompt if ch not in TOKENIZER.vocab})
    if unknown:
        raise ValueError(f"the course's models read lower-case letters, digits, space, '+', '.' and '>' only; "
                         f"remove {' '.join(repr(c) for c in unknown)}")
    return prompt


def load_router_variants() -> tuple[dict[str, list[torch.Tensor]], dict]:
    """The retrained routers (alpha -> one router matrix per layer) and their report; empty when not shipped."""
    path = Path(checkpoint_path("tiny-moe")).parent / ROUTERS
    if not path.exists():
        return {}, {}
    data = torch.load(path, map_location="cpu", weights_only=True)
    return data["routers"], data["report"]


# -- the report ---------------------------------------------------------------------------------------------
def _grid(r: Routing) -> str:
    head = "".join(f"<th style='padding:0 0.15em;font-family:monospace;font-size:110%'>{html.escape(_show(c))}</th>"
                   for c in r.tokens)
    rows = []
    for i, layer in enumerate(r.layers):
        cells = []
        for experts, kept, gates in zip(layer.experts, layer.kept, layer.gates, strict=True):
            first, rest = experts[0], experts[1:]
            title = "; ".join(f"expert {e} gate {g:.2f}{'' if k else ' (dropped)'}"
                              for e, g, k in zip(experts, gates, kept, strict=True))
            if kept[0]:
                color = expert_color(first)
                style = f"background:{color};color:{text_on(color)}"
                top = f"{first}"
            else:
                style = f"background:#fff;color:{BAD};outline:2px dashed {BAD};outline-offset:-2px"
                top = f"&#215;{first}"
            second = " ".join(f"{e}" if k else f"&#215;{e}" for e, k in zip(rest, kept[1:], strict=True))
            cells.append(f"<td title='{html.escape(title)}' style='{style};text-align:center;padding:0.1em 0.2em;"
                         f"min-width:1.4em;line-height:1.1'><b>{top}</b><br><span style='font-size:75%'>{second}</span>"
                         f"</td>")
        rows.append(f"<tr><th style='padding-right:0.5em;white-space:nowrap;text-align:right'>layer {i + 1}</th>"
                    f"{''.join(cells)}</tr>")
    return (f"<div style='{SCROLL}'><table style='border-collapse:separate;border-spacing:2px'>"
            f"<tr><th></th>{head}</tr>{''.join(rows)}</table></div>")


def _load(r: Routing) -> str:
    fair = len(r.tokens) * r.k / r.n_experts
    top = max(max(layer.wanted) for layer in r.layers)
    scale = max(top, fair, max((layer.capacity or 0) for layer in r.layers), 1)
    rows = []
    for i, layer in enumerate(r.layers):
        cells = []
        for e, (kept, wanted) in enumerate(zip(layer.counts, layer.wanted, strict=True)):
            color = expert_color(e)
            bar = (f"<div style='height:{2.6 * kept / scale:.2f}em;background:{color}'></div>"
                   + (f"<div style='height:{2.6 * (wanted - kept) / scale:.2f}em;outline:2px dashed {BAD};"
                      f"outline-offset:-2px'></div>" if wanted > kept else ""))
            cap = (f"<div style='position:absolute;left:0;right:0;bottom:{2.6 * layer.capacity / scale:.2f}em;"
                   f"border-top:3px solid {LIMIT}' title='capacity {layer.capacity}'></div>" if layer.capacity else "")
            fair_line = (f"<div style='position:absolute;left:0;right:0;bottom:{2.6 * fair / scale:.2f}em;"
                         f"border-top:2px dotted #000' title='fair share {fair:.1f}'></div>")
            cells.append(f"<td style='vertical-align:bottom;padding:0.5em 0.2em 0.2em;text-align:center'>"
                         f"<span style='font-size:80%'>{kept}</span>"
                         f"<div style='position:relative;height:2.6em;width:1.8em;display:flex;"
                         f"flex-direction:column-reverse;background:#f0f0f0'>{bar}{cap}{fair_line}</div></td>")
        dropped = sum(layer.wanted) - sum(layer.counts)
        note = f", {dropped} dropped" if dropped else ""
        rows.append(f"<tr><th style='text-align:right;white-space:nowrap;padding-right:0.5em'>layer {i + 1}</th>"
                    f"{''.join(cells)}<td style='padding-left:0.8em;white-space:nowrap'>balance loss "
                    f"<b>{layer.balance_loss:.2f}</b>{note}</td></tr>")
    experts = "".join(f"<th style='font-weight:normal;font-size:80%'>{e}</th>" for e in range(r.n_experts))
    return (f"<div style='{SCROLL}'><table style='border-collapse:collapse'><tr><th style='text-align:right;"
            f"padding-right:0.5em;font-weight:normal;font-size:80%'>expert</th>{experts}<th></th></tr>"
            f"{''.join(rows)}</table></div>")


def _alpha_table(model: RoutingModel, current: str) -> str:
    variants = model.variants_report.get("variants", {})
    if not variants:
        return (f"<p style='color:{GREY}'>Only the shipped routers (alpha = {model.trained_alpha}) are available: "
                "run <code>python scripts/train_moe_routers.py</code> to retrain them with other weights.</p>")
    rows = []
    shipped = model.variants_report.get("as_shipped")
    entries = ([(SHIPPED, shipped)] if shipped else []) + [(a, variants[a]) for a in sorted(variants, key=float)]
    for alpha, v in entries:
        balance = sum(v["balance_loss_per_layer"]) / len(v["balance_loss_per_layer"])
        busiest = max(max(row) for row in v["expert_share_per_layer"])
        mark = " style='background:#fde9c9'" if alpha == current else ""
        name = f"as shipped ({model.trained_alpha})" if alpha == SHIPPED else alpha
        rows.append(f"<tr{mark}><td style='padding:0.1em 0.6em;white-space:nowrap'>{name}</td>"
                    f"<td style='padding:0.1em 0.6em;text-align:right'>{v['validation_loss']:.3f}</td>"
                    f"<td style='padding:0.1em 0.6em;text-align:right'>{balance:.2f}</td>"
                    f"<td style='padding:0.1em 0.6em;text-align:right'>{busiest:.0%}</td></tr>")
    steps = model.variants_report.get("training", {}).get("steps", "?")
    return (f"<p style='margin-bottom:0.2em'>Routers retrained {steps} steps with each balance weight alpha, every "
            "other weight frozen (0.01 is the control: the shipped weight, the same extra steps); measured on the "
            "validation text. A higher alpha evens the load and costs a little loss:</p>"
            "<table style='border-collapse:collapse'>"
            "<tr><th style='padding:0.1em 0.6em'>alpha</th><th style='padding:0.1em 0.6em'>loss (nats)</th>"
            "<th style='padding:0.1em 0.6em'>balance loss</th><th style='padding:0.1em 0.6em'>busiest expert</th>"
            f"</tr>{''.join(rows)}</table>")


def routing_report(model: RoutingModel, prompt: str = DEFAULT_PROMPT, capacity_factor: float = 0.0,
                   alpha: str | None = None) -> str:
    """The dashboard's callback: the routing of ``prompt`` as HTML. Never raises; a prompt the model cannot
    read, or an impossible setting, is explained in the HTML."""
    try:
        r = model.route(prompt, capacity_factor, alpha)
    except (ValueError, TypeError) as error:
        return problem("Cannot route this prompt", error)
    alpha = model.alpha
    steps = model.variants_report.get("training", {}).get("steps", "?")
    routers = (f"routers as shipped (trained with the model, balance weight alpha = {model.trained_alpha})"
               if alpha == SHIPPED else f"routers retrained {steps} steps with balance weight alpha = {alpha}")
    if r.answer is not None:
        try:
            right = correct_answer(prompt.strip())
            answer = (f"Answer: <b style='font-family:monospace;font-size:120%'>{html.escape(r.answer) or '(none)'}"
                      f"</b> {verdict(r.answer == right, 'right', 'wrong')}"
                      + ("" if r.answer == right else f" (right: <code>{html.escape(right)}</code>)"))
        except ValueError:
            answer = f"Answer: <b style='font-family:monospace'>{html.escape(r.answer) or '(none)'}</b>"
    else:
        answer = "End the prompt with <code>&gt;</code> to see the model's answer."
    limit = (f"capacity factor {capacity_factor:g}: each expert takes at most {r.layers[0].capacity} of the "
             f"{len(r.tokens) * r.k} assignments" if capacity_factor else "no capacity limit")
    dropped = sum(sum(layer.wanted) - sum(layer.counts) for layer in r.layers)
    total = len(r.tokens) * r.k * len(r.layers)
    return f"""
<div style="font-family:sans-serif;max-width:60em">
<p><b>tiny-moe</b>: {len(r.layers)} layers of {r.n_experts} experts, top-{r.k} per token; {routers};
{limit}{f': {dropped} of {total} assignments dropped' if dropped else ''}.</p>
<p>{answer}</p>
{_grid(r)}
<p style="font-size:90%">Each column is a character the model read (&#9166; the newline before every line); each cell
the expert it went to first (on that expert's colour) and second (small). <span style="color:{BAD}">&#215;</span>
marks an assignment dropped over capacity.</p>
<p style="margin-bottom:0.2em"><b>Expert load</b> (assignments kept; dotted: fair share {len(r.tokens) * r.k /
r.n_experts:.1f}{'; solid line: capacity' if capacity_factor else ''}; dashed: dropped). Balance loss 1.00 is
perfectly even, {r.n_experts / r.k:.2f} every token to the same {r.k} experts.</p>
{_load(r)}
{_alpha_table(model, alpha)}
</div>"""


def moe_routing_dashboard(prompt: str = DEFAULT_PROMPT, model: RoutingModel | None = None):
    """A prompt box, example prompts, the capacity factor and the balance weight around :func:`routing_report`."""
    import ipywidgets as widgets

    model = model or RoutingModel()
    prompt_box = widgets.Text(value=prompt, description="prompt", continuous_update=False, style=LABEL_STYLE,
                              layout=widgets.Layout(width="36em", max_width="100%"))
    examples = widgets.ToggleButtons(options=list(EXAMPLES), value=prompt if prompt in EXAMPLES else None,
                                     description="examples", style=LABEL_STYLE)
    capacity_box = widgets.SelectionSlider(options=list(CAPACITY_CHOICES), value=0.0, description="capacity factor",
                                           style=LABEL_STYLE, layout=widgets.Layout(width="36em", max_width="100%"))
    alpha_box = widgets.ToggleButtons(options=[("as shipped", SHIPPED)] + [(a, a) for a in model.alphas[1:]],
                                      value=SHIPPED, description="balance weight", style=LABEL_STYLE,
                                      tooltips=["the routers tiny-moe was trained with (alpha = 0.01)"]
                                      + [f"routers retrained with alpha = {a}, every other weight frozen"
                                         for a in model.alphas[1:]])
    report = widgets.HTML()

    def update(_change=None):
        report.value = routing_report(model, prompt_box.value, capacity_box.value, alpha_box.value)

    def on_example(change):
        if change["new"]:
            prompt_box.value = change["new"]

    examples.observe(on_example, names="value")
    for control in (prompt_box, capacity_box, alpha_box):
        control.observe(update, names="value")
    update()
    return widgets.VBox([prompt_box, examples, capacity_box, alpha_box, report])

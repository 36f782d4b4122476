"""Small line and scatter charts written as SVG text, for dashboards that redraw on every slider move.

A matplotlib redraw lays out every tick label, axis label and legend entry again and encodes a PNG: 50-350 ms
per frame on a 2-core machine, most of a dashboard's response time. Building the same chart as SVG text takes
well under a millisecond, the browser draws it crisply at any width (a projector included), and its text grows
with the page's font size setting. The axes are fixed per chart, so frames are comparable as a slider moves.

    chart = Chart(Axis(0.1, 1e5, log=True, label="FLOP / byte"), Axis(1e-5, 1, log=True, label="of peak"))
    chart.line([0.1, 100, 1e5], [1e-3, 1, 1], label="roofline")
    chart.points([3e6], [0.5], label="prefill", marker="square")     # outside: drawn at the edge, value named
    html = chart.svg()

Values outside an axis are never silently dropped: a line is clamped to the edge, and a point is drawn on the
edge as an arrow pointing the way it went, with its true value in its label.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Sequence

from .palette import BLACK


def _fmt(v: float) -> str:
    return f"{v:.1f}"


@dataclass(frozen=True)
class Axis:
    lo: float
    hi: float
    log: bool = False
    label: str = ""
    ticks: tuple[tuple[float, str], ...] = ()    # (value, text); empty: decades (log) or five steps (linear)

    def __post_init__(self):
        if not self.hi > self.lo or (self.log and self.lo <= 0):
            raise ValueError(f"an axis needs lo < hi (and lo > 0 on a log axis), got {self.lo}, {self.hi}")

    def fraction(self, v: float) -> float:
        """Where ``v`` falls between lo (0) and hi (1); outside [0, 1] when it is off the axis."""
        if self.log:
            if v <= 0 or not math.isfinite(v):
                return -math.inf if v <= 0 else math.inf
            return (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        if not math.isfinite(v):
            return math.inf if v > 0 else -math.inf
        return (v - self.lo) / (self.hi - self.lo)

    def tick_marks(self) -> tuple[tuple[float, str], ...]:
        if self.ticks:
            return self.ticks
        if self.log:
            first, last = math.ceil(math.log10(self.lo) - 1e-9), math.floor(math.log10(self.hi) + 1e-9)
            step = max(1, (last - first) // 7 + 1)
            return tuple((10.0**k, decade_label(k)) for k in range(first, last + 1, step))
        # about five round steps (1, 2, 2.5 or 5 times a power of ten) inside [lo, hi]
        raw = (self.hi - self.lo) / 5
        power = 10.0 ** math.floor(math.log10(raw))
        step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
        first = math.ceil(self.lo / step - 1e-9)
        values = [round(k * step, 12) for k in range(first, math.floor(self.hi / step + 1e-9) + 1)]
        return tuple((v, f"{v:g}") for v in values)


def short_number(v: float) -> str:
    """3.68e5 -> '368k', 3.2e6 -> '3.2M', 0.004 -> '0.004': three significant digits with an SI-like suffix."""
    if not math.isfinite(v):
        return str(v)
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def decade_label(k: int) -> str:
    """10**k as people write it on an axis: 0.01, 0.1, 1, 10, 100, 1k, 10k, 100k, 1M, ... 1e9."""
    if -2 <= k <= 2:
        return f"{10.0**k:g}"
    if 3 <= k <= 5:
        return f"{10**(k - 3)}k"
    if 6 <= k <= 8:
        return f"{10**(k - 6)}M"
    return f"1e{k}"


MARKERS = ("circle", "square", "diamond", "triangle")


@dataclass
class Chart:
    x: Axis
    y: Axis
    width: int = 560
    height: int = 360
    title: str = ""
    margin: tuple[int, int, int, int] = (14, 20, 58, 74)      # top, right, bottom, left
    _items: list[str] = field(default_factory=list)
    _legend: list[tuple[str, str, str, str]] = field(default_factory=list)   # (label, color, dash, marker)

    # -- coordinates ------------------------------------------------------------------------------------------
    @property
    def _box(self) -> tuple[float, float, float, float]:
        top, right, bottom, left = self.margin
        return left, top, self.width - left - right, self.height - top - bottom

    def _px(self, x: float, y: float) -> tuple[float, float, bool]:
        """Pixel position, clamped to the plot area, and whether it had to be clamped."""
        left, top, w, h = self._box
        fx, fy = self.x.fraction(x), self.y.fraction(y)
        clamped = not (0 <= fx <= 1 and 0 <= fy <= 1)
        fx, fy = min(max(fx, 0.0), 1.0), min(max(fy, 0.0), 1.0)
        return left + fx * w, top + (1 - fy) * h, clamped

    # -- content ----------------------------------------------------------------------------------------------
    def line(self, xs: Sequence[float], ys: Sequence[float], color: str = BLACK, width: float = 3,
             dash: str = "", label: str = "") -> None:
        pts = [self._px(x, y)[:2] for x, y in zip(xs, ys, strict=True)
               if not (math.isnan(x) or math.isnan(y))]
        if len(pts) < 2:
            return
        path = " ".join(f"{_fmt(px)},{_fmt(py)}" for px, py in pts)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        self._items.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="{width}"'
                           f'{dash_attr} stroke-linejoin="round"/>')
        if label:
            self._legend.append((label, color, dash, ""))

    def hline(self, y: float, color: str = BLACK, dash: str = "6 4", label: str = "", width: float = 2) -> None:
        self.line([self.x.lo, self.x.hi], [y, y], color, width, dash, label)

    def vline(self, x: float, color: str = BLACK, dash: str = "6 4", label: str = "", width: float = 2) -> None:
        self.line([x, x], [self.y.lo, self.y.hi], color, width, dash, label)

    def points(self, xs: Sequence[float], ys: Sequence[float], color: str = BLACK, marker: str = "circle",
               size: float = 7, label: str = "", texts: Sequence[str] = (), text_offset: tuple[int, int] = (9, -9),
               off_axis: Sequence[str] = ()) -> None:
        """Markers at (x, y), each with an optional text beside it. A point off the axes is drawn on the edge as
        an arrow pointing off it, and ``off_axis[i]`` (its true value, say) is added to its text."""
        if marker not in MARKERS:
            raise ValueError(f"marker must be one of {', '.join(MARKERS)}, got {marker!r}")
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if math.isnan(x) or math.isnan(y):
                continue
            px, py, clamped = self._px(x, y)
            text = texts[i] if i < len(texts) else ""
            if clamped:
                self._items.append(self._arrow(px, py, x, y, color, size))
                extra = off_axis[i] if i < len(off_axis) else ""
                text = f"{text} {extra}".strip()
            else:
                self._items.append(_marker(marker, px, py, size, color))
            if text:
                left, top, w, h = self._box
                dx, dy = text_offset
                if py < top + 0.15 * h:      # near the top: write below the point, clear of the frame and roofs
                    dy = abs(dy) + 14
                anchor = "end" if px + dx > left + 0.72 * w else "start"
                tx = px - abs(dx) if anchor == "end" else px + dx
                ty = min(max(py + dy, top + 12), top + h - 4)
                self._items.append(f'<text x="{_fmt(tx)}" y="{_fmt(ty)}" text-anchor="{anchor}" font-size="14" '
                                   f'fill="{BLACK}" stroke="#fff" stroke-width="4" paint-order="stroke">'
                                   f'{html.escape(text)}</text>')
        if label:
            self._legend.append((label, color, "", marker))

    def _arrow(self, px: float, py: float, x: float, y: float, color: str, size: float) -> str:
        fx, fy = self.x.fraction(x), self.y.fraction(y)
        dx = 1 if fx > 1 else -1 if fx < 0 else 0
        dy = -1 if fy > 1 else 1 if fy < 0 else 0   # pixels grow downwards
        s = size * 1.5
        tip = (px + dx * s * 0.3, py + dy * s * 0.3)
        if dx and not dy:
            base = [(tip[0] - dx * s, tip[1] - s * 0.7), (tip[0] - dx * s, tip[1] + s * 0.7)]
        elif dy and not dx:
            base = [(tip[0] - s * 0.7, tip[1] - dy * s), (tip[0] + s * 0.7, tip[1] - dy * s)]
        else:
            base = [(tip[0] - dx * s, tip[1]), (tip[0], tip[1] - dy * s)]
        pts = " ".join(f"{_fmt(a)},{_fmt(b)}" for a, b in [tip, *base])
        return f'<polygon points="{pts}" fill="{color}" stroke="#fff" stroke-width="1.5"/>'

    def text(self, x: float, y: float, text: str, color: str = BLACK, anchor: str = "start", size: int = 14) -> None:
        px, py, _ = self._px(x, y)
        self._items.append(f'<text x="{_fmt(px)}" y="{_fmt(py)}" text-anchor="{anchor}" font-size="{size}" '
                           f'fill="{color}">{html.escape(text)}</text>')

    # -- output -----------------------------------------------------------------------------------------------
    def _axes(self) -> str:
        left, top, w, h = self._box
        parts = [f'<rect x="{left}" y="{top}" width="{_fmt(w)}" height="{_fmt(h)}" fill="#fff" stroke="{BLACK}" '
                 f'stroke-width="1.5"/>']
        for value, text in self.x.tick_marks():
            f = self.x.fraction(value)
            if 0 <= f <= 1:
                px = left + f * w
                parts.append(f'<line x1="{_fmt(px)}" y1="{top}" x2="{_fmt(px)}" y2="{_fmt(top + h)}" '
                             f'stroke="#d0d0d0" stroke-width="1"/>')
                parts.append(f'<text x="{_fmt(px)}" y="{_fmt(top + h + 20)}" text-anchor="middle" font-size="14" '
                             f'fill="{BLACK}">{html.escape(text)}</text>')
        for value, text in self.y.tick_marks():
            f = self.y.fraction(value)
            if 0 <= f <= 1:
                py = top + (1 - f) * h
                parts.append(f'<line x1="{left}" y1="{_fmt(py)}" x2="{_fmt(left + w)}" y2="{_fmt(py)}" '
                             f'stroke="#d0d0d0" stroke-width="1"/>')
                parts.append(f'<text x="{left - 7}" y="{_fmt(py + 5)}" text-anchor="end" font-size="14" '
                             f'fill="{BLACK}">{html.escape(text)}</text>')
        parts.append(f'<text x="{_fmt(left + w / 2)}" y="{_fmt(top + h + 44)}" text-anchor="middle" font-size="15" '
                     f'fill="{BLACK}">{html.escape(self.x.label)}</text>')
        parts.append(f'<text transform="translate(16,{_fmt(top + h / 2)}) rotate(-90)" text-anchor="middle" '
                     f'font-size="15" fill="{BLACK}">{html.escape(self.y.label)}</text>')
        return "".join(parts)

    def legend_html(self) -> str:
        """The legend as an HTML line under the chart (it wraps on a narrow screen instead of covering data)."""
        items = []
        for label, color, dash, marker in self._legend:
            if marker:
                swatch = (f'<svg width="22" height="18" style="vertical-align:middle">'
                          f'{_marker(marker, 11, 9, 6, color)}</svg>')
            else:
                dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
                swatch = (f'<svg width="34" height="18" style="vertical-align:middle"><line x1="2" y1="9" x2="32" '
                          f'y2="9" stroke="{color}" stroke-width="4"{dash_attr}/></svg>')
            items.append(f'<span style="white-space:nowrap;margin-right:1.2em">{swatch} {html.escape(label)}</span>')
        return (f'<div style="line-height:1.8;font-family:sans-serif">{"".join(items)}</div>' if items else "")

    def svg(self, legend: bool = True) -> str:
        """The chart as an inline SVG element (it scales to its container's width), with its legend below."""
        body = self._axes() + "".join(self._items)
        label = html.escape(self.title or f"{self.y.label} against {self.x.label}")
        chart = (f'<svg class="lessonlib-chart" viewBox="0 0 {self.width} {self.height}" role="img" '
                 f'aria-label="{label}" style="width:100%;max-width:{self.width}px;height:auto;display:block" '
                 f'font-family="sans-serif" xmlns="http://www.w3.org/2000/svg">{body}</svg>')
        title = (f'<div style="font-weight:bold;font-family:sans-serif;margin:0 0 0.3em {self.margin[3] / 16:.1f}em">'
                 f'{html.escape(self.title)}</div>' if self.title else "")
        return f'<div class="lessonlib-chart-box">{title}{chart}{self.legend_html() if legend else ""}</div>'


def _marker(kind: str, x: float, y: float, size: float, color: str) -> str:
    stroke = 'stroke="#fff" stroke-width="1.5"'
    if kind == "circle":
        return f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="{size}" fill="{color}" {stroke}/>'
    if kind == "square":
        return (f'<rect x="{_fmt(x - size)}" y="{_fmt(y - size)}" width="{2 * size}" height="{2 * size}" '
                f'fill="{color}" {stroke}/>')
    if kind == "diamond":
        s = size * 1.3
        return (f'<polygon points="{_fmt(x)},{_fmt(y - s)} {_fmt(x + s)},{_fmt(y)} {_fmt(x)},{_fmt(y + s)} '
                f'{_fmt(x - s)},{_fmt(y)}" fill="{color}" {stroke}/>')
    s = size * 1.3
    return (f'<polygon points="{_fmt(x)},{_fmt(y - s)} {_fmt(x + s)},{_fmt(y + 0.8 * s)} '
            f'{_fmt(x - s)},{_fmt(y + 0.8 * s)}" fill="{color}" {stroke}/>')


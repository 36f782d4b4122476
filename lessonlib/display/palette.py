"""Colours every dashboard shares: Okabe and Ito's palette, which stays distinguishable with each common form of
colour blindness and in greyscale print, plus the meaning each dashboard gives them. Colour is never the only
cue: bars carry labels, lines differ in dash as well, and a verdict carries a symbol and a word."""
from __future__ import annotations

BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
BLUISH_GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
REDDISH_PURPLE = "#CC79A7"
GREY = "#595959"          # text of secondary importance, still 7:1 against white

OKABE_ITO = (BLUE, ORANGE, BLUISH_GREEN, VERMILLION, REDDISH_PURPLE, SKY_BLUE, YELLOW, BLACK)
DASHES = ("", "8 4", "2 3", "10 3 2 3", "4 4", "1 2", "12 2", "6 2 2 2")   # SVG stroke-dasharray, one per series

WEIGHTS = BLUE
KV_CACHE = ORANGE
ACTIVATIONS = REDDISH_PURPLE
COMPUTE = BLUISH_GREEN
LIMIT = VERMILLION        # a device's memory, a budget, a target
GOOD = BLUE
BAD = VERMILLION


def expert_color(index: int) -> str:
    """One colour per expert (cycling past eight); the expert's number is always printed beside it."""
    return OKABE_ITO[index % len(OKABE_ITO)]


def text_on(color: str) -> str:
    """Black or white, whichever reads better on ``color`` (by relative luminance)."""
    r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "#000" if luminance > 0.4 else "#fff"


def verdict(fits: bool, yes: str = "fits", no: str = "does not fit") -> str:
    """A fit verdict as HTML: a symbol and words as well as a colour, kept on one line."""
    if fits:
        return f'<b style="color:{GOOD};white-space:nowrap">&#10004; {yes}</b>'
    return f'<b style="color:{BAD};white-space:nowrap">&#10008; {no}</b>'

"""Notebook output helpers: prose with live numbers, tables, and lists of options."""
from __future__ import annotations

import html
import numbers
import re
from typing import Iterable, Mapping, Sequence


def say(markdown: str) -> None:
    """Render a sentence whose numbers were just computed, as Markdown in the notebook."""
    from IPython.display import Markdown, display

    display(Markdown(markdown))


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Render rows as an HTML table: numbers right-aligned, text (including labels such as "2:4") left."""
    from IPython.display import HTML, display

    def cell(value: object, tag: str) -> str:
        align = "right" if looks_numeric(value) else "left"
        return f"<{tag} style='text-align:{align}'>{value}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    display(HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"))


# A number as a table shows it: "1,234", "-0.5", "3.2e+09", "12%", "1.5x", optionally followed by one unit
# word ("25.6 GB", "3.20 ms"). A label such as "2:4" or "top-2" is not one.
_NUMERIC = re.compile(r"[+\-\u2212]?[\d,]*\.?\d+(?:e[+-]?\d+)?[%x]?(?:\s+[^\s\d]\S*)?")


def looks_numeric(value: object) -> bool:
    """True for numbers and for text that shows one (then a table right-aligns it)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Number):
        return True
    return isinstance(value, str) and _NUMERIC.fullmatch(value.strip()) is not None


def options_table(options: Mapping[str, str], title: str = "") -> None:
    """Display a dict of options (key -> text) as a two-column table in the notebook."""
    table(["key", title or "option"],
          [(f"<code>{html.escape(key)}</code>", html.escape(text)) for key, text in options.items()])

"""Small display helpers for notebooks: prose with live numbers, and tables."""
from __future__ import annotations

from typing import Iterable, Sequence


def say(markdown: str) -> None:
    """Render a sentence whose numbers were just computed, as Markdown in the notebook."""
    from IPython.display import Markdown, display

    display(Markdown(markdown))


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Render rows as an HTML table (numbers right-aligned)."""
    from IPython.display import HTML, display

    def cell(value: object, tag: str) -> str:
        align = "right" if isinstance(value, (int, float)) or str(value)[:1].isdigit() else "left"
        return f"<{tag} style='text-align:{align}'>{value}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    display(HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"))

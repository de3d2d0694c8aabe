"""A static, self-contained HTML page of tables and PNG figures (no JavaScript, no server).

Usage::

    write_html(out / "index.html", "Run comparison", [
        Section("Configs", text="mean ± std over folds", table=configs, images=["acc.png"]),
    ])
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from arena.utils.io import atomic_path

__all__ = ["Section", "render_html", "write_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; }
tr.best td { background: #e6f4e6; font-weight: bold; }
tr.collapsed td { color: #a33; }
img { max-width: 100%; margin: 0.5em 0; border: 1px solid #eee; }
.note { color: #555; }
"""


@dataclass(frozen=True)
class Section:
    """One heading with optional text, a table and images (paths relative to the page).

    Attributes:
        highlight: table row index -> CSS class (``best``, ``collapsed``).
    """

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    images: Sequence[str] = ()
    highlight: dict[int, str] = field(default_factory=dict)


def _table(df: pd.DataFrame, highlight: dict[int, str]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for position, (_, row) in enumerate(df.iterrows()):
        cells = "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row)
        css = highlight.get(position)
        rows.append(f'<tr class="{css}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def render_html(title: str, sections: Sequence[Section]) -> str:
    """The page as a string; every text and cell is escaped."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f'<p class="note">{html.escape(section.text)}</p>')
        if section.table is not None:
            parts.append(_table(section.table, section.highlight))
        for image in section.images:
            alt = html.escape(Path(image).stem)
            parts.append(f'<img src="{html.escape(image)}" alt="{alt}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path: str | Path, title: str, sections: Sequence[Section]) -> Path:
    """Render and write the page atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(render_html(title, sections), encoding="utf-8")
    return Path(path)

"""Writing a results table three ways: CSV for people to slice, Markdown for the terminal and README,
and an HTML page for the Snakemake report (which shows HTML, images and PDF, and offers anything else,
Markdown included, only as a download)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from eqlv2.io import atomic_write_text

MISSING = "–"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
caption {{ font-weight: bold; text-align: left; padding-bottom: 0.5em; }}
th, td {{ padding: 0.25em 0.75em; border-bottom: 1px solid #ccc; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
</style>
</head>
<body>
{table}
</body>
</html>
"""


COMPANIONS = (" ±", " sd")  # a column's bootstrap half-width, or its standard deviation over seeds


def shown_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: one decimal, '–' where a number is missing, and a column with a
    companion (``<column> ±``, the bootstrap half-width, or ``<column> sd``, the standard deviation over
    seeds) as ``value ± companion`` in one cell."""
    shown = frame.copy()
    for suffix in COMPANIONS:
        for column in [c for c in frame.columns if f"{c}{suffix}" in frame.columns]:
            shown[column] = [
                MISSING if pd.isna(v) else (f"{v:.1f}" if pd.isna(h) else f"{v:.1f} ± {h:.1f}")
                for v, h in zip(frame[column], frame[f"{column}{suffix}"], strict=True)
            ]
            shown = shown.drop(columns=f"{column}{suffix}")
    return shown


def table_html(frame: pd.DataFrame, title: str) -> str:
    """A self-contained HTML page holding the shown table under ``title``."""
    body = shown_table(frame).to_html(
        index=False, na_rep=MISSING, float_format="{:.1f}".format, border=0, escape=True
    )
    body = body.replace("<thead>", f"<caption>{html.escape(title)}</caption>\n  <thead>", 1)
    return _PAGE.format(title=html.escape(title), table=body)


def write_table(
    frame: pd.DataFrame,
    md: str | Path,
    csv: str | Path,
    html_path: str | Path | None = None,
    title: str = "",
) -> str:
    """Write the table as CSV (numbers, companions in their own columns), Markdown and, given a path, an
    HTML page titled ``title``; return the Markdown."""
    markdown = shown_table(frame).to_markdown(index=False, floatfmt=".1f", missingval=MISSING)
    atomic_write_text(csv, frame.to_csv(index=False))
    atomic_write_text(md, markdown + "\n")
    if html_path is not None:
        atomic_write_text(html_path, table_html(frame, title))
    return markdown

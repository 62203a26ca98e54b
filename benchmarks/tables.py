"""Writing a benchmark's rows: a CSV for the data and a Markdown table for docs/benchmarks.md."""

import csv
from pathlib import Path
from typing import Any


def format_cell(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def write_results(out: str | Path, rows: list[dict[str, Any]], title: str, columns: dict[str, str]) -> str:
    """Write ``<out>.csv`` (every field) and ``<out>.md`` (``title`` and the ``columns``, key -> header);
    return the Markdown."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        title,
        "",
        "| " + " | ".join(columns.values()) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(format_cell(row[key]) for key in columns) + " |" for row in rows),
    ]
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    return text

"""Small helpers that render run results for Dagster's metadata panel."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any


def markdown_table(rows: Sequence[dict[str, Any]], *, empty: str = "_no rows_") -> str:
    """A Markdown table of `rows` (their keys are the columns), or `empty` when there are none."""
    if not rows:
        return empty
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with every value a JSON scalar (other values as their string form)."""
    return {
        key: value if isinstance(value, int | float | str | bool) else str(value)
        for key, value in row.items()
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    # A pipe would end the cell and a newline the row.
    return text.replace("|", "\\|").replace("\n", " ")

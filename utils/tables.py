"""Markdown tables for the scripts' reports (test.py's results, bench.py's timings)."""
from __future__ import annotations

import math
from typing import Sequence


def cell(value: float | None, spec: str = ".2f", missing: str = "—") -> str:
    """A number formatted with ``spec``, or ``missing`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


def row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def header(names: Sequence[str], right_aligned_from: int = 1) -> list[str]:
    """The header line and the separator of a table, numbers right-aligned from a column on."""
    align = ["---"] * right_aligned_from + ["---:"] * (len(names) - right_aligned_from)
    return [row(names), "|" + "|".join(align) + "|"]

"""Printing a result table on the terminal (shared by the commands)."""

from __future__ import annotations


def print_table(df, cols=None, *, float_format: str | None = "{:.3f}") -> None:
    """Print ``df`` (the ``cols`` it has, in that order; all when None) without its index,
    wide enough for a summary row, floats with ``float_format``."""
    import pandas as pd

    view = df if cols is None else df[[c for c in cols if c in df]]
    opts = ["display.width", 200, "display.max_columns", 20]
    if float_format is not None:
        opts += ["display.float_format", float_format.format]
    with pd.option_context(*opts):
        print(view.to_string(index=False))

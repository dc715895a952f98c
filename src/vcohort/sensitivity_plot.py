"""Tornado plots of ranked sensitivity tables (matplotlib figures drawn off-screen with Agg,
without pyplot: no display needed, and the caller's backend is left as it is)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _figure(n: int):
    """A figure of its own (no pyplot: the caller's backend and figures are left alone)."""
    from vcohort.plots import new_figure

    fig = new_figure(7.5, 1.2 + 0.32 * n)
    return fig, fig.add_subplot()


def _save(fig, ax, labels, title: str, xlabel: str, path) -> Path:
    from vcohort.plots import save_figure

    ax.set_yticks(np.arange(len(labels)))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()  # rank 1 on top
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path, dpi=120)  # atomic


def tornado_local(table: pd.DataFrame, path, *, top: int = 15, title: str = "") -> Path:
    """Median ∂E/∂log θ (bar) and interquartile range (whisker) of the ``top`` ranked rows of
    `vcohort.sensitivity.rank_local`, with the ranking's own quantity, the median of |∂E/∂log θ|
    (◇, on the side of the median): a parameter whose effect changes sign between patients
    ranks by its size, not by its small median."""
    t = table.head(top)
    fig, ax = _figure(len(t))
    y = np.arange(len(t))
    colours = np.where(t["median"] >= 0, "#b2182b", "#2166ac")
    ax.barh(y, t["median"], color=colours, alpha=0.8)
    err = np.vstack([t["median"] - t["q25"], t["q75"] - t["median"]])
    ax.errorbar(t["median"], y, xerr=np.abs(err), fmt="none", ecolor="k", capsize=3, lw=1)
    side = np.where(t["median"] >= 0, 1.0, -1.0)
    ax.plot(side * t["median_abs"], y, "D", mfc="none", mec="k", ms=5, label="median |S| (rank)")
    ax.legend(loc="lower right", fontsize=8)
    ax.axvline(0.0, color="k", lw=0.8)
    return _save(
        fig,
        ax,
        list(t["parameter"]),
        title,
        "∂ endpoint / ∂ log parameter S (bar: median, whisker: IQR across patients; "
        "ranked by median |S|)",
        path,
    )


def tornado_sobol(table: pd.DataFrame, path, *, top: int = 15, title: str = "") -> Path:
    """Total (ST) and first-order (S1) Sobol indices with 95% intervals, ``top`` rows of
    `vcohort.sobol.sobol_indices`."""
    t = table.head(top)
    fig, ax = _figure(len(t))
    y = np.arange(len(t))
    ax.barh(y - 0.2, t["ST"], height=0.4, xerr=t["ST_conf"], label="total (ST)", color="#b2182b")
    ax.barh(y + 0.2, t["S1"], height=0.4, xerr=t["S1_conf"], label="first order (S1)", color="#999")
    ax.legend(loc="lower right", fontsize=8)
    # the axis starts at the lowest interval end, ST's too (an ST interval reaching below 0, an
    # index not told apart from 0, was cut off at 0)
    low = np.concatenate([t["S1"] - t["S1_conf"], t["ST"] - t["ST_conf"]]).astype(float)
    ax.set_xlim(left=min(0.0, float(np.nanmin(low, initial=0.0))))
    return _save(fig, ax, list(t["parameter"]), title, "Sobol index", path)

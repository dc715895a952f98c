"""Trial figures: waterfall, spider, Kaplan–Meier PFS, swimmer and dose-schedule charts.

Every figure is drawn with matplotlib's object API on an Agg canvas (no pyplot state, no
display needed).  Each plotting function takes the data (and optionally an ``ax`` to draw
into) and returns the `Figure`; `save_figure` writes it as PNG.  Per-arm figures are grids
of one panel per arm built by `by_arm`.

Conventions (RECIST 1.1, Eisenhauer et al. 2009, Eur J Cancer 45:228): the dashed reference
lines at +20% and −30% mark the PD and PR thresholds of the sum of diameters; colours encode
best overall response (BOR).  The Kaplan–Meier estimate, its 95% interval (exponential
Greenwood) and the numbers at risk come from lifelines (Davidson-Pilon 2019, JOSS 4:1317).
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from vcohort.endpoints import km_median
from vcohort.io import atomic_write_bytes

BOR_ORDER = ("CR", "PR", "SD", "PD", "NE")
BOR_COLORS = {"CR": "#08519c", "PR": "#6baed6", "SD": "#fdb863", "PD": "#b2182b", "NE": "#969696"}
PD_LINE, PR_LINE = 20.0, -30.0  # % change: RECIST 1.1 PD (vs nadir) and PR (vs baseline)
ENDPOINT_COLUMNS = ("patient", "arm", "bor", "best_pct_change", "pfs_days", "pfs_event")
TIMECOURSE_COLUMNS = ("patient", "arm", "day", "diameter_mm")
DOSE_COLUMNS = ("TIME", "AMT", "II", "ADDL", "RATE")


# ---------------------------------------------------------------------- helpers
def require_columns(df: pd.DataFrame, columns, name: str) -> None:
    """Raise a ValueError naming ``name``, the missing columns and the ones present."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name} lacks columns {missing}; required: {list(columns)}; has: {list(df.columns)}"
        )


def mpl_text(s) -> str:
    """A user string safe for matplotlib text ('$' would start mathtext)."""
    return str(s).replace("$", r"\$")


def new_figure(width: float, height: float, **kw) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained", **kw)
    FigureCanvasAgg(fig)
    return fig


def _ax(ax, width: float = 6.4, height: float = 4.2):
    return ax if ax is not None else new_figure(width, height).add_subplot()


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG, atomically (no software/date metadata: reruns give equal files)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def arms_of(df: pd.DataFrame) -> list:
    """Arm names in order of first appearance."""
    return list(dict.fromkeys(df["arm"].tolist()))


def by_arm(
    plot: Callable,
    arms: list,
    *frames: pd.DataFrame,
    ncols: int = 3,
    panel=(4.2, 3.3),
    sharey: bool = True,
    **kw,
) -> Figure:
    """One panel per arm: ``plot(*frames_of_arm, ax=ax, title=arm, **kw)``; frames with an
    ``arm`` column are filtered to the arm, others passed whole."""
    n = max(len(arms), 1)
    nc = min(ncols, n)
    nr = -(-n // nc)
    fig = new_figure(panel[0] * nc, panel[1] * nr + 0.5)
    axes = fig.subplots(nr, nc, squeeze=False, sharey=sharey).ravel()
    limits = []
    for ax, arm in zip(axes, arms, strict=False):
        parts = [f[f["arm"] == arm] if "arm" in f.columns else f for f in frames]
        plot(*parts, ax=ax, title=arm, **kw)
        limits.append(ax.get_ylim())  # (a shared axis: each panel's own, read as it is set)
        if sharey and not ax.get_subplotspec().is_first_col():
            ax.set_ylabel("")
    if sharey and limits:  # the union of the panels' ranges (the last set_ylim would win)
        axes[0].set_ylim(min(lo for lo, _ in limits), max(hi for _, hi in limits))
    for ax in axes[len(arms) :]:
        ax.set_visible(False)
    if not arms:
        _empty(axes[0], "no arms")
    return fig


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def bor_legend(fig_or_ax, present=BOR_ORDER, **kw) -> None:
    handles = [Patch(color=BOR_COLORS[b], label=b) for b in BOR_ORDER if b in set(present)]
    if handles:
        fig_or_ax.legend(handles=handles, title="BOR", **kw)


def _bor(series: pd.Series) -> pd.Series:
    return series.astype(str).where(series.astype(str).isin(BOR_ORDER), "NE")


def subsample(df: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """At most ``n`` rows drawn without replacement (fixed ``seed``), in their original order."""
    if len(df) <= n:
        return df
    idx = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    return df.iloc[idx]


def evaluable(endpoints: pd.DataFrame) -> pd.DataFrame:
    """Patients with a finished simulation (status 0 when present) and a finite best change."""
    ok = np.isfinite(endpoints["best_pct_change"].to_numpy(dtype=float))
    if "status" in endpoints.columns:
        ok &= endpoints["status"].to_numpy() == 0
    return endpoints[ok]


def pct_change(timecourse: pd.DataFrame) -> pd.DataFrame:
    """Adds ``pct_change``: % change of ``diameter_mm`` from each patient's first day, per arm."""
    tc = timecourse.sort_values(["arm", "patient", "day"], kind="stable")
    base = tc.groupby(["arm", "patient"], sort=False)["diameter_mm"].transform("first")
    return tc.assign(pct_change=100.0 * (tc["diameter_mm"] - base) / base)


def horizon_of(endpoints: pd.DataFrame, timecourse: pd.DataFrame | None = None) -> float:
    vals = [endpoints["pfs_days"].max() if len(endpoints) else np.nan]
    if timecourse is not None and len(timecourse):
        vals.append(timecourse["day"].max())
    h = np.nanmax(np.asarray(vals, dtype=float)) if np.isfinite(vals).any() else np.nan
    return float(h) if np.isfinite(h) and h > 0 else 1.0


def day_ticks(horizon: float, max_ticks: int = 9) -> np.ndarray:
    """Ticks at a clinically usual step (weeks, 4-week cycles, 6-weekly scans, months)."""
    for step in (7, 14, 28, 42, 56, 84, 91, 182, 364, 728):
        if horizon / step <= max_ticks:
            break
    return np.arange(0.0, horizon + 1e-9, step)


# ---------------------------------------------------------------------- waterfall
def bar_vertices(heights: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """(n, 4, 2) corners of unit-width bars from 0 to ``heights`` centred on ``x`` (0..n-1)."""
    x = np.arange(len(heights)) if x is None else np.asarray(x)
    xs = np.stack([x - 0.5, x - 0.5, x + 0.5, x + 0.5], axis=1)
    ys = np.stack([np.zeros_like(heights), heights, heights, np.zeros_like(heights)], axis=1)
    return np.stack([xs, ys], axis=2)


def waterfall(endpoints: pd.DataFrame, *, ax=None, title=None, cap: float = 100.0) -> Figure:
    """Best % change from baseline per patient, sorted (largest growth left), coloured by BOR;
    bars above ``cap`` % are cut at the cap and hatched."""
    ax = _ax(ax)
    ev = evaluable(endpoints).sort_values("best_pct_change", ascending=False, kind="stable")
    y = ev["best_pct_change"].to_numpy(dtype=float)
    colors = [BOR_COLORS[b] for b in _bor(ev["bor"])]
    ax.add_collection(PolyCollection(bar_vertices(np.minimum(y, cap)), facecolors=colors, lw=0))
    over = y > cap  # one collection per style: thousands of bars draw in well under a second
    ax.add_collection(
        PolyCollection(
            bar_vertices(np.full(over.sum(), cap), np.flatnonzero(over)),
            facecolors="none",
            edgecolors="0.15",
            hatch="//",
            lw=0,
        )
    )
    if over.any():  # the figure explains its hatching on its own (not only the report's caption)
        ax.text(0.99, 0.98, f"hatched: above +{cap:g}%, cut at +{cap:g}% ({int(over.sum())})",
                transform=ax.transAxes, ha="right", va="top", fontsize=7)  # fmt: skip
    for v, lab in ((PD_LINE, "+20%"), (PR_LINE, "−30%")):
        ax.axhline(v, color="0.25", ls="--", lw=0.8)
        ax.text(1.01, v, lab, transform=ax.get_yaxis_transform(), va="center", fontsize=7)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_xlim(-0.5, max(len(y), 1) - 0.5)
    top = max(40.0, float(np.nanmax(np.minimum(y, cap))) + 5.0) if len(y) else 40.0
    ax.set_ylim(-105.0, top)
    ax.set_xticks([])
    ax.set_xlabel(f"patients (n={len(y)})")
    ax.set_ylabel("best change from baseline (%)")
    n_out = len(endpoints) - len(ev)
    ax.set_title(
        mpl_text(title or "") + (f"  [{n_out} not evaluable]" if n_out else ""), fontsize=10
    )
    if not len(y):
        _empty(ax, "no evaluable patients")
    return ax.figure


def waterfall_by_arm(endpoints: pd.DataFrame, **kw) -> Figure:
    require_columns(endpoints, ENDPOINT_COLUMNS, "endpoints")
    fig = by_arm(waterfall, arms_of(endpoints), endpoints, **kw)
    bor_legend(fig, _bor(evaluable(endpoints)["bor"]).unique(), loc="outside right upper")
    return fig


# ---------------------------------------------------------------------- spider
def spider(
    endpoints: pd.DataFrame,
    timecourse: pd.DataFrame,
    *,
    ax=None,
    title=None,
    max_patients: int = 40,
    seed: int = 0,
) -> Figure:
    """% change of the diameter from baseline over time, one line per patient (a random subset
    of ``max_patients``), coloured by BOR."""
    ax = _ax(ax)
    ev = subsample(evaluable(endpoints), max_patients, seed)
    bor = dict(zip(ev["patient"], _bor(ev["bor"]), strict=True))
    tc = pct_change(timecourse[timecourse["patient"].isin(bor)])
    for pid, g in tc.groupby("patient", sort=False):
        ax.plot(g["day"], g["pct_change"], color=BOR_COLORS[bor[pid]], lw=0.9, alpha=0.8)
    for v in (PD_LINE, PR_LINE):
        ax.axhline(v, color="0.25", ls="--", lw=0.8)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_xlabel("day")
    ax.set_ylabel("change from baseline (%)")
    shown = f"{len(bor)} of {len(evaluable(endpoints))} shown" if len(bor) else ""
    ax.set_title(f"{mpl_text(title or '')}  {shown}".strip(), fontsize=10)
    if not len(tc):
        _empty(ax, "no evaluable patients")
    else:
        ax.set_xticks(day_ticks(float(tc["day"].max())))
    return ax.figure


def spider_by_arm(endpoints, timecourse, **kw) -> Figure:
    require_columns(endpoints, ENDPOINT_COLUMNS, "endpoints")
    require_columns(timecourse, TIMECOURSE_COLUMNS, "timecourse")
    fig = by_arm(spider, arms_of(endpoints), endpoints, timecourse, **kw)
    bor_legend(fig, _bor(evaluable(endpoints)["bor"]).unique(), loc="outside right upper")
    return fig


# ---------------------------------------------------------------------- Kaplan–Meier
def km_pfs(endpoints: pd.DataFrame, *, ax=None, horizon: float | None = None) -> Figure:
    """Kaplan–Meier PFS per arm with 95% CI bands, censoring ticks and a numbers-at-risk table
    under the axis (lifelines).  Failed patients (status != 0) are left out."""
    return _km_by_arm(endpoints, "pfs", ax=ax, horizon=horizon)


def km_dor(endpoints: pd.DataFrame, *, ax=None, horizon: float | None = None) -> Figure:
    """Kaplan–Meier duration of response per arm (its responders: ``dor_days``, ``dor_event``
    from `vcohort.endpoints.patient_endpoints`), from each patient's response day, drawn as
    `km_pfs`."""
    return _km_by_arm(endpoints, "dor", ax=ax, horizon=horizon)


_KM_WHAT = {  # time, event, y label, x label, who is left when none is
    "pfs": ("pfs_days", "pfs_event", "progression-free probability", "day", "evaluable patients"),
    "dor": ("dor_days", "dor_event", "probability of remaining in response",
            "days since the response", "responders"),
}  # fmt: skip


def _km_by_arm(endpoints: pd.DataFrame, what: str, *, ax, horizon) -> Figure:
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    t_col, e_col, ylabel, xlabel, who = _KM_WHAT[what]
    require_columns(endpoints, ENDPOINT_COLUMNS + ((t_col, e_col) if what == "dor" else ()),
                    "endpoints")  # fmt: skip
    arms = arms_of(endpoints)
    own = ax is None
    ax = _ax(ax, 7.5, 4.8 + 0.45 * len(arms))
    horizon = horizon or horizon_of(endpoints)
    fitters, labels, handles = [], [], []
    for i, arm in enumerate(arms):
        g = endpoints[endpoints["arm"] == arm]
        if "status" in g.columns:
            g = g[g["status"] == 0]
        g = g[np.isfinite(g[t_col].to_numpy(dtype=float))]
        if not len(g):  # named in the legend, not dropped unmarked
            rows = endpoints[endpoints["arm"] == arm]
            all_failed = "status" in rows and len(rows) and not (rows["status"] == 0).any()
            none = _KM_WHAT["pfs"][4] if all_failed else who  # no responder as none evaluable
            labels.append(f"{mpl_text(arm)}: no {none} (of {len(rows)})")
            handles.append(Line2D([], [], color=f"C{i % 10}", linestyle=":"))
            continue
        kmf = KaplanMeierFitter().fit(
            g[t_col].to_numpy(dtype=float),
            g[e_col].to_numpy(dtype=bool),
            label=mpl_text(arm),
        )
        kmf.plot_survival_function(
            ax=ax,
            ci_show=True,
            show_censors=True,
            color=f"C{i % 10}",
            censor_styles={"ms": 5, "marker": "|"},
            ci_alpha=0.3 if len(arms) <= 2 else 0.12,
        )
        med = km_median(kmf.survival_function_.iloc[:, 0])
        unassessed = "n_assessments" in g and int(g["n_assessments"].max()) == 0
        labels.append(
            f"{mpl_text(arm)}: n={len(g)}, events={int(g[e_col].sum())}, "
            + (
                "not assessed"  # no imaging within the horizon: no median to speak of
                if unassessed
                else f"median {med:.0f} d"
                if np.isfinite(med)
                else "median not reached"
            )
        )
        fitters.append(kmf)
        handles.append(Line2D([], [], color=f"C{i % 10}"))
    # a margin past the horizon: censoring ticks and steps at the last assessment (often the
    # horizon) would sit on the axis' spine
    ax.set_xlim(0.0, horizon * 1.04)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if not fitters:
        _empty(ax, f"no {who}")
        return ax.figure
    if ax.get_legend() is not None:  # lifelines' own legend: replaced by the one below
        ax.get_legend().remove()
    (ax.figure if own else ax).legend(
        handles,
        labels,
        loc="outside upper center" if own else "best",
        fontsize=8,
        ncols=2 if own and len(labels) > 2 else 1,
    )
    ax.set_xticks(day_ticks(horizon))
    # lifelines formats its first tick label with str.format: braces in an arm name would be
    # read as fields (KeyError, no report); the row is rewritten by `_numbers_at_risk` anyway
    labels = [f._label.replace("{", "{{").replace("}", "}}") for f in fitters]
    add_at_risk_counts(*fitters, ax=ax, fig=ax.figure, rows_to_show=["At risk"], labels=labels)
    _numbers_at_risk(ax.figure.axes[-1], fitters)
    return ax.figure


def numbers_at_risk(durations, ticks) -> list[int]:
    """Patients still followed at each tick: PFS time >= t (the clinical convention: a patient
    who progresses or is censored at t is counted at t)."""
    d = np.asarray(durations, dtype=float)
    return [int(np.sum(d >= t)) for t in ticks]


def _numbers_at_risk(ax2, fitters) -> None:
    """Rewrite lifelines' at-risk row with `numbers_at_risk`.  lifelines counts after the
    events at a time are removed, so with progressions on assessment days that fall on the
    ticks it shows each tick's count one step late (its labels' layout is kept)."""
    ticks = ax2.get_xticks()
    counts = [numbers_at_risk(f.durations, ticks) for f in fitters]
    width = len(str(max(max(c) for c in counts)))
    first = "At risk\n" + "".join(
        f"{f._label.rjust(10)}{' ' * (width - len(str(c[0])) + 3)}{c[0]:>{width}d}\n"
        for f, c in zip(fitters, counts, strict=True)
    )
    rest = ["".join(f"\n{c[k]}" for c in counts) for k in range(1, len(ticks))]
    ax2.set_xticklabels([first, *rest], ha="right")


# ---------------------------------------------------------------------- swimmer
def response_onset(timecourse: pd.DataFrame, threshold: float = PR_LINE) -> pd.Series:
    """First saved day with % change from baseline ≤ ``threshold`` per (arm, patient)."""
    tc = pct_change(timecourse)
    hit = tc[tc["pct_change"] <= threshold]
    return hit.groupby(["arm", "patient"], sort=False)["day"].min()


def swimmer(
    endpoints: pd.DataFrame,
    timecourse: pd.DataFrame | None = None,
    *,
    ax=None,
    title=None,
    max_patients: int = 30,
    seed: int = 0,
    horizon: float | None = None,
) -> Figure:
    """A bar per patient (random subset, sorted) from day 0 to PFS coloured by BOR; ▲ the
    response (`response_day`: the RECIST assessment that first measured the CR/PR the colour
    shows; for endpoints without it, the first saved day of ``timecourse`` with ≥30%
    shrinkage), ✕ progression, ▶ censored (still progression-free)."""
    ax = _ax(ax)
    ev = evaluable(endpoints)
    ev = ev[np.isfinite(ev["pfs_days"].to_numpy(dtype=float))]
    ev = subsample(ev, max_patients, seed).sort_values("pfs_days", kind="stable")
    y = np.arange(len(ev))
    pfs = ev["pfs_days"].to_numpy(dtype=float)
    event = ev["pfs_event"].to_numpy(dtype=bool)
    ax.barh(y, pfs, height=0.7, color=[BOR_COLORS[b] for b in _bor(ev["bor"])])
    ax.plot(pfs[event], y[event], "x", color="black", ms=6, mew=1.5, ls="none")
    ax.plot(pfs[~event], y[~event], ">", color="0.3", ms=5, ls="none")
    on = None
    if "response_day" in ev:  # the response BOR counts, at its assessment
        on = ev["response_day"].to_numpy(dtype=float)
    elif timecourse is not None and len(timecourse) and len(ev):
        onset = response_onset(timecourse[timecourse["patient"].isin(ev["patient"])])
        onset = onset.droplevel("arm") if onset.index.nlevels > 1 else onset
        on = ev["patient"].map(onset).to_numpy(dtype=float)
    if on is not None:
        sel = np.isfinite(on) & (on <= pfs)
        ax.plot(on[sel], y[sel], "^", color="black", mfc="white", ms=5, ls="none")
    ax.set_yticks(y, [str(p) for p in ev["patient"]], fontsize=6)
    ax.set_ylabel("patient")
    ax.set_xlabel("day")
    horizon = horizon or horizon_of(endpoints, timecourse)
    ax.set_xlim(0.0, horizon * 1.04)
    ax.set_xticks(day_ticks(horizon))
    ax.set_title(
        f"{mpl_text(title or '')}  {len(ev)} of {len(evaluable(endpoints))} shown".strip(),
        fontsize=10,
    )
    if not len(ev):
        _empty(ax, "no evaluable patients")
    return ax.figure


def swimmer_by_arm(endpoints, timecourse=None, **kw) -> Figure:
    require_columns(endpoints, ENDPOINT_COLUMNS, "endpoints")
    frames = [endpoints] + ([] if timecourse is None else [timecourse])
    kw.setdefault("horizon", horizon_of(endpoints, timecourse))
    fig = by_arm(swimmer, arms_of(endpoints), *frames, panel=(4.6, 4.6), sharey=False, **kw)
    bor_legend(fig, _bor(evaluable(endpoints)["bor"]).unique(), loc="outside right upper")
    shown = "response (RECIST)" if "response_day" in endpoints else "≥30% shrinkage"
    marks = [
        Line2D([], [], marker=m, color=c, mfc=f, ls="none", label=t)
        for m, c, f, t in (
            ("^", "black", "white", shown),
            ("x", "black", "black", "progression"),
            (">", "0.3", "0.3", "censored"),
        )
    ]
    fig.legend(handles=marks, loc="outside right lower", fontsize=8)
    return fig


# ---------------------------------------------------------------------- dose schedule
def expand_doses(nmtran: pd.DataFrame) -> pd.DataFrame:
    """Individual doses from NM-TRAN records: ``ADDL`` further doses every ``II`` days.
    Columns: DRUG, TIME (day), AMT (mg), RATE (mg/day, 0 = bolus/oral), DUR (day)."""
    require_columns(nmtran, DOSE_COLUMNS, "dose schedule")
    rows = nmtran[nmtran["EVID"].isin([1, 4])] if "EVID" in nmtran.columns else nmtran
    drug = drug_names(rows)
    n = rows["ADDL"].fillna(0).astype(int).clip(lower=0).to_numpy() + 1
    k = np.concatenate([np.arange(m) for m in n]) if len(n) else np.zeros(0)
    rep = lambda col: np.repeat(np.asarray(col), n)  # noqa: E731
    rate = rep(rows["RATE"].fillna(0.0).to_numpy(dtype=float))
    amt = rep(rows["AMT"].to_numpy(dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        dur = np.where(rate > 0, amt / np.where(rate > 0, rate, 1.0), 0.0)
    return (
        pd.DataFrame(
            {
                "DRUG": rep(drug).astype(str),
                "TIME": rep(rows["TIME"].to_numpy(dtype=float))
                + k * rep(rows["II"].fillna(0.0).to_numpy(dtype=float)),
                "AMT": amt,
                "RATE": rate,
                "DUR": dur,
            }
        )
        .sort_values(["DRUG", "TIME"], kind="stable")
        .reset_index(drop=True)
    )


def drug_names(rows: pd.DataFrame) -> pd.Series:
    """The ``DRUG`` column, else ``"CMT n"`` labels, else one generic name."""
    if "DRUG" in rows.columns:
        return rows["DRUG"].astype(str)
    if "CMT" in rows.columns:
        return "CMT " + rows["CMT"].astype(str)
    return pd.Series("drug", index=rows.index)


def _duration_text(days: float) -> str:
    if days < 3 / 24:
        return f"{days * 1440:.0f} min"
    return f"{days * 24:.3g} h" if days < 2 else f"{days:.3g} d"


def _regimen_label(row) -> str:
    """'80 mg q21d ×8, IV 30 min'; a cell product's amount in its unit (1e6 cells)."""
    from vcohort.drugs import CATALOGUE

    drug = CATALOGUE.get(str(getattr(row, "DRUG", "")))
    cells = drug is not None and drug.amount_unit == "1e6 cells"
    s = f"{row.AMT:.4g}×10⁶ cells" if cells else f"{row.AMT:.4g} mg"
    if int(row.ADDL) > 0:
        ii = f"{row.II * 24:.3g}h" if row.II < 1 else f"{row.II:.3g}d"
        s += f" q{ii} ×{int(row.ADDL) + 1}"
    if float(row.RATE) > 0:
        s += f", IV {_duration_text(row.AMT / row.RATE)}"
    return s


def dose_schedule(schedules: dict, *, horizon: float | None = None) -> Figure:
    """Per arm (rows) and drug (lanes): a stem per dose, height ∝ dose / the drug's largest
    dose, ■ infusion, ▼ bolus/oral, labelled with each NM-TRAN record's amount and interval."""
    if not isinstance(schedules, dict):
        raise ValueError(
            f"schedules must be a dict arm -> NM-TRAN DataFrame, got {type(schedules).__name__}"
        )
    doses = {arm: expand_doses(t) for arm, t in schedules.items()}
    drugs = list(dict.fromkeys(d for t in schedules.values() for d in drug_names(t)))
    color = {d: f"C{i % 10}" for i, d in enumerate(drugs)}
    top = {
        d: max(
            float(t.loc[t["DRUG"] == d, "AMT"].max())
            for t in doses.values()
            if (t["DRUG"] == d).any()
        )
        for d in drugs
    }
    last = max([float(t["TIME"].max()) for t in doses.values() if len(t)] + [0.0])
    horizon = horizon or max(last, 1.0)
    arms = list(schedules) or ["(none)"]
    heights = [max(1, doses[a]["DRUG"].nunique()) if a in doses else 1 for a in arms]
    fig = new_figure(9.0, 1.0 + sum(0.55 * h + 0.45 for h in heights))
    axes = fig.subplots(
        len(arms), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights}
    ).ravel()
    for ax, arm in zip(axes, arms, strict=True):
        t = doses.get(arm, pd.DataFrame(columns=["DRUG"]))
        lanes = [d for d in drugs if d in set(t["DRUG"])]  # first listed drug on top
        for j, d in zip(range(len(lanes) - 1, -1, -1), lanes, strict=True):
            g = t[t["DRUG"] == d]
            h = 0.6 * g["AMT"].to_numpy(dtype=float) / top[d] if top[d] > 0 else 0.0 * g["AMT"]
            ax.vlines(g["TIME"], j - 0.4, j - 0.4 + h, color=color[d], lw=0.8)
            inf = g["RATE"].to_numpy() > 0
            for sel, m in ((inf, "s"), (~inf, "v")):
                if len(g) <= 60:  # dense (daily oral) lanes read better as stems only
                    ax.plot(
                        g["TIME"][sel], (j - 0.4 + h)[sel], m, color=color[d], ms=3.5, ls="none"
                    )
            recs = schedules[arm][drug_names(schedules[arm]) == d]
            for r in list(recs.itertuples())[:3]:
                ax.annotate(
                    _regimen_label(r),
                    (r.TIME, j + 0.28),
                    fontsize=7,
                    va="bottom",
                    xytext=(2, 0),
                    textcoords="offset points",
                )
        ax.set_yticks(range(len(lanes)), [mpl_text(d) for d in lanes[::-1]], fontsize=8)
        ax.set_ylim(-0.5, max(len(lanes), 1) - 0.5 + 0.45)
        ax.set_title(mpl_text(arm), fontsize=9, loc="left")
        if not lanes:
            ax.set_yticks([])
            _empty(ax, "no doses")
    axes[-1].set_xlim(-0.01 * horizon, horizon * 1.01)
    axes[-1].set_xticks(day_ticks(horizon))
    axes[-1].set_xlabel("day")
    fig.legend(
        handles=[
            Line2D([], [], marker="s", color="0.3", ls="none", label="IV infusion"),
            Line2D([], [], marker="v", color="0.3", ls="none", label="bolus / oral"),
        ],
        loc="outside lower right",
        ncols=2,
        fontsize=8,
    )
    return fig


FOREST_COLUMNS = ("variable", "subgroup", "arm", "hr_n", "hr", "hr_ci_low", "hr_ci_high")
# the forest axis: the hazard ratios, widened to their CIs by at most this factor beyond the
# outermost ratio and never beyond FOREST_BOUNDS; a CI end outside is clipped, with an arrow
FOREST_SPAN = 4.0
FOREST_BOUNDS = (0.01, 100.0)


def forest_limits(hr, lo, hi) -> tuple[float, float]:
    """The forest plot's log x-axis limits for ratios ``hr`` with CIs ``lo``-``hi``: every
    finite ratio (and 1) shown; a CI end widens the axis up to `FOREST_SPAN` times beyond the
    outermost ratio, within `FOREST_BOUNDS`, so one very wide CI does not squeeze the others."""
    hr, lo, hi = (np.asarray(v, float) for v in (hr, lo, hi))
    r = hr[np.isfinite(hr) & (hr > 0)]
    r_lo, r_hi = min(r.min(initial=1.0), 0.9), max(r.max(initial=1.0), 1.1)
    ends = np.concatenate([lo, hi])
    ends = ends[np.isfinite(ends) & (ends > 0)]
    left = max(min(ends.min(initial=r_lo), r_lo), r_lo / FOREST_SPAN, FOREST_BOUNDS[0])
    right = min(max(ends.max(initial=r_hi), r_hi), r_hi * FOREST_SPAN, FOREST_BOUNDS[1])
    return min(left, r_lo) / 1.15, max(right, r_hi) * 1.15


def log_ticks(left: float, right: float, n: int = 9) -> list[float]:
    """Ticks for a log axis from ``left`` to ``right``: 1, then the decades, then 2 and 5 times
    them, then finer values near 1, each at least 1/``n`` of the range (log10) from the others."""
    gap = np.log10(right / left) / n
    decades = range(int(np.floor(np.log10(left))), int(np.ceil(np.log10(right))) + 1)
    tiers = [
        [1.0],
        [10.0**k for k in decades],
        [m * 10.0**k for k in decades for m in (2, 5)],
        [m * 10.0**k for k in decades for m in (3,)] + [0.9, 0.8, 0.67, 0.33, 1.1, 1.25, 1.5],
    ]
    ticks = []
    for tier in tiers:
        for t in sorted(tier, key=lambda t: abs(np.log10(t))):
            if left <= t <= right and all(abs(np.log10(t / u)) >= gap for u in ticks):
                ticks.append(float(f"{t:.6g}"))
    return sorted(ticks)


def forest(table: pd.DataFrame, *, ax=None) -> Figure:
    """Forest plot of a subgroup table (`vcohort.subgroups.subgroup_table`): per subgroup and
    arm (against the reference) the PFS hazard ratio with its 95% CI on a log axis, the line of
    no difference at 1, the patients behind the ratio (``hr_n``, evaluable in both arms; one per
    arm when they differ) and the interaction p-value at the right ('–': not tested); the first
    rows are all patients.  A ratio that could not be estimated is listed, not drawn; a CI end
    that is open (infinite, 0 or unknown) or beyond the axis (`forest_limits`) is drawn to the
    axis edge with an arrow (a '<' or '>' marker at the edge)."""
    require_columns(table, FOREST_COLUMNS, "subgroup table")
    rows = table[table["hr"].ne(1.0) | table["hr_ci_low"].notna()]  # the reference's own rows
    arms = list(dict.fromkeys(rows["arm"]))
    groups = list(dict.fromkeys(zip(rows["variable"], rows["subgroup"], strict=True)))
    own = ax is None
    # the legend above the axes: long arm names (whole regimens) one per row, wrapped at 70
    # characters, so that no name runs off the figure's edge (three long names side by side did)
    names = [textwrap.fill(str(a), 70) for a in arms]
    cols = 1 if max((len(a) for a in map(str, arms)), default=0) > 34 else min(len(arms), 3)
    legend_rows = sum(n.count("\n") + 1 for n in names) if cols == 1 else -(-len(arms) // 3)
    height = 1.2 + 0.32 * len(groups) * max(len(arms), 1) + 0.2 * legend_rows
    ax = _ax(ax, 8.5, height)
    if not arms:
        _empty(ax, "one arm only: no hazard ratio to show")
        return ax.figure
    left, right = forest_limits(rows["hr"], rows["hr_ci_low"], rows["hr_ci_high"])
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    step = 1.0 / (len(arms) + 1)
    y_ticks, y_labels = [], []
    for i, (var, label) in enumerate(groups):
        y0 = -i
        g = rows[(rows["variable"] == var) & (rows["subgroup"] == label)].set_index("arm")
        ns = [int(v) for v in g["hr_n"].reindex(arms).dropna()]
        n_text = "/".join(str(v) for v in ns) if len(set(ns)) > 1 else str(ns[0] if ns else 0)
        p = g["interaction_p"].reindex(arms) if "interaction_p" in g else pd.Series(dtype=float)
        note = g["interaction_note"].reindex(arms) if "interaction_note" in g else None
        tried = p.notna().any() or (note is not None and note.fillna("").ne("").any())
        p_text = "/".join("–" if not np.isfinite(v) else f"{v:.2g}" for v in p)
        y_ticks.append(y0)
        y_labels.append(mpl_text(f"{label} (n={n_text})" + (f", p_int={p_text}" if tried else "")))
        for j, arm in enumerate(arms):
            if arm not in g.index:
                continue
            hr, lo, hi = (float(g.loc[arm, c]) for c in ("hr", "hr_ci_low", "hr_ci_high"))
            y = y0 + (len(arms) - 1) / 2 * step - j * step
            color = f"C{j % 10}"
            if not (np.isfinite(hr) and hr > 0):
                ax.text(1.0, y, "not estimable", fontsize=7, color=color, va="center")
                continue
            open_lo = not (np.isfinite(lo) and lo > 0) or lo < left
            open_hi = not (np.isfinite(hi) and hi > 0) or hi > right
            a, b = (left if open_lo else lo), (right if open_hi else hi)
            ax.plot([a, b], [y, y], color=color, lw=1.5)
            for is_open, x, m in ((open_lo, left, "<"), (open_hi, right, ">")):
                if is_open:  # the CI goes on beyond the axis: an arrow head at the edge
                    ax.plot([x], [y], m, color=color, ms=5, clip_on=False)
            ax.plot([min(max(hr, left), right)], [y], "s", color=color, ms=5)
    ticks = log_ticks(left, right)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.axvline(1.0, color="0.4", lw=0.8, ls="--")
    ax.set_yticks(y_ticks, y_labels, fontsize=8)
    ax.set_ylim(-len(groups) + 0.5, 0.5)
    ax.set_xlabel("PFS hazard ratio vs the reference arm (95% CI; < 1 favours the arm)")
    handles = [Line2D([], [], color=f"C{j % 10}", marker="s", lw=1.5) for j in range(len(arms))]
    (ax.figure if own else ax).legend(
        handles, [mpl_text(a) for a in names], loc="outside upper center" if own else "best",
        fontsize=8, ncols=cols,
    )  # fmt: skip
    return ax.figure

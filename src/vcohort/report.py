"""A self-contained HTML trial report: title, configuration, summary table and figures.

The HTML has no external resource: figures are embedded as base64 PNG ``data:`` URIs and the
style sheet is inline, so the report opens in a browser without network access.  Every user
string (title, arm names, configuration, table cells) is HTML-escaped.  The PNGs are also
written under ``figures/`` for use elsewhere.
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from vcohort import plots
from vcohort.io import atomic_write_bytes


@dataclass(frozen=True)
class FigureSpec:
    """One report figure: output file stem, heading and caption."""

    name: str
    heading: str
    caption: str


# the swimmer plot's caption around what its ▲ marks (`SWIMMER_SHRINKAGE_CAPTION`)
_SWIMMER_BARS = (
    "One bar per patient (a random subset when an arm is large) from day 0 to progression or "
    "censoring, coloured by best overall response. "
)
_SWIMMER_ENDS = "✕: progression; ▶: censored."

FIGURES = (
    FigureSpec(
        "waterfall",
        "Waterfall: best change in tumour size",
        "Best % change of the sum of diameters from baseline per patient, sorted, coloured by "
        "RECIST 1.1 best overall response. Dashed lines: +20% (progression threshold, measured "
        "from the nadir) and −30% (partial response, from baseline). Bars above +100% are cut "
        "and hatched. Patients whose simulation failed are not evaluable and left out.",
    ),
    FigureSpec(
        "spider",
        "Spider plot: tumour size over time",
        "% change of the diameter from baseline at each saved day, one line per patient (a "
        "random subset when an arm is large), coloured by best overall response.",
    ),
    FigureSpec(
        "km_pfs",
        "Kaplan–Meier progression-free survival",
        "Kaplan–Meier estimate of PFS per arm (lifelines) with 95% confidence bands; ticks mark "
        "censored patients (progression-free at the end of their follow-up: the last "
        "assessment, or the horizon with censor_at = horizon). The table gives the "
        "number at risk at each tick of the day axis. PFS events fall on assessment days.",
    ),
    FigureSpec(
        "km_dor",
        "Kaplan–Meier duration of response",
        "Kaplan–Meier estimate, per arm, of the time its responders (best overall response CR "
        "or PR) stay in response, from the assessment that first measured the response (with "
        "confirmation, the confirmed one) to progression (RECIST 1.1 §4.5); ticks: responses "
        "censored with PFS. 95% confidence bands; numbers at risk under the axis.",
    ),
    FigureSpec(
        "swimmer",
        "Swimmer plot",
        _SWIMMER_BARS
        + "▲: the response, at the RECIST assessment that first measured it; "
        + _SWIMMER_ENDS,
    ),
    FigureSpec(
        "dose_schedule",
        "Dose schedules",
        "Doses of each drug per arm for a typical patient (NM-TRAN records expanded to single "
        "doses). Stem height is proportional to the dose relative to that drug's largest dose; "
        "labels give amount, interval and number of doses of each record.",
    ),
    FigureSpec(
        "forest",
        "Subgroups: PFS hazard ratio by baseline value",
        "PFS hazard ratio of each arm against the reference (Cox, cluster-robust over the "
        "patients every arm shares; 95% CI, log axis) in all patients and in each subgroup of "
        "a baseline value (split at its median unless cut points are given); p_int: test of "
        "the treatment-by-subgroup interaction (Cochran's Q on the subgroups' log hazard "
        "ratios; '–' when a subgroup has no estimable HR), one per arm, not adjusted for the "
        "number of subgroups; n: patients evaluable in both arms; arrows: a CI beyond the "
        "axis. Table: subgroups.csv.",
    ),
)

# the swimmer's caption for endpoints without ``response_day`` (its ▲ is then the time course's)
SWIMMER_SHRINKAGE_CAPTION = (
    _SWIMMER_BARS + "▲: first saved day with ≥30% shrinkage from baseline (model output, not "
    "the RECIST assessment grid); " + _SWIMMER_ENDS
)

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table.summary{border-collapse:collapse;font-size:.85em;overflow-x:auto;display:block}
table.summary th,table.summary td{border:1px solid #ccc;padding:3px 6px;text-align:right}
table.summary th{background:#f3f3f3}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.4em}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}
.meta{color:#666;font-size:.85em}
"""


def render_figures(
    out_dir: Path,
    *,
    summary: pd.DataFrame,
    endpoints: pd.DataFrame,
    timecourse: pd.DataFrame,
    schedules: dict,
    subgroups: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Draw every figure of `FIGURES` into ``out_dir/figures/NAME.png`` (the forest plot when
    a ``subgroups`` table is given); returns name → path."""
    del summary  # the figures use patient-level data; kept for a uniform signature
    horizon = plots.horizon_of(endpoints, timecourse)
    none = pd.DataFrame(columns=[*plots.DOSE_COLUMNS, "DRUG"])
    arms = plots.arms_of(endpoints)
    schedules = {a: schedules.get(a, none) for a in arms} | {
        a: t for a, t in schedules.items() if a not in arms
    }
    makers = {
        "waterfall": lambda: plots.waterfall_by_arm(endpoints),
        "spider": lambda: plots.spider_by_arm(endpoints, timecourse),
        "km_pfs": lambda: plots.km_pfs(endpoints, horizon=horizon),
        "km_dor": lambda: plots.km_dor(endpoints, horizon=horizon),
        "swimmer": lambda: plots.swimmer_by_arm(endpoints, timecourse, horizon=horizon),
        "dose_schedule": lambda: plots.dose_schedule(schedules, horizon=horizon),
        "forest": lambda: plots.forest(subgroups),
    }
    fig_dir = Path(out_dir) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for spec in FIGURES:
        path = fig_dir / f"{spec.name}.png"
        absent = (spec.name == "forest" and subgroups is None) or (
            spec.name == "km_dor" and "dor_days" not in endpoints
        )
        if absent:  # an earlier report's figure of that name in this folder is not this one's
            path.unlink(missing_ok=True)
            continue
        paths[spec.name] = plots.save_figure(makers[spec.name](), path)
    return paths


def config_text(config: dict) -> str:
    """The configuration as indented JSON (non-JSON values shown with ``str``)."""
    return json.dumps(config, indent=2, default=_json_default, ensure_ascii=False)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def summary_html(summary: pd.DataFrame) -> str:
    """All columns of the per-arm summary, cells escaped, floats to 4 significant digits."""
    return summary.to_html(
        index=False,
        escape=True,
        na_rep="–",
        float_format=lambda v: f"{v:.4g}",
        classes="summary",
        border=0,
    )


def _pct(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.1f}%"


def _with_ci(v, lo, hi, fmt) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    ends = [("NR" if np.isinf(x) else fmt(x)) if np.isfinite(x) or np.isinf(x) else "–"
            for x in (lo, hi)]  # fmt: skip
    return f"{fmt(v)} ({ends[0]}–{ends[1]})"


def key_results_html(summary: pd.DataFrame) -> str:
    """The trial team's table: per arm n (the evaluable patients, the failed ones beside),
    ORR and DCR with exact 95% CIs (%), median PFS, median duration of response (DoR, the
    responders) and landmark PFS with 95% CIs, the hazard
    ratio with its CI, grade-4 neutropenia (%).  Columns the summary lacks are left out; "NR":
    not reached; "–": not evaluable."""
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    cols: list[tuple[str, object]] = [("Arm", lambda r: r["arm"])]
    if "n" in summary:

        def n_text(r) -> str:  # the rates' denominator: the patients whose solve succeeded
            failed = int(r["n_failed"]) if "n_failed" in r else 0
            return f"{int(r['n']) - failed}" + (f" (+{failed} failed)" if failed else "")

        cols.append(("n", n_text))
    if "orr" in summary:
        cols.append(
            (
                "ORR, % (95% CI)",
                lambda r: _with_ci(r["orr"], r["orr_ci_low"], r["orr_ci_high"], pct),
            )
        )
    if "dcr" in summary:
        cols.append(
            (
                "DCR, % (95% CI)",
                lambda r: _with_ci(r["dcr"], r["dcr_ci_low"], r["dcr_ci_high"], pct),
            )
        )
    days = lambda x: f"{x:.0f}"  # noqa: E731

    def median_of(what: str):
        def text(r) -> str:
            med = r[f"median_{what}_days"]
            lo, hi = r.get(f"median_{what}_ci_low", np.nan), r.get(f"median_{what}_ci_high", np.nan)
            if np.isfinite(med):
                return _with_ci(med, lo, hi, days)
            evaluable = r.get("n", 1) - r.get("n_failed", 0)
            unassessed = "orr" in r and not np.isfinite(r["orr"])  # no assessment: no estimate
            # DoR without a responder: no estimate at all (a median not reached has a CI)
            no_responder = what == "dor" and np.isnan(lo) and np.isnan(hi)
            if evaluable <= 0 or unassessed or no_responder:  # no one to estimate over
                return "–"
            return f"NR ({days(lo)}–NR)" if np.isfinite(lo) else "NR"  # its lower bound informs

        return text

    if "median_pfs_days" in summary:
        cols.append(("median PFS, days (95% CI)", median_of("pfs")))
    if "median_dor_days" in summary:
        cols.append(("median DoR, days (95% CI)", median_of("dor")))
    if "pfs_landmark" in summary:
        days_ = summary.get("pfs_landmark_days", pd.Series(dtype=float)).dropna()
        day = float(days_.iloc[0]) if len(days_) else None
        head = f"PFS at day {day:.4g}, % (95% CI)" if day is not None else "landmark PFS, %"
        cols.append(
            (
                head,
                lambda r: _with_ci(
                    r["pfs_landmark"], r["pfs_landmark_ci_low"], r["pfs_landmark_ci_high"], pct
                ),
            )
        )
    if "hr" in summary:
        # two decimals, or two significant figures below 0.1 (0.00 is no hazard ratio)
        two = lambda x: f"{x:.2f}" if not 0 < abs(x) < 0.1 else f"{x:.2g}"  # noqa: E731
        cols.append(
            (
                "HR for PFS (95% CI)",
                lambda r: (
                    "reference"
                    if r.get("hr_note") == "reference"
                    else _with_ci(r["hr"], r["hr_ci_low"], r["hr_ci_high"], two)
                ),
            )
        )
        notes = summary["hr_note"] if "hr_note" in summary else pd.Series(dtype=object)
        if not notes.fillna("").isin(["", "reference"]).all():
            # why an HR is missing or its CI is wide: said beside it, not only in summary.csv
            cols.append(
                ("HR note", lambda r: "" if r.get("hr_note") == "reference" else r.get("hr_note"))
            )
    if "grade4_neutropenia" in summary:
        cols.append(("grade-4 neutropenia", lambda r: _pct(r["grade4_neutropenia"])))
    table = pd.DataFrame({h: [f(r) for _, r in summary.iterrows()] for h, f in cols})
    return table.to_html(index=False, escape=True, classes="summary", border=0)


def landmark_note(summary: pd.DataFrame) -> list[str]:
    """A sentence under the key results when an arm with evaluable patients has no landmark PFS
    (the landmark lies past its last follow-up with a patient still progression-free): the
    table's "–" says not evaluable, this says why (the terminal's note does not reach the
    report's readers)."""
    if "pfs_landmark" not in summary or "n" not in summary:
        return []
    evaluable = summary["n"] - summary.get("n_failed", 0)
    assessed = summary["orr"].notna() if "orr" in summary else evaluable > 0
    missing = summary["pfs_landmark"].isna() & (evaluable > 0) & assessed
    if not missing.any():
        return []
    day = summary.get("pfs_landmark_days", pd.Series(dtype=float)).dropna()
    at = f"day {float(day.iloc[0]):.4g}" if len(day) else "the landmark"
    arms = ", ".join(html.escape(str(a)) for a in summary.loc[missing, "arm"])
    return [
        f'<p class="meta">PFS at {at} is not evaluable in {arms}: it lies past the last '
        "follow-up (the last assessment within the horizon, or the horizon itself with "
        'censor_at = "horizon") with a patient still '
        "progression-free; run a longer horizon or choose an earlier landmark_days.</p>"
    ]


def report_html(
    *,
    title: str,
    summary: pd.DataFrame,
    figures: dict[str, Path],
    config: dict,
    generated: str | None = None,
    cohort: str = "",
    captions: dict[str, str] | None = None,
) -> str:
    """The report page; figures are read from ``figures`` (name → PNG path) and embedded, each
    with its `FIGURES` caption unless ``captions`` (name → text) gives another."""
    import vcohort

    esc = html.escape
    generated = generated or datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Generated {esc(generated)} by vcohort {esc(vcohort.__version__)}'
        + (f"; {esc(cohort)}" if cohort else "")
        + ".</p>",
        "<h2>Key results</h2>",
        key_results_html(summary),
        *landmark_note(summary),
        "<details><summary>Every summary statistic (summary.csv; units and meanings in "
        "columns.csv)</summary>",
        summary_html(summary),
        "</details>",
    ]
    for spec in FIGURES:
        if spec.name not in figures:
            continue
        data = base64.b64encode(Path(figures[spec.name]).read_bytes()).decode("ascii")
        parts += [
            f'<h2 id="{spec.name}">{esc(spec.heading)}</h2>',
            f'<figure><img alt="{esc(spec.heading)}" src="data:image/png;base64,{data}">',
            f"<figcaption>{esc((captions or {}).get(spec.name, spec.caption))}</figcaption>"
            "</figure>",
        ]
    parts += ["<h2>Configuration</h2>", f"<pre>{esc(config_text(config))}</pre>", "</body></html>"]
    return "\n".join(parts)


def validate_inputs(title, summary, endpoints, timecourse, schedules, config) -> None:
    """Clear errors for wrong types or missing columns, before any drawing."""
    if not isinstance(title, str):
        raise ValueError(f"title must be a string, got {type(title).__name__}")
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    plots.require_columns(summary, ("arm",), "summary")
    plots.require_columns(endpoints, plots.ENDPOINT_COLUMNS, "endpoints")
    plots.require_columns(timecourse, plots.TIMECOURSE_COLUMNS, "timecourse")
    if not isinstance(schedules, dict):
        raise ValueError(f"schedules must be a dict arm -> DataFrame, got {type(schedules)}")
    for arm, table in schedules.items():
        plots.require_columns(table, plots.DOSE_COLUMNS, f"schedules[{arm!r}]")


def write_trial_report(
    out_dir: str | os.PathLike,
    *,
    title: str,
    summary: pd.DataFrame,
    endpoints: pd.DataFrame,
    timecourse: pd.DataFrame,
    schedules: dict[str, pd.DataFrame],
    config: dict,
    subgroups: pd.DataFrame | None = None,
) -> list[Path]:
    """Write ``figures/*.png`` and ``report.html`` under ``out_dir``; return the paths written.

    Args:
        out_dir: existing or new folder.
        title: report title (escaped).
        summary: one row per arm (``arm`` plus any statistics; every column is shown).
        endpoints: one row per patient × arm (`vcohort.endpoints.patient_endpoints` + ``arm``).
        timecourse: long table with patient, arm, day, diameter_mm (`runs.timecourse_frame`).
        schedules: arm → NM-TRAN dose records (`vcohort.dosing.to_nmtran`); may be empty.
        config: shown as JSON in the report.
        subgroups: `vcohort.subgroups.subgroup_table` (a forest plot), or None.
    """
    validate_inputs(title, summary, endpoints, timecourse, schedules, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = render_figures(
        out, summary=summary, endpoints=endpoints, timecourse=timecourse, schedules=schedules,
        subgroups=subgroups,
    )  # fmt: skip
    cohort = f"{endpoints['patient'].nunique()} virtual patients × {summary['arm'].nunique()} arms"
    captions = {} if "response_day" in endpoints else {"swimmer": SWIMMER_SHRINKAGE_CAPTION}
    page = report_html(
        title=title, summary=summary, figures=figures, config=config, cohort=cohort,
        captions=captions,
    )  # fmt: skip
    report = out / "report.html"
    atomic_write_bytes(report, page.encode("utf-8"))
    return [*figures.values(), report]

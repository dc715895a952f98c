"""Per-patient endpoints and per-arm summaries from `Trajectories`.

Tumour size is the spherical-equivalent diameter (QSP-IO ``tumSizePerc.m``) used as the RECIST
sum of diameters.  RECIST 1.1 (Eisenhauer et al. 2009, Eur J Cancer 45:228): PR is a ≥30%
decrease from **baseline**; PD a ≥20% increase over the **nadir** (smallest sum so far,
including baseline) that is also ≥5 mm; CR is disappearance, here a diameter under
``cr_floor_mm`` (recorded as 0 mm, so that regrowth to a measurable size after a CR is PD);
SD otherwise.  With ``confirm_days > 0`` a PR/CR counts only when it holds at every
assessment up to the first one at least ``confirm_days`` later (before any PD; RECIST 1.1
§4.6 requires ≥4 weeks, i.e. 28 days, in non-randomised trials, and Table 3 makes PR then SD
an SD); an unconfirmed response is SD.
SD as best response needs a non-PD assessment at least ``sd_min_days`` after the start
(RECIST 1.1 §4.4: "at a minimum interval (in general not less than 6–8 weeks) that is defined
in the study protocol"; default 42 days, the lower end); a patient without one is PD if a later
assessment shows PD, NE otherwise.
Assessments are every ``assess_every`` days from ``assess_first`` (default 42 and 42:
assumption, every 6 weeks from week 6, the lower end of the 6–8-weekly follow-up RECIST 1.1
calls reasonable in phase II trials; trials differ, e.g. KEYNOTE-002 imaged first at week 12,
then every 6 weeks: ``experiments/keynote002_like.toml``) or on explicit days.  PFS is the
day of the first PD assessment, censored at the last assessment (FDA 2018 guidance on clinical
trial endpoints: censor at the last adequate assessment) or, with ``censor_at="horizon"``, at
the horizon.  There is no death in the model, so PFS events are progressions only.

Survival summaries use lifelines (Davidson-Pilon 2019, JOSS 4:1317): Kaplan–Meier with
Greenwood/exponential-Greenwood CIs, median PFS with its CI, and Cox proportional-hazards
ratios of each arm against a reference arm.  Arms are run on the *same* virtual patients, so
the Cox fit uses a cluster-robust (sandwich) variance grouped by patient (Lin & Wei 1989,
JASA 84:1074).

Models without a diameter (the published reference models) report tumour *burden* instead:
the daily output ``tumour_cells`` gives baseline/final/nadir, best and final % change and
``tumour_cleared`` (under one cell at the horizon); RECIST columns are then absent.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

GRADE4_ANC = 0.5  # 1e9/L, CTCAE grade-4 neutropenia
MONTH_DAYS = 365.25 / 12.0
CENSOR_AT = ("last_assessment", "horizon")
# relative tolerance of RECIST's "at least" thresholds: 9.8 mm from 14 mm is exactly -30%,
# computed as -0.29999999999999993 (a measurement on a threshold meets it)
TIE = 1e-9


def assessment_days(
    n_days: int, assess_every: int, first: int | None = None, days=None
) -> np.ndarray:
    """Assessment days within ``1..n_days``: explicit ``days``, or every ``assess_every`` days
    from ``first`` (default ``assess_every``)."""
    if days is not None:
        d = np.unique(np.asarray(days, dtype=np.int64))
        if d.size and (d[0] < 1):
            raise ValueError(f"assessment days {d.tolist()} must be >= 1")
        return d[d <= n_days]
    if assess_every < 1:
        raise ValueError(f"assess_every={assess_every!r} must be >= 1 day")
    first = assess_every if first is None else first
    if first < 1:
        raise ValueError(f"assess_first={first!r} must be >= 1 day")
    return np.arange(first, n_days + 1, assess_every)


def first_progression(diam: np.ndarray, *, cr_floor_mm: float = 5.0) -> np.ndarray:
    """Index (into the assessments) of each patient's first RECIST progression, ``A`` if none,
    from diameters (P, A+1) whose column 0 is the baseline (as `recist`).

    PD is a sum of diameters >= 20% and >= 5 mm above the nadir so far (RECIST 1.1 §4.3.1).  A
    tumour under ``cr_floor_mm`` has disappeared: it is recorded as 0 mm, and its reappearance
    (a diameter of ``cr_floor_mm`` or more) is progression (a lesion that reappears after a CR
    is PD)."""
    base, seq = diam[:, :1], diam[:, 1:]
    seen = np.where(seq < cr_floor_mm, 0.0, seq)
    nadir = np.minimum.accumulate(np.concatenate([base, seen], axis=1), axis=1)[:, :-1]
    # "at least" 20% and 5 mm: a measurement exactly on the threshold is PD (TIE: round-off)
    pd_hit = (seen >= 1.2 * nadir * (1.0 - TIE)) & (seen - nadir >= 5.0 - TIE)
    # after a CR (nadir recorded as 0 mm) any measurable reappearance is PD, whatever the
    # size (with cr_floor_mm < 5 it can be under the 5 mm increase)
    pd_hit |= (nadir == 0.0) & (seen > 0.0)
    return np.where(pd_hit.any(axis=1), np.argmax(pd_hit, axis=1), seq.shape[1])


def recist(
    diam: np.ndarray,
    days: np.ndarray,
    *,
    cr_floor_mm: float = 5.0,
    confirm_days: int = 0,
    sd_min_days: int = 42,
    censor_at: str = "last_assessment",
    horizon: float | None = None,
    response_day: bool = False,
):
    """Best overall response and PFS from diameters at assessment ``days`` (A,), given as a
    (P, A+1) array whose column 0 is the baseline.

    Args:
        cr_floor_mm: a diameter below this is a complete response.
        confirm_days: 0 = no confirmation; else a PR/CR must hold at every assessment up to
            the first one at least this many days later, before progression.
        sd_min_days: SD (and an unconfirmed response) is the best response only with a
            non-PD assessment on or after this day; else PD when PD follows, NE when not.
        censor_at: ``last_assessment`` or ``horizon`` (then ``horizon`` is required).
        response_day: also return each patient's response day.

    Returns (bor: (P,) str, pfs_days: (P,), pfs_event: (P,) bool) and, with ``response_day``,
    the day a CR/PR was first measured ((P,), NaN for a patient without one): the first
    assessment, before progression, whose response counts (with ``confirm_days``, the
    response that was confirmed, dated at its first measurement; RECIST 1.1 §4.5: duration
    of response runs "from the time measurement criteria are first met for CR/PR ... until
    the first date that recurrent or progressive disease is objectively documented").
    """
    if censor_at not in CENSOR_AT:
        raise ValueError(f"censor_at={censor_at!r}; allowed: {CENSOR_AT}")
    if censor_at == "horizon" and horizon is None:
        raise ValueError("censor_at='horizon' needs the horizon")
    if confirm_days < 0:
        raise ValueError(f"confirm_days={confirm_days!r} must be >= 0")
    if sd_min_days < 0:
        raise ValueError(f"sd_min_days={sd_min_days!r} must be >= 0")
    days = np.asarray(days, dtype=np.float64)
    base = diam[:, :1]
    seq = diam[:, 1:]
    P, A = seq.shape
    if A == 0:  # horizon shorter than the first assessment: not evaluable
        end = 0.0 if censor_at == "last_assessment" else float(horizon)
        out = np.full(P, "NE", dtype=object), np.full(P, end), np.zeros(P, dtype=bool)
        return (*out, np.full(P, np.nan)) if response_day else out
    cr = seq < cr_floor_mm
    resp = ((seq - base) / base <= -0.30 + TIE) | cr  # "at least a 30% decrease" (§4.3.1)
    first_pd = first_progression(diam, cr_floor_mm=cr_floor_mm)
    before = np.arange(A)[None, :] < first_pd[:, None]
    if confirm_days:
        # index of the first assessment >= confirm_days after each one (A if none)
        k = np.searchsorted(days, days + confirm_days - 1e-9, side="left")
        has = k < A
        kk = np.minimum(k, A - 1)
        in_time = has[None, :] & (kk[None, :] < first_pd[:, None])
        # the response must hold at every assessment up to the confirming one: PR then SD is
        # SD (RECIST 1.1 §4.6, Table 3), whatever a later scan shows
        cr = cr & in_time & _held(cr, kk)
        resp = resp & in_time & _held(resp, kk)
    any_cr = (cr & before).any(axis=1)
    responded = resp & before  # a (confirmed) CR or PR measured before the first PD
    any_pr = responded.any(axis=1)
    event = first_pd < A
    # SD needs a non-PD assessment on or after sd_min_days (before the first PD)
    sd_ok = (before & (days >= sd_min_days - 1e-9)[None, :]).any(axis=1)
    bor = np.where(sd_ok, "SD", np.where(event, "PD", "NE")).astype(object)
    bor[any_pr] = "PR"
    bor[any_cr] = "CR"
    end = days[-1] if censor_at == "last_assessment" else float(horizon)
    pfs = np.where(event, days[np.minimum(first_pd, A - 1)], end).astype(float)
    if not response_day:
        return bor, pfs, event
    return bor, pfs, event, np.where(any_pr, days[np.argmax(responded, axis=1)], np.nan)


def _held(x: np.ndarray, kk: np.ndarray) -> np.ndarray:
    """(P, A): ``x`` true at every assessment from each one (column i) to ``kk[i]``."""
    misses = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(~x, axis=1)], axis=1)
    return misses[:, kk + 1] - misses[:, : x.shape[1]] == 0


BURDEN_OUTPUTS = ("diameter_mm", "tumour_cells")  # in order of preference


def burden_output(daily: dict) -> str:
    """The daily output that measures the tumour (`BURDEN_OUTPUTS`)."""
    for k in BURDEN_OUTPUTS:
        if k in daily:
            return k
    raise ValueError(
        f"daily outputs {sorted(daily)} have no tumour measure; a model needs one of "
        f"{list(BURDEN_OUTPUTS)} for endpoints"
    )


def patient_endpoints(
    traj,
    *,
    assess_every: int = 42,
    assess_first: int | None = None,
    assess_days=None,
    cr_floor_mm: float = 5.0,
    confirm_days: int = 0,
    sd_min_days: int = 42,
    censor_at: str = "last_assessment",
) -> pd.DataFrame:
    """One row per patient: baseline/final/nadir tumour size, best % change (at the RECIST
    assessments; ``best_pct_change_daily`` over every day), RECIST BOR and PFS
    (models with ``diameter_mm``; see `recist` and `assessment_days` for the options), CSC
    fraction, ANC nadir, exposure (AUC per drug), dose modification under hold rules (per
    drug: doses due, withheld (omitted or delayed) and reduced, days of delay, the day it was
    discontinued, relative dose intensity = mg given / mg planned) and solver
    status."""
    key = burden_output(traj.daily)
    d = np.asarray(traj.daily[key], dtype=np.float64)
    n_days = d.shape[1] - 1
    base = d[:, 0]
    pct = 100.0 * (d[:, 1:] - base[:, None]) / base[:, None]
    ok = traj.status == 0
    out = {
        "patient": traj.patient_id,
        "status": traj.status,
        "status_text": traj.status_text(),
        f"baseline_{key}": base,
        f"final_{key}": d[:, -1],
        f"nadir_{key}": np.min(d, axis=1),
        "nadir_day": np.argmin(d, axis=1),
        "best_pct_change": np.min(pct, axis=1),
        "final_pct_change": pct[:, -1],
    }
    if key == "diameter_mm":
        adays = assessment_days(n_days, assess_every, assess_first, assess_days)
        at = np.concatenate([d[:, :1], d[:, adays]], axis=1)
        bor, pfs, ev, onset = recist(
            at,
            adays,
            cr_floor_mm=cr_floor_mm,
            confirm_days=confirm_days,
            sd_min_days=sd_min_days,
            censor_at=censor_at,
            horizon=float(n_days),
            response_day=True,
        )
        out.update(bor=np.where(ok, bor, "NE"), pfs_days=pfs, pfs_event=ev)
        # time to response and duration of response (responders only, NaN/NA otherwise): a
        # response lasts until the PFS event, or is censored when PFS is
        out.update(response_day=onset, dor_days=pfs - onset, dor_event=ev)
        out["n_assessments"] = np.full(len(base), adays.size)  # within the horizon
        # the waterfall's "best % change" is the best change *measured*: at the assessments
        # (a tumour that only grows shows its growth, not its first-day change), up to and
        # including the first progression, as BOR (a tumour that progressed and shrank later
        # under continued treatment is not drawn as a response)
        if adays.size:
            first_pd = first_progression(at, cr_floor_mm=cr_floor_mm)
            upto = np.arange(adays.size)[None, :] <= first_pd[:, None]
            out["best_pct_change"] = np.min(np.where(upto, pct[:, adays - 1], np.inf), axis=1)
        else:
            out["best_pct_change"] = np.full(len(base), np.nan)
        out["best_pct_change_daily"] = np.min(pct, axis=1)
    else:
        out["tumour_cleared"] = d[:, -1] < 1.0
    if "csc_fraction" in traj.daily:
        out["csc_fraction_baseline"] = traj.daily["csc_fraction"][:, 0]
        out["csc_fraction_final"] = traj.daily["csc_fraction"][:, -1]
    if "ANC" in traj.daily:
        anc = np.asarray(traj.daily["ANC"])
        out["anc_nadir"] = np.min(anc, axis=1)
        out["grade4_neutropenia"] = out["anc_nadir"] < GRADE4_ANC
    for drug, v in traj.auc.items():
        out[f"auc_{drug}"] = v
    for drug, v in getattr(traj, "dosing", {}).items():
        out[f"doses_due_{drug}"] = v["due"]
        out[f"doses_withheld_{drug}"] = v["withheld"]
        out[f"holds_{drug}"] = v["holds"]  # hold episodes: what steps the dose level down
        out[f"doses_reduced_{drug}"] = v["reduced"]
        out[f"discontinued_day_{drug}"] = v["stopped_day"]  # NaN: never
        out[f"delay_days_{drug}"] = v["delay_days"]  # delay rules; 0 otherwise
        planned = np.asarray(v["planned_mg"], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"rdi_{drug}"] = np.where(planned > 0, v["given_mg"] / planned, np.nan)
    df = pd.DataFrame(out)
    bad = ~ok
    num = [c for c in df.columns if df[c].dtype.kind == "f" and c != f"baseline_{key}"]
    df.loc[bad, num] = np.nan
    for c in ("pfs_event", "grade4_neutropenia", "tumour_cleared"):
        if c in df:  # a failed patient's yes/no is unknown (NA), not False
            df[c] = pd.arrays.BooleanArray(df[c].to_numpy(bool), mask=bad.copy())
    if "dor_event" in df:  # NA for non-responders too: they have no response to end
        df["dor_event"] = pd.arrays.BooleanArray(
            df["dor_event"].to_numpy(bool), mask=bad | ~np.isfinite(df["response_day"].to_numpy())
        )
    # argmin of a failed (NaN) trajectory is its first NaN day, not a nadir
    df["nadir_day"] = pd.arrays.IntegerArray(df["nadir_day"].to_numpy(np.int64), mask=bad.copy())
    return df


def failed_counts(endpoints: pd.DataFrame) -> dict:
    """For a run's manifest: the patients whose solve failed in any arm (``patients``; the
    cohort's patients, counted once) and per arm (``by_arm``; every arm listed, 0 included)."""
    bad = endpoints[endpoints["status"] != 0]
    out = {"patients": int(bad["patient"].nunique())}
    if "arm" in endpoints:
        per = bad.groupby("arm", sort=False).size()
        arms = endpoints["arm"].drop_duplicates()
        out["by_arm"] = {str(a): int(per.get(a, 0)) for a in arms}
    return out


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact binomial confidence interval (Clopper & Pearson 1934)."""
    from scipy.stats import beta

    if n == 0:
        return (float("nan"), float("nan"))
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def _median(x: pd.Series) -> float:
    """Median of the finite values; NaN (without numpy's empty-slice warning) when none."""
    x = x[np.isfinite(x.to_numpy(dtype=float))]
    return float(x.median()) if len(x) else float("nan")


# per-arm summary columns of drugs with a hold rule (`summarize`), one per drug
DOSE_MODIFICATION = (
    "any_withheld_", "mean_holds_", "any_reduced_", "discontinued_", "median_rdi_",
    "mean_delay_days_"
)  # fmt: skip


def dose_modification_columns(summary: pd.DataFrame) -> list[str]:
    """The summary's dose-modification columns (`DOSE_MODIFICATION`), in table order."""
    return [c for c in summary.columns if c.startswith(DOSE_MODIFICATION)]


def summarize(endpoints: pd.DataFrame, by: str = "arm") -> pd.DataFrame:
    """Per-arm summary: patients, failures, ORR and DCR with exact 95% CIs, medians of diameter
    change, the fraction with no PD at any assessment within the horizon (a raw proportion, not
    Kaplan–Meier), the responders' median time to response (``median_ttr_days``), CSC
    fraction, ANC nadir, the grade-4 neutropenia fraction with its exact 95% CI, exposure and,
    for drugs with a hold rule, the fractions of patients with a withheld dose, with a reduced
    dose and discontinued, and the median relative dose intensity.  Failed
    patients (status != 0) are excluded from every statistic and counted in ``n_failed``."""
    rows = []
    groups = endpoints.groupby(by, sort=False) if by in endpoints else [("all", endpoints)]
    for arm, g in groups:
        ok = g[g["status"] == 0]
        n = len(ok)
        row = {by: arm, "n": len(g), "n_failed": int((g["status"] != 0).sum())}
        # no patient assessed (horizon before the first assessment): nothing is evaluable.  (NE
        # alone does not say it: a patient seen only before sd_min_days without PD is NE too)
        if "n_assessments" in ok:
            assessed = bool(len(ok)) and int(ok["n_assessments"].max()) > 0
        else:
            assessed = "bor" in ok and bool((ok["bor"] != "NE").any())
        if "bor" in ok:  # RECIST (models with a diameter); NE patients count as non-responders
            resp = int(ok["bor"].isin(["CR", "PR"]).sum())
            dc = int(ok["bor"].isin(["CR", "PR", "SD"]).sum())
            m = n if assessed else 0
            orr_lo, orr_hi = clopper_pearson(resp, m)
            row.update(
                orr=resp / m if m else np.nan,
                orr_ci_low=orr_lo,
                orr_ci_high=orr_hi,
                dcr=dc / m if m else np.nan,
                dcr_ci_low=clopper_pearson(dc, m)[0],
                dcr_ci_high=clopper_pearson(dc, m)[1],
            )
        if "response_day" in ok:  # time to response: the responders' (finite) response days
            row["median_ttr_days"] = _median(ok["response_day"])
        row["median_best_pct_change"] = _median(ok["best_pct_change"])
        row["median_final_pct_change"] = _median(ok["final_pct_change"])
        if "pfs_event" in ok:
            pf = float((~ok["pfs_event"].astype(bool)).mean()) if n and assessed else np.nan
            row["progression_free_at_end"] = pf
        if "tumour_cleared" in ok:
            row["tumour_cleared"] = float(ok["tumour_cleared"].mean()) if n else np.nan
        if "csc_fraction_final" in ok:
            row["median_csc_fraction_baseline"] = float(ok["csc_fraction_baseline"].median())
            row["median_csc_fraction_final"] = float(ok["csc_fraction_final"].median())
        if "anc_nadir" in ok:
            row["median_anc_nadir"] = float(ok["anc_nadir"].median())
            row["grade4_neutropenia"] = float(ok["grade4_neutropenia"].mean()) if n else np.nan
            # exact 95% CI on the same count and denominator (the evaluable patients), as ORR's
            g4_lo, g4_hi = clopper_pearson(int(ok["grade4_neutropenia"].sum()), n)
            row["grade4_neutropenia_ci_low"] = g4_lo
            row["grade4_neutropenia_ci_high"] = g4_hi
        for c in ok.columns:
            if c.startswith("auc_"):  # exposure: median plasma AUC over the horizon, mg·day/L
                row[f"median_{c}"] = float(ok[c].median())
            elif c.startswith("doses_withheld_"):  # hold rules (`vcohort.dose_rules.DoseRule`)
                drug = c[len("doses_withheld_") :]
                w = ok[c].to_numpy(dtype=float)
                ruled = np.isfinite(w)  # NaN: the arm gives the drug without a rule
                stop = ok[f"discontinued_day_{drug}"].to_numpy(dtype=float)
                reduced = ok[f"doses_reduced_{drug}"].to_numpy(dtype=float)
                for name, hit in (("any_withheld", w > 0), ("any_reduced", reduced > 0),
                                  ("discontinued", np.isfinite(stop))):  # fmt: skip
                    row[f"{name}_{drug}"] = float(hit[ruled].mean()) if ruled.any() else np.nan
                holds = ok[f"holds_{drug}"].to_numpy(dtype=float)[ruled]
                row[f"mean_holds_{drug}"] = float(holds.mean()) if holds.size else np.nan
                row[f"median_rdi_{drug}"] = _median(ok[f"rdi_{drug}"])
                delay = ok[f"delay_days_{drug}"].to_numpy(dtype=float)[ruled]
                row[f"mean_delay_days_{drug}"] = float(delay.mean()) if delay.size else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# a Kaplan-Meier curve at 0.5 to within this is at 0.5: tied events make products such as
# (7/8)(6/7)(2/3) come out 0.5000000000000001, which must not move the median a scan later
KM_HALF_TOL = 1e-9


def km_median(curve) -> float:
    """Median of a Kaplan-Meier curve (or of a band's bound) given as a pandas Series indexed
    by time: the first time it is <= 0.5 (lifelines' convention; R's survival and SAS take
    the midpoint of a stretch at exactly 0.5), to within `KM_HALF_TOL`; ``inf`` when it never
    gets there (not reached)."""
    at = np.flatnonzero(curve.to_numpy(dtype=float) <= 0.5 + KM_HALF_TOL)
    return float(curve.index[at[0]]) if at.size else np.inf


def km_estimates(t, e, landmark_days: float) -> dict:
    """Kaplan–Meier (lifelines' `KaplanMeierFitter`) of times ``t`` with events ``e``: the
    median with its 95% CI (``median``, ``median_ci_low``, ``median_ci_high``; a median not
    reached is NaN, its upper bound ``inf``) and the survival probability at ``landmark_days``
    with its 95% CI (``landmark``, ``landmark_ci_low``, ``landmark_ci_high``).  A landmark after
    the last follow-up is NaN, unless every event has happened (then 0).  Where the estimate
    at the landmark is exactly 1 or 0, Greenwood's variance is 0 and lifelines' band collapses
    to the point; the open side is then the exact (Clopper–Pearson) bound for those whose
    state at the landmark is known (all but those censored before it).  No times: all NaN."""
    from lifelines import KaplanMeierFitter

    t, e = np.asarray(t, dtype=float), np.asarray(e, dtype=bool)
    if t.size == 0:
        return dict.fromkeys(_KM_KEYS, np.nan)
    km = KaplanMeierFitter().fit(t, e)
    med = km_median(km.survival_function_.iloc[:, 0])
    band = km.confidence_interval_
    ci = [km_median(band.iloc[:, j]) for j in range(2)]
    # estimable up to the last follow-up, and after it once every event has happened (the
    # curve has reached 0 and stays there; lifelines' band is then (0, 0))
    all_ended = float(km.survival_function_.iloc[-1, 0]) == 0.0
    if landmark_days <= float(t.max()) or all_ended:
        at = km.survival_function_at_times(landmark_days).to_numpy()[0]
        band = km.confidence_interval_survival_function_
        idx = band.index.searchsorted(landmark_days, side="right") - 1
        lo, hi = band.iloc[max(idx, 0)].to_numpy()
        if at in (0.0, 1.0):  # a point band: the exact bound on the patients known
            known = int(np.sum(e | (t >= landmark_days)))
            lo, hi = clopper_pearson(int(round(at * known)), known)
    else:  # beyond the last follow-up: not estimable
        at = lo = hi = np.nan
    return {
        "median": med if np.isfinite(med) else np.nan,
        "median_ci_low": float(ci[0]),
        "median_ci_high": float(ci[1]),
        "landmark": float(at),
        "landmark_ci_low": float(lo),
        "landmark_ci_high": float(hi),
    }


_KM_KEYS = ("median", "median_ci_low", "median_ci_high", "landmark", "landmark_ci_low",
            "landmark_ci_high")  # fmt: skip


def _km_columns(est: dict, what: str, landmark_days: float | None = None) -> dict:
    """`km_estimates` as summary columns: ``median_{what}_days`` and its CI, then
    ``{what}_landmark_days`` (when given), ``{what}_landmark`` and its CI."""
    cols = {f"median_{what}_days": est["median"]}
    cols |= {f"median_{what}_{k}": est[f"median_{k}"] for k in ("ci_low", "ci_high")}
    if landmark_days is not None:
        cols[f"{what}_landmark_days"] = float(landmark_days)
    return cols | {f"{what}_{k}": est[k] for k in _KM_KEYS[3:]}


def kaplan_meier(
    endpoints: pd.DataFrame, *, by: str = "arm", landmark_days: float = 6 * MONTH_DAYS
):
    """Per arm (patients with status 0), from `km_estimates`: median PFS (days) with its 95% CI
    and the progression-free probability at ``landmark_days`` (default 6 months) with its 95%
    CI; and, with RECIST, the same for the duration of response of the arm's responders
    (median DoR, and the probability that a response lasts ``landmark_days``; NaN without a
    responder).  An arm with no assessment within the horizon has nothing to estimate (NaN)."""
    lm = landmark_days
    if (
        isinstance(lm, bool)
        or not isinstance(lm, int | float | np.number)
        or not (math.isfinite(lm) and lm > 0)
    ):
        raise ValueError(f"landmark_days={lm!r}; allowed: a finite number of days > 0")
    rows = []
    for arm, g in endpoints.groupby(by, sort=False):
        ok = g[g["status"] == 0]
        row = {by: arm}
        unassessed = "n_assessments" in ok and len(ok) and int(ok["n_assessments"].max()) == 0
        if len(ok) == 0 or unassessed:
            ok = ok.iloc[:0]
        est = km_estimates(ok["pfs_days"].to_numpy(float), ok["pfs_event"].to_numpy(bool), lm)
        row |= _km_columns(est, "pfs", lm)  # (the duration of response's landmark is this day)
        if "dor_days" in ok:
            r = ok[np.isfinite(ok["dor_days"].to_numpy(dtype=float))]
            est = km_estimates(r["dor_days"].to_numpy(float), r["dor_event"].to_numpy(bool), lm)
            row |= _km_columns(est, "dor")
        rows.append(row)
    return pd.DataFrame(rows)


# fewer progression events than this in either arm of a hazard ratio: its CI is the wider of the
# cluster-robust and the model-based one (assumption: ~5 events, where the sandwich's
# small-sample bias is large in simulation studies of Cox models)
FEW_EVENTS = 5


def separated(t, e, x) -> int:
    """Monotone (complete) separation of a Cox fit on one binary covariate ``x`` (True: the
    arm, False: the reference): +1 when no reference patient progressed while an arm patient
    was still at risk (time >= the event's; the partial likelihood then grows without bound
    as HR -> infinity), -1 when no arm patient progressed while a reference patient was at
    risk (HR -> 0), else 0 (Heinze & Schemper 2001, Biometrics 57:114: the maximum-likelihood
    estimate does not exist).  An arm without events is the simplest case."""
    t, e, x = (np.asarray(v) for v in (t, e, x))

    def none_at_risk(fail, other) -> bool:
        ev = t[e & fail]
        return not np.any(t[other][None, :] >= ev[:, None])

    if none_at_risk(~x, x):
        return 1
    if none_at_risk(x, ~x):
        return -1
    return 0


def hazard_ratios(endpoints: pd.DataFrame, reference: str, *, by: str = "arm") -> pd.DataFrame:
    """Cox PH hazard ratio of PFS for each arm vs ``reference`` (indicator covariate), with a
    95% CI from a cluster-robust variance over patients (the arms share patients); lifelines'
    `CoxPHFitter`.  NaN with a ``hr_note`` when the fit is impossible: no events, or events in
    only one of the two arms (complete separation: the maximum-likelihood HR is 0 or infinite).
    A fit that lifelines warns about keeps its estimate, with the warning in ``hr_note``
    instead of on the console.  Only patients evaluable (status 0) in both arms enter a
    comparison, so the two arms hold the same patients (a patient whose simulation failed in one
    arm would otherwise stay in the other, and the failures, often the fastest-growing tumours,
    would bias the ratio); ``hr_note`` says how many were left out."""
    import warnings

    from lifelines import CoxPHFitter

    arms = list(dict.fromkeys(endpoints[by]))
    if reference not in arms:
        from vcohort.config import did_you_mean

        hint = did_you_mean(reference, arms) if isinstance(reference, str) else ""
        raise ValueError(f"reference arm {reference!r} is not among the arms {arms}{hint}")
    rows, unpaired = [], {}
    for arm in arms:
        row = {by: arm, "hr": np.nan, "hr_ci_low": np.nan, "hr_ci_high": np.nan, "hr_note": ""}
        if arm == reference:
            row |= {"hr": 1.0, "hr_note": "reference"}
            rows.append(row)
            continue
        pair = endpoints[endpoints[by].isin([arm, reference])]
        failed = (pair["status"] != 0).to_numpy()
        empty = [a for a in (arm, reference) if not (pair.loc[~failed, by] == a).any()]
        if empty:  # an arm without evaluable patients: say which
            names = " or ".join(
                f"{a!r}" + (" (the reference arm)" if a == reference else "") for a in empty
            )
            row["hr_note"] = f"no evaluable patient in {names}: HR not estimable"
            rows.append(row)
            continue
        bad = pair.loc[failed, "patient"].unique()  # failed in either arm
        # evaluable in one arm, failed in the other: left out of both (the note says how many)
        unpaired[arm] = int(pair.loc[~failed, "patient"].isin(bad).sum())
        g = pair[~pair["patient"].isin(bad)]
        df = pd.DataFrame(
            {
                "t": g["pfs_days"].to_numpy(float),
                "e": g["pfs_event"].to_numpy(bool),
                "arm": (g[by] == arm).to_numpy(float),
                "patient": g["patient"].to_numpy(),
            }
        )
        n_ev = int(df["e"].sum())
        if "n_assessments" in g and len(g) and int(g["n_assessments"].max()) == 0:
            row["hr_note"] = "not assessed (no assessment within the horizon)"
            rows.append(row)
            continue
        if df["arm"].nunique() < 2:
            row["hr_note"] = "no patient evaluable in both arms: HR not estimable"
            rows.append(row)
            continue
        if n_ev == 0:
            row["hr_note"] = "no progression events"
            rows.append(row)
            continue
        quiet = [a for a, x in ((arm, 1.0), (reference, 0.0)) if not df["e"][df["arm"] == x].any()]
        if quiet:
            row["hr_note"] = f"no progression events in {quiet[0]!r}: HR not estimable"
            rows.append(row)
            continue
        apart = separated(df["t"].to_numpy(), df["e"].to_numpy(), df["arm"].to_numpy() == 1.0)
        if apart:
            later, gone = (arm, reference) if apart < 0 else (reference, arm)
            row["hr_note"] = (
                f"complete separation: each progression in {later!r} came after every patient "
                f"of {gone!r} had progressed or been censored (maximum-likelihood HR "
                f"{'0' if apart < 0 else 'infinite'}): HR not estimable"
            )
            rows.append(row)
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                cph = CoxPHFitter().fit(df, "t", "e", cluster_col="patient")
            ci = np.exp(cph.confidence_intervals_.loc["arm"].to_numpy())
            few = min(int(df["e"][df["arm"] == x].sum()) for x in (0.0, 1.0))
            if few < FEW_EVENTS:  # the sandwich variance is biased low with so few events:
                # the wider of it and the model-based one (Kauermann & Carroll 2001, JASA
                # 96:1387, on the sandwich's small-sample bias)
                with warnings.catch_warnings(record=True):
                    warnings.simplefilter("always")
                    naive = CoxPHFitter().fit(df.drop(columns="patient"), "t", "e")
                with np.errstate(over="ignore"):  # an unbounded CI is an honest answer
                    nci = np.exp(naive.confidence_intervals_.loc["arm"].to_numpy())
                ci = np.array([min(ci[0], nci[0]), max(ci[1], nci[1])])
                row["hr_note"] = (
                    f"{few} progression event{'s' if few != 1 else ''} in an arm: CI the wider "
                    f"of the robust and model-based ones"
                )
            row |= {"hr": float(cph.hazard_ratios_["arm"]), "hr_ci_low": ci[0], "hr_ci_high": ci[1]}
            if caught:
                first = str(caught[0].message).strip().splitlines()[0]
                warned = f"Cox fit warned: {first[:160]}"
                row["hr_note"] = f"{row['hr_note']}; {warned}" if row["hr_note"] else warned
        except Exception as e:  # lifelines raises ConvergenceError (e.g. all events in one arm)
            row["hr_note"] = f"Cox fit failed: {type(e).__name__}"
        rows.append(row)
    for row in rows:
        k = unpaired.get(row[by], 0)
        if k:
            left = (
                f"{k} patient{'s' if k != 1 else ''} evaluable in only one of the two arms "
                f"left out (the arms compare the same patients)"
            )
            row["hr_note"] = f"{left}; {row['hr_note']}" if row["hr_note"] else left
    return pd.DataFrame(rows)


def trial_summary(
    endpoints: pd.DataFrame,
    *,
    reference: str | None = None,
    by: str = "arm",
    landmark_days: float = 6 * MONTH_DAYS,
) -> pd.DataFrame:
    """`summarize` + `kaplan_meier` + `hazard_ratios` (vs ``reference``, default the first arm),
    one row per arm."""
    arms = list(dict.fromkeys(endpoints[by]))
    reference = arms[0] if reference is None else reference
    s = summarize(endpoints, by=by)
    s = s.merge(kaplan_meier(endpoints, by=by, landmark_days=landmark_days), on=by, how="left")
    s = s.merge(hazard_ratios(endpoints, reference, by=by), on=by, how="left")
    return s

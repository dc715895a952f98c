"""Per-patient endpoints and per-arm summaries from `Trajectories`.

Tumour size is the spherical-equivalent diameter (QSP-IO ``tumSizePerc.m``) used as the RECIST
sum of diameters.  RECIST 1.1 (Eisenhauer et al. 2009, Eur J Cancer 45:228): PR is a ≥30%
decrease from **baseline**; PD a ≥20% increase over the **nadir** (smallest sum so far,
including baseline) that is also ≥5 mm; CR is disappearance, here a diameter under
``cr_floor_mm``; SD otherwise.  Assessments are taken every ``assess_every`` days (default 42,
the 6-weekly imaging of KEYNOTE-002; assumption for other trials).  PFS is the day of the first
PD assessment, censored at the last assessment when there is none.

Models without a diameter (the published reference models) report tumour *burden* instead:
the daily output ``tumour_cells`` gives baseline/final/nadir, best and final % change and
``tumour_cleared`` (under one cell at the horizon); RECIST columns are then absent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRADE4_ANC = 0.5  # 1e9/L, CTCAE grade-4 neutropenia


def assessment_days(n_days: int, assess_every: int) -> np.ndarray:
    if assess_every < 1:
        raise ValueError(f"assess_every={assess_every!r} must be >= 1 day")
    return np.arange(assess_every, n_days + 1, assess_every)


def recist(diam: np.ndarray, days: np.ndarray, *, cr_floor_mm: float = 5.0):
    """Best overall response and PFS from diameters ``diam`` (P, A) at assessment ``days`` (A,)
    given the baseline in column 0 of a (P, A+1) array.

    Returns (bor: (P,) str, pfs_days: (P,), pfs_event: (P,) bool).
    """
    base = diam[:, :1]
    seq = diam[:, 1:]
    P, A = seq.shape
    if A == 0:  # horizon shorter than the first assessment: not evaluable, censored at day 0
        return np.full(P, "NE", dtype=object), np.zeros(P), np.zeros(P, dtype=bool)
    nadir = np.minimum.accumulate(np.concatenate([base, seq], axis=1), axis=1)[:, :-1]
    pd_hit = (seq >= 1.2 * nadir) & (seq - nadir >= 5.0)
    cr = seq < cr_floor_mm
    pr = (seq - base) / base <= -0.30
    first_pd = np.where(pd_hit.any(axis=1), np.argmax(pd_hit, axis=1), A)
    before = np.arange(A)[None, :] < first_pd[:, None]
    any_cr = (cr & before).any(axis=1)
    any_pr = (pr & before).any(axis=1)
    bor = np.full(P, "SD", dtype=object)
    bor[any_pr] = "PR"
    bor[any_cr] = "CR"
    bor[(~any_pr) & (~any_cr) & (first_pd == 0)] = "PD"
    event = first_pd < A
    pfs = np.where(event, days[np.minimum(first_pd, A - 1)], days[-1]).astype(float)
    return bor, pfs, event


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


def patient_endpoints(traj, *, assess_every: int = 42, cr_floor_mm: float = 5.0) -> pd.DataFrame:
    """One row per patient: baseline/final/nadir tumour size, best % change, RECIST BOR and PFS
    (models with ``diameter_mm``), CSC fraction, ANC nadir, exposure (AUC per drug) and solver
    status."""
    key = burden_output(traj.daily)
    d = np.asarray(traj.daily[key], dtype=np.float64)
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
        adays = assessment_days(d.shape[1] - 1, assess_every)
        bor, pfs, ev = recist(
            np.concatenate([d[:, :1], d[:, adays]], axis=1), adays, cr_floor_mm=cr_floor_mm
        )
        out.update(bor=np.where(ok, bor, "NE"), pfs_days=pfs, pfs_event=ev)
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
    df = pd.DataFrame(out)
    bad = ~ok
    num = [c for c in df.columns if df[c].dtype.kind == "f" and c != f"baseline_{key}"]
    df.loc[bad, num] = np.nan
    return df


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact binomial confidence interval (Clopper & Pearson 1934)."""
    from scipy.stats import beta

    if n == 0:
        return (float("nan"), float("nan"))
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def summarize(endpoints: pd.DataFrame, by: str = "arm") -> pd.DataFrame:
    """Per-arm summary: patients, failures, ORR and DCR with exact 95% CIs, medians of diameter
    change, fraction progression-free at the horizon, CSC fraction and ANC nadir.  Failed
    patients (status != 0) are excluded from every statistic and counted in ``n_failed``."""
    rows = []
    groups = endpoints.groupby(by, sort=False) if by in endpoints else [("all", endpoints)]
    for arm, g in groups:
        ok = g[g["status"] == 0]
        n = len(ok)
        row = {by: arm, "n": len(g), "n_failed": int((g["status"] != 0).sum())}
        if "bor" in ok:  # RECIST (models with a diameter)
            resp = int(ok["bor"].isin(["CR", "PR"]).sum())
            dc = int(ok["bor"].isin(["CR", "PR", "SD"]).sum())
            orr_lo, orr_hi = clopper_pearson(resp, n)
            row.update(
                orr=resp / n if n else np.nan,
                orr_ci_low=orr_lo,
                orr_ci_high=orr_hi,
                dcr=dc / n if n else np.nan,
            )
        row["median_best_pct_change"] = float(ok["best_pct_change"].median())
        row["median_final_pct_change"] = float(ok["final_pct_change"].median())
        if "pfs_event" in ok:
            pf = float((~ok["pfs_event"].astype(bool)).mean()) if n else np.nan
            row["progression_free_at_end"] = pf
        if "tumour_cleared" in ok:
            row["tumour_cleared"] = float(ok["tumour_cleared"].mean()) if n else np.nan
        if "csc_fraction_final" in ok:
            row["median_csc_fraction_final"] = float(ok["csc_fraction_final"].median())
        if "anc_nadir" in ok:
            row["median_anc_nadir"] = float(ok["anc_nadir"].median())
            row["grade4_neutropenia"] = float(ok["grade4_neutropenia"].mean()) if n else np.nan
        rows.append(row)
    return pd.DataFrame(rows)

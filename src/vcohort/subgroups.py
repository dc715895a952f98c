"""Subgroup analysis of a virtual trial: which patients benefit?

Each baseline variable splits the patients (a yes/no covariate into its two values; a number at
the median of its finite values, or at given cut points; a missing or infinite value in no
subgroup) and every subgroup gets, per arm, the ORR with its exact CI and the PFS hazard ratio
against the reference arm (`vcohort.endpoints.hazard_ratios` on the subgroup's patients: the
same patients in both arms, cluster-robust CI).  The treatment-by-subgroup interaction is
tested as the heterogeneity of the subgroups' log hazard ratios, each with the standard error its
95% CI implies: Cochran's
``Q = sum w_k (b_k - b)^2``, ``w_k = 1/se_k^2``, ``b`` their weighted mean, against chi-square
with (subgroups - 1) degrees of freedom; for two subgroups it is the z-test of the difference of
two estimates (Altman & Bland 2003, BMJ 326:219, "Interaction revisited").  The subgroups of
a variable hold different patients, so their estimates are independent.  Every subgroup must
have a finite ratio and CI: a subgroup without one (e.g. no progression in an arm) could hold the
largest effect, so the variable is then not tested (NaN, with a note naming the subgroup).  A
trial's forest plot (`vcohort.plots.forest`) draws the table.

Subgroups of one trial are many comparisons: the p-values are not adjusted, and a subgroup
effect is a hypothesis for the mechanism (the same virtual patients under every arm make it a
clean one), not a finding (assumption: reported as clinical trial teams read forest plots,
e.g. the EMA guideline on subgroups in confirmatory trials, EMA/CHMP/539146/2013).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vcohort.endpoints import hazard_ratios, summarize

# the default variables of a trial's subgroup table: tumour burden, the CSC share, PD-L1 status
# and the CD8 and Treg infiltrates at baseline (after the run-in).  (The default population
# gives every patient the same CSC share, f_S0: a variable with one value is not split)
DEFAULT_VARIABLES = (
    "baseline_diameter_mm",
    "csc_fraction_baseline",
    "pdl1_positive",
    "T8_baseline",
    "Treg_baseline",
)
SAME_VALUE_RTOL = 1e-5  # a spread below this (relative) is rounding: one value, not split
# endpoint columns that are baseline values (the same in every arm)
BASELINE_ENDPOINTS = ("baseline_diameter_mm", "csc_fraction_baseline")
MAX_GROUPS = 10
# day-0 values not offered as '<name>_baseline': the diameter is baseline_diameter_mm already
DAY0_SKIP = ("diameter_mm",)
YES_NO = ("pdl1_positive",)  # yes/no covariates (no cut points)


def known_variables(
    model, population, catalogue: dict | None = None, screened: bool = True
) -> set[str]:
    """Every name `baseline_frame` can hold for ``model``'s cohorts drawn from ``population``:
    covariates, model and PK parameters (``drug.PARAM``), the screening values (``screened``:
    the cohort was screened against plausibility bounds), the endpoints' baseline columns and
    each state or daily output on day 0 (``<name>_baseline``)."""
    from vcohort.cohort import DERIVED_COVARIATES
    from vcohort.population import PDL1_LATENT

    catalogue = model.drug_catalogue() if catalogue is None else catalogue
    names = set(population.covariates) | set(DERIVED_COVARIATES) | set(BASELINE_ENDPOINTS)
    names -= {PDL1_LATENT}  # drawn, not kept in the cohort's table
    names |= set(model.params.names)
    names |= {f"{d}.{p}" for d, drug in catalogue.items() for p in drug.params.names}
    if screened:
        names |= {"screen_max_volume_ratio", "screen_min_diameter_ratio", "screen_csc_min",
                  "screen_csc_max"}  # fmt: skip
    daily = [s for s in (*model.states, *model.daily_output_names()) if s not in DAY0_SKIP]
    names |= {f"{s}_baseline" for s in daily}
    return names


def baseline_frame(
    patients: pd.DataFrame, endpoints: pd.DataFrame, timecourse: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per patient: ``patients`` (covariates and parameters), the endpoints' baseline
    columns (`BASELINE_ENDPOINTS`) and, from ``timecourse``, each state on day 0 as
    ``<state>_baseline`` (the state after the immune run-in, before any dose).  An endpoint
    baseline is the patient's first known value over the arms: a patient whose simulation failed
    in one arm has NaN there, not a missing baseline."""
    base = patients.copy()
    cols = [c for c in BASELINE_ENDPOINTS if c in endpoints and c not in base]
    first = endpoints.groupby("patient", sort=False)[cols].first().reset_index()
    base = base.merge(first, on="patient", how="left")
    if timecourse is not None and len(timecourse):
        day0 = timecourse[timecourse["day"] == timecourse["day"].min()].drop_duplicates("patient")
        skip = {"patient", "arm", "day", "status", *DAY0_SKIP}
        states = [
            c
            for c in day0.columns
            if c not in skip
            and pd.api.types.is_numeric_dtype(day0[c])
            and f"{c}_baseline" not in base  # (csc_fraction: the endpoints' own)
        ]
        day0 = day0[["patient", *states]].rename(columns={s: f"{s}_baseline" for s in states})
        base = base.merge(day0, on="patient", how="left")
    return base


def split(values: pd.Series, cuts=None) -> tuple[np.ndarray, list[str]]:
    """Group index per patient (-1: a missing or non-finite value, in no group) and the groups'
    labels.  Without ``cuts``: a yes/no variable (bool, or only 0/1) by its value, a number at
    the median of its finite values (``x <= median`` below it; when the median is the largest
    value, ``x < median`` below it, so that ties at the top do not take every patient).  With
    ``cuts``: a number at the cut points (``x <= c`` goes below ``c``), a 0/1 variable too; a
    bool variable takes none.  A variable that is neither numeric nor yes/no is refused."""
    name = values.name
    if _is_bool(values) or (cuts is None and is_yes_no(values)):
        if cuts is not None:
            raise ValueError(
                f"subgroups.cuts.{name}: {name} is yes/no; it takes no cut points (True/False "
                f"values split by their value)"
            )
        known = values.notna().to_numpy()
        yes = np.array([bool(v) if k else False for v, k in zip(values, known, strict=True)])
        return np.where(known, yes.astype(int), -1), [f"{name} = no", f"{name} = yes"]
    x = pd.to_numeric(values, errors="coerce")
    text = values.notna() & x.isna()
    if text.any():
        raise ValueError(
            f"subgroups.variables: {name} holds values that are not numbers (e.g. "
            f"{values[text].iloc[0]!r}); allowed: numeric or yes/no (True/False, 0/1) variables"
        )
    x = x.to_numpy(dtype=float)
    fin = np.isfinite(x)
    fmt = lambda c: f"{c:.4g}"  # noqa: E731
    if cuts is None:
        if not fin.any():
            return np.full(x.shape, -1), []
        med = float(np.median(x[fin]))
        if (x[fin] <= med).all():  # the median is the largest value: below it vs at it
            labels = [f"{name} < {fmt(med)} (median)", f"{name} >= {fmt(med)} (median)"]
            return np.where(fin, (x >= med).astype(int), -1), labels
        edges, what = [med], " (median)"
    else:
        edges, what = sorted(float(c) for c in cuts), ""
    g = np.searchsorted(np.asarray(edges), x, side="left")  # x <= edge: below it
    labels = [f"{name} <= {fmt(edges[0])}{what}"]
    labels += [f"{fmt(a)} < {name} <= {fmt(b)}" for a, b in zip(edges, edges[1:], strict=False)]
    labels += [f"{name} > {fmt(edges[-1])}{what}"]
    return np.where(fin, g, -1), labels


def _is_bool(values: pd.Series) -> bool:
    """A bool variable: bool dtype, or every known value a bool."""
    v = values.dropna()
    if values.dtype == bool or v.dtype == bool:
        return True
    return len(v) > 0 and all(isinstance(b, bool | np.bool_) for b in v)


def is_yes_no(values: pd.Series) -> bool:
    """A bool variable, or one whose known values are all 0/1 (True/False)."""
    v = values.dropna()
    if _is_bool(values):
        return True
    try:
        return len(v) > 0 and set(pd.unique(v)) <= {0, 1}
    except TypeError:  # unhashable values: not yes/no
        return False


def subgroup_table(
    endpoints: pd.DataFrame,
    baseline: pd.DataFrame,
    reference: str,
    variables=DEFAULT_VARIABLES,
    cuts: dict | None = None,
    *,
    strict: bool = True,
) -> pd.DataFrame:
    """One row per variable x subgroup x arm: ``n``, ``responders``, ``orr`` with its exact 95%
    CI, the PFS hazard ratio against ``reference`` with its CI, note and ``hr_n`` (the patients
    evaluable in both arms, who are behind it), and per variable and arm the interaction test
    (`interaction_test`: ``interaction_p``, ``interaction_subgroups``, ``interaction_note``).
    Variables the baseline lacks are refused; a subgroup is the patients of the whole trial,
    failed ones left out as in the summary.  A variable that cannot be split (e.g. text values)
    raises, or with ``strict`` False is left out with the reason in ``attrs["failed"]``.
    ``table.attrs``: ``not_split`` (variables with one value, or with one non-empty group),
    ``not_split_reason`` (variable -> why), ``missing`` (variable -> patients without a value,
    in no subgroup), ``non_finite`` (variable -> patients with an infinite value, in no
    subgroup) and ``failed`` (variable -> the error)."""
    cuts = cuts or {}
    missing = [v for v in variables if v not in baseline]
    if missing:
        raise ValueError(
            f"subgroups.variables: {missing} not among the baseline values; allowed: "
            f"{sorted(c for c in baseline.columns if c != 'patient')}"
        )
    arms = list(dict.fromkeys(endpoints["arm"]))
    rows = [_rows(endpoints, reference, arms, "all patients", "all patients")]
    base = baseline.set_index("patient")
    not_split, why, unknown, non_finite, failed = [], {}, {}, {}, {}
    for var in variables:
        x = base[var]
        if var not in cuts and one_value(x):
            not_split.append(var)
            why[var] = "one value in every patient"
            continue
        try:
            g, labels = split(x, cuts.get(var))
            n_missing = int(x.isna().sum())
            if n_missing:
                unknown[var] = n_missing
            if int((g < 0).sum()) > n_missing:
                non_finite[var] = int((g < 0).sum()) - n_missing
            if len(set(g[g >= 0])) < 2:  # e.g. every value beyond the cut points
                not_split.append(var)
                why[var] = (
                    f"every patient with a value in one subgroup of the cut points {cuts[var]}"
                    if var in cuts
                    else "every patient with a finite value in one subgroup"
                )
                continue
            gid = endpoints["patient"].map(pd.Series(g, index=base.index)).to_numpy()
            parts = []
            for k, label in enumerate(labels):
                sub = endpoints[gid == k]
                if not sub.empty:
                    parts.append(_rows(sub, reference, arms, var, label))
            part = pd.concat(parts, ignore_index=True)
            for a in arms:
                if a == reference:
                    continue
                p, k, note = interaction_test(part[part["arm"] == a])
                at = part["arm"] == a
                part.loc[at, "interaction_p"] = p
                part.loc[at, "interaction_subgroups"] = k
                part.loc[at, "interaction_note"] = note
        except Exception as e:
            if strict:
                raise
            failed[var] = f"{type(e).__name__}: {e}"
            unknown.pop(var, None)
            non_finite.pop(var, None)
            continue
        rows.append(part)
    table = pd.concat(rows, ignore_index=True)
    table["interaction_subgroups"] = table["interaction_subgroups"].astype("Int64")
    table.attrs["not_split"] = not_split
    table.attrs["not_split_reason"] = why
    table.attrs["missing"] = unknown
    table.attrs["non_finite"] = non_finite
    table.attrs["failed"] = failed
    return table


def interaction_test(rows: pd.DataFrame) -> tuple[float, int, str]:
    """Cochran's Q test that the subgroups' log hazard ratios (``hr`` with its 95% CI, one row
    per subgroup of a variable, one arm) are equal: (p-value, subgroups in Q, note).  Every
    subgroup must have a finite ratio and CI: a subgroup left out could hold the largest effect,
    so with one that has none the test is not done (NaN, 0, a note naming it and why)."""
    from scipy.stats import chi2, norm

    lo, hi, hr = (rows[c].to_numpy(float) for c in ("hr_ci_low", "hr_ci_high", "hr"))
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.isfinite(np.log(hr)) & np.isfinite(np.log(lo)) & np.isfinite(np.log(hi)) & (hi > lo)
    if not ok.all():
        notes = rows["hr_note"].fillna("").astype(str) if "hr_note" in rows else None
        bad = []
        for i in np.flatnonzero(~ok):
            label = rows["subgroup"].iloc[i] if "subgroup" in rows else f"row {i}"
            if not (np.isfinite(hr[i]) and hr[i] > 0):  # hazard_ratios' note says why, if it knows
                known = notes is not None and notes.iloc[i]
                reason = notes.iloc[i] if known else "no estimable HR"
            else:
                reason = f"HR {hr[i]:.3g}, CI {lo[i]:.3g} to {hi[i]:.3g}: not finite, or no width"
            bad.append(f"{label!r} ({reason})")
        return np.nan, 0, "not tested (every subgroup needs a finite HR and CI): " + "; ".join(bad)
    if ok.sum() < 2:
        return np.nan, 0, "not tested: fewer than two subgroups"
    b = np.log(hr)
    se = (np.log(hi) - np.log(lo)) / (2 * norm.ppf(0.975))
    w = 1.0 / se**2
    q = float(np.sum(w * (b - np.sum(w * b) / np.sum(w)) ** 2))
    return float(chi2.sf(q, len(b) - 1)), len(b), ""


def one_value(x: pd.Series) -> bool:
    """True when every patient has the same value, up to rounding (`SAME_VALUE_RTOL`); a number
    counts its finite values only."""
    v = x.dropna()
    if v.dtype == bool or not pd.api.types.is_numeric_dtype(v):
        return v.nunique() <= 1
    v = v.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return v.size == 0 or np.ptp(v) <= SAME_VALUE_RTOL * max(np.max(np.abs(v)), 1e-300)


def _rows(sub: pd.DataFrame, reference: str, arms: list, variable: str, label: str):
    """The subgroup's rows: `vcohort.endpoints.summarize`'s ORR (its exact CI; NaN without a
    RECIST assessment) on its evaluable patients, `hazard_ratios` and ``hr_n``, the patients
    evaluable in both the arm and the reference (those the ratio compares)."""
    s = summarize(sub).set_index("arm").reindex(arms)
    n = (s["n"] - s["n_failed"]).fillna(0).astype(int)
    orr = s["orr"] if "orr" in s else pd.Series(np.nan, index=s.index)
    df = pd.DataFrame({"variable": variable, "subgroup": label, "arm": arms, "n": n.to_numpy(),
                       "responders": (orr * n).round().astype("Int64").array, "orr": orr.to_numpy(),
                       "orr_ci_low": s.get("orr_ci_low", orr * np.nan).to_numpy(),
                       "orr_ci_high": s.get("orr_ci_high", orr * np.nan).to_numpy()})  # fmt: skip
    hr = hazard_ratios(sub, reference) if sub["arm"].nunique() > 1 else None
    if hr is not None:
        df = df.merge(hr, on="arm", how="left")
    else:  # one arm: the reference's own row, as `hazard_ratios` gives it
        ref = df["arm"] == reference
        df = df.assign(hr=np.where(ref, 1.0, np.nan), hr_ci_low=np.nan, hr_ci_high=np.nan,
                       hr_note=np.where(ref, "reference", ""))  # fmt: skip
    ok = sub["status"].to_numpy() == 0
    evaluable = {a: set(sub.loc[ok & (sub["arm"] == a).to_numpy(), "patient"]) for a in arms}
    failed = {a: set(sub.loc[~ok & (sub["arm"] == a).to_numpy(), "patient"]) for a in arms}
    paired = [
        pd.NA
        if a == reference
        else len((evaluable[a] & evaluable[reference]) - failed[a] - failed[reference])
        for a in arms
    ]
    df.insert(df.columns.get_loc("hr_note") + 1, "hr_n", pd.array(paired, dtype="Int64"))
    return df.assign(interaction_p=np.nan, interaction_subgroups=pd.NA, interaction_note="")

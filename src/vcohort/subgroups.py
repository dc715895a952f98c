"""Subgroup analysis of a virtual trial: which patients benefit?

Each baseline variable splits the patients (a yes/no covariate into its two values; a number at
its median, or at given cut points) and every subgroup gets, per arm, the ORR with its exact CI
and the PFS hazard ratio against the reference arm (`vcohort.endpoints.hazard_ratios` on the
subgroup's patients: the same patients in both arms, cluster-robust), with a test of the
treatment-by-subgroup interaction: a Cox model of PFS on arm, subgroup and their product, fitted
to both arms' rows of every patient with a cluster-robust (patient) variance, and the Wald test
that the product terms are zero (chi-square with one degree of freedom per extra subgroup).
A trial's forest plot (`vcohort.plots.forest`) draws the table.

Subgroups of one trial are many comparisons: the p-values are not adjusted, and a subgroup
effect is a hypothesis for the mechanism (the same virtual patients under every arm make it a
clean one), not a finding (assumption: reported as clinical trial teams read forest plots,
e.g. the EMA guideline on subgroups in confirmatory trials, EMA/CHMP/539146/2013).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vcohort.endpoints import clopper_pearson, hazard_ratios

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


def known_variables(model, population, catalogue: dict | None = None) -> set[str]:
    """Every name `baseline_frame` can hold for ``model``'s cohorts drawn from ``population``:
    covariates, model and PK parameters (``drug.PARAM``), screening values, the endpoints'
    baseline columns and each state or daily output on day 0 (``<name>_baseline``)."""
    from vcohort.cohort import DERIVED_COVARIATES

    catalogue = model.drug_catalogue() if catalogue is None else catalogue
    names = set(population.covariates) | set(DERIVED_COVARIATES) | set(BASELINE_ENDPOINTS)
    names |= set(model.params.names)
    names |= {f"{d}.{p}" for d, drug in catalogue.items() for p in drug.params.names}
    names |= {"screen_max_volume_ratio", "screen_min_diameter_ratio", "screen_csc_min",
              "screen_csc_max"}  # fmt: skip
    names |= {f"{s}_baseline" for s in (*model.states, *model.daily_output_names())}
    return names


def baseline_frame(
    patients: pd.DataFrame, endpoints: pd.DataFrame, timecourse: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per patient: ``patients`` (covariates and parameters), the endpoints' baseline
    columns (`BASELINE_ENDPOINTS`) and, from ``timecourse``, each state on day 0 as
    ``<state>_baseline`` (the state after the immune run-in, before any dose)."""
    base = patients.copy()
    first = endpoints.drop_duplicates("patient")
    cols = [c for c in BASELINE_ENDPOINTS if c in first and c not in base]
    base = base.merge(first[["patient", *cols]], on="patient", how="left")
    if timecourse is not None and len(timecourse):
        day0 = timecourse[timecourse["day"] == timecourse["day"].min()].drop_duplicates("patient")
        skip = {"patient", "arm", "day", "diameter_mm", "status"}
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
    """Group index per patient and the groups' labels: a yes/no variable by its value, a number
    at its median (``cuts`` None) or at the given cut points (``x <= c`` goes below ``c``)."""
    name = values.name
    if values.dtype == bool or set(pd.unique(values.dropna())) <= {0, 1}:
        if cuts is not None:
            raise ValueError(f"subgroups.cuts.{name}: {name} is yes/no; it takes no cut points")
        v = values.astype(bool).to_numpy()
        return v.astype(int), [f"{name} = no", f"{name} = yes"]
    x = values.to_numpy(dtype=float)
    if cuts is None:
        med = float(np.nanmedian(x))
        edges, what = [med], " (median)"
    else:
        edges, what = sorted(float(c) for c in cuts), ""
    g = np.searchsorted(np.asarray(edges), x, side="left")  # x <= edge: below it
    fmt = lambda c: f"{c:.3g}"  # noqa: E731
    labels = [f"{name} <= {fmt(edges[0])}{what}"]
    labels += [f"{fmt(a)} < {name} <= {fmt(b)}" for a, b in zip(edges, edges[1:], strict=False)]
    labels += [f"{name} > {fmt(edges[-1])}{what}"]
    return g, labels


def subgroup_table(
    endpoints: pd.DataFrame,
    baseline: pd.DataFrame,
    reference: str,
    variables=DEFAULT_VARIABLES,
    cuts: dict | None = None,
) -> pd.DataFrame:
    """One row per variable x subgroup x arm: ``n``, ``responders``, ``orr`` with its exact 95%
    CI, the PFS hazard ratio against ``reference`` with its CI and note, and per variable and
    arm the interaction p-value (`interaction_p`).  Variables the baseline lacks are refused;
    a subgroup is the patients of the whole trial, failed ones left out as in the summary."""
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
    not_split = []
    for var in variables:
        x = base[var]
        if var not in cuts and one_value(x):
            not_split.append(var)
            continue
        g, labels = split(x, cuts.get(var))
        group = pd.Series(g, index=base.index)
        gid = endpoints["patient"].map(group)
        p = {a: interaction_p(endpoints, gid, a, reference) for a in arms if a != reference}
        for k, label in enumerate(labels):
            sub = endpoints[gid.to_numpy() == k]
            if sub.empty:
                continue
            r = _rows(sub, reference, arms, var, label)
            r["interaction_p"] = r["arm"].map(p)
            rows.append(r)
    table = pd.concat(rows, ignore_index=True)
    table.attrs["not_split"] = not_split  # variables with one value in every patient
    return table


def one_value(x: pd.Series) -> bool:
    """True when every patient has the same value, up to rounding (`SAME_VALUE_RTOL`)."""
    v = x.dropna()
    if v.dtype == bool or not pd.api.types.is_numeric_dtype(v):
        return v.nunique() <= 1
    v = v.to_numpy(dtype=float)
    return v.size == 0 or np.ptp(v) <= SAME_VALUE_RTOL * max(np.max(np.abs(v)), 1e-300)


def _rows(sub: pd.DataFrame, reference: str, arms: list, variable: str, label: str):
    ok = sub[sub["status"] == 0]
    out = []
    for arm in arms:
        g = ok[ok["arm"] == arm]
        n = len(g)
        resp = int(g["bor"].isin(["CR", "PR"]).sum()) if "bor" in g else 0
        lo, hi = clopper_pearson(resp, n)
        out.append({"variable": variable, "subgroup": label, "arm": arm, "n": n,
                    "responders": resp, "orr": resp / n if n else np.nan,
                    "orr_ci_low": lo, "orr_ci_high": hi})  # fmt: skip
    hr = hazard_ratios(sub, reference) if sub["arm"].nunique() > 1 else None
    df = pd.DataFrame(out)
    if hr is not None:
        df = df.merge(hr, on="arm", how="left")
    else:
        df = df.assign(hr=np.nan, hr_ci_low=np.nan, hr_ci_high=np.nan, hr_note="")
    return df.assign(interaction_p=np.nan)


def interaction_p(endpoints: pd.DataFrame, group: pd.Series, arm: str, reference: str) -> float:
    """Wald test (cluster-robust over patients) that ``arm``'s PFS hazard ratio against
    ``reference`` is the same in every subgroup ``group`` (per endpoint row); NaN when the Cox
    fit is not possible (too few events, a subgroup without events in an arm)."""
    import warnings

    from lifelines import CoxPHFitter
    from scipy.stats import chi2

    keep = endpoints["arm"].isin([arm, reference]).to_numpy()
    df = endpoints[keep]
    gid = np.asarray(group)[keep]
    failed = df.loc[df["status"] != 0, "patient"].unique()  # paired, as `hazard_ratios`
    ok = ~df["patient"].isin(failed).to_numpy()
    df, gid = df[ok], gid[ok]
    levels = sorted(set(gid[~pd.isna(gid)]))
    if len(levels) < 2:
        return np.nan
    x = pd.DataFrame({"t": df["pfs_days"].to_numpy(float), "e": df["pfs_event"].to_numpy(bool),
                      "arm": (df["arm"] == arm).to_numpy(float),
                      "patient": df["patient"].to_numpy()})  # fmt: skip
    terms = []
    for k in levels[1:]:
        x[f"g{k}"] = (gid == k).astype(float)
        x[f"arm_g{k}"] = x["arm"] * x[f"g{k}"]
        terms.append(f"arm_g{k}")
    for _, cell in x.groupby(["arm", *[f"g{k}" for k in levels[1:]]]):
        if not cell["e"].any():  # an arm without events in a subgroup: ratio 0 or infinite
            return np.nan
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cph = CoxPHFitter().fit(x, "t", "e", cluster_col="patient")
        b = cph.params_[terms].to_numpy()
        v = cph.variance_matrix_.loc[terms, terms].to_numpy()
        stat = float(b @ np.linalg.solve(v, b))
    except Exception:  # lifelines' ConvergenceError, a singular covariance
        return np.nan
    return float(chi2.sf(stat, len(terms)))

"""Honest evaluation of schedules on a cohort: the optimised objective with its Monte-Carlo
standard error, paired differences against a reference schedule, RECIST endpoints and every
constraint's hard value (after rounding, the numbers a clinic would see)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from vcohort.cohort import Cohort
from vcohort.dosing import Schedule, compile_schedule, parse_regimen
from vcohort.drugs import get_drug
from vcohort.endpoints import (
    GRADE4_ANC,
    MONTH_DAYS,
    clopper_pearson,
    dose_modification_columns,
    patient_endpoints,
    summarize,
)
from vcohort.model import CSC_IMMUNE, Model
from vcohort.objectives import log_ratio, per_patient_terms
from vcohort.optimize.problem import Problem
from vcohort.simulate import simulate

PFS6_DAYS = 6 * MONTH_DAYS  # 6 months (182.625 d)


def standard_schedules(problem: Problem) -> dict[str, Schedule]:
    """Untreated, each drug's catalogue standard regimen alone, and all of them combined; a
    drug's hold rule (`vcohort.optimize.problem.DrugSlots.rule`) applies to its standard
    regimen too, so that every schedule is compared under the same protocol."""
    names = problem.drug_names
    rules = {d.drug: d.rule for d in problem.drugs}
    regs = {
        n: dataclasses.replace(parse_regimen(get_drug(n).clinical_dose), rule=rules[n])
        for n in names
    }
    days = float(problem.days)
    out = {"untreated": compile_schedule([], days, drugs=names)}
    for n, r in regs.items():
        out[f"standard {n}"] = compile_schedule([r], days, drugs=names)
    if len(names) > 1:
        out["standard combination"] = compile_schedule(list(regs.values()), days, drugs=names)
    return out


def mg_per_patient(schedule: Schedule, cohort: Cohort) -> np.ndarray:
    """(patients, drugs, slots) doses in mg (per-kg / per-m² slots use each covariate)."""
    a = np.asarray(schedule.amount, dtype=np.float64) * schedule.valid
    w = np.asarray(cohort.covariates["weight_kg"], dtype=np.float64)[:, None, None]
    b = np.asarray(cohort.covariates["bsa_m2"], dtype=np.float64)[:, None, None]
    k = schedule.kind[None]
    return a[None] * np.where(k == 1, w, np.where(k == 2, b, 1.0))


# how far over a limit (relative) still counts as on it: round-off of the amounts.  In float32
# the optimiser's amounts carry ~1e-7 relative error (eps 1.2e-7; a budget was measured
# 1.3e-7 over), in float64 ~1e-16.
FEASIBLE_TOL = {"float64": 1e-9, "float32": 1e-6}


def feasible(g: dict, precision: str = "float64") -> bool:
    """Whether every hard constraint value (`hard_constraints`, relative) is <= 0 up to the
    round-off of ``precision`` (`FEASIBLE_TOL`)."""
    return bool(all(v <= FEASIBLE_TOL[precision] for v in g.values()))


def hard_constraints(problem: Problem, schedule: Schedule, cohort: Cohort, traj) -> dict:
    """Hard constraint values, scaled like `constraint_values` (<= 0 feasible)."""
    mg = mg_per_patient(schedule, cohort)
    g = {}
    for d in problem.drugs:
        if d.drug not in schedule.drugs:
            continue
        i = schedule.drugs.index(d.drug)
        a = mg[:, i, :]
        t = schedule.time[i]
        g[f"max_dose:{d.drug}"] = float((a.max() - d.resolved_max()) / d.resolved_max())
        if d.budget_mg is not None:
            g[f"budget:{d.drug}"] = float((a.sum(axis=1).max() - d.budget_mg) / d.budget_mg)
        if d.max_daily_mg is not None:
            days = np.floor(t[schedule.valid[i]]).astype(int)
            rows = a[:, schedule.valid[i]]
            top = max((np.bincount(days, weights=r).max() for r in rows if r.size), default=0.0)
            g[f"max_daily:{d.drug}"] = float((top - d.max_daily_mg) / d.max_daily_mg)
        if d.auc_budget is not None:
            auc = np.nanmean(traj.auc[d.drug][traj.status == 0])
            g[f"auc:{d.drug}"] = float((auc - d.auc_budget) / d.auc_budget)
    if problem.anc_grade4_max is not None:
        nadir = np.min(traj.daily["ANC"][traj.status == 0], axis=1)
        g["anc_grade4"] = float(np.mean(nadir < GRADE4_ANC) - problem.anc_grade4_max)
    return g


def _per_patient_objective(problem: Problem, traj) -> tuple[np.ndarray, float]:
    out = {"daily": traj.daily, "auc": traj.auc}
    terms = {
        k: np.asarray(v)
        for k, v in per_patient_terms(out, problem.days, assess_every=problem.assess_every).items()
    }
    lr = np.asarray(log_ratio({"daily": traj.daily}))
    per = sum(w * terms[k] for k, w in problem.weights.items() if k != "cvar")
    return np.zeros(len(lr)) + per, lr


def evaluate(
    problem: Problem,
    cohort: Cohort,
    schedules: dict[str, Schedule],
    *,
    reference: str | None = None,
    model: Model = CSC_IMMUNE,
    precision: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per schedule: objective ± Monte-Carlo SE, paired difference to ``reference``,
    endpoints and hard constraints.  All schedules run on the same patients."""
    if reference is not None and reference not in schedules:
        raise ValueError(f"reference={reference!r} not among schedules {list(schedules)}")
    prec = precision or problem.precision
    rows, per_pat, lrs = [], {}, {}
    rng = np.random.default_rng(seed)
    n = len(cohort)
    boot = rng.integers(0, n, size=(n_boot, n))
    w_cvar = problem.weights.get("cvar", 0.0)
    for name, sched in schedules.items():
        traj = simulate(
            model,
            cohort,
            sched,
            problem.days,
            dt=problem.dt,
            save_every=problem.days,
            precision=prec,
            progress=False,
        )
        ok = traj.status == 0
        per, lr = _per_patient_objective(problem, traj)
        per = np.where(ok, per, np.nan)
        per_pat[name] = per
        obj = float(np.nanmean(per))
        if w_cvar:
            lr = np.where(ok, lr, np.nan)
            lrs[name] = lr
            obj += w_cvar * _cvar_np(lr, problem.alpha)
        ep = patient_endpoints(traj, assess_every=problem.assess_every)
        epk = ep[ep["status"] == 0]
        row = {
            "schedule": name,
            "n": n,
            "n_failed": int((~ok).sum()),
            "objective": obj,
            "objective_se": float(np.nanstd(per) / np.sqrt(ok.sum())) if not w_cvar else np.nan,
            "mean_log_diameter_ratio": float(
                np.nanmean(
                    np.where(
                        ok,
                        np.log(traj.daily["diameter_mm"][:, -1] / traj.daily["diameter_mm"][:, 0]),
                        np.nan,
                    )
                )
            ),
            "orr": _orr(epk),
            "median_best_pct_change": float(epk["best_pct_change"].median()),
            "median_csc_fraction_final": float(np.median(traj.daily["csc_fraction"][ok, -1])),
        }
        if problem.days >= 210:
            ev = epk["pfs_event"].to_numpy(bool, na_value=False)  # (epk: solved patients only)
            early = ev & (epk["pfs_days"].to_numpy(float) <= PFS6_DAYS)
            row["pfs6"] = float(1.0 - early.mean()) if early.size else np.nan
        if "ANC" in traj.daily:
            g4 = traj.daily["ANC"][ok].min(axis=1) < GRADE4_ANC
            row["grade4_neutropenia"] = float(np.mean(g4))
            # the limit is met by the point estimate; its exact upper 95% bound says how surely
            row["grade4_neutropenia_ci_high"] = clopper_pearson(int(g4.sum()), int(g4.size))[1]
        for d in problem.drug_names:
            if d in traj.dosing:  # a hold rule: the mg given, not the mg planned
                total = np.asarray(traj.dosing[d]["given_mg"])[ok]
            else:
                total = mg_per_patient(sched, cohort)[ok, sched.drugs.index(d)].sum(axis=1)
            row[f"total_mg_median:{d}"] = float(np.median(total))
            row[f"auc_mean:{d}"] = float(np.nanmean(traj.auc[d][ok]))
        if traj.dosing:  # hold rules: withheld, reduced, discontinued, median RDI per drug
            s = summarize(ep)  # (omission rules only here: no delay column)
            cols = [c for c in dose_modification_columns(s) if not c.startswith("mean_delay")]
            row.update({c: float(s[c].iloc[0]) for c in cols})
        g = hard_constraints(problem, sched, cohort, traj)
        row.update({f"g:{k}": v for k, v in g.items()})
        row["feasible"] = feasible(g, problem.precision)
        rows.append(row)
    df = pd.DataFrame(rows)
    if reference is not None:
        ref = per_pat[reference]
        diffs, ses = [], []
        for name in df["schedule"]:
            dlt = per_pat[name] - ref
            if w_cvar:  # CVaR does not decompose: bootstrap over patients (paired)
                a, b = lrs[name], lrs[reference]
                full = np.nanmean(dlt) + w_cvar * (
                    _cvar_np(a, problem.alpha) - _cvar_np(b, problem.alpha)
                )
                bs = [
                    np.nanmean(dlt[ix])
                    + w_cvar * (_cvar_np(a[ix], problem.alpha) - _cvar_np(b[ix], problem.alpha))
                    for ix in boot
                ]
                diffs.append(full)
                ses.append(float(np.std(bs)))
            else:
                m = np.isfinite(dlt)
                diffs.append(float(np.mean(dlt[m])))
                # fewer than two paired differences: no standard error (NaN, not a certain 0);
                # the reference's own difference is 0 for every patient, exactly
                if name == reference:
                    ses.append(0.0)
                elif m.sum() > 1:
                    ses.append(float(np.std(dlt[m], ddof=1) / np.sqrt(m.sum())))
                else:
                    ses.append(np.nan)
        df.insert(4, "diff_vs_reference", diffs)
        df.insert(5, "diff_se", ses)
    return df


def _orr(epk: pd.DataFrame) -> float:
    """The fraction of evaluable patients ``epk`` with BOR CR or PR; NaN when none was assessed
    within the horizon (nothing is evaluable), as `vcohort.endpoints.summarize` says."""
    if "n_assessments" in epk:
        assessed = bool(len(epk)) and int(epk["n_assessments"].max()) > 0
    else:
        assessed = bool((epk["bor"] != "NE").any())
    return float(epk["bor"].isin(["CR", "PR"]).mean()) if assessed else np.nan


def _cvar_np(x: np.ndarray, alpha: float) -> float:
    x = x[np.isfinite(x)]
    k = max(1, int(np.ceil(alpha * x.size)))
    return float(np.mean(np.sort(x)[-k:]))

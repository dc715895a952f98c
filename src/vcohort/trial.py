"""Virtual trials: an `Experiment` → plausible cohort → every arm on the same patients → tables,
figures and an HTML report in one run folder (ARCHITECTURE.md, "Outputs").

`run_trial` computes (no files); `write_trial` writes the folder atomically
(`vcohort.io.run_folder`: a temporary sibling swapped in on success, never overwriting without
``overwrite``):

* ``manifest.json`` — validated config, population preset, seed, versions, device, timings;
* ``patients.parquet`` — one row per kept patient (covariates, parameters, screening values);
* ``screening.csv`` — every screened patient with ``plausible`` and the rejection ``reason``;
* ``timecourse.parquet`` — long: patient, arm, day, states, diameter_mm, csc_fraction, ANC;
* ``endpoints.parquet`` — one row per patient × arm (BOR, best % change, PFS, time to and
  duration of response, CSC, AUC, …);
* ``summary.csv`` — per arm: n, ORR/DCR with exact CIs, median PFS and 6-month PFS with CIs,
  the responders' median time to response and duration of response (median and at the
  landmark, with CIs), hazard ratio vs the reference arm with 95% CI, CSC fraction, exposure,
  grade-4 neutropenia;
* ``subgroups.csv`` — per baseline variable (``[subgroups]``), subgroup and arm: ORR and the
  PFS hazard ratio vs the reference arm, with the interaction p-value (`vcohort.subgroups`);
* ``schedules/ARM.csv`` — NM-TRAN dose records per arm for every patient (own weight/BSA;
  for drugs with a hold rule, the doses given);
* ``doses_given.parquet`` — with hold rules: every planned dose of a ruled drug, given or not,
  on which day and at what fraction (`vcohort.runs.doses_given_frame`);
* ``figures/*.png`` and ``report.html`` — `vcohort.report.write_trial_report`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vcohort.experiment import Experiment


@dataclass
class TrialResult:
    """What `run_trial` computed (host tables; nothing written)."""

    experiment: Experiment
    cohort: object
    screening: pd.DataFrame
    trajectories: dict
    endpoints: pd.DataFrame
    summary: pd.DataFrame
    schedules: dict
    timings: dict = field(default_factory=dict)
    calibration: dict | None = None  # the calibration report when [calibration] was given


def run_trial(exp: Experiment, *, progress: bool | None = None) -> TrialResult:
    """Draw and screen the cohort, simulate every arm on it, compute endpoints and summary."""
    from vcohort.endpoints import trial_summary
    from vcohort.model import CSC_IMMUNE
    from vcohort.plausibility import plausible_cohort
    from vcohort.runs import run_arms

    t0 = time.perf_counter()
    calib = exp.calibration
    cohort, screening = plausible_cohort(
        exp.size if calib is None else calib["pool"],
        population=exp.drawn_population,
        seed=exp.seed,
        replace=exp.replace_rejected,
        model=CSC_IMMUNE,
        runin_days=exp.runin_days,
        **exp.numerics,
    )
    calibration = None
    if calib is not None:
        cohort, calibration = _calibrate(exp, cohort)
    t_cohort = time.perf_counter() - t0
    if progress is not False:
        n_rej = int((~screening["plausible"]).sum())
        print(
            f"cohort: {len(cohort)} patients ({n_rej} rejected as implausible) in {t_cohort:.1f} s",
            file=sys.stderr,
        )
    trajs, endpoints, _, schedules = run_arms(
        CSC_IMMUNE,
        cohort,
        list(exp.arms),
        exp.horizon_days,
        save_every=exp.save_every,
        progress=progress,
        endpoint_options=exp.endpoint_options,
        **exp.numerics,
    )
    summary = trial_summary(endpoints, reference=exp.reference_arm, landmark_days=exp.landmark_days)
    summary.insert(1, "regimen", [a.describe() for a in exp.arms])
    timings = {"cohort_s": t_cohort, "total_s": time.perf_counter() - t0}
    return TrialResult(
        exp, cohort, screening, trajs, endpoints, summary, schedules, timings, calibration
    )


def _calibrate(exp: Experiment, pool):
    """Select ``exp.size`` patients from the plausible ``pool`` per ``exp.calibration``
    (a saved rule, or targets fitted here); returns (cohort, calibration report)."""
    from vcohort import calibrate as C

    c = exp.calibration
    if "rule" in c:
        rule = C.CalibrationRule.load(c["rule"])
        cohort, _, report = C.apply_rule(
            rule, pool, exp.size, seed=exp.seed, engine=exp.engine,
            population=exp.drawn_population, runin_days=exp.runin_days,
        )  # fmt: skip
        if "population_note" in report:
            print(f"note: [calibration] rule: {report['population_note']}", file=sys.stderr)
        return cohort, {"rule_file": c["rule"], **report}
    arm, targets = C.PRESETS[c["preset"]] if c.get("preset") else (None, None)
    arm = c.get("arm") or arm
    own = any(c.get(k) is not None for k in ("orr", "pfs6", "arm"))
    if own or targets is None:  # each given target replaces only the preset's (as the CLI)
        from dataclasses import replace

        base = targets if targets is not None else C.Targets(c["orr"])
        targets = replace(
            base,
            orr=c["orr"] if c.get("orr") is not None else base.orr,
            pfs6=c["pfs6"] if c.get("pfs6") is not None else base.pfs6,
            source="user",
        )
    rule, cohort, _, report = C.calibrate(
        pool,
        targets,
        exp.size,
        arm=arm,
        days=c.get("days") or 210,
        seed=exp.seed,
        assessment=exp.endpoint_options,  # selected by the RECIST definition the trial reports
        dt=exp.dt,
        engine=exp.engine,
        population=exp.drawn_population,
        runin_days=exp.runin_days,
    )
    return cohort, {"rule": rule.to_dict(), **report}


def nmtran_tables(result: TrialResult, *, typical: bool = False) -> dict[str, pd.DataFrame]:
    """Arm → NM-TRAN dose records (`vcohort.dosing.to_nmtran`): every patient with its own
    weight/BSA and, for drugs with a hold rule, the doses it was given; or (``typical``) the
    planned doses of one ID 1 with the cohort's median weight and BSA."""
    from vcohort.dosing import to_nmtran

    cov = result.cohort.covariates
    if typical:
        ids, w, b = (1,), np.median(cov["weight_kg"]), np.median(cov["bsa_m2"])
    else:
        ids, w, b = result.cohort.patient_id, cov["weight_kg"], cov["bsa_m2"]
    return {
        arm: to_nmtran(
            s,
            ids=ids,
            weight_kg=w,
            bsa_m2=b,
            given=None if typical else result.trajectories[arm].dosing,
        )  # fmt: skip
        for arm, s in result.schedules.items()
    }


def patients_frame(result: TrialResult) -> pd.DataFrame:
    """Kept patients: covariates, parameters and their screening values."""
    df = result.cohort.to_frame()
    scr = result.screening.drop(columns=["plausible", "reason"])
    return df.merge(scr, on="patient", how="left")


def write_trial(result: TrialResult, out: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Write the run folder (see the module docstring); returns the files written."""
    from vcohort.io import environment, run_folder, write_csv, write_json, write_parquet
    from vcohort.report import write_trial_report
    from vcohort.runs import doses_given_frame, timecourse_frame

    exp = result.experiment
    t0 = time.perf_counter()
    with run_folder(out, overwrite) as tmp:
        timecourse = timecourse_frame(result.trajectories)
        patients = patients_frame(result)
        write_parquet(tmp / "patients.parquet", patients)
        write_csv(tmp / "screening.csv", result.screening)
        write_parquet(tmp / "timecourse.parquet", timecourse)
        write_parquet(tmp / "endpoints.parquet", result.endpoints)
        write_csv(tmp / "summary.csv", result.summary)
        subgroups = None
        if exp.subgroups["variables"]:
            from vcohort.subgroups import baseline_frame, subgroup_table

            try:  # a secondary analysis: its failure must not lose the trial's tables
                base = baseline_frame(patients, result.endpoints, timecourse)
                subgroups = subgroup_table(
                    result.endpoints, base, exp.reference_arm, exp.subgroups["variables"],
                    exp.subgroups["cuts"], strict=False,  # a variable that fails: left out
                )  # fmt: skip
                write_csv(tmp / "subgroups.csv", subgroups)
                at = subgroups.attrs
                for var, err in at["failed"].items():
                    print(f"warning: subgroups: {var} not analysed: {err}", file=sys.stderr)
                for var in at["not_split"]:
                    print(f"note: subgroups: {var} not split ({at['not_split_reason'][var]})",
                          file=sys.stderr)  # fmt: skip
                for var, k in at["missing"].items():
                    print(f"note: subgroups: {k} patients without a {var} value are in no "
                          f"subgroup of it", file=sys.stderr)  # fmt: skip
                for var, k in at["non_finite"].items():
                    print(f"note: subgroups: {k} patients with a non-finite {var} value are in "
                          f"no subgroup of it", file=sys.stderr)  # fmt: skip
            except Exception as e:  # noqa: BLE001
                subgroups = None
                print(f"warning: subgroup analysis skipped: {type(e).__name__}: {e}",
                      file=sys.stderr)  # fmt: skip
        given = doses_given_frame(
            result.trajectories, result.schedules, result.cohort.covariates, exp.dt
        )
        if len(given):  # drugs with a hold rule: each planned dose, given or not
            write_parquet(tmp / "doses_given.parquet", given)
        (tmp / "schedules").mkdir()
        for arm, table in nmtran_tables(result).items():
            write_csv(tmp / "schedules" / f"{arm}.csv", table)
        write_trial_report(
            tmp,
            title=exp.title,
            summary=result.summary,
            endpoints=result.endpoints,
            timecourse=timecourse,
            schedules=nmtran_tables(result, typical=True),
            config=exp.config,
            subgroups=subgroups,
        )
        from vcohort.columns import write_columns
        from vcohort.model import CSC_IMMUNE

        write_columns(tmp, CSC_IMMUNE)  # the data dictionary: every column's unit and meaning
        n_rej = int((~result.screening["plausible"]).sum())
        if result.calibration is not None:
            write_json(tmp / "calibration.json", result.calibration)
        from vcohort.cohort import with_drug_correlations
        from vcohort.drugs import CATALOGUE
        from vcohort.endpoints import failed_counts

        write_json(
            tmp / "manifest.json",
            {
                "command": " ".join(sys.argv),
                "experiment_file": exp.source,
                "config": exp.config,
                "population": with_drug_correlations(exp.population, CATALOGUE).to_dict(),
                "seed": exp.seed,
                "precision": exp.precision,
                "model": "csc_immune",
                "patients": len(result.cohort),
                "rejected_as_implausible": n_rej,
                "n_failed": failed_counts(result.endpoints),
                "environment": environment(),
                "timings": result.timings
                | {"write_s": time.perf_counter() - t0}
                | {"arms": {a: tr.timings for a, tr in result.trajectories.items()}},
            },
        )
        files = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
    return [Path(out) / f for f in files]

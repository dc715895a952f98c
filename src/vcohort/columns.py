"""The data dictionary of a run folder: every column of every table with its unit and meaning.

`write_columns` reads the headers of the tables a run wrote (Parquet schemas, CSV header lines)
and writes ``columns.csv`` (file, column, unit, meaning), so that a trial team reading
``endpoints.parquet`` in R or SAS knows that ``auc_pembrolizumab`` is mg·day/L and ``anc_nadir``
10⁹/L without reading the code.  Model states and parameters take their units from the model's
tables, PK parameters from the drugs'.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from vcohort.endpoints import MONTH_DAYS

# column -> (unit, meaning); "" = no unit
FIXED: dict[str, tuple[str, str]] = {
    "patient": ("", "patient id (with the cohort seed it fixes the patient)"),
    "arm": ("", "arm name"),
    "regimen": ("", "the arm's regimens, as written"),
    "day": ("day", "day since the start of treatment"),
    "status": (
        "",
        "solver status: 0 ok; 1 non-finite state, 2 negative state, 3 reference solver did "
        "not finish, 4 a rate x dt beyond RK4's stability bound, 5 a non-finite initial "
        "state (the immune run-in failed) (vcohort.simulate.STATUS_MESSAGES; status_text in "
        "endpoints.parquet says it in words)",
    ),
    "status_text": ("", "solver status in words"),
    "weight_kg": ("kg", "body weight"),
    "height_cm": ("cm", "height"),
    "bsa_m2": ("m²", "body-surface area (DuBois & DuBois 1916)"),
    "baseline_diameter_mm": ("mm", "baseline sum of diameters (spherical-equivalent diameter)"),
    "pdl1_positive": ("", "PD-L1 status (>= 1% of tumour cells)"),
    "final_diameter_mm": ("mm", "diameter at the horizon"),
    "nadir_diameter_mm": ("mm", "smallest daily diameter"),
    "baseline_tumour_cells": ("cells", "tumour cells at baseline (models without a diameter)"),
    "final_tumour_cells": ("cells", "tumour cells at the horizon"),
    "nadir_tumour_cells": ("cells", "fewest tumour cells on any day"),
    "nadir_day": (
        "day",
        "day of the smallest daily diameter (tumour cells, for models without a diameter); "
        "NA: the solve failed",
    ),
    "best_pct_change": (
        "%",
        "best % change of the diameter from baseline at the assessments up to and including "
        "the first progression (models without a diameter: of the tumour cells, over every "
        "day)",
    ),
    "best_pct_change_daily": ("%", "best % change from baseline over every day"),
    "final_pct_change": ("%", "% change from baseline at the horizon"),
    "bor": (
        "",
        "RECIST 1.1 best overall response: CR, PR, SD, PD, NE (not evaluable; also NE when "
        "the solve failed, see status)",
    ),
    "n_assessments": ("", "RECIST assessments within the horizon (0: nothing evaluable)"),
    "pfs_days": ("day", "progression-free survival: time to PD, or to censoring"),
    "pfs_event": ("", "true: progressed (PD); false: censored; empty (NA): the solve failed"),
    "response_day": (
        "day",
        "time to response: the assessment day a CR or PR was first measured (with confirmation, "
        "the confirmed response's first measurement); NaN without a response",
    ),
    "dor_days": (
        "day",
        "duration of response: from response_day to PD, or to censoring as PFS (RECIST 1.1 "
        "§4.5); NaN without a response",
    ),
    "dor_event": (
        "",
        "true: the response ended in PD; false: censored; empty (NA): no response, or the solve "
        "failed",
    ),
    "csc_fraction_baseline": ("fraction", "CSCs / (CSCs + non-stem tumour cells) at baseline"),
    "csc_fraction_final": ("fraction", "CSC fraction at the horizon"),
    "csc_fraction": ("fraction", "CSCs / (CSCs + non-stem tumour cells)"),
    "diameter_mm": ("mm", "spherical-equivalent tumour diameter (RECIST sum of diameters)"),
    "anc_nadir": ("10⁹/L", "lowest absolute neutrophil count"),
    "grade4_neutropenia_ci_low": (
        "fraction",
        "grade-4 neutropenia fraction, exact (Clopper–Pearson) 95% CI, lower (patients with ANC "
        "below 0.5 x 10⁹/L out of the evaluable patients, as grade4_neutropenia)",
    ),
    "grade4_neutropenia_ci_high": (
        "fraction",
        "grade-4 neutropenia fraction, exact (Clopper–Pearson) 95% CI, upper",
    ),
    "grade4_neutropenia": (
        "",
        "ANC below 0.5 x 10⁹/L at any time (CTCAE grade 4; NA: the solve failed); in a "
        "summary: the fraction of patients",
    ),  # fmt: skip
    "tumour_cells": ("cells", "tumour cells (models without a diameter)"),
    "tumour_cleared": (
        "",
        "tumour below one cell at the horizon (NA: the solve failed); in a summary: the "
        "fraction of patients",
    ),
    # summary.csv
    "n": ("patients", "patients in the arm (n - n_failed: the rates' denominator)"),
    "n_failed": (
        "patients",
        "patients whose solve failed (in endpoints.parquet with NaN/NA values; left out of every "
        "statistic)",
    ),
    "orr": ("fraction", "objective response rate: BOR CR or PR"),
    "orr_ci_low": ("fraction", "ORR, exact (Clopper–Pearson) 95% CI, lower"),
    "orr_ci_high": ("fraction", "ORR, exact (Clopper–Pearson) 95% CI, upper"),
    "dcr": ("fraction", "disease control rate: BOR CR, PR or SD"),
    "dcr_ci_low": ("fraction", "DCR, exact 95% CI, lower"),
    "dcr_ci_high": ("fraction", "DCR, exact 95% CI, upper"),
    "median_best_pct_change": ("%", "median of best_pct_change"),
    "median_final_pct_change": ("%", "median of final_pct_change"),
    "progression_free_at_end": (
        "fraction",
        "patients without PD at any assessment within the horizon (a raw proportion, not "
        "Kaplan–Meier)",
    ),
    "median_csc_fraction_baseline": ("fraction", "median CSC fraction at baseline"),
    "median_csc_fraction_final": ("fraction", "median CSC fraction at the horizon"),
    "median_anc_nadir": ("10⁹/L", "median of anc_nadir"),
    "median_pfs_days": ("day", "Kaplan–Meier median PFS (NaN: not reached)"),
    "median_ttr_days": ("day", "median time to response of the responders (response_day)"),
    "median_dor_days": (
        "day",
        "Kaplan–Meier median duration of response of the responders (NaN: not reached, or no "
        "responder)",
    ),
    "median_dor_ci_low": ("day", "median DoR, 95% CI, lower (lifelines; inf: not reached)"),
    "median_dor_ci_high": ("day", "median DoR, 95% CI, upper (inf: not reached)"),
    "dor_landmark": (
        "fraction",
        "Kaplan–Meier probability that a response lasts pfs_landmark_days (the responders; "
        "NaN: past their last follow-up, or no responder)",
    ),
    "dor_landmark_ci_low": ("fraction", "landmark DoR, 95% CI, lower (as pfs_landmark's)"),
    "dor_landmark_ci_high": ("fraction", "landmark DoR, 95% CI, upper"),
    "median_pfs_ci_low": ("day", "median PFS, 95% CI, lower (lifelines; inf: not reached)"),
    "median_pfs_ci_high": ("day", "median PFS, 95% CI, upper (inf: not reached)"),
    "pfs_landmark_days": ("day", f"day of pfs_landmark (default 6 months, {6 * MONTH_DAYS:g} d)"),
    "pfs_landmark": ("fraction", "Kaplan–Meier progression-free probability at the landmark"),
    "pfs_landmark_ci_low": (
        "fraction",
        "landmark PFS, 95% CI, lower (exponential Greenwood; where the estimate is 1 or 0, "
        "exact for the patients whose state at the landmark is known)",
    ),
    "pfs_landmark_ci_high": ("fraction", "landmark PFS, 95% CI, upper"),
    "hr": ("", "Cox hazard ratio of PFS against the reference arm (cluster-robust: same patients)"),
    "hr_ci_low": ("", "hazard ratio, 95% CI, lower"),
    "hr_ci_high": ("", "hazard ratio, 95% CI, upper"),
    "hr_note": (
        "",
        "why the hazard ratio is NaN, or a caveat on it: few events, a Cox-fit warning, patients "
        "evaluable in only one of the two arms (left out of both)",
    ),
    # doses_given.parquet
    "drug": ("", "drug"),
    "dose": ("", "the dose's number in the drug's regimen (1 = first)"),
    "unit": ("", "unit of the amounts: mg, or 1e6 cells for a cell product"),
    "planned_day": ("day", "day the dose was due"),
    "planned_amount": ("mg", "amount the regimen planned (in `unit`)"),
    "given_day": (
        "day",
        "day it was given: its step on the integrator's grid (planned_day rounded to the "
        "nearest step; later after a delay; empty: not given)",
    ),
    "fraction": ("fraction", "fraction of the planned amount given (after reductions)"),
    "given_amount": ("mg", "amount given (in `unit`)"),
    # screening.csv
    "plausible": ("", "passed the population's plausibility bounds"),
    "reason": ("", "why the patient was rejected"),
    "screen_max_volume_ratio": ("", "largest untreated volume ratio to baseline over the screen"),
    "screen_min_diameter_ratio": ("", "smallest untreated diameter ratio to baseline"),
    "screen_csc_min": ("fraction", "smallest CSC fraction over the screen"),
    "screen_csc_max": ("fraction", "largest CSC fraction over the screen"),
    # NM-TRAN records
    "ID": ("", "NM-TRAN: patient id"),
    "TIME": ("day", "NM-TRAN: time of the (first) dose"),
    "AMT": ("mg", "NM-TRAN: amount (1e6 cells for a cell product)"),
    "CMT": ("", "NM-TRAN: dosing compartment (the run's PK compartments numbered in drug order)"),
    "EVID": ("", "NM-TRAN: event id (1: dose)"),
    "II": ("day", "NM-TRAN: interdose interval"),
    "ADDL": ("", "NM-TRAN: additional doses after the first"),
    "RATE": ("mg/day", "NM-TRAN: infusion rate (0: bolus)"),
    "DRUG": ("", "drug name"),
    "ARM": ("", "arm name"),
    # vcohort optimize: history.csv, baseline_history.csv
    "iteration": ("", "optimiser iteration (one cohort value-and-gradient, or one ES simulation)"),
    "loss": ("", "augmented-Lagrangian loss the gradient step descends"),
    "objective": ("", "the weighted objective (lower is better; see [objective])"),
    "max_violation": (
        "",
        "largest constraint violation (scaled), floored at 0: 0 = every limit met; NaN: not finite",
    ),
    "finite": ("", "loss and gradient were finite (else the step was skipped)"),
    "mu": ("", "augmented-Lagrangian penalty weight"),
    "learning_rate": ("", "the optimiser's learning rate at this iteration"),
    "wall_s": ("s", "wall time since the start of the optimisation"),
    "penalised": ("", "ES baseline: objective plus constraint penalty of its best schedule"),
    "sigma": ("", "ES baseline: mutation step size (in the optimised parameters)"),
    # evaluation_heldout.csv, evaluation_train.csv
    "schedule": ("", "schedule evaluated (untreated, standard, optimised, ES baseline, ...)"),
    "objective_se": ("", "standard error of the objective over patients (NaN with a CVaR term)"),
    "diff_vs_reference": ("", "objective minus the reference schedule's, paired by patient"),
    "diff_se": ("", "standard error of diff_vs_reference (paired; bootstrap with a CVaR term)"),
    "mean_log_diameter_ratio": ("", "mean of log(final / baseline diameter)"),
    "pfs6": ("fraction", "patients without PD at 6 months"),
    "feasible": ("", "every hard constraint holds"),
    # schedule_slots.csv, rounding_candidates.csv
    "optimised_mg": ("mg", "continuous optimised dose of the slot"),
    "rounded_mg": ("mg", "the dose given: rounded to clinical amounts"),
    "es_baseline_mg": ("mg", "the ES baseline's dose of the slot"),
    "candidate": ("", "rounding candidate number (0: nearest rounding)"),
    "regimens": ("", "the candidate's regimens, as written"),
    "objective_train": ("", "the candidate's objective on the training cohort"),
    "feasible_train": ("", "the candidate meets every hard constraint on the training cohort"),
    "failed_train": ("patients", "training patients whose solve failed"),
    "chosen": ("", "the candidate given as the optimised schedule"),
    # vcohort calibrate: pool_observables.parquet
    "ok": ("", "the reference-arm solve succeeded (status 0)"),
    "responder": ("", "BOR CR or PR under the reference arm"),
    "pf6": ("", "progression-free at 6 months (no PD assessment by day 182.625, 6 months)"),
    "cell": (
        "",
        "calibration cell: 0 responder & PF6, 1 responder & progressed, "
        "2 non-responder & PF6, 3 non-responder & progressed; -1 the solve failed (ok false)",
    ),  # fmt: skip
    "selected": ("", "the patient is in the calibrated cohort (patients.parquet)"),
    # vcohort sensitivity: ranking.csv (the endpoint's unit per e-fold change of the parameter)
    "rank": ("", "rank (1 = most influential: largest median_abs, or largest ST for Sobol)"),
    "parameter": ("", "parameter: a model parameter, or drug.PARAM for a PK parameter"),
    "kind": ("", "model or PK parameter"),
    "median": ("", "median over patients of d(endpoint)/d(ln parameter)"),
    "q25": ("", "25th percentile over patients of d(endpoint)/d(ln parameter)"),
    "q75": ("", "75th percentile over patients of d(endpoint)/d(ln parameter)"),
    "median_abs": ("", "median over patients of |d(endpoint)/d(ln parameter)| (ranks)"),
    "n_patients": ("patients", "patients with finite sensitivities (the others are left out)"),
    "n_zero": ("patients", "of them, patients whose every sensitivity is 0 (e.g. no tumour left)"),
    "low": ("", "Sobol: lower end of the parameter's log-uniform range (parameter's unit)"),
    "high": ("", "Sobol: upper end of the range (parameter's unit)"),
    "S1": ("", "Sobol first-order index (share of the endpoint's variance)"),
    "S1_conf": ("", "S1, half-width of its 95% bootstrap CI"),
    "ST": ("", "Sobol total-order index (share including interactions)"),
    "ST_conf": ("", "ST, half-width of its 95% bootstrap CI"),
    # personalised.csv
    "mode": ("", "population: one schedule for all; personalised: one schedule per patient"),
    "patients": ("patients", "patients the schedules were optimised and evaluated on"),
}

# per-drug columns: regex -> (unit, meaning with {drug})
# (the first pattern that matches a column describes it: more specific patterns first)
PATTERNS: tuple[tuple[str, str, str], ...] = (
    (r"auc_mean:(.+)", "mg·day/L", "mean plasma AUC of {drug}"),
    (r"auc_(.+)", "mg·day/L", "plasma AUC of {drug} over the horizon"),
    (r"median_auc_(.+)", "mg·day/L", "median plasma AUC of {drug}"),
    (r"doses_due_(.+)", "doses", "doses of {drug} that fell due (hold rule)"),
    (r"doses_withheld_(.+)", "doses", "doses of {drug} withheld (omitted or delayed)"),
    (
        r"holds_(.+)",
        "holds",
        "hold episodes of {drug}: runs of withheld doses (omission rule), postponed doses (delay "
        "rule); each steps the dose level down",
    ),
    (r"doses_reduced_(.+)", "doses", "doses of {drug} given below 100%"),
    (r"discontinued_day_(.+)", "day", "day {drug} was discontinued (empty: never)"),
    (r"delay_days_(.+)", "day", "total postponement of the doses of {drug} given"),
    (
        r"rdi_(.+)",
        "fraction",
        "relative dose intensity of {drug} as total dose: mg given / mg planned within the horizon "
        "(not per unit time: a delayed dose given counts in full; read with delay_days_{drug})",
    ),
    (r"any_withheld_(.+)", "fraction", "patients with a withheld dose of {drug}"),
    (r"mean_holds_(.+)", "holds", "mean hold episodes of {drug} per patient"),
    (r"any_reduced_(.+)", "fraction", "patients with a reduced dose of {drug}"),
    (r"discontinued_(.+)", "fraction", "patients who stopped {drug}"),
    (r"median_rdi_(.+)", "fraction", "median relative dose intensity of {drug}"),
    (
        r"mean_delay_days_(.+)",
        "day",
        "mean over the evaluable patients given {drug} under a hold rule of each patient's total "
        "postponement of its doses (delay_days_{drug}; a patient without a delay counts as 0), "
        "not the mean delay per delayed dose",
    ),
    (r"term:(.+)", "", "objective term {drug} (unweighted)"),
    (r"total_mg_median:(.+)", "mg", "median total dose of {drug} per patient"),
    (r"g:(.+)", "", "hard constraint {drug} (scaled; <= 0: met)"),
    (
        r"worst_g:(.+)",
        "",
        "personalised.csv: the worst patient's value of the per-patient limit {drug} (scaled; "
        "<= 0: every patient meets it)",
    ),
)


def describe(column: str, model=None, catalogue: dict | None = None) -> tuple[str, str]:
    """(unit, meaning) of a column of vcohort's tables; ("", "") when unknown."""
    if column in FIXED:
        return FIXED[column]
    for pattern, unit, meaning in PATTERNS:
        m = re.fullmatch(pattern, column)
        if m:
            return _amount_unit(unit, m.group(1), catalogue), meaning.format(drug=m.group(1))
    if model is not None:
        if column in model.states:
            units = getattr(model, "state_units", {}) or {}
            desc = _state_descriptions(model).get(column, "model state")
            return units.get(column, ""), f"state: {desc}"
        if column in REFERENCE_OUTPUTS.get(model.name, {}):
            return REFERENCE_OUTPUTS[model.name][column]
        if column in model.params:
            p = model.params[column]
            return p.unit, f"model parameter: {p.description}"
    if catalogue is not None and "." in column:
        drug, name = column.split(".", 1)
        if drug in catalogue and name in catalogue[drug].params:
            p = catalogue[drug].params[name]
            return p.unit, f"PK parameter of {drug} (typical weight): {p.description}"
    return "", ""


# the published reference models' daily outputs besides tumour_cells (their own units)
REFERENCE_OUTPUTS = {
    "kuznetsov1994": {"effector_cells": ("cells", "effector (cytotoxic) immune cells, E")},
    "depillis2009": {
        "cd8_cells": ("cells/L", "tumour-specific CD8+ T cells, L"),
        "lymphocytes": ("cells/L", "circulating lymphocytes, C"),
    },
}
# columns whose meaning in one file differs from FIXED's
FILE_COLUMNS = {
    "subgroups.csv": {
        "variable": ("", "the baseline value that splits the patients ('all patients': none)"),
        "subgroup": ("", "the subgroup: the value's range (a number split at the median of "
                         "its finite values, '(median)': <= and >, or < and >= when the median is "
                         "the largest value; or at the experiment's cut points) or yes/no"),
        "n": ("patients", "evaluable patients of the subgroup in the arm"),
        "responders": ("patients", "patients with BOR CR or PR"),
        "hr": ("", "Cox hazard ratio of PFS against the reference arm within the subgroup "
                   "(cluster-robust; patients evaluable in both arms)"),
        "hr_n": ("patients", "patients behind the hazard ratio: evaluable in both this arm "
                             "and the reference arm (empty for the reference arm)"),
        "interaction_p": ("", "p-value of the arm-by-subgroup interaction: Cochran's Q "
                              "test of the subgroups' log hazard ratios (one per variable and "
                              "arm; not adjusted for multiplicity); NaN, not tested, when a "
                              "subgroup has no finite HR and CI (see interaction_note)"),
        "interaction_subgroups": ("", "subgroups in the interaction test (degrees of freedom + "
                                      "1; 0: not tested; empty for all patients and the "
                                      "reference arm)"),
        "interaction_note": ("", "why the interaction was not tested: the subgroup without a "
                                 "finite HR and CI, and why (e.g. no progression in an arm)"),
    },
    "doses_given.parquet": {
        "status": ("", "the dose's status: given, withheld, discontinued, not reached (a delay "
                       "pushed it past the horizon) or failed (the patient's solve failed)"),
    },
}  # fmt: skip


def _amount_unit(unit: str, drug: str, catalogue: dict | None) -> str:
    """``unit`` with mg as the drug's amount unit (a cell product's AUC is 1e6 cells·day/L)."""
    from vcohort.drugs import CATALOGUE

    d = (catalogue or CATALOGUE).get(drug)
    if d is None or d.amount_unit == "mg" or not unit.startswith("mg"):
        return unit
    return d.amount_unit + unit[len("mg") :]


def _state_descriptions(model) -> dict:
    """The model's own state descriptions (its module's STATE_DESCRIPTIONS)."""
    import importlib

    from vcohort.model import csc_immune

    if model.name == "csc_immune":
        return csc_immune.STATE_DESCRIPTIONS
    try:
        mod = importlib.import_module(f"vcohort.model.reference.{model.name}")
    except ImportError:
        return {}
    return getattr(mod, "STATE_DESCRIPTIONS", {})


def _headers(folder: Path) -> list[tuple[str, list[str]]]:
    """(relative file, columns) of the run's tables; the per-arm NM-TRAN files as one entry."""
    import pyarrow.parquet as pq

    out = []
    for f in sorted(folder.glob("*.parquet")):
        out.append((f.name, list(pq.read_schema(f).names)))
    csvs = sorted(folder.glob("*.csv"))
    nested = sorted(folder.glob("schedules/*.csv"))
    if nested:
        csvs.append(nested[0])
    for f in csvs:
        if f.name == "columns.csv":
            continue
        name = "schedules/ARM.csv" if f.parent.name == "schedules" else f.name
        out.append((name, list(pd.read_csv(f, nrows=0).columns)))
    return out


def write_columns(
    folder: str | Path,
    model=None,
    catalogue: dict | None = None,
    overrides: dict[str, dict[str, tuple[str, str]]] | None = None,
) -> Path:
    """Write ``folder/columns.csv``: file, column, unit, meaning of every table in ``folder``.
    ``overrides`` maps a file name to ``{column: (unit, meaning)}`` for columns whose meaning
    is the run's own (a sensitivity table's parameter columns hold derivatives, not values)."""
    from vcohort.io import write_csv

    folder = Path(folder)
    if catalogue is None and model is not None:
        catalogue = model.drug_catalogue()
    overrides = overrides or {}
    rows = []
    for name, cols in _headers(folder):
        own = FILE_COLUMNS.get(name, {}) | overrides.get(name, {})
        for c in cols:
            unit, meaning = own[c] if c in own else describe(c, model, catalogue)
            rows.append({"file": name, "column": c, "unit": unit, "meaning": meaning})
    path = folder / "columns.csv"
    write_csv(path, pd.DataFrame(rows, columns=["file", "column", "unit", "meaning"]))
    return path

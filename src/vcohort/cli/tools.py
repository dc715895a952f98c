"""``vcohort export-sbml``, ``vcohort validate``, ``vcohort model-doc`` and ``vcohort drugs``."""

from __future__ import annotations

import sys
from pathlib import Path

from vcohort.cli.simulate import _add_model_arg


def add_export_sbml(sub) -> None:
    e = sub.add_parser(
        "export-sbml",
        help="write one patient's model, parameters and doses as SBML Level 3 Version 2",
    )
    e.add_argument("--out", required=True, help="SBML file to write (e.g. model.xml)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing file")
    e.add_argument("--drugs", default="", help="comma-separated drugs whose PK to include")
    e.add_argument("--regimen", action="append", default=[], help="doses, as in simulate")
    e.add_argument(
        "--days", type=int, default=180, help="horizon the regimens are laid out on (180)"
    )
    e.add_argument("--seed", type=int, default=0, help="cohort seed (with --patient; 0)")
    e.add_argument(
        "--patient",
        type=int,
        default=None,
        help="patient id of `simulate --seed SEED` to export (default: the typical patient: "
        "every parameter at its typical value, covariates at the population's medians)",
    )
    e.add_argument(
        "--patient-params",
        default=None,
        help="JSON {name: value} or CSV/Parquet row (e.g. from patients.parquet) of parameter, "
        "covariate and drug.param values to use",
    )
    e.add_argument(
        "--row", type=int, default=0, help="row of the --patient-params table to use (default 0)"
    )
    e.add_argument(
        "--runin-days",
        type=int,
        default=None,
        help="immune run-in that rebuilds the --patient-params patient's day-0 state (default: "
        "the run's, from the manifest.json beside the table; else the model's)",
    )
    e.add_argument(
        "--on-grid",
        type=float,
        default=None,
        metavar="DT",
        help="place doses as the simulator with step DT does (times on its grid, infusions in "
        "whole steps; default: the regimen's exact times)",
    )
    e.add_argument(
        "--population",
        default=None,
        help="population preset or TOML file of `simulate --population`: draws --patient from "
        "it, or gives the typical patient its typical values and median covariates",
    )
    _add_model_arg(e)


def run_export_sbml(args) -> int:
    from pathlib import Path

    from vcohort.cohort import make_cohort
    from vcohort.dosing import compile_schedule, parse_regimen
    from vcohort.drugs import get_drug
    from vcohort.io import atomic_write_bytes, check_creatable
    from vcohort.model import get_model
    from vcohort.sbml import patient_sbml, read_overrides, with_overrides

    model = get_model(args.model)
    cat = model.drug_catalogue()
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(
            f"--out={args.out!r} is a folder; give the SBML file's path, e.g. model.xml"
        )
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out={args.out!r} exists; pass --overwrite to replace it")
    check_creatable(out)  # missing folders are created
    from vcohort.config import MAX_DAYS

    if not 1 <= args.days <= MAX_DAYS:
        raise ValueError(f"--days={args.days} must be in 1 .. {MAX_DAYS}")
    if args.patient is not None and args.patient < 0:
        raise ValueError(f"--patient={args.patient} must be a patient id >= 0")
    drugs = [get_drug(d, cat).name for d in args.drugs.split(",") if d.strip()]
    regs = [parse_regimen(r, cat) for r in args.regimen]
    if args.row != 0 and not args.patient_params:
        raise ValueError(f"--row={args.row} needs --patient-params (a table to pick it from)")
    population = None
    if args.population is not None:
        from vcohort.population import load_population

        population = load_population(args.population)
    values = read_overrides(args.patient_params, args.row) if args.patient_params else {}
    runin, runin_dt = _run_runin(args)
    if args.on_grid is not None:
        n = round(1.0 / args.on_grid) if args.on_grid > 0 else 0
        if not (0 < args.on_grid <= 1 and abs(n * args.on_grid - 1.0) < 1e-9):
            raise ValueError(
                f"--on-grid={args.on_grid}: a step in (0, 1] day with 1/DT a whole number "
                "(e.g. 0.1, the simulator's default)"
            )
    if args.on_grid is not None and not regs:
        raise ValueError(
            f"--on-grid={args.on_grid} moves doses onto the simulator's grid, and no --regimen "
            f"gives any; add a --regimen or leave --on-grid out"
        )
    schedule = compile_schedule(regs, float(args.days)) if regs else None
    if schedule is not None:
        schedule.refuse_rules("SBML export")  # before the cohort's run-in is computed
    if values:  # the names and values checked on the typical patient without its run-in
        with_overrides(typical_cohort(model, population, runin_days=0), model, values,
                       runin_days=0)  # fmt: skip
    if schedule is not None and args.on_grid is not None:
        from vcohort.sbml import schedule_on_grid

        schedule = schedule_on_grid(schedule, args.on_grid, args.days)
    if args.patient is None:
        cohort = typical_cohort(model, population)
    else:
        cohort = make_cohort(
            1, seed=args.seed, model=model, first_id=args.patient, population=population
        )
    if values:
        cohort = with_overrides(cohort, model, values, dt=runin_dt, runin_days=runin)
    text = patient_sbml(cohort, 0, schedule, model=model, drugs=drugs)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, text.encode())
    print(f"wrote {args.out} ({model.name}, patient {int(cohort.patient_id[0])})")
    return 0


def typical_cohort(model, population=None, **kw):
    """The typical patient of ``population`` (default: the default preset) as a one-patient
    cohort: every model and PK parameter at its typical value, and the covariates at the
    population's medians (`vcohort.population.CovariateSpec.median`, the typical value of a
    log-normal covariate; BSA from the median weight and height, Du Bois; PD-L1 positive when
    the prevalence is above 1/2), with its day-0 state built from the median baseline
    diameter.  ``kw``: more `vcohort.cohort.make_cohort` arguments (e.g. ``runin_days``)."""
    import numpy as np

    from vcohort.cohort import bsa_dubois, effective_population, make_cohort

    pop = effective_population(population, model)
    med = {k: float(spec.median) for k, spec in pop.covariates.items()}
    c = make_cohort(
        1,
        model=model,
        variability=False,
        population=population,
        baseline_diameter_mm=med["baseline_diameter_mm"],
        **kw,
    )
    cov = dict(c.covariates) | {k: np.array([v]) for k, v in med.items()}
    cov["bsa_m2"] = bsa_dubois(cov["weight_kg"], cov["height_cm"])
    cov["pdl1_positive"] = np.array([pop.pdl1_prevalence > 0.5])
    return c.replace(covariates=cov)


def _run_runin(args) -> tuple[int | None, float]:
    """(run-in days, its step) that rebuild a --patient-params patient: the run's own (a run's
    manifest.json beside the table: trial and batch keep them under config.simulation,
    simulate its dt under config), --runin-days overriding the days; else the model's run-in
    (None) at dt 0.1."""
    import json

    if args.runin_days is not None and (args.runin_days < 0 or not args.patient_params):
        raise ValueError(
            f"--runin-days={args.runin_days}: give >= 0 days, with --patient-params (the "
            f"run-in rebuilds that patient's day-0 state)"
        )
    man = Path(args.patient_params).parent / "manifest.json" if args.patient_params else None
    cfg = {}
    if man is not None and man.is_file():
        try:
            cfg = json.loads(man.read_text()).get("config", {}) or {}
        except (ValueError, AttributeError):
            cfg = {}
    sim = cfg.get("simulation") if isinstance(cfg.get("simulation"), dict) else cfg
    runin = args.runin_days if args.runin_days is not None else sim.get("runin_days")
    return runin, float(sim.get("dt") or 0.1)


def add_validate(sub) -> None:
    from vcohort.validation.run import STEPS

    v = sub.add_parser(
        "validate",
        help="run the validation suite (solvers, published models, SBML, behaviours, Sobol)",
    )
    v.add_argument(
        "--only",
        default=None,
        help=f"comma-separated steps (default: all): {', '.join(STEPS)}",
    )
    v.add_argument(
        "--out",
        default="docs/validation.json",
        help="results file, updated step by step (steps not run are kept)",
    )


def run_validate(args) -> int:
    """``vcohort validate``: exit 0 when every check passed, 1 when any failed."""
    from vcohort.validation.run import STEPS, check_steps, load, run_steps, update

    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else []
    if args.only is not None and not only:  # '' or ',' ran every step (~3 minutes)
        raise ValueError(
            f"--only={args.only!r} names no step; allowed: comma-separated steps of "
            f"{', '.join(STEPS)} (leave --only out for all)"
        )
    steps = check_steps(only)  # before any compute
    load(Path(args.out))  # --out: a results file to merge into, or a new file
    results = {}
    for step in steps:  # stored step by step: a later failure keeps the earlier results
        results |= run_steps([step])
        update(Path(args.out), {step: results[step]})
    judged = [c for r in results.values() for c in r["checks"] if c["passed"] is not None]
    failed = [c["id"] for c in judged if not c["passed"]]
    n = len(judged)
    print(f"{n - len(failed)}/{n} checks passed; wrote {args.out}")
    for f in failed:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if failed else 0


def add_model_doc(sub) -> None:
    m = sub.add_parser("model-doc", help="write the model's equations and parameter table")
    m.add_argument("--out", default="docs/model.md", help="the document to write (docs/model.md)")
    m.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out that `vcohort model-doc` did not write",
    )
    m.add_argument(
        "--validation",
        default=None,
        help="stored `vcohort validate` results rendered as the Validation section "
        "(default: docs/validation.json when it exists)",
    )


def run_model_doc(args) -> int:
    from vcohort.docs import is_model_doc, write_model_doc

    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out={args.out!r} is a folder; give the document's path, e.g. model.md")
    if out.exists() and not args.overwrite and not is_model_doc(out):
        raise ValueError(
            f"--out={args.out!r} exists and was not written by `vcohort model-doc`; choose "
            f"another path or pass --overwrite to replace it"
        )
    if args.validation is None:
        validation = Path("docs/validation.json")
        if not validation.is_file():
            print(
                f"note: no {validation} here (run from the repository, or give --validation): "
                f"the Validation section says 'Not run yet'",
                file=sys.stderr,
            )
    else:
        validation = Path(args.validation)
        if not validation.is_file():
            raise ValueError(f"--validation={args.validation!r}: no such file")
    write_model_doc(Path(args.out), validation)
    print(f"wrote {args.out}")
    return 0


def add_drugs(sub) -> None:
    sub.add_parser(
        "drugs",
        help="list the drug catalogue (with --drug-file: yours too): route, clinical dose, PK "
        "half-life against the published one, effect channels",
    )


def drugs_table(catalogue: dict):
    """One row per drug of ``catalogue`` (a DataFrame)."""
    import math

    import pandas as pd

    from vcohort.drugs import BUILTIN

    rows = []
    for name, d in catalogue.items():
        pk = d.target_state is None
        rows.append(
            {
                "drug": name,
                "class": d.drug_class,
                "route": d.route,
                "clinical_dose": d.clinical_dose,
                "half_life_d": d.terminal_half_life() if pk else math.nan,
                "published_d": d.half_life_days,
                "compartments": len(d.compartments),
                "effects": ", ".join(f"{e.channel}@{e.site}" for e in d.effects),
                "origin": "built-in" if name in BUILTIN else "drug file",
            }
        )
    return pd.DataFrame(rows)


def run_drugs(args) -> int:
    from vcohort.cli.table import print_table
    from vcohort.drugs import CATALOGUE

    print_table(drugs_table(CATALOGUE), float_format="{:.3g}")
    return 0

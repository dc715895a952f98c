"""``vcohort simulate`` and ``vcohort demo``: arms on one cohort, a printed summary and the run
folder."""

from __future__ import annotations

import argparse
import sys
import time

from vcohort.cli.table import print_table
from vcohort.config import ENGINE_HELP, ENGINES

DEMO_ARMS = (
    "untreated",
    "pembrolizumab=pembrolizumab",
    "wnt974=wnt974",
    "cb839=cb839",
    "doxorubicin=doxorubicin",
    "triple=wnt974 + pembrolizumab + cb839",
)


def _common(p: argparse.ArgumentParser, patients: int, days: int) -> None:
    p.add_argument(
        "--patients", type=int, default=patients, help=f"virtual patients (>= 1; {patients})"
    )
    p.add_argument("--days", type=int, default=days, help=f"horizon in days ({days})")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (0)")
    p.add_argument(
        "--population",
        default=None,
        help="population preset name or TOML file (covariates, correlations; default: 'default')",
    )
    p.add_argument(
        "--precision", choices=("float64", "float32"), default="float64", help="default float64"
    )
    p.add_argument(
        "--dt",
        type=float,
        default=None,
        help="RK4 step (day); 1/dt whole (default: the model's, 0.1; 0.002 for depillis2009)",
    )
    p.add_argument("--save-every", type=int, default=7, help="save full state every N days (7)")
    p.add_argument("--chunk-size", type=int, default=4096, help="patients per compiled call (4096)")
    p.add_argument("--engine", choices=ENGINES, default="xla", help=ENGINE_HELP)
    p.add_argument(
        "--assess-every", type=int, default=42, help="RECIST assessment interval in days (42)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_model_arg(p: argparse.ArgumentParser) -> None:
    from vcohort.model import MODEL_NAMES

    p.add_argument(
        "--model",
        choices=MODEL_NAMES,
        default="csc_immune",
        help="model: the CSC–immune model, or a published reference model (its own states, "
        "and drugs: depillis2009 has chemo, il2, til; kuznetsov1994 has none)",
    )


def add(sub) -> None:
    s = sub.add_parser("simulate", help="simulate a cohort under zero or more regimens/arms")
    _common(s, 1000, 180)
    s.add_argument(
        "--regimen",
        action="append",
        default=[],
        help="a regimen, e.g. 'pembrolizumab 200 mg every 21 d'; several form one arm",
    )
    s.add_argument(
        "--arm",
        action="append",
        default=[],
        help="NAME=REGIMEN[+REGIMEN...]; repeat for several arms",
    )
    s.add_argument(
        "--out",
        required=True,
        help="output folder (new or empty; --overwrite replaces one vcohort wrote)",
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    _add_model_arg(s)

    d = sub.add_parser("demo", help="untreated, each single agent and the triple combination")
    _common(d, 2000, 180)
    d.add_argument("--out", default=None, help="also write the run folder here")
    d.add_argument("--overwrite", action="store_true")


def run_simulate(args) -> int:
    specs = list(args.arm)
    if args.regimen and args.arm:
        raise ValueError(
            "give the regimens of one arm with --regimen, or every arm by name with --arm "
            "NAME=REGIMEN[+REGIMEN...], not both (e.g. --arm 'mine="
            + " + ".join(args.regimen)
            + "')"
        )
    if args.regimen:
        specs.append("regimen=" + " + ".join(args.regimen))
    return _run(args, specs or ["untreated"])


def run_demo(args) -> int:
    return _run(args, list(DEMO_ARMS))


def _run(args, arm_specs: list[str]) -> int:
    from vcohort.config import MAX_DAYS, MAX_PATIENTS
    from vcohort.io import check_output_dir
    from vcohort.model import get_model
    from vcohort.runs import parse_arm

    if not 1 <= args.patients <= MAX_PATIENTS:
        raise ValueError(f"--patients={args.patients} must be in 1 .. {MAX_PATIENTS:,}")
    if not 1 <= args.days <= MAX_DAYS:
        raise ValueError(f"--days={args.days} must be in 1 .. {MAX_DAYS:,}")
    for flag in ("save_every", "chunk_size", "assess_every"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')}={getattr(args, flag)} must be >= 1")
    model = get_model(getattr(args, "model", "csc_immune"))
    population = None
    if args.population is not None:
        from vcohort.population import load_population

        if model.name != "csc_immune":
            raise ValueError(
                f"--population applies to the csc_immune model; {model.name} keeps the "
                f"default covariates"
            )
        population = load_population(args.population)  # validated before any compute
    if args.dt is None:
        args.dt = model.default_dt
    arms = [parse_arm(a, model.drug_catalogue()) for a in arm_specs]
    _note_label_maximum(arms)
    if args.out is not None:
        check_output_dir(args.out, args.overwrite)
    from vcohort.runs import check_arms
    from vcohort.simulate import check_dt

    check_dt(args.dt)
    check_arms(model, arms, args.days, dt=args.dt, precision=args.precision, engine=args.engine)
    _note_regimens(arms, args.days, args.dt)

    from vcohort.cohort import make_cohort
    from vcohort.runs import run_arms

    t0 = time.perf_counter()
    cohort = make_cohort(
        args.patients,
        seed=args.seed,
        model=model,
        dt=args.dt,
        precision=args.precision,
        population=population,
        engine=args.engine,
        chunk_size=args.chunk_size,  # the run-in's memory as the arms'
    )
    t_cohort = time.perf_counter() - t0
    trajs, endpoints, summary, schedules = run_arms(
        model,
        cohort,
        arms,
        args.days,
        dt=args.dt,
        save_every=args.save_every,
        precision=args.precision,
        chunk_size=args.chunk_size,
        engine=args.engine,
        progress=False if args.no_progress else None,
        assess_every=args.assess_every,
    )
    wall = time.perf_counter() - t0
    _print_summary(summary, args, wall)
    if model.name == "csc_immune" and args.days < args.assess_every:
        print(
            f"note: no RECIST assessment within {args.days} days (every {args.assess_every} d; "
            f"--assess-every): response endpoints are not evaluable (NaN)",
            file=sys.stderr,
        )
    if args.out is not None:
        _write(
            args,
            cohort,
            arms,
            trajs,
            endpoints,
            summary,
            schedules,
            {"cohort_s": t_cohort, "total_s": wall},
            population,
        )
        print(f"wrote {args.out}")
    return 0


def _note_label_maximum(arms) -> None:
    """One note per regimen whose dose passes the drug's label maximum (before compute)."""
    from vcohort.dosing import above_label_maximum

    for a in arms:
        for r in a.regimens:
            if (note := above_label_maximum(r)) is not None:
                print(f"note: arm {a.name!r}: {note}", file=sys.stderr)


def _note_regimens(arms, days: int, dt: float) -> None:
    """The notes an experiment file gets at load (`vcohort.experiment.regimen_notes`): a
    course the horizon cuts, two regimens of one drug dosing in the same step."""
    from vcohort.experiment import regimen_notes

    for note in regimen_notes(arms, float(days), dt):
        print(f"note: {note}", file=sys.stderr)


def _print_summary(summary, args, wall) -> None:
    cols = [
        "arm",
        "n",
        "n_failed",
        "orr",
        "orr_ci_low",
        "orr_ci_high",
        "dcr",
        "median_best_pct_change",
        "progression_free_at_end",
        "tumour_cleared",
        "median_csc_fraction_final",
        "median_anc_nadir",
        "grade4_neutropenia",
    ]
    from vcohort.endpoints import dose_modification_columns

    cols = [c for c in cols if c in summary] + dose_modification_columns(summary)
    view = summary[cols].copy()
    recist = "no RECIST (no diameter)"
    if "orr" in summary:
        recist = f"RECIST every {args.assess_every} d"
    print(
        f"\n{getattr(args, 'model', 'csc_immune')}: "
        f"{args.patients} patients, {args.days} days, {args.precision}, {recist} — {wall:.1f} s"
    )
    print_table(view)


def _write(
    args, cohort, arms, trajs, endpoints, summary, schedules, timings, population=None
) -> None:
    import pandas as pd

    from vcohort.model import get_model

    model = get_model(cohort.model)

    from vcohort.cohort import effective_population, with_drug_correlations
    from vcohort.dosing import to_nmtran
    from vcohort.endpoints import failed_counts
    from vcohort.io import environment, run_folder, write_csv, write_json, write_parquet
    from vcohort.runs import doses_given_frame, timecourse_frame

    with run_folder(args.out, args.overwrite) as tmp:
        write_parquet(tmp / "patients.parquet", cohort.to_frame())
        write_parquet(tmp / "timecourse.parquet", timecourse_frame(trajs))
        write_parquet(tmp / "endpoints.parquet", endpoints)
        write_csv(tmp / "summary.csv", summary)
        given = doses_given_frame(trajs, schedules, cohort.covariates, args.dt)
        if len(given):  # drugs with a hold rule: each planned dose, given or not
            write_parquet(tmp / "doses_given.parquet", given)
        doses = []
        # one typical patient: the cohort's median weight and BSA, as `vcohort trial`'s records
        import numpy as np

        cov = cohort.covariates
        w, b = float(np.median(cov["weight_kg"])), float(np.median(cov["bsa_m2"]))
        for a in arms:
            s = schedules[a.name]
            if s.valid.any():
                t = to_nmtran(s, weight_kg=w, bsa_m2=b, catalogue=model.drug_catalogue())
                t.insert(0, "ARM", a.name)
                doses.append(t)
        if doses:
            write_csv(tmp / "doses_typical_patient.csv", pd.concat(doses, ignore_index=True))
        from vcohort.columns import write_columns

        write_columns(tmp, model)  # the data dictionary: every column's unit and meaning
        write_json(
            tmp / "manifest.json",
            {
                "command": " ".join(sys.argv),
                "config": {k: v for k, v in vars(args).items() if k != "func"},
                "arms": {a.name: a.describe() for a in arms},
                "model": cohort.model,
                # the population as drawn (for reference models without their correlations;
                # with the drugs' own omega blocks)
                "population": with_drug_correlations(
                    effective_population(population, model), model.drug_catalogue()
                ).to_dict(),
                "seed": args.seed,
                "precision": args.precision,
                "engine": args.engine,
                "environment": environment(),
                "timings": timings | {"arms": {a: trajs[a].timings for a in trajs}},
                "n_failed": failed_counts(endpoints),
            },
        )

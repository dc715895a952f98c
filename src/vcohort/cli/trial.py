"""``vcohort trial``, ``vcohort batch`` and ``vcohort calibrate``: experiment files, sweeps and
virtual-population selection."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vcohort.cli.table import print_table
from vcohort.config import ENGINE_HELP, ENGINES


def add_trial(sub) -> None:
    t = sub.add_parser("trial", help="run a virtual trial defined in an experiment TOML file")
    t.add_argument("experiment", help="experiment file (see experiments/*.toml)")
    t.add_argument(
        "--out",
        required=True,
        help="output folder (new or empty; --overwrite replaces one vcohort wrote)",
    )
    t.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run_trial(args) -> int:
    from vcohort.experiment import load_experiment
    from vcohort.io import check_output_dir

    exp = load_experiment(args.experiment)  # validated before any compute
    check_output_dir(args.out, args.overwrite)
    _print_notes([(None, exp)])
    from vcohort import trial as T

    t0 = time.perf_counter()
    result = T.run_trial(exp, progress=False if args.no_progress else None)
    T.write_trial(result, args.out, overwrite=args.overwrite)
    cols = ["arm", "n", "orr", "orr_ci_low", "orr_ci_high", "dcr", "median_pfs_days",
            "pfs_landmark", "median_dor_days", "hr", "hr_ci_low", "hr_ci_high"]  # fmt: skip
    print(f"\n{exp.title}: {len(result.cohort)} patients, {exp.horizon_days} days")
    print_table(result.summary, cols)
    from vcohort.endpoints import assessment_days

    o = exp.endpoint_options
    seen = assessment_days(exp.horizon_days, o["assess_every"], o["assess_first"], o["assess_days"])
    follow = exp.horizon_days if o["censor_at"] == "horizon" else (seen[-1] if len(seen) else 0)
    if exp.landmark_days > follow:
        what = (
            'the horizon, censor_at = "horizon"'
            if o["censor_at"] == "horizon"
            else f"the last assessment within the {exp.horizon_days}-day horizon"
        )
        print(
            f"note: pfs_landmark (PFS at day {exp.landmark_days:g}, [assessment] landmark_days) "
            f"lies past the last follow-up (day {follow}: {what}): not evaluable (NaN) in arms "
            "with a patient still progression-free then",
            file=sys.stderr,
        )
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _print_notes(runs) -> None:
    """The notes of ``(run name or None, experiment)`` pairs on stderr, before compute: a dose
    above the drug's label maximum (`vcohort.dosing.above_label_maximum`, as ``vcohort
    simulate`` prints), and the experiment's own (`vcohort.experiment.Experiment.notes`).  A
    note that several runs share (a sweep over seeds) is printed once, naming its runs."""
    from vcohort.dosing import above_label_maximum

    where: dict[str, list] = {}
    for name, e in runs:
        texts = [f"arm {a.name!r}: {n}" for a in e.arms for r in a.regimens
                 if (n := above_label_maximum(r)) is not None]  # fmt: skip
        for text in dict.fromkeys(texts + list(e.notes)):
            where.setdefault(text, []).append(name)
    for text, names in where.items():
        names = [n for n in names if n is not None]
        if len(names) == 1:
            text += f" (run {names[0]})"
        elif names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            text += f" ({len(names)} runs: {shown})"
        print(f"note: {text}", file=sys.stderr)


def add_batch(sub) -> None:
    b = sub.add_parser(
        "batch", help="run many experiment files or a parameter sweep, resumably, in one process"
    )
    b.add_argument("experiments", nargs="+", help="experiment files and/or sweep files (TOML)")
    b.add_argument("--out", default=None, help="batch folder: one sub-folder per run (required)")
    b.add_argument("--resume", action="store_true", help="continue an interrupted batch")
    b.add_argument("--overwrite", action="store_true", help="replace an existing batch folder")
    b.add_argument(
        "--chunk-patients",
        type=int,
        default=None,
        help="patients per resumable chunk (default: each run's simulation.chunk_size)",
    )
    b.add_argument("--keep-chunks", action="store_true", help="keep chunk files after assembly")
    b.add_argument("--list", action="store_true", help="validate, list the runs, stop")
    b.add_argument("--no-progress", action="store_true", help="hide progress messages")


def run_batch(args) -> int:
    from vcohort.sweep import load_runs

    if args.out is None and not args.list:
        raise ValueError("batch needs --out DIR (or --list to only validate and list the runs)")
    runs = load_runs(args.experiments)  # every file and run validated before any compute
    from vcohort.batch import check_chunk_patients

    check_chunk_patients(args.chunk_patients)  # --list validates the flags too
    _print_notes([(r.name, r.experiment) for r in runs])
    if args.list:
        for r in runs:
            e = r.experiment
            print(f"{r.name}: {e.size} patients x {len(e.arms)} arms, {e.horizon_days} d")
        print(f"{len(runs)} runs; nothing computed")
        return 0

    from vcohort import batch as B

    t0 = time.perf_counter()
    summary = B.run_batch(
        runs,
        args.out,
        chunk_patients=args.chunk_patients,
        resume=args.resume,
        overwrite=args.overwrite,
        keep_chunks=args.keep_chunks,
        progress=not args.no_progress,
    )
    cols = ["run", "arm", "n", "orr", "orr_ci_low", "orr_ci_high", "median_pfs_days", "hr"]
    print_table(summary, [c for c in cols if c in summary])
    wall = time.perf_counter() - t0
    # the summary also lists the batch's runs of earlier invocations (a resume of some runs)
    mine = {r.name for r in runs}
    failed = summary["error"] != "" if "error" in summary else summary["run"].isna()
    bad = list(dict.fromkeys(summary.loc[failed & summary["run"].isin(mine), "run"]))
    others = sorted(set(summary.loc[~failed, "run"]) - mine)
    # the runs written now, apart from those a --resume found already complete
    done = summary.attrs.get("already_complete", [])
    written = summary.attrs.get("written", [r.name for r in runs if r.name not in bad])
    print(
        f"wrote {len(written)} run{'' if len(written) == 1 else 's'}"
        + (f", {len(done)} already complete" if done else "")
        + (f" (the batch's summary also lists {len(others)} earlier ones)" if others else "")
        + f" and {Path(args.out) / B.SUMMARY} in {wall:.1f} s"
    )
    if bad:
        print(
            f"{len(bad)} run(s) failed ({', '.join(bad)}): see the error column of "
            f"{B.SUMMARY} and {Path(args.out) / B.LOG}; fix and run again with --resume",
            file=sys.stderr,
        )
        return 1
    return 0


def _fraction_or_none(text: str):
    """``--pfs6``: a fraction, or ``"none"`` (no PFS6 target)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a fraction in [0, 1] or 'none' (no PFS6 target)"
        ) from None


def add_calibrate(sub) -> None:
    c = sub.add_parser(
        "calibrate", help="select virtual patients matching clinical ORR/PFS targets"
    )
    c.add_argument(
        "--preset",
        choices=("keynote-006", "keynote-002"),
        default=None,
        help="clinical targets and reference arm (default keynote-006)",
    )
    c.add_argument("--orr", type=float, default=None, help="target ORR (overrides the preset's)")
    c.add_argument(
        "--pfs6",
        type=_fraction_or_none,
        default=None,
        help="target 6-month PFS (overrides the preset's; 'none': no PFS6 target)",
    )
    c.add_argument("--arm", default=None, help="reference-arm regimen (overrides the preset's)")
    c.add_argument(
        "--rule",
        default=None,
        help="apply this rule.json (its arm, horizon, targets, precision) to a fresh pool; no fit",
    )
    c.add_argument("--pool", type=int, default=1500, help="plausible pool size to simulate (1500)")
    c.add_argument("--patients", type=int, default=500, help="calibrated cohort size (500)")
    c.add_argument("--days", type=int, default=None, help="reference-arm horizon (>= 183; 210)")
    c.add_argument(
        "--assess-every", type=int, default=None, help="RECIST imaging interval, days (42)"
    )
    c.add_argument(
        "--assess-first", type=int, default=None, help="first RECIST imaging day (the interval)"
    )
    c.add_argument(
        "--confirm-days",
        type=int,
        default=None,
        help="confirm PR/CR at least this many days later (0: no confirmation; RECIST 1.1: 28)",
    )
    c.add_argument(
        "--population",
        default=None,
        help="population preset name or TOML file the pool is drawn from (default: 'default'); "
        "recorded in the rule",
    )
    c.add_argument("--seed", type=int, default=0, help="pool and selection seed (0)")
    c.add_argument("--first-id", type=int, default=0, help="id of the pool's first patient")
    c.add_argument(
        "--runin-days",
        type=int,
        default=None,
        help="the pool's immune run-in, days (default: a --rule's, else the model's, 240); "
        "recorded in the rule, and an experiment applying it must use the same",
    )
    c.add_argument(
        "--precision", choices=("float64", "float32"), default=None, help="default float32"
    )
    c.add_argument("--engine", choices=ENGINES, default="xla", help=ENGINE_HELP)
    c.add_argument(
        "--out",
        required=True,
        help="output folder (new or empty; --overwrite replaces one vcohort wrote)",
    )
    c.add_argument("--overwrite", action="store_true")


def _calibrate_setup(args, C):
    """(rule or None, targets, arm, days, precision) from the flags, checked before compute."""
    if args.rule is not None:
        given = [f for f, v in (("--preset", args.preset), ("--orr", args.orr),
                                ("--pfs6", args.pfs6), ("--arm", args.arm),
                                ("--days", args.days), ("--assess-every", args.assess_every),
                                ("--assess-first", args.assess_first),
                                ("--confirm-days", args.confirm_days))
                 if v is not None]  # fmt: skip
        if given:
            raise ValueError(
                f"--rule applies the saved rule's reference arm, horizon, targets and RECIST "
                f"assessment; "
                f"{', '.join(given)} would be ignored: leave {'it' if len(given) == 1 else 'them'}"
                " out, or fit a new rule without --rule"
            )
        if not Path(args.rule).is_file():
            raise ValueError(f"--rule {args.rule!r} is not a file")
        rule = C.CalibrationRule.load(args.rule)
        if args.precision not in (None, rule.precision):
            raise ValueError(
                f"--precision {args.precision}: the rule was fitted in {rule.precision} and is "
                f"applied in it; leave --precision out"
            )
        C.check_fresh_pool(rule, args.seed, args.first_id, args.pool)
        return rule, rule.targets, rule.arm, rule.days, rule.precision
    arm, preset = C.PRESETS[args.preset or "keynote-006"]
    own = args.orr is not None or args.pfs6 is not None or args.arm is not None
    pfs6 = {None: preset.pfs6, "none": None}.get(args.pfs6, args.pfs6)
    targets = C.Targets(
        preset.orr if args.orr is None else args.orr,
        pfs6,
        source="user" if own else preset.source,
    )
    days = 210 if args.days is None else args.days
    from vcohort.config import MAX_DAYS

    if days > MAX_DAYS:
        raise ValueError(f"--days={days} must be <= {MAX_DAYS}")
    return None, targets, args.arm or arm, days, args.precision or "float32"


def _runin_flag(args, rule) -> int:
    """The pool's run-in: ``--runin-days``, else a rule's, else the model's (checked before
    compute; a rule's own must be kept)."""
    from vcohort.calibrate import check_runin
    from vcohort.config import MAX_DAYS
    from vcohort.model import CSC_IMMUNE

    if args.runin_days is None:
        if rule is not None and rule.runin_days is not None:
            return rule.runin_days
        return CSC_IMMUNE.runin_days
    if not 0 <= args.runin_days <= MAX_DAYS:
        raise ValueError(f"--runin-days {args.runin_days} must be in 0..{MAX_DAYS}")
    if rule is not None:
        check_runin(rule, args.runin_days, "--runin-days")
    return args.runin_days


def _assessment_flags(args, days: int) -> dict:
    """The RECIST options of `vcohort calibrate` (checked before compute)."""
    every = 42 if args.assess_every is None else args.assess_every
    first = every if args.assess_first is None else args.assess_first
    confirm = 0 if args.confirm_days is None else args.confirm_days
    for flag, v, lo in (("--assess-every", every, 1), ("--assess-first", first, 1),
                        ("--confirm-days", confirm, 0)):  # fmt: skip
        if v < lo:
            raise ValueError(f"{flag} {v} must be an integer >= {lo}")
    out = {"assess_every": every, "assess_first": first, "confirm_days": confirm}
    from vcohort.calibrate import check_assessment

    try:
        check_assessment(out, days)
    except ValueError as e:
        raise ValueError(
            f"--assess-every {every} --assess-first {first} --confirm-days {confirm}: {e}"
        ) from None
    return out


def run_calibrate(args) -> int:
    import json

    from vcohort import calibrate as C
    from vcohort.io import check_output_dir, run_folder, write_csv, write_json, write_parquet
    from vcohort.population import load_population

    rule, targets, arm, days, precision = _calibrate_setup(args, C)
    assessment = _assessment_flags(args, days) if rule is None else rule.assessment
    C.check_feasible(args.patients, args.pool, n_bins=C.N_BINS if rule is None else None)
    C.check_arm(arm, days, args.engine)
    runin = _runin_flag(args, rule)
    population = load_population(args.population)  # validated before any compute
    check_output_dir(args.out, args.overwrite)

    from vcohort.plausibility import plausible_cohort

    t0 = time.perf_counter()
    # the pool is plausible, as in an experiment's [calibration]: drawn, screened against the
    # population's bounds, rejected patients replaced
    pool, screening = plausible_cohort(
        args.pool,
        population=population,
        seed=args.seed,
        first_id=args.first_id,
        precision=precision,
        engine=args.engine,
        runin_days=runin,
    )
    t_pool = time.perf_counter() - t0
    if rule is not None:
        cohort, obs, report = C.apply_rule(
            rule, pool, args.patients, seed=args.seed, engine=args.engine,
            population=population, runin_days=runin,
        )  # fmt: skip
        if "population_note" in report:
            print(f"note: {report['population_note']}", file=sys.stderr)
    else:
        rule, cohort, obs, report = C.calibrate(
            pool,
            targets,
            args.patients,
            arm=arm,
            days=days,
            seed=args.seed,
            assessment=assessment,
            precision=precision,
            engine=args.engine,
            population=population,
            runin_days=runin,
        )
    report = {
        "reference_arm": rule.arm,
        "horizon_days": rule.days,
        "targets": {"orr": rule.targets.orr, "pfs6": rule.targets.pfs6},
        "targets_source": rule.targets.source,
        "population": population.identity(),
        "pool_drawn": int(len(screening)),
        "pool_rejected": int((~screening["plausible"]).sum()),
    } | report
    report |= {"cohort_s": t_pool, "total_s": time.perf_counter() - t0}
    print(json.dumps(report, indent=1))
    obs = obs.assign(selected=obs["patient"].isin(cohort.patient_id))
    with run_folder(args.out, args.overwrite) as tmp:
        rule.save(tmp / "rule.json")
        write_json(tmp / "report.json", report | {"command": " ".join(sys.argv)})
        write_parquet(tmp / "pool_observables.parquet", obs)
        write_parquet(tmp / "patients.parquet", cohort.to_frame())
        write_csv(tmp / "screening.csv", screening)
        from vcohort.columns import write_columns
        from vcohort.model import CSC_IMMUNE

        write_columns(tmp, CSC_IMMUNE)
    print(f"wrote {args.out}")
    return 0

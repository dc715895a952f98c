"""Command line: ``vcohort simulate``, ``demo``, ``trial``, ``calibrate``, ``optimize``,
``batch``, ``sensitivity``, ``export-sbml``, ``validate``, ``model-doc``.

Every argument is validated (regimens parsed, output folder checked) before anything is
compiled or simulated.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEMO_ARMS = (
    "untreated",
    "pembrolizumab=pembrolizumab",
    "wnt974=wnt974",
    "cb839=cb839",
    "doxorubicin=doxorubicin",
    "triple=wnt974 + pembrolizumab + cb839",
)


def _common(p: argparse.ArgumentParser, patients: int, days: int) -> None:
    p.add_argument("--patients", type=int, default=patients, help="virtual patients (>= 1)")
    p.add_argument("--days", type=int, default=days, help="horizon in days")
    p.add_argument("--seed", type=int, default=0, help="cohort seed")
    p.add_argument("--precision", choices=("float64", "float32"), default="float64")
    p.add_argument(
        "--dt",
        type=float,
        default=None,
        help="RK4 step (day); 1/dt whole (default: the model's, 0.1; 0.002 for depillis2009)",
    )
    p.add_argument("--save-every", type=int, default=7, help="save full state every N days")
    p.add_argument("--chunk-size", type=int, default=4096, help="patients per compiled call")
    p.add_argument("--assess-every", type=int, default=42, help="RECIST assessment interval (days)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vcohort", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

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
    s.add_argument("--out", required=True, help="output folder (must not exist, or --overwrite)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    _add_model_arg(s)

    d = sub.add_parser("demo", help="untreated, each single agent and the triple combination")
    _common(d, 2000, 180)
    d.add_argument("--out", default=None, help="also write the run folder here")
    d.add_argument("--overwrite", action="store_true")

    m = sub.add_parser("model-doc", help="write the model's equations and parameter table")
    m.add_argument("--out", default="docs/model.md")
    m.add_argument(
        "--validation",
        default="docs/validation.json",
        help="stored `vcohort validate` results rendered as the Validation section",
    )
    _add_validate_parser(sub)
    _add_batch_parser(sub)
    _add_optimize_parser(sub)
    _add_calibrate_parser(sub)
    _add_trial_parser(sub)
    _add_export_sbml(sub)
    _add_sensitivity(sub)
    return ap


def _add_validate_parser(sub) -> None:
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


def _run_validate(args) -> int:
    """``vcohort validate``: exit 0 when every check passed, 1 when any failed."""
    from vcohort.validation.run import check_steps, run_steps, update

    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else []
    steps = check_steps(only)  # before any compute
    results = run_steps(steps)
    update(Path(args.out), results)
    failed = [c["id"] for r in results.values() for c in r["checks"] if not c["passed"]]
    n = sum(len(r["checks"]) for r in results.values())
    print(f"{n - len(failed)}/{n} checks passed; wrote {args.out}")
    for f in failed:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if failed else 0


def _add_optimize_parser(sub) -> None:
    o = sub.add_parser(
        "optimize", help="optimise a combination schedule by gradient descent (TOML experiment)"
    )
    o.add_argument(
        "experiment", help="experiment file (TOML), e.g. experiments/optimize_triple.toml"
    )
    o.add_argument("--out", required=True, help="output folder (must not exist, or --overwrite)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    o.add_argument("--resume", action="store_true", help="continue an interrupted run")
    o.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run_optimize(args) -> int:
    from vcohort.optimize.config import load_experiment
    from vcohort.optimize.experiment import run_experiment

    exp = load_experiment(args.experiment)
    t0 = time.perf_counter()
    res = run_experiment(
        exp, args.out, overwrite=args.overwrite, resume=args.resume, progress=not args.no_progress
    )
    ev = res["heldout"]
    cols = [
        c
        for c in ("schedule", "objective", "diff_vs_reference", "diff_se", "orr", "feasible")
        if c in ev
    ]
    print(ev[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    for text in res["rounded"].descriptions.values():
        print(f"  {text}")
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")
    return 0


def _add_calibrate_parser(sub) -> None:
    c = sub.add_parser(
        "calibrate", help="select virtual patients matching clinical ORR/PFS targets"
    )
    c.add_argument("--preset", choices=("keynote-006", "keynote-002"), default="keynote-006")
    c.add_argument("--orr", type=float, default=None, help="target ORR (overrides the preset)")
    c.add_argument("--pfs6", type=float, default=None, help="target 6-month PFS (overrides)")
    c.add_argument("--arm", default=None, help="reference-arm regimen (overrides the preset)")
    c.add_argument("--rule", default=None, help="apply this rule.json to a fresh pool; no fit")
    c.add_argument("--pool", type=int, default=1500, help="plausible pool size to simulate")
    c.add_argument("--patients", type=int, default=500, help="calibrated cohort size")
    c.add_argument("--days", type=int, default=210, help="reference-arm horizon (>= 183)")
    c.add_argument("--seed", type=int, default=0, help="pool and selection seed")
    c.add_argument("--first-id", type=int, default=0, help="id of the pool's first patient")
    c.add_argument("--precision", choices=("float64", "float32"), default="float32")
    c.add_argument("--out", required=True, help="output folder (must not exist, or --overwrite)")
    c.add_argument("--overwrite", action="store_true")


def _run_calibrate(args) -> int:
    import json

    from vcohort import calibrate as C
    from vcohort.io import check_output_dir, run_folder, write_json, write_parquet

    if args.rule is not None:
        if not Path(args.rule).is_file():
            raise ValueError(f"--rule {args.rule!r} is not a file")
        rule = C.CalibrationRule.load(args.rule)
        targets, arm, days = rule.targets, rule.arm, rule.days
    else:
        arm, preset = C.PRESETS[args.preset]
        arm = args.arm or arm
        orr = preset.orr if args.orr is None else args.orr
        pfs6 = preset.pfs6 if args.pfs6 is None and args.orr is None else args.pfs6
        targets = C.Targets(
            orr, pfs6, source=preset.source if args.orr is None and args.pfs6 is None else "user"
        )
        days = args.days
    C.check_feasible(args.patients, args.pool)
    C.check_arm(arm, days)
    check_output_dir(args.out, args.overwrite)

    from vcohort.cohort import make_cohort

    t0 = time.perf_counter()
    pool = make_cohort(args.pool, seed=args.seed, first_id=args.first_id, precision=args.precision)
    t_pool = time.perf_counter() - t0
    if args.rule is not None:
        cohort, obs, report = C.apply_rule(rule, pool, args.patients, seed=args.seed)
    else:
        rule, cohort, obs, report = C.calibrate(
            pool,
            targets,
            args.patients,
            arm=arm,
            days=days,
            seed=args.seed,
            precision=args.precision,
        )
    report |= {"cohort_s": t_pool, "total_s": time.perf_counter() - t0}
    print(json.dumps(report, indent=1))
    obs = obs.assign(selected=obs["patient"].isin(cohort.patient_id))
    with run_folder(args.out, args.overwrite) as tmp:
        rule.save(tmp / "rule.json")
        write_json(tmp / "report.json", report | {"command": " ".join(sys.argv)})
        write_parquet(tmp / "pool_observables.parquet", obs)
        write_parquet(tmp / "patients.parquet", cohort.to_frame())
    print(f"wrote {args.out}")
    return 0


def _add_trial_parser(sub) -> None:
    t = sub.add_parser("trial", help="run a virtual trial defined in an experiment TOML file")
    t.add_argument("experiment", help="experiment file (see experiments/*.toml)")
    t.add_argument("--out", required=True, help="output folder (must not exist, or --overwrite)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _add_batch_parser(sub) -> None:
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


def _run_batch(args) -> int:
    from vcohort.sweep import load_runs

    if args.out is None and not args.list:
        raise ValueError("batch needs --out DIR (or --list to only validate and list the runs)")
    runs = load_runs(args.experiments)  # every file and run validated before any compute
    if args.list:
        for r in runs:
            e = r.experiment
            print(f"{r.name}: {e.size} patients x {len(e.arms)} arms, {e.horizon_days} d")
        print(f"{len(runs)} runs; nothing computed")
        return 0
    import pandas as pd

    from vcohort.batch import SUMMARY, run_batch

    t0 = time.perf_counter()
    summary = run_batch(
        runs,
        args.out,
        chunk_patients=args.chunk_patients,
        resume=args.resume,
        overwrite=args.overwrite,
        keep_chunks=args.keep_chunks,
        progress=not args.no_progress,
    )
    cols = ["run", "arm", "n", "orr", "orr_ci_low", "orr_ci_high", "median_pfs_days", "hr"]
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format
    ):
        print(summary[[c for c in cols if c in summary]].to_string(index=False))
    wall = time.perf_counter() - t0
    print(f"wrote {len(runs)} runs and {Path(args.out) / SUMMARY} in {wall:.1f} s")
    return 0


def _run_trial(args) -> int:
    from vcohort.experiment import load_experiment
    from vcohort.io import check_output_dir

    exp = load_experiment(args.experiment)  # validated before any compute
    check_output_dir(args.out, args.overwrite)
    from vcohort.trial import run_trial, write_trial

    t0 = time.perf_counter()
    result = run_trial(exp, progress=False if args.no_progress else None)
    write_trial(result, args.out, overwrite=args.overwrite)
    cols = ["arm", "n", "orr", "orr_ci_low", "orr_ci_high", "dcr", "median_pfs_days",
            "pfs_landmark", "hr", "hr_ci_low", "hr_ci_high"]  # fmt: skip
    with __import__("pandas").option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format
    ):
        print(f"\n{exp.title}: {len(result.cohort)} patients, {exp.horizon_days} days")
        print(result.summary[[c for c in cols if c in result.summary]].to_string(index=False))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _add_model_arg(p: argparse.ArgumentParser) -> None:
    from vcohort.model import MODEL_NAMES

    p.add_argument(
        "--model",
        choices=MODEL_NAMES,
        default="csc_immune",
        help="model: the CSC–immune model, or a published reference model (its own states, "
        "and drugs: depillis2009 has chemo, il2, til; kuznetsov1994 has none)",
    )


def _add_export_sbml(sub) -> None:
    e = sub.add_parser(
        "export-sbml",
        help="write one patient's model, parameters and doses as SBML Level 3 Version 2",
    )
    e.add_argument("--out", required=True, help="SBML file to write (e.g. model.xml)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing file")
    e.add_argument("--drugs", default="", help="comma-separated drugs whose PK to include")
    e.add_argument("--regimen", action="append", default=[], help="doses, as in simulate")
    e.add_argument("--days", type=int, default=180, help="horizon the regimens are laid out on")
    e.add_argument("--seed", type=int, default=0, help="cohort seed (with --patient)")
    e.add_argument(
        "--patient",
        type=int,
        default=None,
        help="patient id of `simulate --seed SEED` to export (default: typical parameters)",
    )
    e.add_argument(
        "--patient-params",
        default=None,
        help="JSON {name: value} or CSV/Parquet row (e.g. from patients.parquet) of parameter, "
        "covariate and drug.param values to use",
    )
    _add_model_arg(e)


def _export_sbml(args) -> int:
    from pathlib import Path

    from vcohort.cohort import make_cohort
    from vcohort.dosing import compile_schedule, parse_regimen
    from vcohort.drugs import get_drug
    from vcohort.model import get_model
    from vcohort.sbml import patient_sbml, read_overrides, with_overrides

    model = get_model(args.model)
    cat = model.drug_catalogue()
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out={args.out!r} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise ValueError(f"--out={args.out!r}: folder {str(out.parent)!r} does not exist")
    if args.days < 1:
        raise ValueError(f"--days={args.days} must be >= 1")
    if args.patient is not None and args.patient < 0:
        raise ValueError(f"--patient={args.patient} must be a patient id >= 0")
    drugs = [get_drug(d, cat).name for d in args.drugs.split(",") if d.strip()]
    regs = [parse_regimen(r, cat) for r in args.regimen]
    values = read_overrides(args.patient_params) if args.patient_params else {}
    schedule = compile_schedule(regs, float(args.days)) if regs else None
    if args.patient is None:
        cohort = make_cohort(1, seed=args.seed, model=model, variability=False)
    else:
        cohort = make_cohort(1, seed=args.seed, model=model, first_id=args.patient)
    if values:
        cohort = with_overrides(cohort, model, values)
    out.write_text(patient_sbml(cohort, 0, schedule, model=model, drugs=drugs))
    print(f"wrote {args.out} ({model.name}, patient {int(cohort.patient_id[0])})")
    return 0


def _run(args, arm_specs: list[str]) -> int:
    from vcohort.io import check_output_dir
    from vcohort.model import get_model
    from vcohort.runs import parse_arm

    if args.patients < 1:
        raise ValueError(f"--patients={args.patients} must be >= 1")
    if args.days < 1:
        raise ValueError(f"--days={args.days} must be >= 1")
    model = get_model(getattr(args, "model", "csc_immune"))
    if args.dt is None:
        args.dt = model.default_dt
    arms = [parse_arm(a, model.drug_catalogue()) for a in arm_specs]
    if args.out is not None:
        check_output_dir(args.out, args.overwrite)
    from vcohort.simulate import check_dt

    check_dt(args.dt)

    from vcohort.cohort import make_cohort
    from vcohort.runs import run_arms

    t0 = time.perf_counter()
    cohort = make_cohort(
        args.patients, seed=args.seed, model=model, dt=args.dt, precision=args.precision
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
        progress=False if args.no_progress else None,
        assess_every=args.assess_every,
    )
    wall = time.perf_counter() - t0
    _print_summary(summary, args, wall)
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
        )
        print(f"wrote {args.out}")
    return 0


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
    cols = [c for c in cols if c in summary]
    view = summary[cols].copy()
    print(
        f"\n{getattr(args, 'model', 'csc_immune')}: "
        f"{args.patients} patients, {args.days} days, {args.precision}, "
        f"RECIST every {args.assess_every} d — {wall:.1f} s"
    )
    with __import__("pandas").option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format
    ):
        print(view.to_string(index=False))


def _write(args, cohort, arms, trajs, endpoints, summary, schedules, timings) -> None:
    import pandas as pd

    from vcohort.model import get_model

    model = get_model(cohort.model)

    from vcohort.dosing import to_nmtran
    from vcohort.io import environment, run_folder, write_csv, write_json, write_parquet
    from vcohort.runs import timecourse_frame

    with run_folder(args.out, args.overwrite) as tmp:
        write_parquet(tmp / "patients.parquet", cohort.to_frame())
        write_parquet(tmp / "timecourse.parquet", timecourse_frame(trajs))
        write_parquet(tmp / "endpoints.parquet", endpoints)
        write_csv(tmp / "summary.csv", summary)
        doses = []
        for a in arms:
            s = schedules[a.name]
            if s.valid.any():
                t = to_nmtran(s, weight_kg=76.8, bsa_m2=1.9, catalogue=model.drug_catalogue())
                t.insert(0, "ARM", a.name)
                doses.append(t)
        if doses:
            write_csv(tmp / "doses_typical_patient.csv", pd.concat(doses, ignore_index=True))
        write_json(
            tmp / "manifest.json",
            {
                "command": " ".join(sys.argv),
                "config": {k: v for k, v in vars(args).items() if k != "func"},
                "arms": {a.name: a.describe() for a in arms},
                "model": cohort.model,
                "seed": args.seed,
                "precision": args.precision,
                "environment": environment(),
                "timings": timings | {a: trajs[a].timings for a in trajs},
                "n_failed": int((endpoints["status"] != 0).sum()),
            },
        )


def _add_sensitivity(sub) -> None:
    from vcohort.sensitivity import ENDPOINTS, MODES

    s = sub.add_parser(
        "sensitivity",
        help="local (autodiff) or global (Sobol) sensitivity of an endpoint to the parameters",
    )
    s.add_argument(
        "--method",
        choices=("local", "sobol"),
        default="local",
        help="local: d(endpoint)/d(log θ) of every parameter per patient; sobol: Sobol indices",
    )
    s.add_argument(
        "--endpoint",
        choices=tuple(ENDPOINTS),
        default="log_tumour_cells",
        help="; ".join(f"{k}: {v}" for k, v in ENDPOINTS.items()),
    )
    s.add_argument("--patients", type=int, default=50, help="local: virtual patients (>= 1)")
    s.add_argument("--days", type=int, default=180, help="horizon in days")
    s.add_argument("--seed", type=int, default=0, help="cohort seed (local) / sampling seed")
    s.add_argument("--precision", choices=("float64", "float32"), default="float64")
    s.add_argument("--dt", type=float, default=0.1, help="RK4 step (day); 1/dt whole")
    s.add_argument("--regimen", action="append", default=[], help="a regimen; several: one arm")
    s.add_argument("--arm", default=None, help="NAME=REGIMEN[+REGIMEN...] (instead of --regimen)")
    s.add_argument(
        "--versus", default=None, help="reference arm (e.g. 'untreated'): endpoint difference"
    )
    s.add_argument("--runin-days", type=int, default=240, help="immune run-in rebuilt per θ")
    s.add_argument("--no-pk", action="store_true", help="leave out the drugs' PK parameters")
    s.add_argument(
        "--mode", choices=MODES, default="auto", help="local: autodiff mode (auto = forward)"
    )
    s.add_argument("--params", default=None, help="sobol: comma-separated parameters")
    s.add_argument("--samples", type=int, default=256, help="sobol: base sample N (power of 2)")
    s.add_argument("--range", action="append", default=[], help="sobol: NAME=LOW:HIGH")
    s.add_argument("--range-sd", type=float, default=2.0, help="sobol: default ±k log-normal SD")
    s.add_argument("--top", type=int, default=15, help="parameters in the tornado plot")
    s.add_argument("--chunk-size", type=int, default=64, help="patients per compiled call")
    s.add_argument("--out", required=True, help="output folder (must not exist, or --overwrite)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def _run_sensitivity(args) -> int:
    """``vcohort sensitivity``: validate everything, run, write the folder atomically."""
    from vcohort.io import check_output_dir
    from vcohort.runs import parse_arm
    from vcohort.simulate import check_dt

    for flag, v, lo in (
        ("--patients", args.patients, 1),
        ("--days", args.days, 1),
        ("--runin-days", args.runin_days, 0),
        ("--top", args.top, 1),
        ("--chunk-size", args.chunk_size, 1),
    ):
        if v < lo:
            raise ValueError(f"{flag}={v} must be >= {lo}")
    check_dt(args.dt)
    if args.arm and args.regimen:
        raise ValueError("give either --arm or --regimen, not both")
    spec = args.arm or ("regimen=" + " + ".join(args.regimen) if args.regimen else "untreated")
    arm = parse_arm(spec)
    ref = None
    if args.versus:
        ref = parse_arm(args.versus if "=" in args.versus else f"{args.versus}={args.versus}")
    if ref is not None and not (arm.regimens or ref.regimens):
        raise ValueError("--versus: both arms are untreated; give the treated arm with --regimen")
    if ref is not None and ref.name == arm.name:
        ref = type(ref)(ref.name + "_ref", ref.regimens)
    if args.method == "local" and (args.params or args.range):
        raise ValueError("--params/--range apply to --method sobol (local covers every parameter)")
    check_output_dir(args.out, args.overwrite)

    from vcohort.model import CSC_IMMUNE
    from vcohort.sensitivity import build_problem

    problem = build_problem(
        CSC_IMMUNE,
        arm,
        args.days,
        args.endpoint,
        reference=ref,
        dt=args.dt,
        precision=args.precision,
        runin_days=args.runin_days,
        include_pk=not args.no_pk,
    )
    sobol = _sobol_settings(args, problem) if args.method == "sobol" else None
    return _sensitivity_compute(args, problem, sobol)


def _sobol_settings(args, problem):
    """(names, bounds) of ``--params``/``--range``/``--range-sd``, validated."""
    from vcohort.sobol import check_ranges, default_ranges

    names = [n.strip() for n in (args.params or "").split(",") if n.strip()]
    if len(names) < 2:
        raise ValueError(f"--params={args.params!r}: give >= 2 comma-separated parameters")
    bounds = default_ranges(problem.model, names, width_sd=args.range_sd, drugs=problem.plan.drugs)
    for item in args.range:
        name, _, rng = item.partition("=")
        lo, _, hi = rng.partition(":")
        if name not in names:
            raise ValueError(f"--range {item!r}: {name!r} is not in --params")
        try:
            bounds[names.index(name)] = (float(lo), float(hi))
        except ValueError:
            raise ValueError(f"--range {item!r}: expected NAME=LOW:HIGH numbers") from None
    check_ranges(names, bounds, "log")
    n = args.samples
    if n < 2 or n & (n - 1):
        raise ValueError(f"--samples={n} must be a power of 2 >= 2")
    return names, bounds


def _sensitivity_compute(args, problem, sobol) -> int:
    from vcohort.io import environment, run_folder, write_csv, write_json, write_parquet
    from vcohort.sensitivity_plot import tornado_local, tornado_sobol

    t0 = time.perf_counter()
    title = f"{problem.describe()}, day {args.days}"
    extra = {}
    if args.method == "local":
        from vcohort.cohort import make_cohort
        from vcohort.sensitivity import local_sensitivities, rank_local

        cohort = make_cohort(args.patients, seed=args.seed, dt=args.dt, runin_days=0)
        res = local_sensitivities(problem, cohort, mode=args.mode, chunk_size=args.chunk_size)
        table = rank_local(res)
        extra = {"mode": res.mode, "n_finite": int(table.n_patients.iloc[0])}
        files = {"sensitivities.parquet": res.frame()}
        plot = lambda p: tornado_local(table, p, top=args.top, title=title)  # noqa: E731
    else:
        from vcohort.sobol import model_sobol

        names, bounds = sobol
        table, samples, _ = model_sobol(
            problem,
            names,
            args.samples,
            bounds=bounds,
            seed=args.seed,
            chunk_size=max(args.chunk_size, 256),
        )
        files = {"samples.parquet": samples}
        plot = lambda p: tornado_sobol(table, p, top=args.top, title=title)  # noqa: E731
    wall = time.perf_counter() - t0
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20):
        print(
            f"\n{title}: {args.method}, {wall:.1f} s\n"
            + table.head(args.top).to_string(index=False)
        )
    with run_folder(args.out, args.overwrite) as tmp:
        write_csv(tmp / "ranking.csv", table)
        for name, df in files.items():
            write_parquet(tmp / name, df)
        plot(tmp / "tornado.png")
        write_json(
            tmp / "manifest.json",
            {
                "command": " ".join(sys.argv),
                "config": vars(args),
                "method": args.method,
                "endpoint": problem.describe(),
                "parameters": list(problem.names),
                "environment": environment(),
                "seconds": wall,
            }
            | extra,
        )
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "simulate":
            specs = list(args.arm)
            if args.regimen:
                specs.append("regimen=" + " + ".join(args.regimen))
            if not specs:
                specs = ["untreated"]
            return _run(args, specs)
        if args.command == "demo":
            return _run(args, list(DEMO_ARMS))
        if args.command == "optimize":
            return _run_optimize(args)
        if args.command == "calibrate":
            return _run_calibrate(args)
        if args.command == "batch":
            return _run_batch(args)
        if args.command == "trial":
            return _run_trial(args)
        if args.command == "export-sbml":
            return _export_sbml(args)
        if args.command == "sensitivity":
            return _run_sensitivity(args)
        if args.command == "validate":
            return _run_validate(args)
        if args.command == "model-doc":
            from vcohort.docs import write_model_doc

            write_model_doc(Path(args.out), Path(args.validation))
            print(f"wrote {args.out}")
            return 0
    except ValueError as e:
        print(f"vcohort: error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

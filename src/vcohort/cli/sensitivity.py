"""``vcohort sensitivity``: local (autodiff) or global (Sobol) sensitivities, ranked table and
tornado plot."""

from __future__ import annotations

import sys
import time

from vcohort.cli.table import print_table


def add(sub) -> None:
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
    s.add_argument("--patients", type=int, help="local: virtual patients (>= 1; 50)")
    s.add_argument("--days", type=int, default=180, help="horizon in days (180)")
    s.add_argument("--seed", type=int, default=0, help="cohort seed (local) / sampling seed (0)")
    s.add_argument(
        "--precision", choices=("float64", "float32"), default="float64", help="default float64"
    )
    s.add_argument("--dt", type=float, default=0.1, help="RK4 step (day); 1/dt whole")
    s.add_argument("--regimen", action="append", default=[], help="a regimen; several: one arm")
    s.add_argument("--arm", default=None, help="NAME=REGIMEN[+REGIMEN...] (instead of --regimen)")
    s.add_argument(
        "--versus", default=None, help="reference arm (e.g. 'untreated'): endpoint difference"
    )
    s.add_argument("--runin-days", type=int, default=240, help="immune run-in rebuilt per θ")
    s.add_argument("--no-pk", action="store_true", help="leave out the drugs' PK parameters")
    s.add_argument(
        "--mode", choices=MODES, help="local: autodiff mode (auto, the default, = reverse)"
    )
    s.add_argument("--params", default=None, help="sobol: comma-separated parameters")
    s.add_argument("--samples", type=int, help="sobol: base sample N (power of 2; 256)")
    s.add_argument("--range", action="append", help="sobol: NAME=LOW:HIGH")
    s.add_argument("--range-sd", type=float, help="sobol: default ±k log-normal SD (2)")
    s.add_argument("--top", type=int, default=15, help="parameters in the tornado plot (15)")
    s.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="patients per compiled call (local 64, sobol 256)",
    )
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.add_argument(
        "--out",
        required=True,
        help="output folder (new or empty; --overwrite replaces one vcohort wrote)",
    )
    s.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def run(args) -> int:
    """``vcohort sensitivity``: validate everything, run, write the folder atomically."""
    from vcohort.io import check_output_dir
    from vcohort.runs import parse_arm
    from vcohort.simulate import check_dt

    _method_flags(args)  # first: it fills in the method's defaults
    from vcohort.config import MAX_DAYS, MAX_PATIENTS

    for flag, v, lo, hi in (
        ("--days", args.days, 1, MAX_DAYS),
        ("--runin-days", args.runin_days, 0, MAX_DAYS),
        ("--top", args.top, 1, None),
        ("--chunk-size", args.chunk_size, 1, None),
    ) + ((("--patients", args.patients, 1, MAX_PATIENTS),) if args.method == "local" else ()):
        if v < lo:
            raise ValueError(f"{flag}={v} must be >= {lo}")
        if hi is not None and v > hi:
            raise ValueError(f"{flag}={v} must be <= {hi}")
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
    same = lambda a: sorted(r.describe() for r in a.regimens)  # noqa: E731
    if ref is not None and same(ref) == same(arm):
        raise ValueError(
            f"--versus {args.versus!r} gives the same regimens as the arm: the difference "
            f"would be 0 for every parameter; give another reference arm"
        )
    if ref is not None and ref.name == arm.name:
        ref = type(ref)(ref.name + "_ref", ref.regimens)
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
    if sobol is None:  # (Sobol checks the rates it holds typical in _sobol_settings)
        from vcohort.simulate import acting_channels, check_typical_rates

        check_typical_rates(problem.model, args.dt, acting_channels(problem.plan.drugs))
    return _sensitivity_compute(args, problem, sobol)


# each method's own flags and their defaults (None in argparse, so that a flag given to the
# other method is seen even at its default value)
METHOD_FLAGS = {
    "local": {"patients": 50, "mode": "auto", "chunk_size": 64},
    "sobol": {"params": None, "range": [], "samples": 256, "range_sd": 2.0, "chunk_size": 256},
}


def _method_flags(args) -> None:
    """Refuse flags that the chosen method would ignore (named, with the method they need);
    fill in the chosen method's defaults."""
    need = "sobol" if args.method == "local" else "local"
    own = METHOD_FLAGS[args.method]
    given = [f"--{k.replace('_', '-')}" for k in METHOD_FLAGS[need]
             if k not in own and getattr(args, k) is not None]  # fmt: skip
    args.defaulted = sorted(k for k in own if getattr(args, k) is None)  # for notes on flags
    for k, v in own.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if given:
        raise ValueError(
            f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to --method {need}, "
            f"not {args.method} "
            + (
                "(local covers every parameter)"
                if need == "sobol"
                else "(Sobol varies the parameters of the typical patient)"
            )
        )


def _sobol_settings(args, problem):
    """(names, bounds, rules) of ``--params``/``--range``/``--range-sd``, validated; ``rules``
    says how each range was made (for the manifest)."""
    from vcohort.sensitivity import FIXED_FACTOR
    from vcohort.sobol import _param_row, check_ranges, default_ranges

    names = [n.strip() for n in (args.params or "").split(",") if n.strip()]
    if len(names) < 2:
        raise ValueError(f"--params={args.params!r}: give >= 2 comma-separated parameters")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--params={args.params!r}: {', '.join(twice)} given more than once")
    if args.seed < 0:
        raise ValueError(f"--seed={args.seed}: the sampling seed must be >= 0")
    for n in names:  # an unknown name is --params' error, not --range-sd's
        try:
            _param_row(problem.model, n, problem.plan.drugs)
        except ValueError as e:
            raise ValueError(f"--params={args.params!r}: {e}") from None
        if n not in problem.names:  # a PK parameter under --no-pk
            raise ValueError(
                f"--params={args.params!r}: {n} is held at its typical value with --no-pk; "
                f"drop --no-pk to sample it"
            )
    try:
        bounds = default_ranges(
            problem.model, names, width_sd=args.range_sd, drugs=problem.plan.drugs
        )
    except ValueError as e:
        raise ValueError(f"--range-sd {args.range_sd}: {e}") from None
    rules = {n: _range_rule(problem, n, args.range_sd) for n in names}
    given: dict[str, str] = {}
    for item in args.range:
        name, _, rng = item.partition("=")
        lo, _, hi = rng.partition(":")
        if name not in names:
            raise ValueError(f"--range {item!r}: {name!r} is not in --params")
        if name in given:
            raise ValueError(f"--range {item!r}: {name} already has --range {given[name]!r}")
        given[name] = item
        try:
            bounds[names.index(name)] = (float(lo), float(hi))
        except ValueError:
            raise ValueError(f"--range {item!r}: expected NAME=LOW:HIGH numbers") from None
        rules[name] = "--range"
    check_ranges(names, bounds, "log")
    from vcohort.simulate import acting_channels, check_typical_rates
    from vcohort.sobol import check_model_ranges, check_samples

    drugs = problem.plan.drugs
    check_model_ranges(problem.model, names, bounds, args.dt, acting_channels(drugs))
    check_typical_rates(problem.model, args.dt, acting_channels(drugs), sampled=names)
    check_samples(args.samples, len(names), "--samples")  # N (d + 2) within MAX_PATIENTS
    fixed = [m for m, r in rules.items() if r.startswith("x/")]
    if fixed:  # the README promises the command says which (and --range-sd does not act there)
        flag = "range_sd" not in getattr(args, "defaulted", ["range_sd"])
        print(
            "note: "
            + ("--range-sd sets" if flag else f"--range-sd ({args.range_sd:g}) sets")
            + f" the ranges of parameters with between-patient variability; "
            f"{', '.join(fixed)} {'is' if len(fixed) == 1 else 'are'} fixed in the parameter "
            f"table and range{'s' if len(fixed) == 1 else ''} x/÷ {FIXED_FACTOR:g} (give "
            "--range NAME=LOW:HIGH to set another)",
            file=sys.stderr,
        )
    return names, bounds, rules


def _range_rule(problem, name: str, width_sd) -> str:
    """How the default range of ``name`` is made (for the manifest)."""
    from vcohort.sensitivity import FIXED_FACTOR
    from vcohort.sobol import UNIT_INTERVAL, _param_row, default_ranges

    omega = _param_row(problem.model, name, problem.plan.drugs).omega
    rule = (
        f"value x exp(±{width_sd:g} omega), omega {omega:.3g}"
        if omega > 0
        else (f"x/÷ {FIXED_FACTOR:g} (fixed in the parameter table)")
    )
    capped = (
        name in UNIT_INTERVAL.get(problem.model.name, ())
        and default_ranges(problem.model, [name], width_sd=width_sd, drugs=problem.plan.drugs)[0, 1]
        == 1.0
    )
    return rule + (", capped at 1 (a fraction)" if capped else "")


def _sensitivity_compute(args, problem, sobol) -> int:
    from vcohort.io import environment, run_folder, write_csv, write_json, write_parquet
    from vcohort.sensitivity import ENDPOINT_UNITS, ENDPOINTS
    from vcohort.sensitivity_plot import tornado_local, tornado_sobol

    t0 = time.perf_counter()
    show = False if args.no_progress else None
    title = f"{problem.describe()}, day {args.days}"
    extra = {}
    if args.method == "local":
        from vcohort.cohort import make_cohort
        from vcohort.sensitivity import local_sensitivities, rank_local

        cohort = make_cohort(args.patients, seed=args.seed, dt=args.dt, runin_days=0)
        res = local_sensitivities(
            problem, cohort, mode=args.mode, chunk_size=args.chunk_size, progress=show
        )
        table = rank_local(res)
        n_fin, n_zero = int(table.n_patients.iloc[0]), int(table.n_zero.iloc[0])
        if n_fin < len(cohort):
            print(
                f"note: {len(cohort) - n_fin} of {len(cohort)} patients gave a non-finite "
                f"endpoint or sensitivity, or have a rate the RK4 step at --dt {args.dt:g} "
                f"cannot follow ({int(res.unstable.sum())}), and are left out of the ranking",
                file=sys.stderr,
            )
        if 2 * n_zero >= n_fin:
            print(
                f"note: {n_zero} of {n_fin} patients have every sensitivity 0 (e.g. no tumour "
                f"left: {args.endpoint} is clamped), so the medians are 0 and the ranking is "
                "uninformative; read q25/q75 or choose another --endpoint",
                file=sys.stderr,
            )
        extra = {"mode": res.mode, "n_finite": n_fin, "n_all_zero": n_zero,
                 "n_rk4_unstable": int(res.unstable.sum())}  # fmt: skip
        files = {"sensitivities.parquet": res.frame()}
        plot = lambda p: tornado_local(table, p, top=args.top, title=title)  # noqa: E731
    else:
        from vcohort.sobol import model_sobol

        names, bounds, rules = sobol
        table, samples, _ = model_sobol(
            problem,
            names,
            args.samples,
            bounds=bounds,
            seed=args.seed,
            chunk_size=args.chunk_size,
            progress=show,
        )
        extra = {
            "patient": "typical (typical parameters and PK, the default population's median "
            "covariates); only the listed parameters vary",
            "ranges": {
                n: [float(lo), float(hi)] for n, (lo, hi) in zip(names, bounds, strict=True)
            },
            "range_rules": rules,
            "held_at_typical": [n for n in problem.names if n not in names],
            "sampling": "log-uniform; Saltelli/Sobol' (SALib), N (d + 2) evaluations",
            "evaluations": int(len(samples)),
        }
        fails = table.attrs["failures"]
        k = fails["failed_base_samples"]
        extra |= {
            # a base sample with a non-finite endpoint is dropped with its d + 2 rows (kept,
            # with the NaN, in samples.parquet); more than max_failed_fraction is refused
            "failed_base_samples": k,
            "failed_evaluations": fails["failed_evaluations"],
            "evaluations_used": int(len(samples)) - fails["dropped_evaluations"],
            "max_failed_fraction": fails["max_failed_fraction"],
            "failed_examples": fails["examples"],
            "ci": "95% bootstrap, 200 resamples",
        }
        if k:
            at = ", ".join(f"{n}={v:.4g}" for n, v in fails["examples"][0].items()
                           if n != "base_sample")  # fmt: skip
            print(
                f"note: {k} of {args.samples} base samples gave a non-finite endpoint (e.g. at "
                f"{at}); their {fails['dropped_evaluations']} evaluations are left out of the "
                f"indices (kept in samples.parquet; up to "
                f"{fails['max_failed_fraction']:.0%} may fail)",
                file=sys.stderr,
            )
        files = {"samples.parquet": samples}
        plot = lambda p: tornado_sobol(table, p, top=args.top, title=title)  # noqa: E731
        import numpy as np

        conf = float(np.nanmax(table[["S1_conf", "ST_conf"]].to_numpy()))
        odd = table[(table["ST"] > 1 + table["ST_conf"]) | (table["S1"] < -table["S1_conf"])]
        if args.samples < 64 or conf > 0.1 or len(odd):
            print(
                f"note: the indices are imprecise (N = {args.samples}, widest 95% CI ±{conf:.2g}"
                + (f"; {', '.join(odd['parameter'])} outside [0, 1] beyond its CI" if len(odd)
                   else "")
                + "): give a larger --samples (e.g. 1024) before reading the ranking",
                file=sys.stderr,
            )  # fmt: skip
            extra["imprecise"] = True
    wall = time.perf_counter() - t0
    print(f"\n{title}: {args.method}, {wall:.1f} s")
    print_table(table.head(args.top), float_format=None)
    with run_folder(args.out, args.overwrite) as tmp:
        write_csv(tmp / "ranking.csv", table)
        for name, df in files.items():
            write_parquet(tmp / name, df)
        plot(tmp / "tornado.png")
        _write_columns(tmp, problem, args.endpoint, local=args.method == "local")
        write_json(
            tmp / "manifest.json",
            {
                "command": " ".join(sys.argv),
                "config": vars(args),
                "method": args.method,
                "endpoint": problem.describe(),
                "endpoint_definition": ENDPOINTS[args.endpoint],
                "endpoint_unit": ENDPOINT_UNITS[args.endpoint],
                "sensitivity": "d(endpoint)/d(ln parameter): the endpoint's change per e-fold "
                "change of the parameter (x 0.693 per doubling)"
                if args.method == "local"
                else "Sobol indices: shares of the endpoint's variance over the ranges",
                "parameters": list(problem.names) if args.method == "local" else list(names),
                "environment": environment(),
                "seconds": wall,
            }
            | extra,
        )
    print(f"wrote {args.out}")
    return 0


def _write_columns(folder, problem, endpoint: str, *, local: bool) -> None:
    """``columns.csv`` of a sensitivity folder: the parameter columns of sensitivities.parquet
    hold derivatives (not values), the ``endpoint`` column the endpoint itself."""
    from vcohort.columns import describe, write_columns
    from vcohort.sensitivity import ENDPOINT_UNITS, ENDPOINTS

    unit = ENDPOINT_UNITS[endpoint]
    ep = {"endpoint": (unit, f"{problem.describe()}: {ENDPOINTS[endpoint]}")}
    per = f"{unit} per e-fold"
    deriv = {
        n: (per, f"d(endpoint)/d(ln {n}) of the patient (a {k} parameter)")
        for n, k in zip(problem.names, problem.kinds, strict=True)
    }
    overrides = {"sensitivities.parquet": ep | deriv, "samples.parquet": ep}
    if local:  # the ranking's statistics carry the derivatives' unit
        stats = ("median", "q25", "q75", "median_abs")
        overrides["ranking.csv"] = {c: (per, describe(c)[1]) for c in stats}
    write_columns(folder, problem.model, {d.name: d for d in problem.plan.drugs}, overrides)

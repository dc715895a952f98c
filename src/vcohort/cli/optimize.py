"""``vcohort optimize``: gradient-based schedule optimisation from an experiment file."""

from __future__ import annotations

import time


def add(sub) -> None:
    o = sub.add_parser(
        "optimize", help="optimise a combination schedule by gradient descent (TOML experiment)"
    )
    o.add_argument(
        "experiment", help="experiment file (TOML), e.g. experiments/optimize_triple.toml"
    )
    o.add_argument(
        "--out",
        required=True,
        help="output folder (new or empty; --overwrite replaces one vcohort wrote)",
    )
    o.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    o.add_argument("--resume", action="store_true", help="continue an interrupted run")
    o.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
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
    print(res["result"].convergence())
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")
    return 0

"""Constant against cosine learning rate: does the schedule change what the optimiser finds?

Optimises an experiment file twice on its training cohort, with ``[optimizer] schedule``
``constant`` and ``cosine`` (everything else as the file says), and evaluates both schedules,
continuous and rounded to clinical amounts (the best feasible of the rounding candidates on the
training cohort, as `vcohort optimize` does), on the held-out cohort.  The reference of the paired
differences is the constant schedule's, so ``diff_vs_reference ± diff_se`` is cosine minus
constant on the same patients.  Also prints how each run ended and how steadily its training
objective moved over the last 10 iterations.

    python experiments/lr_schedules.py [--experiment FILE] [--iterations N] [--out FILE]

(default: experiments/optimize_chemo_holds.toml with its cohorts and iterations)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vcohort.cohort import make_cohort
from vcohort.io import markdown_table
from vcohort.optimize.config import load_experiment
from vcohort.optimize.evaluate import evaluate
from vcohort.optimize.experiment import choose_rounding, optimize_configured

HERE = Path(__file__).parent


def steadiness(obj: np.ndarray) -> dict:
    """How the training objective moved over the last 10 iterations: net gain (positive =
    lower objective), and the summed rises (steps where it got worse)."""
    last = obj[-11:]
    step = np.diff(last)
    return {"last10_gain": float(last[0] - last[-1]), "last10_rises": float(step[step > 0].sum())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default=str(HERE / "optimize_chemo_holds.toml"))
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the table (markdown) here")
    a = ap.parse_args(argv)
    exp = load_experiment(a.experiment)
    pb = exp.problem
    o = exp.optimizer | {"iterations": a.iterations or exp.optimizer["iterations"]}
    train = make_cohort(
        exp.train["patients"], seed=exp.train["seed"], first_id=exp.train["first_id"]
    )
    held = make_cohort(
        exp.heldout["patients"], seed=exp.heldout["seed"], first_id=exp.heldout["first_id"]
    )
    scheds, rows, texts = {}, [], {}
    for schedule in ("constant", "cosine"):
        oo = o | {"schedule": schedule}
        t0 = time.perf_counter()
        res = optimize_configured(pb, train, oo, progress=False)
        wall = time.perf_counter() - t0
        rounded = choose_rounding(pb, res.layout, res.amount, train, oo["rounding_candidates"])[0]
        scheds[f"{schedule} (continuous)"] = res.schedule()
        scheds[f"{schedule} (rounded)"] = rounded.schedule
        obj = res.history["objective"].to_numpy()
        rows.append(
            {
                "schedule": schedule,
                "iterations": res.simulations,
                "best_training": float(obj.min()),
                **steadiness(obj),
                "wall_s": round(wall),
            }
        )
        texts[schedule] = (
            res.convergence() + "  Rounded: " + "; ".join(rounded.descriptions.values())
        )
    ev = evaluate(pb, held, scheds, reference="constant (continuous)")
    # the rounded cosine schedule against the rounded constant one, on the same patients
    ev_r = evaluate(pb, held, {k: scheds[k] for k in scheds if "rounded" in k},
                    reference="constant (rounded)")  # fmt: skip
    cols = ["schedule", "objective", "diff_vs_reference", "diff_se", "orr", "feasible"]
    import pandas as pd

    lines = [
        f"{exp.title}: {exp.train['patients']} training and {exp.heldout['patients']} held-out "
        f"patients, {o['iterations']} iterations; {o['name']}, learning rate "
        f"{o['learning_rate']:g}, cosine to {o['final_lr_fraction']:g} of it.",
        "",
        markdown_table(pd.DataFrame(rows)),
        "",
        "Held-out, against the constant schedule's continuous doses:",
        "",
        markdown_table(ev[[c for c in cols if c in ev]]),
        "",
        "Held-out, rounded against rounded:",
        "",
        markdown_table(ev_r[[c for c in cols if c in ev_r]]),
        "",
        *[f"- {k}: {v}" for k, v in texts.items()],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()

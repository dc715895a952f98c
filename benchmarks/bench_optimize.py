"""One schedule optimisation end to end: wall time, cohort simulations, held-out result.

    python benchmarks/bench_optimize.py [--experiment experiments/optimize_triple.toml]

Runs `vcohort optimize` on the experiment (default: 1,000 training patients, 3 drugs, 24 weeks,
held-out 1,000 patients, ES baseline with the same simulation budget) into a temporary folder,
prints one Markdown table and writes benchmarks/results/optimize.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import jax
from _common import write_result

from vcohort.io import markdown_table
from vcohort.optimize.config import load_experiment
from vcohort.optimize.experiment import run_experiment

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default=str(ROOT / "experiments" / "optimize_triple.toml"))
    a = ap.parse_args()
    exp = load_experiment(a.experiment)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_experiment(exp, Path(tmp) / "run", progress=True)
    wall = time.perf_counter() - t0
    ev = res["heldout"]
    cols = [
        c
        for c in ("schedule", "objective", "objective_se", "diff_vs_reference", "diff_se",
                  "orr", "median_best_pct_change", "feasible")
        if c in ev
    ]  # fmt: skip
    t = res["timings"]
    pb = exp.problem
    bs = exp.optimizer["batch_size"]
    batch = "full batch" if bs is None else f"mini-batches of {bs}"
    lines = [
        f"Schedule optimisation ({Path(a.experiment).name}): {exp.train['patients']} training "
        f"patients, {len(pb.drugs)} drugs, {pb.days} days, {pb.precision}, "
        f"{os.cpu_count()} CPU cores, jax {jax.__version__}, {time.strftime('%Y-%m-%d')}.",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {k.removesuffix('_s')} | {v:.0f} |" for k, v in t.items()],
        f"| total (incl. writing) | {wall:.0f} |",
        "",
        f"Gradient run: {res['result'].simulations} value-and-gradient cohort simulations "
        f"({batch}); the ES baseline got the same number of forward simulations.",
        "",
        f"Held-out cohort ({exp.heldout['patients']} patients; objective: lower is better; "
        "diff = paired difference to the standard combination ± Monte-Carlo SE):",
        "",
        markdown_table(ev[cols]),
        "",
        "Optimised schedule after rounding: " + "; ".join(res["rounded"].descriptions.values()),
    ]
    text = "\n".join(lines)
    print(text)
    write_result("optimize.md", text)


if __name__ == "__main__":
    main()

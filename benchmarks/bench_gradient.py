"""Cost of value-and-gradient (w.r.t. every dose amount) relative to the forward pass.

    python benchmarks/bench_gradient.py [--patients 1000] [--days 180]

Objective: mean log final diameter of the cohort under the triple combination; gradient with
respect to all dose-slot amounts (reverse mode through the scan, ``jax.checkpoint`` per day
and per RK4 stage: the backward pass re-runs each day once and each stage's right-hand side
once more, so with the primal pass and the vector-Jacobian products of the right-hand side
(about 2 forward passes) about 5 forward passes is the floor of this memory-bounded scheme).
Prints one Markdown table and writes benchmarks/results/gradient.md.
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import best_time, dose_objective, triple_schedule, write_result  # noqa: E402

from vcohort.cohort import make_cohort  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--days", type=int, default=180)
    a = ap.parse_args()
    s = triple_schedule(a.days)
    f, plan = dose_objective(s, a.days, jnp.float64)
    c = make_cohort(a.patients, seed=1)
    args = c.arrays(np.arange(a.patients), plan.drugs, np.float64)

    def objective(amount):
        return f(amount, *args)

    amount = jnp.asarray(s.amount, jnp.float64)
    t_fwd = best_time(jax.jit(objective), amount)
    t_vg = best_time(jax.jit(jax.value_and_grad(objective)), amount)
    n_free = int(s.valid.sum())
    text = "\n".join(
        [
            f"Value-and-gradient vs forward: {a.patients} patients, {a.days} days, "
            f"triple combination, float64, {n_free} dose amounts; "
            f"jax {jax.__version__}, {time.strftime('%Y-%m-%d')}.",
            "",
            "| pass | seconds | ratio to forward |",
            "|---|---|---|",
            f"| forward | {t_fwd:.2f} | 1.0 |",
            f"| value and gradient (reverse mode, checkpoint per day and RK4 stage) | {t_vg:.2f} | "
            f"{t_vg / t_fwd:.1f} |",
        ]
    )
    print(text)
    write_result("gradient.md", text)


if __name__ == "__main__":
    main()

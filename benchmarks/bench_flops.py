"""Achieved FLOP/s of the forward simulation against a measured machine peak.

    python benchmarks/bench_flops.py [--patients 4096] [--days 60]

FLOPs: XLA's cost analysis counts a loop body once, not per trip, so the count is taken from
one right-hand-side evaluation of the model for the whole cohort (vmapped, compiled, no loop)
times 4 RK4 stages per step; the exact PK propagation and the Gauss-node drug effects are left
out, so the achieved figure is a lower bound.  It is divided by the measured run time of the
real simulation.  The machine peak is measured with a large
matrix product (2 n^3 FLOPs) in the same precision, which is close to the best this CPU
(or GPU) reaches.  Prints one Markdown table and writes benchmarks/results/flops.md.
"""

from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import best_time, triple_schedule, write_result  # noqa: E402

from vcohort.cohort import make_cohort  # noqa: E402
from vcohort.drugs import get_drug  # noqa: E402
from vcohort.model import CSC_IMMUNE  # noqa: E402
from vcohort.simulate import Plan, cohort_fn  # noqa: E402


def flops_of(compiled) -> float:
    ca = compiled.cost_analysis()
    if isinstance(ca, list | tuple):
        ca = ca[0]
    return float(ca.get("flops", float("nan")))


def peak(dtype, n: int = 2048) -> float:
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    f = jax.jit(lambda x: x @ x)
    return 2.0 * n**3 / best_time(f, a)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=4096)
    ap.add_argument("--days", type=int, default=60)
    a = ap.parse_args()
    s = triple_schedule(a.days)
    c = make_cohort(a.patients, seed=1, runin_days=0)
    rows = []
    for name, dt, npdt in (
        ("float64", jnp.float64, np.float64),
        ("float32", jnp.float32, np.float32),
    ):
        plan = Plan(CSC_IMMUNE, tuple(get_drug(d) for d in s.drugs), a.days, 0.1, a.days, dt)
        bolus, rate = s.step_inputs(plan.dt, plan.n_steps)
        args = c.arrays(np.arange(a.patients), plan.drugs, npdt)
        args = (*args, bolus.astype(npdt), rate.astype(npdt))
        f = jax.jit(cohort_fn(plan))
        p, _, _, y0 = args[:4]
        eff = {ch: jnp.zeros(a.patients, dt) for ch in CSC_IMMUNE.effect_channels}
        rhs = jax.jit(jax.vmap(lambda y, q, e: CSC_IMMUNE.rhs(y, q, e, jnp, 1.0)))
        rhs_flops = flops_of(rhs.lower(y0, p, eff).compile())
        flops = 4.0 * rhs_flops * plan.n_steps  # per call: 4 RK4 stages per step
        t = best_time(f, *args)
        pk = peak(dt)
        per_step = flops / (a.patients * plan.n_steps)
        rows.append(
            f"| {name} | {a.patients} | {per_step:,.0f} | {flops / t / 1e9:.2f} | "
            f"{pk / 1e9:.1f} | {100 * flops / t / pk:.1f}% |"
        )
    text = "\n".join(
        [
            f"Forward-pass FLOP/s vs measured peak: triple combination, {a.days} days, RK4 dt 0.1, "
            f"{os.cpu_count()} CPU cores ({jax.devices()[0].platform}), jax {jax.__version__}, "
            f"{time.strftime('%Y-%m-%d')}.  FLOPs from XLA's cost analysis of the compiled "
            "cohort function; peak from a 2048x2048 matrix product.",
            "",
            "| precision | patients | RHS FLOPs per patient-step (x4 stages) | achieved GFLOP/s | "
            "peak GFLOP/s (matmul) | fraction of peak |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    write_result("flops.md", text)


if __name__ == "__main__":
    main()

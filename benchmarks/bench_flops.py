"""Achieved FLOP/s of the forward simulation against measured machine peaks.

    python benchmarks/bench_flops.py [--patients 4096] [--days 60]

FLOPs: XLA's cost analysis counts a loop body once, not per trip, so the count is taken from
one right-hand-side evaluation of the model for the whole cohort (vmapped, compiled, no loop)
times 4 RK4 stages per step; the exact PK propagation and the Gauss-node drug effects are left
out, so the achieved figure is a lower bound.  XLA counts a division as one FLOP and a
log/exp/pow as one "transcendental" (not a FLOP); both are reported per patient-step.  The
achieved FLOP/s is divided by three measured peaks in the same precision:

* ``matmul``: a 2048x2048 matrix product (2 n^3 FLOPs), close to the best this CPU (or GPU)
  reaches; it needs FMA-only work with data reuse in registers, which an ODE right-hand side
  does not have.
* ``fma``: a fair elementwise peak -- a ``lax.fori_loop`` whose body is one fused kernel of 8
  independent chains of 16 multiply-adds on a vector of the cohort's size, i.e. the same
  loop-of-fused-elementwise-kernels shape as the simulator, with no division.
* ``div``: the same loop with 8 independent chains of 16 ``b / (x + a)`` updates: the
  throughput of the division-bound part of the right-hand side (its hill functions).

The op-mix bound combines the last two: the right-hand side's divisions (counted in its
jaxpr) at the div loop's rate and its other FLOPs at the fma loop's rate -- what a loop of
fused elementwise kernels with this mix of operations can reach on this machine.

Prints one Markdown table and writes benchmarks/results/flops.md.
"""

from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    best_time,
    peak_elementwise,
    peak_matmul,
    rhs_cost,
    triple_schedule,
    write_result,
)

from vcohort.cohort import make_cohort  # noqa: E402
from vcohort.drugs import get_drug  # noqa: E402
from vcohort.model import CSC_IMMUNE  # noqa: E402
from vcohort.simulate import Plan, cohort_fn  # noqa: E402


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
        cost, n_div = rhs_cost(p, y0, dt)
        flops = 4.0 * cost["flops"] * plan.n_steps  # per call: 4 RK4 stages per step
        t = best_time(f, *args)
        rate = flops / t
        peaks = (
            peak_matmul(dt),
            peak_elementwise(dt, a.patients, "fma"),
            peak_elementwise(dt, a.patients, "div"),
        )
        per_step = 4.0 * cost["flops"] / a.patients
        # op-mix bound: divisions at the div loop's rate (1 add + 1 div per update), the rest
        # at the fma loop's rate
        div_s = 4.0 * n_div / (peaks[2] / 2.0)
        rest_s = (per_step - 4.0 * n_div) / peaks[1]
        bound = per_step / (div_s + rest_s)
        trans = 4.0 * cost["transcendentals"] / a.patients
        rows.append(
            f"| {name} | {a.patients} | {per_step:,.0f} | {trans:.0f} | {rate / 1e9:.2f} | "
            + " | ".join(f"{pk / 1e9:.1f} ({100 * rate / pk:.1f}%)" for pk in peaks)
            + f" | {4 * n_div} | {bound / 1e9:.1f} ({100 * rate / bound:.0f}%) |"
        )
    text = "\n".join(
        [
            f"Forward-pass FLOP/s vs measured peak: triple combination, {a.days} days, RK4 dt 0.1, "
            f"{os.cpu_count()} CPU cores ({jax.devices()[0].platform}), jax {jax.__version__}, "
            f"{time.strftime('%Y-%m-%d')}.  FLOPs from XLA's cost analysis of the compiled "
            "right-hand side x 4 stages (a lower bound); peaks: 2048x2048 matrix product, and "
            "loops of fused elementwise kernels (8x16 multiply-adds, or 8x16 divisions) over a "
            "vector of the cohort's size; best of 3 calls each.  Op-mix bound: the right-hand "
            "side's divisions at the div loop's rate plus its other FLOPs at the fma loop's rate.",
            "",
            "| precision | patients | RHS FLOPs per patient-step (x4 stages) | transcendentals "
            "per patient-step | achieved GFLOP/s | peak GFLOP/s matmul (fraction) | "
            "peak fma loop (fraction) | peak div loop (fraction) | divisions per "
            "patient-step | op-mix bound GFLOP/s (fraction) |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    write_result("flops.md", text)


if __name__ == "__main__":
    main()

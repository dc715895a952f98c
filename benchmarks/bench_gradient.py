"""Cost of value-and-gradient (w.r.t. every dose amount) relative to the forward pass.

    python benchmarks/bench_gradient.py [--patients 1000] [--days 180] [--rounds 3]

Objective: mean log final diameter of the cohort under the triple combination; gradient with
respect to all dose-slot amounts (reverse mode through the scan, ``jax.checkpoint`` per day
and per RK4 stage: the backward pass re-runs each day once and each stage's right-hand side
once more, so with the primal pass and the vector-Jacobian products of the right-hand side
(about 2 forward passes) about 5 forward passes is the floor of this memory-bounded scheme).

Both plans are compiled and timed in interleaved rounds (best of ``--rounds``), because this
shared machine drifts by 15% between runs: the default plan (plain `rk4_step`, JAX's own
reverse pass; forward and reverse mode) and the ``reverse_mode=True`` plan (the optimiser's
and reverse-mode sensitivities': `rk4_step_reverse`, a hand-written reverse sweep of the RK4
stages).  The headline ratio is the reverse-mode plan's value-and-gradient over the forward
pass of the default plan (the fastest forward); the two plans' gradients are checked to agree.
Prints one Markdown table and writes benchmarks/results/gradient.md.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import dose_objective, triple_schedule, write_result  # noqa: E402

from vcohort.cohort import make_cohort  # noqa: E402


def bind(f, args, amount):
    return f(amount, *args)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    s = triple_schedule(a.days)
    c = make_cohort(a.patients, seed=1)
    amount = jnp.asarray(s.amount, jnp.float64)
    fns = {}
    for plan_kind in ("default", "reverse_mode"):
        f, plan = dose_objective(s, a.days, jnp.float64, reverse_mode=plan_kind == "reverse_mode")
        obj = partial(bind, f, c.arrays(np.arange(a.patients), plan.drugs, np.float64))
        fns[f"forward ({plan_kind})"] = jax.jit(obj).lower(amount).compile()
        fns[f"value and gradient ({plan_kind})"] = (
            jax.jit(jax.value_and_grad(obj)).lower(amount).compile()
        )
    grads = {k: np.asarray(fn(amount)[1]) for k, fn in fns.items() if k.startswith("value")}
    g_s, g_i = grads["value and gradient (default)"], grads["value and gradient (reverse_mode)"]
    agree = float(np.max(np.abs(g_s - g_i)) / np.max(np.abs(g_s)))
    if not agree < 1e-10:  # same arithmetic; only the backward summation order differs
        raise SystemExit(f"gradients of the two plans differ: {agree:.2e} (max relative)")
    best = dict.fromkeys(fns, np.inf)
    for _ in range(a.rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(amount))
            best[k] = min(best[k], time.perf_counter() - t0)
    t_fwd = min(best["forward (default)"], best["forward (reverse_mode)"])
    n_free = int(s.valid.sum())
    rows = [f"| {k} | {t:.2f} | {t / t_fwd:.1f} |" for k, t in best.items()]
    text = "\n".join(
        [
            f"Value-and-gradient vs forward: {a.patients} patients, {a.days} days, "
            f"triple combination, float64, {n_free} dose amounts, 1 CPU device; reverse mode "
            f"with a checkpoint per day; the default plan and the `reverse_mode=True` plan "
            f"timed in {a.rounds} interleaved rounds (best); their gradients "
            f"agree to {agree:.1e}; jax {jax.__version__}, {time.strftime('%Y-%m-%d')}.",
            "",
            "| pass (plan) | seconds | ratio to the fastest forward |",
            "|---|---|---|",
            *rows,
            "",
            f"Value-and-gradient as the optimiser runs it (reverse_mode plan) / fastest "
            f"forward: **{best['value and gradient (reverse_mode)'] / t_fwd:.1f}x**.",
        ]
    )
    print(text)
    write_result("gradient.md", text)


if __name__ == "__main__":
    main()

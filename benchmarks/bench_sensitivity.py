"""Local sensitivities: forward (``jacfwd``) vs reverse (``value_and_grad``) mode, compile and run.

    python benchmarks/bench_sensitivity.py [--patients 16] [--days 60]

Endpoint: log diameter at the horizon of the untreated model, initial state held fixed, with
respect to the log of all model parameters, ``vmap`` over patients (the library's
`vcohort.sensitivity._batch`; "reverse (plain)" is JAX's own reverse pass of a default plan,
for comparison with the library's ``reverse_mode`` plan).  Prints one Markdown table and writes
benchmarks/results/sensitivity.md.
"""

from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from _common import write_result  # noqa: E402

from vcohort.cohort import make_cohort  # noqa: E402
from vcohort.model import CSC_IMMUNE  # noqa: E402
from vcohort.runs import parse_arm  # noqa: E402
from vcohort.sensitivity import _batch, build_problem, cohort_inputs, endpoint_fn  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=16)
    ap.add_argument("--days", type=int, default=60)
    a = ap.parse_args()
    c = make_cohort(a.patients, seed=1, runin_days=0)
    pr = build_problem(CSC_IMMUNE, parse_arm("untreated"), a.days, "log_diameter", runin_days=None)
    args = (*cohort_inputs(pr, c), pr.bolus, pr.rate)
    rows, out = [], {}
    # "reverse (plain)": JAX's own reverse pass of the RK4 stages (a default plan), for
    # comparison with the library's reverse mode (`Plan.reverse_mode`, `rk4_step_reverse`)
    plain = jax.jit(
        jax.vmap(
            jax.value_and_grad(endpoint_fn(pr, reverse_mode=False)),
            in_axes=(0, 0, 0, 0, 0, None, None),
        )
    )
    for how in ("value", "forward", "reverse", "reverse (plain)"):
        t0 = time.perf_counter()
        fn = plain if how == "reverse (plain)" else _batch(pr, how)
        compiled = fn.lower(*args).compile()
        tc = time.perf_counter() - t0
        jax.block_until_ready(compiled(*args))
        ts = []
        for _ in range(2):
            t0 = time.perf_counter()
            out[how] = jax.block_until_ready(compiled(*args))
            ts.append(time.perf_counter() - t0)
        rows.append((how, tc, min(ts)))
        print(rows[-1], flush=True)
    gf, gr = np.asarray(out["forward"][1]), np.asarray(out["reverse"][1])
    agree = float(np.max(np.abs(gf - gr)) / np.max(np.abs(gr)))
    gp = np.asarray(out["reverse (plain)"][1])
    agree_plain = float(np.max(np.abs(gp - gr)) / np.max(np.abs(gr)))
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            f"Local sensitivities, {a.patients} patients, {a.days} days, untreated, "
            f"{len(pr.names)} parameters, float64, CPU ({os.cpu_count()} cores, load average "
            f"{load:.1f} while measuring); jax {jax.__version__}, {time.strftime('%Y-%m-%d')}.",
            "",
            "| pass | compile s | run s | run / value |",
            "|---|---|---|---|",
            *[f"| {h} | {tc:.1f} | {tr:.3f} | {tr / rows[0][2]:.0f} |" for h, tc, tr in rows],
            "",
            f"Forward and reverse gradients agree to {agree:.1e}, the two reverse passes to "
            f"{agree_plain:.1e} (max relative).",
        ]
    )
    print(text)
    write_result("sensitivity.md", text)


if __name__ == "__main__":
    main()

"""GPU benchmark (float32): the triple combination for 10^4 - 10^6 patients, one year forward
with both engines (``xla``: the vmapped step compiled by XLA; ``pallas``: one fused Triton
kernel per day and block of patients, `vcohort.fused`), and value-and-gradient w.r.t. every
dose amount over 24 weeks (``GRAD_DAYS``, XLA engine).

    bash benchmarks/gpu.sh            # on a machine with an NVIDIA GPU and jax[cuda]

Writes benchmarks/results/gpu.md (or $OUT/gpu.md when OUT is set) after every row, so a run
cut short keeps what it measured.  Reports patient-days per second of a second (compiled)
call per engine and cohort size, compile time, the largest relative difference of the fused
engine's final diameters from the XLA engine's on the same patients (float32 round-off), and
a sweep of the fused kernel's block size.  Environment: SIZES, DAYS, CHUNK (XLA engine),
PALLAS_CHUNK, ENGINES, BLOCKS, GRAD_*.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from _common import (  # noqa: E402
    dose_objective,
    peak_elementwise,
    peak_matmul,
    rhs_cost,
    triple_schedule,
    write_result,
)

from vcohort.cohort import make_cohort  # noqa: E402
from vcohort.model import CSC_IMMUNE  # noqa: E402
from vcohort.simulate import simulate  # noqa: E402


def env_ints(name: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(name, default).split(",") if x]


START = time.perf_counter()
BUDGET_S = float(os.environ.get("BUDGET_S", "280"))  # gpu.sh must finish in under 5 minutes


def over_budget() -> bool:
    return time.perf_counter() - START > BUDGET_S


def guarded(lines: list[str], section, *args) -> None:
    """Run one section; a failure (say, a kernel that does not compile on this GPU) becomes a
    line of the table, with the traceback on stdout, and the next section still runs."""
    import traceback

    try:
        section(lines, *args)
    except Exception as e:  # noqa: BLE001 -- report and go on: one device run per session
        traceback.print_exc()
        lines.append(f"\n{section.__name__} failed: {type(e).__name__}: {str(e)[:300]}")
    write_result("gpu.md", "\n".join(lines))


def main() -> None:
    sizes = env_ints("SIZES", "10000,100000,1000000")
    days = int(os.environ.get("DAYS", "365"))
    s = triple_schedule(days)
    t0 = time.perf_counter()
    cohort = make_cohort(max(sizes), seed=1, precision="float32")
    t_cohort = time.perf_counter() - t0
    lines = [
        f"GPU benchmark: {jax.devices()[0].device_kind}, jax {jax.__version__}, float32, triple "
        f"combination, {days} days, RK4 dt 0.1, weekly saves; {time.strftime('%Y-%m-%d')}.  "
        f"Cohort of {max(sizes):,} drawn with its immune run-in (XLA engine) in {t_cohort:.1f} s.",
    ]
    finals: dict = {}
    for engine in os.environ.get("ENGINES", "pallas,xla").split(","):
        guarded(lines, forward_rows, engine, cohort, s, days, sizes, finals)
        if engine == "pallas":
            guarded(lines, block_rows, cohort, s, days)
            guarded(lines, runin_rows, cohort, t_cohort)
    guarded(lines, gradient_rows, cohort, sizes)
    print("\n".join(lines))


def forward_rows(lines, engine, cohort, s, days, sizes, finals) -> None:
    """`simulate` wall time (device, host copies and status checks) per cohort size; 'vs
    other engine': largest relative difference of final diameters from the other engine's."""
    chunk_most = {
        "xla": int(os.environ.get("CHUNK", "262144")),  # bounded by XLA's intermediates
        "pallas": int(os.environ.get("PALLAS_CHUNK", "1048576")),  # state + outputs only
    }[engine]
    lines += [
        "",
        f"`simulate(engine={engine!r})`, wall time including host copies:",
        "",
        "| patients | chunk | first call s | second call s | patient-days/s | failed | "
        "vs other engine |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        if over_budget():
            lines.append(f"| {n:,} | skipped: time budget of {BUDGET_S:.0f} s spent |")
            continue
        c = cohort.subset(np.arange(n))
        chunk = min(n, chunk_most)

        def run(c=c, chunk=chunk):
            return simulate(
                CSC_IMMUNE,
                c,
                s,
                days,
                precision="float32",
                chunk_size=chunk,
                progress=False,
                engine=engine,
            )

        t0 = time.perf_counter()
        run()
        t1 = time.perf_counter()
        tr = run()
        t2 = time.perf_counter()
        finals[engine, n] = tr.daily["diameter_mm"][:, -1]
        other = [v for (e, m), v in finals.items() if m == n and e != engine]
        # max, not nanmax: a patient that fails in one engine only must show (as nan)
        diff = f"{np.max(np.abs(other[0] / finals[engine, n] - 1)):.1e}" if other else ""
        row = (
            f"| {n:,} | {chunk:,} | {t1 - t0:.1f} | {t2 - t1:.2f} | "
            f"{n * days / (t2 - t1):,.0f} | {int((tr.status != 0).sum())} | {diff} |"
        )
        emit(lines, row)


def runin_rows(lines, cohort, t_xla) -> None:
    """The same cohort drawn again with its immune run-in on the fused engine (the run-in is a
    forward simulation of every patient), against the XLA draw above."""
    if over_budget():
        lines.append("\nrun-in on the fused engine: skipped (time budget spent)")
        return
    t0 = time.perf_counter()
    again = make_cohort(len(cohort), seed=1, precision="float32", engine="pallas")
    t = time.perf_counter() - t0
    diff = max(
        float(np.max(np.abs(again.y0[k] - cohort.y0[k]) / np.maximum(np.abs(cohort.y0[k]), 1e-30)))
        for k in cohort.y0
    )
    lines.append(
        f"\nCohort of {len(cohort):,} with its immune run-in on the fused engine: {t:.1f} s "
        f"(XLA engine: {t_xla:.1f} s; both include compiling); largest relative difference of "
        f"the run-in states: {diff:.1e}."
    )
    print(lines[-1], flush=True)


def block_rows(lines, cohort, s, days) -> None:
    """Device time of the fused engine's jitted cohort function (no host copies) for each
    kernel block size (patients per kernel instance) on ``BLOCK_PATIENTS`` patients (default:
    the whole cohort) in one call -- the figure to hold against 10^6 patient-years in 2 s."""
    import jax.numpy as jnp

    from vcohort.drugs import get_drug
    from vcohort.fused import cohort_pallas_fn, kernel_constants
    from vcohort.simulate import Plan

    n = min(int(os.environ.get("BLOCK_PATIENTS", str(len(cohort)))), len(cohort))
    blocks = env_ints("BLOCKS", "128,64,256")
    drugs = tuple(get_drug(d) for d in s.drugs)
    plan = Plan(CSC_IMMUNE, drugs, days, 0.1, 7, jnp.float32)
    bolus, rate = s.step_inputs(plan.dt, plan.n_steps)
    args = jax.device_put((*cohort.arrays(np.arange(n), drugs, np.float32), bolus, rate))
    shared = kernel_constants(CSC_IMMUNE, cohort.params, np.float32)
    # FLOPs as bench_flops.py counts them (right-hand side x 4 stages; PK and drug effects left
    # out, so a lower bound), against this device's float32 peaks
    cost, _ = rhs_cost(args[0], args[3], jnp.float32)
    flops_per_step = 4.0 * cost["flops"] / n
    mm = peak_matmul(jnp.float32, 8192)
    fma = peak_elementwise(jnp.float32, n, "fma")
    lines += [
        "",
        f"Fused kernel on the device only (jitted cohort function, no host copies), {n:,} "
        f"patients, {days} days, by block size (the engine's default is 128).  FLOP/s: "
        f"{flops_per_step:,.0f} right-hand-side FLOPs per patient-step (XLA cost analysis, a "
        f"lower bound) against this device's measured float32 peaks: matmul {mm / 1e12:.1f} "
        f"TFLOP/s (8192², precision HIGHEST), fused multiply-add loop {fma / 1e12:.1f} TFLOP/s.",
        "",
        "| block | first call s | second call s | patient-days/s | patient-years in 2 s | "
        "TFLOP/s (of matmul peak, of fma-loop peak) |",
        "|---|---|---|---|---|---|",
    ]
    for b in blocks:
        if over_budget():
            lines.append(f"| {b} | skipped: time budget of {BUDGET_S:.0f} s spent |")
            continue
        fn = jax.jit(cohort_pallas_fn(plan, block=b, constants=shared))
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        t1 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        t2 = time.perf_counter()
        per_s = n * days / (t2 - t1)
        fl = per_s * plan.n_sub * flops_per_step
        row = (
            f"| {b} | {t1 - t0:.1f} | {t2 - t1:.2f} | {per_s:,.0f} | {2 * per_s / 365:,.0f} | "
            f"{fl / 1e12:.2f} ({fl / mm:.0%}, {fl / fma:.0%}) |"
        )
        emit(lines, row)


def emit(lines: list[str], row: str) -> None:
    """Add a table row, show it, and rewrite gpu.md (results survive a killed run)."""
    lines.append(row)
    print(row, flush=True)
    write_result("gpu.md", "\n".join(lines))


def _divisor_chunk(n: int, most: int) -> int:
    """The largest chunk <= ``most`` that splits ``n`` patients into equal chunks (one shape)."""
    k = -(-n // most)
    while n % k:
        k += 1
    return n // k


def gradient_rows(lines, cohort, sizes) -> None:
    """Value-and-gradient of the cohort mean log final diameter w.r.t. every dose amount
    (reverse mode with the reverse-mode plan, what schedule optimisation uses), in equal
    patient chunks whose gradients are averaged, next to the forward pass of the same
    function (default plan, the fastest forward; same values); float32."""
    import jax.numpy as jnp

    days = int(os.environ.get("GRAD_DAYS", "168"))
    most = int(os.environ.get("GRAD_CHUNK", "262144"))
    default = ",".join(map(str, sizes))
    grad_sizes = [int(x) for x in os.environ.get("GRAD_SIZES", default).split(",")]
    s = triple_schedule(days)
    f, plan = dose_objective(s, days, jnp.float32)
    f_rev, _ = dose_objective(s, days, jnp.float32, reverse_mode=True)  # as the optimiser
    fwd = jax.jit(f)
    vg = jax.jit(jax.value_and_grad(f_rev))
    amount = jnp.asarray(s.amount, jnp.float32)
    lines += [
        "",
        f"Value-and-gradient w.r.t. {int(s.valid.sum())} dose amounts, {days} days, float32, "
        "reverse mode as the optimiser runs it (checkpoint per day, `Plan.reverse_mode`: the "
        "RK4 stages' hand-written reverse sweep), over the default plan's forward pass, XLA "
        "engine, chunks averaged:",
        "",
        "| patients | chunk | first call s | second call s | forward s | ratio | patient-days/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in grad_sizes:
        if over_budget():
            lines.append(f"| {n:,} | skipped: time budget of {BUDGET_S:.0f} s spent |")
            continue
        chunk = _divisor_chunk(n, most)
        parts = [
            cohort.arrays(np.arange(i, i + chunk), plan.drugs, np.float32)
            for i in range(0, n, chunk)
        ]

        def run(fn, parts=parts):
            out = [fn(amount, *a) for a in parts]
            jax.block_until_ready(out)
            return out

        t0 = time.perf_counter()
        run(vg)
        t1 = time.perf_counter()
        run(vg)
        t2 = time.perf_counter()
        run(fwd)
        t3 = time.perf_counter()
        run(fwd)
        t4 = time.perf_counter()
        row = (
            f"| {n:,} | {chunk:,} | {t1 - t0:.1f} | {t2 - t1:.2f} | {t4 - t3:.2f} | "
            f"{(t2 - t1) / (t4 - t3):.1f} | {n * days / (t2 - t1):,.0f} |"
        )
        emit(lines, row)


if __name__ == "__main__":
    main()

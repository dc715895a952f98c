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

from _common import dose_objective, triple_schedule, write_result  # noqa: E402

from vcohort.cohort import make_cohort  # noqa: E402
from vcohort.model import CSC_IMMUNE  # noqa: E402
from vcohort.simulate import simulate  # noqa: E402


def env_ints(name: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(name, default).split(",") if x]


def main() -> None:
    sizes = env_ints("SIZES", "10000,100000,1000000")
    days = int(os.environ.get("DAYS", "365"))
    chunks = {
        "xla": int(os.environ.get("CHUNK", "262144")),  # bounded by XLA's intermediates
        "pallas": int(os.environ.get("PALLAS_CHUNK", "1048576")),  # state + outputs only
    }
    engines = os.environ.get("ENGINES", "pallas,xla").split(",")
    s = triple_schedule(days)
    t0 = time.perf_counter()
    cohort = make_cohort(max(sizes), seed=1, precision="float32")
    t_cohort = time.perf_counter() - t0
    lines = [
        f"GPU forward benchmark: {jax.devices()[0].device_kind}, jax {jax.__version__}, "
        f"float32, triple combination, {days} days, RK4 dt 0.1, weekly saves; "
        f"{time.strftime('%Y-%m-%d')}.  Cohort of {max(sizes):,} drawn with its immune run-in "
        f"in {t_cohort:.1f} s.  'vs xla': largest relative difference of final diameters "
        "from the XLA engine on the same patients.",
        "",
        "| engine | patients | chunk | first call s | second call s | patient-days/s | "
        "failed | vs xla |",
        "|---|---|---|---|---|---|---|---|",
    ]
    finals: dict = {}
    for engine in engines:
        for n in sizes:
            c = cohort.subset(np.arange(n))
            chunk = min(n, chunks[engine])

            def run(c=c, chunk=chunk, engine=engine):
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
            other = finals.get(("xla" if engine != "xla" else "pallas", n))
            diff = ""
            if other is not None:
                diff = f"{np.nanmax(np.abs(other / finals[engine, n] - 1)):.1e}"
            row = (
                f"| {engine} | {n:,} | {chunk:,} | {t1 - t0:.1f} | {t2 - t1:.2f} | "
                f"{n * days / (t2 - t1):,.0f} | {int((tr.status != 0).sum())} | {diff} |"
            )
            lines.append(row)
            print(row, flush=True)
            write_result("gpu.md", "\n".join(lines))
    lines += gradient_rows(cohort, sizes)
    write_result("gpu.md", "\n".join(lines))
    lines += block_rows(cohort, s, days)
    text = "\n".join(lines)
    print(text)
    write_result("gpu.md", text)


def block_rows(cohort, s, days) -> list[str]:
    """Seconds per call of the fused engine for each kernel block size (patients per kernel
    instance) at ``BLOCK_PATIENTS`` patients in one chunk."""
    import jax.numpy as jnp

    from vcohort.drugs import get_drug
    from vcohort.fused import cohort_pallas_fn
    from vcohort.simulate import Plan

    n = min(int(os.environ.get("BLOCK_PATIENTS", "100000")), len(cohort))
    blocks = env_ints("BLOCKS", "32,64,256")
    if not blocks:
        return []
    drugs = tuple(get_drug(d) for d in s.drugs)
    plan = Plan(CSC_IMMUNE, drugs, days, 0.1, 7, jnp.float32)
    bolus, rate = s.step_inputs(plan.dt, plan.n_steps)
    args = (*cohort.arrays(np.arange(n), drugs, np.float32), bolus, rate)
    lines = [
        "",
        f"Fused kernel block size, {n:,} patients, {days} days (the engine's default is 128):",
        "",
        "| block | first call s | second call s | patient-days/s |",
        "|---|---|---|---|",
    ]
    for b in blocks:
        fn = jax.jit(cohort_pallas_fn(plan, block=b))
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        t1 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        t2 = time.perf_counter()
        row = f"| {b} | {t1 - t0:.1f} | {t2 - t1:.2f} | {n * days / (t2 - t1):,.0f} |"
        lines.append(row)
        print(row, flush=True)
    return lines


def _divisor_chunk(n: int, most: int) -> int:
    """The largest chunk <= ``most`` that splits ``n`` patients into equal chunks (one shape)."""
    k = -(-n // most)
    while n % k:
        k += 1
    return n // k


def gradient_rows(cohort, sizes) -> list[str]:
    """Value-and-gradient of the cohort mean log final diameter w.r.t. every dose amount
    (reverse mode, what schedule optimisation uses), in equal patient chunks whose gradients
    are averaged, next to the forward pass of the same function; float32."""
    import jax.numpy as jnp

    days = int(os.environ.get("GRAD_DAYS", "168"))
    most = int(os.environ.get("GRAD_CHUNK", "262144"))
    default = ",".join(map(str, sizes))
    grad_sizes = [int(x) for x in os.environ.get("GRAD_SIZES", default).split(",")]
    s = triple_schedule(days)
    f, plan = dose_objective(s, days, jnp.float32)
    fwd = jax.jit(f)
    vg = jax.jit(jax.value_and_grad(f))
    amount = jnp.asarray(s.amount, jnp.float32)
    lines = [
        "",
        f"Value-and-gradient w.r.t. {int(s.valid.sum())} dose amounts, {days} days, float32, "
        "reverse mode (checkpoint per day and RK4 stage), chunks averaged:",
        "",
        "| patients | chunk | first call s | second call s | forward s | ratio | patient-days/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in grad_sizes:
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
        lines.append(row)
        print(row, flush=True)
    return lines


if __name__ == "__main__":
    main()

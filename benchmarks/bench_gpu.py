"""GPU benchmark (float32): the triple combination for 10^4 - 10^6 patients, one year forward,
and value-and-gradient w.r.t. every dose amount over 24 weeks (``GRAD_DAYS``).

    bash benchmarks/gpu.sh            # on a machine with an NVIDIA GPU and jax[cuda]

Writes benchmarks/results/gpu.md (or $OUT/gpu.md when OUT is set).  Reports patient-days per
second of a second (compiled) call per cohort size, compile time, and the time for 10^6
patient-years.
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


def main() -> None:
    sizes = [int(x) for x in os.environ.get("SIZES", "10000,100000,1000000").split(",")]
    days = int(os.environ.get("DAYS", "365"))
    big_chunk = int(os.environ.get("CHUNK", "262144"))
    s = triple_schedule(days)
    t0 = time.perf_counter()
    cohort = make_cohort(max(sizes), seed=1, precision="float32")
    t_cohort = time.perf_counter() - t0
    lines = [
        f"GPU forward benchmark: {jax.devices()[0].device_kind}, jax {jax.__version__}, "
        f"float32, triple combination, {days} days, RK4 dt 0.1, weekly saves; "
        f"{time.strftime('%Y-%m-%d')}.  Cohort of {max(sizes):,} drawn with its immune run-in "
        f"in {t_cohort:.1f} s.",
        "",
        "| patients | chunk | first call s | second call s | patient-days/s | failed |",
        "|---|---|---|---|---|---|",
    ]
    for n in sizes:
        c = cohort.subset(np.arange(n))
        chunk = min(n, big_chunk)

        def run(c=c, chunk=chunk):
            return simulate(
                CSC_IMMUNE, c, s, days, precision="float32", chunk_size=chunk, progress=False
            )

        t0 = time.perf_counter()
        run()
        t1 = time.perf_counter()
        tr = run()
        t2 = time.perf_counter()
        row = (
            f"| {n:,} | {chunk:,} | {t1 - t0:.1f} | {t2 - t1:.2f} | "
            f"{n * days / (t2 - t1):,.0f} | {int((tr.status != 0).sum())} |"
        )
        lines.append(row)
        print(row, flush=True)
    lines += gradient_rows(cohort, sizes)
    text = "\n".join(lines)
    print(text)
    write_result("gpu.md", text)


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

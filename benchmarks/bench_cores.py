"""Forward throughput on one JAX CPU device against one device per core (`vcohort.cores`).

    python benchmarks/bench_cores.py [--patients 8192] [--days 60] [--rounds 2]

Each configuration runs in its own process (the CPU device count is fixed when JAX starts):
`simulate` of the triple combination without run-in, 4,096-patient chunks sharded over the
devices, best of 3 calls after a compiling one, float64 and float32; the configurations
alternate for ``--rounds`` rounds and each row keeps its best, because the machine is shared.
Prints one Markdown table and writes benchmarks/results/cores.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time

from _common import write_result

from vcohort.cores import available_cores

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from vcohort.cores import use_cpu_cores
    use_cpu_cores({devices})
    import jax
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, {here!r})
    import numpy as np
    import jax.numpy as jnp
    from _common import peak_elementwise, peak_matmul, rhs_cost, triple_schedule
    from vcohort.cohort import make_cohort
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import simulate
    n, days = {patients}, {days}
    s = triple_schedule(days)
    c = make_cohort(n, seed=1, runin_days=0)
    out = {{}}
    for prec in ("float64", "float32"):
        ts = []
        for _ in range(4):
            t0 = time.perf_counter()
            simulate(CSC_IMMUNE, c, s, days, precision=prec, progress=False)
            ts.append(time.perf_counter() - t0)
        dt = jnp.float64 if prec == "float64" else jnp.float32
        p, _, _, y0 = c.arrays(np.arange(1024), (), np.dtype(dt))
        flops = 4 * rhs_cost(p, y0, dt)[0]["flops"] / 1024 * 10  # per patient-day, dt 0.1
        out[prec] = dict(first=ts[0], best=min(ts[1:]), flops=flops)
        if {devices} == 1:  # the machine's peaks, measured once, as in bench_flops.py
            out[prec].update(matmul=peak_matmul(dt), fma=peak_elementwise(dt, 4096, "fma"))
    print("RESULT" + json.dumps(out))
    """
)


def run(devices: int, patients: int, days: int) -> dict:
    from pathlib import Path

    code = CHILD.format(
        devices=devices, here=str(Path(__file__).parent), patients=patients, days=days
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=1200
    )
    line = [x for x in res.stdout.splitlines() if x.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


def jax_version() -> str:
    from importlib.metadata import version

    return version("jax")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=8192)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    cores = available_cores()
    configs = sorted({1, cores})
    best: dict = {}
    for _ in range(a.rounds):
        for d in configs:
            r = run(d, a.patients, a.days)
            for prec, v in r.items():
                k = (d, prec)
                if k not in best or v["best"] < best[k]["best"]:
                    best[k] = v
    rows = []
    for prec in ("float64", "float32"):
        one = best[(1, prec)]
        for d in configs:
            v = best[(d, prec)]
            rate = a.patients * a.days / v["best"]
            gf = rate * v["flops"]
            rows.append(
                f"| {prec} | {d} | {v['first']:.1f} | {v['best']:.2f} | {rate:,.0f} | "
                f"{one['best'] / v['best']:.2f} | {gf / 1e9:.2f} | "
                f"{100 * gf / one['matmul']:.1f}% | {100 * gf / one['fma']:.0f}% |"
            )
    text = "\n".join(
        [
            f"CPU devices: {a.patients:,} patients (no run-in), {a.days} days, triple combination, "
            f"4,096-patient chunks sharded over the devices, {cores} CPU cores, best of 3 calls "
            f"per process and of {a.rounds} alternating rounds; jax {jax_version()}, "
            f"{time.strftime('%Y-%m-%d')}.  One device: XLA splits each kernel over its threads; "
            "one device per core (`vcohort.cores.use_cpu_cores`, the command line's default): "
            "each core runs its own share of the patients.  GFLOP/s: patient-days/s x the "
            "right-hand side's FLOPs (XLA cost analysis, 4 RK4 stages x 10 steps a day; PK and "
            "drug effects not counted, so a lower bound); peaks as in bench_flops.py (2048x2048 "
            "matrix product; a loop of fused multiply-add kernels over 4,096 elements), "
            "measured in the one-device process.",
            "",
            "| precision | CPU devices | first call s | best s | patient-days/s | speed-up | "
            "GFLOP/s | of matmul peak | of fma-loop peak |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    write_result("cores.md", text)


if __name__ == "__main__":
    main()

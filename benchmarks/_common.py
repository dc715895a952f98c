"""Pieces shared by the benchmark scripts: the triple-combination regimen, best-of timing and
the results folder (each script writes one Markdown table there)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vcohort.dosing import Schedule, compile_schedule, parse_regimen

# the standard triple combination (the catalogue's clinical doses)
TRIPLE = (
    "wnt974 10 mg every 24 h",
    "pembrolizumab 200 mg every 21 d over 30 min",
    "cb839 800 mg every 12 h",
)
RESULTS = Path(__file__).parent / "results"


def triple_schedule(days: int) -> Schedule:
    return compile_schedule([parse_regimen(r) for r in TRIPLE], float(days))


def best_time(fn, *args, repeat: int = 3) -> float:
    """Best wall time of ``fn(*args)`` over ``repeat`` runs, after one compiling call."""
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return min(ts)


def write_result(name: str, text: str) -> Path:
    """Write ``text`` to ``results/NAME`` (or ``$OUT/NAME`` when OUT is set, as on the GPU
    machine) and return the path."""
    out = Path(os.environ.get("OUT", RESULTS))
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(text + "\n")
    return path


def dose_objective(schedule: Schedule, days: int, dtype, reverse_mode: bool = False):
    """(objective(amount, *cohort_args), plan): the cohort mean of log final diameter under
    ``schedule`` with its dose-slot amounts as the argument (what schedule optimisation
    differentiates); cohort arguments from ``cohort.arrays(idx, plan.drugs, dtype)``;
    ``reverse_mode`` as `vcohort.simulate.Plan.reverse_mode`."""
    import jax.numpy as jnp

    from vcohort.drugs import get_drug
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import Plan, cohort_fn

    drugs = tuple(get_drug(d) for d in schedule.drugs)
    plan = Plan(CSC_IMMUNE, drugs, days, 0.1, days, dtype, reverse_mode=reverse_mode)
    grid = schedule.step_grid(plan.dt, plan.n_steps)
    f = cohort_fn(plan)

    def objective(amount, *args):
        bolus, rate = grid.scatter(amount, jnp)
        return jnp.mean(jnp.log(f(*args, bolus, rate)["daily"]["diameter_mm"][:, -1]))

    return objective, plan


# ---------------------------------------------------------------- FLOP counting and peaks
def rhs_cost(p: dict, y0: dict, dtype) -> tuple[dict, int]:
    """XLA's cost analysis of one vmapped right-hand side of the CSC-immune model for the whole
    cohort (``flops``, ``transcendentals``), and its divisions per patient (from the jaxpr)."""
    import jax.numpy as jnp

    from vcohort.model import CSC_IMMUNE

    n = next(iter(y0.values())).shape[0]
    eff = {ch: jnp.zeros(n, dtype) for ch in CSC_IMMUNE.effect_channels}
    one = lambda y, q, e: CSC_IMMUNE.rhs(y, q, e, jnp, 1.0)  # noqa: E731
    cost = cost_of(jax.jit(jax.vmap(one)).lower(y0, p, eff).compile())
    jaxpr = jax.make_jaxpr(one)(y0, p, eff)
    return cost, sum(q.primitive.name == "div" for q in jaxpr.eqns)


def cost_of(compiled) -> dict:
    ca = compiled.cost_analysis()
    if isinstance(ca, list | tuple):
        ca = ca[0]
    return {k: float(ca.get(k, float("nan"))) for k in ("flops", "transcendentals")}


def peak_matmul(dtype, n: int = 2048) -> float:
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    f = jax.jit(lambda x: jnp.matmul(x, x, precision=lax.Precision.HIGHEST))  # no TF32
    return 2.0 * n**3 / best_time(f, a)


def peak_elementwise(dtype, size: int, kind: str, chains: int = 8, depth: int = 16) -> float:
    """FLOP/s of a loop of one fused elementwise kernel over ``size`` elements per trip:
    ``chains`` independent chains of ``depth`` updates (``fma``: x*a + b, 2 FLOPs; ``div``:
    b / (x + a), 2 FLOPs), repeated over 2000 loop trips."""
    trips = 2000
    coef = [(1.0 - 1e-3 * (j + 1), 1e-3 * (j + 1)) for j in range(chains)]

    def body(_, xs):
        out = []
        for x, (a, b) in zip(xs, coef, strict=True):
            for _ in range(depth):
                x = x * a + b if kind == "fma" else b / (x + a)
            out.append(x)
        return tuple(out)

    f = jax.jit(lambda xs: lax.fori_loop(0, trips, body, xs))
    x0 = tuple(jnp.full(size, 0.5 + 0.01 * j, dtype) for j in range(chains))
    return 2.0 * chains * depth * size * trips / best_time(f, x0)

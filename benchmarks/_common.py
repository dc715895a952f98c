"""Pieces shared by the benchmark scripts: the triple-combination regimen, best-of timing and
the results folder (each script writes one Markdown table there)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import jax

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


def dose_objective(schedule: Schedule, days: int, dtype):
    """(objective(amount, *cohort_args), plan): the cohort mean of log final diameter under
    ``schedule`` with its dose-slot amounts as the argument (what schedule optimisation
    differentiates); cohort arguments from ``cohort.arrays(idx, plan.drugs, dtype)``."""
    import jax.numpy as jnp

    from vcohort.drugs import get_drug
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import Plan, cohort_fn

    drugs = tuple(get_drug(d) for d in schedule.drugs)
    plan = Plan(CSC_IMMUNE, drugs, days, 0.1, days, dtype)
    grid = schedule.step_grid(plan.dt, plan.n_steps)
    f = cohort_fn(plan)

    def objective(amount, *args):
        bolus, rate = grid.scatter(amount, jnp)
        return jnp.mean(jnp.log(f(*args, bolus, rate)["daily"]["diameter_mm"][:, -1]))

    return objective, plan

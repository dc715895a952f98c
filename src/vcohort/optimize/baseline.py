"""Derivative-free baseline with the same simulation budget: a (1+1) evolution strategy with
the one-fifth success rule (Rechenberg 1973; Kern et al. 2004, Natural Computing 3:77) on the
same sigmoid-bounded decision variables, minimising the objective plus a quadratic penalty on
constraint violations, with common random numbers (one fixed training mini-batch)."""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from vcohort.cohort import Cohort
from vcohort.model import CSC_IMMUNE, Model
from vcohort.optimize.loop import OptResult, _placer, loss_devices
from vcohort.optimize.problem import (
    NoMultipliers,
    Problem,
    layout,
    make_loss,
    to_amount,
    to_theta,
)

PENALTY = 1e3  # assumption: large enough that any violation over ~1% outweighs the objective


def evolution_strategy(
    problem: Problem,
    cohort: Cohort,
    *,
    simulations: int,
    batch_size: int | None = None,
    sigma0: float = 0.5,
    seed: int = 0,
    model: Model = CSC_IMMUNE,
    progress: bool = False,
    devices=None,
) -> OptResult:
    """Best schedule found with ``simulations`` forward cohort simulations (mini-batch);
    ``devices`` as in `vcohort.optimize.optimize` (`loss_devices`)."""
    problem.validate()
    if not isinstance(simulations, int) or simulations < 2:
        raise ValueError(f"simulations={simulations!r} must be an integer >= 2")
    lay = layout(problem)
    loss, plan = make_loss(problem, lay, model, soft=False)  # the protocol's own holds
    np_dtype = np.float64 if plan.dtype == jnp.float64 else np.float32
    rng = np.random.default_rng(seed)
    n = len(cohort)
    idx = (
        np.arange(n)
        if batch_size is None or batch_size >= n
        else np.sort(rng.choice(n, batch_size, replace=False))
    )
    args = _placer(loss_devices(devices, idx.size))(cohort.arrays(idx, plan.drugs, np_dtype))

    @jax.jit
    def value(theta, args):
        _, (terms, g, obj) = loss(theta, NoMultipliers(), 1.0, args)
        viol = sum(jnp.sum(jnp.maximum(0.0, v) ** 2) for v in g.values()) if g else 0.0
        gmax = {k: jnp.max(v) for k, v in g.items()}
        return obj + PENALTY * viol, obj, gmax

    t0 = time.perf_counter()
    theta = jnp.asarray(to_theta(lay, lay.schedule.amount), plan.dtype)
    f, obj, gmax = value(theta, args)
    best = (float(f), theta, float(obj), {k: float(v) for k, v in gmax.items()})
    sigma = sigma0
    hist = [
        {
            "iteration": 0,
            "penalised": best[0],
            "objective": best[2],
            "sigma": sigma,
            "wall_s": time.perf_counter() - t0,
        }
    ]
    for it in range(1, simulations):
        z = jnp.asarray(rng.standard_normal(theta.shape), plan.dtype)
        child = best[1] + sigma * z
        f, obj, gmax = value(child, args)
        if float(f) < best[0]:
            best = (float(f), child, float(obj), {k: float(v) for k, v in gmax.items()})
            sigma *= math.exp(1.0 / 3.0)
        else:
            sigma *= math.exp(-1.0 / 12.0)
        hist.append(
            {
                "iteration": it,
                "penalised": best[0],
                "objective": best[2],
                "sigma": sigma,
                "wall_s": time.perf_counter() - t0,
            }
        )
    amount = np.asarray(to_amount(lay, best[1]), dtype=np.float64)
    return OptResult(
        problem=problem,
        layout=lay,
        theta=np.asarray(best[1]),
        amount=amount,
        history=pd.DataFrame(hist),
        constraints=best[3],
        simulations=simulations,
        wall_s=time.perf_counter() - t0,
    )

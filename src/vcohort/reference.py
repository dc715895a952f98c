"""Accuracy reference: the same model and doses solved by diffrax (adaptive Tsit5, float64).

PK amounts are ordinary ODE states here (no exact propagator, no step-mean concentrations),
drug effects read the instantaneous concentration, and the solve restarts at every step
boundary of the dose grid so that boluses are exact jumps and infusion rates exact
discontinuities.  ``throw=False``: a patient the solver cannot finish gets status 3 instead of
stopping the cohort (diffrax ``RESULTS``).  Slow by design; use a handful of patients.
"""

from __future__ import annotations

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vcohort.cohort import Cohort
from vcohort.dosing import Schedule
from vcohort.model import Model
from vcohort.simulate import (
    STATUS_MAX_STEPS,
    Trajectories,
    _status,
    prepare,
)


def full_rhs(model: Model, drugs, y: dict, a: tuple, p: dict, ind: list, rate, xp, td=1.0):
    """Derivatives of biology ``y`` and PK amounts ``a`` (tuple per drug) with infusion
    ``rate`` (mg/day per drug into its dosing compartment)."""
    conc = []
    da = []
    for q, drug in enumerate(drugs):
        A = drug.rate_matrix(ind[q])  # noqa: N806
        n = len(drug.compartments)
        obs = drug.observed_indices()
        conc.append({k: a[q][i] / ind[q]["V1"] for k, i in obs.items()})
        d = [sum(A[i][j] * a[q][j] for j in range(n)) for i in range(n)]
        d[drug.dosing_compartment] = d[drug.dosing_compartment] + rate[q]
        da.append(tuple(d))
    from vcohort.simulate import combine_effects

    e = combine_effects(drugs, conc, model)
    return model.rhs(y, p, e, xp, td), tuple(da)


def simulate_reference(
    model: Model,
    cohort: Cohort,
    schedule: Schedule | None,
    days: int,
    *,
    dt: float = 0.1,
    save_every: int = 7,
    rtol: float = 1e-9,
    atol: float = 1e-9,
    max_steps: int = 4096,
) -> Trajectories:
    """diffrax reference solution on the same step grid of doses as `vcohort.simulate`."""
    plan, schedule = prepare(model, schedule, days, dt=dt, save_every=save_every,
                             precision="float64")
    drugs = plan.drugs
    cohort.check_for(model, drugs, schedule.needs())
    bolus, rate = schedule.step_inputs(plan.dt, plan.n_steps)
    n_sub = plan.n_sub
    dtype = jnp.float64

    def one(p, pk, cov, y0):
        wt, bsa = cov["weight_kg"], cov["bsa_m2"]
        ind = [drug.individual(pk[drug.name], wt) for drug in drugs]
        # scale to O(1) so one relative/absolute tolerance fits all states
        scale_y = {k: jnp.maximum(jnp.abs(y0[k]), 1e-12) for k in model.states}

        def vf(t, u, args):
            ys, a, _ = u
            r = args
            y = {k: ys[k] * scale_y[k] for k in model.states}
            dy, da = full_rhs(model, drugs, y, a, p, ind, r, jnp, plan.tumour_dynamics)
            if not drugs:  # diffrax cannot carry an empty tuple: a dummy compartment
                da = ((jnp.zeros((), dtype),),)
            return ({k: dy[k] / scale_y[k] for k in model.states}, da, jnp.zeros((), dtype))

        term = dfx.ODETerm(vf)
        solver = dfx.Tsit5()
        ctrl = dfx.PIDController(rtol=rtol, atol=atol)

        def step(carry, inp):
            (ys, a, z), t, fail = carry
            b_in, r_in = inp
            bd = b_in[:, 0] + b_in[:, 1] * wt + b_in[:, 2] * bsa
            rd = r_in[:, 0] + r_in[:, 1] * wt + r_in[:, 2] * bsa
            if drugs:
                a = tuple(
                    tuple(x + (bd[q] if i == drug.dosing_compartment else 0.0)
                          for i, x in enumerate(a[q]))
                    for q, drug in enumerate(drugs)
                )
            sol = dfx.diffeqsolve(term, solver, t, t + plan.dt, plan.dt / 4, (ys, a, z), args=rd,
                                  stepsize_controller=ctrl, max_steps=max_steps, throw=False,
                                  saveat=dfx.SaveAt(t1=True))
            u = jax.tree_util.tree_map(lambda v: v[-1], sol.ys)
            return (u, t + plan.dt, fail | (sol.result != dfx.RESULTS.successful)), None

        def day(carry, inp):
            carry, _ = lax.scan(step, carry, inp)
            ys = carry[0][0]
            y = {k: ys[k] * scale_y[k] for k in model.states}
            return carry, (y, model.daily_outputs(y, p))

        ys0 = {k: jnp.ones((), dtype) for k in model.states}
        a0 = tuple(tuple(jnp.zeros((), dtype) for _ in d.compartments) for d in drugs)
        a0 = a0 if drugs else ((jnp.zeros((), dtype),),)
        nd = len(drugs)
        xs = (bolus.reshape(plan.days, n_sub, nd, 3), rate.reshape(plan.days, n_sub, nd, 3))
        carry, (y_daily, out_daily) = lax.scan(day, ((ys0, a0, jnp.zeros((), dtype)),
                                                     jnp.zeros((), dtype),
                                                     jnp.zeros((), bool)), xs)
        y_daily = {k: jnp.concatenate([y0[k][None], v]) for k, v in y_daily.items()}
        out0 = model.daily_outputs(y0, p)
        out_daily = {k: jnp.concatenate([out0[k][None], v]) for k, v in out_daily.items()}
        return y_daily, out_daily, carry[2]

    fn = jax.jit(jax.vmap(one))
    args = cohort.arrays(np.arange(len(cohort)), drugs, np.float64)
    y_daily, out_daily, fail = jax.tree_util.tree_map(np.asarray, fn(*args[:4]))
    days_idx = plan.save_days.astype(int)
    states = {k: v[:, days_idx] for k, v in y_daily.items()}
    status, bad_day = _status(states, out_daily)
    status[fail & (status == 0)] = STATUS_MAX_STEPS
    return Trajectories(np.asarray(cohort.patient_id), plan.save_days, states, out_daily, {},
                        status, bad_day, tuple(d.name for d in drugs))

"""Accuracy reference: the same model and doses solved by diffrax (adaptive Tsit5, float64).

PK amounts are ordinary ODE states here (no exact propagator, no step-mean concentrations),
drug effects read the instantaneous concentration, and the solve restarts at every dose event
of the step grid (and every day boundary) so that boluses are exact jumps and infusion rates
exact discontinuities.  ``throw=False``: a patient the solver cannot finish gets status 3 instead of
stopping the cohort (diffrax ``RESULTS``).  Slow by design; use a handful of patients.
"""

from __future__ import annotations

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from scipy.integrate import solve_ivp

from vcohort.cohort import Cohort
from vcohort.dosing import Schedule
from vcohort.drugs import get_drug
from vcohort.model import CSC_IMMUNE, Model
from vcohort.simulate import (
    STATUS_MAX_STEPS,
    Trajectories,
    _status,
    combine_effects,
    prepare,
)

_JIT: dict = {}


def full_rhs(model: Model, drugs, y: dict, a: tuple, p: dict, ind: list, rate, xp, td=1.0):
    """Derivatives of biology ``y`` and PK amounts ``a`` (tuple per drug) with infusion
    ``rate`` (mg/day per drug into its dosing compartment)."""
    conc = []
    da = []
    inflow: dict = {}
    for q, drug in enumerate(drugs):
        if drug.target_state is not None:  # dosed straight into a model state
            inflow[drug.target_state] = inflow.get(drug.target_state, 0.0) + rate[q]
            da.append((0.0 * rate[q],))  # a dummy compartment (diffrax needs a leaf)
            continue
        A = drug.rate_matrix(ind[q])  # noqa: N806
        n = len(drug.compartments)
        obs = drug.observed_indices()
        conc.append({k: a[q][i] / ind[q]["V1"] for k, i in obs.items()})
        d = [sum(A[i][j] * a[q][j] for j in range(n)) for i in range(n)]
        d[drug.dosing_compartment] = d[drug.dosing_compartment] + rate[q]
        da.append(tuple(d))
    pk_drugs = [d for d in drugs if d.target_state is None]
    e = combine_effects(pk_drugs, conc, model)
    dy = model.rhs(y, p, e, xp, td)
    return {k: dy[k] + inflow[k] if k in inflow else dy[k] for k in dy}, tuple(da)


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
    max_steps: int = 16384,
) -> Trajectories:
    """diffrax solution on the same step grid of doses as `vcohort.simulate` (all states are
    scaled by their initial value so one ``rtol``/``atol`` fits cells and nM alike)."""
    if schedule is not None:
        schedule.refuse_rules("the diffrax reference solver")
    plan, schedule = prepare(
        model, schedule, days, dt=dt, save_every=save_every, precision="float64"
    )
    drugs = plan.drugs
    cohort.check_for(model, drugs, schedule.needs())
    bolus, rate = schedule.step_inputs(plan.dt, plan.n_steps)
    n_sub = plan.n_sub
    dtype = jnp.float64
    # segments: split at every step where a dose is given or an infusion rate changes, and at
    # every day boundary (daily outputs); inside a segment the vector field is smooth.
    change = np.zeros(plan.n_steps + 1, dtype=bool)
    change[0] = change[-1] = True
    change[:-1] |= np.any(bolus != 0, axis=(1, 2))
    change[1:-1] |= np.any(rate[1:] != rate[:-1], axis=(1, 2))
    change[::n_sub] = True
    edges = np.where(change)[0]
    seg_t0 = jnp.asarray(edges[:-1] * plan.dt, dtype)
    seg_t1 = jnp.asarray(edges[1:] * plan.dt, dtype)
    seg_b = jnp.asarray(bolus[edges[:-1]], dtype)
    seg_r = jnp.asarray(rate[edges[:-1]], dtype)
    day_end = jnp.asarray(np.where(edges[1:] % n_sub == 0)[0])

    def one(p, pk, cov, y0):
        wt, bsa = cov["weight_kg"], cov["bsa_m2"]
        ind = [drug.individual(pk[drug.name], wt) for drug in drugs]
        # scale to O(1) so one relative/absolute tolerance fits all states
        # (a state that starts at 0, e.g. a drug carried as a state, is scaled by 1)
        scale_y = {k: jnp.where(y0[k] != 0, jnp.abs(y0[k]), 1.0) for k in model.states}

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

        def segment(carry, seg):
            (ys, a, z), fail = carry
            t0, t1, bd_in, rd_in = seg
            bd = bd_in[:, 0] + bd_in[:, 1] * wt + bd_in[:, 2] * bsa
            rd = rd_in[:, 0] + rd_in[:, 1] * wt + rd_in[:, 2] * bsa
            for q, drug in enumerate(drugs):
                if drug.target_state is not None:
                    k = drug.target_state
                    ys = {**ys, k: ys[k] + bd[q] / scale_y[k]}
            if drugs:
                a = tuple(
                    tuple(
                        x + (bd[q] if i == drug.dosing_compartment else 0.0)
                        for i, x in enumerate(a[q])
                    )
                    if drug.target_state is None
                    else a[q]
                    for q, drug in enumerate(drugs)
                )
            sol = dfx.diffeqsolve(
                term,
                solver,
                t0,
                t1,
                None,
                (ys, a, z),
                args=rd,
                stepsize_controller=ctrl,
                max_steps=max_steps,
                throw=False,
                saveat=dfx.SaveAt(t1=True),
            )
            u = jax.tree_util.tree_map(lambda v: v[-1], sol.ys)
            ys_end = u[0]
            y = {k: ys_end[k] * scale_y[k] for k in model.states}
            carry = (u, fail | (sol.result != dfx.RESULTS.successful))
            return carry, (y, model.daily_outputs(y, p), sol.stats["num_steps"])

        ys0 = {k: y0[k] / scale_y[k] for k in model.states}  # 1, or 0 for a zero state
        a0 = tuple(
            tuple(jnp.zeros((), dtype) for _ in (d.compartments or ("dummy",))) for d in drugs
        )
        a0 = a0 if drugs else ((jnp.zeros((), dtype),),)
        carry, (y_seg, out_seg, nsteps) = lax.scan(
            segment,
            ((ys0, a0, jnp.zeros((), dtype)), jnp.zeros((), bool)),
            (seg_t0, seg_t1, seg_b, seg_r),
        )
        y_daily = {k: jnp.concatenate([y0[k][None], v[day_end]]) for k, v in y_seg.items()}
        out0 = model.daily_outputs(y0, p)
        out_daily = {k: jnp.concatenate([out0[k][None], v[day_end]]) for k, v in out_seg.items()}
        return y_daily, out_daily, carry[1], jnp.sum(nsteps)

    key = (
        id(model),
        tuple(d.name for d in drugs),
        plan.days,
        plan.dt,
        rtol,
        atol,
        max_steps,
        schedule.time.tobytes(),
        schedule.duration.tobytes(),
        np.asarray(schedule.amount).tobytes(),
        schedule.kind.tobytes(),
    )
    if key not in _JIT:  # segments depend on the schedule, so it is part of the key
        _JIT[key] = jax.jit(jax.vmap(one))
    fn = _JIT[key]
    args = cohort.arrays(np.arange(len(cohort)), drugs, np.float64)
    y_daily, out_daily, fail, nsteps = jax.tree_util.tree_map(np.asarray, fn(*args[:4]))
    days_idx = plan.save_days.astype(int)
    states = {k: v[:, days_idx] for k, v in y_daily.items()}
    status, bad_day = _status(states, out_daily)
    status[fail & (status == 0)] = STATUS_MAX_STEPS
    return Trajectories(
        np.asarray(cohort.patient_id),
        plan.save_days,
        states,
        out_daily,
        {},
        status,
        bad_day,
        tuple(d.name for d in drugs),
        timings={"solver_steps": nsteps},
    )


# ---------------------------------------------------------------------------- scipy


def solve_patient_scipy(
    cohort, i, schedule, days, *, dt, method="LSODA", rtol=1e-10, model=CSC_IMMUNE
):
    """Diameter (days+1,) and final state dict of patient ``i``.  Doses sit on the dt-grid of
    the production simulator (infusions rounded to whole steps) so both solve the same problem."""
    schedule.refuse_rules("the scipy reference solver")  # it would give every planned dose
    drugs = [get_drug(d) for d in schedule.drugs]
    states = model.states
    p = {k: float(v[i]) for k, v in cohort.params.items()}
    wt, bsa = float(cohort.covariates["weight_kg"][i]), float(cohort.covariates["bsa_m2"][i])
    ind = [d.individual({k: float(v[i]) for k, v in cohort.pk[d.name].items()}, wt) for d in drugs]
    A = [np.array(d.rate_matrix(x), dtype=float) for d, x in zip(drugs, ind, strict=True)]
    ncmt = [len(d.compartments) for d in drugs]
    offs = np.cumsum([len(states)] + ncmt)
    n_steps = int(round(days / dt))
    bolus, rate = schedule.step_inputs(dt, n_steps)
    scale = np.array([1.0, wt, bsa])
    b = bolus @ scale  # (steps, drugs) mg
    r = rate @ scale  # mg/day
    # event steps: where bolus or rate changes
    change = np.zeros(n_steps, dtype=bool)
    change[0] = True
    change |= np.any(b != 0, axis=1)
    change[1:] |= np.any(r[1:] != r[:-1], axis=1)
    edges = list(np.where(change)[0]) + [n_steps]

    def f(t, u, rd):
        y = dict(zip(states, u[: len(states)], strict=True))
        conc, du_pk = [], []
        for q, d in enumerate(drugs):
            a = u[offs[q] : offs[q + 1]]
            obs = d.observed_indices()
            conc.append({k: a[j] / ind[q]["V1"] for k, j in obs.items()})
            da = A[q] @ a
            da[d.dosing_compartment] += rd[q]
            du_pk.append(da)
        e = combine_effects(drugs, conc, model)
        dy = model.rhs(y, p, e, np)
        return np.concatenate([[dy[s] for s in states]] + du_pk)

    u = np.concatenate([[float(cohort.y0[s][i]) for s in states]] + [np.zeros(n) for n in ncmt])
    atol = np.concatenate(
        [1e-12 * np.maximum(np.abs(u[: len(states)]), 1e-6), np.full(sum(ncmt), 1e-12)]
    )
    diam = np.full(days + 1, np.nan)
    daily_t = np.arange(days + 1.0)
    diam[0] = _diam(u)
    for k0, k1 in zip(edges[:-1], edges[1:], strict=True):
        for q, d in enumerate(drugs):
            u[offs[q] + d.dosing_compartment] += b[k0, q]
        t0, t1 = k0 * dt, k1 * dt
        inside = daily_t[(daily_t > t0 + 1e-12) & (daily_t <= t1 + 1e-12)]
        sol = solve_ivp(
            f,
            (t0, t1),
            u,
            method=method,
            rtol=rtol,
            atol=atol,
            args=(r[k0],),
            t_eval=np.unique(np.concatenate([inside, [t1]])),
        )
        assert sol.success, sol.message
        for t, col in zip(sol.t, sol.y.T, strict=True):
            if np.any(np.isclose(t, inside)):
                diam[int(round(t))] = _diam(col)
        u = sol.y[:, -1].copy()
    return diam, dict(zip(states, u[: len(states)], strict=True))


def _diam(u):
    from vcohort.model.csc_immune import diameter_mm

    return float(diameter_mm(u[0], u[1], u[2]))

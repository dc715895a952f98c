"""An independent reference: scipy ``solve_ivp`` on the same right-hand side (numpy), with PK
as ordinary ODE states, doses applied as exact jumps/rate switches at their times, and drug
effects read from the instantaneous concentration.  One patient at a time."""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from vcohort.drugs import get_drug
from vcohort.model import CSC_IMMUNE
from vcohort.simulate import combine_effects


def solve_patient(cohort, i, schedule, days, *, dt, method="LSODA", rtol=1e-10, model=CSC_IMMUNE):
    """Diameter (days+1,) and final state dict of patient ``i``.  Doses sit on the dt-grid of
    the production simulator (infusions rounded to whole steps) so both solve the same problem."""
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
    atol = np.concatenate([1e-12 * np.maximum(np.abs(u[: len(states)]), 1e-6),
                           np.full(sum(ncmt), 1e-12)])
    diam = np.full(days + 1, np.nan)
    daily_t = np.arange(days + 1.0)
    diam[0] = _diam(u)
    for k0, k1 in zip(edges[:-1], edges[1:], strict=True):
        for q, d in enumerate(drugs):
            u[offs[q] + d.dosing_compartment] += b[k0, q]
        t0, t1 = k0 * dt, k1 * dt
        inside = daily_t[(daily_t > t0 + 1e-12) & (daily_t <= t1 + 1e-12)]
        sol = solve_ivp(f, (t0, t1), u, method=method, rtol=rtol, atol=atol, args=(r[k0],),
                        t_eval=np.unique(np.concatenate([inside, [t1]])))
        assert sol.success, sol.message
        for t, col in zip(sol.t, sol.y.T, strict=True):
            if np.any(np.isclose(t, inside)):
                diam[int(round(t))] = _diam(col)
        u = sol.y[:, -1].copy()
    return diam, dict(zip(states, u[: len(states)], strict=True))


def _diam(u):
    from vcohort.model.csc_immune import diameter_mm

    return float(diameter_mm(u[0], u[1], u[2]))

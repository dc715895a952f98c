"""Published models through the production engine (issue 5, part 1).

Each reference model (`vcohort.model.reference`) is checked against an *independent* scipy
``solve_ivp`` of the published equations, written out here again from the papers (not from
`vcohort.model.reference`), and against a qualitative result of its paper.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from vcohort.cohort import make_cohort
from vcohort.dosing import compile_schedule, parse_regimen
from vcohort.model import get_model
from vcohort.reference import simulate_reference
from vcohort.simulate import simulate
from vcohort.validation.check import Check, max_rel_error, worst


def _cohort(model_name: str, T0):
    m = get_model(model_name)
    c = make_cohort(len(T0), seed=0, model=m, variability=False)
    return m, c.replace(y0={**c.y0, "T": np.asarray(T0, dtype=float)})


# ---------------------------------------------------------------- Kuznetsov et al. 1994
KUZNETSOV = "Kuznetsov et al. 1994, Bull Math Biol 56:295 (BIOMD0000000762)"


def kuznetsov_scipy(E0: float, T0: float, days: int) -> np.ndarray:
    """Daily (E, T): Kuznetsov et al. 1994 eqs. (1)-(2) with their fitted values, LSODA."""
    s, p, g, m, d = 1.3e4, 0.1245, 2.019e7, 3.422e-10, 0.0412
    a, b, n = 0.18, 2.0e-9, 1.101e-7

    def f(t, u):
        E, T = u
        return [s + p * E * T / (g + T) - m * E * T - d * E, a * T * (1 - b * T) - n * E * T]

    sol = solve_ivp(
        f, (0, days), [E0, T0], method="LSODA", rtol=1e-10, atol=1e-6,
        t_eval=np.arange(days + 1.0),
    )  # fmt: skip
    if not sol.success:
        raise RuntimeError(sol.message)
    return sol.y


def kuznetsov_agreement(days: int = 120) -> Check:
    """Three initial sizes (dormant 1e6, 5e6; escaping 2e8), RK4 at dt 0.05 d vs LSODA."""
    sizes = [1e6, 5e6, 2e8]
    m, c = _cohort("kuznetsov1994", sizes)
    tr = simulate(m, c, None, days, dt=0.05, save_every=30, progress=False)
    err_T, err_E = 0.0, 0.0
    for i, T0 in enumerate(sizes):
        E, T = kuznetsov_scipy(3.2e5, T0, days)
        err_T = worst(err_T, max_rel_error(tr.daily["tumour_cells"][i], T))
        err_E = worst(err_E, max_rel_error(tr.daily["effector_cells"][i], E))
    chk = Check(
        "published.kuznetsov_scipy",
        "Kuznetsov 1994 through the engine agrees with an independent scipy solve",
        KUZNETSOV,
        {"max_rel_error_T": err_T, "max_rel_error_E": err_E, "days": days},
        note="vcohort RK4 (dt 0.05 d) vs LSODA (rtol 1e-10), daily values, T0 = 1e6, 5e6, 2e8.",
    )
    chk.require("finished (status 0)", np.all(tr.status == 0))
    chk.require("tumour cells within 1e-6 relative", err_T <= 1e-6)
    chk.require("effector cells within 1e-6 relative", err_E <= 1e-6)
    return chk


def kuznetsov_dormancy() -> Check:
    """Kuznetsov 1994: the same immune system holds a small tumour dormant (damped oscillations
    around ~1e7 cells) but a large one escapes to near capacity 1/b = 5e8."""
    sizes = [1e5, 1e6, 1e7, 5e7, 1e8, 3e8]
    m, c = _cohort("kuznetsov1994", sizes)
    tr = simulate(m, c, None, 400, save_every=100, progress=False)
    final = tr.daily["tumour_cells"][:, -1]
    capacity = 1.0 / 2.0e-9
    dormant = final < 0.05 * capacity
    chk = Check(
        "published.kuznetsov_dormancy",
        "Kuznetsov 1994: dormancy or escape depending on the initial tumour size",
        KUZNETSOV,
        {"initial_cells": sizes, "cells_day_400": final},
        note="Capacity 1/b = 5e8 cells; dormant = below 5% of capacity at day 400.",
    )
    chk.require(
        "tumours of 1e5-5e7 cells stay dormant, 1e8 and 3e8 escape",
        list(dormant) == [True, True, True, True, False, False],
    )
    chk.require("escaped tumours reach > 80% of capacity", np.all(final[~dormant] > 0.8 * capacity))
    return chk


# ---------------------------------------------------------------- de Pillis et al. 2009
DEPILLIS = "de Pillis et al. 2009, Comput Math Methods Med 10:165 (BIOMD0000000779)"
DP = dict(
    a=0.431, b=1.02e-9, c=2.9077e-13, d=2.34, l=2.09, s=3.8e-3, ef=0.111, f=0.0125,
    p=2.794e-13, pN=0.068, gN=2.5036e5, m=0.009, theta=2.5036e-3, q=3.422e-10, r1=2.9077e-11,
    r2=5.8467e-13, pI=2.971, gI=2.5036e3, u=4.417e-14, kappa=2.5036e3, j=0.01245, k=2.019e7,
    ab=2.25e9, beta=0.0063, KT=0.9, KN=0.0675, KL=0.0486, KC=0.034, dT=1.8328, dN=1.8328,
    dL=1.8328, dC=1.8328, gamma=0.5199, muI=11.7427, phi=2.38405e-7, omega=0.07874,
    zeta=2.5036e3,
)  # fmt: skip

# the catalogue protocol: chemo v_M = 1/day on days 0, 7, 14 (one day each), TIL 1e9 cells over
# day 7, IL-2 5e6 IU/L/day over days 8-12
PROTOCOL = ("chemo", "til", "il2")
INFUSIONS = [("M", t, t + 1, 1.0) for t in (0, 7, 14)] + [("L", 7, 8, 1e9), ("I", 8, 12, 5e6)]


def depillis_rhs(t, x, vM, vI, vL):
    """de Pillis et al. 2009, the six equations as published (CD8 kill
    D = d (L/T)^l / (s + (L/T)^l), patient-9 d, l, s)."""
    T, N, L, C, M, I = x
    P = DP
    D = P["d"] * (L / T) ** P["l"] / (P["s"] + (L / T) ** P["l"])
    dT = P["a"] * T * (1 - P["b"] * T) - P["c"] * N * T - D * T
    dT -= P["KT"] * (1 - np.exp(-P["dT"] * M)) * T
    dN = P["f"] * (P["ef"] * C - N) - P["p"] * N * T + P["pN"] * N * I / (P["gN"] + I)
    dN -= P["KN"] * (1 - np.exp(-P["dN"] * M)) * N
    dL = -P["theta"] * P["m"] * L / (P["theta"] + I) + P["j"] * T * L / (P["k"] + T)
    dL += -P["q"] * L * T + (P["r1"] * N + P["r2"] * C) * T
    dL += -P["u"] * L**2 * C * I / (P["kappa"] + I) - P["KL"] * (1 - np.exp(-P["dL"] * M)) * L
    dL += P["pI"] * L * I / (P["gI"] + I) + vL
    dC = P["beta"] * (P["ab"] - C) - P["KC"] * (1 - np.exp(-P["dC"] * M)) * C
    dM = -P["gamma"] * M + vM
    dI = -P["muI"] * I + P["phi"] * C + P["omega"] * L * I / (P["zeta"] + I) + vI
    return [dT, dN, dL, dC, dM, dI]


def depillis_scipy(T0: float, days: int, infusions) -> dict:
    """Daily states; ``infusions``: (state, start, stop, rate) piecewise-constant inputs,
    integrated segment by segment so every switch is an exact discontinuity."""
    idx = {"M": 0, "I": 1, "L": 2}
    cuts = {0.0, float(days)} | {t for _, a, b, _ in infusions for t in (a, b)}
    cuts = sorted(t for t in cuts if t <= days)
    x = np.array([T0, 2.5e8, 5.268e5, 2.25e9, 0.0, 1073.0])
    out = np.full((6, days + 1), np.nan)
    out[:, 0] = x
    for t0, t1 in zip(cuts[:-1], cuts[1:], strict=True):
        v = [0.0, 0.0, 0.0]
        for state, a, b, r in infusions:
            if a <= t0 < b:
                v[idx[state]] += r
        te = np.arange(np.ceil(t0), np.floor(t1) + 1)
        kw = dict(method="LSODA", rtol=1e-10, atol=1e-30, args=tuple(v))
        sol = solve_ivp(depillis_rhs, (t0, t1), x, t_eval=te, **kw)
        if not sol.success:
            raise RuntimeError(sol.message)
        out[:, te.astype(int)] = sol.y
        x = sol.y[:, -1] if sol.t[-1] == t1 else solve_ivp(depillis_rhs, (t0, t1), x, **kw).y[:, -1]
    return dict(zip("TNLCMI", out, strict=True))


def depillis_agreement(days: int = 10) -> Check:
    """Production RK4 and the diffrax reference path against LSODA (rtol 1e-10).

    Untreated, dt = 0.005 day reaches ~5e-8.  Treated, the TIL infusion makes the CD8
    self-regulation stiff (decay of L at several hundred per day), so the explicit RK4 needs
    dt = 0.00025 day (4000 steps a day) for 1e-6."""
    T0 = [5e6, 2e7, 1e8]
    m, c = _cohort("depillis2009", T0)
    cat = m.drug_catalogue()
    sched = compile_schedule([parse_regimen(r, cat) for r in PROTOCOL], float(days))
    runs = {
        "untreated_rk4": simulate(m, c, None, days, dt=0.005, save_every=1, progress=False),
        "treated_rk4": simulate(m, c, sched, days, dt=0.00025, save_every=1, progress=False),
        "treated_diffrax": simulate_reference(
            m, c, sched, days, dt=0.01, save_every=1, rtol=1e-11, atol=1e-16
        ),
    }
    refs = {
        (i, treated): depillis_scipy(t0, days, INFUSIONS if treated else [])
        for i, t0 in enumerate(T0)
        for treated in (False, True)
    }
    chk = Check(
        "published.depillis_scipy",
        "de Pillis 2009 through the engine agrees with an independent scipy solve",
        DEPILLIS,
        note=f"{days} days, T0 = 5e6, 2e7, 1e8; protocol {' + '.join(PROTOCOL)}; states T, N, "
        "L, C, I relative (M with an absolute floor of 1e-12, it starts at 0).  Treated RK4 needs "
        "dt 0.00025 d: the TIL infusion makes CD8 self-regulation stiff.",
    )
    for name, tr in runs.items():
        err = 0.0
        for i in range(len(T0)):
            ref = refs[(i, name != "untreated_rk4")]
            for k in "TNLCI":
                err = worst(err, max_rel_error(tr.states[k][i], ref[k]))
            dm = np.abs(tr.states["M"][i] - ref["M"]) - 1e-12
            err = worst(err, float(np.max(dm / np.maximum(np.abs(ref["M"]), 1e-300))))
        chk.values[f"max_rel_error_{name}"] = err
        chk.require(f"{name}: finished", np.all(tr.status == 0))
        chk.require(f"{name}: within 1e-6 relative", err <= 1e-6)
    return chk


def depillis_combination() -> Check:
    """de Pillis et al. (2006 J Theor Biol 238:841, updated by the 2009 model): a tumour that
    neither chemotherapy alone nor immunotherapy (TIL + IL-2) alone shrinks is cleared by the
    combination.  A 2e7-cell tumour over 90 days (production engine, dt = 0.002)."""
    from vcohort.runs import parse_arm, run_arms

    m, c = _cohort("depillis2009", [2e7])
    cat = m.drug_catalogue()
    specs = ("untreated", "chemo=chemo", "immuno=til + il2", "combination=chemo + til + il2")
    arms = [parse_arm(a, cat) for a in specs]
    trajs, ep, summary, _ = run_arms(m, c, arms, 90, dt=0.002, save_every=30, progress=False)
    final = {a: float(trajs[a].daily["tumour_cells"][0, -1]) for a in trajs}
    capacity = 1.0 / 1.02e-9
    chk = Check(
        "published.depillis_combination",
        "de Pillis 2009: chemo-immunotherapy clears a tumour that neither therapy alone shrinks",
        DEPILLIS + "; de Pillis et al. 2006, J Theor Biol 238:841",
        {f"cells_day_90_{a}": v for a, v in final.items()},
        note="T0 = 2e7 cells; capacity 1/b = 9.8e8.",
    )
    chk.require("all arms finished", np.all(ep["status"] == 0))
    for arm in ("untreated", "immuno"):
        chk.require(f"{arm}: escapes to > 50% of capacity", final[arm] > 0.5 * capacity)
    chk.require("chemo alone holds it above T0, below 50% of capacity",
                2e7 < final["chemo"] < 0.5 * capacity)  # fmt: skip
    chk.require("combination: under one cell (cleared)", final["combination"] < 1.0)
    chk.require(
        "only the combination arm is cleared", list(summary["tumour_cleared"]) == [0, 0, 0, 1]
    )
    return chk

"""Published reference models through the production engine (issue 5, part 1).

Each model is checked against an *independent* scipy ``solve_ivp`` of the published equations,
written out here from the papers (not from `vcohort.model.reference`), and against a
qualitative result of its paper.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from vcohort.cohort import make_cohort
from vcohort.dosing import compile_schedule, parse_regimen
from vcohort.endpoints import patient_endpoints
from vcohort.model import get_model
from vcohort.reference import simulate_reference
from vcohort.simulate import simulate


# ---------------------------------------------------------------- Kuznetsov et al. 1994
def kuznetsov_scipy(E0, T0, days):
    """Kuznetsov et al. 1994, Bull Math Biol 56:295, eqs. (1)-(2) with their fitted values."""
    s, p, g, m, d = 1.3e4, 0.1245, 2.019e7, 3.422e-10, 0.0412
    a, b, n = 0.18, 2.0e-9, 1.101e-7

    def f(t, u):
        E, T = u
        return [s + p * E * T / (g + T) - m * E * T - d * E, a * T * (1 - b * T) - n * E * T]

    sol = solve_ivp(
        f, (0, days), [E0, T0], method="LSODA", rtol=1e-10, atol=1e-6,
        t_eval=np.arange(days + 1.0),
    )  # fmt: skip
    assert sol.success
    return sol.y


def _kuz_cohort(T0):
    m = get_model("kuznetsov1994")
    c = make_cohort(len(T0), seed=0, model=m, variability=False)
    return m, c.replace(y0={**c.y0, "T": np.asarray(T0, dtype=float)})


def test_kuznetsov_matches_independent_scipy_solve():
    # three initial sizes: dormant (1e6, 5e6) and escaping (2e8) tumours, 120 days
    m, c = _kuz_cohort([1e6, 5e6, 2e8])
    tr = simulate(m, c, None, 120, dt=0.05, save_every=30, progress=False)
    assert np.all(tr.status == 0)
    for i, T0 in enumerate([1e6, 5e6, 2e8]):
        E, T = kuznetsov_scipy(3.2e5, T0, 120)
        # RK4 at dt = 0.05 day vs LSODA at rtol 1e-10: both well below 1e-6 relative
        np.testing.assert_allclose(tr.daily["tumour_cells"][i], T, rtol=1e-6)
        np.testing.assert_allclose(tr.daily["effector_cells"][i], E, rtol=1e-6)


def test_kuznetsov_dormancy_or_escape_depends_on_initial_size():
    """Kuznetsov et al. 1994: the same immune system holds a small tumour dormant (damped
    oscillations around ~1e7 cells) but a large one escapes to near capacity 1/b = 5e8."""
    sizes = [1e5, 1e6, 1e7, 5e7, 1e8, 3e8]
    m, c = _kuz_cohort(sizes)
    tr = simulate(m, c, None, 400, save_every=100, progress=False)
    final = tr.daily["tumour_cells"][:, -1]
    capacity = 1.0 / 2.0e-9
    dormant = final < 0.05 * capacity
    np.testing.assert_array_equal(dormant, [True, True, True, True, False, False])
    assert np.all(final[~dormant] > 0.8 * capacity)
    ep = patient_endpoints(tr)  # endpoints degrade to burden change: no RECIST without mm
    assert "bor" not in ep and {"best_pct_change", "tumour_cleared"} <= set(ep.columns)
    assert not ep["tumour_cleared"].any()


# ---------------------------------------------------------------- de Pillis et al. 2009
DP = dict(
    a=0.431, b=1.02e-9, c=2.9077e-13, d=2.34, l=2.09, s=3.8e-3, ef=0.111, f=0.0125,
    p=2.794e-13, pN=0.068, gN=2.5036e5, m=0.009, theta=2.5036e-3, q=3.422e-10, r1=2.9077e-11,
    r2=5.8467e-13, pI=2.971, gI=2.5036e3, u=4.417e-14, kappa=2.5036e3, j=0.01245, k=2.019e7,
    ab=2.25e9, beta=0.0063, KT=0.9, KN=0.0675, KL=0.0486, KC=0.034, dT=1.8328, dN=1.8328,
    dL=1.8328, dC=1.8328, gamma=0.5199, muI=11.7427, phi=2.38405e-7, omega=0.07874,
    zeta=2.5036e3,
)  # fmt: skip


def depillis_rhs(t, x, vM, vI, vL):
    """de Pillis et al. 2009, Comput Math Methods Med 10:165, the six equations as published
    (CD8 kill D = d (L/T)^l / (s + (L/T)^l), patient-9 d, l, s)."""
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


def depillis_scipy(T0, days, infusions):
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
        sol = solve_ivp(
            depillis_rhs, (t0, t1), x, method="LSODA", rtol=1e-10,
            atol=1e-30, args=tuple(v), t_eval=te,
        )  # fmt: skip
        assert sol.success, sol.message
        out[:, te.astype(int)] = sol.y
        x = sol.y[:, -1] if sol.t[-1] == t1 else solve_ivp(
            depillis_rhs, (t0, t1), x, method="LSODA", rtol=1e-10, args=tuple(v)
        ).y[:, -1]  # fmt: skip
    return dict(zip("TNLCMI", out, strict=True))


def _dp_cohort(T0):
    m = get_model("depillis2009")
    c = make_cohort(len(T0), seed=0, model=m, variability=False)
    return m, c.replace(y0={**c.y0, "T": np.asarray(T0, dtype=float)})


# the catalogue protocol: chemo v_M = 1/day on days 0, 7, 14 (one day each), TIL 1e9 cells over
# day 7, IL-2 5e6 IU/L/day over days 8-12
PROTOCOL = ("chemo", "til", "il2")
INFUSIONS = [("M", t, t + 1, 1.0) for t in (0, 7, 14)] + [("L", 7, 8, 1e9), ("I", 8, 12, 5e6)]


@pytest.mark.slow
def test_depillis_matches_independent_scipy_solve():
    """Production RK4 and the diffrax reference path against LSODA (rtol 1e-10), 10 days.

    Untreated, dt = 0.005 day reaches ~5e-8.  Treated, the TIL infusion makes the CD8
    self-regulation stiff (decay of L at several hundred per day), so the explicit RK4 needs
    dt = 0.00025 day (4000 steps a day) for 1e-6 (measured over 21 days: 3e-6 at 0.0005, 1.8e-7
    at 0.00025)."""
    T0 = [5e6, 2e7, 1e8]
    days = 10
    m, c = _dp_cohort(T0)
    cat = m.drug_catalogue()
    sched = compile_schedule([parse_regimen(r, cat) for r in PROTOCOL], float(days))
    runs = {
        "untreated": simulate(m, c, None, days, dt=0.005, save_every=1, progress=False),
        "treated": simulate(m, c, sched, days, dt=0.00025, save_every=1, progress=False),
        "treated_diffrax": simulate_reference(
            m, c, sched, days, dt=0.01, save_every=1, rtol=1e-11, atol=1e-16
        ),
    }
    for name, tr in runs.items():
        assert np.all(tr.status == 0), name
        for i, t0 in enumerate(T0):
            ref = depillis_scipy(t0, days, [] if name == "untreated" else INFUSIONS)
            for k in "TNLCI":
                np.testing.assert_allclose(tr.states[k][i], ref[k], rtol=1e-6, err_msg=name + k)
            np.testing.assert_allclose(tr.states["M"][i], ref["M"], rtol=1e-6, atol=1e-12)


@pytest.mark.slow
def test_depillis_combination_clears_where_either_alone_fails():
    """de Pillis et al. (2006 J Theor Biol 238:841, updated by the 2009 model): a tumour that
    neither chemotherapy alone nor immunotherapy (TIL + IL-2) alone shrinks is cleared by the
    combination.  Here a 2e7-cell tumour over 90 days (production engine, dt = 0.002)."""
    from vcohort.runs import parse_arm, run_arms

    m, c = _dp_cohort([2e7])
    cat = m.drug_catalogue()
    arms = [
        parse_arm(a, cat)
        for a in (
            "untreated",
            "chemo=chemo",
            "immuno=til + il2",
            "combination=chemo + til + il2",
        )
    ]
    trajs, ep, summary, _ = run_arms(m, c, arms, 90, dt=0.002, save_every=30, progress=False)
    final = {a: trajs[a].daily["tumour_cells"][0, -1] for a in trajs}
    capacity = 1.0 / 1.02e-9
    for arm in ("untreated", "immuno"):
        assert final[arm] > 0.5 * capacity, (arm, final[arm])  # escaped towards capacity
    # weekly chemotherapy throughout holds the tumour (~3e8 cells) but above where it started
    assert 2e7 < final["chemo"] < 0.5 * capacity, final["chemo"]
    assert final["combination"] < 1.0  # under one cell: cleared
    assert list(summary["tumour_cleared"]) == [0.0, 0.0, 0.0, 1.0]
    assert np.all(ep["status"] == 0)


# ---------------------------------------------------------------- CLI
def test_cli_simulates_a_reference_model_with_its_own_states(tmp_path, capsys):
    import json

    import pandas as pd

    from vcohort.cli import main

    out = tmp_path / "run"
    argv = ["simulate", "--model", "kuznetsov1994", "--patients", "4", "--days", "20"]
    assert main(argv + ["--no-progress", "--out", str(out)]) == 0
    tc = pd.read_parquet(out / "timecourse.parquet")
    assert {"E", "T", "tumour_cells", "effector_cells"} <= set(tc.columns)
    assert "S" not in tc and "diameter_mm" not in tc
    assert json.loads((out / "manifest.json").read_text())["model"] == "kuznetsov1994"
    summary = pd.read_csv(out / "summary.csv")
    assert "tumour_cleared" in summary and "orr" not in summary
    assert "kuznetsov1994: 4 patients" in capsys.readouterr().out


def test_cli_refuses_a_drug_the_model_does_not_have(capsys):
    from vcohort.cli import main

    argv = ["simulate", "--model", "depillis2009", "--regimen", "pembrolizumab", "--out", "x"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pembrolizumab" in err and "chemo, il2, til" in err

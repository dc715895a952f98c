"""SBML export read by an independent implementation: libroadrunner (LLVM-compiled CVODE)
solves exported virtual patients, compared with vcohort's own solution of the same problem."""

from __future__ import annotations

import numpy as np

from vcohort.cohort import make_cohort
from vcohort.dosing import compile_schedule, parse_regimen
from vcohort.reference import solve_patient_scipy
from vcohort.sbml import patient_sbml
from vcohort.validation.check import Check, worst

# on the 0.1-day grid of the vcohort solvers, so both solve the same problem
REGIMEN = (
    "pembrolizumab 200 mg every 21 d over 1 d",
    "wnt974 10 mg every 24 h",
    "doxorubicin 75 mg/m2 every 21 d",
)


def run_roadrunner(sbml: str, days: int, states, rtol=1e-10, atol=1e-14):
    """Daily diameter and final states from libroadrunner (imported here: an optional
    dependency, in the ``test`` extra)."""
    import roadrunner

    rr = roadrunner.RoadRunner(sbml)
    rr.integrator.relative_tolerance = rtol
    rr.integrator.absolute_tolerance = atol
    rr.integrator.maximum_num_steps = 200_000
    res = rr.simulate(0, days, days + 1, ["time", "diameter_mm", *states])
    return res["diameter_mm"], {s: res[s][-1] for s in states}


def roadrunner_agreement(days: int = 42) -> Check:
    """3 virtual patients, one untreated and two on a three-drug regimen (IV infusion, oral
    q24h, BSA-dosed chemotherapy): libroadrunner (CVODE, rtol 1e-10) on the exported file vs
    vcohort's scipy reference (LSODA, rtol 1e-10) of the same equations."""
    import roadrunner

    c = make_cohort(3, seed=4)
    sched = compile_schedule([parse_regimen(r) for r in REGIMEN], float(days))
    states = list(c.y0)
    chk = Check(
        "sbml.roadrunner",
        "The SBML export solved by libroadrunner agrees with vcohort",
        f"libroadrunner {roadrunner.__version__}; SBML L3V2 validated by libsbml",
        note=f"{days} days; patient 0 untreated, 1-2 on {' + '.join(REGIMEN)}; every dose an "
        "SBML event.",
    )
    err_d, err_y, issues = 0.0, 0.0, 0
    for i, s in enumerate([compile_schedule([], float(days)), sched, sched]):
        sbml = patient_sbml(c, i, s if s.drugs else None)
        issues += roadrunner.validateSBML(sbml) != ""
        d_rr, fin_rr = run_roadrunner(sbml, days, states)
        d_vc, fin_vc = solve_patient_scipy(c, i, s, days, dt=0.1)
        err_d = worst(err_d, float(np.max(np.abs(d_rr - d_vc) / np.abs(d_vc))))
        for k in states:
            err_y = worst(err_y, abs(fin_rr[k] - fin_vc[k]) / np.maximum(abs(fin_vc[k]), 1e-300))
        if s.drugs:  # pembrolizumab 2 infusions (start + stop), wnt974 42, dox 2
            chk.require(f"patient {i}: 48 dose events", sbml.count("<event ") == 48)
    chk.values |= {"max_rel_error_diameter": err_d, "max_rel_error_states": float(err_y)}
    chk.require("libsbml consistency check: no issue", issues == 0)
    chk.require("diameter within 1e-5 relative", err_d <= 1e-5)
    chk.require("final states within 1e-5 relative", err_y <= 1e-5)
    return chk

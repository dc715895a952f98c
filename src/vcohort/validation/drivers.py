"""Which parameters drive the triple combination's benefit (issue 5, part 3, applied): local
autodiff sensitivities of the benefit over no treatment, ranked across a small cohort."""

from __future__ import annotations

import numpy as np

from vcohort.cohort import make_cohort
from vcohort.model import CSC_IMMUNE
from vcohort.runs import parse_arm
from vcohort.sensitivity import build_problem, local_sensitivities, rank_local
from vcohort.validation.check import Check

TRIPLE_ARM = (
    "triple=wnt974 10 mg qd + pembrolizumab 200 mg every 21 d over 30 min + cb839 800 mg bid"
)


def triple_benefit_drivers(patients: int = 16, days: int = 180, top: int = 10) -> Check:
    """∂(benefit)/∂log θ for every model and PK parameter (reverse mode, the sensitivity
    module's default since it measured faster; immune run-in rebuilt for each θ), median
    across ``patients``; the ``top`` by median |S|."""
    problem = build_problem(
        CSC_IMMUNE,
        parse_arm(TRIPLE_ARM),
        days,
        "log_burden_auc",
        reference=parse_arm("untreated"),
    )
    res = local_sensitivities(problem, make_cohort(patients, seed=0), mode="reverse")
    rank = rank_local(res).head(top)
    finite = np.all(np.isfinite(res.grad), axis=1) & np.isfinite(res.value)
    chk = Check(
        "sensitivity.triple_drivers",
        "Parameters that drive the triple combination's benefit over no treatment",
        "vcohort sensitivity --method local (autodiff, reverse mode)",
        {
            "parameter": rank["parameter"].tolist(),
            "median": rank["median"].to_numpy(),
            "q25": rank["q25"].to_numpy(),
            "q75": rank["q75"].to_numpy(),
            "median_benefit": float(np.median(res.value[finite])),
            "parameters": len(problem.names),
            "patients": patients,
        },
        note=f"Endpoint: log tumour-burden AUC (triple) − (untreated) to day {days}, "
        f"{patients} patients (seed 0); S = ∂E/∂log θ (negative: more benefit); ranked by "
        "median |S|.",
    )
    chk.require("every patient has finite sensitivities", np.all(finite))
    return chk

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
    full = rank_local(res)
    rank = full.head(top)
    med = dict(zip(full["parameter"], full["median"], strict=True))
    finite = np.all(np.isfinite(res.grad), axis=1) & np.isfinite(res.value)
    chk = Check(
        "sensitivity.triple_drivers",
        "Parameters that drive the triple combination's benefit over no treatment",
        "vcohort sensitivity --method local (autodiff, reverse mode)",
        {
            "parameter": rank["parameter"].tolist(),
            "median": rank["median"].to_numpy(),
            "median_abs": rank["median_abs"].to_numpy(),
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
    # the benefit of a PD-1 combination runs through CD8 T-cell killing (the review's §3;
    # MODEL.md): more recruitment (q_T8), supply (V_T8) or kill rate (k_T) must add benefit
    # (S < 0), faster CD8 death (d_T8) must take it away (S > 0).  Signs only: their sizes are
    # what the ranking reports
    for name, sign in SIGNS.items():
        chk.values[f"median_S_{name}"] = float(med[name])
        chk.require(
            f"{name}: median S {'<' if sign < 0 else '>'} 0 ({'more' if sign < 0 else 'less'} "
            f"benefit as it rises)",
            bool(np.sign(med[name]) == sign),
        )
    return chk


SIGNS = {"q_T8": -1, "V_T8": -1, "k_T": -1, "d_T8": 1}  # expected sign of ∂(benefit)/∂log θ

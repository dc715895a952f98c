"""Fit dacarbazine's tumour-kill potency to KEYNOTE-002's chemotherapy ORR (4%), and the
spread of tumour chemosensitivity to the arm's 6-month PFS (16%).

    python experiments/fit_dacarbazine.py                     # EC50 at the table's CV, ~5 min
    python experiments/fit_dacarbazine.py --cv-scan 0.3 1 2   # 6-month PFS by CV, ~4 min each

The population is the validation report's KEYNOTE-002-like one
(`vcohort.validation.clinical.keynote002_experiment`: 400 patients selected from a plausible
pool of 1,200 to the pembrolizumab 2 mg/kg arm's ORR 21% and 6-month PFS 34%); the
chemotherapy arm is dacarbazine 1000 mg/m² q3w for 210 days with that experiment's RECIST
assessment.  The one free number is the effect-site EC50 of the ``chemo_kill`` channel (the
stress-response EC50 stays at half of it, as for doxorubicin); it is found by bisection on
log EC50 until ORR = 4%, i.e. 16 of 400 responders, and rounded to two significant figures.
With ``--cv-scan``, the between-patient CV of the model's chemotherapy kill rate ``k_chemo``
(log-normal; each patient keeps its own standard-normal draw) is set to each value, the EC50
refitted to the 4% ORR, and the arm's Kaplan-Meier 6-month PFS printed: a wider spread of
chemosensitivity puts the same responses in fewer, more sensitive patients and lets the
others progress, so 6-month PFS falls towards the trial's.  The hazard ratio against
pembrolizumab and the median PFS stay untargeted.  Prints the bisection and the arm's
summary at the result, including the neutropenia it causes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from vcohort.drugs import CATALOGUE, DACARBAZINE
from vcohort.endpoints import patient_endpoints
from vcohort.model import CSC_IMMUNE
from vcohort.simulate import simulate
from vcohort.trial import run_trial
from vcohort.validation.clinical import CHEMO_002, keynote002_experiment

TARGET_ORR = 0.04  # KEYNOTE-002 investigator-choice chemotherapy (Ribas et al. 2015; MODEL.md)


def with_ec50(ec50: float):
    """Dacarbazine with kill EC50 ``ec50`` (stress at half of it), in a catalogue copy."""
    eff = []
    for e in DACARBAZINE.effects:
        if e.channel == "chemo_kill":
            e = dataclasses.replace(e, ec50=ec50)
        elif e.channel == "chemo_stress":
            e = dataclasses.replace(e, ec50=ec50 / 2)
        eff.append(e)
    return {**CATALOGUE, "dacarbazine": dataclasses.replace(DACARBAZINE, effects=tuple(eff))}


def selected_cohort():
    """The validation report's KEYNOTE-002-like experiment and its selected cohort (the
    chemotherapy arm plays no part in the selection)."""
    exp = keynote002_experiment()
    pembro_only = dataclasses.replace(exp, arms=exp.arms[:1], reference_arm=exp.arms[0].name)
    return exp, run_trial(pembro_only, progress=False).cohort


def with_cv(cohort, cv: float):
    """``cohort`` with ``k_chemo`` redrawn at between-patient CV ``cv`` (same z per patient)."""
    typ = next(r for r in CSC_IMMUNE.params if r.name == "k_chemo")
    z = np.log(np.asarray(cohort.params["k_chemo"]) / typ.value) / typ.omega
    omega = math.sqrt(math.log1p(cv**2))
    return cohort.replace(params={**cohort.params, "k_chemo": typ.value * np.exp(omega * z)})


def fit_ec50(exp, cohort, verbose: bool = True) -> tuple[float, object]:
    """Bisection on log EC50 until the arm's ORR is 4%; returns (EC50, endpoints at it)."""
    from vcohort.dosing import compile_schedule, parse_regimen

    days = exp.horizon_days
    sched = compile_schedule([parse_regimen(CHEMO_002)], float(days))

    def run(ec50: float):
        tr = simulate(CSC_IMMUNE, cohort, sched, days, catalogue=with_ec50(ec50), progress=False)
        ep = patient_endpoints(tr, **exp.endpoint_options)
        return float(ep["bor"].isin(["CR", "PR"]).mean()), ep

    lo, hi = math.log(0.01), math.log(100.0)  # ORR falls as EC50 rises
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        r, _ = run(math.exp(mid))
        if verbose:
            print(f"EC50 {math.exp(mid):8.4f} mg/L -> ORR {r:.4f}", flush=True)
        if r > TARGET_ORR:
            lo = mid
        else:
            hi = mid
    ec50 = float(f"{math.exp(hi):.2g}")
    return ec50, run(ec50)[1]


def pfs6(ep) -> float:
    from vcohort.endpoints import kaplan_meier

    ep = ep.assign(arm="chemotherapy")
    return float(kaplan_meier(ep).set_index("arm").loc["chemotherapy", "pfs_landmark"])


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cv-scan", type=float, nargs="+", help="k_chemo CVs to scan")
    a = ap.parse_args()
    exp, cohort = selected_cohort()
    if a.cv_scan:
        for cv in a.cv_scan:
            ec50, ep = fit_ec50(exp, with_cv(cohort, cv), verbose=False)
            orr = ep["bor"].isin(["CR", "PR"]).mean()
            print(f"k_chemo CV {cv}: EC50 {ec50} mg/L, ORR {orr:.4f}, 6-month PFS {pfs6(ep):.3f}")
        return
    ec50, ep = fit_ec50(exp, cohort)
    r = ep["bor"].isin(["CR", "PR"]).mean()
    anc = ep["anc_nadir"].to_numpy()
    print(f"\nfitted EC50 {ec50} mg/L: ORR {r:.4f} (target {TARGET_ORR}), 6-month PFS "
          f"{pfs6(ep):.3f}; median ANC nadir {np.nanmedian(anc):.2f}e9/L, grade 4 (<0.5) in "
          f"{np.mean(anc < 0.5):.1%}")  # fmt: skip


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_x64", True)
    main()

"""Fit dacarbazine's tumour-kill potency to KEYNOTE-002's chemotherapy ORR (4%).

    python experiments/fit_dacarbazine.py        # ~5 min on 2 CPU cores

The population is the validation report's KEYNOTE-002-like one
(`vcohort.validation.clinical.keynote002_experiment`: 400 patients selected from a plausible
pool of 1,200 to the pembrolizumab 2 mg/kg arm's ORR 21% and 6-month PFS 34%); the
chemotherapy arm is dacarbazine 1000 mg/m² q3w for 210 days with that experiment's RECIST
assessment.  The one free number is the effect-site EC50 of the ``chemo_kill`` channel (the
stress-response EC50 stays at half of it, as for doxorubicin); it is found by bisection on
log EC50 until ORR = 4%, i.e. 16 of 400 responders, and rounded to two significant figures.
Everything else that the comparison reports (median PFS, 6-month PFS, the hazard ratio) is
left untargeted.  Prints the bisection and the arm's summary at the result, including the
neutropenia it causes.
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


def main() -> None:
    from vcohort.dosing import compile_schedule, parse_regimen

    exp = keynote002_experiment()
    # the selected cohort (the chemotherapy arm plays no part in the selection)
    pembro_only = dataclasses.replace(exp, arms=exp.arms[:1], reference_arm=exp.arms[0].name)
    cohort = run_trial(pembro_only, progress=False).cohort
    days = exp.horizon_days
    sched = compile_schedule([parse_regimen(CHEMO_002)], float(days))

    def orr(ec50: float) -> tuple[float, object]:
        tr = simulate(CSC_IMMUNE, cohort, sched, days, catalogue=with_ec50(ec50), progress=False)
        ep = patient_endpoints(tr, **exp.endpoint_options)
        return float(ep["bor"].isin(["CR", "PR"]).mean()), ep

    lo, hi = math.log(0.01), math.log(100.0)  # ORR falls as EC50 rises
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        r, _ = orr(math.exp(mid))
        print(f"EC50 {math.exp(mid):8.4f} mg/L -> ORR {r:.4f}", flush=True)
        if r > TARGET_ORR:
            lo = mid
        else:
            hi = mid
    ec50 = float(f"{math.exp(hi):.2g}")
    r, ep = orr(ec50)
    anc = ep["anc_nadir"].to_numpy()
    print(f"\nfitted EC50 {ec50} mg/L: ORR {r:.4f} (target {TARGET_ORR}); "
          f"median ANC nadir {np.nanmedian(anc):.2f}e9/L, grade 4 (<0.5) in "
          f"{np.mean(anc < 0.5):.1%}")  # fmt: skip


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_x64", True)
    main()

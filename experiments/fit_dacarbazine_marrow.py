"""Fit dacarbazine's delayed myelotoxicity: the mean delay ``mtt_marrow`` of its marrow chain
to the timing of the leucocyte nadir, and the myelotoxicity EC50 to the depth the nadir had before.

    python experiments/fit_dacarbazine_marrow.py          # ~10 min on a 2-core CPU

Why: with the Friberg et al. 2002 system parameters (MTT ~4.6 days) and dacarbazine's 5-hour
half-life, a myelotoxicity driven by plasma puts the ANC nadir on day ~9, but dacarbazine's
leucocyte and platelet nadirs are "dose-dependent and delayed, with the nadirs often only
occurring after 3 to 4 weeks" (EU SmPC, section 4.8).  Temozolomide, which forms the same active
metabolite (MTIC), has its neutrophil nadir near day 28 (Temodar US label).  A hold rule
(`hold_if = "ANC < 1.5"`) checks the ANC when the next q3w cycle falls due, so the timing decides
whether it fires.

The model: the ``myelotoxicity`` effect is read at the end of a chain of 4 transit compartments
from plasma (`vcohort.drug.Drug.marrow_chain`; mean delay ``mtt_marrow``).  Assumption: the
delayed signal stands in for damage to early progenitors upstream of Friberg's proliferating
compartment.  A single first-order biophase was tried first: however slow, it could not move the
median nadir past day 17.5 (the Friberg feedback turns a long, shallow effect into an early
rebound), and a chain of 4-8 compartments could (a scan on the typical patient).

Two targets, one number each:
1. ``mtt_marrow``: the median (over patients) day of the ANC minimum after one 1000 mg/m2 dose,
   followed for 49 days, is day 24.5, the middle of the SmPC's 3-4 weeks.  Bisection on
   log MTT (a longer delay puts the nadir later).
2. EC50: the median over patients of the ANC nadir over 63 days of 1000 mg/m2 q3w is 1.9e9/L,
   what the plasma-driven effect (EC50 2 mg/L) gave when it was chosen for "usually moderate"
   leucopenia (Martindale).  Only the timing is meant to change.  Bisection on log EC50 (a
   lower EC50 gives a deeper nadir).

The two interact (the EC50 moves the nadir day a little), so the pair is fitted twice in turn.
Population: 200 patients of the default population (`make_cohort`, seed 7); the rounded values
go into `vcohort.drugs` (``DTIC_MTT_MARROW``, ``DTIC_MYELO_EC50``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from vcohort.cohort import make_cohort
from vcohort.dosing import compile_schedule, parse_regimen
from vcohort.drugs import CATALOGUE, DACARBAZINE
from vcohort.model import CSC_IMMUNE
from vcohort.model.parameters import ParamTable
from vcohort.simulate import simulate

TARGET_DAY = 24.5  # middle of "after 3 to 4 weeks" (EU SmPC 4.8)
TARGET_NADIR = 1.9  # 1e9/L: the depth of the plasma-driven effect's calibration
ONE_DOSE = "dacarbazine 1000 mg/m2 every 21 d x 1 over 30 min"
Q3W = "dacarbazine 1000 mg/m2 every 21 d over 30 min"


def variant(mtt: float, ec50: float) -> dict:
    """The catalogue with dacarbazine's ``mtt_marrow`` and myelotoxicity EC50 set."""
    rows = tuple(
        dataclasses.replace(r, value=mtt) if r.name == "mtt_marrow" else r
        for r in DACARBAZINE.params
    )
    eff = tuple(
        dataclasses.replace(e, ec50=ec50) if e.channel == "myelotoxicity" else e
        for e in DACARBAZINE.effects
    )
    drug = dataclasses.replace(DACARBAZINE, params=ParamTable(rows), effects=eff)
    return {**CATALOGUE, "dacarbazine": drug}


def with_mtt(cohort, mtt: float):
    """``cohort`` with each patient's ``mtt_marrow`` scaled to the typical value ``mtt`` (the
    cohort's PK values were drawn, log-normally, around the catalogue's)."""
    typical = DACARBAZINE.params["mtt_marrow"].value
    pk = dict(cohort.pk["dacarbazine"])
    pk["mtt_marrow"] = np.asarray(pk["mtt_marrow"]) * (mtt / typical)
    return cohort.replace(pk={**cohort.pk, "dacarbazine": pk})


def anc(cohort, regimen: str, days: int, mtt: float, ec50: float) -> np.ndarray:
    """Daily ANC (patients x days+1) under ``regimen``."""
    sched = compile_schedule([parse_regimen(regimen)], float(days))
    cohort = with_mtt(cohort, mtt)
    tr = simulate(CSC_IMMUNE, cohort, sched, days, catalogue=variant(mtt, ec50), progress=False)
    if (tr.status != 0).any():
        raise RuntimeError(f"{int((tr.status != 0).sum())} patients failed")
    return np.asarray(tr.daily["ANC"])


def nadir_day(cohort, mtt: float, ec50: float) -> float:
    return float(np.median(np.argmin(anc(cohort, ONE_DOSE, 49, mtt, ec50), axis=1)))


def nadir_depth(cohort, mtt: float, ec50: float) -> tuple[float, np.ndarray]:
    low = anc(cohort, Q3W, 63, mtt, ec50).min(axis=1)
    return float(np.median(low)), low


def bisect(f, lo: float, hi: float, target: float, rising: bool, steps: int, label: str):
    """Bisection on log x in [lo, hi] for f(x) = target (``rising``: f grows with x)."""
    a, b = math.log(lo), math.log(hi)
    for _ in range(steps):
        mid = 0.5 * (a + b)
        v = f(math.exp(mid))
        print(f"  {label} {math.exp(mid):.4g} -> {v:.3f}", flush=True)
        if (v < target) == rising:
            a = mid
        else:
            b = mid
    return math.exp(0.5 * (a + b))


def main() -> None:
    cohort = make_cohort(200, seed=7)
    mtt, ec50 = 16.0, 4.0  # start: the typical patient's scan (chain of 4)
    for rnd in range(2):
        print(f"round {rnd + 1}: mtt_marrow for the nadir day (EC50 {ec50:.3g})")
        mtt = bisect(
            lambda m, e=ec50: nadir_day(cohort, m, e), 4.0, 40.0, TARGET_DAY, True, 8, "MTT"
        )
        print(f"round {rnd + 1}: EC50 for the nadir depth (mtt_marrow {mtt:.3g})")
        ec50 = bisect(
            lambda e, m=mtt: nadir_depth(cohort, m, e)[0], 0.5, 20.0, TARGET_NADIR, True, 8, "EC50"
        )
    mtt, ec50 = float(f"{mtt:.2g}"), float(f"{ec50:.2g}")
    depth, low = nadir_depth(cohort, mtt, ec50)
    print(
        f"\nfitted mtt_marrow {mtt} days, EC50 {ec50} mg/L: median nadir day after one dose "
        f"{nadir_day(cohort, mtt, ec50):.1f} (target {TARGET_DAY}); q3w over 63 days: median "
        f"nadir {depth:.2f}e9/L (target {TARGET_NADIR}), grade >=3 (<1.0) in "
        f"{np.mean(low < 1.0):.1%}, grade 4 (<0.5) in {np.mean(low < 0.5):.1%}"
    )


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_x64", True)
    main()

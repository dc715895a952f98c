"""Fit temozolomide's potency (one factor on dacarbazine's effects) to equal tumour response.

    python experiments/fit_temozolomide.py        # about 5 minutes on 2 cores

Temozolomide and dacarbazine act through the same metabolite, MTIC, and were equivalent in
metastatic melanoma (Middleton et al. 2000, J Clin Oncol 18:158: ORR 13.5% vs 12.1%, median
PFS 1.9 vs 1.5 months).  The drug file ``experiments/drugs/temozolomide.toml`` carries its own PK
(Ostermann et al. 2004); its effects are dacarbazine's (`vcohort.drugs.DACARBAZINE`: tumour kill
and stress at the effect site, myelotoxicity at the end of the marrow delay chain) with every
EC50 multiplied by one factor ``rho``.  ``rho`` is found by bisection on log ``rho`` until the
mean log(final / baseline diameter) of temozolomide 200 mg/m² days 1-5 of 28 equals that of
dacarbazine 1000 mg/m² q3w over 210 days, on the KEYNOTE-002-like population that
dacarbazine's potency was fitted on (`experiments/fit_dacarbazine.py`).  A continuous measure is
matched rather than the ORR, which moves in steps of one patient.  Prints the bisection, the
EC50s to write into the drug file, and both arms' ORR, 6-month PFS, ANC nadir and its day in
the first cycle (the Temodar label: around day 28), none of them fitted.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DRUG_FILE = HERE / "drugs" / "temozolomide.toml"
TMZ = "temozolomide 200 mg/m2 every 24 h x 5 repeat every 28 d"


def main() -> None:
    sys.path.insert(0, str(HERE))
    from fit_dacarbazine import pfs6, selected_cohort

    from vcohort.dosing import compile_schedule, parse_regimen
    from vcohort.drug_file import load_drugs, register_drugs
    from vcohort.drugs import CATALOGUE, DACARBAZINE
    from vcohort.endpoints import patient_endpoints
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import simulate
    from vcohort.validation.clinical import CHEMO_002

    base = load_drugs(DRUG_FILE)["temozolomide"]
    register_drugs({"temozolomide": base})  # before the cohort is drawn: its PK draws
    exp, cohort = selected_cohort()
    days = exp.horizon_days

    def with_rho(rho: float):
        eff = tuple(dataclasses.replace(e, ec50=e.ec50 * rho) for e in DACARBAZINE.effects)
        return {**CATALOGUE, "temozolomide": dataclasses.replace(base, effects=eff)}

    def run(regimen: str, catalogue):
        sched = compile_schedule([parse_regimen(regimen, catalogue)], float(days))
        tr = simulate(CSC_IMMUNE, cohort, sched, days, catalogue=catalogue, progress=False)
        ok = tr.status == 0
        d = np.asarray(tr.daily["diameter_mm"])
        shrink = float(np.mean(np.log(d[ok, -1] / d[ok, 0])))
        return shrink, patient_endpoints(tr, **exp.endpoint_options), tr

    target, ep_d, tr_d = run(CHEMO_002, CATALOGUE)
    print(f"dacarbazine: mean log(final/baseline diameter) {target:.4f}", flush=True)
    lo, hi = math.log(0.01), math.log(100.0)  # the diameter change rises with rho
    for _ in range(16):
        mid = 0.5 * (lo + hi)
        got, _, _ = run(TMZ, with_rho(math.exp(mid)))
        print(f"rho {math.exp(mid):9.5f} -> {got:.4f}", flush=True)
        if got < target:
            lo = mid
        else:
            hi = mid
    rho = float(f"{math.exp(0.5 * (lo + hi)):.3g}")
    got, ep_t, tr_t = run(TMZ, with_rho(rho))
    print(f"\nrho {rho}: temozolomide {got:.4f} against dacarbazine {target:.4f}")
    for e in DACARBAZINE.effects:
        print(f"  {e.channel} at {e.site}: EC50 {e.ec50 * rho:.4g} mg/L (emax {e.emax:g})")
    for name, ep, tr in (("dacarbazine", ep_d, tr_d), ("temozolomide", ep_t, tr_t)):
        anc = np.asarray(tr.daily["ANC"])[tr.status == 0]
        first = anc[:, :36]  # the first cycle: the next course acts on the ANC ~2 weeks late
        print(
            f"{name:12s} ORR {ep['bor'].isin(['CR', 'PR']).mean():.4f}, 6-month PFS "
            f"{pfs6(ep):.3f}, median ANC nadir {np.median(anc.min(axis=1)):.2f}e9/L, grade 4 "
            f"{np.mean(anc.min(axis=1) < 0.5):.1%}, first-cycle nadir day "
            f"{np.median(first.argmin(axis=1)):.0f}"
        )


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_x64", True)
    main()

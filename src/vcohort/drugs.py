"""The drug catalogue: PK models, routes, pharmacodynamic effects and clinical doses.

The `Drug` and `Effect` classes live in `vcohort.drug`; this module holds the entries (the
user's combination and chemotherapy here, the review's other Table-1 classes in
`vcohort.drugs_table1`) and `get_drug`.
"""

from __future__ import annotations

import re

from vcohort.drug import EFFECT_KINDS, ROUTES, SITES, Drug, Effect, pk_table
from vcohort.drugs_table1 import TABLE1_DRUGS

__all__ = ["BUILTIN", "CATALOGUE", "Drug", "Effect", "EFFECT_KINDS", "ROUTES", "SITES", "get_drug"]

_pk = pk_table

_AHAMADI = "Ahamadi et al. 2017, CPT:PSP 6:49, Table 3 (nlmixr2lib Ahamadi_2017_pembrolizumab.R)"
_PEREZ = (
    "Pérez-Blanco et al. 2016, Br J Clin Pharmacol 82:1517, Table 2 "
    "(nlmixr2lib PerezBlanco_2016_doxorubicin.R)"
)

PEMBROLIZUMAB = Drug(
    name="pembrolizumab",
    drug_class="ici",
    route="iv",
    params=_pk(
        [
            ("CL", 0.22, "L/day", 0.38, _AHAMADI, "clearance (reference 76.8 kg)"),
            ("V1", 3.48, "L", 0.21, _AHAMADI, "central volume"),
            (
                "Q2",
                0.795,
                "L/day",
                0.38,
                _AHAMADI + "; CL's random effect",
                "intercompartmental clearance",
            ),
            ("V2", 4.06, "L", 0.21, _AHAMADI + "; V1's random effect", "peripheral volume"),
        ]
    ),
    shared_eta=(("Q2", "CL"), ("V2", "V1")),  # Ahamadi 2017: Q = θ_Q·exp(η_CL), Vp = θ_Vp·exp(η_Vc)
    effects=(
        Effect(
            "pd1_occupancy",
            "emax",
            emax=1.0,
            ec50=0.5,
            site="central",
            source=(
                "plasma EC50 0.5 mg/L (~3.4 nM): the IC50 of pembrolizumab's exposure-response "
                "model, 0.535 mg/L (Elassaiss-Schaap et al. 2017, CPT Pharmacometrics Syst "
                "Pharmacol 6:21, Table 2; nlmixr2lib Elassaiss-Schaap_2017_pembrolizumab.R), "
                "rounded; occupancy saturates above ~1 mg/kg as reported for peripheral PD-1 "
                "receptor occupancy (Patnaik et al. 2015, Clin Cancer Res 21:4286).  assumption: "
                "the tumour sees the plasma concentration (no penetration term); at 200 mg q3w "
                "the trough occupancy is ~98%"
            ),
        ),
    ),
    clinical_dose="pembrolizumab 200 mg every 21 d over 30 min",
    mw=146_000.0,
    half_life_days=26.0,
    half_life_source=(
        "KEYTRUDA label 2014-2016 (t1/2 26 d, CL 0.22 L/d), as Ahamadi 2017's parameters give "
        "(Vss 7.5 L); the current label's 22 d comes with a smaller steady-state volume (6.0 L) "
        "and clearance that falls 23% over treatment (0.252 to 0.195 L/d), time-varying "
        "clearance that Ahamadi 2017's base model omits"
    ),
    ref_weight=76.8,
    weight_exponent_cl=0.595,
    weight_exponent_v=0.489,
    max_single_dose_mg=400.0,
    toxicity="immune-related adverse events; label doses 200 mg q3w or 400 mg q6w",
    references=(_AHAMADI,),
)

WNT974 = Drug(
    name="wnt974",
    drug_class="csc_inhibitor",
    route="oral",
    params=_pk(
        [
            (
                "ka",
                24.0,
                "1/day",
                0.4,
                "assumption: rapid oral absorption (t_max ~1-2 h); "
                "Rodon et al. 2021 full PK tables not reachable",
                "first-order absorption rate",
            ),
            (
                "CL",
                693.0,
                "L/day",
                0.4,
                "assumption: CL/F giving t1/2 ~6 h with V/F 250 L "
                "(once-daily dosing chosen in Rodon 2021 implies a short t1/2)",
                "apparent clearance CL/F",
            ),
            (
                "V1",
                250.0,
                "L",
                0.3,
                "assumption: apparent volume of a lipophilic small molecule",
                "apparent volume V/F",
            ),
        ]
    ),
    effects=(
        Effect(
            "wnt_inhibition",
            "emax",
            emax=0.9,
            ec50=0.004,
            site="central",
            source=(
                "assumption: EC50 ~0.004 mg/L (~11 nM, ~10x the PORCN cellular IC50 ~1 nM of "
                "Liu et al. 2013 PNAS 110:20224), chosen so that 10 mg QD suppresses AXIN2 "
                "(seen in 94% of skin biopsies, Rodon et al. 2021); Emax 0.9 because tumour "
                "AXIN2 fell in only 74% of biopsies.  With this PK (t1/2 6 h) the inhibition "
                "swings each day between ~0.80 at the peak and ~0.39 at the trough (0.70 at the "
                "average concentration; 0.89, 0.43 and 0.78 of Emax): partial, not "
                "near-complete, between doses"
            ),
        ),
    ),
    clinical_dose="wnt974 10 mg every 24 h",
    mw=396.4,
    half_life_days=0.25,
    half_life_source="assumption (no published t1/2 reachable): 6 h, see CL and V1 rows",
    max_single_dose_mg=30.0,
    toxicity=(
        "dysgeusia; bone-turnover (fragility) with Porcupine inhibitors; "
        "MTD not reached at 30 mg QD"
    ),
    references=("Rodon et al. 2021, Br J Cancer 125:28 (PMC8257624)",),
)

CB839 = Drug(
    name="cb839",
    drug_class="metabolic",
    route="oral",
    params=_pk(
        [
            (
                "ka",
                24.0,
                "1/day",
                0.4,
                "assumption: t_max ~1-2 h for an oral small molecule",
                "first-order absorption rate",
            ),
            (
                "CL",
                416.0,
                "L/day",
                0.4,
                "assumption: CL/F giving t1/2 ~4 h with V/F 100 L "
                "(twice-daily dosing chosen in Harding et al. 2021)",
                "apparent clearance CL/F",
            ),
            (
                "V1",
                100.0,
                "L",
                0.3,
                "assumption: apparent volume of an oral small molecule; "
                "no published popPK reachable",
                "apparent volume V/F",
            ),
        ]
    ),
    effects=(
        Effect(
            "glutaminase_inhibition",
            "emax",
            emax=0.95,
            ec50=0.019,
            site="central",
            source=(
                "Harding et al. 2021 Clin Cancer Res 27:4994: >90% platelet glutaminase inhibition "
                "above ~300 nM; with a Hill slope of 1 this puts the IC50 near 33 nM = 0.019 mg/L "
                "(MW 571.6; the assay's IC50, kept with Emax 0.95, so the model gives 0.86 at "
                "300 nM); Emax 0.95 since tumour inhibition was >75%, not complete.  With "
                "the assumed PK the plasma trough at 800 mg BID (~1.4 mg/L) is ~70x this EC50: "
                "inhibition stays at 0.94-0.95 and is nearly dose-independent above ~100 mg BID, "
                "so an optimiser can lower the dose at almost no loss (a property of these "
                "assumptions, not a finding)"
            ),
        ),
    ),
    clinical_dose="cb839 800 mg every 12 h",
    mw=571.6,
    half_life_days=4.0 / 24.0,
    half_life_source="assumption (no published t1/2 reachable): 4 h, see CL and V1 rows",
    max_single_dose_mg=1000.0,
    toxicity="fatigue, nausea, transaminase rise; MTD not reached (Harding et al. 2021)",
    references=("Harding et al. 2021, Clin Cancer Res 27:4994",),
)

DOXORUBICIN = Drug(
    name="doxorubicin",
    drug_class="chemo",
    route="iv",
    params=_pk(
        [
            ("CL", 62.4 * 24, "L/day", 0.229, _PEREZ, "clearance (62.4 L/h)"),
            ("V1", 17.7, "L", 0.0, _PEREZ, "central volume (fixed in source)"),
            (
                "Q2",
                50.7 * 24,
                "L/day",
                0.641,
                _PEREZ,
                "intercompartmental clearance to V2 (50.7 L/h)",
            ),
            ("V2", 1830.0, "L", 0.0, _PEREZ, "deep peripheral volume (fixed in source)"),
            (
                "Q3",
                28.4 * 24,
                "L/day",
                0.282,
                _PEREZ,
                "intercompartmental clearance to V3 (28.4 L/h)",
            ),
            ("V3", 71.0, "L", 0.0, _PEREZ, "shallow peripheral volume (fixed in source)"),
            (
                "ke0",
                0.5,
                "1/day",
                0.3,
                "assumption: slow tumour-cell uptake and retention of "
                "doxorubicin (intracellular t1/2 ~1-2 d); biophase model of Sheiner et al. 1979",
                "effect-compartment equilibration rate",
            ),
        ]
    ),
    effects=(
        Effect(
            "chemo_kill",
            "emax",
            emax=1.0,
            ec50=0.02,
            site="effect",
            source="assumption: EC50 at the effect site, not fitted to a response rate; the "
            "effect-site peak after 75 mg/m2 is ~0.024 mg/L, so the kill stays below ~55% of "
            "its maximum, and one cycle takes a median 0.14 log10 (5-95%: 0.02-0.68, with "
            "k_chemo's spread) off the living tumour cells by day 21 against untreated (50 "
            "default patients, seed 1): far from the ~1 log per cycle of Skipper's (1964) "
            "log-kill in sensitive leukaemias.  Yet 75 mg/m2 q3w x6 gives the default "
            "population an ORR of ~40% (demo, 600 patients, 2026-12-02), well above what "
            "doxorubicin achieves in melanoma: debris clearance and immune kill add to the "
            "direct kill; not compared with a trial",
        ),
        Effect(
            "chemo_stress",
            "emax",
            emax=1.0,
            ec50=0.01,
            site="effect",
            source="assumption: surviving-cell stress response (TGF-β, PD-L1 up; review §4 refs "
            "58-59) half-maximal below the killing EC50",
        ),
        Effect(
            "myelotoxicity",
            "emax",
            emax=8.0,
            ec50=0.15,
            site="central",
            source=(
                "assumption: Friberg et al. 2002 drug effect in Emax form, "
                "E = 8·C/(C + 0.15 mg/L); Friberg 2002 did not fit doxorubicin.  EC50 chosen "
                "so that 75 mg/m2 q3w gives a "
                "median ANC nadir in grade 3, towards grade 4 (measured on 300 virtual patients: "
                "median 0.77e9/L, grade 4 in 28%, nadir day 11), in line with the label "
                "(myelosuppression dose-limiting, nadir day 10-14).  Bounded E keeps the "
                "precursor kill rate below ~8·ktr, within the RK4 step's stability region"
            ),
        ),
    ),
    clinical_dose="doxorubicin 75 mg/m2 every 21 d x 6",
    mw=543.5,
    half_life_days=48.0 / 24.0,
    half_life_source="doxorubicin label (Pfizer PI §12.3): terminal t1/2 20-48 h",
    max_single_dose_mg=150.0,
    toxicity="myelosuppression (ANC nadir day 10-14); cumulative cardiotoxicity above 550 mg/m2",
    references=(_PEREZ, "Friberg et al. 2002, J Clin Oncol 20:4713"),
)

# Dacarbazine, the melanoma chemotherapy of KEYNOTE-002's investigator-choice arm.  Per-kg
# 2-compartment PK solved so that three published figures hold at once: total clearance
# 15.4 mL/kg/min (Breithaupt et al. 1982, 8 patients), steady-state volume 1.49 L/kg (Swiss
# Fachinformation) and the biphasic plasma half-lives of 19 min and 5 h (US label): with
# alpha + beta = k10 + k12 + k21, alpha beta = k10 k21, Vss = V1 (1 + k12/k21) this gives
# V1 0.503 L/kg, k10 1.838/h, k12 0.3245/h, k21 0.1651/h (V2 0.988 L/kg, Q 0.163 L/kg/h).
# Breithaupt's own fit disagrees with the label on the shape: a terminal half-life of 41.4 min
# (30-52) and a volume of 0.632 L/kg, no 5 h phase.  The label's phases are kept (the 5 h phase
# carries 17% of the AUC); the AUC itself, dose / CL, is Breithaupt's either way, and the kill and
# marrow EC50s were fitted on this shape (experiments/fit_dacarbazine.py).
_BREITHAUPT = (
    "Breithaupt, Dammann & Aigner 1982, Cancer Chemother Pharmacol 9:103 (CL 15.4 mL/kg/min, "
    "range 8.7-23.3, n=8)"
)
_DTIC_LABEL = "dacarbazine US label (Clinical Pharmacology: t1/2 alpha 19 min, beta 5 h)"
_DTIC_VSS = "dacarbazine Swiss Fachinformation (Verteilungsvolumen 1.49 L/kg)"
_DTIC_FIT = "vcohort experiments/fit_dacarbazine.py"
_KG = 70.0  # per-kg values at the reference weight
# mg/L at the effect site, fitted (experiments/fit_dacarbazine.py, 2026-11-30, with k_chemo's
# between-patient CV 2.0): bisection on log EC50 gave ORR 4.0% at 2.734-2.735 mg/L; rounded to
# 2.7 the arm's ORR was 4.25% (17/400) and its 6-month PFS 17.3% (trial 16%, 95% CI 10-22%).
# Re-checked 2026-12-01, after pembrolizumab's Q2/V2 gained Ahamadi 2017's shared random effects
# (which changes the patients the KEYNOTE-002-like calibration selects): at 2.7 the arm's ORR is
# 4.0% (16/400, the target) and its 6-month PFS 21.8%; the script's bisection now ends at 2.45
# and rounds to 2.5 (ORR 4.25%, 6-month PFS 22.3%), so 2.7 was kept as the closer fit.
# Re-fitted 2026-12-01 with CL's CV 0.33 (was 0.24) and the calibration's responders rounded as
# n x ORR: the bisection ends at 2.69-2.74 mg/L, rounded 2.7: ORR 4.0% (16/400), 6-month PFS
# 21.8%, median ANC nadir 1.78e9/L, grade 4 in 2.5%.
# Re-fitted 2026-12-02 after the model gained IL-10's suppression of T cells, exosome-driven Treg
# induction and the Gompertz clamp (KEYNOTE-002-like selection redone by the script): at 2.7 the
# arm's ORR had fallen to 2.25%; the bisection ends at 1.771-1.774 mg/L, rounded 1.8: ORR 4.0%
# (16/400), 6-month PFS 22.0%, median ANC nadir 1.85e9/L, grade 4 in 2.5%.
DTIC_KILL_EC50 = 1.8
# the delayed myelotoxicity (experiments/fit_dacarbazine_marrow.py, 2026-11-30, 200 patients):
# bisection gave mtt_marrow 18.7-18.9 days and EC50 3.05 mg/L; rounded to 19 and 3.1, the
# median nadir after one dose falls on day 25 and q3w's 63-day median nadir is 1.95e9/L (grade
# >=3 in 6.5%, grade 4 in 0%; the plasma-driven effect: 1.9e9/L, 6%, 0.5%, nadir on day 9).
# Re-fitted 2026-12-01 with CL's CV 0.33 (was 0.24): again 19 and 3.1 (bisection 18.6-18.8 d,
# 3.03-3.07 mg/L); nadir day 25, median nadir 1.94e9/L, grade >=3 in 9.5%, grade 4 in 0.5%.
DTIC_MTT_MARROW = 19.0
DTIC_MYELO_EC50 = 3.1
_DTIC_MARROW_FIT = "vcohort experiments/fit_dacarbazine_marrow.py"

DACARBAZINE = Drug(
    name="dacarbazine",
    drug_class="chemo",
    route="iv",
    params=_pk(
        [
            (
                "CL",
                15.4e-3 * 60 * 24 * _KG,
                "L/day",
                0.33,
                _BREITHAUPT + "; CV = SD/mean with SD = range/2.87, Wan et al. 2014's "
                "estimator for n = 8 (BMC Med Res Methodol 14:135: range/(2 Phi^-1((n - 0.375)"
                "/(n + 0.25))); range/4 (Hozo 2005) is meant for n = 15-70 and gave 0.24)",
                "total clearance (15.4 mL/kg/min)",
            ),
            (
                "V1",
                0.5026 * _KG,
                "L",
                0.0,
                f"{_BREITHAUPT}; {_DTIC_LABEL}; {_DTIC_VSS}",
                "central volume (0.503 L/kg, solved; see above)",
            ),  # fmt: skip
            (
                "Q2",
                0.1631 * 24 * _KG,
                "L/day",
                0.0,
                f"{_DTIC_LABEL}; {_DTIC_VSS}",
                "intercompartmental clearance (0.163 L/kg/h, solved)",
            ),  # fmt: skip
            (
                "V2",
                0.988 * _KG,
                "L",
                0.0,
                f"{_DTIC_LABEL}; {_DTIC_VSS}",
                "peripheral volume (0.988 L/kg, solved)",
            ),  # fmt: skip
            (
                "ke0",
                1.0,
                "1/day",
                0.3,
                "assumption: DNA methylation by the active metabolite MTIC persists until "
                "repaired (O6-methylguanine by MGMT over about a day); biophase model of "
                "Sheiner et al. 1979",
                "effect-compartment equilibration rate",
            ),
            (
                "mtt_marrow",
                DTIC_MTT_MARROW,
                "day",
                0.2,
                "fitted: the mean delay of the myelotoxic signal (4 transit compartments) at "
                "which the median ANC nadir of 200 virtual patients after one 1000 mg/m2 dose "
                "falls on day 25 (target 24.5, the middle of the 3-4 weeks after which "
                "dacarbazine's leucocyte and platelet nadirs 'often only' occur: EU SmPC, "
                "section 4.8; the Swiss Fachinformation gives the nadir after about 21-25 "
                "days; temozolomide, which forms the same active metabolite MTIC, has its "
                "median neutrophil nadir on day 28 from the first day of a 5-day course: "
                "Temodar US label); CV as Friberg's MTT (" + _DTIC_MARROW_FIT + ")",
                "mean transit time of the delayed myelotoxicity (marrow chain)",
            ),
        ]
    ),
    marrow_chain=4,
    effects=(
        Effect(
            "chemo_kill",
            "emax",
            emax=1.0,
            ec50=DTIC_KILL_EC50,
            site="effect",
            source=(
                "fitted: the effect-site EC50 at which 1000 mg/m2 q3w gives KEYNOTE-002's "
                "investigator-choice ORR of 4% (MODEL.md calibration target; Ribas et al. 2015) "
                "on the KEYNOTE-002-like calibrated population, with k_chemo's between-patient CV "
                "set alongside towards the arm's 16% 6-month PFS (CV 2, the largest scanned, "
                "comes closest: 22.0%) (" + _DTIC_FIT + ")"
            ),
        ),
        Effect(
            "chemo_stress",
            "emax",
            emax=1.0,
            ec50=DTIC_KILL_EC50 / 2,
            site="effect",
            source="assumption: as doxorubicin's, half-maximal at half the killing EC50",
        ),
        Effect(
            "myelotoxicity",
            "emax",
            emax=8.0,
            ec50=DTIC_MYELO_EC50,
            site="marrow",
            source=(
                "assumption: Friberg et al. 2002 drug effect in Emax form, read at the end of "
                "the delay chain (mtt_marrow), EC50 fitted so that 1000 mg/m2 q3w gives "
                "'usually moderate' leucopenia (Martindale; US label: haemopoietic depression "
                "the most common toxicity): the median ANC nadir over 63 days on 200 virtual "
                "patients is 1.95e9/L (grade 1; target 1.9, the depth the plasma-driven "
                "effect, EC50 2 mg/L with its nadir on day 9, had been chosen for).  The chain's "
                "concentration peaks near 0.07 mg/L (typical patient, q3w), so the curve works "
                "in its linear range: only the slope 8/EC50 (~2.6 L/mg) is identified, not "
                "EC50 and Emax apart (" + _DTIC_MARROW_FIT + ")"
            ),
        ),
    ),
    clinical_dose="dacarbazine 1000 mg/m2 every 21 d over 30 min",
    mw=182.2,
    half_life_days=5.0 / 24.0,
    half_life_source=_DTIC_LABEL,
    ref_weight=_KG,
    weight_exponent_cl=1.0,
    weight_exponent_v=1.0,
    max_single_dose_mg=2500.0,  # KEYNOTE-002's 1000 mg/m2 at 2.5 m2 (EU label: 850 mg/m2)
    toxicity="myelosuppression (leucopenia, thrombocytopenia); hepatic necrosis (rare); "
    "nausea and vomiting",
    references=(_BREITHAUPT, _DTIC_LABEL, _DTIC_VSS, "Friberg et al. 2002, J Clin Oncol 20:4713"),
)

CATALOGUE: dict[str, Drug] = {
    d.name: d for d in (PEMBROLIZUMAB, WNT974, CB839, DOXORUBICIN, DACARBAZINE, *TABLE1_DRUGS)
}
# the drugs vcohort ships; the user's own join CATALOGUE through `vcohort.drug_file`
BUILTIN: frozenset[str] = frozenset(CATALOGUE)


# other names of the catalogue's drugs (brand names, development codes, INNs), named in the
# error for a drug given by one of them; not resolved silently, so that a run's tables always
# carry the catalogue's name.  Sources: the drugs' labels and the trials cited in drugs.py
OTHER_NAMES = {
    "keytruda": "pembrolizumab",
    "mk-3475": "pembrolizumab",
    "lgk974": "wnt974",
    "lgk-974": "wnt974",
    "telaglenastat": "cb839",
    "cb-839": "cb839",
    "adriamycin": "doxorubicin",
    "dtic": "dacarbazine",
    "poteligeo": "mogamulizumab",
    "kw-0761": "mogamulizumab",
    "turalio": "pexidartinib",
    "plx3397": "pexidartinib",
    "sx-682": "sx682",
    "sgi-110": "guadecitabine",
}


def get_drug(name: str, catalogue: dict[str, Drug] | None = None) -> Drug:
    """Look up a drug by catalogue key, with an error listing the known names (and the
    catalogue's name for a brand name or code, `OTHER_NAMES`)."""
    cat = CATALOGUE if catalogue is None else catalogue
    key = name.strip().lower()
    if key not in cat:
        from vcohort.config import did_you_mean

        known = ", ".join(sorted(cat)) or "none (this model is simulated untreated only)"
        squash = lambda t: re.sub(r"[\s_-]+", "", t)  # noqa: E731  (MK3475 = MK-3475)
        other = {squash(k): v for k, v in OTHER_NAMES.items()}.get(squash(key))
        hint = f" (it is {other}: write {other!r})" if other in cat else did_you_mean(key, cat)
        if not hint and cat:  # neither a known other name nor a near miss: the user's own?
            hint = (
                " (a drug of your own: define it in a drug file and pass --drug-file FILE, or "
                "list it in an experiment's drug_files = [...])"
            )
        raise ValueError(f"drug={name!r} is not in the catalogue{hint}; known drugs: {known}")
    return cat[key]

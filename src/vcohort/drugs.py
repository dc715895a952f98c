"""The drug catalogue: PK models, routes, pharmacodynamic effects and clinical doses.

The `Drug` and `Effect` classes live in `vcohort.drug`; this module holds the entries (the
user's combination and chemotherapy here, the review's other Table-1 classes in
`vcohort.drugs_table1`) and `get_drug`.
"""

from __future__ import annotations

from vcohort.drug import EFFECT_KINDS, ROUTES, SITES, Drug, Effect, pk_table
from vcohort.drugs_table1 import TABLE1_DRUGS

__all__ = ["CATALOGUE", "Drug", "Effect", "EFFECT_KINDS", "ROUTES", "SITES", "get_drug"]

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
            ("Q2", 0.795, "L/day", 0.0, _AHAMADI, "intercompartmental clearance"),
            ("V2", 4.06, "L", 0.0, _AHAMADI, "peripheral volume"),
        ]
    ),
    effects=(
        Effect(
            "pd1_occupancy",
            "emax",
            emax=1.0,
            ec50=0.5,
            site="central",
            source=(
                "assumption: plasma-equivalent EC50 0.5 mg/L (~3.4 nM), i.e. occupancy saturates "
                "above ~1 mg/kg as reported for peripheral PD-1 receptor occupancy (Patnaik et al. "
                "2015, Clin Cancer Res 21:4286); tumour penetration folded into this EC50"
            ),
        ),
    ),
    clinical_dose="pembrolizumab 200 mg every 21 d over 30 min",
    mw=146_000.0,
    half_life_days=26.0,
    half_life_source=(
        "KEYTRUDA label 2014-2016 (t1/2 26 d, CL 0.22 L/d; the current label's 22 d reflects "
        "time-varying clearance, which Ahamadi 2017's base model omits)"
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
                "Liu et al. 2013 PNAS 110:20224) so that 10 mg QD gives the near-complete AXIN2 "
                "suppression seen in 94% of skin biopsies (Rodon et al. 2021); Emax 0.9 because "
                "tumour AXIN2 fell in only 74% of biopsies"
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
                "(MW 571.6); Emax 0.95 since tumour inhibition was >75%, not complete"
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
            source="assumption: EC50 at the effect site so that 75 mg/m2 gives ~1 log of "
            "proliferating-cell kill per cycle (log-kill hypothesis, Skipper 1964)",
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
                "median ANC nadir near the grade-3/4 boundary (measured on 300 virtual patients: "
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

CATALOGUE: dict[str, Drug] = {
    d.name: d for d in (PEMBROLIZUMAB, WNT974, CB839, DOXORUBICIN, *TABLE1_DRUGS)
}


def get_drug(name: str, catalogue: dict[str, Drug] | None = None) -> Drug:
    """Look up a drug by catalogue key, with an error listing the known names."""
    cat = CATALOGUE if catalogue is None else catalogue
    key = name.strip().lower()
    if key not in cat:
        raise ValueError(
            f"drug={name!r} is not in the catalogue; known drugs: {', '.join(sorted(cat))}"
        )
    return cat[key]

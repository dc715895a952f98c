"""The review's other Table-1 drug classes (Yu & Gong 2025, Table 1 and §4.2): TAM-, MDSC- and
Treg-targeted agents, CD133 CAR-T and an epigenetic agent.

Each entry states its PK source (a population PK model where one is published) or
"assumption: why", its effect channel(s) in the CSC–immune model and its clinical dose in the
regimen grammar of `vcohort.dosing.parse_regimen`.  Units as in `vcohort.drug` (L, L/day, 1/day,
mg/L; the CAR-T product in 1e6 cells).
"""

from __future__ import annotations

import math

from vcohort.drug import Drug, Effect, pk_table

_YIN = (
    "Yin et al. 2021, J Clin Pharmacol 61:480, Table 2 (popPK of ENLIVEN and phase 1; "
    "nlmixr2lib Yin_2020_pexidartinib.R)"
)
_MUKAI = (
    "Mukai et al. 2020, J Clin Pharmacol 60:58, Table 5 (reference covariates; "
    "nlmixr2lib Mukai_2019_mogamulizumab.R)"
)

PEXIDARTINIB = Drug(
    name="pexidartinib",
    drug_class="tam_targeted",
    route="oral",
    params=pk_table(
        [
            ("ka", 6.82 * 24, "1/day", 1.65, _YIN, "first-order absorption rate (6.82/h)"),
            ("CL", 5.83 * 24, "L/day", 0.30, _YIN, "apparent clearance CL/F (5.83 L/h, 80 kg)"),
            ("V1", 98.0, "L", 0.561, _YIN, "apparent central volume Vc/F"),
            ("Q2", 20.7 * 24, "L/day", 0.708, _YIN, "apparent intercompartmental Q/F (20.7 L/h)"),
            ("V2", 116.0, "L", 0.488, _YIN, "apparent peripheral volume Vp/F"),
        ]
    ),
    # Yin 2021 Table 2's omega block on CL/F, Vc/F, Vp/F: covariances 0.0774, 0.0149, -0.0467
    # over variances 0.0860, 0.274, 0.213 (Q/F and ka independent)
    eta_correlation=(("CL", "V1", 0.504), ("CL", "V2", 0.110), ("V1", "V2", -0.193)),
    effects=(
        Effect(
            "csf1r_inhibition",
            "emax",
            emax=1.0,
            ec50=0.84,
            site="central",
            source=(
                "CSF-1R IC50 20 nM (Tap et al. 2015, N Engl J Med 373:428) as a total-plasma "
                "concentration with 99% plasma protein binding (TURALIO label §12.3): "
                "2 µM = 0.84 mg/L (MW 417.8); 400 mg BID then gives ~87% inhibition at the "
                "average steady-state concentration"
            ),
        ),
    ),
    clinical_dose="pexidartinib 400 mg every 12 h",
    mw=417.8,
    half_life_days=26.6 / 24.0,
    half_life_source=(
        "TURALIO label §12.3: t1/2 26.6 h (the Yin 2021 model gives 27.7 h).  Lag time "
        "(0.39 h) and zero-order input (1.2 h) of Yin 2021 omitted: under 2 h, against days"
    ),
    ref_weight=80.0,
    weight_exponent_cl=0.75,
    weight_exponent_v=1.0,
    max_single_dose_mg=600.0,
    toxicity=(
        "hepatotoxicity (boxed warning, REMS); 400 mg BID fasted in ENLIVEN, the current label's "
        "250 mg BID with a low-fat meal gives similar exposure"
    ),
    references=(_YIN, "NCT02777710 (pexidartinib + durvalumab)"),
)

SX682 = Drug(
    name="sx682",
    drug_class="mdsc_targeted",
    route="oral",
    params=pk_table(
        [
            (
                "ka",
                24.0,
                "1/day",
                0.4,
                "assumption: t_max ~1-2 h for an oral small molecule (no published PK)",
                "first-order absorption rate",
            ),
            (
                "CL",
                554.5,
                "L/day",
                0.4,
                "assumption: CL/F giving t1/2 6 h with V/F 200 L (no half-life published); "
                "the ANC fall (the CXCR2 PD marker) reversed on stopping SX-682 in the phase "
                "1 MDS trial (NCT04245397, ASH 2021 abstract), consistent with short-lived "
                "exposure",
                "apparent clearance CL/F",
            ),
            (
                "V1",
                200.0,
                "L",
                0.3,
                "assumption: apparent volume of an oral small molecule; no popPK published",
                "apparent volume V/F",
            ),
        ]
    ),
    effects=(
        Effect(
            "cxcr2_inhibition",
            "emax",
            emax=1.0,
            ec50=0.06,
            site="central",
            source=(
                "assumption: EC50 placed so that 150 mg BID (average concentration 0.54 mg/L "
                "with the assumed CL/F) gives ~90% inhibition: neutrophils fell by up to 66% "
                "at >= 150 mg BID in the melanoma phase 1 (NCT03161431; Patel et al. 2024, J "
                "Clin Oncol 42(16_suppl):9508, as SOURCES.md records) and the ANC fall "
                "plateaued at 200-400 mg in the MDS phase 1 (NCT04245397, ASH 2021 abstract)"
            ),
        ),
    ),
    clinical_dose="sx682 200 mg every 12 h",
    mw=math.nan,
    half_life_days=0.25,
    half_life_source="assumption (no published t1/2): 6 h, see CL and V1 rows",
    max_single_dose_mg=400.0,
    toxicity=(
        "on-target neutropenia (ANC down up to 66%, reversible within 24 h); no MTD up to "
        "400 mg BID.  Not linked to the Friberg ANC model (egress, not production, is blocked)"
    ),
    references=("Patel et al. 2024, J Clin Oncol 42(16_suppl):9508 (SX-682 + pembrolizumab)",),
)

MOGAMULIZUMAB = Drug(
    name="mogamulizumab",
    drug_class="treg_depletion",
    route="iv",
    params=pk_table(
        [
            ("CL", 0.0138 * 24, "L/day", 0.505, _MUKAI, "clearance (0.0138 L/h)"),
            (
                "V1",
                3.65,
                "L",
                0.205,
                _MUKAI,
                "central volume (Mukai's BSA effect, exponent 0.884, not modelled)",
            ),
            ("Q2", 0.0532 * 24, "L/day", 0.0, _MUKAI, "intercompartmental clearance (0.0532 L/h)"),
            ("V2", 2.48, "L", 0.727, _MUKAI, "peripheral volume"),
        ]
    ),
    effects=(
        Effect(
            "ccr4_depletion",
            "emax",
            emax=1.0,
            ec50=0.1,
            site="central",
            source=(
                "assumption: EC50 0.1 mg/L so that even 0.1 mg/kg (peak ~2 mg/L) depletes "
                "CCR4+ FOXP3+ Tregs near-completely, as in the phase 1 study in solid tumours "
                "(Kurose et al. 2015, Clin Cancer Res 21:4327)"
            ),
        ),
    ),
    clinical_dose="mogamulizumab 1 mg/kg every 7 d x 4 over 60 min",
    mw=149_000.0,
    half_life_days=13.4,
    half_life_source=(
        "typical patient of Mukai 2020 (reference covariates; Mukai's sex effect on CL, x0.768 "
        "in women, is not modelled, so CL is ~12% high for a mixed cohort).  The POTELIGEO "
        "label's 17 d (CV 66%) and 12 mL/h read as geometric means, i.e. typical values: this "
        "model's typical t1/2 is ~20% shorter.  The arithmetic mean of the model's half-lives "
        "over its own variability is 17 d (tests/test_drugs_table1.py)"
    ),
    max_single_dose_mg=150.0,
    toxicity=(
        "skin rash (incl. SJS/TEN), infusion reactions, autoimmune complications; label: "
        "1 mg/kg weekly x4 (days 1, 8, 15, 22), then every 2 weeks until progression.  The "
        "catalogue's clinical dose is the first cycle only: for the label's maintenance add "
        "'mogamulizumab 1 mg/kg every 14 d start 28 d over 60 min' to the arm (one drug may "
        "have several regimens)"
    ),
    references=(_MUKAI, "NCT02946671 (mogamulizumab + nivolumab)"),
)

CD133_CART = Drug(
    name="cd133_cart",
    drug_class="csc_immunotherapy",
    route="iv",
    params=pk_table(
        [
            (
                "CL",
                6.93,
                "L/day",
                0.0,
                "assumption: infused T cells leave the blood with t1/2 ~12 h (lung transit, "
                "then tissues; the early fall before expansion in Stein et al. 2019, CPT:PSP "
                "8:285, Fig. 1); no variability, so that the cart_infusion slope equals CL",
                "clearance of infused CAR-T cells from the blood",
            ),
            (
                "V1",
                5.0,
                "L",
                0.0,
                "assumption: blood volume of an adult",
                "volume of the circulating CAR-T pool",
            ),
        ]
    ),
    effects=(
        Effect(
            "cart_infusion",
            "linear",
            slope=6.93e6,
            site="central",
            source=(
                "definition: cells leaving the blood per day = CL x C x 1e6 cells per amount "
                "unit (slope = CL of this entry, 6.93 L/day); the model's f_home_car of them "
                "reach the tumour"
            ),
        ),
    ),
    clinical_dose="cd133_cart 1e6 cells/kg",
    mw=math.nan,
    half_life_days=0.5,
    half_life_source="assumption: see the CL row (blood residence of infused cells)",
    max_single_dose_mg=math.inf,
    toxicity=(
        "cytokine release; on-target off-tumour toxicity to CD133+ normal progenitors "
        "(reversible falls in platelets and haemoglobin); 0.5-2e6 cells/kg in the phase 1 "
        "trial (Wang et al. 2018, OncoImmunology 7:e1440169, NCT02541370)"
    ),
    references=("Wang et al. 2018, OncoImmunology 7:e1440169", "Stein et al. 2019, CPT:PSP 8:285"),
    amount_unit="1e6 cells",
)

GUADECITABINE = Drug(
    name="guadecitabine",
    drug_class="epigenetic",
    route="sc",
    params=pk_table(
        [
            (
                "ka",
                48.0,
                "1/day",
                0.4,
                "assumption: subcutaneous absorption with t_max ~1 h",
                "first-order absorption rate",
            ),
            (
                "CL",
                1109.0,
                "L/day",
                0.4,
                "assumption: active moiety (decitabine released from guadecitabine) with t1/2 "
                "1.5 h and V/F 100 L: longer than the ~0.5 h of IV decitabine, as reported "
                "(Issa et al. 2015, Lancet Oncol 16:1099).  The concentrations are a surrogate "
                "scale, not decitabine's: the dose stays in guadecitabine mg and the long t1/2 "
                "sits in a low CL/F (decitabine's own CL is ~230 L/h, Cashen et al. 2008, Cancer "
                "Chemother Pharmacol 61:759), so the AUC is ~10x IV decitabine's; the EC50 is on "
                "the same scale, so only the effect is meant to be read",
                "apparent clearance CL/F of the active moiety",
            ),
            (
                "V1",
                100.0,
                "L",
                0.3,
                "assumption: apparent volume of the active moiety",
                "apparent volume V/F",
            ),
            (
                "ke0",
                0.1,
                "1/day",
                0.3,
                "assumption: DNA hypomethylation builds up over the 5-day course and recovers "
                "only partly by the end of the 28-day cycle (LINE-1 methylation: Issa et al. "
                "2015; INQOVI label §12.2): biophase t1/2 ~7 d",
                "effect-compartment rate (demethylation turnover)",
            ),
        ]
    ),
    effects=(
        Effect(
            "mhc_restoration",
            "emax",
            emax=1.0,
            ec50=0.009,
            site="effect",
            source=(
                "assumption: EC50 at the effect site so that 60 mg/m2 daily x5 gives ~80% of "
                "the maximal effect at its peak (0.81 at 1.8 m2), since LINE-1 demethylation "
                "reached a plateau at 60 mg/m2 (Issa et al. 2015)"
            ),
        ),
    ),
    clinical_dose="guadecitabine 60 mg/m2 every 24 h x 5 repeat every 28 d",
    mw=557.4,
    half_life_days=1.5 / 24.0,
    half_life_source="assumption: 1.5 h, see the CL row",
    max_single_dose_mg=200.0,
    toxicity=(
        "myelosuppression (febrile neutropenia 41%, Issa et al. 2015; MTD 90 mg/m2 daily x5 "
        "in MDS); 28-day cycles (the clinical dose repeats them).  Not linked to the Friberg "
        "ANC model"
    ),
    references=(
        "Issa et al. 2015, Lancet Oncol 16:1099",
        "NCT03250273 (guadecitabine + atezolizumab)",
    ),
)

TABLE1_DRUGS: tuple[Drug, ...] = (
    PEXIDARTINIB,
    SX682,
    MOGAMULIZUMAB,
    CD133_CART,
    GUADECITABINE,
)

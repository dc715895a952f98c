"""The CSC–immune crosstalk model of ``MODEL.md``, for one patient.

States (cells, nM, relative units; see `STATES`) and every mechanism is a named term in
`rates` so that it can be pointed to, tested and switched off.  The right-hand side is written
once, generically over ``xp`` (``numpy`` or ``jax.numpy``) and over scalars, so that the same
equations drive the JAX simulator (vectorised by ``vmap``) and the independent scipy reference.

Review sections ("§") refer to Yu & Gong 2025, Front. Immunol. 16:1620807.
QSP-IO refers to the QSPIO-TNBC model (Wang et al. 2021, 2022; GitHub HanwenWang95/QSPIO-TNBC),
whose rate laws (``model/*.m``) and values (``parameters/parameters_TNBC.m``) we reuse where noted.

Soluble signals are concentrations in the tumour interstitium produced per cell: a producer
population X secretes ``sigma * (X / V_T) / RHO_REF`` nM/day, where ``V_T`` is the tumour volume
(mL) and ``RHO_REF = 1e8 cells/mL`` (so ``sigma`` is the production rate, in nM/day, of producers
packed at 1e8 cells/mL; a QSP-IO secretion of s nmol/cell/day equals sigma = 1e11·s nM/day:
s nmol/cell/day at 1e8 cells/mL is 1e8·s nmol/mL/day = 1e11·s nM/day).
Myeloid suppression through NO/arginase (decay ~135/day, QSP-IO) is taken quasi-steady: its
effect is a saturating function of the MDSC density (assumption: NO equilibrates within minutes).
"""

from __future__ import annotations

import math

from vcohort.model.csc_immune_params import PARAMS  # noqa: F401  (re-exported)

# ---------------------------------------------------------------------------- states
STATES: tuple[str, ...] = (
    # tumour
    "S",
    "N",
    "D",
    # immune cells in the tumour
    "T8",
    "Treg",
    "MDSC",
    "M1",
    "M2",
    "CART",
    # soluble signals
    "TGFb",
    "IL6",
    "IL10",
    "CCL2",
    "CCL5",
    "IFNg",
    "Exo",
    "Met",
    "PDL1",
    # neutrophils (Friberg et al. 2002)
    "Prol",
    "Tr1",
    "Tr2",
    "Tr3",
    "ANC",
)

STATE_UNITS = {
    "S": "cells",
    "N": "cells",
    "D": "cells",
    "T8": "cells",
    "Treg": "cells",
    "MDSC": "cells",
    "M1": "cells",
    "M2": "cells",
    "CART": "cells",
    "TGFb": "nM",
    "IL6": "nM",
    "IL10": "nM",
    "CCL2": "nM",
    "CCL5": "nM",
    "IFNg": "nM",
    "Exo": "relative",
    "Met": "mM",
    "PDL1": "relative",
    "Prol": "1e9/L",
    "Tr1": "1e9/L",
    "Tr2": "1e9/L",
    "Tr3": "1e9/L",
    "ANC": "1e9/L",
}

STATE_DESCRIPTIONS = {
    "S": "cancer stem cells (CSCs)",
    "N": "non-stem cancer cells",
    "D": "dead-cell debris, still counted in tumour volume (QSP-IO dead-cell compartment)",
    "T8": "effector CD8+ T cells in the tumour",
    "Treg": "regulatory T cells (CD4+CD25+FOXP3+)",
    "MDSC": "myeloid-derived suppressor cells",
    "M1": "M1 (anti-tumour) tumour-associated macrophages",
    "M2": "M2 (pro-tumour) tumour-associated macrophages",
    "CART": "CD133-directed CAR-T cells in the tumour (0 unless a CAR-T product is given)",
    "TGFb": "TGF-β",
    "IL6": "IL-6/TNF-α/CXCL8 inflammatory pool",
    "IL10": "IL-10",
    "CCL2": "CCL2",
    "CCL5": "CCL1/CCL5 pool (Treg chemokines)",
    "IFNg": "IFN-γ",
    "Exo": "exosome signal (miR-21/miR-210 cargo), 1 ≈ typical untreated level",
    "Met": "immunosuppressive metabolites (lactate/adenosine/kynurenine), lactate-equivalent",
    "PDL1": "PD-L1 expression on tumour cells relative to constitutive",
    "Prol": "proliferating neutrophil precursors (Friberg)",
    "Tr1": "transit compartment 1",
    "Tr2": "transit compartment 2",
    "Tr3": "transit compartment 3",
    "ANC": "absolute neutrophil count (circulating)",
}

# Effect channels this model accepts from drugs: name -> (kind, meaning).  Fraction channels are
# in [0, 1] and combine across drugs by Bliss independence; linear channels add.
EFFECT_CHANNELS: dict[str, tuple[str, str]] = {
    "pd1_occupancy": ("emax", "fraction of PD-1 bound by an anti-PD-1 antibody"),
    "wnt_inhibition": ("emax", "inhibition of Wnt ligand secretion (Porcupine) / CSC pathway"),
    "glutaminase_inhibition": ("emax", "inhibition of glutaminase (GLS1)"),
    "chemo_kill": ("emax", "cytotoxic kill of proliferating tumour cells, fraction of maximum"),
    "chemo_stress": ("emax", "stress response of surviving tumour cells to chemotherapy"),
    "myelotoxicity": ("linear", "Friberg drug effect E on neutrophil precursor proliferation"),
    "csf1r_inhibition": ("emax", "CSF-1R blockade: M2 depletion and reprogramming"),
    "cxcr2_inhibition": ("emax", "CXCR1/2 blockade: MDSC recruitment by CXCL8"),
    "ccr4_depletion": ("emax", "anti-CCR4 depletion of Tregs (ADCC)"),
    "mhc_restoration": (
        "emax",
        "epigenetic restoration of MHC-I / antigen presentation on CSCs, and less CSC "
        "TGF-β/IL-10/CCL5 secretion (e_epi_sec)",
    ),
    "cart_infusion": ("linear", "CAR-T cells leaving the blood per day (cells/day)"),
}

# Geometry (QSP-IO tumSizePerc.m / simbio_init.m)
CELL_DIAMETER_UM = 17.0
CELL_VOLUME_ML = (math.pi / 6.0) * (CELL_DIAMETER_UM * 1e-4) ** 3  # 2.57e-9 mL
CELL_FRACTION = 0.37
RHO_REF = 1e8  # cells/mL reference density for secretion rates
CELL_FLOOR = 1.0  # cells; see `rates`


def tumour_volume_ml(S, N, D):
    """Tumour volume (mL) from cancer cells and debris: V = (S+N+D)·V_cell/0.37 (QSP-IO)."""
    return (S + N + D) * (CELL_VOLUME_ML / CELL_FRACTION)


def diameter_mm(S, N, D):
    """Spherical-equivalent diameter (mm) used as the RECIST sum of diameters (QSP-IO)."""
    v_mm3 = tumour_volume_ml(S, N, D) * 1e3
    return 2.0 * (3.0 * v_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0)


def cells_for_diameter(d_mm: float) -> float:
    """Cells (S+N+D) of a sphere of diameter ``d_mm`` (inverse of `diameter_mm`)."""
    v_ml = (math.pi / 6.0) * d_mm**3 * 1e-3
    return v_ml * CELL_FRACTION / CELL_VOLUME_ML


# ---------------------------------------------------------------------------- the rates
def hill(x, k):
    """Saturating x/(x+k)."""
    return x / (x + k)


def rates(y: dict, p: dict, e: dict, xp, tumour_dynamics=1.0) -> dict:
    """Every mechanism of the model as a named rate (per day) for one patient.

    Args:
        y: states (`STATES`) as scalars or arrays.
        p: parameters (`PARAMS` names).
        e: drug effect channels (`EFFECT_CHANNELS`); missing channels count as 0.
        xp: ``numpy`` or ``jax.numpy``.
        tumour_dynamics: 1 normally; 0 freezes S, N, D (pre-treatment run-in of the immune state).

    Returns:
        A dict of named terms; `rhs` assembles them into derivatives.
    """
    g = lambda k: e.get(k, 0.0)  # noqa: E731
    S, N, D = y["S"], y["N"], y["D"]
    # floors of one cell keep logs and ratios finite when a tumour is eradicated (float32
    # underflows to 0, and GPUs flush denormals): negligible against 1e9-1e11 cells
    C = xp.maximum(S + N, CELL_FLOOR)
    V = tumour_volume_ml(C, 0.0, D)
    dens = 1.0 / (V * RHO_REF)  # (cells -> producers at 1e8/mL)
    r: dict = {}

    # stemness signal (review §2.1-3.3): STAT3/NF-κB from IL-6, TGF-β, IL-10, exosomes, metabolites
    w_sum = p["w_IL6"] + p["w_TGF"] + p["w_IL10"] + p["w_Exo"] + p["w_Met"]
    stem = (
        p["w_IL6"] * hill(y["IL6"], p["K_stem_IL6"])
        + p["w_TGF"] * hill(y["TGFb"], p["K_stem_TGF"])
        + p["w_IL10"] * hill(y["IL10"], p["K_stem_IL10"])
        + p["w_Exo"] * hill(y["Exo"], p["K_stem_Exo"])
        + p["w_Met"] * hill(y["Met"], p["K_stem_Met"])
    ) / w_sum
    r["stemness_signal"] = stem
    wnt = g("wnt_inhibition")
    drive = p["b_wnt"] * (1.0 - wnt) + (1.0 - p["b_wnt"]) * stem
    niche = 1.0 / (1.0 + (S / C) / p["K_niche"])  # feedback from the CSC fraction
    p_sr = p["p_lo"] + (p["p_hi"] - p["p_lo"]) * drive * niche
    r["self_renewal_probability"] = p_sr

    # Gompertz drive, no growth above the capacity (QSP-IO cancer_module.m:
    # log(max(C_max/C, 1))): unclamped, a tumour above K_cap would lose cells that no
    # death flux counts (not to debris) and CSC division would take cells out of N
    gomp = xp.log(xp.maximum(p["K_cap"] / C, 1.0))
    gls = g("glutaminase_inhibition")
    div_S = p["v_S"] * gomp * (1.0 - p["f_gls_S"] * gls) * S
    div_N = p["v_N"] * gomp * (1.0 - p["f_gls_N"] * gls) * N
    r["csc_self_renewal"] = (2.0 * p_sr - 1.0) * div_S  # net CSC gain from division
    r["csc_differentiation"] = 2.0 * (1.0 - p_sr) * div_S  # non-stem progeny of CSC division
    r["non_stem_proliferation"] = div_N
    emt = 0.5 * (hill(y["IL6"], p["K_stem_IL6"]) + hill(y["TGFb"], p["K_stem_TGF"]))
    r["dedifferentiation"] = p["k_ded"] * (1.0 + p["a_ded"] * emt) * N  # plasticity (§5.1)
    r["csc_death"] = p["d_S"] * S
    r["non_stem_death"] = p["d_N"] * N

    # CD8 killing (QSP-IO Teff_module.m), suppressed multiplicatively (§2.2, §3.1, §3.3)
    occ = g("pd1_occupancy")
    z_N = y["PDL1"] * (1.0 - occ)
    z_S = p["pdl1_S"] * y["PDL1"] * (1.0 - occ)
    H_PD1_N = p["h_PD1"] * z_N / (z_N + p["K_PD1"])
    H_PD1_S = p["h_PD1"] * z_S / (z_S + p["K_PD1"])
    H_TGF = p["h_TGF_T"] * hill(y["TGFb"], p["K_TGF_T"])
    H_MDSC = p["h_MDSC"] * hill(y["MDSC"] / V, p["K_MDSC"])
    H_Met = p["h_Met"] * hill(y["Met"], p["K_Met_T"])
    H_IL10 = p["h_IL10_T"] * hill(y["IL10"], p["K_IL10_T"])
    treg_sup = (y["T8"] + CELL_FLOOR) / (y["T8"] + p["K_Treg"] * y["Treg"] + CELL_FLOOR)
    common = (1.0 - H_TGF) * (1.0 - H_IL10) * (1.0 - H_MDSC) * (1.0 - H_Met) * treg_sup
    contact = p["k_T"] * y["T8"] / (p["K_TC"] * C + y["T8"])
    # epigenetic therapy restores MHC-I: visibility moves from vis_S towards 1
    vis_S = p["vis_S"] + (1.0 - p["vis_S"]) * xp.minimum(p["a_mhc"] * g("mhc_restoration"), 1.0)
    r["tcell_kill_N"] = contact * common * (1.0 - H_PD1_N) * N
    r["tcell_kill_S"] = contact * common * (1.0 - H_PD1_S) * vis_S * S
    r["tcell_activity"] = common * (1.0 - H_PD1_N)  # fraction of unsuppressed function

    m1 = p["k_M1"] * y["M1"] / (p["K_M1C"] * C + y["M1"])
    r["m1_kill_N"] = m1 * N
    r["m1_kill_S"] = m1 * S
    # CD133 CAR-T (review §4.2(4)): homing from blood; expansion on CD133⁺ CSC antigen at the
    # in-patient rate, and contraction, of Stein et al. 2019 (CPT:PSP 8:285), with stimulation
    # per CAR-T falling as they outnumber their targets (ratio-dependent, as the killing law);
    # MHC-independent killing of S only with the CD8 killing law and its TME suppression except
    # Tregs (assumption: CAR-T are T cells; their CD3ζ signal is braked by PD-1, TGF-β, IL-10,
    # MDSC, lactate)
    car_sup = (1.0 - H_TGF) * (1.0 - H_IL10) * (1.0 - H_MDSC) * (1.0 - H_Met) * (1.0 - H_PD1_S)
    r["cart_influx"] = p["f_home_car"] * g("cart_infusion")
    stim = S / (S + p["K_car_ET"] * y["CART"] + CELL_FLOOR)
    allee = y["CART"] / (y["CART"] + p["K_car_min"])
    r["cart_expansion"] = p["rho_car"] * stim * allee * y["CART"]
    r["cart_contraction"] = p["alpha_car"] * y["CART"]
    r["cart_kill_S"] = p["k_T"] * car_sup * y["CART"] / (p["K_TC"] * S + y["CART"] + CELL_FLOOR) * S
    chemo = p["k_chemo"] * g("chemo_kill")
    r["chemo_kill_N"] = chemo * N
    r["chemo_kill_S"] = p["f_chemo_S"] * chemo * S
    r["debris_clearance"] = p["k_clear"] * D

    # T cells
    wnt_excl = p["e_excl"] * (1.0 - wnt)
    antigen = C**2 / (C**2 + p["Kc_rec"] ** 2)
    debris_frac = D / (C + D)
    icd = 1.0 + p["a_ICD"] * debris_frac / (debris_frac + p["K_D"])
    supply = 1.0 / (1.0 + V / p["V_T8"])  # finite systemic CD8 supply (Huang 2017)
    r["t8_recruitment"] = p["q_T8"] * V * supply * (1.0 - wnt_excl) * antigen * icd
    r["t8_expansion"] = p["r_T8"] * r["tcell_activity"] * y["T8"]
    r["t8_loss"] = p["d_T8"] * y["T8"]

    # Tregs (§2.3; §4 ref 58)
    r["treg_recruitment"] = p["q_Treg"] * V * hill(y["CCL5"], p["K_CCL5"])
    # TGF-β-driven induction, enhanced by CSC exosomes (§3.2: "enhancing Treg differentiation")
    r["treg_induction"] = (
        p["q_Treg_ind"]
        * V
        * hill(y["TGFb"], p["K_TGF_ind"])
        * (1.0 + p["a_exo_Treg"] * hill(y["Exo"], p["K_stem_Exo"]))
    )
    r["treg_loss"] = p["d_Treg"] * y["Treg"]
    r["treg_depletion"] = p["k_ccr4"] * g("ccr4_depletion") * y["Treg"]

    # MDSC (QSP-IO MDSC_module.m; CXCR1/2 blockade acts on the CXCL8 part)
    mdsc_chemo = p["w_CCL2"] * hill(y["CCL2"], p["K_CCL2"]) + (1.0 - p["w_CCL2"]) * hill(
        y["IL6"], p["K_CXCL8"]
    ) * (1.0 - g("cxcr2_inhibition"))
    r["mdsc_recruitment"] = (
        p["q_MDSC"] * V * mdsc_chemo * (1.0 + p["a_exo_MDSC"] * hill(y["Exo"], p["K_stem_Exo"]))
    )
    r["mdsc_death"] = p["d_MDSC"] * y["MDSC"]

    # macrophages (QSP-IO macrophage_module.m)
    csf = g("csf1r_inhibition")
    r["macrophage_recruitment"] = p["q_Mac"] * V * hill(y["CCL2"], p["K_CCL2"])
    pol12 = (
        p["k_M12"]
        * (
            hill(y["TGFb"], p["K_TGF_M"])
            + hill(y["IL10"], p["K_IL10_M"])
            + p["a_excl_M12"]
            * 0.5
            * (hill(y["Exo"], p["K_stem_Exo"]) + hill(y["Met"], p["K_stem_Met"]))
        )
        / (2.0 + p["a_excl_M12"])
    )
    # QSP-IO (macrophage_module.m) sums the TGF-β and IL-10 terms (up to 2 k_M12); here a
    # weighted mean with the exosome/metabolite term (up to k_M12).  Its M2→M1 term also has
    # IL-12, left out here (no IL-12 state).  assumption: not yet reconciled
    pol21 = p["k_M21"] * hill(y["IFNg"], p["K_IFN"]) * (1.0 + p["a_csf1r_rep"] * csf)
    r["m1_to_m2"] = pol12 * y["M1"]
    r["m2_to_m1"] = pol21 * y["M2"]
    r["m1_death"] = p["d_Mac"] * y["M1"]
    r["m2_death"] = p["d_Mac"] * (1.0 + p["a_csf1r"] * csf) * y["M2"]

    # soluble signals: production (nM/day) and decay
    # CSC secretion of suppressive signals (TGF-β, IL-10, CCL5), lowered by Wnt
    # inhibition (§4.3) and by epigenetic therapy (review Table 1: DNMT/HDAC inhibitors
    # "reverse CSC-driven immune suppression")
    sec = (1.0 - p["e_wnt_sec"] * wnt) * (1.0 - p["e_epi_sec"] * g("mhc_restoration"))
    stress = g("chemo_stress")
    r["tgfb_production"] = dens * (
        p["sig_TGF_S"] * (1.0 + p["a_chemo_TGF"] * stress) * sec * S
        + p["sig_TGF_N"] * N
        + p["sig_TGF_Treg"] * y["Treg"]
        + p["sig_TGF_M2"] * y["M2"]
        + p["sig_TGF_MDSC"] * y["MDSC"]
    )
    r["il6_production"] = dens * (
        p["sig_IL6_M2"] * y["M2"] + p["sig_IL6_MDSC"] * y["MDSC"] + p["sig_IL6_S"] * S
    )
    r["il10_production"] = dens * (
        p["sig_IL10_M2"] * y["M2"]
        + p["sig_IL10_MDSC"] * y["MDSC"]
        + p["sig_IL10_Treg"] * y["Treg"]
        + p["sig_IL10_S"] * sec * S
    )
    r["ccl2_production"] = dens * (p["sig_CCL2_N"] * N + p["sig_CCL2_S"] * S)
    r["ccl5_production"] = dens * p["sig_CCL5_S"] * sec * S
    r["ifng_production"] = dens * p["sig_IFN_T8"] * r["tcell_activity"] * y["T8"]
    r["exo_production"] = dens * (p["sig_Exo_S"] * S + p["sig_Exo_MDSC"] * y["MDSC"])
    r["met_production"] = (
        dens * (1.0 - p["g_Met"] * gls) * (p["sig_Met_N"] * N + p["sig_Met_S"] * S)
    )
    r["pdl1_induction"] = p["k_PDL1"] * (
        1.0 + p["a_PDL1_IFN"] * hill(y["IFNg"], p["K_IFN"]) + p["a_PDL1_chemo"] * stress
    )

    # neutrophils (Friberg et al. 2002)
    ktr = 4.0 / p["MTT"]
    r["prol_proliferation"] = (
        ktr * y["Prol"] * (1.0 - g("myelotoxicity")) * (p["ANC0"] / y["ANC"]) ** p["gamma"]
    )
    r["ktr"] = ktr
    r["tumour_dynamics"] = tumour_dynamics
    return r


def rhs(y: dict, p: dict, e: dict, xp, tumour_dynamics=1.0) -> dict:
    """d(state)/dt for one patient (per day), assembled from the named terms of `rates`."""
    r = rates(y, p, e, xp, tumour_dynamics)
    f = tumour_dynamics
    kills_S = r["tcell_kill_S"] + r["m1_kill_S"] + r["chemo_kill_S"] + r["cart_kill_S"]
    kills_N = r["tcell_kill_N"] + r["m1_kill_N"] + r["chemo_kill_N"]
    ktr = r["ktr"]
    return {
        "S": f * (r["csc_self_renewal"] + r["dedifferentiation"] - r["csc_death"] - kills_S),
        "N": f
        * (
            r["csc_differentiation"]
            + r["non_stem_proliferation"]
            - r["dedifferentiation"]
            - r["non_stem_death"]
            - kills_N
        ),
        "D": f * (r["csc_death"] + r["non_stem_death"] + kills_S + kills_N - r["debris_clearance"]),
        "T8": r["t8_recruitment"] + r["t8_expansion"] - r["t8_loss"],
        "Treg": r["treg_recruitment"] + r["treg_induction"] - r["treg_loss"] - r["treg_depletion"],
        "MDSC": r["mdsc_recruitment"] - r["mdsc_death"],
        "M1": r["macrophage_recruitment"] - r["m1_to_m2"] + r["m2_to_m1"] - r["m1_death"],
        "M2": r["m1_to_m2"] - r["m2_to_m1"] - r["m2_death"],
        "CART": r["cart_influx"] + r["cart_expansion"] - r["cart_contraction"],
        "TGFb": r["tgfb_production"] - p["k_TGF"] * y["TGFb"],
        "IL6": r["il6_production"] - p["k_IL6"] * y["IL6"],
        "IL10": r["il10_production"] - p["k_IL10"] * y["IL10"],
        "CCL2": r["ccl2_production"] - p["k_CCL2"] * y["CCL2"],
        "CCL5": r["ccl5_production"] - p["k_CCL5"] * y["CCL5"],
        "IFNg": r["ifng_production"] - p["k_IFN"] * y["IFNg"],
        "Exo": r["exo_production"] - p["k_Exo"] * y["Exo"],
        "Met": r["met_production"] - p["k_Met"] * y["Met"],
        "PDL1": r["pdl1_induction"] - p["k_PDL1"] * y["PDL1"],
        "Prol": r["prol_proliferation"] - ktr * y["Prol"],
        "Tr1": ktr * (y["Prol"] - y["Tr1"]),
        "Tr2": ktr * (y["Tr1"] - y["Tr2"]),
        "Tr3": ktr * (y["Tr2"] - y["Tr3"]),
        "ANC": ktr * (y["Tr3"] - y["ANC"]),
    }


def initial_state(p: dict, baseline_diameter_mm, debris_fraction=0.1) -> dict:
    """A first guess of the state for a tumour of the given diameter (before the run-in), with
    the patient's baseline CSC fraction ``p["f_S0"]``.

    Immune cells and signals start at rough typical densities; `vcohort.cohort` then runs the
    immune model with the tumour frozen so that they settle to values consistent with it.
    """
    csc_fraction = p["f_S0"]
    cells = cells_for_diameter(1.0) * baseline_diameter_mm**3
    C = (1.0 - debris_fraction) * cells
    V = tumour_volume_ml(0.0, C, debris_fraction * cells)
    anc = p["ANC0"]
    return {
        "S": csc_fraction * C,
        "N": (1.0 - csc_fraction) * C,
        "D": debris_fraction * cells,
        "T8": 5e6 * V,
        "Treg": 2e6 * V,
        "MDSC": 3e6 * V,
        "M1": 5e6 * V,
        "M2": 5e6 * V,
        "CART": 0.0 * anc,
        "TGFb": 0.1 + 0.0 * anc,
        "IL6": 0.05 + 0.0 * anc,
        "IL10": 0.01 + 0.0 * anc,
        "CCL2": 0.15 + 0.0 * anc,
        "CCL5": 0.06 + 0.0 * anc,
        "IFNg": 0.002 + 0.0 * anc,
        "Exo": 1.0 + 0.0 * anc,
        "Met": 10.0 + 0.0 * anc,
        "PDL1": 2.0 + 0.0 * anc,
        "Prol": anc,
        "Tr1": anc,
        "Tr2": anc,
        "Tr3": anc,
        "ANC": anc,
    }

"""Parameter table of the CSC–immune model (`vcohort.model.csc_immune`): value, unit,
between-patient CV, source (or "assumption: why") and meaning of every parameter."""

from __future__ import annotations

from vcohort.model.parameters import Param, ParamTable

_QSPIO = (
    "QSP-IO (GitHub HanwenWang95/QSPIO-TNBC, parameters/parameters_TNBC.m at commit acc8366; "
    "the model of Wang et al. 2021, J Immunother Cancer 9:e002100, with the macrophage module "
    "of Wang et al. 2022, iScience 25:104702; NSCLC ancestor: Jafarnejad et al. 2019, AAPS J "
    "21:79)"
)
_STEIN = (
    "Stein et al. 2019, CPT:PSP 8:285, Table 1 (tisagenlecleucel; "
    "nlmixr2lib Stein_2019_Tisagenlecleucel.R)"
)
_FRIBERG = "Friberg et al. 2002, J Clin Oncol 20:4713 (range of system parameters across drugs)"


def _a(why: str) -> str:
    return "assumption: " + why


_ROWS = [
    # --- tumour growth and hierarchy
    (
        "K_cap",
        2e12,
        "cells",
        0.0,
        _a("Gompertz plateau ~1-2 kg tumour, lethal burden ~1e12 cells"),
        "Gompertz carrying capacity",
    ),
    (
        "v_S",
        0.008,
        "1/day",
        0.3,
        _a("CSCs divide no faster than bulk cells; scaled with v_N"),
        "CSC division rate per unit Gompertz drive log(K/C)",
    ),
    (
        "v_N",
        0.010,
        "1/day",
        0.3,
        _a(
            "with log(K/C)~3.5 gives ~0.035/day gross division; QSP-IO's k_C_growth "
            "0.0072/day has the same role (gross division per unit log(K/C), "
            "cancer_module.m; death is its separate k_C_death 1e-4/day), i.e. ~0.025/day at "
            "log(K/C)~3.5"
        ),
        "non-stem division rate per unit Gompertz drive",
    ),
    (
        "p_lo",
        0.30,
        "-",
        0.0,
        _a(
            "Wodarz-type hierarchy (Weekes et al. 2014): without stemness "
            "support CSCs mostly differentiate"
        ),
        "lowest CSC self-renewal probability",
    ),
    (
        "p_hi",
        0.75,
        "-",
        0.1,
        _a("upper bound of self-renewal probability under full support"),
        "highest CSC self-renewal probability",
    ),
    (
        "K_niche",
        0.05,
        "-",
        0.0,
        _a(
            "niche saturation: self-renewal falls as CSCs fill a limited niche, read as the "
            "CSC fraction S/C.  Not Lander et al.'s (2009 PLoS Biol 7:e15) feedback from "
            "differentiated progeny, p = p/(1+γ·x1) in SOURCES.md, which acts the other way "
            "when therapy kills non-stem cells (fewer progeny, more self-renewal); "
            "it slows but does not stop CSC enrichment: dedifferentiation does not slow with "
            "growth, so as Gompertz growth slows the untreated CSC fraction rises from its "
            "initial 10% (median 12.4% at day 30, 23% at day 180, 33% at day 365; 200 default "
            "patients, seed 1)"
        ),
        "CSC fraction halving the self-renewal drive",
    ),
    (
        "f_S0",
        0.10,
        "-",
        0.0,
        _a(
            "10%, inside the 1.6-20.4% of melanoma cells that carry the CSC marker ABCB5 "
            "(Schatton et al. 2008, Nature 451:345); the same for every patient unless a "
            "population preset sets its spread ([parameters.f_S0], e.g. cv and upper)"
        ),
        "CSC fraction of tumour cells at baseline",
    ),
    (
        "b_wnt",
        0.5,
        "-",
        0.0,
        _a(
            "half of the self-renewal drive is Wnt/β-catenin, half "
            "STAT3/NF-κB niche signals (review §2.1-3.1)"
        ),
        "Wnt share of CSC self-renewal drive",
    ),
    (
        "K_stem_IL6",
        0.05,
        "nM",
        0.0,
        _a("half-saturation below the untreated level (after run-in median 0.084 nM)"),
        "IL-6 pool half-saturation for STAT3 stemness",
    ),
    (
        "K_stem_TGF",
        0.1,
        "nM",
        0.0,
        _a("half-saturation near the untreated level (after run-in median 0.13 nM)"),
        "TGF-β half-saturation for stemness/EMT",
    ),
    (
        "K_stem_IL10",
        0.01,
        "nM",
        0.0,
        _a("near QSP-IO IL-10 half-saturation 8 pM (after run-in median IL-10 0.020 nM)"),
        "IL-10 half-saturation for stemness",
    ),
    (
        "K_stem_Exo",
        1.0,
        "relative",
        0.0,
        _a("typical untreated exosome level"),
        "exosome half-saturation for stemness (miR-21/210, §3.2)",
    ),
    (
        "K_stem_Met",
        10.0,
        "mM",
        0.0,
        _a("typical tumour lactate ~10 mM"),
        "metabolite half-saturation for CSC support (§3.3)",
    ),
    (
        "w_IL6",
        1.0,
        "-",
        0.0,
        _a("equal weights; review §2.1, §3.1"),
        "weight of IL-6 in stemness signal",
    ),
    (
        "w_TGF",
        1.0,
        "-",
        0.0,
        _a("equal weights; review §2.2, §3.1"),
        "weight of TGF-β in stemness signal",
    ),
    ("w_IL10", 0.5, "-", 0.0, _a("weaker evidence (§2.1)"), "weight of IL-10 in stemness signal"),
    ("w_Exo", 1.0, "-", 0.0, _a("review §3.2"), "weight of exosomes in stemness signal"),
    ("w_Met", 0.5, "-", 0.0, _a("review §3.3"), "weight of metabolites in stemness signal"),
    (
        "k_ded",
        0.002,
        "1/day",
        0.5,
        _a(
            "slow plasticity; dedifferentiation models (e.g. "
            "nayeok1/Dedifferentiation_Model) use r1 << v0"
        ),
        "basal dedifferentiation N→S",
    ),
    (
        "a_ded",
        2.0,
        "-",
        0.0,
        _a("EMT signals (IL-6, TGF-β) can triple plasticity (§5.1)"),
        "fold-increase of dedifferentiation at saturating IL-6/TGF-β",
    ),
    ("d_S", 0.002, "1/day", 0.0, _a("CSCs are apoptosis-resistant"), "CSC natural death"),
    ("d_N", 0.01, "1/day", 0.3, _a("bulk apoptosis/necrosis"), "non-stem natural death"),
    (
        "k_clear",
        0.2,
        "1/day",
        0.3,
        _a(
            "debris cleared in ~5 days; QSP-IO uses a first-order dead-cell clearance, "
            "k_cell_clear 0.1/day (parameters_TNBC.m): not yet reconciled"
        ),
        "debris clearance",
    ),
    (
        "f_chemo_S",
        0.2,
        "-",
        0.0,
        _a("CSC chemoresistance (quiescence, ABC pumps; review §1, §4)"),
        "CSC chemo kill relative to non-stem cells",
    ),
    (
        "f_gls_S",
        0.5,
        "-",
        0.0,
        _a("CSCs depend more on glutamine (review §4.3(2), ref 74)"),
        "fraction of CSC division blocked at full glutaminase inhibition",
    ),
    (
        "f_gls_N",
        0.15,
        "-",
        0.0,
        _a("bulk cells rely more on glycolysis"),
        "fraction of non-stem division blocked at full glutaminase inhibition",
    ),
    (
        "k_chemo",
        0.15,
        "1/day",
        2.0,
        _a("maximal doxorubicin kill of cycling cells")
        + "; CV fitted: with the dacarbazine potency refitted to KEYNOTE-002's 4% ORR at each "
        "CV, CV 0.3 / 1 / 2 gave 6-month PFS 26.5% / 25.3% / 21.8% against the trial's 16% "
        "(95% CI 10-22%; Ribas et al. 2015), so the largest scanned CV is kept (25.8% / 23.5% "
        "/ 22.3% with dacarbazine's CL CV at 0.24; 24.5% / 19.8% / 17.0% before "
        "pembrolizumab's peripheral PK gained its published variability, which changes the "
        "calibrated population; 22.0% at CV 2 after the 2026-12-02 model change and "
        "dacarbazine refit, the scan not redone): intrinsic chemosensitivity varies widely "
        "between melanomas "
        "(experiments/fit_dacarbazine.py --cv-scan)",
        "maximal chemotherapy kill rate of non-stem cells",
    ),
    # --- CD8 T cells (QSP-IO Teff_module.m)
    ("k_T", 0.9, "1/day", 0.3, _QSPIO + ": k_C_Tcell", "maximal T-cell killing rate"),
    (
        "K_TC",
        0.4,
        "-",
        0.0,
        _a(
            "QSP-IO form k·T/(K_T_C·C+T); K_T_C lowered from 1.2 so that "
            "unsuppressed CD8 at ~1:20 of tumour cells can out-kill tumour growth, as in responders"
        ),
        "effector:target ratio constant of T-cell killing",
    ),
    (
        "K_Treg",
        1.0,
        "-",
        0.0,
        _a(
            "QSP-IO form T/(T+K·Treg); K lowered from 11 so that a Treg:CD8 ratio of 1 "
            "halves killing (0.5: two thirds kept; run-in median ratio 0.7, 5-95% 0.1-3.7; "
            "200 default patients, seed 1)"
        ),
        "Treg suppression constant",
    ),
    (
        "q_T8",
        6.0e5,
        "cells/mL/day",
        0.6,
        _a(
            "sets CD8 density ~5e6/mL (~1:30 of tumour cells) at the median baseline volume, "
            "where the supply factor 1/(1+V/V_T8) is 1/2 (so a median-volume patient's "
            "pre-treatment state is as without V_T8; during treatment recruitment per volume "
            "rises as the tumour shrinks); large CV spans cold to hot tumours"
        ),
        "CD8 recruitment per tumour volume (small-tumour limit)",
    ),
    (
        "V_T8",
        333.0,
        "mL",
        0.0,
        _a(
            "the systemic supply of tumour-specific CD8 cells is finite, so recruitment per "
            "volume falls as 1/(1+V/V_T8) in large tumours (response tracks the ratio of T-cell "
            "reinvigoration to tumour burden: Huang et al. 2017, Nature 545:60); half-saturation "
            "set at the default population's median baseline volume (86 mm sphere, 333 mL; a "
            "population with another median keeps this value), not fitted.  Checked "
            "against Joseph et al. 2018 (Clin Cancer Res 24:4960): ORR 44% below vs 23% above "
            "the median baseline tumour size on pembrolizumab"
        ),
        "tumour volume at which the finite systemic CD8 supply halves recruitment per volume",
    ),
    (
        "e_excl",
        0.5,
        "-",
        0.0,
        _a("Wnt/β-catenin excludes T cells (Spranger 2015 Nature 523:231; review §4.3)"),
        "fraction of T-cell entry blocked by tumour Wnt signalling",
    ),
    (
        "Kc_rec",
        4.49e3,
        "cells",
        0.0,
        _QSPIO + ": T-cell entry ∝ C²/(C²+Kc_rec) with Kc_rec 2.02e7 cell² (Teff_module.m); "
        "written here as C²/(C²+Kc_rec²), so Kc_rec = √(2.02e7 cell²) = 4.49e3 cells "
        "(earlier versions read 2.02e7 as cells, switching recruitment off in residual "
        "tumours below ~6 mm)",
        "tumour size for half-maximal antigen-driven recruitment",
    ),
    (
        "a_ICD",
        1.0,
        "-",
        0.0,
        _a("immunogenic cell death raises priming (review §4)"),
        "extra T-cell recruitment at high debris fraction",
    ),
    (
        "K_D",
        0.1,
        "-",
        0.0,
        _a("debris fraction of tumour for half effect"),
        "debris half-saturation",
    ),
    (
        "d_T8",
        0.05,
        "1/day",
        0.0,
        _a("death + exhaustion + egress; QSP-IO death 0.01/day plus exhaustion"),
        "CD8 loss rate",
    ),
    (
        "r_T8",
        0.04,
        "1/day",
        0.3,
        _a("in-tumour expansion < loss, so CD8 stay bounded"),
        "maximal CD8 expansion when unsuppressed",
    ),
    (
        "h_TGF_T",
        0.5,
        "-",
        0.0,
        _a("maximal fraction of killing blocked by TGF-β"),
        "TGF-β suppression max",
    ),
    (
        "K_TGF_T",
        0.07,
        "nM",
        0.0,
        _QSPIO + ": TGFb_50 0.07 nM (its Th→Treg and M1→M2 half-saturation; its CD8 value "
        "TGFb_50_Teff is 0.14 nM, not yet adopted)",
        "TGF-β suppression half-sat.",
    ),
    (
        "h_PD1",
        0.9,
        "-",
        0.0,
        _a(
            "QSP-IO H_PD1 saturates near 1; 0.9 leaves residual killing; Hill coefficient 1 "
            "here, QSP-IO's n_PD1 is 2 (checkpoint_module.m)"
        ),
        "maximal PD-1/PD-L1 suppression",
    ),
    (
        "K_PD1",
        0.5,
        "relative",
        0.0,
        _a(
            "half-saturating PD-L1 engagement; untreated H_PD1 after run-in median 0.74 "
            "(5-95% 0.64-0.80; 200 default patients, seed 1)"
        ),
        "PD-1 engagement half-saturation",
    ),
    (
        "pdl1_S",
        2.0,
        "-",
        0.0,
        _a("CSCs carry more PD-L1/B7-H4 (review §3.1)"),
        "CSC PD-L1 relative to N",
    ),
    (
        "vis_S",
        0.3,
        "-",
        0.0,
        _a("MHC-I down-regulated on CSCs (review §3.1)"),
        "CSC visibility to T cells relative to N",
    ),
    (
        "h_MDSC",
        0.5,
        "-",
        0.0,
        _a("maximal suppression by NO/ROS/arginase (QSP-IO H_MDSC form)"),
        "MDSC suppression max",
    ),
    (
        "K_MDSC",
        5e6,
        "cells/mL",
        0.0,
        _a(
            "NO quasi-steady; half suppression at 5e6 MDSC/mL.  QSP-IO's NO secretion "
            "4.8e-7 nmol/cell/day, decay 135/day and NO_50 0.75 nM put it at ~2e5 MDSC/mL: "
            "not yet reconciled"
        ),
        "MDSC density for half suppression",
    ),
    (
        "h_Met",
        0.5,
        "-",
        0.0,
        _a("lactate/adenosine suppression of T cells (review §3.3)"),
        "metabolite suppression max",
    ),
    (
        "h_IL10_T",
        0.2,
        "-",
        0.0,
        _a(
            "IL-10 from M2, MDSC, Tregs and CSCs suppresses T cells (review §2.3, §4.2(3)), "
            "mostly through antigen-presenting cells; on CD8 cells themselves it can even "
            "activate (pegylated IL-10, Mumm et al. 2011 Cancer Cell 20:781): a modest "
            "maximal 20% loss of function"
        ),
        "IL-10 suppression max",
    ),
    (
        "K_IL10_T",
        0.008,
        "nM",
        0.0,
        _a("as K_IL10_M, QSP-IO's IL-10 half-saturation (8 pM) for M1→M2 polarisation"),
        "IL-10 suppression half-sat.",
    ),
    (
        "K_Met_T",
        10.0,
        "mM",
        0.0,
        _a(
            "half-saturation at ~10 mM lactate, where lactate suppresses CTL proliferation "
            "and cytokines (Fischer 2007 Blood); with h_Met 0.5 that is a 25% loss of "
            "function, never more than 50%"
        ),
        "metabolite half-saturation for T cells",
    ),
    (
        "sig_IFN_T8",
        10.0,
        "nM/day",
        0.0,
        _a(
            "IFN-γ per active CD8; 250× QSP-IO's k_IFNg_Tsec (4e-13 nmol/cell/day = 0.04 "
            "nM/day), which would keep IFN-γ far below K_IFN: not yet reconciled"
        ),
        "IFN-γ secretion by CD8",
    ),
    # --- Tregs
    (
        "q_Treg",
        8e4,
        "cells/mL/day",
        0.5,
        _a("CCL1/CCL5-driven Treg influx (review §2.3)"),
        "Treg recruitment per tumour volume",
    ),
    (
        "q_Treg_ind",
        8e4,
        "cells/mL/day",
        0.5,
        _a("TGF-β induction of Tregs (review §4, ref 58)"),
        "Treg induction per tumour volume",
    ),
    (
        "a_exo_Treg",
        0.5,
        "-",
        0.0,
        _a("CSC exosomes enhance Treg differentiation (review §3.2), as a_exo_MDSC"),
        "extra Treg induction at saturating exosomes",
    ),
    (
        "K_CCL5",
        0.06,
        "nM",
        0.0,
        _a("below the untreated level (after run-in median 0.13 nM, 5-95% 0.08-0.21)"),
        "CCL5 half-saturation",
    ),
    (
        "K_TGF_ind",
        0.1,
        "nM",
        0.0,
        _a("typical untreated level"),
        "TGF-β half-sat. for Treg induction",
    ),
    ("d_Treg", 0.05, "1/day", 0.0, _a("as CD8 loss"), "Treg loss rate"),
    (
        "k_ccr4",
        0.5,
        "1/day",
        0.0,
        _a("ADCC depletion rate at full anti-CCR4 effect"),
        "Treg depletion by anti-CCR4",
    ),
    # --- MDSC (QSP-IO MDSC_module.m)
    (
        "q_MDSC",
        9e4,
        "cells/mL/day",
        0.5,
        _a("QSP-IO k_MDSC_rec 1.1e4 cells/mL/day scaled to give ~3e6/mL"),
        "MDSC recruitment per tumour volume",
    ),
    ("K_CCL2", 0.23, "nM", 0.0, _QSPIO + ": CCL2 half-saturation 0.23 nM", "CCL2 half-saturation"),
    (
        "K_CXCL8",
        0.05,
        "nM",
        0.0,
        _a("typical untreated inflammatory pool"),
        "CXCL8 (IL6 pool) half-sat.",
    ),
    (
        "w_CCL2",
        0.5,
        "-",
        0.0,
        _a("CCL2 and CXCL8 share MDSC recruitment"),
        "CCL2 share of MDSC recruitment",
    ),
    (
        "a_exo_MDSC",
        0.5,
        "-",
        0.0,
        _a("exosome-driven MDSC expansion (review §3.2)"),
        "extra MDSC recruitment at saturating exosomes",
    ),
    ("d_MDSC", 0.015, "1/day", 0.0, _QSPIO + ": MDSC death 0.015/day", "MDSC death"),
    # --- macrophages (QSP-IO macrophage_module.m)
    (
        "q_Mac",
        4e5,
        "cells/mL/day",
        0.4,
        _a(
            "sets TAM density ~1e7/mL; QSP-IO k_Mac_rec 1.7e5 cells/mL/day, same CCL2 form, "
            "scaled up 2.4x"
        ),
        "macrophage recruitment",
    ),
    ("d_Mac", 0.02, "1/day", 0.0, _QSPIO + ": macrophage death 0.02/day", "macrophage death"),
    ("k_M12", 0.25, "1/day", 0.0, _QSPIO + ": M1→M2 0.25/day", "maximal M1→M2 polarisation"),
    ("k_M21", 0.045, "1/day", 0.0, _QSPIO + ": M2→M1 0.045/day", "maximal M2→M1 polarisation"),
    ("K_TGF_M", 0.07, "nM", 0.0, _QSPIO + ": 0.07 nM", "TGF-β half-sat. for M1→M2"),
    ("K_IL10_M", 0.008, "nM", 0.0, _QSPIO + ": 8 pM", "IL-10 half-sat. for M1→M2"),
    (
        "K_IFN",
        0.0029,
        "nM",
        0.0,
        _QSPIO + ": IFNg_50 2.9 pM (M2→M1); its PD-L1 induction has IFNg_50_ind 2.96 pM, "
        "2% apart, one value here",
        "IFN-γ half-sat. for M2→M1 and PD-L1",
    ),
    (
        "k_M1",
        0.33,
        "1/day",
        0.3,
        _QSPIO + ": M1 phagocytosis 0.33/day",
        "M1 killing of tumour cells",
    ),
    (
        "K_M1C",
        1.0,
        "-",
        0.0,
        _a(
            "effector:target form as for T cells; QSP-IO's K_Mac_C is 2 (macrophage_module.m; "
            "the IL-10 brake there and phagocytosis_module.m's CD47/PD-1 brake are omitted "
            "here): not yet reconciled"
        ),
        "M1:tumour ratio constant",
    ),
    (
        "a_csf1r",
        3.0,
        "-",
        0.0,
        _a("CSF-1R blockade shortens M2 survival ~4x (pexidartinib)"),
        "extra M2 death at full CSF-1R inhibition",
    ),
    (
        "a_csf1r_rep",
        1.0,
        "-",
        0.0,
        _a("CSF-1R blockade doubles M2→M1 repolarisation"),
        "extra M2→M1 at full CSF-1R inhibition",
    ),
    # --- soluble signals: secretion sigma (nM/day at 1e8 producers/mL) and decay
    (
        "sig_TGF_S",
        5.0,
        "nM/day",
        0.3,
        _a("CSCs secrete ~10x more TGF-β than bulk cells (§4)"),
        "TGF-β secretion by CSCs",
    ),
    (
        "sig_TGF_N",
        0.5,
        "nM/day",
        0.3,
        _a("gives ~0.1 nM at baseline"),
        "TGF-β secretion by non-stem",
    ),
    (
        "sig_TGF_Treg",
        10.0,
        "nM/day",
        0.0,
        _a("Tregs are strong TGF-β producers; QSP-IO's k_TGFb_Tsec 1.2e-10 nmol/cell/day is 12"),
        "TGF-β by Tregs",
    ),
    ("sig_TGF_M2", 2.0, "nM/day", 0.0, _QSPIO + ": M2 TGF-β 2e-11 nmol/cell/day", "TGF-β by M2"),
    ("sig_TGF_MDSC", 5.0, "nM/day", 0.0, _a("MDSC secrete TGF-β (MODEL.md)"), "TGF-β by MDSC"),
    (
        "a_chemo_TGF",
        2.0,
        "-",
        0.0,
        _a("doxorubicin-surviving CSCs raise TGF-β (review §4, ref 58)"),
        "fold-increase of CSC TGF-β under chemo stress",
    ),
    ("k_TGF", 14.3, "1/day", 0.0, _QSPIO + ": TGF-β degradation", "TGF-β decay"),
    ("sig_IL6_M2", 5.0, "nM/day", 0.0, _a("M2 secrete IL-6/TNF-α/CXCL8 (§2.1)"), "IL-6 pool by M2"),
    ("sig_IL6_MDSC", 5.0, "nM/day", 0.0, _a("MDSC inflammatory cytokines"), "IL-6 pool by MDSC"),
    ("sig_IL6_S", 2.0, "nM/day", 0.0, _a("autocrine CSC IL-6 loop"), "IL-6 pool by CSCs"),
    ("k_IL6", 10.0, "1/day", 0.0, _a("cytokine half-life ~2 h"), "IL-6 pool decay"),
    ("sig_IL10_M2", 0.3, "nM/day", 0.0, _QSPIO + ": M2 IL-10 3e-12 nmol/cell/day", "IL-10 by M2"),
    ("sig_IL10_MDSC", 0.3, "nM/day", 0.0, _a("as M2"), "IL-10 by MDSC"),
    ("sig_IL10_Treg", 0.3, "nM/day", 0.0, _a("as M2"), "IL-10 by Tregs"),
    ("sig_IL10_S", 0.3, "nM/day", 0.0, _a("CSC IL-10 (MODEL.md)"), "IL-10 by CSCs"),
    ("k_IL10", 4.0, "1/day", 0.0, _QSPIO + ": IL-10 degradation", "IL-10 decay"),
    ("sig_CCL2_N", 0.17, "nM/day", 0.0, _QSPIO + ": 1.7e-12 nmol/cell/day", "CCL2 by non-stem"),
    ("sig_CCL2_S", 0.5, "nM/day", 0.0, _a("CSCs ~3x bulk CCL2"), "CCL2 by CSCs"),
    ("k_CCL2", 1.44, "1/day", 0.0, _QSPIO + ": 0.06/h", "CCL2 decay"),
    ("sig_CCL5_S", 2.0, "nM/day", 0.3, _a("CSC CCL1/CCL5 (review §2.3)"), "CCL5 by CSCs"),
    ("k_CCL5", 2.0, "1/day", 0.0, _a("chemokine half-life ~8 h"), "CCL5 decay"),
    (
        "e_wnt_sec",
        0.5,
        "-",
        0.0,
        _a(
            "Wnt inhibition halves CSC TGF-β/IL-10/CCL5 secretion (§4.3).  Not CCL2: tried "
            "2026-12-02, halving CSC CCL2 left the MDSC density under WNT974 unchanged "
            "(x1.00 at day 60, 30 patients) and, as CCL2 also recruits the tumour-killing M1 "
            "macrophages, made the tumour grow; the review's 'fewer myeloid suppressors' "
            "(§4.3(1)) is not reproduced"
        ),
        "fraction of CSC secretion removed by full Wnt inhibition",
    ),
    (
        "e_epi_sec",
        0.3,
        "-",
        0.0,
        _a(
            "epigenetic therapy (DNMT/HDAC inhibitors) 'reverses CSC-driven immune suppression' "
            "(review Table 1, §4.3(3); Guadecitabine + atezolizumab, NCT03250273): at the "
            "full effect CSC TGF-β/IL-10/CCL5 secretion falls by 30%, less than under "
            "full Wnt inhibition; the size is not measured"
        ),
        "fraction of CSC secretion removed by full epigenetic restoration",
    ),
    (
        "k_IFN",
        7.0,
        "1/day",
        0.0,
        _a("IFN-γ half-life ~2-3 h (QSP-IO k_IFNg_deg 7.68/day)"),
        "IFN-γ decay",
    ),
    (
        "sig_Exo_S",
        10.0,
        "rel/day",
        0.3,
        _a("exosome level ~1 (K_stem_Exo); after run-in median 1.7, 5-95% 1.1-2.8"),
        "exosomes by CSCs",
    ),
    ("sig_Exo_MDSC", 10.0, "rel/day", 0.0, _a("MDSC exosomes (§3.2)"), "exosomes by MDSC"),
    ("k_Exo", 1.0, "1/day", 0.0, _a("exosome uptake/clearance ~1 day"), "exosome clearance"),
    (
        "sig_Met_N",
        40.0,
        "mM/day",
        0.3,
        _a("gives ~10 mM lactate-equivalent"),
        "metabolites by non-stem",
    ),
    (
        "sig_Met_S",
        80.0,
        "mM/day",
        0.0,
        _a("CSCs more per cell (review §3.3)"),
        "metabolites by CSCs",
    ),
    (
        "g_Met",
        0.6,
        "-",
        0.0,
        _a("glutaminolysis share of immunosuppressive metabolite output"),
        "glutaminase-dependent fraction of metabolite production",
    ),
    ("k_Met", 5.0, "1/day", 0.0, _a("lactate clearance/export"), "metabolite clearance"),
    ("k_PDL1", 1.0, "1/day", 0.0, _QSPIO + ": PD-L1 relaxation 1/day", "PD-L1 turnover"),
    (
        "a_PDL1_IFN",
        3.0,
        "-",
        0.3,
        _a(
            "IFN-γ can quadruple PD-L1, inside QSP-IO's r_PDL1_IFNg of 4-6 "
            "(parameters_TNBC.m 6; checkpoint_module.m '4-6')"
        ),
        "PD-L1 induction by IFN-γ",
    ),
    (
        "a_PDL1_chemo",
        1.0,
        "-",
        0.0,
        _a("chemotherapy raises PD-L1 on surviving CSCs (review §4, ref 59)"),
        "PD-L1 induction by chemo stress",
    ),
    (
        "a_mhc",
        1.0,
        "-",
        0.0,
        _a("epigenetic therapy can restore CSC visibility to bulk level"),
        "CSC visibility gain at full MHC restoration",
    ),
    (
        "a_excl_M12",
        1.0,
        "-",
        0.0,
        _a("exosomes and lactate polarise to M2 (§3.2-3.3), as TGF-β"),
        "weight of exosome+metabolite drive of M1→M2",
    ),
    # --- CD133 CAR-T (review §4.2(4); cell kinetics after Stein et al. 2019)
    (
        "f_home_car",
        0.01,
        "-",
        0.5,
        _a(
            "about 1% of adoptively transferred T cells reach a solid tumour (radiolabelled "
            "T-cell trafficking studies report well under 5%); large CV"
        ),
        "fraction of CAR-T cells leaving the blood that home to the tumour",
    ),
    (
        "rho_car",
        1.05,
        "1/day",
        0.5,
        _STEIN + ": net expansion ln(fold expansion 3900)/Tmax 9.3 d = 0.89/day; Stein's ρ "
        "is that net rate, with contraction only after Tmax, while here contraction acts "
        "throughout, so ρ = 0.89 + alpha_car 0.16 = 1.05/day gives the same net rate at full "
        "stimulation.  CV: assumption (Stein's IIV on fold expansion and Tmax, ω² 2.4 and "
        "0.38, pools paediatric B-ALL)",
        "maximal antigen-driven CAR-T expansion rate",
    ),
    (
        "alpha_car",
        0.16,
        "1/day",
        0.5,
        _STEIN + ": rapid contraction rate α; CV: assumption (Stein ω² 0.91 is wider)",
        "CAR-T contraction/exhaustion rate",
    ),
    (
        "K_car_ET",
        1.0,
        "-",
        0.0,
        _a(
            "expansion half-maximal when CAR-T equal their CD133⁺ targets; bounds CAR-T at "
            "~(rho_car/alpha_car - 1) per CSC (antigen-limited expansion)"
        ),
        "CAR-T:CSC ratio for half-maximal CAR-T expansion",
    ),
    (
        "K_car_min",
        1.0e4,
        "cells",
        0.0,
        _a(
            "antigen-driven expansion needs a minimal CAR-T population in the tumour (Allee "
            "threshold, far below the 1e7-1e8 cells of a clinical dose); it keeps the CAR-T-free "
            "state stable: without it an infinitesimal CAR-T number grows at rho_car - alpha_car "
            "~0.9/day, and reverse-mode sensitivities of the CAR-T-free state grow as e^(0.9 t) "
            "(1e46 at 120 days: float32 overflow and NaN gradients)"
        ),
        "CAR-T number for half-maximal expansion (Allee threshold)",
    ),
    # --- neutrophils (Friberg et al. 2002)
    (
        "MTT",
        110.0 / 24.0,
        "day",
        0.2,
        _FRIBERG + ": MTT 89-135 h",
        "mean transit time (ktr = 4/MTT)",
    ),
    ("gamma", 0.17, "-", 0.0, _FRIBERG + ": γ 0.16-0.2", "feedback exponent"),
    (
        "ANC0",
        5.0,
        "1e9/L",
        0.3,
        _a("typical baseline ANC of patients eligible for chemotherapy"),
        "baseline neutrophil count",
    ),
]

PARAMS = ParamTable(tuple(Param(*r) for r in _ROWS))

# parameters that are probabilities or enter the rates as (1 - x): values above 1 have no
# meaning and would make rates negative (assumption); sampled ranges (`vcohort.sobol`) and
# population settings (`Model.param_bounds`) stay at or below 1
UNIT_INTERVAL = frozenset(
    "p_lo p_hi K_niche b_wnt f_gls_S f_gls_N e_excl h_TGF_T h_IL10_T h_PD1 vis_S h_MDSC h_Met "
    "w_CCL2 "
    "e_wnt_sec e_epi_sec g_Met f_S0".split()
)

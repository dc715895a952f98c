"""de Pillis et al. 2009 chemo-immunotherapy model (BioModels BIOMD0000000779).

de Pillis L, Fister KR, Gu W, Collins C, Daub M, Gross D, Moore J, Preskill B (2009)
Mathematical model creation for cancer chemo-immunotherapy.  Comput Math Methods Med
10:165-184 (doi:10.1080/17486700802216301).  Tumour cells ``T``, NK cells ``N``, CD8+ T cells
``L``, circulating lymphocytes ``C``, chemotherapy ``M`` and IL-2 ``I`` (time in days)::

    dT/dt = a T (1 - b T) - c N T - D T - K_T (1 - e^{-δ_T M}) T
    dN/dt = f (e/f · C - N) - p N T + p_N N I / (g_N + I) - K_N (1 - e^{-δ_N M}) N
    dL/dt = -θ m L / (θ + I) + j T L / (k + T) - q L T + (r1 N + r2 C) T
            - u L² C I / (κ + I) - K_L (1 - e^{-δ_L M}) L + p_I L I / (g_I + I) + v_L(t)
    dC/dt = β (α/β - C) - K_C (1 - e^{-δ_C M}) C
    dM/dt = -γ M + v_M(t)
    dI/dt = -μ_I I + φ C + ω L I / (ζ + I) + v_I(t)
    D = d (L/T)^l / (s + (L/T)^l)

Rate laws and values as curated in BIOMD0000000779 (reactions ``Logistic_Tumour_Growth`` …
``IL-2_Production_Activated_CD8``), with two deliberate differences, both back to the paper:
the CD8 kill ``D`` uses the paper's patient-9 values ``d, l, s`` (the curated file sets them to 0,
which switches CD8 killing off), and CD8 turnover uses ``θ`` (the curated file defines ``θ`` but
passes ``φ``, the IL-2 production rate, to that term).  ``D`` is evaluated as
``d / (1 + s (T/L)^l)``, algebraically identical and finite when ``T`` falls to round-off.

Treatments (``v_M``, ``v_I``, ``v_L``) are drugs dosed straight into the states ``M``, ``I``,
``L`` (`vcohort.drugs.Drug.target_state`): "1 mg" is one unit of the state, so
``chemo 1 mg every 7 d over 1 d`` is v_M = 1 per day during one day each week.
"""

from __future__ import annotations

import math

from vcohort.drugs import Drug
from vcohort.model import Model
from vcohort.model.parameters import Param, ParamTable

SOURCE = (
    "de Pillis et al. 2009, Comput Math Methods Med 10:165, as curated in BioModels BIOMD0000000779"
)
_DLS = (
    "de Pillis et al. 2009 (patient 9; fitted in de Pillis et al. 2005, Cancer Res 65:7950, to "
    "Dudley et al. 2002); BIOMD0000000779 sets d = l = s = 0"
)
_THETA = (
    "de Pillis et al. 2009; BIOMD0000000779 defines theta but uses phi in CD8 turnover "
    "(curation slip: theta is otherwise unused)"
)
_ASSUME_T0 = (
    "BIOMD0000000779 initial T = 1e7 cells as the median; between-patient CV 100% is an "
    "assumption (the paper simulates single patients)"
)

STATES = ("T", "N", "L", "C", "M", "I")
STATE_UNITS = {
    "T": "cells",
    "N": "cells/L",
    "L": "cells/L",
    "C": "cells/L",
    "M": "mg/L",
    "I": "IU/L",
}
STATE_DESCRIPTIONS = {
    "T": "tumour cells",
    "N": "natural killer (NK) cells",
    "L": "tumour-specific CD8+ T cells",
    "C": "circulating lymphocytes",
    "M": "chemotherapy drug",
    "I": "interleukin-2 (IL-2)",
}


def _p(name, value, unit, desc, source=SOURCE, cv=0.0):
    return Param(name, value, unit, cv, source, desc)


PARAMS = ParamTable(
    (
        _p("a", 0.431, "1/day", "tumour growth rate"),
        _p("b", 1.02e-9, "1/cell", "inverse tumour carrying capacity"),
        _p("c", 2.9077e-13, "L/(cell day)", "tumour kill by NK cells"),
        _p("d", 2.34, "1/day", "saturation level of CD8+ T-cell kill", _DLS),
        _p("l", 2.09, "1", "exponent of the CD8+ T-cell kill", _DLS),
        _p("s", 3.8e-3, "1", "steepness of the CD8+ T-cell kill", _DLS),
        _p("ef", 0.111, "1", "NK cells as a fraction of circulating lymphocytes (e/f)"),
        _p("f", 0.0125, "1/day", "NK turnover rate"),
        _p("p", 2.794e-13, "1/(cell day)", "NK inactivation by tumour cells"),
        _p("p_N", 0.068, "1/day", "IL-2-induced NK proliferation"),
        _p("g_N", 2.5036e5, "IU/L", "IL-2 for half-maximal NK proliferation"),
        _p("m", 0.009, "1/day", "CD8+ T-cell death rate"),
        _p("theta", 2.5036e-3, "IU/L", "IL-2 for half-maximal CD8+ death inhibition", _THETA),
        _p("q", 3.422e-10, "1/(cell day)", "CD8+ T-cell inactivation by tumour cells"),
        _p("r1", 2.9077e-11, "1/(cell day)", "CD8+ stimulation by NK-lysed tumour debris"),
        _p("r2", 5.8467e-13, "1/(cell day)", "CD8+ activation by lymphocyte-tumour encounters"),
        _p("p_I", 2.971, "1/day", "IL-2-induced CD8+ T-cell proliferation"),
        _p("g_I", 2.5036e3, "IU/L", "IL-2 for half-maximal CD8+ proliferation"),
        _p("u", 4.417e-14, "L^2/(cell^2 day)", "CD8+ T-cell self-regulation (IL-2 dependent)"),
        _p("kappa", 2.5036e3, "IU/L", "IL-2 for half-maximal CD8+ self-regulation"),
        _p("j", 0.01245, "1/day", "CD8+ recruitment by tumour debris"),
        _p("k", 2.019e7, "cells", "tumour size of half-maximal CD8+ recruitment"),
        _p("alpha_beta", 2.25e9, "cells/L", "steady-state circulating lymphocytes (α/β)"),
        _p("beta", 0.0063, "1/day", "circulating lymphocyte turnover"),
        _p("K_T", 0.9, "1/day", "maximal chemotherapy kill of tumour cells"),
        _p("K_N", 0.0675, "1/day", "maximal chemotherapy kill of NK cells"),
        _p("K_L", 0.0486, "1/day", "maximal chemotherapy kill of CD8+ T cells"),
        _p("K_C", 0.034, "1/day", "maximal chemotherapy kill of lymphocytes"),
        _p("delta_T", 1.8328, "L/mg", "chemotherapy efficacy coefficient (tumour)"),
        _p("delta_N", 1.8328, "L/mg", "chemotherapy efficacy coefficient (NK)"),
        _p("delta_L", 1.8328, "L/mg", "chemotherapy efficacy coefficient (CD8+)"),
        _p("delta_C", 1.8328, "L/mg", "chemotherapy efficacy coefficient (lymphocytes)"),
        _p("gamma", 0.5199, "1/day", "chemotherapy excretion rate"),
        _p("mu_I", 11.7427, "1/day", "IL-2 decay rate"),
        _p("phi", 2.38405e-7, "IU/(cell day)", "IL-2 production by circulating lymphocytes"),
        _p("omega", 0.07874, "IU/(cell day)", "IL-2 production by activated CD8+ T cells"),
        _p("zeta", 2.5036e3, "IU/L", "IL-2 for half-maximal CD8+ IL-2 production"),
        _p("T0", 1e7, "cells", "initial tumour cells", _ASSUME_T0, cv=1.0),
        _p("N0", 2.5e8, "cells/L", "initial NK cells"),
        _p("L0", 5.268e5, "cells/L", "initial CD8+ T cells"),
        _p("C0", 2.25e9, "cells/L", "initial circulating lymphocytes"),
        _p("I0", 1073.0, "IU/L", "initial IL-2"),
    )
)


def rates(y: dict, p: dict, e: dict, xp, tumour_dynamics=1.0) -> dict:
    """The reactions of BIOMD0000000779 (per day); treatments enter through doses into the
    states ``M``, ``I``, ``L`` (no effect channels)."""
    T, N, L, C, M, I = (y[k] for k in STATES)
    kill = lambda K, delta: K * (1.0 - xp.exp(-delta * M))  # noqa: E731
    D = p["d"] / (1.0 + p["s"] * (T / L) ** p["l"])
    return {
        "tumour_growth": p["a"] * T * (1.0 - p["b"] * T),
        "nk_tumour_kill": p["c"] * N * T,
        "cd8_tumour_kill": D * T,
        "chemo_tumour_kill": kill(p["K_T"], p["delta_T"]) * T,
        "nk_production_turnover": p["f"] * (p["ef"] * C - N),
        "nk_inactivation": p["p"] * N * T,
        "nk_il2_stimulation": p["p_N"] * N * I / (p["g_N"] + I),
        "chemo_nk_kill": kill(p["K_N"], p["delta_N"]) * N,
        "cd8_turnover": p["theta"] * p["m"] * L / (p["theta"] + I),
        "cd8_debris_recruitment": p["j"] * T * L / (p["k"] + T),
        "cd8_inactivation": p["q"] * L * T,
        "cd8_nk_stimulation": p["r1"] * N * T,
        "cd8_activation": p["r2"] * C * T,
        "cd8_self_regulation": p["u"] * L * L * C * I / (p["kappa"] + I),
        "chemo_cd8_kill": kill(p["K_L"], p["delta_L"]) * L,
        "cd8_il2_stimulation": p["p_I"] * L * I / (p["g_I"] + I),
        "lymphocyte_production_turnover": p["beta"] * (p["alpha_beta"] - C),
        "chemo_lymphocyte_kill": kill(p["K_C"], p["delta_C"]) * C,
        "chemo_excretion": p["gamma"] * M,
        "il2_decay": p["mu_I"] * I,
        "il2_lymphocyte_production": p["phi"] * C,
        "il2_cd8_production": p["omega"] * L * I / (p["zeta"] + I),
    }


def rhs(y: dict, p: dict, e: dict, xp, tumour_dynamics=1.0) -> dict:
    r = rates(y, p, e, xp, tumour_dynamics)
    return {
        "T": tumour_dynamics
        * (
            r["tumour_growth"] - r["nk_tumour_kill"] - r["cd8_tumour_kill"] - r["chemo_tumour_kill"]
        ),
        "N": r["nk_production_turnover"]
        - r["nk_inactivation"]
        + r["nk_il2_stimulation"]
        - r["chemo_nk_kill"],
        "L": -r["cd8_turnover"]
        + r["cd8_debris_recruitment"]
        - r["cd8_inactivation"]
        + r["cd8_nk_stimulation"]
        + r["cd8_activation"]
        - r["cd8_self_regulation"]
        - r["chemo_cd8_kill"]
        + r["cd8_il2_stimulation"],
        "C": r["lymphocyte_production_turnover"] - r["chemo_lymphocyte_kill"],
        "M": -r["chemo_excretion"],
        "I": -r["il2_decay"] + r["il2_lymphocyte_production"] + r["il2_cd8_production"],
    }


def daily_outputs(y: dict, p: dict) -> dict:
    return {"tumour_cells": y["T"], "cd8_cells": y["L"], "lymphocytes": y["C"]}


def initial_state(p: dict, baseline_diameter_mm=None) -> dict:
    """The curated initial condition (no chemotherapy on board; the drawn baseline diameter is
    not used)."""
    return {
        "T": p["T0"],
        "N": p["N0"],
        "L": p["L0"],
        "C": p["C0"],
        "M": 0.0 * p["T0"],
        "I": p["I0"],
    }


_PROTOCOL = (
    "assumption: illustrative protocol; the exact schedules of the paper's figures were not "
    "reachable, so the amounts follow the model's scales (v_M = 1 mg/L/day as in the "
    "de Pillis et al. 2006 J Theor Biol 238:841 pulses; TIL 1e9 cells; IL-2 5e6 IU/L/day)"
)


def _state_drug(name, state, dclass, dose, half_life, hl_source):
    return Drug(
        name=name,
        drug_class=dclass,
        route="iv",
        params=ParamTable(()),
        effects=(),
        clinical_dose=dose,
        mw=math.nan,
        half_life_days=half_life,
        half_life_source=hl_source,
        toxicity="lymphocyte, NK and CD8+ kill (chemotherapy terms)" if state == "M" else "",
        references=(SOURCE, _PROTOCOL),
        target_state=state,
    )


CHEMO = _state_drug(
    "chemo",
    "M",
    "chemo",
    "chemo 1 mg every 7 d over 1 d",
    math.log(2.0) / 0.5199,
    "de Pillis 2009: excretion gamma = 0.5199/day",
)
IL2 = _state_drug(
    "il2",
    "I",
    "immunotherapy",
    "il2 2e7 mg start 8 d over 4 d",
    math.log(2.0) / 11.7427,
    "de Pillis 2009: decay mu_I = 11.7427/day",
)
TIL = _state_drug(
    "til",
    "L",
    "cell_therapy",
    "til 1e9 mg start 7 d over 1 d",
    math.log(2.0) / 0.009,
    "de Pillis 2009: CD8+ death m = 0.009/day (without IL-2)",
)
CATALOGUE: dict[str, Drug] = {d.name: d for d in (CHEMO, IL2, TIL)}

DEPILLIS2009 = Model(
    name="depillis2009",
    states=STATES,
    state_units=STATE_UNITS,
    params=PARAMS,
    effect_channels={},
    rhs=rhs,
    rates=rates,
    daily_outputs=daily_outputs,
    initial_state=initial_state,
    catalogue=CATALOGUE,
    runin_days=0,
    source=SOURCE,
    # after a TIL infusion the CD8 self-regulation u·L²·C·I/(κ+I) decays L at several hundred
    # per day: explicit RK4 needs dt <= ~0.002 day there (dt = 0.005 fails; measured)
    default_dt=0.002,
)

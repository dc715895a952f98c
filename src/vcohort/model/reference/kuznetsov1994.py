"""Kuznetsov et al. 1994 effector–tumour model (BioModels BIOMD0000000762).

Kuznetsov VA, Makalkin IA, Taylor MA, Perelson AS (1994) Nonlinear dynamics of
immunogenic tumors: parameter estimation and global bifurcation analysis.  Bull Math Biol
56:295-321.  Effector cells ``E`` and tumour cells ``T`` (cells, time in days)::

    dE/dt = s + p E T / (g + T) - m E T - d E
    dT/dt = a T (1 - b T) - n E T

with the paper's values (fitted to BCL1 lymphoma in mice; as in BIOMD0000000762 and
MODEL.md "Reference models").  It has a dormant state (~8e6 cells, damped oscillations) and an
escaped state (~4.5e8 cells); which one a tumour reaches depends on its initial size.
"""

from __future__ import annotations

from vcohort.model import Model
from vcohort.model.parameters import Param, ParamTable

SOURCE = (
    "Kuznetsov et al. 1994, Bull Math Biol 56:295 (BioModels BIOMD0000000762; "
    "MODEL.md 'Reference models')"
)
_ASSUME_T0 = (
    "published T0 = 5e6 cells as the median; between-patient CV 100% is an assumption so that "
    "a cohort spans dormancy and escape (the paper simulates single initial conditions)"
)

STATES = ("E", "T")
STATE_UNITS = {"E": "cells", "T": "cells"}
STATE_DESCRIPTIONS = {"E": "effector (cytotoxic) immune cells", "T": "tumour cells"}

PARAMS = ParamTable(
    (
        Param("s", 1.3e4, "cells/day", 0.0, SOURCE, "normal (non-tumour) influx of effectors"),
        Param("p", 0.1245, "1/day", 0.0, SOURCE, "maximal tumour-driven effector proliferation"),
        Param("g", 2.019e7, "cells", 0.0, SOURCE, "tumour size of half-maximal proliferation"),
        Param("m", 3.422e-10, "1/(cell day)", 0.0, SOURCE, "effector inactivation by tumour"),
        Param("d", 0.0412, "1/day", 0.0, SOURCE, "effector death rate"),
        Param("a", 0.18, "1/day", 0.0, SOURCE, "maximal tumour growth rate"),
        Param("b", 2.0e-9, "1/cell", 0.0, SOURCE, "inverse tumour carrying capacity"),
        Param("n", 1.101e-7, "1/(cell day)", 0.0, SOURCE, "tumour kill by effectors"),
        Param("E0", 3.2e5, "cells", 0.0, SOURCE, "initial effector cells"),
        Param("T0", 5e6, "cells", 1.0, _ASSUME_T0, "initial tumour cells"),
    )
)


def rates(y: dict, p: dict, e: dict, xp, tumour_dynamics=1.0) -> dict:
    """The model's terms (per day); ``e`` is unused (no drugs in the paper)."""
    E, T = y["E"], y["T"]
    return {
        "effector_influx": p["s"] + 0.0 * E,
        "effector_recruitment": p["p"] * E * T / (p["g"] + T),
        "effector_inactivation": p["m"] * E * T,
        "effector_death": p["d"] * E,
        "tumour_growth": p["a"] * T * (1.0 - p["b"] * T),
        "tumour_kill": p["n"] * E * T,
    }


def rhs(y: dict, p: dict, e: dict, xp, tumour_dynamics=1.0) -> dict:
    r = rates(y, p, e, xp, tumour_dynamics)
    return {
        "E": r["effector_influx"]
        + r["effector_recruitment"]
        - r["effector_inactivation"]
        - r["effector_death"],
        "T": tumour_dynamics * (r["tumour_growth"] - r["tumour_kill"]),
    }


def daily_outputs(y: dict, p: dict) -> dict:
    return {"tumour_cells": y["T"], "effector_cells": y["E"]}


def initial_state(p: dict, baseline_diameter_mm=None) -> dict:
    """The published initial condition (the drawn baseline diameter is not used)."""
    return {"E": p["E0"], "T": p["T0"]}


KUZNETSOV1994 = Model(
    name="kuznetsov1994",
    states=STATES,
    state_units=STATE_UNITS,
    params=PARAMS,
    effect_channels={},
    rhs=rhs,
    rates=rates,
    daily_outputs=daily_outputs,
    initial_state=initial_state,
    catalogue={},
    runin_days=0,
    source=SOURCE,
)

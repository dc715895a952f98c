"""Models: a `Model` bundles states, a parameter table, effect channels and a right-hand side.

The simulator only talks to this interface, so published reference models run through the same
engine as the CSC–immune model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vcohort.model import csc_immune
from vcohort.model.parameters import Param, ParamTable


@dataclass(frozen=True)
class Model:
    """A one-patient ODE model.

    Attributes:
        name: registry key (``csc_immune``).
        states: state names, in output order.
        state_units: unit of each state.
        params: the parameter table (values, CVs, sources).
        effect_channels: drug effect channels the model reads: name -> (kind, meaning).
        rhs: ``rhs(y, p, e, xp, tumour_dynamics) -> dict`` of derivatives (per day).
        rates: ``rates(y, p, e, xp, tumour_dynamics) -> dict`` of named mechanism terms.
        daily_outputs: ``daily_outputs(y, p) -> dict`` of scalars recorded every day
            (must include ``diameter_mm``).
        initial_state: ``initial_state(p, baseline_diameter_mm) -> dict``.
    """

    name: str
    states: tuple[str, ...]
    state_units: dict
    params: ParamTable
    effect_channels: dict
    rhs: Callable
    rates: Callable
    daily_outputs: Callable
    initial_state: Callable

    def check_channel(self, channel: str, drug: str) -> None:
        if channel not in self.effect_channels:
            raise ValueError(
                f"drug {drug!r} acts on channel {channel!r}, which model {self.name!r} does not "
                f"have; channels: {', '.join(self.effect_channels)}"
            )


def _csc_daily(y: dict, p: dict) -> dict:
    S, N, D = y["S"], y["N"], y["D"]
    return {
        "diameter_mm": csc_immune.diameter_mm(S, N, D),
        "csc_fraction": S / (S + N + csc_immune.CELL_FLOOR),
        "ANC": y["ANC"],
    }


CSC_IMMUNE = Model(
    name="csc_immune",
    states=csc_immune.STATES,
    state_units=csc_immune.STATE_UNITS,
    params=csc_immune.PARAMS,
    effect_channels=csc_immune.EFFECT_CHANNELS,
    rhs=csc_immune.rhs,
    rates=csc_immune.rates,
    daily_outputs=_csc_daily,
    initial_state=csc_immune.initial_state,
)

MODELS: dict[str, Model] = {CSC_IMMUNE.name: CSC_IMMUNE}


def get_model(name: str) -> Model:
    if name not in MODELS:
        raise ValueError(f"model={name!r} is unknown; known models: {', '.join(MODELS)}")
    return MODELS[name]


__all__ = ["Model", "MODELS", "CSC_IMMUNE", "get_model", "Param", "ParamTable"]

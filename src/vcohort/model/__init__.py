"""Models: a `Model` bundles states, a parameter table, effect channels and a right-hand side.

The simulator only talks to this interface, so published reference models run through the same
engine as the CSC–immune model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from vcohort.model import csc_immune, csc_immune_params
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
        daily_outputs: ``daily_outputs(y, p) -> dict`` of scalars recorded every day.
            Tumour endpoints read ``diameter_mm`` (RECIST) when present, else
            ``tumour_cells`` (burden change only; see `vcohort.endpoints`).
        initial_state: ``initial_state(p, baseline_diameter_mm) -> dict``.
        catalogue: the drugs this model can be dosed with (None: `vcohort.drugs.CATALOGUE`).
        runin_days: default immune run-in of `vcohort.cohort.make_cohort` (0: start from
            ``initial_state`` as published).
        source: citation of the model.
        default_dt: RK4 step (day) the CLI uses unless told otherwise.
        param_bounds: name -> (low, high, high_included): the range a parameter's value has
            meaning in (fractions, probabilities); a population setting whose draws could
            leave it is refused before compute (`vcohort.cohort.draw_keys`).
        output_ranges: daily output -> (low, high, unit, hint): where a hold rule's threshold
            can lie; one outside is refused (a lab value in other units, e.g. ANC 1500).
        gated_rates: first-order rate parameter (1/day) -> the effect channel that switches it
            on (a drug's kill or depletion rate): it can make the RK4 step unstable only when a
            scheduled drug acts on that channel (`vcohort.simulate.unstable_patients`).
        transit_rates: time parameter (day) -> n, where the model's rate is n / value (a
            transit chain's ktr = 4 / MTT): checked for RK4 stability as the rates are.
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
    catalogue: dict | None = None
    runin_days: int = 0
    source: str = ""
    default_dt: float = 0.1
    param_bounds: dict | None = None
    output_ranges: dict | None = None
    gated_rates: dict | None = None
    transit_rates: dict | None = None

    def allows(self, name: str, value: float) -> bool:
        """Whether ``value`` lies in parameter ``name``'s `param_bounds` (True if unbounded)."""
        if name not in (self.param_bounds or {}):
            return True
        lo, hi, closed = self.param_bounds[name]
        return lo < value and (value <= hi if closed else value < hi)

    def bounds_text(self, name: str) -> str:
        """``name``'s `param_bounds` as an interval, e.g. ``(0, 1]``."""
        lo, hi, closed = self.param_bounds[name]
        return f"({lo:g}, {hi:g}{']' if closed else ')'}"

    def rule_problem(self, rule) -> str | None:
        """Why a hold rule (`vcohort.dose_rules.DoseRule`) cannot read this model's daily
        outputs, or None: an output it does not have (with the name differing only in case
        suggested), or a threshold outside the output's `output_ranges`."""
        names = self.daily_output_names()
        if rule.output not in names:
            same = [n for n in names if n.lower() == rule.output.lower()]
            hint = f" (did you mean {same[0]!r}?)" if same else ""
            return (
                f"hold rule output={rule.output!r} is not a daily output of model "
                f"{self.name!r}{hint}; allowed: {', '.join(names)}"
            )
        lo, hi, unit, example = (self.output_ranges or {}).get(
            rule.output, (-math.inf, math.inf, "", "")
        )
        if not lo <= rule.threshold <= hi:
            return (
                f"hold rule threshold {rule.output} {rule.op} {rule.threshold:g} is outside "
                f"the range of {rule.output} [{lo:g}, {hi:g}] {unit}; {example}"
            )
        return None

    def drug_catalogue(self) -> dict:
        """The model's drug catalogue."""
        if self.catalogue is not None:
            return self.catalogue
        from vcohort.drugs import CATALOGUE

        return CATALOGUE

    def daily_output_names(self) -> tuple[str, ...]:
        """Names of the `daily_outputs` (evaluated on shapes only, no compute)."""
        import jax
        import numpy as np

        y = {n: np.ones(()) for n in self.states}
        return tuple(jax.eval_shape(lambda: self.daily_outputs(y, self.params.typical())))

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
    runin_days=240,
    source="MODEL.md (this project); Yu & Gong 2025, Front. Immunol. 16:1620807",
    param_bounds={
        **{n: (0.0, 1.0, True) for n in csc_immune_params.UNIT_INTERVAL},
        "f_S0": (0.0, 1.0, False),  # a fraction of the tumour cells, and N must remain
    },
    # rates that act only with their drug (k_chemo × chemo_kill, k_ccr4 × ccr4_depletion)
    gated_rates={"k_chemo": "chemo_kill", "k_ccr4": "ccr4_depletion"},
    transit_rates={"MTT": 4.0},  # the marrow chain's ktr = 4 / MTT (Friberg 2002)
    output_ranges={
        # ANC above 50 x 10^9/L is an extreme leukocytosis: a threshold there is a unit slip
        "ANC": (0.0, 50.0, "x 10^9/L", "write ANC in 10^9/L, e.g. 1.5 for 1,500 cells/uL"),
        "csc_fraction": (0.0, 1.0, "(fraction)", "write the CSC fraction as 0-1, e.g. 0.2"),
        "diameter_mm": (0.0, 2000.0, "mm", "write the diameter in mm"),
    },
)

MODEL_NAMES = ("csc_immune", "kuznetsov1994", "depillis2009")


def models() -> dict[str, Model]:
    """Every registered model by name (reference models are imported on first use, since
    their drug catalogues import `vcohort.drugs`, which imports this package)."""
    from vcohort.model.reference import DEPILLIS2009, KUZNETSOV1994

    return {m.name: m for m in (CSC_IMMUNE, KUZNETSOV1994, DEPILLIS2009)}


def get_model(name: str) -> Model:
    """The model registered as ``name`` (`MODEL_NAMES`)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"model={name!r} is unknown; known models: {', '.join(MODEL_NAMES)}")
    return models()[name]


__all__ = ["Model", "MODEL_NAMES", "CSC_IMMUNE", "get_model", "models", "Param", "ParamTable"]

"""Gradient-based optimisation of dosing schedules through the cohort simulation.

Data flow: `Problem` (drugs with clinical limits, horizon, objective weights) → `layout`
(dose-slot grid) → `optimize` (optax on an augmented Lagrangian, gradients through
`vcohort.simulate.cohort_fn`) → `round_clinical` (tablet strengths, vial sizes, allowed
intervals) → `evaluate` (held-out cohort, standard regimens, derivative-free baseline).
"""

from vcohort.optimize.loop import OptResult, optimize
from vcohort.optimize.problem import DrugSlots, Layout, Problem, constraint_values, layout

__all__ = [
    "DrugSlots",
    "Layout",
    "OptResult",
    "Problem",
    "constraint_values",
    "layout",
    "optimize",
]

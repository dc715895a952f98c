"""Round an optimised schedule to what a clinic can give (ARCHITECTURE.md, "Schedules for
optimisation"): tablet strengths / vial sizes and, for infused drugs, one regular interval from
an allowed set (q1w/q2w/q3w/q6w).  Rounding never breaks a per-dose maximum, per-day maximum or
cumulative budget: doses are lowered one unit at a time until those hold.  Exposure (AUC) and
neutropenia limits depend on the simulation and are re-checked by `evaluate`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from vcohort.dosing import Schedule
from vcohort.optimize.problem import DrugSlots, Layout, Problem


@dataclass(frozen=True)
class Rounded:
    schedule: Schedule
    descriptions: dict  # drug -> human-readable regimen


def _fmt(x: float) -> str:
    return f"{x:g}"


def _round_slots(d: DrugSlots, a: np.ndarray, t: np.ndarray, mx: float, var=None) -> np.ndarray:
    """Each dose level to the nearest whole number of units (at most ``mx``), then one unit off
    the largest level until the budget and per-day limits hold.  ``var``: the decision variable
    of each slot (`Layout.var_index`); the slots of one variable (a ``hold_days`` block) keep one
    level, rounded from their mean and lowered together.  Counted in whole units, so a dose
    taken down to nothing is exactly 0 mg (in mg, 3 x 0.3 - 0.3 x 3 left -1e-16 mg doses)."""
    unit = d.round_to_mg
    var = np.arange(a.size) if var is None else np.asarray(var)
    _, g = np.unique(var, return_inverse=True)  # groups in slot order
    mean = np.bincount(g, weights=a) / np.bincount(g)
    top = int(np.floor(mx / unit + 1e-9))
    level = np.clip(np.round(mean / unit), 0, top).astype(np.int64)
    days = np.floor(t).astype(int)
    budget = None if d.budget_mg is None else int(np.floor(d.budget_mg / unit + 1e-9))
    daily = None if d.max_daily_mg is None else int(np.floor(d.max_daily_mg / unit + 1e-9))
    while True:  # repair the linear limits (in units)
        n = level[g]
        if budget is not None and n.sum() > budget:
            cand = np.flatnonzero(level > 0)
        elif daily is not None and (np.bincount(days, weights=n) > daily).any():
            bad = np.bincount(days, weights=n) > daily
            cand = np.unique(g[bad[days] & (n > 0)])
        else:
            break
        level[cand[np.argmax(level[cand])]] -= 1  # the largest level; the earliest of ties
    return level[g] * unit


def _courses(d: DrugSlots, a: np.ndarray, t: np.ndarray, mx: float) -> list:
    """Regular courses (interval, first slot, number of doses, dose), best first by the
    distance between cumulative dose curves on the slot grid: ``[(error, amounts per slot,
    description)]``.  Each course's least-squares dose is rounded to the nearest unit, and one
    unit below and above are kept as alternatives (`round_candidates`)."""
    unit = d.round_to_mg
    top = np.floor(mx / unit + 1e-9) * unit
    target = np.cumsum(a)
    out = {}
    for iv in d.intervals_days:
        step = int(round(iv / d.every_days))
        for k0 in range(min(step, len(a))):
            slots = np.arange(k0, len(a), step)
            for n in range(1, len(slots) + 1):  # a course of n doses (front-loaded if short)
                mask = np.zeros_like(a)
                mask[slots[:n]] = 1.0
                basis = np.cumsum(mask)
                exact = float(np.dot(basis, target) / max(np.dot(basis, basis), 1e-12))
                near = np.round(exact / unit) * unit
                for dose in (near, near - unit, near + unit):
                    dose = float(np.clip(dose, 0.0, top))
                    if d.budget_mg is not None:
                        dose = min(dose, np.floor(d.budget_mg / n / unit + 1e-9) * unit)
                    if d.max_daily_mg is not None:  # the most doses of the course in a day
                        per_day = np.bincount(np.floor(t[slots[:n]]).astype(int)).max()
                        dose = min(dose, np.floor(d.max_daily_mg / per_day / unit + 1e-9) * unit)
                    cand = mask * dose
                    err = float(np.sum((np.cumsum(cand) - target) ** 2))
                    key = cand.tobytes() if dose > 0 else b"none"
                    if key in out and out[key][0] <= err:
                        continue
                    over = f" over {_fmt(d.infusion_days * 24 * 60)} min" if d.infusion_days else ""
                    desc = (
                        f"{d.drug} {_fmt(dose)} mg every {_fmt(iv)} d x {n} start {_fmt(t[k0])}"
                        + over
                    )
                    out[key] = (err, cand, desc if dose > 0 else f"{d.drug}: none")
    out.setdefault(b"none", (float(np.sum(target**2)), np.zeros_like(a), f"{d.drug}: none"))
    return sorted(out.values(), key=lambda c: c[0])


def round_clinical(problem: Problem, lay: Layout, amount) -> Rounded:
    """Clinically given version of ``amount`` ((drugs, slots), mg): the nearest rounding."""
    return round_candidates(problem, lay, amount, 1)[0]


def round_candidates(problem: Problem, lay: Layout, amount, k: int = 4) -> list[Rounded]:
    """Up to ``k`` clinically given versions of ``amount`` ((drugs, slots), mg), the nearest
    first (`round_clinical`).  For drugs rounded to a regular interval the alternatives are
    the next-nearest courses (`_courses`: another course, or one vial more or less);
    slot-wise rounding has one candidate.  Candidates combine the drugs' courses in order of
    their summed ranks.  Which is best is for the simulation to say (`vcohort.optimize.experiment`
    picks the best feasible one on the training cohort)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"rounding candidates k={k!r} must be an integer >= 1")
    amount = np.asarray(amount, dtype=np.float64)
    per_drug = []
    for i, d in enumerate(problem.drugs):
        v = lay.valid[i]
        a, t, mx = amount[i, v], lay.schedule.time[i, v], float(lay.max_dose[i, 0])
        if d.intervals_days:
            opts = [(r, text) for _, r, text in _courses(d, a, t, mx)[:k]]
        else:
            r = _round_slots(d, a, t, mx, lay.var_index[i, v])
            nz = r[r > 0]
            text = (
                f"{d.drug}: {nz.size} doses of {', '.join(_fmt(x) for x in np.unique(nz))} mg "
                f"on a {_fmt(d.every_days)}-day slot grid, total {_fmt(r.sum())} mg"
                if nz.size
                else f"{d.drug}: none"
            )
            opts = [(r, text)]
        if d.rule is not None:  # the protocol's hold rule goes with the regimen
            opts = [(r, text + (f"; {d.rule.describe()}" if r.any() else "")) for r, text in opts]
        per_drug.append(opts)
    combos = sorted(itertools.product(*(range(len(o)) for o in per_drug)), key=sum)[:k]
    out = []
    for combo in combos:
        rows = np.zeros_like(amount)
        desc = {}
        for i, (d, j) in enumerate(zip(problem.drugs, combo, strict=True)):
            rows[i, lay.valid[i]], desc[d.drug] = per_drug[i][j]
        out.append(Rounded(lay.schedule.replace_amount(rows), desc))
    return out

"""Round an optimised schedule to what a clinic can give (ARCHITECTURE.md, "Schedules for
optimisation"): tablet strengths / vial sizes and, for infused drugs, one regular interval from
an allowed set (q1w/q2w/q3w/q6w).  Rounding never breaks a per-dose maximum, per-day maximum or
cumulative budget: doses are lowered one unit at a time until those hold.  Exposure (AUC) and
neutropenia limits depend on the simulation and are re-checked by `evaluate`.
"""

from __future__ import annotations

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


def _round_slots(d: DrugSlots, a: np.ndarray, t: np.ndarray, mx: float) -> np.ndarray:
    unit = d.round_to_mg
    top = np.floor(mx / unit + 1e-9) * unit
    r = np.clip(np.round(a / unit) * unit, 0.0, top)

    # repair linear limits by removing one unit from the largest dose until they hold
    def over() -> bool:
        if d.budget_mg is not None and r.sum() > d.budget_mg + 1e-9:
            return True
        if d.max_daily_mg is not None:
            days = np.floor(t).astype(int)
            per_day = np.bincount(days, weights=r)
            return bool(np.any(per_day > d.max_daily_mg + 1e-9))
        return False

    while over():
        days = np.floor(t).astype(int)
        cand = np.where(r > 0)[0]
        if d.max_daily_mg is not None and not (
            d.budget_mg is not None and r.sum() > d.budget_mg + 1e-9
        ):
            bad = np.bincount(days, weights=r) > d.max_daily_mg + 1e-9
            cand = np.where(bad[days] & (r > 0))[0]
        j = cand[np.argmax(r[cand])]
        r[j] -= unit
    return r


def _round_interval(d: DrugSlots, a: np.ndarray, t: np.ndarray, mx: float):
    """Best regular course (interval, first slot, number of doses, dose) by the distance
    between cumulative dose curves on the slot grid; returns (amounts per slot, description)."""
    unit = d.round_to_mg
    top = np.floor(mx / unit + 1e-9) * unit
    target = np.cumsum(a)
    best = (np.sum(target**2), np.zeros_like(a), f"{d.drug}: none")
    for iv in d.intervals_days:
        step = int(round(iv / d.every_days))
        for k0 in range(min(step, len(a))):
            slots = np.arange(k0, len(a), step)
            for n in range(1, len(slots) + 1):  # a course of n doses (front-loaded if short)
                mask = np.zeros_like(a)
                mask[slots[:n]] = 1.0
                basis = np.cumsum(mask)
                dose = float(np.dot(basis, target) / max(np.dot(basis, basis), 1e-12))
                dose = float(np.clip(np.round(dose / unit) * unit, 0.0, top))
                if d.budget_mg is not None:
                    dose = min(dose, np.floor(d.budget_mg / n / unit) * unit)
                if d.max_daily_mg is not None:
                    dose = min(dose, np.floor(d.max_daily_mg / unit) * unit)
                cand = mask * dose
                err = float(np.sum((np.cumsum(cand) - target) ** 2))
                if err < best[0] - 1e-9:
                    over = f" over {_fmt(d.infusion_days * 24 * 60)} min" if d.infusion_days else ""
                    desc = (
                        f"{d.drug} {_fmt(dose)} mg every {_fmt(iv)} d x {n} start {_fmt(t[k0])}"
                        + over
                    )
                    best = (err, cand, desc if dose > 0 else f"{d.drug}: none")
    return best[1], best[2]


def round_clinical(problem: Problem, lay: Layout, amount) -> Rounded:
    """Clinically given version of ``amount`` ((drugs, slots), mg)."""
    amount = np.asarray(amount, dtype=np.float64)
    out = np.zeros_like(amount)
    desc = {}
    for i, d in enumerate(problem.drugs):
        v = lay.valid[i]
        a, t, mx = amount[i, v], lay.schedule.time[i, v], float(lay.max_dose[i, 0])
        if d.intervals_days:
            r, text = _round_interval(d, a, t, mx)
        else:
            r = _round_slots(d, a, t, mx)
            nz = r[r > 0]
            text = (
                f"{d.drug}: {nz.size} doses of {', '.join(_fmt(x) for x in np.unique(nz))} mg "
                f"on a {_fmt(d.every_days)}-day slot grid, total {_fmt(r.sum())} mg"
                if nz.size
                else f"{d.drug}: none"
            )
        out[i, v] = r
        if d.rule is not None and r.any():  # the protocol's hold rule goes with the regimen
            text += f"; {d.rule.describe()}"
        desc[d.drug] = text
    return Rounded(lay.schedule.replace_amount(out), desc)

"""Regimens in human units → fixed-shape dose schedules → step-grid inputs; NM-TRAN tables.

A `Regimen` is what a clinician writes ("pembrolizumab 200 mg every 21 d x 8"); a `Schedule`
is the fixed grid of dose *slots* per drug the simulator and the optimiser use: a time, an
amount, a unit kind (flat mg, mg/kg, mg/m²) and an infusion duration per slot.  The amounts
are the only differentiable part; slot times are fixed (ARCHITECTURE.md, "Schedules for
optimisation").  `Schedule.step_inputs` scatters the slots onto the integrator's step grid:
a bolus is an addition at a step boundary, an infusion a constant rate over whole steps.

NM-TRAN event records follow the NONMEM convention (Beal et al., NONMEM Users Guides):
``ID, TIME, AMT, CMT, EVID=1, II, ADDL`` (doses *after* the first), ``RATE`` (0 for a bolus),
with TIME and II in days, AMT in mg (a cell product's amount unit, 1e6 cells, for CAR-T), RATE
in mg/day, plus a ``DRUG`` column naming the drug.
CMT numbers the PK compartments of the schedule's drugs consecutively from 1 in schedule order
(the dosing compartment of each drug: its depot for oral drugs, its central compartment for IV;
a drug dosed into a model state, as in de Pillis 2009, takes one number of its own).  The
numbers follow the run's drugs, so the same drug can have another CMT in another run: the DRUG
column names it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vcohort.dose_rules import DoseRule, delay_inputs, drug_rules, exact_number, split_rule
from vcohort.drugs import CATALOGUE, Drug, get_drug

# dose unit -> unit kind (0 flat, 1 per kg, 2 per m²); cell units are for cell products only
DOSE_UNITS = {"mg": 0, "mg/kg": 1, "mg/m2": 2, "cells": 0, "cells/kg": 1, "cells/m2": 2}
CELL_UNITS = ("cells", "cells/kg", "cells/m2")
# PK amount units per dose unit: cell products keep amounts in 1e6 cells (`Drug.amount_unit`)
UNIT_SCALE = {"cells": 1e-6, "cells/kg": 1e-6, "cells/m2": 1e-6}
KIND_NAMES = ("mg", "mg/kg", "mg/m2")
_UNIT_ALIASES = {
    "cells": "cells",
    "cells/kg": "cells/kg",
    "cells/m2": "cells/m2",
    "cells/m^2": "cells/m2",
    "cells/m²": "cells/m2",
    "mg": "mg",
    "mg/kg": "mg/kg",
    "mg/m2": "mg/m2",
    "mg/m^2": "mg/m2",
    "mg/m²": "mg/m2",
    "mg/sqm": "mg/m2",
}
_TIME_UNITS = {
    "d": 1.0,
    "day": 1.0,
    "days": 1.0,
    "h": 1.0 / 24.0,
    "hr": 1.0 / 24.0,
    "hrs": 1.0 / 24.0,
    "hour": 1.0 / 24.0,
    "hours": 1.0 / 24.0,
    "min": 1.0 / 1440.0,
    "mins": 1.0 / 1440.0,
    "minute": 1.0 / 1440.0,
    "minutes": 1.0 / 1440.0,
    "w": 7.0,
    "wk": 7.0,
    "wks": 7.0,
    "week": 7.0,
    "weeks": 7.0,
    "fortnight": 14.0,
    "fortnights": 14.0,
    "month": 30.4375,  # a mean calendar month (365.25 / 12 d), as `vcohort.endpoints.MONTH_DAYS`
    "months": 30.4375,
    "yr": 365.25,
    "yrs": 365.25,
    "year": 365.25,
    "years": 365.25,
}
# an infusion's length needs its unit: a bare number is days elsewhere, while a clinician's
# "over 30" means minutes
_INFUSION_UNITS = "min, h, d"
# a number as the regimen grammar reads it ("nan"/"inf" too, so their errors name the field)
_NUM = r"[-+0-9.eE]+|[-+]?(?i:nan|inf|infinity)"
_SHORTHAND = {"qd": 1.0, "od": 1.0, "bid": 0.5, "tid": 1.0 / 3.0, "qid": 0.25, "qw": 7.0}
_INTERVALS = "qd, od, bid, tid, qid, qw, qNd, qNh, qNw (q3w) or '<number> <unit>' (21 d, 12 h)"
# assumption: more dose slots than this for one drug is a typo ('every 1 min'), not a plan:
# tid for the longest horizon (`vcohort.config.MAX_DAYS`, 36,500 d) is 109,500 doses
MAX_DOSES = 200_000


def _number(text: str, field_name: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{field_name}={text!r} is not a number") from None
    return v


def _whole(v: float, what: str) -> int:
    """``v`` as an int when it is a whole number >= 1 (a count of doses or cycles)."""
    if isinstance(v, bool) or not math.isfinite(v) or v != int(v) or v < 1:
        shown = int(v) if math.isfinite(v) and v == int(v) else v  # 0, not 0.0
        raise ValueError(f"{what}={shown!r} must be a whole number >= 1")
    return int(v)


def _duration_text(days: float) -> str:
    """``days`` as a duration `parse_duration` reads back exactly: in the largest of days,
    hours and minutes that gives a whole number (30 d, 6 h, 30 min, 90 min), else in the
    largest that is short (``%g``) and exact (0.96 d), else with every digit in days."""
    exact = []
    for unit in ("d", "h", "min"):
        v = f"{days / _TIME_UNITS[unit]:g}"
        if float(v) * _TIME_UNITS[unit] == days:
            if float(v).is_integer():
                return f"{v} {unit}"
            exact.append(f"{v} {unit}")
    return exact[0] if exact else f"{days!r} d"


def parse_amount(text: str | float, field_name: str = "dose") -> tuple[float, str]:
    """``"200 mg"`` → (200.0, "mg"); ``"2 mg/kg"``; ``"75 mg/m2"``; ``"1e6 cells/kg"`` (cell
    products).  A bare number means mg (for a cell product: its amount unit, 1e6 cells)."""
    if isinstance(text, bool):  # (a bool is an int to Python: true would be 1 mg)
        raise ValueError(f"{field_name}={text!r}: expected a number or '<number> <unit>'")
    if isinstance(text, int | float):
        return float(text), "mg"
    m = re.fullmatch(rf"\s*({_NUM})\s*([A-Za-z/^²0-9]*)\s*", str(text))
    if not m:
        raise ValueError(
            f"{field_name}={text!r}: expected '<number> <unit>' with unit in {list(DOSE_UNITS)}"
        )
    value = _number(m.group(1), field_name)
    unit = m.group(2).lower() or "mg"
    if unit not in _UNIT_ALIASES:
        raise ValueError(
            f"{field_name}={text!r}: unknown dose unit {unit!r}; allowed: {list(DOSE_UNITS)}"
        )
    return value, _UNIT_ALIASES[unit]


def _bare_number(text) -> str | None:
    """``text`` as shown in an error when it is a number without a unit (``2``, ``"30"``),
    else None."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return f"{text:g}"
    return str(text).strip() if re.fullmatch(rf"\s*({_NUM})\s*", str(text)) else None


def parse_dose(
    text: str | float, field_name: str = "dose", cells: bool = False
) -> tuple[float, str]:
    """A regimen's dose, as `parse_amount` but with its unit required: a bare number was read
    as mg, so 'pembrolizumab 2 q3w' meant for 2 mg/kg gave a 100-fold underdose.  A cell
    product (``cells``) keeps its bare number, its amount unit (1e6 cells), as
    `Regimen.describe` writes it."""
    shown = _bare_number(text)
    if shown is not None and not cells:
        raise ValueError(
            f"{field_name}={text!r}: give its unit ({', '.join(DOSE_UNITS)}), e.g. "
            f"'{shown} mg' or '{shown} mg/kg'"
        )
    return parse_amount(text, field_name)


def parse_duration(text: str | float, field_name: str = "interval") -> float:
    """``"21 d"`` → 21.0; ``"12 h"`` → 0.5; ``"30 min"``; ``"3 w"``.  A bare number means days.
    Raises on a value that is not finite (``"inf d"``, NaN), naming ``field_name``."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if not math.isfinite(text):
            raise ValueError(f"{field_name}={text!r} must be a finite duration")
        return float(text)
    m = re.fullmatch(rf"\s*({_NUM})\s*([A-Za-z]*)\s*", str(text))
    if not m:
        raise ValueError(
            f"{field_name}={text!r}: expected '<number> <unit>' with unit in d, h, min, w, "
            "month, year"
        )
    value = _number(m.group(1), field_name)
    unit = m.group(2).lower() or "d"
    if unit not in _TIME_UNITS:
        raise ValueError(
            f"{field_name}={text!r}: unknown time unit {unit!r}; allowed: {', '.join(_TIME_UNITS)}"
        )
    if not math.isfinite(value):
        raise ValueError(f"{field_name}={text!r} must be a finite duration")
    return value * _TIME_UNITS[unit]


def parse_infusion(text: str | float, field_name: str = "over") -> float:
    """An infusion's length in days (``"30 min"``, ``"1 h"``): as `parse_duration`, but a
    number without its unit is refused (elsewhere a bare number means days; for an infusion
    a clinician means minutes)."""
    shown = _bare_number(text)
    if shown is not None:
        raise ValueError(
            f"{field_name}={text!r}: give a unit ({_INFUSION_UNITS}), e.g. '{shown} min'"
        )
    return parse_duration(text, field_name)


def parse_interval(text: str | float, field_name: str = "every") -> float:
    """A dosing interval in days: a duration (`parse_duration`) or a shorthand (qd, od, bid,
    tid, qid, qw, qNd, qNh, qNw)."""
    if isinstance(text, str) and _is_shorthand(text.strip()):
        return _shorthand_days(text.strip())
    if isinstance(text, str) and re.fullmatch(r"\s*[A-Za-z]\w*\s*", text):
        raise ValueError(f"{field_name}={text!r} is not an interval; allowed: {_INTERVALS}")
    return parse_duration(text, field_name)


@dataclass(frozen=True)
class Regimen:
    """One drug given repeatedly, in human units (immutable; use `dataclasses.replace`).

    Attributes:
        drug: catalogue key.
        dose: amount per administration, in ``dose_unit``.
        dose_unit: ``mg``, ``mg/kg`` (needs body weight) or ``mg/m2`` (needs BSA); for a cell
            product (`Drug.amount_unit` ``1e6 cells``) ``cells``, ``cells/kg`` or ``cells/m2``.
        interval_days: time between doses; ``None`` for a single dose.
        count: number of doses (``None``: until ``until_day`` or the end of the horizon).
        until_day: no dose at or after this day.
        start_day: day of the first dose.  Days are elapsed time from day 0, the first day of
            the run (a protocol's "Day 8" is start_day 7).
        infusion_days: infusion duration (0 = bolus / oral).
        rule: protocol dose modification (`DoseRule`), or None.
        cycle_days: with a course (``count`` doses every ``interval_days``, or one dose), the
            course repeats every this many days from ``start_day`` (temozolomide on the
            protocol's days 1-5 of 28, days 0-4 here: ``qd x 5 repeat every 28 d``); None: no
            repeat.
        cycles: number of courses (None: until ``until_day`` or the horizon).
    """

    drug: str
    dose: float
    dose_unit: str = "mg"
    interval_days: float | None = None
    count: int | None = None
    until_day: float | None = None
    start_day: float = 0.0
    infusion_days: float = 0.0
    catalogue: dict = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    rule: DoseRule | None = None
    cycle_days: float | None = None
    cycles: int | None = None

    def __post_init__(self) -> None:
        d = get_drug(self.drug, self.catalogue)
        object.__setattr__(self, "drug", d.name)
        if not isinstance(self.dose, int | float) or not math.isfinite(self.dose) or self.dose < 0:
            raise ValueError(f"{self.drug}: dose={self.dose!r} must be a finite number >= 0")
        if self.dose_unit not in DOSE_UNITS:
            raise ValueError(
                f"{self.drug}: dose_unit={self.dose_unit!r}; allowed: {list(DOSE_UNITS)}"
            )
        if d.amount_unit == "1e6 cells" and self.dose_unit in ("mg/kg", "mg/m2"):
            raise ValueError(
                f"{self.drug}: dose_unit={self.dose_unit!r}, but {self.drug} is a cell product "
                f"dosed in cells; allowed: cells, cells/kg, cells/m2 (or mg: its amount unit, "
                f"1e6 cells, as a bare number)"
            )
        if self.dose_unit in CELL_UNITS and d.amount_unit != "1e6 cells":
            raise ValueError(
                f"{self.drug}: dose_unit={self.dose_unit!r} is a cell dose, but {self.drug} is "
                f"dosed in {d.amount_unit}; allowed: mg, mg/kg, mg/m2"
            )
        if self.interval_days is not None and not (
            math.isfinite(self.interval_days) and self.interval_days > 0
        ):
            raise ValueError(f"{self.drug}: interval={self.interval_days!r} days must be > 0")
        if self.count is not None:
            _whole(self.count, f"{self.drug}: count")
        if self.interval_days is None and self.count not in (None, 1):
            raise ValueError(f"{self.drug}: count={self.count} needs an interval")
        if not (math.isfinite(self.start_day) and self.start_day >= 0):
            raise ValueError(f"{self.drug}: start_day={self.start_day!r} must be >= 0")
        if self.rule is not None and not isinstance(self.rule, DoseRule):
            raise ValueError(
                f"{self.drug}: rule={self.rule!r} must be a DoseRule or None (from text: "
                f"vcohort.dose_rules.parse_rule('hold if ANC < 1.5 ...'))"
            )
        if self.until_day is not None and not self.until_day > self.start_day:
            raise ValueError(
                f"{self.drug}: until_day={self.until_day!r} must be after "
                f"start_day={self.start_day}"
            )
        if not (math.isfinite(self.infusion_days) and self.infusion_days >= 0):
            raise ValueError(f"{self.drug}: infusion={self.infusion_days!r} days must be >= 0")
        if self.infusion_days > 0 and d.route != "iv":
            over = _duration_text(self.infusion_days)
            raise ValueError(
                f"{self.drug}: an infusion ('over {over}') given for a drug of route "
                f"{d.route!r}; only IV drugs take 'over'"
            )
        self._check_cycles()
        if (
            self.interval_days is not None
            and self.infusion_days > 0
            and self.infusion_days >= self.interval_days
        ):
            raise ValueError(
                f"{self.drug}: infusion={self.infusion_days} d must be shorter than the "
                f"interval={self.interval_days} d"
            )

    def _check_cycles(self) -> None:
        c = self.cycle_days
        if c is None:
            if self.cycles is not None:
                raise ValueError(f"{self.drug}: cycles={self.cycles} needs 'repeat every <t>'")
            return
        if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) or c <= 0:
            raise ValueError(f"{self.drug}: repeat every {c!r} days must be > 0")
        if self.interval_days is not None and self.count is None:
            raise ValueError(
                f"{self.drug}: a repeated course needs its number of doses, e.g. 'qd x 5 "
                f"repeat every 28 d'"
            )
        course = self.course_days()
        last = course - self.infusion_days  # the course's last dose
        if course > c + 1e-9 or (last > 0 and last >= c - 1e-9):
            raise ValueError(
                f"{self.drug}: the course ({course:g} d) does not end before its cycle does "
                f"(repeat every {c:g} d): the next course would start on or before its last dose"
            )
        if self.cycles is not None:
            _whole(self.cycles, f"{self.drug}: cycles")

    def course_days(self) -> float:
        """Length of one course: from its first dose to the end of its last (infusion)."""
        n = 1 if self.interval_days is None else int(self.count or 1)
        return (n - 1) * (self.interval_days or 0.0) + self.infusion_days

    def dose_times(self, horizon_days: float) -> np.ndarray:
        """Administration times (days) before ``horizon_days``; raises when they would be more
        than `MAX_DOSES`."""
        if self.cycle_days is not None:
            end = horizon_days if self.until_day is None else min(self.until_day, horizon_days)
            n = 1 if self.interval_days is None else int(self.count)
            course = (self.interval_days or 0.0) * np.arange(n)
            k = int(math.ceil((end - self.start_day) / self.cycle_days - 1e-9))
            if self.cycles is not None:
                k = min(k, int(self.cycles))
            self._check_doses(max(k, 0) * n, horizon_days)
            t = self.start_day + (self.cycle_days * np.arange(max(k, 0)))[:, None] + course
            t = t.ravel()
            return t[(t < end - 1e-12) & (t < horizon_days - 1e-12)]
        if self.interval_days is None:
            t = np.array([self.start_day])
        else:
            end = horizon_days if self.until_day is None else min(self.until_day, horizon_days)
            n = int(math.ceil((end - self.start_day) / self.interval_days - 1e-9))
            if self.count is not None:
                n = min(n, int(self.count))
            self._check_doses(n, horizon_days)
            t = self.start_day + self.interval_days * np.arange(max(n, 0))
        return t[t < horizon_days - 1e-12]

    def _check_doses(self, n: int, horizon_days: float) -> None:
        if n > MAX_DOSES:
            raise ValueError(
                f"{self.describe()!r}: {n:,} doses before day {horizon_days:g}; at most "
                f"{MAX_DOSES:,} per drug are allowed (a longer interval, or a shorter horizon?)"
            )

    def planned_times(self) -> np.ndarray | None:
        """Every administration time the regimen plans, at any horizon (its count, cycles and
        ``until``); None when it has no end of its own (it runs to the horizon)."""
        n = 1 if self.interval_days is None else self.count
        if self.cycle_days is not None:
            end = None if self.cycles is None else self.start_day + self.cycles * self.cycle_days
        elif n is not None:
            end = self.start_day + n * (self.interval_days or 1.0)
        else:
            end = None
        if self.until_day is not None:
            end = self.until_day if end is None else min(end, self.until_day)
        return None if end is None else self.dose_times(end)

    def describe(self) -> str:
        s = f"{self.drug} {exact_number(self.dose)} {self.dose_unit}"
        if self.dose_unit == "mg" and get_drug(self.drug, self.catalogue).amount_unit != "mg":
            s = s[: -len(" mg")]  # a cell product's amount unit (1e6 cells): a bare number
        if self.interval_days is not None:
            s += f" every {exact_number(self.interval_days)} d"
        if self.count is not None:
            s += f" x {self.count}"
        if self.until_day is not None:
            s += f" until {exact_number(self.until_day)} d"
        if self.cycle_days is not None:
            s += f" repeat every {exact_number(self.cycle_days)} d"
            if self.cycles is not None:
                s += f" x {self.cycles}"
        if self.start_day:
            s += f" start {exact_number(self.start_day)} d"
        if self.infusion_days:
            s += f" over {_duration_text(self.infusion_days)}"
        if self.rule is not None:
            s += " " + self.rule.describe()
        return s


# assumption: a typical adult (70 kg, 1.8 m2) converts per-kg/per-m2 doses into mg where no
# patient is at hand: the label-maximum note below, the optimiser's flat mg slots
TYPICAL_ADULT = (70.0, 1.8)


def above_label_maximum(reg: Regimen, factor: float = 2.0) -> str | None:
    """A note when one dose of ``reg`` for a typical adult exceeds ``factor`` times the drug's
    label maximum single dose (`Drug.max_single_dose_mg`).  Twice by default, so that trial
    doses a little above the label (pembrolizumab 10 mg/kg, 700 mg, against 400 mg) pass
    and a mg vs mg/kg slip (~77x) does not.  Not an error: a dose-escalation study may mean
    it."""
    drug = get_drug(reg.drug, reg.catalogue)
    if drug.amount_unit != "mg" or not math.isfinite(drug.max_single_dose_mg):
        return None
    per = {"mg": 1.0, "mg/kg": TYPICAL_ADULT[0], "mg/m2": TYPICAL_ADULT[1]}[reg.dose_unit]
    mg = reg.dose * per
    if mg <= factor * drug.max_single_dose_mg * (1 + 1e-9):
        return None
    times = "" if factor == 1 else f"{factor:g} times "
    return (
        f"'{reg.describe()}': one dose is {mg:.4g} mg for a typical adult "
        f"({TYPICAL_ADULT[0]:g} kg, {TYPICAL_ADULT[1]:g} m2), above {times}{reg.drug}'s label "
        f"maximum single dose of {drug.max_single_dose_mg:g} mg (mg meant for mg/kg?)"
    )


def interval_problem(reg: Regimen, dt: float) -> str | None:
    """Why ``reg`` cannot be given on an integrator grid of step ``dt`` (days), or None: an
    interval shorter than the step puts several doses in one step, where they are summed."""
    if reg.interval_days is not None and reg.interval_days < dt * (1 - 1e-9):
        return (
            f"{reg.describe()!r}: interval={_duration_text(reg.interval_days)} is shorter than "
            f"the integration step dt={dt:g} d, so several doses would be summed into one step; "
            f"allowed: an interval >= {dt:g} d (or a smaller simulation.dt)"
        )
    return None


def cut_note(reg: Regimen, day: float, what: str = "horizon") -> str | None:
    """A note when the end of the run (``what`` = "horizon") or of induction ("induction") on
    ``day`` cuts a course that ``reg`` limits by its count or cycles ('q3w x 6' over 60 days
    gives 3 of its 6 doses); None otherwise.  Not an error: a trial's horizon may well be
    shorter than a planned course."""
    if reg.count is None and reg.cycles is None:
        return None  # it runs to its 'until' or the end by design
    planned = reg.planned_times()
    if planned is None:
        return None
    given = int(np.sum(planned < day - 1e-12))
    if given == len(planned):
        return None
    where = f"within the {day:g}-day horizon"
    if what != "horizon":
        where = f"before {what} ends (day {day:g})"
    return (
        f"{reg.describe()!r}: {given} of its {len(planned)} planned doses fall {where}; the "
        f"last planned is on day {planned[-1]:g}"
    )


def _courses(reg: Regimen, day: float) -> list[np.ndarray]:
    """The planned doses of ``reg`` up to the course running on ``day`` at least, grouped by
    course: one per cycle of a repeated course, the whole series of a counted one ('q3w x 6');
    none for a regimen without a count."""
    if reg.cycle_days is None and (reg.count is None or reg.interval_days is None):
        return []
    planned = reg.planned_times()
    if planned is None:  # cycles until the horizon: those up to the one after ``day``
        planned = reg.dose_times(day + (reg.cycle_days or 0.0) + reg.course_days() + 1.0)
    if reg.cycle_days is None:
        return [planned] if len(planned) else []
    k = np.floor((planned - reg.start_day) / reg.cycle_days + 1e-9)
    return [planned[k == c] for c in np.unique(k)]


def induction_end_problem(reg: Regimen, end: float) -> str | None:
    """Why induction cannot end on day ``end`` for ``reg``: the end falls inside one of its
    courses (some of the course's doses before it, some on or after it), or None."""
    for c, course in enumerate(_courses(reg, end)):
        before = int(np.sum(course < end - 1e-12))
        if 0 < before < len(course):
            after = f"induction_days >= {math.floor(course[-1]) + 1}"
            if reg.cycle_days is None:
                where = f"its course of {len(course)} doses (days {course[0]:g}-{course[-1]:g})"
                fix = f"set {after}, or give 'x {before}' (count = {before} in a table)"
            elif c == 0:
                where = f"its first course (days {course[0]:g}-{course[-1]:g})"
                fix = f"set {after}, or give {before} doses a course ('x {before}')"
            else:
                where = f"course {c + 1} (days {course[0]:g}-{course[-1]:g})"
                fix = (
                    f"set induction_days to {math.floor(course[0])} (before it) or {after}, or "
                    f"give {c} cycle{'s' * (c > 1)} ('x {c}' after 'repeat'; cycles = {c})"
                )
            return (
                f"{reg.describe()!r}: induction ends on day {end:g}, inside {where}, which would "
                f"stop after {before} of its {len(course)} doses; {fix}"
            )
    return None


def coincident_doses(regimens, horizon_days: float, dt: float) -> list[str]:
    """One note per pair of regimens of one drug whose doses start in the same integrator step
    (their amounts are summed there): 'pembrolizumab 400 mg x 1' with 'pembrolizumab 200 mg
    q3w' gives 600 mg on day 0.  Not an error (a loading dose may mean it)."""
    n_steps = max(int(round(horizon_days / dt)), 1)
    steps = [np.unique(dose_step(r.dose_times(horizon_days), dt, n_steps)) for r in regimens]
    notes = []
    for i, a in enumerate(regimens):
        for j in range(i + 1, len(regimens)):
            b = regimens[j]
            if a.drug != b.drug:
                continue
            both = np.intersect1d(steps[i], steps[j])
            if len(both):
                more = f" (and {len(both) - 1} more steps)" if len(both) > 1 else ""
                notes.append(
                    f"{a.drug}: {a.describe()!r} and {b.describe()!r} both dose in the step of "
                    f"day {both[0] * dt:g}{more}; the doses are summed there"
                )
    return notes


_KEYWORDS = ("every", "x", "for", "until", "start", "from", "over", "hold", "reduce", "repeat")
# after "x <n>" / "for <n>": what is counted (any other word after the number is an error)
_COUNT_WORDS = ("doses", "dose", "cycles", "cycle", "courses", "course", "infusions", "infusion",
                "injections", "injection")  # fmt: skip
_CYCLE_WORDS = ("cycles", "cycle", "courses", "course")  # after "repeat ... x <n>"


def parse_regimen(text: str, catalogue: dict[str, Drug] | None = None) -> Regimen:
    """Parse ``"<drug> [<dose> <unit>] [every <n> <unit> | qd | bid | q3w] [x <count>]
    [repeat every <n> <unit> [x <cycles>]] [until <day> d | for <duration>] [start <t> <unit>]
    [over <t> <unit>]
    [hold if <output> <|> <value> [delay [every <t> d] [up to <t> d]] [reduce to <p>% ...]]"``
    (the last part: a `vcohort.dose_rules.DoseRule`).

    A drug name alone means its catalogue ``clinical_dose``.  Days are counted as time elapsed
    from the start of the run: day 0 is its first day, so a protocol's "Day 1" is ``start 0 d``
    (the default) and its "Day 8" is ``start 7 d``; ``until <day>`` gives no dose on or after
    that day, ``for <duration>`` none from ``start`` + duration on.  ``x <n>`` counts doses
    (after ``repeat``: cycles), optionally followed by doses, cycles, courses, infusions or
    injections; ``for`` takes a duration with its unit, ``over`` an infusion length with its
    unit (``over 30 min``).  Examples::

        parse_regimen("pembrolizumab 200 mg every 21 d x 8 over 30 min")
        parse_regimen("pembrolizumab 2 mg/kg q3w")
        parse_regimen("cb839 800 mg bid until 168 d")
        parse_regimen("wnt974 10 mg qd for 4 weeks start 7 d")   # days 7-34 (protocol days 8-35)
        # days 0-4 of each 21-day cycle (the protocol's days 1-5 of 21)
        parse_regimen("dacarbazine 250 mg/m2 qd x 5 repeat every 21 d x 6")
        parse_regimen("doxorubicin 75 mg/m2 q3w over 30 min hold if ANC < 1.5 reduce to 75% 50%")
        parse_regimen("doxorubicin 75 mg/m2 q3w over 30 min hold if ANC < 1.5 delay up to 21 d")
    """
    cat = CATALOGUE if catalogue is None else catalogue
    text, rule = split_rule(text)
    if rule is not None:
        return dataclasses.replace(parse_regimen(text, cat), rule=rule)
    tokens = text.replace(",", " ").split()
    if not tokens:
        raise ValueError("regimen is empty; expected '<drug> <dose> <unit> every <interval>'")
    drug = get_drug(tokens[0], cat)
    rest = tokens[1:]
    if not rest:
        return parse_regimen(drug.clinical_dose, cat)
    kw: dict = {"drug": drug.name, "catalogue": cat}
    i = 0
    if rest and rest[0].lower() not in _KEYWORDS and not _is_shorthand(rest[0]):
        amount_text = rest[0]
        if len(rest) > 1 and rest[1].lower() not in _KEYWORDS and not _is_shorthand(rest[1]):
            amount_text += " " + rest[1]
            i = 2
        else:
            i = 1
        cells = drug.amount_unit == "1e6 cells"
        kw["dose"], kw["dose_unit"] = parse_dose(amount_text, f"{drug.name} dose", cells)
        if drug.amount_unit == "1e6 cells" and kw["dose_unit"] not in CELL_UNITS:
            if re.search(r"[A-Za-z]", re.sub(rf"^\s*(?:{_NUM})", "", amount_text)):
                raise ValueError(
                    f"{drug.name} dose={amount_text!r}: {drug.name} is a cell product, dosed in "
                    f"cells; allowed: cells, cells/kg, cells/m2 (a bare number: 1e6 cells)"
                )
    else:
        base = parse_regimen(drug.clinical_dose, cat)
        kw["dose"], kw["dose_unit"] = base.dose, base.dose_unit
    repeat = False  # after "repeat": "every"/qNd set the cycle, "x" the number of cycles
    while i < len(rest):
        tok = rest[i].lower()
        if tok == "repeat":
            if repeat:
                raise ValueError(f"regimen {text!r}: 'repeat' given twice")
            repeat = True
            i += 1
            if i >= len(rest) or not (rest[i].lower() == "every" or _is_shorthand(rest[i])):
                raise ValueError(
                    f"regimen {text!r}: 'repeat' needs the cycle, e.g. 'repeat every 28 d'"
                )
            continue
        if _is_shorthand(tok) and repeat and "cycle_days" not in kw:
            kw["cycle_days"] = _shorthand_days(tok)
            i += 1
            continue
        if _is_shorthand(tok):
            _once(kw, "interval_days", text, rest[i])
            kw["interval_days"] = _shorthand_days(tok)
            i += 1
            continue
        if tok not in _KEYWORDS:
            two = "," in text or tok in cat or tok in ("+", "and", "&")
            raise ValueError(
                f"regimen {text!r}: unexpected word {rest[i]!r}; expected one of "
                f"{list(_KEYWORDS)} or qd/bid/tid/qNd/qNw/qNh"
                + ("; a regimen gives one drug: several drugs of one arm are joined by ' + ' "
                   "in --arm, listed in regimens = [...] in an experiment file, or given as one "
                   "--regimen each" if two else "")
            )  # fmt: skip
        if i + 1 >= len(rest):
            raise ValueError(f"regimen {text!r}: {tok!r} needs a value")
        val, i = _take_value(rest, i + 1)
        if tok in ("x", "for") and i < len(rest) and rest[i].lower() in _COUNT_WORDS:
            val += " " + rest[i]  # "x 6 cycles": the count word is part of the value
            i += 1
        if tok == "every" and repeat and "cycle_days" not in kw:
            kw["cycle_days"] = parse_duration(val, f"{drug.name} repeat every")
        elif tok == "every":
            _once(kw, "interval_days", text, f"every {val}")
            kw["interval_days"] = parse_duration(val, f"{drug.name} interval")
        elif tok in ("x", "for"):
            m = re.fullmatch(rf"({_NUM})\s*([A-Za-z]*)", val)  # "6", "12 weeks", "28d", "6 cycles"
            num, word = (m.group(1), m.group(2).lower()) if m else (val.split()[0], "")
            if word in _TIME_UNITS:
                if tok == "x":
                    raise ValueError(
                        f"regimen {text!r}: 'x {val}': x takes a number of doses; for a "
                        f"duration write 'for {val}'"
                    )
                _once(kw, "for_days", text, f"for {val}")  # a duration from the start
                kw["for_days"] = parse_duration(val, f"{drug.name} for")
                continue
            what = "cycles" if repeat else "count"
            n = _whole(_number(num, f"{drug.name} {what}"), f"{drug.name} {what}")
            if word and word not in _COUNT_WORDS:
                raise ValueError(
                    f"regimen {text!r}: '{tok} {val}': {word!r} is neither a time unit nor a "
                    f"count word; allowed after '{tok} {num}': a time unit "
                    f"({', '.join(_TIME_UNITS)}) or {', '.join(_COUNT_WORDS)}"
                )
            if tok == "for" and not word:  # 'for 6': 6 doses, or 6 days as 'until 6' reads?
                counted = "cycles" if repeat else "doses"
                raise ValueError(
                    f"regimen {text!r}: 'for {num}' has no unit: write 'x {num}' for {num} "
                    f"{counted}, or 'for {num} d' (w, months) for a duration"
                )
            if repeat:  # after "repeat", a number counts cycles ("x 6", "for 6 cycles")
                if word and word not in _CYCLE_WORDS:
                    raise ValueError(
                        f"regimen {text!r}: after 'repeat', '{tok} <n>' counts cycles; write "
                        f"'{tok} {num}' or '{tok} {num} cycles'"
                    )
                if "cycles" in kw:
                    raise ValueError(f"regimen {text!r}: the number of cycles is given twice")
                kw["cycles"] = n
                continue
            if "count" in kw:
                raise ValueError(f"regimen {text!r}: the number of doses is given twice")
            kw["count"] = n
        elif tok == "until":
            _once(kw, "until_day", text, f"until {val}")
            kw["until_day"] = parse_duration(val, f"{drug.name} until")
        elif tok in ("start", "from"):
            _once(kw, "start_day", text, f"{tok} {val}")
            kw["start_day"] = parse_duration(val, f"{drug.name} start")
        elif tok == "over":
            _once(kw, "infusion_days", text, f"over {val}")
            kw["infusion_days"] = parse_infusion(val, f"{drug.name} over")
    if "for_days" in kw:
        span = kw.pop("for_days")
        if "until_day" in kw:
            raise ValueError(f"regimen {text!r}: give 'for <duration>' or 'until <day>', not both")
        if span <= 0:
            raise ValueError(f"regimen {text!r}: 'for' needs a duration > 0")
        kw["until_day"] = kw.get("start_day", 0.0) + span  # doses in [start, start + span)
    return Regimen(**kw)


_CLAUSES = {
    "interval_days": "the dosing interval ('every <t>', qd, bid, qNw ...)",
    "for_days": "'for <duration>'",
    "until_day": "'until <day>'",
    "start_day": "the start ('start <t>' or 'from <t>')",
    "infusion_days": "the infusion length ('over <t>')",
}


def _once(kw: dict, key: str, text: str, clause: str) -> None:
    """Refuse a regimen clause given twice (the second would silently replace the first)."""
    if key in kw:
        raise ValueError(
            f"regimen {text!r}: {_CLAUSES[key]} is given twice (again as {clause!r}); give it once"
        )


def _is_shorthand(tok: str) -> bool:
    t = tok.lower()
    return t in _SHORTHAND or re.fullmatch(r"q\d+(\.\d+)?[dhw]", t) is not None


def _shorthand_days(tok: str) -> float:
    t = tok.lower()
    if t in _SHORTHAND:
        return _SHORTHAND[t]
    n, u = float(t[1:-1]), t[-1]
    return n * _TIME_UNITS[u]


def _take_value(tokens: list[str], i: int) -> tuple[str, int]:
    """Take '<number> [<unit>]' starting at tokens[i]."""
    val = tokens[i]
    i += 1
    if (
        i < len(tokens)
        and re.fullmatch(_NUM, val)
        and tokens[i].isalpha()
        and tokens[i].lower() not in _KEYWORDS
        and tokens[i].lower() not in _COUNT_WORDS
        and not _is_shorthand(tokens[i])
    ):
        val += " " + tokens[i]
        i += 1
    return val, i


# ---------------------------------------------------------------------- schedules
@dataclass(frozen=True)
class Schedule:
    """Fixed-shape dose slots per drug.

    Attributes:
        drugs: drug names (rows).
        time: (drugs, slots) administration day of each slot.
        amount: (drugs, slots) dose per slot in the slot's unit kind, in PK amount units (mg;
            1e6 cells for a cell product) (the differentiable part; may be a numpy or JAX array).
        kind: (drugs, slots) 0 = mg, 1 = mg/kg, 2 = mg/m².
        duration: (drugs, slots) infusion duration in days (0 = bolus/oral).
        valid: (drugs, slots) False for padding slots.
        rules: per drug (row order) its `DoseRule` or None; ``()`` when no drug has one.
        ends: per drug the day from which no (delayed) dose is given: the ``until`` of the
            regimen with the last planned dose (None: the horizon); ``()`` when no drug has a
            rule (only delay rules need it).
        horizon: the ``horizon_days`` it was compiled for (no dose from that day on), or None
            when built by hand; `vcohort.simulate.prepare` warns when a run goes past it.
    """

    drugs: tuple[str, ...]
    time: np.ndarray
    amount: object
    kind: np.ndarray
    duration: np.ndarray
    valid: np.ndarray
    rules: tuple = ()
    ends: tuple = ()
    horizon: float | None = None

    @property
    def n_slots(self) -> int:
        return int(self.time.shape[1])

    def replace_amount(self, amount) -> Schedule:
        return dataclasses.replace(self, amount=amount)

    def needs(self) -> set[str]:
        """Covariates the schedule needs: ``weight_kg`` and/or ``bsa_m2``."""
        k = self.kind[self.valid]
        out = set()
        if np.any(k == 1):
            out.add("weight_kg")
        if np.any(k == 2):
            out.add("bsa_m2")
        return out

    def step_grid(self, dt: float, n_steps: int) -> StepGrid:
        """Static scatter plan of the slots onto the step grid (see `StepGrid`)."""
        return StepGrid.build(self, dt, n_steps)

    def step_inputs(self, dt: float, n_steps: int, xp=np):
        """(bolus, rate) arrays of shape (n_steps, drugs, 3): mg (or mg/kg, mg/m²) added at
        the start of each step and the infusion rate per day during it, by unit kind."""
        return self.step_grid(dt, n_steps).scatter(self.amount, xp)

    def step_starts(self, dt: float, n_steps: int) -> np.ndarray:
        """(n_steps, drugs, 2): the dose (slot index + 1; 0: none) of each drug that begins in
        each step, a bolus in ``[..., 0]`` and an infusion in ``[..., 1]``: where a hold rule
        decides and records (`vcohort.dose_modify.apply`).  From the slots (amount > 0), not
        from the rates, so infusions that meet on the step grid are still separate doses."""
        out = np.zeros((n_steps, len(self.drugs), 2))
        amount = np.asarray(self.amount)
        for i, j in zip(*np.nonzero(self.valid & (amount > 0)), strict=True):
            k = int(dose_step(self.time[i, j], dt, n_steps))
            if self.time[i, j] < n_steps * dt:
                out[k, i, int(self.duration[i, j] > 0)] = j + 1.0
        return out

    def refuse_rules(self, where: str) -> None:
        """Raise when a drug has a hold rule: for ``where`` (a tool that cannot apply one)."""
        pairs = zip(self.drugs, self.rules, strict=False)  # rules: () when none
        ruled = [f"{d} ({r.describe()})" for d, r in pairs if r is not None]
        if ruled:
            raise ValueError(
                f"{where} does not apply hold rules (dose modification), and the regimens give "
                f"them for {', '.join(ruled)}: remove the 'hold if' clause"
            )

    def check_rules(self, dt: float, n_steps: int) -> None:
        """Refuse what a hold rule cannot decide on: a ruled drug whose infusions overlap on
        the step grid (their rates add up, so one dose's decision cannot be kept apart), a
        delay rule on an irregular regimen (`vcohort.dose_rules.delay_inputs`)."""
        delay_inputs(self, dt, n_steps)
        amount = np.asarray(self.amount)
        grid = self.step_grid(dt, n_steps)
        for i, rule in enumerate(self.rules):
            if rule is None:
                continue
            ok = self.valid[i] & (amount[i] > 0) & (self.time[i] < n_steps * dt)  # as the grid
            u, c = np.unique(dose_step(self.time[i][ok], dt, n_steps), return_counts=True)
            if (c > 1).any():
                raise ValueError(
                    f"{self.drugs[i]}: two doses start in the same step (day "
                    f"{u[c > 1][0] * dt:g}); a hold rule ({rule.describe()}) decides each dose "
                    f"on its own: merge them into one dose"
                )
            mine = grid.is_rate & ((grid.dst // 3) % len(self.drugs) == i)
            steps = grid.dst[mine] // (3 * len(self.drugs))
            u, c = np.unique(steps, return_counts=True)
            if (c > 1).any():
                raise ValueError(
                    f"{self.drugs[i]}: infusions overlap on day {u[c > 1][0] * dt:g} (step grid "
                    f"dt={dt:g}); a hold rule ({rule.describe()}) needs each infusion to end "
                    f"before the next one of the drug starts"
                )


@dataclass(frozen=True)
class StepGrid:
    """Where each slot lands on the step grid; `scatter` is linear (and differentiable) in the
    amounts.  Infusion durations are rounded to whole steps (at least one step)."""

    n_steps: int
    n_drugs: int
    dt: float
    src: np.ndarray  # flat slot index of each entry
    dst: np.ndarray  # flat (step, drug, kind) index
    weight: np.ndarray  # 1 for boluses, 1/duration for infusion-rate entries
    is_rate: np.ndarray  # entry goes to the rate array

    @staticmethod
    def build(s: Schedule, dt: float, n_steps: int) -> StepGrid:
        src, dst, w, is_rate = [], [], [], []
        nd, ns = s.time.shape
        for i in range(nd):
            for j in range(ns):
                if not s.valid[i, j]:
                    continue
                if s.time[i, j] >= n_steps * dt:
                    continue
                k0 = int(dose_step(s.time[i, j], dt, n_steps))
                flat = i * ns + j
                if s.duration[i, j] > 0:
                    nsteps = int(infusion_steps(s.duration[i, j], dt))
                    for k in range(k0, min(k0 + nsteps, n_steps)):
                        src.append(flat)
                        dst.append((k * nd + i) * 3 + int(s.kind[i, j]))
                        w.append(1.0 / (nsteps * dt))
                        is_rate.append(True)
                else:
                    src.append(flat)
                    dst.append((k0 * nd + i) * 3 + int(s.kind[i, j]))
                    w.append(1.0)
                    is_rate.append(False)
        return StepGrid(
            n_steps,
            nd,
            dt,
            np.array(src, dtype=np.int64),
            np.array(dst, dtype=np.int64),
            np.array(w),
            np.array(is_rate, dtype=bool),
        )

    def scatter(self, amount, xp=np):
        """(bolus, rate) of shape (n_steps, drugs, 3) from slot amounts (drugs, slots)."""
        flat = xp.reshape(xp.asarray(amount), (-1,))
        size = self.n_steps * self.n_drugs * 3
        outs = []
        for sel in (~self.is_rate, self.is_rate):
            vals = flat[self.src[sel]] * xp.asarray(self.weight[sel], dtype=flat.dtype)
            if xp is np:
                out = np.zeros(size, dtype=flat.dtype)
                np.add.at(out, self.dst[sel], vals)
            else:
                out = xp.zeros(size, dtype=flat.dtype).at[self.dst[sel]].add(vals)
            outs.append(xp.reshape(out, (self.n_steps, self.n_drugs, 3)))
        return outs[0], outs[1]


def compile_schedule(
    regimens: list[Regimen] | tuple[Regimen, ...],
    horizon_days: float,
    *,
    drugs: tuple[str, ...] | None = None,
    n_slots: int | None = None,
    dt: float | None = None,
) -> Schedule:
    """Lay regimens out as dose slots (several regimens of one drug are merged in time order).

    Args:
        regimens: the arm's regimens (may be empty: untreated).
        horizon_days: only doses before the horizon are kept.
        drugs: row order / superset of drugs (default: the regimens' drugs in order of appearance).
        n_slots: pad to this many slots per drug (default: the most any drug needs, at least 1).
        dt: the integrator step the schedule will run on, if known: a regimen whose interval
            is shorter is refused (`interval_problem`).

    More than `MAX_DOSES` doses of one drug are refused.
    """
    if not (math.isfinite(horizon_days) and horizon_days > 0):
        raise ValueError(f"days={horizon_days!r} must be > 0")
    order: list[str] = list(drugs) if drugs is not None else []
    for r in regimens:
        if r.drug not in order:
            if drugs is not None:
                raise ValueError(f"regimen drug {r.drug!r} is not among drugs={list(drugs)}")
            order.append(r.drug)
    if dt is not None:
        problems = [p for r in regimens if (p := interval_problem(r, dt)) is not None]
        if problems:
            raise ValueError(problems[0])
    per_drug: dict[str, list[tuple[float, float, int, float]]] = {d: [] for d in order}
    for r in regimens:
        for t in r.dose_times(horizon_days):
            amount = r.dose * UNIT_SCALE.get(r.dose_unit, 1.0)
            per_drug[r.drug].append((float(t), amount, DOSE_UNITS[r.dose_unit], r.infusion_days))
    for d in per_drug:
        per_drug[d].sort(key=lambda x: x[0])
    rules = drug_rules(regimens)
    need = max([len(v) for v in per_drug.values()] + [1])
    if need > MAX_DOSES:
        d = max(per_drug, key=lambda k: len(per_drug[k]))
        raise ValueError(
            f"{d}: {need:,} doses before day {horizon_days:g}; at most {MAX_DOSES:,} per drug "
            f"are allowed (a longer interval, or a shorter horizon?)"
        )
    if n_slots is None:
        n_slots = need
    elif n_slots < need:
        raise ValueError(f"n_slots={n_slots} is fewer than the {need} doses the regimens need")
    shape = (len(order), n_slots)
    time = np.zeros(shape)
    amount = np.zeros(shape)
    kind = np.zeros(shape, dtype=np.int64)
    duration = np.zeros(shape)
    valid = np.zeros(shape, dtype=bool)
    for i, d in enumerate(order):
        for j, (t, a, k, dur) in enumerate(per_drug[d]):
            time[i, j], amount[i, j], kind[i, j], duration[i, j], valid[i, j] = t, a, k, dur, True
    by_row = tuple(rules.get(d) for d in order)
    if not any(by_row):
        return Schedule(
            tuple(order), time, amount, kind, duration, valid, horizon=float(horizon_days)
        )
    ends = []
    for d in order:
        # the regimen that gives the drug's last planned dose ends the (delayed) series: its
        # ``until`` (None: the horizon).  (Every regimen's ``until`` had to be set before, or
        # one without it, say 'x 2' before 'start 14 d until 28 d', dropped the others')
        last = [(max(ts), r.until_day) for r in regimens if r.drug == d
                for ts in [r.dose_times(horizon_days)] if len(ts)]  # fmt: skip
        ends.append(max(last, key=lambda x: x[0])[1] if last else None)
    return Schedule(
        tuple(order), time, amount, kind, duration, valid, by_row, tuple(ends),
        horizon=float(horizon_days),
    )  # fmt: skip


# ---------------------------------------------------------------------- NM-TRAN
NMTRAN_COLUMNS = ["ID", "TIME", "AMT", "CMT", "EVID", "II", "ADDL", "RATE", "DRUG"]


def dose_step(time, dt: float, n_steps: int | None = None):
    """The integrator step a dose at ``time`` (days) starts in: the nearest step boundary, a tie
    (a time half-way between steps, e.g. bid at dt = 0.2) rounded up, not to even; with
    ``n_steps``, a dose inside the horizon that rounds onto its end is given in the last step
    instead of being lost.  Integer (array) like ``time``."""
    # (+1e-9: 0.3 / 0.2 is 1.4999999999999998 in floating point, a tie all the same)
    k = np.floor(np.asarray(time, dtype=np.float64) / dt + 0.5 + 1e-9).astype(np.int64)
    return k if n_steps is None else np.minimum(k, n_steps - 1)


def infusion_steps(duration, dt: float):
    """Whole steps an infusion of ``duration`` days (> 0) runs over: the nearest number, at
    least one, a tie ("over 6 h" at dt = 0.1 d is 2.5 steps) rounded up, as `dose_step`
    rounds a tie to the later step.  Integer (array) like ``duration``."""
    return np.maximum(dose_step(duration, dt), 1)


def _dosing_cmt_numbers(drugs: tuple[str, ...], catalogue) -> dict[str, int]:
    """CMT of each drug's dosing compartment: PK compartments numbered from 1 in schedule
    order; a drug dosed into a model state (no PK compartments) takes one number of its own."""
    out, n = {}, 0
    for d in drugs:
        drug = get_drug(d, catalogue)
        out[d] = n + 1 + drug.dosing_compartment
        n += max(len(drug.compartments), 1)
    return out


def to_nmtran(
    schedule: Schedule,
    *,
    ids=(1,),
    weight_kg=None,
    bsa_m2=None,
    catalogue: dict[str, Drug] | None = None,
    given: dict | None = None,
) -> pd.DataFrame:
    """NM-TRAN dose records (one block per ID), collapsing equally spaced identical doses into
    ``II``/``ADDL``.  Per-kg and per-m² amounts are converted to mg with each ID's covariate.
    ``given``: `vcohort.simulate.Trajectories.dosing` of a run of these IDs (in order): drugs
    with a hold rule then list the doses each patient was given (on its day, at its fraction),
    not the planned ones."""
    ids = list(np.atleast_1d(ids))
    for d, rec in (given or {}).items():
        if np.shape(rec["dose_fraction"])[0] != len(ids):
            raise ValueError(
                f"given[{d!r}] has {np.shape(rec['dose_fraction'])[0]} patients, ids has {len(ids)}"
            )
    amount = np.asarray(schedule.amount, dtype=np.float64)
    bad = ~np.isfinite(amount) | (amount < 0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"schedule amount {amount[i, j]!r} ({schedule.drugs[i]}, slot {j}) must be finite "
            f"and >= 0"
        )
    kinds = set(np.unique(schedule.kind[schedule.valid]).tolist())
    covs = {}
    for k, name, vals in ((1, "weight_kg", weight_kg), (2, "bsa_m2", bsa_m2)):
        if k in kinds:
            if vals is None:
                raise ValueError(f"{KIND_NAMES[k]} doses need {name} for each ID")
            v = np.asarray(vals, dtype=np.float64)
            if v.size not in (1, len(ids)):
                raise ValueError(
                    f"{name} has {v.size} values for {len(ids)} IDs; give one per ID, or one"
                )
            bad = ~np.isfinite(v) | (v <= 0)
            if bad.any():
                first = float(v.reshape(-1)[np.argmax(bad.reshape(-1))])
                raise ValueError(
                    f"{name}={first!r} (for {KIND_NAMES[k]} doses) must be a finite number > 0"
                )
            covs[k] = np.broadcast_to(v.reshape(-1), (len(ids),))
    cmt = _dosing_cmt_numbers(schedule.drugs, catalogue)
    rows = []
    for pi, pid in enumerate(ids):
        for i, d in enumerate(schedule.drugs):
            sel = np.where(schedule.valid[i])[0]
            doses = []
            rec = (given or {}).get(d)
            for j in sel:
                k = int(schedule.kind[i, j])
                mg = amount[i, j] * (1.0 if k == 0 else covs[k][pi])
                t = schedule.time[i, j]
                if rec is not None:  # the dose as given (fraction 0: not given)
                    frac = float(rec["dose_fraction"][pi, j])
                    if not math.isfinite(frac):
                        raise ValueError(
                            f"given[{d!r}]: dose_fraction={frac!r} (ID {pid}, slot {j}) must be "
                            f"finite"
                        )
                    if frac <= 0:
                        continue
                    mg, t = mg * frac, float(rec["dose_day"][pi, j])
                doses.append((t, mg, schedule.duration[i, j]))
            doses.sort()
            rows.extend(_collapse(pid, d, cmt[d], doses))
    df = pd.DataFrame(rows, columns=NMTRAN_COLUMNS)
    return df.sort_values(["ID", "TIME", "CMT"], kind="stable").reset_index(drop=True)


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    """``np.isclose`` for two Python floats (~100x faster than the numpy call per scalar)."""
    return abs(a - b) <= atol + rtol * abs(b)


def _collapse(pid, drug, cmt, doses):
    rows, j = [], 0
    while j < len(doses):
        t0, a0, d0 = doses[j]
        k = j + 1
        ii = None
        while k < len(doses):
            t, a, d = doses[k]
            step = t - doses[k - 1][0]
            if not (_close(a, a0, 1e-12, 0.0) and d == d0) or step <= 0:
                break  # (coincident doses, e.g. two regimens' first doses: records of their own)
            if ii is None:
                ii = step
            elif not _close(step, ii, 1e-9, 1e-9):
                break
            k += 1
        addl = k - j - 1
        rate = a0 / d0 if d0 > 0 else 0.0
        rows.append([pid, t0, a0, cmt, 1, ii if addl else 0.0, addl, rate, drug])
        j = k
    return rows


# NM-TRAN data items that change what the doses mean, which `from_nmtran` does not model:
# column -> what a non-zero value means
_NMTRAN_UNSUPPORTED = {
    "SS": "steady-state dosing",
    "CONT": "a record continued on the next",
    "DATE": "a date, making TIME a clock time",
    "DAT1": "a date, making TIME a clock time",
    "DAT2": "a date, making TIME a clock time",
    "DAT3": "a date, making TIME a clock time",
}
_NMTRAN_EVIDS = {0: "observation, skipped", 1: "dose", 2: "other event, skipped"}


def _nm_value(v) -> str:
    """A record's value as written (3, not np.int64(3))."""
    if isinstance(v, int | float | np.number) and not isinstance(v, bool):
        return f"{float(v):g}"
    return repr(v)


def _refuse_unsupported_nmtran(df: pd.DataFrame) -> None:
    """The first record with an EVID other than 0-2 or a non-zero `_NMTRAN_UNSUPPORTED` item."""
    supported = ", ".join(f"{k} ({v})" for k, v in _NMTRAN_EVIDS.items())
    for row, pid, v in zip(df.index, df["ID"], df["EVID"], strict=True):
        try:
            evid = float(v)
        except (TypeError, ValueError):
            evid = math.nan
        if evid not in _NMTRAN_EVIDS:
            what = {3: " (reset)", 4: " (reset and dose)"}.get(evid, "")
            raise ValueError(
                f"NM-TRAN record {row} (ID {pid}): EVID={_nm_value(v)}{what} is not supported; "
                f"supported: EVID {supported}"
            )
    for col, meaning in _NMTRAN_UNSUPPORTED.items():
        if col not in df.columns:
            continue
        for row, pid, v in zip(df.index, df["ID"], df[col], strict=True):
            if pd.isna(v) or (isinstance(v, int | float | np.number) and v == 0):
                continue
            if isinstance(v, str) and v.strip() in ("", ".", "0"):
                continue
            raise ValueError(
                f"NM-TRAN record {row} (ID {pid}): {col}={_nm_value(v)} ({meaning}) is not "
                f"supported; supported: {col} = 0 or empty (each dose given as recorded, TIME "
                f"in days from the start)"
            )


def from_nmtran(
    df: pd.DataFrame,
    *,
    drugs: tuple[str, ...] | None = None,
    catalogue: dict[str, Drug] | None = None,
) -> dict:
    """Per-ID `Schedule`s (flat mg) from NM-TRAN dose records; ``DRUG`` names the drug, or
    ``drugs`` gives the schedule order used to number CMT (see `to_nmtran`).

    Read: EVID 1 records (doses: TIME, AMT, CMT, II, ADDL, RATE), EVID 0 and 2 records
    (observations and other events) skipped.  Refused, naming the record, column and value,
    as what a schedule cannot hold (NONMEM users guide, part V, data items): EVID 3 (reset) and
    4 (reset and dose), a non-zero SS (steady-state dosing), and a non-zero CONT (a record
    continued on the next), DATE or DAT1-DAT3 (TIME then a clock time, not the elapsed time).
    Other columns (DV, MDV, covariates, ARM, ...) are not read."""
    missing = [c for c in NMTRAN_COLUMNS[:-1] if c not in df.columns]
    if missing:
        raise ValueError(f"NM-TRAN table lacks columns {missing}; required: {NMTRAN_COLUMNS[:-1]}")
    _refuse_unsupported_nmtran(df)
    doses = df[df["EVID"] == 1]
    if "DRUG" in doses.columns:
        names = tuple(dict.fromkeys(doses["DRUG"].tolist()))
        order = drugs if drugs is not None else names
    else:
        if drugs is None:
            raise ValueError("NM-TRAN table without a DRUG column needs drugs=(...) to map CMT")
        order = tuple(drugs)
    by_cmt = {v: k for k, v in _dosing_cmt_numbers(order, catalogue).items()}
    out = {}
    for pid, g in doses.groupby("ID", sort=True):
        regs = []
        for row, r in g.iterrows():
            where = f"NM-TRAN record {row} (ID {pid})"
            name = r["DRUG"] if "DRUG" in g.columns else by_cmt.get(int(r["CMT"]))
            if name is None:
                raise ValueError(
                    f"{where}: CMT={r['CMT']} is no drug's dosing compartment for {order}"
                )
            for col in ("TIME", "AMT", "II", "ADDL", "RATE"):
                try:
                    v = float(r[col])
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: {col}={r[col]!r} is not a number") from None
                if not math.isfinite(v):
                    raise ValueError(f"{where}: {col}={v!r} must be a finite number")
            if float(r["ADDL"]) != int(r["ADDL"]):
                raise ValueError(
                    f"{where}: ADDL={float(r['ADDL']):g} must be a whole number (the doses "
                    f"after the first)"
                )
            addl, rate, ii = int(r["ADDL"]), float(r["RATE"]), float(r["II"])
            if rate < 0:  # NONMEM's -1/-2: the rate or duration is modelled ($PK R/D)
                raise ValueError(
                    f"{where}: RATE={rate:g} (a rate or duration set in the model) is not "
                    f"supported; give RATE = AMT / duration in mg/day, or 0 for a bolus"
                )
            if addl < 0 or (addl > 0 and not ii > 0):
                raise ValueError(
                    f"{where}: ADDL={addl}, II={ii:g}: ADDL counts the doses after the first "
                    f"(>= 0), and ADDL > 0 needs an interval II > 0 (days)"
                )
            try:
                reg = Regimen(
                    drug=name,
                    dose=float(r["AMT"]),
                    dose_unit="mg",
                    interval_days=ii if addl > 0 else None,
                    count=addl + 1 if addl > 0 else None,
                    start_day=float(r["TIME"]),
                    infusion_days=float(r["AMT"]) / rate if rate > 0 else 0.0,
                    catalogue=catalogue,
                )
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            regs.append(reg)
        horizon = (
            max(float(r["TIME"]) + float(r["II"]) * int(r["ADDL"]) for _, r in g.iterrows()) + 1.0
        )
        # every dose is listed: no horizon a longer run would go past (`Schedule.horizon`)
        out[pid] = dataclasses.replace(compile_schedule(regs, horizon, drugs=order), horizon=None)
    return out

"""Gradient-based optimisation of dosing schedules through the cohort simulation.

Decision variables (ARCHITECTURE.md, "Schedules for optimisation"): per drug, a non-negative
dose in every slot of a fixed grid (daily for oral agents, every allowed infusion day for
antibodies and chemotherapy).  ``amount = max_dose · sigmoid(θ)`` keeps every dose inside
``[0, max_dose]`` exactly (the per-dose maximum is never a penalty).  Per-day maxima and
cumulative dose budgets are linear in the doses and also hold exactly: `to_amount` scales each
day's total, then the drug's total, down onto its limit (a projection, not a penalty).  Only
the limits that depend on the simulation — the cohort-mean plasma AUC budgets and the fraction
of patients with grade-4 neutropenia (per patient in personalised mode) — are handled by an
augmented Lagrangian (Nocedal & Wright 2006, §17.4, for inequalities ``g ≤ 0``:
``f + Σ (max(0, λ + μ g)² − λ²) / 2μ``, ``λ ← max(0, λ + μ g)``).  Every limit's final value is
reported (`vcohort.optimize.evaluate.hard_constraints`).

The loss is a weighted sum of `vcohort.objectives` terms.  Gradients flow through
`vcohort.simulate.cohort_fn` (reverse mode through the ``lax.scan``, ``jax.checkpoint`` per
day, so memory grows with days, not steps).  Each iteration uses a random mini-batch of the
training cohort (stochastic gradient; ``batch_size=None`` = the whole cohort).

A run can be checkpointed and resumed: θ, the optimiser state, multipliers, the RNG state and
the history are written atomically every ``checkpoint_every`` iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vcohort.dose_rules import DoseRule
from vcohort.dosing import (
    TYPICAL_ADULT,  # per-kg/per-m2 standard doses -> flat mg slots
    Schedule,
    dose_step,
)
from vcohort.drugs import CATALOGUE, get_drug
from vcohort.model import CSC_IMMUNE, Model
from vcohort.objectives import (
    OBJECTIVES,
    grade4_fraction_smooth,
    objective_terms,
    per_patient_terms,
)
from vcohort.simulate import (
    NEGATIVE_TOL,
    RK4_STABILITY,
    Plan,
    acting_channels,
    check_dt,
    cohort_fn,
    first_order_rates,
    patient_fn,
    set_precision,
)

ANC_DRUG_CHANNEL = "myelotoxicity"


# ---------------------------------------------------------------------------- problem
@dataclass(frozen=True)
class DrugSlots:
    """One drug's decision variables and clinical limits (flat mg doses).

    Attributes:
        drug: catalogue name.
        every_days: slot spacing (1 = daily for oral agents, 0.5 = BID, 7 = weekly infusions).
        max_dose_mg: per-dose maximum (default: the catalogue's label/trial maximum).
        initial_mg: starting dose in every slot (default: the standard dose scaled to the slot).
        start_day: first slot.
        infusion_days: infusion duration (0 = oral/bolus).
        max_daily_mg: maximum total per calendar day (None = none).
        budget_mg: cumulative dose over the horizon (None = none).
        auc_budget: cohort-mean plasma AUC over the horizon, mg·day/L (None = none).
        round_to_mg: tablet strength / vial size the final doses are rounded to.
        intervals_days: if set, rounding makes the drug a regular regimen with one of these
            intervals (e.g. 7, 14, 21, 42 for q1w..q6w antibodies); else slot-wise rounding.
        hold_days: one decision variable per block of this many days (the dose level is
            held over the block, e.g. 7 = a weekly dose level for a daily oral drug); None =
            one variable per slot.  Fewer, clinically plausible variables: daily-varying
            oral doses are neither givable nor identifiable from a cohort objective.
        rule: the protocol's dose modification for the drug (`vcohort.dose_rules.DoseRule`,
            omission only: e.g. withhold if ANC < 1.5, then 75%, 50%), applied to every
            patient in training and evaluation; None = every dose given.  A slot whose dose
            is below half of ``round_to_mg`` (less than half a vial or tablet) is not a dose: it
            gives nothing and is neither withheld nor counted (`rule_inputs`).
    """

    drug: str
    every_days: float
    max_dose_mg: float | None = None
    initial_mg: float | None = None
    start_day: float = 0.0
    infusion_days: float = 0.0
    max_daily_mg: float | None = None
    budget_mg: float | None = None
    auc_budget: float | None = None
    round_to_mg: float = 1.0
    intervals_days: tuple[float, ...] = ()
    hold_days: float | None = None
    rule: DoseRule | None = None

    @property
    def smallest_dose_mg(self) -> float:
        """With a hold rule, a slot below this (half a ``round_to_mg`` unit) is not a dose."""
        return self.round_to_mg / 2.0

    def resolved_max(self) -> float:
        label = get_drug(self.drug).max_single_dose_mg
        return float(label if self.max_dose_mg is None else self.max_dose_mg)


@dataclass(frozen=True)
class Problem:
    """What to optimise: drugs and limits, horizon, objective weights, numerics."""

    drugs: tuple[DrugSlots, ...]
    days: int
    weights: dict = field(default_factory=lambda: {"log_burden": 1.0})
    alpha: float = 0.2
    assess_every: int = 42
    anc_grade4_max: float | None = None
    dt: float = 0.1
    precision: str = "float64"
    # training relaxation of the drugs' hold rules (`vcohort.simulate.Plan.hold_softness`): the
    # ramp's width relative to each rule's threshold; 0 = the protocol's step decision
    # (its pathwise gradient misses that a higher dose triggers later holds)
    hold_softness: float = 0.1

    def validate(self) -> None:
        """Every field checked with a clear error before any compute."""
        if not isinstance(self.days, int) or self.days < 1:
            raise ValueError(f"days={self.days!r} must be a whole number >= 1")
        if not self.drugs:
            raise ValueError("drugs: at least one drug to optimise is required")
        names = [d.drug for d in self.drugs]
        if len(set(names)) != len(names):
            raise ValueError(f"drugs: each drug once, got {names}")
        if not self.weights:
            raise ValueError(f"objective weights empty; allowed names: {sorted(OBJECTIVES)}")
        for k, w in self.weights.items():
            if k not in OBJECTIVES:
                raise ValueError(f"objective {k!r} unknown; allowed: {sorted(OBJECTIVES)}")
            if not (isinstance(w, int | float) and math.isfinite(w)):
                raise ValueError(f"objective weight {k}={w!r} must be a finite number")
        ae = self.assess_every
        if isinstance(ae, bool) or not isinstance(ae, int) or ae < 1:
            raise ValueError(f"assess_every={ae!r} must be a whole number of days >= 1")
        if self.weights.get("response", 0) > 0 and ae > self.days:
            raise ValueError(
                f"objective response={self.weights['response']!r}: a RECIST response needs an "
                f"assessment within the horizon, and assess_every={ae} > days={self.days} "
                f"leaves none (the reported ORR would be NaN while the smoothed response "
                f"optimised the horizon's shrinkage); lower assess_every or drop the "
                f"response weight"
            )
        if self.weights.get("pfs", 0) > 0 and ae >= self.days:
            raise ValueError(
                f"objective pfs={self.weights['pfs']!r}: PFS needs an assessment before the "
                f"horizon, and assess_every={ae} >= days={self.days} leaves none (the smoothed "
                f"PFS would be the horizon for every schedule, its gradient 0); lower "
                f"assess_every or drop the pfs weight"
            )
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha!r} (CVaR tail fraction) must be in (0, 1]")
        if self.anc_grade4_max is not None and not 0 <= self.anc_grade4_max < 1:
            raise ValueError(f"anc_grade4_max={self.anc_grade4_max!r} must be in [0, 1)")
        h = self.hold_softness
        if isinstance(h, bool) or not isinstance(h, int | float) or not 0 <= h <= 1:
            raise ValueError(
                f"hold_softness={h!r} must be in [0, 1] (a width relative to the rule's "
                f"threshold; 0 = the protocol's step decision)"
            )
        for d in self.drugs:
            validate_drug(d, self.days)
        self.check_rule_grid()

    def check_rule_grid(self) -> None:
        """What `Schedule.check_rules` refuses for a drug with a hold rule (two doses in one
        integrator step, overlapping infusions), checked on every slot before any compute."""
        if all(d.rule is None for d in self.drugs):
            return
        sched = layout(self).schedule
        try:
            sched.replace_amount(np.ones(sched.time.shape)).check_rules(
                self.dt, self.days * check_dt(self.dt)
            )
        except ValueError as e:
            raise ValueError(
                f"{e}; for a drug with a hold rule, every must be at least one step of dt="
                f"{self.dt:g} d and longer than its infusion"
            ) from None

    @property
    def drug_names(self) -> tuple[str, ...]:
        return tuple(d.drug for d in self.drugs)


class DrugFieldError(ValueError):
    """A `validate_drug` error about one field of `DrugSlots` (``field``, e.g. ``start_day``),
    so that a configuration file can name the key it was read from."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def validate_drug(d: DrugSlots, days: int) -> None:
    """Every limit of one drug checked before any compute; a `DrugFieldError` (a ValueError)
    names the field at fault."""
    try:
        drug = get_drug(d.drug)
    except (KeyError, ValueError) as e:
        raise DrugFieldError(
            "drug", f"drug {d.drug!r} is not in the catalogue: {sorted(CATALOGUE)}"
        ) from e
    f = f"drug {d.drug}"

    def pos(name, v, allow_none=True, allow_zero=False):
        if v is None and allow_none:
            return
        ok = isinstance(v, int | float) and math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise DrugFieldError(name, f"{f}: {name}={v!r} must be a finite number {bound}")

    pos("every_days", d.every_days, allow_none=False)
    pos("max_dose_mg", d.max_dose_mg)
    pos("initial_mg", d.initial_mg, allow_zero=True)
    pos("max_daily_mg", d.max_daily_mg)
    pos("budget_mg", d.budget_mg)
    pos("auc_budget", d.auc_budget)
    pos("round_to_mg", d.round_to_mg, allow_none=False)
    pos("start_day", d.start_day, allow_none=False, allow_zero=True)
    pos("infusion_days", d.infusion_days, allow_none=False, allow_zero=True)
    pos("hold_days", d.hold_days)
    if d.infusion_days > 0 and drug.route != "iv":
        raise DrugFieldError(
            "infusion_days",
            f"{f}: infusion_days={d.infusion_days} given for a drug of route {drug.route!r}; "
            f"only IV drugs take an infusion ('over')",
        )
    if d.hold_days is not None and d.hold_days < d.every_days:
        raise DrugFieldError(
            "hold_days", f"{f}: hold_days={d.hold_days} is shorter than every_days={d.every_days}"
        )
    if d.hold_days is not None:
        k = d.hold_days / d.every_days
        if abs(k - round(k)) > 1e-9:
            raise DrugFieldError(
                "hold_days",
                f"{f}: hold_days={d.hold_days} is not a whole multiple of every_days="
                f"{d.every_days} (blocks of one dose level would hold alternating numbers of "
                f"doses); allowed: {d.every_days:g} x 1, 2, 3, ...",
            )
    mx = d.resolved_max()
    if mx > drug.max_single_dose_mg:
        raise DrugFieldError(
            "max_dose_mg",
            f"{f}: max_dose_mg={mx} exceeds the label/trial maximum single dose "
            f"{drug.max_single_dose_mg} mg ({drug.toxicity})",
        )
    if d.rule is not None:
        if not isinstance(d.rule, DoseRule):
            raise DrugFieldError(
                "rule", f"{f}: rule={d.rule!r} must be a vcohort.dose_rules.DoseRule"
            )
        if d.rule.delay:
            raise DrugFieldError(
                "rule",
                f"{f}: rule '{d.rule.describe()}' delays doses, which moves them off the "
                f"optimiser's slot grid; allowed here: omission rules (without 'delay')",
            )
        if d.rule.threshold == 0:
            raise DrugFieldError(
                "rule",
                f"{f}: rule '{d.rule.describe()}' has threshold 0; the optimiser's smooth "
                f"decision is scaled by the threshold: use a threshold other than 0",
            )
    if d.start_day >= days:
        raise DrugFieldError(
            "start_day", f"{f}: start_day={d.start_day} must be before the horizon ({days} d)"
        )
    if d.round_to_mg > mx:
        raise DrugFieldError(
            "round_to_mg", f"{f}: round_to_mg={d.round_to_mg} exceeds max_dose_mg={mx}"
        )
    if d.initial_mg is not None and d.initial_mg > mx:
        raise DrugFieldError(
            "initial_mg", f"{f}: initial_mg={d.initial_mg} exceeds max_dose_mg={mx}"
        )
    if d.max_daily_mg is not None and d.max_daily_mg < d.round_to_mg:
        raise DrugFieldError(
            "max_daily_mg",
            f"{f}: max_daily_mg={d.max_daily_mg} is below one dose unit "
            f"(round_to_mg={d.round_to_mg}): no dose could ever be given",
        )
    if d.budget_mg is not None and d.budget_mg < d.round_to_mg:
        raise DrugFieldError(
            "budget_mg",
            f"{f}: budget_mg={d.budget_mg} is below one dose unit (round_to_mg={d.round_to_mg})",
        )
    if d.infusion_days and d.infusion_days > d.every_days:
        raise DrugFieldError(
            "infusion_days",
            f"{f}: infusion_days={d.infusion_days} longer than the slot spacing {d.every_days}",
        )
    for iv in d.intervals_days:
        k = iv / d.every_days
        if iv <= 0 or abs(k - round(k)) > 1e-9:
            raise DrugFieldError(
                "intervals_days",
                f"{f}: interval {iv} d must be a positive multiple of every_days={d.every_days}",
            )


# ---------------------------------------------------------------------------- slot layout
@dataclass(frozen=True)
class Layout:
    """The problem's dose slots as a `Schedule` skeleton plus constraint matrices."""

    schedule: Schedule  # amounts = initial doses
    max_dose: np.ndarray  # (drugs, 1)
    day_matrix: list  # per drug: (days, slots) 0/1, slot -> calendar day (or None)
    var_index: np.ndarray  # (drugs, slots): decision variable of each slot (padding -> 0)
    n_vars: int
    max_daily: np.ndarray  # (drugs,) per-day maximum, mg (inf = none)
    budget: np.ndarray  # (drugs,) cumulative budget over the horizon, mg (inf = none)

    @property
    def valid(self) -> np.ndarray:
        return self.schedule.valid


def layout(problem: Problem) -> Layout:
    times = []
    for d in problem.drugs:
        n = int(math.floor((problem.days - d.start_day) / d.every_days - 1e-9)) + 1
        times.append(d.start_day + d.every_days * np.arange(max(n, 0)))
    ns = max(len(t) for t in times)
    nd = len(problem.drugs)
    time_ = np.zeros((nd, ns))
    valid = np.zeros((nd, ns), dtype=bool)
    dur = np.zeros((nd, ns))
    amount = np.zeros((nd, ns))
    day_m = []
    var = np.zeros((nd, ns), dtype=np.int64)
    n_vars = 0
    for i, (d, t) in enumerate(zip(problem.drugs, times, strict=True)):
        time_[i, : len(t)] = t
        valid[i, : len(t)] = True
        dur[i, : len(t)] = d.infusion_days
        amount[i, : len(t)] = _initial(d, t, problem.days)
        block = (
            np.arange(len(t))
            if d.hold_days is None
            else np.floor((t - d.start_day) / d.hold_days + 1e-9).astype(np.int64)
        )
        var[i, : len(t)] = n_vars + block
        n_vars += int(block.max()) + 1
        if d.max_daily_mg is not None:
            m = np.zeros((problem.days, ns))
            m[np.floor(t).astype(int), np.arange(len(t))] = 1.0
            day_m.append(m)
        else:
            day_m.append(None)
    rules = tuple(d.rule for d in problem.drugs)
    sched = Schedule(
        problem.drug_names, time_, amount, np.zeros((nd, ns), dtype=np.int64), dur, valid,
        *((rules, (None,) * nd) if any(rules) else ()),
    )  # fmt: skip
    mx = np.array([[d.resolved_max()] for d in problem.drugs])
    inf = float("inf")
    cap = np.array([inf if d.max_daily_mg is None else d.max_daily_mg for d in problem.drugs])
    bud = np.array([inf if d.budget_mg is None else d.budget_mg for d in problem.drugs])
    return Layout(sched, mx, day_m, var, n_vars, cap, bud)


def _initial(d: DrugSlots, t: np.ndarray, days: int) -> np.ndarray:
    """Default start: the catalogue's standard regimen, each dose on its nearest slot (so a
    q3w antibody on weekly slots starts as q3w), or ``initial_mg`` in every slot."""
    if d.initial_mg is not None:
        return np.full(len(t), float(d.initial_mg))
    from vcohort.dosing import compile_schedule, parse_regimen

    s = compile_schedule([parse_regimen(get_drug(d.drug).clinical_dose)], float(days))
    scale = np.array([1.0, *TYPICAL_ADULT])[s.kind[0]]
    out = np.zeros(len(t))
    for tt, a, ok in zip(s.time[0], s.amount[0] * scale, s.valid[0], strict=True):
        if ok and tt < days:
            out[int(np.argmin(np.abs(t - tt)))] += a
    return np.minimum(out, d.resolved_max())


def to_theta(lay: Layout, amount) -> np.ndarray:
    """Decision variables whose doses are closest to ``amount`` ((drugs, slots) mg): the mean
    logit over each variable's slots, clipped away from 0 and the maximum."""
    u = np.clip(np.asarray(amount, dtype=np.float64) / lay.max_dose, 0.02, 0.98)
    logit = np.log(u) - np.log1p(-u)
    sums = np.bincount(lay.var_index[lay.valid], weights=logit[lay.valid], minlength=lay.n_vars)
    counts = np.bincount(lay.var_index[lay.valid], minlength=lay.n_vars)
    return sums / np.maximum(counts, 1)


def to_amount(lay: Layout, theta, xp=jnp):
    """Doses (drugs, slots) — or (..., drugs, slots) for a batch of ``theta`` (..., n_vars).

    ``max_dose · sigmoid(θ)`` per slot, then the linear limits by exact scaling (a projection
    onto the feasible set along the dose direction): each calendar day's total is scaled
    down to ``max_daily_mg`` if above it, then the drug's total to ``budget_mg`` (scaling down
    keeps the daily limit).  Both factors are ``L / max(total, L)``: 1 with zero gradient
    inside the limits, so a feasible schedule is never changed."""
    th = xp.asarray(theta)[..., lay.var_index]
    a = xp.asarray(lay.max_dose) * jax.nn.sigmoid(th) * xp.asarray(lay.valid)
    rows = []
    for i in range(a.shape[-2]):
        ai = a[..., i, :]
        m, cap = lay.day_matrix[i], lay.max_daily[i]
        if m is not None:
            mm = xp.asarray(m, ai.dtype)
            per_day = ai @ mm.T
            ai = ai * ((cap / xp.maximum(per_day, cap)) @ mm)
        b = lay.budget[i]
        if np.isfinite(b):
            total = xp.sum(ai, axis=-1, keepdims=True)
            ai = ai * (b / xp.maximum(total, b))
        rows.append(ai)
    return xp.stack(rows, axis=-2)


# ---------------------------------------------------------------------------- constraints
def constraint_values(problem: Problem, lay: Layout, amount, out) -> dict:
    """Constraint values ``g`` (≤ 0 is feasible): ``auc:<drug>`` scaled by its budget (0.1 = 10%
    over), ``anc_grade4`` the smoothed grade-4 fraction minus its limit (an absolute fraction).

    Only the limits that depend on the simulation (mean AUC, grade-4 neutropenia) appear: dose
    maxima, per-day maxima and cumulative budgets hold exactly by construction (`to_amount`).
    ``amount`` is (drugs, slots) (population) and ``out`` the cohort outputs."""
    g = {}
    for d in problem.drugs:
        if d.auc_budget is not None:
            g[f"auc:{d.drug}"] = (jnp.mean(out["auc"][d.drug]) - d.auc_budget) / d.auc_budget
    if problem.anc_grade4_max is not None:
        g["anc_grade4"] = grade4_fraction_smooth(out) - problem.anc_grade4_max
    return {k: jnp.atleast_1d(v) for k, v in g.items()}


class NoMultipliers(dict):
    """Multipliers that are all zero, whatever the constraint: evaluates a loss as the plain
    objective (plus the penalty's ``max(0, mu g)^2 / 2 mu`` part)."""

    def __missing__(self, key):
        return 0.0


def _al_penalty(g: dict, lam: dict, mu):
    return sum(
        jnp.sum(jnp.maximum(0.0, lam[k] + mu * v) ** 2 - lam[k] ** 2) / (2.0 * mu)
        for k, v in g.items()
    )


# ---------------------------------------------------------------------------- loss
def failed_patients(model: Model, plan: Plan, p: dict, out: dict) -> jnp.ndarray:
    """(P,) True where `vcohort.simulate.simulate` would give a patient a failure status that
    a non-finite output does not already show: a state negative beyond round-off
    (``out["negative"]``, `NEGATIVE_TOL`, as `vcohort.simulate._status`) or an acting rate x dt
    at RK4's stability bound (`vcohort.simulate.unstable_patients`, from the parameters ``p``).
    Such a patient's outputs can be finite yet wrong; traced (used inside the jitted loss)."""
    low = out["negative"]["lowest"]
    bad = jnp.where(jnp.isnan(low), False, low < -NEGATIVE_TOL)
    for k in first_order_rates(model, acting_channels(plan.drugs)):
        if k in p:
            bad = bad | (jnp.abs(p[k]) * plan.dt >= RK4_STABILITY)
    for k, n in (model.transit_rates or {}).items():
        if k in p:
            bad = bad | (n / p[k] * plan.dt >= RK4_STABILITY)
    return bad


def _unless_failed(obj, failed):
    """``obj``, or NaN when any patient failed: the iteration is then non-finite (its update is
    skipped, `vcohort.optimize.loop`), as a patient whose outputs are NaN makes it."""
    return jnp.where(jnp.any(failed), jnp.nan, obj)


def _plan(problem: Problem, lay: Layout, model: Model, reverse_mode: bool, soft: bool) -> Plan:
    """The simulation plan of a problem (only the horizon is saved); ``reverse_mode`` for the
    optimiser's gradient (RK4 steps with the hand-written reverse sweep, `rk4_step_reverse`),
    not for forward-only evaluations (its forward pass measured 1.2-1.4x slower); ``soft``:
    hold rules decide smoothly (`Problem.hold_softness`), for gradients."""
    drugs = tuple(get_drug(n) for n in problem.drug_names)
    dtype = set_precision(problem.precision)
    rules = lay.schedule.rules
    plan = Plan(
        model, drugs, problem.days, problem.dt, problem.days, dtype, reverse_mode=reverse_mode,
        rules=rules, n_slots=lay.schedule.n_slots if rules else 0,
        hold_softness=float(problem.hold_softness) if soft and rules else 0.0,
    )  # fmt: skip
    if rules:
        names = model.daily_output_names()
        for d in problem.drugs:
            if d.rule is not None and d.rule.output not in names:
                raise ValueError(
                    f"drug {d.drug}: hold rule output={d.rule.output!r} is not a daily output "
                    f"of model {model.name!r}; allowed: {', '.join(names)}"
                )
        every_slot = lay.schedule.replace_amount(np.ones(lay.schedule.time.shape))
        every_slot.check_rules(plan.dt, plan.n_steps)
    return plan


def rule_inputs(problem: Problem, lay: Layout, plan: Plan):
    """``prepare(amount) -> (amount given, extra simulation inputs)`` for slot doses ``amount``
    (drugs, slots), a traced function; the identity and ``()`` for plans without hold rules.

    For a drug with a hold rule, a slot whose dose is below half of its ``round_to_mg`` is not a
    dose (`DrugSlots.rule`): it gives nothing and is neither withheld nor counted, as in every
    evaluated schedule (`OptResult.schedule`).  Its gradient is the dose's own
    (straight-through), so that an empty slot can still grow into a dose (the gradient does
    not see that slot's own hold decision, which is made only once it is a dose).
    The extra inputs are `vcohort.dosing.Schedule.step_starts` of the doses given (omission
    rules only: no delay inputs)."""
    if not plan.rules:
        return lambda amount: (amount, ())
    s = lay.schedule
    half = np.array([d.smallest_dose_mg if d.rule else 0.0 for d in problem.drugs])[:, None]
    ii, jj = np.nonzero(s.valid)
    inside = s.time[ii, jj] < plan.n_steps * plan.dt
    ii, jj = ii[inside], jj[inside]
    k0 = dose_step(s.time[ii, jj], plan.dt, plan.n_steps)
    kind = (s.duration[ii, jj] > 0).astype(np.int64)
    shape = (plan.n_steps, len(problem.drugs), 2)
    no_delays = jnp.zeros((0, 5, 4), plan.dtype)

    def prepare(amount):
        given = amount - lax.stop_gradient(jnp.where(amount < half, amount, 0.0))
        slot = jnp.where(given[ii, jj] > 0, jj + 1.0, 0.0).astype(plan.dtype)
        starts = jnp.zeros(shape, plan.dtype).at[k0, ii, kind].set(slot)
        return given, (starts, no_delays)

    return prepare


def make_loss(
    problem: Problem,
    lay: Layout,
    model: Model = CSC_IMMUNE,
    reverse_mode: bool = False,
    soft: bool = True,
):
    """``loss(theta, lam, mu, args) -> (augmented Lagrangian, (terms, g, objective))`` (pure
    JAX); ``reverse_mode=True`` when it will only be differentiated in reverse mode,
    ``soft=False`` for the protocol's own hold decisions instead of the smooth ones (`_plan`).
    The objective (so the loss) is NaN when a patient failed (`failed_patients`), as
    `vcohort.simulate.simulate`'s status would say."""
    plan = _plan(problem, lay, model, reverse_mode, soft)
    grid = lay.schedule.step_grid(plan.dt, plan.n_steps)
    f = cohort_fn(plan)
    prepare = rule_inputs(problem, lay, plan)

    def loss(theta, lam, mu, args):
        amount, extra = prepare(to_amount(lay, theta))
        bolus, rate = grid.scatter(amount, jnp)
        out = f(*args, bolus, rate, *extra)
        terms = objective_terms(
            out, problem.days, assess_every=problem.assess_every, alpha=problem.alpha
        )
        obj = sum(w * terms[k] for k, w in problem.weights.items())
        obj = _unless_failed(obj, failed_patients(model, plan, args[0], out))
        g = constraint_values(problem, lay, amount, out)
        return obj + _al_penalty(g, lam, mu), (terms, g, obj)

    return loss, plan


def make_personal_loss(
    problem: Problem,
    lay: Layout,
    model: Model = CSC_IMMUNE,
    reverse_mode: bool = False,
    soft: bool = True,
):
    """Personalised mode: ``theta`` is (patients, drugs, slots); objectives that decompose over
    patients only (CVaR does not); constraints hold for every patient; ``reverse_mode`` and
    ``soft`` as in `make_loss`."""
    if "cvar" in problem.weights:
        raise ValueError("objective 'cvar' couples patients; not allowed in personalised mode")
    plan = _plan(problem, lay, model, reverse_mode, soft)
    grid = lay.schedule.step_grid(plan.dt, plan.n_steps)
    one = patient_fn(plan)
    prepare = rule_inputs(problem, lay, plan)

    def patient(th, p, pk, cov, y0):
        amount, extra = prepare(to_amount(lay, th))
        bolus, rate = grid.scatter(amount, jnp)
        return one(p, pk, cov, y0, bolus, rate, *extra)

    f = jax.vmap(patient)

    def loss(theta, lam, mu, args):
        out = f(theta, *args)
        terms = per_patient_terms(out, problem.days, assess_every=problem.assess_every)
        obj = sum(w * jnp.mean(terms[k]) for k, w in problem.weights.items())
        obj = _unless_failed(obj, failed_patients(model, plan, args[0], out))
        g = {}  # dose limits hold exactly (`to_amount`); exposure and ANC per patient
        for d in problem.drugs:
            if d.auc_budget is not None:
                g[f"auc:{d.drug}"] = (out["auc"][d.drug] - d.auc_budget) / d.auc_budget
        if problem.anc_grade4_max is not None:  # per patient: nadir above grade 4
            g["anc_grade4"] = (0.5 - jnp.min(out["daily"]["ANC"], axis=1)) / 0.5
        terms = {k: jnp.mean(v) for k, v in terms.items()}
        return obj + _al_penalty(g, lam, mu), (terms, g, obj)

    return loss, plan

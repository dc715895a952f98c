"""Protocol dose modification inside the simulation step (the rule: `vcohort.dose_rules`).

Every patient decides from its own state, so a rule is a few ``where``s per step in the
vmapped scan, with a small per-patient carry: counters for the outputs (`DOSING_FIELDS`) and,
per ruled drug, the decision of the running infusion (omission rules) or the patient's own
dosing clock (delay rules, which shift later cycles and so cannot use the shared dose grid).
Plans without rules carry nothing and compile to the same program as before rules existed.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

# what `vcohort.simulate.Trajectories.dosing` holds per drug with a rule
DOSING_FIELDS = (
    "due",  # doses that fell due (a delayed dose counts once)
    "withheld",  # of those, omitted (omission rule) or postponed (delay rule)
    "reduced",  # doses given below 100% of the planned dose
    "given_mg",
    "planned_mg",  # the regimen's doses over the horizon (RDI = given / planned)
    "stopped_day",  # day the drug was discontinued (NaN: never)
    "delay_days",  # total postponement of the doses given (delay rules; 0 otherwise)
)
# per dose (slot) of a ruled drug: the day it was given (NaN: not given) and the fraction of
# the planned dose given (0: not given)
RECORDS = ("dose_day", "dose_fraction")
# a delay rule's dosing clock per drug (in steps) and its running infusion
_CLOCK = ("next_due", "index", "waiting", "waited", "inf_left", "inf_rate")
# an omission rule's hold episodes (a run of withheld doses, ended by a dose given) and whether
# the last dose that fell due was withheld (the episode is still running)
_EPISODES = ("episodes", "holding")


def initial_state(rules: tuple, like, n_slots: int) -> tuple:
    """The rule part of the integrator's carry at day 0: (step count, per ruled drug a dict of
    `DOSING_FIELDS`, `RECORDS` (per dose slot), ``frac`` (the running infusion's dose fraction)
    and the delay clock (delay rules) or the hold episodes (omission rules, `_EPISODES`))."""
    zero = jnp.zeros_like(like)
    slots = jnp.zeros(jnp.shape(like) + (n_slots,), jnp.result_type(like))
    per = []
    for r in rules:
        if r is None:
            continue
        m = {f: zero for f in DOSING_FIELDS} | {"frac": jnp.ones_like(like)}
        m["stopped_day"] = jnp.full_like(like, jnp.nan)
        m["dose_fraction"] = slots
        if r.delay:  # the day of a delayed dose (an omitted one is given on its planned day)
            m["dose_day"] = jnp.full_like(slots, jnp.nan)
            m |= {f: zero for f in _CLOCK}
            m["next_due"] = jnp.full_like(like, -1.0)  # set from the first slot (`delay_step`)
        else:
            m |= {f: zero for f in _EPISODES}
        per.append(m)
    return (zero, tuple(per))


def apply(plan, carry: tuple, p: dict, bd, rd, starts, delays, to_mg):
    """One step of every drug's rule: returns the carry with its rule part advanced and the
    per-drug bolus (mg) and rate (mg/day) to give.

    ``starts`` (drugs, 2): boluses and infusions of the dose grid that begin in this step
    (`vcohort.dosing.Schedule.step_starts`); ``delays``: `vcohort.dose_rules.delay_inputs`;
    ``to_mg`` turns an
    amount by unit kind into the patient's mg.

    At a step where a dose of a ruled drug falls due, the rule's output is read from the state
    at the step's start (the pre-dose lab).  Past the threshold the dose is withheld; otherwise
    it is given at the current dose level (1 until the first hold, then the rule's levels,
    counted as ``reduced`` below 1).  A level is used up per hold *episode*: for an omission
    rule, a run of withheld doses that ends when a dose is given (a daily drug withheld for
    three days through a nadir steps down once, as protocols interrupt and resume one level
    lower); for a delay rule, each postponed dose.  The episode after the last level, or a delay
    past its limit, discontinues the drug (``stopped_day``).  A bolus is decided in its step; an
    infusion keeps the decision made at its start.  Decisions are step functions of the state:
    a derivative sees the doses given, not the decisions."""
    y, (k, per) = carry[0], carry[3]
    out = plan.model.daily_outputs(y, p)
    dtype = plan.dtype
    h = jnp.asarray(plan.dt, dtype)
    bds, rds, new = [], [], []
    ruled, d = iter(per), 0
    for q, rule in enumerate(plan.rules):
        if rule is None:
            bds.append(bd[q])
            rds.append(rd[q])
            continue
        m = next(ruled)
        x = out[rule.output]
        past = x < rule.threshold if rule.op == "<" else x > rule.threshold
        n = len(rule.levels)
        table = jnp.asarray((1.0, *rule.levels, 0.0 if n else 1.0), dtype)
        used = m["withheld"] if rule.delay else m["episodes"]  # levels used up
        level = table[jnp.minimum(used, n + 1).astype(jnp.int32)]
        level = jnp.where(jnp.isnan(m["stopped_day"]), level, 0.0)
        nominal = bd[q] + rd[q] * h  # the regimen's dose this step (planned)
        if rule.delay:
            m, b, r = _delay_step(rule, m, k, plan.dt, past, level, delays[d], to_mg, dtype)
            d += 1
        elif plan.hold_softness > 0:
            keep = _soft_keep(rule, x, plan.hold_softness)
            m, b, r = _soft_omit_step(rule, m, k, h, keep, bd[q], rd[q], starts[q], dtype)
        else:
            m, b, r = _omit_step(rule, m, k, h, past, level, bd[q], rd[q], starts[q])
        m["planned_mg"] = m["planned_mg"] + nominal
        m["given_mg"] = m["given_mg"] + b + r * h
        new.append(m)
        bds.append(b)
        rds.append(r)
    return (*carry[:3], (k + 1.0, tuple(new))), jnp.stack(bds), jnp.stack(rds)


def _omit_step(rule, m, k, h, past, level, bd, rd, starts):
    """Omission: the grid's doses, each given or not as decided at its start."""
    n = len(rule.levels)
    gate = jnp.where(past, 0.0, level)  # the dose fraction decided now
    n_start = ((starts[0] > 0) * 1.0 + (starts[1] > 0)) * (level > 0)  # doses falling due now
    held = n_start * past
    new_episode = held * (1.0 - m["holding"])  # withheld after a dose given (or the first)
    frac = jnp.where(starts[1] > 0, gate, m["frac"])  # a new infusion decides
    # record the dose starting now (its slot is the same for every patient; one dose of a
    # ruled drug per step, `Schedule.check_rules`)
    slot = jnp.maximum(starts[0], starts[1])
    j = jnp.maximum(slot - 1, 0).astype(jnp.int32)
    share = m["dose_fraction"]
    share = _put(share, j, jnp.where((slot > 0) & (gate > 0), gate, share[j]))
    stops = (new_episode > 0) & (n > 0) & (m["episodes"] >= n)  # an episode past the levels
    frac = jnp.where(stops, 0.0, frac)  # a discontinued drug's running infusion stops too
    m = m | {
        "frac": frac,
        "due": m["due"] + n_start,
        "withheld": m["withheld"] + held,
        "episodes": m["episodes"] + new_episode,
        "holding": jnp.where(n_start > 0, past.astype(m["holding"].dtype), m["holding"]),
        "reduced": m["reduced"] + n_start * (~past & (level < 1)),
        "stopped_day": jnp.where(stops, k * h, m["stopped_day"]),
        "dose_fraction": share,
    }
    return m, gate * bd, frac * rd


def _soft_keep(rule, x, softness: float):
    """The smooth decision: the fraction of the dose kept, a linear ramp in the output ``x``
    across a band of width ``softness`` times the threshold centred on it (0.5 at the
    threshold); outside the band it is the protocol's decision exactly, so labs far from the
    threshold add nothing, however many doses fall due (a logistic's tails added a fraction of
    a withheld dose at every dose: over two weeks of BID doses, whole reductions the protocol
    never makes).  assumption: a relaxation for the optimiser's gradient
    (`Plan.hold_softness`), so that it sees that a higher dose makes later holds more likely;
    evaluations use the protocol's own decision."""
    width = softness * abs(rule.threshold)
    z = (x - rule.threshold) / width
    return jnp.clip((z if rule.op == "<" else -z) + 0.5, 0.0, 1.0)


def _soft_omit_step(rule, m, k, h, keep, bd, rd, starts, dtype):
    """`_omit_step` with the smooth decision ``keep`` in [0, 1]: a dose falling due adds
    ``1 - keep`` withheld doses, and as many hold episodes as the withheld fraction rose since
    the last dose that fell due (``holding``: its ``1 - keep``), so labs lingering inside the
    band through a nadir make one episode, as the protocol's step does, not a fraction at every
    dose; the dose level is the rule's levels interpolated at the (fractional) episode count
    (1 before the first, then ``levels``, then 0: discontinued).  With ``keep`` exactly 0 or 1
    this is `_omit_step`'s arithmetic."""
    n = len(rule.levels)
    table = jnp.asarray((1.0, *rule.levels, 0.0 if n else 1.0), dtype)
    level = jnp.interp(m["episodes"], jnp.arange(n + 2, dtype=dtype), table)
    gate = level * keep
    n_start = ((starts[0] > 0) * 1.0 + (starts[1] > 0)) * (level > 0)
    withheld = m["withheld"] + n_start * (1.0 - keep)
    episodes = m["episodes"] + n_start * jnp.maximum((1.0 - keep) - m["holding"], 0.0)
    slot = jnp.maximum(starts[0], starts[1])
    j = jnp.maximum(slot - 1, 0).astype(jnp.int32)
    share = m["dose_fraction"]
    m = m | {
        "frac": jnp.where(starts[1] > 0, gate, m["frac"]),
        "due": m["due"] + n_start,
        "withheld": withheld,
        "episodes": episodes,
        "holding": jnp.where(n_start > 0, 1.0 - keep, m["holding"]),
        "reduced": m["reduced"] + n_start * keep * (level < 1),
        "stopped_day": jnp.where(
            jnp.isnan(m["stopped_day"]) & (n > 0) & (episodes >= n + 1), k * h, m["stopped_day"]
        ),
        "dose_fraction": _put(share, j, jnp.where(slot > 0, gate, share[j])),
    }
    return m, gate * bd, m["frac"] * rd


def _put(a, j, v):
    """``a`` with element ``j`` set to ``v`` (one element: an in-place update in the scan)."""
    return lax.dynamic_update_index_in_dim(a, v, j, 0)


def _delay_step(rule, m, k, dt: float, past, level, inp, to_mg, dtype):
    """Delay: the patient's own clock gives the regimen's doses; a dose whose lab fails waits
    for the next lab (every ``recheck_days``), and later doses follow the interval from the
    dose actually given."""
    n = len(rule.levels)
    start, interval, n_inf, n_doses, end = (inp[j, 3] for j in range(5))
    h = jnp.asarray(dt, dtype)
    recheck = round(rule.recheck_days / dt)  # whole steps (`delay_inputs` checks)
    # the longest wait in whole steps, worked out here: exact in float32 too
    longest = None if rule.max_delay_days is None else math.floor(rule.max_delay_days / dt + 1e-6)
    next_due = jnp.where(m["next_due"] < 0, start, m["next_due"])
    due = (k >= next_due) & (k < end) & (m["index"] < n_doses) & (level > 0)
    first = due & (m["waiting"] == 0)  # a dose falling due for the first time
    give, wait = due & ~past, due & past
    waited = jnp.where(wait, m["waited"] + recheck, m["waited"])  # steps since it fell due
    too_long = wait & (waited > longest) if longest is not None else jnp.zeros_like(wait)
    new_held = first & past
    stops = too_long | (new_held & (n > 0) & (m["withheld"] >= n))
    row = inp[jnp.minimum(m["index"], inp.shape[0] - 1).astype(jnp.int32), :3]
    slot_now = jnp.arange(m["dose_day"].shape[-1]) == m["index"]  # few slots: a one-hot
    amount = to_mg(row) * level
    bolus = jnp.where(give & (n_inf == 0), amount, 0.0)
    start_inf = give & (n_inf > 0)
    inf_left = jnp.where(start_inf, n_inf, m["inf_left"])
    inf_rate = jnp.where(start_inf, amount / (jnp.maximum(n_inf, 1.0) * h), m["inf_rate"])
    rate = jnp.where(inf_left > 0, inf_rate, 0.0)
    m = m | {
        "next_due": jnp.where(give, k + interval, jnp.where(wait, k + recheck, next_due)),
        "index": m["index"] + give,
        "waiting": jnp.where(give, 0.0, jnp.where(wait, 1.0, m["waiting"])),
        "waited": jnp.where(give, 0.0, waited),
        "inf_left": jnp.maximum(inf_left - 1.0, 0.0),
        "inf_rate": inf_rate,
        "due": m["due"] + first,
        "withheld": m["withheld"] + new_held,
        "reduced": m["reduced"] + (give & (level < 1)),
        "stopped_day": jnp.where(stops, k * h, m["stopped_day"]),
        "delay_days": m["delay_days"] + jnp.where(give, m["waited"] * h, 0.0),  # given doses
        "dose_day": jnp.where(give & slot_now, k * h, m["dose_day"]),
        "dose_fraction": jnp.where(give & slot_now, level, m["dose_fraction"]),
    }
    return m, bolus, rate

"""``vcohort optimize EXPERIMENT.toml``: the experiment file, validated field by field.

Example (see ``experiments/optimize_triple.toml``)::

    title = "Triple combination, 24 weeks"
    days = 168
    drug_files = []                # optional: your own drugs (`vcohort.drug_file`), e.g.
                                   #   ["drugs/nivolumab.toml"], relative to this file
    precision = "float64"          # float64 (default) | float32: see the README on gradients
    [objective]                    # weights of vcohort.objectives terms (losses)
    log_burden = 1.0
    [constraints]
    anc_grade4_max = 0.1           # optional: fraction of patients with ANC < 0.5e9/L
    [train]
    patients = 1000
    seed = 1
    [heldout]
    patients = 1000
    seed = 2
    [optimizer]
    name = "adam"                  # any optax optimiser taking learning_rate
    learning_rate = 0.1
    schedule = "constant"          # constant | cosine: decay to final_lr_fraction x learning_rate
    iterations = 60
    batch_size = 256               # optional; default: the whole training cohort
    rounding_candidates = 4        # clinical roundings tried on the training cohort (1: nearest)
    [baseline]
    method = "es"                  # es | none: (1+1)-ES with the same simulation budget
    [[drug]]                       # optional per drug: hold_if = "ANC < 1.5",
    name = "wnt974"                #   reduce_to = ["75%", "50%"] (the protocol's holds)
    every = "1 d"
    max_dose = "30 mg"
    round_to = "5 mg"
    budget = "1680 mg"

Every key the file accepts (any other is refused).  Durations are ``"<number> <unit>"`` with
unit d, h, min, w (``"12 h"`` = 0.5 d; a bare number means days, except for ``over``); amounts
are flat mg (``"30 mg"``, or a bare number of mg; per-kg and per-m² amounts are refused).

Top level
    ``title``: a string for the report (default "schedule optimisation").
    ``days``: the horizon in days, a whole number 1..36500 (default 168).
    ``precision``: ``"float64"`` (default) or ``"float32"``.
    ``dt``: the fixed RK4 step in days, in (0, 1] with 1/dt a whole number (default 0.1);
        refused when the typical patient's fastest acting rate x dt would make the step
        unstable (`vcohort.simulate.check_typical_rates`, e.g. 0.2 with k_TGF 14.3/day).
    ``assess_every``: days between RECIST tumour assessments, the first on that day, a whole
        number >= 1 (default 42); the ``pfs`` objective needs assess_every < days and the
        ``response`` objective assess_every <= days (an assessment within the horizon).
    ``cvar_alpha``: the tail fraction of the ``cvar`` objective (the mean of the worst
        ceil(alpha x patients) log diameter ratios), in (0, 1] (default 0.2).
    ``drug_files``: a list of drug files (`vcohort.drug_file`), relative to this file.
``[objective]``: name = weight (>= 0, one at least > 0) of the `vcohort.objectives` terms
    (log_burden, response, pfs, cvar, csc; all losses); default ``log_burden = 1``.
``[constraints]``
    ``anc_grade4_max``: the largest allowed fraction of patients whose ANC nadir falls below
        0.5e9/L (CTCAE grade 4), in [0, 1) (default: no limit); in personalised mode every
        patient's nadir must stay at or above 0.5e9/L.  Augmented Lagrangian.
``[train]`` and ``[heldout]``: the training and the held-out cohort
    ``patients``: 1..1e8 (default 1000).
    ``seed``: the cohort's seed, 0..2^32-1 (default 0 in a table without it; a missing
        ``[train]`` table is 1000 patients with seed 1, a missing ``[heldout]`` seed 2).
    ``first_id``: the first patient id (default 0); the ids are first_id .. first_id +
        patients - 1 (<= 2^32-1).  The held-out patients must not be training patients (same
        seed with overlapping ids is refused).
``[optimizer]``
    ``name``: an optax first-order optimiser taking ``learning_rate`` (default "adam").
    ``learning_rate``: > 0 (default 0.1), in units of the decision variables (logits of the
        dose as a fraction of ``max_dose``).
    ``schedule``: ``"constant"`` (default) or ``"cosine"`` (a half cosine from learning_rate
        to final_lr_fraction x learning_rate at the last iteration).
    ``final_lr_fraction``: in (0, 1] (default 0.1); only with ``schedule = "cosine"``.
    ``iterations``: the most value-and-gradient evaluations, >= 1 (default 60).
    ``batch_size``: training patients per iteration, 1..[train] patients (default: all:
        deterministic full-batch gradients).
    ``patience``: stop when no better schedule (feasible and lower by 1e-4, or less
        infeasible) was found for this many iterations, >= 1 (default 20).
    ``al_every``: iterations between augmented-Lagrangian multiplier updates, >= 1 (default
        5); with a simulated limit (``auc_budget``, ``anc_grade4_max``) it must be below
        ``iterations`` (else no update would ever act).
    ``mu``: the initial penalty parameter, > 0 (default 10); doubled, to at most 1e4, when a
        violation did not halve between updates.
    ``seed``: the seed of the mini-batch draws and of the ES baseline, >= 0 (default 0).
    ``personalised_patients``: also optimise one schedule per patient for the first N
        training patients and compare it with the population schedule (``personalised.csv``),
        0..[train] patients (default 0: off); not with a ``cvar`` objective.
    ``hold_softness``: in [0, 1] (default 0.1): in training, a hold rule decides along a linear
        ramp this wide relative to its threshold (0: the protocol's step); only with a
        ``hold_if`` rule.  Evaluation always uses the protocol's step.
    ``rounding_candidates``: clinical roundings of the optimum simulated on the training
        cohort, the best feasible one given, >= 1 (default 4; 1: the nearest rounding).
``[baseline]``
    ``method``: ``"es"`` (default: a (1+1)-ES with the same number of cohort simulations) or
        ``"none"``.
``[[drug]]`` (one table per drug optimised, each drug once)
    ``name``: a catalogue key (or a drug of ``drug_files``); required.
    ``every``: a duration, the spacing of the dose slots (``"1 d"`` daily, ``"12 h"`` BID,
        ``"7 d"`` weekly); required.
    ``max_dose``: mg per dose, <= the catalogue's label/trial maximum (default that maximum).
    ``initial``: mg, >= 0, the starting dose in every slot (default: the catalogue's standard
        regimen, each dose on its nearest slot).
    ``start``: a duration >= 0, the first slot, before the horizon (default 0 d).
    ``over``: the infusion's length, a duration with its unit (``"30 min"``, ``"1 h"``; a bare
        number is refused), at most ``every``; IV drugs only (default: a bolus or oral dose).
    ``max_daily``: mg per calendar day, at least one ``round_to`` (default: none).
    ``budget``: mg per patient over the horizon, at least one ``round_to`` (default: none).
        ``max_dose``, ``max_daily`` and ``budget`` hold exactly (doses scaled onto them).
    ``auc_budget``: a number > 0 in mg·day/L: the cohort-mean plasma AUC over the horizon (in
        personalised mode every patient's) (default: none).  Augmented Lagrangian.
    ``round_to``: mg > 0, the tablet strength or vial size the final doses are rounded to, at
        most ``max_dose`` (default 1 mg).
    ``intervals``: a list of durations, each a multiple of ``every`` (``["7 d", "21 d"]``):
        rounding makes the drug a regular regimen with one of these intervals (default: []:
        each slot rounded on its own).
    ``hold``: a duration, a multiple of ``every``: one dose level per block of this length
        (``"7 d"``: weekly levels of a daily drug) (default: one level per slot).
    ``hold_if``: the protocol's omission rule, e.g. ``"ANC < 1.5"`` (a daily model output
        and threshold); ``reduce_to``: its dose levels after each hold, e.g. ``["75%", "50%"]``.
        ``delay``, ``recheck_every`` and ``max_delay`` (delay rules) are refused: a delayed
        dose leaves the optimiser's slot grid.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

from vcohort.config import (
    MAX_DAYS,
    MAX_ID,
    MAX_PATIENTS,
    MAX_SEED,
    Checker,
    ConfigError,
    read_toml,
)
from vcohort.dosing import parse_amount, parse_duration, parse_infusion
from vcohort.drug_file import drug_files_field
from vcohort.objectives import OBJECTIVES
from vcohort.optimize.problem import DrugSlots, Problem, validate_drug

TOP = {
    "title", "days", "precision", "dt", "assess_every", "cvar_alpha", "objective",
    "constraints", "train", "heldout", "optimizer", "baseline", "drug", "drug_files",
}  # fmt: skip
DRUG_KEYS = {
    "name", "every", "max_dose", "initial", "start", "over", "max_daily", "budget",
    "auc_budget", "round_to", "intervals", "hold", "hold_if", "reduce_to",
    "delay", "recheck_every", "max_delay",  # read, to be refused with the reason
}  # fmt: skip
OPT_KEYS = {
    "name", "learning_rate", "iterations", "batch_size", "patience", "al_every", "mu", "seed",
    "personalised_patients", "hold_softness", "rounding_candidates", "schedule",
    "final_lr_fraction",
}  # fmt: skip
SCHEDULES = ("constant", "cosine")


@dataclass
class Experiment:
    title: str
    problem: Problem
    train: dict
    heldout: dict
    optimizer: dict = field(default_factory=dict)
    baseline: str = "es"
    raw: dict = field(default_factory=dict)


def _parsed(ck: Checker, path: str, fn, value, *args):
    """Run a unit parser (`parse_amount`, `parse_duration`), recording its error."""
    try:
        return fn(value, path, *args)
    except ValueError as e:
        ck.error(path, str(e))
        return None


def _mg(ck: Checker, t: dict, key: str, path: str):
    if key not in t:
        return None
    got = _parsed(ck, f"{path}.{key}", parse_amount, t[key])
    if got is None:
        return None
    val, unit = got
    if unit != "mg":
        ck.error(
            f"{path}.{key}", f"{t[key]!r}: optimised doses are flat amounts; use mg, not {unit}"
        )
        return None
    return val


def _round_to(ck: Checker, t: dict, path: str) -> float:
    """``round_to``: the clinical rounding unit (mg, > 0; default 1 mg)."""
    r = _mg(ck, t, "round_to", path)
    if r is not None and r <= 0:
        ck.error(f"{path}.round_to", f"{t['round_to']!r} must be more than 0 mg")
        return 1.0
    return 1.0 if r is None else r


def _days(ck: Checker, t: dict, key: str, path: str, default=None):
    if key not in t:
        return default
    return _parsed(ck, f"{path}.{key}", parse_duration, t[key])


def _drug(ck: Checker, i: int, raw) -> DrugSlots | None:
    path = f"drug[{i}]"
    d = ck.table(raw, path, DRUG_KEYS, {"name", "every"})
    if "name" not in d or "every" not in d:
        return None
    intervals = d.get("intervals", [])
    if not isinstance(intervals, list):
        ck.error(f"{path}.intervals", f"{intervals!r} must be a list like ['7 d', '21 d']")
        intervals = []
    n_err = len(ck.errors)
    rule = None
    for key in ("reduce_to", "delay", "recheck_every", "max_delay"):
        if key in d and "hold_if" not in d:
            ck.error(f"{path}.{key}", "needs a hold_if rule, e.g. hold_if = 'ANC < 1.5'")
    if "hold_if" in d:  # the trial tables' form (`vcohort.experiment`), omission only
        from vcohort.experiment import check_rule_output, hold_rule

        rule = hold_rule(ck, path, d)
        check_rule_output(ck, rule, f"{path}.hold_if")
    slots = dict(
        drug=ck.get(d, "name", path, "str"),
        every_days=_days(ck, d, "every", path),
        max_dose_mg=_mg(ck, d, "max_dose", path),
        initial_mg=_mg(ck, d, "initial", path),
        start_day=_days(ck, d, "start", path, 0.0),
        infusion_days=_parsed(ck, f"{path}.over", parse_infusion, d["over"])
        if "over" in d
        else 0.0,
        max_daily_mg=_mg(ck, d, "max_daily", path),
        budget_mg=_mg(ck, d, "budget", path),
        auc_budget=ck.get(d, "auc_budget", path, "float", None, gt=0),
        round_to_mg=_round_to(ck, d, path),
        hold_days=_days(ck, d, "hold", path),
        rule=rule,
        intervals_days=tuple(
            _parsed(ck, f"{path}.intervals", parse_duration, x) or 0.0 for x in intervals
        ),
    )
    if len(ck.errors) > n_err:
        return None
    try:
        out = DrugSlots(**slots)
        validate_drug(out, 10**9)  # horizon-dependent checks run with the problem
        return out
    except ValueError as e:
        ck.error(_drug_path(i, e), _file_names(str(e)))
        return None


def _cohort_spec(ck: Checker, name: str, raw: dict) -> dict:
    t = ck.table(raw, name, {"patients", "seed", "first_id"})
    spec = {
        "patients": ck.get(t, "patients", name, "int", 1000, ge=1, le=MAX_PATIENTS),
        "seed": ck.get(t, "seed", name, "int", 0, ge=0, le=MAX_SEED),
        "first_id": ck.get(t, "first_id", name, "int", 0, ge=0),
    }
    if spec["first_id"] + spec["patients"] - 1 > MAX_ID:
        ck.error(f"{name}.first_id", f"{spec['first_id']}: patient ids must stay <= {MAX_ID}")
    return spec


# `DrugSlots` field -> the [[drug]] key it is read from (values in days and mg)
_FILE_NAMES = {"every_days": "every", "max_dose_mg": "max_dose", "initial_mg": "initial",
               "start_day": "start", "infusion_days": "over", "max_daily_mg": "max_daily",
               "budget_mg": "budget", "round_to_mg": "round_to", "hold_days": "hold"}  # fmt: skip


# `DrugSlots` field -> the [[drug]] key an error about it is recorded on (`_drug_path`)
_FIELD_KEYS = _FILE_NAMES | {"auc_budget": "auc_budget", "intervals_days": "intervals",
                             "rule": "hold_if", "drug": "name"}  # fmt: skip


def _drug_path(i: int, e: Exception) -> str:
    """``drug[i].<key>`` for a `validate_drug` error about one field (`DrugFieldError`), else
    ``drug[i]``."""
    key = _FIELD_KEYS.get(getattr(e, "field", None))
    return f"drug[{i}].{key}" if key else f"drug[{i}]"


def _file_names(message: str) -> str:
    """A `validate_drug` message with the file's keys (``start`` for ``start_day``, ...)."""
    return re.sub(
        r"\b(" + "|".join(_FILE_NAMES) + r")\b", lambda m: _FILE_NAMES[m.group(1)], message
    )


def _overlap(a: dict, b: dict) -> bool:
    """Two cohort specs share patients: same seed and intersecting id ranges."""
    if None in (*a.values(), *b.values()):  # a bad field, reported on its own
        return False
    return a["seed"] == b["seed"] and (
        a["first_id"] < b["first_id"] + b["patients"]
        and b["first_id"] < a["first_id"] + a["patients"]
    )


def parse_experiment(
    raw: dict, source: str = "<optimisation experiment>", base_dir: Path | None = None
) -> Experiment:
    """Validate a parsed TOML document into an `Experiment`; every bad field is reported at
    once (`vcohort.config.ConfigError`) before any compute.  ``drug_files`` (the user's own
    drugs, `vcohort.drug_file`) are read relative to ``base_dir`` and registered first."""
    ck = Checker(source)
    raw = ck.table(raw, "", TOP, {"drug"})
    drug_files_field(ck, raw.get("drug_files"), base_dir)  # before the [[drug]] tables
    drugs_raw = raw.get("drug", [])
    if not isinstance(drugs_raw, list) or not drugs_raw:
        ck.error("drug", "at least one [[drug]] table is required")
        drugs_raw = []
    drugs = [_drug(ck, i, d) for i, d in enumerate(drugs_raw)]
    weights = raw.get("objective", {"log_burden": 1.0})
    if not isinstance(weights, dict) or not weights:
        ck.error(
            "objective", f"expected a table of weights, e.g. log_burden = 1.0; got {weights!r}"
        )
        weights = {"log_burden": 1.0}
    for k in weights:
        if k not in OBJECTIVES:
            ck.error(
                f"objective.{k}", f"unknown objective; allowed: {', '.join(sorted(OBJECTIVES))}"
            )
        ck.get(weights, k, "objective", "float", ge=0)  # losses: a negative weight rewards one
    vals = [v for v in weights.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    if vals and len(vals) == len(weights) and not any(v > 0 for v in vals):
        ck.error("objective", f"{weights!r}: at least one weight must be > 0")
    cons = ck.table(raw.get("constraints", {}), "constraints", {"anc_grade4_max"})
    anc = ck.get(cons, "anc_grade4_max", "constraints", "float", None, ge=0, lt=1)
    top = dict(
        days=ck.get(raw, "days", "", "int", 168, ge=1, le=MAX_DAYS),
        alpha=ck.get(raw, "cvar_alpha", "", "float", 0.2, gt=0, le=1),
        assess_every=ck.get(raw, "assess_every", "", "int", 42, ge=1),
        dt=ck.get(raw, "dt", "", "float", 0.1, gt=0, le=1),
        precision=ck.get(raw, "precision", "", "str", "float64", choices=("float32", "float64")),
    )
    if isinstance(top["dt"], float) and 0 < top["dt"] <= 1:
        from vcohort.simulate import check_dt

        try:
            check_dt(top["dt"])
        except ValueError as e:
            ck.error("dt", str(e))
    names = [d.drug for d in drugs if d is not None]
    if isinstance(top["dt"], float) and not any(e.startswith("dt:") for e in ck.errors):
        # the typical patient's RK4 step stays stable with these drugs (as `vcohort.experiment`
        # checks a trial's): a coarse dt gave finite but wrong endpoints
        from vcohort.model import CSC_IMMUNE
        from vcohort.simulate import check_typical_dt

        try:
            check_typical_dt(CSC_IMMUNE, top["dt"], names, flag="dt")
        except ValueError as e:
            ck.error("dt", str(e).replace("use dt ", "use dt = "))
    o = ck.table(raw.get("optimizer", {}), "optimizer", OPT_KEYS)
    opt = {
        "name": ck.get(o, "name", "optimizer", "str", "adam"),
        "learning_rate": ck.get(o, "learning_rate", "optimizer", "float", 0.1, gt=0),
        "iterations": ck.get(o, "iterations", "optimizer", "int", 60, ge=1),
        "batch_size": ck.get(o, "batch_size", "optimizer", "int", None, ge=1),
        "patience": ck.get(o, "patience", "optimizer", "int", 20, ge=1),
        "al_every": ck.get(o, "al_every", "optimizer", "int", 5, ge=1),
        "mu": ck.get(o, "mu", "optimizer", "float", 10.0, gt=0),
        "seed": ck.get(o, "seed", "optimizer", "int", 0, ge=0),
        "personalised_patients": ck.get(o, "personalised_patients", "optimizer", "int", 0, ge=0),
        "hold_softness": ck.get(o, "hold_softness", "optimizer", "float", 0.1, ge=0, le=1),
        "rounding_candidates": ck.get(o, "rounding_candidates", "optimizer", "int", 4, ge=1),
        "schedule": ck.get(o, "schedule", "optimizer", "str", "constant", choices=SCHEDULES),
        "final_lr_fraction": ck.get(o, "final_lr_fraction", "optimizer", "float", 0.1, gt=0, le=1),
    }
    if "final_lr_fraction" in o and opt["schedule"] == "constant":
        ck.error(
            "optimizer.final_lr_fraction",
            f"{o['final_lr_fraction']!r} is set, but schedule = 'constant' does not decay; "
            "set schedule = 'cosine' or remove it",
        )
    try:
        make_optax(opt["name"], opt["learning_rate"])
    except ValueError as e:
        ck.error("optimizer.name", str(e))
    b = ck.table(raw.get("baseline", {}), "baseline", {"method"})
    method = ck.get(b, "method", "baseline", "str", "es", choices=("es", "none"))
    n_err = len(ck.errors)
    train = _cohort_spec(ck, "train", raw.get("train", {"patients": 1000, "seed": 1}))
    held = _cohort_spec(ck, "heldout", raw.get("heldout", {"patients": 1000, "seed": 2}))
    if len(ck.errors) == n_err and _overlap(train, held):  # (a bad field reads as its default)
        ck.error(
            "heldout",
            f"shares patients with [train] (seed {train['seed']}, ids {train['first_id']}.."
            f"{train['first_id'] + train['patients'] - 1}): give another seed, or a first_id "
            f">= {train['first_id'] + train['patients']}, so that the held-out patients are new",
        )
    # the augmented Lagrangian's multipliers act from the iteration after an update (every
    # al_every iterations): with al_every >= iterations none is ever used, and the simulated
    # limits get the plain quadratic penalty only
    simulated_limits = "anc_grade4_max" in cons or any(
        isinstance(t, dict) and "auc_budget" in t for t in drugs_raw
    )
    al_every, iterations = opt["al_every"], opt["iterations"]
    if simulated_limits and isinstance(al_every, int) and isinstance(iterations, int):
        if al_every >= iterations:
            allowed = (
                f"al_every in 1..{iterations - 1}, or more iterations"
                if iterations > 1
                else "iterations >= 2 and al_every < iterations"
            )
            ck.error(
                "optimizer.al_every",
                f"{al_every}{'' if 'al_every' in o else ' (the default)'} >= iterations = "
                f"{iterations}: the multipliers of the simulated limits (auc_budget, "
                f"anc_grade4_max) would never be updated before the run ends; allowed: {allowed}",
            )
    if "hold_softness" in o and not any(isinstance(t, dict) and "hold_if" in t for t in drugs_raw):
        ck.error(
            "optimizer.hold_softness",
            f"{o['hold_softness']!r} is set, but no [[drug]] has a hold_if rule for it to act on",
        )
    if not isinstance(raw.get("title", ""), str):
        ck.error("title", f"{raw['title']!r}: expected a string")
    n_train = train.get("patients") if isinstance(train, dict) else None
    for k in ("batch_size", "personalised_patients"):  # were clipped to the cohort silently
        v = opt.get(k)
        if isinstance(n_train, int) and isinstance(v, int) and v > n_train:
            ck.error(f"optimizer.{k}", f"{v} exceeds [train] patients = {n_train}")
    if opt.get("personalised_patients") and isinstance(weights, dict) and "cvar" in weights:
        ck.error(
            "optimizer.personalised_patients",
            f"{opt['personalised_patients']}: personalised schedules optimise each patient on "
            "their own, and the objective's 'cvar' couples patients; remove one of them",
        )
    ck.raise_if_any()
    problem = Problem(
        drugs=tuple(drugs),
        weights={str(k): float(v) for k, v in weights.items()},
        anc_grade4_max=anc,
        hold_softness=opt.pop("hold_softness"),
        **top,
    )
    errors = []  # checks that need the horizon: every drug's, named as in the file
    for i, d in enumerate(problem.drugs):
        try:
            validate_drug(d, problem.days)
        except ValueError as e:
            errors.append(f"{_drug_path(i, e)}: {_file_names(str(e))}")
    if not errors:
        try:
            problem.validate()
        except ValueError as e:
            errors.append(_file_names(str(e)))
    if errors:
        raise ConfigError(source, errors)
    return Experiment(
        title=str(raw.get("title", "schedule optimisation")),
        problem=problem,
        train=train,
        heldout=held,
        optimizer=opt,
        baseline=method,
        raw=raw,
    )


def load_experiment(path: str | Path) -> Experiment:
    return parse_experiment(read_toml(path), source=str(path), base_dir=Path(path).parent)


def make_optax(
    name: str,
    learning_rate: float,
    schedule: str = "constant",
    iterations: int | None = None,
    final_lr_fraction: float = 0.1,
):
    """An optax optimiser by name (``adam``, ``adamw``, ``sgd``, ``lion``, ...).

    ``schedule="cosine"``: the learning rate follows a half cosine from ``learning_rate`` at
    the first iteration to ``final_lr_fraction`` of it at the last (``iterations - 1``)
    (`optax.cosine_decay_schedule`; Loshchilov & Hutter 2017, SGDR, without restarts), so
    the last iterations take small steps around the schedule they found instead of
    Adam's constant-size steps across it; ``"constant"``: ``learning_rate`` throughout."""
    import optax

    fn = getattr(optax, name, None)
    if fn is None or not callable(fn) or name.startswith("_"):
        raise ValueError(f"[optimizer] name={name!r} is not an optax optimiser (e.g. adam, sgd)")
    if schedule not in SCHEDULES:
        raise ValueError(f"[optimizer] schedule={schedule!r}; allowed: {', '.join(SCHEDULES)}")
    lr = learning_rate
    if schedule == "cosine":
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"schedule='cosine' needs iterations >= 1; got {iterations!r}")
        if not 0 < final_lr_fraction <= 1:
            raise ValueError(
                f"[optimizer] final_lr_fraction={final_lr_fraction!r} must be in (0, 1]"
            )
        # the rate of iteration k (0-based) is the schedule at step k, so the decay ends at
        # the last iteration, iterations - 1
        steps = max(iterations - 1, 1)
        lr = optax.cosine_decay_schedule(learning_rate, steps, alpha=final_lr_fraction)
    try:
        fn(learning_rate=learning_rate)  # takes a learning rate at all
        # the rate in the optimiser state, so that the history records the one each step used;
        # the other hyperparameters stay Python constants (as arrays, float32 updates would
        # change in the last digits)
        others = tuple(k for k in inspect.signature(fn).parameters if k != "learning_rate")
        opt = optax.inject_hyperparams(fn, static_args=others)(learning_rate=lr)
    except TypeError as e:
        raise ValueError(f"[optimizer] name={name!r} does not take learning_rate: {e}") from e
    import warnings

    import numpy as np

    try:  # one update on two numbers: the loop passes the gradient and parameters only
        z = np.zeros(2, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the probe's own dtype and key notes)
            opt.update(z, opt.init(z), z)
    except TypeError as e:
        raise ValueError(
            f"[optimizer] name={name!r}: its update needs more than the gradient and the "
            f"parameters ({e}); use a first-order optimiser such as adam, adamw, sgd or lion"
        ) from None
    return opt


def optax_of(opt: dict):
    """The optax optimiser of a parsed ``[optimizer]`` table (`parse_experiment`)."""
    return make_optax(
        opt["name"],
        opt["learning_rate"],
        opt["schedule"],
        opt["iterations"],
        opt["final_lr_fraction"],
    )


def optax_key(opt: dict) -> dict:
    """What identifies `optax_of`'s optimiser (`vcohort.optimize.loop.optimize`'s
    ``optimizer_key``): a cosine schedule's length is part of it, a constant rate's is not (a
    run may be resumed with more iterations)."""
    key = {k: opt[k] for k in ("name", "learning_rate", "schedule")}
    if opt["schedule"] == "cosine":
        key.update(final_lr_fraction=opt["final_lr_fraction"], iterations=opt["iterations"])
    return key

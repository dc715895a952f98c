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
        ck.error(path, _file_names(str(e)))
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
            errors.append(f"drug[{i}]: {_file_names(str(e))}")
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

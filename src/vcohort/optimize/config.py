"""``vcohort optimize EXPERIMENT.toml``: the experiment file, validated field by field.

Example (see ``experiments/optimize_triple.toml``)::

    title = "Triple combination, 24 weeks"
    days = 168
    precision = "float32"          # float32 | float64
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
    iterations = 60
    batch_size = 256
    [baseline]
    method = "es"                  # es | none: (1+1)-ES with the same simulation budget
    [[drug]]
    name = "wnt974"
    every = "1 d"
    max_dose = "30 mg"
    round_to = "5 mg"
    budget = "1680 mg"
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from vcohort.dosing import parse_amount, parse_duration
from vcohort.optimize.problem import DrugSlots, Problem

TOP = {
    "title",
    "days",
    "precision",
    "dt",
    "assess_every",
    "cvar_alpha",
    "objective",
    "constraints",
    "train",
    "heldout",
    "optimizer",
    "baseline",
    "drug",
}
DRUG_KEYS = {
    "name",
    "every",
    "max_dose",
    "initial",
    "start",
    "over",
    "max_daily",
    "budget",
    "auc_budget",
    "round_to",
    "intervals",
}
OPT_KEYS = {
    "name",
    "learning_rate",
    "iterations",
    "batch_size",
    "patience",
    "al_every",
    "mu",
    "seed",
    "personalised_patients",
}


@dataclass
class Experiment:
    title: str
    problem: Problem
    train: dict
    heldout: dict
    optimizer: dict = field(default_factory=dict)
    baseline: str = "es"
    raw: dict = field(default_factory=dict)


def _check_keys(section: str, got: dict, allowed: set) -> None:
    bad = sorted(set(got) - allowed)
    if bad:
        raise ValueError(f"[{section}]: unknown key(s) {bad}; allowed: {sorted(allowed)}")


def _int(section: str, key: str, v, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"[{section}] {key}={v!r} must be an integer >= {lo}")
    return v


def _num(section: str, key: str, v, lo: float = 0.0, strict: bool = True) -> float:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (v <= lo if strict else v < lo):
        raise ValueError(f"[{section}] {key}={v!r} must be a number {'>' if strict else '>='} {lo}")
    return float(v)


def _mg(section: str, key: str, v) -> float:
    val, unit = parse_amount(v, f"[{section}] {key}")
    if unit != "mg":
        raise ValueError(
            f"[{section}] {key}={v!r}: optimised doses are flat amounts; use mg (got {unit})"
        )
    return val


def _drug(i: int, d: dict) -> DrugSlots:
    sec = f"drug #{i + 1}"
    if not isinstance(d, dict):
        raise ValueError(f"[[drug]] #{i + 1} must be a table")
    _check_keys(sec, d, DRUG_KEYS)
    for req in ("name", "every"):
        if req not in d:
            raise ValueError(f"[{sec}]: missing required key {req!r}")
    opt = lambda k, f: f(sec, k, d[k]) if k in d else None  # noqa: E731
    intervals = d.get("intervals", [])
    if not isinstance(intervals, list):
        raise ValueError(f"[{sec}] intervals={intervals!r} must be a list like ['7 d', '21 d']")
    auc = d.get("auc_budget")
    return DrugSlots(
        drug=str(d["name"]),
        every_days=parse_duration(d["every"], f"[{sec}] every"),
        max_dose_mg=opt("max_dose", _mg),
        initial_mg=opt("initial", _mg),
        start_day=parse_duration(d["start"], f"[{sec}] start") if "start" in d else 0.0,
        infusion_days=parse_duration(d["over"], f"[{sec}] over") if "over" in d else 0.0,
        max_daily_mg=opt("max_daily", _mg),
        budget_mg=opt("budget", _mg),
        auc_budget=None if auc is None else _num(sec, "auc_budget", auc),
        round_to_mg=_mg(sec, "round_to", d["round_to"]) if "round_to" in d else 1.0,
        intervals_days=tuple(parse_duration(x, f"[{sec}] intervals") for x in intervals),
    )


def _cohort_spec(name: str, raw) -> dict:
    if not isinstance(raw, dict):
        raise ValueError(f"[{name}] must be a table with patients and seed")
    _check_keys(name, raw, {"patients", "seed", "first_id"})
    return {
        "patients": _int(name, "patients", raw.get("patients", 1000)),
        "seed": _int(name, "seed", raw.get("seed", 0), lo=0),
        "first_id": _int(name, "first_id", raw.get("first_id", 0), lo=0),
    }


def parse_experiment(raw: dict) -> Experiment:
    """Validate a parsed TOML document into an `Experiment` (every bad field a clear error)."""
    _check_keys("top level", raw, TOP)
    drugs = raw.get("drug")
    if not drugs or not isinstance(drugs, list):
        raise ValueError("at least one [[drug]] table is required")
    weights = raw.get("objective", {"log_burden": 1.0})
    if not isinstance(weights, dict):
        raise ValueError("[objective] must be a table of weights, e.g. log_burden = 1.0")
    cons = raw.get("constraints", {})
    _check_keys("constraints", cons, {"anc_grade4_max"})
    anc = cons.get("anc_grade4_max")
    precision = raw.get("precision", "float32")
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision={precision!r}; allowed: float32, float64")
    problem = Problem(
        drugs=tuple(_drug(i, d) for i, d in enumerate(drugs)),
        days=_int("top level", "days", raw.get("days", 168)),
        weights={str(k): v for k, v in weights.items()},
        alpha=_num("top level", "cvar_alpha", raw.get("cvar_alpha", 0.2)),
        assess_every=_int("top level", "assess_every", raw.get("assess_every", 42)),
        anc_grade4_max=None
        if anc is None
        else _num("constraints", "anc_grade4_max", anc, 0, False),
        dt=_num("top level", "dt", raw.get("dt", 0.1)),
        precision=precision,
    )
    problem.validate()
    o = raw.get("optimizer", {})
    _check_keys("optimizer", o, OPT_KEYS)
    opt = {
        "name": str(o.get("name", "adam")),
        "learning_rate": _num("optimizer", "learning_rate", o.get("learning_rate", 0.1)),
        "iterations": _int("optimizer", "iterations", o.get("iterations", 60)),
        "batch_size": _int("optimizer", "batch_size", o.get("batch_size", 256)),
        "patience": _int("optimizer", "patience", o.get("patience", 20)),
        "al_every": _int("optimizer", "al_every", o.get("al_every", 5)),
        "mu": _num("optimizer", "mu", o.get("mu", 10.0)),
        "seed": _int("optimizer", "seed", o.get("seed", 0), lo=0),
        "personalised_patients": _int(
            "optimizer", "personalised_patients", o.get("personalised_patients", 0), lo=0
        ),
    }
    make_optax(opt["name"], opt["learning_rate"])  # fails early on unknown names
    b = raw.get("baseline", {})
    _check_keys("baseline", b, {"method"})
    method = b.get("method", "es")
    if method not in ("es", "none"):
        raise ValueError(f"[baseline] method={method!r}; allowed: es, none")
    train = _cohort_spec("train", raw.get("train", {"patients": 1000, "seed": 1}))
    held = _cohort_spec("heldout", raw.get("heldout", {"patients": 1000, "seed": 2}))
    if held["seed"] == train["seed"] and held["first_id"] == train["first_id"]:
        raise ValueError(
            "[heldout] must differ from [train] (seed or first_id): a held-out cohort drawn "
            "with the same seed and ids would be the training patients"
        )
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
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"experiment file {str(p)!r} does not exist")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML: {e}") from e
    return parse_experiment(raw)


def make_optax(name: str, learning_rate: float):
    """An optax optimiser by name (``adam``, ``adamw``, ``sgd``, ``lion``, ...)."""
    import optax

    fn = getattr(optax, name, None)
    if fn is None or not callable(fn) or name.startswith("_"):
        raise ValueError(f"[optimizer] name={name!r} is not an optax optimiser (e.g. adam, sgd)")
    try:
        return fn(learning_rate=learning_rate)
    except TypeError as e:
        raise ValueError(f"[optimizer] name={name!r} does not take learning_rate: {e}") from e

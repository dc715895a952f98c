"""Experiment files (TOML) → a validated `Experiment`, every bad field reported before compute.

An experiment names a population, the numerics, the RECIST assessment schedule, a reference arm
and the arms.  Example (see ``experiments/*.toml`` for complete files)::

    title = "Pembrolizumab vs chemotherapy"
    reference_arm = "chemo"

    [population]
    preset = "default"          # or file = "my_population.toml" (relative to this file)
    size = 500
    seed = 2026

    [population.parameters.f_S0]    # optional: a parameter's value/cv/bounds over the preset's
    cv = 0.8
    upper = 0.3
    source = "assumption: CSC content varies between patients"

    [simulation]
    horizon_days = 365

    [assessment]
    first_day = 84
    every_days = 42
    confirm_days = 28

    [[arms]]
    name = "pembro"
    regimens = ["pembrolizumab 2 mg/kg every 21 d over 30 min"]

    [[arms]]
    name = "chemo"
    regimens = [{ drug = "doxorubicin", dose = "60 mg/m2", every = "21 d", count = 6 }]

    [[arms]]
    name = "chemo_then_pembro"
    sequencing = "induction-maintenance"
    induction = ["doxorubicin 60 mg/m2 every 21 d x 4"]
    induction_days = 84
    maintenance = ["pembrolizumab 200 mg every 21 d"]

A ``concurrent`` arm (the default) gives all its ``regimens`` together, each from its own
``start``; an ``induction-maintenance`` arm gives ``induction`` until ``induction_days`` and then
``maintenance``, whose ``start``/``until`` count from the end of induction.  An empty
``regimens`` list is the untreated arm.

An optional ``[calibration]`` table selects the trial's ``size`` patients from a larger plausible
pool so that their response under a reference arm matches clinical targets
(`vcohort.calibrate`, Allen, Rieger & Musante 2016)::

    [calibration]
    preset = "keynote-002"      # targets (or orr = 0.21, pfs6 = 0.34, arm = "...")
    pool = 1500                 # plausible patients simulated to select from (> size)
    # rule = "calib/rule.json"  # instead: apply a saved rule (vcohort calibrate) to the pool
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path

from vcohort.config import (
    ENGINES,
    MAX_DAYS,
    MAX_PATIENTS,
    MAX_SEED,
    MAX_STEPS_PER_DAY,
    Checker,
    did_you_mean,
    read_toml,
)
from vcohort.dose_rules import DoseRule, drug_rules, parse_rule
from vcohort.dosing import (
    Regimen,
    coincident_doses,
    compile_schedule,
    cut_note,
    induction_end_problem,
    interval_problem,
    parse_dose,
    parse_duration,
    parse_infusion,
    parse_interval,
    parse_regimen,
)
from vcohort.drug_file import drug_files_field, experiment_drugs_problem
from vcohort.endpoints import CENSOR_AT, MONTH_DAYS
from vcohort.population import Population, load_population
from vcohort.runs import Arm, starts_after_horizon
from vcohort.simulate import check_dt
from vcohort.subgroups import DEFAULT_VARIABLES, MAX_GROUPS, YES_NO

SEQUENCING = ("concurrent", "induction-maintenance")
PRECISIONS = ("float64", "float32")
_TOP = {"title", "description", "reference_arm", "population", "simulation", "assessment",
        "arms", "calibration", "drug_files", "subgroups"}  # fmt: skip
_POP = {"preset", "file", "size", "seed", "replace_rejected", "screening", "parameters"}
_SIM = {"horizon_days", "dt", "precision", "chunk_size", "save_every", "runin_days", "engine"}
_ASSESS = {"every_days", "first_day", "days", "confirm_days", "sd_min_days", "cr_floor_mm",
           "censor_at", "landmark_days"}  # fmt: skip
_ARM = {"name", "description", "sequencing", "regimens", "induction", "induction_days",
        "maintenance"}  # fmt: skip
_REG = {"drug", "dose", "every", "count", "until", "start", "over", "hold_if", "reduce_to", "delay",
        "repeat_every", "cycles",
        "recheck_every", "max_delay"}  # fmt: skip
_CALIB = {"preset", "rule", "pool", "orr", "pfs6", "arm", "days"}
_SUB = {"variables", "cuts"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class Experiment:
    """A validated experiment.  ``config`` is the config as a plain dict with defaults filled."""

    title: str
    description: str
    population: Population
    size: int
    seed: int
    replace_rejected: bool
    screening: bool
    horizon_days: int
    dt: float
    precision: str
    chunk_size: int
    save_every: int
    runin_days: int
    endpoint_options: dict
    landmark_days: float
    reference_arm: str
    arms: tuple[Arm, ...]
    config: dict
    source: str
    calibration: dict | None = None
    engine: str = "xla"
    # the subgroup analysis (`vcohort.subgroups`): baseline variables and their cut points
    subgroups: dict = dataclasses.field(
        default_factory=lambda: {"variables": list(DEFAULT_VARIABLES), "cuts": {}}
    )
    # what is legitimate but may be a slip, for the command line to print (`regimen_notes`)
    notes: tuple[str, ...] = ()

    @property
    def drawn_population(self) -> Population:
        """The population the cohort (or calibration pool) is drawn from: ``population``,
        without its plausibility bounds when ``screening`` is off."""
        if self.screening:
            return self.population
        from dataclasses import replace

        return replace(self.population, plausibility=None)

    @property
    def numerics(self) -> dict:
        """How every forward simulation of the experiment runs (run-in, screening, arms):
        keyword arguments shared by `make_cohort`, `plausible_cohort`, `screen` and
        `run_arms`."""
        return dict(
            dt=self.dt, precision=self.precision, chunk_size=self.chunk_size, engine=self.engine
        )


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment TOML file (raises `vcohort.config.ConfigError`)."""
    p = Path(path)
    data = read_toml(p)
    return experiment_from_dict(data, source=str(p), base_dir=p.parent, default_title=p.stem)


def experiment_from_dict(
    d: dict, *, source: str = "<experiment>", base_dir: Path | None = None, default_title=""
) -> Experiment:
    """Validate a parsed experiment; every bad field is listed in one error."""
    ck = Checker(source)
    d = ck.table(d, "", _TOP, {"population", "simulation", "arms"})
    drug_files = drug_files_field(ck, d.get("drug_files"), base_dir)  # before the arms' regimens
    calib = _calibration(ck, d.get("calibration"), base_dir)
    title = ck.get(d, "title", "", "str", default_title or "vcohort trial")
    desc = ck.get(d, "description", "", "str", "")

    pt = ck.table(d.get("population", {}), "population", _POP, {"size"})
    size = ck.get(pt, "size", "population", "int", 1, ge=1, le=MAX_PATIENTS)
    seed = ck.get(pt, "seed", "population", "int", 0, ge=0, le=MAX_SEED)
    repl = ck.get(pt, "replace_rejected", "population", "bool", True)
    screening = ck.get(pt, "screening", "population", "bool", True)
    pop = _population(ck, pt, base_dir)
    seed_ok = "population.seed" not in " ".join(ck.errors)
    if calib is not None and "rule" in calib and seed_ok and Path(calib["rule"]).is_file():
        from vcohort.calibrate import CalibrationRule, check_fresh_pool

        try:
            rule = CalibrationRule.load(calib["rule"])
        except ValueError:
            rule = None  # reported by `_calibration`
        try:  # a rule applied to the pool it was fitted on would be an in-sample check
            if rule is not None:
                check_fresh_pool(rule, seed, 0, calib["pool"] or 1000, fix="change "
                                 "population.seed (the pool draws ids from 0)")  # fmt: skip
        except ValueError as e:
            ck.error("calibration.rule", str(e))

    st = ck.table(d.get("simulation", {}), "simulation", _SIM, {"horizon_days"})
    horizon = ck.get(st, "horizon_days", "simulation", "int", None, ge=1, le=MAX_DAYS)
    dt = ck.get(st, "dt", "simulation", "float", 0.1, ge=1.0 / MAX_STEPS_PER_DAY, le=1)
    if dt is not None:
        try:
            check_dt(dt)  # the simulator's own rule (a whole number of steps per day)
        except ValueError as e:
            ck.error("simulation.dt", str(e).removeprefix("dt="))
    precision = ck.get(st, "precision", "simulation", "str", "float64", choices=PRECISIONS)
    chunk = ck.get(st, "chunk_size", "simulation", "int", 4096, ge=1)
    save_every = ck.get(st, "save_every", "simulation", "int", 7, ge=1)
    runin = ck.get(st, "runin_days", "simulation", "int", 240, ge=0, le=MAX_DAYS)
    engine = ck.get(st, "engine", "simulation", "str", "xla", choices=ENGINES)
    screened = bool(screening) and pop.plausibility is not None  # screen_* values exist
    subgroups = _subgroups(ck, d.get("subgroups"), pop, screened)

    at = ck.table(d.get("assessment", {}), "assessment", _ASSESS)
    ep, landmark = _assessment(ck, at, horizon)
    if calib is not None:
        _calibration_fits(ck, calib, ep, dt, engine, runin)

    arms = []
    raw_arms = d.get("arms", [])
    if not isinstance(raw_arms, list) or not raw_arms:
        ck.error("arms", f"expected one or more [[arms]] tables, got {raw_arms!r}")
        raw_arms = []
    names, described, notes = [], [], []
    for i, a in enumerate(raw_arms):
        arm, about = _arm(ck, a, f"arms[{i}]", horizon, dt, notes)
        if arm is not None:
            if arm.name in names:
                ck.error(f"arms[{i}].name", f"{arm.name!r} is used by another arm")
            names.append(arm.name)
            arms.append(arm)
            described.append(about)
    borrowed = experiment_drugs_problem({r.drug for a in arms for r in a.regimens}, drug_files)
    if borrowed:
        ck.error("arms", borrowed)
    if dt is not None and not ck.errors:  # the typical patient's RK4 step stays stable
        from vcohort.model import CSC_IMMUNE
        from vcohort.simulate import check_typical_dt

        try:
            check_typical_dt(CSC_IMMUNE, dt, {r.drug for a in arms for r in a.regimens}, "dt")
        except ValueError as e:
            ck.error("simulation.dt", str(e).replace("use dt ", "use dt = "))
    ruled = sorted({a.name for a in arms for r in a.regimens if r.rule is not None})
    if horizon is not None and dt is not None and not ck.errors:
        for i, a in enumerate(arms):  # overlapping infusions, delay rules on the step grid
            if a.name in ruled:
                try:
                    s = compile_schedule(list(a.regimens), float(horizon))
                    s.check_rules(dt, horizon * round(1.0 / dt))
                except ValueError as e:
                    ck.error(f"arms[{i}]", str(e))
    if engine == "pallas" and ruled:
        ck.error(
            "simulation.engine",
            f"'pallas' does not apply hold rules (dose modification), which arms "
            f"{', '.join(ruled)} use; allowed with hold rules: 'xla'",
        )
    if calib is not None and size is not None and calib["pool"] <= size:
        ck.error("calibration.pool", f"{calib['pool']} must exceed population.size={size}")
    from vcohort.calibrate import MIN_FIT_POOL, N_BINS

    if calib is not None and "rule" not in calib and calib["pool"] < MIN_FIT_POOL:
        ck.error(
            "calibration.pool",
            f"{calib['pool']}: fitting a rule needs a pool of >= {MIN_FIT_POOL} patients (two "
            f"per diameter bin, {N_BINS} bins)",
        )
    ref = ck.get(d, "reference_arm", "", "str", names[0] if names else "")
    if names and ref not in names:
        hint = did_you_mean(ref, names) if isinstance(ref, str) else ""
        ck.error("reference_arm", f"{ref!r} is not an arm{hint}; arms: {', '.join(names)}")
    ck.raise_if_any()
    notes += regimen_notes(arms, horizon, dt)

    config = {
        "title": title,
        "description": desc,
        "reference_arm": ref,
        "population": {
            "name": pop.name,
            "origin": pop.origin,
            "size": size,
            "seed": seed,
            "replace_rejected": repl,
            "screening": screening,
        },  # fmt: skip
        "simulation": {
            "horizon_days": horizon,
            "dt": dt,
            "precision": precision,
            "chunk_size": chunk,
            "save_every": save_every,
            "runin_days": runin,
            "engine": engine,
        },  # fmt: skip
        "assessment": ep | {"landmark_days": landmark},
        "calibration": calib,
        "subgroups": subgroups,
        "drug_files": drug_files,
        "arms": [
            {
                "name": a.name,
                "regimens": [r.describe() for r in a.regimens],
                # the arm's own description (shown in the report's configuration and the
                # manifest), else its regimens in words
                "description": a.describe() if about is None else about,
            }
            for a, about in zip(arms, described, strict=True)
        ],  # fmt: skip
    }
    return Experiment(title, desc, pop, size, seed, repl, screening, horizon, dt, precision,
                      chunk, save_every, runin, ep, landmark, ref, tuple(arms), config,
                      source, calib, engine, subgroups, tuple(notes))  # fmt: skip


def _subgroups(ck: Checker, raw, pop: Population, screened: bool = True) -> dict:
    """``[subgroups]``: ``variables`` (baseline values, default `DEFAULT_VARIABLES`; ``[]``:
    no subgroup analysis) and ``cuts`` (``{variable = [cut, ...]}``; default the median)."""
    from vcohort.model import CSC_IMMUNE
    from vcohort.subgroups import known_variables

    t = ck.table(raw if raw is not None else {}, "subgroups", _SUB)
    names = t.get("variables", list(DEFAULT_VARIABLES))
    known = known_variables(CSC_IMMUNE, pop, screened=screened)
    if not (isinstance(names, list) and all(isinstance(v, str) for v in names)):
        ck.error("subgroups.variables", f"{names!r}: a list of baseline variable names")
        names = []
    bad = [v for v in names if v not in known]
    if bad:
        ck.error(
            "subgroups.variables",
            f"{bad} are not baseline values; allowed: covariates, model and PK parameters "
            f"('drug.CL'), states on day 0 ('T8_baseline') and {list(DEFAULT_VARIABLES)}",
        )
    if len(set(names)) != len(names):
        ck.error("subgroups.variables", f"{names!r}: a variable is named twice")
    cuts = t.get("cuts", {})
    if not isinstance(cuts, dict):
        ck.error("subgroups.cuts", f"{cuts!r}: a table {{variable = [cut, ...]}}")
        cuts = {}
    for k, v in cuts.items():
        where = f"subgroups.cuts.{k}"
        if k not in names:
            ck.error(where, f"{k!r} is not among subgroups.variables {names}")
        elif k in YES_NO:
            ck.error(where, f"{k} is yes/no: it splits by its value and takes no cut points")
        elif not (
            isinstance(v, list)
            and 0 < len(v) < MAX_GROUPS
            and all(isinstance(c, int | float) and not isinstance(c, bool) for c in v)
            and all(math.isfinite(c) for c in v)
            and all(a < b for a, b in zip(v, v[1:], strict=False))
        ):
            ck.error(where, f"{v!r}: 1 to {MAX_GROUPS - 1} finite cut points in increasing order")
    return {"variables": names, "cuts": cuts}


def _calibration(ck: Checker, raw, base_dir: Path | None) -> dict | None:
    """``[calibration]``: targets (preset or orr/pfs6/arm) or a saved rule, and the pool size."""
    if raw is None:
        return None
    from vcohort.calibrate import PRESETS

    t = ck.table(raw, "calibration", _CALIB, {"pool"})
    out = {"pool": ck.get(t, "pool", "calibration", "int", 1000, ge=2, le=MAX_PATIENTS)}
    if "rule" in t:
        if any(k in t for k in ("preset", "orr", "pfs6", "arm", "days")):
            ck.error("calibration", "give either rule = <file> or targets, not both")
        rule = ck.get(t, "rule", "calibration", "str", "")
        path = Path(rule) if base_dir is None or Path(rule).is_absolute() else base_dir / rule
        if not path.is_file():
            ck.error("calibration.rule", f"{rule!r}: file not found ({path})")
        else:
            from vcohort.calibrate import CalibrationRule

            try:
                CalibrationRule.load(path)
            except ValueError as e:
                ck.error("calibration.rule", str(e))
        out["rule"] = str(path)
        return out
    preset = ck.get(t, "preset", "calibration", "str", None, choices=tuple(PRESETS))
    out["preset"] = preset
    out["orr"] = ck.get(t, "orr", "calibration", "float", None, ge=0, le=1)
    out["pfs6"] = ck.get(t, "pfs6", "calibration", "float", None, ge=0, le=1)
    out["arm"] = ck.get(t, "arm", "calibration", "str", None)
    out["days"] = ck.get(t, "days", "calibration", "int", None, ge=183, le=MAX_DAYS)
    if "preset" not in t and not ("orr" in t and "arm" in t):  # given but bad: reported
        ck.error("calibration", "give preset = ... or both orr and arm (and optionally pfs6)")
    return out  # the reference arm is checked with the engine (`_calibration_fits`)


def _calibration_fits(ck: Checker, calib: dict, ep: dict, dt, engine, runin=None) -> None:
    """``[calibration]`` against the rest of the experiment: its reference arm runs on the
    experiment's engine, and a saved rule scored responses as the experiment's
    ``[assessment]`` and ``simulation.dt`` do (else patients would be selected by one RECIST
    definition and reported by another) and was fitted on a pool with the experiment's
    ``simulation.runin_days``."""
    from vcohort.calibrate import (
        PRESETS,
        CalibrationRule,
        assessment_options,
        check_arm,
        check_assessment,
        check_runin,
    )

    engine = engine or "xla"  # a bad engine is reported already; check the arm anyway
    if "rule" not in calib:
        if calib.get("arm") or calib.get("preset"):
            arm = calib.get("arm") or PRESETS[calib["preset"]][0]
            try:
                check_arm(arm, calib.get("days") or 210, engine, dt or 0.1)
            except ValueError as e:
                where = "arm" if calib.get("arm") else "days" if calib.get("days") else "preset"
                ck.error(f"calibration.{where}", str(e))
        if not any(e.startswith("assessment") for e in ck.errors):
            try:  # the reference arm is scored with this experiment's [assessment]
                check_assessment(ep, calib.get("days") or 210)
            except ValueError as e:
                ck.error("calibration", f"{e} ([assessment] scores the calibration too)")
        return
    try:
        rule = CalibrationRule.load(calib["rule"])
    except (ValueError, OSError):
        return  # reported by `_calibration`
    try:
        check_arm(rule.arm, rule.days, engine, rule.dt)
    except ValueError as e:
        ck.error("calibration.rule", str(e))
    if runin is not None:
        try:
            check_runin(rule, runin, "runin_days")
        except ValueError as e:
            ck.error("simulation.runin_days", f"{e} ([calibration] rule = {calib['rule']!r})")
    if any(e.startswith(("assessment", "simulation.dt")) for e in ck.errors):
        return
    mine = assessment_options(ep)
    differ = [f"{k} {rule.assessment[k]!r} (rule) vs {mine[k]!r}" for k in mine
              if mine[k] != rule.assessment[k]]  # fmt: skip
    if dt != rule.dt:
        differ.append(f"dt {rule.dt!r} (rule) vs {dt!r}")
    if differ:
        ck.error(
            "calibration.rule",
            f"the rule selected patients by responses scored otherwise than this experiment "
            f"scores them ({'; '.join(differ)}): set [assessment] and simulation.dt as the rule's, "
            f"or fit a rule with this experiment's (a [calibration] with targets does)",
        )


def _population(ck: Checker, pt: dict, base_dir: Path | None) -> Population:
    has_p, has_f = "preset" in pt, "file" in pt
    if has_p and has_f:
        ck.error("population", "give either preset or file, not both")
    spec = ck.get(pt, "preset", "population", "str", None) if has_p else None
    if has_f:
        f = ck.get(pt, "file", "population", "str", None)
        if f is not None:
            fp = Path(f)
            spec = fp if fp.is_absolute() or base_dir is None else base_dir / fp
    extra = {}
    if "parameters" in pt:  # inline settings, over the preset's (so sweeps can vary them)
        from vcohort.population import parse_parameters

        extra = parse_parameters(ck, pt["parameters"], "population.parameters")
    try:
        pop = load_population(spec)
        if extra:
            from vcohort.population import with_parameters

            pop = with_parameters(pop, extra)
        from vcohort.cohort import draw_keys, with_drug_correlations
        from vcohort.drugs import CATALOGUE
        from vcohort.model import CSC_IMMUNE

        draw_keys(CSC_IMMUNE, CATALOGUE, pop)  # correlation names must exist
        with_drug_correlations(pop, CATALOGUE).correlation_matrix()  # and hold together
        return pop
    except ValueError as e:
        at = "population.file" if has_f else "population.preset"
        if " parameters." in str(e) and "parameters" in pt:
            at = "population.parameters"
        ck.error(at, str(e))
        return load_population(None)


def _assessment(ck: Checker, at: dict, horizon: int | None) -> tuple[dict, float]:
    p = "assessment"
    every = ck.get(at, "every_days", p, "int", 42, ge=1)
    first = ck.get(at, "first_day", p, "int", every, ge=1)
    days = at.get("days")
    if days is not None:
        if "every_days" in at or "first_day" in at:
            ck.error(f"{p}.days", "give either days or every_days/first_day, not both")
        if not (isinstance(days, list) and days and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in days)):  # fmt: skip
            ck.error(f"{p}.days", f"{days!r} must be a non-empty list of whole days >= 1")
            days = None
    confirm = ck.get(at, "confirm_days", p, "int", 0, ge=0)
    sd_min = ck.get(at, "sd_min_days", p, "int", 42, ge=0)  # RECIST 1.1 §4.4 (`recist`)
    floor = ck.get(at, "cr_floor_mm", p, "float", 5.0, gt=0)
    censor = ck.get(at, "censor_at", p, "str", "last_assessment", choices=CENSOR_AT)
    landmark = ck.get(at, "landmark_days", p, "float", 6 * MONTH_DAYS, gt=0)
    first_seen = min(days) if days else first
    if horizon is not None and first_seen is not None and first_seen > horizon:
        ck.error(
            f"{p}.{'days' if days else 'first_day'}",
            f"first assessment on day {first_seen} is after the horizon ({horizon} d): "
            f"no response could be assessed",
        )
    elif horizon is not None and confirm and None not in (every, first):
        seen = sorted(days) if days else list(range(first, horizon + 1, every))
        seen = [d for d in seen if d <= horizon]
        if seen and seen[-1] - seen[0] < confirm:
            ck.error(
                f"{p}.confirm_days",
                f"{confirm}: the assessments on days {', '.join(map(str, seen))} (horizon "
                f"{horizon} d) leave no second look >= {confirm} d after a first response, so "
                f"no response could be confirmed (ORR would be 0); "
                + (
                    f"add an assessment day >= {seen[0] + confirm}"
                    if days
                    else f"lengthen the horizon to >= {first + every * -(-confirm // every)} d"
                )
                + " or set confirm_days = 0",
            )
    if horizon is not None and sd_min and None not in (every, first):
        seen = sorted(days) if days else list(range(first, horizon + 1, every))
        seen = [d for d in seen if d <= horizon]
        if seen and seen[-1] < sd_min:
            ck.error(
                f"{p}.sd_min_days",
                f"{sd_min}: no assessment on or after day {sd_min} (the last is day {seen[-1]}), "
                f"so no patient could have stable disease (every one would be PD or NE); add an "
                f"assessment or lower sd_min_days",
            )
    ep = {"assess_every": every, "assess_first": first, "assess_days": days,
          "confirm_days": confirm, "sd_min_days": sd_min, "cr_floor_mm": floor,
          "censor_at": censor}  # fmt: skip
    return ep, landmark


def regimen_notes(arms, horizon: float, dt: float) -> list[str]:
    """Notes on regimens that are valid but may be a slip (`vcohort.dosing.cut_note`,
    `vcohort.dosing.coincident_doses`): a course the horizon cuts, two regimens of one drug
    dosing in the same step.  Computed once, at load."""
    out = []
    for a in arms:
        out += [f"arm {a.name!r}: {n}" for r in a.regimens if (n := cut_note(r, horizon))]
        out += [f"arm {a.name!r}: {n}" for n in coincident_doses(a.regimens, horizon, dt)]
    return out


def _arm(
    ck: Checker, a, p: str, horizon, dt=None, notes: list | None = None
) -> tuple[Arm | None, str | None]:
    """An ``[[arms]]`` table -> (the arm or None when invalid, its ``description`` or None).
    ``notes`` gets the notes of induction regimens whose course count induction cuts."""
    a = ck.table(a, p, _ARM, {"name"})
    name = ck.get(a, "name", p, "str", None)
    about = ck.get(a, "description", p, "str", None)
    if name is not None and not _NAME.fullmatch(name):
        ck.error(f"{p}.name", f"{name!r}: use letters, digits and _ . + - (it names files)")
    seq = ck.get(a, "sequencing", p, "str", "concurrent", choices=SEQUENCING)
    regs: list[Regimen] = []
    if seq == "induction-maintenance":
        if "regimens" in a:
            ck.error(f"{p}.regimens", "an induction-maintenance arm uses induction/maintenance")
        for k in ("induction", "induction_days", "maintenance"):
            if k not in a:
                ck.error(f"{p}.{k}", "required for sequencing = 'induction-maintenance'")
        ind_days = ck.get(a, "induction_days", p, "int", None, ge=1)
        if ind_days is not None and horizon is not None and ind_days >= horizon:
            ck.error(f"{p}.induction_days", f"{ind_days} must be shorter than the horizon")
        for j, r in enumerate(_regimens(ck, a.get("induction", []), f"{p}.induction")):
            cut = _cut(ck, r, ind_days, f"{p}.induction[{j}]")
            if cut is not None:
                regs.append(cut)
                if notes is not None and (note := cut_note(r, ind_days, "induction")):
                    notes.append(f"arm {name!r}: {note}")
        for r in _regimens(ck, a.get("maintenance", []), f"{p}.maintenance"):
            if ind_days is not None:
                r = dataclasses.replace(
                    r,
                    start_day=r.start_day + ind_days,
                    until_day=None if r.until_day is None else r.until_day + ind_days,
                )
            regs.append(r)
    else:
        for k in ("induction", "induction_days", "maintenance"):
            if k in a:
                ck.error(f"{p}.{k}", "only for sequencing = 'induction-maintenance'")
        regs = _regimens(ck, a.get("regimens", []), f"{p}.regimens")
    _check_rules(ck, regs, p)
    if horizon is not None:
        for message in starts_after_horizon(regs, horizon):
            ck.error(p, message)
        for r in regs:
            try:  # (more doses than a schedule may hold: 'every 0.001 min')
                r.dose_times(float(horizon))
            except ValueError as e:
                ck.error(p, str(e))
    if dt is not None:
        for r in regs:
            if (problem := interval_problem(r, dt)) is not None:
                ck.error(p, problem)
    if name is None or seq is None:
        return None, None
    return Arm(name, tuple(regs)), about


def _check_rules(ck: Checker, regs: list[Regimen], p: str) -> None:
    """Hold rules: one per drug in an arm (`drug_rules`)."""
    try:
        drug_rules(regs)
    except ValueError as e:
        ck.error(p, str(e))


def check_rule_output(ck: Checker, rule: DoseRule | None, q: str) -> None:
    """A hold rule reads a daily output of the model experiments run."""
    if rule is None:
        return
    from vcohort.model import CSC_IMMUNE

    problem = CSC_IMMUNE.rule_problem(rule)
    if problem:
        ck.error(q, problem)


def _cut(ck: Checker, r: Regimen, end, p: str) -> Regimen | None:
    """An induction regimen stopped at day ``end``: refused when that falls inside one of its
    courses (`induction_end_problem`)."""
    if end is None:
        return r
    if r.start_day >= end:
        ck.error(p, f"{r.describe()!r} starts after induction ends (day {end})")
        return None
    problem = induction_end_problem(r, float(end))
    if problem is not None:
        ck.error(p, problem)
        return None
    until = end if r.until_day is None else min(r.until_day, end)
    return dataclasses.replace(r, until_day=float(until))


def _regimens(ck: Checker, items, p: str) -> list[Regimen]:
    if not isinstance(items, list):
        ck.error(p, f"expected a list of regimen strings or tables, got {items!r}")
        return []
    out = []
    for j, it in enumerate(items):
        q = f"{p}[{j}]"
        try:
            if isinstance(it, str):
                out.append(parse_regimen(it))
                check_rule_output(ck, out[-1].rule, q)
            elif isinstance(it, dict):
                r = _regimen_table(ck, it, q)
                if r is not None:
                    out.append(r)
                    check_rule_output(ck, r.rule, f"{q}.hold_if")
            else:
                ck.error(q, f"expected a regimen string or table, got {it!r}")
        except ValueError as e:
            ck.error(q, str(e))
    return out


def _regimen_table(ck: Checker, t: dict, q: str) -> Regimen | None:
    """``{drug, dose, every, count, repeat_every, cycles, until, start, over, hold_if,
    reduce_to}``; units as in
    `parse_regimen` (``hold_if = "ANC < 1.5"``, ``reduce_to = ["75%", "50%"]``)."""
    t = ck.table(t, q, _REG, {"drug"})
    drug = ck.get(t, "drug", q, "str", None)
    if drug is None:
        return None
    base = parse_regimen(drug)  # the catalogue's clinical dose (raises for unknown drugs)
    kw: dict = {"drug": base.drug}
    errors = len(ck.errors)
    if "dose" in t:
        from functools import partial

        from vcohort.drugs import get_drug

        cells = get_drug(base.drug, base.catalogue).amount_unit == "1e6 cells"
        dose = partial(parse_dose, cells=cells)  # a bare number: mg refused
        kw["dose"], kw["dose_unit"] = _field(ck, q, "dose", t["dose"], dose) or (None, None)
    else:
        kw["dose"], kw["dose_unit"] = base.dose, base.dose_unit
    if "every" in t:
        kw["interval_days"] = _field(ck, q, "every", t["every"], parse_interval)
    else:  # the clinical dose's course, as far as the table does not give its own: its
        # interval, dose count, cycles and infusion (a drug name alone in a string keeps them)
        kw["interval_days"], kw["count"] = base.interval_days, base.count
        if "repeat_every" not in t:
            kw["cycle_days"], kw["cycles"] = base.cycle_days, base.cycles
        kw["infusion_days"] = base.infusion_days
    if "count" in t:
        kw["count"] = ck.get(t, "count", q, "int", None, ge=1)
    if "repeat_every" in t:  # a course repeated in cycles (protocol days 1-5 of 28: count 5, 28 d)
        kw["cycle_days"] = _field(ck, q, "repeat_every", t["repeat_every"], parse_duration)
    if "cycles" in t:
        kw["cycles"] = ck.get(t, "cycles", q, "int", None, ge=1)
    for key, name in (("until", "until_day"), ("start", "start_day")):
        if key in t:
            kw[name] = _field(ck, q, key, t[key], parse_duration)
    if "over" in t:
        kw["infusion_days"] = _field(ck, q, "over", t["over"], parse_infusion)
    for key in ("reduce_to", "delay", "recheck_every", "max_delay"):
        if key in t and "hold_if" not in t:
            ck.error(f"{q}.{key}", "needs a hold_if rule, e.g. hold_if = 'ANC < 1.5'")
    if "hold_if" in t:
        kw["rule"] = hold_rule(ck, q, t)
        if kw["rule"] is None:
            return None
    optional = ("interval_days", "count", "cycle_days", "cycles")  # None: not given (errors
    if len(ck.errors) > errors or any(  # in given ones are recorded above)
        v is None for k, v in kw.items() if k not in optional
    ):
        return None
    return Regimen(**kw)


def hold_rule(ck: Checker, q: str, t: dict) -> DoseRule | None:
    """The table form of a regimen's ``hold if ...`` clause (`parse_rule`): ``hold_if``,
    ``delay`` (true/false), ``recheck_every``, ``max_delay`` and ``reduce_to``."""
    cond, levels = t["hold_if"], t.get("reduce_to")
    if not isinstance(cond, str):
        ck.error(f"{q}.hold_if", f"expected a condition like 'ANC < 1.5', got {cond!r}")
        return None
    text = f"hold if {cond}"
    try:  # each part checked on its own, so that an error names its own field
        alone = parse_rule(text)
    except ValueError as e:
        ck.error(f"{q}.hold_if", str(e))
        return None
    if alone.delay or alone.levels:  # 'delay ...'/'reduce to ...' in the condition would
        # override (or contradict) the table's own fields
        ck.error(
            f"{q}.hold_if",
            f"{cond!r}: only the condition ('<output> < value' or '> value') goes here; set "
            f"delay, recheck_every, max_delay and reduce_to as fields of the table",
        )
        return None
    delay = ck.get(t, "delay", q, "bool", False)
    if not delay:
        for key in ("recheck_every", "max_delay"):
            if key in t:
                ck.error(f"{q}.{key}", "a delay setting: needs delay = true")
    else:
        text += " delay"
        for key, word in (("recheck_every", "every"), ("max_delay", "up to")):
            if key in t:
                v = _field(ck, q, key, t[key], parse_duration)
                if v is None:
                    return None
                text += f" {word} {v!r} d"
                try:  # checked as each setting joins, so an error names its own field
                    parse_rule(text)
                except ValueError as e:
                    ck.error(f"{q}.{key}", str(e))
                    return None
    if levels is not None:
        ok = (
            isinstance(levels, list)
            and levels
            and all(
                isinstance(v, str) or (isinstance(v, int | float) and not isinstance(v, bool))
                for v in levels
            )
        )
        if not ok:
            ck.error(
                f"{q}.reduce_to",
                f"expected a list of dose levels like ['75%', '50%'] or [0.75, 0.5], got "
                f"{levels!r}",
            )
            return None
        bad = [v for v in levels if not isinstance(v, str) and not 0 < v <= 1]
        if bad:
            ck.error(
                f"{q}.reduce_to",
                f"dose level {bad[0]!r} is not in (0, 1]: a number is a fraction of the planned "
                f"dose (0.75); write a percentage as a string ('75%')",
            )
            return None
        # a number is a fraction of the planned dose (0.75), a string a percentage ('75%')
        text += " reduce to " + " ".join(
            v.strip() if isinstance(v, str) else f"{100 * v!r}%" for v in levels
        )
    try:
        return parse_rule(text)
    except ValueError as e:
        ck.error(f"{q}.reduce_to" if levels is not None else f"{q}.hold_if", str(e))
        return None


def _field(ck: Checker, q: str, key: str, v, parse):
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        ck.error(f"{q}.{key}", f"expected a number or a string with a unit, got {v!r}")
        return None
    try:
        return parse(v, key)
    except ValueError as e:
        ck.error(f"{q}.{key}", str(e))
        return None

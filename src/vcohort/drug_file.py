"""Drug files (TOML): the user's own drugs, validated field by field, added to the catalogue.

A drug file holds one table per drug, in the terms of `vcohort.drug.Drug`; every number carries
its unit and a source (or "assumption: why"), as the built-in catalogue does::

    [nivolumab]
    class = "ici"                       # metadata: ici, chemo, csc_inhibitor, ...
    route = "iv"                        # iv | oral | sc (oral and sc need ka)
    clinical_dose = "nivolumab 240 mg every 14 d over 30 min"
    mw = 146000                         # g/mol (for ec50_nM)
    half_life_days = 25                 # published terminal half-life, checked against the PK
    half_life_source = "Opdivo label"
    ref_weight = 80                     # kg: the weight the PK values are for
    weight_exponent_cl = 0.566          # allometric exponents (0: no weight effect)
    weight_exponent_v = 0.597
    weight_scaled = ["CL", "V1"]        # the parameters weight scales (default: CL, Q*, V*)
    max_single_dose_mg = 480
    toxicity = "immune-related adverse events"
    eta_correlation = [{ a = "CL", b = "V1", rho = 0.35, source = "Bajaj et al. 2017" }]
                                        # an omega block as correlations (optional)

    [nivolumab.pk]                      # CL, V1 required; Q2/V2, Q3/V3, ka, ke0, mtt_marrow
    CL = { value = 7.81, unit = "mL/h", cv = 0.36, source = "Bajaj et al. 2017" }
    V1 = { value = 4.02, unit = "L", cv = 0.36, source = "Bajaj et al. 2017" }
    Q2 = { value = 32.1, unit = "mL/h", source = "Bajaj et al. 2017" }
    V2 = { value = 2.78, unit = "L", cv = 0.54, source = "Bajaj et al. 2017" }
    # shared_eta = "CL" in a parameter's table (which then needs a cv): its between-patient
    #   deviation is CL's draw (one ETA on both)

    [[nivolumab.effects]]               # one per model effect channel the drug acts on
    channel = "pd1_occupancy"
    ec50 = 0.5                          # mg/L (or ec50_nM, converted with mw); emax, hill
    source = "assumption: ..."          #   (<= 10); a linear channel's effect has slope (L/mg)

PK units are converted to the catalogue's (L, L/day, 1/day, day); per-kg units (``L/kg``,
``mL/min/kg``) are multiplied by ``ref_weight`` and need their weight exponent > 0 (a per-kg
value is one that changes with weight).  ``weight_scaled`` lists only parameters whose
exponent is > 0, and an exponent > 0 needs a listed parameter to act on.  The PK's terminal
half-life must lie within 10% of ``half_life_days`` (the test the built-in drugs pass), which
catches a clearance given per hour as per day.  A drug file cannot redefine a built-in drug or
take the name of a drug of a reference model's catalogue (de Pillis 2009's ``chemo``, ``il2``,
``til``), and a name registered in this process keeps its first definition (compiled
simulators are cached by drug).  Drug files add to the catalogue of the CSC–immune model; the
reference models are dosed with their own drugs only.

Use it with ``--drug-file FILE`` on the command line, ``drug_files = ["FILE"]`` in an
experiment file, or `load_drugs` + `register_drugs` from Python.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from pathlib import Path

from vcohort.config import Checker, ConfigError, read_toml
from vcohort.drug import (
    AMOUNT_UNITS,
    DEPOT_ROUTES,
    EFFECT_KINDS,
    ROUTES,
    SITES,
    WEIGHT_CL,
    WEIGHT_V,
    Drug,
    Effect,
    pk_table,
)

HALF_LIFE_TOLERANCE = 0.10  # the tolerance the test suite holds the built-in drugs to
# drug files registered in this process: path -> {name: table as read} (for run manifests)
_LOADED: dict[str, dict] = {}
# drugs registered for the whole process (--drug-file, Python), not by one experiment file's
# drug_files: any experiment may give them (`experiment_drugs_problem`)
_GLOBAL: set[str] = set()
# drugs registered by an experiment file's drug_files (`run_catalogue` leaves them out of
# the other experiments' runs)
_EXPERIMENT: set[str] = set()
# the drug files registered for the whole process (--drug-file, `use_drug_files`), by path
_GLOBAL_FILES: set[str] = set()
# drug name -> the drug file that first defined it (for a clash's message)
_ORIGIN: dict[str, str] = {}

_DRUG_KEYS = {
    "class", "route", "clinical_dose", "mw", "half_life_days", "half_life_source", "ref_weight",
    "weight_exponent_cl", "weight_exponent_v", "max_single_dose_mg", "toxicity", "references",
    "amount_unit", "marrow_chain", "pk", "effects", "eta_correlation", "weight_scaled",
}  # fmt: skip
_PK_KEYS = {"value", "unit", "cv", "source", "description", "shared_eta"}
_EFFECT_KEYS = {"channel", "kind", "emax", "ec50", "ec50_nM", "hill", "slope", "site", "source"}

# PK parameter -> (catalogue unit, {accepted unit: factor to the catalogue unit}); "/kg" units
# are further multiplied by ref_weight
_CLEARANCE = {"L/day": 1.0, "L/d": 1.0, "L/h": 24.0, "mL/min": 1.44, "mL/h": 0.024,
              "L/day/kg": 1.0, "L/h/kg": 24.0, "mL/min/kg": 1.44, "mL/h/kg": 0.024}  # fmt: skip
_VOLUME = {"L": 1.0, "mL": 1e-3, "L/kg": 1.0, "mL/kg": 1e-3}
_RATE = {"1/day": 1.0, "1/d": 1.0, "1/h": 24.0}
_TIME = {"day": 1.0, "d": 1.0, "h": 1.0 / 24.0}
PK_UNITS = {
    "CL": ("L/day", _CLEARANCE, "clearance"),
    "Q2": ("L/day", _CLEARANCE, "intercompartmental clearance to peripheral 1"),
    "Q3": ("L/day", _CLEARANCE, "intercompartmental clearance to peripheral 2"),
    "V1": ("L", _VOLUME, "central volume"),
    "V2": ("L", _VOLUME, "peripheral volume 1"),
    "V3": ("L", _VOLUME, "peripheral volume 2"),
    "ka": ("1/day", _RATE, "absorption rate"),
    "ke0": ("1/day", _RATE, "effect-compartment equilibration rate"),
    "mtt_marrow": ("day", _TIME, "mean transit time of the marrow delay chain"),
}


MAX_CV = 2.0  # the largest between-patient CV of the built-in tables (200%)
# assumption: a Hill exponent above 10 makes an Emax curve an on/off switch (the concentration
# going from 10% to 90% of the effect changes by 81**(1/hill): x1.55 at hill 10, x1.25 at 20),
# a shape outside what Emax models fitted to clinical exposure-response data use
HILL_MAX = 10.0


def _reserved(name: str) -> bool:
    """A word the regimen syntax reads (`vcohort.dosing.parse_regimen`), e.g. ``x``, ``qd``."""
    from vcohort.dosing import _COUNT_WORDS, _KEYWORDS, _is_shorthand

    words = {*_KEYWORDS, *_COUNT_WORDS, "untreated", "if", "delay", "to", "up"}
    return name in words or _is_shorthand(name)


def builtin_names() -> frozenset[str]:
    """The drugs vcohort ships (a drug file may not redefine them)."""
    from vcohort.drugs import BUILTIN

    return BUILTIN


def taken_names() -> dict[str, str]:
    """The names a drug file may not give a drug, with whose they are: the built-in drugs and
    the drugs of every registered model's own catalogue (`vcohort.model.models`; de Pillis
    2009's ``chemo``, ``il2``, ``til``: a file's ``chemo`` would be shadowed by the model's
    under ``--model depillis2009``, while the run's manifest listed the file)."""
    from vcohort.model import models

    out = {n: "a built-in drug" for n in builtin_names()}
    for m in models().values():
        for n in m.catalogue or {}:
            out.setdefault(n, f"a drug of model {m.name}'s own catalogue")
    return out


def parse_drugs(tables: dict, source: str = "<drug file>", model=None) -> dict[str, Drug]:
    """Validate drug tables (``{name: table}``, as read from a drug file) into `Drug`s for
    ``model`` (default the CSC–immune model); every bad field is listed in one
    `vcohort.config.ConfigError`."""
    from vcohort.model import CSC_IMMUNE

    model = CSC_IMMUNE if model is None else model
    if model.catalogue is not None:
        own = ", ".join(model.catalogue) or "none"
        raise ConfigError(
            source,
            [
                f"(model) {model.name!r} is dosed with its own drugs only ({own}); drug files "
                f"add drugs to the catalogue of the {CSC_IMMUNE.name} model: drop the drug file "
                f"or the model"
            ],
        )
    ck = Checker(source)
    if not isinstance(tables, dict) or not tables:
        ck.error("(top level)", "expected one or more [DRUG] tables, e.g. [nivolumab]")
        ck.raise_if_any()
    out: dict[str, Drug] = {}
    for name, t in tables.items():
        drug = _drug(ck, name, t, model)
        if drug is not None:
            out[drug.name] = drug
    ck.raise_if_any()
    return out


def load_drugs(path: str | Path, model=None) -> dict[str, Drug]:
    """Read and validate a drug file (see the module docstring)."""
    p = Path(path)
    return parse_drugs(read_toml(p, "drug file"), source=str(p), model=model)


def register_drugs(
    drugs: dict[str, Drug],
    catalogue: dict | None = None,
    *,
    experiment: bool = False,
    origin: str | None = None,
) -> list[str]:
    """Add ``drugs`` to ``catalogue`` (default: the catalogue every command uses).  A name
    already there must have the same definition (a built-in drug cannot be redefined; nor can
    a drug registered earlier in this process, whose compiled simulators may be cached, e.g.
    by another experiment of a batch).  ``experiment``: registered for one experiment file's
    ``drug_files``, so only experiments naming a file that defines it may give it.  Returns the
    names added or already present.  Checks every drug before adding any.  ``origin``: the drug
    file they come from (a later clash names it)."""
    from vcohort.drugs import CATALOGUE

    cat = CATALOGUE if catalogue is None else catalogue
    for name, d in drugs.items():
        if name in cat and cat[name].digest() != d.digest():  # (== fails on a NaN mw)
            if name in builtin_names():
                raise ValueError(f"drug {name!r} is a built-in drug; give yours another name")
            where = f" by {_ORIGIN[name]}" if catalogue is None and name in _ORIGIN else ""
            raise ValueError(
                f"drug {name!r} is already defined in this run{where} with another definition "
                f"(one name, one definition per process, e.g. across a batch's experiments): "
                f"give this definition another name, e.g. {name}_2"
            )
    for name, d in drugs.items():
        if catalogue is None and name not in cat:  # the first definition's file, if any
            _ORIGIN.pop(name, None)
            if origin is not None:
                _ORIGIN[name] = origin
        cat.setdefault(name, d)
        if not experiment and catalogue is None:
            _GLOBAL.add(name)
        elif catalogue is None:
            _EXPERIMENT.add(name)
    return list(drugs)


def experiment_drugs_problem(used, drug_files: dict) -> str | None:
    """Why an experiment may not give the user drugs ``used``, or None: each must be defined
    by one of the experiment's own ``drug_files`` (``{path: {name: table}}``) or registered
    for the whole run (``--drug-file``), not borrowed from another experiment of a batch."""
    own = {name for tables in drug_files.values() for name in tables}
    borrowed = sorted(d for d in used if d not in builtin_names() and d not in own | _GLOBAL)
    if borrowed:
        return (
            f"{', '.join(borrowed)}: not a built-in drug, and none of this experiment's "
            "drug_files defines it (another experiment's file does); name the drug file in "
            "this experiment's drug_files"
        )
    return None


def use_drug_files(paths, base_dir: Path | None = None, model=None) -> dict[str, Drug]:
    """Load and register every drug file in ``paths`` (relative ones from ``base_dir``),
    validated for ``model`` (default the CSC–immune model; a reference model, which has its
    own catalogue, is refused: `parse_drugs`)."""
    out: dict[str, Drug] = {}
    for f in paths:
        p = Path(f)
        if base_dir is not None and not p.is_absolute():
            p = base_dir / p
        out.update(_use_file(p, experiment=False, model=model)[0])
    return out


def _use_file(
    p: Path, *, experiment: bool, model=None, tables: dict | None = None
) -> tuple[dict[str, Drug], dict]:
    """Read (unless ``tables`` is given: the file as read), validate and register one drug
    file, and record it for the manifests."""
    tables = read_toml(p, "drug file") if tables is None else tables
    drugs = parse_drugs(tables, source=str(p), model=model)
    register_drugs(drugs, experiment=experiment, origin=str(p))
    _LOADED[str(p)] = tables
    if not experiment:
        _GLOBAL_FILES.add(str(p))
    return drugs, tables


def loaded_drug_files() -> dict[str, dict]:
    """The drug files registered in this process, as read (path -> {name: table}); within
    `run_catalogue`, those of the run only."""
    return dict(_LOADED)


def _own_file(path: str, tables: dict, drug_files: dict) -> bool:
    """Whether the loaded file ``path`` (read as ``tables``) is one of ``drug_files`` (an
    experiment's ``{path as written: {name: table}}``; a relative path was read from the
    experiment file's folder, so the loaded path ends with it)."""
    parts = Path(path).parts
    for written, own in drug_files.items():
        w = Path(written).parts
        if own == tables and len(w) <= len(parts) and parts[len(parts) - len(w) :] == w:
            return True
    return False


@contextmanager
def run_catalogue(drug_files: dict | None):
    """Within the block, the catalogue every command uses holds only the drugs one run may
    see: not those that only other experiments' ``drug_files`` define, so the built-in drugs,
    those registered for the whole process (``--drug-file``, Python) and those its
    experiment's own ``drug_files`` (``{path as written: {name: table}}``, as in its config)
    define; `loaded_drug_files` lists only their files.  A batch loads every
    experiment's drug files in one process, and every patient draws PK values for every drug
    of the catalogue (`vcohort.cohort.make_cohort`), so without it one experiment's drug file
    changed the patients, manifests and fingerprints of every other run of the batch.  The
    catalogue and the record are restored afterwards (with anything registered meanwhile)."""
    from vcohort.drugs import CATALOGUE

    drug_files = drug_files or {}
    own = {name for tables in drug_files.values() for name in tables}
    others = _EXPERIMENT - builtin_names() - _GLOBAL - own
    cat, loaded = dict(CATALOGUE), dict(_LOADED)
    CATALOGUE.clear()
    CATALOGUE.update({n: d for n, d in cat.items() if n not in others})
    _LOADED.clear()
    _LOADED.update(
        {p: t for p, t in loaded.items() if p in _GLOBAL_FILES or _own_file(p, t, drug_files)}
    )
    inner_cat, inner_loaded = dict(CATALOGUE), dict(_LOADED)
    try:
        yield
    finally:
        added = {n: d for n, d in CATALOGUE.items() if n not in inner_cat}
        new_files = {p: t for p, t in _LOADED.items() if p not in inner_loaded}
        CATALOGUE.clear()
        CATALOGUE.update(cat | {n: d for n, d in added.items() if n not in cat})
        _LOADED.clear()
        _LOADED.update(loaded | new_files)


# ----------------------------------------------------------------------------- one drug
def _drug(ck: Checker, name, t, model) -> Drug | None:
    from vcohort.dosing import parse_regimen

    n_err = len(ck.errors)
    if not isinstance(t, dict):  # e.g. version = 1: one error, not also its missing keys
        ck.error(
            str(name),
            f"expected a [{name}] drug table, got {type(t).__name__} {t!r}; a drug file holds "
            "only [DRUG] tables (one per drug)",
        )
        return None
    # ASCII only: the name becomes SBML ids (SId: [A-Za-z_][A-Za-z0-9_]*) and file names
    if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        ck.error(
            str(name), "a drug name is lower-case ASCII letters, digits and _ (e.g. nivolumab)"
        )
        return None
    taken = taken_names()
    if name in taken:
        ck.error(
            name,
            f"{name!r} is {taken[name]}; give yours another name (taken: "
            f"{', '.join(sorted(taken))})",
        )
        return None
    if _reserved(name):
        ck.error(name, f"{name!r} is a word of the regimen syntax; give the drug another name")
        return None
    t = ck.table(t, name, _DRUG_KEYS, {"route", "clinical_dose", "half_life_days",
                                        "half_life_source", "pk"})  # fmt: skip
    route = ck.get(t, "route", name, "str", "iv", choices=ROUTES)
    ref_weight = ck.get(t, "ref_weight", name, "float", 70.0, gt=0)
    kw = dict(
        drug_class=ck.get(t, "class", name, "str", "user"),
        mw=ck.get(t, "mw", name, "float", math.nan, gt=0),
        half_life_days=ck.get(t, "half_life_days", name, "float", None, gt=0),
        half_life_source=ck.get(t, "half_life_source", name, "str", ""),
        weight_exponent_cl=ck.get(t, "weight_exponent_cl", name, "float", 0.0, ge=0, le=2),
        weight_exponent_v=ck.get(t, "weight_exponent_v", name, "float", 0.0, ge=0, le=2),
        max_single_dose_mg=ck.get(t, "max_single_dose_mg", name, "float", math.inf, gt=0),
        toxicity=ck.get(t, "toxicity", name, "str", ""),
        amount_unit=ck.get(t, "amount_unit", name, "str", "mg", choices=AMOUNT_UNITS),
        marrow_chain=ck.get(t, "marrow_chain", name, "int", 0, ge=0, le=20),
    )
    if kw["half_life_source"] is not None and not kw["half_life_source"].strip():
        ck.error(f"{name}.half_life_source", "give the half-life's source")
    refs = t.get("references", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        ck.error(f"{name}.references", f"{refs!r} must be a list of strings")
        refs = []
    params, shared = _pk(ck, name, t.get("pk", {}), ref_weight)
    if route == "iv" and "ka" in params:
        ck.error(f"{name}.pk.ka", "an absorption rate is for oral or sc drugs; this one is iv")
    # the names the pk table gives, parsed or not (a bad V1 is its own error, not also an
    # "eta_correlation ... 'V1' is not allowed")
    pk_raw = t.get("pk", {})
    named = tuple(pk_raw) if isinstance(pk_raw, dict) else params.names
    if isinstance(pk_raw, dict):
        _check_structure(ck, name, route, kw["marrow_chain"], named)
    sites = {"central", "effect"} if "ke0" in named else {"central"}
    if kw["marrow_chain"] != 0 or "mtt_marrow" in named:  # (a missing half: its own error)
        sites.add("marrow")
    effects = _effects(ck, name, t.get("effects", []), model, kw["mw"], sites)
    kw["eta_correlation"] = _eta_correlation(ck, name, t.get("eta_correlation", []), named)
    scaled: tuple | None | bool = None  # False: given, but not a valid list
    if "weight_scaled" in t:
        ws = t["weight_scaled"]
        allowed = [k for k in ("CL", "Q2", "Q3", "V1", "V2", "V3") if k in named]
        if not (isinstance(ws, list) and all(k in allowed for k in ws) and len(set(ws)) == len(ws)):
            ck.error(
                f"{name}.weight_scaled",
                f"{ws!r}: a list of distinct PK parameters of this drug that weight scales, "
                f"among {allowed}",
            )
            scaled = False
        else:
            kw["weight_scaled"] = scaled = tuple(ws)
    if isinstance(pk_raw, dict) and scaled is not False:
        _check_weight_scaling(ck, name, kw, scaled, pk_raw)
    if len(ck.errors) > n_err:
        return None
    try:
        drug = Drug(
            name=name, route=route, params=params, effects=effects, clinical_dose="",
            ref_weight=ref_weight, references=tuple(refs), shared_eta=shared, **kw,
        )  # fmt: skip
    except ValueError as e:
        ck.error(name, str(e))
        return None
    drug = _with_clinical_dose(ck, drug, t.get("clinical_dose"), parse_regimen)
    if drug is not None:
        _check_half_life(ck, drug)
    return drug


def _check_structure(ck: Checker, name: str, route, chain, named) -> None:
    """The compartments the PK table must give together (what `Drug` checks, named here by
    field so that they are listed with every other bad field): Q2 with V2, Q3 with V3, ka for
    a depot route, mtt_marrow with marrow_chain."""
    for a, b in (("Q2", "V2"), ("Q3", "V3")):
        if (a in named) != (b in named):
            have, miss = (a, b) if a in named else (b, a)
            ck.error(
                f"{name}.pk.{miss}",
                f"required key is missing: {a} and {b} go together (a peripheral compartment's "
                f"clearance and volume); {have} is given",
            )
    if route in DEPOT_ROUTES and "ka" not in named:
        ck.error(
            f"{name}.pk.ka",
            f"required key is missing: {route} drugs need an absorption rate 'ka' (route = "
            f"{route!r}; iv drugs have none)",
        )
    if chain is None:  # (a bad marrow_chain: its own error)
        return
    if chain > 0 and "mtt_marrow" not in named:
        ck.error(
            f"{name}.pk.mtt_marrow",
            f"required key is missing: marrow_chain ({chain}) and the PK parameter mtt_marrow "
            "go together (the delay chain's mean transit time)",
        )
    elif chain == 0 and "mtt_marrow" in named:
        ck.error(
            f"{name}.marrow_chain",
            "required key is missing: the PK parameter mtt_marrow is given, and marrow_chain "
            "(the number of transit compartments of the delay chain, 1-20) and mtt_marrow go "
            "together",
        )


def _check_weight_scaling(ck: Checker, name: str, kw: dict, scaled, pk_raw: dict) -> None:
    """Weight settings that contradict each other.  `Drug.individual` multiplies each listed
    parameter (``weight_scaled``; None: every clearance and volume) by ``(WT /
    ref_weight)**exponent``, ``weight_exponent_cl`` for CL, Q2, Q3 and ``weight_exponent_v``
    for V1-V3; a per-kg unit only gives the value at ``ref_weight`` (value x ref_weight)."""
    for field, members, word in (
        ("weight_exponent_cl", WEIGHT_CL, "clearances"),
        ("weight_exponent_v", WEIGHT_V, "volumes"),
    ):
        a = kw[field]
        if a is None:  # (a bad exponent: its own error)
            continue
        have = [k for k in members if k in pk_raw]
        if scaled is not None:
            listed = [k for k in scaled if k in members]
            if a == 0 and listed:
                ck.error(
                    f"{name}.weight_scaled",
                    f"{list(scaled)!r} lists {', '.join(listed)}, but {field} is 0 (no weight "
                    f"effect); allowed: {field} > 0, or weight_scaled without {', '.join(listed)}",
                )
            elif a > 0 and not listed:
                ck.error(
                    f"{name}.{field}",
                    f"{a:g}, but weight_scaled {list(scaled)!r} lists none of the drug's {word} "
                    f"({', '.join(have)}), so it scales nothing; allowed: 0, or list the {word} "
                    "it scales in weight_scaled",
                )
        for k in have:
            spec = pk_raw[k]
            unit = spec.get("unit") if isinstance(spec, dict) else None
            if not (isinstance(unit, str) and unit.endswith("/kg")):
                continue
            if a == 0:
                why = f"{field} is 0"
            elif scaled is not None and k not in scaled:
                why = f"weight_scaled {list(scaled)!r} leaves {k} out"
            else:
                continue
            ck.error(
                f"{name}.pk.{k}.unit",
                f"{unit!r} is per kg, but {why}: {k} would be the same at every weight; "
                f"allowed: a per-kg unit with {field} > 0 (1: proportional to weight) and "
                f"{k} weight-scaled, or a unit not per kg",
            )


def _pk(ck: Checker, name: str, raw, ref_weight):
    path = f"{name}.pk"
    t = ck.table(raw, path, set(PK_UNITS), {"CL", "V1"})
    rows, shared = [], []
    for key, spec in t.items():
        if key not in PK_UNITS:
            continue
        p = f"{path}.{key}"
        want, units, meaning = PK_UNITS[key]
        s = ck.table(spec, p, _PK_KEYS, {"value", "unit", "source"})
        value = ck.get(s, "value", p, "float", None, gt=0)
        unit = ck.get(s, "unit", p, "str", None, choices=tuple(units))
        cv = ck.get(s, "cv", p, "float", 0.0, ge=0)
        if cv is not None and cv > MAX_CV:
            ck.error(f"{p}.cv", f"{cv:g}: a CV is a fraction (0.36 for 36%); allowed 0-{MAX_CV:g}")
            cv = None
        src = ck.get(s, "source", p, "str", "")
        driver = ck.get(
            s,
            "shared_eta",
            p,
            "str",
            None,
            choices=tuple(k for k in t if k in PK_UNITS and k != key),
        )
        if driver is not None:
            shared.append((key, driver))
        if src is not None and "source" in s and not src.strip():
            ck.error(f"{p}.source", "give a source, or 'assumption: why'")
        if value is None or unit is None or cv is None or ref_weight is None or not src.strip():
            continue
        v = value * units[unit] * (ref_weight if unit.endswith("/kg") else 1.0)
        conv = "" if unit == want else f" (given as {value:g} {unit})"
        desc = ck.get(s, "description", p, "str", meaning) or meaning
        rows.append((key, v, want, cv, src + conv, desc))
    try:
        return pk_table(rows), tuple(shared)
    except ValueError as e:
        ck.error(path, str(e))
        return pk_table([]), ()


def _eta_correlation(ck: Checker, name: str, raw, names) -> tuple:
    path = f"{name}.eta_correlation"
    if not isinstance(raw, list):
        ck.error(path, f"expected a list of {{ a, b, rho }} tables, got {raw!r}")
        return ()
    out = []
    for i, e in enumerate(raw):
        p = f"{path}[{i}]"
        t = ck.table(e, p, {"a", "b", "rho", "source"}, {"a", "b", "rho", "source"})
        src = ck.get(t, "source", p, "str", "")
        if src is not None and "source" in t and not src.strip():
            ck.error(f"{p}.source", "give a source, or 'assumption: why'")
        a = ck.get(t, "a", p, "str", None, choices=tuple(names))
        b = ck.get(t, "b", p, "str", None, choices=tuple(names))
        rho = ck.get(t, "rho", p, "float", None, gt=-1, lt=1)
        if None not in (a, b, rho):
            out.append((a, b, rho))
    return tuple(out)


def _effects(ck: Checker, name: str, raw, model, mw, sites=tuple(SITES)):
    path = f"{name}.effects"
    if not isinstance(raw, list):
        ck.error(path, f"expected [[{name}.effects]] tables, got {raw!r}")
        return ()
    channels = model.effect_channels
    out = []
    seen: dict[tuple, int] = {}  # (channel, site) -> the first effect's index
    for i, e in enumerate(raw):
        p = f"{path}[{i}]"
        t = ck.table(e, p, _EFFECT_KEYS, {"channel", "source"})
        channel = ck.get(t, "channel", p, "str", None, choices=tuple(channels))
        kind = ck.get(t, "kind", p, "str", None, choices=EFFECT_KINDS)
        fraction = channel is not None and channels[channel][0] == "emax"
        if channel is not None and kind is None:
            kind = channels[channel][0]  # the channel's own kind unless told
        elif fraction and kind != "emax":
            # a fraction channel (combined by Bliss independence) takes emax effects only; an
            # additive channel takes either form (dacarbazine's myelotoxicity is an Emax curve)
            ck.error(f"{p}.kind", f"{kind!r}: channel {channel!r} is a fraction in [0, 1] and "
                                  "takes emax effects")  # fmt: skip
        site = ck.get(t, "site", p, "str", "central", choices=SITES)
        if site is not None and site not in sites:
            ck.error(
                f"{p}.site",
                f"{site!r}: the {channel!r} effect acts at site {site!r}, which this drug does "
                f"not have (its sites: {', '.join(s for s in SITES if s in sites)}; 'effect' "
                "needs pk.ke0, 'marrow' needs marrow_chain and pk.mtt_marrow)",
            )
            site = None
        if channel is not None and site is not None:
            j = seen.setdefault((channel, site), i)
            if j != i:
                ck.error(
                    p,
                    f"{path}[{j}] and {path}[{i}] both act on channel {channel!r} at site "
                    f"{site!r} (the simulator would apply both, doubling the effect); allowed: "
                    "one effect per channel and site: merge them into one",
                )
                channel = None
        src = ck.get(t, "source", p, "str", "")
        if src is not None and "source" in t and not src.strip():
            ck.error(f"{p}.source", "give a source, or 'assumption: why'")
        kw = {}
        if kind == "emax":
            if "slope" in t:
                ck.error(f"{p}.slope", "an emax effect has ec50 (and emax, hill), not slope")
            if ("ec50" in t) == ("ec50_nM" in t):
                ck.error(p, "give ec50 (mg/L) or ec50_nM (converted with the drug's mw), one")
            elif "ec50" in t:
                kw["ec50"] = ck.get(t, "ec50", p, "float", None, gt=0)
            else:
                nm = ck.get(t, "ec50_nM", p, "float", None, gt=0)
                if nm is not None and (mw is None or not math.isfinite(mw)):
                    ck.error(f"{p}.ec50_nM", "converting nM needs the drug's mw (g/mol)")
                elif nm is not None:
                    kw["ec50"] = nm * mw * 1e-6  # nM x g/mol -> mg/L
            kw["emax"] = ck.get(t, "emax", p, "float", 1.0, gt=0, le=1 if fraction else None)
            kw["hill"] = ck.get(t, "hill", p, "float", 1.0, gt=0)
            if kw["hill"] is not None and kw["hill"] > HILL_MAX:
                ck.error(
                    f"{p}.hill",
                    f"{kw['hill']:g}: allowed 0 < hill <= {HILL_MAX:g} (a steeper curve is an "
                    "on/off switch at ec50, not an exposure-response fitted to clinical data)",
                )
                kw["hill"] = None
        elif kind == "linear":
            for k in ("ec50", "ec50_nM", "emax", "hill"):
                if k in t:
                    ck.error(f"{p}.{k}", "a linear effect has slope (L/mg) only")
            if "slope" not in t:
                what = "kind = 'linear'" if "kind" in t else f"channel {channel!r} is linear"
                ck.error(
                    f"{p}.slope",
                    f"required key is missing: a linear effect ({what}) is slope x "
                    "concentration; give slope (L/mg, a number >= 0)",
                )
            kw["slope"] = ck.get(t, "slope", p, "float", None, ge=0)
        bad = channel is None or kind is None or site is None or not src
        if bad or any(v is None for v in kw.values()):
            continue
        out.append(Effect(channel, kind, site=site, source=src, **kw))
    return tuple(out)


def _with_clinical_dose(ck: Checker, drug: Drug, text, parse_regimen) -> Drug | None:
    """The drug with its standard regimen, parsed with the drug itself in the catalogue."""
    import dataclasses

    from vcohort.drugs import CATALOGUE

    p = f"{drug.name}.clinical_dose"
    if not isinstance(text, str):
        ck.error(p, f"expected a regimen string like '{drug.name} 200 mg every 21 d'")
        return None
    cat = {**CATALOGUE, drug.name: drug}
    try:
        reg = parse_regimen(text, cat)
    except ValueError as e:
        ck.error(p, str(e))
        return None
    if reg.drug != drug.name:
        ck.error(p, f"{text!r} doses {reg.drug}, not {drug.name}")
        return None
    from vcohort.dosing import above_label_maximum

    if (note := above_label_maximum(reg, factor=1.0)) is not None:  # the file contradicts itself
        ck.error(p, note.replace(" (mg meant for mg/kg?)", "") + "; allowed: at most that")
        return None
    return dataclasses.replace(drug, clinical_dose=text)


def _check_half_life(ck: Checker, drug: Drug) -> None:
    """The PK's terminal half-life against the stated one (catches a unit slip)."""
    got = drug.terminal_half_life()
    want = drug.half_life_days
    if abs(got / want - 1.0) > HALF_LIFE_TOLERANCE:
        ck.error(
            f"{drug.name}.half_life_days",
            f"{want:g} d, but the PK parameters give a terminal half-life of {got:.4g} d "
            f"(allowed: within {HALF_LIFE_TOLERANCE:.0%}); check the units of CL, V1, Q2, V2",
        )


def drug_files_field(ck: Checker, raw, base_dir: Path | None, path: str = "drug_files") -> dict:
    """An experiment file's ``drug_files`` (a path or a list of paths, relative to the file):
    load and register each, recording errors in ``ck``.  Returns ``{path as written: {name:
    table}}``, the definitions as read, for the run's provenance (and a batch's fingerprint:
    an edited drug file is a changed run, another working directory is not)."""
    if raw is None:
        return {}
    files = [raw] if isinstance(raw, str) else raw
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        ck.error(path, f"{raw!r}: expected a drug file's path or a list of them")
        return {}
    out = {}
    for i, f in enumerate(files):
        p = Path(f)
        if base_dir is not None and not p.is_absolute():
            p = base_dir / p
        tables = None
        try:
            tables = read_toml(p, "drug file")
            out[f] = _use_file(p, experiment=True, tables=tables)[1]
        except ValueError as e:
            ck.error(f"{path}[{i}]", str(e))
            if isinstance(tables, dict):
                # the experiment is refused for this file already: its drugs count as the
                # experiment's own, so that an arm giving one (defined by another experiment
                # of the batch) is not also called borrowed (`experiment_drugs_problem`)
                out[f] = tables
    return out

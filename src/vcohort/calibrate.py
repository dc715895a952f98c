"""Calibration: select virtual patients from a plausible pool to match clinical targets.

Method (Allen, Rieger & Musante 2016, CPT Pharmacometrics Syst Pharmacol 5:140): a pool patient
is included with probability ``min(1, scale · target density / pool density)`` of its observables,
one scale factor chosen to minimise the summed Kolmogorov–Smirnov distance between the selected
observables and the targets.  Observables here: responder (RECIST CR/PR under the reference arm),
progression-free at 6 months (no PD assessment at or before day 182.625), and the baseline sum of
diameters (continuous).

Target joint distribution.  The trials report only marginals (ORR, 6-month PFS) and the
diameter distribution.  **Assumption:** the target joint is the one closest to the pool's joint
(Kullback–Leibler) with those marginals, found by iterative proportional fitting (raking,
Deming & Stephan 1940) on responder × PF6 × diameter bin (equal-probability bins of the target
distribution in log space).  Its solution is multiplicative, so the density ratio factorises:
``ratio = cell factor(responder, PF6) × diameter factor(bin)``.

Transferable rule.  `CalibrationRule` holds the arm, targets, target cell probabilities and the
density-ratio function; it is saved as JSON and applied to a **fresh** pool (`apply_rule`):
simulate the pool under the reference arm, compute the observables, select.  `select` makes a
cohort of exactly ``n``: a quota per cell (largest remainder: first of ``n × ORR`` responders,
then of each group between PF6 and progressed, so the responders are ``n × ORR`` rounded) and,
within a cell, fixed-size sampling with inclusion probability proportional to the diameter
factor (systematic πps sampling on a random order, Madow 1949; take-all units capped at 1), so
ORR is reproduced to rounding whenever each cell of the pool is large enough.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from vcohort.endpoints import MONTH_DAYS
from vcohort.population import load_population
from vcohort.selection import ks_distance, pps_fixed, quotas, rake

LANDMARK_DAYS = 6 * MONTH_DAYS  # 6 months = 365.25 / 2 days, as the trial's landmark PFS
# diameter bins of a fitted rule (`fit_rule`), and the smallest plausible pool that fits one
# (two patients a bin; assumption: fewer leaves a bin's density ratio set by one patient)
N_BINS = 10
MIN_FIT_POOL = 2 * N_BINS
# how far a rule's cell probabilities may put its ORR or PFS6 from its targets: `fit_rule`'s
# raking stops once every margin is within 1e-5 (its ``accept``), and at the edge of the range
# (PFS6 = ORR, a structural zero) a fitted rule ends 5e-6 off.  assumption: 1e-4 leaves room
# for that and for a rule.json edited by hand, and still catches a real contradiction
CELL_TARGET_TOL = 1e-4
CELLS = (
    "responder & PF6",
    "responder & progressed",
    "non-responder & PF6",
    "non-responder & progressed",
)
_B = load_population().covariates["baseline_diameter_mm"]  # the default preset
_BASE = (_B.median, _B.cv, _B.lower, _B.upper)


def _is_number(v) -> bool:
    """A real number (numpy scalars too), not a bool or a text."""
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _is_whole(v) -> bool:
    return _is_number(v) and math.isfinite(v) and v == int(v)


@dataclass(frozen=True)
class Targets:
    """Clinical targets for the reference arm.

    Attributes:
        orr: objective response rate (CR+PR), in [0, 1].
        pfs6: fraction progression-free at 6 months, in [0, 1], or None (then the pool's
            PF6 given response is kept, the KL-closest joint with only the ORR marginal).
        diameter_median_mm, diameter_cv, diameter_bounds_mm: baseline sum of diameters, a
            log-normal truncated to the bounds (default: the `default` population preset, median
            86 mm as in Ahamadi 2017; that preset *clips* its draws to the bounds, so a pool
            holds a few patients exactly at a bound, e.g. 0.4% at 300 mm, where the target has
            none; the K–S distance counts them as ties).  A lower bound of 0: none.
        source: citation of the figures.
    """

    orr: float
    pfs6: float | None = None
    diameter_median_mm: float = _BASE[0]
    diameter_cv: float = _BASE[1]
    diameter_bounds_mm: tuple[float, float] = (_BASE[2], _BASE[3])
    source: str = ""

    def __post_init__(self):
        for name in ("orr", "pfs6"):
            v = getattr(self, name)
            if v is None and name == "pfs6":
                continue
            ok = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            if not ok or not math.isfinite(v) or not 0.0 <= v <= 1.0:
                pct = ok and math.isfinite(v) and 2.0 <= v <= 100.0  # a percentage typed
                hint = f" ({v:g}% is {v / 100:g})" if pct else ""
                raise ValueError(f"target {name}={v!r} must be a fraction in [0, 1]{hint}")
            object.__setattr__(self, name, float(v))  # plain floats: the rule is JSON
        for name in ("diameter_median_mm", "diameter_cv"):
            v = getattr(self, name)
            if not (_is_number(v) and math.isfinite(v) and v > 0):
                raise ValueError(f"target {name}={v!r} must be a finite number > 0")
            object.__setattr__(self, name, float(v))
        b = self.diameter_bounds_mm
        if isinstance(b, str) or not hasattr(b, "__len__") or len(b) != 2:
            raise ValueError(f"target diameter_bounds_mm={b!r} must be (lower, upper) in mm")
        lo, hi = b
        ok = _is_number(lo) and _is_number(hi) and math.isfinite(hi)
        if not (ok and 0 <= lo < self.diameter_median_mm < hi):
            raise ValueError(
                f"diameter_bounds_mm={b!r} must satisfy "
                f"0 <= lower < median ({self.diameter_median_mm}) < upper, upper finite"
            )
        object.__setattr__(self, "diameter_bounds_mm", (float(lo), float(hi)))

    def diameter_cdf(self, x) -> np.ndarray:
        """CDF of the target baseline diameter (truncated log-normal) at ``x`` mm."""
        from scipy.stats import norm

        s = math.sqrt(math.log1p(self.diameter_cv**2))
        z = lambda v: (np.log(np.maximum(v, 1e-300)) - math.log(self.diameter_median_mm)) / s  # noqa: E731
        lo, hi = (norm.cdf(z(b)) for b in self.diameter_bounds_mm)
        return np.clip((norm.cdf(z(np.asarray(x, dtype=float))) - lo) / (hi - lo), 0.0, 1.0)

    def diameter_quantiles(self, q) -> np.ndarray:
        from scipy.stats import norm

        s = math.sqrt(math.log1p(self.diameter_cv**2))
        lo, hi = (
            norm.cdf((math.log(b) - math.log(self.diameter_median_mm)) / s) if b > 0 else 0.0
            for b in self.diameter_bounds_mm
        )
        return self.diameter_median_mm * np.exp(s * norm.ppf(lo + np.asarray(q) * (hi - lo)))


# name: (reference arm regimen, targets).  MODEL.md "Calibration targets".
PRESETS = {
    "keynote-006": (
        "pembrolizumab 10 mg/kg q3w",
        Targets(0.329, 0.464, source="KEYNOTE-006 pembrolizumab q3w, Robert et al. NEJM 2015"),
    ),
    "keynote-002": (
        "pembrolizumab 2 mg/kg q3w",
        Targets(
            0.21,
            0.34,
            source="KEYNOTE-002 pembrolizumab 2 mg/kg q3w, Ribas et al. Lancet Oncol 2015",
        ),
    ),
}


@dataclass(frozen=True)
class CalibrationRule:
    """A fitted, transferable selection rule (JSON via `save` / `load`).

    ``density_ratio`` of a patient = ``cell_factor[cell] × diameter_factor[bin]``, where ``bin``
    is found with ``log_edges`` (natural log of mm, inner edges only); its pool mean is 1 on
    the fitting pool.  ``scale`` is the Allen scale factor; ``expected_yield`` the expected
    fraction of a pool that Allen selection keeps at that scale.
    """

    arm: str
    days: int
    targets: Targets
    cell_probs: tuple[float, float, float, float]
    cell_factor: tuple[float, float, float, float]
    log_edges: tuple[float, ...]
    diameter_factor: tuple[float, ...]
    scale: float
    expected_yield: float
    # how the reference arm's responses were scored (`assessment_options`: the RECIST schedule,
    # confirmation, SD interval, CR floor, censoring) and simulated (step ``dt``): a rule
    # selects by the same definition wherever it is applied
    assessment: dict = field(default_factory=dict)
    dt: float = 0.1
    precision: str = "float32"
    fit: dict = field(default_factory=dict)
    # the population the fitting pool was drawn from (`Population.identity`; empty in rules
    # written before it was recorded): applied to another, the density ratios transfer as
    # Allen et al. intend, but the user is told (`population_note`)
    population: dict = field(default_factory=dict)
    # days of immune run-in of the fitting pool (`vcohort.cohort.make_cohort`; None in rules
    # written before it was recorded): the run-in sets the baseline states the rule's density
    # ratios were fitted on, so a pool with another is refused (`check_runin`)
    runin_days: int | None = None

    def __post_init__(self):
        """Validate every field (a rule.json may be edited or corrupted), naming the field, its
        value and what is allowed; the number sequences become tuples of floats."""
        object.__setattr__(self, "assessment", assessment_options(self.assessment))
        if not isinstance(self.arm, str) or not self.arm.strip():
            raise ValueError(f"rule arm={self.arm!r} must be a regimen text")
        if not (_is_whole(self.days) and self.days >= 1):
            raise ValueError(f"rule days={self.days!r} must be a whole number of days >= 1")
        object.__setattr__(self, "days", int(self.days))
        if not isinstance(self.targets, Targets):
            raise ValueError(f"rule targets={self.targets!r} must be calibration Targets")
        for name, size in (("cell_probs", 4), ("cell_factor", 4), ("log_edges", None)):
            _set_floats(self, name, size, lo=None if name == "log_edges" else 0.0)
        _set_floats(self, "diameter_factor", len(self.log_edges) + 1, lo=0.0)
        p = self.cell_probs
        if abs(math.fsum(p) - 1.0) > 1e-9:
            raise ValueError(
                f"rule cell_probs={list(p)} sum to {math.fsum(p)!r}; allowed: probabilities of "
                f"the cells {list(CELLS)} that sum to 1 (within 1e-9)"
            )
        # the selection's quotas come from cell_probs, while the report quotes the targets:
        # a fitted rule has ORR = P(cells 0, 1) and PFS6 = P(cells 0, 2) to round-off
        sums = {"orr": p[0] + p[1], "pfs6": p[0] + p[2]}
        for name, got in sums.items():
            want = getattr(self.targets, name)
            if want is not None and abs(got - want) > CELL_TARGET_TOL:
                cells = "responder cells 0 and 1" if name == "orr" else "PF6 cells 0 and 2"
                raise ValueError(
                    f"rule cell_probs={list(p)}: its {cells} sum to {got:.6g}, but targets."
                    f"{name}={want!r}; allowed: cell_probs whose {name.upper()} matches the "
                    f"target within {CELL_TARGET_TOL:g} (a rule as `vcohort calibrate` wrote it)"
                )
        e = self.log_edges
        if any(b <= a for a, b in zip(e, e[1:], strict=False)):
            raise ValueError(
                f"rule log_edges={list(e)} must increase strictly (inner edges of the "
                f"diameter bins, ln mm)"
            )
        if not any(self.diameter_factor):
            raise ValueError(
                f"rule diameter_factor={list(self.diameter_factor)}: at least one must be > 0"
            )
        for name, hi in (("scale", math.inf), ("expected_yield", 1.0)):
            v = getattr(self, name)
            if not (_is_number(v) and math.isfinite(v) and 0 < v <= hi):
                allowed = "a finite number > 0" if hi == math.inf else "a fraction in (0, 1]"
                raise ValueError(f"rule {name}={v!r}; allowed: {allowed}")
            object.__setattr__(self, name, float(v))
        from vcohort.simulate import check_dt

        if not _is_number(self.dt):
            raise ValueError(f"rule dt={self.dt!r} must be a number of days")
        object.__setattr__(self, "dt", float(self.dt))
        try:
            check_dt(self.dt)
        except ValueError as err:
            raise ValueError(f"rule {err}") from None
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"rule precision={self.precision!r}; allowed: float32, float64")
        for name in ("fit", "population"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"rule {name}={getattr(self, name)!r} must be a table")
        r = self.runin_days
        if r is not None and not (_is_whole(r) and r >= 0):
            raise ValueError(f"rule runin_days={r!r} must be a whole number of days >= 0, or null")

    def density_ratio(self, cell, diameter_mm) -> np.ndarray:
        b = np.searchsorted(np.asarray(self.log_edges), np.log(np.asarray(diameter_mm)))
        return np.asarray(self.cell_factor)[np.asarray(cell)] * np.asarray(self.diameter_factor)[b]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"]["diameter_bounds_mm"] = list(self.targets.diameter_bounds_mm)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CalibrationRule:
        import dataclasses

        known = {f.name for f in dataclasses.fields(cls)} | {"assess_every"}
        if not isinstance(d, dict) or "targets" not in d or set(d) - known:
            extra = sorted(set(d) - known) if isinstance(d, dict) else []
            raise ValueError(
                "not a calibration rule (a rule.json written by `vcohort calibrate`): "
                + (f"unknown keys {extra}; " if extra else "")
                + f"expected keys {sorted(known)}"
            )
        d = dict(d)
        if "assess_every" in d:  # a rule written before the full assessment was stored
            if "assessment" in d:
                raise ValueError("give assess_every (an old rule) or assessment, not both")
            d["assessment"] = {"assess_every": d.pop("assess_every")}
        t = d.pop("targets")
        if not isinstance(t, dict):
            raise ValueError(
                f"rule targets={t!r}; allowed: a table of orr, pfs6, diameter_median_mm, "
                f"diameter_cv, diameter_bounds_mm, source"
            )
        t = dict(t)
        unknown = sorted(set(t) - {f.name for f in dataclasses.fields(Targets)})
        if unknown:
            raise ValueError(
                f"rule targets: unknown keys {unknown}; allowed: "
                f"{[f.name for f in dataclasses.fields(Targets)]}"
            )
        if "orr" not in t:
            raise ValueError("rule targets: 'orr' is missing; allowed: a fraction in [0, 1]")
        if "diameter_bounds_mm" in t:
            b = t["diameter_bounds_mm"]
            if not (isinstance(b, list | tuple) and len(b) == 2 and all(map(_is_number, b))):
                raise ValueError(
                    f"rule targets.diameter_bounds_mm={b!r}; allowed: two numbers [low, high] (mm)"
                )
            t["diameter_bounds_mm"] = tuple(float(x) for x in b)
        tup = ("cell_probs", "cell_factor", "log_edges", "diameter_factor")
        return cls(targets=Targets(**t), **{k: tuple(v) if k in tup else v for k, v in d.items()})

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path) -> CalibrationRule:
        from vcohort.io import note_input

        note_input(path)  # an --out folder holding it is not replaced
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (ValueError, TypeError, KeyError) as e:  # JSON errors are ValueErrors
            raise ValueError(f"{path}: {e}") from None


def _set_floats(rule, name: str, size: int | None, lo: float | None) -> None:
    """Check ``rule.<name>``: ``size`` finite numbers (any count if None), each >= ``lo`` (when
    given); store them as a tuple of floats (the rule is JSON)."""
    v = getattr(rule, name)
    seq = not isinstance(v, str | bytes | dict) and hasattr(v, "__iter__")
    vals = list(v) if seq else None
    want = f"{size} " if size is not None else ""
    bound = f" >= {lo:g}" if lo is not None else ""
    if (
        vals is None
        or (size is not None and len(vals) != size)
        or not all(_is_number(x) and math.isfinite(x) for x in vals)
        or (lo is not None and any(x < lo for x in vals))
    ):
        extra = " (one per diameter bin: len(log_edges) + 1)" if name == "diameter_factor" else ""
        raise ValueError(
            f"rule {name}={v!r}; allowed: a list of {want}finite numbers{bound}{extra}"
        )
    object.__setattr__(rule, name, tuple(float(x) for x in vals))


def assessment_options(options: dict | None = None) -> dict:
    """Every RECIST option of `vcohort.endpoints.patient_endpoints` (``assess_every``,
    ``assess_first``, ``assess_days``, ``confirm_days``, ``sd_min_days``, ``cr_floor_mm``,
    ``censor_at``) in one canonical form, so that two definitions compare equal exactly when
    they score alike: defaults filled in, the first assessment made explicit, explicit days
    sorted without repeats (then the interval and first day, unused, are None), plain Python
    types (JSON).  Unknown names and values of the wrong kind are refused."""
    import inspect

    from vcohort.endpoints import CENSOR_AT, patient_endpoints

    if options is not None and not isinstance(options, dict):
        raise ValueError(f"assessment={options!r} must be a table of RECIST options")
    sig = inspect.signature(patient_endpoints).parameters
    names = [k for k, v in sig.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(names))
    if unknown:
        raise ValueError(f"assessment options {unknown} are unknown; allowed: {names}")
    out = {k: opts.get(k, sig[k].default) for k in names}

    def whole(name, v, lo):
        ok = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
        if not ok or not math.isfinite(v) or v != int(v) or v < lo:
            raise ValueError(f"assessment {name}={v!r} must be a whole number of days >= {lo}")
        return int(v)

    if out["assess_days"] is not None:
        days = out["assess_days"]
        if isinstance(days, str) or not hasattr(days, "__iter__"):
            raise ValueError(f"assessment assess_days={days!r} must be a list of whole days")
        out["assess_days"] = sorted({whole("assess_days", x, 1) for x in days})
        out["assess_every"] = out["assess_first"] = None  # unused with explicit days
    else:
        out["assess_every"] = whole("assess_every", out["assess_every"], 1)
        first = out["assess_first"]
        out["assess_first"] = (
            out["assess_every"] if first is None else whole("assess_first", first, 1)
        )
    out["confirm_days"] = whole("confirm_days", out["confirm_days"], 0)
    out["sd_min_days"] = whole("sd_min_days", out["sd_min_days"], 0)
    floor = out["cr_floor_mm"]
    if isinstance(floor, bool) or not isinstance(floor, int | float | np.number) or not floor > 0:
        raise ValueError(f"assessment cr_floor_mm={floor!r} must be a number > 0")
    out["cr_floor_mm"] = float(floor)
    if out["censor_at"] not in CENSOR_AT:
        raise ValueError(f"assessment censor_at={out['censor_at']!r}; allowed: {list(CENSOR_AT)}")
    return out


def check_assessment(assessment: dict | None, days: int) -> None:
    """Raise, before compute, when the RECIST schedule cannot score the reference arm within its
    horizon ``days``: no assessment by the 6-month landmark (every patient would count as
    progression-free at 6 months), or no second look far enough after the first to confirm a
    response (with ``confirm_days``; no patient would respond)."""
    from vcohort.endpoints import assessment_days

    a = assessment_options(assessment)
    seen = assessment_days(int(days), a["assess_every"], a["assess_first"], a["assess_days"])
    if not seen.size or seen[0] > LANDMARK_DAYS:
        where = (
            f"the first RECIST assessment within the {days}-day reference arm is on day "
            f"{int(seen[0])}"
            if seen.size
            else f"no RECIST assessment falls within the {days}-day reference arm (the first is "
            f"asked for day {a['assess_days'][0] if a['assess_days'] else a['assess_first']})"
        )
        raise ValueError(
            f"{where}: it must come by the 6-month landmark (day {math.floor(LANDMARK_DAYS)}), "
            f"or no progression could be seen by it"
        )
    if a["confirm_days"] and seen[-1] - seen[0] < a["confirm_days"]:
        raise ValueError(
            f"confirm_days={a['confirm_days']}: the assessments on days "
            f"{', '.join(map(str, seen.tolist()))} of the {days}-day reference arm leave no "
            f"second look >= {a['confirm_days']} d after a first response, so no response could "
            f"be confirmed; lengthen the reference arm or lower confirm_days"
        )


def check_arm(arm: str, days: int, engine: str = "xla", dt: float = 0.1) -> None:
    """Raise before compute if the reference arm or horizon cannot give 6-month PFS, or the
    arm cannot run (`vcohort.runs.check_arms`)."""
    from vcohort.model import CSC_IMMUNE
    from vcohort.runs import check_arms, parse_arm

    parsed = parse_arm(f"reference={arm}")
    if not isinstance(days, int | np.integer) or days < LANDMARK_DAYS:
        raise ValueError(
            f"days={days!r}: the reference-arm horizon must be an integer >= "
            f"{math.ceil(LANDMARK_DAYS)} "
            "so that 6-month PFS is observed"
        )
    check_arms(CSC_IMMUNE, [parsed], int(days), dt=dt, engine=engine)


def observables(
    cohort,
    arm: str,
    days: int,
    *,
    assessment: dict | None = None,
    dt: float = 0.1,
    precision: str = "float32",
    model=None,
    engine: str = "xla",
) -> pd.DataFrame:
    """Simulate ``cohort`` under the reference ``arm`` (step ``dt``), score it with the RECIST
    ``assessment`` options (`assessment_options`) and return one row per patient:
    ``patient``, ``ok`` (solver status 0), ``responder``, ``pf6``, ``cell`` (index into
    `CELLS`), ``baseline_diameter_mm``.  ``.attrs["simulate_s"]`` holds the wall time."""
    from vcohort.model import CSC_IMMUNE
    from vcohort.runs import parse_arm, run_arms

    check_arm(arm, days, engine, dt)
    check_assessment(assessment, days)
    t0 = time.perf_counter()
    _, ep, _, _ = run_arms(
        CSC_IMMUNE if model is None else model,
        cohort,
        [parse_arm(f"reference={arm}")],
        days,
        dt=dt,
        save_every=days,
        precision=precision,
        progress=False,
        endpoint_options=assessment_options(assessment),
        engine=engine,
    )
    ok = ep["status"].to_numpy() == 0
    resp = ep["bor"].isin(["CR", "PR"]).to_numpy()
    event = ep["pfs_event"].to_numpy(dtype=bool, na_value=False)  # failed: NA ("ok" is False)
    pf6 = ~(event & (ep["pfs_days"].to_numpy() <= LANDMARK_DAYS))
    df = pd.DataFrame(
        {
            "patient": np.asarray(cohort.patient_id),
            "ok": ok,
            "responder": resp,
            "pf6": pf6,
            # -1: failed (responder/pf6 then mean nothing; every use filters on "ok")
            "cell": np.where(ok, 2 * (~resp).astype(int) + (~pf6).astype(int), -1),
            "baseline_diameter_mm": np.asarray(cohort.covariates["baseline_diameter_mm"], float),
        }
    )
    df.attrs["simulate_s"] = time.perf_counter() - t0
    return df


def _margins(pool: pd.DataFrame, dbin, n_bins: int, targets: Targets):
    """Raking margins: responder, PF6 (if targeted), diameter bin; label 0 = responder / PF6."""
    m = [((~pool["responder"].to_numpy(bool)).astype(int), [targets.orr, 1 - targets.orr])]
    if targets.pfs6 is not None:
        m.append(((~pool["pf6"].to_numpy(bool)).astype(int), [targets.pfs6, 1 - targets.pfs6]))
    return m + [(dbin, np.full(n_bins, 1.0 / n_bins))]


def _summed_ks(obs, sel, targets) -> float:
    s = obs[sel]
    d = ks_distance(s["baseline_diameter_mm"], targets.diameter_cdf)
    if len(s) == 0:
        return 3.0
    d += abs(s["responder"].mean() - targets.orr)
    if targets.pfs6 is not None:
        d += abs(s["pf6"].mean() - targets.pfs6)
    return d


def fit_rule(
    obs: pd.DataFrame,
    targets: Targets,
    *,
    arm: str,
    days: int,
    assessment: dict | None = None,
    dt: float = 0.1,
    precision: str = "float32",
    n_bins: int = N_BINS,
    seed: int = 0,
    replicates: int = 20,
    min_cell_count: int = 5,
) -> CalibrationRule:
    """Fit a `CalibrationRule` on the pool observables ``obs`` (from `observables`).

    The scale factor minimises the mean summed K–S distance (diameter K–S + |ΔORR| + |ΔPFS6|,
    the K–S distance of a binary observable) of Allen selection over ``replicates`` seeded draws,
    on a log grid from no clipping (scale = 1 / max ratio) to keeping everyone.

    Cells with fewer than ``min_cell_count`` pool patients get probability 0 (assumption: a
    cell this rare in the pool, e.g. responders progressing before 6 months, would be missing
    from fresh pools and make exact-size selection fail; raking gives its mass to the others).
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r} must be an integer >= 1")
    pool = obs[obs["ok"]].reset_index(drop=True)
    if len(pool) < 2 * n_bins:
        raise ValueError(f"pool has {len(pool)} plausible patients; need >= {2 * n_bins}")
    if not isinstance(min_cell_count, int) or min_cell_count < 0:
        raise ValueError(f"min_cell_count={min_cell_count!r} must be an integer >= 0")
    edges = np.log(targets.diameter_quantiles(np.arange(1, n_bins) / n_bins))
    counts = np.bincount(pool["cell"], minlength=4)
    rare = [c for c in range(4) if 0 < counts[c] < min_cell_count]
    keep = ~pool["cell"].isin(rare).to_numpy()
    _check_reachable(targets, counts, rare)
    kp = pool[keep]
    dbin = np.searchsorted(edges, np.log(kp["baseline_diameter_mm"].to_numpy()))
    resp, pf6 = kp["responder"].to_numpy(bool), kp["pf6"].to_numpy(bool)
    try:  # targets at the edge of what the pool allows (a structural zero) converge slowly:
        # accept shares within 1e-5 there (far below the 1/n a cohort resolves; ~10 s)
        f = rake(_margins(kp, dbin, n_bins, targets), max_iter=50_000, accept=1e-5)
    except ValueError as e:
        names = (
            "responder, PF6, diameter bin"
            if targets.pfs6 is not None
            else "responder, diameter bin"
        )
        raise ValueError(
            f"targets ORR={targets.orr}, PFS6={targets.pfs6} with the diameter distribution are "
            f"not reachable from this pool, or only at the edge of it (margins numbered from 0: "
            f"{names}): {e}"
        ) from e
    a, b, g = f[0], (f[1] if targets.pfs6 is not None else np.ones(2)), f[-1]
    w = np.zeros(len(pool))
    w[keep] = a[(~resp).astype(int)] * b[(~pf6).astype(int)] * g[dbin]
    norm = w.mean()  # density ratio has mean 1 over the plausible pool
    probs = np.bincount(pool["cell"], w, 4) / w.sum()
    counts = np.bincount(pool["cell"], minlength=4)  # a cell absent from the pool has no
    # patients to weight: its factor is 0 like a rare one's (it was a[.]*b[.], e.g. 10 for a
    # cell the target gives probability 0)
    cell_factor = (
        np.array([0.0 if c in rare or counts[c] == 0 else a[c // 2] * b[c % 2] for c in range(4)])
        / norm
    )
    ratio = w / norm
    rng = np.random.default_rng(seed)
    u = rng.random((replicates, len(pool)))
    grid = np.geomspace(1.0 / ratio.max(), 1.0 / max(ratio[ratio > 0].min(), 1e-12), 40)
    score = [
        np.mean([_summed_ks(pool, uu < np.minimum(1, s * ratio), targets) for uu in u])
        for s in grid
    ]
    best = int(np.argmin(score))
    scale = float(grid[best])
    return CalibrationRule(
        arm=arm,
        days=int(days),
        targets=targets,
        cell_probs=tuple(map(float, probs)),
        cell_factor=tuple(map(float, cell_factor)),
        log_edges=tuple(map(float, edges)),
        diameter_factor=tuple(map(float, g)),
        scale=scale,
        expected_yield=float(np.minimum(1, scale * ratio).mean()),
        assessment=assessment_options(assessment),
        dt=float(dt),
        precision=precision,
        fit={
            "pool": int(len(obs)),
            "plausible": int(len(pool)),
            "pool_cell_counts": counts.tolist(),
            "rare_cells_dropped": [CELLS[c] for c in rare],
            "summed_ks_at_scale": float(score[best]),
            "seed": int(seed),
        },
    )


def _check_reachable(targets: Targets, counts, rare) -> None:
    """Raise, naming the allowed range, when the cells the fit may use (present, not rare)
    cannot give the targets: ORR needs a responder cell (0 or 1) unless it is 0, and a
    non-responder cell unless it is 1; PFS6 lies between the smallest and largest share of
    progression-free patients those cells allow at that ORR."""
    use = [counts[c] > 0 and c not in rare for c in range(4)]
    orr, pfs6 = targets.orr, targets.pfs6
    resp_lo, resp_hi = (orr if not use[1] else 0.0), (orr if use[0] else 0.0)
    non_lo, non_hi = ((1 - orr) if not use[3] else 0.0), ((1 - orr) if use[2] else 0.0)
    problem = None
    if orr > 0 and not (use[0] or use[1]):
        problem = f"ORR={orr} needs responders, and the pool has none the fit may use"
    elif orr < 1 and not (use[2] or use[3]):
        problem = f"ORR={orr} needs non-responders, and the pool has none the fit may use"
    elif pfs6 is not None and not (resp_lo + non_lo - 1e-12 <= pfs6 <= resp_hi + non_hi + 1e-12):
        problem = (
            f"at ORR={orr} they allow 6-month PFS between {resp_lo + non_lo:.3g} and "
            f"{resp_hi + non_hi:.3g}, not {pfs6}"
        )
    if problem:
        cells = ", ".join(f"{n}: {int(k)}" for n, k in zip(CELLS, counts, strict=True))
        dropped = f"; dropped as rare: {', '.join(CELLS[c] for c in rare)}" if rare else ""
        raise ValueError(
            f"targets ORR={orr}, PFS6={pfs6} are not reachable from this pool ({cells}"
            f"{dropped}): {problem}; change the targets, or draw a larger pool"
        )


def check_fresh_pool(
    rule: CalibrationRule, seed: int, first_id: int, pool: int, fix: str | None = None
) -> None:
    """Refuse a pool that would share patients with the pool ``rule`` was fitted on (same
    seed, overlapping ids; replacements of implausible patients may draw up to ``10 pool + 64``
    ids): the rule's check would be in-sample.  Rules saved without the pool's ids pass."""
    f = rule.fit
    if "pool_seed" not in f or "pool_ids" not in f:
        return
    lo, hi = f["pool_ids"]
    last = first_id + 10 * pool + 64 - 1
    if seed == f["pool_seed"] and first_id <= hi and last >= lo:
        raise ValueError(
            f"seed {seed}, first id {first_id}: this pool would share patients with the pool "
            f"the rule was fitted on (seed {seed}, ids {lo}..{hi}), so applying it would be an "
            f"in-sample check; " + (fix or f"give --first-id {hi + 1} (or more) or another --seed")
        )


def select_allen(
    rule: CalibrationRule, obs: pd.DataFrame, *, seed: int = 0, pool_density: str = "this"
) -> np.ndarray:
    """Allen selection (random cohort size): keep each plausible patient with probability
    ``min(1, scale × target density / pool density)``.  Returns row positions in ``obs``.

    ``pool_density="this"`` (default) measures the cell frequencies on ``obs`` itself, the pool
    being selected from, so the rule transfers to a fresh pool; ``"fit"`` uses the fitting
    pool's density (the rule's stored ratio; exact only on that pool: a fresh pool whose ORR
    differs by sampling noise then shifts the selected ORR too).
    """
    if pool_density not in ("this", "fit"):
        raise ValueError(f"pool_density={pool_density!r} must be 'this' or 'fit'")
    ok = obs["ok"].to_numpy(bool)
    cell = obs["cell"].to_numpy()
    g = np.asarray(rule.diameter_factor)[
        np.searchsorted(np.asarray(rule.log_edges), np.log(obs["baseline_diameter_mm"]))
    ]
    if pool_density == "fit":
        ratio = np.asarray(rule.cell_factor)[cell] * g
    else:  # ratio = q_c / (pool share of c) × g / mean(g in c), mean 1 over the pool
        n_c = np.bincount(cell[ok], minlength=4)
        g_c = np.bincount(cell[ok], g[ok], minlength=4)
        f = np.divide(np.asarray(rule.cell_probs) * ok.sum(), g_c, out=np.zeros(4), where=g_c > 0)
        short = [CELLS[c] for c in range(4) if rule.cell_probs[c] > 0 and n_c[c] == 0]
        if short:
            raise ValueError(f"the pool has no patients in cells {short} that the rule needs")
        ratio = f[cell] * g
    u = np.random.default_rng(seed).random(len(obs))
    return np.flatnonzero(ok & (u < np.minimum(1.0, rule.scale * ratio)))


def select(rule: CalibrationRule, obs: pd.DataFrame, n: int, *, seed: int = 0) -> np.ndarray:
    """Exactly ``n`` patients: quota per cell, πps on the diameter factor within a cell.
    Returns row positions in ``obs``.  Raises (before selecting) if a cell is short, saying how
    large a pool is needed."""
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n={n!r} must be an integer >= 1")
    ok = obs["ok"].to_numpy(bool)
    cell = obs["cell"].to_numpy()
    need = quotas(int(n), rule.cell_probs, groups=((0, 1), (2, 3)))  # responders first
    n_resp, have_resp = int(need[:2].sum()), int((ok & (cell < 2)).sum())
    if n_resp > have_resp:
        raise ValueError(
            f"ORR={rule.targets.orr} needs {n_resp} responders among {n} patients, but the pool "
            f"of {len(obs)} has only {have_resp}; "
            + (
                f"use fewer patients or a pool of at least "
                f"{math.ceil(n_resp * len(obs) / have_resp)} patients"
                if have_resp
                else "no pool size can help while it has none: draw another pool (seed, "
                "first id) or check the targets and the arm"
            )
        )
    have = np.bincount(cell[ok], minlength=4)
    short = [c for c in range(4) if need[c] > have[c]]
    if short:
        size = len(obs)
        parts = []
        for c in short:
            est = (
                "none in this pool: no pool size can help; draw another pool or change the targets"
                if have[c] == 0
                else f"pool size needed ≈ {math.ceil(need[c] * size / have[c])}"
            )
            parts.append(f"{CELLS[c]!r}: need {need[c]}, pool has {have[c]} ({est})")
        raise ValueError(
            f"cannot select {n} patients with ORR={rule.targets.orr}, PFS6={rule.targets.pfs6} "
            f"from a pool of {size}: " + "; ".join(parts)
        )
    rng = np.random.default_rng(seed)
    diam = obs["baseline_diameter_mm"].to_numpy()
    out = []
    for c in range(4):
        rows = np.flatnonzero(ok & (cell == c))
        w = rule.density_ratio(np.full(rows.size, c), diam[rows])
        out.append(rows[pps_fixed(w, int(need[c]), rng)])
    return np.sort(np.concatenate(out))


def fit_report(rule: CalibrationRule, obs: pd.DataFrame, idx) -> dict:
    """Achieved ORR and PFS6, K–S statistic and p-value of baseline diameter vs the target,
    yield (selected / pool), cell counts, and ``pool_recommended``: the pool size at which Allen
    selection would give this many patients (``n / expected_yield``); smaller pools force
    take-all units in `select` and the diameter fit degrades."""
    from scipy.stats import kstest

    s = obs.iloc[np.asarray(idx, int)]
    ks = kstest(s["baseline_diameter_mm"].to_numpy(), rule.targets.diameter_cdf)
    return {
        "n": int(len(s)),
        "pool": int(len(obs)),
        "yield": len(s) / len(obs),
        "orr": float(s["responder"].mean()),
        "target_orr": rule.targets.orr,
        "pfs6": float(s["pf6"].mean()),
        "target_pfs6": rule.targets.pfs6,
        "ks_diameter": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "median_diameter_mm": float(s["baseline_diameter_mm"].median()),
        "cell_counts": dict(zip(CELLS, np.bincount(s["cell"], minlength=4).tolist(), strict=True)),
        "pool_orr": float(obs.loc[obs["ok"], "responder"].mean()),
        "pool_pfs6": float(obs.loc[obs["ok"], "pf6"].mean()),
        "pool_recommended": math.ceil(len(s) / rule.expected_yield),
    }


def check_feasible(n: int, pool_size: int, *, n_bins: int | None = N_BINS) -> None:
    """Cheap checks before any compute: sizes (``n_bins``: a rule with that many diameter bins
    is fitted on the pool, which then needs two patients a bin; None: a rule is applied)."""
    from vcohort.config import MAX_PATIENTS

    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"patients={n!r} must be an integer >= 1")
    if not isinstance(pool_size, int | np.integer) or pool_size < n:
        raise ValueError(f"pool={pool_size!r} must be an integer >= patients ({n})")
    if pool_size > MAX_PATIENTS:
        raise ValueError(f"pool={pool_size!r} must be <= {MAX_PATIENTS}")
    if n_bins is not None and pool_size < 2 * n_bins:
        raise ValueError(
            f"pool={pool_size!r}: fitting a rule needs a pool of >= {2 * n_bins} patients "
            f"(two per diameter bin, {n_bins} bins)"
        )


def check_runin(rule: CalibrationRule, runin_days: int | None, where: str = "runin_days") -> None:
    """Raise when the pool's immune run-in (``runin_days``; None: not known) is not the one
    the rule was fitted on (None in the rule: not recorded, nothing to compare)."""
    if rule.runin_days is None or runin_days is None or int(runin_days) == rule.runin_days:
        return
    raise ValueError(
        f"{where}={runin_days}: the rule was fitted on a pool with a {rule.runin_days}-day immune "
        f"run-in, which set the baseline states its density ratios select by; draw the pool "
        f"with runin_days={rule.runin_days}, or fit a rule on this run-in"
    )


def population_note(rule: CalibrationRule, population) -> str | None:
    """None when the rule was fitted on a pool drawn from ``population`` (a `Population`, or
    None: not known); else a sentence saying what differs, for the report and the terminal."""
    if population is None:
        return None
    pool = population.identity()
    if not rule.population:
        return (
            f"the rule does not record the population it was fitted on (written by an older "
            f"vcohort, or fitted without one); this pool is drawn from {pool['name']!r} "
            f"({pool['origin']})"
        )
    if rule.population.get("digest") == pool["digest"]:
        return None
    fitted = rule.population
    return (
        f"the rule was fitted on a pool drawn from population {fitted.get('name')!r} "
        f"({fitted.get('origin')}); this pool is drawn from {pool['name']!r} ({pool['origin']}), "
        f"which draws differently: its density ratios are applied as they are (Allen et al. "
        f"2016 transfer them), so compare the achieved ORR and PFS6 with the targets"
    )


def apply_rule(
    rule: CalibrationRule,
    cohort,
    n: int,
    *,
    seed: int = 0,
    model=None,
    engine: str = "xla",
    population=None,
    runin_days: int | None = None,
):
    """Simulate a fresh pool ``cohort`` under the rule's arm, select ``n`` patients.
    ``population`` (the `Population` the pool was drawn from, when known) is compared with the
    rule's: a difference is reported as ``population_note`` (not refused); ``runin_days``
    (the pool's immune run-in, when known) must be the rule's (`check_runin`).
    Returns (selected cohort, observables of the pool, report)."""
    check_feasible(n, len(cohort), n_bins=None)
    check_runin(rule, runin_days)
    check_arm(rule.arm, rule.days, engine, rule.dt)
    obs = observables(
        cohort,
        rule.arm,
        rule.days,
        assessment=rule.assessment,
        dt=rule.dt,
        precision=rule.precision,
        model=model,
        engine=engine,
    )
    idx = select(rule, obs, n, seed=seed)
    rep = fit_report(rule, obs, idx) | {"simulate_s": obs.attrs["simulate_s"]}
    note = population_note(rule, population)
    if note is not None:
        rep["population_note"] = note
    return cohort.subset(idx), obs, rep


def calibrate(
    cohort,
    targets: Targets,
    n: int,
    *,
    arm: str,
    days: int = 210,
    seed: int = 0,
    assessment: dict | None = None,
    dt: float = 0.1,
    precision: str = "float32",
    n_bins: int = N_BINS,
    model=None,
    engine: str = "xla",
    population=None,
    runin_days: int | None = None,
):
    """Fit a rule on the pool ``cohort`` and select ``n`` patients from it, responses scored
    with the RECIST ``assessment`` options (`assessment_options`; an experiment's own
    ``[assessment]``, so that patients are selected by the definition the trial reports) after
    simulating with step ``dt``.  ``population``: the `Population` the pool was drawn from,
    recorded in the rule (`Population.identity`), as is ``runin_days`` (the pool's immune
    run-in, when known).
    Returns (rule, selected cohort, observables, report)."""
    check_feasible(n, len(cohort), n_bins=n_bins)
    check_arm(arm, days, engine, dt)
    assessment = assessment_options(assessment)
    check_assessment(assessment, days)
    obs = observables(
        cohort, arm, days, assessment=assessment, dt=dt, precision=precision, model=model,
        engine=engine,
    )  # fmt: skip
    rule = fit_rule(
        obs, targets, arm=arm, days=days, assessment=assessment, dt=dt, precision=precision,
        n_bins=n_bins, seed=seed,
    )  # fmt: skip
    ids = np.asarray(cohort.patient_id)
    pool_ref = {"pool_seed": int(cohort.seed), "pool_ids": [int(ids.min()), int(ids.max())]}
    rule = replace(  # `check_fresh_pool` refuses this pool again
        rule,
        fit=rule.fit | pool_ref,
        population=population.identity() if population is not None else {},
        runin_days=None if runin_days is None else int(runin_days),
    )
    idx = select(rule, obs, n, seed=seed)
    rep = fit_report(rule, obs, idx) | {"simulate_s": obs.attrs["simulate_s"]}
    return rule, cohort.subset(idx), obs, rep

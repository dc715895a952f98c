"""Population presets: covariate distributions, PD-L1 prevalence, correlations, plausibility.

A preset is a TOML file (``src/vcohort/data/populations/<name>.toml`` ships with the package;
any other file can be given by path), so populations live in data, not code.  The default
preset reproduces the original defaults (median baseline sum of diameters 86 mm, Ahamadi 2017).

Correlations act on the standard-normal draws behind the log-normal parameters and covariates:
for the correlated names ``z_corr = L z`` with ``L`` the Cholesky factor of the correlation
matrix (names in order of first appearance, so the first name keeps its own draw).  The latent
PD-L1 variable is called ``pdl1``; a patient is PD-L1 positive when it exceeds the
``1 - prevalence`` quantile of N(0, 1).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from vcohort.config import Checker

PDL1_LATENT = "pdl1"


@dataclass(frozen=True)
class CovariateSpec:
    """A log-normal covariate: median, CV, clip bounds and source."""

    median: float
    cv: float
    lower: float
    upper: float
    source: str

    @property
    def omega(self) -> float:
        return math.sqrt(math.log1p(self.cv**2))


BOUNDS = ("truncate", "clip")  # how a parameter setting keeps draws within its bounds


@dataclass(frozen=True)
class ParamSpec:
    """A population's setting of a model parameter (or ``drug.PARAM`` PK parameter): its
    typical ``value`` and between-patient ``cv``, draws kept in ``[lower, upper]``, and the
    source of the change; a field left None keeps the model's (no bounds).

    ``bounds`` says how: ``truncate`` (the default) draws from the log-normal truncated to the
    bounds, each patient's standard-normal draw mapped through the truncated distribution's
    quantile function (so patients keep their order and no value piles up at a bound); ``clip``
    sets draws beyond a bound to the bound (a point mass there, with the median unchanged).

    ``value`` and ``cv`` parametrise the log-normal *before* the bounds act (its median and
    CV), so with bounds the patients' realised median and CV differ from them: truncating
    ``value`` 0.08, ``cv`` 0.8 to [0.016, 0.204] (the README's ``f_S0`` example; the bounds
    cut 1.1% of the log-normal below and 9.2% above) gives a median of 0.0745, a mean of
    0.0837 and a CV of 0.53 (computed from the truncated normal's moments); clipping keeps the
    median at 0.08, with a mean of 0.094 and a CV of 0.59.  For a target realised median or
    CV, choose ``value`` and ``cv`` for the bounded distribution.

    A PK parameter that shares a random effect (`vcohort.drug.Drug.shared_eta`: the driver or
    the parameter using its draw) may have only its ``value`` set: a ``cv`` other than the
    drug's or bounds would transform one of the two draws alone (refused before compute by
    `vcohort.cohort.draw_keys`)."""

    value: float | None
    cv: float | None
    lower: float | None
    upper: float | None
    source: str
    bounds: str | None = None

    @property
    def omega(self) -> float | None:
        return None if self.cv is None else math.sqrt(math.log1p(self.cv**2))

    def over(self, base: ParamSpec) -> ParamSpec:
        """This setting's fields over ``base``'s (fields left None keep ``base``'s)."""
        pick = lambda a, b: b if a is None else a  # noqa: E731
        return ParamSpec(
            pick(self.value, base.value),
            pick(self.cv, base.cv),
            pick(self.lower, base.lower),
            pick(self.upper, base.upper),
            self.source or base.source,
            pick(self.bounds, base.bounds),
        )


@dataclass(frozen=True)
class Correlation:
    """Correlation ``rho`` between the standard-normal draws of names ``a`` and ``b``."""

    a: str
    b: str
    rho: float
    source: str


@dataclass(frozen=True)
class Plausibility:
    """Bounds on an untreated screening run of ``screening_days`` from baseline.

    A patient is rejected when its solution is non-finite or negative, its tumour volume grows
    faster than one doubling per ``min_volume_doubling_days``, its diameter falls by more than
    ``max_shrinkage`` (a fraction of baseline), or its CSC fraction leaves ``csc_fraction``.
    """

    screening_days: int
    min_volume_doubling_days: float
    max_shrinkage: float
    csc_fraction: tuple[float, float]
    sources: dict


@dataclass(frozen=True)
class Population:
    """A virtual population preset (see the module docstring and ``default.toml``)."""

    name: str
    description: str
    covariates: dict  # name -> CovariateSpec
    pdl1_prevalence: float
    pdl1_source: str
    correlations: tuple[Correlation, ...]
    plausibility: Plausibility | None
    origin: str
    parameters: dict = field(default_factory=dict)  # name -> ParamSpec

    def correlated_names(self) -> list[str]:
        names: list[str] = []
        for c in self.correlations:
            for n in (c.a, c.b):
                if n not in names:
                    names.append(n)
        return names

    def correlation_matrix(self) -> tuple[list[str], np.ndarray]:
        """(names, R) with R validated as a positive-definite correlation matrix."""
        try:
            return correlation_matrix([(c.a, c.b, c.rho) for c in self.correlations])
        except ValueError as e:
            drug = [f"{c.a}–{c.b}" for c in self.correlations if c.source.startswith("drug ")]
            also = f" (with the drugs' own omega blocks: {', '.join(drug)})" if drug else ""
            raise ValueError(f"population {self.name!r}: {e}{also}") from None

    def identity(self) -> dict:
        """Name, origin and a digest of what the population draws from (covariates,
        correlations, PD-L1 prevalence, parameter settings, plausibility bounds; not its name,
        description, file path or citations), so that two populations that draw alike compare
        equal wherever they were read."""
        import hashlib
        import json

        def drawn(x):  # what the draws depend on: no names of files, no citations
            if isinstance(x, dict):
                skip = {"name", "description", "origin", "source", "sources"}
                return {k: drawn(v) for k, v in x.items() if k not in skip}
            return [drawn(v) for v in x] if isinstance(x, list | tuple) else x

        text = json.dumps(drawn(self.to_dict()), sort_keys=True, default=str)
        return {
            "name": self.name,
            "origin": self.origin,
            "digest": hashlib.sha256(text.encode()).hexdigest()[:16],
        }

    def to_dict(self) -> dict:
        """A plain dict (for manifests)."""
        d = {
            "name": self.name,
            "description": self.description,
            "origin": self.origin,
            "covariates": {k: vars(v) for k, v in self.covariates.items()},
            "pdl1": {"prevalence": self.pdl1_prevalence, "source": self.pdl1_source},
            "correlation": [vars(c) for c in self.correlations],
            "parameters": {k: vars(v) for k, v in self.parameters.items()},
        }
        if self.plausibility is not None:
            d["plausibility"] = vars(self.plausibility) | {
                "csc_fraction": list(self.plausibility.csc_fraction)
            }
        return d


def available_presets() -> list[str]:
    """Names of the presets shipped with the package."""
    root = resources.files("vcohort") / "data" / "populations"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_population(spec: str | Path | None = None) -> Population:
    """A preset by name (``"default"``) or a TOML file by path; None means ``"default"``."""
    spec = "default" if spec is None else spec
    text = str(spec)
    if text in available_presets():
        return population_from_dict(_preset(text), f"preset {text!r}")
    path = Path(text)
    if not path.is_file():
        raise ValueError(
            f"population {text!r} is neither a preset ({', '.join(available_presets())}) "
            f"nor an existing TOML file"
        )
    from vcohort.config import read_toml

    d = read_toml(path, "population file")
    pop = population_from_dict(d, str(path))
    if pop.name in available_presets() and d != _preset(pop.name):
        import warnings

        warnings.warn(
            f"population file {str(path)!r} differs from the preset {pop.name!r} but keeps "
            f"its name (name = {pop.name!r}): give it a name of its own, so that "
            f"manifests, reports and tables tell the two populations apart",
            stacklevel=2,
        )
    return pop


def _preset(name: str) -> dict:
    """The parsed TOML of a shipped preset."""
    res = resources.files("vcohort") / "data" / "populations" / f"{name}.toml"
    return tomllib.loads(res.read_text())


_COV_REQUIRED = {"weight_kg", "height_cm", "baseline_diameter_mm"}


def population_from_dict(d: dict, origin: str = "<dict>") -> Population:
    """Validate a parsed preset (see ``default.toml`` for the fields); all errors at once."""
    ck = Checker(f"population {origin}")
    d = ck.table(d, "", {"name", "description", "covariates", "pdl1", "correlation",
                         "plausibility", "parameters"}, {"name", "covariates", "pdl1"})  # fmt: skip
    name = ck.get(d, "name", "", "str", "")
    covs = {}
    ctab = d.get("covariates", {})
    if not isinstance(ctab, dict):
        ck.error("covariates", f"expected a table of covariates, got {ctab!r}")
        ctab = {}
    for k in sorted(_COV_REQUIRED - set(ctab)):
        ck.error(f"covariates.{k}", "required covariate is missing")
    for k, v in ctab.items():
        p = f"covariates.{k}"
        v = ck.table(v, p, {"median", "cv", "lower", "upper", "source"},
                     {"median", "cv", "lower", "upper", "source"})  # fmt: skip
        before = len(ck.errors)
        med = ck.get(v, "median", p, "float", 1.0, gt=0)
        cv = ck.get(v, "cv", p, "float", 0.0, ge=0)
        lo = ck.get(v, "lower", p, "float", 0.0, gt=0)
        hi = ck.get(v, "upper", p, "float", math.inf, gt=0)
        src = _source(ck, v, p)
        if len(ck.errors) > before:  # a bad value is reported; a default must not be compared
            pass
        elif lo > hi:
            ck.error(p, f"lower={lo} is above upper={hi}")
        elif not lo <= med <= hi:
            ck.error(p, f"median={med} must lie within [lower={lo}, upper={hi}]")
        covs[k] = CovariateSpec(med, cv, lo, hi, src)
    pd1 = ck.table(d.get("pdl1", {}), "pdl1", {"prevalence", "source"}, {"prevalence", "source"})
    prev = ck.get(pd1, "prevalence", "pdl1", "float", 0.5, ge=0, le=1)
    prev_src = _source(ck, pd1, "pdl1")
    corrs = []
    raw = d.get("correlation", [])
    if not isinstance(raw, list):
        ck.error("correlation", f"expected an array of tables [[correlation]], got {raw!r}")
        raw = []
    seen = set()
    for i, c in enumerate(raw):
        p = f"correlation[{i}]"
        c = ck.table(c, p, {"a", "b", "rho", "source"}, {"a", "b", "rho", "source"})
        a, b = ck.get(c, "a", p, "str", ""), ck.get(c, "b", p, "str", "")
        rho = ck.get(c, "rho", p, "float", 0.0, gt=-1, lt=1)
        src = _source(ck, c, p)
        if a and a == b:
            ck.error(p, f"a and b are the same name {a!r}")
        if frozenset((a, b)) in seen:
            ck.error(p, f"pair ({a}, {b}) is given twice")
        seen.add(frozenset((a, b)))
        corrs.append(Correlation(a, b, rho, src))
    params = parse_parameters(ck, d.get("parameters", {}))
    plaus = None
    if "plausibility" in d:
        plaus = _plausibility(ck, d["plausibility"])
    if ck.errors:
        # what is otherwise found when a cohort is drawn (a name slip, a setting whose draws
        # leave the model's bounds, ...): listed with these errors, all at once
        from vcohort.cohort import _check_settings
        from vcohort.drugs import CATALOGUE
        from vcohort.model import CSC_IMMUNE

        # a setting refused above has only its name checked here (its value outside its own
        # bounds was reported twice, as "value=..." and "the typical value ...")
        draft_params = {
            k: ParamSpec(None, None, None, None, v.source, None)
            if _value_refused(ck, f"parameters.{k}")
            else v
            for k, v in params.items()
        }
        draft = Population(name, "", covs, prev, prev_src, (), None, "<draft>", draft_params)
        for m in _check_settings(CSC_IMMUNE, CATALOGUE, draft):
            field, _, text = m.partition(": ")  # "population '<draft>' parameters.X: ..."
            ck.error(field.rsplit(" ", 1)[-1], text)
    ck.raise_if_any()
    pop = Population(
        name, d.get("description", ""), covs, prev, prev_src, tuple(corrs), plaus, origin, params
    )
    pop.correlation_matrix()  # positive-definite check, with its own message
    return pop


def _value_refused(ck: Checker, path: str) -> bool:
    """Whether ``ck`` already refused the setting at ``path`` or its value, cv or bounds."""
    heads = (f"{path}:", *(f"{path}.{f}:" for f in ("value", "cv", "lower", "upper")))
    return any(e.startswith(heads) for e in ck.errors)


def _source(ck: Checker, t, path: str) -> str:
    """A table's ``source``: required non-empty (a citation or 'assumption: why')."""
    src = ck.get(t, "source", path, "str", "")
    if isinstance(t, dict) and "source" in t and isinstance(src, str) and not src.strip():
        ck.error(f"{path}.source", "must cite a source or say 'assumption: why'")
    return src


def parse_parameters(ck: Checker, t, path: str = "parameters") -> dict:
    """``[parameters.NAME]`` tables (value, cv, lower, upper, source) at ``path``; the names
    and the values against the model's bounds are checked when a cohort is drawn or an
    experiment loaded (`vcohort.cohort.draw_keys`)."""
    if not isinstance(t, dict):
        ck.error(path, f"expected tables [{path}.NAME], got {t!r}")
        return {}
    out = {}
    fields = ("value", "cv", "lower", "upper")
    for k, v in t.items():
        p = f"{path}.{k}"
        if not isinstance(v, dict):
            ck.error(p, f"expected a table with {', '.join(fields)} and source, got {v!r}")
            continue
        v = ck.table(v, p, set(fields) | {"source", "bounds"}, {"source"})
        bounds = ck.get(v, "bounds", p, "str", None, choices=BOUNDS)
        val = ck.get(v, "value", p, "float", None, gt=0)
        cv = ck.get(v, "cv", p, "float", None, ge=0)
        lo = ck.get(v, "lower", p, "float", None, ge=0)
        hi = ck.get(v, "upper", p, "float", None, gt=0)
        src = _source(ck, v, p)
        if not any(f in v for f in (*fields, "bounds")):
            ck.error(p, f"sets none of {', '.join(fields)}, bounds; give at least one")
        if lo is not None and hi is not None and lo >= hi:
            ck.error(p, f"lower={lo} must be below upper={hi}")
        elif val is not None and not (lo or 0.0) <= val <= (math.inf if hi is None else hi):
            ck.error(p, f"value={val} must lie within [lower={lo}, upper={hi}]")
        out[k] = ParamSpec(val, cv, lo, hi, src, bounds)
    return out


def with_parameters(pop: Population, settings: dict) -> Population:
    """``pop`` with ``settings`` (name -> `ParamSpec`) over its own, field by field."""
    merged = dict(pop.parameters)
    for k, spec in settings.items():
        merged[k] = spec.over(merged[k]) if k in merged else spec
    return dataclasses.replace(pop, parameters=merged)


def _plausibility(ck: Checker, t) -> Plausibility:
    keys = {"screening_days", "min_volume_doubling_days", "max_shrinkage", "csc_fraction"}
    src_keys = {f"source_{k}" for k in keys}
    t = ck.table(t, "plausibility", keys | src_keys, keys | src_keys)
    p = "plausibility"
    days = ck.get(t, "screening_days", p, "int", 84, ge=1)
    dbl = ck.get(t, "min_volume_doubling_days", p, "float", 1.0, gt=0)
    shrink = ck.get(t, "max_shrinkage", p, "float", 0.3, gt=0, le=1)
    csc = t.get("csc_fraction", [0.0, 1.0])
    if not (
        isinstance(csc, list)
        and len(csc) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in csc)
        and 0 <= csc[0] < csc[1] <= 1
    ):
        ck.error(f"{p}.csc_fraction", f"{csc!r} must be [low, high] with 0 <= low < high <= 1")
        csc = [0.0, 1.0]
    sources = {k: ck.get(t, k, p, "str", "") for k in sorted(src_keys)}
    return Plausibility(days, dbl, shrink, (float(csc[0]), float(csc[1])), sources)


def correlation_matrix(pairs) -> tuple[list[str], np.ndarray]:
    """(names, R) from ``(a, b, rho)`` pairs, names in order of first appearance; raises if R
    is not positive definite (the pairs cannot hold together)."""
    names = list(dict.fromkeys(n for a, b, _ in pairs for n in (a, b)))
    idx = {n: i for i, n in enumerate(names)}
    R = np.eye(len(names))
    for a, b, rho in pairs:
        R[idx[a], idx[b]] = R[idx[b], idx[a]] = rho
    if names:
        try:
            np.linalg.cholesky(R)
        except np.linalg.LinAlgError:
            lam = float(np.linalg.eigvalsh(R).min())
            raise ValueError(
                f"the correlation matrix over {names} is not positive definite (smallest "
                f"eigenvalue {lam:.3g}); these pairwise correlations cannot hold together — "
                "weaken some of them"
            ) from None
    return names, R


def correlate(z: dict, pop: Population, keys: dict[str, str]) -> dict:
    """Apply the population's correlations to standard-normal draws ``z`` (key -> (P,)).

    ``keys`` maps each correlated name to its key in ``z``.  Returns a new dict.
    """
    names, R = pop.correlation_matrix()
    if not names:
        return z
    L = np.linalg.cholesky(R)
    Z = np.stack([z[keys[n]] for n in names])  # (k, P)
    C = L @ Z
    out = dict(z)
    for i, n in enumerate(names):
        out[keys[n]] = C[i]
    return out

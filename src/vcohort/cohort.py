"""Virtual cohorts: per-patient parameters, covariates and a consistent initial state.

Every patient's random draws derive from ``fold_in(fold_in(key(seed), patient_id), h(name))``
for each named quantity, so a patient is the same whatever the cohort size, chunking, device
count or the set of other parameters (ARCHITECTURE.md, "Random numbers").

Covariates come from a population preset (`vcohort.population`; data files, sources stated per
field): body weight, height, BSA (DuBois & DuBois 1916), baseline tumour diameter (median 86 mm
as the sum of diameters of the pembrolizumab PK population, Ahamadi et al. 2017) and PD-L1
status (a latent normal above the 1 - prevalence quantile, correlated with model parameters as
the preset says).  The preset's correlations act on the standard-normal draws.  The initial
immune state comes from a pre-treatment run-in with the tumour held at its baseline size, so
that immune cells and signals are consistent with the tumour rather than hand-set (MODEL.md,
"A virtual patient").  Plausibility screening is in `vcohort.plausibility`.
"""

from __future__ import annotations

import dataclasses
import warnings
import zlib
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from vcohort.config import MAX_ID, MAX_SEED
from vcohort.drugs import Drug
from vcohort.population import PDL1_LATENT, Population, correlate, load_population

# covariates the cohort makes itself (PD-L1 status from the latent draw, BSA from weight and
# height): a population covariate of one of these names is refused (`draw_keys`)
DERIVED_COVARIATES = ("pdl1_positive", "bsa_m2", PDL1_LATENT)


def check_seed_and_ids(seed, first_id, n: int) -> None:
    """Refuse a seed or patient ids outside 0 .. 2³² - 1 (they would repeat other patients)."""
    for name, v in (("seed", seed), ("first_id", first_id)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or not 0 <= v <= MAX_SEED:
            raise ValueError(f"{name}={v!r} must be an integer in 0 .. {MAX_SEED}")
    if first_id + n - 1 > MAX_ID:
        raise ValueError(
            f"first_id={first_id} with {n} patients gives ids up to {first_id + n - 1}; patient "
            f"ids must stay <= {MAX_ID}"
        )


def _hash(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def standard_normals(seed: int, patient_id: np.ndarray, names) -> dict[str, np.ndarray]:
    """One N(0,1) draw per patient for each name; independent of every other name and patient."""
    key = jax.random.PRNGKey(int(seed))
    ids = jnp.asarray(np.asarray(patient_id, dtype=np.int64).astype(np.uint32))
    out = {}
    for name in names:
        h = _hash(name)
        draw = jax.vmap(
            lambda i, h=h: jax.random.normal(
                jax.random.fold_in(jax.random.fold_in(key, i), h), dtype=jnp.float32
            )
        )(ids)
        out[name] = np.asarray(draw, dtype=np.float64)
    return out


def bsa_dubois(weight_kg, height_cm):
    """Body-surface area (m²), DuBois & DuBois 1916: 0.007184 · W^0.425 · H^0.725."""
    return 0.007184 * np.asarray(weight_kg) ** 0.425 * np.asarray(height_cm) ** 0.725


@dataclass(frozen=True)
class Cohort:
    """Virtual patients (numpy arrays with a leading patient axis).

    Attributes:
        patient_id: (P,) integer ids.
        params: model parameter name -> (P,).
        pk: drug -> PK parameter name -> (P,) (typical-weight values; weight scaling is applied
            by the simulator).
        covariates: ``weight_kg``, ``height_cm``, ``bsa_m2``, ``baseline_diameter_mm``,
            ``pdl1_positive`` (bool) and any other covariate of the population -> (P,).
        y0: state name -> (P,) initial state.
        model: the model name the cohort was built for.
        seed: the seed it was drawn with.
    """

    patient_id: np.ndarray
    params: dict
    pk: dict
    covariates: dict
    y0: dict
    model: str
    seed: int

    def __len__(self) -> int:
        return int(np.asarray(self.patient_id).shape[0])

    def without(self, patient_ids) -> Cohort:
        """The cohort without the patients whose ids are in ``patient_ids`` (order kept)."""
        return self.subset(~np.isin(np.asarray(self.patient_id), list(patient_ids)))

    def subset(self, idx) -> Cohort:
        """The patients at positions ``idx`` (integers, in that order) or where a boolean mask
        of the cohort's length is true."""
        raw = np.asarray(idx)
        if raw.dtype == bool:
            if raw.shape != (len(self),):
                raise ValueError(
                    f"subset: a boolean mask needs one value per patient ({len(self)}), got "
                    f"shape {raw.shape}"
                )
            raw = np.flatnonzero(raw)
        elif raw.size and not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(f"subset: indices must be integers, got {raw.ravel()[:5]}")
        idx = raw.astype(np.int64)
        t = lambda d: {k: np.asarray(v)[idx] for k, v in d.items()}  # noqa: E731
        return Cohort(
            np.asarray(self.patient_id)[idx],
            t(self.params),
            {k: t(v) for k, v in self.pk.items()},
            t(self.covariates),
            t(self.y0),
            self.model,
            self.seed,
        )

    @staticmethod
    def concat(cohorts: list[Cohort]) -> Cohort:
        """Patients of several cohorts (same model and seed) in the order given."""
        if not cohorts:
            raise ValueError("concat needs at least one cohort")
        first = cohorts[0]
        for c in cohorts[1:]:
            if (c.model, c.seed) != (first.model, first.seed):
                raise ValueError("cohorts to concatenate must share model and seed")
        cat = lambda ds: {k: np.concatenate([d[k] for d in ds]) for k in ds[0]}  # noqa: E731
        return Cohort(
            np.concatenate([c.patient_id for c in cohorts]),
            cat([c.params for c in cohorts]),
            {d: cat([c.pk[d] for c in cohorts]) for d in first.pk},
            cat([c.covariates for c in cohorts]),
            cat([c.y0 for c in cohorts]),
            first.model,
            first.seed,
        )

    def replace(self, **changes) -> Cohort:
        return dataclasses.replace(self, **changes)

    def with_params(self, **values) -> Cohort:
        """A copy with some model parameters set (scalar or per-patient array)."""
        params = dict(self.params)
        for k, v in values.items():
            if k not in params:
                raise ValueError(f"parameter {k!r} is not in the cohort; known: {sorted(params)}")
            params[k] = np.broadcast_to(np.asarray(v, dtype=np.float64), (len(self),)).copy()
        return self.replace(params=params)

    def check_for(self, model, drugs, needs: set[str]) -> None:
        """Raise (before compute) if the cohort lacks what a run needs."""
        if self.model != model.name:
            raise ValueError(f"cohort was built for model {self.model!r}, not {model.name!r}")
        missing = [n for n in model.params.names if n not in self.params]
        if missing:
            raise ValueError(f"cohort lacks model parameters {missing}")
        for d in drugs:
            if d.name not in self.pk:
                raise ValueError(
                    f"cohort has no PK parameters for drug {d.name!r}; build it with "
                    f"drugs including {d.name!r} (has: {sorted(self.pk)})"
                )
        for c in needs | {"weight_kg", "bsa_m2"}:
            if c not in self.covariates:
                raise ValueError(f"doses need covariate {c!r}, which the cohort lacks")
            v = np.asarray(self.covariates[c])
            if np.any(~np.isfinite(v)) or np.any(v <= 0):
                raise ValueError(f"covariate {c} must be finite and > 0 for every patient")

    def arrays(self, idx, drugs, dtype):
        """(params, pk, covariates, y0) for rows ``idx``, as arrays of ``dtype``."""
        t = lambda d: {k: np.asarray(v)[idx].astype(dtype) for k, v in d.items()}  # noqa: E731
        pk = {d.name: t(self.pk[d.name]) for d in drugs}
        cov = t({k: self.covariates[k] for k in ("weight_kg", "bsa_m2")})
        return t(self.params), pk, cov, t(self.y0)

    def to_frame(self):
        """One row per patient: id, covariates, parameters (model and PK, ``drug.param``)."""
        import pandas as pd

        cols = {"patient": np.asarray(self.patient_id)}
        cols.update({k: np.asarray(v) for k, v in self.covariates.items()})
        cols.update({k: np.asarray(v) for k, v in self.params.items()})
        for d, vals in self.pk.items():
            cols.update({f"{d}.{k}": np.asarray(v) for k, v in vals.items()})
        return pd.DataFrame(cols)


def make_cohort(
    n: int,
    *,
    seed: int = 0,
    model=None,
    drugs: dict[str, Drug] | None = None,
    first_id: int = 0,
    variability: bool = True,
    runin_days: int | None = None,
    dt: float = 0.1,
    precision: str = "float64",
    baseline_diameter_mm=None,
    population: Population | str | None = None,
    chunk_size: int = 4096,
    engine: str = "xla",
) -> Cohort:
    """Draw ``n`` virtual patients.

    Args:
        n: number of patients (>= 1).
        seed: cohort seed; with ``first_id`` it fixes every patient.
        model: the model (default `vcohort.model.CSC_IMMUNE`).
        drugs: drugs whose PK parameters to draw (default: the model's whole catalogue).
        first_id: id of the first patient (ids are ``first_id .. first_id+n-1``).
        variability: False gives every patient the typical values (covariates stay drawn).
        runin_days: days of immune run-in with the tumour held fixed (0 = none; default the
            model's `Model.runin_days`: 240 for the CSC–immune model, 0 for the published
            reference models, which start from their published state).  The slowest
            immune populations turn over at ~0.015-0.02/day (MDSC, macrophage death), so 240
            days leave <5% of the initial transient (tested).
        dt, precision: numerics of the run-in.
        baseline_diameter_mm: override the drawn baseline diameters (scalar or (n,)).
        population: a `Population` or preset name/file (default: the ``default`` preset).
        chunk_size: patients per compiled call of the run-in (results do not depend on it).
        engine: simulation engine of the run-in (`vcohort.simulate.simulate`).
    """
    from vcohort.model import CSC_IMMUNE

    model = CSC_IMMUNE if model is None else model
    runin_days = model.runin_days if runin_days is None else runin_days
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"patients={n!r} must be an integer >= 1")
    check_engine(engine)
    check_seed_and_ids(seed, first_id, n)
    if not isinstance(runin_days, int | np.integer) or runin_days < 0:
        raise ValueError(f"runin_days={runin_days!r} must be an integer >= 0")
    # the run-in's settings, also without a run-in (a typo then passed silently)
    from vcohort.simulate import PRECISIONS, check_dt

    check_dt(dt)
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; allowed: {PRECISIONS}")
    if not isinstance(chunk_size, int | np.integer) or isinstance(chunk_size, bool):
        raise ValueError(f"chunk_size={chunk_size!r} must be an integer >= 1")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be an integer >= 1")
    cat = model.drug_catalogue() if drugs is None else drugs
    pop = with_drug_correlations(effective_population(population, model), cat)
    ids = np.arange(first_id, first_id + n, dtype=np.int64)

    keys = draw_keys(model, cat, pop)
    z = correlate(standard_normals(seed, ids, sorted(set(keys.values()))), pop, keys)
    zf = (lambda k: z[k]) if variability else (lambda k: np.zeros(n))

    def draw(row, name: str, key: str):
        spec = pop.parameters.get(name)
        if spec is None:  # the model's own spread, within its hard bound (`Model.param_bounds`;
            # assumption: clipped, so that only draws past it change - 0.2% of p_hi, CV 10%
            # about 0.75, would exceed a probability's 1)
            return _within_bounds(model, name, row.value * np.exp(row.omega * zf(key)))
        value, omega, lo, hi = _effective(row, spec)
        z = zf(key)
        if (spec.bounds or "truncate") == "truncate" and omega > 0 and variability:
            a = np.log(lo / value) / omega if lo > 0 else -np.inf
            z = truncated_normal(z, a, np.log(hi / value) / omega)
        return np.clip(value * np.exp(omega * z), lo, hi)  # (truncated: only round-off)

    params = {r.name: draw(r, r.name, keys[r.name]) for r in model.params}
    pk = {
        d: {r.name: draw(r, f"{d}.{r.name}", keys[f"{d}.{r.name}"]) for r in drug.params}
        for d, drug in cat.items()
    }
    cov = {}
    for c, spec in pop.covariates.items():
        cov[c] = np.clip(spec.median * np.exp(spec.omega * z[f"cov:{c}"]), spec.lower, spec.upper)
    from scipy.stats import norm

    cov["pdl1_positive"] = z[f"cov:{PDL1_LATENT}"] > norm.ppf(1.0 - pop.pdl1_prevalence)
    if baseline_diameter_mm is not None:
        b = np.broadcast_to(np.asarray(baseline_diameter_mm, dtype=np.float64), (n,)).copy()
        if np.any(~np.isfinite(b)) or np.any(b <= 0):
            raise ValueError(f"baseline_diameter_mm must be finite and > 0, got {b}")
        cov["baseline_diameter_mm"] = b
    cov["bsa_m2"] = bsa_dubois(cov["weight_kg"], cov["height_cm"])

    y0 = initial_state(model, params, cov["baseline_diameter_mm"], n)
    cohort = Cohort(ids, params, pk, cov, y0, model.name, int(seed))
    if runin_days:
        cohort = run_in(
            cohort,
            model,
            runin_days,
            dt=dt,
            precision=precision,
            chunk_size=chunk_size,
            engine=engine,
        )
    return cohort


def truncated_normal(z, a: float, b: float):
    """Standard-normal draws ``z`` mapped to the standard normal truncated to ``[a, b]``, by the
    quantile transform ``Φ⁻¹(Φ(a) + Φ(z)(Φ(b) − Φ(a)))``: monotone in ``z``, so each patient
    keeps its rank.  A one-sided bound is done in the tail it cuts, where Φ keeps its digits."""
    from scipy.special import ndtr, ndtri

    z = np.asarray(z, dtype=np.float64)
    if np.isinf(a) and np.isinf(b):
        return z
    if np.isinf(a):  # upper bound only: Φ(z)·Φ(b), accurate for z -> -inf
        return ndtri(ndtr(z) * ndtr(b))
    if np.isinf(b):  # lower bound only: mirror of the above
        return -ndtri(ndtr(-z) * ndtr(-a))
    pa, pb = ndtr(a), ndtr(b)
    if a > 0:  # both bounds in the upper tail: work on the mirrored draw
        return -truncated_normal(-z, -b, -a)
    return np.clip(ndtri(pa + ndtr(z) * (pb - pa)), a, b)


def effective_population(population, model) -> Population:
    """The population a cohort of ``model`` is drawn from: ``population`` (a `Population`, a
    preset name or file; None = the ``default`` preset).  For other models than the CSC–immune
    model, the default preset's correlations and parameter settings (which name CSC-model
    parameters) are left out: the published reference models draw their own parameters
    independently."""
    from vcohort.model import CSC_IMMUNE

    pop = population if isinstance(population, Population) else load_population(population)
    if population is None and model is not CSC_IMMUNE:
        pop = dataclasses.replace(pop, correlations=(), parameters={})
    return pop


def with_drug_correlations(pop: Population, catalogue: dict) -> Population:
    """``pop`` with its drugs' omega blocks (`Drug.eta_correlation`, as ``drug.PARAM`` names)
    after its own correlations, so the population's first names keep their own draws (a block
    that shares no name with the population's correlations leaves them exactly as they were);
    a population correlation of the same pair replaces the drug's (a user's setting wins)."""
    from vcohort.population import Correlation

    own = {frozenset((c.a, c.b)) for c in pop.correlations}
    extra = tuple(
        Correlation(f"{d}.{a}", f"{d}.{b}", float(rho), f"drug {d}'s eta_correlation")
        for d, drug in catalogue.items()
        for a, b, rho in drug.eta_correlation
        if frozenset((f"{d}.{a}", f"{d}.{b}")) not in own
    )
    return dataclasses.replace(pop, correlations=pop.correlations + extra) if extra else pop


def _within_bounds(model, name: str, v: np.ndarray) -> np.ndarray:
    """``v`` clipped to the top of parameter ``name``'s `Model.param_bounds` (log-normal draws
    are > 0, so only the top can be crossed); below an open top, its next float down."""
    if name not in (model.param_bounds or {}):
        return v
    _, hi, closed = model.param_bounds[name]
    return np.minimum(v, hi if closed else np.nextafter(hi, -np.inf))


def _effective(row, spec) -> tuple[float, float, float, float]:
    """(value, omega, lower, upper) of a parameter under a population setting."""
    value = row.value if spec.value is None else spec.value
    omega = row.omega if spec.omega is None else spec.omega
    lo = 0.0 if spec.lower is None else spec.lower
    hi = np.inf if spec.upper is None else spec.upper
    return value, omega, lo, hi


def _check_settings(model, catalogue: dict, pop: Population) -> list[str]:
    """Problems of the population's parameter settings with this model: unknown names, a
    typical value outside the setting's own clip bounds, and settings whose draws could leave
    the model's hard bounds (`Model.param_bounds`; log-normal draws are > 0, so only an upper
    bound can be crossed)."""
    rows = _setting_rows(model, catalogue)
    shared = _shared_eta_relations(catalogue)
    out = []
    where = pop.origin if pop.origin and pop.origin != "<dict>" else repr(pop.name)
    for name, spec in pop.parameters.items():
        f = f"population {where} parameters.{name}"
        if name not in rows:
            out.append(f"{f}: {unknown_setting(name, model, rows)}")
            continue
        value, omega, lo, hi = _effective(rows[name], spec)
        if name in shared:
            # one random effect on two parameters (Ahamadi 2017: Q = θ_Q·exp(η_CL)): a CV or
            # bounds on one of them would transform its draw alone, and the two would no longer
            # share it; only the typical value may change
            changed = [
                f"{k}={v:g}"
                for k, v, moved in (
                    ("cv", spec.cv, spec.cv is not None and omega != rows[name].omega),
                    ("lower", spec.lower, lo > 0),
                    ("upper", spec.upper, hi < np.inf),
                )
                if moved
            ]
            if changed:
                out.append(
                    f"{f}: {', '.join(changed)} not allowed: {shared[name]}, so its cv and "
                    f"bounds are the drug's (cv {rows[name].cv:g}, no bounds); a setting may "
                    f"change only its value (to change the spread, define the drug without "
                    f"shared_eta in a drug file)"
                )
        if not lo <= value <= hi:
            out.append(
                f"{f}: the typical value {value:g} lies outside [lower={lo:g}, upper={hi:g}]"
            )
        reach = hi if omega > 0 else min(value, hi)  # log-normal draws stay > 0
        if not model.allows(name, reach):
            _, top, closed = model.param_bounds[name]
            rel = "<=" if closed else "<"
            out.append(
                f"{f}: draws can reach {reach:g}, but {name} must be {rel} {top:g}; "
                f"set upper {rel} {top:g}" + (" (it has a spread)" if omega > 0 else "")
            )
    return out


def _shared_eta_relations(catalogue: dict) -> dict[str, str]:
    """``drug.PARAM`` -> the shared random effect it takes part in (`Drug.shared_eta`), in
    words, for the drivers and the parameters that use their draws."""
    out: dict[str, str] = {}
    for d, drug in catalogue.items():
        for param, driver in drug.shared_eta:
            rel = f"drug {d}'s shared_eta: {d}.{param} uses {d}.{driver}'s random effect"
            for n in (f"{d}.{param}", f"{d}.{driver}"):
                out[n] = f"{out[n]}; {rel}" if n in out else rel
    return out


def _setting_rows(model, catalogue: dict) -> dict:
    """What a population's ``[parameters.NAME]`` can set: model parameters and ``drug.PARAM``."""
    rows = {r.name: r for r in model.params}
    rows |= {f"{d}.{r.name}": r for d, drug in catalogue.items() for r in drug.params}
    return rows


def unknown_setting(name: str, model, rows: dict) -> str:
    """The message for a ``[parameters.NAME]`` that is no parameter: the closest names (a case
    or spelling slip), else where the parameter table is."""
    from vcohort.config import close_names

    close = close_names(name, rows)  # a case slip (that one alone) or close spellings
    hint = (
        f"did you mean {' or '.join(repr(c) for c in close)}?"
        if close
        else "model parameters are listed in docs/model.md; a drug's PK value is 'drug.PARAM' "
        "(e.g. 'pembrolizumab.CL'); covariates belong in [covariates]"
    )
    what = f"is not a parameter of model {model.name!r} nor a PK value of its drugs"
    return f"{name!r} {what}; {hint}"


def check_engine(engine: str) -> None:
    """Refuse an unknown simulation engine before any compute."""
    from vcohort.config import ENGINES

    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}; allowed: {ENGINES}")


def initial_state(model, params: dict, baseline_diameter_mm, n: int) -> dict:
    """``model.initial_state`` as (n,) float64 arrays: the state before any immune run-in."""
    y0 = model.initial_state(params, baseline_diameter_mm)
    return {k: np.broadcast_to(np.asarray(v, np.float64), (n,)).copy() for k, v in y0.items()}


def draw_keys(model, catalogue: dict, pop: Population) -> dict[str, str]:
    """Every random quantity of a patient: user-facing name -> key of its standard-normal draw
    (model parameters by name, PK parameters as ``drug.PARAM``, covariates, ``pdl1``).
    Raises if the population correlates a name that is none of these."""
    keys = {r.name: f"param:{r.name}" for r in model.params}
    keys |= {
        f"{d}.{r.name}": f"pk:{d}:{drug.eta_of(r.name)}"
        for d, drug in catalogue.items()
        for r in drug.params
    }
    # a covariate named as a parameter (or as what the cohort derives) would take over its
    # draw, or be replaced after the draw: refused
    clash = [c for c in pop.covariates if c in keys or c in DERIVED_COVARIATES]
    if clash:
        raise ValueError(
            f"population {pop.name!r}: covariates {clash} are named as a model or PK parameter "
            f"or as what the cohort derives ({', '.join(DERIVED_COVARIATES)}); rename them"
        )
    keys |= {c: f"cov:{c}" for c in pop.covariates}
    keys[PDL1_LATENT] = f"cov:{PDL1_LATENT}"
    unknown = [n for n in pop.correlated_names() if n not in keys]
    if unknown:
        raise ValueError(
            f"population {pop.name!r}: correlation names {unknown} are not model parameters, "
            f"covariates ({', '.join(pop.covariates)}), 'drug.PARAM' PK parameters or "
            f"{PDL1_LATENT!r}"
        )
    driven = {f"{d}.{p}": f"{d}.{q}" for d, drug in catalogue.items() for p, q in drug.shared_eta}
    shared = [f"{n} (it uses {driven[n]}'s draw)" for n in pop.correlated_names() if n in driven]
    if shared:
        raise ValueError(
            f"population {pop.name!r}: correlations name PK parameters that share another "
            f"parameter's random effect: {', '.join(shared)}; correlate the driver instead"
        )
    fixed = [n for n in pop.correlated_names() if _spread(n, model, catalogue, pop) == 0.0]
    if fixed:
        raise ValueError(
            f"population {pop.name!r}: correlations name {fixed}, which vary by no patient (CV "
            f"0): the correlation would act on nothing of theirs, yet change their partners' "
            f"draws; remove it or give the parameter a CV"
        )
    problems = _check_settings(model, catalogue, pop)
    if problems:
        raise ValueError("; ".join(problems))
    return keys


def _spread(name: str, model, catalogue: dict, pop: Population) -> float | None:
    """The between-patient omega (or covariate CV) of a correlated name, after the population's
    settings; None for the PD-L1 latent draw (always drawn)."""
    if name == PDL1_LATENT:
        return None
    if name in pop.covariates:
        return pop.covariates[name].omega
    rows = _setting_rows(model, catalogue)
    spec = pop.parameters.get(name)
    return rows[name].omega if spec is None else _effective(rows[name], spec)[1]


def run_in(
    cohort: Cohort,
    model,
    days: int,
    *,
    dt: float = 0.1,
    precision: str = "float64",
    chunk_size: int = 4096,
    engine: str = "xla",
):
    """Settle the immune state for ``days`` with the tumour frozen (no drugs).

    A patient whose run-in fails (any status but ok: non-finite, negative beyond round-off,
    or RK4-unstable at this dt) gets a NaN initial state, so that every later simulation
    reports it as failed with `vcohort.simulate.STATUS_INITIAL`, and a warning names the
    patients and the reason."""
    from vcohort.simulate import simulate

    traj = simulate(
        model,
        cohort,
        None,
        days,
        dt=dt,
        save_every=days,
        precision=precision,
        tumour_dynamics=0.0,
        progress=False,
        chunk_size=chunk_size,
        engine=engine,
    )
    y0 = {k: np.asarray(v[:, -1], dtype=np.float64) for k, v in traj.states.items()}
    bad = np.flatnonzero(np.asarray(traj.status) != 0)
    if bad.size:
        for v in y0.values():
            v[bad] = np.nan
        text = traj.status_text()
        ids = ", ".join(f"{int(cohort.patient_id[i])} ({text[i]})" for i in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        warnings.warn(
            f"the {days}-day immune run-in failed for {bad.size} of {len(cohort)} patients "
            f"(patient_id {ids}{more}; dt {dt}, {precision}); they start from a NaN state and "
            f"every simulation reports them as failed: use a smaller dt or float64",
            stacklevel=2,
        )
    return cohort.replace(y0=y0)

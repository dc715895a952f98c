"""Global sensitivity: Sobol indices of a vectorised evaluator through SALib.

`sobol_indices` turns any batch function ``X (n, d) -> Y (n,)`` into first-order (S1) and total
(ST) Sobol indices: Saltelli/Sobol' sampling (``SALib.sample.sobol``, scrambled Sobol'
sequence) and the Saltelli et al. 2010 / Jansen estimators (``SALib.analyze.sobol``) with
bootstrap confidence intervals.  Parameters may be sampled uniformly or log-uniformly.
`model_sobol` applies it to the model: each sample row is one virtual patient of a single
cohort, evaluated in one vectorised call (`vcohort.sensitivity.evaluator`).
The inputs are sampled independently, as Sobol indices assume: random effects that the population
shares or correlates (pembrolizumab's CL and Q2, pexidartinib's omega block, the population's
``[[correlation]]`` pairs) vary apart here, each over its own range.
SALib is imported inside the functions (the GPU machine lacks it).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from vcohort.cohort import Cohort, bsa_dubois, initial_state, make_cohort
from vcohort.population import load_population
from vcohort.sensitivity import FIXED_FACTOR, UNIT_INTERVAL, Problem, evaluator
from vcohort.simulate import STEP_LIMIT, acting_channels, check_typical_rates, first_order_rates

SCALES = ("linear", "log")
# the largest share of base samples that may fail (a non-finite endpoint in their block of
# d + 2 rows, which is then dropped whole) before the analysis is refused.  Dropping them
# conditions the inputs on not failing; failures clustered in one region of the ranges (where
# the model breaks down) leave indices of the ranges without that region.  assumption: removing
# 1% of the input distribution moves a variance share by about 0.01, well inside the 95%
# bootstrap half-widths read as precise (the CLI calls indices past ±0.1 imprecise; Ishigami's
# at N = 8192 are checked below 0.04), whereas more failures call for narrower ranges instead
MAX_FAILED_FRACTION = 0.01


def check_ranges(names, bounds, scale: str) -> np.ndarray:
    """Validate ``bounds`` ((d, 2) low/high per name); return them as an array."""
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}; allowed: {SCALES}")
    b = np.asarray(bounds, dtype=np.float64)
    if b.shape != (len(names), 2):
        raise ValueError(f"bounds must have shape ({len(names)}, 2), got {b.shape}")
    for n, (lo, hi) in zip(names, b, strict=True):
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"range of {n}: {lo}:{hi}; need finite low < high")
        if scale == "log" and lo <= 0:
            raise ValueError(f"range of {n}: {lo}:{hi}; log-uniform ranges need low > 0")
    return b


def check_model_ranges(model, names, bounds, dt: float, channels=()) -> None:
    """Before compute: every sampled value of a model parameter lies within the model's bounds
    (`Model.allows`: a fraction within (0, 1], or (0, 1) where the model needs it), and no
    first-order rate acting with drugs on ``channels`` (`vcohort.simulate.first_order_rates`)
    reaches ``STEP_LIMIT / dt``, where the RK4 step would turn unstable (the Sobol evaluator's
    endpoint is then finite but wrong)."""
    cap = UNIT_INTERVAL.get(model.name, frozenset())
    rows = {r.name for r in model.params.rows}
    rates = set(first_order_rates(model, channels))
    for n, (lo, hi) in zip(names, np.asarray(bounds, dtype=np.float64), strict=True):
        if n in cap and hi > 1.0:
            within = model.bounds_text(n) if n in (model.param_bounds or {}) else "(0, 1]"
            raise ValueError(
                f"range of {n}: {lo:g}:{hi:g}; {n} is a fraction (or enters as 1 - {n}), so "
                f"its range must lie within {within}"
            )
        if n in rows and not (model.allows(n, lo) and model.allows(n, hi)):
            raise ValueError(f"range of {n}: {lo:g}:{hi:g} must lie in {model.bounds_text(n)}")
        if n in rates and hi * dt >= STEP_LIMIT:
            raise ValueError(
                f"range of {n}: {lo:g}:{hi:g} with dt {dt:g}: a first-order rate of {hi:g}/day "
                f"makes the fixed RK4 step unstable (rate x dt = {hi * dt:.3g}; it must stay "
                f"below {STEP_LIMIT}); narrow the range to below {STEP_LIMIT / dt:g} or use a "
                f"smaller dt (e.g. {dt / 2:g})"
            )
        k = (model.transit_rates or {}).get(n)
        if k is not None and k / lo * dt >= STEP_LIMIT:
            raise ValueError(
                f"range of {n}: {lo:g}:{hi:g} with dt {dt:g}: its transit rate {k:g}/{n} "
                f"reaches {k / lo:.3g}/day, which makes the fixed RK4 step unstable (rate x dt "
                f"= {k / lo * dt:.3g}; it must stay below {STEP_LIMIT}); raise the low end to "
                f"above {k * dt / STEP_LIMIT:.3g} or use a smaller dt (e.g. {dt / 2:g})"
            )


def check_samples(n_base, d: int, flag: str = "samples") -> int:
    """Validate the base sample size N (``flag``: how the caller names it, e.g. ``--samples``)
    for ``d`` parameters: a power of 2 (Sobol' sequence) whose N·(d+2) evaluations, one
    virtual patient each, stay within `vcohort.config.MAX_PATIENTS` (the cohort limit of
    ``--patients``).  Returns N."""
    from vcohort.config import MAX_PATIENTS

    ok = isinstance(n_base, int | np.integer) and not isinstance(n_base, bool)
    if not ok or n_base < 2 or n_base & (n_base - 1):
        raise ValueError(f"{flag}={n_base!r} must be a power of 2 >= 2 (Sobol' sequence)")
    rows = int(n_base) * (d + 2)
    if rows > MAX_PATIENTS:
        largest = 2 ** ((MAX_PATIENTS // (d + 2)).bit_length() - 1)
        raise ValueError(
            f"{flag}={n_base}: N x (d + 2) = {n_base} x ({d} + 2) = {rows} evaluations (one "
            f"virtual patient each) exceed the limit of {MAX_PATIENTS} patients; the largest "
            f"{flag} for {d} parameters is {largest}"
        )
    return int(n_base)


def sobol_indices(
    evaluate,
    names,
    bounds,
    n_base: int,
    *,
    scale: str = "linear",
    seed: int = 0,
    num_resamples: int = 200,
):
    """Sobol indices of ``evaluate`` (batch ``X (n, d) -> Y (n,)``) over ``bounds``.

    A base sample whose block of d + 2 rows (SALib's Saltelli layout without second-order
    indices: A, the d rows AB_j, B; ``SALib.analyze.sobol.separate_output_values``) holds a
    non-finite endpoint is dropped with its whole block, and the indices are computed from the
    other base samples; up to `MAX_FAILED_FRACTION` of them may fail, more raise.

    Args:
        evaluate: vectorised function of the sample matrix (one call with all rows).
        names: parameter names (d >= 2).
        bounds: (d, 2) low/high of each parameter.
        n_base: base sample size N, a power of 2 (SALib: N·(d+2) rows are evaluated), with
            N·(d+2) <= `vcohort.config.MAX_PATIENTS` (`check_samples`).
        scale: ``linear`` (uniform) or ``log`` (log-uniform) sampling between the bounds.
        seed: seed of the scrambled Sobol' sequence and of the bootstrap.
        num_resamples: bootstrap resamples for the 95% confidence intervals.

    Returns:
        (table, X, Y): a DataFrame ``parameter, low, high, S1, S1_conf, ST, ST_conf, rank``
        ranked by ST, the sample matrix and the outputs (every row; failed ones non-finite).
        ``table.attrs["failures"]``: ``base_samples`` (N), ``failed_base_samples``,
        ``failed_evaluations``, ``dropped_evaluations``, ``max_failed_fraction`` and
        ``examples`` (up to 3 failed rows: ``base_sample`` and the parameter values).
    """
    from SALib.analyze import sobol as analyze
    from SALib.sample import sobol as sample

    names = list(names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"Sobol analysis needs >= 2 distinct parameters, got {names}")
    b = check_ranges(names, bounds, scale)
    n_base = check_samples(n_base, len(names))
    step = len(names) + 2
    space = np.log(b) if scale == "log" else b
    problem = {"num_vars": len(names), "names": names, "bounds": space.tolist()}
    U = sample.sample(problem, n_base, calc_second_order=False, seed=seed)
    if U.shape[0] != n_base * step:  # the block layout dropping relies on
        raise RuntimeError(f"SALib gave {U.shape[0]} rows, expected {n_base} x {step}")
    X = np.exp(U) if scale == "log" else U
    Y = np.asarray(evaluate(X), dtype=np.float64).reshape(-1)
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"evaluate returned {Y.shape[0]} values for {X.shape[0]} rows")
    bad = ~np.isfinite(Y)
    failed = np.flatnonzero(bad.reshape(n_base, step).any(axis=1))  # base samples
    first = [int(i * step + np.argmax(bad[i * step : (i + 1) * step])) for i in failed[:3]]
    examples = [
        {"base_sample": int(r // step)} | {n: float(v) for n, v in zip(names, X[r], strict=True)}
        for r in first
    ]
    if failed.size > MAX_FAILED_FRACTION * n_base:
        at = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, X[first[0]], strict=True))
        raise ValueError(
            f"{failed.size} of {n_base} base samples ({failed.size / n_base:.1%}; "
            f"{int(bad.sum())} of {Y.size} evaluations) gave a non-finite endpoint, e.g. at "
            f"{at}; at most {MAX_FAILED_FRACTION:.0%} may fail (dropping more biases the "
            f"indices when the failures cluster in one region of the ranges): narrow the ranges"
        )
    keep = np.ones(n_base, dtype=bool)
    keep[failed] = False
    Yk = Y.reshape(n_base, step)[keep].reshape(-1)
    if np.ptp(Yk) == 0:
        raise ValueError("the endpoint does not vary over the ranges; Sobol indices undefined")
    Si = analyze.analyze(
        problem, Yk, calc_second_order=False, num_resamples=num_resamples, seed=seed
    )
    df = pd.DataFrame(
        {
            "parameter": names,
            "low": b[:, 0],
            "high": b[:, 1],
            "S1": Si["S1"],
            "S1_conf": Si["S1_conf"],
            "ST": Si["ST"],
            "ST_conf": Si["ST_conf"],
        }
    )
    df = df.sort_values("ST", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    df.attrs["failures"] = {
        "base_samples": n_base,
        "failed_base_samples": int(failed.size),
        "failed_evaluations": int(bad.sum()),
        "dropped_evaluations": int(failed.size * step),
        "max_failed_fraction": MAX_FAILED_FRACTION,
        "examples": examples,
    }
    return df, X, Y


def default_ranges(
    model, names, *, width_sd: float = 2.0, fixed_factor: float = FIXED_FACTOR, drugs=None
):
    """Log-uniform ranges ``value·exp(±width_sd·ω)`` (ω from the parameter table), ×/÷
    ``fixed_factor`` where ω = 0; probabilities/fractions capped at 1 (`UNIT_INTERVAL`)."""
    if not (math.isfinite(width_sd) and width_sd > 0):
        raise ValueError(f"range width={width_sd!r} must be > 0 (in log-normal SDs)")
    cap = UNIT_INTERVAL.get(model.name, frozenset())
    out = []
    for n in names:
        row = _param_row(model, n, drugs)
        f = math.exp(width_sd * row.omega) if row.omega > 0 else fixed_factor
        hi = row.value * f
        if n in cap:
            hi = min(hi, 1.0)
        out.append((row.value / f, hi))
    return np.asarray(out)


def _param_row(model, name: str, drugs):
    if "." in name:
        d, q = name.split(".", 1)
        drug = {x.name: x for x in drugs or ()}.get(d)
        if drug is None or q not in drug.params:
            raise ValueError(f"parameter {name!r} is not a PK parameter of the run's drugs")
        return drug.params[q]
    if name not in model.params:
        raise ValueError(
            f"parameter {name!r} is not a parameter of model {model.name!r}; "
            f"known: {', '.join(model.params.names)}"
        )
    return model.params[name]


def typical_patient(problem: Problem, n: int) -> Cohort:
    """``n`` copies of the typical patient: typical parameters and PK, median covariates."""
    one = make_cohort(1, model=problem.model, variability=False, runin_days=0)
    c = one.subset(np.zeros(n, dtype=np.int64))
    covs = load_population().covariates  # the default preset's medians
    cov = {k: np.full(n, spec.median) for k, spec in covs.items()}
    cov["pdl1_positive"] = np.ones(n, dtype=bool)  # assumption: the typical patient is PD-L1+
    cov["bsa_m2"] = bsa_dubois(cov["weight_kg"], cov["height_cm"])
    y0 = initial_state(problem.model, c.params, cov["baseline_diameter_mm"], n)
    return c.replace(covariates=cov, y0=y0, patient_id=np.arange(n))


def cohort_of_samples(problem: Problem, names, X: np.ndarray) -> Cohort:
    """One virtual patient per row of ``X`` (columns: ``names``), others at typical values."""
    c = typical_patient(problem, X.shape[0])
    model_vals = {n: X[:, j] for j, n in enumerate(names) if "." not in n}
    c = c.with_params(**model_vals)
    pk = {d: dict(v) for d, v in c.pk.items()}
    for j, n in enumerate(names):
        if "." in n:
            d, q = n.split(".", 1)
            pk[d][q] = X[:, j].copy()
    return c.replace(pk=pk)


def model_sobol(
    problem: Problem,
    names,
    n_base: int,
    *,
    bounds=None,
    width_sd: float = 2.0,
    seed: int = 0,
    chunk_size: int = 512,
    progress: bool | None = None,
):
    """Sobol indices of ``problem``'s endpoint to ``names`` (log-uniform ranges, default
    `default_ranges`; a fraction's range within (0, 1]) for the typical patient.  Returns
    (table, samples frame, seconds); a sample with a non-finite endpoint keeps its row in the
    samples frame and is dropped from the indices as `sobol_indices` says (counted in
    ``table.attrs["failures"]``).  ``progress``: a bar over the chunks (default: when there is
    more than one)."""
    for n in names:
        _param_row(problem.model, n, problem.plan.drugs)
        if n not in problem.names:
            raise ValueError(f"parameter {n!r} is not sampled by this problem (PK excluded?)")
    if bounds is None:
        bounds = default_ranges(problem.model, names, width_sd=width_sd, drugs=problem.plan.drugs)
    channels = acting_channels(problem.plan.drugs)
    check_model_ranges(problem.model, names, bounds, problem.plan.dt, channels)
    check_typical_rates(problem.model, problem.plan.dt, channels, sampled=names)
    ev = evaluator(problem, chunk_size, progress=progress)
    t0 = time.perf_counter()
    table, X, Y = sobol_indices(
        lambda X: ev(cohort_of_samples(problem, names, X)),
        names,
        bounds,
        n_base,
        scale="log",
        seed=seed,
    )
    samples = pd.DataFrame(X, columns=list(names))
    samples["endpoint"] = Y
    return table, samples, time.perf_counter() - t0

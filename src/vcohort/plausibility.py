"""Plausibility screening: reject implausible virtual patients, with the reason, and replace them.

Each drawn patient is simulated **untreated** for the preset's ``screening_days`` from its
baseline (after the immune run-in).  It is rejected when (bounds and sources in the population
preset, `vcohort.population.Plausibility`):

* ``solver``: its solution is non-finite or negative (simulator status != 0);
* ``explosive growth``: its tumour volume, ``(d_t / d_0)^3``, outgrows one doubling per
  ``min_volume_doubling_days`` at some day ``t`` of the window;
* ``vanishing``: its diameter falls below ``(1 - max_shrinkage)`` of baseline untreated;
* ``csc fraction``: its CSC fraction leaves ``csc_fraction`` = [low, high] in the window.

The screening run is a check on each patient's natural history; the trial itself starts from the
same baseline state (day 0), not from the end of the screening window.  Rejection depends only on
the patient's own draws, so it is the same whatever the cohort size or chunking.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from vcohort.cohort import Cohort, check_engine, check_seed_and_ids, make_cohort
from vcohort.population import Plausibility, Population, load_population


def screen(
    cohort: Cohort,
    model,
    bounds: Plausibility,
    *,
    dt: float = 0.1,
    precision: str = "float64",
    chunk_size: int = 4096,
    engine: str = "xla",
) -> pd.DataFrame:
    """One row per patient: ``patient``, ``plausible``, ``reason`` ("" when plausible) and the
    screened quantities (``screen_max_volume_ratio``, ``screen_min_diameter_ratio``,
    ``screen_csc_min``, ``screen_csc_max``)."""
    from vcohort.simulate import simulate

    days = bounds.screening_days
    tr = simulate(
        model,
        cohort,
        None,
        days,
        dt=dt,
        save_every=days,
        precision=precision,
        chunk_size=chunk_size,
        progress=False,
        engine=engine,
    )
    d = np.asarray(tr.daily["diameter_mm"], dtype=np.float64)
    csc = np.asarray(tr.daily["csc_fraction"], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = d / d[:, :1]
        vol = ratio**3
        t = np.arange(d.shape[1], dtype=np.float64)
        allowed = 2.0 ** (t / bounds.min_volume_doubling_days)
        explosive = np.any(vol[:, 1:] > allowed[None, 1:], axis=1)
        vanishing = np.min(ratio, axis=1) < 1.0 - bounds.max_shrinkage
        lo, hi = bounds.csc_fraction
        csc_bad = (np.min(csc, axis=1) < lo) | (np.max(csc, axis=1) > hi)
    solver = tr.status != 0
    reasons = []
    for i in range(len(cohort)):
        if solver[i]:
            reasons.append(f"solver: {tr.status_text()[i]}")
            continue
        r = []
        if explosive[i]:  # the first day past the bound, with the bound there
            k = 1 + int(np.argmax(vol[i, 1:] > allowed[1:]))
            r.append(
                f"explosive growth: volume x{vol[i, k]:.4g} by day {k} (bound x{allowed[k]:.4g}: "
                f"one doubling per {bounds.min_volume_doubling_days:g} d)"
            )
        if vanishing[i]:
            r.append(
                f"vanishing: untreated diameter fell to {100 * np.min(ratio[i]):.1f}% of "
                f"baseline (bound {100 * (1 - bounds.max_shrinkage):.0f}%)"
            )
        if csc_bad[i]:
            r.append(
                f"csc fraction: {np.min(csc[i]):.3g}-{np.max(csc[i]):.3g} outside [{lo:g}, {hi:g}]"
            )
        reasons.append("; ".join(r))
    reasons = np.array(reasons, dtype=object)
    return pd.DataFrame(
        {
            "patient": np.asarray(cohort.patient_id),
            "plausible": reasons == "",
            "reason": reasons,
            "screen_max_volume_ratio": np.max(vol, axis=1),
            "screen_min_diameter_ratio": np.min(ratio, axis=1),
            "screen_csc_min": np.min(csc, axis=1),
            "screen_csc_max": np.max(csc, axis=1),
        }
    )


def plausible_cohort(
    n: int,
    *,
    population: Population | str | None = None,
    seed: int = 0,
    first_id: int = 0,
    replace: bool = True,
    max_draws: int | None = None,
    model=None,
    dt: float = 0.1,
    precision: str = "float64",
    chunk_size: int = 4096,
    engine: str = "xla",
    **cohort_kwargs,
) -> tuple[Cohort, pd.DataFrame]:
    """Draw ``n`` patients, screen them and (``replace=True``) draw replacements for the rejected
    ones until ``n`` are plausible.  Returns (cohort, screening table of every drawn patient up
    to the last one kept; ``rejected = table[~table.plausible]``).

    Patients keep their ids (``first_id, first_id + 1, ...`` in draw order), so the same seed
    gives the same patients and the same rejections whatever the chunk size.  Replacements are
    drawn in whole chunks of the first batch's compiled size (`vcohort.simulate.chunk_for`),
    so no new shape is compiled (except for a last batch cut short at ``max_draws``).
    Raises if more than ``max_draws`` (default ``10 n + 64``) patients would be needed.  A
    population without plausibility bounds accepts every patient.
    """
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import chunk_for

    model = CSC_IMMUNE if model is None else model
    pop = population if isinstance(population, Population) else load_population(population)
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"patients={n!r} must be an integer >= 1")
    max_draws = 10 * n + 64 if max_draws is None else max_draws
    if isinstance(max_draws, bool) or not isinstance(max_draws, int | np.integer) or max_draws < n:
        raise ValueError(
            f"max_draws={max_draws!r}; allowed: a whole number >= patients ({n}), or None "
            f"(10 x patients + 64)"
        )
    check_engine(engine)
    check_seed_and_ids(seed, first_id, max_draws)  # replacements draw ids up to the limit
    # every batch, the first and the replacements, runs in chunks of this one shape (the
    # first batch's, `chunk_for`): a replacement batch of another size had its own, a compile
    if isinstance(chunk_size, int | np.integer) and not isinstance(chunk_size, bool):
        if chunk_size >= 1:  # (a bad one is refused by simulate)
            chunk_size = chunk_for(n, chunk_size)
    kw = dict(cohort_kwargs, seed=seed, model=model, dt=dt, precision=precision,
              chunk_size=chunk_size, population=pop, engine=engine)  # fmt: skip
    first = make_cohort(n, first_id=first_id, **kw)
    if pop.plausibility is None:
        table = pd.DataFrame({"patient": first.patient_id, "plausible": True, "reason": ""})
        return first, table
    scr = dict(dt=dt, precision=precision, chunk_size=chunk_size, engine=engine)
    kept, tables = [], []
    drawn, batch = 0, first
    while True:
        t = screen(batch, model, pop.plausibility, **scr)
        tables.append(t)
        kept.append(batch.subset(np.where(t["plausible"].to_numpy())[0]))
        drawn += len(batch)
        n_ok = sum(len(k) for k in kept)
        if n_ok >= n or not replace:
            break
        need = n - n_ok
        rate = max(n_ok / drawn, 0.05)
        # at least one full chunk (chunk_size, as set above), so the compiled chunk shape is the
        # first batch's: a compile costs more than simulating a chunk of extra patients
        size = max(math.ceil(need / rate * 1.2) + 2, chunk_size)
        size = min(math.ceil(size / chunk_size) * chunk_size, max_draws - drawn)  # whole chunks
        if size <= 0:  # every allowed draw made (the last batch capped at the limit)
            reasons = pd.concat(tables)["reason"].str.split(":").str[0]
            counts = reasons[reasons != ""].value_counts().to_dict()
            solver = int(counts.get("solver", 0))
            # numerical failures call for other numerics, not looser bounds
            fix = (
                "the simulation failed numerically for all of them: use a smaller dt or "
                "float64"
                if solver and solver == sum(counts.values())
                else "loosen the population's plausibility bounds or raise max_draws"
                + (" (some simulations failed numerically: a smaller dt or float64 may help)"
                   if solver else "")
            )  # fmt: skip
            raise ValueError(
                f"only {n_ok} of {drawn} drawn patients are plausible ({counts}); {n} would "
                f"need more than max_draws={max_draws} draws: {fix}"
            )
        batch = make_cohort(size, first_id=first_id + drawn, **kw)
    cohort = Cohort.concat(kept)
    table = pd.concat(tables, ignore_index=True)
    if len(cohort) > n:
        cohort = cohort.subset(np.arange(n))
    last = int(cohort.patient_id[-1]) if len(cohort) else -1
    table = table[table["patient"] <= last] if replace else table
    return cohort, table.reset_index(drop=True)

"""Smooth cohort objectives and constraints for schedule optimisation (all in JAX).

Every function takes the outputs of `vcohort.simulate.cohort_fn` (a leading patient axis) and
returns one number per patient (``per_patient_*``) or for the cohort.  Objectives are *losses*
(lower is better).  RECIST quantities are smoothed so that gradients exist; the hard versions
(`vcohort.endpoints`) are what evaluation reports.

Smoothing (assumption: chosen so the smoothed value is within a few points of the hard one on
typical cohorts while keeping gradients informative; the widths are arguments):

* best % change = soft-minimum over assessment days, ``-τ_min·logsumexp(-x/τ_min)`` with
  τ_min = 2 percentage points;
* response = ``sigmoid((-30 - best%)/τ)`` with τ = 3 points (RECIST PR threshold -30%);
* progression at an assessment =
  ``sigmoid((d/nadir - 1.2)/0.03) · sigmoid((d - nadir - 5 mm)/1 mm)``
  (RECIST PD: +20% over the nadir *and* +5 mm); progression-free probability is the running
  product of ``1 - p(PD)``; smoothed PFS is its restricted mean over the assessments
  (days, up to the horizon);
* grade-4 neutropenia = ``sigmoid((0.5 - ANC nadir)/0.05)`` (CTCAE grade 4: ANC < 0.5e9/L).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vcohort.endpoints import GRADE4_ANC, assessment_days

OBJECTIVES = {
    "log_burden": "mean log((final + 5 mm)/(baseline + 5 mm)) diameter: burden at the horizon",
    "response": "minus the mean smoothed probability of RECIST response (PR or CR)",
    "pfs": "minus the mean smoothed restricted PFS (days) over the horizon, / horizon",
    "cvar": "mean log burden ratio (as log_burden) of the worst alpha fraction (CVaR)",
    "csc": "mean CSC fraction of tumour cells at the horizon",
}


def _pct(daily: dict) -> jnp.ndarray:
    d = daily["diameter_mm"]
    return 100.0 * (d / d[:, :1] - 1.0)


FLOOR_MM = 5.0  # RECIST complete-response floor (`vcohort.endpoints` cr_floor_mm)


def log_ratio(out: dict, floor_mm: float = FLOOR_MM) -> jnp.ndarray:
    """log((final + f)/(baseline + f)) per patient, f = 5 mm: the log change in diameter, with
    shrinkage far below the complete-response floor not rewarded without bound (assumption:
    once a tumour is below what imaging resolves, driving it from 1e-3 to 1e-6 of its size is
    not a clinical gain, yet it would dominate a plain mean of logs)."""
    d = out["daily"]["diameter_mm"]
    return jnp.log(d[:, -1] + floor_mm) - jnp.log(d[:, 0] + floor_mm)


def soft_best_pct(out: dict, days: np.ndarray, tau: float = 2.0) -> jnp.ndarray:
    """Smooth minimum of the % change from baseline over the assessment ``days`` up to and
    including the first progression, as the reported best % change
    (`vcohort.endpoints.patient_endpoints`): an assessment after a (smoothed, `_pd_probs`)
    progression is pushed out of the minimum by ``AFTER_PD`` points times the probability
    that an earlier one was PD, so shrinkage after progressing counts for nothing."""
    x = _pct(out["daily"])[:, days]
    p_pd = _pd_probs(out, days)
    free = jnp.cumprod(1.0 - p_pd, axis=1)[:, :-1]  # no PD up to the previous assessment
    after = jnp.concatenate([jnp.zeros_like(p_pd[:, :1]), 1.0 - free], axis=1)
    return -tau * jax.nn.logsumexp(-(x + AFTER_PD * after) / tau, axis=1)


# % points added to an assessment after a progression (more than any change can be): assumption
AFTER_PD = 1000.0


def _pd_probs(out: dict, days: np.ndarray) -> jnp.ndarray:
    """(P, A) smoothed probability that each assessment is RECIST PD (>= 20% and >= 5 mm above
    the nadir so far; logistic widths 3% and 1 mm)."""
    d = out["daily"]["diameter_mm"]
    seq = d[:, days]
    allv = jnp.concatenate([d[:, :1], seq], axis=1)
    nadir = jax.lax.cummin(allv, axis=1)[:, :-1]
    return jax.nn.sigmoid((seq / nadir - 1.2) / 0.03) * jax.nn.sigmoid((seq - nadir - 5.0) / 1.0)


def response_prob(out: dict, days: np.ndarray, tau: float = 3.0) -> jnp.ndarray:
    """Smoothed P(best % change <= -30%) per patient."""
    return jax.nn.sigmoid((-30.0 - soft_best_pct(out, days)) / tau)


def pfs_smooth(out: dict, days: np.ndarray) -> jnp.ndarray:
    """Smoothed restricted-mean PFS (days) per patient, over assessment ``days``."""
    d = out["daily"]["diameter_mm"]
    surv = jnp.cumprod(1.0 - _pd_probs(out, days), axis=1)  # progression-free after each
    # restricted mean: PF up to the first assessment for sure, then the interval to the next
    # assessment (or the horizon) weighted by being progression-free at its start
    widths = np.diff(np.concatenate([days, [d.shape[1] - 1]])).astype(np.float64)
    return days[0] + jnp.sum(surv * widths, axis=1)


def cvar(x: jnp.ndarray, alpha: float) -> jnp.ndarray:
    """Mean of the largest ``ceil(alpha·n)`` values of ``x`` (the worst tail for a loss)."""
    k = max(1, int(np.ceil(alpha * x.shape[0])))
    return jnp.mean(jax.lax.top_k(x, k)[0])


def objective_terms(out: dict, horizon: int, *, assess_every: int = 42, alpha: float = 0.2):
    """All cohort objectives (losses) as a dict of scalars."""
    days = assessment_days(horizon, assess_every)
    if days.size == 0:
        days = np.array([horizon])
    lr = log_ratio(out)
    return {
        "log_burden": jnp.mean(lr),
        "response": -jnp.mean(response_prob(out, days)),
        "pfs": -jnp.mean(pfs_smooth(out, days)) / horizon,
        "cvar": cvar(lr, alpha),
        "csc": jnp.mean(out["daily"]["csc_fraction"][:, -1]),
    }


def per_patient_terms(out: dict, horizon: int, *, assess_every: int = 42):
    """Objectives that decompose over patients (personalised mode): dict of (P,) arrays."""
    days = assessment_days(horizon, assess_every)
    if days.size == 0:
        days = np.array([horizon])
    return {
        "log_burden": log_ratio(out),
        "response": -response_prob(out, days),
        "pfs": -pfs_smooth(out, days) / horizon,
        "csc": out["daily"]["csc_fraction"][:, -1],
    }


def grade4_fraction_smooth(out: dict, width: float = 0.05) -> jnp.ndarray:
    """Smoothed fraction of patients whose ANC nadir is below the grade-4 threshold."""
    nadir = jnp.min(out["daily"]["ANC"], axis=1)
    return jnp.mean(jax.nn.sigmoid((GRADE4_ANC - nadir) / width))


def grade4_fraction(out: dict) -> jnp.ndarray:
    """Hard fraction of patients with ANC nadir < 0.5e9/L."""
    return jnp.mean(jnp.min(out["daily"]["ANC"], axis=1) < GRADE4_ANC)

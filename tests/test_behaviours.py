"""The review's mechanisms as behaviours of the CSC–immune model (issue 5, part 2).

The checks live in `vcohort.validation.behaviours` (each names its review section, states its
effect size and criterion, and removes the mechanism to show the behaviour disappears); the same
records are rendered in docs/model.md, so each test also checks the document is current.

Cost: every arm shares one compiled function (~40 s compile on a 2-core CPU, ~0.2 s per arm).
"""

import numpy as np
import pytest
from conftest import assert_matches_stored

from vcohort.validation.behaviours import BEHAVIOURS, Runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs():
    return Runs()


@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=lambda f: f.__name__)
def test_review_mechanism_holds_and_vanishes_without_its_term(runs, behaviour):
    chk = behaviour(runs)
    assert chk.source.startswith("Yu & Gong 2025") and "§" in chk.source
    assert any("= 0" in c or "= 1" in c for c, _ in chk.criteria), "no mechanism-removed criterion"
    assert chk.passed, chk.failures()
    assert_matches_stored(chk)


def test_removing_a_mechanism_term_fails_its_check(runs):
    """Shown once on the whole cohort: with dedifferentiation switched off in the *default*
    patients (as if the term were deleted from the model), the CAR-T check fails."""
    from vcohort.validation.behaviours import cart_undone_by_plasticity

    broken = Runs(runs.cohort.with_params(k_ded=np.zeros(len(runs.cohort))))
    chk = cart_undone_by_plasticity(broken)
    assert not chk.passed
    assert not chk.criteria[0][1], chk.criteria  # CSCs no longer persist under CAR-T


def test_pembrolizumab_responses_fall_with_baseline_tumour_size():
    """A clinical relation the model is not fitted to (`vcohort.validation.clinical`): ORR below
    vs above the median baseline size (Joseph 2018: 44% vs 23%), lost without the finite CD8
    supply (V_T8)."""
    from vcohort.validation.clinical import orr_by_baseline_size

    chk = orr_by_baseline_size()
    assert chk.passed, chk.failures()
    assert_matches_stored(chk, atol=0.011)  # 400 patients: two per half-cohort of 200


def test_uncalibrated_model_is_set_next_to_the_keynote_targets():
    """A comparison, not a pass/fail check: every trial figure gets a finite model value (or a
    median 'not reached'), and the stored document shows the current numbers."""
    from vcohort.validation.clinical import KEYNOTE, keynote_comparison

    chk = keynote_comparison()
    assert chk.kind == "comparison" and chk.passed is None and not chk.criteria
    assert len(chk.values) == sum(x is not None for _, *t, _ in KEYNOTE.values() for x in t)
    for k, v in chk.values.items():
        if isinstance(v, str):
            assert k.endswith("median_pfs_months_model_vs_trial") and "not reached" in v
        else:
            assert np.all(np.isfinite(v)) and 0 <= v[0], (k, v)
    assert_matches_stored(chk, atol=0.02)  # ORR of 500: ~a few patients; KM PFS and medians


def test_keynote002_like_trial_on_a_calibrated_population_is_set_next_to_the_trial():
    """A comparison (no pass/fail): the selection hits its two targets, and the untargeted
    figures (median PFS, chemotherapy arm, HR) are finite and match the stored document."""
    from vcohort.validation.clinical import keynote002_calibrated_comparison

    chk = keynote002_calibrated_comparison()
    assert chk.kind == "comparison" and chk.passed is None
    v = chk.values
    # stratified selection: ORR to one patient of 400, 6-month PFS to the KM estimate's rounding
    assert abs(v["pembro_orr_model_vs_trial (selected to match)"][0] - 0.21) <= 1 / 400 + 1e-9
    assert abs(v["pembro_pfs6_model_vs_trial (selected to match)"][0] - 0.34) < 0.02
    assert all(np.all(np.isfinite(x)) for x in v.values()), v
    assert_matches_stored(chk, atol=0.02)


def test_risk_ratio_ci_is_katz_interval_as_scipy_computes_it():
    from scipy.stats.contingency import relative_risk

    from vcohort.validation.clinical import risk_ratio_ci

    rr, lo, hi = risk_ratio_ci(38 / 180, 180, 45 / 181, 181)
    ref = relative_risk(45, 181, 38, 180)
    ci = ref.confidence_interval(0.95)
    np.testing.assert_allclose([rr, lo, hi], [ref.relative_risk, ci.low, ci.high], rtol=1e-6)


def test_pembrolizumab_response_rate_is_flat_from_2_to_10_mg_per_kg():
    """A clinical relation not fitted: KEYNOTE-002's 10 vs 2 mg/kg response-rate ratio (1.19,
    95% CI 0.81-1.74) contains the model's, and an unsaturated PD-1 occupancy breaks it."""
    from vcohort.validation.clinical import pembrolizumab_dose_response_flat

    chk = pembrolizumab_dose_response_flat()
    assert chk.passed, chk.failures()
    assert_matches_stored(chk, atol=0.011)  # ORR of 500: a patient or two on another CPU


def test_treg_depletion_with_anti_pd1_is_set_next_to_the_trials():
    """A comparison that records a disagreement: the model's combination gain is positive
    (the trial saw none); mogamulizumab alone is near-inactive in both."""
    from vcohort.validation.clinical import treg_depletion_with_anti_pd1

    chk = treg_depletion_with_anti_pd1()
    assert chk.kind == "comparison" and chk.passed is None
    v = chk.values
    assert v["combination_gain_over_anti_pd1_model (trial: none seen)"] > 0
    assert v["mogamulizumab_alone_orr_model_vs_trial"][0] < 0.05
    assert_matches_stored(chk, atol=0.011)

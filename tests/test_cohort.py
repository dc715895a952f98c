import numpy as np
import pytest

from vcohort.cohort import make_cohort
from vcohort.model.csc_immune import diameter_mm


def test_a_patient_is_fixed_by_seed_and_id_whatever_the_cohort_split():
    whole = make_cohort(8, seed=3, runin_days=0)
    tail = make_cohort(4, seed=3, first_id=4, runin_days=0)
    for k in ("v_N", "q_T8", "k_T"):
        np.testing.assert_array_equal(whole.params[k][4:], tail.params[k])
    np.testing.assert_array_equal(
        whole.pk["pembrolizumab"]["CL"][4:], tail.pk["pembrolizumab"]["CL"]
    )
    np.testing.assert_array_equal(whole.covariates["weight_kg"][4:], tail.covariates["weight_kg"])
    other = make_cohort(8, seed=4, runin_days=0)
    assert not np.allclose(whole.params["v_N"], other.params["v_N"])


def test_covariates_and_variability():
    c = make_cohort(2000, seed=0, runin_days=0)
    # median baseline diameter 86 mm (MODEL.md); with CV 50% the sample median of 2000 draws has
    # a standard error of ~1.2 mm, so 5 mm cannot pass by luck
    assert np.median(c.covariates["baseline_diameter_mm"]) == pytest.approx(86.0, abs=5.0)
    assert 1.6 < np.median(c.covariates["bsa_m2"]) < 2.1
    cv = np.std(c.params["q_T8"]) / np.mean(c.params["q_T8"])
    assert cv == pytest.approx(0.6, abs=0.06)
    fixed = make_cohort(5, seed=0, runin_days=0, variability=False)
    assert np.all(fixed.params["q_T8"] == fixed.params["q_T8"][0])


def test_run_in_keeps_the_tumour_and_settles_the_immune_state():
    c = make_cohort(20, seed=2)  # default run-in
    d = diameter_mm(c.y0["S"], c.y0["N"], c.y0["D"])
    np.testing.assert_allclose(d, c.covariates["baseline_diameter_mm"], rtol=1e-9)
    more = make_cohort(20, seed=2, runin_days=480)
    # the default run-in has settled the immune state: doubling it moves no state by >5%
    for k in ("T8", "Treg", "MDSC", "M1", "M2", "TGFb", "IFNg", "PDL1"):
        np.testing.assert_allclose(c.y0[k], more.y0[k], rtol=0.05, err_msg=k)
    for v in c.y0.values():
        assert np.all(np.isfinite(v)) and np.all(v >= 0)


def test_a_failed_run_in_is_named_and_its_patients_fail_for_that_reason():
    """At dt 0.2 the typical TGF-β decay (14.3/day) x dt = 2.86 is past RK4's stability bound:
    the run-in's TGF-β reached -1e56 and the cohort started from it as if it were settled.
    Now the run-in's failures are warned about, those patients start from NaN, and a
    simulation reports them with STATUS_INITIAL (day 0), not as its own solver failure."""
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import STATUS_INITIAL, simulate

    with pytest.warns(UserWarning, match=r"240-day immune run-in failed for 3 of 3 patients"):
        c = make_cohort(3, seed=7, dt=0.2)
    assert all(np.all(np.isnan(v)) for v in c.y0.values())
    tr = simulate(CSC_IMMUNE, c, None, 7, progress=False)
    assert np.all(tr.status == STATUS_INITIAL) and np.all(tr.status_day == 0)
    assert "run-in failed" in tr.status_text()[0]
    # at the default dt nothing is flagged
    ok = make_cohort(3, seed=7, runin_days=30)
    assert all(np.all(np.isfinite(v)) for v in ok.y0.values())
    assert np.all(simulate(CSC_IMMUNE, ok, None, 7, progress=False).status == 0)


def test_without_drops_the_named_patients_and_keeps_the_order():
    c = make_cohort(5, seed=3, runin_days=0)
    ids = [int(i) for i in c.patient_id]
    rest = c.without([ids[1], ids[3], 10**6])  # an id not in the cohort is ignored
    assert [int(i) for i in rest.patient_id] == [ids[0], ids[2], ids[4]]
    np.testing.assert_array_equal(rest.params["k_TGF"], np.asarray(c.params["k_TGF"])[[0, 2, 4]])
    assert len(c.without([])) == 5

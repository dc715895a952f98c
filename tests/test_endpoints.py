import numpy as np
import pandas as pd
import pytest

from vcohort.endpoints import (
    assessment_days,
    clopper_pearson,
    failed_counts,
    hazard_ratios,
    kaplan_meier,
    recist,
    trial_summary,
)


def test_recist_categories_on_hand_made_series():
    days = np.array([42, 84, 126])
    d = np.array(
        [
            [100, 65, 60, 80],  # PR then PD from nadir 60 (+33%, +20 mm)
            [100, 60, 60, 60],  # PR, no progression
            [100, 90, 108, 110],  # SD: 108 = +20% over nadir 90 and +18 mm -> PD at day 84
            [20, 16, 19, 19.5],  # +22% over nadir 16 but only +3.5 mm: not PD -> SD
            [50, 4, 3, 3],  # CR below the 5 mm floor
            [100, 125, 130, 140],  # PD at the first assessment
        ],
        dtype=float,
    )
    bor, pfs, ev = recist(d, days)
    assert bor.tolist() == ["PR", "PR", "SD", "SD", "CR", "PD"]
    assert pfs.tolist() == [126, 126, 84, 126, 126, 42]
    assert ev.tolist() == [True, False, True, False, False, True]


def test_clopper_pearson_known_values():
    # R: binom.test(7, 20)$conf.int -> 0.1539092 0.5921885
    lo, hi = clopper_pearson(7, 20)
    assert lo == pytest.approx(0.1539092, abs=1e-6) and hi == pytest.approx(0.5921885, abs=1e-6)
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0


def test_confirmation_window_on_hand_made_series():
    days = np.array([42, 84, 126, 168])
    d = np.array(
        [
            [100, 65, 60, 60, 60],  # PR confirmed at the next assessment (42 d >= 28 d)
            [100, 65, 75, 75, 75],  # PR at day 42, -25% at day 84 (and +15% over nadir): SD
            [100, 100, 100, 100, 65],  # PR only at the last assessment: nothing later -> SD
            [100, 65, 90, 130, 130],  # unconfirmed PR, then PD from nadir 65: SD, PFS event
            [50, 4, 3, 3, 3],  # CR confirmed
            [50, 20, 4, 6, 6],  # PR confirmed by the CR at day 84; the CR is not (day 126: PD)
            [50, 4, 8, 8, 8],  # CR at day 42 (recorded 0 mm), then 8 mm: it reappeared, PD
            [100, 125, 130, 140, 150],  # PD at the first assessment
        ],
        dtype=float,
    )
    bor, pfs, ev = recist(d, days, confirm_days=28)
    assert bor.tolist() == ["PR", "SD", "SD", "SD", "CR", "PR", "SD", "PD"]
    assert pfs.tolist() == [168, 168, 168, 84, 168, 126, 84, 42]
    assert ev.tolist() == [False, False, False, True, False, True, True, True]
    # without confirmation the same series count every first response
    bor0, _, _ = recist(d, days)
    assert bor0.tolist() == ["PR", "PR", "PR", "PR", "CR", "CR", "CR", "PD"]
    # a window longer than the assessment gap needs the assessment after next
    bor90, _, _ = recist(d, days, confirm_days=90)
    assert bor90.tolist() == ["PR", "SD", "SD", "SD", "CR", "SD", "SD", "PD"]
    # regrowth under the floor after a CR stays CR: 4.9 mm is under cr_floor_mm (5), so it is
    # recorded as 0 mm (not a reappearance) and is not PD: no event, PFS censored at the last
    # assessment (day 84).  (The BOR alone cannot tell: it is CR from day 42 either way.)
    bor1, pfs1, ev1 = recist(np.array([[50.0, 4, 4.9]]), days[:2])
    assert bor1.tolist() == ["CR"] and ev1.tolist() == [False] and pfs1.tolist() == [84.0]


def test_confirmation_must_come_before_progression():
    # the confirming assessment (day 84) is itself PD from the nadir: not a confirmation
    days = np.array([42, 84])
    d = np.array([[100, 20, 60]], dtype=float)  # -80% then 60 >= 1.2*20 and +40 mm
    bor, pfs, ev = recist(d, days, confirm_days=28)
    assert bor.tolist() == ["SD"] and pfs.tolist() == [84] and ev.tolist() == [True]


def test_stable_disease_needs_a_non_pd_assessment_after_the_minimum_interval():
    # RECIST 1.1 §4.4: SD needs an SD-qualifying assessment at least sd_min_days (default 42)
    # after the start; without one the best response is PD if PD follows, NE if nothing does
    days = np.array([7, 14, 42])
    d = np.array(
        [
            [50, 50, 70, 70],  # SD on day 7 only, then PD on day 14: PD (was SD)
            [50, 50, 52, 53],  # SD on days 7, 14 and 42: SD
            [100, 65, 90, 90],  # unconfirmed PR on day 7 (confirmation 28 d), PD day 14: PD
        ],
        dtype=float,
    )
    bor, pfs, ev = recist(d, days, confirm_days=28)
    assert bor.tolist() == ["PD", "SD", "PD"]
    assert pfs.tolist() == [14, 42, 14] and ev.tolist() == [True, False, True]
    # the minimum interval is the protocol's: with 0 any non-PD assessment is SD
    assert recist(d, days, confirm_days=28, sd_min_days=0)[0].tolist() == ["SD", "SD", "SD"]
    # follow-up that ends before the minimum without PD: not evaluable
    bor, _, ev = recist(d[1:2, :3], days[:2])
    assert bor.tolist() == ["NE"] and ev.tolist() == [False]
    with pytest.raises(ValueError, match="sd_min_days"):
        recist(d, days, sd_min_days=-1)


def test_censoring_at_last_assessment_or_horizon():
    days = np.array([42, 84])
    d = np.array([[100, 90, 95], [100, 130, 140]], dtype=float)
    _, pfs, ev = recist(d, days)
    assert pfs.tolist() == [84, 42] and ev.tolist() == [False, True]
    _, pfs_h, ev_h = recist(d, days, censor_at="horizon", horizon=100)
    assert pfs_h.tolist() == [100, 42] and ev_h.tolist() == [False, True]
    with pytest.raises(ValueError, match="censor_at"):
        recist(d, days, censor_at="death")


def test_assessment_schedule_options():
    assert assessment_days(200, 42).tolist() == [42, 84, 126, 168]
    assert assessment_days(200, 42, first=84).tolist() == [84, 126, 168]
    assert assessment_days(200, 42, days=[30, 10, 250]).tolist() == [10, 30]


def _eps(times_a, ev_a, times_b, ev_b):
    n_a, n_b = len(times_a), len(times_b)
    return pd.DataFrame(
        {
            "patient": np.r_[np.arange(n_a), np.arange(n_b)],
            "arm": ["a"] * n_a + ["b"] * n_b,
            "status": 0,
            "pfs_days": np.r_[times_a, times_b].astype(float),
            "pfs_event": np.r_[ev_a, ev_b].astype(bool),
            "bor": "SD",
            "best_pct_change": 0.0,
            "final_pct_change": 0.0,
        }
    )


def test_kaplan_meier_median_and_landmark_on_a_hand_made_sample():
    # 5 events at 10..50 and no censoring: S drops by 0.2 at each; median = 30 (S(30) = 0.4)
    ep = _eps([10, 20, 30, 40, 50], [1] * 5, [10, 20, 30, 40, 50], [1, 1, 0, 0, 0])
    km = kaplan_meier(ep, landmark_days=25).set_index("arm")
    assert km.loc["a", "median_pfs_days"] == 30
    assert km.loc["a", "pfs_landmark"] == pytest.approx(0.6)
    # arm b: S = 0.8, 0.6 then censored: the median is not reached
    assert np.isnan(km.loc["b", "median_pfs_days"])
    # a landmark after the last follow-up is not estimable while a patient is still
    # progression-free (arm b: censored at 50 with S = 0.6); once every patient has
    # progressed (arm a) the curve is 0 from then on; Greenwood's band would be (0, 0), so the
    # upper end is the exact bound for 0 of the 5 patients known at the landmark
    late = kaplan_meier(ep, landmark_days=60).set_index("arm")
    assert np.isnan(late.loc["b", "pfs_landmark"])
    assert late.loc[
        "a", ["pfs_landmark", "pfs_landmark_ci_low", "pfs_landmark_ci_high"]
    ].tolist() == pytest.approx([0, 0, 1 - 0.025**0.2])


@pytest.mark.parametrize("landmark", [-10, 0, float("inf"), float("nan"), True, "182"])
def test_a_landmark_that_is_not_a_positive_day_is_refused(landmark):
    """A negative landmark gave NaN with a CI of (1, 1); day 0 an 'exact' (0.54, 1) interval
    around a probability that is 1 by definition."""
    ep = _eps([10, 20, 30, 40, 50], [1] * 5, [10, 20, 30, 40, 50], [1, 1, 0, 0, 0])
    with pytest.raises(ValueError, match=r"landmark_days=.*; allowed: a finite number of days > 0"):
        kaplan_meier(ep, landmark_days=landmark)


def test_landmark_pfs_of_one_has_an_exact_lower_bound_not_a_point_band():
    """No progression by the landmark: the KM estimate is 1 and Greenwood's variance 0; the
    interval's lower end is the Clopper-Pearson bound for the patients whose state at the
    landmark is known (censored before it: unknown), as the DCR's would be, not 1."""
    # arm a: 10 patients followed past day 100 without PD, 2 censored early (day 20);
    # arm b: one PD at day 30 among 10 (a proper Greenwood band, left as lifelines gives it)
    times_a, ev_a = [120] * 10 + [20, 20], [0] * 12
    ep = _eps(times_a, ev_a, [30] + [120] * 9, [1] + [0] * 9)
    km = kaplan_meier(ep, landmark_days=100).set_index("arm")
    assert km.loc["a", "pfs_landmark"] == 1.0
    assert km.loc["a", "pfs_landmark_ci_low"] == pytest.approx(clopper_pearson(10, 10)[0])
    assert km.loc["a", "pfs_landmark_ci_high"] == 1.0
    assert 0.0 < km.loc["b", "pfs_landmark_ci_low"] < 0.9 < km.loc["b", "pfs_landmark_ci_high"]
    # an arm never assessed within the horizon has nothing to estimate
    km = kaplan_meier(ep.assign(n_assessments=0), landmark_days=100).set_index("arm")
    assert km[["pfs_landmark", "median_pfs_days"]].isna().all().all()
    assert (km["pfs_landmark_days"] == 100).all()


def test_an_all_failed_arm_keeps_its_landmark_day_and_the_manifest_counts_patients():
    """An arm whose every patient failed: NaN statistics but the landmark day (the report's
    header reads it); the manifest counts failed patients once, and per arm."""
    ep = _eps([10, 20], [1, 0], [10, 20], [1, 0])
    ep.loc[ep["arm"] == "a", "status"] = 2
    km = kaplan_meier(ep, landmark_days=15).set_index("arm")
    assert np.isnan(km.loc["a", "pfs_landmark"]) and km.loc["a", "pfs_landmark_days"] == 15
    both = pd.concat([ep, ep[ep["arm"] == "a"].assign(arm="c")])  # failed in a second arm too
    assert failed_counts(both) == {"patients": 2, "by_arm": {"a": 2, "b": 0, "c": 2}}


def test_hazard_ratio_recovers_a_known_ratio_and_inverts_with_the_reference():
    rng = np.random.default_rng(0)
    n = 2000
    ta = np.minimum(rng.exponential(100.0, n), 365)  # hazard 1/100
    tb = np.minimum(rng.exponential(200.0, n), 365)  # hazard 1/200: true HR b vs a = 0.5
    ep = _eps(ta, ta < 365, tb, tb < 365)
    hr = hazard_ratios(ep, "a").set_index("arm")
    assert hr.loc["a", "hr"] == 1.0 and hr.loc["a", "hr_note"] == "reference"
    assert hr.loc["b", "hr_ci_low"] < 0.5 < hr.loc["b", "hr_ci_high"]
    assert hr.loc["b", "hr_ci_high"] - hr.loc["b", "hr_ci_low"] < 0.15  # n=2000: tight
    inv = hazard_ratios(ep, "b").set_index("arm")
    assert inv.loc["a", "hr"] == pytest.approx(1.0 / hr.loc["b", "hr"], rel=1e-3)
    with pytest.raises(ValueError, match="reference arm"):
        hazard_ratios(ep, "c")


def test_hazard_ratio_compares_only_patients_evaluable_in_both_arms():
    """Identical arms; the five earliest progressors' simulations fail in 'b' only.  Kept in
    'a', they made the identical treatment look better (HR 0.69, CI 0.53-0.91); paired, the
    ratio is exactly 1 and the note says who was left out."""
    t = np.repeat([42.0, 84.0, 126.0, 168.0], 5)
    ep = _eps(t, t < 168, t, t < 168)
    fail = (ep["arm"] == "b") & (ep["patient"] < 5)
    ep.loc[fail, "status"] = 1
    ep.loc[fail, "pfs_days"] = np.nan
    hr = hazard_ratios(ep, "a").set_index("arm")
    assert hr.loc["b", "hr"] == pytest.approx(1.0, abs=1e-9)
    assert hr.loc["b", "hr_ci_low"] < 1.0 < hr.loc["b", "hr_ci_high"]
    assert hr.loc["b", "hr_note"].startswith("5 patients evaluable in only one of the two arms")
    assert hr.loc["a", "hr_note"] == "reference"


def test_hazard_ratio_with_few_events_has_the_wider_ci_and_says_so():
    """One progression in an arm of 20 against 15 in the reference, on the same patients (arm b
    progresses 30-60 days later): the patient-clustered sandwich variance is biased low with so
    few events (0.0036-0.148 here; 0.02-0.06 around 0.04 in a trial run), so the CI is the wider
    model-based one (0.0030-0.181), with a note."""
    from lifelines import CoxPHFitter

    rng = np.random.default_rng(6)
    ta = rng.integers(20, 120, 20).astype(float)
    ea = np.arange(20) < 15
    tb = np.minimum(ta + rng.integers(30, 60, 20), 126.0)
    eb = np.arange(20) == 0
    ep = _eps(ta, ea, tb, eb)
    hr = hazard_ratios(ep, "a").set_index("arm")
    assert hr.loc["b", "hr_note"] == (
        "1 progression event in an arm: CI the wider of the robust and model-based ones"
    )
    arm = np.r_[np.zeros(20), np.ones(20)]
    df = pd.DataFrame({"t": np.r_[ta, tb], "e": np.r_[ea, eb], "arm": arm})
    ci = lambda f: np.exp(f.confidence_intervals_.loc["arm"].to_numpy())  # noqa: E731
    model = ci(CoxPHFitter().fit(df, "t", "e"))
    robust = ci(CoxPHFitter().fit(df.assign(p=np.r_[np.arange(20), np.arange(20)]), "t", "e",
                                  cluster_col="p"))  # fmt: skip
    assert model[0] < robust[0] and robust[1] < model[1]  # the case the rule is for
    got = hr.loc["b", ["hr_ci_low", "hr_ci_high"]].to_numpy(float)
    np.testing.assert_allclose(got, model, rtol=1e-9)
    # with plenty of events the robust CI alone is used, without a note
    many = hazard_ratios(_eps(ta, ea, ta * 1.5, ea), "a").set_index("arm")
    assert many.loc["b", "hr_note"] == ""


def test_hazard_ratio_without_events_is_nan_with_a_note():
    ep = _eps([100, 100], [0, 0], [100, 100], [0, 0])
    hr = hazard_ratios(ep, "a").set_index("arm")
    assert np.isnan(hr.loc["b", "hr"]) and hr.loc["b", "hr_note"] == "no progression events"


def test_hazard_ratio_with_events_in_one_arm_only_is_nan_and_silent():
    # complete separation: every event in the reference arm, none in "b" (MLE HR = 0)
    import warnings

    ep = _eps([10, 20, 30, 40], [1, 1, 1, 1], [100, 100, 100, 100], [0, 0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # lifelines' convergence warnings must not escape
        hr = hazard_ratios(ep, "a").set_index("arm")
    assert np.isnan(hr.loc["b", "hr"])
    assert hr.loc["b", "hr_note"] == "no progression events in 'b': HR not estimable"
    inv = hazard_ratios(ep, "b").set_index("arm")
    assert inv.loc["a", "hr_note"] == "no progression events in 'b': HR not estimable"


def test_trial_summary_has_every_per_arm_statistic():
    ep = _eps([10, 20, 30, 40], [1, 1, 1, 0], [20, 40, 60, 80], [1, 1, 0, 0])
    ep["bor"] = ["PR", "SD", "PD", "SD", "CR", "PR", "SD", "PD"]
    ep["auc_pembrolizumab"] = [0, 0, 0, 0, 5, 6, 7, 8.0]
    s = trial_summary(ep, reference="a").set_index("arm")
    assert s.loc["b", "orr"] == 0.5 and s.loc["b", "dcr"] == 0.75
    assert s.loc["b", "median_auc_pembrolizumab"] == 6.5
    for col in ("orr_ci_low", "median_pfs_days", "pfs_landmark", "hr", "hr_ci_high"):
        assert col in s.columns


def test_best_pct_change_is_taken_at_the_assessments():
    """A tumour that only grows shows its growth at the first assessment (+20% by day 42),
    not its first-day change (+0.4%); the daily minimum stays available."""
    from types import SimpleNamespace

    import numpy as np

    from vcohort.endpoints import patient_endpoints

    days = np.arange(0, 85)
    d = 50.0 * (1.0 + 0.2 * days / 42.0)  # +20% at day 42, +40% at day 84
    traj = SimpleNamespace(
        daily={"diameter_mm": d[None, :]},
        status=np.array([0]),
        patient_id=np.array([7]),
        auc={},
        status_text=lambda: ["ok"],
    )
    ep = patient_endpoints(traj, assess_every=42)
    assert ep["best_pct_change"].iloc[0] == pytest.approx(20.0)
    assert ep["best_pct_change_daily"].iloc[0] == pytest.approx(100 * 0.2 / 42, rel=1e-9)
    assert ep["bor"].iloc[0] == "PD"
    # a tumour that progressed (+54% at day 42) and then shrank under continued treatment (to
    # 1% of baseline by day 126) is PD, and its best change is the one up to the progression:
    # the waterfall must not draw it as a near-complete response
    late = np.interp(days := np.arange(0, 127), [0, 42, 84, 126], [32.0, 49.0, 20.0, 0.3])
    traj.daily = {"diameter_mm": late[None, :]}
    ep = patient_endpoints(traj, assess_every=42)
    assert ep["bor"].iloc[0] == "PD" and ep["pfs_days"].iloc[0] == 42
    assert ep["best_pct_change"].iloc[0] == pytest.approx(100 * (49.0 - 32.0) / 32.0)
    # a response before the progression stays the best change
    resp = np.interp(days, [0, 42, 84, 126], [50.0, 30.0, 45.0, 10.0])
    traj.daily = {"diameter_mm": resp[None, :]}
    ep = patient_endpoints(traj, assess_every=42)
    assert ep["bor"].iloc[0] == "PR" and ep["best_pct_change"].iloc[0] == pytest.approx(-40.0)


def test_a_failed_patients_yes_no_endpoints_are_unknown_not_false(tmp_path):
    """A patient whose solve failed has NA progression and grade-4 flags (not False, which
    read as "censored" and "no neutropenia"), NaN numbers and BOR NE; the arm's statistics
    use the others, and the table round-trips through Parquet with the NA kept."""
    from types import SimpleNamespace

    from vcohort.endpoints import patient_endpoints, summarize

    days = np.arange(0, 85)
    d = np.stack([50.0 * (1.0 + 0.2 * days / 42.0), np.full(85, np.nan)])
    anc = np.stack([np.full(85, 4.0), np.full(85, np.nan)])
    traj = SimpleNamespace(
        daily={"diameter_mm": d, "ANC": anc},
        status=np.array([0, 2]),
        patient_id=np.array([1, 2]),
        auc={},
        status_text=lambda: ["ok", "failed"],
    )
    ep = patient_endpoints(traj, assess_every=42)
    assert ep["pfs_event"].tolist() == [True, pd.NA]
    assert ep["grade4_neutropenia"].tolist() == [False, pd.NA]
    assert ep["bor"].tolist() == ["PD", "NE"] and np.isnan(ep["pfs_days"].iloc[1])
    assert ep["nadir_day"].tolist() == [0, pd.NA]  # not the failed trajectory's first NaN
    row = summarize(ep.assign(arm="a")).iloc[0]
    assert row["n_failed"] == 1 and row["orr"] == 0.0 and row["grade4_neutropenia"] == 0.0
    ep.to_parquet(tmp_path / "e.parquet")
    back = pd.read_parquet(tmp_path / "e.parquet")
    assert back["pfs_event"].isna().tolist() == [False, True]
    # a model without a diameter (tumour cells): "cleared" is unknown for the failed patient
    cells = SimpleNamespace(**{**vars(traj), "daily": {"tumour_cells": np.stack([d[0], d[1]])}})
    assert patient_endpoints(cells)["tumour_cleared"].tolist() == [False, pd.NA]


def test_no_assessment_means_not_evaluable_not_zero_response():
    """A horizon before the first assessment: every BOR is NE, so ORR/DCR and the
    progression-free fraction are NaN (not 0% and 100%), without numpy warnings; one assessed
    patient makes the arm evaluable again (NE patients then count as non-responders)."""
    import warnings

    from vcohort.endpoints import summarize

    ep = pd.DataFrame(
        {
            "arm": "a",
            "status": 0,
            "bor": ["NE", "NE", "NE"],
            "best_pct_change": np.nan,
            "final_pct_change": np.nan,
            "pfs_event": False,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = summarize(ep).iloc[0]
    assert np.isnan(row["orr"]) and np.isnan(row["dcr"]) and np.isnan(row["orr_ci_low"])
    assert np.isnan(row["progression_free_at_end"]) and np.isnan(row["median_best_pct_change"])
    ep.loc[0, ["bor", "best_pct_change", "final_pct_change"]] = ["PR", -40.0, -40.0]
    row = summarize(ep).iloc[0]
    assert row["orr"] == pytest.approx(1 / 3) and row["median_best_pct_change"] == -40.0
    # patients imaged only before sd_min_days without PD are NE, yet the arm was assessed:
    # the assessment count (not the NE codes) says so, and ORR/DCR are 0, not NaN
    ep["bor"], ep["n_assessments"] = "NE", 2
    row = summarize(ep).iloc[0]
    assert row["orr"] == 0.0 and row["dcr"] == 0.0 and row["progression_free_at_end"] == 1.0
    ep["n_assessments"] = 0
    row = summarize(ep).iloc[0]
    assert np.isnan(row["orr"]) and np.isnan(row["progression_free_at_end"])


def test_grade4_neutropenia_has_an_exact_ci_on_the_evaluable_patients():
    """``grade4_neutropenia_ci_low/high``: the exact (Clopper–Pearson) 95% CI of the patients
    with an ANC nadir under 0.5 x 10⁹/L among the evaluable ones (the failed solve is left out,
    as from the point estimate), equal to scipy's exact binomial CI; both columns described."""
    from scipy.stats import binomtest

    from vcohort.columns import describe
    from vcohort.endpoints import summarize

    nadir = [0.3, 0.45, 2.0, 1.1, 0.2, 3.0, 0.7, np.nan]  # 3 of 7 evaluable under 0.5
    ep = pd.DataFrame(
        {
            "arm": ["a"] * 8 + ["b"] * 2,
            "status": [0] * 7 + [1] + [0, 0],
            "best_pct_change": 0.0,
            "final_pct_change": 0.0,
            "anc_nadir": nadir + [1.0, 2.0],
        }
    )
    g4 = ep["anc_nadir"].to_numpy() < 0.5
    ep["grade4_neutropenia"] = pd.arrays.BooleanArray(g4, mask=(ep["status"] != 0).to_numpy())
    s = summarize(ep).set_index("arm")
    for arm, k, n in (("a", 3, 7), ("b", 0, 2)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert s.loc[arm, "grade4_neutropenia"] == pytest.approx(k / n)
        assert s.loc[arm, "grade4_neutropenia_ci_low"] == pytest.approx(ci.low, abs=1e-12)
        assert s.loc[arm, "grade4_neutropenia_ci_high"] == pytest.approx(ci.high, abs=1e-12)
    assert s.loc["b", "grade4_neutropenia_ci_low"] == 0.0
    for side, word in (("low", "lower"), ("high", "upper")):
        unit, meaning = describe(f"grade4_neutropenia_ci_{side}")
        assert unit == "fraction" and f"Clopper–Pearson) 95% CI, {word}" in meaning


def test_median_pfs_at_exactly_half_is_that_assessment_despite_rounding():
    """4 of 8 patients progressed by day 84: S(84) = 1/2 exactly, which lifelines' product
    computes as 0.5000000000000001 here; the median is still day 84 (not the next scan, and
    with 10 of 20 not 'not reached').  Fails with lifelines' median_survival_time_."""
    t = np.array([42, 84, 126, 126, 126, 126, 84, 42.0])
    e = np.array([1, 1, 1, 0, 0, 0, 1, 1], bool)
    ep = _eps(t, e, t, e).assign(n_assessments=3)
    km = kaplan_meier(ep).set_index("arm")
    assert km.loc["a", "median_pfs_days"] == 84.0
    t20 = np.r_[np.full(3, 42.0), np.full(7, 84.0), np.full(10, 126.0)]
    e20 = np.arange(20) < 10
    km20 = kaplan_meier(_eps(t20, e20, t20, e20).assign(n_assessments=3)).set_index("arm")
    assert km20.loc["a", "median_pfs_days"] == 84.0


def test_complete_separation_is_not_a_hazard_ratio():
    """Every reference patient progresses at day 42, before any patient of 'b' does (one at
    168): the Cox partial likelihood has no maximum (HR -> 0), which lifelines returned as
    1e-8 with CI (0, inf); the result is NaN with a note, both ways round.  Overlapping
    arms (a tie at the same scan) are estimable."""
    from vcohort.endpoints import separated

    ep = _eps(np.full(6, 42.0), np.ones(6), np.full(6, 168.0), np.arange(6) == 0)
    hr = hazard_ratios(ep, "a").set_index("arm")
    assert np.isnan(hr.loc["b", ["hr", "hr_ci_low", "hr_ci_high"]].to_numpy(float)).all()
    assert (
        hr.loc["b", "hr_note"].startswith(
            "complete separation: each progression in 'b' came after every patient of 'a'"
        )
        and "HR 0)" in hr.loc["b", "hr_note"]
    )
    inv = hazard_ratios(ep, "b").set_index("arm")
    assert np.isnan(inv.loc["a", "hr"]) and "HR infinite)" in inv.loc["a", "hr_note"]
    t, e, x = np.r_[42.0, 84, 42, 126], np.array([1, 1, 1, 0], bool), np.r_[0, 0, 1, 1] == 1
    assert separated(t, e, x) == 0  # a tie at day 42 with the other arm at risk
    # x's only event (day 126) after both reference patients left: HR -> 0; mirrored: -> inf
    assert separated(np.r_[42.0, 84, 126, 126], e, x) == -1
    assert separated(np.r_[126.0, 126, 42, 84], np.array([1, 0, 1, 1], bool), x) == 1
    ok = hazard_ratios(_eps([42.0, 84, 84], [1, 1, 0], [42.0, 126, 126], [1, 0, 1]), "a")
    assert np.isfinite(ok.set_index("arm").loc["b", "hr"])


def test_every_per_drug_column_pattern_describes_its_own_columns():
    """The first matching pattern describes a column: `auc_(.+)` once swallowed
    `auc_mean:DRUG` ('plasma AUC of mean:DRUG')."""
    import re

    from vcohort.columns import PATTERNS, describe

    for pattern, unit, meaning in PATTERNS:
        column = pattern.replace("(.+)", "pembrolizumab").replace("\\", "")
        assert re.fullmatch(pattern, column), column
        assert describe(column) == (unit, meaning.format(drug="pembrolizumab")), column


def test_a_response_lost_before_its_confirming_scan_is_not_confirmed():
    """Scans every 14 d with confirmation at 28 d: -32%, -24% (SD), -34%, -24%.  The first PR
    is followed by SD, so it is not confirmed (RECIST 1.1 §4.6, Table 3: PR then SD is SD),
    although the scan 28 d later is a PR again; before, only that scan was looked at."""
    days = np.array([14, 28, 42, 56])
    d = np.array(
        [
            [50, 34, 38, 33, 38],  # PR, SD, PR, SD: never held for 28 d -> SD
            [50, 34, 33, 34, 34],  # PR held through day 42 -> PR
            [50, 4, 20, 4, 4],  # CR, then 20 mm: reappeared, PD on day 28 (before sd_min_days)
        ],
        dtype=float,
    )
    bor, pfs, ev = recist(d, days, confirm_days=28)
    assert bor.tolist() == ["SD", "PR", "PD"]
    assert ev.tolist() == [False, False, True] and pfs[2] == 28


def test_regrowth_after_a_cr_is_pd_with_a_floor_under_5_mm():
    """With cr_floor_mm = 2 a tumour of 1 mm is a CR (recorded as 0 mm); regrowing to 3 mm it
    has reappeared: PD (RECIST 1.1: a lesion that reappears after a CR), even though the
    increase over the 0 mm nadir is under 5 mm.  Before, the patient stayed a censored CR."""
    days = np.array([42, 84, 126, 168])
    bor, pfs, ev = recist(np.array([[20.0, 1, 1, 3, 4.5]]), days, cr_floor_mm=2, confirm_days=28)
    assert bor.tolist() == ["CR"] and ev.tolist() == [True] and pfs.tolist() == [126.0]


def test_a_measurement_exactly_on_a_recist_threshold_meets_it():
    """'At least a 30% decrease' and 'at least a 20% increase (and 5 mm)' (RECIST 1.1 §4.3.1):
    14 -> 9.8 mm is -30% (computed as -0.29999999999999993) and 33.7 -> 40.44 mm is +20%
    (+6.74 mm); both were missed by round-off."""
    from vcohort.endpoints import first_progression

    assert recist(np.array([[14.0, 9.8]]), np.array([42]))[0].tolist() == ["PR"]
    assert first_progression(np.array([[40.0, 33.7, 40.44]])).tolist() == [1]
    assert first_progression(np.array([[40.0, 33.7, 40.43]])).tolist() == [2]  # just under


def test_an_unassessed_arm_s_hazard_ratio_says_so():
    """A horizon before the first scan: the HR note says 'not assessed', as ORR and the
    median do, not 'no progression events'."""
    ep = pd.DataFrame(
        {
            "arm": ["a", "a", "b", "b"],
            "patient": [0, 1, 0, 1],
            "status": 0,
            "pfs_days": 0.0,
            "pfs_event": False,
            "n_assessments": 0,
        }
    )
    row = hazard_ratios(ep, "a").set_index("arm").loc["b"]
    assert np.isnan(row["hr"]) and row["hr_note"].startswith("not assessed")


def test_an_hr_against_an_arm_without_evaluable_patients_names_that_arm():
    ep = pd.DataFrame(
        {
            "arm": ["ref"] * 3 + ["trt"] * 3,
            "patient": [0, 1, 2] * 2,
            "status": [1, 1, 1, 0, 0, 0],
            "pfs_days": 42.0,
            "pfs_event": True,
        }
    )
    row = hazard_ratios(ep, "ref").set_index("arm").loc["trt"]
    assert row["hr_note"] == "no evaluable patient in 'ref' (the reference arm): HR not estimable"


def test_time_to_and_duration_of_response_on_hand_made_series():
    """The response day is the first assessment a (confirmed) CR/PR was measured, before
    progression; the duration of response runs from it to PD or to PFS's censoring (RECIST
    1.1 §4.5); no response: NaN."""
    days = np.array([42, 84, 126, 168])
    d = np.array(
        [
            [100, 65, 60, 60, 60],  # PR from day 42, never progresses: DoR censored at 168
            [100, 90, 65, 60, 80],  # PR first at day 84; PD at 168 (+33% over nadir 60)
            [100, 65, 90, 130, 130],  # PR at 42 not confirmed (day 84 is -10%), then PD
            [50, 20, 4, 6, 6],  # PR at 42 confirmed by the CR at 84; 6 mm at 126: PD
            [100, 100, 100, 100, 100],  # SD
            [100, 65, 75, 65, 65],  # PR at 42 not confirmed; the one from 126 is (by 168)
        ],
        dtype=float,
    )
    bor, pfs, ev, on = recist(d, days, confirm_days=28, response_day=True)
    assert bor.tolist() == ["PR", "PR", "SD", "PR", "SD", "PR"]
    np.testing.assert_array_equal(on, [42, 84, np.nan, 42, np.nan, 126])
    np.testing.assert_array_equal(pfs - on, [126, 84, np.nan, 84, np.nan, 42])
    assert ev.tolist() == [False, True, True, True, False, False]
    # unconfirmed, the third patient's PR at day 42 counts
    assert recist(d, days, response_day=True)[3][2] == 42
    # nothing assessed: no response day either
    assert np.isnan(recist(d[:, :1], days[:0], response_day=True)[3]).all()
    assert len(recist(d, days)) == 3  # the plain call keeps its three results


def test_patient_endpoints_and_the_summary_carry_the_duration_of_response():
    from types import SimpleNamespace

    from vcohort.endpoints import patient_endpoints

    t = np.arange(0, 169)
    shapes = {  # diameters at days 0, 42, 84, 126, 168, linear in between
        "responds, lasts": [100, 60, 55, 55, 55],
        "responds at 84, progresses at 168": [100, 90, 65, 60, 80],
        "stable": [100, 100, 100, 100, 100],
        "failed": [np.nan] * 5,
    }
    d = np.stack([np.interp(t, [0, 42, 84, 126, 168], v) for v in shapes.values()])
    traj = SimpleNamespace(
        daily={"diameter_mm": d},
        status=np.array([0, 0, 0, 2]),
        patient_id=np.arange(4),
        auc={},
        status_text=lambda: ["ok"] * 3 + ["failed"],
    )
    ep = patient_endpoints(traj, assess_every=42)
    np.testing.assert_array_equal(ep["response_day"], [42, 84, np.nan, np.nan])
    np.testing.assert_array_equal(ep["dor_days"], [126, 84, np.nan, np.nan])
    assert ep["dor_event"].tolist() == [False, True, pd.NA, pd.NA]  # NA: no response / failed
    s = trial_summary(ep.assign(arm="a")).iloc[0]
    assert s["median_ttr_days"] == 63  # the responders' (42 and 84)
    # KM over the 2 responders: the event at 84 takes S to 0.5, the median; the other is
    # censored at 126, so a landmark of 6 months (182.6 d) is past their follow-up
    assert s["median_dor_days"] == 84 and np.isnan(s["dor_landmark"])
    assert s["pfs_landmark_days"] == pytest.approx(182.625)
    # censored at the horizon (day 180, 12 days after the last assessment) rather than at the
    # last assessment: the lasting response's duration runs to the horizon
    traj.daily = {"diameter_mm": np.concatenate([d, d[:, -1:].repeat(12, axis=1)], axis=1)}
    last = patient_endpoints(traj, assess_every=42)
    horizon = patient_endpoints(traj, assess_every=42, censor_at="horizon")
    assert last["dor_days"].iloc[0] == 126 and horizon["dor_days"].iloc[0] == 138
    assert horizon["dor_days"].iloc[1] == 84  # an ended response is not censored


def test_kaplan_meier_of_the_duration_of_response_uses_the_responders_only():
    ep = _eps([10, 20, 30, 40, 50, 60], [1] * 6, [10, 20], [1, 1])
    # arm a: 5 responders whose responses end at 10..50 days, one non-responder; arm b: none
    ep["dor_days"] = [10.0, 20, 30, 40, 50, np.nan, np.nan, np.nan]
    ep["dor_event"] = pd.array([True] * 5 + [pd.NA] * 3, dtype="boolean")
    km = kaplan_meier(ep, landmark_days=25).set_index("arm")
    assert km.loc["a", "median_dor_days"] == 30
    assert km.loc["a", "dor_landmark"] == pytest.approx(0.6)
    assert 0 < km.loc["a", "dor_landmark_ci_low"] < 0.6 < km.loc["a", "dor_landmark_ci_high"] < 1
    dor_cols = [c for c in km.columns if "dor" in c]
    assert len(dor_cols) == 6 and km.loc["b", dor_cols].isna().all()
    # the PFS columns keep their order, the DoR ones follow
    assert list(km.columns[:7]) == [
        "median_pfs_days", "median_pfs_ci_low", "median_pfs_ci_high", "pfs_landmark_days",
        "pfs_landmark", "pfs_landmark_ci_low", "pfs_landmark_ci_high",
    ]  # fmt: skip

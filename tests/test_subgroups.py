"""Subgroup analysis (`vcohort.subgroups`) on synthetic trials whose answer is known, and the
forest plot."""

import numpy as np
import pandas as pd
import pytest

from vcohort.experiment import experiment_from_dict
from vcohort.plots import forest
from vcohort.subgroups import baseline_frame, split, subgroup_table


def _trial(n: int, hr_yes: float, hr_no: float, seed: int = 0):
    """Two arms on the same n patients; a yes/no biomarker; exponential PFS (control hazard
    1/100 per day, the treated hazard times hr_yes or hr_no), censored at day 365."""
    rng = np.random.default_rng(seed)
    marker = rng.random(n) < 0.5
    size = rng.lognormal(np.log(80), 0.3, n)  # unrelated to the effect
    rows = []
    for arm, hr in (("control", (1.0, 1.0)), ("drug", (hr_yes, hr_no))):
        rate = np.where(marker, hr[0], hr[1]) / 100.0
        t = rng.exponential(1.0 / rate)
        rows.append(pd.DataFrame({"patient": np.arange(n), "arm": arm, "status": 0,
                                  "pfs_days": np.minimum(t, 365.0), "pfs_event": t < 365.0,
                                  "bor": np.where(t > 200, "PR", "SD"),
                                  "best_pct_change": 0.0, "final_pct_change": 0.0}))  # fmt: skip
    ep = pd.concat(rows, ignore_index=True)
    base = pd.DataFrame({"patient": np.arange(n), "marker": marker, "size_mm": size})
    return ep, base


def test_an_effect_in_one_subgroup_only_is_found_and_tested():
    ep, base = _trial(1000, hr_yes=0.4, hr_no=1.0)
    t = subgroup_table(ep, base, "control", ["marker", "size_mm"])
    d = t[t.arm == "drug"].set_index("subgroup")
    yes, no = d.loc["marker = yes"], d.loc["marker = no"]
    assert yes["hr_ci_high"] < 0.6 and no["hr_ci_low"] < 1.0 < no["hr_ci_high"]
    assert yes["interaction_p"] == no["interaction_p"] < 1e-6
    # the unrelated variable: the effect in both halves, no interaction
    halves = d[d.index.str.startswith("size_mm")]
    assert len(halves) == 2 and (halves["hr"] < 0.9).all()
    assert halves["interaction_p"].iloc[0] > 0.05
    # the halves partition the patients; 'all patients' comes first
    assert t["variable"].iloc[0] == "all patients" and halves["n"].sum() == 1000


def test_the_same_effect_everywhere_gives_no_interaction():
    ep, base = _trial(1000, hr_yes=0.6, hr_no=0.6, seed=1)
    d = subgroup_table(ep, base, "control", ["marker"]).query("arm == 'drug'")
    assert d["interaction_p"].iloc[1] > 0.05 and (d["hr_ci_high"].iloc[1:] < 1.0).all()


def test_a_variable_with_one_value_is_not_split():
    ep, base = _trial(100, 0.5, 0.5)
    base["f0"] = 0.1 * (1 + 1e-8 * np.arange(100))  # float32 rounding, not a spread
    base["flag"] = True
    t = subgroup_table(ep, base, "control", ["f0", "flag", "marker"])
    assert t["variable"].unique().tolist() == ["all patients", "marker"]
    assert t.attrs["not_split"] == ["f0", "flag"]
    # cut points given for it: split as asked
    t = subgroup_table(ep, base, "control", ["f0"], cuts={"f0": [0.1000000495]})
    assert t.loc[t.arm == "control", "n"].tolist() == [100, 50, 50]


def test_the_interaction_test_is_the_difference_of_two_log_hazard_ratios():
    """Two subgroups: Cochran's Q is the square of Altman & Bland's z for the difference of
    the two log hazard ratios, each with the standard error its 95% CI implies."""
    from scipy.stats import norm

    from vcohort.subgroups import interaction_test

    def heterogeneity_p(rows):
        return interaction_test(rows)[0]

    rows = pd.DataFrame({"hr": [0.5, 0.8], "hr_ci_low": [0.4, 0.6], "hr_ci_high": [0.625, 1.1]})
    se = (np.log(rows.hr_ci_high) - np.log(rows.hr_ci_low)) / (2 * norm.ppf(0.975))
    z = (np.log(0.5) - np.log(0.8)) / np.hypot(*se)
    assert heterogeneity_p(rows) == pytest.approx(2 * norm.sf(abs(z)), rel=1e-12)
    assert heterogeneity_p(rows.assign(hr=[0.5, 0.5], hr_ci_high=[0.625, 0.625])) == 1.0
    assert np.isnan(heterogeneity_p(rows.iloc[:1]))  # one estimable subgroup: no test
    assert np.isnan(heterogeneity_p(rows.assign(hr=[np.nan, 0.8])))


def test_missing_values_and_ties_at_the_median():
    """Ties at the top: with 36 patients at 2.0 and 4 at 1.0 the median is the largest value,
    so ``x <= median`` would hold every patient and leave a two-valued variable unsplit; it is
    split at ``x < median`` instead (4 vs 36).  A variable with one value is still not split."""
    ep, base = _trial(40, 0.5, 0.5)
    base["size_mm"] = base["size_mm"].where(base["patient"] >= 4)  # 4 patients unknown
    base["pos"] = pd.Series([True, False, None, True] * 10, dtype=object)
    base["tied"] = np.where(base["patient"] < 36, 2.0, 1.0)  # the median is the tied value
    base["same"] = 3.0
    t = subgroup_table(ep, base, "control", ["size_mm", "pos", "tied", "same"])
    n = t[t.arm == "control"].groupby("variable", sort=False)["n"].sum()
    assert n["size_mm"] == 36 and n["pos"] == 30  # missing values in no subgroup
    assert t.attrs["missing"] == {"size_mm": 4, "pos": 10}
    tied = t[(t.arm == "control") & (t.variable == "tied")]
    assert tied["subgroup"].tolist() == ["tied < 2 (median)", "tied >= 2 (median)"]
    assert tied["n"].tolist() == [4, 36]
    assert t.attrs["not_split"] == ["same"]
    assert t.attrs["not_split_reason"] == {"same": "one value in every patient"}
    g, labels = split(pd.Series([1.0] * 16 + [2.0] * 24, name="v"))
    assert np.bincount(g).tolist() == [16, 24] and labels[0] == "v < 2 (median)"
    g, _ = split(pd.Series([1.0, np.nan, 3.0], name="x"))
    assert g.tolist() == [0, -1, 1]


def test_an_infinite_value_is_in_no_subgroup_and_not_in_the_median():
    g, labels = split(pd.Series([1.0, np.inf, 3.0, 2.0], name="x"))
    assert g.tolist() == [0, -1, 1, 0] and labels == ["x <= 2 (median)", "x > 2 (median)"]
    ep, base = _trial(40, 0.5, 0.5)
    base["x"] = np.where(base["patient"] < 3, np.inf, base["patient"].astype(float))
    base.loc[base["patient"] == 3, "x"] = np.nan
    t = subgroup_table(ep, base, "control", ["x"])
    ctl = t[(t.arm == "control") & (t.variable == "x")]
    assert ctl["subgroup"].tolist() == ["x <= 21.5 (median)", "x > 21.5 (median)"]  # of 4..39
    assert ctl["n"].tolist() == [18, 18]
    assert t.attrs["missing"] == {"x": 1} and t.attrs["non_finite"] == {"x": 3}


def test_text_values_are_refused_naming_the_variable():
    ep, base = _trial(20, 0.5, 0.5)
    base["stage"] = ["III", "IV"] * 10
    with pytest.raises(ValueError, match=r"stage holds values that are not numbers \(e.g. 'III'\)"):
        split(base["stage"])
    with pytest.raises(ValueError, match="allowed: numeric or yes/no"):
        subgroup_table(ep, base, "control", ["stage", "marker"])
    # not strict (a trial's run folder): that variable left out with the reason, the rest kept
    t = subgroup_table(ep, base, "control", ["stage", "marker"], strict=False)
    assert t["variable"].unique().tolist() == ["all patients", "marker"]
    assert list(t.attrs["failed"]) == ["stage"] and "'III'" in t.attrs["failed"]["stage"]


def test_cut_points_split_a_0_1_variable_by_number():
    """Cut points given: a variable whose values are all 0/1 (a parameter at 1.0 in everyone,
    a 0/1 flag) splits by the numbers, not as yes/no; one left in a single group is not split
    (with the reason) and the other variables are kept."""
    g, labels = split(pd.Series([0.0, 1.0, 1.0], name="k"), cuts=[0.5])
    assert g.tolist() == [0, 1, 1] and labels == ["k <= 0.5", "k > 0.5"]
    ep, base = _trial(40, 0.5, 0.5)
    base["K_Treg"] = 1.0
    base["flag"] = (base["patient"] % 2).astype(float)
    t = subgroup_table(ep, base, "control", ["K_Treg", "flag", "size_mm"],
                       cuts={"K_Treg": [0.5], "flag": [0.5]})  # fmt: skip
    assert t["variable"].unique().tolist() == ["all patients", "flag", "size_mm"]
    assert t.loc[(t.arm == "control") & (t.variable == "flag"), "n"].tolist() == [20, 20]
    assert t.attrs["not_split"] == ["K_Treg"] and "cut points [0.5]" in str(t.attrs)
    d = {"population": {"size": 2}, "simulation": {"horizon_days": 60},
         "arms": [{"name": "a", "regimens": ["pembrolizumab 200 mg q3w"]}],
         "subgroups": {"variables": ["K_Treg"], "cuts": {"K_Treg": [0.5]}}}  # fmt: skip
    assert experiment_from_dict(d).subgroups["cuts"] == {"K_Treg": [0.5]}


def test_splits_and_their_labels():
    g, labels = split(pd.Series([1.0, 2.0, 3.0, 4.0], name="x"))
    assert g.tolist() == [0, 0, 1, 1] and labels == ["x <= 2.5 (median)", "x > 2.5 (median)"]
    g, labels = split(pd.Series([1.0, 2.0, 3.0, 4.0], name="x"), cuts=[1.0, 3.0])
    assert g.tolist() == [0, 1, 1, 2] and labels == ["x <= 1", "1 < x <= 3", "x > 3"]
    g, labels = split(pd.Series([True, False, True], name="pos"))
    assert g.tolist() == [1, 0, 1] and labels == ["pos = no", "pos = yes"]
    with pytest.raises(ValueError, match="pos is yes/no; it takes no cut points"):
        split(pd.Series([True, False], name="pos"), cuts=[0.5])
    ep, base = _trial(20, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"subgroups.variables: \['nope'\] not among"):
        subgroup_table(ep, base, "control", ["nope"])


def test_the_interaction_is_not_tested_when_a_subgroup_has_no_hazard_ratio():
    """Q over the estimable subgroups only would read 'no heterogeneity' while the one left out
    may hold the largest effect: every subgroup must have a ratio, else NaN with a note."""
    ep, base = _trial(36, 0.5, 0.5)
    base["v"] = np.arange(36.0)
    quiet = ep["patient"].between(24, 35) & (ep.arm == "drug")
    ep.loc[quiet, "pfs_event"] = False  # no progression in the drug arm of 'v > 23'
    t = subgroup_table(ep, base, "control", ["v"], cuts={"v": [11, 23]})
    d = t[(t.arm == "drug") & (t.variable == "v")]
    assert len(d) == 3 and np.isfinite(d["hr"].iloc[:2]).all() and np.isnan(d["hr"].iloc[2])
    assert d["interaction_p"].isna().all() and (d["interaction_subgroups"] == 0).all()
    note = d["interaction_note"].iloc[0]
    assert "'v > 23'" in note and "no progression events in 'drug'" in note
    labels = [x.get_text() for x in forest(t).axes[0].get_yticklabels()]
    assert "v <= 11 (n=12), p_int=–" in labels


def test_three_subgroups_are_tested_with_two_degrees_of_freedom():
    from scipy.stats import chi2, norm

    from vcohort.subgroups import interaction_test

    # by hand: log HRs -ln 2, 0, ln 2, each with se 0.5 (w = 4): Q = 8 (ln 2)^2, and the
    # chi-square survival with 2 degrees of freedom is exp(-Q / 2)
    z = norm.ppf(0.975)
    hr = np.array([0.5, 1.0, 2.0])
    rows = pd.DataFrame({"subgroup": ["a", "b", "c"], "hr": hr, "hr_ci_low": hr * np.exp(-z / 2),
                         "hr_ci_high": hr * np.exp(z / 2)})  # fmt: skip
    p, k, note = interaction_test(rows)
    assert p == pytest.approx(np.exp(-4 * np.log(2) ** 2), rel=1e-9) and k == 3 and note == ""
    # in the table: the three subgroups' own ratios, df 2
    ep, base = _trial(36, 0.5, 0.5)
    base["v"] = np.arange(36.0)
    t = subgroup_table(ep, base, "control", ["v"], cuts={"v": [11, 23]})
    d = t[(t.arm == "drug") & (t.variable == "v")]
    b = np.log(d["hr"].to_numpy())
    se = (np.log(d["hr_ci_high"]) - np.log(d["hr_ci_low"])).to_numpy() / (2 * z)
    w = 1 / se**2
    q = np.sum(w * (b - np.sum(w * b) / np.sum(w)) ** 2)
    assert d["interaction_p"].tolist() == pytest.approx([chi2.sf(q, 2)] * 3, rel=1e-9)
    assert (d["interaction_subgroups"] == 3).all() and (d["interaction_note"] == "").all()


def test_the_forest_n_is_the_patients_behind_the_hazard_ratio():
    ep, base = _trial(20, 0.5, 0.5)
    ep.loc[(ep.arm == "control") & (ep.patient < 3), "status"] = 1  # failed in the reference
    t = subgroup_table(ep, base, "control", ["marker"])
    allp = t[t.variable == "all patients"].set_index("arm")
    assert allp.loc["drug", "n"] == 20 and allp.loc["drug", "hr_n"] == 17
    assert pd.isna(allp.loc["control", "hr_n"])
    labels = [x.get_text() for x in forest(t).axes[0].get_yticklabels()]
    assert labels[0] == "all patients (n=17)"
    per = t[(t.variable == "marker") & (t.arm == "drug")]
    assert per["hr_n"].sum() == 17 and per["n"].sum() == 20


def test_a_subgroup_without_events_in_an_arm_is_reported_not_fatal():
    ep, base = _trial(200, 0.5, 0.5)
    quiet = ep["patient"].isin(base.loc[base.marker, "patient"]) & (ep.arm == "drug")
    ep.loc[quiet, "pfs_event"] = False  # no progression in the drug arm's marker-yes patients
    d = subgroup_table(ep, base, "control", ["marker"]).query("arm == 'drug'")
    yes = d.set_index("subgroup").loc["marker = yes"]
    assert np.isnan(yes["hr"]) and "no progression events in 'drug'" in yes["hr_note"]
    assert np.isnan(yes["interaction_p"])  # a ratio of 0: no finite interaction to test


def test_baseline_frame_takes_day_0_states_and_the_endpoints_baseline():
    patients = pd.DataFrame({"patient": [0, 1], "weight_kg": [60.0, 80.0]})
    ep = pd.DataFrame({"patient": [0, 1, 0, 1], "arm": ["a", "a", "b", "b"],
                       "baseline_diameter_mm": [50.0, 90.0, 50.0, 90.0],
                       "csc_fraction_baseline": [0.1, 0.2, 0.1, 0.2]})  # fmt: skip
    tc = pd.DataFrame({"patient": [0, 1, 0, 1], "arm": "a", "day": [0, 0, 7, 7],
                       "T8": [1.0, 2.0, 3.0, 4.0], "csc_fraction": [0.1, 0.2, 0.3, 0.4],
                       "diameter_mm": 1.0})  # fmt: skip
    b = baseline_frame(patients, ep, tc)
    assert b["T8_baseline"].tolist() == [1.0, 2.0]  # day 0, not day 7
    assert b["csc_fraction_baseline"].tolist() == [0.1, 0.2]  # the endpoints' own, once
    assert "diameter_mm_baseline" not in b and len(b) == 2
    # patient 0 failed in the first arm: NaN there (as patient_endpoints writes it), known in
    # the other; the baseline is the known value, not missing
    ep["status"] = [1, 0, 0, 0]
    ep.loc[0, ["baseline_diameter_mm", "csc_fraction_baseline"]] = np.nan
    b = baseline_frame(patients, ep)
    assert b["csc_fraction_baseline"].tolist() == [0.1, 0.2]
    assert b["baseline_diameter_mm"].tolist() == [50.0, 90.0]


def test_forest_plot_draws_one_row_per_subgroup():
    ep, base = _trial(300, 0.5, 1.0)
    t = subgroup_table(ep, base, "control", ["marker", "size_mm"])
    ax = forest(t).axes[0]
    labels = [x.get_text() for x in ax.get_yticklabels()]
    assert len(labels) == 5 and labels[0] == "all patients (n=300)"
    assert any("marker = yes (n=" in lab and "p_int=" in lab for lab in labels)
    single = subgroup_table(ep[ep.arm == "control"], base, "control", ["marker"])
    assert (single["hr"] == 1.0).all() and (single["hr_note"] == "reference").all()
    one = forest(single).axes[0]
    assert "one arm only" in " ".join(x.get_text() for x in one.texts)


def test_experiment_subgroups_are_checked_before_compute():
    d = {"population": {"size": 2}, "simulation": {"horizon_days": 60},
         "arms": [{"name": "a", "regimens": ["pembrolizumab 200 mg q3w"]}]}  # fmt: skip
    assert experiment_from_dict(d).subgroups["variables"][0] == "baseline_diameter_mm"
    d["subgroups"] = {"variables": ["T8_baseline", "weight_kg", "pembrolizumab.CL", "foo"],
                      "cuts": {"T8_baseline": [2, 1], "bar": [1]}}  # fmt: skip
    with pytest.raises(ValueError) as e:
        experiment_from_dict(d)
    msg = str(e.value)
    assert "subgroups.variables: ['foo'] are not baseline values" in msg
    assert "subgroups.cuts.T8_baseline: [2, 1]: 1 to 9 finite cut points" in msg
    assert "subgroups.cuts.bar: 'bar' is not among subgroups.variables" in msg
    d["subgroups"] = {"variables": []}
    assert experiment_from_dict(d).subgroups == {"variables": [], "cuts": {}}
    # names the baseline table never holds, and cut points for a yes/no variable
    d["subgroups"] = {"variables": ["diameter_mm_baseline", "pdl1", "pdl1_positive"],
                      "cuts": {"pdl1_positive": [0.5]}}  # fmt: skip
    with pytest.raises(ValueError) as e:
        experiment_from_dict(d)
    assert "['diameter_mm_baseline', 'pdl1'] are not baseline values" in str(e.value)
    assert "subgroups.cuts.pdl1_positive: pdl1_positive is yes/no" in str(e.value)
    d["subgroups"] = {"variables": ["screen_csc_max"]}
    assert experiment_from_dict(d).subgroups["variables"] == ["screen_csc_max"]
    d["population"]["screening"] = False  # no screening values then
    with pytest.raises(ValueError, match=r"\['screen_csc_max'\] are not baseline values"):
        experiment_from_dict(d)

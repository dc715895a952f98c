"""Calibration to clinical targets (issue 3 part 3).

One fitting pool and one fresh pool (different seed and patient ids) of 600 patients each,
simulated once under the KEYNOTE-006 reference arm for 210 days (6-weekly RECIST, so 6-month
PFS is observed) in float32 for speed; every test below reuses their observables.
"""

import re

import numpy as np
import pandas as pd
import pytest

from vcohort import calibrate as C
from vcohort.cohort import make_cohort
from vcohort.selection import quotas

POOL, COHORT, DAYS = 600, 200, 210
ARM, K006 = C.PRESETS["keynote-006"]


@pytest.fixture(scope="module")
def pools():
    fit = make_cohort(POOL, seed=101, precision="float32")
    fresh = make_cohort(POOL, seed=202, first_id=10_000, precision="float32")
    obs = C.observables(fit, ARM, DAYS)
    obs_fresh = C.observables(fresh, ARM, DAYS)
    return fit, fresh, obs, obs_fresh


def test_targets_are_validated_before_compute():
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="orr"):
            C.Targets(orr=bad)
    with pytest.raises(ValueError, match="pfs6"):
        C.Targets(orr=0.3, pfs6=1.2)
    # a percentage typed for a fraction is named as such (--orr 33)
    with pytest.raises(ValueError, match=r"orr=33 must be a fraction in \[0, 1\] \(33% is 0.33\)"):
        C.Targets(orr=33)
    with pytest.raises(ValueError, match=r"\[0, 1\]$"):
        C.Targets(orr=330.0)  # not a percentage either: no hint
    with pytest.raises(ValueError, match=r"pfs6=1.2 must be a fraction in \[0, 1\]$"):
        C.Targets(orr=0.3, pfs6=1.2)  # just above 1: a slip, not a percentage
    with pytest.raises(ValueError, match="orr=True"):
        C.Targets(orr=True)  # a bool is not a fraction
    assert C.Targets(orr=np.float32(0.25)).orr == 0.25  # numpy scalars are numbers
    with pytest.raises(ValueError, match="diameter_bounds_mm"):
        C.Targets(orr=0.3, diameter_bounds_mm=(100.0, 300.0))
    # the diameter distribution: finite numbers > 0, named with the value given
    for field, bad in (
        ("diameter_cv", float("inf")),
        ("diameter_cv", float("nan")),
        ("diameter_median_mm", float("inf")),
        ("diameter_median_mm", float("nan")),
        ("diameter_median_mm", "86"),
        ("diameter_cv", 0.0),
    ):
        with pytest.raises(ValueError) as e:
            C.Targets(orr=0.3, **{field: bad})
        assert str(e.value) == f"target {field}={bad!r} must be a finite number > 0"
    with pytest.raises(ValueError, match=r"diameter_bounds_mm=\(15\.0, inf\) must satisfy"):
        C.Targets(orr=0.3, diameter_bounds_mm=(15.0, float("inf")))
    # a lower bound of 0 is no bound: the bins' edges are finite quantiles, not a math error
    t = C.Targets(orr=0.3, diameter_bounds_mm=(0.0, 300.0))
    q = t.diameter_quantiles(np.array([0.0, 0.5, 1.0]))
    assert q[0] == 0.0 and q[-1] == pytest.approx(300.0) and 80 < q[1] < 86
    with pytest.raises(ValueError, match="days"):
        C.check_arm(ARM, 120)  # 6-month PFS not observed
    with pytest.raises(ValueError, match="pool"):
        C.check_feasible(700, 600)


def test_assessment_options_are_canonical_and_checked_against_the_landmark():
    """Two definitions that score alike compare equal (days sorted without repeats, numpy
    integers as plain ints for the rule's JSON); a schedule whose first look comes after the
    6-month landmark, or that leaves no second look to confirm within the reference arm, is
    refused before compute."""
    import json

    a = C.assessment_options({"assess_days": [84, 42, 84], "confirm_days": np.int64(28)})
    assert a == C.assessment_options({"assess_days": (42, 84), "confirm_days": 28})
    assert a["assess_days"] == [42, 84] and a["assess_every"] is None
    json.dumps(a)  # numpy integers were not JSON
    assert C.assessment_options({})["assess_first"] == 42
    for bad in ({"assess_days": [42.7]}, {"confirm_days": -1}, {"censor_at": "death"}):
        with pytest.raises(ValueError, match="assessment"):
            C.assessment_options(bad)
    with pytest.raises(ValueError, match="table of RECIST options"):
        C.assessment_options([42])
    C.check_assessment({"assess_first": 84, "confirm_days": 28}, 210)
    with pytest.raises(ValueError, match="on day 200: it must come by the 6-month landmark"):
        C.check_assessment({"assess_first": 200}, 210)
    with pytest.raises(
        ValueError,
        match=r"no RECIST assessment falls within the 210-day .*"
        r"asked for day 300\): it must come by",
    ):  # fmt: skip  (was "day none")
        C.check_assessment({"assess_first": 300}, 210)
    with pytest.raises(ValueError, match="days 126 of the 210-day .* no second look >= 28"):
        C.check_assessment({"assess_every": 126, "confirm_days": 28}, 210)


def _synthetic_obs(n, seed, rare=3):
    """Observables without simulation: response more likely for larger tumours, PF6 for
    responders always except ``rare`` patients."""
    rng = np.random.default_rng(seed)
    d = np.clip(86 * np.exp(0.47 * rng.normal(size=n)), 15, 300)
    resp = rng.random(n) < 0.25 + 0.2 * (d > 86)
    pf6 = resp | (rng.random(n) < 0.3)
    pf6[np.flatnonzero(resp)[:rare]] = False
    cell = 2 * (~resp).astype(int) + (~pf6).astype(int)
    return pd.DataFrame(
        {
            "patient": np.arange(n),
            "ok": True,
            "responder": resp,
            "pf6": pf6,
            "cell": cell,
            "baseline_diameter_mm": d,
        }
    )


def test_rare_cells_get_no_quota_so_fresh_pools_do_not_fail():
    obs = _synthetic_obs(2000, 0, rare=3)
    rule = C.fit_rule(obs, K006, arm=ARM, days=DAYS)
    assert rule.cell_probs[1] == 0.0 and rule.fit["rare_cells_dropped"] == [C.CELLS[1]]
    assert sum(rule.cell_probs[:2]) == pytest.approx(K006.orr, abs=1e-8)
    assert rule.cell_probs[0] + rule.cell_probs[2] == pytest.approx(K006.pfs6, abs=1e-8)
    fresh = _synthetic_obs(2000, 1, rare=0)  # the rare cell is empty here
    rep = C.fit_report(rule, fresh, C.select(rule, fresh, 700, seed=0))
    assert rep["orr"] == pytest.approx(K006.orr, abs=0.5 / 700 + 1e-12)
    assert rep["ks_pvalue"] > 0.01
    kept = C.fit_rule(obs, K006, arm=ARM, days=DAYS, min_cell_count=0)
    assert kept.cell_probs[1] > 0  # the cell is kept when asked to
    with pytest.raises(ValueError, match="responder & progressed.*none in this pool: no pool"):
        C.select(kept, fresh, 1900)


def test_a_cell_empty_in_the_fitting_pool_gets_no_density_factor():
    """No responder progressed by 6 months in the fitting pool (rare=0 there, an empty cell,
    not a rare one): the target gives that cell probability 0, so Allen selection on a fresh
    pool must take none of its patients (its factor was a[0]*b[1], e.g. 1.6, so all of them
    were taken); a rare cell (1-4 patients) was already 0."""
    obs = _synthetic_obs(2000, 0, rare=0)
    rule = C.fit_rule(obs, K006, arm=ARM, days=DAYS)
    assert rule.fit["pool_cell_counts"][1] == 0 and rule.cell_probs[1] == 0.0
    assert rule.cell_factor[1] == 0.0
    fresh = _synthetic_obs(2000, 1, rare=30)
    idx = C.select_allen(rule, fresh, seed=0, pool_density="fit")
    assert not (fresh.iloc[idx]["cell"] == 1).any()


def test_a_pool_without_responders_says_no_pool_size_helps():
    obs = _synthetic_obs(2000, 0, rare=3)
    rule = C.fit_rule(obs, K006, arm=ARM, days=DAYS)
    none = _synthetic_obs(200, 1, rare=0)
    none = none[~none["responder"]].reset_index(drop=True)
    with pytest.raises(ValueError, match="no pool size can help while it has none") as e:
        C.select(rule, none, 50)
    assert "unknown" not in str(e.value)


def test_unreachable_targets_name_the_range_the_pool_allows():
    # responder & progressed is rare (3 < 5) and dropped: every responder the fit may use is
    # progression-free at 6 months, so PFS6 >= ORR
    obs = _synthetic_obs(2000, 0, rare=3)
    with pytest.raises(ValueError, match=r"dropped as rare: responder & progressed\): .*"
                       r"between 0\.5 and 1, not 0\.3"):  # fmt: skip
        C.fit_rule(obs, C.Targets(0.5, 0.3), arm=ARM, days=DAYS)
    C.fit_rule(obs, C.Targets(0.5, 0.6), arm=ARM, days=DAYS)  # inside the range: fitted
    # the range's own edge (PFS6 = ORR: no non-responder progression-free, a structural zero
    # that raking reaches only slowly) is allowed, as the message says, and fitted
    edge = C.fit_rule(obs, C.Targets(0.5, 0.5), arm=ARM, days=DAYS)
    assert edge.cell_probs[2] == pytest.approx(0.0, abs=1e-4)
    assert edge.cell_probs[0] == pytest.approx(0.5, abs=1e-4)
    no_resp = obs[~obs["responder"]]
    with pytest.raises(ValueError, match="ORR=0.2 needs responders, and the pool has none"):
        C.fit_rule(no_resp, C.Targets(0.2), arm=ARM, days=DAYS)


def test_a_corrupted_rule_is_refused_naming_the_field(tmp_path):
    """rule.json is a file a user may edit: every field is checked on load, the error naming
    the file, the field, its value and what is allowed (before, cell probabilities summing to
    3.6 or below 0 were applied, and a short diameter_factor failed with an IndexError)."""
    import json

    rule = C.fit_rule(_synthetic_obs(2000, 0), K006, arm=ARM, days=DAYS)
    path = tmp_path / "rule.json"
    rule.save(path)
    assert C.CalibrationRule.load(path) == rule  # the fitted rule itself passes
    n_bins = len(rule.diameter_factor)
    cases = [
        ("cell_probs", [0.9, 0.9, 0.9, 0.9], "cell_probs=[0.9, 0.9, 0.9, 0.9] sum to 3.6; "
         "allowed: probabilities of the cells"),
        ("cell_probs", [-0.5, 0.5, 0.5, 0.5], "cell_probs=(-0.5, 0.5, 0.5, 0.5); allowed: a "
         "list of 4 finite numbers >= 0"),
        ("cell_probs", [0.5, 0.5, 0.0], "allowed: a list of 4 finite"),
        ("cell_factor", [1.0, float("nan"), 1.0, 1.0], "cell_factor=(1.0, nan, 1.0, 1.0); "
         "allowed: a list of 4 finite numbers >= 0"),
        ("diameter_factor", [1.0, 2.0], f"diameter_factor=(1.0, 2.0); allowed: a list of "
         f"{n_bins} finite numbers >= 0 (one per diameter bin: len(log_edges) + 1)"),
        ("diameter_factor", [0.0] * n_bins, "at least one must be > 0"),
        ("log_edges", list(rule.log_edges[::-1]), "must increase strictly"),
        ("scale", float("nan"), "rule scale=nan; allowed: a finite number > 0"),
        ("scale", 0.0, "rule scale=0.0; allowed: a finite number > 0"),
        ("expected_yield", 0.0, "rule expected_yield=0.0; allowed: a fraction in (0, 1]"),
        ("expected_yield", 1.5, "rule expected_yield=1.5; allowed: a fraction in (0, 1]"),
        ("days", "210", "rule days='210' must be a whole number of days >= 1"),
        ("dt", 0.3, "rule dt=0.3: 1/dt must be a whole number"),
        ("precision", "float16", "rule precision='float16'; allowed: float32, float64"),
        ("runin_days", -1, "rule runin_days=-1 must be a whole number of days >= 0"),
        ("arm", "", "rule arm='' must be a regimen text"),
    ]  # fmt: skip
    good = rule.to_dict()
    for field, value, msg in cases:
        d = json.loads(json.dumps(good))
        d[field] = value
        path.write_text(json.dumps(d))
        with pytest.raises(ValueError) as e:
            C.CalibrationRule.load(path)
        assert str(e.value).startswith(f"{path}: rule {field}=") and msg in str(e.value), field
    d = json.loads(json.dumps(good))
    d["targets"]["diameter_cv"] = float("inf")  # json writes Infinity
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"rule\.json: target diameter_cv=inf must be a finite"):
        C.CalibrationRule.load(path)
    # the selection's quotas come from cell_probs, the report quotes the targets: a rule whose
    # cells contradict its ORR selected ORR 0.9 and reported it against a target of 0.33
    d = json.loads(json.dumps(good))
    d["cell_probs"] = [0.45, 0.45, 0.05, 0.05]
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"responder cells 0 and 1 sum to 0\.9, but targets\.orr="):
        C.CalibrationRule.load(path)
    # malformed targets: named, not a bare KeyError or TypeError
    for change, msg in [
        (lambda t: t.__setitem__("diameter_bounds_mm", None), "targets.diameter_bounds_mm=None; "
         "allowed: two numbers"),
        (lambda t: t.pop("orr"), "'orr' is missing"),
        (lambda t: t.__setitem__("median", 3), "targets: unknown keys ['median']"),
    ]:  # fmt: skip
        d = json.loads(json.dumps(good))
        change(d["targets"])
        path.write_text(json.dumps(d))
        with pytest.raises(ValueError, match=re.escape(msg)):
            C.CalibrationRule.load(path)
    d = json.loads(json.dumps(good))
    d["targets"] = [0.3, 0.4]
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"rule targets=\[0\.3, 0\.4\]; allowed: a table"):
        C.CalibrationRule.load(path)
    d = json.loads(json.dumps(good))
    del d["targets"]["diameter_bounds_mm"]  # Targets' default bounds, as documented
    path.write_text(json.dumps(d))
    assert (
        C.CalibrationRule.load(path).targets.diameter_bounds_mm == C.Targets(0.3).diameter_bounds_mm
    )


def test_a_pool_too_small_to_fit_a_rule_is_refused_before_compute():
    """fit_rule needs two plausible patients per diameter bin; a pool of 16 was simulated,
    then refused ('pool has 16 plausible patients; need >= 20')."""
    with pytest.raises(ValueError, match=r"pool=16: fitting a rule needs a pool of >= 20"):
        C.check_feasible(8, 16)
    C.check_feasible(8, 16, n_bins=None)  # applying a rule selects from any pool >= patients


def test_a_rule_is_not_applied_to_the_pool_it_was_fitted_on():
    rule = C.fit_rule(_synthetic_obs(2000, 0), K006, arm=ARM, days=DAYS)
    C.check_fresh_pool(rule, 0, 0, 600)  # no pool recorded (library fit): nothing to check
    from dataclasses import replace

    rule = replace(rule, fit=rule.fit | {"pool_seed": 5, "pool_ids": [1000, 2999]})
    with pytest.raises(ValueError, match=r"ids 1000\.\.2999.*--first-id 3000"):
        C.check_fresh_pool(rule, 5, 1500, 600)
    with pytest.raises(ValueError, match="in-sample"):  # replacements could reach id 1000
        C.check_fresh_pool(rule, 5, 900, 10)
    C.check_fresh_pool(rule, 5, 0, 10)  # at most 164 draws: ids 0..163
    C.check_fresh_pool(rule, 5, 3000, 600)  # after the fitted ids
    C.check_fresh_pool(rule, 6, 1500, 600)  # another seed: other patients


def test_a_rule_records_its_population_and_says_when_applied_to_another(tmp_path):
    """A rule records the population its pool was drawn from (what the draws depend on, not
    the file's name or path); applied to a pool drawn from another population it is applied
    (Allen-style ratios are meant to transfer) with a note saying so."""
    from dataclasses import replace
    from importlib import resources

    from vcohort.population import load_population

    default = load_population()
    text = (resources.files("vcohort") / "data" / "populations" / "default.toml").read_text()
    assert 'name = "default"' in text
    copy = tmp_path / "mine.toml"
    copy.write_text(text.replace('name = "default"', 'name = "mine"'))
    same = load_population(copy)
    assert same.name == "mine" and same.identity()["digest"] == default.identity()["digest"]
    other = replace(
        default,
        covariates=default.covariates
        | {"weight_kg": replace(default.covariates["weight_kg"], median=95.0)},
    )
    assert other.identity()["digest"] != default.identity()["digest"]

    rule = C.fit_rule(_synthetic_obs(2000, 0), K006, arm=ARM, days=DAYS)
    assert rule.population == {}  # a library fit without a population records none
    assert "does not record the population" in C.population_note(rule, default)
    rule = replace(rule, population=default.identity())
    assert C.CalibrationRule.from_dict(rule.to_dict()) == rule  # saved with the rule
    assert C.population_note(rule, same) is None
    assert C.population_note(rule, None) is None  # pool's population not known: no claim
    note = C.population_note(rule, other)
    assert "fitted on a pool drawn from population 'default'" in note
    assert "draws differently" in note


def test_a_rule_records_its_run_in_and_refuses_a_pool_with_another(tmp_path):
    """The run-in sets the baseline states a rule's density ratios select by: a rule fitted on
    a 240-day run-in is refused (before compute) for a pool or an experiment with 30 days."""
    from dataclasses import replace

    from vcohort.experiment import experiment_from_dict

    rule = C.fit_rule(_synthetic_obs(2000, 0), K006, arm=ARM, days=DAYS)
    assert rule.runin_days is None  # not known: nothing to compare
    C.check_runin(rule, 30)
    rule = replace(rule, runin_days=240)
    assert C.CalibrationRule.from_dict(rule.to_dict()) == rule  # saved with the rule
    C.check_runin(rule, 240)
    C.check_runin(rule, None)  # the pool's run-in not known
    with pytest.raises(
        ValueError, match=r"runin_days=30: the rule was fitted on a pool with a 240"
    ):
        C.check_runin(rule, 30)
    with pytest.raises(ValueError, match="runin_days=30"):
        C.apply_rule(rule, make_cohort(4, seed=1, runin_days=0), 2, runin_days=30)
    path = tmp_path / "rule.json"
    rule.save(path)
    d = {"population": {"size": 2}, "simulation": {"horizon_days": 60, "runin_days": 30},
         "calibration": {"rule": str(path), "pool": 20},
         "arms": [{"name": "a", "regimens": ["pembrolizumab 200 mg q3w"]}]}  # fmt: skip
    with pytest.raises(ValueError, match=r"simulation\.runin_days: runin_days=30: the rule was"):
        experiment_from_dict(d)
    d["simulation"]["runin_days"] = 240
    assert experiment_from_dict(d).runin_days == 240


@pytest.mark.slow
def test_calibrated_rule_transfers_to_a_fresh_pool(pools, tmp_path):
    _, fresh, obs, obs_fresh = pools
    assert 0.30 < obs.loc[obs.ok, "responder"].mean() < 0.55  # uncalibrated pool is off-target
    rule = C.fit_rule(obs, K006, arm=ARM, days=DAYS)
    # target joint honours the marginals exactly (raking), cell probabilities sum to 1
    p = np.asarray(rule.cell_probs)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    assert p[:2].sum() == pytest.approx(K006.orr, abs=1e-8)
    assert p[[0, 2]].sum() == pytest.approx(K006.pfs6, abs=1e-8)
    path = tmp_path / "rule.json"
    rule.save(path)
    loaded = C.CalibrationRule.load(path)
    assert loaded == rule
    idx = C.select(loaded, obs_fresh, COHORT, seed=3)
    assert np.array_equal(idx, C.select(rule, obs_fresh, COHORT, seed=3))
    assert len(np.unique(idx)) == COHORT
    rep = C.fit_report(loaded, obs_fresh, idx)
    # acceptance: ±2 points ORR, ±5 points 6-month PFS on a fresh pool of the same size
    assert abs(rep["orr"] - K006.orr) <= 0.02
    assert abs(rep["pfs6"] - K006.pfs6) <= 0.05
    # baseline diameter: K-S test against the target log-normal at the 1% level
    assert rep["ks_pvalue"] > 0.01
    # the cohort is the quota of each response cell (largest remainder, responders first),
    # and the responders are n x ORR rounded (66 of 200)
    quota = quotas(COHORT, rule.cell_probs, groups=((0, 1), (2, 3)))
    assert list(rep["cell_counts"].values()) == quota.tolist()
    assert np.bincount(obs_fresh["cell"].to_numpy()[idx], minlength=4).tolist() == quota.tolist()
    assert int(obs_fresh["responder"].to_numpy()[idx].sum()) == round(COHORT * K006.orr) == 66
    # end to end: apply_rule re-simulates the fresh pool and gives the same selection
    sub, _, rep2 = C.apply_rule(loaded, fresh, COHORT, seed=3)
    assert np.array_equal(sub.patient_id, np.asarray(fresh.patient_id)[idx])
    assert rep2["orr"] == rep["orr"]


@pytest.mark.slow
@pytest.mark.parametrize("orr", [0.05, 0.33, 0.60])
def test_any_orr_between_5_and_60_percent_is_reachable(pools, orr):
    _, _, obs, _ = pools
    rule = C.fit_rule(obs, C.Targets(orr=orr), arm=ARM, days=DAYS)
    rep = C.fit_report(rule, obs, C.select(rule, obs, 150, seed=1))
    assert abs(rep["orr"] - orr) <= 0.02
    assert rep["ks_pvalue"] > 0.01


@pytest.mark.slow
def test_diameter_target_moves_the_selected_distribution(pools):
    _, _, obs, _ = pools
    target = C.Targets(orr=0.33, diameter_median_mm=60.0)
    rule = C.fit_rule(obs, target, arm=ARM, days=DAYS)
    rep = C.fit_report(rule, obs, C.select(rule, obs, 150, seed=2))
    everyone = C.fit_report(rule, obs, np.flatnonzero(obs.ok))
    assert everyone["ks_pvalue"] < 0.01  # the pool (median 86 mm) is off this target
    assert rep["ks_pvalue"] > 0.01
    assert abs(rep["median_diameter_mm"] - 60.0) < 10.0  # ~2 SE of a median with n=150


@pytest.mark.slow
def test_allen_selection_matches_in_expectation(pools):
    _, _, obs, obs_fresh = pools
    rule = C.fit_rule(obs, K006, arm=ARM, days=DAYS)
    assert 0 < rule.scale and 0 < rule.expected_yield <= 1
    for o in (obs, obs_fresh):  # pool density measured on the pool selected from
        idx = C.select_allen(rule, o, seed=4)
        rep = C.fit_report(rule, o, idx)
        n = len(idx)
        assert abs(n - rule.expected_yield * POOL) < 4 * np.sqrt(POOL * 0.25)
        # random size: within 4 binomial SE (an upper bound on the selection noise)
        assert abs(rep["orr"] - K006.orr) < 4 * np.sqrt(K006.orr * (1 - K006.orr) / n)
        assert abs(rep["pfs6"] - K006.pfs6) < 4 * np.sqrt(K006.pfs6 * (1 - K006.pfs6) / n)


@pytest.mark.slow
def test_infeasible_targets_raise_before_selection(pools):
    _, _, obs, _ = pools
    rule = C.fit_rule(obs, C.Targets(orr=0.9), arm=ARM, days=DAYS)
    with pytest.raises(ValueError, match="responders.*pool of at least"):
        C.select(rule, obs, 500)
    no_resp = obs.assign(responder=False, cell=obs["cell"] | 2)
    with pytest.raises(ValueError, match="not reachable"):
        C.fit_rule(no_resp, C.Targets(orr=0.2), arm=ARM, days=DAYS)


def test_cli_calibrate_validates_before_compute(tmp_path, capsys):
    from vcohort.cli import main

    out = str(tmp_path / "run")
    assert main(["calibrate", "--orr", "1.5", "--out", out]) == 2
    assert "orr=1.5" in capsys.readouterr().err
    assert main(["calibrate", "--pool", "100", "--patients", "200", "--out", out]) == 2
    assert "pool=100" in capsys.readouterr().err
    assert main(["calibrate", "--days", "100", "--out", out]) == 2
    assert "days=100" in capsys.readouterr().err
    assert main(["calibrate", "--rule", str(tmp_path / "missing.json"), "--out", out]) == 2
    assert "--rule" in capsys.readouterr().err
    # a saved rule carries its arm, horizon and targets: flags that would be ignored are refused
    rule = str(tmp_path / "rule.json")
    assert main(["calibrate", "--rule", rule, "--days", "365", "--orr", "0.4", "--out", out]) == 2
    assert "--orr, --days would be ignored" in capsys.readouterr().err
    assert main(["calibrate", "--rule", rule, "--confirm-days", "28", "--out", out]) == 2
    assert "--confirm-days would be ignored" in capsys.readouterr().err
    assert main(["calibrate", "--assess-first", "200", "--out", out]) == 2
    assert "--assess-first 200" in capsys.readouterr().err  # no PD could be seen by 6 months
    assert main(["calibrate", "--confirm-days", "0", "--assess-every", "0", "--out", out]) == 2
    assert "--assess-every 0 must be an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["calibrate", "--pfs6", "abc", "--out", out])
    assert "'abc' is not a fraction in [0, 1] or 'none'" in capsys.readouterr().err
    assert main(["calibrate", "--population", str(tmp_path / "nope.toml"), "--out", out]) == 2
    assert "nope.toml' is neither a preset" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"arm": "x", "foo": 1}')
    assert main(["calibrate", "--rule", str(tmp_path / "other.json"), "--out", out]) == 2
    assert "not a calibration rule" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_calibrate_fits_then_applies_the_rule(pools, tmp_path):
    import json

    import pandas as pd

    from vcohort.cli import main

    a, b = str(tmp_path / "fit"), str(tmp_path / "apply")
    common = ["--pool", str(POOL), "--patients", "100", "--days", str(DAYS)]
    recist = ["--assess-first", "84", "--confirm-days", "28"]  # KEYNOTE-002's week-12 first scan
    assert main(["calibrate", "--preset", "keynote-002", *common, *recist, "--seed", "5",
                 "--out", a]) == 0  # fmt: skip
    rule = C.CalibrationRule.load(f"{a}/rule.json")
    assert rule.targets.orr == 0.21 and rule.arm == "pembrolizumab 2 mg/kg q3w"
    a_ = rule.assessment  # the rule applies the definition it was fitted with
    assert (a_["assess_first"], a_["assess_every"], a_["confirm_days"], rule.dt) == (
        84,
        42,
        28,
        0.1,
    )
    fit_rep = json.loads(open(f"{a}/report.json").read())
    screening = pd.read_csv(f"{a}/screening.csv")  # the pool is screened for plausibility
    assert fit_rep["pool_drawn"] == len(screening) >= POOL
    assert fit_rep["pool_rejected"] == int((~screening["plausible"]).sum())
    assert screening["plausible"].sum() == POOL
    obs = pd.read_parquet(f"{a}/pool_observables.parquet")
    assert set(obs["patient"]) == set(screening.loc[screening["plausible"], "patient"])
    cols = pd.read_csv(f"{a}/columns.csv", keep_default_na=False)
    assert (cols.meaning != "").all(), cols[cols.meaning == ""]
    assert rule.fit["pool_seed"] == 5 and rule.fit["pool_ids"][0] == 0
    assert rule.runin_days == 240  # the model's run-in, recorded
    from vcohort.population import load_population

    assert rule.population == load_population("default").identity() == fit_rep["population"]
    # the fitted pool again (same seed, overlapping ids) is refused before compute
    size = ["--pool", str(POOL), "--patients", "100"]
    again = ["--seed", "5", "--first-id", "100", "--out", str(tmp_path / "again")]
    assert main(["calibrate", "--rule", f"{a}/rule.json", *size, *again]) == 2
    other = ["--seed", "6", "--first-id", "5000", "--runin-days", "30", "--out", b]
    assert main(["calibrate", "--rule", f"{a}/rule.json", *size, *other]) == 2  # another run-in
    fresh = ["--seed", "6", "--first-id", "5000"]
    assert main(["calibrate", "--rule", f"{a}/rule.json", *size, *fresh, "--out", b]) == 0
    rep = json.loads(open(f"{b}/report.json").read())
    assert abs(rep["orr"] - 0.21) <= 0.02 and abs(rep["pfs6"] - 0.34) <= 0.05
    assert "population_note" not in rep  # the same population as the rule's
    # what the rule was fitted for is in the report, not only in rule.json
    assert rep["reference_arm"] == "pembrolizumab 2 mg/kg q3w" and rep["horizon_days"] == DAYS
    assert rep["targets"] == {"orr": 0.21, "pfs6": 0.34}
    sel = pd.read_parquet(f"{b}/patients.parquet")
    assert len(sel) == 100 and sel["patient"].min() >= 5000

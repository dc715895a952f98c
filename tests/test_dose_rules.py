"""Protocol dose modification (`vcohort.dosing.DoseRule`): parsing, refusals, the simulator's
decisions against an independent replay of the protocol, and the outputs that report them."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import schedule

from vcohort.chunkfile import chunk_bytes, concat, read_chunk, take
from vcohort.cohort import make_cohort
from vcohort.dose_rules import DoseRule
from vcohort.dosing import compile_schedule, parse_regimen
from vcohort.endpoints import patient_endpoints, summarize
from vcohort.experiment import experiment_from_dict
from vcohort.model import CSC_IMMUNE
from vcohort.simulate import simulate

DOX = "doxorubicin 75 mg/m2 every 10 d over 30 min"
RULE = "hold if ANC < 1.5 reduce to 75%"
DELAY = "hold if ANC < 1.5 delay every 2 d up to 6 d reduce to 75%"
DAYS = 60


# ---------------------------------------------------------------------------- parsing
def test_hold_rules_in_regimen_text_and_experiment_tables():
    r = parse_regimen(f"{DOX} hold if ANC<1.5 reduce to 75%, 50%")
    assert r.rule == DoseRule("ANC", "<", 1.5, (0.75, 0.5))
    assert r.dose == 75.0 and r.interval_days == 10.0  # the regimen part is unchanged
    assert parse_regimen(r.describe()) == r  # describe() is parseable text
    assert parse_regimen("doxorubicin hold if ANC < 1").rule == DoseRule("ANC", "<", 1.0)
    assert parse_regimen("doxorubicin hold if ANC > 9").rule.op == ">"
    s = compile_schedule([r, parse_regimen("pembrolizumab")], 100.0)
    assert s.rules == (r.rule, None)
    assert compile_schedule([parse_regimen(DOX)], 100.0).rules == ()  # no rule: nothing
    exp = experiment_from_dict(
        {
            "population": {"preset": "default", "size": 4},
            "simulation": {"horizon_days": 60},
            "arms": [
                {
                    "name": "a",
                    "regimens": [
                        {"drug": "doxorubicin", "hold_if": "ANC < 1.5", "reduce_to": [0.75, "50%"]}
                    ],
                }
            ],
        }
    )
    assert exp.arms[0].regimens[0].rule == DoseRule("ANC", "<", 1.5, (0.75, 0.5))
    d = parse_regimen(f"{DOX} {DELAY}").rule
    assert d == DoseRule("ANC", "<", 1.5, (0.75,), delay=True, recheck_days=2, max_delay_days=6)
    assert parse_regimen(f"{DOX} {d.describe()}").rule == d
    assert parse_regimen(f"{DOX} hold if ANC < 1.5 delay").rule.recheck_days == 7.0  # weekly
    table = {"drug": "doxorubicin", "hold_if": "ANC < 1.5", "delay": True,
             "recheck_every": "2 d", "max_delay": "6 d", "reduce_to": ["75%"]}  # fmt: skip
    exp = experiment_from_dict(
        {
            "population": {"preset": "default", "size": 4},
            "simulation": {"horizon_days": 60},
            "arms": [{"name": "a", "regimens": [table]}],
        }
    )
    assert exp.arms[0].regimens[0].rule == d


@pytest.mark.parametrize(
    "text, match",
    [
        ("doxorubicin reduce to 50%", "needs a hold rule"),
        ("doxorubicin hold if ANC <", "cannot read"),
        ("doxorubicin hold if ANC = 1", r"comparison is < or >.*expected 'hold if <output> <\|>"),
        ("doxorubicin hold if ANC <= 1.5", r"the comparison is < or > \(a lab value is never"),
        ("doxorubicin hold if ANC < 1 reduce to 50% 75%", r"dose levels 50%, 75% rise"),
        ("doxorubicin hold if ANC < abc", "threshold='abc' is not a number"),
        ("doxorubicin hold if ANC < 1 reduce", "needs dose levels"),
        ("doxorubicin hold if ANC < 1 reduce to 150%", r"'150%' must be .* \(0%, 100%\]"),
        ("doxorubicin hold if ANC < 1 reduce to half", "'half' must be a percentage"),
        ("doxorubicin hold if ANC < 1 reduce to 50% over 30 min", "clause must come last"),
        ("doxorubicin hold if ANC < 1 delay up 6 d", "expected 'up to <t> d'"),
        ("doxorubicin hold if ANC < 1 delay every 0 d", "recheck every 0.0 days must be > 0"),
        ("doxorubicin delay every 7 d", "'delay ...' needs a hold rule before it"),
        ("doxorubicin hold if ANC < 1 delay every 7 d every 14 d", "'delay ... every' is given"),
        ("doxorubicin hold if ANC < 1 delay up to 21 d up to 7 d", "'delay ... up to' is given"),
    ],
)
def test_bad_hold_rule_text_is_refused_with_what_is_allowed(text, match):
    with pytest.raises(ValueError, match=match):
        parse_regimen(text)


def test_a_comma_after_the_threshold_is_a_separator():
    """'hold if ANC < 1.5, reduce to 75%': the comma separates, as between dose levels (it
    was read into the threshold, '1.5,' is not a number)."""
    r = parse_regimen("doxorubicin 60 mg/m2 q3w hold if ANC < 1.5, reduce to 75%, 50%").rule
    assert (r.threshold, r.levels) == (1.5, (0.75, 0.5))


def test_rule_settings_are_refused_where_they_would_be_ignored_or_surprise():
    # 'up to' between rechecks: the drug would stop at the last lab before it, not at it
    with pytest.raises(ValueError, match=r"up to 10 d is not a whole number of rechecks every 7"):
        parse_regimen(f"{DOX} hold if ANC < 1 delay every 7 d up to 10 d")
    assert parse_regimen(f"{DOX} hold if ANC < 1 delay every 7 d up to 14 d").rule.delay
    with pytest.raises(ValueError, match="recheck every True days"):
        DoseRule("ANC", "<", 1.5, delay=True, recheck_days=True)
    with pytest.raises(ValueError, match="delay=1 must be True or False"):
        DoseRule("ANC", "<", 1.5, delay=1)
    with pytest.raises(ValueError, match=r"doxorubicin: rule='hold if ANC < 1.5' must be a Dose"):
        dataclasses.replace(parse_regimen(DOX), rule="hold if ANC < 1.5")
    # the table form: the condition alone in hold_if (a 'delay up to 21 d' there overrode an
    # explicit delay = false)
    table = {"drug": "doxorubicin", "dose": "60 mg/m2", "every": "21 d",
             "hold_if": "ANC < 1.5 delay up to 21 d", "delay": False}  # fmt: skip
    d = {"population": {"size": 2}, "simulation": {"horizon_days": 60},
         "arms": [{"name": "a", "regimens": [table]}]}  # fmt: skip
    with pytest.raises(ValueError, match=r"regimens\[0\]\.hold_if: 'ANC < 1.5 delay up to 21 d'"):
        experiment_from_dict(d)


def test_a_delayed_series_ends_at_the_until_of_the_regimen_with_its_last_dose():
    """'x 2' then 'start 14 d until 28 d': one q7d series (days 0, 7, 14, 21) whose delayed
    doses stop at day 28 (the until was dropped when the first regimen had none)."""
    from vcohort.dose_rules import delay_inputs

    r = " hold if ANC < 1.5 delay"
    regs = [parse_regimen(f"doxorubicin 20 mg/m2 every 7 d x 2{r}"),
            parse_regimen(f"doxorubicin 20 mg/m2 every 7 d start 14 d until 28 d{r}")]  # fmt: skip
    s = compile_schedule(regs, 60.0)
    assert s.time[0][s.valid[0]].tolist() == [0, 7, 14, 21] and s.ends == (28.0,)
    assert delay_inputs(s, 0.1, 600)[0, 4, 3] == 280  # no dose from step 280 (day 28) on
    s = compile_schedule(regs[::-1], 60.0)  # order of the regimens does not matter
    assert s.ends == (28.0,)
    open_ended = [regs[0], parse_regimen(f"doxorubicin 20 mg/m2 every 7 d start 14 d{r}")]
    assert compile_schedule(open_ended, 60.0).ends == (None,)  # the horizon


def test_the_scipy_reference_refuses_hold_rules():
    from vcohort.reference import solve_patient_scipy

    s = compile_schedule([parse_regimen(f"{DOX} {RULE}")], 14)
    with pytest.raises(ValueError, match="the scipy reference solver"):
        solve_patient_scipy(make_cohort(1, seed=0, runin_days=0), 0, s, 14, dt=0.1)


def test_a_table_rule_s_error_names_its_own_field():
    """In the table form, a 'max_delay' shorter than 'recheck_every' is that field's error,
    not 'reduce_to''s (the last field given) or 'hold_if''s."""
    table = {"drug": "doxorubicin", "dose": "60 mg/m2", "every": "21 d", "hold_if": "ANC < 1.5",
             "delay": True, "recheck_every": "7 d", "max_delay": "3 d",
             "reduce_to": ["75%"]}  # fmt: skip
    d = {"population": {"size": 2}, "simulation": {"horizon_days": 60},
         "arms": [{"name": "a", "regimens": [table]}]}  # fmt: skip
    with pytest.raises(ValueError, match=r"regimens\[0\]\.max_delay: hold rule: up to 3 d is "):
        experiment_from_dict(d)
    table.update(recheck_every="0 d", max_delay="21 d")  # the recheck's error is its own
    with pytest.raises(ValueError, match=r"regimens\[0\]\.recheck_every: .*must be > 0"):
        experiment_from_dict(d)
    table.update(hold_if="ANC <= 1.5", recheck_every="7 d")
    with pytest.raises(ValueError, match=r"regimens\[0\]\.hold_if: .*comparison is < or >"):
        experiment_from_dict(d)


def test_bad_hold_rules_are_refused_before_compute():
    with pytest.raises(ValueError, match="different hold rules"):
        compile_schedule([parse_regimen(f"{DOX} {RULE}"), parse_regimen(f"{DOX} start 5 d")], 30.0)
    with pytest.raises(ValueError, match=r"op='=<'; allowed: \('<', '>'\)"):
        DoseRule("ANC", "=<", 1.0)
    c = make_cohort(2, seed=1, runin_days=0)
    s = schedule([f"{DOX} hold if ANCC < 1"], 10)
    with pytest.raises(ValueError, match="output='ANCC' is not a daily output.*allowed: ANC"):
        simulate(CSC_IMMUNE, c, s, 10)
    with pytest.raises(ValueError, match=r"output='anc' .* \(did you mean 'ANC'\?\)"):
        simulate(CSC_IMMUNE, c, schedule([f"{DOX} hold if anc < 1.5"], 10), 10)
    # a lab value in cells/uL (1500) would withhold every dose: refused, with the unit
    with pytest.raises(ValueError, match=r"ANC < 1500 is outside .* 10\^9/L.*1.5 for 1,500"):
        simulate(CSC_IMMUNE, c, schedule([f"{DOX} hold if ANC < 1500"], 10), 10)
    with pytest.raises(ValueError, match="engine='pallas' does not apply hold rules"):
        simulate(CSC_IMMUNE, c, schedule([f"{DOX} {RULE}"], 10), 10, engine="pallas")
    for regs, match in (
        # two infusions of a ruled drug running at once: one decision could not be kept apart
        (["doxorubicin 10 mg every 4 d over 2 d", "doxorubicin 5 mg start 1 d over 2 d"],
         "infusions overlap on day 1 "),
        (["doxorubicin 10 mg start 1 d", "doxorubicin 5 mg start 1 d over 1 h"],
         r"two doses start in the same step \(day 1\)"),
        # a delay shifts the cycle: it needs one regular regimen of the drug
        (["doxorubicin 10 mg every 10 d x 2", "doxorubicin 10 mg start 25 d"],
         "needs one regular regimen .* days 0, 10, 25"),
    ):  # fmt: skip
        rule = DELAY if "regular" in match else RULE
        with pytest.raises(ValueError, match=match):
            simulate(CSC_IMMUNE, c, schedule([f"{r} {rule}" for r in regs], 30), 30)
    # tools that cannot apply a rule refuse it instead of ignoring it
    from vcohort.runs import parse_arm
    from vcohort.sbml import patient_sbml
    from vcohort.sensitivity import build_problem

    ruled = schedule([f"{DOX} {RULE}"], 10)
    with pytest.raises(ValueError, match="SBML export does not apply hold rules"):
        patient_sbml(c, 0, ruled)
    with pytest.raises(ValueError, match="sensitivity analysis does not apply hold rules"):
        build_problem(CSC_IMMUNE, parse_arm(f"a={DOX} {RULE}"), 10, "log_diameter")
    bad = {
        "population": {"preset": "default", "size": 4},
        "simulation": {"horizon_days": 60},
        "arms": [
            {
                "name": "a",
                "regimens": [
                    {"drug": "doxorubicin", "hold_if": "ANCC < 2"},
                    {"drug": "pembrolizumab", "reduce_to": [0.5]},
                    {"drug": "cb839", "hold_if": "ANC < 2", "reduce_to": [1.5]},
                    {"drug": "wnt974", "hold_if": 3},
                ],
            },
            {"name": "b", "regimens": [f"{DOX} {RULE}", "doxorubicin 10 mg start 20 d"]},
        ],
    }
    pallas = {**bad, "simulation": {"horizon_days": 60, "engine": "pallas"}}
    pallas["arms"] = [bad["arms"][1] | {"regimens": [f"{DOX} {RULE}"]}]
    with pytest.raises(ValueError, match=r"simulation.engine: 'pallas' does not apply hold"):
        experiment_from_dict(pallas)
    with pytest.raises(ValueError) as e:
        experiment_from_dict(bad)
    msg = str(e.value)  # every bad field at once, each under its path
    for part in (
        "arms[0].regimens[0].hold_if: hold rule output='ANCC' is not a daily output",
        "arms[0].regimens[1].reduce_to: needs a hold_if rule",
        "arms[0].regimens[2].reduce_to: dose level 1.5 is not in (0, 1]",
        "arms[0].regimens[3].hold_if: expected a condition like 'ANC < 1.5', got 3",
        "arms[1]: the regimens of doxorubicin give different hold rules",
    ):
        assert part in msg, (part, msg)


def test_the_cli_refuses_a_bad_rule_before_drawing_the_cohort(tmp_path, capsys, monkeypatch):
    import vcohort.cohort
    from vcohort.cli import main

    def no_compute(*a, **k):
        raise AssertionError("the cohort was drawn before the arms were checked")

    monkeypatch.setattr(vcohort.cohort, "make_cohort", no_compute)
    for extra, message in (
        ([], "arm 'b': doxorubicin: hold rule output='ANCC' is not a daily output"),
        (["--engine", "pallas"], "arm 'b': engine='pallas' does not apply hold rules"),
    ):
        arm = f"b={DOX} hold if {'ANCC' if not extra else 'ANC'} < 1"
        rc = main(["simulate", "--arm", "a=untreated", "--arm", arm, *extra,
                   "--out", str(tmp_path / "x")])  # fmt: skip
        assert rc == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------- simulation
@pytest.fixture(scope="module")
def runs():
    """Dose-dense doxorubicin (every 10 d) on 8 patients: the ANC of some has not recovered
    by the next dose, so the rule withholds, reduces and discontinues."""
    c = make_cohort(8, seed=3)
    ruled = simulate(CSC_IMMUNE, c, schedule([f"{DOX} {RULE}"], DAYS), DAYS)
    return c, ruled


def _replay(anc_daily, bsa):
    """The protocol replayed by hand on the run's own pre-dose ANC (the daily output at a
    dose day is the state at the start of that day, before the dose): per patient the dose
    fractions actually given at days 0, 10, ..., 50 and the counters.  A level is used up per
    hold episode (withheld doses in a row count once)."""
    out = []
    for anc, m2 in zip(anc_daily, bsa, strict=True):
        held, reduced, given, due, stopped, fracs = 0, 0, 0.0, 0, np.nan, []
        episodes, holding = 0, False
        for day in range(0, DAYS, 10):
            level = (1.0, 0.75, 0.0)[min(episodes, 2)]
            if level == 0.0:  # discontinued: neither due nor withheld any more
                fracs.append(0.0)
                continue
            due += 1
            if anc[day] < 1.5:
                held += 1
                fracs.append(0.0)
                if not holding:  # a new episode; one more than levels discontinues
                    episodes += 1
                    if episodes == 2:
                        stopped = float(day)
                holding = True
            else:
                holding = False
                given += level * 75.0 * m2
                reduced += level < 1
                fracs.append(level)
        out.append({"due": due, "withheld": held, "reduced": reduced, "given_mg": given,
                    "stopped_day": stopped, "fracs": fracs, "episodes": episodes})  # fmt: skip
    return out


def test_decisions_follow_the_protocol_replayed_on_the_pre_dose_labs(runs):
    c, tr = runs
    bsa = c.covariates["bsa_m2"]
    want = _replay(tr.daily["ANC"], bsa)
    got = tr.dosing["doxorubicin"]
    np.testing.assert_array_equal(got["due"], [w["due"] for w in want])
    for k in ("withheld", "reduced"):
        np.testing.assert_array_equal(got[k], [w[k] for w in want])
    np.testing.assert_array_equal(got["holds"], [w["episodes"] for w in want])  # hold episodes
    # the clock adds dt per step: day 20 is 200 additions of 0.1, exact to round-off
    np.testing.assert_allclose(got["stopped_day"], [w["stopped_day"] for w in want], atol=1e-9)
    np.testing.assert_allclose(got["given_mg"], [w["given_mg"] for w in want], rtol=1e-12)
    np.testing.assert_allclose(got["planned_mg"], 6 * 75.0 * bsa, rtol=1e-12)
    # the per-dose records: the fraction of each planned dose given, on its day
    np.testing.assert_array_equal(got["dose_fraction"], [w["fracs"] for w in want])
    days = np.where(np.asarray([w["fracs"] for w in want]) > 0, np.arange(0, DAYS, 10), np.nan)
    np.testing.assert_allclose(got["dose_day"], days, atol=1e-9)
    # the setting exercises every branch: full doses only, a reduced dose, discontinuation
    held = np.asarray(got["withheld"])
    assert (held == 0).any() and np.isfinite(np.asarray(got["stopped_day"])).any()
    assert (np.asarray(got["reduced"]) > 0).any()


def test_a_patient_under_the_rule_equals_the_patient_under_the_doses_it_let_through(runs):
    c, tr = runs
    want = _replay(tr.daily["ANC"], c.covariates["bsa_m2"])
    for i in np.flatnonzero(np.asarray(tr.dosing["doxorubicin"]["withheld"]) > 0)[:2]:
        given = [
            parse_regimen(f"doxorubicin {75.0 * f} mg/m2 start {10 * k} d over 30 min")
            for k, f in enumerate(want[i]["fracs"])
            if f > 0
        ]
        one = simulate(CSC_IMMUNE, c.subset([i]), compile_schedule(given, float(DAYS)), DAYS)
        for name in ("ANC", "diameter_mm", "csc_fraction"):
            # rate x fraction against (amount x fraction) / duration: round-off apart
            np.testing.assert_allclose(one.daily[name][0], tr.daily[name][i], rtol=1e-10)


def test_infusions_that_meet_on_the_step_grid_are_decided_one_by_one(runs):
    """Daily 0.96-day infusions fill the step grid without a gap (rounded to 10 steps of
    0.1 d), so the rate alone cannot tell where one dose ends: each is decided at its own
    start and keeps that decision for its whole length."""
    c = runs[0].subset([0, 1, 2, 3])
    thr = 2.5
    tr = simulate(
        CSC_IMMUNE,
        c,
        schedule([f"doxorubicin 10 mg every 1 d x 10 over 0.96 d hold if ANC < {thr}"], 12),
        12,
    )  # noqa: E501
    d = tr.dosing["doxorubicin"]
    held = (tr.daily["ANC"][:, :10] < thr).sum(axis=1)  # the pre-dose lab of days 0..9
    np.testing.assert_array_equal(d["due"], 10)
    np.testing.assert_array_equal(d["withheld"], held)
    assert 0 < held.sum() < 40  # the threshold splits the doses
    # a decision covers its whole infusion: whole doses of 10 mg given, never part of one
    np.testing.assert_allclose(d["given_mg"], 10.0 * (10 - held), rtol=1e-12)


def test_a_bolus_during_a_running_infusion_leaves_the_infusion_decision_alone(runs):
    c = runs[0].subset([0])
    regs = ["pembrolizumab 200 mg over 3 d", "pembrolizumab 10 mg start 1 d"]
    size = simulate(CSC_IMMUNE, c, schedule(regs, 4), 4).daily["diameter_mm"][0]
    assert size[0] != size[1]
    # a threshold between the two pre-dose measurements: the infusion (day 0) passes, the
    # bolus (day 1) is withheld
    op = "<" if size[1] < size[0] else ">"
    rule = f" hold if diameter_mm {op} {float(size[0] + size[1]) / 2!r}"
    d = simulate(CSC_IMMUNE, c, schedule([r + rule for r in regs], 4), 4).dosing["pembrolizumab"]
    assert (d["due"][0], d["withheld"][0]) == (2, 1)
    np.testing.assert_allclose(d["given_mg"], 200.0, rtol=1e-12)
    np.testing.assert_allclose(d["planned_mg"], 210.0, rtol=1e-12)


def _replay_delay(anc_daily, bsa, dose, n_doses, thr=1.5, until=DAYS):
    """A delay protocol replayed by hand on the run's own pre-dose ANC: a dose due while
    ANC < ``thr`` waits 2 days for the next lab; later doses follow 10 days after the dose
    given, none from day ``until``; the first delayed dose drops the level to 75%, a second
    one, or a wait past 6 days, stops the drug.  (Every due day and lab day is a whole day:
    the daily output is the lab.)"""
    out = []
    for anc, m2 in zip(anc_daily, bsa, strict=True):
        t, index, held, waited, waiting, stopped = 0, 0, 0, 0, False, np.nan
        due = reduced = delay = 0
        given = []  # (day, dose fraction)
        while t < min(DAYS, until) and index < n_doses:
            level = 0.75 if held else 1.0
            due += not waiting
            if anc[t] < thr:
                first = not waiting
                waiting, waited = True, waited + 2
                if waited > 6 or (first and held >= 1):
                    stopped, held = float(t), held + first
                    break
                held, t = held + first, t + 2
            else:
                given.append((t, level))
                reduced += level < 1
                delay += waited  # the postponement of the doses given
                index, waiting, waited, t = index + 1, False, 0, t + 10
        out.append({"due": due, "withheld": held, "reduced": reduced, "delay_days": delay,
                    "stopped_day": stopped, "given": given,
                    "given_mg": sum(f * dose * m2 for _, f in given)})  # fmt: skip
    return out


@pytest.mark.parametrize(
    "regimen, dose, n_doses, thr, until",
    [
        (DOX, 75.0, 6, 1.5, DAYS),  # a one-step infusion, six doses
        ("doxorubicin 60 mg/m2 every 10 d x 3 over 2 d", 60.0, 3, 2.0, DAYS),  # 20 steps
        ("doxorubicin 60 mg/m2 every 10 d until 25 d", 60.0, 3, 2.0, 25),  # bolus, until
    ],
)
def test_delays_follow_the_protocol_and_shift_the_cycle(runs, regimen, dose, n_doses, thr, until):  # noqa: E501
    c = runs[0]
    rule = DELAY.replace("< 1.5", f"< {thr}")
    tr = simulate(CSC_IMMUNE, c, schedule([f"{regimen} {rule}"], DAYS), DAYS)
    want = _replay_delay(tr.daily["ANC"], c.covariates["bsa_m2"], dose, n_doses, thr, until)
    got = tr.dosing["doxorubicin"]
    for k in ("due", "withheld", "reduced", "delay_days"):
        np.testing.assert_allclose(got[k], [w[k] for w in want], atol=1e-9, err_msg=k)
    np.testing.assert_allclose(got["stopped_day"], [w["stopped_day"] for w in want], atol=1e-9)
    np.testing.assert_allclose(got["given_mg"], [w["given_mg"] for w in want], rtol=1e-12)
    np.testing.assert_array_equal(got["holds"], got["withheld"])  # a delay holds one dose
    # the setting exercises a delay that ends in a dose
    assert any(w["delay_days"] > 0 for w in want)
    # the per-dose records: the day each dose was given (later than planned when delayed) and
    # its fraction; doses never given have no day and fraction 0
    for i, w in enumerate(want):
        day = np.full(got["dose_day"].shape[1], np.nan)
        frac = np.zeros(got["dose_fraction"].shape[1])
        for j, (t, f) in enumerate(w["given"]):
            day[j], frac[j] = t, f
        np.testing.assert_allclose(got["dose_day"][i], day, atol=1e-9)
        np.testing.assert_array_equal(got["dose_fraction"][i], frac)
    # the per-dose table: given doses, the postponed one a stop cut short, later ones
    from vcohort.runs import doses_given_frame

    table = doses_given_frame({"a": tr}, {"a": schedule([f"{regimen} {rule}"], DAYS)}, c.covariates)  # noqa: E501
    for i, w in enumerate(want):
        st = table[table["patient"] == c.patient_id[i]]["status"].tolist()
        n_given, stopped = len(w["given"]), np.isfinite(w["stopped_day"])
        assert st[:n_given] == ["given"] * n_given
        rest = st[n_given:]
        if stopped:  # the dose waiting at the stop was due (withheld); later ones discontinued
            assert rest == ["withheld"] + ["discontinued"] * (len(rest) - 1)
        else:  # due at the horizon and still waiting (withheld), or never due (not reached)
            assert set(rest) <= {"withheld", "not reached"} and rest.count("withheld") <= 1
    # each patient's run equals a run of exactly the doses given, on the days given (same
    # infusion length)
    over = regimen.split(" over ")[1] if " over " in regimen else None
    for i in [i for i, w in enumerate(want) if w["delay_days"] > 0][:2]:
        regs = [
            parse_regimen(
                f"doxorubicin {dose * f} mg/m2 start {day} d" + (f" over {over}" if over else "")
            )  # noqa: E501
            for day, f in want[i]["given"]
        ]
        one = simulate(CSC_IMMUNE, c.subset([i]), compile_schedule(regs, float(DAYS)), DAYS)
        for name in ("ANC", "diameter_mm"):
            np.testing.assert_allclose(one.daily[name][0], tr.daily[name][i], rtol=1e-10)


def test_delay_rules_that_the_step_grid_cannot_keep_are_refused():
    c = make_cohort(2, seed=1, runin_days=0)
    with pytest.raises(ValueError, match=r"up to 3 d is shorter than the recheck every 7 d"):
        parse_regimen(f"{DOX} hold if ANC < 1 delay every 7 d up to 3 d")
    for regs, match in (
        ([f"{DOX} hold if ANC < 1 delay every 0.25 d"], r"every 0.25 d is not a whole number"),
        (["cb839 800 mg tid hold if ANC < 1 delay"], r"interval \(0.333333 d\) to be a whole"),
    ):
        with pytest.raises(ValueError, match=match):
            simulate(CSC_IMMUNE, c, schedule(regs, 10), 10)
    # one dose is a regular regimen too
    one = simulate(CSC_IMMUNE, c, schedule([f"doxorubicin 10 mg x 1 {DELAY}"], 5), 5)
    np.testing.assert_array_equal(one.dosing["doxorubicin"]["due"], 1)


def test_a_rule_that_never_fires_changes_nothing_and_one_that_always_fires_gives_nothing():
    c = make_cohort(3, seed=2)
    plain = simulate(CSC_IMMUNE, c, schedule([DOX], 30), 30)
    never = simulate(CSC_IMMUNE, c, schedule([f"{DOX} hold if ANC < 0"], 30), 30)
    for k in plain.states:
        np.testing.assert_array_equal(never.states[k], plain.states[k])
    d = never.dosing["doxorubicin"]
    np.testing.assert_array_equal(d["withheld"], 0)
    np.testing.assert_allclose(d["given_mg"], d["planned_mg"], rtol=1e-14)
    always = simulate(CSC_IMMUNE, c, schedule([f"{DOX} hold if ANC > 0"], 30), 30)
    untreated = simulate(CSC_IMMUNE, c, None, 30)
    np.testing.assert_array_equal(always.dosing["doxorubicin"]["given_mg"], 0.0)
    np.testing.assert_array_equal(always.dosing["doxorubicin"]["withheld"], 3)  # days 0, 10, 20
    for k in untreated.daily:  # zero concentration: every drug effect is exactly 0
        np.testing.assert_allclose(always.daily[k], untreated.daily[k], rtol=1e-12)


def test_the_same_ruled_drug_with_more_doses_does_not_reuse_the_compiled_records():
    """The per-dose records' shape is part of the compiled program: a q1w run after a q3w run
    of the same ruled drug (same drugs, horizon and rule) must not get the q3w program."""
    c = make_cohort(2, seed=3)
    for every, n in (("q3w", 2), ("q1w", 6), ("q3w", 2)):
        text = f"doxorubicin 60 mg/m2 {every} over 30 min {RULE}"
        tr = simulate(CSC_IMMUNE, c, schedule([text], 42), 42)
        d = tr.dosing["doxorubicin"]
        assert d["dose_fraction"].shape == (2, n)
        np.testing.assert_allclose(d["planned_mg"], n * 60.0 * c.covariates["bsa_m2"], rtol=1e-12)


# ---------------------------------------------------------------------------- outputs
def test_endpoints_summary_and_chunk_files_carry_the_dose_modification(runs, tmp_path):
    c, tr = runs
    ep = patient_endpoints(tr)
    d = tr.dosing["doxorubicin"]
    np.testing.assert_allclose(ep["rdi_doxorubicin"], d["given_mg"] / d["planned_mg"])
    np.testing.assert_array_equal(ep["doses_withheld_doxorubicin"], d["withheld"])
    plain = simulate(CSC_IMMUNE, c, schedule([DOX], DAYS), DAYS)
    both = pd.concat(
        [ep.assign(arm="rule"), patient_endpoints(plain).assign(arm="plain")], ignore_index=True
    )
    sm = summarize(both).set_index("arm")
    held = np.asarray(d["withheld"])
    assert sm.loc["rule", "any_withheld_doxorubicin"] == pytest.approx((held > 0).mean())
    np.testing.assert_array_equal(ep["holds_doxorubicin"], d["holds"])
    assert sm.loc["rule", "mean_holds_doxorubicin"] == pytest.approx(np.mean(d["holds"]))
    assert (np.asarray(d["holds"]) <= held).all() and (np.asarray(d["holds"]) > 0).any()
    assert sm.loc["rule", "any_reduced_doxorubicin"] == pytest.approx((d["reduced"] > 0).mean())
    assert sm.loc["rule", "discontinued_doxorubicin"] == pytest.approx(
        np.isfinite(d["stopped_day"]).mean()
    )
    np.testing.assert_array_equal(ep["discontinued_day_doxorubicin"], d["stopped_day"])
    assert sm.loc["rule", "median_rdi_doxorubicin"] == pytest.approx(
        np.median(d["given_mg"] / d["planned_mg"])
    )
    # an arm that gives the drug without a rule has no dose-modification statistics
    assert np.isnan(sm.loc["plain", "any_withheld_doxorubicin"])
    assert np.isnan(sm.loc["plain", "median_rdi_doxorubicin"])
    assert np.isnan(sm.loc["plain", "discontinued_doxorubicin"])
    # the per-dose table (doses_given.parquet): planned in the patient's mg, given = fraction
    from vcohort.runs import doses_given_frame

    given = doses_given_frame(
        {"rule": tr}, {"rule": schedule([f"{DOX} {RULE}"], DAYS)}, c.covariates
    )
    assert len(given) == 8 * 6 and set(given["arm"]) == {"rule"} and set(given["unit"]) == {"mg"}
    np.testing.assert_array_equal(given["patient"], np.repeat(c.patient_id, 6))  # cohort order
    row = given[(given["patient"] == c.patient_id[1]) & (given["dose"] == 2)].iloc[0]
    assert row["planned_day"] == 10.0
    assert row["planned_amount"] == pytest.approx(75.0 * c.covariates["bsa_m2"][1], rel=1e-12)
    assert row["fraction"] == d["dose_fraction"][1, 1]
    totals = given.groupby("patient", sort=False)["given_amount"].sum().to_numpy()
    np.testing.assert_allclose(totals, d["given_mg"], rtol=1e-12)
    # each dose's status: given; withheld while due; discontinued after the stop
    for i in range(8):
        rows = given[given["patient"] == c.patient_id[i]]
        want = ["given" if f > 0 else "withheld" for f in d["dose_fraction"][i]]
        stop = d["stopped_day"][i]
        want = [w if not (np.isfinite(stop) and 10 * j > stop) else "discontinued"
                for j, w in enumerate(want)]  # fmt: skip
        assert rows["status"].tolist() == want
    assert set(given["status"]) == {"given", "withheld", "discontinued"}
    # NM-TRAN records of the doses given (trial schedules/ARM.csv): per ID the mg given
    from vcohort.dosing import to_nmtran

    cov = c.covariates
    nm = to_nmtran(schedule([f"{DOX} {RULE}"], DAYS), ids=c.patient_id, weight_kg=cov["weight_kg"],
                   bsa_m2=cov["bsa_m2"], given=tr.dosing)  # fmt: skip
    mg = (nm["AMT"] * (1 + nm["ADDL"])).groupby(nm["ID"]).sum().reindex(c.patient_id, fill_value=0)
    np.testing.assert_allclose(mg.to_numpy(), d["given_mg"], rtol=1e-12)
    assert set(nm["TIME"]) <= set(range(0, DAYS, 10))  # omitted doses are not moved
    # chunk files (vcohort batch) keep it bit for bit; take/concat cut and join it
    path = tmp_path / "chunk.npz"
    scr = pd.DataFrame({"patient": c.patient_id})
    path.write_bytes(
        chunk_bytes({"cohort": c, "screening": scr, "trajectories": {"r": tr}, "meta": {}})
    )  # noqa: E501
    back = read_chunk(path)["trajectories"]["r"]
    for k, v in d.items():
        np.testing.assert_array_equal(back.dosing["doxorubicin"][k], v)
    joined = concat([take(tr, 3), take(tr, 8)], 5)
    np.testing.assert_array_equal(joined.dosing["doxorubicin"]["withheld"][3:], held[:2])


def test_a_dose_rounded_onto_an_earlier_step_is_judged_in_that_step():
    """Doses planned at 7.03, 8.03, 9.03 d are decided in the steps at 7.0, 8.0, 9.0 d (dt 0.1).
    In a (synthetic) record of a drug stopped at 8.0, the dose planned at 8.03 stopped it and
    was withheld, not 'discontinued' (8.03 > 8.0 compared the plan, not the step); 9.03 came
    after the stop.  (`_dose_status` reads the record only, not the rule's levels.)"""
    from types import SimpleNamespace

    from vcohort.runs import doses_given_frame

    reg = "doxorubicin 60 mg/m2 every 1 d x 3 start 7.03 d hold if ANC < 1.5 reduce to 75%"
    s = compile_schedule([parse_regimen(reg)], 10.0)
    dosing = {"dose_fraction": np.array([[1.0, 0.0, 0.0]]),
              "dose_day": np.array([[7.0, np.nan, np.nan]]),
              "stopped_day": np.array([8.0]), "due": np.array([2.0])}  # fmt: skip
    tr = SimpleNamespace(patient_id=np.array([0]), status=np.array([0]),
                         dosing={"doxorubicin": dosing})  # fmt: skip
    table = doses_given_frame({"a": tr}, {"a": s}, {"bsa_m2": np.array([1.8])}, 0.1)
    assert table["status"].tolist() == ["given", "withheld", "discontinued"]


def test_a_dose_in_the_last_half_step_is_judged_in_the_last_step_as_simulated():
    """A dose at 9.97 d in a 10-day run (dt 0.1) is given in the last step (9.9 d, as
    `simulate` places it); the dose table rounded it to day 10.0 instead, after a stop at 9.9,
    and called the dose that stopped the drug 'discontinued'."""
    from types import SimpleNamespace

    from vcohort.runs import doses_given_frame

    reg = "doxorubicin 60 mg/m2 every 1 d x 2 start 8.97 d hold if ANC < 1.5 reduce to 75%"
    s = compile_schedule([parse_regimen(reg)], 10.0)
    dosing = {"dose_fraction": np.array([[1.0, 0.0]]), "dose_day": np.array([[8.9, np.nan]]),
              "stopped_day": np.array([9.9]), "due": np.array([2.0])}  # fmt: skip
    tr = SimpleNamespace(patient_id=np.array([0]), status=np.array([0]),
                         save_days=np.array([0.0, 7.0, 10.0]),
                         dosing={"doxorubicin": dosing})  # fmt: skip
    table = doses_given_frame({"a": tr}, {"a": s}, {"bsa_m2": np.array([1.8])}, 0.1)
    assert table["status"].tolist() == ["given", "withheld"]


def test_doses_past_a_shorter_run_s_horizon_are_not_clamped_into_it():
    """A schedule compiled for 30 d and run for 10: its later doses are outside this run (the
    clamp to the last step is for doses inside the horizon only), so two weekly doses do not
    'start in the same step', and a delayed regimen's first dose on day 20 is never given."""
    dox = "doxorubicin 20 mg/m2 over 30 min"
    weekly = compile_schedule([parse_regimen(f"{dox} every 7 d hold if ANC < 1.5")], 30.0)
    weekly.check_rules(0.1, 100)  # raised: two doses in the step at day 9.9
    late = compile_schedule(
        [parse_regimen(f"{dox} every 21 d start 20 d hold if ANC < 1.5 delay every 7 d")], 30.0
    )
    c = make_cohort(1, seed=1, runin_days=0)
    tr = simulate(CSC_IMMUNE, c, late, 10, progress=False)
    assert float(tr.dosing["doxorubicin"]["given_mg"][0]) == 0.0


def test_levels_step_down_per_hold_episode_not_per_withheld_dose():
    """A daily drug withheld day after day is one hold (protocols interrupt, then resume one
    level lower): a rule that fires at every lab withholds all 10 daily doses without using up
    its two levels (counted per withheld dose, the third day discontinued it)."""
    c = make_cohort(2, seed=2)
    rule = "hold if ANC > 0 reduce to 75% 50%"
    always = simulate(CSC_IMMUNE, c, schedule([f"doxorubicin 10 mg every 1 d x 10 {rule}"], 12), 12)
    d = always.dosing["doxorubicin"]
    np.testing.assert_array_equal(d["withheld"], 10)
    np.testing.assert_array_equal(d["holds"], 1)  # reported as one hold
    assert np.isnan(np.asarray(d["stopped_day"])).all()  # one episode: never discontinued


def test_an_episode_ends_with_a_dose_given_and_the_smooth_decision_agrees():
    """Labs failing on doses 1-2, passing on 3, failing on 4 (one level, 75%): doses 1-2 are
    one episode (level 75% from then on), dose 3 is given at 75% and ends it, dose 4 opens a
    second episode, past the levels: discontinued.  The optimiser's smooth step with
    keep = 0/1 does the same arithmetic."""
    import jax.numpy as jnp

    from vcohort import dose_modify as dm

    rule = DoseRule("ANC", "<", 1.5, (0.75,))
    starts = jnp.asarray([1.0, 0.0])  # a bolus falls due at every call
    table = jnp.asarray((1.0, 0.75, 0.0))
    for smooth in (False, True):
        m = dm.initial_state((rule,), jnp.zeros(()), 5)[1][0]
        fracs = []
        for k, past in enumerate((True, True, False, True, False)):
            starts_k = starts.at[0].set(k + 1.0)  # the slot number of the dose
            if smooth:
                keep = jnp.asarray(0.0 if past else 1.0)
                m, b, _ = dm._soft_omit_step(rule, m, k, 1.0, keep, 10.0, 0.0, starts_k,
                                             jnp.float64)  # fmt: skip
            else:
                level = table[jnp.minimum(m["episodes"], 2).astype(jnp.int32)]
                level = jnp.where(jnp.isnan(m["stopped_day"]), level, 0.0)
                m, b, _ = dm._omit_step(rule, m, k, 1.0, jnp.asarray(past), level, 10.0, 0.0,
                                        starts_k)  # fmt: skip
            fracs.append(float(b) / 10.0)
        assert fracs == [0.0, 0.0, 0.75, 0.0, 0.0], (smooth, fracs)
        assert (float(m["withheld"]), float(m["episodes"]), float(m["stopped_day"])) == (3, 2, 3)
    # labs lingering inside the smooth band (ANC 1.47 at 14 daily doses: the step withholds
    # them all, one hold) make one hold in the smooth count too, not a fraction at every dose
    rule2 = DoseRule("ANC", "<", 1.5, (0.75, 0.5))
    m = dm.initial_state((rule2,), jnp.zeros(()), 14)[1][0]
    keep = dm._soft_keep(rule2, jnp.asarray(1.47), 0.1)
    assert 0.0 < float(keep) < 0.5
    for k in range(14):
        m, _, _ = dm._soft_omit_step(rule2, m, k, 1.0, keep, 10.0, 0.0,
                                     starts.at[0].set(k + 1.0), jnp.float64)  # fmt: skip
    assert float(m["episodes"]) == pytest.approx(1.0 - float(keep))
    assert np.isnan(float(m["stopped_day"]))


def test_a_delay_regimen_s_until_off_the_step_grid_keeps_its_last_planned_dose():
    """'until 337 h' (14.04 d) plans doses on days 0, 7 and 14; the dose on day 14 lies before
    the until and must be given when the rule never fires (it was dropped when the until was
    rounded to the step at 14.0 d), while a dose delayed past the until is still not given."""
    c = make_cohort(1, seed=1, runin_days=0)
    reg = "doxorubicin 60 mg/m2 every 7 d until 337 h hold if ANC < 0.01 delay"
    tr = simulate(CSC_IMMUNE, c, schedule([reg], 20), 20, progress=False)
    d = tr.dosing["doxorubicin"]
    np.testing.assert_array_equal(d["dose_day"][0], [0.0, 7.0, 14.0])
    np.testing.assert_allclose(d["given_mg"], d["planned_mg"], rtol=1e-14)
    # ... and the same regimen held throughout gives nothing after its until
    held = simulate(CSC_IMMUNE, c, schedule([reg.replace("< 0.01", "> 0")], 20), 20)
    assert float(held.dosing["doxorubicin"]["given_mg"][0]) == 0.0


def test_an_infusion_half_way_between_whole_steps_takes_the_longer():
    """'over 6 h' at dt 0.1 d is 2.5 steps: 3 steps (the README's 'half-way, the longer'), not
    2 (Python's round-half-to-even), on the shared grid and in a delay rule's records alike."""
    from vcohort.dose_rules import delay_inputs
    from vcohort.dosing import infusion_steps

    assert infusion_steps(0.25, 0.1) == 3 and infusion_steps(0.35, 0.1) == 4
    assert infusion_steps(0.01, 0.1) == 1  # at least one step
    s = compile_schedule([parse_regimen("doxorubicin 60 mg/m2 every 7 d over 6 h")], 14.0)
    grid = s.step_grid(0.1, 140)
    assert grid.is_rate.sum() == 2 * 3  # two doses, three rate steps each
    np.testing.assert_allclose(grid.weight[grid.is_rate], 1.0 / 0.3)
    ruled = compile_schedule(
        [parse_regimen("doxorubicin 60 mg/m2 every 7 d over 6 h hold if ANC < 1 delay")], 14.0
    )
    assert delay_inputs(ruled, 0.1, 140)[0, 2, 3] == 3


def test_a_drug_of_another_arm_does_not_make_a_patient_unstable():
    """k_chemo acts only with chemotherapy: a patient with k_chemo x dt past RK4's bound is
    unstable in a doxorubicin arm but not in the untreated arm of the same run (all arms share
    one drug list; the untreated arm had counted doxorubicin's gated rate)."""
    from vcohort.runs import parse_arm, run_arms

    c = make_cohort(2, seed=1, runin_days=0)
    k = np.array(c.params["k_chemo"], dtype=np.float64)
    k[0] = 40.0
    c = c.with_params(k_chemo=k)
    arms = [parse_arm("none=untreated"), parse_arm("dox=doxorubicin 60 mg/m2")]
    trajs, eps, summary, _ = run_arms(CSC_IMMUNE, c, arms, 14, progress=False)
    assert trajs["none"].status.tolist() == [0, 0]
    assert trajs["dox"].status[0] != 0 and trajs["dox"].status[1] == 0
    assert summary.set_index("arm").loc["none", "n_failed"] == 0


def test_an_omitted_dose_s_given_day_is_its_step_as_a_delayed_one_s():
    """Doses planned at 0.25 and 7.25 d start in the steps at 0.3 and 7.3 (dt 0.1): both rules
    record that step as the day given (the omission rule recorded the plan's 0.25)."""
    c = make_cohort(1, seed=1, runin_days=0)
    for rule in ("hold if ANC < 0.01", "hold if ANC < 0.01 delay"):
        reg = f"doxorubicin 20 mg/m2 every 7 d start 0.25 d {rule}"
        tr = simulate(CSC_IMMUNE, c, schedule([reg], 14), 14, progress=False)
        np.testing.assert_allclose(tr.dosing["doxorubicin"]["dose_day"][0], [0.3, 7.3], atol=1e-9)


def test_columns_describe_doses_given_status_as_a_dose_status(tmp_path):
    from vcohort.columns import write_columns

    pd.DataFrame({"status": ["given"], "given_day": [0.3]}).to_parquet(
        tmp_path / "doses_given.parquet"
    )
    pd.DataFrame({"status": [0]}).to_parquet(tmp_path / "endpoints.parquet")
    cols = pd.read_csv(write_columns(tmp_path, CSC_IMMUNE)).set_index(["file", "column"])
    assert cols.loc[("doses_given.parquet", "status"), "meaning"].startswith("the dose's status")
    assert cols.loc[("endpoints.parquet", "status"), "meaning"].startswith("solver status")


def test_a_cell_product_s_exposure_columns_are_in_its_amount_unit():
    from vcohort.columns import describe

    assert describe("auc_cd133_cart")[0] == "1e6 cells·day/L"
    assert describe("median_auc_cd133_cart", CSC_IMMUNE)[0] == "1e6 cells·day/L"
    assert describe("auc_pembrolizumab")[0] == "mg·day/L"


def test_the_dose_that_stops_a_drug_is_withheld_not_discontinued_in_float32():
    """stopped_day is the stopping step x dt in the run's precision: float32's 7 x 0.1 is
    0.69999999, below the float64 day 0.7 of step 7, and the dose due in that step (the one
    whose omission stopped the drug) read as 'discontinued'."""
    from vcohort.runs import _dose_status

    stopped = {"stopped_day": np.array([np.float32(7) * np.float32(0.1), np.nan], np.float32)}
    step = np.array([[6, 7, 8], [6, 7, 8]])
    frac = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    got = _dose_status(frac, step, stopped, False, np.array([False, False]), 0.1)
    assert got.tolist() == [
        ["given", "withheld", "discontinued"],
        ["given", "withheld", "given"],
    ]


def test_a_discontinuing_hold_also_stops_the_running_infusion():
    """A bolus of a drug falls due while one of its infusions runs; its lab is past the
    threshold and this is the episode after the last level: the drug stops, and so does the
    infusion's rate (it ran on after the discontinuation before)."""
    import jax.numpy as jnp

    from vcohort import dose_modify as dm

    rule = DoseRule("ANC", "<", 1.5, (0.5,))
    m = dm.initial_state((rule,), jnp.zeros(()), 3)[1][0]
    m = m | {"episodes": jnp.asarray(1.0), "holding": jnp.asarray(0.0)}  # one hold, then given
    k, h = jnp.asarray(70.0), jnp.asarray(0.1)
    starts = jnp.asarray([2.0, 0.0])  # a bolus (slot 2) starts now; no infusion starts
    level = jnp.asarray(0.5)  # the level after the first hold
    m2, b, r = dm._omit_step(rule, m, k, h, jnp.asarray(True), level, 10.0, 5.0, starts)
    assert float(m2["stopped_day"]) == pytest.approx(7.0)  # discontinued at this step
    assert float(b) == 0.0 and float(r) == 0.0  # neither the bolus nor the running infusion
    # the same step with the lab fine: the bolus at the reduced level, the infusion runs on
    m3, b, r = dm._omit_step(rule, m, k, h, jnp.asarray(False), level, 10.0, 5.0, starts)
    assert np.isnan(float(m3["stopped_day"])) and float(b) == 5.0 and float(r) == 5.0

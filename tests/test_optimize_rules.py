"""The optimiser under protocol dose modification (`DrugSlots.rule`): the loss with the
protocol's decision equals the simulator, the smooth training decision has exact gradients and
tends to the protocol's, evaluation applies the rule to every schedule, and bad rules are
refused before any compute."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vcohort.cohort import make_cohort
from vcohort.dose_rules import parse_rule
from vcohort.model import CSC_IMMUNE
from vcohort.objectives import per_patient_terms
from vcohort.optimize import DrugSlots, Problem, layout, optimize
from vcohort.optimize.config import parse_experiment
from vcohort.optimize.evaluate import evaluate, standard_schedules
from vcohort.optimize.problem import NoMultipliers, make_loss, rule_starts, to_amount, to_theta
from vcohort.simulate import simulate

RULE = parse_rule("hold if ANC < 1.5 reduce to 75%")
# weekly doxorubicin near its maximum: ANC falls below 1.5 before some later doses
DOX = DrugSlots(
    "doxorubicin", 7.0, max_dose_mg=150.0, initial_mg=130.0, round_to_mg=10.0, rule=RULE
)
PB = Problem(drugs=(DOX,), days=35, assess_every=14, precision="float64")
N = 4


@pytest.fixture(scope="module")
def cohort():
    return make_cohort(N, seed=2)


def _objective(pb, cohort, soft):
    lay = layout(pb)
    loss, plan = make_loss(pb, lay, soft=soft)
    args = cohort.arrays(np.arange(len(cohort)), plan.drugs, np.float64)
    return lay, jax.jit(lambda th: loss(th, NoMultipliers(), 1.0, args)[1][2])


def test_the_loss_with_the_protocol_decision_equals_the_simulator(cohort):
    lay, f = _objective(PB, cohort, soft=False)
    theta = jnp.asarray(to_theta(lay, lay.schedule.amount))
    amount = np.asarray(to_amount(lay, theta))
    tr = simulate(CSC_IMMUNE, cohort, lay.schedule.replace_amount(amount), PB.days)
    held = np.asarray(tr.dosing["doxorubicin"]["withheld"])
    assert held.max() > 0  # the rule fires in this setting
    terms = per_patient_terms({"daily": tr.daily, "auc": tr.auc}, PB.days, assess_every=14)
    # the same program up to the order of the cohort mean
    np.testing.assert_allclose(float(f(theta)), np.mean(terms["log_burden"]), rtol=1e-12)


def test_a_slot_whose_dose_rounds_to_nothing_is_not_a_dose():
    lay = layout(PB)
    _, plan = make_loss(PB, lay, soft=False)
    amount = np.array([[130.0, 4.9, 130.0, 5.0, 0.0]])  # round_to 10 mg: below 5 mg is no dose
    got = np.asarray(rule_starts(PB, lay, plan)(jnp.asarray(amount)))
    want = lay.schedule.replace_amount(np.where(amount < 5.0, 0.0, amount))
    np.testing.assert_array_equal(got, want.step_starts(plan.dt, plan.n_steps))
    assert sorted(got[got > 0]) == [1.0, 3.0, 4.0]


def test_the_smooth_decision_has_exact_gradients_and_tends_to_the_protocol(cohort):
    lay, exact = _objective(PB, cohort, soft=False)
    theta = jnp.asarray(to_theta(lay, lay.schedule.amount))
    values = {}
    for h in (0.1, 1e-3):
        _, f = _objective(dataclasses.replace(PB, hold_softness=h), cohort, soft=True)
        values[h] = float(f(theta))
        if h == 0.1:
            g = np.asarray(jax.grad(f)(theta))
            e = 1e-5
            fd = [(f(theta.at[i].add(e)) - f(theta.at[i].add(-e))) / (2 * e) for i in range(5)]
            # central differences in float64: truncation ~e^2, round-off ~1e-16/e
            np.testing.assert_allclose(g, np.asarray(fd), rtol=1e-5, atol=1e-9)
            assert np.abs(g).max() > 1e-4
    # a width of 0.15e9/L moves decisions (the relaxation is on); 1.5e-3 does not: no
    # pre-dose ANC of these patients lies that close to the threshold
    assert abs(values[0.1] - float(exact(theta))) > 1e-3
    np.testing.assert_allclose(values[1e-3], float(exact(theta)), rtol=1e-9)


def test_the_optimiser_runs_under_the_rule_and_evaluation_applies_it_to_every_schedule(cohort):
    res = optimize(PB, cohort, iterations=2, progress=False)
    assert res.history["finite"].all() and np.isfinite(res.amount).all()
    strict = dataclasses.replace(
        PB, drugs=(dataclasses.replace(DOX, rule=parse_rule("hold if ANC < 4")),)
    )  # withholds often, so that the standard regimen meets it too
    scheds = standard_schedules(strict)
    assert scheds["standard doxorubicin"].rules[0] == strict.drugs[0].rule
    # a schedule carries its problem's rules (`Layout.schedule`)
    scheds["optimised"] = layout(strict).schedule.replace_amount(res.amount)
    ev = evaluate(strict, cohort, scheds).set_index("schedule")
    for name in ("standard doxorubicin", "optimised"):
        row = ev.loc[name]
        assert row["any_withheld_doxorubicin"] > 0
        assert 0 < row["median_rdi_doxorubicin"] < 1
    no_rule = dataclasses.replace(strict, drugs=(dataclasses.replace(DOX, rule=None),))
    plain = {"optimised": layout(no_rule).schedule.replace_amount(res.amount)}
    plain = evaluate(no_rule, cohort, plain).set_index("schedule")
    assert "any_withheld_doxorubicin" not in plain
    # the total reported is the mg given, below the mg planned without the rule
    mg = "total_mg_median:doxorubicin"
    assert ev.loc["optimised", mg] < plain.loc["optimised", mg]


def _toml(drug: dict, **over) -> dict:
    raw = {
        "days": 21,
        "train": {"patients": 4, "seed": 1},
        "heldout": {"patients": 4, "seed": 2},
        "drug": [{"name": "doxorubicin", "every": "7 d", "round_to": "10 mg", **drug}],
    }
    return raw | over


def test_config_reads_the_rule_and_refuses_what_the_optimiser_cannot_apply():
    exp = parse_experiment(
        _toml({"hold_if": "ANC < 1.5", "reduce_to": ["75%", 0.5]}, optimizer={"hold_softness": 0})
    )
    assert exp.problem.drugs[0].rule == parse_rule("hold if ANC < 1.5 reduce to 75% 50%")
    assert exp.problem.hold_softness == 0
    for drug, opt, match in [
        ({"hold_if": "ANC < 1.5", "delay": True}, {}, r"drug\[0\].*delays doses.*omission"),
        ({"reduce_to": ["75%"]}, {}, r"drug\[0\]\.reduce_to: needs a hold_if"),
        ({"hold_if": "ANC < 0"}, {}, "threshold 0"),
        ({"hold_if": "ANC <"}, {}, r"drug\[0\]\.hold_if"),
        ({"hold_if": "ANC < 1.5"}, {"hold_softness": 2.0}, "hold_softness"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_experiment(_toml(drug, optimizer=opt))
    bad = dataclasses.replace(DOX, rule=parse_rule("hold if platelets < 50"))
    pb = dataclasses.replace(PB, drugs=(bad,))
    with pytest.raises(ValueError, match="output='platelets' is not a daily output.*ANC"):
        make_loss(pb, layout(pb))

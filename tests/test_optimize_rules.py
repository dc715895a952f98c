"""The optimiser under protocol dose modification (`DrugSlots.rule`): the loss with the
protocol's decision equals the simulator of the schedule evaluated (slots below half a unit are
no doses in both), the smooth training decision has exact gradients and is the protocol's far
from the threshold, evaluation applies the rule to every schedule, and bad rules are refused
before any compute."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from vcohort.cohort import make_cohort
from vcohort.dose_rules import parse_rule
from vcohort.model import CSC_IMMUNE
from vcohort.objectives import per_patient_terms
from vcohort.optimize import DrugSlots, Problem, layout, optimize
from vcohort.optimize.config import parse_experiment
from vcohort.optimize.evaluate import evaluate, standard_schedules
from vcohort.optimize.loop import OptResult
from vcohort.optimize.problem import NoMultipliers, make_loss, rule_inputs, to_amount, to_theta
from vcohort.simulate import cohort_fn, simulate

RULE = parse_rule("hold if ANC < 1.5 reduce to 75%")
# weekly doxorubicin near its maximum: ANC falls below 1.5 before some later doses; CB-839 BID
# under the same rule: many doses fall due through each nadir
DOX = DrugSlots(
    "doxorubicin", 7.0, max_dose_mg=150.0, initial_mg=130.0, round_to_mg=10.0, rule=RULE
)
CB = DrugSlots("cb839", 0.5, hold_days=7.0, initial_mg=600.0, round_to_mg=200.0, rule=RULE)
PB = Problem(drugs=(DOX, CB), days=35, assess_every=14, precision="float64")
N = 4


@pytest.fixture(scope="module")
def cohort():
    return make_cohort(N, seed=2)


def _compiled(pb, cohort, soft):
    """The loss's objective and the cohort outputs (with the dosing records) of ``theta``."""
    lay = layout(pb)
    loss, plan = make_loss(pb, lay, soft=soft)
    args = cohort.arrays(np.arange(len(cohort)), plan.drugs, np.float64)
    grid = lay.schedule.step_grid(plan.dt, plan.n_steps)
    prepare, f = rule_inputs(pb, lay, plan), cohort_fn(plan)

    def outputs(theta):
        amount, extra = prepare(to_amount(lay, theta))
        return f(*args, *grid.scatter(amount, jnp), *extra)

    return lay, jax.jit(lambda th: loss(th, NoMultipliers(), 1.0, args)[1][2]), jax.jit(outputs)


def _result(pb, lay, amount) -> OptResult:
    return OptResult(pb, lay, np.zeros(0), amount, pd.DataFrame(), {}, 0, 0.0)


def test_the_loss_with_the_protocol_decision_equals_the_simulator(cohort):
    lay, f, _ = _compiled(PB, cohort, soft=False)
    start = np.array(lay.schedule.amount)
    start[0, 1] = 0.0  # to_theta's floor: 0.02 x 150 = 3 mg, below half a 10 mg unit
    theta = jnp.asarray(to_theta(lay, start))
    amount = np.asarray(to_amount(lay, theta))
    assert 0 < amount[0, 1] < 5.0
    evaluated = _result(PB, lay, amount).schedule()  # what every evaluation simulates
    assert evaluated.amount[0, 1] == 0.0 and evaluated.amount[0, 0] == amount[0, 0]
    tr = simulate(CSC_IMMUNE, cohort, evaluated, PB.days)
    for d in ("doxorubicin", "cb839"):  # both rules fire in this setting
        assert np.asarray(tr.dosing[d]["withheld"]).max() > 0
    terms = per_patient_terms({"daily": tr.daily, "auc": tr.auc}, PB.days, assess_every=14)
    # the same program up to the order of the cohort mean
    np.testing.assert_allclose(float(f(theta)), np.mean(terms["log_burden"]), rtol=1e-12)


def test_a_slot_whose_dose_rounds_to_nothing_is_not_a_dose():
    pembro = DrugSlots("pembrolizumab", 7.0, infusion_days=1 / 48, round_to_mg=100.0)
    pb = Problem(drugs=(DOX, CB, pembro), days=35)  # bolus, BID and an unruled infusion
    lay = layout(pb)
    _, plan = make_loss(pb, lay, soft=False)
    rng = np.random.default_rng(0)
    amount = rng.uniform(0.0, 300.0, lay.valid.shape) * lay.valid
    amount[0, :5] = [130.0, 4.9, 130.0, 5.0, 0.0]  # doxorubicin: below 5 mg is no dose
    amount[2, :5] = [0.0, 2.0, 49.0, 100.0, 0.0]  # pembrolizumab has no rule: all given
    half = np.array([[5.0], [100.0], [0.0]])
    want = np.where(amount < half, 0.0, amount)
    given, (starts, _) = rule_inputs(pb, lay, plan)(jnp.asarray(amount))
    np.testing.assert_array_equal(given, want)
    ref = dataclasses.replace(lay.schedule.replace_amount(want), rules=(RULE, RULE, RULE))
    np.testing.assert_array_equal(
        starts[..., :2, :], ref.step_starts(plan.dt, plan.n_steps)[..., :2, :]
    )
    # straight-through: an empty slot's gradient is its dose's, so it can grow into a dose
    grad = jax.grad(lambda a: jnp.sum(rule_inputs(pb, lay, plan)(a)[0]))(jnp.asarray(amount))
    np.testing.assert_array_equal(grad, 1.0)


def test_the_smooth_decision_has_exact_gradients_and_is_the_protocol_far_from_the_threshold(
    cohort,
):
    lay, exact, _ = _compiled(PB, cohort, soft=False)
    theta = jnp.asarray(to_theta(lay, lay.schedule.amount))
    _, soft, _ = _compiled(PB, cohort, soft=True)
    g = np.asarray(jax.grad(soft)(theta))
    e = 1e-5
    fd = [(soft(theta.at[i].add(e)) - soft(theta.at[i].add(-e))) / (2 * e) for i in range(g.size)]
    # central differences in float64: truncation ~e^2, round-off ~1e-16/e
    np.testing.assert_allclose(g, np.asarray(fd), rtol=1e-5, atol=1e-9)
    assert np.abs(g).max() > 1e-4
    # the band acts here (3e-4 apart; the labs of a few BID doses fall inside it)
    assert abs(float(soft(theta)) - float(exact(theta))) > 1e-5
    # labs far from the threshold add nothing, however many doses fall due (BID CB-839: a
    # logistic's tails counted up to ~0.01 of a withheld dose per dose here): ANC stays below 9
    # while the band of "hold if ANC > 15" is 14.25-15.75
    far = parse_rule("hold if ANC > 15 reduce to 75%")
    pb = dataclasses.replace(PB, drugs=tuple(dataclasses.replace(d, rule=far) for d in PB.drugs))
    out = _compiled(pb, cohort, soft=True)[2](theta)
    assert float(np.max(out["daily"]["ANC"])) < 9.0
    for d in ("doxorubicin", "cb839"):
        rec = out["dosing"][d]
        np.testing.assert_array_equal(rec["withheld"], 0.0)
        np.testing.assert_allclose(rec["given_mg"], rec["planned_mg"], rtol=1e-14)


def test_the_optimiser_runs_under_the_rule_and_evaluation_applies_it_to_every_schedule(cohort):
    res = optimize(PB, cohort, iterations=2, progress=False)
    assert res.history["finite"].all() and np.isfinite(res.amount).all()
    per = optimize(PB, cohort.subset([0, 1]), personalised=True, iterations=1, progress=False)
    assert per.amount.shape == (2, *res.amount.shape) and per.history["finite"].all()
    # per-patient amounts: ruled slots below half a unit give nothing, drug by drug
    a = np.random.default_rng(1).uniform(0.0, 300.0, per.amount.shape)
    want = np.where(a < np.array([[5.0], [100.0]]), 0.0, a)
    mine = _result(PB, per.layout, a)
    np.testing.assert_array_equal(mine.schedule().amount, want)
    np.testing.assert_array_equal(mine.schedule(1).amount, want[1])
    strict = dataclasses.replace(
        PB, drugs=(dataclasses.replace(DOX, rule=parse_rule("hold if ANC < 4")),)
    )  # withholds often, so that the standard regimen meets it too
    scheds = standard_schedules(strict)
    assert scheds["standard doxorubicin"].rules[0] == strict.drugs[0].rule
    # a schedule carries its problem's rules (`Layout.schedule`)
    dox = res.amount[:1, : layout(strict).schedule.n_slots]  # its weekly slots
    scheds["optimised"] = layout(strict).schedule.replace_amount(dox)
    ev = evaluate(strict, cohort, scheds).set_index("schedule")
    for name in ("standard doxorubicin", "optimised"):
        row = ev.loc[name]
        assert row["any_withheld_doxorubicin"] > 0
        assert 0 < row["median_rdi_doxorubicin"] < 1
    no_rule = dataclasses.replace(strict, drugs=(dataclasses.replace(DOX, rule=None),))
    plain = {"optimised": layout(no_rule).schedule.replace_amount(dox)}
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
        ({"hold_if": "anc < 1.5"}, {}, r"drug\[0\]\.hold_if: hold rule output='anc'.*ANC"),
        ({}, {"hold_softness": 0.2}, "no \\[\\[drug\\]\\] has a hold_if"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_experiment(_toml(drug, optimizer=opt))
    from vcohort.config import ConfigError

    with pytest.raises(ConfigError) as e:  # a malformed rule is one error, not two
        parse_experiment(_toml({"hold_if": "ANC <"}, optimizer={"hold_softness": 0.2}))
    assert len(e.value.errors) == 1
    bad = dataclasses.replace(DOX, rule=parse_rule("hold if platelets < 50"))
    pb = dataclasses.replace(PB, drugs=(bad,))
    with pytest.raises(ValueError, match="output='platelets' is not a daily output.*ANC"):
        make_loss(pb, layout(pb))

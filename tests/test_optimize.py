"""Schedule optimisation: validation, rounding, gradients against finite differences, the loop
(improvement, constraints, checkpoint/resume), personalised mode, the ES baseline and the CLI."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vcohort.cohort import make_cohort
from vcohort.optimize import DrugSlots, Problem, layout, optimize
from vcohort.optimize.baseline import evolution_strategy
from vcohort.optimize.config import parse_experiment
from vcohort.optimize.problem import constraint_values, to_amount, to_theta
from vcohort.optimize.rounding import round_candidates, round_clinical

# one small problem shared by the loop tests, so its jitted step compiles once
SMALL = Problem(
    drugs=(
        DrugSlots("wnt974", 1.0, round_to_mg=5.0, budget_mg=150.0),
        DrugSlots(
            "pembrolizumab",
            7.0,
            infusion_days=1 / 48,
            round_to_mg=100.0,
            intervals_days=(7.0, 14.0, 21.0),
        ),
    ),
    days=28,
    assess_every=14,
    precision="float64",
)


@pytest.fixture(scope="module")
def cohort8():
    return make_cohort(8, seed=5, runin_days=0)


# ------------------------------------------------------------------ validation (no compute)
@pytest.mark.parametrize(
    "drug, days, match",
    [
        (DrugSlots("wnt974", 1.0, budget_mg=2.0, round_to_mg=5.0), 28, "below one dose unit"),
        (DrugSlots("wnt974", 1.0, max_dose_mg=60.0), 28, "label/trial maximum"),
        (DrugSlots("wnt974", 1.0, initial_mg=40.0), 28, "exceeds max_dose_mg"),
        (DrugSlots("pembrolizumab", 7.0, intervals_days=(10.0,)), 28, "multiple of every_days"),
        (DrugSlots("wnt974", 1.0, start_day=30.0), 28, "before the horizon"),
        (DrugSlots("wnt974", 0.5, max_daily_mg=2.0, round_to_mg=5.0), 28, "below one dose"),
        (DrugSlots("aspirin", 1.0), 28, "not in the catalogue"),
        (DrugSlots("wnt974", -1.0), 28, "every_days"),
        # 0 is allowed for these: the message said "> 0"
        (DrugSlots("wnt974", 1.0, start_day=-1.0), 28, r"start_day=-1.0 must be .* >= 0$"),
        (DrugSlots("wnt974", 1.0, initial_mg=-5.0), 28, r"initial_mg=-5.0 must be .* >= 0$"),
        (DrugSlots("wnt974", 1.0, round_to_mg=0.0), 28, r"round_to_mg=0.0 must be .* > 0$"),
    ],
)
def test_infeasible_requests_fail_before_compute(drug, days, match):
    with pytest.raises(ValueError, match=match):
        Problem(drugs=(drug,), days=days).validate()


def test_the_python_api_refuses_a_dt_too_coarse_for_the_typical_patient(cohort8):
    """The config file refused dt 0.2 (k_TGF 14.3/day x 0.2 = 2.86, past RK4's bound) but
    `optimize` itself trained on the finite, wrong trajectories."""
    p = Problem(drugs=(DrugSlots("wnt974", 1.0),), days=7, dt=0.2)
    with pytest.raises(ValueError, match=r"dt 0.2: the typical k_TGF .* use dt 0.125 or smaller"):
        optimize(p, cohort8, iterations=1, progress=False)


def test_unknown_objective_and_cvar_in_personalised_mode():
    with pytest.raises(ValueError, match="objective 'ttp' unknown"):
        Problem(drugs=(DrugSlots("wnt974", 1.0),), days=7, weights={"ttp": 1.0}).validate()


def _toml(**over):
    raw = {
        "days": 21,
        "train": {"patients": 4, "seed": 1},
        "heldout": {"patients": 4, "seed": 2},
        "drug": [{"name": "wnt974", "every": "1 d", "round_to": "5 mg"}],
    }
    raw.update(over)
    return raw


@pytest.mark.parametrize(
    "over, match",
    [
        ({"dayz": 3}, "unknown key"),
        ({"drug": [{"name": "wnt974", "every": "1 d", "max_dose": "1 mg/kg"}]}, "use mg"),
        ({"drug": [{"every": "1 d"}]}, "name: required key is missing"),
        ({"heldout": {"patients": 4, "seed": 1}}, "shares patients with"),
        # same seed, overlapping ids (2..5 vs 0..3): half the held-out patients were trained on
        ({"heldout": {"patients": 4, "seed": 1, "first_id": 2}}, r"ids 0\.\.3.*first_id >= 4"),
        ({"train": {"patients": 4, "seed": 2**32}}, "train.seed"),  # PRNGKey keeps 32 bits
        ({"drug": [{"name": "wnt974", "every": "1 d", "round_to": "0 mg"}]}, "round_to"),
        ({"objective": {"log_burden": -1.0}}, "objective.log_burden: -1.0 must be"),
        ({"objective": {"log_burden": 0.0}}, "at least one weight must be > 0"),
        (
            {"objective": {"cvar": 1.0}, "optimizer": {"personalised_patients": 2}},
            "couples patients",
        ),
        ({"optimizer": {"name": "nosuchopt"}}, "not an optax optimiser"),
        ({"optimizer": {"iterations": 0}}, "iterations: 0 must be"),
        ({"precision": "float16"}, "precision"),
        ({"optimizer": {"schedule": "step"}}, r"optimizer.schedule: .*constant, cosine"),
        ({"optimizer": {"final_lr_fraction": 0.1}}, "does not decay"),
        (
            {"optimizer": {"schedule": "cosine", "final_lr_fraction": 0.0}},
            "final_lr_fraction: 0.0 must be",
        ),
        (
            {"drug": [{"name": "wnt974", "every": "1 d", "budget": "1 mg", "round_to": "5 mg"}]},
            "below one dose",
        ),
        # an optimiser whose update needs the loss itself (a line search) crashed at step one
        ({"optimizer": {"name": "lbfgs"}}, r"name='lbfgs': its update needs more than"),
        # no assessment before the horizon: the smoothed PFS is a constant (gradient 0)
        ({"objective": {"pfs": 1.0}, "assess_every": 21}, r"objective pfs=1.0: PFS needs an"),
        # true/false were read as 1 mg / 0 mg (a bool is an int to Python)
        ({"drug": [{"name": "wnt974", "every": "1 d", "round_to": True}]}, r"round_to.*True"),
        ({"drug": [{"name": "wnt974", "every": "1 d", "initial": False}]}, r"initial.*False"),
        ({"drug": [{"name": "wnt974", "every": "1 d", "max_dose": True}]}, r"max_dose.*True"),
        # refused only after both cohorts were built; an oral drug's infusion ran
        ({"dt": 0.3}, r"dt: dt=0.3: 1/dt must be a whole number"),
        # were accepted: a number as the title; more patients than [train] has (clipped)
        ({"title": 5}, r"title: 5: expected a string"),
        (
            {"optimizer": {"batch_size": 5}},
            r"optimizer.batch_size: 5 exceeds \[train\] patients = 4",
        ),
        (
            {"optimizer": {"personalised_patients": 9}},
            r"optimizer.personalised_patients: 9 exceeds \[train\] patients = 4",
        ),
        (
            {"drug": [{"name": "wnt974", "every": "1 d", "over": "2 h"}]},
            r"route 'oral'; only IV drugs take an infusion",
        ),
        # a dt too coarse for the typical patient's RK4 step ran, giving wrong endpoints
        ({"dt": 0.2}, r"- dt: dt 0.2: the typical k_TGF .* use dt = 0.125 or smaller$"),
        # the multipliers of a simulated limit were never updated, silently
        (
            {"constraints": {"anc_grade4_max": 0.1}, "optimizer": {"iterations": 3}},
            r"optimizer.al_every: 5 \(the default\) >= iterations = 3: .*al_every in 1..2",
        ),
        (
            {
                "drug": [{"name": "wnt974", "every": "1 d", "auc_budget": 1.0}],
                "optimizer": {"iterations": 4, "al_every": 4},
            },
            r"optimizer.al_every: 4 >= iterations = 4",
        ),
        (
            {"constraints": {"anc_grade4_max": 0.1}, "optimizer": {"iterations": 1}},
            r"optimizer.al_every: .*allowed: iterations >= 2 and al_every < iterations",
        ),
        # no assessment within the horizon: the ORR is NaN, the smoothed response is another thing
        (
            {"objective": {"response": 1.0}, "assess_every": 22},
            r"objective response=1.0: a RECIST response needs an assessment within the horizon",
        ),
        # the error named drug[0] and said "> 0" where 0 is allowed
        (
            {"drug": [{"name": "wnt974", "every": "1 d", "start": "-7 d"}]},
            r"drug\[0\].start: drug wnt974: start=-7.0 must be a finite number >= 0",
        ),
        (
            {"drug": [{"name": "wnt974", "every": "1 d", "initial": "-5 mg"}]},
            r"drug\[0\].initial: drug wnt974: initial=-5.0 must be a finite number >= 0",
        ),
        (
            {"drug": [{"name": "pembrolizumab", "every": "7 d", "intervals": ["10 d"]}]},
            r"drug\[0\].intervals: drug pembrolizumab: interval 10.0 d must be",
        ),
        # a bare number was read as days (30 = a 30-day infusion); the trial tables refuse it
        (
            {"drug": [{"name": "pembrolizumab", "every": "21 d", "over": 30}]},
            r"drug\[0\].over: .*over=30: give a unit .* e.g. '30 min'",
        ),
    ],
)
def test_config_errors_name_the_field(over, match):
    with pytest.raises(ValueError, match=match):
        parse_experiment(_toml(**over))


@pytest.mark.parametrize(
    "over",
    [
        {"dt": 0.125},  # the largest stable dt the refusal above suggests
        # a simulated limit with multipliers that act; none without one
        {"constraints": {"anc_grade4_max": 0.1}, "optimizer": {"iterations": 3, "al_every": 2}},
        {"optimizer": {"iterations": 3}},
        # an assessment on the horizon's last day is one (ORR evaluable)
        {"objective": {"response": 1.0}, "assess_every": 21},
        {"drug": [{"name": "wnt974", "every": "1 d", "start": "0 d", "initial": "0 mg"}]},
    ],
)
def test_config_accepts_the_limits_of_the_checks(over):
    parse_experiment(_toml(**over))


def test_config_docstring_documents_every_key_it_accepts():
    """experiments/README.md names the module docstring as the field reference."""
    import vcohort.optimize.config as cfg

    doc = cfg.__doc__
    keys = cfg.TOP | cfg.DRUG_KEYS | cfg.OPT_KEYS | {"patients", "seed", "first_id", "method"}
    keys |= {"anc_grade4_max"}
    tables = {"objective", "constraints", "train", "heldout", "optimizer", "baseline"}
    assert all(f"``[{t}]``" in doc for t in tables) and "``[[drug]]``" in doc
    missing = sorted(k for k in keys - tables - {"drug"} if f"``{k}``" not in doc)
    assert not missing, missing
    for unit in ("mg·day/L", "mg per calendar day", "mg per patient over the horizon"):
        assert unit in doc


def test_problem_docstring_says_which_limits_the_augmented_lagrangian_handles():
    import vcohort.optimize.problem as prob

    doc = " ".join(prob.__doc__.split())
    assert "Per-day maxima and cumulative dose budgets are linear in the doses and also hold " \
        "exactly" in doc  # fmt: skip
    al = doc[doc.index("Only the limits") : doc.index("augmented Lagrangian")]
    assert "AUC" in al and "neutropenia" in al and "per-day" not in al and "cumulative" not in al


def test_config_reports_every_bad_field_at_once():
    from vcohort.config import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_experiment(_toml(days=0, objective={"ttp": 1.0}, optimizer={"mu": -1.0}))
    assert len(e.value.errors) == 3


def test_horizon_errors_are_listed_for_every_drug_with_the_file_keys():
    from vcohort.config import ConfigError

    late = [{"name": "wnt974", "every": "1 d", "round_to": "5 mg", "start": "30 d"},
            {"name": "cb839", "every": "12 h", "round_to": "200 mg", "start": "25 d"}]  # fmt: skip
    with pytest.raises(ConfigError) as e:
        parse_experiment(_toml(drug=late))  # days = 21
    assert e.value.errors == [
        "drug[0].start: drug wnt974: start=30.0 must be before the horizon (21 d)",
        "drug[1].start: drug cb839: start=25.0 must be before the horizon (21 d)",
    ]
    with pytest.raises(ValueError, match=r"initial=5000.0 exceeds max_dose=1000.0"):
        parse_experiment(_toml(drug=[late[1] | {"start": "0 d", "initial": "5000 mg"}]))


def test_config_parses_units():
    exp = parse_experiment(
        _toml(
            drug=[{"name": "cb839", "every": "12 h", "max_daily": "1600 mg", "round_to": "200 mg"}]
        )
    )
    d = exp.problem.drugs[0]
    assert d.every_days == pytest.approx(0.5) and d.max_daily_mg == 1600.0


def test_cosine_schedule_decays_the_step_to_its_final_fraction():
    """With sgd the update is -lr_t * gradient, so the step sizes are the schedule itself:
    the full learning rate first, a half-cosine down to final_lr_fraction of it at the last
    iteration (and held there), against a constant rate for schedule = 'constant'."""
    import jax.numpy as jnp
    import optax

    from vcohort.optimize.config import make_optax, optax_of

    def steps(opt, n):
        x, state, out = jnp.zeros(1), None, []
        state = opt.init(x)
        for _ in range(n):
            upd, state = opt.update(jnp.ones(1), state, x)  # gradient 1
            out.append(-float(upd[0]))
        return np.array(out)

    cos = steps(make_optax("sgd", 0.2, "cosine", 10, 0.05), 12)
    # 10 iterations: k = 0..9, the last at the final rate
    want = [0.2 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * k / 9))) for k in range(10)]
    np.testing.assert_allclose(cos[:10], want, rtol=1e-6)  # float32 optax arithmetic
    assert cos[0] == pytest.approx(0.2) and cos[9] == pytest.approx(0.01) == cos[11]
    np.testing.assert_allclose(steps(make_optax("sgd", 0.2), 12), 0.2, rtol=1e-6)
    # the experiment file's table gives the same optimiser
    exp = parse_experiment(
        _toml(optimizer={"name": "sgd", "learning_rate": 0.2, "schedule": "cosine",
                         "iterations": 10, "final_lr_fraction": 0.05})
    )  # fmt: skip
    np.testing.assert_allclose(steps(optax_of(exp.optimizer), 12), cos)
    from vcohort.optimize.experiment import _optimiser_text

    assert _optimiser_text(exp.optimizer) == (
        "sgd, learning rate 0.2, cosine decay to 0.01 at the last iteration (9)"
    )
    with pytest.raises(ValueError, match="needs iterations"):
        make_optax("adam", 0.1, "cosine")
    assert isinstance(make_optax("adam", 0.1), optax.GradientTransformation)


def test_layout_blocks_and_standard_start():
    """hold_days gives one variable per block (doses equal within it); the start is the
    catalogue's standard regimen on the slot grid (pembrolizumab q3w on weekly slots)."""
    pb = Problem(
        drugs=(
            DrugSlots("cb839", 0.5, hold_days=7.0),
            DrugSlots("pembrolizumab", 7.0, infusion_days=1 / 48),
        ),
        days=42,
    )
    lay = layout(pb)
    assert lay.n_vars == 6 + 6
    a = np.asarray(to_amount(lay, to_theta(lay, lay.schedule.amount), xp=np))
    cb = a[0, lay.valid[0]].reshape(6, 14)
    assert np.allclose(cb, cb[:, :1]) and np.allclose(cb, 800.0)
    pem = a[1, lay.valid[1]]
    assert pem[0] == pytest.approx(200.0) and pem[3] == pytest.approx(200.0)
    assert pem[1] < 0.03 * 400.0  # "no dose" starts at the 2% floor of the sigmoid
    with pytest.raises(ValueError, match="hold_days"):
        Problem(drugs=(DrugSlots("cb839", 1.0, hold_days=0.5),), days=7).validate()


# ------------------------------------------------------------------ rounding (numpy only)
def test_slot_rounding_respects_budget_and_daily_maximum():
    pb = Problem(
        drugs=(DrugSlots("cb839", 0.5, round_to_mg=200.0, max_daily_mg=1600.0, budget_mg=5000.0),),
        days=4,
    )
    lay = layout(pb)
    amount = np.full(lay.schedule.amount.shape, 990.0) * lay.valid  # 1980 mg/day, 7920 total
    r = round_clinical(pb, lay, amount).schedule.amount[0, lay.valid[0]]
    assert np.all(r % 200.0 == 0) and np.all(r <= 1000.0)
    assert r.sum() <= 5000.0
    per_day = np.bincount(np.floor(lay.schedule.time[0, lay.valid[0]]).astype(int), weights=r)
    assert per_day.max() <= 1600.0


def test_slot_rounding_keeps_one_dose_level_per_hold_block():
    """README: oral drugs can hold one dose level per block (``hold``).  8 mg daily in 5 mg
    units over a 224 mg budget: rounding up (10 mg x 28 = 280 mg) breaks the budget, and the
    repair lowers whole blocks (the earliest first), never single days of a block."""
    d = DrugSlots("wnt974", 1.0, round_to_mg=5.0, budget_mg=224.0, hold_days=7.0)
    pb = Problem(drugs=(d,), days=28)
    lay = layout(pb)
    amount = np.full(lay.valid.shape, 8.0) * lay.valid
    r = round_clinical(pb, lay, amount).schedule.amount[0, lay.valid[0]]
    blocks = r.reshape(4, 7)
    assert np.all(blocks == blocks[:, :1]), blocks
    assert r.sum() <= 224.0
    np.testing.assert_array_equal(blocks[:, 0], [5.0, 5.0, 10.0, 10.0])  # 210 mg: 224 // 7 // 5
    # a block's level is rounded from its mean: uneven slots in a block get one level
    uneven = amount.copy()
    uneven[0, :7] = [1, 1, 1, 1, 12, 12, 12]  # mean 5.7 -> 5 mg for the whole block
    r2 = round_clinical(pb, lay, uneven).schedule.amount[0, lay.valid[0]]
    assert np.all(r2[:7] == 5.0), r2[:7]


def test_hold_must_be_a_multiple_of_every_and_rules_must_fit_the_step_grid():
    """Checked when the experiment is read, naming the drug, before any compute."""
    from vcohort.config import ConfigError
    from vcohort.optimize.config import parse_experiment

    with pytest.raises(ValueError, match=r"hold_days=1.5 is not a whole multiple of every_days"):
        Problem(drugs=(DrugSlots("wnt974", 1.0, hold_days=1.5),), days=28).validate()
    # (dt = 1 d, the former example, is now refused as too coarse for the RK4 step)
    raw = {
        "days": 21,
        "dt": 0.125,
        "train": {"patients": 4, "seed": 1},
        "heldout": {"patients": 4, "seed": 2},
        "drug": [{"name": "cb839", "every": "2 h", "round_to": "200 mg", "hold_if": "ANC < 1.5"}],
    }
    with pytest.raises(ConfigError, match=r"cb839: two doses start in the same step.*dt=0.125 d"):
        parse_experiment(raw)
    parse_experiment(raw | {"dt": 0.0625})  # one step per dose or more: accepted


def test_slot_rounding_in_a_unit_not_exact_in_binary_leaves_no_negative_or_phantom_doses():
    """0.3 mg units, 28 daily 1 mg doses over a 6 mg budget: every dose is a whole number of
    units (0 exactly when taken to nothing) and the total is the budget.  In mg the repair left
    doses of -1.1e-16 mg (refused by the NM-TRAN export after all compute) and 3e-14 mg."""
    from vcohort.dosing import to_nmtran

    d = DrugSlots("wnt974", 1.0, max_dose_mg=30.0, round_to_mg=0.3, budget_mg=6.0)
    pb = Problem(drugs=(d,), days=28)
    lay = layout(pb)
    rounded = round_clinical(pb, lay, np.full(lay.valid.shape, 1.0) * lay.valid)
    r = rounded.schedule.amount[0, lay.valid[0]]
    units = r / 0.3
    np.testing.assert_allclose(units, np.round(units), atol=1e-9)
    assert r.min() >= 0.0 and set(np.unique(r[r < 0.3])) <= {0.0}
    assert r.sum() == pytest.approx(6.0, abs=1e-9)
    assert (to_nmtran(rounded.schedule)["AMT"] >= 0).all()


def test_interval_rounding_keeps_a_daily_maximum_for_courses_given_more_than_once_a_day():
    # q12h: two doses a day, so the daily maximum caps each dose at half of it
    pb = Problem(
        drugs=(
            DrugSlots(
                "cb839",
                0.5,
                round_to_mg=200.0,
                max_daily_mg=1600.0,
                max_dose_mg=1000.0,
                intervals_days=(0.5,),
            ),
        ),  # fmt: skip
        days=4,
    )
    lay = layout(pb)
    amount = np.full(lay.schedule.amount.shape, 1000.0) * lay.valid
    for c in round_candidates(pb, lay, amount, 4):
        r = c.schedule.amount[0, lay.valid[0]]
        per_day = np.bincount(np.floor(lay.schedule.time[0, lay.valid[0]]).astype(int), weights=r)
        assert per_day.max() <= 1600.0, c.descriptions


def test_interval_rounding_recovers_a_regular_regimen():
    pb = Problem(
        drugs=(DrugSlots("pembrolizumab", 7.0, round_to_mg=100.0, intervals_days=(7, 14, 21, 42)),),
        days=126,
    )
    lay = layout(pb)
    a = np.zeros(lay.schedule.amount.shape)
    a[0, 0:18:3] = 190.0  # ~q3w 190 mg with small noise elsewhere
    a[0, 1] = 5.0
    rnd = round_clinical(pb, lay, a)
    r = rnd.schedule.amount[0, lay.valid[0]]
    assert np.count_nonzero(r) == 6 and set(r[r > 0]) == {200.0}
    assert "every 21 d" in rnd.descriptions["pembrolizumab"]


def test_rounding_candidates_are_regular_courses_within_the_limits_nearest_first():
    pembro = DrugSlots(
        "pembrolizumab", 7.0, round_to_mg=100.0, intervals_days=(7, 14, 21, 42), budget_mg=1200.0
    )
    wnt = DrugSlots("wnt974", 1.0, round_to_mg=5.0, budget_mg=150.0)
    pb = Problem(drugs=(pembro, wnt), days=126)
    lay = layout(pb)
    a = np.zeros(lay.schedule.amount.shape)
    a[0, 0:18:3] = 190.0
    a[1, :126] = 1.0
    cands = round_candidates(pb, lay, a, 4)
    assert len(cands) == 4
    np.testing.assert_array_equal(
        cands[0].schedule.amount, round_clinical(pb, lay, a).schedule.amount
    )
    seen = set()
    for c in cands:
        r = c.schedule.amount[0, lay.valid[0]]
        on = np.flatnonzero(r)
        assert len(set(r[on])) == 1 and len(set(np.diff(on))) <= 1  # one dose, one interval
        assert r.sum() <= 1200.0 and r.max() <= 400.0 and np.all(r % 100.0 == 0)
        # slot-wise wnt974 has one rounding: the same in every candidate
        np.testing.assert_array_equal(c.schedule.amount[1], cands[0].schedule.amount[1])
        seen.add(r.tobytes())
    assert len(seen) == 4  # four different pembrolizumab courses
    with pytest.raises(ValueError, match="k=0"):
        round_candidates(pb, lay, a, 0)
    # a course rounding to 0 mg and giving nothing at all are one candidate, not two
    tiny = np.where(lay.valid, 2.0, 0.0)  # pembrolizumab ~0: its nearest course is no dose
    got = [c.schedule.amount[0].tobytes() for c in round_candidates(pb, lay, tiny, 8)]
    assert len(set(got)) == len(got)


@pytest.mark.slow
def test_the_rounding_given_is_the_best_feasible_candidate_on_the_training_cohort(cohort8):
    from vcohort.optimize.experiment import choose_rounding

    lay = layout(SMALL)
    a = np.asarray(lay.schedule.amount) * 0.7
    chosen, table = choose_rounding(SMALL, lay, a, cohort8.subset(np.arange(4)), 3)
    assert len(table) == 3 and table["chosen"].sum() == 1
    ok = table[table["feasible_train"]]
    best = int(ok.loc[ok["objective_train"].idxmin(), "candidate"])
    assert bool(table.loc[best, "chosen"])
    assert best != 0  # in this setting an alternative beats the nearest rounding
    want = round_candidates(SMALL, lay, a, 3)[best].schedule.amount
    np.testing.assert_array_equal(chosen.schedule.amount, want)


# ------------------------------------------------------------------ gradients
@pytest.mark.slow
def test_gradients_of_every_objective_and_constraint_match_finite_differences():
    """Reverse-mode derivatives of all objective terms and constraint values w.r.t. the
    decision variables, against central differences along a random direction (float64).
    Tolerance 1e-4 relative: central differences with eps 1e-5 are accurate to ~1e-8 here;
    the bound leaves room for the smoothing nonlinearity, not for a wrong derivative."""
    from vcohort.objectives import objective_terms
    from vcohort.optimize.problem import make_loss

    pb = Problem(
        drugs=(
            DrugSlots("wnt974", 1.0, budget_mg=100.0, max_daily_mg=20.0, auc_budget=0.5),
            DrugSlots(
                "doxorubicin",
                7.0,
                infusion_days=1 / 24,
                max_dose_mg=150.0,
                auc_budget=5.0,
                initial_mg=120.0,
            ),
        ),
        days=21,
        assess_every=7,
        anc_grade4_max=0.1,
        precision="float64",
    )
    lay = layout(pb)
    c = make_cohort(3, seed=2, runin_days=0)
    _, plan = make_loss(pb, lay)
    from vcohort.simulate import cohort_fn

    f = cohort_fn(plan)
    grid = lay.schedule.step_grid(plan.dt, plan.n_steps)
    args = c.arrays(np.arange(3), plan.drugs, np.float64)

    def F(theta):
        amount = to_amount(lay, theta)
        out = f(*args, *grid.scatter(amount, jnp))
        terms = objective_terms(out, pb.days, assess_every=pb.assess_every, alpha=0.4)
        g = constraint_values(pb, lay, amount, out)
        return jnp.concatenate([jnp.stack(list(terms.values()))] + [v for v in g.values()])

    th = jnp.asarray(to_theta(lay, lay.schedule.amount)) + 0.3
    v = jnp.asarray(np.random.default_rng(0).standard_normal(th.shape))
    jv = jax.jit(jax.jacrev(F))(th)
    jv = jnp.tensordot(jv, v, axes=v.ndim)
    Fj = jax.jit(F)
    eps = 1e-5
    fd = (Fj(th + eps * v) - Fj(th - eps * v)) / (2 * eps)
    scale = jnp.maximum(jnp.abs(fd), 1e-3 * jnp.max(jnp.abs(fd)))
    rel = np.asarray(jnp.abs(jv - fd) / scale)
    assert np.all(np.isfinite(rel)) and rel.max() < 1e-4, rel
    # the check can fail: a deliberately wrong derivative (halved) is caught
    assert np.max(np.asarray(jnp.abs(0.5 * jv - fd) / scale)) > 1e-2


def test_a_patient_the_simulator_flags_makes_the_training_loss_non_finite():
    """A patient whose rate x dt is past RK4's stability bound (status 4 in `simulate`) had
    finite, wrong outputs, and the loss used them (0.059 where the patient was left out);
    such a patient now makes the iteration non-finite, as a NaN patient does."""
    from vcohort.model import CSC_IMMUNE
    from vcohort.optimize.problem import NoMultipliers, make_loss
    from vcohort.simulate import simulate

    pb = Problem(drugs=(DrugSlots("wnt974", 1.0, round_to_mg=5.0),), days=7, assess_every=7)
    lay = layout(pb)
    c = make_cohort(2, seed=5, runin_days=0)
    c.params["k_TGF"] = np.array([30.0, 14.3])  # patient 0: k_TGF x dt = 3.0 >= 2.785
    loss, plan = make_loss(pb, lay, soft=False)
    f = jax.jit(lambda th, a: loss(th, NoMultipliers(), 1.0, a))
    th = jnp.asarray(to_theta(lay, lay.schedule.amount))
    val, (_, _, obj) = f(th, c.arrays(np.array([0, 1]), plan.drugs, np.float64))
    assert np.isnan(float(val)) and np.isnan(float(obj))
    val, (_, _, obj) = f(th, c.arrays(np.array([1, 1]), plan.drugs, np.float64))
    assert np.isfinite(float(val)) and np.isfinite(float(obj))
    status = simulate(CSC_IMMUNE, c, lay.schedule, 7, save_every=7, progress=False).status
    assert status[0] != 0 and status[1] == 0  # the simulator's own verdict agrees


def test_failed_patients_flags_negative_states_and_unstable_rates():
    from vcohort.model import CSC_IMMUNE
    from vcohort.optimize.problem import _plan, failed_patients

    pb = Problem(drugs=(DrugSlots("wnt974", 1.0, round_to_mg=5.0),), days=7)
    plan = _plan(pb, layout(pb), CSC_IMMUNE, False, False)
    out = {"negative": {"lowest": jnp.array([0.0, -1e-9, -1e-3, np.nan, 0.0])}}
    p = {"k_TGF": jnp.array([14.3, 14.3, 14.3, 14.3, 30.0])}
    bad = np.asarray(failed_patients(CSC_IMMUNE, plan, p, out))
    # round-off negative: ok; beyond -1e-6: failed; NaN: left to the NaN itself; k_TGF x dt 3.0
    assert bad.tolist() == [False, False, True, False, True]


# ------------------------------------------------------------------ the loop
@pytest.mark.slow
def test_optimisation_improves_objective_and_enforces_limits(cohort8):
    """Dose limits hold exactly at every iterate (projection); an exposure (AUC) limit that
    the start violates ~2-fold is driven down by the augmented Lagrangian."""
    from dataclasses import replace

    from vcohort.drugs import get_drug

    cl = get_drug("wnt974").params.typical()["CL"]  # L/day
    auc0 = 10.0 * 28 / cl  # linear PK: AUC of 10 mg QD over 28 d (~ dose / CL)
    wnt = replace(SMALL.drugs[0], auc_budget=0.3 * auc0)  # measured start: AUC ~0.55 auc0
    pb = replace(SMALL, drugs=(wnt, SMALL.drugs[1]))
    r = optimize(pb, cohort8, iterations=10, progress=False, patience=50, mu=20.0, al_every=2)
    h = r.history
    assert h["g:auc:wnt974"].iloc[0] > 0.5  # the start violates the exposure limit
    assert h["g:auc:wnt974"].iloc[-1] < 0.5 * h["g:auc:wnt974"].iloc[0]
    lay = layout(pb)
    assert np.all(r.amount <= lay.max_dose + 1e-9) and np.all(r.amount >= 0)
    assert r.amount[0].sum() <= 150.0 + 1e-6  # the wnt974 budget, exactly
    # without the exposure limit the objective improves on the standard start
    r2 = optimize(SMALL, cohort8, iterations=6, progress=False, patience=50)
    assert r2.history["objective"].iloc[-1] < r2.history["objective"].iloc[0]
    # it ran to its limit, and the schedule returned is that of its best iteration
    assert r2.stop == "iterations" and "iteration limit (6)" in r2.convergence()
    best = r2.history.loc[r2.best_iteration, "objective"]
    assert best == r2.history["objective"].min()


def test_multipliers_ignore_a_step_with_non_finite_values():
    from vcohort.optimize.loop import update_multipliers

    lam = {"auc": jnp.array([0.5])}
    g = {"auc": jnp.array([np.nan])}  # a failed patient in the batch
    got, mu, prev = update_multipliers(lam, g, 10.0, np.nan, 0.2, False, 1e-3)
    assert float(got["auc"][0]) == 0.5 and (mu, prev) == (10.0, 0.2)
    # a finite step moves them: lambda + mu g, and mu doubles when the violation barely fell
    got, mu, prev = update_multipliers(lam, {"auc": jnp.array([0.15])}, 10.0, 0.15, 0.2, True, 1e-3)
    assert float(got["auc"][0]) == pytest.approx(2.0) and (mu, prev) == (20.0, 0.15)
    got, mu, _ = update_multipliers(lam, {"auc": jnp.array([-1.0])}, 10.0, 0.0, 0.2, True, 1e-3)
    assert float(got["auc"][0]) == 0.0 and mu == 10.0  # met: lambda floored at 0, mu kept


def test_convergence_says_how_the_run_ended():
    from vcohort.optimize.loop import OptResult

    def result(n, best, stop):
        return OptResult(SMALL, layout(SMALL), np.zeros(0), np.zeros(0), None, {}, n, 0.0, False,
                         best, stop)  # fmt: skip

    assert (
        "no better schedule in the last 20 (best at iteration 9)"
        in result(30, 9, "patience").convergence()
    )
    assert "still improving" in result(80, 79, "iterations").convergence()
    assert "still improving" not in result(80, 30, "iterations").convergence()
    assert "No iteration of 5" in result(5, -1, "iterations").convergence()
    # no improvement (best at the start), or too short a run to tell: not "still improving"
    assert "still improving" not in result(2, 0, "iterations").convergence()
    assert "still improving" not in result(2, 1, "iterations").convergence()
    assert "still improving" not in result(10, 0, "iterations").convergence()


@pytest.mark.slow
def test_checkpoint_resume_reproduces_uninterrupted_run(cohort8, tmp_path):
    full = optimize(SMALL, cohort8, iterations=6, batch_size=4, seed=3, progress=False, patience=50)
    ck = tmp_path / "ck.npz"
    optimize(
        SMALL,
        cohort8,
        iterations=3,
        batch_size=4,
        seed=3,
        progress=False,
        patience=50,
        checkpoint=ck,
        checkpoint_every=3,
    )
    with pytest.raises(FileExistsError, match="resume"):
        optimize(SMALL, cohort8, iterations=6, batch_size=4, seed=3, progress=False, checkpoint=ck)
    resumed = optimize(
        SMALL,
        cohort8,
        iterations=6,
        batch_size=4,
        seed=3,
        progress=False,
        patience=50,
        checkpoint=ck,
        resume=True,
    )
    np.testing.assert_allclose(resumed.amount, full.amount, rtol=1e-12)
    np.testing.assert_allclose(
        resumed.history["objective"].to_numpy(), full.history["objective"].to_numpy(), rtol=1e-12
    )
    # patience counts across the interruption: the resumed run stops where the full one does
    kw = dict(iterations=10, batch_size=4, seed=3, progress=False, patience=3)
    full = optimize(SMALL, cohort8, **kw)
    ck2 = tmp_path / "ck2.npz"
    optimize(SMALL, cohort8, **(kw | dict(iterations=2, checkpoint=ck2, checkpoint_every=2)))
    resumed = optimize(SMALL, cohort8, **kw, checkpoint=ck2, resume=True)
    assert full.stop == "patience" and 2 < len(full.history) < 10
    assert (resumed.stop, len(resumed.history)) == (full.stop, len(full.history))
    assert resumed.best_iteration == full.best_iteration
    # a run that had stopped by patience (its checkpoint kept, as when the CLI fails after the
    # loop) resumes to the same stop: it took further steps, and could find a new best
    ck4 = tmp_path / "ck4.npz"
    stopped = optimize(SMALL, cohort8, **kw, checkpoint=ck4, checkpoint_every=100)
    again = optimize(SMALL, cohort8, **kw, checkpoint=ck4, resume=True)
    assert (again.stop, len(again.history)) == ("patience", len(stopped.history))
    np.testing.assert_array_equal(again.amount, stopped.amount)
    # the stopping rule and the iterations are the checkpoint's: another is refused
    # ... and the error names what changed
    with pytest.raises(ValueError, match=r"optimiser settings \(patience: 3 -> 4\)"):
        optimize(SMALL, cohort8, **(kw | {"patience": 4}), checkpoint=ck4, resume=True)
    with pytest.raises(ValueError, match="iterations=2 is fewer than the"):
        optimize(SMALL, cohort8, **(kw | {"iterations": 2}), checkpoint=ck4, resume=True)
    # a learning-rate schedule resumes where it stopped (its step count is optimiser state)
    from vcohort.optimize.config import optax_key, optax_of
    from vcohort.optimize.loop import _load_checkpoint

    o = dict(name="adam", learning_rate=0.2, schedule="cosine", iterations=6, final_lr_fraction=0.1)
    kw = dict(batch_size=4, seed=3, progress=False, patience=50)
    kw |= dict(optimizer=optax_of(o), optimizer_key=optax_key(o))
    full = optimize(SMALL, cohort8, iterations=6, **kw)
    ck3 = tmp_path / "ck3.npz"
    optimize(SMALL, cohort8, iterations=3, checkpoint=ck3, checkpoint_every=3, **kw)
    resumed = optimize(SMALL, cohort8, iterations=6, checkpoint=ck3, resume=True, **kw)
    np.testing.assert_allclose(resumed.amount, full.amount, rtol=1e-12)
    # the history records the rate each step used: a cosine from 0.2 at iteration 0 to 0.02 at 5
    want = [0.2 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * k / 5))) for k in range(6)]
    for run in (full, resumed):
        np.testing.assert_allclose(run.history["learning_rate"], want, rtol=1e-12)
    # resuming with other settings is refused, before any optimiser state is read (a constant
    # schedule's state has one array fewer: reading it first crashed)
    for change in ({"schedule": "constant"}, {"iterations": 8}, {"learning_rate": 0.1}):
        other = o | change
        alt = dict(optimizer=optax_of(other), optimizer_key=optax_key(other))
        with pytest.raises(ValueError, match="optimiser settings"):
            optimize(SMALL, cohort8, iterations=6, resume=True, checkpoint=ck3, **(kw | alt))
    # ... and so is resuming on other patients of the same number (another training seed)
    with pytest.raises(ValueError, match=r"different problem, cohort.*\(cohort_seed: 5 -> 6\)"):
        other = make_cohort(8, seed=6, runin_days=0)
        optimize(SMALL, other, iterations=6, resume=True, checkpoint=ck3, **kw)
    with pytest.raises(ValueError, match="another optimiser's state"):
        _load_checkpoint(ck3, optax_of(o | {"name": "sgd"}).init(np.zeros(3)))
    with pytest.raises(ValueError, match="needs optimizer_key"):  # nothing to check against
        optimize(SMALL, cohort8, checkpoint=tmp_path / "x.npz", **(kw | {"optimizer_key": None}))
    other = Problem(drugs=SMALL.drugs, days=21, precision="float64")
    with pytest.raises(ValueError, match=r"different problem.*problem\.days: \d+ -> 21"):
        optimize(other, cohort8, iterations=6, checkpoint=ck, resume=True, progress=False)


@pytest.mark.slow
def test_personalised_mode_gives_one_schedule_per_patient(cohort8):
    c = cohort8.subset(np.arange(3))
    r = optimize(SMALL, c, personalised=True, iterations=2, progress=False)
    assert r.amount.shape == (3,) + layout(SMALL).schedule.amount.shape
    assert r.schedule(1).amount.shape == layout(SMALL).schedule.amount.shape
    bad = Problem(drugs=SMALL.drugs, days=28, weights={"cvar": 1.0})
    with pytest.raises(ValueError, match="couples patients"):
        optimize(bad, c, personalised=True, iterations=1, progress=False)


@pytest.mark.slow
def test_es_baseline_uses_exactly_its_simulation_budget(cohort8, monkeypatch):
    """Cohort simulations counted as they run (a host callback inside the jitted loss), and
    the schedule returned is the one whose objective the history reports as best."""
    import vcohort.optimize.baseline as base
    from vcohort.optimize.problem import NoMultipliers

    runs = []
    real = base.make_loss

    def counted(*a, **k):
        loss, plan = real(*a, **k)

        def wrapped(*args):
            jax.debug.callback(lambda: runs.append(1))
            return loss(*args)

        return wrapped, plan

    monkeypatch.setattr(base, "make_loss", counted)
    r = evolution_strategy(SMALL, cohort8, simulations=4, batch_size=4, seed=1)
    assert len(runs) == 4
    lay = layout(SMALL)
    loss, plan = real(SMALL, lay, soft=False)
    idx = np.sort(np.random.default_rng(1).choice(8, 4, replace=False))  # the ES's batch
    args = cohort8.arrays(idx, plan.drugs, np.float64)
    _, (_, _, obj) = loss(jnp.asarray(r.theta), NoMultipliers(), 1.0, args)
    assert float(obj) == pytest.approx(r.history["objective"].iloc[-1], rel=1e-9)


def test_loss_devices_rule():
    """Accelerators: every one that divides the batch (padding would bias the cohort means);
    CPUs: one device; explicit devices must divide the batch (checked before compute)."""
    from types import SimpleNamespace

    from vcohort.optimize.loop import loss_devices

    gpus = [SimpleNamespace(platform="gpu", id=i) for i in range(8)]
    assert len(loss_devices(None, 1000, gpus)) == 8
    assert len(loss_devices(None, 999, gpus)) == 3  # 999 = 3^3 x 37
    assert len(loss_devices(None, 7, gpus)) == 7
    assert len(loss_devices(None, 1024, gpus[:3])) == 2
    cpus = [SimpleNamespace(platform="cpu", id=i) for i in range(4)]
    assert loss_devices(None, 1000, cpus) == cpus[:1]
    assert loss_devices(gpus[:4], 12) == gpus[:4]
    with pytest.raises(ValueError, match="batch of 10 patients does not split evenly over 4"):
        loss_devices(gpus[:4], 10)
    with pytest.raises(ValueError, match=r"devices=\[\] is empty"):
        loss_devices([], 10)


# ------------------------------------------------------------------ CLI
@pytest.mark.slow
def test_cli_optimize_writes_every_output(tmp_path, monkeypatch, capsys):
    import vcohort.optimize.experiment as opt_exp
    from vcohort.cli import main

    exp = tmp_path / "opt.toml"
    exp.write_text(
        """
title = "tiny"
days = 28
assess_every = 14
precision = "float64"
[train]
patients = 6
seed = 1
[heldout]
patients = 6
seed = 2
[optimizer]
iterations = 2
batch_size = 3
personalised_patients = 2
[[drug]]
name = "wnt974"
every = "1 d"
round_to = "5 mg"
budget = "150 mg"
[[drug]]
name = "pembrolizumab"
every = "7 d"
over = "30 min"
round_to = "100 mg"
intervals = ["7 d", "14 d", "21 d"]
"""
    )
    # --out under a folder that does not exist yet (the checkpoint beside it crashed there)
    out = tmp_path / "new" / "run"
    # a file the user puts into --out while the run goes on is kept: the run is refused at the
    # end (it replaced the folder, as if --overwrite had been given) and can be resumed
    choose = opt_exp.choose_rounding

    def user_writes(*a, **k):
        out.mkdir(exist_ok=True)
        (out / "notes.txt").write_text("mine")
        return choose(*a, **k)

    monkeypatch.setattr(opt_exp, "choose_rounding", user_writes)
    assert main(["optimize", str(exp), "--out", str(out), "--no-progress"]) == 2
    assert "is not empty and holds no manifest.json" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    monkeypatch.setattr(opt_exp, "choose_rounding", choose)
    (out / "notes.txt").unlink()
    assert main(["optimize", str(exp), "--out", str(out), "--no-progress", "--resume"]) == 0
    assert not list(out.parent.glob(".run.checkpoint*"))  # removed once the run is written
    names = [
        "history.csv",
        "baseline_history.csv",
        "schedule_slots.csv",
        "schedule_nmtran.csv",
        "regimens.json",
        "evaluation_heldout.csv",
        "evaluation_train.csv",
        "manifest.json",
        "report.md",
        "figures/schedule.png",
        "figures/history.png",
        "personalised.csv",
        "rounding_candidates.csv",
        "columns.csv",
    ]
    for n in names:
        assert (out / n).stat().st_size > 0, n
    import pandas as pd

    cols = pd.read_csv(out / "columns.csv", keep_default_na=False)
    assert (cols["meaning"] != "").all(), cols[cols["meaning"] == ""].values.tolist()

    nm = pd.read_csv(out / "schedule_nmtran.csv")  # the doses given: slots rounded to 0 are none
    assert len(nm) and (nm["AMT"] > 0).all()
    ev = pd.read_csv(out / "evaluation_heldout.csv")
    assert {
        "untreated",
        "standard combination",
        "optimised (rounded)",
        "ES baseline (rounded)",
    } <= set(ev["schedule"])
    assert bool(ev.set_index("schedule").loc["optimised (rounded)", "feasible"])
    # grade-4 neutropenia with its exact upper bound (6 held-out patients: wide)
    from vcohort.endpoints import clopper_pearson

    for _, r in ev.iterrows():
        k = round(r["grade4_neutropenia"] * 6)
        assert r["grade4_neutropenia_ci_high"] == pytest.approx(clopper_pearson(k, 6)[1])
    assert json.loads((out / "manifest.json").read_text())["simulations"] == 2
    report = (out / "report.md").read_text()
    assert "2 value-and-gradient evaluations (mini-batch of 3)" in report  # 3 of 6 patients
    pers = pd.read_csv(out / "personalised.csv").set_index("mode")
    assert set(pers.index) == {"population", "personalised"}
    assert np.isfinite(pers["objective"]).all()
    # an existing folder is never overwritten without --overwrite
    capsys.readouterr()
    assert main(["optimize", str(exp), "--out", str(out), "--no-progress"]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    # a finished run has nothing to resume, and is told so (not the generic existing-folder error)
    assert main(["optimize", str(exp), "--out", str(out), "--no-progress", "--resume"]) == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["simulations"] == 2  # untouched


def test_evaluation_says_nan_where_nothing_was_measured():
    """No assessment within the horizon: ORR NaN (was 0, as if no patient responded); one
    patient: no paired standard error (was 0.0), except the reference's own (exactly 0)."""
    from vcohort.optimize.evaluate import evaluate, standard_schedules

    pb = Problem(drugs=(DrugSlots("wnt974", 1.0, round_to_mg=5.0),), days=7, assess_every=42)
    c = make_cohort(1, seed=5, runin_days=0)
    ev = evaluate(pb, c, standard_schedules(pb), reference="untreated").set_index("schedule")
    assert ev["orr"].isna().all()
    assert ev.loc["untreated", "diff_se"] == 0.0
    assert np.isnan(ev.loc["standard wnt974", "diff_se"])
    # an assessment on the horizon's last day: the ORR is evaluable
    pb7 = Problem(drugs=pb.drugs, days=7, assess_every=7)
    ev7 = evaluate(pb7, c, standard_schedules(pb7), reference="untreated")
    assert np.isfinite(ev7["orr"]).all()


def test_personalised_table_reports_each_mode_s_worst_limit_and_warns(monkeypatch, capsys):
    """personalised.csv compared objectives of schedules whether or not they met the per-patient
    limits; now each mode's worst patient's value of each limit and ``feasible`` are in it, and
    an infeasible personalised optimum is warned about."""
    import vcohort.optimize.loop as loop
    from vcohort.optimize.config import Experiment
    from vcohort.optimize.experiment import _personalised
    from vcohort.optimize.loop import OptResult

    # an AUC budget far below any dose of wnt974 in 7 days; the population schedule gives none
    pb = Problem(drugs=(DrugSlots("wnt974", 1.0, round_to_mg=5.0, auc_budget=1e-6),), days=7)
    lay = layout(pb)
    c = make_cohort(2, seed=5, runin_days=0)
    o = dict(name="adam", learning_rate=0.1, schedule="constant", iterations=1, seed=0,
             al_every=1, mu=10.0, patience=5, final_lr_fraction=0.1)  # fmt: skip
    exp = Experiment("t", pb, {"patients": 2}, {"patients": 2}, o)
    full = np.full((2, lay.n_vars), 3.0)  # the stand-in personalised optimum: near max_dose

    def fake(problem, cohort, **kw):
        assert kw["personalised"]
        return OptResult(problem, lay, full, None, None, {}, 1, 0.0, True)

    monkeypatch.setattr(loop, "optimize", fake)
    pop = OptResult(pb, lay, np.full(lay.n_vars, -30.0), None, None, {}, 1, 0.0)  # ~0 mg
    t = _personalised(exp, c, pop, False).set_index("mode")
    assert t.loc["population", "worst_g:auc:wnt974"] <= 0 and t.loc["population", "feasible"]
    assert t.loc["personalised", "worst_g:auc:wnt974"] > 0
    assert not t.loc["personalised", "feasible"]
    err = capsys.readouterr().err
    assert "warning: the personalised schedules do not meet every per-patient limit" in err
    assert "worst_g:auc:wnt974 = " in err
    from vcohort.columns import describe  # the data dictionary knows the new columns

    assert all(describe(col)[1] for col in t.reset_index().columns)


def test_feasibility_allows_the_round_off_of_the_run_s_precision():
    """A float32 run's amounts are ~1e-7 (relative) off (a budget was measured 1.3e-7 over):
    on the limit, not over it; float64 keeps its 1e-9; a real excess is infeasible in both."""
    from vcohort.optimize.evaluate import feasible

    g = {"budget:wnt974": 1.3e-7, "max_dose:wnt974": -0.2}
    assert feasible(g, "float32") and not feasible(g, "float64")
    assert not feasible({"budget:wnt974": 1e-3}, "float32")
    assert feasible({"budget:wnt974": 0.0}, "float64")


def test_fingerprint_changes_names_the_settings_that_differ():
    from vcohort.optimize.loop import fingerprint_changes

    a = {"problem": {"days": 42, "drugs": [{"drug": "x", "max": 1}]}, "seed": 0, "patients": "ab"}
    b = {"problem": {"days": 21, "drugs": [{"drug": "x", "max": 2}]}, "seed": 0, "patients": "cd"}
    a, b = json.dumps(a), json.dumps(b)
    msg = fingerprint_changes(a, b)
    want = (
        "training patients (their ids) differ; problem.days: 42 -> 21; problem.drugs[0].max: 1 -> 2"
    )
    assert msg == want
    assert "seed" not in msg  # unchanged settings are not listed
    many = json.dumps({f"k{i}": i for i in range(7)})
    assert fingerprint_changes(json.dumps({}), many).endswith("; and 3 more")
    assert fingerprint_changes(a, a) == "no setting differs in a way that can be named"
    assert fingerprint_changes("not json", a) == "its fingerprint cannot be read"


def test_patients_failing_at_every_schedule_are_left_out_not_sinking_the_run(cohort8):
    """A drawn rate x dt past RK4's stability bound, or a failed run-in (NaN day-0 state), fails
    a patient at every schedule; in training one of them made every full-batch step non-finite
    ("no iteration had a finite objective").  They are left out, named in a warning and in the
    result, and the run optimises the others exactly as a cohort without them."""
    import dataclasses

    from vcohort.model import CSC_IMMUNE
    from vcohort.optimize.loop import failing_patients

    c = cohort8.subset(np.arange(5))
    ktgf = np.array(c.params["k_TGF"], dtype=np.float64)
    ktgf[1] = 3.0 / SMALL.dt  # rate x dt = 3 > 2.785
    y0 = {k: np.array(v, dtype=np.float64) for k, v in c.y0.items()}
    y0["TGFb"][3] = np.nan  # as `run_in` leaves a patient whose run-in failed
    bad = dataclasses.replace(c, params={**c.params, "k_TGF": ktgf}, y0=y0)
    ids = [int(i) for i in c.patient_id]
    why = failing_patients(CSC_IMMUNE, bad, SMALL.dt, SMALL.drug_names)
    assert set(why) == {ids[1], ids[3]}
    assert "stability bound" in why[ids[1]] and "run-in failed" in why[ids[3]]
    kw = dict(iterations=3, progress=False, patience=50)
    with pytest.warns(UserWarning, match=r"2 of 5 training patients left out .*patient_id"):
        r = optimize(SMALL, bad, **kw)
    assert r.excluded == why and r.best_iteration >= 0
    assert r.history["finite"].all()
    alone = optimize(SMALL, c.subset(np.array([0, 2, 4])), **kw)  # the same without them
    np.testing.assert_allclose(r.amount, alone.amount, rtol=1e-12)
    np.testing.assert_allclose(r.history["objective"], alone.history["objective"], rtol=1e-12)
    assert alone.excluded == {}
    everyone = dataclasses.replace(bad, y0={k: np.full(5, np.nan) for k in y0})
    with pytest.raises(ValueError, match="every training patient .5. fails whatever the doses"):
        optimize(SMALL, everyone, **kw)


def test_a_patient_failing_at_the_starting_schedule_is_left_out_and_the_run_restarts(
    cohort8, tmp_path
):
    """Full batches: a patient who fails at the starting schedule (here a negative day-0 state,
    status 'negative') made the first step non-finite, and with it every later one (no update
    is taken); the run now starts again without that patient, says so, and resumes alike."""
    import dataclasses

    c = cohort8.subset(np.arange(4))
    y0 = {k: np.array(v, dtype=np.float64) for k, v in c.y0.items()}
    y0["D"][2] = -0.5 * np.abs(y0["D"]).max()  # beyond round-off
    bad = dataclasses.replace(c, y0=y0)
    pid = int(c.patient_id[2])
    kw = dict(iterations=3, progress=False, patience=50)
    with pytest.warns(UserWarning, match="they fail at the starting schedule"):
        r = optimize(SMALL, bad, **kw)
    assert list(r.excluded) == [pid] and "negative state" in r.excluded[pid]
    assert r.history["finite"].all() and len(r.history) == 3
    alone = optimize(SMALL, c.subset(np.array([0, 1, 3])), **kw)
    np.testing.assert_allclose(r.amount, alone.amount, rtol=1e-12)
    # checkpointed and resumed: the checkpoint names the patient left out
    ck = tmp_path / "ck.npz"
    with pytest.warns(UserWarning):
        optimize(SMALL, bad, **(kw | {"iterations": 2}), checkpoint=ck, checkpoint_every=2)
    with pytest.warns(UserWarning, match="the interrupted run left them out"):
        again = optimize(SMALL, bad, **kw, checkpoint=ck, resume=True)
    np.testing.assert_allclose(again.amount, r.amount, rtol=1e-12)
    assert again.excluded == r.excluded


def test_personalised_mode_is_skipped_not_fatal_when_no_patient_is_left(cohort8):
    """After the population run, a personalised run whose patients all fail raised and lost
    every result; it is skipped with a warning and the population results stand."""
    import dataclasses

    from vcohort.optimize.experiment import _personalised
    from vcohort.optimize.loop import NoPatientsLeft

    exp = parse_experiment(_toml(optimizer={"personalised_patients": 2, "iterations": 2}))
    c = cohort8.subset(np.arange(2))
    dead = dataclasses.replace(c, y0={k: np.full(2, np.nan) for k in c.y0})
    with pytest.raises(NoPatientsLeft, match="every training patient .2. fails"):
        optimize(exp.problem, dead, personalised=True, iterations=1, progress=False)
    with pytest.warns(UserWarning, match="personalised mode skipped: every training patient"):
        assert _personalised(exp, dead, None, False) is None

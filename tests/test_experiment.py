import copy
import dataclasses
from pathlib import Path

import pytest

from vcohort.config import ConfigError
from vcohort.experiment import experiment_from_dict, load_experiment

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

GOOD = {
    "title": "t",
    "reference_arm": "control",
    "population": {"preset": "default", "size": 10, "seed": 1},
    "simulation": {"horizon_days": 120},
    "assessment": {"first_day": 42, "every_days": 42, "confirm_days": 28},
    "arms": [
        {"name": "control", "regimens": []},
        {
            "name": "pembro",
            "regimens": [
                "pembrolizumab 2 mg/kg every 21 d over 30 min",
                {"drug": "cb839", "dose": "800 mg", "every": "bid", "start": "7 d"},
            ],
        },
        {
            "name": "seq",
            "sequencing": "induction-maintenance",
            "induction": ["doxorubicin 60 mg/m2 every 21 d"],
            "induction_days": 63,
            "maintenance": [
                {"drug": "pembrolizumab", "dose": "200 mg", "every": "3 w", "until": 42}
            ],
        },
    ],
}


def test_a_good_experiment_validates_with_defaults_filled():
    e = experiment_from_dict(copy.deepcopy(GOOD))
    assert [a.name for a in e.arms] == ["control", "pembro", "seq"]
    assert e.arms[0].regimens == () and e.reference_arm == "control"
    assert e.dt == 0.1 and e.precision == "float64" and e.runin_days == 240
    assert e.engine == "xla" and e.config["simulation"]["engine"] == "xla"
    assert e.endpoint_options["confirm_days"] == 28 and e.endpoint_options["assess_first"] == 42
    cb = e.arms[1].regimens[1]
    assert (cb.drug, cb.dose, cb.interval_days, cb.start_day) == ("cb839", 800.0, 0.5, 7.0)
    assert e.config["population"]["size"] == 10 and e.config["arms"][2]["name"] == "seq"


def test_an_arm_s_description_is_kept():
    """An arm's ``description`` was accepted and then replaced by its regimens in words; it is
    kept in the config (manifest, report), and an arm without one keeps its regimens there."""
    d = copy.deepcopy(GOOD)
    d["arms"][1]["description"] = "PD-1 blockade with glutaminase inhibition"
    e = experiment_from_dict(d)
    assert e.config["arms"][1]["description"] == "PD-1 blockade with glutaminase inhibition"
    assert e.config["arms"][0]["description"] == "untreated"
    assert e.config["arms"][2]["description"] == e.arms[2].describe()


def test_induction_then_maintenance_timing():
    e = experiment_from_dict(copy.deepcopy(GOOD))
    dox, pem = e.arms[2].regimens
    # induction is cut at induction_days; maintenance counts from the end of induction
    assert dox.dose_times(120).tolist() == [0.0, 21.0, 42.0]
    assert (pem.start_day, pem.until_day) == (63.0, 105.0)
    assert pem.dose_times(120).tolist() == [63.0, 84.0]


def test_every_bad_field_is_reported_at_once_before_compute():
    bad = copy.deepcopy(GOOD)
    bad["colour"] = "red"
    bad["population"]["size"] = 0
    bad["population"]["seed"] = "one"
    bad["simulation"]["dt"] = 0.3
    bad["simulation"]["precision"] = "float16"
    bad["simulation"]["engine"] = "cuda"
    bad["assessment"]["confirm_days"] = -28
    bad["arms"][1]["regimens"][0] = "aspirin 100 mg qd"
    bad["arms"][1]["regimens"][1]["start"] = "-7 d"
    bad["arms"][1]["regimens"][1]["frequency"] = "daily"
    bad["arms"][2]["induction_days"] = -5
    bad["arms"].append({"name": "pembro", "regimens": "pembrolizumab"})
    bad["reference_arm"] = "placebo"
    with pytest.raises(ConfigError) as e:
        experiment_from_dict(bad, source="bad.toml")
    text = str(e.value)
    expected = [
        "colour: unknown key",
        "population.size: 0 must be >= 1",
        "population.seed: expected an integer, got str 'one'",
        "simulation.dt: 0.3: 1/dt must be a whole number",
        "simulation.precision: 'float16' is not allowed",
        "simulation.engine: 'cuda' is not allowed",
        "assessment.confirm_days: -28 must be >= 0",
        "arms[1].regimens[0]: ",
        "not in the catalogue",
        "arms[1].regimens[1]: cb839: start_day=-7.0 must be >= 0",
        "arms[1].regimens[1].frequency: unknown key",
        "arms[2].induction_days: -5 must be >= 1",
        "arms[3].regimens: expected a list",
        "arms[3].name: 'pembro' is used by another arm",
        "reference_arm: 'placebo' is not an arm",
    ]
    for msg in expected:
        assert msg in text, msg
    assert text.startswith("bad.toml:")


def test_slips_in_names_get_a_did_you_mean():
    """A mistyped key, drug or reference arm names what was likely meant (only the closest
    spellings: 'simulaton' suggests 'simulation', not also 'population')."""
    bad = copy.deepcopy(GOOD)
    bad["simulaton"] = bad.pop("simulation")
    bad["arms"][1]["regimens"][0] = "pembrolizumb 200 mg q3w"
    bad["reference_arm"] = GOOD["arms"][0]["name"].upper()
    with pytest.raises(ConfigError) as e:
        experiment_from_dict(bad, source="bad.toml")
    text = str(e.value)
    assert "simulaton: unknown key (did you mean 'simulation'?); allowed:" in text
    assert "'pembrolizumb' is not in the catalogue (did you mean 'pembrolizumab'?)" in text
    ref = GOOD["arms"][0]["name"]
    assert f"reference_arm: {ref.upper()!r} is not an arm (did you mean {ref!r}?)" in text
    bad["reference_arm"] = "zzzz"  # nothing close: no guess
    with pytest.raises(ConfigError, match=r"'zzzz' is not an arm; arms:"):
        experiment_from_dict(bad, source="bad.toml")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("arms"), "arms: required key is missing"),
        (lambda d: d["population"].pop("size"), "population.size: required key is missing"),
        (lambda d: d["population"].update(preset="martian"), "neither a preset"),
        (lambda d: d["population"].update(file="x.toml"), "give either preset or file"),
        (lambda d: d["simulation"].update(horizon_days=30), "after the horizon"),
        (lambda d: d.update(calibration={"target_orr": 0.2}), "calibration.target_orr: unknown"),
        (lambda d: d.update(calibration={"pool": 5000, "orr": 0.2}), "both orr and arm"),
        (lambda d: d.update(calibration={"pool": 5000, "preset": "kn-1"}), "calibration.preset"),
        (lambda d: d.update(calibration={"pool": 2, "preset": "keynote-002"}), "must exceed"),
        # fit_rule needs two patients per diameter bin: refused after the pool was simulated
        (
            lambda d: d.update(calibration={"pool": 16, "preset": "keynote-002"}),
            r"calibration.pool: 16: fitting a rule needs a pool of >= 20",
        ),
        # the reference arm is checked when the file is read, not after the pool is simulated
        (
            lambda d: d.update(calibration={"pool": 5000, "orr": 0.2, "arm": "pembrolizumb 2 mg"}),
            "calibration.arm: .*pembrolizumb",
        ),
        (lambda d: d["population"].update(seed=2**32), "population.seed"),  # PRNGKey: 32 bits
        (lambda d: d.update(assessment={"sd_min_days": -1}), "assessment.sd_min_days"),
        (
            lambda d: d.update(assessment={"days": [14, 28]}),
            r"sd_min_days: 42: no assessment on or after day 42 \(the last is day 28\)",
        ),
        (lambda d: d["arms"][0].update(name="a b"), "it names files"),
        # was accepted and then dropped
        (
            lambda d: d["arms"][0].update(description=5),
            r"arms\[0\]\.description: expected a string, got int 5",
        ),
        (lambda d: d["arms"][0].update(induction=[]), "only for sequencing"),
        (lambda d: d["arms"][1]["regimens"][1].update(dose="5 mg/dl"), "unknown dose unit"),
        # a TOML number was read as mg ('dose = 2' meant for 2 mg/kg: a 100-fold underdose)
        (
            lambda d: d["arms"][1]["regimens"][1].update(dose=2),
            r"arms\[1\].regimens\[1\].dose: dose=2: give its unit",
        ),
        (lambda d: d["arms"][1]["regimens"][1].update(count=True), "expected an integer"),
        (lambda d: d["assessment"].update(days=[0, 42]), "non-empty list of whole days"),
        # confirmation needs a second look >= confirm_days after a response: 84 d leaves none
        (
            lambda d: d["simulation"].update(horizon_days=83),
            r"no response could be confirmed .* lengthen the horizon to >= 84 d",
        ),
        (
            lambda d: d.update(assessment={"days": [42, 56], "confirm_days": 28}),
            "add an assessment day >= 70",
        ),
        # accepted, then a MemoryError or a hang after the run-in
        (
            lambda d: d["simulation"].update(horizon_days=10**9),
            r"simulation.horizon_days: 1000000000 must be <= 36500",
        ),
        (
            lambda d: d["simulation"].update(runin_days=10**9),
            r"simulation.runin_days: 1000000000 must be <= 36500",
        ),
        (lambda d: d["simulation"].update(dt=1e-9), r"simulation.dt: 1e-09 must be >= 0.0001"),
        # k_TGF (14.3/day) x 0.2 = 2.86, past RK4's bound: the run-in's TGF-β reached -1e56
        (
            lambda d: d["simulation"].update(dt=0.2),
            r"simulation.dt: dt 0.2: the typical k_TGF .* unstable .*use dt = 0.125 or smaller",
        ),
        (
            lambda d: d["population"].update(size=10**12),
            r"population.size: .* must be <= 100000000",
        ),
        (
            lambda d: d.update(calibration={"preset": "keynote-006", "pool": 10**12}),
            r"calibration.pool: .* must be <= 100000000",
        ),
    ],
)
def test_single_bad_fields(change, message):
    d = copy.deepcopy(GOOD)
    change(d)
    with pytest.raises(ValueError, match=message):
        experiment_from_dict(d)


def test_a_folder_given_for_an_experiment_file_is_called_a_folder(tmp_path):
    with pytest.raises(ValueError, match=r"experiment file '.*' is not a file \(a folder\?\)"):
        load_experiment(tmp_path)
    with pytest.raises(ValueError, match=r"experiment file '.*nope.toml' does not exist"):
        load_experiment(tmp_path / "nope.toml")


@pytest.mark.parametrize("horizon", [0, -5, 1.5, "120 d", True])
def test_a_bad_horizon_is_its_own_error_only(horizon):
    """A bad horizon_days is reported once, as itself; it is not also taken for a 1-day horizon
    that puts the first assessment 'after the horizon' (a false second error)."""
    d = copy.deepcopy(GOOD)
    d["simulation"]["horizon_days"] = horizon
    with pytest.raises(ConfigError) as e:
        experiment_from_dict(d)
    assert len(e.value.errors) == 1 and e.value.errors[0].startswith("simulation.horizon_days:")


def test_a_calibration_rule_file_is_read_and_not_applied_to_its_own_pool(tmp_path):
    import json

    from vcohort.calibrate import CalibrationRule, Targets

    d = copy.deepcopy(GOOD)
    (tmp_path / "junk.json").write_text('{"arm": 1}')
    d["calibration"] = {"pool": 5000, "rule": str(tmp_path / "junk.json")}
    with pytest.raises(ValueError, match="calibration.rule: .*not a calibration rule") as e:
        experiment_from_dict(d)
    assert "1 invalid field" in str(e.value)  # reported once, not again by the in-sample check
    rule = CalibrationRule(
        "pembrolizumab 2 mg/kg q3w", 210, Targets(0.21, 0.34), (0.2, 0.01, 0.14, 0.65),
        (1, 1, 1, 1), (4.0,), (1.0, 1.0), 1.0, 0.5, assessment={"confirm_days": 28},
        fit={"pool_seed": d["population"]["seed"], "pool_ids": [0, 4999]},
    )  # fmt: skip
    rule.save(tmp_path / "rule.json")
    d["calibration"]["rule"] = str(tmp_path / "rule.json")
    with pytest.raises(ValueError, match="calibration.rule: .*in-sample.*population.seed"):
        experiment_from_dict(d)
    d["population"]["seed"] += 1  # another seed: other patients
    assert experiment_from_dict(d).calibration["rule"] == str(tmp_path / "rule.json")
    assert json.loads((tmp_path / "rule.json").read_text())["fit"]["pool_ids"] == [0, 4999]
    # a rule that scored responses otherwise (no confirmation; another step) is refused: the
    # trial would report by another definition than the one its patients were selected by
    other = dataclasses.replace(rule, assessment={}, dt=0.05)
    other.save(tmp_path / "rule.json")
    with pytest.raises(ValueError, match=r"calibration.rule: .*confirm_days 0 \(rule\) vs 28; dt"):
        experiment_from_dict(d)
    # an experiment whose [assessment] cannot score the calibration's reference arm (first
    # look after the 6-month landmark) is refused at load, not after the pool is simulated
    bad = copy.deepcopy(GOOD) | {"calibration": {"pool": 5000, "preset": "keynote-002"}}
    bad["simulation"]["horizon_days"] = 365
    bad["assessment"] = {"first_day": 200, "every_days": 42}
    with pytest.raises(ValueError, match=r"calibration: the first RECIST assessment .* day 200"):
        experiment_from_dict(bad)
    # a rule written before the whole assessment was stored (assess_every only) still loads
    old = json.loads((tmp_path / "rule.json").read_text())
    old.pop("assessment"), old.pop("dt")
    (tmp_path / "old.json").write_text(json.dumps(old | {"assess_every": 42}))
    assert CalibrationRule.load(tmp_path / "old.json").assessment == other.assessment


def test_calibration_targets_given_with_a_preset_replace_only_the_preset_s(monkeypatch):
    """As `vcohort calibrate --pfs6`: a target given with a preset replaces that target only,
    and the targets' source is then the user's."""
    from vcohort import calibrate as C
    from vcohort import trial

    seen = {}

    def fake(pool, targets, n, **kw):
        seen.update(targets=targets, arm=kw["arm"], assessment=kw["assessment"], dt=kw["dt"])
        raise RuntimeError("stop before compute")

    monkeypatch.setattr(C, "calibrate", fake)
    d = copy.deepcopy(GOOD)
    d["calibration"] = {"pool": 5000, "preset": "keynote-006", "pfs6": 0.5}
    with pytest.raises(RuntimeError, match="stop"):
        trial._calibrate(experiment_from_dict(d), None)
    arm, preset = C.PRESETS["keynote-006"]
    assert (seen["targets"].orr, seen["targets"].pfs6) == (preset.orr, 0.5)
    assert seen["targets"].source == "user" and seen["arm"] == arm
    # patients are selected by the RECIST definition the trial reports, at its step
    exp = experiment_from_dict(d)
    assert seen["assessment"] == exp.endpoint_options and seen["assessment"]["confirm_days"] == 28
    assert seen["dt"] == exp.dt


def test_population_file_is_relative_to_the_experiment(tmp_path):
    from importlib import resources

    text = (resources.files("vcohort") / "data/populations/default.toml").read_text()
    (tmp_path / "pop.toml").write_text(text.replace('name = "default"', 'name = "mine"'))
    (tmp_path / "exp.toml").write_text(
        '[population]\nfile = "pop.toml"\nsize = 5\n[simulation]\nhorizon_days = 84\n'
        '[[arms]]\nname = "a"\nregimens = ["pembrolizumab"]\n'
    )
    e = load_experiment(tmp_path / "exp.toml")
    assert e.population.name == "mine" and e.title == "exp" and e.reference_arm == "a"


@pytest.mark.parametrize("name", ["keynote002_like.toml", "mono_vs_triple.toml"])
def test_shipped_experiments_validate(name):
    e = load_experiment(EXPERIMENTS / name)
    assert len(e.arms) >= 2 and e.reference_arm in [a.name for a in e.arms]


def test_regimen_tables_take_cycles():
    d = copy.deepcopy(GOOD)
    d["arms"][0]["regimens"] = [
        {"drug": "dacarbazine", "dose": "250 mg/m2", "every": "qd", "count": 5,
         "repeat_every": "21 d", "cycles": 2}
    ]  # fmt: skip
    r = experiment_from_dict(d).arms[0].regimens[0]
    assert r.describe() == "dacarbazine 250 mg/m2 every 1 d x 5 repeat every 21 d x 2"
    assert r.dose_times(120.0).tolist() == [0, 1, 2, 3, 4, 21, 22, 23, 24, 25]
    d["arms"][0]["regimens"][0]["repeat_every"] = "2 d"
    with pytest.raises(ConfigError, match=r"arms\[0\].regimens\[0\]: .*does not end before"):
        experiment_from_dict(d)
    # a table giving only the drug (and dose) keeps the clinical dose's course and cycles
    d["arms"][0]["regimens"] = [{"drug": "doxorubicin", "dose": "60 mg/m2"}]
    r = experiment_from_dict(d).arms[0].regimens[0]
    assert r.describe() == "doxorubicin 60 mg/m2 every 21 d x 6"  # clinical: q3w x 6


def _one_arm(regimens, horizon=60, **arm):
    d = copy.deepcopy(GOOD)
    d["simulation"]["horizon_days"] = horizon
    d["assessment"] = {"first_day": 14, "every_days": 14, "confirm_days": 0, "sd_min_days": 14}
    d["arms"] = [{"name": "a", "regimens": regimens} | arm]
    d["reference_arm"] = "a"
    return d


def test_a_regimen_table_keeps_the_clinical_course_it_does_not_override():
    """{drug = "pembrolizumab"} was a bolus where "pembrolizumab" is a 30-min infusion (only
    interval, count and cycles were kept); a table giving only count or cycles was refused."""
    same = experiment_from_dict(_one_arm([{"drug": "pembrolizumab"}, "pembrolizumab"]))
    table, text = same.arms[0].regimens
    assert table == text and table.infusion_days == pytest.approx(30 / 1440)
    cases = [
        ({"drug": "pembrolizumab", "dose": "2 mg/kg"},
         "pembrolizumab 2 mg/kg every 21 d over 30 min"),
        ({"drug": "pembrolizumab", "over": "1 h"}, "pembrolizumab 200 mg every 21 d over 1 h"),
        ({"drug": "doxorubicin", "count": 4}, "doxorubicin 75 mg/m2 every 21 d x 4"),
        ({"drug": "guadecitabine", "dose": "45 mg/m2", "cycles": 2},
         "guadecitabine 45 mg/m2 every 1 d x 5 repeat every 28 d x 2"),
        # a table with its own interval gives its own course (as the string form does)
        ({"drug": "pembrolizumab", "every": "q3w"}, "pembrolizumab 200 mg every 21 d"),
    ]  # fmt: skip
    for table, want in cases:
        d = _one_arm([table], horizon=200)
        assert experiment_from_dict(d).arms[0].regimens[0].describe() == want, table


def test_regimen_table_interval_and_infusion_errors_name_their_field():
    """every = "qod" was sent to parse_regimen and reported as the dose (and the table's other
    errors were lost); over = 30 was a 30-day infusion."""
    d = _one_arm([{"drug": "wnt974", "dose": "10 ug", "every": "qod"}])
    with pytest.raises(ConfigError) as e:
        experiment_from_dict(d)
    assert e.value.errors == [
        "arms[0].regimens[0].dose: dose='10 ug': unknown dose unit 'ug'; allowed: ['mg', "
        "'mg/kg', 'mg/m2', 'cells', 'cells/kg', 'cells/m2']",
        "arms[0].regimens[0].every: every='qod' is not an interval; allowed: qd, od, bid, tid, "
        "qid, qw, qNd, qNh, qNw (q3w) or '<number> <unit>' (21 d, 12 h)",
    ]
    d = _one_arm([{"drug": "wnt974", "every": "q2d"}])  # shorthands still read
    assert experiment_from_dict(d).arms[0].regimens[0].interval_days == 2.0
    for over in (30, "30"):
        d = _one_arm([{"drug": "pembrolizumab", "dose": "400 mg", "every": "42 d", "over": over}])
        with pytest.raises(ConfigError, match=r"arms\[0\].regimens\[0\].over: over=.?30.?: give "
                                              r"a unit \(min, h, d\)"):  # fmt: skip
            experiment_from_dict(d)
    d = _one_arm(["pembrolizumab 400 mg q6w over 30"])
    with pytest.raises(ConfigError, match=r"arms\[0\].regimens\[0\]: .*give a unit"):
        experiment_from_dict(d)


def test_an_induction_ending_inside_a_course_is_refused_and_cut_courses_are_noted():
    """qd x 5 every 28 d with induction_days = 30 gave days 0-4 and 28-29 (a 5-day course
    stopped after 2 days); 'q3w x 6' over 60 days gave 3 doses without a word."""
    ind = {"sequencing": "induction-maintenance", "induction_days": 30,
           "induction": ["guadecitabine 60 mg/m2 qd x 5 repeat every 28 d"],
           "maintenance": ["pembrolizumab 200 mg q3w"]}  # fmt: skip
    d = _one_arm([], **ind)
    del d["arms"][0]["regimens"]
    with pytest.raises(ConfigError) as e:
        experiment_from_dict(d)
    assert e.value.errors == [
        "arms[0].induction[0]: 'guadecitabine 60 mg/m2 every 1 d x 5 repeat every 28 d': "
        "induction ends on day 30, inside course 2 (days 28-32), which would stop after 2 of "
        "its 5 doses; set induction_days to 28 (before it) or induction_days >= 33, or give 1 "
        "cycle ('x 1' after 'repeat'; cycles = 1)"
    ]
    d["arms"][0]["induction_days"] = 28  # before the second course: accepted
    assert experiment_from_dict(d).notes == ()
    d["arms"][0]["induction"] = ["guadecitabine 60 mg/m2 qd x 5 repeat every 28 d x 3"]
    assert experiment_from_dict(d).notes == (
        "arm 'a': 'guadecitabine 60 mg/m2 every 1 d x 5 repeat every 28 d x 3': 5 of its 15 "
        "planned doses fall before induction ends (day 28); the last planned is on day 60",
    )
    e = experiment_from_dict(_one_arm(["doxorubicin 75 mg/m2 q3w x 6"]))
    assert e.notes == (
        "arm 'a': 'doxorubicin 75 mg/m2 every 21 d x 6': 3 of its 6 planned doses fall within "
        "the 60-day horizon; the last planned is on day 105",
    )
    assert experiment_from_dict(_one_arm(["doxorubicin 75 mg/m2 q3w x 6"], horizon=106)).notes == ()


def test_an_interval_shorter_than_the_step_is_refused_and_same_step_doses_are_noted():
    """'every 1 min' summed 72 doses into each 0.1-day step; a loading dose and a regimen's
    first dose on the same day are summed (600 mg) with a note."""
    with pytest.raises(ConfigError) as e:
        experiment_from_dict(_one_arm(["cb839 800 mg every 1 min"]))
    assert e.value.errors == [
        "arms[0]: 'cb839 800 mg every 0.0006944444444444445 d': interval=1 min is shorter than "
        "the integration step dt=0.1 d, so several doses would be summed into one step; "
        "allowed: an interval >= 0.1 d (or a smaller simulation.dt)"
    ]
    d = _one_arm(["cb839 800 mg tid"])
    d["simulation"]["dt"] = 0.5
    with pytest.raises(ConfigError, match=r"interval=8 h is shorter .* dt=0.5 d"):
        experiment_from_dict(d)
    e = experiment_from_dict(_one_arm(["pembrolizumab 400 mg x 1", "pembrolizumab 200 mg q3w"]))
    assert e.notes == (
        "arm 'a': pembrolizumab: 'pembrolizumab 400 mg x 1' and 'pembrolizumab 200 mg every 21 "
        "d' both dose in the step of day 0; the doses are summed there",
    )


def test_vcohort_trial_prints_the_experiment_s_notes_before_compute(tmp_path, monkeypatch, capsys):
    """A course the horizon cuts and two regimens summed in one step were silent; `vcohort
    trial` prints them (with the label-maximum note) before it computes anything."""
    from vcohort import trial
    from vcohort.cli import main

    def stop(*args, **kwargs):
        raise ValueError("stop before compute")

    monkeypatch.setattr(trial, "run_trial", stop)
    (tmp_path / "e.toml").write_text(
        "[population]\nsize = 4\n[simulation]\nhorizon_days = 60\n[assessment]\nfirst_day = 14\n"
        'every_days = 14\nsd_min_days = 14\n[[arms]]\nname = "a"\nregimens = '
        '["doxorubicin 75 mg/m2 q3w x 6", "pembrolizumab 400 mg x 1", "pembrolizumab 200 mg q3w"]\n'
    )
    assert main(["trial", str(tmp_path / "e.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "note: arm 'a': 'doxorubicin 75 mg/m2 every 21 d x 6': 3 of its 6 planned doses fall "
        "within the 60-day horizon; the last planned is on day 105",
        "note: arm 'a': pembrolizumab: 'pembrolizumab 400 mg x 1' and 'pembrolizumab 200 mg "
        "every 21 d' both dose in the step of day 0; the doses are summed there",
        "vcohort: error: stop before compute",
    ]

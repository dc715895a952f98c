"""Sweep expansion (`vcohort.sweep.expand_sweep`): runs equal in what they give, keys reaching
into values set by earlier keys, and the notes `vcohort batch` prints before compute."""

import copy
from pathlib import Path

import pytest

from vcohort.cli import main
from vcohort.sweep import expand_sweep

BASE = {
    "population": {"size": 4, "seed": 1},
    "simulation": {"horizon_days": 60, "runin_days": 0},
    "assessment": {"first_day": 14, "every_days": 14, "confirm_days": 0, "sd_min_days": 14},
    "arms": [
        {"name": "p", "regimens": [{"drug": "pembrolizumab", "dose": "2 mg/kg", "every": "21 d"}]},
        {"name": "ctl", "regimens": []},
    ],
}


def _expand(sweep, base=None):
    data = {"name": "s", "base": copy.deepcopy(base or BASE), "sweep": sweep}
    return expand_sweep(data, source="sw.toml", base_dir=Path("."))


@pytest.mark.parametrize(
    "key, values, first, second",
    [
        # q21d over 60 days gives doses on days 0, 21, 42 whatever the count from 3 up
        ("arms.p.regimens.0.count", [3, 4], "count-3", "count-4"),
        # 'x 1' and nothing: one dose either way
        ("arms.ctl.regimens", [["pembrolizumab 200 mg"], ["pembrolizumab 200 mg x 1"]],
         "regimens-pembrolizumab200mg", "regimens-pembrolizumab200mgx1"),
        # cycles past the horizon: two 5-day courses in 60 days either way
        ("arms.ctl.regimens", [["dacarbazine 250 mg/m2 qd x 5 repeat every 28 d x 3"],
                               ["dacarbazine 250 mg/m2 qd x 5 repeat every 28 d"]], "regimens-v0",
         "regimens-v1"),
    ],
)  # fmt: skip
def test_values_giving_the_same_doses_within_the_horizon_are_one_run(key, values, first, second):
    """The runs were compared by their regimens' repr, so values that give the same doses
    within the horizon expanded to duplicate runs."""
    with pytest.raises(ValueError) as e:
        _expand({key: values})
    msg = str(e.value)
    assert f"[run s__{second}: " in msg and f"the same experiment as run s__{first} (" in msg
    assert "the same doses on the same days within the 60-day horizon" in msg
    assert msg.count("\n") == 0  # one problem: the second value


def test_values_giving_other_doses_are_kept_apart():
    runs = _expand({"arms.p.regimens.0.count": [2, 3]})  # days 0, 21 and 0, 21, 42
    assert [len(r.experiment.arms[0].regimens[0].dose_times(60)) for r in runs] == [2, 3]
    runs = _expand({"arms.p.regimens.0.over": ["30 min", "1 h"]})  # the infusion differs
    assert len(runs) == 2


def test_a_field_inside_a_table_set_by_an_earlier_key_is_accepted():
    """'Give the table first' was still refused when the base held a regimen string: a key
    was checked on the bare base, not after the earlier keys' first values."""
    base = copy.deepcopy(BASE)
    base["arms"][0]["regimens"] = ["pembrolizumab 2 mg/kg q3w"]
    tables = [{"drug": "pembrolizumab", "dose": "1 mg/kg", "every": every} for every in
              ("21 d", "14 d")]  # fmt: skip
    runs = _expand(
        {"arms.0.regimens.0": tables, "arms.0.regimens.0.dose": ["2 mg/kg", "3 mg/kg"]}, base
    )
    got = [(r.experiment.arms[0].regimens[0].interval_days, r.experiment.arms[0].regimens[0].dose)
           for r in runs]  # fmt: skip
    assert got == [(21.0, 2.0), (21.0, 3.0), (14.0, 2.0), (14.0, 3.0)]
    # a field key on the string itself is still refused, naming the base
    with pytest.raises(
        ValueError, match=r"is a value \('pembrolizumab 2 mg/kg q3w'\), not a table"
    ):
        _expand({"arms.0.regimens.0.dose": ["2 mg/kg", "3 mg/kg"]}, base)


def test_batch_prints_each_note_once_with_its_runs(tmp_path, capsys):
    """`vcohort batch` printed no label-maximum note (trial and simulate do); a sweep over
    seeds prints a shared note once, naming its runs, with --list too."""
    (tmp_path / "s.toml").write_text(
        """
name = "n"
[sweep]
"arms.p.regimens.0.dose" = ["2 mg/kg", "200 mg/kg"]
"population.seed" = [1, 2, 3, 4]
[base]
[base.population]
size = 4
[base.simulation]
horizon_days = 60
runin_days = 0
[base.assessment]
first_day = 14
every_days = 14
sd_min_days = 14
[[base.arms]]
name = "p"
regimens = [{ drug = "pembrolizumab", dose = "2 mg/kg", every = "21 d" },
            "doxorubicin 75 mg/m2 q3w x 6"]
"""
    )
    assert main(["batch", str(tmp_path / "s.toml"), "--list"]) == 0
    err = capsys.readouterr().err.splitlines()
    label = [line for line in err if "label maximum" in line]
    assert label == [
        "note: arm 'p': 'pembrolizumab 200 mg/kg every 21 d': one dose is 1.4e+04 mg for a "
        "typical adult (70 kg, 1.8 m2), above 2 times pembrolizumab's label maximum single dose "
        "of 400 mg (mg meant for mg/kg?) (4 runs: n__dose-200mg-per-kg__seed-1, "
        "n__dose-200mg-per-kg__seed-2, n__dose-200mg-per-kg__seed-3 and 1 more)"
    ]
    cut = [line for line in err if "planned doses" in line]
    assert len(cut) == 1 and cut[0].startswith(
        "note: arm 'p': 'doxorubicin 75 mg/m2 every 21 d x 6': 3 of its 6 planned doses fall "
        "within the 60-day horizon; the last planned is on day 105 (8 runs: "
    )

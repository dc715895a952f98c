import dataclasses

import numpy as np
import pandas as pd
import pytest

from vcohort.dosing import (
    Regimen,
    compile_schedule,
    from_nmtran,
    parse_amount,
    parse_duration,
    parse_regimen,
    to_nmtran,
)


def test_parse_units():
    assert parse_amount("200 mg") == (200.0, "mg")
    assert parse_amount("2 mg/kg") == (2.0, "mg/kg")
    assert parse_amount("75 mg/m²") == (75.0, "mg/m2")
    assert parse_duration("21 d") == 21.0
    assert parse_duration("12 h") == 0.5
    assert parse_duration("30 min") == pytest.approx(1 / 48)
    assert parse_duration("3 w") == 21.0


def test_parse_regimen_forms():
    r = parse_regimen("pembrolizumab 200 mg every 21 d x 8 over 30 min")
    assert (r.drug, r.dose, r.dose_unit, r.interval_days, r.count) == (
        "pembrolizumab",
        200.0,
        "mg",
        21.0,
        8,
    )
    assert r.infusion_days == pytest.approx(1 / 48)
    r = parse_regimen("pembrolizumab 2 mg/kg q3w start 7 d")
    assert (r.dose_unit, r.interval_days, r.start_day) == ("mg/kg", 21.0, 7.0)
    r = parse_regimen("cb839 800 mg bid until 28 d")
    assert r.interval_days == 0.5 and r.until_day == 28.0
    assert len(r.dose_times(100)) == 56
    assert parse_regimen("wnt974").dose == 10.0  # catalogue clinical dose


@pytest.mark.parametrize(
    "text, first, last, n",
    [
        # a duration after "for" runs from the start: doses in [start, start + duration)
        ("wnt974 10 mg qd for 4 w", 0.0, 27.0, 28),
        ("wnt974 10 mg qd for 4 weeks start 7 d", 7.0, 34.0, 28),
        ("pembrolizumab 200 mg q3w for 6 months", 0.0, 168.0, 9),  # 6 x 30.4375 d
        ("pembrolizumab 200 mg q3w for 2 years", 0.0, 714.0, 35),
        # abbreviations of the time units (were taken for a noun after a count: 'x 12')
        ("pembrolizumab 200 mg q3w for 12 wks", 0.0, 63.0, 4),
        ("wnt974 10 mg qd for 2 wks", 0.0, 13.0, 14),
        ("wnt974 10 mg qd for 36 hrs", 0.0, 1.0, 2),
        ("pembrolizumab 200 mg q3w for 1 yr", 0.0, 357.0, 18),
        ("wnt974 10 mg qd until 2 wks", 0.0, 13.0, 14),
        # x <n> (or for <n> with a count word) is a count
        ("doxorubicin 75 mg/m2 q3w x 6 cycles", 0.0, 105.0, 6),
        ("doxorubicin 75 mg/m2 q3w for 6 cycles", 0.0, 105.0, 6),
        ("doxorubicin 75 mg/m2 q3w x 4 courses", 0.0, 63.0, 4),
        ("doxorubicin 75 mg/m2 q3w x 4", 0.0, 63.0, 4),
        ("doxorubicin 75 mg/m2 q3w x 4 infusions over 30 min", 0.0, 63.0, 4),
        ("doxorubicin 75 mg/m2 q3w x 4infusions", 0.0, 63.0, 4),
        ("wnt974 10 mg qd for 28d", 0.0, 27.0, 28),
    ],
)
def test_courses_by_count_or_duration(text, first, last, n):
    """A clinician's 'for 4 weeks' is a duration, not 4 doses (it used to read as 'x 4')."""
    t = parse_regimen(text).dose_times(1000.0)
    assert (t[0], t[-1], len(t)) == (first, last, n)


@pytest.mark.parametrize(
    "text, match",
    [
        ("aspirin 100 mg", "not in the catalogue"),
        ("pembrolizumab -200 mg q3w", "finite number >= 0"),
        ("pembrolizumab nan mg q3w", "finite number >= 0"),
        ("pembrolizumab 200 mg every 0 d", "must be > 0"),
        ("pembrolizumab 200 mg every -3 d", "must be > 0"),
        ("pembrolizumab 200 grains q3w", "unknown dose unit"),
        ("pembrolizumab 200 mg every 3 moons", "unknown time unit"),
        ("wnt974 10 mg qd over 1 h", "route 'oral'; only IV drugs"),
        ("pembrolizumab 200 mg q3w banana", "unexpected word"),
        ("pembrolizumab 200 mg q3w x 12 weeks", "x takes a number of doses.*'for 12 weeks'"),
        ("pembrolizumab 200 mg q3w x 28d", "x takes a number of doses.*'for 28d'"),
        ("wnt974 10 mg qd x 3 wks", "x takes a number of doses.*'for 3 wks'"),
        # an unknown word after the number was dropped, the number taken for a dose count
        (
            "wnt974 10 mg qd for 3 mos",
            r"'for 3 mos': 'mos' is neither a time unit nor a count "
            r"word; allowed after 'for 3': a time unit \(d, .*wks.*\) or "
            r"doses, dose, cycles",
        ),
        ("wnt974 10 mg qd for 14 dys", r"'dys' is neither a time unit nor a count word"),
        ("wnt974 10 mg qd x 3 foo", r"'x 3 foo': 'foo' is neither a time unit nor a count word"),
        ("dacarbazine 250 mg/m2 qd x 5 repeat every 21 d for 6 mos", "'mos' is neither"),
        # 'for 6' was 6 doses while 'until 42' is day 42; 'over 30' was 30 days
        (
            "pembrolizumab 200 mg q3w for 6",
            r"'for 6' has no unit: write 'x 6' for 6 doses, or "
            r"'for 6 d'",
        ),
        ("dacarbazine 250 mg/m2 qd x 5 repeat every 21 d for 6", "'x 6' for 6 cycles"),
        ("pembrolizumab 400 mg q6w over 30", r"pembrolizumab over='30': give a unit \(min, h, d\)"),
        ("cd133_cart 1e6 cells/kg over 30", r"over='30': give a unit"),
        ("pembrolizumab 200 mg q3w for 1 year until 100 d", "not both"),
        ("pembrolizumab 200 mg q3w for 0 w", "duration > 0"),
        # a clause given twice was silently replaced by the second (x and cycles were refused)
        ("pembrolizumab 200 mg q3w every 14 d", "dosing interval .* given twice.*'every 14 d'"),
        ("pembrolizumab 200 mg every 21 d q2w", "dosing interval .* given twice.*'q2w'"),
        ("pembrolizumab 200 mg q3w start 7 d from 3 d", "start .* given twice.*'from 3 d'"),
        ("pembrolizumab 200 mg q3w over 30 min over 1 h", "infusion length .* given twice"),
        ("cb839 800 mg bid until 20 d until 30 d", "'until <day>' is given twice"),
        ("cb839 800 mg bid for 2 w for 3 w", "'for <duration>' is given twice"),
        # not-a-number durations name the clause (were 'count=nan', "unexpected word 'd'")
        ("cb839 800 mg bid for nan d", r"cb839 for='nan d' must be a finite duration"),
        ("cb839 800 mg bid until inf d", r"cb839 until='inf d' must be a finite duration"),
        ("cb839 800 mg bid start -inf d", r"cb839 start='-inf d' must be a finite duration"),
        # a cell product is dosed in cells: mg units were taken as 1e6 cells (per kg, per m2)
        ("cd133_cart 5 mg/kg", "cell product, dosed in cells; allowed: cells, cells/kg"),
        ("cd133_cart 5 mg", "cell product, dosed in cells"),
        ("cd133_cart 5 mg/m2 every 7 d", "cell product, dosed in cells"),
    ],
)
def test_bad_regimens_name_the_field(text, match):
    with pytest.raises(ValueError, match=match):
        parse_regimen(text)


def test_compile_and_step_scatter_conserve_amounts():
    regs = [
        parse_regimen("pembrolizumab 200 mg every 21 d over 1 h"),
        parse_regimen("wnt974 10 mg qd"),
        parse_regimen("doxorubicin 75 mg/m2 every 21 d x 2 over 30 min"),
    ]
    s = compile_schedule(regs, 42.0)
    assert s.drugs == ("pembrolizumab", "wnt974", "doxorubicin")
    assert s.valid.sum(axis=1).tolist() == [2, 42, 2]
    dt = 0.1
    bolus, rate = s.step_inputs(dt, 420)
    assert bolus.shape == (420, 3, 3)
    # oral doses are boluses into the depot; infusions integrate to the dose
    assert bolus[:, 1, 0].sum() == pytest.approx(420.0)
    assert rate[:, 0, 0].sum() * dt == pytest.approx(400.0)
    assert rate[:, 2, 2].sum() * dt == pytest.approx(150.0)  # mg/m2 channel
    assert s.needs() == {"bsa_m2"}


def test_step_scatter_is_differentiable_in_amounts():
    import jax
    import jax.numpy as jnp

    s = compile_schedule([parse_regimen("pembrolizumab 200 mg every 21 d over 1 h")], 42.0)
    grid = s.step_grid(0.1, 420)
    g = jax.grad(lambda a: grid.scatter(a, jnp)[1].sum() * 0.1)(jnp.asarray(s.amount))
    assert np.allclose(np.asarray(g), 1.0)


def test_nmtran_round_trip_flat_mg():
    regs = [
        parse_regimen("pembrolizumab 200 mg every 21 d x 4 over 30 min"),
        parse_regimen("cb839 800 mg every 12 h until 14 d"),
        parse_regimen("cb839 600 mg every 12 h start 14 d until 28 d"),
    ]
    s = compile_schedule(regs, 84.0)
    df = to_nmtran(s, ids=[1, 2])
    assert list(df.columns) == ["ID", "TIME", "AMT", "CMT", "EVID", "II", "ADDL", "RATE", "DRUG"]
    one = df[df.ID == 1]
    pem = one[one.DRUG == "pembrolizumab"].iloc[0]
    assert (pem.TIME, pem.AMT, pem.II, pem.ADDL) == (0.0, 200.0, 21.0, 3)  # ADDL = doses after 1st
    assert pem.RATE == pytest.approx(200.0 * 48)
    assert len(one[one.DRUG == "cb839"]) == 2  # two dose levels -> two records
    back = from_nmtran(df)
    assert set(back) == {1, 2}
    s2 = back[1]
    for d in s.drugs:
        i, j = s.drugs.index(d), s2.drugs.index(d)
        t1, a1 = s.time[i][s.valid[i]], np.asarray(s.amount)[i][s.valid[i]]
        t2, a2 = s2.time[j][s2.valid[j]], np.asarray(s2.amount)[j][s2.valid[j]]
        assert np.allclose(t1, t2) and np.allclose(a1, a2)
        assert np.allclose(s.duration[i][s.valid[i]], s2.duration[j][s2.valid[j]])


def test_nmtran_per_kg_needs_weight_and_converts():
    s = compile_schedule([parse_regimen("pembrolizumab 2 mg/kg q3w x 2")], 42.0)
    with pytest.raises(ValueError, match="weight_kg"):
        to_nmtran(s)
    df = to_nmtran(s, ids=[1, 2], weight_kg=[50.0, 100.0])
    assert df.groupby("ID").AMT.first().tolist() == [100.0, 200.0]


def test_regimen_field_validation():
    with pytest.raises(ValueError, match="count"):
        Regimen("pembrolizumab", 200.0, interval_days=21.0, count=0)
    with pytest.raises(ValueError, match="until_day"):
        Regimen("pembrolizumab", 200.0, interval_days=21.0, start_day=10.0, until_day=5.0)
    with pytest.raises(ValueError, match="dose_unit"):
        Regimen("pembrolizumab", 200.0, dose_unit="g")


def test_from_nmtran_requires_columns():
    with pytest.raises(ValueError, match="lacks columns"):
        from_nmtran(pd.DataFrame({"ID": [1]}))


def test_state_dosed_drugs_get_a_cmt_each():
    """de Pillis 2009's drugs enter model states (no PK compartments): each needs its own CMT
    (they all had CMT 1), and the records read back to the same schedule."""
    from vcohort.model import get_model

    cat = get_model("depillis2009").drug_catalogue()
    regs = [parse_regimen(r, cat) for r in ("chemo 1 mg every 7 d x 3", "til 1 mg start 7 d",
                                             "il2 1 mg every 1 d x 5")]  # fmt: skip
    s = compile_schedule(regs, 30.0)
    t = to_nmtran(s, catalogue=cat)
    assert t.groupby("DRUG")["CMT"].first().to_dict() == {"chemo": 1, "til": 2, "il2": 3}
    back = from_nmtran(t.drop(columns="DRUG"), drugs=s.drugs, catalogue=cat)[1]
    np.testing.assert_array_equal(back.time[back.valid], s.time[s.valid])
    got, want = np.asarray(back.amount)[back.valid], np.asarray(s.amount)[s.valid]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "text, first_days, n",
    [
        # temozolomide's days 1-5 of 28, dacarbazine's 1-5 of 21 for 6 cycles
        ("dacarbazine 200 mg/m2 qd x 5 repeat every 28 d", [0, 1, 2, 3, 4, 28, 29], 25),
        ("dacarbazine 250 mg/m2 qd x 5 repeat every 21 d x 6", [0, 1, 2, 3, 4, 21, 22], 30),
        ("dacarbazine 250 mg/m2 qd x 5 repeat q3w x 2 start 7 d", [7, 8, 9, 10, 11, 28, 29], 10),
        ("dacarbazine 250 mg/m2 qd x 5 repeat every 28 d until 60 d", [0, 1, 2, 3, 4, 28], 14),
        ("doxorubicin 60 mg/m2 repeat every 21 d x 4", [0, 21, 42, 63], 4),  # one dose a course
        ("dacarbazine 250 mg/m2 qd x 5 repeat every 28 d for 3 cycles", [0, 1, 2, 3, 4, 28], 15),
    ],
)
def test_courses_repeated_in_cycles(text, first_days, n):
    r = parse_regimen(text)
    t = r.dose_times(140.0)
    assert t[: len(first_days)].tolist() == first_days and len(t) == n
    assert parse_regimen(r.describe()).dose_times(140.0).tolist() == t.tolist()  # round trip
    s = compile_schedule([r], 140.0)  # and onto slots and NM-TRAN records
    assert sorted(s.time[s.valid].tolist()) == t.tolist()
    nm = to_nmtran(s, weight_kg=70.0, bsa_m2=1.8)
    assert int((nm["ADDL"] + 1).sum()) == n


@pytest.mark.parametrize(
    "text, match",
    [
        ("dacarbazine 250 mg/m2 qd x 5 repeat every 3 d", r"course \(4 d\) does not end before"),
        # a last dose on the next cycle's first day would be given twice
        ("dacarbazine 250 mg/m2 every 7 d x 4 repeat every 21 d", "does not end before its cycle"),
        ("dacarbazine 250 mg/m2 qd x 5 repeat every 28 d x 2 x 3", "cycles is given twice"),
        ("dacarbazine 250 mg/m2 qd x 5 x 6", "number of doses is given twice"),
        ("dacarbazine 250 mg/m2 qd x 5 repeat every 28 d x 6 doses", "'x <n>' counts cycles"),
        ("dacarbazine 250 mg/m2 qd repeat every 28 d", "needs its number of doses"),
        ("dacarbazine 250 mg/m2 qd x 5 repeat x 3", "'repeat' needs the cycle"),
        ("dacarbazine 250 mg/m2 qd x 5 repeat every 28 d x 0", "cycles=0 must be"),
        ("dacarbazine 250 mg/m2 qd x 5 repeat every 28 d repeat every 7 d", "given twice"),
    ],
)
def test_bad_cycles_are_refused(text, match):
    with pytest.raises(ValueError, match=match):
        parse_regimen(text)


def test_counts_must_be_whole_numbers_and_errors_are_value_errors():
    """``x inf`` / ``x nan`` / ``x 2.5`` are refused as counts (a ValueError naming the field:
    an OverflowError escaped the experiment's field checks)."""
    for bad in ("inf", "nan", "2.5", "0"):
        with pytest.raises(ValueError, match=f"doxorubicin count={bad}.*whole number >= 1"):
            parse_regimen(f"doxorubicin 60 mg q3w x {bad}")
    with pytest.raises(ValueError, match="cycles=inf.*whole number"):
        parse_regimen("dacarbazine 250 mg/m2 qd x 5 repeat every 21 d x inf")
    with pytest.raises(ValueError, match="route 'oral'; only IV drugs take 'over'"):
        parse_regimen("cb839 800 mg bid over 60 min")


@pytest.mark.parametrize("text", ["pembrolizumab 2 q3w", "doxorubicin 75 every 21 d", "cb839 800"])
def test_a_dose_without_its_unit_is_refused(text):
    """'pembrolizumab 2 q3w' meant for 2 mg/kg was read as 2 mg: a 100-fold underdose."""
    with pytest.raises(ValueError, match=r"dose='[0-9]+': give its unit \(mg, mg/kg, mg/m2"):
        parse_regimen(text)


def test_describe_parses_back_to_the_same_regimen():
    """`Regimen.describe` (written to manifests) keeps every digit where %g would round: tid is
    every 0.3333333333333333 d, not 0.333333."""
    rule = "hold if ANC < 1.5 reduce to 75% 50%"
    # (the last: a cell product's amount unit, 1e6 cells, is written as a bare number)
    for text in ("cb839 123.4567 mg tid", "pembrolizumab 2 mg/kg q3w over 30 min",
                 "dacarbazine 250 mg/m2 qd x 5 repeat every 21 d x 6 start 0.3 d",
                 f"doxorubicin 60 mg/m2 q3w over 7 min {rule}",
                 "cd133_cart 2 every 7 d x 2"):  # fmt: skip
        r = parse_regimen(text)
        assert parse_regimen(r.describe()) == r, r.describe()
    assert "every 0.3333333333333333 d" in parse_regimen("cb839 800 mg tid").describe()
    assert "over 30 min" in parse_regimen("pembrolizumab 2 mg/kg q3w over 30 min").describe()
    # hours stay hours, and numbers no unit writes exactly keep every digit
    exact = f"doxorubicin 60 mg q3w over 1 h hold if ANC < {0.1 + 0.2!r} reduce to {100 / 3!r}%"
    r = parse_regimen(exact)
    assert parse_regimen(r.describe()) == r and "over 1 h" in r.describe()
    odd = dataclasses.replace(r, infusion_days=0.39138124341450314)
    assert parse_regimen(odd.describe()) == odd


@pytest.mark.parametrize(
    "over, shown",
    [("30 min", "30 min"), ("90 min", "90 min"), ("1.5 h", "90 min"), ("6 h", "6 h"),
     ("2 d", "2 d"), ("48 h", "2 d"), ("0.96 d", "0.96 d"), ("17 min", "17 min")],
)  # fmt: skip
def test_an_infusion_is_described_in_its_largest_whole_unit(over, shown):
    """'over 30 d' was described as 'over 43200 min' (the first exact unit from minutes up);
    now the largest unit giving a whole number, which parses back to the same regimen."""
    r = parse_regimen(f"pembrolizumab 400 mg every 42 d over {over}")
    assert r.describe().endswith(f" over {shown}")
    assert parse_regimen(r.describe()) == r


def test_an_interval_shorter_than_the_step_and_too_many_doses_are_refused():
    """'every 1 min' gave 86,400 doses in 60 days, 72 of them summed into each 0.1-day step;
    'every 0.001 min' built tens of millions of slots."""
    from vcohort.dosing import MAX_DOSES, interval_problem

    fast = parse_regimen("cb839 800 mg every 1 min")
    with pytest.raises(ValueError, match=r"interval=1 min is shorter than the integration step "
                                         r"dt=0.1 d.*allowed: an interval >= 0.1 d"):  # fmt: skip
        compile_schedule([fast], 60.0, dt=0.1)
    assert interval_problem(parse_regimen("cb839 800 mg bid"), 0.5) is None  # one a step
    assert interval_problem(parse_regimen("cb839 800 mg tid"), 0.5) is not None
    assert compile_schedule([fast], 60.0, dt=1e-4).n_slots == 86_400  # a finer step takes it
    tiny = parse_regimen("cb839 800 mg every 0.001 min")
    with pytest.raises(ValueError, match=rf"86,400,000 doses before day 60; at most "
                                         rf"{MAX_DOSES:,} per drug"):  # fmt: skip
        compile_schedule([tiny], 60.0)
    # two regimens of one drug within the cap each, over it together
    half = parse_regimen(f"cb839 1 mg every {60 / (MAX_DOSES * 0.75)!r} d")
    with pytest.raises(ValueError, match=r"cb839: 300,000 doses before day 60"):
        compile_schedule([half, half], 60.0)


def test_two_regimens_of_a_drug_dosing_in_one_step_are_noted():
    """A loading dose and the maintenance regimen's first dose on day 0 are summed (600 mg):
    a note names the drug, the day and both regimens; doses in other steps are not noted."""
    from vcohort.dosing import coincident_doses

    load, q3w = parse_regimen("pembrolizumab 400 mg x 1"), parse_regimen("pembrolizumab 200 mg q3w")
    (note,) = coincident_doses([load, q3w], 60.0, 0.1)
    assert note == (
        "pembrolizumab: 'pembrolizumab 400 mg x 1' and 'pembrolizumab 200 mg every 21 d' both dose "
        "in the step of day 0; the doses are summed there"
    )
    later = parse_regimen("pembrolizumab 200 mg q3w start 21 d")
    assert coincident_doses([load, later], 60.0, 0.1) == []
    near = parse_regimen("pembrolizumab 200 mg q3w start 0.04 d")  # rounds onto day 0's step
    assert "day 0 (and 2 more steps)" in coincident_doses([q3w, near], 60.0, 0.1)[0]
    assert coincident_doses([load, parse_regimen("cb839 800 mg bid")], 60.0, 0.1) == []


def test_courses_cut_by_the_horizon_or_an_induction_end():
    """A count the horizon cuts is a note (3 of 'q3w x 6' over 60 days); an induction end
    inside a course (day 30 of a 5-day course on days 28-32) is refused with what to change."""
    from vcohort.dosing import cut_note, induction_end_problem

    dox = parse_regimen("doxorubicin 75 mg/m2 q3w x 6")
    assert cut_note(dox, 60.0) == (
        "'doxorubicin 75 mg/m2 every 21 d x 6': 3 of its 6 planned doses fall within the "
        "60-day horizon; the last planned is on day 105"
    )
    assert cut_note(dox, 106.0) is None
    assert cut_note(parse_regimen("doxorubicin 75 mg/m2 q3w"), 60.0) is None  # no count: by design
    guad = parse_regimen("guadecitabine 60 mg/m2 qd x 5 repeat every 28 d")
    problem = induction_end_problem(guad, 30.0)
    assert problem == (
        "'guadecitabine 60 mg/m2 every 1 d x 5 repeat every 28 d': induction ends on day 30, "
        "inside course 2 (days 28-32), which would stop after 2 of its 5 doses; set "
        "induction_days to 28 (before it) or induction_days >= 33, or give 1 cycle ('x 1' after "
        "'repeat'; cycles = 1)"
    )
    assert induction_end_problem(guad, 28.0) is None and induction_end_problem(guad, 33.0) is None
    assert "inside its first course (days 0-4)" in induction_end_problem(guad, 2.0)
    assert "its course of 6 doses (days 0-105)" in induction_end_problem(dox, 42.0)
    assert induction_end_problem(parse_regimen("doxorubicin 75 mg/m2 q3w"), 42.0) is None


def test_dose_times_round_half_up_and_a_last_step_dose_is_given():
    """bid at dt = 0.2: 0.5 d is half-way between steps; it rounds up (0.6 d), as 1.5 d does
    (1.6 d), not to even (0.4 then 1.6).  A dose inside the horizon that rounds onto its end
    (day 9.97 of 10 at dt = 0.1) is given in the last step, not dropped."""
    from vcohort.dosing import dose_step

    assert dose_step([0.5, 1.5, 2.5], 0.2).tolist() == [3, 8, 13]
    assert dose_step([0.3, 0.7], 0.2).tolist() == [2, 4]  # 0.3 / 0.2 = 1.4999999999999998
    from vcohort.sbml import schedule_on_grid  # the SBML export places doses as the simulator

    late = compile_schedule([parse_regimen("doxorubicin 60 mg start 9.97 d")], 10.0)
    assert schedule_on_grid(late, 0.1, 10).time[0, 0] == pytest.approx(9.9)
    s = compile_schedule([parse_regimen("cb839 800 mg bid")], 3.0)
    bolus, _ = s.step_inputs(0.2, 15)
    assert (np.flatnonzero(bolus[:, 0, 0]) * 0.2).round(6).tolist() == [0, 0.6, 1, 1.6, 2, 2.6]
    bolus, _ = late.step_inputs(0.1, 100)
    assert bolus.sum() == 60.0 and bolus[99, 0, 0] == 60.0
    assert late.step_starts(0.1, 100)[99, 0, 0] == 1.0  # a hold rule would decide it there


def test_nmtran_coincident_doses_and_bad_records():
    """Two regimens' doses at the same time are two records (not ADDL = 1 with II = 0, which
    NONMEM and `from_nmtran` refuse); a modelled RATE (-1/-2) and ADDL without II are refused,
    naming the record."""
    s = compile_schedule([parse_regimen("pembrolizumab 100 mg")] * 2, 30.0)
    t = to_nmtran(s)
    assert len(t) == 2 and (t["ADDL"] == 0).all() and (t["II"] == 0).all()
    back = from_nmtran(t)[1]
    assert sorted(back.amount[back.valid].tolist()) == [100.0, 100.0]
    bad = t.copy()
    bad.loc[1, "RATE"] = -2
    with pytest.raises(ValueError, match=r"record 1 \(ID 1\): RATE=-2 .*not supported"):
        from_nmtran(bad)
    bad = t.copy()
    bad.loc[0, "ADDL"] = 2
    with pytest.raises(ValueError, match=r"record 0 \(ID 1\): ADDL=2, II=0.*needs an interval"):
        from_nmtran(bad)
    for col, v, match in (
        ("ADDL", 1.5, r"ADDL=1.5 must be a whole number"),  # was truncated to 1
        ("RATE", np.nan, r"RATE=nan must be a finite number"),  # was taken for a bolus
        ("RATE", np.inf, r"RATE=inf must be a finite number"),
        ("TIME", np.nan, r"TIME=nan must be a finite number"),
    ):
        bad = t.copy()
        bad[col] = bad[col].astype(float)
        bad.loc[0, col] = v
        with pytest.raises(ValueError, match=rf"record 0 \(ID 1\): {match}"):
            from_nmtran(bad)
    per_kg = compile_schedule([parse_regimen("pembrolizumab 2 mg/kg")], 30.0)
    for w in (-70.0, 0.0, np.nan, np.inf):  # were turned into negative, 0 or NaN mg
        with pytest.raises(ValueError, match=r"weight_kg=.* \(for mg/kg doses\) must be a fin"):
            to_nmtran(per_kg, ids=[1, 2], weight_kg=[70.0, w])
    with pytest.raises(ValueError, match=r"bsa_m2=-1.8 \(for mg/m2 doses\)"):
        to_nmtran(compile_schedule([parse_regimen("doxorubicin 60 mg/m2")], 30.0), bsa_m2=-1.8)
    with pytest.raises(ValueError, match="weight_kg has 3 values for 2 IDs"):
        to_nmtran(compile_schedule([parse_regimen("pembrolizumab 2 mg/kg")], 30.0), ids=[1, 2],
                  weight_kg=[70.0, 80.0, 90.0])  # fmt: skip


def test_from_nmtran_refuses_resets_steady_state_and_dates():
    """EVID 4 (reset and dose) was read as a plain dose, EVID 3 (reset) dropped and SS
    ignored, without a word; now each is refused naming the record, column and value.
    Observation (EVID 0) and other-event (EVID 2) records are skipped; SS = 0 is fine."""
    base = pd.DataFrame(
        {"ID": [1, 1, 1], "TIME": [0.0, 10.0, 30.0], "AMT": [200.0, 0.0, 200.0],
         "CMT": [1, 1, 1], "EVID": [1, 0, 1], "II": [0.0, 0.0, 0.0], "ADDL": [0, 0, 0],
         "RATE": [0.0, 0.0, 0.0], "SS": [0, 0, 0], "DV": [0.0, 12.5, 0.0],
         "DRUG": ["pembrolizumab"] * 3}
    )  # fmt: skip
    s = from_nmtran(base.assign(EVID=[1, 2, 1]))[1]
    assert s.time[s.valid].tolist() == [0.0, 30.0] and s.amount[s.valid].tolist() == [200.0] * 2
    for col, row, v, match in (
        ("EVID", 2, 4, r"record 2 \(ID 1\): EVID=4 \(reset and dose\) is not supported; "
                       r"supported: EVID 0 \(observation, skipped\), 1 \(dose\), 2"),
        ("EVID", 1, 3, r"record 1 \(ID 1\): EVID=3 \(reset\) is not supported"),
        ("EVID", 1, 7, r"record 1 \(ID 1\): EVID=7 is not supported"),
        ("SS", 0, 1, r"record 0 \(ID 1\): SS=1 \(steady-state dosing\) is not supported; "
                     r"supported: SS = 0 or empty"),
        ("SS", 2, 2, r"record 2 \(ID 1\): SS=2 \(steady-state dosing\)"),
    ):  # fmt: skip
        bad = base.copy()
        bad.loc[row, col] = v
        with pytest.raises(ValueError, match=match):
            from_nmtran(bad)
    dated = base.assign(DATE=["2024-01-01", "", ""])
    with pytest.raises(ValueError, match=r"record 0 \(ID 1\): DATE='2024-01-01' \(a date, making"):
        from_nmtran(dated)


def test_a_brand_name_or_code_names_the_catalogue_drug():
    """'keytruda 200 mg q3w' or 'telaglenastat ...' are refused with the catalogue's name (not
    resolved silently: a run's tables carry one name per drug); a slip gets the closest name."""
    from vcohort.drugs import CATALOGUE, OTHER_NAMES

    assert set(OTHER_NAMES.values()) <= set(CATALOGUE)  # every alias points at a real drug
    cases = {
        "keytruda 200 mg every 21 d": "(it is pembrolizumab: write 'pembrolizumab')",
        "Telaglenastat 800 mg every 12 h": "(it is cb839: write 'cb839')",
        "MK3475 200 mg every 21 d": "(it is pembrolizumab: write 'pembrolizumab')",
        "pembrolizumb 200 mg every 21 d": "(did you mean 'pembrolizumab'?)",
    }
    for text, hint in cases.items():
        with pytest.raises(ValueError, match="is not in the catalogue") as e:
            parse_regimen(text)
        assert hint in str(e.value), str(e.value)


def test_a_run_past_the_schedules_horizon_warns():
    """A schedule compiled for 180 days in a 365-day run gives no dose after day 180: `prepare`
    (so `simulate` and every command) warns, naming both horizons; a run within the horizon,
    or a schedule without doses, does not warn."""
    import warnings

    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import prepare

    s = compile_schedule([parse_regimen("pembrolizumab 200 mg every 21 d")], 180)
    assert s.horizon == 180.0
    with pytest.warns(UserWarning, match=r"compiled for 180 days .* days=365: no dose is given"):
        prepare(CSC_IMMUNE, s, 365)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(CSC_IMMUNE, s, 180)
        prepare(CSC_IMMUNE, s, 90)
        prepare(CSC_IMMUNE, compile_schedule([], 10), 365)
        # an NM-TRAN table lists every dose: its schedule has no horizon to go past
        four = compile_schedule([parse_regimen("pembrolizumab 200 mg q3w x 4")], 180)
        back = from_nmtran(to_nmtran(four))[1]
        assert back.horizon is None
        prepare(CSC_IMMUNE, back, 180)


def test_two_drugs_in_one_regimen_and_an_unknown_drug_get_a_pointer():
    """'a, b' (or 'a ... b') in one regimen points to ' + '; a drug that is neither a near miss
    nor another name of a catalogue drug points to --drug-file."""
    from vcohort.drugs import get_drug

    for text in ("pembrolizumab 200 mg q3w, cb839", "pembrolizumab 200 mg q3w cb839 800 mg bid"):
        with pytest.raises(ValueError, match=r"unexpected word 'cb839'.*joined by ' \+ ' in --arm"):
            parse_regimen(text)
    with pytest.raises(ValueError, match=r"unexpected word '\+'.*regimens = \[...\]"):
        parse_regimen("pembrolizumab 200 mg q3w + cb839 800 mg bid")  # not an --arm
    with pytest.raises(ValueError) as e:
        parse_regimen("pembrolizumab 200 mg q3w foo")
    assert "' + '" not in str(e.value)  # a stray word is not a second drug
    with pytest.raises(
        ValueError, match=r"'nivolumab' is not in the catalogue \(a drug of your own"
    ):
        get_drug("nivolumab")
    with pytest.raises(ValueError, match=r"did you mean 'pembrolizumab'\?\); known"):
        get_drug("pembrolizumabb")

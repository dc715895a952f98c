import dataclasses
import re

import numpy as np
import pytest

from vcohort.cohort import make_cohort
from vcohort.model import CSC_IMMUNE
from vcohort.plausibility import plausible_cohort, screen
from vcohort.population import Plausibility, load_population

# a short screening window and run-in, and one chunk shape (CH patients) for every call, keep
# the number of compiles (the cost of these tests) small; bounds are set per test
LOOSE = Plausibility(28, 1.0, 0.99, (0.0, 1.0), {})
CH = 8


def _pop(**bounds):
    return dataclasses.replace(load_population(), plausibility=dataclasses.replace(LOOSE, **bounds))


@pytest.mark.slow
def test_each_bound_rejects_with_its_reason():
    c = make_cohort(24, seed=4, runin_days=30, chunk_size=CH)
    base = screen(c, CSC_IMMUNE, LOOSE, chunk_size=CH)
    assert base["plausible"].all() and (base["reason"] == "").all()
    # bounds placed inside the spread this cohort actually shows, so each must bite
    vol = base["screen_max_volume_ratio"].to_numpy()
    shrink = base["screen_min_diameter_ratio"].to_numpy()
    csc_hi = base["screen_csc_max"].to_numpy()
    dbl = 28.0 / np.log2(np.median(vol))  # median patient grows faster than allowed
    cases = {
        "explosive growth": dataclasses.replace(LOOSE, min_volume_doubling_days=dbl),
        "vanishing": dataclasses.replace(LOOSE, max_shrinkage=1 - np.median(shrink) + 1e-9),
        "csc fraction": dataclasses.replace(LOOSE, csc_fraction=(0.0, np.median(csc_hi))),
    }
    for reason, bounds in cases.items():
        t = screen(c, CSC_IMMUNE, bounds, chunk_size=CH)
        rej = t[~t["plausible"]]
        assert 0 < len(rej) < len(t), reason
        assert rej["reason"].str.startswith(reason).all(), rej["reason"].tolist()
    # the explosive-growth reason names the first day past the bound and the bound there
    t = screen(c, CSC_IMMUNE, cases["explosive growth"], chunk_size=CH)
    for text in t.loc[~t["plausible"], "reason"]:
        m = re.match(r"explosive growth: volume x([\d.e+]+) by day (\d+) \(bound x([\d.e+]+)", text)
        assert m, text
        vol, day, bound = float(m[1]), int(m[2]), float(m[3])
        assert vol > bound and bound == pytest.approx(2 ** (day / dbl), rel=1e-3), text


def test_non_finite_patients_are_rejected_as_solver_failures():
    c = make_cohort(8, seed=4, runin_days=0)
    y0 = dict(c.y0)
    y0["T8"] = y0["T8"].copy()
    y0["T8"][2] = np.nan
    t = screen(c.replace(y0=y0), CSC_IMMUNE, LOOSE, chunk_size=CH)
    assert t["plausible"].tolist() == [True, True, False] + [True] * 5
    assert t.loc[2, "reason"].startswith("solver: non-finite")


def test_replacements_give_the_requested_size_and_a_table_of_rejections():
    # median CSC fraction bound: about half the drawn patients are rejected
    probe = screen(
        make_cohort(24, seed=9, runin_days=30, chunk_size=CH), CSC_IMMUNE, LOOSE, chunk_size=CH
    )
    hi = float(np.median(probe["screen_csc_max"]))
    pop = _pop(csc_fraction=(0.0, hi))
    kw = dict(population=pop, seed=9, runin_days=30, chunk_size=CH)
    cohort, table = plausible_cohort(24, **kw)
    assert len(cohort) == 24
    rejected = table[~table["plausible"]]
    assert len(rejected) > 0 and (rejected["reason"] != "").all()
    # kept ids are exactly the plausible ones, in draw order; no rejected id is kept
    assert cohort.patient_id.tolist() == table.loc[table["plausible"], "patient"].tolist()
    assert not set(rejected["patient"]) & set(cohort.patient_id.tolist())
    # without replacement the cohort is just the plausible part of the first 24
    short, t2 = plausible_cohort(24, **kw, replace=False)
    assert len(short) == int(t2["plausible"].sum()) < 24
    # too strict bounds: a clear error instead of an endless loop
    with pytest.raises(ValueError, match="plausible"):
        plausible_cohort(8, **(kw | {"population": _pop(csc_fraction=(0.0, 1e-6))}))


@pytest.mark.slow
def test_same_seed_and_id_give_the_same_patient_whatever_the_chunk_size():
    whole = make_cohort(10, seed=3, runin_days=30, chunk_size=CH)  # chunks of 8 (2nd padded)
    chunked = make_cohort(10, seed=3, runin_days=30, chunk_size=4)
    tail = make_cohort(4, seed=3, runin_days=30, first_id=6, chunk_size=4)
    for k, v in whole.y0.items():
        np.testing.assert_array_equal(v, chunked.y0[k], err_msg=k)
        np.testing.assert_array_equal(v[6:], tail.y0[k], err_msg=k)
    np.testing.assert_array_equal(
        whole.covariates["pdl1_positive"][6:], tail.covariates["pdl1_positive"]
    )
    # the screening verdicts do not depend on the chunk size either
    pop = _pop(max_shrinkage=0.05)
    kw = dict(population=pop, seed=3, runin_days=30, replace=False)
    _, t1 = plausible_cohort(10, **kw, chunk_size=CH)
    _, t2 = plausible_cohort(10, **kw, chunk_size=4)
    assert t1["reason"].tolist() == t2["reason"].tolist()


def test_the_pool_is_drawn_up_to_max_draws_not_refused_before(monkeypatch):
    """1 patient in 10 plausible: the 100th plausible id is 990, so 991 draws suffice under
    the default limit of 10 n + 64 = 1064; the last replacement batch is capped at the limit
    (it was refused when its estimated size would overshoot).  One more needed: refused, with
    the draws made (a limit of 990 leaves 99).  (Simulation stubbed: ids decide plausibility.)"""
    import numpy as np
    import pandas as pd

    import vcohort.plausibility as P
    from vcohort.cohort import Cohort
    from vcohort.population import load_population

    def make(n, first_id=0, **kw):
        return Cohort(np.arange(first_id, first_id + n), {}, {}, {}, {}, "m", 0)

    def screen(c, model, bounds, **kw):
        ok = c.patient_id % 10 == 0
        reason = np.where(ok, "", "vanishing: stub")
        return pd.DataFrame({"patient": c.patient_id, "plausible": ok, "reason": reason})

    monkeypatch.setattr(P, "make_cohort", make)
    monkeypatch.setattr(P, "screen", screen)
    cohort, table = P.plausible_cohort(100, population=load_population(), model=object())
    assert len(cohort) == 100 and cohort.patient_id[-1] == 990 and len(table) == 991
    with pytest.raises(ValueError, match=r"only 99 of 990 .* need more than max_draws=990"):
        P.plausible_cohort(100, population=load_population(), model=object(), max_draws=990)
    with pytest.raises(ValueError, match=r"loosen the population's plausibility bounds"):
        P.plausible_cohort(100, population=load_population(), model=object(), max_draws=990)

    def failing(c, model, bounds, **kw):  # every rejection a numerical failure
        ok = c.patient_id % 10 == 0
        reason = np.where(ok, "", "solver: non-finite state")
        return pd.DataFrame({"patient": c.patient_id, "plausible": ok, "reason": reason})

    monkeypatch.setattr(P, "screen", failing)
    with pytest.raises(ValueError, match=r"failed numerically for all of them: use a smaller dt"):
        P.plausible_cohort(100, population=load_population(), model=object(), max_draws=990)


def test_replacement_batches_reuse_the_first_batch_s_compiled_shape(monkeypatch, request):
    """A replacement batch larger than the cohort (about half rejected: 6 wanted, 17 drawn
    next) ran in a chunk of its own size, one more compile of the run-in and the screening."""
    import vcohort.simulate as S

    traces = []
    original = S.patient_fn

    def counting(plan):
        run = original(plan)

        def traced(*a):
            traces.append(plan.days)  # once per trace (a new shape), never per call
            return run(*a)

        return traced

    saved = dict(S._CACHE)
    S._CACHE.clear()
    request.addfinalizer(lambda: S._CACHE.update(saved))
    monkeypatch.setattr(S, "patient_fn", counting)
    probe = screen(make_cohort(24, seed=9, runin_days=30, chunk_size=CH), CSC_IMMUNE, LOOSE)
    hi = float(np.median(probe["screen_csc_max"]))
    traces.clear()
    S._CACHE.clear()
    cohort, table = plausible_cohort(6, population=_pop(csc_fraction=(0.0, hi)), seed=9,
                                     runin_days=30)  # fmt: skip
    assert len(cohort) == 6 and len(table) > 6  # replacements were drawn
    assert sorted(traces) == [28, 30], traces  # screening and run-in, each traced once


@pytest.mark.parametrize("max_draws", [-5, 7, 2.5, True])
def test_max_draws_below_the_cohort_is_refused_before_compute(max_draws):
    """max_draws=-5 drew (and simulated) the whole first batch of 8, then reported it."""
    import vcohort.plausibility as P

    with pytest.raises(
        ValueError, match=r"max_draws=.*; allowed: a whole number >= patients \(8\)"
    ):
        P.plausible_cohort(8, max_draws=max_draws, seed=0)

"""Sensitivity analysis: autodiff sensitivities vs finite differences, the Sobol wrapper on the
Ishigami function (known indices), the model Sobol path, ranking, plots and the CLI."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import assert_matches_stored

from vcohort.cli import main
from vcohort.cohort import make_cohort
from vcohort.dosing import compile_schedule
from vcohort.model import CSC_IMMUNE
from vcohort.runs import parse_arm
from vcohort.sensitivity import (
    LocalResult,
    build_problem,
    evaluator,
    local_sensitivities,
    rank_local,
)
from vcohort.sensitivity_plot import tornado_local, tornado_sobol
from vcohort.simulate import simulate
from vcohort.sobol import default_ranges, model_sobol, sobol_indices

PEMBRO = "pembro=pembrolizumab 200 mg every 21 d over 30 min"
# shared by the CLI test (same compiled function).  No run-in scan here: forward-mode compile
# time grows with each scan body (~1-2 min each on a loaded 2-core CPU); the run-in's values
# are checked in `test_rebuilt_run_in_reproduces_make_cohort`
LOCAL = dict(days=10, endpoint="log_diameter", runin_days=0)


@pytest.fixture(scope="module")
def local_run():
    """Pembrolizumab vs untreated (a contrast), PK included, initial state rebuilt from the
    parameters: compiled once for the module."""
    cohort = make_cohort(3, seed=5, runin_days=LOCAL["runin_days"])
    problem = build_problem(
        CSC_IMMUNE,
        parse_arm(PEMBRO),
        LOCAL["days"],
        LOCAL["endpoint"],
        reference=parse_arm("untreated"),
        runin_days=LOCAL["runin_days"],
    )
    return cohort, problem, local_sensitivities(problem, cohort, mode="forward")


@pytest.mark.slow
def test_a_patient_whose_rate_the_step_cannot_follow_is_left_out(local_run):
    """One patient's k_TGF at 40/day (rate x dt = 4 at dt 0.1): its endpoint would be finite
    and wrong, so its row is NaN (left out of the ranking, as `simulate` flags it unstable);
    the others are the run's own values."""
    cohort, problem, res = local_run
    k = np.array(cohort.params["k_TGF"], dtype=np.float64)
    k[1] = 40.0
    bad = local_sensitivities(problem, cohort.with_params(k_TGF=k), mode="forward")
    assert bad.unstable.tolist() == [False, True, False]
    assert np.isnan(bad.value[1]) and np.isnan(bad.grad[1]).all()
    np.testing.assert_array_equal(bad.grad[[0, 2]], res.grad[[0, 2]])
    assert rank_local(bad).n_patients.iloc[0] == 2


@pytest.mark.slow
def test_autodiff_matches_central_finite_differences(local_run):
    cohort, problem, res = local_run
    assert res.grad.shape == (3, len(problem.names)) and np.all(np.isfinite(res.grad))
    # the rebuilt initial state reproduces the cohort's own simulation (make_cohort)
    ev = evaluator(problem)
    drugs = ("pembrolizumab",)
    sim = {
        a: simulate(
            CSC_IMMUNE,
            cohort,
            compile_schedule(list(parse_arm(s).regimens), 10.0, drugs=drugs),
            10,
            progress=False,
        )
        for a, s in (("pembro", PEMBRO), ("control", "untreated"))
    }
    direct = np.log(sim["pembro"].daily["diameter_mm"][:, -1]) - np.log(
        sim["control"].daily["diameter_mm"][:, -1]
    )
    np.testing.assert_allclose(res.value, direct, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ev(cohort), direct, rtol=1e-10, atol=1e-12)
    # central differences in log θ, step h = 1e-3: truncation ~h²·E''' ≈ 1e-6 of the
    # derivative, round-off ~1e-16/h: a 1e-4 relative tolerance (+1e-9 absolute) is tight
    # enough to catch any wrong term yet safe (the discrete RK4 solution is smooth in θ)
    h = 1e-3
    for name in ("q_T8", "K_PD1", "pembrolizumab.CL", "v_N"):
        j = problem.names.index(name)

        def shifted(sign, name=name):
            f = math.exp(sign * h)
            if "." in name:
                d, q = name.split(".")
                pk = {k: dict(v) for k, v in cohort.pk.items()}
                pk[d][q] = pk[d][q] * f
                return cohort.replace(pk=pk)
            return cohort.with_params(**{name: cohort.params[name] * f})

        fd = (ev(shifted(+1)) - ev(shifted(-1))) / (2 * h)
        np.testing.assert_allclose(res.grad[:, j], fd, rtol=1e-4, atol=1e-9, err_msg=name)
        assert np.max(np.abs(fd)) > 1e-6, f"{name}: a parameter with no effect tests nothing"


@pytest.mark.slow
def test_rebuilt_run_in_reproduces_make_cohort():
    """With ``runin_days`` the initial state is rebuilt from θ and the immune run-in simulated
    inside the differentiated function; at the cohort's own θ it must give make_cohort's run."""
    cohort = make_cohort(2, seed=9, runin_days=6)
    problem = build_problem(CSC_IMMUNE, parse_arm("untreated"), 5, "log_tumour_cells", runin_days=6)
    tr = simulate(CSC_IMMUNE, cohort, None, 5, progress=False)
    direct = np.log(tr.states["S"][:, -1] + tr.states["N"][:, -1])
    np.testing.assert_allclose(evaluator(problem)(cohort), direct, rtol=1e-12)
    # and it is not the trivial agreement of a run-in that does nothing
    no_runin = build_problem(
        CSC_IMMUNE, parse_arm("untreated"), 5, "log_tumour_cells", runin_days=0
    )
    assert np.max(np.abs(evaluator(no_runin)(cohort) - direct)) > 1e-6


@pytest.mark.slow
def test_ranking_and_tornado(local_run, tmp_path):
    _, problem, res = local_run
    table = rank_local(res)
    assert len(table) == len(problem.names) and table["rank"].tolist()[:3] == [1, 2, 3]
    assert set(table.kind) == {"model", "pk"}
    # independently: with 3 patients the median is the middle of the sorted values (no
    # interpolation), and the ranking orders the names by median |S|, ties in table order
    mid = {n: sorted(res.grad[:, j])[1] for j, n in enumerate(problem.names)}
    mid_abs = {n: sorted(np.abs(res.grad[:, j]))[1] for j, n in enumerate(problem.names)}
    assert table.parameter.tolist() == sorted(problem.names, key=lambda n: -mid_abs[n])
    t = table.set_index("parameter")
    assert t["median"].to_dict() == mid and t["median_abs"].to_dict() == mid_abs
    png = tornado_local(table, tmp_path / "t.png", top=5, title="x")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_ranking_uses_median_absolute_value_and_skips_failed_patients():
    problem = type("P", (), {"names": ("a", "b", "c"), "kinds": ("model",) * 3})()
    grad = np.array([[1.0, -4.0, 0.1], [2.0, -3.0, -0.1], [3.0, -1.0, 0.2], [np.nan, 9, 9]])
    res = LocalResult(problem, np.arange(4), np.array([0.0, 0, 0, 0]), grad, "forward", 0.0)
    t = rank_local(res)
    assert t.parameter.tolist() == ["b", "a", "c"]  # |median| 3 > 2 > 0.1 (row 4 dropped)
    assert t.n_patients.tolist() == [3, 3, 3]
    assert t.loc[0, "median"] == -3.0
    assert t.loc[0, "q25"] == pytest.approx(-3.5) and t.loc[0, "q75"] == pytest.approx(-2.0)
    assert t.n_zero.tolist() == [0, 0, 0]
    # patients whose every sensitivity is 0 (a cleared tumour under a clamped endpoint) are
    # counted, so that a ranking of zero medians can be told apart from a real one
    zero = np.vstack([grad, np.zeros((2, 3))])
    res0 = LocalResult(problem, np.arange(6), np.zeros(6), zero, "forward", 0.0)
    assert rank_local(res0).n_zero.tolist() == [2, 2, 2]


def test_tornado_shows_the_ranking_quantity(tmp_path, monkeypatch):
    """Bars are medians, but the order is by median |S|: the plot marks median |S| (on the
    side of the median) so that a short bar ranked above a long one is explained."""
    import matplotlib.figure

    saved = []
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda self, *a, **k: saved.append(self)
    )
    problem = type("P", (), {"names": ("a", "b"), "kinds": ("model",) * 2})()
    grad = np.array([[5.0, -1.0], [-4.0, -1.0], [0.5, -1.0]])  # a: median 0.5, median |S| 4
    t = rank_local(LocalResult(problem, np.arange(3), np.zeros(3), grad, "forward", 0.0))
    assert t.parameter.tolist() == ["a", "b"]
    tornado_local(t, tmp_path / "t.png")
    [ax] = saved[0].axes
    [marks] = [ln for ln in ax.lines if ln.get_label() == "median |S| (rank)"]
    np.testing.assert_allclose(marks.get_xdata(), [4.0, -1.0])


def test_sobol_tornado_shows_st_intervals_below_zero_and_keeps_the_backend(tmp_path, monkeypatch):
    """ST 0.02 ± 0.08 (not told apart from 0): the axis starts at -0.06, not at S1's lowest
    end (it cut the interval off at 0); and drawing the plot leaves the caller's matplotlib
    backend as it was (it switched a notebook's to Agg)."""
    import matplotlib
    import matplotlib.figure

    saved = []
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda self, *a, **k: saved.append(self)
    )
    t = pd.DataFrame(
        {
            "parameter": ["a", "b"],
            "ST": [0.7, 0.02],
            "ST_conf": [0.05, 0.08],
            "S1": [0.6, 0.01],
            "S1_conf": [0.05, 0.005],
        }
    )
    before = matplotlib.get_backend()
    tornado_sobol(t, tmp_path / "s.png")
    assert matplotlib.get_backend() == before
    [ax] = saved[0].axes
    assert ax.get_xlim()[0] <= -0.06 + 1e-12


# --------------------------------------------------------------------------- Sobol
def test_sobol_wrapper_reproduces_the_ishigami_indices():
    """`vcohort.validation.sobol_check`: S1 and ST against the closed form (rendered in
    docs/model.md), with one vectorised evaluation of every sample row."""
    from SALib.test_functions import Ishigami

    from vcohort.validation.sobol_check import ishigami_analytic, ishigami_check

    s1, st = ishigami_analytic()
    np.testing.assert_allclose(s1, [0.3139, 0.4424, 0.0], atol=1e-4)  # the literature values
    np.testing.assert_allclose(st, [0.5576, 0.4424, 0.2437], atol=1e-4)
    calls = []

    def evaluate(X):  # vectorised: one call with every sample row
        calls.append(X.shape)
        return Ishigami.evaluate(X)

    chk = ishigami_check(2**13, seed=7, evaluate=evaluate)
    assert chk.passed, chk.failures()
    assert calls == [(2**13 * 5, 3)]
    assert_matches_stored(chk)  # the check `vcohort validate` renders (same n and seed)
    # the check can fail: swapping x1 and x2 in the function swaps their indices
    swapped = ishigami_check(2**13, seed=7, evaluate=lambda X: Ishigami.evaluate(X[:, [1, 0, 2]]))
    assert not swapped.passed
    names = ["x1", "x2", "x3"]
    table, _, _ = sobol_indices(Ishigami.evaluate, names, [[-math.pi, math.pi]] * 3, 2**10)
    assert table.parameter.tolist() == ["x1", "x2", "x3"]  # ranked by ST
    # names follow the columns: permuting the evaluator's inputs permutes the indices
    perm, _, _ = sobol_indices(
        lambda X: Ishigami.evaluate(X[:, [1, 0, 2]]), names, [[-math.pi, math.pi]] * 3, 2**10
    )
    p = perm.set_index("parameter")
    assert p.loc["x1", "S1"] == pytest.approx(s1[1], abs=0.1)
    assert p.loc["x2", "S1"] == pytest.approx(s1[0], abs=0.1)


def test_sobol_wrapper_validates_inputs():
    f = lambda X: X.sum(axis=1)  # noqa: E731
    with pytest.raises(ValueError, match="power of 2"):
        sobol_indices(f, ["a", "b"], [[0, 1], [0, 1]], 100)
    with pytest.raises(ValueError, match="range of b"):
        sobol_indices(f, ["a", "b"], [[0, 1], [1, 1]], 64)
    with pytest.raises(ValueError, match="low > 0"):
        sobol_indices(f, ["a", "b"], [[0, 1], [0.5, 1]], 64, scale="log")
    with pytest.raises(ValueError, match="non-finite"):
        with np.errstate(invalid="ignore"):
            sobol_indices(lambda X: np.log(X[:, 0] - 0.5), ["a", "b"], [[0, 1], [0, 1]], 64)


def _additive(X):
    """ln a + 2 ln b: with a, b log-uniform on [1, e] (ln a, ln b ~ U(0, 1)) the indices are
    S1 = ST = 1/5 and 4/5 (variances 1/12 and 4/12, no interaction)."""
    return np.log(X[:, 0]) + 2 * np.log(X[:, 1])


def test_sobol_drops_the_blocks_of_failed_base_samples():
    """Three non-finite endpoints in the blocks of base samples 5 and 300 (SALib lays each
    base sample out as d + 2 = 4 rows): both blocks are dropped, the other 1022 analysed, and
    the failures counted.  Tolerance 0.01: the estimators are near exact on an additive
    function (4e-5 off with nothing dropped, 3e-4 with these two blocks dropped), while
    dropping only the failed rows misaligns the blocks (ST of b then 1.08)."""
    rows = [5 * 4 + 1, 5 * 4 + 3, 300 * 4]

    def f(X):
        Y = _additive(X)
        Y[rows] = np.nan
        return Y

    e = [[1, math.e], [1, math.e]]
    table, X, Y = sobol_indices(f, ["a", "b"], e, 1024, scale="log", seed=1)
    t = table.set_index("parameter")
    for col in ("S1", "ST"):
        np.testing.assert_allclose(t.loc[["a", "b"], col], [0.2, 0.8], atol=0.01, err_msg=col)
    assert np.isnan(Y[rows]).all() and len(Y) == 1024 * 4  # every row returned, failed ones NaN
    fails = table.attrs["failures"]
    assert fails["base_samples"] == 1024 and fails["failed_base_samples"] == 2
    assert fails["failed_evaluations"] == 3 and fails["dropped_evaluations"] == 8
    assert [x["base_sample"] for x in fails["examples"]] == [5, 300]
    assert fails["examples"][0] == {"base_sample": 5, "a": X[21, 0], "b": X[21, 1]}
    clean, _, _ = sobol_indices(_additive, ["a", "b"], e, 1024, scale="log", seed=1)
    assert clean.attrs["failures"]["failed_base_samples"] == 0


def test_sobol_refuses_more_than_one_percent_of_failed_base_samples():
    """1% of 128 base samples is 1.28: one failed block is dropped, two are refused."""
    e = [[1, math.e], [1, math.e]]

    def failing(blocks):
        def f(X):
            Y = _additive(X)
            Y[[4 * b for b in blocks]] = np.inf
            return Y

        return f

    ok, _, _ = sobol_indices(failing([7]), ["a", "b"], e, 128, scale="log")
    assert ok.attrs["failures"]["failed_base_samples"] == 1
    with pytest.raises(
        ValueError,
        match=r"^2 of 128 base samples \(1\.6%; 2 of 512 evaluations\) gave a non-finite "
        r"endpoint, e\.g\. at a=.*; at most 1% may fail \(dropping more biases",
    ):
        sobol_indices(failing([7, 90]), ["a", "b"], e, 128, scale="log")


def test_sobol_samples_are_limited_to_max_patients_before_sampling():
    from vcohort.config import MAX_PATIENTS

    calls = []
    f = lambda X: calls.append(X.shape) or _additive(X)  # noqa: E731
    e = [[1, math.e], [1, math.e], [1, math.e]]
    big = 2**25  # 5 x 2^25 = 1.7e8 evaluations
    assert big * 5 > MAX_PATIENTS >= (big // 2) * 5
    with pytest.raises(
        ValueError,
        match=rf"^samples={big}: N x \(d \+ 2\) = {big} x \(3 \+ 2\) = {big * 5} evaluations"
        rf" .* exceed the limit of {MAX_PATIENTS} patients; the largest samples for 3 "
        rf"parameters is {big // 2}$",
    ):
        sobol_indices(f, ["a", "b", "c"], e, big, scale="log")
    assert calls == []


def test_default_ranges_follow_the_parameter_table():
    r = default_ranges(CSC_IMMUNE, ["q_T8", "K_PD1", "h_PD1"])
    om = CSC_IMMUNE.params["q_T8"].omega  # CV 60%: ±2 log-normal SD
    typical = CSC_IMMUNE.params["q_T8"].value
    np.testing.assert_allclose(r[0], typical * np.exp([-2 * om, 2 * om]))
    np.testing.assert_allclose(r[1], [0.25, 1.0])  # fixed in the table: ×/÷ 2
    np.testing.assert_allclose(r[2], [0.45, 1.0])  # a maximal suppression: capped at 1
    with pytest.raises(ValueError, match="not a parameter"):
        default_ranges(CSC_IMMUNE, ["nope"])


def test_model_sobol_on_a_vectorised_cohort(tmp_path):
    """Untreated tumour, 14 days, initial state held fixed.  MTT (neutrophil maturation) does
    not enter the tumour equations, so its total index must be exactly 0; growth rates must
    carry the variance."""
    problem = build_problem(CSC_IMMUNE, parse_arm("untreated"), 14, "log_diameter", runin_days=None)
    names = ["v_N", "d_N", "MTT"]
    table, samples, _ = model_sobol(problem, names, 256, seed=3)  # 1280 virtual patients
    assert len(samples) == 256 * 5 and np.all(np.isfinite(samples.endpoint))
    t = table.set_index("parameter")
    assert t.loc["MTT", "ST"] == 0.0 and t.loc["MTT", "S1"] == 0.0
    # v_N multiplies the Gompertz drive (~3.5): its range moves the net growth rate ~3x more
    # than d_N's range (same CV), so it dominates; d_N's index must still be significantly > 0
    assert t.loc["v_N", "ST"] > 0.5 > t.loc["d_N", "ST"] > t.loc["d_N", "ST_conf"]
    # over 14 days log-diameter is nearly additive in the two rates: S1 sum ≈ 1 within MC error
    err = t.loc["v_N", "S1_conf"] + t.loc["d_N", "S1_conf"]
    assert t.loc["v_N", "S1"] + t.loc["d_N", "S1"] == pytest.approx(1.0, abs=err)
    # each sample row is a virtual patient: row 0 simulated directly gives the same endpoint
    from vcohort.sobol import cohort_of_samples

    c = cohort_of_samples(problem, names, samples[names].to_numpy()[:1])
    tr = simulate(CSC_IMMUNE, c, None, 14, progress=False)
    assert samples.endpoint[0] == pytest.approx(np.log(tr.daily["diameter_mm"][0, -1]), 1e-12)
    png = tornado_sobol(table, tmp_path / "s.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- CLI
def test_cli_sobol_writes_samples_and_their_dictionary(tmp_path):
    out = tmp_path / "sob"
    args = ["sensitivity", "--method", "sobol", "--params", "v_N,d_N", "--samples", "4"]
    args += ["--days", "5", "--runin-days", "0", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples) == 4 * (2 + 2) and list(samples.columns) == ["v_N", "d_N", "endpoint"]
    cols = pd.read_csv(out / "columns.csv", keep_default_na=False).set_index(["file", "column"])
    assert (cols.meaning != "").all()
    # sampled parameter values keep the parameter's own unit and meaning
    assert cols.loc[("samples.parquet", "v_N"), "unit"] == CSC_IMMUNE.params["v_N"].unit
    assert cols.loc[("ranking.csv", "ST"), "meaning"].startswith("Sobol total-order")
    m = json.loads((out / "manifest.json").read_text())
    assert m["evaluations"] == 16 and set(m["ranges"]) == {"v_N", "d_N"}
    # what varied, how each range was made, and that N = 4 cannot be read as a ranking
    assert m["parameters"] == ["v_N", "d_N"] and "v_S" in m["held_at_typical"]
    assert m["range_rules"]["v_N"].startswith("value x exp(±2 omega)") and m["imprecise"]


def test_cli_sobol_says_where_range_sd_does_not_act(tmp_path, capsys):
    """--range-sd scales the ranges of variable parameters; a fixed one (h_PD1) keeps x/÷ 2,
    which the user is told (the ranking depends on the ranges' widths)."""
    out = tmp_path / "sob"
    args = ["sensitivity", "--method", "sobol", "--params", "v_N,h_PD1", "--samples", "4"]
    args += ["--range-sd", "1", "--days", "3", "--runin-days", "0", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "h_PD1 is fixed in the parameter table and ranges x/÷ 2" in err
    m = json.loads((out / "manifest.json").read_text())
    # h_PD1 = 0.9 x/÷ 2 would reach 1.8: its range [0.45, 1] is capped, and the rule says so
    assert m["ranges"]["h_PD1"][1] == 1.0
    assert m["range_rules"]["h_PD1"] == (
        "x/÷ 2 (fixed in the parameter table), capped at 1 (a fraction)"
    )
    assert m["range_rules"]["v_N"].startswith("value x exp(±1 omega)")
    # without --range-sd the user is told too (README: "the command says which")
    plain = [a for a in args if a not in ("--range-sd", "1")]
    assert main([*plain, "--out", str(tmp_path / "sob2")]) == 0
    err = capsys.readouterr().err
    assert "--range-sd (2) sets" in err and "h_PD1 is fixed in the parameter table" in err


def test_cli_sobol_reports_failed_samples(tmp_path, capsys, monkeypatch):
    """One virtual patient of 512 with a non-finite endpoint (the evaluator replaced by a
    closed form, so nothing is compiled): its base sample is dropped, and the terminal, the
    manifest and samples.parquet say which and how many."""
    import vcohort.sobol as S

    def fake(problem, chunk_size=512, progress=None):
        def evaluate(cohort):
            y = np.log(cohort.params["v_N"]) + 2 * np.log(cohort.params["d_N"])
            y[6] = np.nan  # base sample 1 (rows 4-7)
            return y

        return evaluate

    monkeypatch.setattr(S, "evaluator", fake)
    out = tmp_path / "sob"
    args = ["sensitivity", "--method", "sobol", "--params", "v_N,d_N", "--samples", "128"]
    assert main([*args, "--days", "5", "--runin-days", "0", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples) == 512 and np.isnan(samples.endpoint[6])  # kept, not hidden
    assert np.isfinite(samples.endpoint.drop(6)).all()
    v_n = samples.v_N[6]
    assert (
        f"note: 1 of 128 base samples gave a non-finite endpoint (e.g. at v_N={v_n:.4g}, "
        f"d_N={samples.d_N[6]:.4g}); their 4 evaluations are left out of the indices" in err
    )
    m = json.loads((out / "manifest.json").read_text())
    assert (m["failed_base_samples"], m["failed_evaluations"]) == (1, 1)
    assert (m["evaluations"], m["evaluations_used"], m["max_failed_fraction"]) == (512, 508, 0.01)
    assert m["failed_examples"] == [{"base_sample": 1, "v_N": v_n, "d_N": samples.d_N[6]}]


def test_a_bad_parameter_value_names_the_patients():
    """Before compute: the error names the first patients (row and id) and their values."""
    cohort = make_cohort(4, seed=1, first_id=100, runin_days=0)
    v = np.array(cohort.params["q_T8"], dtype=np.float64)
    v[[0, 2]] = -1.0, np.nan
    problem = build_problem(CSC_IMMUNE, parse_arm("untreated"), 3, "log_diameter", runin_days=0)
    with pytest.raises(ValueError) as e:
        local_sensitivities(problem, cohort.with_params(q_T8=v))
    assert str(e.value) == (
        "parameter q_T8: 2 of 4 patients have a value that is not finite and > 0 (row 0 "
        "(patient 100): -1, row 2 (patient 102): nan); every patient's value must be finite "
        "and > 0"
    )


def test_cli_validates_before_compute(tmp_path, capsys):
    base = ["sensitivity", "--days", "10", "--out", str(tmp_path / "o")]
    cases = [
        (["--endpoint", "nope"], None),  # argparse choices: exit 2
        (["--patients", "0"], "--patients"),
        (["--method", "sobol", "--params", "v_N,nope"], "--params='v_N,nope': parameter 'nope'"),
        (["--method", "sobol", "--params", "v_N,q_T8", "--samples", "12"], "power of 2"),
        (["--method", "sobol", "--params", "v_N,q_T8", "--range", "v_N=2:1"],
         "vcohort: error: range of v_N: 2.0:1.0; need finite low < high\n"),
        # N (d + 2) evaluations past MAX_PATIENTS (1e8): refused before sampling
        (["--method", "sobol", "--params", "v_N,d_N", "--samples", str(2**30)],
         f"--samples={2**30}: N x (d + 2) = {2**30} x (2 + 2) = {2**32} evaluations (one "
         "virtual patient each) exceed the limit of 100000000 patients; the largest --samples "
         "for 2 parameters is 16777216"),
        (["--versus", "untreated"], "--versus"),
        (["--regimen", "pembrolizumab 200 mg every 21 days", "--runin-days", "-1"], "--runin"),
        # a fraction's range past 1 (h_PD1 is a maximal suppression)
        (["--method", "sobol", "--params", "v_N,h_PD1", "--range", "h_PD1=0.5:1.5"], "(0, 1]"),
        # the same arm as its own reference: every sensitivity would be 0
        (["--arm", PEMBRO, "--versus", PEMBRO.replace("pembro=", "ref=")], "same regimens"),
        # flags the method ignores
        (["--samples", "64"], "--samples applies to --method sobol"),
        (["--method", "sobol", "--params", "v_N,q_T8", "--patients", "9"], "--patients applies"),
        # a rate whose default range (x/÷ 2 of 14.3/day) makes the RK4 step at dt 0.1 unstable:
        # the endpoint would be finite and wrong (total indices above 2 were measured)
        (["--method", "sobol", "--params", "v_N,k_TGF"], "k_TGF: 7.15:28.6 with dt 0.1"),
        # the model's own bounds: f_S0 < 1 (non-stem cells must remain)
        (["--method", "sobol", "--params", "v_N,f_S0", "--range", "f_S0=0.5:1"], "(0, 1)"),
        # one parameter, two ranges: which one? refused, naming both
        (["--method", "sobol", "--params", "v_N,d_N", "--range", "v_N=0.01:0.02",
          "--range", "v_N=0.001:0.5"], "v_N already has --range 'v_N=0.01:0.02'"),
        (["--method", "sobol", "--params", "v_N,d_N", "--range-sd", "0"], "--range-sd 0.0"),
        # a coarse dt: k_TGF (14.3/day, held typical) makes RK4 unstable; endpoints were
        # finite and wrong (k_TGF ranked first, sign flipped) with no word said
        (["--dt", "0.5"], "--dt 0.5: the typical k_TGF gives a rate of 14.3/day"),
        (["--method", "sobol", "--params", "v_N,d_N", "--dt", "0.5"], "--dt 0.5: the typical"),
        # MTT enters as ktr = 4/MTT: its low end is a rate the step cannot follow
        (["--method", "sobol", "--params", "MTT,ANC0", "--range", "MTT=0.14:5"],
         "its transit rate 4/MTT reaches 28.6/day"),
        (["--method", "sobol", "--params", "v_N,v_N,d_N"], "v_N given more than once"),
        (["--method", "sobol", "--params", "v_N,d_N", "--seed", "-1"], "--seed=-1"),
        (["--method", "sobol", "--params", "v_N,pembrolizumab.CL", "--no-pk", "--regimen",
          "pembrolizumab"], "pembrolizumab.CL is held at its typical value with --no-pk"),
    ]  # fmt: skip
    for extra, msg in cases:
        if msg is None:
            with pytest.raises(SystemExit):
                main(base + extra)
            continue
        assert main(base + extra) == 2, extra
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_reverse_mode_equals_forward_mode(local_run):
    """Reverse mode (the default, through `Plan.reverse_mode`'s hand-written RK4 sweep) and
    forward mode are two independent derivative computations of the same discrete solution:
    they must agree to round-off (1e-10 relative to the largest sensitivity; measured 2e-15)."""
    cohort, problem, fwd = local_run
    rev = local_sensitivities(problem, cohort)
    assert rev.mode == "reverse"
    np.testing.assert_array_equal(rev.value, fwd.value)
    scale = np.max(np.abs(fwd.grad))
    np.testing.assert_allclose(rev.grad, fwd.grad, rtol=0, atol=1e-10 * scale)


@pytest.mark.slow
def test_cli_local_writes_ranked_table_and_plot(local_run, tmp_path, capsys):
    out = tmp_path / "sens"
    args = ["sensitivity", "--patients", "3", "--seed", "5", "--days", str(LOCAL["days"])]
    args += ["--endpoint", LOCAL["endpoint"], "--runin-days", str(LOCAL["runin_days"])]
    args += ["--arm", PEMBRO, "--versus", "untreated", "--top", "5", "--out", str(out)]
    assert main(args) == 0
    table = pd.read_csv(out / "ranking.csv")
    _, problem, res = local_run  # same patients and question as the library call
    np.testing.assert_allclose(
        table.set_index("parameter").loc[list(problem.names), "median"],
        np.median(res.grad, axis=0),
        rtol=1e-9,
        atol=1e-15,
    )
    per = pd.read_parquet(out / "sensitivities.parquet")
    assert len(per) == 3 and "pembrolizumab.CL" in per
    assert (out / "tornado.png").read_bytes()[:4] == b"\x89PNG"
    m = json.loads((out / "manifest.json").read_text())
    assert m["method"] == "local" and m["mode"] == "reverse"  # auto
    assert m["endpoint_unit"] == "ln(mm)" and "e-fold" in m["sensitivity"]
    # the data dictionary: the parameter columns of sensitivities.parquet are derivatives
    cols = pd.read_csv(out / "columns.csv", keep_default_na=False)
    assert (cols.meaning != "").all(), cols[cols.meaning == ""]
    per_col = cols[cols.file == "sensitivities.parquet"].set_index("column")
    assert per_col.loc["pembrolizumab.CL", "unit"] == "ln(mm) per e-fold"
    assert per_col.loc["pembrolizumab.CL", "meaning"].startswith(
        "d(endpoint)/d(ln pembrolizumab.CL)"
    )
    assert "log_diameter[pembro] - log_diameter[untreated]" in per_col.loc["endpoint", "meaning"]
    assert set(cols.file) == {"ranking.csv", "sensitivities.parquet"}
    assert "pembro" in capsys.readouterr().out
    (out / "keep").write_text("x")
    assert main(args) == 2 and (out / "keep").exists()  # no overwrite without --overwrite


@pytest.mark.slow
def test_triple_benefit_drivers_have_the_biology_s_signs_and_match_the_document():
    """`vcohort validate`'s drivers check: finite sensitivities for every patient, CD8 terms
    with the signs of T-cell-mediated benefit, and the ranking rendered in docs/model.md."""
    from vcohort.validation.drivers import SIGNS, triple_benefit_drivers

    chk = triple_benefit_drivers()
    assert chk.passed, chk.failures()
    assert all(np.sign(chk.values[f"median_S_{k}"]) == s for k, s in SIGNS.items())
    assert_matches_stored(chk)


@pytest.mark.parametrize(
    "endpoint", ["log_diameter", "log_burden_auc", "csc_fraction", "anc_nadir"]
)
def test_an_endpoint_the_model_cannot_give_is_refused_when_the_problem_is_built(endpoint):
    """Kuznetsov 1994 has no diameter, CSC fraction or ANC: build_problem accepted these and
    local_sensitivities failed later with a bare KeyError."""
    from vcohort.model.reference import KUZNETSOV1994

    with pytest.raises(ValueError, match=rf"endpoint '{endpoint}' needs the daily output .* model "
                       r"'kuznetsov1994' lacks; allowed for it: "):  # fmt: skip
        build_problem(KUZNETSOV1994, parse_arm("untreated"), 10, endpoint, runin_days=None)


def test_a_fraction_range_error_states_the_models_own_interval():
    """f_S0 must stay below 1 (the model's bounds are open at 1), and the error says (0, 1)."""
    from vcohort.model import CSC_IMMUNE
    from vcohort.sobol import check_model_ranges

    with pytest.raises(ValueError, match=r"range of f_S0: 0.05:1.5; .* within \(0, 1\)$"):
        check_model_ranges(CSC_IMMUNE, ["f_S0"], [[0.05, 1.5]], 0.1)

"""Published reference models through the production engine (issue 5, part 1).

The checks (`vcohort.validation.published`) compare each model with an *independent* scipy
``solve_ivp`` of the published equations (written out from the papers, not from
`vcohort.model.reference`) and reproduce a qualitative result of its paper; the same records are
rendered in docs/model.md.
"""

from __future__ import annotations

import pytest
from conftest import assert_matches_stored

from vcohort.validation import published


def test_kuznetsov_matches_independent_scipy_solve():
    chk = published.kuznetsov_agreement()
    assert chk.passed, chk.failures()


def test_kuznetsov_dormancy_or_escape_depends_on_initial_size():
    chk = published.kuznetsov_dormancy()
    assert chk.passed, chk.failures()
    assert_matches_stored(chk)


def test_reference_model_endpoints_degrade_to_burden_change():
    """No RECIST without a diameter: endpoints report burden change and clearance instead."""
    from vcohort.endpoints import patient_endpoints
    from vcohort.simulate import simulate

    m, c = published._cohort("kuznetsov1994", [1e6, 3e8])
    ep = patient_endpoints(simulate(m, c, None, 60, save_every=30, progress=False))
    assert "bor" not in ep and {"best_pct_change", "tumour_cleared"} <= set(ep.columns)
    assert not ep["tumour_cleared"].any()


@pytest.mark.slow
def test_depillis_matches_independent_scipy_solve():
    chk = published.depillis_agreement()
    assert chk.passed, chk.failures()


@pytest.mark.slow
def test_depillis_combination_clears_where_either_alone_fails():
    chk = published.depillis_combination()
    assert chk.passed, chk.failures()
    assert_matches_stored(chk)


def test_a_wrong_reference_solution_fails_the_agreement_check(monkeypatch):
    """The agreement check can fail: a 1e-5 error in the independent solve is caught."""
    real = published.kuznetsov_scipy
    monkeypatch.setattr(published, "kuznetsov_scipy", lambda *a: real(*a) * (1 + 1e-5))
    chk = published.kuznetsov_agreement()
    assert not chk.passed and chk.values["max_rel_error_T"] > 9e-6


# ---------------------------------------------------------------- CLI
def test_cli_simulates_a_reference_model_with_its_own_states(tmp_path, capsys):
    import json

    import pandas as pd

    from vcohort.cli import main

    out = tmp_path / "run"
    argv = ["simulate", "--model", "kuznetsov1994", "--patients", "4", "--days", "20"]
    assert main(argv + ["--no-progress", "--out", str(out)]) == 0
    tc = pd.read_parquet(out / "timecourse.parquet")
    assert {"E", "T", "tumour_cells", "effector_cells"} <= set(tc.columns)
    assert "S" not in tc and "diameter_mm" not in tc
    assert json.loads((out / "manifest.json").read_text())["model"] == "kuznetsov1994"
    summary = pd.read_csv(out / "summary.csv")
    assert "tumour_cleared" in summary and "orr" not in summary
    assert "kuznetsov1994: 4 patients" in capsys.readouterr().out
    # every column written is described, with the model's own state meanings and units
    cols = pd.read_csv(out / "columns.csv", keep_default_na=False).set_index(["file", "column"])
    tcc = cols.loc["timecourse.parquet"]
    assert (tcc["meaning"] != "").all(), tcc[tcc["meaning"] == ""]
    assert tcc.loc["effector_cells", "unit"] == "cells"
    assert tcc.loc["E", "meaning"] == "state: effector (cytotoxic) immune cells"
    # the per-arm timings sit under "arms": an arm named total_s cannot replace the run's own
    out2 = tmp_path / "run2"
    argv2 = argv + ["--arm", "total_s=untreated", "--no-progress", "--out", str(out2)]
    assert main(argv2) == 0
    timings = json.loads((out2 / "manifest.json").read_text())["timings"]
    assert isinstance(timings["total_s"], float) and "total_s" in timings["arms"]


def test_depillis_outputs_are_described():
    from vcohort.columns import describe
    from vcohort.model import get_model

    m = get_model("depillis2009")
    assert describe("cd8_cells", m) == ("cells/L", "tumour-specific CD8+ T cells, L")
    assert describe("C", m) == ("cells/L", "state: circulating lymphocytes")


def test_cli_refuses_a_drug_the_model_does_not_have(capsys):
    from vcohort.cli import main

    argv = ["simulate", "--model", "depillis2009", "--regimen", "pembrolizumab", "--out", "x"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pembrolizumab" in err and "chemo, il2, til" in err


def test_a_drug_for_a_model_without_drugs_says_so(capsys):
    from vcohort.cli import main

    argv = ["simulate", "--model", "kuznetsov1994", "--regimen", "pembrolizumab", "--out", "x"]
    assert main(argv) == 2
    assert "known drugs: none (this model is simulated untreated only)" in capsys.readouterr().err

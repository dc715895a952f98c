"""SBML export (issue 5, part 4): valid SBML L3V2 that libroadrunner (an independent
implementation reading our equations) solves to vcohort's own solution."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_matches_stored

roadrunner = pytest.importorskip("roadrunner")

from vcohort.cli import main  # noqa: E402
from vcohort.cohort import make_cohort  # noqa: E402
from vcohort.dosing import compile_schedule, parse_regimen  # noqa: E402
from vcohort.sbml import patient_sbml  # noqa: E402
from vcohort.validation.sbml_agreement import roadrunner_agreement  # noqa: E402


@pytest.mark.slow
def test_roadrunner_solution_of_the_export_matches_vcohort():
    """3 virtual patients, one untreated and two on a three-drug regimen (IV infusion, oral
    q24h, BSA-dosed chemotherapy), 42 days: libroadrunner (CVODE, rtol 1e-10) on the exported
    file vs vcohort's scipy reference (LSODA, rtol 1e-10), all within 1e-5 relative (measured
    ~1e-9); see `vcohort.validation.sbml_agreement`."""
    chk = roadrunner_agreement()
    assert chk.passed, chk.failures()
    assert len(chk.criteria) == 5  # two treated patients' event counts + 3 agreement criteria
    assert_matches_stored(chk)  # the check `vcohort validate` renders in docs/model.md


def test_cli_exports_valid_sbml_with_patient_params(tmp_path, capsys):
    over = tmp_path / "p.json"
    over.write_text(json.dumps({"k_T": 1.2345, "weight_kg": 90.0, "pembrolizumab.CL": 0.3}))
    out = tmp_path / "m.xml"
    argv = ["export-sbml", "--out", str(out), "--regimen", "pembrolizumab 200 mg every 21 d"]
    argv += ["--drugs", "cb839", "--days", "42", "--patient-params", str(over)]
    assert main(argv) == 0
    text = out.read_text()
    assert roadrunner.validateSBML(text) == ""
    assert 'id="k_T" value="1.2345"' in text
    assert text.count("<event ") == 2 and 'id="cb839_central"' in text
    # individual CL = 0.3 * (90/76.8)^0.595 (Ahamadi allometry) is what the file holds
    assert f'id="pembrolizumab_CL" value="{0.3 * (90 / 76.8) ** 0.595!r}"' in text
    assert main([*argv, "--row", "1", "--out", str(tmp_path / "r.xml")]) == 2  # JSON: one row
    assert "is JSON (one patient)" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"no_such_param": 1.0}))
    assert main(["export-sbml", "--out", str(tmp_path / "b.xml"), "--patient-params", str(bad)])
    assert "no_such_param" in capsys.readouterr().err
    frac = tmp_path / "frac.json"  # a baseline CSC fraction must be a fraction
    frac.write_text(json.dumps({"f_S0": 1.5}))
    assert main(["export-sbml", "--out", str(tmp_path / "f.xml"), "--patient-params", str(frac)])
    assert "f_S0=1.5 must lie in (0, 1)" in capsys.readouterr().err


def test_simultaneous_doses_of_one_drug_are_all_exported():
    """A loading dose with the first maintenance dose, two boluses at one time and an infusion
    starting as another stops: SBML evaluates simultaneous events from the same values, so one
    event per dose kept only one change (100 mg of doxorubicin became 40, the second infusion
    left -100 mg/day running).  The export sums them: libroadrunner agrees with the reference."""
    c = make_cohort(1, seed=4)
    regs = [
        "doxorubicin 60 mg start 1 d",
        "doxorubicin 40 mg start 1 d",
        "pembrolizumab 200 mg start 1 d over 1 d",
        "pembrolizumab 100 mg start 2 d over 1 d",
        # the stop 0.1 + 0.2 and the next start 0.3 differ in the last bit: still one event
        "doxorubicin 10 mg start 0.1 d over 0.2 d",
        "doxorubicin 5 mg start 0.3 d over 1 d",
    ]
    s = compile_schedule([parse_regimen(r) for r in regs], 5.0)
    sbml = patient_sbml(c, 0, s)
    assert roadrunner.validateSBML(sbml) == ""
    # dox at day 1 and its rate at 0.1, 0.3, 1.3; pembrolizumab's rate at days 1, 2, 3
    assert 0.1 + 0.2 != 0.3 and sbml.count("<event ") == 7
    assert_roadrunner_agrees(sbml, c, s, 5)
    # concentrations are read as max(amount, 0) / V1: an adaptive solver's round-off
    # undershoot of an emptied compartment cannot give NaN under a Hill exponent
    rule = sbml.split('variable="conc_doxorubicin_central">')[1].split("</assignmentRule>")[0]
    assert rule.count("<piecewise>") == 1 and "<ci> doxorubicin_central </ci>" in rule


def test_cli_patient_params_from_a_run_table(tmp_path, capsys):
    """A row of a run's patients.parquet (screening columns skipped, PD-L1 status a flag) is
    exported under its own id; --row picks another row; a BSA that weight and height do not
    give is refused (it would be ignored)."""
    import pandas as pd

    c = make_cohort(3, seed=2, first_id=40)
    table = c.to_frame().assign(screen_csc_min=0.1, pdl1_positive=[False, True, False])
    path = tmp_path / "patients.parquet"
    table.to_parquet(path)
    out = tmp_path / "m.xml"
    argv = ["export-sbml", "--out", str(out), "--patient-params", str(path), "--row", "1"]
    assert main(argv) == 0
    assert 'id="vcohort_csc_immune_patient_41"' in out.read_text()
    assert "patient 41" in capsys.readouterr().out
    assert main([*argv[:-1], "0", "--overwrite"]) == 0  # PD-L1-negative: a flag, not "<= 0"
    assert main([*argv[:-1], "3", "--overwrite"]) == 2
    assert "--row=3" in capsys.readouterr().err
    bad = pd.DataFrame({"weight_kg": [80.0], "height_cm": [180.0], "bsa_m2": [2.5]})
    bad.to_csv(tmp_path / "bsa.csv", index=False)
    argv = ["export-sbml", "--out", str(tmp_path / "b.xml"), "--patient-params"]
    assert main([*argv, str(tmp_path / "bsa.csv")]) == 2
    assert "bsa_m2=2.5 is computed from weight_kg and height_cm" in capsys.readouterr().err


def test_a_run_table_patient_keeps_the_run_s_own_run_in(tmp_path):
    """A trial run with runin_days = 30: its patient's day-0 state is rebuilt with 30 days (read
    from the manifest beside patients.parquet), not the model's 240 (the exported MDSC at day 0
    was 3.7e9 against the run's 2.1e9)."""
    import json
    from types import SimpleNamespace

    from vcohort.cli.tools import _run_runin
    from vcohort.model import CSC_IMMUNE
    from vcohort.sbml import read_overrides, with_overrides

    c = make_cohort(2, seed=2, runin_days=30)
    path = tmp_path / "patients.parquet"
    c.to_frame().to_parquet(path)
    (tmp_path / "manifest.json").write_text(
        json.dumps({"config": {"simulation": {"runin_days": 30, "dt": 0.1}}})
    )
    args = SimpleNamespace(patient_params=str(path), runin_days=None)
    assert _run_runin(args) == (30, 0.1)
    typical = make_cohort(1, seed=0, variability=False)
    got = with_overrides(typical, CSC_IMMUNE, read_overrides(str(path), 1), runin_days=30)
    for k in c.y0:
        np.testing.assert_allclose(got.y0[k][0], c.y0[k][1], rtol=1e-9, err_msg=k)
    model_default = with_overrides(typical, CSC_IMMUNE, read_overrides(str(path), 1))
    assert abs(model_default.y0["MDSC"][0] / c.y0["MDSC"][1] - 1) > 0.05  # 240 d: another state
    assert _run_runin(SimpleNamespace(patient_params=str(path), runin_days=5)) == (5, 0.1)
    # a simulate run keeps its dt under config (and the model's run-in)
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"dt": 0.05}}))
    assert _run_runin(args) == (None, 0.05)
    assert _run_runin(SimpleNamespace(patient_params=str(path), runin_days=5)) == (5, 0.05)
    (tmp_path / "manifest.json").unlink()
    assert _run_runin(args) == (None, 0.1)  # no manifest: the model's run-in


def test_cli_on_grid_places_doses_as_the_simulator(tmp_path, capsys):
    """--on-grid 0.1: a 30-minute infusion every 8 h is written as the simulator gives it (start
    on the 0.1-day grid, one whole step long); without it, at the regimen's exact times."""
    import re

    base = ["export-sbml", "--regimen", "pembrolizumab 200 mg every 8 h x 3 over 30 min"]
    base += ["--days", "2"]
    times = {}
    for name, extra in (("exact", []), ("grid", ["--on-grid", "0.1"])):
        out = tmp_path / f"{name}.xml"
        assert main([*base, *extra, "--out", str(out)]) == 0
        trig = r"<cn> ([-0-9.e]+) </cn></apply></math></trigger>"
        times[name] = sorted(float(t) for t in re.findall(trig, out.read_text()))
    h = 1 / 48  # 30 minutes
    assert times["exact"] == pytest.approx([0, h, 1 / 3, 1 / 3 + h, 2 / 3, 2 / 3 + h])
    assert times["grid"] == pytest.approx([0, 0.1, 0.3, 0.4, 0.7, 0.8])
    assert main([*base, "--on-grid", "0.3", "--out", str(tmp_path / "x.xml")]) == 2
    assert "--on-grid=0.3" in capsys.readouterr().err


def test_reference_model_export_runs_in_roadrunner(tmp_path):
    """de Pillis 2009 with its drugs dosed into states: the export reproduces the engine
    (measured: roadrunner 4e-8, engine at dt = 0.005 4e-7 from an LSODA solve)."""
    from vcohort.model import get_model
    from vcohort.simulate import simulate

    m = get_model("depillis2009")
    c = make_cohort(1, seed=0, model=m, variability=False)
    s = compile_schedule([parse_regimen("chemo", m.drug_catalogue())], 10.0)
    rr = roadrunner.RoadRunner(patient_sbml(c, 0, s))
    rr.integrator.relative_tolerance = 1e-10
    rr.integrator.absolute_tolerance = 1e-12  # T falls to ~10 cells: 1e-6 gave 2e-3 there
    res = rr.simulate(0, 10, 11, ["time", "T", "M"])
    tr = simulate(m, c, s, 10, dt=0.005, save_every=1, progress=False)
    np.testing.assert_allclose(res["T"], tr.states["T"][0], rtol=1e-5)
    np.testing.assert_allclose(res["M"], tr.states["M"][0], rtol=1e-5, atol=1e-9)


def test_export_of_a_drug_with_a_marrow_chain_matches_vcohort():
    """Dacarbazine carries a 4-compartment delay chain to its myelotoxicity site
    (`vcohort.drug.Drug.marrow_chain`): the export holds the chain's species and concentration,
    and libroadrunner solves it to vcohort's scipy reference within 1e-6 relative over 6 weeks
    (boluses, which both place exactly; measured ~1e-11).  The ANC is compared too: the chain
    only acts through it."""

    c = make_cohort(1, seed=4)
    s = compile_schedule([parse_regimen("dacarbazine 1000 mg/m2 every 21 d")], 42.0)
    sbml = patient_sbml(c, 0, s)
    assert roadrunner.validateSBML(sbml) == ""
    for name in ("dacarbazine_marrow4", "conc_dacarbazine_marrow", "dacarbazine_mtt_marrow"):
        assert f'id="{name}"' in sbml, name
    fin_vc = assert_roadrunner_agrees(sbml, c, s, 42)
    assert fin_vc["ANC"] < 0.9 * c.y0["ANC"][0]  # the chain's effect is in the comparison


def assert_roadrunner_agrees(sbml: str, cohort, schedule, days: int, rtol: float = 1e-6) -> dict:
    """libroadrunner on the exported patient 0 against vcohort's scipy reference: the daily
    diameters and every final state within ``rtol``; returns the reference's final state."""
    from vcohort.reference import solve_patient_scipy
    from vcohort.validation.sbml_agreement import run_roadrunner

    states = list(cohort.y0)
    d_rr, fin_rr = run_roadrunner(sbml, days, states)
    d_vc, fin_vc = solve_patient_scipy(cohort, 0, schedule, days, dt=0.1)
    np.testing.assert_allclose(d_rr, d_vc, rtol=rtol)
    for k in states:
        assert fin_rr[k] == pytest.approx(fin_vc[k], rel=rtol, abs=1e-300), k
    return fin_vc


def test_the_notes_state_every_unit():
    """The README sends readers to the file's notes for the drug amounts' units; they held only
    "Time in days"."""
    import re
    from html import unescape

    from vcohort.drugs import CATALOGUE

    c = make_cohort(1, seed=0, runin_days=0, variability=False)
    s = compile_schedule([parse_regimen("pembrolizumab 200 mg over 30 min")], 5.0)
    sbml = patient_sbml(c, 0, s, drugs=["dacarbazine", "cd133_cart"])
    assert roadrunner.validateSBML(sbml) == ""
    notes = unescape(" ".join(re.findall(r"<p>(.*?)</p>", sbml.split("</notes>")[0])))
    for needle in (
        "Units: time in days",
        "S (cells)",
        "IL6 (nM)",
        "ANC (1e9/L)",
        "amounts pembrolizumab_central, pembrolizumab_peripheral1 in mg;",
        "conc_pembrolizumab_* in mg/L; pembrolizumab_infusion_rate in mg/day",
        "pembrolizumab_CL (L/day), pembrolizumab_V1 (L)",
        "dacarbazine_marrow4 in mg (effect, marrow1, marrow2, marrow3, marrow4: virtual amounts",
        "dacarbazine_mtt_marrow (day)",
        "amounts cd133_cart_central in 1e6 cells; concentrations conc_cd133_cart_* in 1e6 cells/L",
        "e_pd1_occupancy (fraction 0-1)",
        # the model parameters' units were in docs/model.md only
        "Model parameters: ",
        "k_TGF (1/day)",
    ):
        assert needle in notes, needle
    assert CATALOGUE["cd133_cart"].amount_unit == "1e6 cells"
    from vcohort.model import get_model

    m = get_model("depillis2009")
    dp = make_cohort(1, seed=0, model=m, variability=False)
    text = patient_sbml(dp, 0, compile_schedule([parse_regimen("chemo", m.catalogue)], 5.0))
    assert "Drug chemo: doses add to state M (mg/L); chemo_infusion_rate in mg/L per day" in text


def test_the_typical_patient_has_the_population_s_median_covariates(tmp_path):
    """Without --patient the export said "typical parameters" while weight (e.g. 92.9 kg) and
    baseline diameter stayed drawn and changed with --seed: now the covariates are the
    population's medians, so the file does not depend on the seed."""
    from vcohort.cli.tools import typical_cohort
    from vcohort.cohort import bsa_dubois
    from vcohort.drugs import PEMBROLIZUMAB
    from vcohort.model import CSC_IMMUNE
    from vcohort.population import load_population

    cov = load_population().covariates
    w, h, b = (cov[k].median for k in ("weight_kg", "height_cm", "baseline_diameter_mm"))
    c = typical_cohort(CSC_IMMUNE, runin_days=0)
    assert c.covariates["weight_kg"][0] == w and c.covariates["baseline_diameter_mm"][0] == b
    assert c.covariates["bsa_m2"][0] == pytest.approx(bsa_dubois(w, h), rel=1e-12)
    texts = []
    for seed in ("0", "7"):
        out = tmp_path / f"s{seed}.xml"
        argv = ["export-sbml", "--out", str(out), "--seed", seed, "--days", "21"]
        assert main([*argv, "--regimen", "pembrolizumab 2 mg/kg every 21 d"]) == 0
        texts.append(out.read_text())
    assert texts[0] == texts[1]
    cl = PEMBROLIZUMAB.params["CL"].value * (w / PEMBROLIZUMAB.ref_weight) ** 0.595
    assert f'id="pembrolizumab_CL" value="{cl!r}"' in texts[0]
    assert f"<cn> {2.0 * w!r} </cn>" in texts[0]  # the 2 mg/kg dose for the median weight


def test_a_drug_named_twice_is_exported_once_and_bad_input_is_refused_before_the_run_in(
    tmp_path, capsys, monkeypatch
):
    """'cb839,CB839' gave two concentrations of one drug, combined by Bliss as 1 - (1 - E)^2
    (0.98 for 0.87 at 20 mg); a hold rule, an unknown override and --on-grid without a
    regimen were refused only after the cohort's run-in (or, --on-grid, not at all)."""
    import vcohort.cohort as C
    from vcohort.drugs import get_drug
    from vcohort.model import CSC_IMMUNE
    from vcohort.sbml import to_sbml

    once, twice = tmp_path / "once.xml", tmp_path / "twice.xml"
    assert main(["export-sbml", "--out", str(once), "--drugs", "cb839", "--days", "30"]) == 0
    assert main(["export-sbml", "--out", str(twice), "--drugs", "cb839,CB839", "--days", "30"]) == 0
    assert once.read_text() == twice.read_text()
    d = get_drug("cb839")
    with pytest.raises(ValueError, match="drugs: cb839 given more than once"):
        to_sbml(CSC_IMMUNE, {}, {}, drugs=[d, d])

    real = C.make_cohort

    def no_runin(*a, **k):  # the typical patient without run-in may check the overrides
        assert k.get("runin_days") == 0, "a cohort was run in before the input was checked"
        return real(*a, **k)

    monkeypatch.setattr(C, "make_cohort", no_runin)
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"foo": 1.0}))
    cases = [
        (["--regimen", "doxorubicin 75 mg/m2 every 21 d hold if ANC < 1.0"], "hold rules"),
        (["--regimen", "pembrolizumab 200 mg q3w", "--patient", "3", "--patient-params", str(bad)],
         "'foo' is not a parameter"),
        (["--on-grid", "0.1"], "--on-grid=0.1 moves doses onto the simulator's grid, and no "
         "--regimen gives any"),
    ]  # fmt: skip
    for extra, msg in cases:
        assert main(["export-sbml", "--out", str(tmp_path / "x.xml"), *extra]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "x.xml").exists()


def test_units_are_declared_and_libsbml_finds_no_unit_inconsistency():
    """Every species and every parameter with a known unit carries an SBML unit definition (they
    were in the notes only, so COPASI/SimBiology unit checks had nothing to check); libsbml's
    consistency checks, units included, report no error and no inconsistent units."""
    libsbml = pytest.importorskip("libsbml")  # in the test extra: installed by .ci/run
    from vcohort.sbml import parse_unit, unit_definition

    # the unit strings of the parameter tables, as (factor, SI kinds)
    assert parse_unit("1/day") == (pytest.approx(1 / 86400), {"second": -1})
    assert parse_unit("nM/day") == (
        pytest.approx(1e-9 / 86400),
        {"mole": 1, "litre": -1, "second": -1},
    )
    assert parse_unit("cells/mL/day") == (
        pytest.approx(1e3 / 86400),
        {"item": 1, "litre": -1, "second": -1},
    )
    assert parse_unit("1e9/L") == (1e9, {"item": 1, "litre": -1})  # 10^9 cells per litre
    assert parse_unit("10^9/L") == parse_unit("1e9/L")
    assert parse_unit("1e6 cells") == (1e6, {"item": 1})
    assert parse_unit("L^2/(cell^2 day)") == (
        pytest.approx(1 / 86400),
        {"litre": 2, "item": -2, "second": -1},
    )
    assert parse_unit("-") == parse_unit("relative") == (1.0, {})
    assert parse_unit("IU/L") is None and parse_unit("(mg") is None and parse_unit("1/") is None
    assert unit_definition("day") == ("day", None) and unit_definition("-") == (
        "dimensionless",
        None,
    )

    c = make_cohort(1, seed=0, runin_days=0, variability=False)
    regs = (
        "pembrolizumab 200 mg over 30 min",
        "wnt974 10 mg every 24 h",
        "cb839 800 mg every 12 h",
    )
    s = compile_schedule([parse_regimen(r) for r in regs], 5.0)
    text = patient_sbml(c, 0, s, drugs=["dacarbazine", "cd133_cart"])
    doc = libsbml.readSBMLFromString(text)
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, True)
    doc.checkConsistency()
    problems = [doc.getError(i) for i in range(doc.getNumErrors())]
    errors = [e.getMessage() for e in problems if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    assert not errors, errors[:3]
    # 10501-10599: units of an expression that do not match its variable's (checked wherever
    # the units are known); 99505/99508 only say that a term has no units to check
    mismatch = [e.getMessage() for e in problems if 10500 <= e.getErrorId() < 10600]
    assert not mismatch, mismatch[:3]
    m = doc.getModel()
    assert all(sp.isSetSubstanceUnits() for sp in m.getListOfSpecies())

    def si(uid):  # a unit definition as (factor, {kind: exponent})
        ud = m.getUnitDefinition(uid)
        f, kinds = 1.0, {}
        for u in ud.getListOfUnits():
            e = u.getExponent()
            f *= (u.getMultiplier() * 10.0 ** u.getScale()) ** e
            kinds[libsbml.UnitKind_toString(u.getKind())] = e
        return f, kinds

    p = m.getParameter("k_TGF")
    assert si(p.getUnits()) == (pytest.approx(1 / 86400), {"second": -1})
    assert si(m.getSpecies("IL6").getSubstanceUnits()) == (
        pytest.approx(1e-9),
        {"mole": 1, "litre": -1},
    )
    assert si(m.getParameter("pembrolizumab_CL").getUnits()) == (
        pytest.approx(1 / 86400),
        {"litre": 1, "second": -1},
    )
    assert si(m.getParameter("conc_pembrolizumab_central").getUnits()) == (
        pytest.approx(1e-3),  # mg/L
        {"gram": 1, "litre": -1},
    )
    assert si(m.getSpecies("cd133_cart_central").getSubstanceUnits()) == (1e6, {"item": 1})
    assert m.getParameter("e_pd1_occupancy").getUnits() == "dimensionless"
    # the model's constants with a known unit all carry it
    from vcohort.model import CSC_IMMUNE

    known = [r.name for r in CSC_IMMUNE.params.rows if parse_unit(r.unit) is not None]
    assert len(known) == len(CSC_IMMUNE.params.rows)
    assert all(m.getParameter(n).isSetUnits() for n in known)
    assert roadrunner.validateSBML(text) == ""

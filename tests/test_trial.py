import json

import pandas as pd
import pytest

from vcohort.cli import main

TINY = """
title = "tiny trial"
reference_arm = "control"

[population]
preset = "default"
size = 20
seed = 7

[simulation]
horizon_days = 84
runin_days = 30
chunk_size = 8

[assessment]
every_days = 42
confirm_days = 28

[[arms]]
name = "control"
regimens = []

[[arms]]
name = "chemo_then_pembro"
sequencing = "induction-maintenance"
induction = [{ drug = "doxorubicin", dose = "75 mg/m2", every = "21 d" }]
induction_days = 42
maintenance = ["pembrolizumab 2 mg/kg every 21 d over 30 min"]
"""

FILES = (
    "manifest.json",
    "patients.parquet",
    "screening.csv",
    "timecourse.parquet",
    "endpoints.parquet",
    "summary.csv",
    "subgroups.csv",
    "figures/forest.png",
    "schedules/control.csv",
    "schedules/chemo_then_pembro.csv",
    "report.html",
)


@pytest.mark.slow
def test_tiny_trial_end_to_end_via_the_cli(tmp_path, capsys):
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY)
    out = tmp_path / "run"
    assert main(["trial", str(exp), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()  # the 6-month landmark is past day 84, the last look
    assert "note: pfs_landmark (PFS at day 182.625" in printed.err and "(day 84:" in printed.err
    for f in FILES:
        assert (out / f).stat().st_size > 0, f
    figures = sorted((out / "figures").glob("*.png"))
    assert len(figures) >= 4 and all(p.stat().st_size > 0 for p in figures)

    ep = pd.read_parquet(out / "endpoints.parquet")
    patients = pd.read_parquet(out / "patients.parquet")
    assert len(patients) == 20 and "pdl1_positive" in patients
    # every arm on the same 20 patients
    for arm in ("control", "chemo_then_pembro"):
        assert sorted(ep.loc[ep.arm == arm, "patient"]) == sorted(patients.patient)
    # the data dictionary: every column of every table has a meaning, units where they apply
    cols = pd.read_csv(out / "columns.csv", keep_default_na=False).set_index(["file", "column"])
    assert (cols["meaning"] != "").all(), cols[cols["meaning"] == ""].index.tolist()
    assert cols.loc[("endpoints.parquet", "auc_pembrolizumab"), "unit"] == "mg·day/L"
    assert cols.loc[("patients.parquet", "pembrolizumab.CL"), "unit"] == "L/day"
    assert ("schedules/ARM.csv", "CMT") in cols.index
    summary = pd.read_csv(out / "summary.csv")
    assert summary.arm.tolist() == ["control", "chemo_then_pembro"]
    for col in ("orr", "orr_ci_low", "dcr", "median_pfs_days", "pfs_landmark", "hr",
                "hr_ci_low", "median_csc_fraction_final", "grade4_neutropenia",
                "median_auc_pembrolizumab"):  # fmt: skip
        assert col in summary, col
    assert summary.loc[0, "hr_note"] == "reference" and summary.loc[0, "hr"] == 1.0
    # induction then maintenance: doxorubicin on days 0, 21; pembrolizumab from day 42
    doses = pd.read_csv(out / "schedules/chemo_then_pembro.csv")
    one = doses[doses.ID == patients.patient.iloc[0]]
    dox, pem = one[one.DRUG == "doxorubicin"], one[one.DRUG == "pembrolizumab"]
    assert dox.TIME.tolist() == [0.0] and dox.ADDL.tolist() == [1]
    assert pem.TIME.tolist() == [42.0] and pem.ADDL.tolist() == [1]
    screening = pd.read_csv(out / "screening.csv", keep_default_na=False)
    assert screening.plausible.sum() == 20
    assert (screening.reason[~screening.plausible].str.len() > 0).all()
    assert (screening.reason[screening.plausible] == "").all()
    tc = pd.read_parquet(out / "timecourse.parquet")
    assert {"patient", "arm", "day", "diameter_mm"} <= set(tc.columns)
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["population"]["size"] == 20 and m["patients"] == 20
    # the correlations as drawn: the population's own and the drugs' omega blocks
    pairs = {(c["a"], c["b"]) for c in m["population"]["correlation"]}
    assert ("a_PDL1_IFN", "pdl1") in pairs and ("pexidartinib.CL", "pexidartinib.V1") in pairs
    assert "tiny trial" in (out / "report.html").read_text()
    assert "Subgroups: PFS hazard ratio" in (out / "report.html").read_text()
    # subgroups: every default variable split in two, each row's patients counted once
    sub = pd.read_csv(out / "subgroups.csv", keep_default_na=False, na_values=[""])
    # (the default population's CSC fraction is one value, f_S0: not split, with a note)
    assert sub["variable"].unique().tolist() == ["all patients", "baseline_diameter_mm",
        "pdl1_positive", "T8_baseline", "Treg_baseline"]  # fmt: skip
    assert "note: subgroups: csc_fraction_baseline not split (one value in every" in printed.err
    per_var = sub[sub.arm == "control"].groupby("variable", sort=False)["n"].sum()
    assert (per_var == 20).all(), per_var  # the subgroups of a variable partition the cohort
    assert (sub.loc[sub.arm == "control", "hr"] == 1.0).all()
    assert sub.loc[sub.arm == "control", "interaction_p"].isna().all()
    assert "chemo_then_pembro" in printed.out
    # an existing folder is never replaced without --overwrite
    assert main(["trial", str(exp), "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_bad_experiment_fails_before_compute_and_writes_nothing(tmp_path, capsys):
    exp = tmp_path / "bad.toml"
    exp.write_text(TINY.replace("size = 20", "size = -1").replace('"control"\nregimens', '"c"\nx'))
    out = tmp_path / "run"
    assert main(["trial", str(exp), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "population.size: -1 must be >= 1" in err and "arms[0].x: unknown key" in err
    assert not out.exists()


@pytest.mark.slow
def test_trial_with_calibration_selects_patients_matching_the_target(tmp_path):
    """[calibration] in an experiment: the trial's patients are selected from a larger pool so
    that the reference arm's ORR matches the target to rounding (stratified quotas; see
    vcohort.calibrate), and calibration.json records the fit."""
    import json

    import pandas as pd

    from vcohort.cli import main

    exp = tmp_path / "cal.toml"
    exp.write_text(
        """
title = "calibrated"
reference_arm = "pembro"
[population]
size = 40
seed = 3
[simulation]
horizon_days = 210
precision = "float32"
[calibration]
orr = 0.25
pfs6 = 0.40
arm = "pembrolizumab 200 mg every 21 d"
pool = 160
[[arms]]
name = "pembro"
regimens = ["pembrolizumab 200 mg every 21 d"]
"""
    )
    out = tmp_path / "run"
    assert main(["trial", str(exp), "--out", str(out), "--no-progress"]) == 0
    ep = pd.read_parquet(out / "endpoints.parquet")
    assert len(ep) == 40
    orr = ep["bor"].isin(["CR", "PR"]).mean()
    assert abs(orr - 0.25) <= 0.5 / 40 + 1e-9  # quota rounding: one patient at most
    cal = json.loads((out / "calibration.json").read_text())
    assert "rule" in cal
    from vcohort.population import load_population

    # the fitted rule records the population the pool was drawn from
    assert cal["rule"]["population"] == load_population("default").identity()
    # applied to a pool of another population (a CSC fraction set otherwise) it selects, and
    # says so: Allen-style ratios are meant to transfer, but the user is told
    (tmp_path / "rule.json").write_text(json.dumps(cal["rule"]))
    other = exp.read_text().replace("seed = 3", "seed = 4").split("[calibration]")[0]
    other += """
[population.parameters.f_S0]
value = 0.2
source = "test: another population"
[calibration]
rule = "rule.json"
pool = 160
[[arms]]
name = "pembro"
regimens = ["pembrolizumab 200 mg every 21 d"]
"""
    (tmp_path / "other.toml").write_text(other)
    out2 = tmp_path / "other"
    assert main(["trial", str(tmp_path / "other.toml"), "--out", str(out2), "--no-progress"]) == 0
    cal2 = json.loads((out2 / "calibration.json").read_text())
    assert "draws differently" in cal2["population_note"]


def test_an_arm_parsed_with_another_drug_definition_is_refused_before_compute():
    """`simulate` doses the model's drug of that name: an arm parsed against a changed
    pembrolizumab ran silently as the catalogue's (found writing the dose-response check)."""
    import dataclasses

    from vcohort.drugs import CATALOGUE
    from vcohort.model import CSC_IMMUNE
    from vcohort.runs import check_arms, parse_arm

    pem = CATALOGUE["pembrolizumab"]
    effects = (dataclasses.replace(pem.effects[0], ec50=10.0),)
    cat = dict(CATALOGUE) | {"pembrolizumab": dataclasses.replace(pem, effects=effects)}
    arm = parse_arm("p=pembrolizumab 2 mg/kg every 21 d", cat)
    with pytest.raises(ValueError, match=r"arm 'p': .* other than model 'csc_immune'"):
        check_arms(CSC_IMMUNE, [arm], 42)
    check_arms(dataclasses.replace(CSC_IMMUNE, catalogue=cat), [arm], 42)  # consistent: fine
    check_arms(CSC_IMMUNE, [parse_arm("p=pembrolizumab 2 mg/kg every 21 d")], 42)

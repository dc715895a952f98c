import json
from pathlib import Path

import pandas as pd
import pytest

import vcohort
from vcohort.cli import main


def test_simulate_writes_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "simulate",
            "--patients",
            "5",
            "--days",
            "30",
            "--seed",
            "3",
            "--no-progress",
            "--arm",
            "pembro=pembrolizumab 2 mg/kg every 21 d",
            "--arm",
            "control=untreated",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    for f in (
        "manifest.json",
        "patients.parquet",
        "timecourse.parquet",
        "endpoints.parquet",
        "summary.csv",
        "doses_typical_patient.csv",
    ):
        assert (out / f).stat().st_size > 0, f
    ep = pd.read_parquet(out / "endpoints.parquet")
    assert set(ep.arm) == {"pembro", "control"} and len(ep) == 10
    typical = pd.read_csv(out / "doses_typical_patient.csv")  # the cohort's median weight
    weight = pd.read_parquet(out / "patients.parquet")["weight_kg"].median()
    assert typical["AMT"].to_numpy() == pytest.approx(2.0 * weight, rel=1e-9)
    for col in ("final_diameter_mm", "nadir_diameter_mm", "best_pct_change", "bor", "status"):
        assert col in ep
    tc = pd.read_parquet(out / "timecourse.parquet")
    assert {"patient", "arm", "day", "diameter_mm", "S", "T8"} <= set(tc.columns)
    assert sorted(tc.day.unique().tolist()) == [0, 7, 14, 21, 28, 30]
    m = json.loads((out / "manifest.json").read_text())
    assert m["seed"] == 3 and m["environment"]["jax"]
    assert m["population"]["name"] == "default" and m["population"]["covariates"]  # as drawn
    summary = pd.read_csv(out / "summary.csv")
    assert summary.arm.tolist() == ["pembro", "control"]
    cols = pd.read_csv(out / "columns.csv", keep_default_na=False).set_index(["file", "column"])
    assert (cols["meaning"] != "").all(), cols[cols["meaning"] == ""].index.tolist()
    assert cols.loc[("endpoints.parquet", "anc_nadir"), "unit"] == "10⁹/L"
    assert cols.loc[("timecourse.parquet", "TGFb"), "unit"] == "nM"  # from the model's table
    assert {f for f, _ in cols.index} == {
        "patients.parquet", "timecourse.parquet", "endpoints.parquet", "summary.csv",
        "doses_typical_patient.csv",
    }  # fmt: skip
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask  # not mkdtemp's private 0700
    assert ((out / "summary.csv").stat().st_mode & 0o777) == 0o666 & ~umask  # nor mkstemp's
    assert "pembro" in capsys.readouterr().out


def test_existing_folder_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    rc = main(["simulate", "--patients", "2", "--days", "7", "--out", str(out)])
    assert rc == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"


def test_overwrite_refuses_a_folder_vcohort_did_not_write_or_one_holding_an_input(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    argv = ["simulate", "--patients", "2", "--days", "7", "--out", str(out), "--overwrite"]
    assert main(argv) == 2
    assert "not a vcohort output folder" in capsys.readouterr().err
    assert (out / "thesis.docx").read_text() == "precious"
    # a run folder holding the population file given on the command line
    (out / "manifest.json").write_text("{}")
    pop = out / "pop.toml"
    pop.write_text((Path(vcohort.__file__).parent / "data/populations/default.toml").read_text())
    argv += ["--population", str(pop)]
    assert main(argv) == 2
    assert "an input of this command" in capsys.readouterr().err
    assert pop.exists() and (out / "thesis.docx").exists()
    # after the command, a library call is not judged by its inputs
    from vcohort.io import check_output_dir

    assert check_output_dir(out, True) == out
    # a file an experiment names (here its population file) counts as an input too
    exp = (Path(__file__).parents[1] / "experiments/mono_vs_triple.toml").read_text()
    exp = exp.replace('preset = "default"', f'file = "{pop}"', 1)
    (tmp_path / "exp.toml").write_text(exp)
    assert 'file = "' in exp
    assert main(["trial", str(tmp_path / "exp.toml"), "--out", str(out), "--overwrite"]) == 2
    assert "an input of this command" in capsys.readouterr().err and pop.exists()


def test_overwrite_replaces_only_on_success(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / "manifest.json").write_text("{}")  # an earlier run's folder
    assert (
        main(
            [
                "simulate",
                "--patients",
                "2",
                "--days",
                "7",
                "--no-progress",
                "--out",
                str(out),
                "--overwrite",
            ]
        )
        == 0
    )
    assert not (out / "old.txt").exists() and (out / "summary.csv").exists()


def test_overwrite_refuses_a_run_folder_that_gained_the_users_files(tmp_path, capsys):
    """A run folder lists its files (`vcohort.io.FILE_LIST`); --overwrite replaces the folder as
    a whole, so it refuses one that has gained files since (a user's analysis beside the
    results), before any compute, and keeps them; without them it replaces the folder."""
    out = tmp_path / "run"
    argv = ["simulate", "--patients", "2", "--days", "7", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    listed = json.loads((out / ".vcohort-files.json").read_text())
    assert "summary.csv" in listed and "manifest.json" in listed
    (out / "my_analysis.R").write_text("mine")
    (out / "figures").mkdir(exist_ok=True)
    (out / "figures" / "mine.png").write_bytes(b"png")
    assert main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "'figures/mine.png', 'my_analysis.R'" in err and "did not write there" in err
    assert (out / "my_analysis.R").read_text() == "mine"
    assert main(argv) == 2  # without --overwrite: the plain message
    assert "already exists and is not empty" in capsys.readouterr().err
    (out / "my_analysis.R").unlink()
    (out / "figures" / "mine.png").unlink()
    (out / ".DS_Store").write_bytes(b"")  # what a file browser leaves: not the user's work
    assert main([*argv, "--overwrite"]) == 0


def test_a_folder_that_appears_during_the_run_is_not_replaced(tmp_path):
    """--out is checked when the run starts and again before its results take the folder's
    place: a folder created meanwhile (by the user, another run) without --overwrite, or one
    vcohort did not write even with it, is kept, and so are this run's results."""
    from vcohort.io import run_folder

    for overwrite in (False, True):
        out = tmp_path / f"run{overwrite}"
        with pytest.raises(ValueError, match="this run's results are kept in") as e:
            with run_folder(out, overwrite=overwrite) as tmp:
                (tmp / "summary.csv").write_text("new\n")
                out.mkdir()
                (out / "my_notes.txt").write_text("user data\n")
        assert (out / "my_notes.txt").read_text() == "user data\n"
        kept = Path(str(e.value).rsplit("kept in ", 1)[1].strip("'"))
        assert (kept / "summary.csv").read_text() == "new\n"
    # an earlier run's folder that appeared meanwhile is replaced only with overwrite
    out = tmp_path / "earlier"
    with run_folder(out, overwrite=True) as tmp:
        (tmp / "summary.csv").write_text("new\n")
        out.mkdir()
        (out / "manifest.json").write_text("{}")
    assert sorted(x.name for x in out.iterdir()) == [".vcohort-files.json", "summary.csv"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--regimen", "aspirin 100 mg qd"], "not in the catalogue"),
        (["--regimen", "pembrolizumab -1 mg q3w"], ">= 0"),
        (["--patients", "0"], "patients"),
        (["--dt", "0.3"], "dt"),
        # the typical k_TGF x dt past RK4's stability bound (the run-in diverged silently)
        (["--dt", "0.2"], "--dt 0.2: the typical k_TGF gives a rate of 14.3/day"),
        (["--population", "martians"], "neither a preset (default) nor an existing TOML file"),
        (["--regimen", "wnt974", "--arm", "b=cb839"], "not both (e.g. --arm 'mine=wnt974')"),
        # checked only after the cohort's run-in (or the first arm) had been computed
        (["--save-every", "0"], "--save-every=0 must be >= 1"),
        (["--chunk-size", "0"], "--chunk-size=0 must be >= 1"),
        (["--assess-every", "0"], "--assess-every=0 must be >= 1"),
    ],
)
def test_bad_arguments_fail_fast_with_a_clear_message(tmp_path, capsys, args, message):
    rc = main(["simulate", "--out", str(tmp_path / "x"), *args])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_demo_prints_every_arm(capsys):
    assert main(["demo", "--patients", "8", "--days", "21", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for arm in ("untreated", "pembrolizumab", "wnt974", "cb839", "doxorubicin", "triple"):
        assert arm in out


def test_model_doc_command(tmp_path, capsys, monkeypatch):
    assert main(["model-doc", "--out", str(tmp_path / "m.md")]) == 0
    assert "## Model parameters" in (tmp_path / "m.md").read_text()
    missing = ["model-doc", "--out", str(tmp_path / "n.md"), "--validation", "typo.json"]
    assert main(missing) == 2
    assert "--validation='typo.json': no such file" in capsys.readouterr().err
    assert not (tmp_path / "n.md").exists()
    # outside the repository the default validation file is missing: said, not silent
    monkeypatch.chdir(tmp_path)
    assert main(["model-doc", "--out", "o.md"]) == 0
    assert "no docs/validation.json here" in capsys.readouterr().err
    # a file the command did not write is kept unless --overwrite (it was replaced silently)
    (tmp_path / "notes.md").write_text("my own notes\n")
    assert main(["model-doc", "--out", "notes.md"]) == 2
    assert "--out='notes.md' exists and was not written by `vcohort model-doc`" in (
        capsys.readouterr().err
    )
    assert (tmp_path / "notes.md").read_text() == "my own notes\n"
    assert main(["model-doc", "--out", "o.md"]) == 0  # its own output: regenerated
    assert main(["model-doc", "--out", "notes.md", "--overwrite"]) == 0
    assert "## Model parameters" in (tmp_path / "notes.md").read_text()


def test_export_sbml_to_a_folder_and_non_utf8_files_are_refused_by_name(tmp_path, capsys):
    (tmp_path / "dd").mkdir()
    assert main(["export-sbml", "--out", str(tmp_path / "dd"), "--overwrite"]) == 2
    assert "is a folder; give the SBML file's path" in capsys.readouterr().err
    # missing parent folders are created, as for run folders; a file in the way is named
    assert main(["export-sbml", "--days", "7", "--out", str(tmp_path / "a/b/m.xml")]) == 0
    assert (tmp_path / "a/b/m.xml").read_text().startswith("<?xml")
    (tmp_path / "f").write_text("x")
    assert main(["export-sbml", "--days", "7", "--out", str(tmp_path / "f/m.xml")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    bad = tmp_path / "latin.toml"
    bad.write_bytes(b'title = "x\xff"\n')
    for argv in (["trial", str(bad), "--out", str(tmp_path / "o")],
                 ["simulate", "--population", str(bad), "--out", str(tmp_path / "o")]):  # fmt: skip
        assert main(argv) == 2
        assert f"{str(bad)!r} is not UTF-8 text (byte 10" in capsys.readouterr().err


def test_a_dose_far_above_the_label_maximum_gets_a_note_before_compute(tmp_path, capsys):
    argv = [
        "simulate",
        "--patients",
        "2",
        "--days",
        "2",
        "--no-progress",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--regimen", "pembrolizumab 200 mg/kg q3w"]) == 0
    err = capsys.readouterr().err
    assert "one dose is 1.4e+04 mg for a typical adult (70 kg, 1.8 m2)" in err and "400 mg" in err
    assert main([*argv, "--overwrite", "--regimen", "pembrolizumab 10 mg/kg q3w"]) == 0
    assert "label maximum" not in capsys.readouterr().err  # a trial dose (KEYNOTE-006)


def test_simulate_notes_a_course_the_horizon_cuts_and_doses_summed_in_one_step(tmp_path, capsys):
    """The notes an experiment file gets at load (a counted course the horizon cuts, two
    regimens of one drug dosing in the same step) are printed by `vcohort simulate` too."""
    argv = ["simulate", "--patients", "2", "--days", "30", "--no-progress",
            "--out", str(tmp_path / "o"),
            "--arm", "a=pembrolizumab 200 mg q3w x 6 + pembrolizumab 200 mg x 1"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    every = "'pembrolizumab 200 mg every 21 d x 6'"
    assert f"arm 'a': {every}: 2 of its 6 planned doses fall within the 30-day horizon" in err
    assert "the last planned is on day 105" in err
    assert f"{every} and 'pembrolizumab 200 mg x 1' both dose in the step of day 0" in err


def test_simulate_draws_from_a_population_file(tmp_path):
    """--population FILE: the cohort's covariates follow the user's preset (here baseline
    diameters around 40 mm instead of the default 86 mm, with the default's CV 50%)."""
    from importlib import resources

    import pandas as pd

    text = (resources.files("vcohort") / "data/populations/default.toml").read_text()
    assert "median = 86.0" in text
    pop = tmp_path / "small.toml"
    pop.write_text(text.replace("median = 86.0", "median = 40.0"))
    out = tmp_path / "run"
    argv = ["simulate", "--patients", "200", "--days", "7", "--population", str(pop)]
    assert main(argv + ["--no-progress", "--out", str(out)]) == 0
    d = pd.read_parquet(out / "patients.parquet")["baseline_diameter_mm"]
    # median of 200 log-normal draws (CV 50%): standard error ~3.5%, so within 15% of 40 mm
    assert abs(d.median() / 40.0 - 1) < 0.15, d.median()


def test_version(capsys):
    from vcohort import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"vcohort {__version__}"


def test_out_refusals_come_before_compute_and_missing_parents_are_made(tmp_path, capsys,
                                                                       monkeypatch):  # fmt: skip
    """Two arms of one name and '--out .' are refused before the cohort is drawn (the first was
    refused after it; the second crashed after the compute and left the results in
    ./..tmp-*); an --out whose parent folders do not exist yet (the README's 'runs/demo' on a
    fresh checkout) is created."""
    import vcohort.cohort

    real = vcohort.cohort.make_cohort

    def no_compute(*a, **k):
        raise AssertionError("the cohort was drawn before the arguments were checked")

    monkeypatch.setattr(vcohort.cohort, "make_cohort", no_compute)
    here = tmp_path / "empty"
    here.mkdir()
    monkeypatch.chdir(here)
    for args, message in (
        (["--arm", "a=wnt974", "--arm", "a=cb839", "--out", "x"], "'a' is given more than once"),
        (["--out", "."], "--out '.' is the current folder or one that holds it"),
        (["--regimen", "wnt974 10 mg qd start 8 d", "--out", "x"], "after the horizon (7 d)"),
        (["--out", "sub/.."], "--out 'sub/..' is the current folder"),
        (["--out", ".."], "--out '..' is the current folder or one that holds it"),
    ):
        rc = main(["simulate", "--patients", "2", "--days", "7", *args])
        assert rc == 2
        assert message in capsys.readouterr().err
        assert list(here.iterdir()) == []
    monkeypatch.setattr(vcohort.cohort, "make_cohort", real)
    rc = main(["simulate", "--patients", "2", "--days", "7", "--no-progress",
               "--out", "runs/deep/demo"])  # fmt: skip
    assert rc == 0
    assert (here / "runs" / "deep" / "demo" / "summary.csv").is_file()
    assert sorted(p.name for p in (here / "runs" / "deep").iterdir()) == ["demo"]  # no temp left
    (here / "file").write_text("x")
    rc = main(["simulate", "--patients", "2", "--days", "7", "--out", "file/run"])
    assert rc == 2 and "is not a folder" in capsys.readouterr().err


def test_a_mistyped_option_names_the_one_meant(capsys):
    """argparse said only 'unrecognized arguments'; the option meant is named (compared without
    the dashes: '--foo' suggests nothing), with argparse's exit status 2, before any compute."""
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--patients", "2", "--out", "x", "--precison", "float32"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert (
        "unrecognized arguments: --precison float32 (--precison: did you mean --precision?)" in err
    )
    with pytest.raises(SystemExit):
        main(["trial", "x.toml", "--out", "y", "--overwirte", "--foo=3"])
    err = capsys.readouterr().err
    assert (
        "unrecognized arguments: --overwirte --foo=3 (--overwirte: did you mean --overwrite?)"
        in err
    )
    with pytest.raises(SystemExit):  # vcohort's own option after the command
        main(["simulate", "--patients", "2", "--out", "x", "--cpu-devices", "2"])
    assert "--cpu-devices is an option of vcohort itself, given before the command" in (
        capsys.readouterr().err
    )

"""vcohort batch: sweep expansion and validation, chunked runs without recompiling, equality with
vcohort trial, and a real kill -9 / --resume cycle."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import vcohort
from vcohort.cli import main
from vcohort.sweep import load_runs

BASE = """
title = "tiny batch"
reference_arm = "control"

[population]
preset = "default"
size = 12
seed = 3

[simulation]
horizon_days = {days}
runin_days = 30
chunk_size = 8

[assessment]
every_days = 21

[[arms]]
name = "control"
regimens = []

[[arms]]
name = "pembro"
regimens = [{{ drug = "pembrolizumab", dose = "2 mg/kg", every = "21 d", over = "30 min" }}]
"""

SWEEP = """
name = "pem"
base = "base.toml"

[sweep]
"arms.pembro.regimens.0.dose" = ["2 mg/kg", "10 mg/kg"]
population.replace_rejected = [true, false]  # unquoted: a nested table in TOML, also accepted
"""

TABLES = (
    "patients.parquet",
    "screening.csv",
    "timecourse.parquet",
    "endpoints.parquet",
    "summary.csv",
    "schedules/control.csv",
    "schedules/pembro.csv",
)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _log(out: Path) -> list[dict]:
    lines = []
    for line in (out / "batch_log.jsonl").read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by kill -9
            pass
    return lines


# ---------------------------------------------------------------------------- inputs
def test_sweep_expands_to_named_validated_runs(tmp_path, capsys):
    _write(tmp_path, "base.toml", BASE.format(days=42))
    runs = load_runs([_write(tmp_path, "s.toml", SWEEP), tmp_path / "base.toml"])
    assert main(["batch", str(tmp_path / "s.toml"), "--list", "--chunk-patients", "-3"]) == 2
    assert "--chunk-patients=-3 must be an integer >= 1" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "s.toml"), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "pem__dose-10mg-per-kg__replace_rejected-false: 12 patients x 2 arms, 42 d" in listed
    assert "4 runs; nothing computed" in listed
    assert [r.name for r in runs] == [
        "pem__dose-2mg-per-kg__replace_rejected-true",
        "pem__dose-2mg-per-kg__replace_rejected-false",
        "pem__dose-10mg-per-kg__replace_rejected-true",
        "pem__dose-10mg-per-kg__replace_rejected-false",
        "base",
    ]
    third = runs[2].experiment
    assert third.arms[1].regimens[0].describe().startswith("pembrolizumab 10 mg/kg every 21 d")
    assert third.replace_rejected is True and runs[3].experiment.replace_rejected is False
    assert runs[2].values == {
        "arms.pembro.regimens.0.dose": "10 mg/kg",
        "population.replace_rejected": True,
    }
    assert "10 mg/kg" in third.title and runs[4].values == {}


def test_a_sweep_key_that_could_mean_two_arms_and_a_bad_file_name_are_refused(tmp_path):
    """'arms.1' with an arm named "1" at position 2: the value landed in arm "2" silently;
    a sweep file without name = ... whose file name is no run name was blamed on 'name'."""
    base = BASE.format(days=42).replace('name = "pembro"', 'name = "1"')
    _write(tmp_path, "base.toml", base)
    sweep = 'base = "base.toml"\n[sweep]\n"arms.1.regimens.0.dose" = ["5 mg/kg", "10 mg/kg"]\n'
    runs = load_runs([_write(tmp_path, "ok.toml", sweep)])  # "1" is also position 1: one arm
    assert runs[0].experiment.arms[1].regimens[0].dose == 5.0
    three = base + '\n[[arms]]\nname = "2"\nregimens = ["pembrolizumab 1 mg/kg q3w"]\n'
    three = three.replace('name = "1"', 'name = "x"').replace('name = "2"', 'name = "1"')
    _write(tmp_path, "base.toml", three)  # arms control, x, 1: '1' is position 1 and arm 1
    with pytest.raises(ValueError, match=r"'1' in arms is both position 1 and the name of item 2"):
        load_runs([_write(tmp_path, "amb.toml", sweep)])
    with pytest.raises(ValueError, match=r"name: not given, and the file name 'dose sweep'"):
        load_runs([_write(tmp_path, "dose sweep.toml", sweep)])


def test_sweep_keys_reaching_one_field_and_runs_equal_once_parsed_are_refused(tmp_path):
    """A key given quoted and nested silently lost one list; an arm by name and by position
    made runs whose names said one dose and whose arms gave another; 'q3w' and 'every 21 d'
    made two runs of one experiment."""
    _write(tmp_path, "base.toml", BASE.format(days=42))
    twice = 'base = "base.toml"\n[sweep]\n"population.seed" = [1, 2]\npopulation.seed = [3, 4]\n'
    with pytest.raises(ValueError, match=r"'population.seed': given twice"):
        load_runs([_write(tmp_path, "twice.toml", twice)])
    both = (
        'base = "base.toml"\n[sweep]\n"arms.pembro.regimens.0.dose" = ["2 mg/kg", "3 mg/kg"]\n'
        '"arms.1.regimens.0" = ["pembrolizumab 4 mg/kg q3w", "pembrolizumab 5 mg/kg q3w"]\n'
    )
    with pytest.raises(ValueError, match=r"sets the table \(arms\.1\.regimens\.0\) holding"):
        load_runs([_write(tmp_path, "both.toml", both)])
    same_field = (
        'base = "base.toml"\n[sweep]\n"arms.pembro.regimens.0.dose" = ["2 mg/kg", "3 mg/kg"]\n'
        '"arms.1.regimens.0.dose" = ["4 mg/kg", "5 mg/kg"]\n'
    )
    with pytest.raises(ValueError, match=r"set the same field \(arms\.1\.regimens\.0\.dose\)"):
        load_runs([_write(tmp_path, "same_field.toml", same_field)])
    # a table, then a field inside it: each run gets both (4 runs); the other order would
    # replace the field's values with the table's, and is refused
    table = '"population" = [{preset = "default", size = 12}, {preset = "default", size = 20}]\n'
    field = '"population.seed" = [1, 2]\n'
    runs = load_runs([_write(tmp_path, "tf.toml", 'base = "base.toml"\n[sweep]\n' + table + field)])
    assert sorted((r.experiment.size, r.experiment.seed) for r in runs) == [
        (12, 1), (12, 2), (20, 1), (20, 2)
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"sets the table \(population\) holding .*give the table"):
        load_runs([_write(tmp_path, "ft.toml", 'base = "base.toml"\n[sweep]\n' + field + table)])
    same = (
        'base = "base.toml"\n[sweep]\n"arms.pembro.regimens.0" = '
        '["pembrolizumab 2 mg/kg q3w over 30 min", '
        '"pembrolizumab 2 mg/kg every 21 d over 30 min"]\n'
    )
    with pytest.raises(
        ValueError,
        match=r"the same experiment as run same__regimens-v0 \(arms.pembro.regimens.0 = "
        r'"pembrolizumab 2 mg/kg q3w over 30 min"\) once parsed: the same doses',
    ):
        load_runs([_write(tmp_path, "same.toml", same)])


def test_sweep_over_an_inline_population_parameter(tmp_path):
    """``[population.parameters.NAME]`` in an experiment sets a parameter over the preset's, so a
    sweep can vary it (here the spread of the baseline CSC fraction); a bad name or value in any
    run is reported when the files are loaded, before compute."""
    base = BASE.format(days=42).replace(
        "seed = 3\n",
        'seed = 3\n[population.parameters.f_S0]\ncv = 0.0\nupper = 0.3\nsource = "assumption: t"\n',
    )
    _write(tmp_path, "base.toml", base)
    sweep = 'base = "base.toml"\n[sweep]\n"population.parameters.f_S0.cv" = [0.0, 0.8]\n'
    runs = load_runs([_write(tmp_path, "s.toml", sweep)])
    specs = [r.experiment.population.parameters["f_S0"] for r in runs]
    assert [(p.cv, p.upper, p.value) for p in specs] == [(0.0, 0.3, None), (0.8, 0.3, None)]
    assert runs[1].experiment.population.to_dict()["parameters"]["f_S0"]["cv"] == 0.8
    bad = 'base = "base.toml"\n[sweep]\n"population.parameters.f_S0.cv" = [0.5, -1.0]\n'
    with pytest.raises(ValueError, match=r"population.parameters.f_S0.cv: -1.0 must be >= 0"):
        load_runs([_write(tmp_path, "bad.toml", bad)])
    unknown = base.replace("[population.parameters.f_S0]", "[population.parameters.f_S9]")
    with pytest.raises(ValueError, match=r"population.parameters: .*'f_S9' is not a parameter"):
        load_runs([_write(tmp_path, "unknown.toml", unknown)])
    # a spread without a cap below 1 is refused for every run at load, not when a chunk draws
    # an unlucky patient
    uncapped = base.replace("upper = 0.3\n", "")
    with pytest.raises(ValueError, match=r"draws can reach inf, but f_S0 must be < 1"):
        load_runs([_write(tmp_path, "base.toml", uncapped), _write(tmp_path, "s.toml", sweep)])
    # a PK setting ('drug.PARAM', a table key with a dot) can be swept too
    pk = base.replace(
        "[population.parameters.f_S0]",
        '[population.parameters."pembrolizumab.CL"]\nvalue = 0.2\nsource = "t"\n'
        "[population.parameters.f_S0]",
    )
    _write(tmp_path, "base.toml", pk)
    sweep_pk = (
        'base = "base.toml"\n[sweep]\n"population.parameters.pembrolizumab.CL.value" = [0.2, 0.3]\n'
    )
    runs = load_runs([_write(tmp_path, "pk.toml", sweep_pk)])
    assert [r.experiment.population.parameters["pembrolizumab.CL"].value for r in runs] == [
        0.2,
        0.3,
    ]


def test_inline_parameter_settings_merge_field_by_field_over_the_preset(tmp_path):
    """An experiment's ``[population.parameters.NAME]`` replaces only the fields it gives."""
    pop = tmp_path / "pop.toml"
    text = (Path(vcohort.__file__).parent / "data/populations/default.toml").read_text()
    pop.write_text(
        text + '\n[parameters.f_S0]\nvalue = 0.08\ncv = 0.5\nupper = 0.3\nsource = "preset"\n'
    )
    base = BASE.format(days=42).replace('preset = "default"', 'file = "pop.toml"')
    base = base.replace(
        "seed = 3\n", 'seed = 3\n[population.parameters.f_S0]\ncv = 0.9\nsource = "inline"\n'
    )
    (run,) = load_runs([_write(tmp_path, "base.toml", base)])
    spec = run.experiment.population.parameters["f_S0"]
    assert (spec.value, spec.cv, spec.lower, spec.upper, spec.source) == (
        0.08,
        0.9,
        None,
        0.3,
        "inline",
    )


def test_every_bad_input_is_reported_before_compute(tmp_path, capsys):
    _write(tmp_path, "base.toml", BASE.format(days=42))
    bad = _write(
        tmp_path,
        "bad.toml",
        """
base = "base.toml"
colour = "red"
[sweep]
"arms.placebo.regimens.0.dose" = ["1 mg/kg"]
"population.seed" = [1, 1]
"simulation.dt" = 0.1
""",
    )
    bad_value = _write(
        tmp_path,
        "bad_value.toml",
        """
base = "base.toml"
[sweep]
"arms.pembro.regimens.0.dose" = ["2 mg/kg", "3 parsecs"]
"population.size" = [0]
""",
    )
    # a key that another key's value makes unreachable (the arm it names is renamed first):
    # an error of that run, never a swept value silently left out
    dropped = _write(
        tmp_path,
        "dropped.toml",
        """
base = "base.toml"
[sweep]
"arms.1.name" = ["pA", "pB"]
"arms.pembro.regimens.0.dose" = ["2 mg/kg", "10 mg/kg"]
""",
    )
    out = tmp_path / "out"
    files = [str(bad), str(bad_value), str(dropped), str(tmp_path / "nope.toml")]
    code = main(["batch", *files, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    for text in (
        "dropped.toml [run dropped__name-pA__dose-2mg-per-kg",
        "'pembro' does not select an item of arms; use an index 0..1 or a name (control, pA)",
        "bad.toml",
        "colour: unknown key",
        "'placebo' does not select an item of arms; use an index 0..1 or a name (control, pembro)",
        "values repeat in [1, 1]",
        "'simulation.dt': expected a non-empty list",
        "bad_value.toml [run bad_value__dose-",
        "3 parsecs",
        "population.size: 0 must be >= 1",
        "nope.toml' does not exist",
    ):
        assert text in err, text
    # the same file twice: run names clash
    code = main(
        ["batch", str(tmp_path / "base.toml"), str(tmp_path / "base.toml"), "--out", str(out)]
    )
    assert code == 2 and "run name 'base' is used by" in capsys.readouterr().err


def test_summary_keeps_a_swept_reference_arm_once_and_lists_failed_runs(tmp_path):
    from vcohort.batch import batch_summary

    _write(tmp_path, "base.toml", BASE.format(days=42))
    sweep = '[sweep]\n"reference_arm" = ["control", "pembro"]\n'
    runs = load_runs([_write(tmp_path, "ref.toml", 'base = "base.toml"\n' + sweep)])
    out = tmp_path / "out"
    (out / runs[0].name).mkdir(parents=True)
    pd.DataFrame({"arm": ["control", "pembro"], "n": [12, 12], "orr": [0.0, 0.25]}).to_csv(
        out / runs[0].name / "summary.csv", index=False
    )
    s = batch_summary(runs, out, {runs[1].name: "ValueError: too few plausible patients"})
    assert list(s.columns[:3]) == ["run", "reference_arm", "arm"]
    assert s["reference_arm"].tolist() == ["control", "control", "pembro"]
    assert s["error"].tolist() == ["", "", "ValueError: too few plausible patients"]
    assert s["n"].isna().tolist() == [False, False, True]
    assert s["n"].dtype == "Int64"  # was float: "12.0" in batch_summary.csv
    # an arm named as pandas spells a missing value stays a name; empty fields stay missing
    pd.DataFrame({"arm": ["None", "NA"], "n": [12, 12], "orr": [np.nan, 0.25]}).to_csv(
        out / runs[0].name / "summary.csv", index=False
    )
    s = batch_summary(runs[:1], out)
    assert s["arm"].tolist() == ["None", "NA"] and np.isnan(s["orr"].iloc[0])
    assert s.to_csv(index=False).splitlines()[1].split(",")[s.columns.get_loc("n")] == "12"


def test_fingerprint_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    from vcohort.batch import fingerprint

    (tmp_path / "exp").mkdir()
    default = Path(vcohort.__file__).parent / "data" / "populations" / "default.toml"
    _write(tmp_path / "exp", "pop.toml", default.read_text())  # a population file of one's own
    base = BASE.format(days=42).replace('preset = "default"', 'file = "pop.toml"')
    _write(tmp_path / "exp", "base.toml", base)
    monkeypatch.chdir(tmp_path)
    here = fingerprint(load_runs(["exp/base.toml"])[0])
    monkeypatch.chdir(tmp_path / "exp")
    assert fingerprint(load_runs(["base.toml"])[0]) == here
    # a calibration rule file: hashed by its bytes, its path (relative to where the command
    # runs) left out; before, a resume from another folder recomputed finished chunks
    from vcohort.calibrate import CalibrationRule, Targets

    CalibrationRule(
        "pembrolizumab 2 mg/kg q3w", 210, Targets(0.21, 0.34), (0.2, 0.01, 0.14, 0.65),
        (1, 1, 1, 1), (4.0,), (1.0, 1.0), 1.0, 0.5,
        assessment={"assess_every": 21, "assess_first": 21},
        fit={"pool_seed": 99, "pool_ids": [0, 5]},
    ).save(tmp_path / "exp" / "rule.json")  # fmt: skip
    cal = base + '\n[calibration]\nrule = "rule.json"\npool = 24\n'
    _write(tmp_path / "exp", "cal.toml", cal)
    here = fingerprint(load_runs(["cal.toml"])[0])
    monkeypatch.chdir(tmp_path)
    assert fingerprint(load_runs(["exp/cal.toml"])[0]) == here
    rule = tmp_path / "exp" / "rule.json"
    rule.write_text(rule.read_text().replace('"pool_seed": 99', '"pool_seed": 98'))
    assert fingerprint(load_runs(["exp/cal.toml"])[0]) != here  # its contents do count


def test_a_second_invocation_on_a_running_batch_folder_is_refused(tmp_path):
    import vcohort.batch as B

    runs = load_runs([_write(tmp_path, "base.toml", BASE.format(days=42))])
    out = tmp_path / "out"
    with B.batch_lock(out):  # another invocation is running (a lock on its own open file)
        with pytest.raises(ValueError, match="another `vcohort batch` is running"):
            B.run_batch(runs, out, progress=False)
    assert not out.exists()  # refused before anything was written
    with B.batch_lock(out):  # released: the next invocation gets it
        assert (tmp_path / ".out.lock").exists()
    assert not (tmp_path / ".out.lock").exists()  # and no lock file is left beside the folder


def test_output_folder_and_resume_checks(tmp_path, capsys):
    from vcohort.batch import prepare_output

    base = _write(tmp_path, "base.toml", BASE.format(days=42))
    runs = load_runs([base])
    out = tmp_path / "out"
    state = prepare_output(runs, out, chunk_patients=4, resume=False, overwrite=False)
    assert state["runs"][0]["chunk"] == 4 and state["invocations"] == 1
    with pytest.raises(ValueError, match="already exists and is not empty"):
        prepare_output(runs, out, chunk_patients=4, resume=False, overwrite=False)
    with pytest.raises(ValueError, match="exclude each other"):
        prepare_output(runs, out, chunk_patients=4, resume=True, overwrite=True)
    with pytest.raises(ValueError, match="differs from the interrupted batch's 4"):
        prepare_output(runs, out, chunk_patients=5, resume=True, overwrite=False)
    again = prepare_output(runs, out, chunk_patients=None, resume=True, overwrite=False)
    assert again["invocations"] == 2 and again["chunk_patients"] == 4
    was = json.dumps({"config": runs[0].experiment.config}, default=str)
    base.write_text(BASE.format(days=84))  # the input changed since the batch started
    # a finished run would be skipped with the old results: refused ...
    (out / "base").mkdir()
    (out / "base" / "manifest.json").write_text("{}")
    (out / "base" / "summary.csv").write_text("arm\n")
    with pytest.raises(ValueError, match="run 'base' .* changed since it was written"):
        prepare_output(load_runs([base]), out, chunk_patients=4, resume=True, overwrite=False)
    # ... naming what changed when the finished run's manifest holds its config
    (out / "base" / "manifest.json").write_text(was)
    with pytest.raises(ValueError, match=r"written to .*\(changed: simulation.horizon_days\)"):
        prepare_output(load_runs([base]), out, chunk_patients=4, resume=True, overwrite=False)
    # ... an unfinished one is computed afresh (its stale chunks are recomputed, `_chunk`)
    shutil.rmtree(out / "base")
    prepare_output(load_runs([base]), out, chunk_patients=4, resume=True, overwrite=False)
    (out / "intruder").mkdir()  # a folder named like a run that is new to this batch
    intruder = _write(tmp_path, "intruder.toml", BASE.format(days=42))
    with pytest.raises(ValueError, match="run 'intruder' .* was not part of the batch"):
        prepare_output(load_runs([intruder]), out, chunk_patients=4, resume=True, overwrite=False)
    fresh = prepare_output(runs, out, chunk_patients=4, resume=False, overwrite=True)
    assert fresh["invocations"] == 1 and sorted(p.name for p in out.iterdir()) == ["batch.json"]
    # the replaced batch is kept aside until the new one has finished (run_batch deletes it);
    # while it is there, another --overwrite is refused (it would lose the original)
    assert (tmp_path / ".out.replaced" / "intruder").is_dir()
    with pytest.raises(ValueError, match="earlier --overwrite replaced"):
        prepare_output(runs, out, chunk_patients=4, resume=False, overwrite=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    with pytest.raises(ValueError, match="not a batch folder"):
        prepare_output(runs, tmp_path / "other", chunk_patients=4, resume=True, overwrite=False)
    with pytest.raises(ValueError, match="--chunk-patients=0 must be an integer >= 1"):
        prepare_output(runs, tmp_path / "new", chunk_patients=0, resume=False, overwrite=False)


# ---------------------------------------------------------------------------- compute
@pytest.mark.slow
def test_chunked_sweep_does_not_recompile_and_matches_trial(tmp_path, monkeypatch, request):
    """Four runs (dose x replace_rejected), chunks of 8 patients: every compile happens in the
    first chunk; the cohorts are plausible_cohort's and the tables vcohort trial's."""
    import vcohort.batch as B
    import vcohort.simulate as S
    from vcohort.trial import run_trial, write_trial

    traces = []
    original = S.patient_fn

    def counting(plan):
        run = original(plan)

        def traced(*a):
            traces.append(plan.days)  # runs once per trace, never per call
            return run(*a)

        return traced

    saved = dict(S._CACHE)  # compile afresh; afterwards keep the new entries (valid functions)
    S._CACHE.clear()
    request.addfinalizer(lambda: S._CACHE.update(saved))
    monkeypatch.setattr(S, "patient_fn", counting)
    per_chunk = []
    compute = B.compute_chunk

    def counted(run, k, c, **kw):
        before = len(traces)
        ch = compute(run, k, c, **kw)
        per_chunk.append((run.name, k, len(traces) - before))
        return ch

    monkeypatch.setattr(B, "compute_chunk", counted)
    _write(tmp_path, "base.toml", BASE.format(days=42))
    runs = load_runs([_write(tmp_path, "s.toml", SWEEP)])
    out = tmp_path / "out"
    summary = B.run_batch(runs, out, chunk_patients=8, progress=False)

    # run-in, screening and arm simulation compile once, in the first chunk of the first run
    assert per_chunk[0][2] == 3, per_chunk
    assert len(per_chunk) >= 6 and all(n == 0 for _, _, n in per_chunk[1:]), per_chunk
    assert not (out / ".chunks").exists()
    assert summary.groupby("run").size().tolist() == [2, 2, 2, 2]
    assert set(summary.columns) >= {
        "run",
        "arms.pembro.regimens.0.dose",
        "arm",
        "n",
        "orr",
        "orr_ci_low",
        "orr_ci_high",
        "median_pfs_days",
        "hr",
    }
    pd.testing.assert_frame_equal(pd.read_csv(out / "batch_summary.csv"), summary)

    # vcohort trial on the same experiments: the same compiled functions (chunks of 8 =
    # simulation.chunk_size, so the same XLA shapes) and the same tables
    n_traces = len(traces)
    (tmp_path / "trial").mkdir()
    for r in runs[:2]:
        write_trial(run_trial(r.experiment, progress=False), tmp_path / "trial" / r.name)
        for name in TABLES:
            got, want = _read(out / r.name / name), _read(tmp_path / "trial" / r.name / name)
            pd.testing.assert_frame_equal(got, want, check_exact=True, obj=f"{r.name}/{name}")
    assert len(traces) == n_traces


@pytest.mark.slow
def test_a_failing_run_does_not_sink_the_batch_and_stale_chunks_are_recomputed(
    tmp_path, monkeypatch
):
    """A run that fails is reported (its row, its error, exit status 1) while the others are
    written; --resume then computes it.  A chunk file computed from other inputs (its
    fingerprint differs) is recomputed, never reused."""
    import vcohort.batch as B

    good = _write(tmp_path, "good.toml", BASE.format(days=42))
    bad = _write(tmp_path, "bad.toml", BASE.format(days=42).replace("seed = 3", "seed = 4"))
    runs = load_runs([good, bad])
    compute = B.compute_chunk

    def failing(run, k, c, **kw):
        if run.name == "bad":
            raise ValueError("only 3 of 184 drawn patients are plausible")
        return compute(run, k, c, **kw)

    monkeypatch.setattr(B, "compute_chunk", failing)
    out = tmp_path / "out"
    summary = B.run_batch(runs, out, chunk_patients=8, progress=False)
    assert (out / "good" / "summary.csv").is_file() and not (out / "bad").exists()
    errors = summary.groupby("run")["error"].first()
    assert errors["good"] == "" and "only 3 of 184" in errors["bad"]
    assert any(e["event"] == "run_failed" for e in _log(out))
    monkeypatch.setattr(B, "compute_chunk", compute)
    # fixed (here: its input edited) and resumed: the failed run is computed from the new input
    bad.write_text(BASE.format(days=42).replace("seed = 3", "seed = 5"))
    summary = B.run_batch(load_runs([good, bad]), out, progress=False, resume=True)
    assert "error" not in summary and (out / "bad" / "summary.csv").is_file()
    manifest = json.loads((out / "bad" / "manifest.json").read_text())
    assert manifest["config"]["population"]["seed"] == 5
    # the run folder carries its fingerprint (a folder the state misses is judged by it)
    resumed = load_runs([good, bad])[1]
    assert B.manifest_fingerprint(out / "bad") == B.fingerprint(resumed)
    assert manifest["config"]["batch"]["fingerprint_parts"] == B.fingerprint_parts(resumed)

    # a chunk whose fingerprint is not the run's (another input) is recomputed
    folder, logged = tmp_path / "chunks", []
    log = lambda event, **f: logged.append(event)  # noqa: E731
    first = B._chunk(runs[0], folder / "chunk-00000.npz", 0, 8, log, False,
                     lambda: B.compute_chunk(runs[0], 0, 8))  # fmt: skip
    monkeypatch.setattr(B, "fingerprint", lambda run: "edited since")
    again = B._chunk(runs[0], folder / "chunk-00000.npz", 0, 8, log, False,
                     lambda: B.compute_chunk(runs[0], 0, 8))  # fmt: skip
    assert logged == ["chunk_computed", "chunk_stale", "chunk_computed"]
    assert again["meta"]["fingerprint"] == "edited since" != first["meta"]["fingerprint"]


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_same_tables(tmp_path):
    """A real ``vcohort batch`` process is killed (SIGKILL) once a chunk file exists; --resume
    recomputes only the missing chunks and ends with exactly the uninterrupted tables."""
    f1 = _write(tmp_path, "short.toml", BASE.format(days=42))
    f2 = _write(tmp_path, "long.toml", BASE.format(days=84).replace("seed = 3", "seed = 4"))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = ["batch", str(f1), str(f2), "--chunk-patients", "8", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(Path(vcohort.__file__).parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcohort.cli", *args, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not list(killed.glob(".chunks/*/chunk-*.npz")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no chunk file within 240 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = {
        (p.parent.name, int(p.stem.split("-")[1])) for p in killed.glob(".chunks/*/chunk-*.npz")
    }
    assert not (killed / "batch_summary.csv").exists()  # it was killed midway
    stale = next(killed.glob(".chunks/*")) / ".chunk-00099.npz.half"
    stale.write_bytes(b"half-written")  # what a kill during a write leaves

    assert main([*args, "--out", str(killed), "--resume"]) == 0
    assert main([*args, "--out", str(clean)]) == 0
    assert not stale.exists()
    # exactly the same tables (README): every table file a run writes, bit for bit
    for run in ("short", "long"):
        tables = sorted(
            p.relative_to(clean / run).as_posix()
            for p in (clean / run).rglob("*")
            if p.suffix in (".csv", ".parquet")
        )
        assert {*TABLES, "subgroups.csv"} <= set(tables), tables
        got = sorted(
            p.relative_to(killed / run).as_posix()
            for p in (killed / run).rglob("*")
            if p.suffix in (".csv", ".parquet")
        )
        assert got == tables
        for name in tables:
            pd.testing.assert_frame_equal(
                _read(killed / run / name), _read(clean / run / name), check_exact=True, obj=name
            )
    pd.testing.assert_frame_equal(
        _read(killed / "batch_summary.csv"), _read(clean / "batch_summary.csv"), check_exact=True
    )

    log = _log(killed)
    computed = {
        (e["invocation"], e["run"], e["chunk"]) for e in log if e["event"] == "chunk_computed"
    }
    second = {(r, k) for i, r, k in computed if i == 2}
    reused = {(e["run"], e["chunk"]) for e in log if e["event"] == "chunk_reused"}
    everything = {(e["run"], e["chunk"]) for e in _log(clean) if e["event"] == "chunk_computed"}
    assert second.isdisjoint(before) and reused == before
    assert second | before == everything and len(everything) >= 4


CALIBRATED = """
title = "calibrated batch"
reference_arm = "pembro"

[population]
size = 16
seed = 3

[simulation]
horizon_days = 210  # = the calibration's horizon, so the trial's ORR is the one calibrated
runin_days = 30
chunk_size = 8

[calibration]
orr = 0.25
arm = "pembrolizumab 200 mg every 21 d"
pool = 40

[[arms]]
name = "pembro"
regimens = ["pembrolizumab 200 mg every 21 d"]

[[arms]]
name = "control"
regimens = []
"""


@pytest.mark.slow
def test_calibrated_experiment_runs_in_resumable_steps_and_matches_trial(tmp_path):
    """[calibration]: pool chunks, the selection on the whole pool, then the selected cohort in
    chunks; the tables (and calibration.json) equal vcohort trial's, and a resume after losing
    an arm chunk reuses the pool and the selection and recomputes only that chunk."""
    import vcohort.batch as B
    from vcohort.trial import run_trial, write_trial

    runs = load_runs([_write(tmp_path, "cal.toml", CALIBRATED)])
    out = tmp_path / "out"
    B.run_batch(runs, out, progress=False, keep_chunks=True)
    chunks = out / ".chunks" / "cal"
    from vcohort.chunkfile import read_chunk

    kept = [len(read_chunk(p)["cohort"]) for p in sorted(chunks.glob("pool-*.npz"))]
    # chunks of 8 ids are drawn until 40 plausible patients (rejected ones replaced), no more
    assert sum(kept) >= 40 and sum(kept[:-1]) < 40, kept
    assert len(list(chunks.glob("chunk-*.npz"))) == 2  # 16 selected, chunks of 8
    assert len(json.loads((chunks / "selection.json").read_text())["patient"]) == 16

    write_trial(run_trial(runs[0].experiment, progress=False), tmp_path / "trial")
    for name in TABLES:
        got, want = _read(out / "cal" / name), _read(tmp_path / "trial" / name)
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)
    got, want = (
        json.loads((d / "calibration.json").read_text()) for d in (out / "cal", tmp_path / "trial")
    )
    assert got.pop("simulate_s") > 0 and want.pop("simulate_s") > 0  # timings differ
    assert got == want
    ep = pd.read_parquet(out / "cal" / "endpoints.parquet")
    orr = ep[ep.arm == "pembro"]["bor"].isin(["CR", "PR"]).mean()
    assert abs(orr - 0.25) <= 0.5 / 16 + 1e-9  # the calibration held (quota rounding)

    first = _read(out / "cal" / "summary.csv")
    import shutil

    shutil.rmtree(out / "cal")
    (chunks / "chunk-00001.npz").unlink()
    B.run_batch(runs, out, progress=False, resume=True)
    pd.testing.assert_frame_equal(_read(out / "cal" / "summary.csv"), first, check_exact=True)
    events = [(e["event"], e.get("chunk")) for e in _log(out) if e["invocation"] == 2]
    assert ("selection_reused", None) in events and ("chunk_reused", 0) in events
    assert ("chunk_computed", 1) in events
    assert all(ev != "pool_computed" for ev, _ in events)
    assert not (out / ".chunks").exists()  # removed once the run is written

    # a selection made from another pool, or a model that changed, is refused on --resume
    B.run_batch(runs, out2 := tmp_path / "out2", progress=False, keep_chunks=True)
    sel = out2 / ".chunks" / "cal" / "selection.json"
    data = json.loads(sel.read_text())
    sel.write_text(json.dumps(data | {"pool_ids": "0" * 16}))
    shutil.rmtree(out2 / "cal")
    # the run fails with the reason in its summary row; the batch itself completes
    failed = B.run_batch(runs, out2, progress=False, resume=True, keep_chunks=True)
    assert "selection.json: made from another pool" in failed["error"].iloc[0]
    assert not (out2 / "cal").exists()
    # a selection made from other inputs (its fingerprint is not the run's) is made again
    sel.write_text(json.dumps(data | {"fingerprint": "edited since"}))
    again = B.run_batch(runs, out2, progress=False, resume=True)
    pd.testing.assert_frame_equal(_read(out2 / "cal" / "summary.csv"), first, check_exact=True)
    assert "error" not in again
    events = [e["event"] for e in _log(out2) if e["invocation"] == 3]
    assert "selection_stale" in events and "selection_computed" in events


def test_resume_refuses_chunks_of_another_model(tmp_path, monkeypatch):
    """The fingerprint covers the model (parameter table and code), not only the config; when
    only the code changed, the refusal says so (it blamed the inputs)."""
    import vcohort.batch as B

    runs = load_runs([_write(tmp_path, "base.toml", BASE.format(days=42))])
    out = tmp_path / "out"
    state = B.prepare_output(runs, out, chunk_patients=None, resume=False, overwrite=False)
    assert state["runs"][0]["parts"]["code"] == B.model_identity()  # kept apart
    monkeypatch.setattr(B, "model_identity", lambda: "another model")
    (out / "base").mkdir()  # a finished run: resuming would keep results of the old inputs
    (out / "base" / "manifest.json").write_text("{}")
    (out / "base" / "summary.csv").write_text("arm\n")
    with pytest.raises(ValueError, match="the vcohort code changed since this run was written"):
        B.prepare_output(runs, out, chunk_patients=None, resume=True, overwrite=False)


def test_the_code_identity_leaves_out_only_modules_no_run_uses():
    """Editing the optimiser, sensitivity or validation code must not block resuming a batch,
    so `model_identity` leaves them out; that is only right while no module a run uses imports
    them."""
    import ast

    import vcohort.batch as B

    root = Path(vcohort.__file__).parent
    hashed = {f.relative_to(root).as_posix() for f in B.run_modules()}
    every = {f.relative_to(root).as_posix() for f in root.rglob("*.py")}
    left_out = every - hashed
    assert {"optimize/loop.py", "sensitivity.py", "validation/run.py"} <= left_out
    assert {"model/csc_immune.py", "cohort.py", "trial.py", "batch.py"} <= hashed
    assert "cli/__init__.py" in hashed and "cli/trial.py" in hashed

    def module(rel: str) -> str:
        return "vcohort." + rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")

    excluded = {module(r) for r in left_out}
    for rel in sorted(hashed):
        if rel.startswith("cli/"):  # the command layer registers every command's parser
            continue
        tree = ast.parse((root / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            bad = [n for n in names if any(n == x or n.startswith(x + ".") for x in excluded)]
            assert not bad, f"{rel} imports {bad}, which model_identity does not hash"


def test_resume_refuses_chunks_of_another_drug_definition(tmp_path, monkeypatch):
    """A drug given with --drug-file is in no experiment config: the fingerprint holds the
    definitions of the arms' drugs, so a resume after the drug file changed is refused."""
    import dataclasses

    import vcohort.batch as B
    from vcohort.drugs import CATALOGUE

    runs = load_runs([_write(tmp_path, "base.toml", BASE.format(days=42))])
    out = tmp_path / "out"
    B.prepare_output(runs, out, chunk_patients=None, resume=False, overwrite=False)
    changed = dataclasses.replace(CATALOGUE["pembrolizumab"], toxicity="edited")
    monkeypatch.setitem(CATALOGUE, "pembrolizumab", changed)
    (out / "base").mkdir()  # a finished run: resuming would keep results of the old inputs
    (out / "base" / "manifest.json").write_text("{}")
    (out / "base" / "summary.csv").write_text("arm\n")
    with pytest.raises(ValueError, match="changed since it was written"):
        B.prepare_output(runs, out, chunk_patients=None, resume=True, overwrite=False)


def test_a_chunk_drawn_under_another_drug_catalogue_is_not_reused(tmp_path, monkeypatch):
    """Every patient draws PK values for every loaded drug (`make_cohort`), not only the arms':
    a chunk written without a --drug-file was reused with it (another column set in one run,
    or a KeyError on every resume).  The fingerprint holds the run's catalogue (not the drugs of
    the batch's other experiments' drug_files: `test_a_drug_file_of_one_experiment_leaves_the_
    batchs_other_runs_alone`); a finished run drawn under another catalogue is refused, naming
    the drugs."""
    import dataclasses
    import pickle

    import vcohort.batch as B
    from vcohort.drugs import CATALOGUE

    runs = load_runs([_write(tmp_path, "base.toml", BASE.format(days=42))])
    out = tmp_path / "out"
    B.prepare_output(runs, out, chunk_patients=None, resume=False, overwrite=False)
    # chunk files as pickles: no compute needed, the real `_chunk` decides reuse
    monkeypatch.setattr(B, "chunk_bytes", pickle.dumps)
    monkeypatch.setattr(B, "read_chunk", lambda p: pickle.loads(Path(p).read_bytes()))
    meta = {"run": "base", "chunk": 0, "first_id": 0, "size": 8, "kept": 0, "seconds": 0.0}
    path, logged = tmp_path / "chunks" / "chunk-00000.npz", []

    def chunk():
        return B._chunk(runs[0], path, 0, 8, lambda event, **f: logged.append(event), False,
                        lambda: {"meta": dict(meta)})  # fmt: skip

    chunk(), chunk()
    inputs, before = B.inputs_digest(runs[0]), B.fingerprint(runs[0])
    extra = dataclasses.replace(CATALOGUE["wnt974"], name="wnt974_copy")
    monkeypatch.setitem(CATALOGUE, "wnt974_copy", extra)  # as a --drug-file would, given to no arm
    assert B.inputs_digest(runs[0]) == inputs and B.fingerprint(runs[0]) != before
    chunk()
    assert logged == ["chunk_computed", "chunk_reused", "chunk_stale", "chunk_computed"]
    (out / "base").mkdir()  # a finished run
    (out / "base" / "manifest.json").write_text("{}")
    (out / "base" / "summary.csv").write_text("arm\n")
    with pytest.raises(ValueError, match=r"drug catalogue differs .*\(added: wnt974_copy\)"):
        B.prepare_output(runs, out, chunk_patients=None, resume=True, overwrite=False)


def _fake_compute(monkeypatch, fail_write=()):
    """`run_batch` without compute: a run computes no chunk and writes a minimal run folder (a
    manifest with its batch fingerprint, as `assemble` gives, and a summary.csv); writing a run
    named in ``fail_write`` fails."""
    import types

    import vcohort.batch as B
    import vcohort.trial as T

    monkeypatch.setattr(B, "run_chunks", lambda run, c, folder, **kw: [])
    monkeypatch.setattr(
        B, "assemble", lambda run, chunks, *a: types.SimpleNamespace(run=run, timings={})
    )

    def write(result, out, overwrite=False):
        if result.run.name in fail_write:
            raise OSError(36, "File name too long", str(out))
        if out.exists() and overwrite:  # as `vcohort.io.run_folder` replaces a folder
            shutil.rmtree(out)
        out.mkdir()
        config = {"reference_arm": "control", "batch": {"fingerprint": B.fingerprint(result.run)}}
        (out / "manifest.json").write_text(json.dumps({"config": config}))
        table = pd.DataFrame({"arm": ["control", "pembro"], "n": [12, 12], "orr": [0.0, 0.5]})
        table.to_csv(out / "summary.csv", index=False)

    monkeypatch.setattr(T, "write_trial", write)


def test_resume_deletes_only_the_temporaries_vcohort_writes(tmp_path, monkeypatch):
    """--resume deleted everything in DIR whose name starts with a dot (a user's .git,
    .notes.md), then every name that looked like a temporary one (a user's
    .batch_summary.csv.20241201, .batch.json.original); only names carrying vcohort's marker
    (``.vctmp-``, `vcohort.io.temporary_prefix`) are leftovers."""
    import tempfile

    import vcohort.batch as B
    from vcohort.io import temporary_prefix

    _fake_compute(monkeypatch)
    runs = load_runs([_write(tmp_path, "base.toml", BASE.format(days=42))])
    out = tmp_path / "out"
    B.run_batch(runs, out, progress=False, keep_chunks=True)
    mine = [out / ".git" / "config", out / ".notes.md", out / ".base.tmp-notes.txt",
            out / ".batch.json.bak", out / ".other.old-12", out / ".batch_summary.csv.20241201",
            out / ".batch.json.original", out / ".base.old-2024",
            out / ".base.tmp-k2x_9a0q" / "summary.csv",  # an older vcohort's: not ours to judge
            out / ".chunks" / "base" / ".chunk-00001.npz.original"]  # fmt: skip
    ours = [out / ".base.vctmp-k2x_9a0q" / "summary.csv", out / ".base.vctmp-old-4242" / "x",
            out / ".batch.json.vctmp-ab12cd34", out / ".batch_summary.csv.vctmp-zz99yy88",
            out / ".chunks" / "base" / ".chunk-00001.npz.vctmp-a1b2c3d4",
            out / ".chunks" / "base" / ".pool-00000.npz.vctmp-a1b2c3d4",
            out / ".chunks" / "base" / ".selection.json.vctmp-a1b2c3d4"]  # fmt: skip
    for p in mine + ours:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    # the names vcohort's writers give (`atomic_write_bytes`, `run_folder`) are recognised
    made = [Path(tempfile.mkstemp(prefix=temporary_prefix(n), dir=out)[1])
            for n in ("batch.json", "batch_summary.csv")]  # fmt: skip
    made.append(Path(tempfile.mkdtemp(prefix=temporary_prefix("base"), dir=out)))
    made.append(Path(tempfile.mkstemp(prefix=temporary_prefix("chunk-00002.npz"),
                                      dir=out / ".chunks" / "base")[1]))  # fmt: skip
    B.run_batch(runs, out, progress=False, resume=True, keep_chunks=True)
    assert all(p.read_text() == "x" for p in mine)
    assert not any(p.exists() for p in ours + made)
    assert not (out / ".base.vctmp-k2x_9a0q").exists()
    assert not (out / ".base.vctmp-old-4242").exists()


def test_the_batch_writes_its_temporaries_under_vcohorts_marker(tmp_path, monkeypatch):
    """Every temporary name a batch creates carries the marker its cleanup looks for."""
    import vcohort.batch as B
    import vcohort.io

    _fake_compute(monkeypatch)
    seen = []
    real = vcohort.io.os.replace

    def replace(src, dst):  # the temporary names: hidden (the final ones are not)
        seen.extend(n for n in (Path(src).name, Path(dst).name) if n.startswith("."))
        return real(src, dst)

    monkeypatch.setattr(vcohort.io.os, "replace", replace)
    runs = load_runs([_write(tmp_path, "base.toml", BASE.format(days=42))])
    out = tmp_path / "out"
    B.run_batch(runs, out, progress=False)
    for _ in range(2):  # a run folder written, then replaced (its old one set aside)
        with vcohort.io.run_folder(out / "base", overwrite=True) as tmp:
            (tmp / "manifest.json").write_text("{}")
    kinds = {n.split(".vctmp-")[0] + (".old" if "vctmp-old-" in n else "") for n in seen}
    assert kinds == {".batch.json", ".batch_summary.csv", ".base", ".base.old"}, seen
    ours = B._temporary_names(["base"])
    assert all(ours.fullmatch(n) for n in seen), seen


def test_run_names_too_long_for_a_folder_are_refused_before_compute(tmp_path, monkeypatch):
    """A 243-character run name passed validation, was computed, then failed to be written
    (File name too long) on every resume; and a run that fails while written sank the batch."""
    import vcohort.batch as B
    from vcohort.sweep import BatchRun

    text = BASE.format(days=42)
    assert load_runs([_write(tmp_path, "a" * 200 + ".toml", text)])[0].name == "a" * 200
    with pytest.raises(ValueError, match=f"run name '{'b' * 201}' is 201 bytes long; the limit "
                                         f"is 200 bytes"):  # fmt: skip
        load_runs([_write(tmp_path, "b" * 201 + ".toml", text)])
    sweep = f'name = "{"p" * 195}"\nbase = "ok.toml"\n[sweep]\n"population.seed" = [1, 22]\n'
    _write(tmp_path, "ok.toml", text)
    with pytest.raises(ValueError, match=r"'p{195}__seed-22' is 204 bytes long \(2 runs of"):
        load_runs([_write(tmp_path, "s.toml", sweep)])
    # a run made in Python is checked by run_batch itself, before anything is written
    run = load_runs([tmp_path / "ok.toml"])[0]
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="is 300 bytes long"):
        B.run_batch([BatchRun("c" * 300, run.experiment)], out, progress=False)
    assert not out.exists()
    # any failure while a run is written marks that run failed; the others are written
    _fake_compute(monkeypatch, fail_write={"first"})
    runs = load_runs([_write(tmp_path, "first.toml", text), _write(tmp_path, "second.toml", text)])
    summary = B.run_batch(runs, out, progress=False)
    errors = summary.groupby("run")["error"].first()
    assert "File name too long" in errors["first"] and errors["second"] == ""
    assert (out / "second" / "manifest.json").is_file() and not (out / "first").exists()
    _fake_compute(monkeypatch)  # fixed: the resume writes it
    assert "error" not in B.run_batch(runs, out, progress=False, resume=True)


def test_only_the_batch_that_replaced_a_folder_deletes_its_backup(tmp_path, monkeypatch, capsys):
    """A later batch into the same --out (no --overwrite) deleted the backup an earlier
    --overwrite kept because a run failed."""
    import vcohort.batch as B

    runs = load_runs([_write(tmp_path, "base.toml", BASE.format(days=42))])
    out, backup = tmp_path / "out", tmp_path / ".out.replaced"
    _fake_compute(monkeypatch)
    B.run_batch(runs, out, progress=False)
    _fake_compute(monkeypatch, fail_write={"base"})
    B.run_batch(runs, out, progress=False, overwrite=True)
    assert (backup / "base" / "manifest.json").is_file()  # kept: the new batch failed
    # the user clears the failed batch's folder and starts another batch there
    shutil.rmtree(out)
    _fake_compute(monkeypatch)
    B.run_batch(runs, out, progress=False)
    assert (backup / "base" / "manifest.json").is_file()
    assert f"kept {backup}: it holds the batch an earlier --overwrite" in capsys.readouterr().err
    # the batch that replaced a folder deletes its backup once it has finished, also when
    # a --resume finishes it
    _fake_compute(monkeypatch, fail_write={"base"})
    shutil.rmtree(backup)
    B.run_batch(runs, out, progress=False, overwrite=True)
    assert backup.is_dir() and "until every run has finished" in capsys.readouterr().err
    _fake_compute(monkeypatch)
    B.run_batch(runs, out, progress=False, resume=True)
    assert not backup.exists()
    assert any(e["event"] == "backup_deleted" for e in _log(out))


def test_a_resume_of_some_runs_keeps_the_others_in_the_batch(tmp_path, monkeypatch, capsys):
    """--resume A after a batch of A and B wrote a state and a summary of A only, and a later
    --resume A B was refused; a run folder the state does not list is judged by its
    manifest's fingerprint."""
    import vcohort.batch as B

    _fake_compute(monkeypatch)
    text = BASE.format(days=42)
    a, b = _write(tmp_path, "a.toml", text), _write(tmp_path, "b.toml", text)
    out = tmp_path / "out"
    B.run_batch(load_runs([a, b]), out, progress=False)
    summary = B.run_batch(load_runs([a]), out, progress=False, resume=True)
    assert summary["run"].tolist() == ["a", "a", "b", "b"]
    assert pd.read_csv(out / "batch_summary.csv")["run"].tolist() == ["a", "a", "b", "b"]
    state = json.loads((out / "batch.json").read_text())
    assert [r["name"] for r in state["runs"]] == ["a", "b"] and state["invocations"] == 2
    B.run_batch(load_runs([b, a]), out, progress=False, resume=True)  # was refused
    capsys.readouterr()
    assert main(["batch", str(a), "--out", str(out), "--resume", "--no-progress"]) == 0
    # a was complete: not counted as written (it was, "wrote 1 runs")
    said = capsys.readouterr().out
    assert "wrote 0 runs, 1 already complete (the batch's summary also lists 1 earlier" in said
    # a state without b (an older vcohort's): b's folder is judged by its manifest
    state = json.loads((out / "batch.json").read_text())
    state["runs"] = [r for r in state["runs"] if r["name"] == "a"]
    (out / "batch.json").write_text(json.dumps(state))
    B.prepare_output(load_runs([a, b]), out, chunk_patients=None, resume=True, overwrite=False)
    (out / "batch.json").write_text(json.dumps(state))
    b.write_text(text.replace("seed = 3", "seed = 4"))  # b's folder is of other inputs now
    with pytest.raises(ValueError, match=r"run 'b' .* not part of the batch .* its manifest's "):
        B.prepare_output(load_runs([a, b]), out, chunk_patients=None, resume=True, overwrite=False)
    # an unfinished run left out of a resume: no row, but named
    shutil.rmtree(out)
    b.write_text(text)
    _fake_compute(monkeypatch, fail_write={"b"})
    B.run_batch(load_runs([a, b]), out, progress=False)
    capsys.readouterr()
    summary = B.run_batch(load_runs([a]), out, progress=False, resume=True)
    assert summary["run"].tolist() == ["a", "a"]
    assert "run b (" in capsys.readouterr().err
    assert [e["run"] for e in _log(out) if e["event"] == "run_not_given"] == ["b"]


def test_a_failure_to_draw_a_cohort_names_its_cause():
    """Every patient failing numerically (e.g. dt = 1.0) was blamed on the plausibility
    bounds."""
    import types

    from vcohort.batch import rejection_cause

    e = types.SimpleNamespace(dt=1.0, precision="float32")
    solver = "solver: non-finite state (solver failure)"
    scr = pd.DataFrame({"patient": range(3), "plausible": False, "reason": [solver] * 3})
    cause = rejection_cause(scr, e)
    assert "of 3 patients failed numerically (solver: non-finite state" in cause
    assert "smaller simulation.dt (now 1)" in cause and "bounds" not in cause
    scr["reason"] = ["vanishing: untreated diameter fell", "explosive growth: x", "vanishing: y"]
    cause = rejection_cause(scr, types.SimpleNamespace(dt=0.1, precision="float64"))
    assert cause == (
        "rejected {'vanishing': 2, 'explosive growth': 1}: loosen the population's "
        "plausibility bounds"
    )
    scr.loc[0, "reason"] = solver
    assert "numerically" in rejection_cause(scr, e) and "bounds" in rejection_cause(scr, e)
    f64 = rejection_cause(scr, types.SimpleNamespace(dt=0.5, precision="float64"))
    assert "(now 0.5)" in f64 and "precision" not in f64  # float64 already


def test_a_batch_draws_no_patient_past_the_draw_limit(tmp_path, monkeypatch):
    """vcohort trial (`plausible_cohort`) draws at most max_draws ids; a batch drew whole chunks
    past it, so the two could disagree on whether a run fails.  The last chunk's ids are cut at
    the limit (here 6, in chunks of 4); with dt = 1.0 every simulation fails numerically, and
    the error says so."""
    import vcohort.batch as B
    from vcohort.chunkfile import read_chunk

    monkeypatch.setattr(B, "max_draws", lambda size: 6)
    # the load refuses dt 1.0 for the typical patient; let it through to fail every patient
    monkeypatch.setattr("vcohort.simulate.check_typical_rates", lambda *a, **k: None)
    text = BASE.format(days=42).replace("size = 12", "size = 5")
    text = text.replace("chunk_size = 8", 'chunk_size = 4\ndt = 1.0\nprecision = "float32"')
    runs = load_runs(
        [_write(tmp_path, "dt1.toml", text.replace("runin_days = 30", "runin_days = 10"))]
    )
    out = tmp_path / "out"
    summary = B.run_batch(runs, out, progress=False, keep_chunks=True)
    error = summary["error"].iloc[0]
    assert "only 0 of 6 drawn patients are plausible; 5 would need more than 6 draws" in error
    assert "failed numerically" in error and "bounds" not in error
    chunks = sorted((out / ".chunks" / "dt1").glob("chunk-*.npz"))
    ids = [read_chunk(p)["screening"]["patient"].tolist() for p in chunks]
    assert ids == [[0, 1, 2, 3], [4, 5]]


def test_an_out_that_is_a_file_or_a_batch_to_resume_is_named_before_compute(
    tmp_path, monkeypatch, capsys
):
    """--out FILE --resume crashed with NotADirectoryError; a batch folder given again without
    --resume said only "pass --overwrite", which throws its finished runs away."""
    import vcohort.batch as B

    _fake_compute(monkeypatch)
    base = _write(tmp_path, "base.toml", BASE.format(days=42))
    afile = _write(tmp_path, "afile", "mine")
    for resume in (True, False):
        with pytest.raises(ValueError, match=r"--out '.*afile' exists and is not a folder"):
            B.run_batch(load_runs([base]), afile, progress=False, resume=resume)
    assert main(["batch", str(base), "--out", str(afile), "--resume", "--no-progress"]) == 2
    assert "afile' exists and is not a folder" in capsys.readouterr().err
    assert afile.read_text() == "mine"
    out = tmp_path / "out"
    B.run_batch(load_runs([base]), out, progress=False)
    said = r"holds a batch \(batch.json\); pass --resume to continue it \(or --overwrite to "
    with pytest.raises(ValueError, match=said + r"replace it\)"):
        B.run_batch(load_runs([base]), out, progress=False)
    assert (out / "base" / "manifest.json").is_file()  # nothing lost


def test_a_finished_run_that_lost_its_summary_is_computed_again(tmp_path, monkeypatch, capsys):
    """A run folder without summary.csv counted as finished: every later --resume ended in a
    FileNotFoundError after its compute (the batch summary reads it)."""
    import vcohort.batch as B

    _fake_compute(monkeypatch)
    base = _write(tmp_path, "base.toml", BASE.format(days=42))
    out = tmp_path / "out"
    B.run_batch(load_runs([base]), out, progress=False)
    (out / "base" / "summary.csv").unlink()
    capsys.readouterr()
    assert main(["batch", str(base), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "wrote 1 run and" in capsys.readouterr().out
    assert (out / "base" / "summary.csv").is_file()
    events = [(e["invocation"], e["event"]) for e in _log(out) if e.get("run") == "base"]
    assert (2, "run_written") in events and (2, "run_complete") not in events
    # complete again: the next --resume leaves it
    assert main(["batch", str(base), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "wrote 0 runs, 1 already complete and" in capsys.readouterr().out


@pytest.fixture
def drug_state():
    """The process's drug catalogue and its record of drug files, put back afterwards."""
    from vcohort import drug_file
    from vcohort.drugs import CATALOGUE

    names = ("_LOADED", "_GLOBAL", "_GLOBAL_FILES", "_ORIGIN", "_EXPERIMENT")
    saved = {n: getattr(drug_file, n).copy() for n in names}
    cat = dict(CATALOGUE)
    yield
    CATALOGUE.clear()
    CATALOGUE.update(cat)
    for n, v in saved.items():
        getattr(drug_file, n).clear()
        getattr(drug_file, n).update(v)


NIVOLUMAB = Path(__file__).resolve().parents[1] / "experiments" / "drugs" / "nivolumab.toml"


def _with_drug_file(tmp_path) -> Path:
    """An experiment naming a drug file of its own (nivolumab), given in one arm."""
    (tmp_path / "drugs").mkdir(exist_ok=True)
    (tmp_path / "drugs" / "niv.toml").write_text(NIVOLUMAB.read_text())
    text = BASE.format(days=42).replace('"pembro"', '"nivo"')
    text = text.replace("pembrolizumab", "nivolumab").replace("2 mg/kg", "240 mg")
    return _write(tmp_path, "niv.toml", 'drug_files = ["drugs/niv.toml"]\n' + text)


def test_a_drug_file_of_one_experiment_leaves_the_batchs_other_runs_alone(
    tmp_path, monkeypatch, drug_state
):
    """An experiment's drug_files were loaded into the catalogue of the whole batch: every
    other run drew PK values for its drugs (columns of patients.parquet), listed its file in
    its manifest and had another fingerprint than in a batch of its own."""
    import vcohort.batch as B

    base = _write(tmp_path, "base.toml", BASE.format(days=42))
    alone = tmp_path / "alone"
    B.run_batch(load_runs([base]), alone, progress=False)  # before any drug file is loaded
    both = tmp_path / "both"
    B.run_batch(load_runs([_with_drug_file(tmp_path), base]), both, progress=False)
    a, b = (pd.read_parquet(d / "base" / "patients.parquet") for d in (alone, both))
    assert list(a.columns) == list(b.columns) and not any("nivolumab" in c for c in b.columns)
    pd.testing.assert_frame_equal(a, b)
    for f in ("columns.csv", "summary.csv"):
        assert (alone / "base" / f).read_text() == (both / "base" / f).read_text(), f
    ma, mb = (json.loads((d / "base" / "manifest.json").read_text()) for d in (alone, both))
    for k in ("config", "population", "environment", "patients"):  # (the fingerprint too)
        assert ma[k] == mb[k], k
    assert "drug_files" not in mb["environment"]
    ra, rb = (json.loads((d / "batch.json").read_text())["runs"] for d in (alone, both))
    assert ra[0] == next(r for r in rb if r["name"] == "base")
    # the run with the drug file draws its PK values and lists its file
    niv = json.loads((both / "niv" / "manifest.json").read_text())["environment"]
    assert [Path(p).name for p in niv["drug_files"]] == ["niv.toml"]
    cols = pd.read_parquet(both / "niv" / "patients.parquet").columns
    assert "nivolumab.CL" in cols and "nivolumab.CL" not in a.columns


def test_a_resume_that_adds_a_drug_file_experiment_keeps_the_finished_runs(
    tmp_path, monkeypatch, drug_state
):
    """After --resume of some runs, a --resume naming them all was refused ("the drug
    catalogue differs"): the fingerprint held every drug file the batch had loaded."""
    import vcohort.batch as B

    _fake_compute(monkeypatch)
    base = _write(tmp_path, "base.toml", BASE.format(days=42))
    niv = _with_drug_file(tmp_path)
    out = tmp_path / "out"
    B.run_batch(load_runs([niv, base]), out, progress=False)
    B.run_batch(load_runs([base]), out, progress=False, resume=True)  # in another process
    from vcohort.drugs import CATALOGUE

    CATALOGUE.pop("nivolumab")  # (as a fresh process: no drug file loaded)
    B.run_batch(load_runs([base]), out, progress=False, resume=True)
    B.run_batch(load_runs([niv, base]), out, progress=False, resume=True)  # was refused
    done = [e["run"] for e in _log(out) if e["event"] == "run_complete"]
    assert done == ["base", "base", "niv", "base"]

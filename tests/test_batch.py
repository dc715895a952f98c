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
        ValueError, match=r"the same experiment as run same__regimens-v0 once parsed"
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
        "pembrolizumab 2 mg/kg q3w", 210, Targets(0.21, 0.34), (0.2, 0.01, 0.2, 0.59),
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
        pass


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
    base.write_text(BASE.format(days=84))  # the input changed since the batch started
    # a finished run would be skipped with the old results: refused ...
    (out / "base").mkdir()
    (out / "base" / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="run 'base' .* changed since it was written"):
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
    assert (
        json.loads((out / "bad" / "manifest.json").read_text())["config"]["population"]["seed"] == 5
    )

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
    for run in ("short", "long"):
        for name in TABLES:
            pd.testing.assert_frame_equal(_read(killed / run / name), _read(clean / run / name))
    pd.testing.assert_frame_equal(
        _read(killed / "batch_summary.csv"), _read(clean / "batch_summary.csv")
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
    """The fingerprint covers the model (parameter table and code), not only the config."""
    import vcohort.batch as B

    runs = load_runs([_write(tmp_path, "base.toml", BASE.format(days=42))])
    out = tmp_path / "out"
    B.prepare_output(runs, out, chunk_patients=None, resume=False, overwrite=False)
    monkeypatch.setattr(B, "model_identity", lambda: "another model")
    (out / "base").mkdir()  # a finished run: resuming would keep results of the old inputs
    (out / "base" / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="changed since it was written"):
        B.prepare_output(runs, out, chunk_patients=None, resume=True, overwrite=False)


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
    with pytest.raises(ValueError, match="changed since it was written"):
        B.prepare_output(runs, out, chunk_patients=None, resume=True, overwrite=False)

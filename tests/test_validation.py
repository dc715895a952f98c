"""``vcohort validate``: steps checked before compute, results merged into the stored file,
exit status from the checks, and the Validation section rendered from stored results."""

import json

import numpy as np
import pytest

from vcohort.cli import main
from vcohort.docs import render_model_doc
from vcohort.validation import Check
from vcohort.validation import run as vrun


def _fake(passed: bool, id_="fake.check"):
    def step():
        c = Check(id_, "a fake claim", "nowhere", {"x": 1.5, "xs": [1.0, 2e-7]}, note="n")
        c.require("x is positive", passed)
        return [c]

    return step


def test_unknown_step_is_refused_before_compute(tmp_path, capsys):
    out = tmp_path / "v.json"
    assert main(["validate", "--only", "sobol,nonsense", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nonsense" in err and "behaviours" in err and "published" in err
    assert not out.exists()
    for blank in ("", ","):  # ran every step (~3 minutes) as if --only were left out
        assert main(["validate", "--only", blank, "--out", str(out)]) == 2
        assert f"--only={blank!r} names no step; allowed: " in capsys.readouterr().err
    assert not out.exists()


def test_an_out_that_is_not_a_results_file_is_refused_before_compute(tmp_path, capsys,
                                                                      monkeypatch):  # fmt: skip
    """--out naming another JSON file ended in KeyError: 'steps' after the first step had run;
    a non-JSON file in an error that did not name it.  Both are refused first, file untouched."""

    def no_compute():
        raise AssertionError("a step ran before --out was checked")

    monkeypatch.setitem(vrun.STEPS, "sobol", ("Sobol", no_compute))
    for name, text, message in (
        ("other.json", '{"a": 1}', "is not a vcohort validate results file (no 'steps' object)"),
        ("list.json", "[1, 2]", "(no 'steps' object)"),
        ("notes.txt", "not json", "is not a vcohort validate results file (not JSON"),
    ):
        out = tmp_path / name
        out.write_text(text)
        assert main(["validate", "--only", "sobol", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert str(out) in err and message in err
        assert out.read_text() == text
    assert main(["validate", "--only", "sobol", "--out", str(tmp_path)]) == 2
    assert "it is a folder" in capsys.readouterr().err


def test_results_merge_step_by_step_and_failures_set_the_exit_status(tmp_path, monkeypatch, capsys):
    out = tmp_path / "v.json"
    monkeypatch.setitem(vrun.STEPS, "sobol", ("Sobol", _fake(True, "sobol.fake")))
    monkeypatch.setitem(vrun.STEPS, "engine", ("Engine", _fake(False, "engine.fake")))
    assert main(["validate", "--only", "sobol", "--out", str(out)]) == 0
    assert main(["validate", "--only", "engine", "--out", str(out)]) == 1
    assert "FAILED engine.fake" in capsys.readouterr().err
    data = json.loads(out.read_text())
    assert list(data["steps"]) == ["engine", "sobol"]  # both kept, in STEPS order
    assert data["steps"]["sobol"]["checks"][0]["passed"] is True
    assert data["steps"]["engine"]["checks"][0]["passed"] is False
    stored = vrun.stored_checks(out)
    assert stored["sobol.fake"].values == {"x": 1.5, "xs": [1.0, 2e-7]}

    text = vrun.render(vrun.load(out))
    assert "**a fake claim** (**FAILED**)" in text and "- ✗ x is positive" in text
    assert "**a fake claim** (passed)" in text and "| xs | 1, 2.00e-07 |" in text
    assert text.index("### Engine") < text.index("### Sobol")
    doc = render_model_doc(out)
    assert doc.endswith(text) and "## Model parameters" in doc


def test_missing_results_render_as_not_run(tmp_path):
    assert "_Not run yet: `vcohort validate`._" in vrun.render(vrun.load(tmp_path / "none.json"))


def test_check_needs_a_criterion_to_pass():
    c = Check("a.b", "t", "s")
    assert not c.passed  # no criterion: nothing was checked
    c.require("fine", True)
    assert c.passed and Check.from_dict(c.to_dict()).passed


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_measurements_are_stored_as_text(value):
    assert Check("a.b", "t", "s", {"v": value}).to_dict()["values"]["v"] == str(value)


def test_a_nan_error_is_not_hidden():
    from vcohort.validation.check import worst

    assert worst(1e-9, 2e-9) == 2e-9
    assert np.isnan(worst(1e-9, float("nan"))) and np.isnan(worst(float("nan"), 1e-9))
    c = Check("a.b", "t", "s")
    c.require("error within 1e-6", worst(0.0, float("nan")) <= 1e-6)
    assert not c.passed


def test_comparisons_are_rendered_and_never_fail_the_run(tmp_path, monkeypatch, capsys):
    def step():
        return [Check("c.cmp", "side by side", "a trial", {"orr": [0.3, 0.33]}, kind="comparison")]

    monkeypatch.setitem(vrun.STEPS, "sobol", ("Sobol", step))
    out = tmp_path / "v.json"
    assert main(["validate", "--only", "sobol", "--out", str(out)]) == 0
    assert "0/0 checks passed" in capsys.readouterr().out
    c = vrun.stored_checks(out)["c.cmp"]
    assert c.kind == "comparison" and c.passed is None
    assert "(comparison, no pass/fail criterion)" in vrun.render(vrun.load(out))


def test_a_step_whose_package_is_missing_is_refused_before_compute(monkeypatch):
    """`pip install .` brings no libroadrunner: `vcohort validate --only sbml` ended in a
    traceback after the earlier steps' compute; now refused first, naming the package."""
    import importlib.util

    from vcohort.validation.run import check_steps

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "roadrunner" else real(name)
    )
    with pytest.raises(ValueError, match=r"step\(s\) sbml need libroadrunner, not installed"):
        check_steps(["published", "sbml"])
    with pytest.raises(ValueError, match="libroadrunner"):
        check_steps([])  # every step
    assert check_steps(["published", "engine"]) == ["published", "engine"]

"""Drug files: the user's own drugs, validated and added to the catalogue (`vcohort.drug_file`)."""

import copy
from pathlib import Path

import numpy as np
import pytest

from vcohort.config import ConfigError
from vcohort.drug_file import load_drugs, parse_drugs, register_drugs
from vcohort.drugs import CATALOGUE, PEMBROLIZUMAB

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "drugs" / "nivolumab.toml"


@pytest.fixture(autouse=True)
def restore_catalogue():
    """Each test registers into a catalogue that is put back afterwards (and the record of
    loaded drug files, which manifests carry)."""
    from vcohort import drug_file

    before, loaded, glob = dict(CATALOGUE), dict(drug_file._LOADED), set(drug_file._GLOBAL)
    files, origin = set(drug_file._GLOBAL_FILES), dict(drug_file._ORIGIN)
    by_experiment = set(drug_file._EXPERIMENT)
    yield
    CATALOGUE.clear()
    CATALOGUE.update(before)
    drug_file._LOADED.clear()
    drug_file._LOADED.update(loaded)
    drug_file._GLOBAL.clear()
    drug_file._GLOBAL.update(glob)
    drug_file._GLOBAL_FILES.clear()
    drug_file._GLOBAL_FILES.update(files)
    drug_file._ORIGIN.clear()
    drug_file._ORIGIN.update(origin)
    drug_file._EXPERIMENT.clear()
    drug_file._EXPERIMENT.update(by_experiment)


def _pembro_copy(name="pembro_copy", **over):
    """Pembrolizumab's own numbers written as a drug file's table."""
    t = {
        "class": "ici",
        "route": "iv",
        "clinical_dose": f"{name} 200 mg every 21 d over 30 min",
        "mw": 146000.0,
        "half_life_days": 26.0,
        "half_life_source": "KEYTRUDA label",
        "ref_weight": 76.8,
        "weight_exponent_cl": 0.595,
        "weight_exponent_v": 0.489,
        "pk": {
            k: {
                "value": PEMBROLIZUMAB.params[k].value,
                "unit": u,
                "cv": PEMBROLIZUMAB.params[k].cv,
                "source": "Ahamadi 2017",
            }  # fmt: skip
            for k, u in (("CL", "L/day"), ("V1", "L"), ("Q2", "L/day"), ("V2", "L"))
        },
        "effects": [
            {"channel": "pd1_occupancy", "ec50": 0.5, "source": "assumption: as pembrolizumab"}
        ],
    }
    t.update(over)
    return {name: t}


def test_the_example_file_converts_units_and_keeps_its_half_life():
    d = load_drugs(EXAMPLE)["nivolumab"]
    # 7.81 mL/h -> L/day; 32.1 mL/h -> L/day; volumes in L unchanged
    assert d.params["CL"].value == pytest.approx(7.81 * 24 / 1000, rel=1e-12)
    assert d.params["Q2"].value == pytest.approx(32.1 * 24 / 1000, rel=1e-12)
    assert d.params["V1"].value == 4.02 and d.params["CL"].unit == "L/day"
    assert "(given as 7.81 mL/h)" in d.params["CL"].source
    # label: t1/2 25 d, Vss 6.8 L (Opdivo label); the model's own, from its PK
    assert abs(d.terminal_half_life() / 25.0 - 1) < 0.1
    assert d.params["V1"].value + d.params["V2"].value == pytest.approx(6.8, rel=0.01)
    assert d.clinical_dose.startswith("nivolumab 240 mg every 14 d")
    assert d.effects[0].channel == "pd1_occupancy" and d.ref_weight == 80.0
    # Bajaj 2017: weight on CL and V1 only; Q2 and V2 are the same at 40 and 160 kg
    light, heavy = (d.individual(d.params.typical(), w) for w in (40.0, 160.0))
    assert light["Q2"] == heavy["Q2"] and light["V2"] == heavy["V2"] == 2.78
    assert heavy["CL"] / light["CL"] == pytest.approx(4.0**0.566, rel=1e-12)
    assert heavy["V1"] / light["V1"] == pytest.approx(4.0**0.597, rel=1e-12)


def test_weight_scaled_names_pk_parameters_of_the_drug():
    t = _pembro_copy()
    t["pembro_copy"]["weight_scaled"] = ["CL", "V3"]
    with pytest.raises(ValueError, match=r"pembro_copy\.weight_scaled: \['CL', 'V3'\]: a list of"):
        parse_drugs(t)
    t["pembro_copy"]["weight_scaled"] = ["CL"]
    t["pembro_copy"]["weight_exponent_v"] = 0.0  # (an exponent on no listed volume: refused)
    d = parse_drugs(t)["pembro_copy"]
    lo, hi = (d.individual(d.params.typical(), w) for w in (50.0, 100.0))
    assert lo["V1"] == hi["V1"] and hi["CL"] / lo["CL"] == pytest.approx(2.0**0.595)


def test_per_kg_units_and_nanomolar_potency():
    t = _pembro_copy()
    t["pembro_copy"]["pk"]["V1"] = {"value": 3.48 / 76.8, "unit": "L/kg", "source": "s"}
    t["pembro_copy"]["effects"] = [
        {"channel": "pd1_occupancy", "ec50_nM": 3.0, "source": "assumption: test"}
    ]
    d = parse_drugs(t)["pembro_copy"]
    assert d.params["V1"].value == pytest.approx(3.48, rel=1e-12)
    assert d.effects[0].ec50 == pytest.approx(3.0 * 146000.0 * 1e-6, rel=1e-12)  # mg/L


def test_every_bad_field_is_named_at_once():
    t = _pembro_copy()["pembro_copy"]
    t = copy.deepcopy(t)
    t["route"] = "im"
    t["colour"] = "red"
    t["pk"]["CL"]["unit"] = "L/hr"
    t["pk"]["V1"]["source"] = "  "
    t["pk"]["ka2"] = {"value": 1.0, "unit": "1/h", "source": "s"}
    t["effects"] = [
        {"channel": "pd1_blockade", "ec50": 0.5, "source": "s"},
        {"channel": "pd1_occupancy", "slope": 1.0, "ec50": 0.5, "source": "s"},
        {"channel": "pd1_occupancy", "ec50_nM": 3.0, "source": "s"},
    ]
    del t["mw"]
    with pytest.raises(ConfigError) as e:
        parse_drugs({"mydrug": t}, source="mine.toml")
    text = "\n".join(e.value.errors)
    for needle in (
        "mydrug.route: 'im' is not allowed; allowed: iv, oral, sc",
        "mydrug.colour: unknown key",
        "mydrug.pk.CL.unit: 'L/hr' is not allowed",
        "mydrug.pk.V1.source",
        "mydrug.pk.ka2: unknown key",
        "mydrug.effects[0].channel: 'pd1_blockade' is not allowed",
        "mydrug.effects[1].slope",
        "mydrug.effects[2].ec50_nM: converting nM needs the drug's mw",
        "mydrug.effects[2]: mydrug.effects[1] and mydrug.effects[2] both act on channel "
        "'pd1_occupancy' at site 'central'",
    ):
        assert needle in text, needle
    assert str(e.value).startswith("mine.toml: 9 invalid field(s)")


def test_a_clearance_slipped_by_a_unit_is_caught_by_the_half_life():
    t = _pembro_copy()
    t["pembro_copy"]["pk"]["CL"] = {"value": 0.22, "unit": "L/h", "source": "s"}  # meant /day
    with pytest.raises(ConfigError, match=r"half_life_days: 26 d, but the PK parameters give"):
        parse_drugs(t)


@pytest.mark.parametrize(
    "over, match",
    [
        ({"clinical_dose": "pembrolizumab 200 mg q3w"}, "doses pembrolizumab, not pembro_copy"),
        ({"clinical_dose": "pembro_copy 200 mgs q3w"}, "clinical_dose"),
        # the file's clinical dose above its own maximum single dose
        (
            {"clinical_dose": "pembro_copy 480 mg q3w", "max_single_dose_mg": 400},
            r"clinical_dose: 'pembro_copy 480 mg every 21 d': one dose is 480 mg .* above "
            r"pembro_copy's label maximum single dose of 400 mg; allowed: at most that",
        ),
        ({"route": "oral"}, "oral drugs need an absorption rate 'ka'"),
        (
            {
                "effects": [
                    {"channel": "pd1_occupancy", "ec50": 0.5, "site": "effect", "source": "s"}
                ]
            },  # fmt: skip
            "site 'effect', which this drug does not have",
        ),
        ({"marrow_chain": 3}, "marrow_chain \\(3\\) and the PK parameter mtt_marrow go together"),
        ({"half_life_source": ""}, "half_life_source"),
        (
            {"effects": [{"channel": "pd1_occupancy", "emax": 2.0, "ec50": 0.5, "source": "s"}]},
            r"effects\[0\].emax: 2.0 must be <= 1",  # a fraction channel
        ),
        (
            {
                "effects": [
                    {"channel": "pd1_occupancy", "kind": "linear", "slope": 1.0, "source": "s"}
                ]
            },  # fmt: skip
            "is a fraction in \\[0, 1\\] and takes emax effects",
        ),
        (
            {
                "pk": _pembro_copy()["pembro_copy"]["pk"]
                | {"ka": {"value": 1.0, "unit": "1/h", "source": "s"}}
            },
            "pembro_copy.pk.ka: an absorption rate is for oral or sc drugs",
        ),  # fmt: skip
        (
            {
                "pk": _pembro_copy()["pembro_copy"]["pk"]
                | {"V2": {"value": 4.06, "unit": "L", "cv": 36, "source": "s"}}
            },
            r"pembro_copy.pk.V2.cv: 36: a CV is a fraction \(0.36 for 36%\)",
        ),  # fmt: skip
    ],
)
def test_drug_level_errors(over, match):
    with pytest.raises(ConfigError, match=match):
        parse_drugs(_pembro_copy(**over))


@pytest.mark.parametrize("name", ["x", "for", "qd", "q3w", "untreated", "hold", "cycles"])
def test_names_of_the_regimen_syntax_are_refused(name):
    with pytest.raises(ConfigError, match="is a word of the regimen syntax"):
        parse_drugs(_pembro_copy(name))


@pytest.mark.parametrize("name", ["temozolomidé", "Nivo", "2nd_drug", "nivo-lumab"])
def test_drug_names_are_lower_case_ascii(name):
    """The name becomes SBML ids (an accented name wrote an invalid export without a word)."""
    with pytest.raises(ConfigError, match="lower-case ASCII letters, digits and _"):
        parse_drugs(_pembro_copy(name))


def test_builtin_names_and_redefinitions_are_refused():
    with pytest.raises(ConfigError, match="'doxorubicin' is a built-in drug"):
        parse_drugs(_pembro_copy("doxorubicin"))
    d = parse_drugs(_pembro_copy())
    register_drugs(d)
    register_drugs(parse_drugs(_pembro_copy()))  # the same definition again: fine
    no_mw = _pembro_copy("no_mw")
    del no_mw["no_mw"]["mw"]  # optional; NaN inside must not make a definition differ from itself
    register_drugs(parse_drugs(no_mw))
    register_drugs(parse_drugs(no_mw))
    other = parse_drugs(_pembro_copy(toxicity="something else"))
    with pytest.raises(ValueError, match="already defined in this run with another definition"):
        register_drugs(other)
    assert CATALOGUE["pembro_copy"] is d["pembro_copy"]


def test_a_drug_file_copy_of_pembrolizumab_simulates_as_pembrolizumab():
    """The whole path (file → Drug → catalogue → cohort PK draws → simulation) gives the
    built-in drug's trajectories when the file states its numbers (the draws are keyed by the
    drug's name, so the copy gets its own between-patient draws: compared without them)."""
    from vcohort.cohort import make_cohort
    from vcohort.dosing import compile_schedule, parse_regimen
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import simulate

    before = make_cohort(4, seed=5, runin_days=0, variability=False)
    register_drugs(parse_drugs(_pembro_copy()))
    cohort = make_cohort(4, seed=5, runin_days=0, variability=False)
    for k, v in before.params.items():  # registering a drug leaves every other draw alone
        np.testing.assert_array_equal(v, cohort.params[k])
    for d in before.pk:
        for k, v in before.pk[d].items():
            np.testing.assert_array_equal(v, cohort.pk[d][k])
    assert set(cohort.pk["pembro_copy"]) == {"CL", "V1", "Q2", "V2"}
    out = {}
    for name in ("pembrolizumab", "pembro_copy"):
        s = compile_schedule([parse_regimen(f"{name} 200 mg every 21 d over 30 min")], 42.0)
        tr = simulate(CSC_IMMUNE, cohort, s, 42, save_every=42, progress=False)
        out[name] = np.asarray(tr.daily["diameter_mm"])
    np.testing.assert_allclose(out["pembro_copy"], out["pembrolizumab"], rtol=1e-12)
    untreated = simulate(CSC_IMMUNE, cohort, None, 42, save_every=42, progress=False)
    assert np.all(out["pembro_copy"][:, -1] < np.asarray(untreated.daily["diameter_mm"])[:, -1])


def test_experiment_files_read_drug_files_relative_to_themselves(tmp_path):
    from vcohort.experiment import load_experiment

    (tmp_path / "drugs").mkdir()
    (tmp_path / "drugs" / "niv.toml").write_text(EXAMPLE.read_text())
    exp_text = """
drug_files = ["drugs/niv.toml"]
[population]
size = 3
[simulation]
horizon_days = 56
[[arms]]
name = "niv"
regimens = ["nivolumab 480 mg q4w"]
"""
    (tmp_path / "e.toml").write_text(exp_text)
    exp = load_experiment(tmp_path / "e.toml")
    assert exp.arms[0].regimens[0].drug == "nivolumab"
    [(path, tables)] = exp.config["drug_files"].items()  # the definitions, for provenance
    assert path == "drugs/niv.toml" and tables["nivolumab"]["route"] == "iv"

    (tmp_path / "bad.toml").write_text(exp_text.replace("drugs/niv.toml", "drugs/none.toml"))
    with pytest.raises(ConfigError, match=r"drug_files\[0\]: drug file .*none.toml.* not exist"):
        load_experiment(tmp_path / "bad.toml")


def test_optimisation_files_read_drug_files(tmp_path):
    from vcohort.optimize.config import load_experiment

    (tmp_path / "niv.toml").write_text(EXAMPLE.read_text())
    (tmp_path / "o.toml").write_text(
        'days = 28\ndrug_files = "niv.toml"\n[train]\npatients = 2\n[heldout]\npatients = 2\n'
        'seed = 9\n[[drug]]\nname = "nivolumab"\nevery = "14 d"\nround_to = "10 mg"\n'
    )
    exp = load_experiment(tmp_path / "o.toml")
    assert exp.problem.drugs[0].drug == "nivolumab"
    assert exp.problem.drugs[0].resolved_max() == 480.0  # the file's max_single_dose_mg


def test_the_optimiser_fingerprint_holds_the_drug_definitions():
    """A resumed optimisation must not continue over a drug whose definition changed."""
    import dataclasses

    from vcohort.optimize.loop import _fingerprint
    from vcohort.optimize.problem import DrugSlots, Problem

    register_drugs(parse_drugs(_pembro_copy()))
    p = Problem(drugs=(DrugSlots(drug="pembro_copy", every_days=21.0),), days=42)
    a = _fingerprint(p, 4, False, {})
    CATALOGUE["pembro_copy"] = dataclasses.replace(CATALOGUE["pembro_copy"], toxicity="x")
    assert _fingerprint(p, 4, False, {}) != a


def test_cli_takes_drug_files(tmp_path, capsys):
    from vcohort.cli import main

    out = tmp_path / "run"
    rc = main(
        ["simulate", "--drug-file", str(EXAMPLE), "--patients", "3", "--days", "14",
         "--no-progress", "--regimen", "nivolumab 240 mg q2w", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0 and (out / "endpoints.parquet").is_file()
    import json

    env = json.loads((out / "manifest.json").read_text())["environment"]
    assert env["drug_files"][str(EXAMPLE)]["nivolumab"]["pk"]["CL"]["unit"] == "mL/h"
    bad = tmp_path / "bad.toml"
    bad.write_text('[niv]\nroute = "iv"\n')
    rc = main(["simulate", "--drug-file", str(bad), "--patients", "2", "--days", "7", "--out",
               str(tmp_path / "never")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "niv.clinical_dose: required key is missing" in err
    assert "niv.pk: required key is missing" in err
    assert not (tmp_path / "never").exists()  # refused before any output


def test_an_oral_user_drug_with_a_delay_chain_exports_to_sbml_and_roadrunner_agrees():
    """A drug file using every unit conversion and site (oral depot with ka per hour, CL per
    hour, V per kg, a marrow chain with its mean transit time in hours, an nM potency): the
    SBML export of a patient on it is solved by libroadrunner to vcohort's scipy reference
    within 1e-6 relative over 3 weeks (oral doses are boluses into the depot, placed exactly by
    both), ANC included."""
    roadrunner = pytest.importorskip("roadrunner")
    from test_sbml import assert_roadrunner_agrees

    from vcohort.cohort import make_cohort
    from vcohort.dosing import compile_schedule, parse_regimen
    from vcohort.sbml import patient_sbml

    tables = {
        "alkylator_x": {
            "class": "chemo",
            "route": "oral",
            "clinical_dose": "alkylator_x 150 mg/m2 every 24 h x 5",
            "mw": 194.15,
            "half_life_days": 0.0808,  # 0.693 x 28 L / 10 L/h = 1.94 h
            "half_life_source": "assumption: test drug",
            "marrow_chain": 3,
            "weight_exponent_v": 1.0,  # V per kg: proportional to weight
            "pk": {
                "ka": {"value": 5.8, "unit": "1/h", "cv": 0.3, "source": "assumption: test"},
                "CL": {"value": 10.0, "unit": "L/h", "cv": 0.2, "source": "assumption: test"},
                "V1": {"value": 0.4, "unit": "L/kg", "source": "assumption: test"},
                "mtt_marrow": {"value": 400.0, "unit": "h", "source": "assumption: test"},
            },
            "effects": [
                {"channel": "chemo_kill", "ec50_nM": 20000.0, "source": "assumption: test"},
                {"channel": "myelotoxicity", "slope": 0.5, "site": "marrow", "source": "s"},
            ],
        }
    }
    d = parse_drugs(tables)["alkylator_x"]
    assert d.params["ka"].value == pytest.approx(5.8 * 24)
    assert d.params["V1"].value == pytest.approx(0.4 * 70.0)  # default ref_weight 70 kg
    assert d.params["mtt_marrow"].value == pytest.approx(400.0 / 24)
    register_drugs({"alkylator_x": d})
    c = make_cohort(1, seed=8)
    s = compile_schedule([parse_regimen("alkylator_x")], 21.0)
    sbml = patient_sbml(c, 0, s)
    assert roadrunner.validateSBML(sbml) == ""
    assert 'id="alkylator_x_marrow3"' in sbml
    fin_vc = assert_roadrunner_agrees(sbml, c, s, 21)
    assert fin_vc["ANC"] < 0.95 * c.y0["ANC"][0]  # the chain's effect is in the comparison


def test_drugs_command_lists_the_catalogue_with_the_files_drugs(capsys):
    from vcohort.cli import main

    assert main(["drugs"]) == 0
    assert "nivolumab" not in capsys.readouterr().out
    assert main(["drugs", "--drug-file", str(EXAMPLE)]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("nivolumab")]
    assert "26.2" in line and "pd1_occupancy@central" in line and line.endswith("drug file")


def test_a_batch_experiment_cannot_borrow_another_experiments_drug(tmp_path):
    """In one process (a batch) an experiment that gives a user drug must name a drug file that
    defines it (else it would validate or not depending on the batch's other files, and its
    run record would not hold the drug); a --drug-file drug is for every experiment."""
    from vcohort.experiment import load_experiment

    (tmp_path / "niv.toml").write_text(EXAMPLE.read_text())
    body = "[population]\nsize = 3\n[simulation]\nhorizon_days = 56\n[[arms]]\nname = 'n'\n"
    body += "regimens = ['nivolumab 480 mg q4w']\n"
    (tmp_path / "e1.toml").write_text('drug_files = ["niv.toml"]\n' + body)
    (tmp_path / "e3.toml").write_text(body)
    load_experiment(tmp_path / "e1.toml")
    with pytest.raises(ConfigError, match="none of this experiment's drug_files defines it"):
        load_experiment(tmp_path / "e3.toml")
    from vcohort.drug_file import use_drug_files

    use_drug_files([tmp_path / "niv.toml"])  # as --drug-file: for the whole run
    assert load_experiment(tmp_path / "e3.toml").arms[0].regimens[0].drug == "nivolumab"


def test_the_temozolomide_example_is_dacarbazine_scaled_and_nadirs_in_week_4():
    """experiments/drugs/temozolomide.toml: Ostermann 2004 PK (t1/2 2.1 h), dacarbazine's
    effects with every EC50 times one fitted factor, given days 1-5 of 28; the first cycle's
    median ANC nadir falls in days 21-35 (Temodar label: around day 28; the fit script gives
    day 26 on 400 patients; here 30 patients)."""
    from vcohort.cohort import make_cohort
    from vcohort.dosing import compile_schedule, parse_regimen
    from vcohort.drugs import DACARBAZINE
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import simulate

    d = load_drugs(EXAMPLE.parent / "temozolomide.toml")["temozolomide"]
    assert d.terminal_half_life() * 24 == pytest.approx(2.1, rel=1e-3)
    ratios = {
        e.channel: e.ec50 / f.ec50 for e, f in zip(d.effects, DACARBAZINE.effects, strict=True)
    }
    assert ratios == pytest.approx(dict.fromkeys(ratios, 5.42), rel=1e-3)
    register_drugs({"temozolomide": d})
    c = make_cohort(30, seed=3)
    s = compile_schedule([parse_regimen("temozolomide")], 42.0)  # its clinical dose: 1 cycle
    assert s.time[s.valid].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 28.0, 29.0, 30.0, 31.0, 32.0]
    tr = simulate(CSC_IMMUNE, c, s, 42, save_every=42, progress=False)
    anc = np.asarray(tr.daily["ANC"])[:, :36]
    assert 21 <= np.median(anc.argmin(axis=1)) <= 35
    assert np.median(anc.min(axis=1)) < 0.9 * np.median(anc[:, 0])  # a real nadir


def test_a_shared_random_effect_is_read_and_drives_both_parameters():
    """``shared_eta = "CL"`` on Q2 gives Q2 CL's standard-normal draw scaled by Q2's own CV
    (Ahamadi 2017's one ETA on CL and Q), so log(Q2) is an exact linear function of log(CL)."""
    from vcohort.cohort import make_cohort

    t = _pembro_copy()
    t["pembro_copy"]["pk"]["Q2"] |= {"cv": 0.2, "shared_eta": "CL"}
    (drug,) = parse_drugs(t).values()
    assert drug.shared_eta == (("Q2", "CL"),)
    register_drugs({"pembro_copy": drug})
    pk = make_cohort(300, seed=2, runin_days=0).pk["pembro_copy"]
    z_cl = np.log(pk["CL"] / drug.params["CL"].value) / drug.params["CL"].omega
    z_q = np.log(pk["Q2"] / drug.params["Q2"].value) / drug.params["Q2"].omega
    np.testing.assert_allclose(z_q, z_cl, rtol=1e-12, atol=1e-12)
    assert np.std(z_cl) > 0.5  # a real spread, not a degenerate draw
    z_v2 = np.log(pk["V2"] / drug.params["V2"].value) / drug.params["V2"].omega
    assert abs(np.corrcoef(z_v2, z_cl)[0, 1]) < 0.2  # V2 keeps its own draw


@pytest.mark.parametrize(
    "change, match",
    [
        ({"Q2": {"shared_eta": "Q3"}}, r"pembro_copy\.pk\.Q2\.shared_eta"),  # not in the file
        ({"Q2": {"shared_eta": "Q2"}}, r"pembro_copy\.pk\.Q2\.shared_eta"),  # itself
        ({"Q2": {"cv": 0.0, "shared_eta": "CL"}}, r"Q2 has no between-patient CV"),
        (
            {"Q2": {"shared_eta": "CL"}, "CL": {"shared_eta": "V1"}},
            r"the driver must be another parameter with its own draw",
        ),
    ],
)
def test_bad_shared_random_effects_are_named(change, match):
    t = _pembro_copy()
    for k, v in change.items():
        t["pembro_copy"]["pk"][k] |= v
    with pytest.raises(ConfigError, match=match):
        parse_drugs(t)


def test_an_omega_block_is_read_and_correlates_the_draws():
    """``eta_correlation`` gives two PK parameters correlated random effects (an omega block),
    each keeping its CV; the first-named parameter keeps its own draw."""
    from vcohort.cohort import make_cohort

    t = _pembro_copy()
    t["pembro_copy"]["eta_correlation"] = [{"a": "CL", "b": "V1", "rho": 0.6, "source": "x"}]
    (drug,) = parse_drugs(t).values()
    assert drug.eta_correlation == (("CL", "V1", 0.6),)
    register_drugs({"pembro_copy": drug})
    c = make_cohort(4000, seed=6, runin_days=0)
    pk = c.pk["pembro_copy"]
    r = np.corrcoef(np.log(pk["CL"]), np.log(pk["V1"]))[0, 1]
    assert abs(r - 0.6) < 0.04  # SE of a sample correlation (1 - 0.36)/sqrt(4000) = 0.010
    assert abs(np.std(np.log(pk["V1"])) - drug.params["V1"].omega) < 0.01
    from vcohort.cohort import standard_normals  # CL, named first, keeps its own draw

    z = standard_normals(6, c.patient_id, ["pk:pembro_copy:CL"])["pk:pembro_copy:CL"]
    cl = drug.params["CL"]
    np.testing.assert_allclose(pk["CL"], cl.value * np.exp(cl.omega * z), rtol=1e-12)


def test_a_bad_pk_value_is_one_error_not_also_an_eta_correlation_error():
    t = _pembro_copy()
    t["pembro_copy"]["pk"]["V1"]["value"] = 0.0
    t["pembro_copy"]["eta_correlation"] = [{"a": "CL", "b": "V1", "rho": 0.6, "source": "x"}]
    with pytest.raises(ConfigError) as e:
        parse_drugs(t)
    assert any("pk.V1" in m for m in e.value.errors), e.value.errors
    assert not any("eta_correlation" in m for m in e.value.errors), e.value.errors


def test_the_nivolumab_example_carries_bajaj_2017s_cl_vc_correlation():
    """experiments/drugs/nivolumab.toml: Bajaj 2017's omega block, cov(CL, VC) 0.0432 over
    omega² 0.123 each (r = 0.351), read from the file; V2 stays independent."""
    d = load_drugs(EXAMPLE)["nivolumab"]
    assert d.eta_correlation == (("CL", "V1", 0.351),) and d.shared_eta == ()


def test_a_catalogue_omega_block_must_name_parameters_with_their_own_draw():
    """A Drug's eta_correlation may not name a parameter that uses another's draw, nor one
    without a CV (raised when the Drug is built, before any cohort)."""
    import dataclasses

    with pytest.raises(ValueError, match="Q2 uses CL's draw; correlate that"):
        dataclasses.replace(PEMBROLIZUMAB, eta_correlation=(("Q2", "V1", 0.2),))
    no_cv = dataclasses.replace(PEMBROLIZUMAB, shared_eta=())
    rows = [r if r.name != "V2" else dataclasses.replace(r, cv=0.0) for r in no_cv.params]
    from vcohort.model.parameters import ParamTable

    with pytest.raises(ValueError, match="'V2' is not a PK parameter of this drug with a CV > 0"):
        dataclasses.replace(
            no_cv, params=ParamTable(tuple(rows)), eta_correlation=(("CL", "V2", 0.2),)
        )


@pytest.mark.parametrize(
    "block, match",
    [
        ([{"a": "CL", "b": "V9", "rho": 0.3, "source": "x"}], r"eta_correlation\[0\]\.b"),
        ([{"a": "CL", "b": "V1", "rho": 1.0, "source": "x"}], r"eta_correlation\[0\]\.rho"),
        ([{"a": "CL", "b": "V1", "rho": 0.3}], r"eta_correlation\[0\]\.source"),
        ([{"a": "CL", "b": "CL", "rho": 0.3, "source": "x"}], r"each pair of two parameters once"),
        (
            [
                {"a": "CL", "b": "V1", "rho": 0.9, "source": "x"},
                {"a": "V1", "b": "V2", "rho": 0.9, "source": "x"},
                {"a": "CL", "b": "V2", "rho": -0.9, "source": "x"},
            ],
            r"not positive definite",
        ),
        ("CL,V1", r"expected a list"),
    ],
)
def test_bad_omega_blocks_are_named(block, match):
    t = _pembro_copy()
    t["pembro_copy"]["eta_correlation"] = block
    with pytest.raises(ConfigError, match=match):
        parse_drugs(t)


@pytest.mark.parametrize("kind", [None, "linear"])
def test_a_linear_effect_needs_its_slope(kind):
    """A linear effect (kind linear, or a linear channel's default) without slope was dropped
    without a word: the drug loaded with no myelotoxicity."""
    t = _pembro_copy()
    eff = {"channel": "myelotoxicity", "source": "assumption: test"}
    if kind is not None:
        eff["kind"] = kind
    t["pembro_copy"]["effects"].append(eff)
    with pytest.raises(ConfigError, match=r"pembro_copy\.effects\[1\]\.slope: required key is "):
        parse_drugs(t)
    eff["slope"] = 0.2
    d = parse_drugs(t)["pembro_copy"]
    assert [(e.channel, e.kind, e.slope) for e in d.effects][1] == ("myelotoxicity", "linear", 0.2)


def test_a_drug_file_hill_exponent_is_capped():
    t = _pembro_copy()
    t["pembro_copy"]["effects"][0]["hill"] = 10.0
    assert parse_drugs(t)["pembro_copy"].effects[0].hill == 10.0
    t["pembro_copy"]["effects"][0]["hill"] = 10.5
    with pytest.raises(ConfigError, match=r"effects\[0\]\.hill: 10.5: allowed 0 < hill <= 10 "):
        parse_drugs(t)


def test_a_steep_hill_curve_is_finite_in_float32_and_exact_in_float64():
    """hill 20, ec50 0.004 mg/L: the textbook c**h / (c**h + ec50**h) is 0/0 at c = 0 in
    float32 (ec50**20 underflows) and inf/inf above c = 85 mg/L; `Effect.value` is finite on
    [0, 1e6] mg/L in float32 (numpy and JAX, with a finite gradient at 0), agrees with the
    textbook form in float64, and keeps c / (c + ec50) bit for bit at hill 1."""
    import jax
    import jax.numpy as jnp

    from vcohort.drug import Effect

    e = Effect("pd1_occupancy", ec50=0.004, hill=20.0, emax=0.9, source="s")
    c32 = np.array([0.0, 1e-3, 0.004, 0.005, 85.0, 100.0, 1e6], np.float32)
    with np.errstate(all="ignore"):
        textbook = c32**20 / (c32**20 + np.float32(0.004) ** 20)
    assert np.isnan(textbook[0]) and np.isnan(textbook[-1])  # what this guards against
    for v in (e.value(c32), np.asarray(e.value(jnp.asarray(c32)))):
        assert v.dtype == np.float32 and np.all(np.isfinite(v))
        assert v[0] == 0.0 and v[-1] == np.float32(0.9) and v[2] == pytest.approx(0.45, rel=1e-6)
    assert np.isfinite(jax.grad(e.value)(jnp.float32(0.0)))
    c64 = np.array([0.0, 1e-3, 0.004, 0.0041, 0.01, 0.1, 85.0, 1e3])
    want = 0.9 * c64**20 / (c64**20 + 0.004**20)
    np.testing.assert_allclose(e.value(c64), want, rtol=4e-16, atol=0)
    one = Effect("pd1_occupancy", ec50=0.5, source="s")
    np.testing.assert_array_equal(one.value(c64), c64 / (c64 + 0.5))


def test_a_steep_hill_drug_simulates_in_float32():
    """The reviewer's case (hill 20, ec50 0.004 mg/L, a dose on day 5): float32 gave NaN from
    day 0; now both precisions and both engines (the fused kernel in Pallas' interpreter here,
    and lowered to Triton for CUDA) run and agree."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from vcohort.cohort import make_cohort
    from vcohort.dosing import compile_schedule, parse_regimen
    from vcohort.fused import cohort_pallas_fn, shared_params
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import Plan, simulate

    t = _pembro_copy("steep")
    d = parse_drugs(t)["steep"]
    eff = dataclasses.replace(d.effects[0], hill=20.0, ec50=0.004)  # (above the file cap)
    steep = dataclasses.replace(d, effects=(eff,))
    register_drugs({"steep": steep})
    c = make_cohort(2, seed=1, runin_days=0)
    s = compile_schedule([parse_regimen("steep 240 mg start 5 d")], 10.0)
    out = {}
    for prec, engine in (("float64", "xla"), ("float32", "xla"), ("float32", "pallas")):
        tr = simulate(
            CSC_IMMUNE, c, s, 10, save_every=10, progress=False, precision=prec, engine=engine
        )
        out[prec, engine] = np.asarray(tr.daily["diameter_mm"], dtype=np.float64)
        assert np.all(np.isfinite(out[prec, engine])), (prec, engine)
        assert np.all(np.asarray(tr.status) == 0), (prec, engine)
    np.testing.assert_allclose(out["float32", "xla"], out["float64", "xla"], rtol=1e-5)
    np.testing.assert_allclose(out["float32", "pallas"], out["float32", "xla"], rtol=1e-6)
    plan = Plan(CSC_IMMUNE, (steep,), 10, 0.1, 10, jnp.float32)
    c32 = make_cohort(2, seed=1, runin_days=0, precision="float32")
    bolus, rate = s.step_inputs(plan.dt, plan.n_steps)
    args = (*c32.arrays(np.arange(2), (steep,), np.float32), bolus, rate)
    shared = shared_params(c32.params, np.float32)
    fn = jax.jit(cohort_pallas_fn(plan, block=128, interpret=False, constants=shared))
    text = fn.trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    assert text.count("__gpu$xla.gpu.triton") == 1  # the capped Hill curve lowers to Triton


def test_a_shallow_hill_drug_has_finite_dose_gradients():
    """hill < 1: d(c**h)/dc is infinite at c = 0, and before the first dose the chain rule
    multiplied it by a zero derivative (0 x inf): every dose gradient was NaN.  Now the
    effect's derivative at c = 0 is 0, its value unchanged, and the dose gradient of the final
    diameter matches central differences (drug started on day 3, so c = 0 for 3 days)."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from vcohort.cohort import make_cohort
    from vcohort.dosing import compile_schedule, parse_regimen
    from vcohort.drug import Effect
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import Plan, cohort_fn

    e = Effect("pd1_occupancy", ec50=2.0, hill=0.6, emax=0.9, source="s")
    c = np.array([0.0, 0.5, 2.0, 30.0])
    np.testing.assert_allclose(e.value(c), 0.9 * c**0.6 / (c**0.6 + 2.0**0.6), rtol=1e-15)
    np.testing.assert_allclose(np.asarray(e.value(jnp.asarray(c))), e.value(c), rtol=1e-15)
    assert float(jax.grad(e.value)(0.0)) == 0.0

    d = parse_drugs(_pembro_copy("shallow"))["shallow"]
    shallow = dataclasses.replace(d, effects=(dataclasses.replace(d.effects[0], hill=0.6),))
    register_drugs({"shallow": shallow})
    days = 12
    s = compile_schedule([parse_regimen("shallow 200 mg every 7 d start 3 d over 1 h")], days)
    plan = Plan(CSC_IMMUNE, (shallow,), days, 0.1, days, jnp.float64)
    grid = s.step_grid(plan.dt, plan.n_steps)
    cohort = make_cohort(2, seed=3, runin_days=0)
    args = cohort.arrays(np.arange(2), plan.drugs, np.float64)
    f = cohort_fn(plan)

    def objective(amount):
        bolus, rate = grid.scatter(amount, jnp)
        return jnp.mean(jnp.log(f(*args, bolus, rate)["daily"]["diameter_mm"][:, -1]))

    amount = jnp.asarray(s.amount, jnp.float64)
    g = np.asarray(jax.jit(jax.grad(objective))(amount))
    assert np.all(np.isfinite(g))
    fo = jax.jit(objective)
    h = 1e-3 * float(amount[0, 0])
    step = jnp.zeros_like(amount).at[0, 0].set(h)
    fd = (float(fo(amount + step)) - float(fo(amount - step))) / (2 * h)
    assert fd < 0  # more anti-PD-1 -> smaller tumour: the gradient is not trivially 0
    # central differences: truncation O(h^2) ~1e-6 relative, round-off ~1e-16 / h
    assert g[0, 0] == pytest.approx(fd, rel=1e-4)


def test_names_of_reference_model_drugs_are_refused():
    """de Pillis 2009's chemo, il2, til: a file's `chemo` would be shadowed by the model's own
    under --model depillis2009 (the manifest listing the file); and a reference model, dosed
    with its own drugs only, takes no drug files."""
    from vcohort.model import get_model

    for name in ("chemo", "il2", "til"):
        with pytest.raises(ConfigError) as e:
            parse_drugs(_pembro_copy(name))
        msg = e.value.errors[0]
        assert msg.startswith(f"{name}: '{name}' is a drug of model depillis2009's own catalogue")
        assert "taken: cb839, cd133_cart, chemo," in msg and "pembrolizumab" in msg
    for model in ("depillis2009", "kuznetsov1994"):
        with pytest.raises(ConfigError, match=f"'{model}' is dosed with its own drugs only"):
            parse_drugs(_pembro_copy(), model=get_model(model))
    assert "pembro_copy" in parse_drugs(_pembro_copy(), model=get_model("csc_immune"))


@pytest.mark.parametrize(
    "over, pk, match",
    [
        # weight_scaled lists V1, whose exponent is 0: V1 would not change with weight
        (
            {"weight_scaled": ["CL", "V1"], "weight_exponent_v": 0.0},
            {},
            r"pembro_copy\.weight_scaled: \['CL', 'V1'\] lists V1, but weight_exponent_v is 0",
        ),
        # an exponent on clearances, none of which weight_scaled lists: it scales nothing
        (
            {"weight_scaled": ["V1"], "weight_exponent_v": 0.5},
            {},
            r"pembro_copy\.weight_exponent_cl: 0\.595, but weight_scaled \['V1'\] lists none "
            r"of the drug's clearances \(CL, Q2\)",
        ),
        # per kg, but flat across weights
        (
            {"weight_exponent_cl": 0.0},
            {"CL": {"value": 0.1, "unit": "mL/h/kg", "cv": 0.2, "source": "s"}},
            r"pembro_copy\.pk\.CL\.unit: 'mL/h/kg' is per kg, but weight_exponent_cl is 0",
        ),
        (
            {"weight_scaled": ["CL"], "weight_exponent_v": 0.0},
            {"V1": {"value": 0.05, "unit": "L/kg", "source": "s"}},
            r"pembro_copy\.pk\.V1\.unit: 'L/kg' is per kg, but weight_exponent_v is 0",
        ),
    ],
)
def test_contradictory_weight_settings_are_refused(over, pk, match):
    t = _pembro_copy(**over)
    t["pembro_copy"]["pk"].update(pk)
    with pytest.raises(ConfigError, match=match):
        parse_drugs(t)


def test_the_shipped_example_files_pass_the_weight_checks():
    examples = EXAMPLE.parent
    assert set(load_drugs(examples / "nivolumab.toml")) == {"nivolumab"}
    assert set(load_drugs(examples / "temozolomide.toml")) == {"temozolomide"}
    t = _pembro_copy()  # per kg and proportional to weight: fine
    cl = PEMBROLIZUMAB.params["CL"].value
    t["pembro_copy"]["pk"]["CL"] = {"value": cl / 76.8, "unit": "L/day/kg", "source": "s"}
    t["pembro_copy"]["weight_exponent_cl"] = 1.0
    assert parse_drugs(t)["pembro_copy"].params["CL"].value == pytest.approx(cl, rel=1e-12)


def test_structural_errors_are_listed_with_every_other_bad_field():
    """Q2 without V2, sc without ka, an effect-site effect without ke0 and a marrow chain
    without its transit time were found by `Drug` only once every other field was valid, and
    then one at a time under the bare drug name; now all are listed with the ordinary errors,
    under their fields."""
    t = copy.deepcopy(_pembro_copy()["pembro_copy"])
    t["route"] = "sc"  # no ka
    del t["pk"]["V2"]  # Q2 alone
    t["effects"][0]["site"] = "effect"  # no ke0
    t["marrow_chain"] = 2  # no mtt_marrow
    t["mw"] = -1.0  # an ordinary error
    with pytest.raises(ConfigError) as e:
        parse_drugs({"mine": t})
    errors = e.value.errors
    for needle in (
        "mine.pk.ka: required key is missing: sc drugs need an absorption rate 'ka'",
        "mine.pk.V2: required key is missing: Q2 and V2 go together",
        "mine.effects[0].site: 'effect': the 'pd1_occupancy' effect acts at site 'effect', "
        "which this drug does not have (its sites: central",
        "mine.pk.mtt_marrow: required key is missing: marrow_chain (2) and the PK parameter "
        "mtt_marrow go together",
        "mine.mw: -1.0 must be > 0",
    ):
        assert any(m.startswith(needle) for m in errors), (needle, errors)
    assert len(errors) == 5, errors


def test_the_module_docstring_example_loads():
    """The drug file in `vcohort.drug_file`'s docstring is a valid drug file (its Q2/V2 were
    commented out, giving a 13.4-day half-life against the stated 25)."""
    import textwrap
    import tomllib

    from vcohort import drug_file

    doc = drug_file.__doc__
    block = doc.split("::\n\n", 1)[1].split("\n\n" + "PK units", 1)[0]
    tables = tomllib.loads(textwrap.dedent(block))
    d = parse_drugs(tables, source="drug_file docstring")["nivolumab"]
    assert abs(d.terminal_half_life() / 25.0 - 1) < 0.1 and "Q2" in d.params


def test_the_cli_validates_a_drug_file_for_the_model_it_runs(tmp_path, capsys):
    """`--model depillis2009 --drug-file X`: the reference model is dosed with its own drugs
    only, so the file is refused before compute (it was loaded against the CSC–immune model
    and listed in the manifest as if used)."""
    from vcohort.cli import main

    out = tmp_path / "run"
    args = ["simulate", "--model", "depillis2009", "--drug-file", str(EXAMPLE), "--patients", "2"]
    assert main([*args, "--days", "7", "--out", str(out)]) == 2
    assert "its own drugs only" in capsys.readouterr().err and not out.exists()


def test_a_repeated_effect_on_one_channel_and_site_is_refused():
    """Two [[drug.effects]] on one channel at one site were both applied (the effect doubled)."""
    t = _pembro_copy()
    effect = t["pembro_copy"]["effects"][0]
    t["pembro_copy"]["effects"] = [effect, {**effect, "ec50": 2.0}]
    with pytest.raises(ConfigError) as e:
        parse_drugs(t)
    assert e.value.errors == [
        "pembro_copy.effects[1]: pembro_copy.effects[0] and pembro_copy.effects[1] both act on "
        "channel 'pd1_occupancy' at site 'central' (the simulator would apply both, doubling "
        "the effect); allowed: one effect per channel and site: merge them into one"
    ]
    # one channel at two sites is two effects
    t["pembro_copy"]["pk"]["ke0"] = {"value": 1.0, "unit": "1/day", "source": "assumption: x"}
    t["pembro_copy"]["effects"][1]["site"] = "effect"
    assert len(parse_drugs(t)["pembro_copy"].effects) == 2


def test_a_top_level_value_that_is_not_a_drug_table_is_one_error(tmp_path):
    """`version = 1` gave its own error and three for the keys a drug table would miss."""
    p = tmp_path / "d.toml"
    p.write_text("version = 1\n" + EXAMPLE.read_text())
    with pytest.raises(ConfigError) as e:
        load_drugs(p)
    assert len(e.value.errors) == 1 and e.value.errors[0].startswith(
        "version: expected a [version] drug table, got int 1"
    )


def test_a_drug_two_experiments_define_differently_is_one_error_naming_the_first_file(tmp_path):
    """In a batch, two experiments' drug files defining one drug differently gave the clash
    and a contradictory "none of this experiment's drug_files defines it"; the clash now
    names the file holding the first definition."""
    from vcohort.sweep import load_runs

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "niv.toml").write_text(EXAMPLE.read_text())
    (tmp_path / "b.toml").write_text(
        EXAMPLE.read_text().replace("toxicity = ", 'toxicity = "other" #', 1)
    )
    body = "[population]\nsize = 3\n[simulation]\nhorizon_days = 56\n[[arms]]\nname = 'n'\n"
    body += "regimens = ['nivolumab 480 mg q4w']\n"
    (tmp_path / "e1.toml").write_text('drug_files = ["a/niv.toml"]\n' + body)
    (tmp_path / "e2.toml").write_text('drug_files = ["b.toml"]\n' + body)
    with pytest.raises(ValueError) as e:
        load_runs([tmp_path / "e1.toml", tmp_path / "e2.toml"])
    text = str(e.value)
    assert "none of this experiment's drug_files" not in text
    assert "e2.toml: 1 invalid field(s)" in text
    first = str(tmp_path / "a" / "niv.toml")
    assert f"drug_files[0]: drug 'nivolumab' is already defined in this run by {first}" in text

import dataclasses
from importlib import resources

import numpy as np
import pytest

from vcohort.cohort import make_cohort, standard_normals
from vcohort.config import ConfigError
from vcohort.model import CSC_IMMUNE
from vcohort.population import (
    Correlation,
    available_presets,
    load_population,
    population_from_dict,
)


def _preset_dict(**changes):
    d = {
        "name": "t",
        "covariates": {
            c: {"median": m, "cv": 0.2, "lower": lo, "upper": hi, "source": "assumption: test"}
            for c, m, lo, hi in (
                ("weight_kg", 70.0, 35.0, 180.0),
                ("height_cm", 170.0, 140.0, 205.0),
                ("baseline_diameter_mm", 80.0, 15.0, 300.0),
            )
        },
        "pdl1": {"prevalence": 0.5, "source": "assumption: test"},
    }
    d.update(changes)
    return d


def test_default_preset_ships_as_data_and_keeps_the_original_defaults():
    assert "default" in available_presets()
    pop = load_population("default")
    # the values hard-coded in cohort.py before presets existed (MODEL.md: median BSLD 86 mm)
    c = pop.covariates
    assert (c["baseline_diameter_mm"].median, c["baseline_diameter_mm"].cv) == (86.0, 0.5)
    assert (c["weight_kg"].median, c["weight_kg"].cv) == (76.8, 0.2)
    assert (c["height_cm"].median, c["height_cm"].cv) == (170.0, 0.055)
    assert pop.pdl1_prevalence == pytest.approx(0.806)
    assert pop.plausibility is not None and pop.plausibility.screening_days == 84


def test_default_preset_leaves_every_parameter_draw_unchanged():
    # the PD-L1 correlation lists the parameter first, so its draws stay exactly
    # value * exp(omega * z) with the patient's own z (the draws before presets existed)
    c = make_cohort(40, seed=5, runin_days=0)
    z = standard_normals(5, c.patient_id, [f"param:{r.name}" for r in CSC_IMMUNE.params])
    for r in CSC_IMMUNE.params:
        expected = r.value * np.exp(r.omega * z[f"param:{r.name}"])
        np.testing.assert_array_equal(c.params[r.name], expected, err_msg=r.name)


def test_pdl1_prevalence_and_link_to_ifn_inducibility():
    c = make_cohort(3000, seed=1, runin_days=0)
    pos = c.covariates["pdl1_positive"]
    # binomial SE at p=0.806, n=3000 is 0.0072: 4 SE
    assert pos.mean() == pytest.approx(0.806, abs=0.03)
    # rho=0.7 between the latent PD-L1 variable and log(a_PDL1_IFN): positives have clearly
    # higher IFN-inducibility (the medians differ by ~0.2 in log units at these sizes)
    a = np.log(c.params["a_PDL1_IFN"])
    assert np.median(a[pos]) - np.median(a[~pos]) > 0.1
    # without the correlation the link disappears (difference within sampling noise)
    pop = dataclasses.replace(load_population(), correlations=())
    u = make_cohort(3000, seed=1, runin_days=0, population=pop)
    up = u.covariates["pdl1_positive"]
    b = np.log(u.params["a_PDL1_IFN"])
    assert abs(np.median(b[up]) - np.median(b[~up])) < 0.05


def test_correlation_matrix_is_applied_to_the_draws():
    pop = population_from_dict(
        _preset_dict(
            correlation=[
                {"a": "v_N", "b": "q_T8", "rho": 0.6, "source": "assumption: test"},
                {"a": "weight_kg", "b": "pembrolizumab.CL", "rho": -0.5, "source": "x"},
            ]
        )
    )
    c = make_cohort(4000, seed=2, runin_days=0, population=pop)
    r1 = np.corrcoef(np.log(c.params["v_N"]), np.log(c.params["q_T8"]))[0, 1]
    r2 = np.corrcoef(np.log(c.covariates["weight_kg"]), np.log(c.pk["pembrolizumab"]["CL"]))
    # SE of a sample correlation ~ (1 - rho^2)/sqrt(n) <= 0.011; clipping of weight is rare
    assert r1 == pytest.approx(0.6, abs=0.05)
    assert r2[0, 1] == pytest.approx(-0.5, abs=0.05)


def test_non_positive_definite_correlation_is_a_clear_error():
    bad = [
        {"a": "v_N", "b": "q_T8", "rho": 0.9, "source": "x"},
        {"a": "q_T8", "b": "k_T", "rho": 0.9, "source": "x"},
        {"a": "v_N", "b": "k_T", "rho": -0.9, "source": "x"},
    ]
    with pytest.raises(ValueError, match="not positive definite"):
        population_from_dict(_preset_dict(correlation=bad))


def test_unknown_correlation_name_is_reported_before_compute():
    pop = dataclasses.replace(
        load_population(), correlations=(Correlation("no_such_param", "v_N", 0.3, "x"),)
    )
    with pytest.raises(ValueError, match="no_such_param"):
        make_cohort(3, population=pop, runin_days=0)


def test_every_bad_preset_field_is_reported_at_once():
    d = _preset_dict(colour="blue", pdl1={"prevalence": 1.4, "source": "x"})
    d["covariates"]["weight_kg"]["cv"] = -0.1
    del d["covariates"]["height_cm"]
    d["correlation"] = [{"a": "v_N", "b": "v_N", "rho": 1.5, "source": "x"}]
    with pytest.raises(ConfigError) as e:
        population_from_dict(d, "test preset")
    text = str(e.value)
    for field in (
        "colour: unknown key",
        "pdl1.prevalence: 1.4 must be <= 1",
        "covariates.weight_kg.cv: -0.1 must be >= 0",
        "covariates.height_cm: required covariate is missing",
        "correlation[0].rho: 1.5 must be < 1",
        "correlation[0]: a and b are the same name",
    ):
        assert field in text, field
    assert len(e.value.errors) == 6


def test_population_by_file_path_and_unknown_name(tmp_path):
    text = (resources.files("vcohort") / "data/populations/default.toml").read_text()
    f = tmp_path / "pop.toml"
    f.write_text(text.replace("median = 86.0", "median = 50.0"))
    pop = load_population(f)
    assert pop.covariates["baseline_diameter_mm"].median == 50.0
    with pytest.raises(ValueError, match="neither a preset"):
        load_population("no_such_preset")

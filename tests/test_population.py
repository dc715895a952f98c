import dataclasses
import warnings
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


def _config_errors(d) -> tuple[str, int]:
    """The text and count of the errors a bad preset dict raises (all at once)."""
    with pytest.raises(ConfigError) as e:
        population_from_dict(d, "test preset")
    return str(e.value), len(e.value.errors)


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


def test_a_correlation_on_a_parameter_without_spread_is_refused():
    """K_niche has CV 0: correlating it acted on nothing of its own and still rotated its
    partner's draws (weights changed); refused, as a drug file's eta_correlation on a fixed
    parameter is.  A setting that gives it a CV makes the same correlation act."""
    fixed = dataclasses.replace(
        load_population(), correlations=(Correlation("K_niche", "weight_kg", 0.9, "x"),)
    )
    with pytest.raises(ValueError, match=r"correlations name \['K_niche'\], which vary by no"):
        make_cohort(3, population=fixed, runin_days=0)
    spread = population_from_dict(
        _preset_dict(
            correlation=[{"a": "K_niche", "b": "weight_kg", "rho": 0.9, "source": "x"}],
            parameters={"K_niche": {"cv": 0.3, "upper": 1.0, "source": "assumption: test"}},
        )
    )
    c = make_cohort(500, seed=1, runin_days=0, population=spread)
    rho = np.corrcoef(np.log(c.params["K_niche"]), np.log(c.covariates["weight_kg"]))[0, 1]
    assert rho > 0.8


@pytest.mark.parametrize("name", ["bsa_m2", "pdl1_positive", "pdl1", "ANC0", "pembrolizumab.CL"])
def test_a_covariate_named_as_a_parameter_or_a_derived_covariate_is_refused(name):
    """[covariates.bsa_m2] was replaced by DuBois after the draw, [covariates.pdl1] reused the
    PD-L1 latent draw, [covariates.ANC0] took over the model parameter's draw."""
    d = _preset_dict()
    d["covariates"][name] = {"median": 3.0, "cv": 0.1, "lower": 1.0, "upper": 9.0,
                             "source": "assumption: test"}  # fmt: skip
    with pytest.raises(ValueError, match=rf"covariates \['{name}'\] are named as"):
        make_cohort(3, population=population_from_dict(d), runin_days=0)


def test_the_models_own_spread_stays_within_its_hard_bounds():
    """p_hi (a probability, 0.75 with CV 10%) drew above 1 in 0.2% of default patients; the
    model's own draws are clipped to `Model.param_bounds` (only those draws change)."""
    c = make_cohort(3000, seed=0, runin_days=0)
    p = c.params["p_hi"]
    assert p.max() == 1.0 and 0 < (p == 1.0).sum() < 20
    z = standard_normals(0, c.patient_id, ["param:p_hi"])["param:p_hi"]
    row = CSC_IMMUNE.params["p_hi"]
    np.testing.assert_allclose(p, np.minimum(row.value * np.exp(row.omega * z), 1.0), rtol=1e-12)


def test_subset_takes_a_boolean_mask_and_refuses_fractional_indices():
    """A mask was read as the positions 0 and 1 (False/True), silently the wrong patients."""
    c = make_cohort(4, seed=0, runin_days=0, drugs={})
    s = c.subset(np.array([False, False, True, True]))
    assert s.patient_id.tolist() == [2, 3]
    np.testing.assert_array_equal(s.covariates["weight_kg"], c.covariates["weight_kg"][2:])
    assert c.subset([3, 1]).patient_id.tolist() == [3, 1]
    with pytest.raises(ValueError, match="indices must be integers"):
        c.subset([0.5])
    with pytest.raises(ValueError, match="one value per patient"):
        c.subset(np.array([True, False]))


def test_a_correlation_on_a_parameter_that_shares_its_draw_is_refused():
    """Pembrolizumab's Q2 uses CL's draw (Ahamadi 2017): correlating Q2 would rotate CL's draw
    too, so it is refused before compute with the driver to name instead; the driver itself
    correlates, and Q2 follows it."""
    pop = dataclasses.replace(
        load_population(), correlations=(Correlation("weight_kg", "pembrolizumab.Q2", 0.4, "x"),)
    )
    with pytest.raises(ValueError, match=r"pembrolizumab\.Q2 \(it uses pembrolizumab\.CL's draw\)"):
        make_cohort(3, population=pop, runin_days=0)
    pop = dataclasses.replace(
        load_population(), correlations=(Correlation("weight_kg", "pembrolizumab.CL", 0.4, "x"),)
    )
    pk = make_cohort(2000, seed=3, runin_days=0, population=pop).pk["pembrolizumab"]
    np.testing.assert_allclose(np.corrcoef(np.log(pk["CL"]), np.log(pk["Q2"]))[0, 1], 1.0)


def test_a_spread_or_bounds_on_a_parameter_that_shares_its_draw_is_refused():
    """Pembrolizumab's Q2 uses CL's random effect and V2 V1's (Ahamadi 2017: Q = θ_Q·exp(η_CL)):
    a CV or bounds set on the driver or on the parameter that follows it would transform one
    draw and not the other, so it is refused before compute, naming the parameter, the shared
    relation and what is allowed; a new typical value keeps the shared random effect, and a CV
    equal to the drug's own changes nothing."""

    def pop(settings):
        return population_from_dict(
            _preset_dict(parameters={k: v | {"source": "t"} for k, v in settings.items()})
        )

    q2_cl = "drug pembrolizumab's shared_eta: pembrolizumab.Q2 uses pembrolizumab.CL's"
    v2_v1 = "drug pembrolizumab's shared_eta: pembrolizumab.V2 uses pembrolizumab.V1's"
    for name, setting, said, relation in (
        ("pembrolizumab.CL", {"cv": 0.8}, "cv=0.8", q2_cl),  # the driver
        ("pembrolizumab.Q2", {"upper": 2.0}, "upper=2", q2_cl),  # the follower
        ("pembrolizumab.V1", {"lower": 1.0, "bounds": "clip"}, "lower=1", v2_v1),
    ):
        with pytest.raises(ValueError) as e:
            make_cohort(3, population=pop({name: setting}), runin_days=0)
        msg = str(e.value)
        assert f"parameters.{name}: {said} not allowed: {relation}" in msg, msg
        assert "may change only its value" in msg, msg
    # allowed: a typical value on either, and the drug's own CV (0.38) restated
    ok = pop({"pembrolizumab.CL": {"value": 0.3, "cv": 0.38}, "pembrolizumab.Q2": {"value": 1.0}})
    pk = make_cohort(200, seed=1, population=ok, runin_days=0).pk["pembrolizumab"]
    # still one random effect: log(Q2/θ_Q) = log(CL/θ_CL) (both CVs 0.38)
    np.testing.assert_allclose(np.log(pk["Q2"] / 1.0), np.log(pk["CL"] / 0.3), atol=1e-12)


def test_a_drugs_omega_block_meets_the_populations_correlations():
    """Pexidartinib's own CL-V1-V2 block (Yin 2021) joins the population's correlations after
    them: a population correlating weight with pexidartinib.CL keeps weight's own draw (the
    population's first name), and a population pair naming the drug's pair replaces it."""
    base = make_cohort(3000, seed=5, runin_days=0)
    pop = dataclasses.replace(
        load_population(),
        correlations=(
            Correlation("weight_kg", "pexidartinib.CL", 0.3, "x"),
            Correlation("pexidartinib.CL", "pexidartinib.V1", -0.2, "x"),
        ),
    )
    c = make_cohort(3000, seed=5, runin_days=0, population=pop)
    np.testing.assert_array_equal(c.covariates["weight_kg"], base.covariates["weight_kg"])
    pk = c.pk["pexidartinib"]
    r = np.corrcoef(np.log(pk["CL"]), np.log(pk["V1"]))[0, 1]
    assert abs(r - (-0.2)) < 0.06  # the population's -0.2, not Yin's +0.504 (SE ~0.018)
    r_w = np.corrcoef(np.log(c.covariates["weight_kg"]), np.log(pk["CL"]))[0, 1]
    assert abs(r_w - 0.3) < 0.06  # weight is clipped at its bounds, so not exactly 0.3


def test_every_bad_preset_field_is_reported_at_once():
    d = _preset_dict(colour="blue", pdl1={"prevalence": 1.4, "source": "x"})
    d["covariates"]["weight_kg"]["cv"] = -0.1
    del d["covariates"]["height_cm"]
    d["correlation"] = [{"a": "v_N", "b": "v_N", "rho": 1.5, "source": "x"}]
    text, n_errors = _config_errors(d)
    for field in (
        "colour: unknown key",
        "pdl1.prevalence: 1.4 must be <= 1",
        "covariates.weight_kg.cv: -0.1 must be >= 0",
        "covariates.height_cm: required covariate is missing",
        "correlation[0].rho: 1.5 must be < 1",
        "correlation[0]: a and b are the same name",
    ):
        assert field in text, field
    assert n_errors == 6


def test_population_by_file_path_and_unknown_name(tmp_path):
    text = (resources.files("vcohort") / "data/populations/default.toml").read_text()
    f = tmp_path / "pop.toml"
    f.write_text(text.replace("median = 86.0", "median = 50.0"))
    # a changed copy that keeps the preset's name is loaded, with a warning to rename it
    with pytest.warns(UserWarning, match="differs from the preset 'default' but keeps its name"):
        pop = load_population(f)
    assert pop.covariates["baseline_diameter_mm"].median == 50.0
    assert 'name = "default"' in text
    f.write_text(text.replace("median = 86.0", "median = 50.0").replace(
        'name = "default"', 'name = "small_tumours"'))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_population(f).name == "small_tumours"
        f.write_text(text)  # an unchanged copy: the same population, no warning
        assert load_population(f).name == "default"
    with pytest.raises(ValueError, match="neither a preset"):
        load_population("no_such_preset")


def test_parameters_table_sets_value_spread_and_clip_of_chosen_parameters():
    """``[parameters.NAME]`` replaces a parameter's typical value and/or CV (model parameters
    and ``drug.PARAM`` PK values alike), clips the draws, keeps each patient's own
    standard-normal draw, and leaves every other parameter as it was."""
    pars = {
        # clip bounds at ~z = -1.95 and +1.86 (omega 0.71): ~3% of 300 patients beyond each
        "f_S0": {
            "value": 0.08,
            "cv": 0.8,
            "lower": 0.02,
            "upper": 0.3,
            "bounds": "clip",
            "source": "assumption: t",
        },  # fmt: skip
        "v_N": {"cv": 0.0, "source": "assumption: t"},  # CV only: typical value kept
        "pembrolizumab.CL": {"value": 0.3, "source": "assumption: t"},  # value only
    }
    pop = population_from_dict(_preset_dict(parameters=pars))
    c = make_cohort(300, seed=4, population=pop, runin_days=0)
    base = make_cohort(300, seed=4, population=population_from_dict(_preset_dict()), runin_days=0)
    z = standard_normals(4, c.patient_id, ["param:f_S0", "pk:pembrolizumab:CL"])
    omega = np.sqrt(np.log1p(0.8**2))
    np.testing.assert_allclose(
        c.params["f_S0"], np.clip(0.08 * np.exp(omega * z["param:f_S0"]), 0.02, 0.3), rtol=1e-15
    )
    assert c.params["f_S0"].max() == 0.3 and c.params["f_S0"].min() == 0.02  # both clips hit
    np.testing.assert_array_equal(c.params["v_N"], CSC_IMMUNE.params["v_N"].value)
    pk_omega = base.pk["pembrolizumab"]["CL"] / base.pk["pembrolizumab"]["CL"].mean()
    cl = c.pk["pembrolizumab"]["CL"]
    np.testing.assert_allclose(cl / cl.mean(), pk_omega, rtol=1e-12)  # same spread, new value
    for k in base.params:
        if k not in ("f_S0", "v_N"):
            np.testing.assert_array_equal(c.params[k], base.params[k], err_msg=k)
    # the baseline CSC fraction is the drawn f_S0 (the run-in freezes the tumour)
    frac = c.y0["S"] / (c.y0["S"] + c.y0["N"])
    np.testing.assert_allclose(frac, c.params["f_S0"], rtol=1e-12)
    assert pop.to_dict()["parameters"]["f_S0"]["upper"] == 0.3  # recorded in manifests


def test_bad_parameters_tables_are_reported_before_compute():
    d = _preset_dict(
        parameters={
            "f_S0": {"value": -0.1, "source": " "},
            "v_N": {"source": "assumption: t"},
            "K_cap": {"value": 5.0, "lower": 6.0, "upper": 9.0, "source": "x"},
            "f_s0": {"cv": 0.1, "source": "x"},  # name slips are listed with the other errors
            "pembrolizumab.cl": {"cv": 0.1, "source": "x"},
            "K_capp": {"value": -5.0, "source": "x"},  # a bad value and a name slip: both said
        }
    )
    text, _ = _config_errors(d)
    assert "parameters.K_capp.value: -5.0 must be > 0" in text
    assert "'K_capp' is not a parameter" in text and "did you mean 'K_cap'" in text
    for field in (
        "parameters.f_S0.value: -0.1 must be > 0",
        "parameters.f_S0.source: must cite a source",
        "parameters.v_N: sets none of value, cv, lower, upper, bounds",
        "parameters.K_cap: value=5.0 must lie within [lower=6.0, upper=9.0]",
        "parameters.f_s0: 'f_s0' is not a parameter of model 'csc_immune' nor a PK value of its "
        "drugs; did you mean 'f_S0'",
        "parameters.pembrolizumab.cl: 'pembrolizumab.cl' is not a parameter",
        "did you mean 'pembrolizumab.CL'",
    ):
        assert field in text, field
    assert "K_cap, v_S" not in text  # no dump of all 115 names
    assert "typical value 5 lies outside" not in text  # K_cap's value is reported once
    assert text.count("parameters.K_cap:") == 1, text
    # a setting whose draws leave the model's bounds is listed with the parse errors too (it
    # was reported only once they were fixed)
    d = _preset_dict(parameters={"f_S0": {"cv": 0.8, "upper": 1.5, "source": "x"}})
    d["covariates"]["weight_kg"]["median"] = -70.0
    text, _ = _config_errors(d)
    assert "covariates.weight_kg.median" in text
    assert "parameters.f_S0: draws can reach 1.5, but f_S0 must be < 1" in text
    # a covariate's, the PD-L1 prevalence's and a correlation's source too (were accepted empty)
    d = _preset_dict()
    d["covariates"]["weight_kg"]["source"] = ""
    d["pdl1"]["source"] = "  "
    d["correlation"] = [{"a": "weight_kg", "b": "height_cm", "rho": 0.4, "source": ""}]
    text, _ = _config_errors(d)
    for field in ("covariates.weight_kg.source", "pdl1.source", "correlation[0].source"):
        assert f"{field}: must cite a source" in text, field
    unknown = population_from_dict(_preset_dict(parameters={"no_such": {"cv": 0.1, "source": "x"}}))
    with pytest.raises(ValueError, match=r"parameters.no_such: 'no_such' is not a parameter"):
        make_cohort(3, population=unknown, runin_days=0)

    def refused(name, setting, match):
        pop = population_from_dict(_preset_dict(parameters={name: setting | {"source": "t"}}))
        with pytest.raises(ValueError, match=match):
            make_cohort(3, population=pop, runin_days=0)

    # a fraction with a spread must be clipped below 1 (log-normal draws are unbounded), found
    # before any patient is drawn rather than when an unlucky one is
    refused("f_S0", {"cv": 0.8}, r"parameters.f_S0: draws can reach inf, but f_S0 must be < 1")
    refused("f_S0", {"value": 1.0}, r"f_S0 must be < 1; set upper < 1")
    refused("vis_S", {"cv": 0.5, "upper": 1.5}, r"vis_S must be <= 1")
    # bounds that exclude the model's own typical value (0.10) are refused, not silently applied
    refused("f_S0", {"lower": 0.5, "upper": 0.9}, r"typical value 0.1 lies outside \[lower=0.5")
    with pytest.raises(ConfigError, match="parameters.f_S0: expected a table"):
        population_from_dict(_preset_dict(parameters={"f_S0": 0.2}))


def test_bounds_alone_clip_the_models_own_spread():
    # p_hi (0.75, CV 10% in the model's table) is a probability; a population may cap it
    pop = population_from_dict(
        _preset_dict(
            parameters={"p_hi": {"upper": 0.8, "bounds": "clip", "source": "assumption: t"}}
        )
    )
    c = make_cohort(300, seed=2, population=pop, runin_days=0)
    base = make_cohort(300, seed=2, population=population_from_dict(_preset_dict()), runin_days=0)
    np.testing.assert_array_equal(c.params["p_hi"], np.minimum(base.params["p_hi"], 0.8))
    assert (base.params["p_hi"] > 0.8).sum() > 0  # the cap binds for some patients
    assert pop.to_dict()["parameters"]["p_hi"] == {
        "value": None,
        "cv": None,
        "lower": None,
        "upper": 0.8,
        "source": "assumption: t",
        "bounds": "clip",
    }  # fmt: skip  (unset fields stay null: the manifest is strict JSON, no Infinity)


def test_bounds_truncate_the_log_normal_by_default():
    """Without ``bounds = "clip"`` a setting's bounds truncate the log-normal: no patient sits
    on a bound (clipping put ~3% on each here), patients keep their order, and the values
    follow the truncated distribution (its mean, within 4 SE of 4,000 patients)."""
    from scipy.stats import truncnorm

    spec = {"value": 0.08, "cv": 0.8, "lower": 0.02, "upper": 0.3, "source": "assumption: t"}
    pop = population_from_dict(_preset_dict(parameters={"f_S0": spec}))
    clip = population_from_dict(_preset_dict(parameters={"f_S0": spec | {"bounds": "clip"}}))
    c = make_cohort(4000, seed=4, population=pop, runin_days=0)
    k = make_cohort(4000, seed=4, population=clip, runin_days=0)
    f, fk = c.params["f_S0"], k.params["f_S0"]
    assert np.mean(fk == 0.3) > 0.02 and np.mean(fk == 0.02) > 0.02  # clipping piles up
    assert 0.02 < f.min() and f.max() < 0.3  # truncation does not
    z = standard_normals(4, c.patient_id, ["param:f_S0"])["param:f_S0"]
    assert np.all(np.diff(f[np.argsort(z)]) >= 0)  # each patient keeps its rank
    omega = np.sqrt(np.log1p(0.8**2))
    a, b = np.log(0.02 / 0.08) / omega, np.log(0.3 / 0.08) / omega
    x = np.log(f / 0.08) / omega
    dist = truncnorm(a, b)
    assert abs(x.mean() - dist.mean()) < 4 * dist.std() / np.sqrt(len(x))
    assert pop.to_dict()["parameters"]["f_S0"]["bounds"] is None  # default: truncate


def test_bounds_alone_override_and_the_typical_patient_keeps_the_value():
    """``bounds`` may be set alone over a preset's setting (field by field), and without
    variability every patient has the typical value, not the truncated distribution's median."""
    from vcohort.population import with_parameters

    spec = {"value": 0.08, "cv": 0.8, "lower": 0.02, "upper": 0.3, "source": "assumption: t"}
    pop = population_from_dict(_preset_dict(parameters={"f_S0": spec}))
    from vcohort.config import Checker
    from vcohort.population import parse_parameters

    ck = Checker("t")
    extra = parse_parameters(ck, {"f_S0": {"bounds": "clip", "source": "inline"}})
    assert not ck.errors
    merged = with_parameters(pop, extra).parameters["f_S0"]
    assert (merged.bounds, merged.lower, merged.upper, merged.value) == ("clip", 0.02, 0.3, 0.08)
    typical = make_cohort(3, seed=1, population=pop, runin_days=0, variability=False)
    np.testing.assert_array_equal(typical.params["f_S0"], 0.08)


def test_a_bad_covariate_bound_is_reported_once_and_by_its_own_name():
    """A NaN median is reported as such, not again as 'median=1.0 must lie within' (the
    default that stood in for it); lower above upper says so, not that the median is outside."""
    d = _preset_dict()
    d["covariates"]["weight_kg"]["median"] = float("nan")
    text, n = _config_errors(d)
    assert n == 1 and "weight_kg.median: nan must be finite" in text
    d = _preset_dict()
    d["covariates"]["weight_kg"].update(lower=200.0, upper=100.0)
    text, n = _config_errors(d)
    assert n == 1 and "weight_kg: lower=200.0 is above upper=100.0" in text

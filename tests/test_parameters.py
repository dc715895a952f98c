from pathlib import Path

import numpy as np
import pytest

from vcohort.docs import render_model_doc
from vcohort.drugs import CATALOGUE
from vcohort.model import CSC_IMMUNE
from vcohort.model.parameters import Param, ParamTable


def test_every_parameter_has_unit_and_source():
    for table in [CSC_IMMUNE.params] + [d.params for d in CATALOGUE.values()]:
        for r in table:
            assert r.unit and r.source.strip() and r.description.strip(), r.name
            assert r.source.startswith("assumption:") or any(ch.isdigit() for ch in r.source), (
                f"{r.name}: a citation should carry a year/table; otherwise say 'assumption:'"
            )


def test_every_effect_has_a_source_and_a_known_channel():
    for d in CATALOGUE.values():
        for e in d.effects:
            assert e.source.strip()
            assert e.channel in CSC_IMMUNE.effect_channels


def test_param_validation():
    with pytest.raises(ValueError, match="source"):
        Param("x", 1.0, "-", 0.0, " ", "d")
    with pytest.raises(ValueError, match="cv"):
        Param("x", 1.0, "-", -0.1, "assumption: t", "d")
    with pytest.raises(ValueError, match="duplicate"):
        ParamTable((Param("x", 1, "-", 0, "a: b", "d"), Param("x", 2, "-", 0, "a: b", "d")))


def test_lognormal_sampling_has_the_stated_cv():
    t = ParamTable((Param("k", 2.0, "1/day", 0.4, "assumption: test", "d"),))
    rng = np.random.default_rng(0)
    v = t.sample(rng.standard_normal((200_000, 1)))["k"]
    # median = typical value, CV of a log-normal = sqrt(exp(omega^2) - 1) = cv; 200k draws give
    # a standard error of ~0.2% on both, so 1% tolerances cannot pass by luck.
    assert np.median(v) == pytest.approx(2.0, rel=0.01)
    assert np.std(v) / np.mean(v) == pytest.approx(0.4, rel=0.01)


def test_docs_model_md_is_current():
    docs = Path(__file__).parents[1] / "docs"
    current = render_model_doc(docs / "validation.json")  # whatever the working directory
    assert (docs / "model.md").read_text() == current, "run `vcohort model-doc` to regenerate"


def test_mechanisms_of_model_md_are_named_terms():
    # MODEL.md's tables, as named terms of rates()
    from vcohort.cohort import make_cohort

    c = make_cohort(1, seed=0, runin_days=0)
    y = {k: v[0] for k, v in c.y0.items()}
    p = {k: v[0] for k, v in c.params.items()}
    r = CSC_IMMUNE.rates(y, p, {}, np)
    for name in [
        "self_renewal_probability",
        "dedifferentiation",
        "csc_self_renewal",
        "csc_differentiation",
        "tcell_kill_S",
        "tcell_kill_N",
        "m1_kill_N",
        "chemo_kill_N",
        "chemo_kill_S",
        "t8_recruitment",
        "treg_recruitment",
        "treg_induction",
        "treg_depletion",
        "mdsc_recruitment",
        "macrophage_recruitment",
        "m1_to_m2",
        "m2_to_m1",
        "tgfb_production",
        "il6_production",
        "il10_production",
        "ccl2_production",
        "ccl5_production",
        "ifng_production",
        "exo_production",
        "met_production",
        "pdl1_induction",
        "prol_proliferation",
        "debris_clearance",
    ]:
        assert name in r, name

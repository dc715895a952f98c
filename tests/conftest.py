"""Shared fixtures.  float64 is enabled for the whole test session: references need it, and
float32 runs pass ``precision="float32"`` explicitly."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)

from vcohort.cohort import make_cohort  # noqa: E402
from vcohort.dosing import compile_schedule, parse_regimen  # noqa: E402

TRIPLE = (
    "wnt974 10 mg every 24 h",
    "pembrolizumab 200 mg every 21 d over 30 min",
    "cb839 800 mg every 12 h",
)


@pytest.fixture(scope="session")
def small_cohort():
    return make_cohort(6, seed=11)


def schedule(regimens, days, drugs=None):
    return compile_schedule([parse_regimen(r) for r in regimens], float(days), drugs=drugs)


ERROR_FLOOR = 1e-8  # below: reference-solver tolerance and round-off (`assert_matches_stored`)


def assert_matches_stored(check, rtol=1e-3, atol=1e-6):
    """The fresh measurement equals the one rendered in docs/model.md (docs/validation.json):
    the same criteria (text and outcome) and the same values.

    Error metrics (``max_rel_error*``): one stored at or above 1e-8 is truncation error, the
    same on every CPU up to rounding, so it must stay within a factor of 3 (a tenfold
    regression fails); one below is at the reference solvers' own tolerance (rtol 1e-10) and
    round-off, which differ between CPUs, so it must only stay below 1e-8.  Effect sizes are
    deterministic in float64, so 1e-3 relative catches a stale document, not numerical noise.
    Count-based fractions (ORR of n patients) should pass ``atol`` of a patient or two, since
    another CPU's rounding can move a patient that sits on a RECIST threshold."""
    from pathlib import Path

    import numpy as np

    from vcohort.validation.run import stored_checks

    stored = stored_checks(Path(__file__).parents[1] / "docs" / "validation.json")
    hint = "docs/validation.json is stale: run `vcohort validate` then `vcohort model-doc`"
    assert check.id in stored, (check.id, hint)
    old = stored[check.id]
    assert [c for c, _ in old.criteria] == [c for c, _ in check.criteria], (check.id, hint)
    assert old.passed == check.passed and old.kind == check.kind, (check.id, hint)
    assert set(old.values) == set(check.values), (check.id, hint)
    for k, v in check.values.items():
        if k.startswith("max_rel_error"):
            new, was = float(v), float(old.values[k])
            if was >= ERROR_FLOOR:
                assert was / 3 <= new <= 3 * was, (f"{check.id}.{k}: {new:.3g} vs {was:.3g}", hint)
            else:
                assert new < ERROR_FLOOR, (f"{check.id}.{k}: {new:.3g} (stored {was:.3g})", hint)
            continue
        msg = f"{check.id}.{k}: {hint}"
        new, was = np.asarray(v, dtype=object), np.asarray(old.values[k], dtype=object)
        numeric = all(isinstance(x, int | float) for x in (*new.ravel(), *was.ravel()))
        if numeric:
            np.testing.assert_allclose(
                new.astype(float), was.astype(float), rtol=rtol, atol=atol, err_msg=msg
            )
        else:  # text, or a value that became non-finite ("nan" when stored)
            assert str(v) == str(old.values[k]), msg

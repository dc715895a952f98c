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

"""PK alone: the exact propagators reproduce each drug's published half-life and the matrix
exponential of its compartment model."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl

from vcohort.drugs import CATALOGUE
from vcohort.simulate import pk_propagators


def _amounts_after_dose(drug, days, dt=0.1):
    pk = drug.params.typical()
    E, P1, _, V1 = (
        np.asarray(x) for x in pk_propagators(drug, pk, drug.ref_weight, dt, jnp.float64)
    )
    a = np.zeros(len(drug.compartments))
    a[drug.dosing_compartment] = 100.0
    c = []
    for _ in range(int(round(days / dt))):
        a = E @ a
        c.append(a[drug.central_index] / float(V1))
    return np.array(c)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_pk_reproduces_published_half_life(name):
    drug = CATALOGUE[name]
    t_half = drug.half_life_days
    dt = 0.01 if t_half < 1 else 0.1
    c = _amounts_after_dose(drug, 12 * t_half, dt)
    # terminal slope from the last third of 12 half-lives (distribution long over)
    n = len(c)
    t = dt * np.arange(1, n + 1)
    sel = slice(2 * n // 3, n)
    slope = np.polyfit(t[sel], np.log(c[sel]), 1)[0]
    measured = math.log(2) / -slope
    # 10%: the acceptance criterion of the issue (published half-lives carry CVs of 30%+)
    assert measured == pytest.approx(t_half, rel=0.10), (name, measured, drug.half_life_source)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_propagators_equal_matrix_exponential_and_integrals(name):
    drug = CATALOGUE[name]
    pk = drug.params.typical()
    dt = 0.1
    E, P1, P2, _ = (np.asarray(x) for x in pk_propagators(drug, pk, 60.0, dt, jnp.float64))
    A = np.array(drug.rate_matrix(drug.individual(pk, 60.0)), dtype=float)
    assert np.allclose(E, sl.expm(A * dt), rtol=1e-10, atol=1e-13)
    # Φ1 = ∫ e^{As} ds by 2000-point Simpson quadrature
    s = np.linspace(0.0, dt, 2001)
    vals = np.array([sl.expm(A * x) for x in s])
    w = np.ones_like(s)
    w[1:-1:2], w[2:-1:2] = 4, 2
    phi1 = np.tensordot(w, vals, axes=1) * (s[1] - s[0]) / 3
    assert np.allclose(P1, phi1, rtol=1e-7, atol=1e-12)


def test_weight_scaling_of_pembrolizumab_clearance():
    d = CATALOGUE["pembrolizumab"]
    ind = d.individual(d.params.typical(), 2 * d.ref_weight)
    assert ind["CL"] == pytest.approx(0.22 * 2**0.595)
    assert ind["V1"] == pytest.approx(3.48 * 2**0.489)


def test_dacarbazine_pk_holds_its_three_published_figures():
    # the 2-compartment parameters were solved from clearance 15.4 mL/kg/min (Breithaupt 1982),
    # Vss 1.49 L/kg (Swiss label) and plasma half-lives of 19 min and 5 h (US label); the
    # rounded per-kg values reproduce them to 0.5%
    drug = CATALOGUE["dacarbazine"]
    wt = 81.0  # any weight: every parameter is per kg
    ind = drug.individual(drug.params.typical(), wt)
    keep = [i for i, n in enumerate(drug.compartments) if n != "effect"]
    A = np.array(drug.rate_matrix(ind), dtype=float)[np.ix_(keep, keep)]
    rates = np.sort(-np.linalg.eigvals(A).real)[::-1]  # 1/day, alpha then beta
    half_lives_min = math.log(2) / rates * 24 * 60
    assert half_lives_min == pytest.approx([19.0, 300.0], rel=5e-3)
    assert ind["CL"] / wt / (24 * 60) * 1e3 == pytest.approx(15.4, rel=5e-3)  # mL/kg/min
    assert (ind["V1"] + ind["V2"]) / wt == pytest.approx(1.49, rel=5e-3)  # L/kg

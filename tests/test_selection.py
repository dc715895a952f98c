"""Raking, K–S distance, quotas and fixed-size πps sampling (pure numpy, fast)."""

import numpy as np
import pytest
from scipy.stats import kstest, norm

from vcohort.selection import inclusion_probabilities, ks_distance, pps_fixed, quotas, rake


def test_rake_meets_margins_and_keeps_the_pool_odds_ratio():
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.4
    b = rng.random(2000) < np.where(a, 0.9, 0.3)  # strong association in the pool
    la, lb = (~a).astype(int), (~b).astype(int)  # label 0 = True
    f = rake([(la, [0.2, 0.8]), (lb, [0.5, 0.5])])
    w = f[0][la] * f[1][lb]
    w = w / w.sum()
    assert w[a].sum() == pytest.approx(0.2, abs=1e-9)
    assert w[b].sum() == pytest.approx(0.5, abs=1e-9)

    def odds(weights):
        t = np.array([[weights[(a == i) & (b == j)].sum() for j in (0, 1)] for i in (0, 1)])
        return t[0, 0] * t[1, 1] / (t[0, 1] * t[1, 0])

    # KL-closest joint with given margins keeps the cross-product ratio (Deming & Stephan)
    assert odds(w) == pytest.approx(odds(np.ones(2000)), rel=1e-8)


def test_rake_errors_on_an_empty_needed_level():
    with pytest.raises(ValueError, match="no units"):
        rake([(np.zeros(10, int), [0.5, 0.5])])


def test_ks_distance_equals_scipy():
    x = np.random.default_rng(1).normal(size=300)
    assert ks_distance(x, norm.cdf) == pytest.approx(kstest(x, norm.cdf).statistic, abs=1e-12)


def test_quotas_largest_remainder():
    q = quotas(10, [0.329, 0.0, 0.135, 0.536])
    assert q.sum() == 10 and q.tolist() == [3, 0, 1, 6]  # remainders .29 .35 .36: +1 to the .36
    assert quotas(7, [1, 1, 1]).tolist() == [3, 2, 2]
    # cell by cell, 10 over [.15, .15, .35, .35] gives 1+1 responders where 10 x 0.3 = 3;
    # responders first (the calibration's ORR), then each group split
    assert quotas(10, [0.15, 0.15, 0.35, 0.35]).tolist() == [1, 1, 4, 4]
    q = quotas(10, [0.15, 0.15, 0.35, 0.35], groups=((0, 1), (2, 3)))
    assert q[:2].sum() == 3 and q.sum() == 10 and q.tolist() == [2, 1, 4, 3]
    rng = np.random.default_rng(0)
    for _ in range(200):  # the group total is always its share rounded
        p, n = rng.dirichlet(np.ones(4)), int(rng.integers(1, 60))
        q = quotas(n, p, groups=((0, 1), (2, 3)))
        assert q.sum() == n and abs(q[:2].sum() - n * p[:2].sum()) <= 0.5 + 1e-12
    with pytest.raises(ValueError, match="partition"):
        quotas(10, [0.5, 0.5], groups=((0,), (0, 1)))


def test_pps_fixed_draws_k_units_with_the_stated_probabilities():
    w = np.array([1.0, 2.0, 3.0, 4.0, 20.0, 0.5, 0.0, 5.0])
    k = 4
    pi = inclusion_probabilities(w, k)
    assert pi.sum() == pytest.approx(k)
    assert pi[4] == 1.0 and pi[6] == 0.0  # take-all and zero-weight units
    rng = np.random.default_rng(2)
    reps = 4000
    counts = np.zeros(w.size)
    for _ in range(reps):
        s = pps_fixed(w, k, rng)
        assert s.size == k and np.unique(s).size == k
        counts[s] += 1
    se = np.sqrt(pi * (1 - pi) / reps) + 1e-12
    assert np.all(np.abs(counts / reps - pi) <= 4 * se + 1e-9)  # 4 SE: Monte Carlo error

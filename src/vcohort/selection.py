"""Statistical building blocks for selecting virtual patients (used by `vcohort.calibrate`).

Raking (iterative proportional fitting, Deming & Stephan 1940, Ann Math Stat 11:427), the
one-sample Kolmogorov–Smirnov distance, largest-remainder quotas and fixed-size sampling with
probability proportional to size (systematic πps on a random order, Madow 1949, Ann Math Stat
20:333).  Plain numpy; no model or simulation here.
"""

from __future__ import annotations

import numpy as np


def rake(
    margins, *, tol: float = 1e-10, max_iter: int = 5000, accept: float | None = None
) -> list[np.ndarray]:
    """Weights closest to uniform in Kullback–Leibler divergence with given marginal shares.

    Args:
        margins: list of ``(labels, shares)``: ``labels`` (P,) integers in ``0..K-1`` and
            ``shares`` (K,) target fractions summing to 1.
        tol: stop once every share is within ``tol`` of its target.
        accept: after ``max_iter`` sweeps, accept a residual below this (default ``tol``):
            margins met only in the limit (a structural zero, e.g. targets at the edge of what
            the units allow) converge slowly, not geometrically.
    Returns:
        One factor array (K,) per margin; unit ``i`` has weight ``prod_m f_m[labels_m[i]]``.
    Raises:
        ValueError: a level with a positive target has no units, or the margins cannot be met
            together (residual above ``accept`` after ``max_iter`` sweeps).
    """
    labels = [np.asarray(lab, int) for lab, _ in margins]
    shares = [np.asarray(s, float) for _, s in margins]
    for m, (lab, s) in enumerate(zip(labels, shares, strict=True)):
        empty = (np.bincount(lab, minlength=s.size) == 0) & (s > 0)
        if empty.any():
            raise ValueError(
                f"margin {m}: levels {np.flatnonzero(empty).tolist()} have a target "
                "share > 0 but no units in the pool"
            )
    f = [np.ones(s.size) for s in shares]

    def weights():
        w = np.ones(labels[0].size)
        for lab, fm in zip(labels, f, strict=True):
            w = w * fm[lab]
        return w

    err = np.inf
    for _ in range(max_iter):
        for lab, s, fm in zip(labels, shares, f, strict=True):
            have = np.bincount(lab, weights(), s.size)
            have = have / have.sum()
            fm *= np.divide(s, have, out=np.zeros_like(have), where=have > 0)
        w = weights()
        err = max(
            np.abs(np.bincount(lab, w, s.size) / w.sum() - s).max()
            for lab, s in zip(labels, shares, strict=True)
        )
        if err < tol:
            return f
    if err < (tol if accept is None else accept):
        return f
    raise ValueError(f"the target margins cannot be met together (raking residual {err:.2g})")


def ks_distance(x, cdf) -> float:
    """One-sample Kolmogorov–Smirnov statistic of sample ``x`` against the callable ``cdf``
    (1.0 for an empty sample)."""
    x = np.sort(np.asarray(x, float))
    n = x.size
    if n == 0:
        return 1.0
    f = cdf(x)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))


def quotas(n: int, probs, groups=None) -> np.ndarray:
    """Largest-remainder (Hamilton) apportionment of ``n`` units to cells with ``probs``.

    ``groups`` (a partition of the cell indices, e.g. ``((0, 1), (2, 3))``): apportion ``n`` to
    the groups first, then each group's total to its cells, so that every group's total is
    its own share rounded (cells rounded one by one can move a group's total by one: 10 units
    over ``[.15, .15, .35, .35]`` give 1, 1, 4, 4, two in the first group where 3 is nearest)."""
    p = np.asarray(probs, float)
    if groups is not None:
        groups = [list(g) for g in groups]
        if sorted(i for g in groups for i in g) != list(range(p.size)):
            raise ValueError(f"groups={groups} must partition the cells 0..{p.size - 1}")
        q = np.zeros(p.size, int)
        for g, k in zip(groups, quotas(n, [p[g].sum() for g in groups]), strict=True):
            if k:
                q[g] = quotas(int(k), p[g])
        return q
    x = n * p / np.sum(p)
    q = np.floor(x).astype(int)
    q[np.argsort(-(x - q), kind="stable")[: n - q.sum()]] += 1
    return q


def inclusion_probabilities(weights, k: int) -> np.ndarray:
    """``pi_i = min(1, lam * w_i)`` with ``sum(pi) = k`` (largest units taken with certainty)."""
    w = np.asarray(weights, float)
    m = w.size
    if not 0 <= k <= m:
        raise ValueError(f"cannot take k={k} of {m} units")
    pi = np.zeros(m)
    order = np.argsort(-w, kind="stable")
    t = 0
    while t < k:
        rest = w[order[t:]].sum()
        if rest <= 0:  # only zero weights left: equal probability among them
            pi[order[t:]] = (k - t) / (m - t)
            break
        lam = (k - t) / rest
        if lam * w[order[t]] < 1.0:
            pi[order[t:]] = lam * w[order[t:]]
            break
        t += 1
    pi[order[:t]] = 1.0
    return pi


def pps_fixed(weights, k: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``k`` distinct unit indices (sorted), unit ``i`` included with probability
    `inclusion_probabilities` ``(weights, k)[i]``: systematic sampling on a random order."""
    pi = inclusion_probabilities(weights, k)
    m = pi.size
    if k == 0:
        return np.zeros(0, int)
    perm = rng.permutation(m)
    c = np.cumsum(pi[perm])
    c[-1] = k
    hits = np.searchsorted(c, rng.random() + np.arange(k), side="right")
    out = np.unique(perm[np.minimum(hits, m - 1)])
    if out.size != k:  # pragma: no cover - would need round-off to merge two points
        raise RuntimeError(f"πps sampling drew {out.size} distinct units instead of {k}")
    return out

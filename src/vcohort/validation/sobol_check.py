"""The Sobol wrapper (`vcohort.sobol.sobol_indices`, SALib underneath) on the Ishigami function,
whose indices are known in closed form."""

from __future__ import annotations

import math

import numpy as np

from vcohort.sobol import sobol_indices
from vcohort.validation.check import Check


def ishigami_analytic(a: float = 7.0, b: float = 0.1):
    """(S1, ST) of Ishigami & Homma 1990; variance decomposition as in Saltelli et al. 2008."""
    v1 = 0.5 * (1 + b * math.pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * math.pi**8 * (1 / 18 - 1 / 50)
    v = v1 + v2 + v13
    return np.array([v1, v2, 0.0]) / v, np.array([v1 + v13, v2, v13]) / v


def ishigami_check(n: int = 2**13, seed: int = 7, evaluate=None) -> Check:
    """Saltelli sampling with ``n`` base samples, one vectorised evaluation.  Monte-Carlo error:
    ``*_conf`` is SALib's 95% bootstrap half-width (≈1.96 σ); the error must be within 2 of them
    (≈4 σ) and the half-widths themselves small (< 0.04), so an index off by more than ~0.08
    fails."""
    from SALib.test_functions import Ishigami

    names = ["x1", "x2", "x3"]
    f = evaluate if evaluate is not None else Ishigami.evaluate
    table, _, _ = sobol_indices(f, names, [[-math.pi, math.pi]] * 3, n, seed=seed)
    t = table.set_index("parameter").loc[names]
    s1, st = ishigami_analytic()
    chk = Check(
        "sobol.ishigami",
        "Sobol indices of the Ishigami function match the analytic values",
        "Ishigami & Homma 1990; Saltelli et al. 2008, Global Sensitivity Analysis: The Primer",
        {
            "S1": t["S1"].to_numpy(),
            "S1_analytic": s1,
            "ST": t["ST"].to_numpy(),
            "ST_analytic": st,
        },
        note=f"a = 7, b = 0.1; {n} base samples ({n * 5} evaluations), seed {seed}.",
    )
    for col, truth in (("S1", s1), ("ST", st)):
        conf = t[f"{col}_conf"].to_numpy()
        chk.require(f"{col}: 95% half-widths < 0.04", np.all(conf < 0.04))
        chk.require(
            f"{col}: within 2 half-widths (+1e-3) of the analytic value",
            np.all(np.abs(t[col].to_numpy() - truth) <= 2 * conf + 1e-3),
        )
    return chk

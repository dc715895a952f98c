import numpy as np
import pytest

from vcohort.endpoints import clopper_pearson, recist


def test_recist_categories_on_hand_made_series():
    days = np.array([42, 84, 126])
    d = np.array(
        [
            [100, 65, 60, 80],  # PR then PD from nadir 60 (+33%, +20 mm)
            [100, 60, 60, 60],  # PR, no progression
            [100, 90, 108, 110],  # SD: 108 = +20% over nadir 90 and +18 mm -> PD at day 84
            [20, 16, 19, 19.5],  # +22% over nadir 16 but only +3.5 mm: not PD -> SD
            [50, 4, 3, 3],  # CR below the 5 mm floor
            [100, 125, 130, 140],  # PD at the first assessment
        ],
        dtype=float,
    )
    bor, pfs, ev = recist(d, days)
    assert bor.tolist() == ["PR", "PR", "SD", "SD", "CR", "PD"]
    assert pfs.tolist() == [126, 126, 84, 126, 126, 42]
    assert ev.tolist() == [True, False, True, False, False, True]


def test_clopper_pearson_known_values():
    # R: binom.test(7, 20)$conf.int -> 0.1539092 0.5921885
    lo, hi = clopper_pearson(7, 20)
    assert lo == pytest.approx(0.1539092, abs=1e-6) and hi == pytest.approx(0.5921885, abs=1e-6)
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0

"""Published reference models run through the same engine as the CSC–immune model.

They validate the simulator (each is checked against an independent scipy solve of the
published equations and against a qualitative result of its paper, ``tests/test_reference_models``)
and show that nothing in `vcohort.simulate`, `vcohort.cohort` or `vcohort.dosing` is specific
to one model.
"""

from __future__ import annotations

from vcohort.model.reference.depillis2009 import DEPILLIS2009
from vcohort.model.reference.kuznetsov1994 import KUZNETSOV1994

__all__ = ["DEPILLIS2009", "KUZNETSOV1994"]

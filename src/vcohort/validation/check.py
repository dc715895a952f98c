"""One validation result: what was measured, against which criteria, from which source.

A `Check` is what every validation function returns.  Tests assert ``check.passed`` (and show
``check.failures()`` when not); ``vcohort validate`` stores the same records as JSON and
``docs/model.md`` renders them, so the numbers in the documentation are the numbers the tests
assert on, from the same code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


@dataclasses.dataclass
class Check:
    """A named validation result.

    id: stable key (``group.name``); title: the claim in words; source: the paper or review
    section it encodes; values: measured quantities (floats, or lists of floats); criteria:
    ``(criterion in words, met?)`` pairs; note: how to read it (tolerance reasons, caveats);
    kind: ``"check"`` (pass/fail by its criteria) or ``"comparison"`` (measured values set next to
    published ones with no pass/fail criterion: `passed` is None)."""

    id: str
    title: str
    source: str
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    criteria: list[tuple[str, bool]] = dataclasses.field(default_factory=list)
    note: str = ""
    kind: str = "check"

    def require(self, criterion: str, ok) -> bool:
        """Record a criterion and whether it holds; returns it."""
        ok = bool(ok)
        self.criteria.append((criterion, ok))
        return ok

    @property
    def passed(self) -> bool | None:
        if self.kind == "comparison":
            return None
        return bool(self.criteria) and all(ok for _, ok in self.criteria)

    def failures(self) -> str:
        bad = [c for c, ok in self.criteria if not ok]
        return f"{self.id}: failed {bad}; measured {self.values}"

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "values": {k: _plain(v) for k, v in self.values.items()},
            "criteria": [[c, ok] for c, ok in self.criteria],
            "passed": self.passed,
            "note": self.note,
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Check:
        return cls(
            id=d["id"],
            title=d["title"],
            source=d["source"],
            values=dict(d["values"]),
            criteria=[(c, bool(ok)) for c, ok in d["criteria"]],
            note=d.get("note", ""),
            kind=d.get("kind", "check"),
        )


def max_rel_error(a, b) -> float:
    """Largest |a - b| / |b| (NaN propagates)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def worst(a, b) -> float:
    """The larger of two errors, NaN if either is NaN (Python's ``max`` would drop a NaN second
    argument and let a failed comparison pass)."""
    return float(np.maximum(a, b))


def _plain(v):
    """JSON-safe floats (numpy scalars and arrays become Python floats / lists)."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, bool | str | int) or v is None:
        return v
    v = float(v)
    return v if math.isfinite(v) else str(v)


def fmt(v) -> str:
    """A measured value for a table: 3 significant digits, lists joined."""
    if isinstance(v, list | tuple):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, str | bool | int):
        return str(v)
    v = float(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.3g}"

"""Parameter tables: every model parameter with its value, unit, variability and source.

A `Param` is one row; a `ParamTable` is an ordered, immutable collection of rows that can be
rendered to Markdown (``docs/model.md``) and turned into the pytree of values the right-hand side
reads.  Between-patient variability is log-normal with the stated coefficient of variation:
``value_i = value * exp(omega * z_i)`` with ``omega = sqrt(log(1 + cv**2))`` and ``z_i ~ N(0, 1)``
(the usual NONMEM/pharmacometric parametrisation, e.g. Mould & Upton 2013, CPT:PSP 2:e38).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Param:
    """One model parameter.

    Attributes:
        name: identifier used in the right-hand side (``p["name"]``).
        value: typical (population) value, in ``unit``.
        unit: unit in the model's internal system (cells, day, mg, L, nM, mm).
        cv: between-patient coefficient of variation of a log-normal distribution (0 = fixed).
        source: a citation, or ``"assumption: <why>"``.
        description: what the parameter means, in the field's words.
    """

    name: str
    value: float
    unit: str
    cv: float
    source: str
    description: str

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"parameter name {self.name!r} must be alphanumeric/underscore")
        if not math.isfinite(self.value):
            raise ValueError(f"parameter {self.name}: value must be finite, got {self.value}")
        if self.cv < 0:
            raise ValueError(f"parameter {self.name}: cv must be >= 0, got {self.cv}")
        if not self.source.strip():
            raise ValueError(f"parameter {self.name}: a source or 'assumption: why' is required")

    @property
    def omega(self) -> float:
        """Standard deviation of log(value) across patients."""
        return math.sqrt(math.log1p(self.cv**2))


@dataclass(frozen=True)
class ParamTable:
    """An ordered collection of `Param` rows with unique names."""

    rows: tuple[Param, ...]
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {}
        for i, r in enumerate(self.rows):
            if r.name in index:
                raise ValueError(f"duplicate parameter name {r.name!r}")
            index[r.name] = i
        object.__setattr__(self, "_index", index)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> Param:
        try:
            return self.rows[self._index[name]]
        except KeyError:
            raise KeyError(f"unknown parameter {name!r}; known: {', '.join(self.names)}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rows)

    def typical(self) -> dict[str, float]:
        """Typical values as a plain dict."""
        return {r.name: r.value for r in self.rows}

    def sample(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Log-normal draws for a batch: ``z`` has shape (patients, len(self)) of N(0,1)."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != len(self):
            raise ValueError(f"z must have shape (patients, {len(self)}), got {z.shape}")
        return {r.name: r.value * np.exp(r.omega * z[:, i]) for i, r in enumerate(self.rows)}

    def to_markdown(self) -> str:
        """A Markdown table (name, value, unit, CV, description, source)."""
        lines = [
            "| name | value | unit | CV | meaning | source |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            cv = f"{100 * r.cv:.0f}%" if r.cv else "–"
            lines.append(
                f"| `{r.name}` | {r.value:.4g} | {r.unit} | {cv} | {r.description} | {r.source} |"
            )
        return "\n".join(lines)

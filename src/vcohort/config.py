"""Validation of plain-dict configs (parsed TOML): every bad field is reported, not only the first.

A `Checker` walks a dict, reads typed fields and collects one message per bad field, naming the
field's dotted path, the value found and what is allowed; `Checker.raise_if_any` then raises a
single `ConfigError` listing them all (before any compute).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

# jax.random.PRNGKey keeps 32 bits of a seed without x64, and patient ids are folded in as
# uint32: a larger seed or id would repeat another's patients (`vcohort.cohort`)
MAX_SEED = 2**32 - 1
MAX_ID = 2**32 - 1
# limits that refuse, before any compute, a run that could only exhaust memory or never end
# (a typo such as horizon_days = 1000000000 ran the run-in, then died in a MemoryError)
MAX_DAYS = 36_500  # a horizon or run-in of 100 years
MAX_PATIENTS = 100_000_000  # per cohort; the mission's million with two orders to spare
MAX_STEPS_PER_DAY = 10_000  # dt >= 1e-4 day (the stiffest reference model needs 4,000)
# simulation engines (`vcohort.simulate.simulate`); here so the CLI can list them without JAX
ENGINES = ("xla", "pallas")
ENGINE_HELP = (
    "xla (default), or pallas: one fused Triton kernel per day and block of patients, for "
    "NVIDIA GPUs with --precision float32 (forward only; off a GPU it runs in Pallas' "
    "interpreter, about as fast as xla)"
)


def read_toml(path: str | Path, what: str = "experiment file") -> dict:
    """Parse a TOML file with a clear error for a missing file or bad TOML."""
    p = Path(path)
    if p.exists() and not p.is_file():
        raise ValueError(f"{what} {str(p)!r} is not a file (a folder?); give a .toml file")
    if not p.is_file():
        raise ValueError(f"{what} {str(p)!r} does not exist")
    from vcohort.io import note_input

    note_input(p)  # an --out folder holding it is not replaced
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{what} {str(p)!r} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:  # TOML is UTF-8 by definition
        raise ValueError(
            f"{what} {str(p)!r} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8"
        ) from None


def close_names(name: str, options, n: int = 3) -> list[str]:
    """The ``options`` a mistyped ``name`` most likely meant: the one equal but for case (alone),
    else up to ``n`` close spellings (`difflib` ratio >= 0.6, and within 0.15 of the closest:
    'simulaton' suggests 'simulation', not also 'population')."""
    import difflib

    options = [str(o) for o in options]
    same = [o for o in options if o.lower() == str(name).strip().lower()]
    if same:
        return same[:1]
    close = difflib.get_close_matches(str(name), options, n=n, cutoff=0.6)
    ratio = [difflib.SequenceMatcher(None, str(name), c).ratio() for c in close]
    return [c for c, r in zip(close, ratio, strict=True) if r >= ratio[0] - 0.15]


def did_you_mean(name: str, options) -> str:
    """`` (did you mean 'x' or 'y'?)`` for a mistyped ``name`` among ``options``, else ''."""
    close = close_names(name, options)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class ConfigError(ValueError):
    """A config with one or more bad fields; ``errors`` lists one message per field."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{source}: {len(self.errors)} invalid field(s):\n{lines}")


_MISSING = object()


class Checker:
    """Collects errors while reading typed fields from nested dicts."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if self.errors:
            raise ConfigError(self.source, self.errors)

    def table(self, d: Any, path: str, allowed: set[str], required: set[str] = frozenset()):
        """``d`` as a dict (or {} after recording an error); flags unknown and missing keys."""
        if not isinstance(d, dict):
            self.error(path or "(top level)", f"expected a table, got {type(d).__name__} {d!r}")
            return {}
        for k in d:
            if k not in allowed:
                self.error(
                    _join(path, k),
                    f"unknown key{did_you_mean(k, allowed)}; allowed: {', '.join(sorted(allowed))}",
                )
        for k in sorted(required):
            if k not in d:
                self.error(_join(path, k), "required key is missing")
        return d

    def get(self, d: dict, key: str, path: str, kind: str, default: Any = _MISSING, **limits):
        """Read ``d[key]`` as ``kind`` (``int``, ``float``, ``str``, ``bool``); record an error and
        return ``default`` (None if none) when it is missing, mistyped or out of range.

        Limits: ``ge``, ``gt``, ``le``, ``lt`` (numbers), ``choices`` (any kind).
        """
        p = _join(path, key)
        if key not in d:
            if default is _MISSING:
                self.error(p, "required key is missing")
                return None
            return default
        v = d[key]
        ok = {
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, int | float) and not isinstance(v, bool),
            "str": isinstance(v, str),
            "bool": isinstance(v, bool),
        }[kind]
        if not ok:
            self.error(p, f"expected {_KIND_WORDS[kind]}, got {type(v).__name__} {v!r}")
            return None if default is _MISSING else default
        if kind == "float":
            v = float(v)
            if not math.isfinite(v):
                self.error(p, f"{v!r} must be finite")
                return None if default is _MISSING else default
        if not self._in_range(p, v, **limits):
            return None if default is _MISSING else default
        return v

    def _in_range(self, p, v, ge=None, gt=None, le=None, lt=None, choices=None) -> bool:
        bad = None
        if ge is not None and v < ge:
            bad = f">= {ge}"
        elif gt is not None and v <= gt:
            bad = f"> {gt}"
        elif le is not None and v > le:
            bad = f"<= {le}"
        elif lt is not None and v >= lt:
            bad = f"< {lt}"
        if bad:
            self.error(p, f"{v!r} must be {bad}")
            return False
        if choices is not None and v not in choices:
            self.error(p, f"{v!r} is not allowed; allowed: {', '.join(map(str, choices))}")
            return False
        return True


_KIND_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true/false"}


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)

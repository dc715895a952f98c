"""Batch inputs: trial experiment files and parameter sweeps → named, validated runs.

``vcohort batch`` takes experiment files (the TOML of ``vcohort trial``, `vcohort.experiment`)
and/or *sweep files*.  A sweep file names a base experiment and lists values for dotted keys of
it; the runs are the Cartesian product of those lists (first key slowest)::

    title = "Pembrolizumab dose x cohort seed"   # run titles: this + the run's values
    name = "pembro"                    # run-name prefix (default: the file's stem)
    base = "keynote002_like.toml"      # an experiment file, relative to this file, or
                                       # an inline [base] table holding a whole experiment

    [sweep]
    "arms.pembrolizumab.regimens.0.dose" = ["2 mg/kg", "10 mg/kg"]
    "population.seed" = [1, 2]

A key is a path into the base experiment: table keys, list indices (``regimens.0``) and, in the
``arms`` list, arm names (``arms.pembrolizumab``).  Every part but the last must exist; the
last may add a key to an existing table (the experiment's own validation then judges it).
Run names are ``PREFIX__LABEL-VALUE__...`` with LABEL the key's last named part (more parts when
two keys share it) and VALUE the value made file-name safe (``2 mg/kg`` → ``2mg-per-kg``; the
value's position ``v0, v1, ...`` when values would be long or clash).

Everything (every file, every expanded run) is validated before any compute; all problems are
reported together, each naming the file, the run, the field and the value.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vcohort.config import ConfigError, did_you_mean
from vcohort.dosing import compile_schedule
from vcohort.experiment import Experiment, experiment_from_dict, load_experiment

_SWEEP_TOP = {"title", "description", "name", "base", "sweep"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
RESERVED = {"batch.json", "batch_log.jsonl", "batch_summary.csv"}
MAX_RUNS = 1000  # assumption: a larger sweep is more likely a typo than a plan; split it
MAX_LABEL = 24
# a run name is a folder name: file systems allow 255 bytes per name (ext4, XFS, APFS, NTFS's
# 255 characters), and the batch writes a run through a temporary sibling
# ``.RUN.vctmp-XXXXXXXX`` (16 bytes more; ``.RUN.vctmp-old-PID`` adds at most 18), so 200
# leaves room to spare
MAX_NAME_BYTES = 200


@dataclass(frozen=True)
class BatchRun:
    """One run of a batch: its folder name, validated experiment and swept values."""

    name: str
    experiment: Experiment
    values: dict = field(default_factory=dict)  # dotted key -> value (empty for plain files)


def load_runs(paths) -> list[BatchRun]:
    """Every run of the given experiment/sweep files, validated; raises one `ValueError`
    listing every problem in every file (before any compute)."""
    if not paths:
        raise ValueError("give at least one experiment or sweep file")
    runs, errors = [], []
    for path in paths:
        try:
            runs += _load_file(Path(path))
        except ValueError as e:
            errors.append(str(e))
    seen: dict[str, str] = {}
    for r in runs:
        if r.name in seen:
            errors.append(
                f"run name {r.name!r} is used by {seen[r.name]} and {r.experiment.source}: "
                f"rename a file or set name = ... in the sweep file"
            )
        seen.setdefault(r.name, r.experiment.source)
    errors += name_length_problems(runs)
    if errors:
        raise ValueError("\n".join(errors))
    return runs


def name_length_problems(runs) -> list[str]:
    """One message per file whose runs have names longer than `MAX_NAME_BYTES` (UTF-8)."""
    long: dict[str, list[str]] = {}
    for r in runs:
        if len(r.name.encode()) > MAX_NAME_BYTES:
            long.setdefault(r.experiment.source.split(" [run ")[0], []).append(r.name)
    out = []
    for source, names in long.items():
        name = max(names, key=lambda n: len(n.encode()))
        more = f" ({len(names)} runs of this file; the longest shown)" if len(names) > 1 else ""
        out.append(
            f"{source}: run name {name!r} is {len(name.encode())} bytes long{more}; the limit "
            f"is {MAX_NAME_BYTES} bytes (it names a folder, with a temporary suffix while it is "
            f"written): shorten the file name or the sweep's name = ..., or sweep fewer keys"
        )
    return out


def check_run_names(runs) -> None:
    """Raise if a run name is too long to name its folder (`name_length_problems`)."""
    problems = name_length_problems(runs)
    if problems:
        raise ValueError("\n".join(problems))


def _read_toml(p: Path) -> dict:
    from vcohort.config import read_toml

    return read_toml(p)


def _load_file(p: Path) -> list[BatchRun]:
    data = _read_toml(p)
    if "sweep" not in data and "base" not in data:
        exp = load_experiment(p)
        _check_name(p.stem, str(p), "file name")
        return [BatchRun(p.stem, exp)]
    return expand_sweep(data, source=str(p), base_dir=p.parent, default_name=p.stem)


def _check_name(name: str, source: str, what: str) -> None:
    if not _NAME.fullmatch(name) or name in RESERVED:
        raise ValueError(
            f"{source}: {what} {name!r} cannot name a run folder: use letters, digits and "
            f"_ . + - (starting with a letter or digit), not {sorted(RESERVED)}"
        )


def expand_sweep(
    data: dict, *, source: str, base_dir: Path, default_name: str = "sweep"
) -> list[BatchRun]:
    """The runs of a parsed sweep file (see the module docstring)."""
    errors = [
        f"{k}: unknown key{did_you_mean(k, _SWEEP_TOP)}; allowed: {', '.join(sorted(_SWEEP_TOP))}"
        for k in data
        if k not in _SWEEP_TOP
    ]
    for k in ("title", "description"):
        if not isinstance(data.get(k, ""), str):
            errors.append(f"{k}: expected a string, got {data[k]!r}")
    prefix = data.get("name", default_name)
    if not isinstance(prefix, str) or not _NAME.fullmatch(prefix):
        if "name" in data:
            errors.append(f"name: {prefix!r} must be letters, digits and _ . + -")
        else:  # the file name stood in for it
            errors.append(
                f"name: not given, and the file name {prefix!r} (the runs' default prefix) is "
                f'not letters, digits and _ . + -: set name = "..." in the sweep file'
            )
    base, base_src, base_path = _base(data.get("base"), base_dir, errors)
    sweep = data.get("sweep")
    if not isinstance(sweep, dict) or not sweep:
        errors.append(f"sweep: expected a [sweep] table of 'dotted.key' = [values], got {sweep!r}")
        sweep = {}
    # population.seed = [...] unquoted is a nested table in TOML
    sweep = _flatten(sweep, errors=errors)
    paths: dict = {}
    # each key is checked on the base with the earlier keys' first values set, as the runs
    # set them in order (a table given first, then a field inside it); a key reachable only in
    # the bare base (an arm renamed by an earlier key) is left to the runs to report
    probe = copy.deepcopy(base)
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            errors.append(f"sweep.{key!r}: expected a non-empty list of values, got {values!r}")
        elif len({json.dumps(v, sort_keys=True) for v in values}) < len(values):
            errors.append(f"sweep.{key!r}: values repeat in {values!r}")
        elif base is not None:
            err = _set(probe, key, copy.deepcopy(values[0]), where_set=(found := []))
            if err:
                err = _set(copy.deepcopy(base), key, values[0], where_set=found)
            if err:
                errors.append(f"sweep.{key!r}: {err} in the base experiment ({base_src})")
            else:  # two keys reaching one field (an arm by name and by position)
                path = tuple(found[0])
                for other, op in paths.items():  # `other` is set before `key`
                    shown = ".".join(map(str, path))
                    if op == path:
                        errors.append(
                            f"sweep.{other!r} and sweep.{key!r} set the same field ({shown}): "
                            f"keep one"
                        )
                    elif op[: len(path)] == path:  # a table after a field inside it
                        errors.append(
                            f"sweep.{key!r} sets the table ({shown}) holding "
                            f"sweep.{other!r}'s field, after it, replacing its values: give the "
                            f"table first"
                        )
                paths[key] = path
    n = 1
    for v in sweep.values():
        n *= len(v) if isinstance(v, list) else 1
    if n > MAX_RUNS:
        errors.append(f"sweep: {n} runs exceed the limit of {MAX_RUNS}; split the sweep")
    if errors:
        raise ValueError(
            f"{source}: {len(errors)} invalid field(s):\n" + "\n".join(f"  - {e}" for e in errors)
        )
    keys = list(sweep)
    labels = _labels(keys)
    slugs = {k: _value_slugs(sweep[k]) for k in keys}
    runs, problems, seen = [], [], {}
    for combo in itertools.product(*(range(len(sweep[k])) for k in keys)):
        d = copy.deepcopy(base)
        values = {k: sweep[k][i] for k, i in zip(keys, combo, strict=True)}
        name = "__".join(
            [prefix] + [f"{labels[k]}-{slugs[k][i]}" for k, i in zip(keys, combo, strict=True)]
        )
        shown = ", ".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
        # a key that another key's value has made unreachable (renamed arm, emptied list) is
        # an error of this run, never a value silently left out
        unset = [f"sweep.{k!r}: {err}" for k, v in values.items() if (err := _set(d, k, v))]
        if unset:
            problems.append(f"{source} [run {name}: {shown}]: " + "; ".join(unset))
            continue
        try:
            exp = experiment_from_dict(
                d,
                source=f"{source} [run {name}: {shown}]",
                base_dir=base_path,
                default_title=prefix,
            )
        except ConfigError as e:
            problems.append(str(e))
            continue
        same, same_shown = seen.setdefault(_meaning(exp), (name, shown))
        if same != name:
            problems.append(
                f"{source} [run {name}: {shown}]: the same experiment as run {same} "
                f"({same_shown}) once parsed: the same doses on the same days within the "
                f"{exp.horizon_days}-day horizon (e.g. 'q3w' and 'every 21 d', 'x 1' and a "
                f"single dose, or counts past the horizon); drop one of the values"
            )
            continue
        head = data.get("title") or exp.title  # a readable title per run
        short = ", ".join(f"{labels[k]} {_text(v)}" for k, v in values.items())
        exp = _retitle(exp, f"{head}: {short}")
        runs.append(BatchRun(name, exp, values))
    if problems:
        raise ValueError("\n".join(problems))
    return runs


def _flatten(d: dict, prefix: str = "", errors: list | None = None) -> dict:
    """``{"a": {"b": [..]}}`` -> ``{"a.b": [..]}``; a key given twice (quoted ``"a.b"`` and
    nested ``a.b``) is an error in ``errors``, not a silent winner."""
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        for kk, vv in (_flatten(v, key + ".", errors) if isinstance(v, dict) else {key: v}).items():
            if kk in out and errors is not None:
                errors.append(f"sweep.{kk!r}: given twice (quoted and as a nested table)")
            out[kk] = vv
    return out


def _meaning(exp: Experiment) -> str:
    """What a run computes, whatever its words: the validated config without titles and
    descriptions, and what each arm gives within the horizon (`_given`)."""
    config = {k: v for k, v in exp.config.items() if k not in ("title", "description", "arms")}
    arms = [(a.name, _given(a.regimens, exp.horizon_days)) for a in exp.arms]
    population = exp.population.to_dict()
    return json.dumps(
        {"config": config, "arms": arms, "population": population}, sort_keys=True, default=str
    )


def _given(regimens, horizon_days) -> dict:
    """The doses an arm gives within the horizon, per drug (`compile_schedule`): each dose's
    day, amount, unit kind and infusion length, the drug's hold rule and the day its delayed
    doses end.  Regimens written otherwise ('x 1' or none for one dose, a count past the
    horizon) that give the same doses give the same value."""
    s = compile_schedule(list(regimens), float(horizon_days))
    rules = s.rules or (None,) * len(s.drugs)
    ends = s.ends or (None,) * len(s.drugs)
    out = {}
    for i, d in enumerate(s.drugs):
        ok = s.valid[i]
        doses = zip(s.time[i][ok].tolist(), np.asarray(s.amount)[i][ok].tolist(),
                    s.kind[i][ok].tolist(), s.duration[i][ok].tolist(), strict=True)  # fmt: skip
        out[d] = {"doses": sorted(doses), "rule": repr(rules[i]), "end": ends[i]}
    return out


def _retitle(exp: Experiment, title: str) -> Experiment:
    import dataclasses

    return dataclasses.replace(exp, title=title, config=exp.config | {"title": title})


def _base(base, base_dir: Path, errors: list) -> tuple[dict | None, str, Path]:
    if isinstance(base, str):
        bp = Path(base)
        bp = bp if bp.is_absolute() else base_dir / bp
        try:
            d = _read_toml(bp)
        except ValueError as e:
            errors.append(f"base: {e}")
            return None, "", base_dir
        if "sweep" in d or "base" in d:
            errors.append(f"base: {str(bp)!r} is a sweep file; give a trial experiment file")
            return None, "", base_dir
        return d, str(bp), bp.parent
    if isinstance(base, dict):
        return base, "inline [base]", base_dir
    errors.append(f"base: expected an experiment file name or an inline [base] table, got {base!r}")
    return None, "", base_dir


def _set(d, key: str, value, where_set: list | None = None) -> str | None:
    """Set ``d[key path] = value`` in place; return an error message (or None).  A table key
    that itself holds dots (a ``drug.PARAM`` parameter setting) is matched whole, longest
    first.  ``where_set`` gets the resolved path (list positions as integers)."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        return f"{key!r} is not a dotted key like 'population.seed'"
    node, walked, i, resolved = d, [], 0, []
    while i < len(parts):
        where = ".".join(walked) or "the top level"
        if isinstance(node, dict):
            j = next(
                (j for j in range(len(parts), i + 1, -1) if ".".join(parts[i:j]) in node), i + 1
            )
            part, last = ".".join(parts[i:j]), j == len(parts)
            if not last and part not in node:
                return f"{part!r} is not in {where} (has: {', '.join(map(str, node)) or 'nothing'})"
            resolved.append(part)
            if last:
                node[part] = value
                if where_set is not None:
                    where_set.append(resolved)
                return None
            node = node[part]
        elif isinstance(node, list):
            part, j, last = parts[i], i + 1, i == len(parts) - 1
            idx = _index(node, part)
            named = [k for k, x in enumerate(node) if isinstance(x, dict) and x.get("name") == part]
            if part.isdigit() and named and named != [idx]:
                return (
                    f"{part!r} in {where} is both position {part} and the name of item "
                    f"{named[0]}: rename that item, so that the key says which it means"
                )
            if idx is None:
                names = [x.get("name") for x in node if isinstance(x, dict) and "name" in x]
                allowed = f"an index 0..{len(node) - 1}" + (
                    f" or a name ({', '.join(map(str, names))})" if names else ""
                )
                return f"{part!r} does not select an item of {where}; use {allowed}"
            resolved.append(idx)
            if last:
                node[idx] = value
                if where_set is not None:
                    where_set.append(resolved)
                return None
            node = node[idx]
        else:
            return f"{where} is a value ({node!r}), not a table or list"
        walked.append(part)
        i = j
    return None


def _index(node: list, part: str) -> int | None:
    if part.isdigit():
        return int(part) if int(part) < len(node) else None
    hits = [i for i, x in enumerate(node) if isinstance(x, dict) and x.get("name") == part]
    return hits[0] if len(hits) == 1 else None


def _labels(keys: list[str]) -> dict[str, str]:
    """Shortest unique suffix of each key's named (non-index) parts, joined by '.'."""
    named = {k: [p for p in k.split(".") if not p.isdigit()] or [k] for k in keys}
    for n in range(1, max(len(v) for v in named.values()) + 1 if keys else 1):
        lab = {k: ".".join(v[-n:]) for k, v in named.items()}
        if len(set(lab.values())) == len(keys):
            return {k: _slug(v) for k, v in lab.items()}
    return {k: f"k{i}" for i, k in enumerate(keys)}


def _text(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _slug(v) -> str:
    s = v if isinstance(v, str) else json.dumps(v)
    s = s.replace("/", "-per-").replace(" ", "")
    s = re.sub(r"[^A-Za-z0-9_.+-]+", "-", s).strip("-._")
    return s


def _value_slugs(values: list) -> list[str]:
    s = [_slug(v) for v in values]
    if len(set(s)) < len(s) or any(not x or len(x) > MAX_LABEL for x in s):
        return [f"v{i}" for i in range(len(values))]
    return s

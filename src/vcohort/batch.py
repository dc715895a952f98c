"""Batch experiments: many trial runs back to back, in resumable chunks (``vcohort batch``).

Each run (`vcohort.sweep.BatchRun`) is computed in **chunks of patient ids**: chunk ``k`` draws
patients ``k·c .. k·c+c-1`` (``c`` = ``chunk_patients``, at most the run's size), runs them in,
screens them, and simulates every arm on the plausible ones (padded back to ``c`` with copies of
the last one, so every chunk has the same shape and nothing is recompiled; the copies are
dropped).  A patient's draws depend only on seed and id (`vcohort.cohort`) and its rejection only
on its own draws (`vcohort.plausibility`), so the run's cohort is — as in
`vcohort.plausibility.plausible_cohort` — the first ``size`` plausible patients in id order
(``replace_rejected = false``: the plausible ones among ids ``0 .. size-1``); chunks are drawn
until it is complete.  With the default ``c`` (the run's ``simulation.chunk_size``) every
compiled shape is ``vcohort trial``'s, and in the tests the tables equal its tables bit for bit;
with another ``c`` they agree up to floating-point rounding (XLA may vectorise another batch
shape differently; a calibrated pool with ``simulation.chunk_size`` above the run's size is drawn
by `vcohort trial` in larger batches than the batch's chunks, so there too only rounding
agreement holds).  For a fixed ``c`` they are reproducible bit for bit, however often the batch
is interrupted and resumed.

Each finished chunk is written to ``DIR/.chunks/RUN/chunk-KKKKK.npz`` (`vcohort.chunkfile`)
through a temporary file and a rename, so a killed batch leaves only whole chunks; ``--resume``
reuses them and computes only the missing ones.  When a run's chunks are complete they are
assembled into ``DIR/RUN/`` — the files of ``vcohort trial`` (`vcohort.trial.write_trial`,
itself written to a temporary folder and renamed) — and the chunk files are removed.
A run with ``[calibration]`` (`vcohort.calibrate`) needs its whole pool before it can select:
its pool is drawn and screened in chunks (``pool-KKKKK.npz``, no arm simulated), the selection
on the complete pool is saved to ``selection.json`` (atomically), and the selected cohort is
simulated under every arm in chunks (``chunk-KKKKK.npz``); each step is reused on ``--resume``.

``DIR/batch.json`` records the runs of every invocation (a ``--resume`` may name only some of
them), each with its fingerprint (`fingerprint_parts`: its inputs, its drug catalogue and the
code, kept apart so that a refusal names what changed), and the chunk size, so a resume
with changed inputs is refused; each run folder's manifest holds the fingerprint too.  A run's
drug catalogue (`run_scope`) is the built-in drugs, the ``--drug-file`` ones and its own
experiment's ``drug_files``: another experiment's drug file changes neither its patients nor its
folder, which equal those of a batch of that run alone.  A run is finished when its folder holds
its manifest and summary (`finished`); the temporary files and folders vcohort writes carry the
marker ``.vctmp-`` (`vcohort.io.temporary_prefix`), and a ``--resume`` deletes such leftovers
of a killed invocation only (`_clean_temporaries`).
``DIR/batch_log.jsonl`` records, per invocation, which chunks were computed and which reused;
``DIR/batch_summary.csv`` has one row per run × arm (of this invocation's runs and the batch's
other finished ones).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vcohort.chunkfile import chunk_bytes, concat, read_chunk, take
from vcohort.cohort import Cohort
from vcohort.endpoints import dose_modification_columns
from vcohort.io import TEMP_MARK
from vcohort.sweep import BatchRun

STATE, LOG, SUMMARY, CHUNKS = "batch.json", "batch_log.jsonl", "batch_summary.csv", ".chunks"
SUMMARY_COLUMNS = (
    "arm",
    "regimen",
    "n",
    "n_failed",
    "orr",
    "orr_ci_low",
    "orr_ci_high",
    "median_pfs_days",
    "median_pfs_ci_low",
    "median_pfs_ci_high",
    "pfs_landmark",
    "median_dor_days",
    "hr",
    "hr_ci_low",
    "hr_ci_high",
    "hr_note",
)
COUNT_COLUMNS = {"n", "n_failed"}  # whole numbers (pandas' nullable Int64 in the summary)


def fingerprint(run: BatchRun) -> str:
    """Hash of everything that determines a run's results (`fingerprint_parts`), so that
    ``--resume`` never mixes chunks computed from other inputs, drugs or code."""
    return _combine(fingerprint_parts(run))


def fingerprint_parts(run: BatchRun) -> dict[str, str]:
    """The fingerprint's three parts, kept apart so a refused resume can say which changed:
    ``inputs`` (`inputs_digest`: the validated config, the arms' drugs, the population, a
    calibration rule's bytes), ``catalogue`` (`catalogue_digest`: the drugs of the run's
    catalogue, `run_scope`, whose PK values every patient draws) and ``code``
    (`model_identity`)."""
    with run_scope(run):
        parts = {"inputs": inputs_digest(run), "catalogue": catalogue_digest()}
    return parts | {"code": model_identity()}


def run_scope(run: BatchRun):
    """A context in which the drug catalogue is the run's own (`vcohort.drug_file.
    run_catalogue`): the built-in drugs, the ``--drug-file`` ones and those of its experiment's
    ``drug_files`` only, not the other experiments' of the batch.  A run's fingerprint, cohort
    (the PK values every patient draws), and run folder (its manifest's drug files and
    population, its column dictionary) are made in it, so that they equal those of a batch of
    that run alone."""
    from vcohort.drug_file import run_catalogue

    return run_catalogue((run.experiment.config or {}).get("drug_files"))


def _combine(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def inputs_digest(run: BatchRun) -> str:
    """Hash of a run's own inputs: the validated config, the definitions of the arms' drugs
    (`vcohort.drug.Drug.digest`: a drug file may change between runs), the population and a
    calibration rule file's bytes."""
    from vcohort.drugs import get_drug

    e = run.experiment
    rule = (getattr(e, "calibration", None) or {}).get("rule")
    # the definitions of the drugs the arms give (a --drug-file is in no config)
    drugs = sorted({r.drug for a in e.arms for r in a.regimens})
    config = dict(e.config)  # the population file's path depends on the working directory
    if isinstance(config.get("population"), dict):
        config["population"] = {k: v for k, v in config["population"].items() if k != "origin"}
    if isinstance(config.get("calibration"), dict):  # the rule file by its bytes, not its path
        config["calibration"] = {k: v for k, v in config["calibration"].items() if k != "rule"}
    blob = json.dumps(
        {
            "config": config,
            "drugs": {d: get_drug(d).digest() for d in drugs},
            # the population's contents; not its path, which depends on the working directory
            "population": {k: v for k, v in e.population.to_dict().items() if k != "origin"},
            "rule": hashlib.sha256(Path(rule).read_bytes()).hexdigest() if rule else None,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def catalogue_drugs(run: BatchRun | None = None) -> dict[str, str]:
    """Every drug of the loaded catalogue (built-in, ``--drug-file`` and, within `run_scope`
    or given ``run``, the run's experiment's ``drug_files``) -> its definition's digest.
    `vcohort.cohort.make_cohort` draws PK values for each of them, not only the arms' drugs:
    they are columns of every chunk and of ``patients.parquet``, so a chunk drawn under another
    catalogue must not be reused."""
    from vcohort.model import CSC_IMMUNE

    if run is not None:
        with run_scope(run):
            return catalogue_drugs()
    return {name: d.digest() for name, d in sorted(CSC_IMMUNE.drug_catalogue().items())}


def catalogue_digest() -> str:
    return _combine(catalogue_drugs())


# vcohort's modules that neither a chunk nor a run's tables depend on: the optimiser, the
# sensitivity analyses, the validation suite, the model documentation and their commands
# (`tests/test_batch.py` checks that no module a run uses imports them), so that editing them
# does not block resuming a batch
NOT_IN_RUNS = (
    "optimize/", "validation/", "cli/optimize.py", "cli/sensitivity.py", "cli/tools.py",
    "sensitivity.py", "sensitivity_plot.py", "sobol.py", "objectives.py", "docs.py",
)  # fmt: skip


def run_modules() -> list[Path]:
    """vcohort's source files that `model_identity` hashes: all but `NOT_IN_RUNS`."""
    import vcohort

    root = Path(vcohort.__file__).parent
    files = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if not any(rel == x or (x.endswith("/") and rel.startswith(x)) for x in NOT_IN_RUNS):
            files.append(f)
    return files


@functools.cache
def model_identity() -> str:
    """Hash of the code that defines a chunk's contents: vcohort's version, the parameter table,
    the source of every vcohort module a run uses (`run_modules`: the model and drugs, but also
    the cohort draws, screening, endpoints, chunk files and run tables), and the JAX version and
    backend (float rounding differs between them).  Such a code change makes ``--resume``
    recompute rather than mix."""
    import jax

    import vcohort
    from vcohort.model import CSC_IMMUNE

    root = Path(vcohort.__file__).parent
    parts = [vcohort.__version__, CSC_IMMUNE.params.to_markdown(), jax.__version__]
    parts.append(jax.default_backend())
    h = hashlib.sha256("\n".join(parts).encode())
    for f in run_modules():  # bytes: no dependence on the locale's encoding
        h.update(str(f.relative_to(root)).encode() + b"\n" + f.read_bytes())
    return h.hexdigest()[:16]


def chunk_size_for(run: BatchRun, chunk_patients: int | None) -> int:
    """Patients per chunk: ``chunk_patients`` (default the run's ``simulation.chunk_size``),
    at most the run's size."""
    c = run.experiment.chunk_size if chunk_patients is None else chunk_patients
    return int(min(c, run.experiment.size))


# ---------------------------------------------------------------------------- output folder
def check_chunk_patients(chunk_patients) -> None:
    if chunk_patients is not None and (
        isinstance(chunk_patients, bool)
        or not isinstance(chunk_patients, int)
        or chunk_patients < 1
    ):
        raise ValueError(f"--chunk-patients={chunk_patients!r} must be an integer >= 1")


def prepare_output(runs, out, *, chunk_patients, resume: bool, overwrite: bool) -> dict:
    """Validate ``out`` against the runs (before any compute); create it; return the state.
    On ``--resume`` the state keeps the earlier invocations' runs (a resume may name only some
    of them) and adds this one's."""
    from vcohort.io import check_output_dir, write_json
    from vcohort.sweep import check_run_names

    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    check_chunk_patients(chunk_patients)
    check_run_names(runs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"--out {str(out)!r} exists and is not a folder; give the batch folder (or a new "
            f"folder's path)"
        )
    old = _read_state(out) if resume else None
    if resume and old is None and out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {str(out)!r} is not a batch folder (no {STATE}); cannot resume")
    replaced = False
    if old is None:
        if not overwrite and (out / STATE).is_file():  # a batch: finished work is kept
            raise ValueError(
                f"--out {str(out)!r} already exists and is not empty: it holds a batch "
                f"({STATE}); pass --resume to continue it (or --overwrite to replace it)"
            )
        check_output_dir(out, overwrite)
        backup = replaced_folder(out)
        if out.exists() and backup.exists():
            raise ValueError(
                f"{str(backup)!r} holds the batch an earlier --overwrite replaced, and that "
                f"batch has not finished: --resume it, or delete {str(backup)!r} first"
            )
        if out.exists() and any(out.iterdir()):  # --overwrite: kept aside until it finishes
            os.replace(out, backup)
            replaced = True
        out.mkdir(parents=True, exist_ok=True)
    if old is not None and chunk_patients is None:
        chunk_patients = old["chunk_patients"]
    records = []
    for r in runs:
        parts = fingerprint_parts(r)
        records.append(
            {
                "name": r.name,
                "source": r.experiment.source,
                "fingerprint": _combine(parts),
                "parts": parts,  # which of inputs, drug catalogue and code changed, if refused
                "drugs": sorted(catalogue_drugs(r)),
                "reference_arm": r.experiment.reference_arm,
                "chunk": chunk_size_for(r, chunk_patients),
                "values": r.values,
            }
        )
    # replaced: this batch moved the previous folder aside (only it, or a --resume of it,
    # deletes that backup: `_run_batch`)
    state = {"version": 1, "chunk_patients": chunk_patients, "runs": records, "invocations": 1,
             "replaced": replaced}  # fmt: skip
    if old is not None:
        _check_resumable(old, state, out, {r.name: r.experiment.config for r in runs})
        state["invocations"] = old["invocations"] + 1
        state["replaced"] = bool(old.get("replaced", False))
        # the earlier runs this invocation does not name stay in the batch, in their order
        mine = {r["name"]: r for r in records}
        state["runs"] = [mine.pop(r["name"], r) for r in old["runs"]] + list(mine.values())
    write_json(out / STATE, state)
    return state


def replaced_folder(out: Path) -> Path:
    """Where ``--overwrite`` keeps the previous batch folder until the new batch finishes (then
    it is deleted): beside it, hidden."""
    return out.parent / f".{out.name}.replaced"


def _read_state(out: Path) -> dict | None:
    p = out / STATE
    return json.loads(p.read_text()) if p.is_file() else None


def finished(folder: Path) -> bool:
    """Whether a run folder is complete: its manifest and its summary (which the batch summary
    reads).  A run folder that lost its summary.csv is computed again on ``--resume``."""
    return (folder / "manifest.json").is_file() and (folder / "summary.csv").is_file()


def manifest_fingerprint(folder: Path) -> str | None:
    """The batch fingerprint a finished run folder was written with (its manifest's
    ``config.batch.fingerprint``; None if it has none: not written by a batch, or by an older
    vcohort)."""
    try:
        fp = json.loads((folder / "manifest.json").read_text())["config"]["batch"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return fp if isinstance(fp, str) else None


def _check_resumable(old: dict, new: dict, out: Path, configs: dict | None = None) -> None:
    if old.get("chunk_patients") != new["chunk_patients"]:
        raise ValueError(
            f"--chunk-patients={new['chunk_patients']} differs from the interrupted batch's "
            f"{old.get('chunk_patients')} in {str(out)!r}; resume with the same value"
        )
    before = {r["name"]: r for r in old["runs"]}
    for r in new["runs"]:
        o = before.get(r["name"])
        folder = out / r["name"]
        if o is None and folder.exists():
            # a run folder the state does not list (e.g. written by a --resume that named only
            # some runs, before the state kept them all): judged by its manifest's fingerprint
            found = manifest_fingerprint(folder)
            if found != r["fingerprint"]:
                why = (
                    "its manifest holds no batch fingerprint"
                    if found is None
                    else f"its manifest's fingerprint {found} is not this run's {r['fingerprint']}"
                )
                raise ValueError(
                    f"run {r['name']!r} ({r['source']}) was not part of the batch in "
                    f"{str(out)!r} but {str(folder)!r} exists and {why} (written from other "
                    f"inputs, or not by this batch); use another --out or --overwrite"
                )
            continue
        # a finished run that changed would be skipped with results of the old inputs: refused.
        # An unfinished one (interrupted, or failed and then fixed) is computed afresh: its
        # chunks carry the old fingerprint and are recomputed (`_chunk`)
        done = finished(folder)
        if o is not None and o["fingerprint"] != r["fingerprint"] and done:
            raise ValueError(_changed(o, r, folder, (configs or {}).get(r["name"])))


def config_changes(old, new, prefix: str = "", most: int = 5) -> list[str]:
    """Dotted keys whose values differ between two configs (JSON-like), at most ``most``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            if k == "batch":  # the batch's own record (fingerprint, chunk): not an input
                continue
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                out.append(key)
            else:
                out += config_changes(old[k], new[k], key, most)
            if len(out) >= most:
                break
        return out[:most]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += config_changes(a, b, f"{prefix}[{i}]", most)
        return out[:most]
    return (
        []
        if json.dumps(old, sort_keys=True, default=str)
        == json.dumps(new, sort_keys=True, default=str)
        else [prefix or "(the whole config)"]
    )


def _changed(old: dict, new: dict, folder: Path, config: dict | None = None) -> str:
    """Why a finished run cannot be resumed: its inputs (naming the fields that differ from
    the finished run's manifest, when it has one), the drug catalogue or the code changed (a
    state written before the parts were recorded: any of them)."""
    head = f"run {new['name']!r} ({new['source']})"
    was, now = old.get("parts") or {}, new["parts"]
    if was and was.get("inputs") == now["inputs"]:
        if was.get("catalogue") != now["catalogue"]:
            added = sorted(set(new["drugs"]) - set(old.get("drugs", [])))
            gone = sorted(set(old.get("drugs", [])) - set(new["drugs"]))
            what = [f"added: {', '.join(added)}"] if added else []
            what += [f"missing: {', '.join(gone)}"] if gone else []
            what = "; ".join(what) or "a drug's definition changed"
            return (
                f"{head}: its drug catalogue differs from the one {str(folder)!r} was written "
                f"with ({what}); every patient draws PK values for every drug of the run's "
                f"catalogue (the built-in drugs, --drug-file's and its experiment's drug_files), "
                f"so its tables depend on them: resume with the same --drug-file and drug_files, "
                f"or use --overwrite"
            )
        if was.get("code") != now["code"]:
            return (
                f"{head}: the vcohort code changed since this run was written to "
                f"{str(folder)!r} (a resume must not mix chunks or runs from two code "
                f"versions); rerun with --overwrite (or into another --out)"
            )
    fields = ""
    if config is not None:
        try:
            was_config = json.loads((folder / "manifest.json").read_text())["config"]
            diff = config_changes(was_config, json.loads(json.dumps(config, default=str)))
            fields = f" (changed: {', '.join(diff)})" if diff else ""
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return (
        f"{head} changed since it was written to {str(folder)!r}{fields}; resume only with "
        f"unchanged inputs for finished runs, or use --overwrite"
    )


# ---------------------------------------------------------------------------- one chunk
def compute_chunk(run: BatchRun, k: int, c: int, *, size: int | None = None, arms=True) -> dict:
    """Chunk ``k`` of a run: ids ``k·c .. k·c+c-1`` drawn, screened, every arm simulated on the
    plausible ones below the id limit (without replacement ``size``, default the run's size;
    with it `max_draws`: the ids past it are dropped, as if never drawn); with ``arms=False``
    (a calibration pool) no arm is simulated.  Returns host arrays."""
    from vcohort.cohort import make_cohort
    from vcohort.model import CSC_IMMUNE
    from vcohort.plausibility import screen

    e = run.experiment
    size = e.size if size is None else size
    pop = e.drawn_population
    num = e.numerics
    t0 = time.perf_counter()
    cohort = make_cohort(
        c,
        seed=e.seed,
        first_id=k * c,
        model=CSC_IMMUNE,
        population=pop,
        runin_days=e.runin_days,
        **num,
    )
    if pop.plausibility is not None:
        scr = screen(cohort, CSC_IMMUNE, pop.plausibility, **num)
    else:
        scr = pd.DataFrame({"patient": cohort.patient_id, "plausible": True, "reason": ""})
    # the ids a run may draw: without replacement its first ``size``; with it, up to the draw
    # limit (as `vcohort.plausibility.plausible_cohort`, so both draw the same patients)
    limit = max_draws(size) if e.replace_rejected else size
    scr = scr[scr["patient"] < limit].reset_index(drop=True)
    keep = np.where(scr["plausible"].to_numpy())[0]
    kept = cohort.subset(keep)
    out = {"cohort": kept, "screening": scr}
    out["trajectories"] = simulate_arms(e, kept, c) if arms else {}
    out["meta"] = {
        "run": run.name,
        "chunk": k,
        "first_id": k * c,
        "size": c,
        "kept": int(keep.size),
        "seconds": time.perf_counter() - t0,
    }
    return out


def simulate_arms(e, cohort: Cohort, c: int) -> dict:
    """Every arm on the ``m <= c`` patients of ``cohort``, padded to ``c`` with copies of the
    last one (one compiled shape for every chunk); the copies are dropped."""
    from vcohort.model import CSC_IMMUNE
    from vcohort.runs import run_arms

    m = len(cohort)
    if m == 0:
        return {}
    padded = np.concatenate([np.arange(m), np.full(c - m, m - 1)])
    trajs, *_ = run_arms(
        CSC_IMMUNE,
        cohort.subset(padded),
        list(e.arms),
        e.horizon_days,
        save_every=e.save_every,
        progress=False,
        **e.numerics,
    )
    return {a: take(tr, m) for a, tr in trajs.items()}


def compute_selected_chunk(run: BatchRun, cohort: Cohort, k: int, c: int) -> dict:
    """Chunk ``k`` of a calibrated run's selected cohort: its patients ``k·c .. k·c+c-1`` (in
    selection order) under every arm."""
    t0 = time.perf_counter()
    part = cohort.subset(np.arange(k * c, min((k + 1) * c, len(cohort))))
    scr = pd.DataFrame({"patient": part.patient_id, "plausible": True, "reason": ""})
    out = {"cohort": part, "screening": scr, "trajectories": simulate_arms(run.experiment, part, c)}
    out["meta"] = {
        "run": run.name,
        "chunk": k,
        "first_id": k * c,
        "size": c,
        "kept": len(part),
        "seconds": time.perf_counter() - t0,
    }
    return out


# ---------------------------------------------------------------------------- one run
def run_chunks(
    run: BatchRun,
    c: int,
    folder: Path,
    *,
    log,
    progress: bool = True,
    size: int | None = None,
    arms: bool = True,
    prefix: str = "chunk",
) -> list[dict]:
    """Chunks 0, 1, ... of a run, read from ``folder`` or computed and written atomically, until
    its cohort (``size`` plausible patients; default the run's size) is complete.
    ``log(event, **fields)`` records each chunk."""
    e = run.experiment
    size = e.size if size is None else size
    limit = max_draws(size)
    chunks, kept, k = [], 0, 0
    while True:
        ch = _chunk(
            run, folder / f"{prefix}-{k:05d}.npz", k, c, log, progress,
            lambda k=k: compute_chunk(run, k, c, size=size, arms=arms),
        )  # fmt: skip
        chunks.append(ch)
        kept += len(ch["cohort"])
        k += 1
        if (kept >= size) if e.replace_rejected else (k * c >= size):
            return chunks
        if k * c >= limit:  # the last chunk's ids were cut at the limit (`compute_chunk`)
            screening = pd.concat([ch["screening"] for ch in chunks], ignore_index=True)
            raise ValueError(
                f"run {run.name!r}: only {kept} of {len(screening)} drawn patients are "
                f"plausible; {size} would need more than {limit} draws (vcohort trial's limit): "
                f"{rejection_cause(screening, e)}"
            )


def max_draws(size: int) -> int:
    """The most patient ids a run with replacement draws for ``size`` plausible ones (as
    `vcohort.plausibility.plausible_cohort`'s default)."""
    return 10 * size + 64


def rejection_cause(screening: pd.DataFrame, e) -> str:
    """What made patients implausible, and what to do: numerical failures of the screening
    simulation (``reason`` "solver: ...") call for other numerics, not looser bounds."""
    reasons = screening.loc[~screening["plausible"].astype(bool), "reason"].astype(str)
    kinds = reasons.str.split(":").str[0].value_counts().to_dict()
    solver = int(kinds.get("solver", 0))
    numerics = (
        f"the simulation (run-in and screening) of {solver} of {len(screening)} patients "
        f"failed numerically ({reasons[reasons.str.startswith('solver')].iloc[0]}), not "
        f"their plausibility: use a smaller simulation.dt (now {e.dt:g})"
        + (f' or precision = "float64" (now {e.precision!r})' if e.precision != "float64" else "")
        if solver
        else ""
    )
    bounds = f"rejected {kinds}: loosen the population's plausibility bounds"
    if solver and solver == len(reasons):
        return numerics
    return f"{numerics}; {bounds}" if solver else bounds


def _chunk(run: BatchRun, path: Path, k: int, c: int, log, progress: bool, compute) -> dict:
    """The chunk at ``path``: reused, or computed and written atomically (then read back, so a
    fresh and a resumed chunk give identical results)."""
    from vcohort.io import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    what = path.stem.rsplit("-", 1)[0]
    fp = fingerprint(run)
    ch = read_chunk(path) if path.is_file() else None
    if ch is not None and ch["meta"].get("fingerprint") != fp:
        # computed from other inputs (a run left out of an earlier --resume, then edited)
        log(f"{what}_stale", run=run.name, chunk=k)
        path.unlink()
        ch = None
    if ch is not None:
        m = ch["meta"]
        found = (m.get("run"), m.get("chunk"), m.get("first_id"), m.get("size"))
        if found != (run.name, k, k * c, c):
            raise ValueError(
                f"{path}: holds chunk {found[1]} of run {found[0]!r} (ids from {found[2]}, "
                f"size {found[3]}), not chunk {k} of {run.name!r} (ids from {k * c}, size "
                f"{c}); resume with the same inputs or use --overwrite"
            )
        log(f"{what}_reused", run=run.name, chunk=k)
        return ch
    ch = compute()
    ch["meta"]["fingerprint"] = fp  # what the chunk was computed from
    atomic_write_bytes(path, chunk_bytes(ch))
    m = ch["meta"]
    log(f"{what}_computed", run=run.name, chunk=k, kept=m["kept"], seconds=round(m["seconds"], 3))
    if progress:
        print(
            f"{run.name}: {what} {k} (ids {k * c}-{k * c + c - 1}): {m['kept']} patients, "
            f"{m['seconds']:.1f} s",
            file=sys.stderr,
        )
    return read_chunk(path)


def run_calibrated(run: BatchRun, c: int, folder: Path, *, log, progress: bool = True):
    """A ``[calibration]`` run in three resumable steps: the pool's chunks (drawn and
    screened, as `vcohort.plausibility.plausible_cohort` would), the selection
    (`vcohort.trial` calibration on the whole pool, saved atomically to ``selection.json``), then
    the selected cohort under every arm in chunks.  Returns (chunks, screening, calibration)."""
    from vcohort.io import write_json

    e = run.experiment
    pool_size = e.calibration["pool"]
    pool_chunks = run_chunks(
        run, c, folder, log=log, progress=progress, size=pool_size, arms=False, prefix="pool"
    )
    with_pts = [ch["cohort"] for ch in pool_chunks if len(ch["cohort"])]
    if not with_pts:
        raise ValueError(f"run {run.name!r}: no plausible patient in the calibration pool")
    pool = Cohort.concat(with_pts)
    pool = pool.subset(np.arange(min(len(pool), pool_size)))
    screening = _screening(pool_chunks, pool, e.replace_rejected)
    pool_ids = hashlib.sha256(np.asarray(pool.patient_id, np.int64).tobytes()).hexdigest()[:16]
    sel_path = folder / "selection.json"
    fp = fingerprint(run)
    if sel_path.is_file():
        sel = json.loads(sel_path.read_text())
        if sel.get("fingerprint") != fp:  # made from other inputs: select again
            log("selection_stale", run=run.name)
            sel_path.unlink()
    if sel_path.is_file():
        if sel.get("pool_ids") != pool_ids:
            raise ValueError(
                f"{sel_path}: made from another pool than this run's; resume with the same "
                f"inputs or use --overwrite"
            )
        log("selection_reused", run=run.name)
    else:
        from vcohort.trial import _calibrate

        t0 = time.perf_counter()
        chosen, report = _calibrate(e, pool)
        sel = {
            "pool_ids": pool_ids,
            "fingerprint": fp,
            "patient": [int(i) for i in chosen.patient_id],
            "calibration": report,
        }
        write_json(sel_path, sel)
        log("selection_computed", run=run.name, seconds=round(time.perf_counter() - t0, 3))
    position = {int(p): i for i, p in enumerate(pool.patient_id)}
    cohort = pool.subset(np.array([position[p] for p in sel["patient"]]))
    chunks = [
        _chunk(
            run,
            folder / f"chunk-{k:05d}.npz",
            k,
            c,
            log,
            progress,
            lambda k=k: compute_selected_chunk(run, cohort, k, c),
        )  # fmt: skip
        for k in range(-(-len(cohort) // c))
    ]
    got = np.concatenate([ch["cohort"].patient_id for ch in chunks])
    if not np.array_equal(got, cohort.patient_id):
        raise ValueError(
            f"run {run.name!r}: the arm chunks in {folder} hold other patients than the "
            f"selection; resume with the same inputs or use --overwrite"
        )
    return chunks, screening, sel["calibration"]


def _screening(chunks: list[dict], cohort: Cohort, replace_rejected: bool) -> pd.DataFrame:
    """The screening rows of the drawn patients up to the cohort's last (with replacement)."""
    screening = pd.concat([ch["screening"] for ch in chunks], ignore_index=True)
    if replace_rejected:
        screening = screening[screening["patient"] <= cohort.patient_id[-1]]
    return screening.reset_index(drop=True)


def assemble(run: BatchRun, chunks: list[dict], screening=None, calibration=None):
    """The run's `vcohort.trial.TrialResult` from its chunks (first ``size`` plausible, or a
    calibrated run's selected cohort with its pool's ``screening`` and ``calibration`` report)."""
    from vcohort.dosing import compile_schedule
    from vcohort.endpoints import patient_endpoints, trial_summary
    from vcohort.trial import TrialResult

    e = run.experiment
    with_pts = [ch for ch in chunks if len(ch["cohort"])]
    if not with_pts:
        drawn = pd.concat([ch["screening"] for ch in chunks], ignore_index=True)
        raise ValueError(
            f"run {run.name!r}: no plausible patient among ids 0-{e.size - 1}: "
            f"{rejection_cause(drawn, e)}"
        )
    cohort = Cohort.concat([ch["cohort"] for ch in with_pts])
    n = min(len(cohort), e.size)
    cohort = cohort.subset(np.arange(n))
    if screening is None:
        screening = _screening(chunks, cohort, e.replace_rejected)
    trajs, eps = {}, []
    for a in e.arms:
        parts = [ch["trajectories"][a.name] for ch in with_pts]
        trajs[a.name] = concat(parts, n)
        ep = patient_endpoints(trajs[a.name], **e.endpoint_options)
        ep.insert(1, "arm", a.name)
        eps.append(ep)
    endpoints = pd.concat(eps, ignore_index=True)
    summary = trial_summary(endpoints, reference=e.reference_arm, landmark_days=e.landmark_days)
    summary.insert(1, "regimen", [a.describe() for a in e.arms])
    drugs = tuple(dict.fromkeys(r.drug for a in e.arms for r in a.regimens))
    schedules = {
        a.name: compile_schedule(list(a.regimens), float(e.horizon_days), drugs=drugs)
        for a in e.arms
    }
    sec = sum(ch["meta"]["seconds"] for ch in chunks)
    timings = {"chunks": len(chunks), "chunk_compute_s": sec}
    # the fingerprint (and its parts) judges the folder on a --resume (`_check_resumable`)
    batch = {"run": run.name, "sweep": run.values, "chunks": len(chunks)}
    batch |= {"fingerprint": fingerprint(run), "fingerprint_parts": fingerprint_parts(run)}
    exp = dataclasses.replace(e, config=e.config | {"batch": batch})
    return TrialResult(
        exp, cohort, screening, trajs, endpoints, summary, schedules, timings, calibration
    )


# ---------------------------------------------------------------------------- the batch
def run_batch(
    runs,
    out,
    *,
    chunk_patients: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    keep_chunks: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every run into ``out`` (see the module docstring); returns the batch summary.  One
    invocation per folder at a time (`batch_lock`)."""
    out = Path(out)
    with batch_lock(out):
        return _run_batch(runs, out, chunk_patients, resume, overwrite, keep_chunks, progress)


@contextlib.contextmanager
def batch_lock(out: Path):
    """An exclusive lock on ``.DIR.lock`` beside the batch folder, so that a second invocation on
    the same folder is refused instead of deleting the first one's temporary files.  The OS
    releases it when the process ends, even by ``kill -9``.  No lock where ``fcntl`` is missing
    (not POSIX) or the parent folder does not exist (`prepare_output` says so)."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is None or not out.parent.is_dir():
        yield
        return
    path = out.parent / f".{out.name}.lock"
    for _ in range(5):
        f = open(path, "a")  # noqa: SIM115 (closed below, after the lock is given up)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise ValueError(
                f"--out {str(out)!r}: another `vcohort batch` is running on this folder (lock "
                f"{path}); wait for it to finish"
            ) from None
        # the lock file is removed when a batch ends (no clutter beside the folder); a lock
        # taken on a file that was removed meanwhile locks nothing: take the new one
        try:
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
    else:
        raise ValueError(f"--out {str(out)!r}: could not take the lock {path}; try again")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _run_batch(runs, out: Path, chunk_patients, resume, overwrite, keep_chunks, progress):
    from vcohort.trial import write_trial

    state = prepare_output(
        runs, out, chunk_patients=chunk_patients, resume=resume, overwrite=overwrite
    )
    inv = state["invocations"]
    _clean_temporaries(out, [r["name"] for r in state["runs"]])

    def log(event: str, **fields) -> None:
        line = json.dumps({"invocation": inv, "pid": os.getpid(), "event": event} | fields)
        with open(out / LOG, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def note(event: str, text: str, **fields) -> None:
        log(event, **fields)
        print(f"note: {text}", file=sys.stderr)

    log("start", runs=[r.name for r in runs], resume=resume)
    info = {r["name"]: r for r in state["runs"]}
    failed: dict[str, str] = {}
    written, complete = [], []
    for run in runs:
        folder = out / CHUNKS / run.name
        dest = out / run.name
        if finished(dest):
            log("run_complete", run=run.name)
            complete.append(run.name)
        else:
            t0 = time.perf_counter()
            try:  # one failing run (its compute or its writing) does not sink the batch
                # this run's folder, written by this batch, that lost its summary.csv: replaced
                redo = dest.is_dir() and manifest_fingerprint(dest) == fingerprint(run)
                with run_scope(run):  # the run's own drug catalogue (not the batch's others')
                    if getattr(run.experiment, "calibration", None) is not None:
                        chunks, scr, cal = run_calibrated(
                            run, info[run.name]["chunk"], folder, log=log, progress=progress
                        )
                        result = assemble(run, chunks, scr, cal)
                    else:
                        chunks = run_chunks(
                            run, info[run.name]["chunk"], folder, log=log, progress=progress
                        )
                        result = assemble(run, chunks)
                    result.timings["total_s"] = time.perf_counter() - t0
                    write_trial(result, dest, overwrite=redo)
            except Exception as e:
                failed[run.name] = f"{type(e).__name__}: {e}"
                log("run_failed", run=run.name, error=failed[run.name])
                print(f"{run.name}: FAILED: {failed[run.name]}", file=sys.stderr)
                continue  # its finished chunks stay for --resume
            log("run_written", run=run.name, chunks=len(chunks))
            written.append(run.name)
            if progress:
                print(f"{run.name}: wrote {out / run.name}", file=sys.stderr)
        if not keep_chunks and folder.exists():
            shutil.rmtree(folder)
    if not keep_chunks and (out / CHUNKS).exists() and not any((out / CHUNKS).iterdir()):
        (out / CHUNKS).rmdir()
    # the batch's other runs (of earlier invocations, not named by this one): finished ones
    # keep their rows in the summary; an unfinished one is named, to be resumed
    given = {r.name for r in runs}
    entries = []
    for r in state["runs"]:
        if r["name"] in given:
            entries.append(next(x for x in runs if x.name == r["name"]))
        elif finished(out / r["name"]):
            entries.append(r)
        else:
            note(
                "run_not_given",
                f"run {r['name']} ({r['source']}) of this batch has not finished and was not "
                f"given to this invocation: resume it with its file",
                run=r["name"],
            )
    summary = batch_summary(entries, out, failed)
    # for the command's last line: the runs this invocation wrote, and those it found finished
    summary.attrs |= {"written": written, "already_complete": complete}
    from vcohort.io import write_csv

    write_csv(out / SUMMARY, summary)
    log("done", summary=SUMMARY)
    backup = replaced_folder(out)
    if backup.exists():
        complete = all(finished(out / r["name"]) for r in state["runs"])
        if not state.get("replaced"):  # another batch's: only it (or its --resume) deletes it
            note(
                "backup_kept",
                f"kept {backup}: it holds the batch an earlier --overwrite of another batch "
                f"replaced, not this one's; delete it yourself once you no longer need it",
            )
        elif complete:  # the batch --overwrite replaced, once this one has finished
            shutil.rmtree(backup)
            log("backup_deleted", folder=str(backup))
        else:
            note(
                "backup_kept",
                f"kept {backup} (the batch this one's --overwrite replaced) until every run "
                f"has finished: --resume this batch",
            )
    return summary


def _temporary_names(names) -> re.Pattern:
    """The names of the temporary files and folders vcohort writes in a batch folder, all
    marked ``.vctmp-`` (`vcohort.io.temporary_prefix`): ``.RUN.vctmp-XXXXXXXX`` and
    ``.RUN.vctmp-old-PID`` (`run_folder`), ``.batch.json.vctmp-XXXXXXXX`` and
    ``.batch_summary.csv.vctmp-XXXXXXXX`` (`atomic_write_bytes`), with ``XXXXXXXX`` the eight
    characters of `tempfile`'s names.  A user's hidden file (``.batch.json.original``,
    ``.batch_summary.csv.20241201``) carries no marker; nor do the leftovers of a vcohort from
    before the marker (``.RUN.tmp-XXXXXXXX``), which stay for the user to delete."""
    rnd, mark = "[a-z0-9_]{8}", re.escape(TEMP_MARK)
    runs = "|".join(re.escape(n) for n in names) or "(?!)"
    files = "|".join(re.escape(n) for n in (STATE, SUMMARY))
    return re.compile(rf"\.(?:(?:{runs})\.{mark}(?:{rnd}|old-\d+)|(?:{files})\.{mark}{rnd})")


# in DIR/.chunks/RUN: the temporary files of chunk, pool and selection files (`_chunk`,
# `run_calibrated` via `vcohort.io.atomic_write_bytes`)
CHUNK_TEMPORARIES = re.compile(
    rf"\.(?:(?:chunk|pool)-\d{{5}}\.npz|selection\.json)\.{re.escape(TEMP_MARK)}[a-z0-9_]{{8}}"
)


def _clean_temporaries(out: Path, names) -> None:
    """Leftovers of a killed invocation: the temporary files and folders vcohort writes beside
    run folders (runs ``names``) and chunk files; nothing else (a user's hidden files stay)."""
    ours = _temporary_names(names)
    found = [p for p in out.iterdir() if ours.fullmatch(p.name)]
    found += [p for p in (out / CHUNKS).glob("*/.*") if CHUNK_TEMPORARIES.fullmatch(p.name)]
    for p in found:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def batch_summary(runs, out, failed: dict | None = None) -> pd.DataFrame:
    """One row per run × arm: swept values and the key endpoints of each run's summary.csv;
    a run that failed (``failed``: run name -> error) has one row with its ``error``.  A run is
    a `BatchRun` or a run record of ``batch.json`` (a finished run of an earlier invocation)."""
    rows = []
    failed = failed or {}
    for r in runs:
        if isinstance(r, dict):  # a finished run of an earlier invocation
            name, values = r["name"], r.get("values", {})
            reference = r.get("reference_arm") or _manifest_reference(Path(out) / name)
        else:
            name, values, reference = r.name, r.values, r.experiment.reference_arm
        if name in failed:
            s = pd.DataFrame({"run": [name]})
        else:
            # (an arm named "None" or "NA" stays a name, not a missing value)
            s = pd.read_csv(  # (missing values are written as empty fields: `write_csv`)
                Path(out) / name / "summary.csv", keep_default_na=False, na_values=[""]
            )
            s = s[[c for c in SUMMARY_COLUMNS if c in s] + dose_modification_columns(s)].copy()
            s.insert(0, "run", name)
        swept = {k: v if isinstance(v, str | int | float) else json.dumps(v)
                 for k, v in values.items()}  # fmt: skip
        swept.setdefault("reference_arm", reference)  # swept or not
        for i, (k, v) in enumerate(swept.items()):
            s.insert(1 + i, k, v)
        if failed:
            s["error"] = failed.get(name, "")
        rows.append(s)
    out = pd.concat(rows, ignore_index=True)
    for c in sorted(COUNT_COLUMNS & set(out.columns)):
        if out[c].isna().any():  # counts stay whole beside a failed run's blanks (not 12.0)
            out[c] = out[c].astype("Int64")
    return out


def _manifest_reference(folder: Path):
    try:
        return json.loads((folder / "manifest.json").read_text())["config"]["reference_arm"]
    except (OSError, ValueError, KeyError, TypeError):
        return None

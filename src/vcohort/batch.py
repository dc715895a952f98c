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

``DIR/batch.json`` records the runs (with a fingerprint of each validated config) and the chunk
size, so a resume with changed inputs is refused; ``DIR/batch_log.jsonl`` records, per
invocation, which chunks were computed and which reused; ``DIR/batch_summary.csv`` has one row
per run × arm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vcohort.chunkfile import chunk_bytes, concat, read_chunk, take
from vcohort.cohort import Cohort
from vcohort.endpoints import dose_modification_columns
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
    "hr",
    "hr_ci_low",
    "hr_ci_high",
    "hr_note",
)
COUNT_COLUMNS = {"n", "n_failed"}  # whole numbers (pandas' nullable Int64 in the summary)


def fingerprint(run: BatchRun) -> str:
    """Hash of everything that determines a run's results: the validated config, the definitions
    of the arms' drugs (`vcohort.drug.Drug.digest`: a drug file may change between runs), the
    population, a calibration rule file's bytes, and the model (`model_identity`), so that
    ``--resume`` never mixes chunks of two model or drug versions."""
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
            "model": model_identity(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.cache
def model_identity() -> str:
    """Hash of what defines a chunk's contents: vcohort's version, the parameter table, the
    source of every vcohort module (the model and drugs, but also the cohort draws, screening,
    endpoints and chunk files), and the JAX version and backend (float rounding differs between
    them).  Any code change makes ``--resume`` recompute rather than mix."""
    import jax

    import vcohort
    from vcohort.model import CSC_IMMUNE

    root = Path(vcohort.__file__).parent
    parts = [vcohort.__version__, CSC_IMMUNE.params.to_markdown(), jax.__version__]
    parts.append(jax.default_backend())
    h = hashlib.sha256("\n".join(parts).encode())
    for f in sorted(root.rglob("*.py")):  # bytes: no dependence on the locale's encoding
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
    """Validate ``out`` against the runs (before any compute); create it; return the state."""
    from vcohort.io import check_output_dir, write_json

    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    check_chunk_patients(chunk_patients)
    out = Path(out)
    old = _read_state(out) if resume else None
    if resume and old is None and out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {str(out)!r} is not a batch folder (no {STATE}); cannot resume")
    if old is None:
        check_output_dir(out, overwrite)
        backup = replaced_folder(out)
        if out.exists() and backup.exists():
            raise ValueError(
                f"{str(backup)!r} holds the batch an earlier --overwrite replaced, and that "
                f"batch has not finished: --resume it, or delete {str(backup)!r} first"
            )
        if out.exists():  # --overwrite: kept aside until the new batch has finished
            os.replace(out, backup)
        out.mkdir(parents=True)
    if old is not None and chunk_patients is None:
        chunk_patients = old["chunk_patients"]
    state = {
        "version": 1,
        "chunk_patients": chunk_patients,
        "runs": [
            {
                "name": r.name,
                "source": r.experiment.source,
                "fingerprint": fingerprint(r),
                "chunk": chunk_size_for(r, chunk_patients),
                "values": r.values,
            }
            for r in runs
        ],
        "invocations": 1,
    }
    if old is not None:
        _check_resumable(old, state, out)
        state["invocations"] = old["invocations"] + 1
    write_json(out / STATE, state)
    return state


def replaced_folder(out: Path) -> Path:
    """Where ``--overwrite`` keeps the previous batch folder until the new batch finishes (then
    it is deleted): beside it, hidden."""
    return out.parent / f".{out.name}.replaced"


def _read_state(out: Path) -> dict | None:
    p = out / STATE
    return json.loads(p.read_text()) if p.is_file() else None


def _check_resumable(old: dict, new: dict, out: Path) -> None:
    if old.get("chunk_patients") != new["chunk_patients"]:
        raise ValueError(
            f"--chunk-patients={new['chunk_patients']} differs from the interrupted batch's "
            f"{old.get('chunk_patients')} in {str(out)!r}; resume with the same value"
        )
    before = {r["name"]: r for r in old["runs"]}
    for r in new["runs"]:
        o = before.get(r["name"])
        if o is None and (out / r["name"]).exists():
            raise ValueError(
                f"run {r['name']!r} ({r['source']}) was not part of the batch in {str(out)!r} "
                f"but {str(out / r['name'])!r} exists; use another --out or --overwrite"
            )
        # a finished run that changed would be skipped with results of the old inputs: refused.
        # An unfinished one (interrupted, or failed and then fixed) is computed afresh: its
        # chunks carry the old fingerprint and are recomputed (`_chunk`)
        done = (out / r["name"] / "manifest.json").is_file()
        if o is not None and o["fingerprint"] != r["fingerprint"] and done:
            raise ValueError(
                f"run {r['name']!r} ({r['source']}) changed since it was written to "
                f"{str(out / r['name'])!r}; resume only with unchanged inputs for finished "
                f"runs, or use --overwrite"
            )


# ---------------------------------------------------------------------------- one chunk
def compute_chunk(run: BatchRun, k: int, c: int, *, size: int | None = None, arms=True) -> dict:
    """Chunk ``k`` of a run: ids ``k·c .. k·c+c-1`` drawn, screened, every arm simulated on the
    plausible (and, without replacement, below ``size``: default the run's size) ones; with
    ``arms=False`` (a calibration pool) no arm is simulated.  Returns host arrays."""
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
    if not e.replace_rejected:
        scr = scr[scr["patient"] < size].reset_index(drop=True)
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
    max_draws = 10 * size + 64  # as plausible_cohort
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
        if k * c >= max_draws:
            raise ValueError(
                f"run {run.name!r}: only {kept} of {k * c} drawn patients are plausible; "
                f"{size} would exceed {max_draws} draws: loosen the population's "
                f"plausibility bounds"
            )


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
        raise ValueError(f"run {run.name!r}: no plausible patient among ids 0-{e.size - 1}")
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
    batch = {"run": run.name, "sweep": run.values, "chunks": len(chunks)}
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
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"--out {str(out)!r}: another `vcohort batch` is running on this folder (lock "
                f"{path}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_batch(runs, out: Path, chunk_patients, resume, overwrite, keep_chunks, progress):
    from vcohort.trial import write_trial

    state = prepare_output(
        runs, out, chunk_patients=chunk_patients, resume=resume, overwrite=overwrite
    )
    inv = state["invocations"]
    _clean_temporaries(out)

    def log(event: str, **fields) -> None:
        line = json.dumps({"invocation": inv, "pid": os.getpid(), "event": event} | fields)
        with open(out / LOG, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    log("start", runs=[r.name for r in runs], resume=resume)
    failed: dict[str, str] = {}
    for run, info in zip(runs, state["runs"], strict=True):
        folder = out / CHUNKS / run.name
        if (out / run.name / "manifest.json").is_file():
            log("run_complete", run=run.name)
        else:
            t0 = time.perf_counter()
            try:
                if getattr(run.experiment, "calibration", None) is not None:
                    chunks, scr, cal = run_calibrated(
                        run, info["chunk"], folder, log=log, progress=progress
                    )
                    result = assemble(run, chunks, scr, cal)
                else:
                    chunks = run_chunks(run, info["chunk"], folder, log=log, progress=progress)
                    result = assemble(run, chunks)
            except Exception as e:  # one failing run does not sink the batch
                failed[run.name] = f"{type(e).__name__}: {e}"
                log("run_failed", run=run.name, error=failed[run.name])
                print(f"{run.name}: FAILED: {failed[run.name]}", file=sys.stderr)
                continue  # its finished chunks stay for --resume
            result.timings["total_s"] = time.perf_counter() - t0
            write_trial(result, out / run.name)
            log("run_written", run=run.name, chunks=len(chunks))
            if progress:
                print(f"{run.name}: wrote {out / run.name}", file=sys.stderr)
        if not keep_chunks and folder.exists():
            shutil.rmtree(folder)
    if not keep_chunks and (out / CHUNKS).exists() and not any((out / CHUNKS).iterdir()):
        (out / CHUNKS).rmdir()
    summary = batch_summary(runs, out, failed)
    from vcohort.io import write_csv

    write_csv(out / SUMMARY, summary)
    log("done", summary=SUMMARY)
    if not failed and replaced_folder(out).exists():  # the batch --overwrite replaced
        shutil.rmtree(replaced_folder(out))
    return summary


def _clean_temporaries(out: Path) -> None:
    """Leftovers of a killed invocation: temporary files and folders (their names start with
    a dot; `vcohort.io`) next to run folders and chunk files."""
    for p in [*out.glob(".*"), *(out / CHUNKS).glob("*/.*")]:
        if p.name == CHUNKS:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def batch_summary(runs, out, failed: dict | None = None) -> pd.DataFrame:
    """One row per run × arm: swept values and the key endpoints of each run's summary.csv;
    a run that failed (``failed``: run name -> error) has one row with its ``error``."""
    rows = []
    failed = failed or {}
    for r in runs:
        if r.name in failed:
            s = pd.DataFrame({"run": [r.name]})
        else:
            # (an arm named "None" or "NA" stays a name, not a missing value)
            s = pd.read_csv(  # (missing values are written as empty fields: `write_csv`)
                Path(out) / r.name / "summary.csv", keep_default_na=False, na_values=[""]
            )
            s = s[[c for c in SUMMARY_COLUMNS if c in s] + dose_modification_columns(s)].copy()
            s.insert(0, "run", r.name)
        swept = {k: v if isinstance(v, str | int | float) else json.dumps(v)
                 for k, v in r.values.items()}  # fmt: skip
        swept.setdefault("reference_arm", r.experiment.reference_arm)  # swept or not
        for i, (k, v) in enumerate(swept.items()):
            s.insert(1 + i, k, v)
        if failed:
            s["error"] = failed.get(r.name, "")
        rows.append(s)
    out = pd.concat(rows, ignore_index=True)
    for c in sorted(COUNT_COLUMNS & set(out.columns)):
        if out[c].isna().any():  # counts stay whole beside a failed run's blanks (not 12.0)
            out[c] = out[c].astype("Int64")
    return out

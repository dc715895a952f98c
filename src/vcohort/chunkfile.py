"""Chunk files of `vcohort batch`: a slice of a run's cohort, its screening table and every
arm's trajectories in one ``.npz`` (plain arrays, no pickles), and the helpers that cut and join
`Trajectories` along the patient axis.  Floating-point arrays are stored bit for bit, so a run
assembled from chunk files read back equals one assembled from chunks just computed.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from vcohort.cohort import Cohort
from vcohort.simulate import Trajectories


def take(tr: Trajectories, m: int) -> Trajectories:
    cut = lambda d: {k: np.asarray(v)[:m] for k, v in d.items()}  # noqa: E731
    return dataclasses.replace(
        tr,
        patient_id=tr.patient_id[:m],
        states=cut(tr.states),
        daily=cut(tr.daily),
        auc=cut(tr.auc),
        dosing={drug: cut(v) for drug, v in tr.dosing.items()},
        status=tr.status[:m],
        status_day=tr.status_day[:m],
    )


# ---------------------------------------------------------------------------- chunk files
def _flat(prefix: str, d: dict) -> dict:
    return {f"{prefix}|{k}": np.asarray(v) for k, v in d.items()}


def chunk_bytes(chunk: dict) -> bytes:
    """A chunk as one ``.npz`` (no pickles): cohort, screening table, trajectories, meta."""
    co: Cohort = chunk["cohort"]
    arrays = {"cohort|patient_id": np.asarray(co.patient_id)}
    for part in ("params", "covariates", "y0"):
        arrays |= _flat(f"cohort|{part}", getattr(co, part))
    for drug, vals in co.pk.items():
        arrays |= _flat(f"cohort|pk|{drug}", vals)
    for col in chunk["screening"]:
        v = chunk["screening"][col].to_numpy()
        arrays[f"screening|{col}"] = v.astype(str) if v.dtype == object else v
    for arm, tr in chunk["trajectories"].items():
        for part in ("states", "daily", "auc"):
            arrays |= _flat(f"arm|{arm}|{part}", getattr(tr, part))
        for drug, v in tr.dosing.items():
            arrays |= _flat(f"arm|{arm}|dosing|{drug}", v)
        for attr in ("patient_id", "save_days", "status", "status_day"):
            arrays[f"arm|{arm}|{attr}"] = np.asarray(getattr(tr, attr))
    meta = chunk["meta"] | {
        "model": co.model,
        "seed": co.seed,
        "screening_columns": list(chunk["screening"]),
        "arms": {
            a: {"drugs": list(tr.drugs), "timings": tr.timings}
            for a, tr in chunk["trajectories"].items()
        },
    }
    arrays["meta"] = np.asarray(json.dumps(meta, default=str))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_chunk(path: Path) -> dict:
    """Inverse of `chunk_bytes`."""
    with np.load(path, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    meta = json.loads(str(a.pop("meta")))

    def group(prefix: str) -> dict:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in a.items() if k.startswith(prefix + "|")}

    pk = _nested(group("cohort|pk"))
    cohort = Cohort(
        a["cohort|patient_id"],
        group("cohort|params"),
        pk,
        group("cohort|covariates"),
        group("cohort|y0"),
        meta["model"],
        meta["seed"],
    )
    scr = pd.DataFrame({c: a[f"screening|{c}"] for c in meta["screening_columns"]})
    if "reason" in scr:
        scr["reason"] = scr["reason"].astype(object)
    trajs = {}
    for arm, info in meta["arms"].items():
        p = f"arm|{arm}"
        trajs[arm] = Trajectories(
            a[f"{p}|patient_id"],
            a[f"{p}|save_days"],
            group(f"{p}|states"),
            group(f"{p}|daily"),
            group(f"{p}|auc"),
            a[f"{p}|status"],
            a[f"{p}|status_day"],
            tuple(info["drugs"]),
            dict(info["timings"]),
            _nested(group(f"{p}|dosing")),
        )
    return {"cohort": cohort, "screening": scr, "trajectories": trajs, "meta": meta}


def _nested(flat: dict) -> dict:
    """``{"drug|field": v}`` -> ``{drug: {field: v}}``."""
    out: dict = {}
    for k, v in flat.items():
        drug, name = k.split("|", 1)
        out.setdefault(drug, {})[name] = v
    return out


def concat(parts: list[Trajectories], n: int) -> Trajectories:
    cat = lambda ds: {k: np.concatenate([d[k] for d in ds])[:n] for k in ds[0]}  # noqa: E731
    first = parts[0]
    timings = {"total_s": sum(p.timings.get("total_s", 0.0) for p in parts), "chunks": len(parts)}
    return Trajectories(
        np.concatenate([p.patient_id for p in parts])[:n],
        first.save_days,
        cat([p.states for p in parts]),
        cat([p.daily for p in parts]),
        cat([p.auc for p in parts]),
        np.concatenate([p.status for p in parts])[:n],
        np.concatenate([p.status_day for p in parts])[:n],
        first.drugs,
        timings,
        {drug: cat([p.dosing[drug] for p in parts]) for drug in first.dosing},
    )

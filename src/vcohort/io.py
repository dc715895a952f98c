"""Run folders: validated creation, atomic writes, manifest, parquet tables.

A run writes into a hidden temporary sibling folder and moves it into place only when every
file is written, so an existing folder is never half-overwritten and a failed run leaves the
user's previous results untouched (ARCHITECTURE.md, "Outputs").
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd


def check_output_dir(path: str | os.PathLike, overwrite: bool) -> Path:
    """Validate ``--out`` before any compute.  Missing parent folders are allowed (`run_folder`
    creates them); the current folder, or one holding it, is refused: a run replaces its
    folder as a whole."""
    p = Path(path)
    here, full = Path.cwd().resolve(), p.resolve()
    if full == here or full in here.parents:
        raise ValueError(
            f"--out {str(p)!r} is the current folder or one that holds it; a run replaces its "
            f"--out folder as a whole, so give it a folder of its own, e.g. runs/trial1"
        )
    if p.exists() and not p.is_dir():
        raise ValueError(f"--out {str(p)!r} exists and is not a folder")
    if p.exists() and any(p.iterdir()):
        # a folder vcohort wrote, holding no input of this command (nor, to be replaced, any
        # file the run did not write)
        _check_replaceable(p, full, overwrite)
        if not overwrite:
            raise ValueError(
                f"--out {str(p)!r} already exists and is not empty; choose another folder or "
                f"pass --overwrite to replace it"
            )
    check_creatable(p)
    return p


def check_creatable(path: str | os.PathLike) -> None:
    """``--out PATH`` can be created: the nearest existing folder above it is a writable
    folder (missing folders in between are created by the writer)."""
    above = next(a for a in Path(path).resolve().parents if a.exists())
    if not above.is_dir() or not os.access(above, os.W_OK | os.X_OK):
        what = "is not a folder" if not above.is_dir() else "is not writable"
        raise ValueError(f"--out {str(path)!r}: {str(above)!r} {what}")


# files that mark a folder as one vcohort wrote: --overwrite replaces only such a folder
RUN_MARKERS = ("manifest.json", "rule.json", "batch.json")
# every file of a run folder, as `run_folder` moved it into place: --overwrite refuses a folder
# that has gained files since (a user's own analysis next to the results would be deleted)
FILE_LIST = ".vcohort-files.json"


# files an OS or an editor drops into any folder it shows or edits: not the user's work
_CLUTTER = (".DS_Store", "Thumbs.db", "desktop.ini")


def _files_in(folder: Path) -> list[str]:
    """The files under ``folder`` (relative POSIX paths, sorted), leaving out the file list,
    vcohort's temporary files and OS/editor clutter (`_CLUTTER`, ``._*``, ``*~``)."""
    return sorted(
        q.relative_to(folder).as_posix()
        for q in folder.rglob("*")
        if not q.is_dir()
        and q.name != FILE_LIST
        and TEMP_MARK not in q.name
        and q.name not in _CLUTTER
        and not q.name.startswith("._")
        and not q.name.endswith("~")
    )


def _check_replaceable(p: Path, full: Path, overwrite: bool = True) -> None:
    """``--overwrite`` replaces a folder as a whole: refuse one that vcohort did not write (no
    `RUN_MARKERS` file) and one that holds a file named on the command line (the experiment
    file kept beside its results would be deleted with them)."""
    if not any((p / m).is_file() for m in RUN_MARKERS):
        raise ValueError(
            f"--out {str(p)!r} is not empty and holds no {' / '.join(RUN_MARKERS)}, so it is "
            f"not a vcohort output folder: choose another folder (a run replaces its folder as "
            f"a whole, and --overwrite replaces only folders vcohort wrote)"
        )
    try:
        known = set(json.loads((p / FILE_LIST).read_text())) if overwrite else None
    except (OSError, ValueError, TypeError):  # no list (a folder from before lists, a batch)
        known = None
    if known is not None:
        extra = [f for f in _files_in(p) if f not in known]
        if extra:
            more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
            it = "them" if len(extra) > 1 else "it"
            raise ValueError(
                f"--out {str(p)!r} holds {', '.join(map(repr, extra[:3]))}{more}, which vcohort "
                f"did not write there; --overwrite replaces the folder as a whole and would "
                f"delete {it}: move {it} out or choose another folder"
            )
    for value in COMMAND_INPUTS:
        try:
            q = Path(value).resolve()
        except (OSError, ValueError):
            continue
        if full in q.parents and q.exists():
            raise ValueError(
                f"--out {str(p)!r} holds {value!r}, an input of this command; --overwrite "
                f"would delete it with the folder: move it out or choose another folder"
            )


# the files the current command reads (`vcohort.cli.main` sets them for one command, with
# `command_inputs`; loaders add what a file names: drug files, a calibration rule, a base file)
COMMAND_INPUTS: list[str] = []


_IN_COMMAND = [0]  # > 0 inside `command_inputs`


@contextmanager
def command_inputs(paths):
    """Within the block, ``--overwrite`` refuses an --out folder holding any of ``paths`` or of
    the files the loaders read meanwhile (`note_input`)."""
    saved = list(COMMAND_INPUTS)
    COMMAND_INPUTS[:] = [str(x) for x in paths]
    _IN_COMMAND[0] += 1
    try:
        yield COMMAND_INPUTS
    finally:
        _IN_COMMAND[0] -= 1
        COMMAND_INPUTS[:] = saved


def note_input(path) -> None:
    """Record a file a loader read (an experiment's drug file, a sweep's base, a rule), within
    a command only: a library call leaves nothing behind."""
    if _IN_COMMAND[0]:
        COMMAND_INPUTS.append(str(path))


# the marker of every temporary file and folder vcohort writes (`temporary_prefix`), so that
# a cleanup of leftovers (`vcohort.batch`) can tell them from a user's own hidden files
TEMP_MARK = "vctmp-"


def temporary_prefix(name: str) -> str:
    """The start of the name of a temporary sibling of ``name``: ``.NAME.vctmp-``, followed by
    `tempfile`'s eight random characters (``[a-z0-9_]{8}``), or by ``old-PID`` for a folder
    being replaced (`run_folder`)."""
    return f".{name}.{TEMP_MARK}"


@contextmanager
def run_folder(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary folder; on success it replaces ``path`` atomically (same filesystem).

    ``path`` is checked (`check_output_dir`) on entry and again just before the swap: a folder
    that appeared there meanwhile (another run, the user) is not replaced unless it may be;
    then the results stay in the temporary folder, whose path the error names."""
    final = check_output_dir(path, overwrite).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(final.name), dir=final.parent))
    # mkdtemp makes the folder private (0700); the run folder gets a plain folder's mode
    # (0777 less the umask), so that a team's shared runs stay readable (files: `_umask_mode`)
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        # a plain write: the whole temporary folder is what moves into place atomically
        (tmp / FILE_LIST).write_text(json.dumps(_files_in(tmp), indent=0))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:  # again: a folder may have appeared (or changed) at ``path`` while the run wrote
        check_output_dir(path, overwrite)
    except ValueError as e:  # keep both: the user's folder and this run's results
        raise ValueError(f"{e}; this run's results are kept in {str(tmp)!r}") from None
    old = None
    if final.exists():
        old = final.parent / f"{temporary_prefix(final.name)}old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file via a temporary file and rename (never a half-written file).  The file gets
    a plain file's mode (0666 less the umask), not mkstemp's private 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=_json_default).encode())


def _json_default(o):
    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def write_parquet(path, df: pd.DataFrame) -> None:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def write_csv(path, df: pd.DataFrame) -> None:
    atomic_write_bytes(path, df.to_csv(index=False).encode())


def environment() -> dict:
    """Versions, device and the user's drug files loaded in this process (each as read), for
    the manifest."""
    import jax
    import jaxlib

    import vcohort
    from vcohort.drug_file import loaded_drug_files

    try:
        devices = [str(d) for d in jax.devices()]
    except RuntimeError:  # pragma: no cover
        devices = []
    return {
        "vcohort": vcohort.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": devices,
    } | ({"drug_files": files} if (files := loaded_drug_files()) else {})


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-Markdown table of ``df`` (no extra dependency)."""

    def cell(v) -> str:
        if isinstance(v, float | np.floating):
            return format(float(v), floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])

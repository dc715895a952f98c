"""Arms → simulations → tables: the library function behind ``vcohort simulate`` and ``demo``.

Every arm runs on the same virtual patients (paired comparison) and on one compiled function:
all arms share the union of their drugs (absent drugs get zero doses), so only dose amounts
change between arms and nothing is recompiled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vcohort.cohort import Cohort
from vcohort.dosing import Regimen, compile_schedule, dose_step, parse_regimen
from vcohort.drugs import get_drug
from vcohort.endpoints import patient_endpoints, summarize
from vcohort.simulate import simulate


@dataclass(frozen=True)
class Arm:
    """A named arm: its regimens (empty = untreated)."""

    name: str
    regimens: tuple[Regimen, ...]

    def describe(self) -> str:
        return " + ".join(r.describe() for r in self.regimens) or "untreated"


def parse_arm(text: str, catalogue=None) -> Arm:
    """``"NAME=REGIMEN [+ REGIMEN ...]"`` or ``"untreated"``; see `parse_regimen`."""
    if "=" in text:
        name, spec = text.split("=", 1)
        name = name.strip()
    else:
        name, spec = text.strip(), text
    if not name:
        raise ValueError(f"arm {text!r}: empty arm name")
    spec = spec.strip()
    if spec.lower() in ("", "untreated", "none", "control"):
        return Arm(name, ())
    regs = tuple(parse_regimen(part.strip(), catalogue) for part in spec.split("+"))
    return Arm(name, regs)


def starts_after_horizon(regimens, days) -> list[str]:
    """One message per regimen starting on or after day ``days`` (it would give no dose)."""
    return [
        f"{r.describe()!r} starts on day {r.start_day:g}, after the horizon ({days} d): it "
        f"would give no dose"
        for r in regimens
        if r.start_day >= days
    ]


def check_arms(model, arms, days: int, *, dt: float = 0.1, precision: str = "float64",
               engine: str = "xla") -> None:  # fmt: skip
    """Refuse, before any compute, what the arms' regimens ask that the run cannot do: a hold
    rule on an output the model lacks, overlapping infusions of a ruled drug, hold rules on
    the ``pallas`` engine, a drug the model cannot take (`vcohort.simulate.prepare`), two arms
    of one name (their results would be written over each other), a regimen starting at or
    after the horizon, a ``dt`` at which the typical patient's fixed RK4 step is unstable
    (`vcohort.simulate.check_typical_rates`)."""
    from vcohort.simulate import prepare

    names = [a.name for a in arms]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(
            f"arm names must be unique: {', '.join(map(repr, twice))} is given more than once "
            f"(arms {names}); name each with --arm 'NAME=REGIMEN'"
        )
    cat = model.drug_catalogue()
    # the typical patient's rates keep the fixed RK4 step stable (a coarse dt gave finite but
    # wrong states: k_TGF x 0.2 = 2.86 sent the run-in's TGF-β to -1e56)
    from vcohort.simulate import check_typical_dt

    check_typical_dt(model, dt, {r.drug for a in arms for r in a.regimens})
    for a in arms:
        late = starts_after_horizon(a.regimens, days)  # no dose in the run
        if late:
            raise ValueError(f"arm {a.name!r}: {late[0]}")
        for r in a.regimens:
            # the simulation doses the model's drug of that name (`simulate`'s catalogue): a
            # regimen parsed against another definition would run silently as the model's
            mine = get_drug(r.drug, r.catalogue) if r.catalogue is not None else None
            if mine is not None and r.drug in cat and cat[r.drug] != mine:
                raise ValueError(
                    f"arm {a.name!r}: regimen {r.describe()!r} was parsed with a definition of "
                    f"{r.drug!r} other than model {model.name!r}'s; run a model whose catalogue "
                    f"holds it (dataclasses.replace(model, catalogue=...))"
                )
        try:
            s = compile_schedule(list(a.regimens), float(days), dt=dt)
            if engine == "pallas":
                s.refuse_rules("engine='pallas'")
            prepare(model, s, days, dt=dt, precision=precision, catalogue=model.drug_catalogue())
        except ValueError as e:
            raise ValueError(f"arm {a.name!r}: {e}") from None


DOSE_STATUS = ("given", "withheld", "discontinued", "not reached", "failed")


def doses_given_frame(
    trajs: dict, schedules: dict, covariates: dict, dt: float = 0.1
) -> pd.DataFrame:
    """One row per planned dose of every drug with a hold rule, per arm and patient (cohort
    order): ``arm, patient, drug, dose`` (1, 2, ...), ``unit`` (the drug's amount unit: mg,
    or 1e6 cells for a cell product), ``planned_day``, ``planned_amount`` (the regimen's dose
    in the patient's unit), ``status`` (`DOSE_STATUS`), ``given_day`` (NaN: not given),
    ``fraction`` (of the planned dose given; 0: not given) and ``given_amount``.

    ``status``: ``withheld`` (due, and omitted, or still postponed when the drug was stopped or
    the run ended), ``discontinued`` (after the drug was stopped), ``not reached`` (a delayed
    cycle pushed past the horizon), ``failed`` (the patient's solution failed; nothing is
    reported).  Amounts are whole doses: an infusion running past the horizon counts in full
    here, but only its part within the horizon in `vcohort.simulate.Trajectories.dosing`.
    Empty when no arm has a rule.  ``dt``: the run's step (a dose is decided in its step,
    `vcohort.dosing.dose_step`)."""
    from vcohort.drugs import get_drug

    parts = []
    for arm, tr in trajs.items():
        s = schedules[arm]
        n_pat = len(tr.patient_id)
        per = np.stack(
            [np.ones(n_pat)]
            + [
                np.asarray(covariates.get(c, np.full(n_pat, np.nan)), float)
                for c in ("weight_kg", "bsa_m2")
            ]  # fmt: skip
        )  # (3, patients): amount per dose unit, per kg, per m2
        for drug, d in tr.dosing.items():
            i = s.drugs.index(drug)
            ok = np.flatnonzero(s.valid[i])
            planned = (np.asarray(s.amount)[i, ok][:, None] * per[s.kind[i, ok]]).T  # (P, n)
            frac = np.asarray(d["dose_fraction"], float)[:, ok]
            t = np.broadcast_to(s.time[i, ok], frac.shape)
            day = np.asarray(d["dose_day"], float)[:, ok]
            # the step the dose was decided in, as the simulation placed it (a dose in the
            # horizon's last half step moves into the last step; the last save day is the horizon)
            # (a dose of a longer schedule past the horizon keeps its own, later step)
            step = dose_step(t, dt)
            saved = getattr(tr, "save_days", None)
            if saved is not None:
                n_steps = round(float(saved[-1]) / dt)
                step = np.where(t < n_steps * dt, np.minimum(step, n_steps - 1), step)
            status = _dose_status(frac, step, d, s.rules[i].delay, np.asarray(tr.status) != 0, dt)
            parts.append(
                pd.DataFrame(
                    {
                        "arm": arm,
                        "patient": np.repeat(tr.patient_id, ok.size),
                        "drug": drug,
                        "dose": np.tile(np.arange(1, ok.size + 1), n_pat),
                        "unit": get_drug(drug).amount_unit,
                        "planned_day": t.ravel(),
                        "planned_amount": planned.ravel(),
                        "status": status.ravel(),
                        "given_day": day.ravel(),
                        "fraction": frac.ravel(),
                        "given_amount": (frac * planned).ravel(),
                    }
                )
            )
    cols = ["arm", "patient", "drug", "dose", "unit", "planned_day", "planned_amount", "status",
            "given_day", "fraction", "given_amount"]  # fmt: skip
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def _dose_status(frac, step, d, delay: bool, failed, dt: float) -> np.ndarray:
    """`DOSE_STATUS` of each (patient, dose) of one ruled drug (see `doses_given_frame`);
    ``step``: the step each dose falls due in.  ``stopped_day`` (the stopping step x dt, in
    the run's precision) is compared as a step: in float32, k x dt fell below the float64
    day of step k at 20% of steps (day 0.7, 1.4 ...), which read the dose that stopped the
    drug as 'discontinued'."""
    stop = np.round(np.asarray(d["stopped_day"], float)[:, None] / dt)
    out = np.full(frac.shape, "withheld", dtype=object)
    if delay:  # doses fall due in order: the first `due` were due, the rest never
        j = np.arange(frac.shape[1])[None, :]
        later = j >= np.asarray(d["due"], float)[:, None]
        why = np.where(np.isfinite(stop[:, 0]), "discontinued", "not reached")
        out[later] = why[np.nonzero(later)[0]]
    else:  # each dose falls due on its own day
        out[step > stop] = "discontinued"  # NaN (never stopped) compares False
    out[frac > 0] = "given"
    out[failed] = "failed"
    return out


def run_arms(
    model,
    cohort: Cohort,
    arms: list[Arm],
    days: int,
    *,
    dt: float = 0.1,
    save_every: int = 7,
    precision: str = "float64",
    chunk_size: int = 4096,
    progress: bool | None = None,
    assess_every: int = 42,
    endpoint_options: dict | None = None,
    engine: str = "xla",
):
    """Simulate every arm on ``cohort``.  Returns (trajectories by arm, endpoints, summary,
    schedules by arm).  ``endpoint_options`` go to `patient_endpoints` (assessment schedule,
    confirmation, censoring)."""
    opts = {"assess_every": assess_every} | dict(endpoint_options or {})
    check_arms(model, arms, days, dt=dt, precision=precision, engine=engine)
    drugs: list[str] = []
    for a in arms:
        for r in a.regimens:
            if r.drug not in drugs:
                drugs.append(r.drug)
    schedules = {
        a.name: compile_schedule(list(a.regimens), float(days), drugs=tuple(drugs)) for a in arms
    }
    trajs, eps = {}, []
    it = arms
    if progress is not False and len(arms) > 1:
        from tqdm.auto import tqdm

        it = tqdm(arms, desc=f"{len(arms)} arms x {len(cohort)} patients", unit="arm")
    for a in it:
        t0 = time.perf_counter()
        tr = simulate(
            model,
            cohort,
            schedules[a.name],
            days,
            dt=dt,
            save_every=save_every,
            precision=precision,
            chunk_size=chunk_size,
            progress=progress,
            engine=engine,
        )
        tr.timings["arm_s"] = time.perf_counter() - t0
        trajs[a.name] = tr
        ep = patient_endpoints(tr, **opts)
        ep.insert(1, "arm", a.name)
        eps.append(ep)
    endpoints = pd.concat(eps, ignore_index=True)
    summary = summarize(endpoints, by="arm")
    summary.insert(1, "regimen", [a.describe() for a in arms])
    return trajs, endpoints, summary, schedules


def timecourse_frame(trajs: dict, states=None) -> pd.DataFrame:
    """Long table: patient, arm, day, states at the save days, diameter_mm."""
    frames = []
    for arm, tr in trajs.items():
        P, T = len(tr), tr.save_days.size
        cols = {
            "patient": np.repeat(tr.patient_id, T),
            "arm": np.repeat(np.array([arm], dtype=object), P * T),
            "day": np.tile(tr.save_days, P),
        }
        for k in states or tr.states:
            cols[k] = np.asarray(tr.states[k]).reshape(-1)
        days = tr.save_days.astype(int)
        for k, v in tr.daily.items():
            cols[k] = np.asarray(v)[:, days].reshape(-1)
        cols["status"] = np.repeat(tr.status, T)
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)

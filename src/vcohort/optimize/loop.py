"""The optimisation loop: optax steps on the augmented Lagrangian, mini-batches, multiplier
updates, early stopping, history, checkpoint and resume (see `vcohort.optimize`)."""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from vcohort.cohort import Cohort
from vcohort.dosing import Schedule
from vcohort.model import CSC_IMMUNE, Model
from vcohort.optimize.config import make_optax
from vcohort.optimize.problem import (
    Layout,
    NoMultipliers,
    Problem,
    layout,
    make_loss,
    make_personal_loss,
    to_amount,
    to_theta,
)


# ---------------------------------------------------------------------------- loop
@dataclass
class OptResult:
    """Outcome of `optimize`: the best feasible (else least infeasible) schedule found."""

    problem: Problem
    layout: Layout
    theta: np.ndarray
    amount: np.ndarray  # (drugs, slots) or (patients, drugs, slots), mg
    history: pd.DataFrame
    constraints: dict  # name -> max value of g at the best iterate (<= 0 feasible)
    simulations: int  # cohort (mini-batch) value-and-gradient evaluations
    wall_s: float
    personalised: bool = False
    best_iteration: int = -1  # the iteration whose schedule this is (-1: none finite)
    stop: str = ""  # "patience" (no better schedule for `patience` iterations) or "iterations"
    # training patients left out (patient id -> why): those failing at every schedule
    # (`failing_patients`) and, with full batches, at the starting one; a personalised
    # result's rows are the other patients, in order
    excluded: dict = field(default_factory=dict)

    def convergence(self) -> str:
        """One sentence on how the run ended, for reports: a run that was still finding better
        schedules when it reached its iteration limit has not converged."""
        n = self.simulations
        if self.best_iteration < 0:
            return f"No iteration of {n} had a finite objective."
        if self.stop == "patience":
            return (
                f"Stopped after {n} iterations: no better schedule in the last "
                f"{n - 1 - self.best_iteration} (best at iteration {self.best_iteration})."
            )
        # "still improving" needs an improvement (best past iteration 0) near the end of a
        # run long enough to tell (3 iterations or more)
        late = n >= 3 and 0 < self.best_iteration and self.best_iteration >= n - max(2, n // 10)
        return (
            f"Reached the iteration limit ({n}) with the best schedule at iteration "
            f"{self.best_iteration}"
            + (": still improving, more iterations may find a better one." if late else ".")
        )

    def schedule(self, patient: int | None = None) -> Schedule:
        """The schedule with these doses; a drug with a hold rule has no dose in a slot below
        half of its ``round_to_mg`` (`vcohort.optimize.problem.DrugSlots.rule`), as in training."""
        a = np.array(self.amount if patient is None else self.amount[patient], dtype=np.float64)
        # compared in the training precision, as `rule_inputs` does
        dt = np.float32 if self.problem.precision == "float32" else np.float64
        for i, d in enumerate(self.problem.drugs):  # a: (drugs, slots), or per patient
            if d.rule is not None:
                row = a[..., i, :]
                row[row.astype(dt) < dt(d.smallest_dose_mg)] = 0.0
        return self.layout.schedule.replace_amount(a)


def loss_devices(devices, batch: int, local: list | None = None) -> list:
    """The devices an optimiser's patient axis is sharded over (`patient_sharding`).

    ``devices=None``: every local device when they are accelerators (GPUs, TPUs: each runs its
    share of the patients, and jit all-reduces the cohort means and the gradient); one device
    on a CPU, where XLA already spreads each kernel over every core and sharding the gradient
    over two CPU devices measured slower (3.7-4.1 s per step against 2.2-2.3 s, 1,000
    patients x 168 days, 2-core CPU).  The count used is the largest that divides the batch:
    padded patients would enter the cohort means.  Explicit ``devices`` must divide it.
    ``local`` stands in for ``jax.local_devices()`` (tests).
    """
    if devices is None:
        local = jax.local_devices() if local is None else local
        if local[0].platform == "cpu":
            return local[:1]
        k = max(d for d in range(1, len(local) + 1) if batch % d == 0)
        return local[:k]
    devs = list(devices)
    if not devs:
        raise ValueError("devices=[] is empty; give at least one device, or None")
    if batch % len(devs):
        raise ValueError(
            f"devices: a batch of {batch} patients does not split evenly over {len(devs)} "
            f"devices; choose a batch_size (or cohort size) that is a multiple of {len(devs)}"
        )
    return devs


def _placer(devices: list):
    """``place(x)``: ``x`` (a pytree with a leading patient axis) sharded over ``devices``, or
    put on the one device."""
    from vcohort.simulate import patient_sharding

    shard = patient_sharding(devices)
    return lambda x: jax.device_put(x, devices[0] if shard is None else shard)


def _batches(rng: np.random.Generator, n: int, size: int | None):
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _save_checkpoint(path: Path, state: dict, opt_state, history: list) -> None:
    from vcohort.io import atomic_write_bytes

    leaves = jax.tree_util.tree_leaves(opt_state)
    buf = io.BytesIO()
    arrays = {f"opt_{i}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays.update({k: np.asarray(v) for k, v in state["arrays"].items()})
    meta = {k: v for k, v in state.items() if k != "arrays"}
    meta["history"] = history
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _checkpoint_meta(path: Path) -> dict:
    with np.load(path) as z:
        return json.loads(bytes(z["meta"]).decode())


def _load_checkpoint(path: Path, opt_state_template):
    z = np.load(path)
    meta = json.loads(bytes(z["meta"]).decode())
    leaves, treedef = jax.tree_util.tree_flatten(opt_state_template)
    saved = sorted(k for k in z.files if k.startswith("opt_"))
    if len(saved) != len(leaves) or any(
        np.shape(z[f"opt_{i}"]) != np.shape(leaf) for i, leaf in enumerate(leaves)
    ):
        raise ValueError(
            f"checkpoint {path} holds another optimiser's state ({len(saved)} arrays, this "
            f"optimiser has {len(leaves)}); delete it or run without resume"
        )
    new = [jnp.asarray(z[f"opt_{i}"], dtype=leaf.dtype) for i, leaf in enumerate(leaves)]
    arrays = {k: z[k] for k in z.files if not k.startswith("opt_") and k != "meta"}
    return meta, arrays, jax.tree_util.tree_unflatten(treedef, new)


def update_multipliers(
    lam: dict, g: dict, mu: float, viol: float, prev_viol: float, finite: bool, feas_tol: float
):
    """One augmented-Lagrangian update (Nocedal & Wright 2006, Alg. 17.4): ``λ ← max(0, λ + μ
    g)``, and ``μ`` doubled (to at most 1e4) when the violation fell by less than half since the
    last update.  Skipped when the step's values were not finite (a failed patient in the
    batch): a NaN multiplier would make every later loss NaN.  Returns (λ, μ, violation)."""
    if not finite:
        return lam, mu, prev_viol
    lam = {k: jnp.maximum(0.0, lam[k] + mu * g[k]) for k in lam}
    if viol > feas_tol and viol > 0.5 * prev_viol:
        mu = min(mu * 2.0, 1e4)
    return lam, mu, (viol if math.isfinite(viol) else prev_viol)


def failing_patients(model: Model, cohort: Cohort, dt: float, drug_names) -> dict[int, str]:
    """Patients of ``cohort`` that fail whatever the doses (patient id -> why): a drawn
    first-order rate x ``dt`` past RK4's stability bound (with the channels ``drug_names``
    act on: `vcohort.simulate.unstable_patients`), or a non-finite day-0 state (the immune
    run-in failed).  `vcohort.simulate.simulate` gives them a failure status at every schedule;
    in training, one of them made every full-batch step non-finite, so `optimize` leaves them
    out (and says so)."""
    from vcohort.simulate import (
        STATUS_INITIAL,
        STATUS_MESSAGES,
        STATUS_UNSTABLE,
        acting_channels,
        finite_start,
        unstable_patients,
    )

    cat = model.drug_catalogue()
    given = [cat[d] for d in drug_names if d in cat]
    unstable = unstable_patients(model, cohort.params, dt, acting_channels(given))
    init = finite_start(cohort)
    ids = np.asarray(cohort.patient_id)
    out = {int(i): STATUS_MESSAGES[STATUS_INITIAL] for i in ids[~init]}
    out.update({int(i): STATUS_MESSAGES[STATUS_UNSTABLE] for i in ids[unstable & init]})
    return out


class NoPatientsLeft(ValueError):
    """Every training patient fails (`_leave_out`): nothing is left to optimise for."""


def _leave_out(cohort: Cohort, why: dict, what: str, where: str) -> Cohort:
    """``cohort`` without the patients ``why`` names (patient id -> reason), with a warning;
    refused when that would leave none."""
    if not why:
        return cohort
    import warnings

    if len(why) >= len(cohort):
        raise NoPatientsLeft(
            f"every training patient ({len(cohort)}) fails {where}: {next(iter(why.values()))}"
        )
    ids = list(why)
    shown = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
    warnings.warn(
        f"{len(ids)} of {len(cohort)} training patients left out of the optimisation "
        f"(patient_id {shown}): {what} ({'; '.join(sorted(set(why.values())))})",
        stacklevel=3,
    )
    return cohort.without(ids)


def _failing_at(problem: Problem, lay, model: Model, cohort: Cohort, amount) -> dict[int, str]:
    """Patients that `vcohort.simulate.simulate` fails (any status) under the slot doses
    ``amount`` (patient id -> why)."""
    from vcohort.simulate import STATUS_MESSAGES, simulate

    r = simulate(
        model, cohort, lay.schedule.replace_amount(np.asarray(amount, dtype=np.float64)),
        problem.days, dt=problem.dt, save_every=problem.days, precision=problem.precision,
        progress=False,
    )  # fmt: skip
    bad = np.asarray(r.status) != 0
    ids, st = np.asarray(r.patient_id)[bad], np.asarray(r.status)[bad]
    why = [f"{STATUS_MESSAGES[int(k)]} at the starting schedule" for k in st]
    return dict(zip(ids.tolist(), why, strict=True))


def _fingerprint(problem: Problem, n: int, personalised: bool, extra: dict) -> str:
    """What a checkpoint (and a compiled step) belongs to: the problem, the drugs' definitions
    (a user's drug file may change between runs), the cohort size and ``extra`` settings."""
    from vcohort.drugs import get_drug

    defs = {d.drug: get_drug(d.drug).digest() for d in problem.drugs}
    return json.dumps(
        {
            "problem": asdict(problem),
            "drugs": defs,
            "n": n,
            "personalised": personalised,
            **extra,
        },  # fmt: skip
        sort_keys=True,
        default=str,
    )


def fingerprint_changes(saved: str, now: str, most: int = 4) -> str:
    """The settings that differ between two `_fingerprint` strings, as ``key: saved -> now``
    (dotted paths into the problem; at most ``most`` named, then a count)."""

    def leaves(x, path=""):
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                out.update(leaves(v, f"{path}.{k}" if path else str(k)))
            return out
        if isinstance(x, list) and x and all(isinstance(v, dict) for v in x):
            out = {}
            for i, v in enumerate(x):
                out.update(leaves(v, f"{path}[{i}]"))
            return out
        return {path: x}

    def short(v) -> str:
        t = json.dumps(v, default=str)
        return t if len(t) <= 40 else t[:37] + "..."

    try:
        a, b = leaves(json.loads(saved)), leaves(json.loads(now))
    except (TypeError, ValueError):
        return "its fingerprint cannot be read"
    names = {"n": "patients (number)", "patients": "training patients (their ids)"}
    diff = [
        f"{names.get(k, k)}: {short(a.get(k, '(absent)'))} -> {short(b.get(k, '(absent)'))}"
        if k != "patients"
        else f"{names[k]} differ"
        for k in sorted(set(a) | set(b))
        if a.get(k, "(absent)") != b.get(k, "(absent)")
    ]
    if not diff:
        return "no setting differs in a way that can be named"
    more = f"; and {len(diff) - most} more" if len(diff) > most else ""
    return "; ".join(diff[:most]) + more


def optimize(
    problem: Problem,
    cohort: Cohort,
    *,
    personalised: bool = False,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 0.1,
    iterations: int = 60,
    batch_size: int | None = None,
    seed: int = 0,
    al_every: int = 5,
    mu: float = 10.0,
    patience: int = 20,
    tol: float = 1e-4,
    feas_tol: float = 1e-3,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 5,
    resume: bool = False,
    progress: bool = True,
    model: Model = CSC_IMMUNE,
    devices=None,
    optimizer_key=None,
    _excluded: dict | None = None,
) -> OptResult:
    """Minimise ``problem``'s objective over its dose slots for ``cohort``.

    Args:
        problem: drugs, limits, horizon and objective weights (validated first).
        cohort: the training cohort.
        personalised: one schedule per patient (vmapped) instead of one for the cohort
            (full batch; objectives must decompose over patients).
        optimizer: any optax transformation (default Adam with ``learning_rate``).
        iterations: maximum value-and-gradient evaluations.
        batch_size: patients per stochastic step (None = all: deterministic full-batch
            gradients, the default).
        al_every: iterations between augmented-Lagrangian multiplier updates.
        mu: initial penalty parameter (doubled when a violation does not halve).
        patience: stop when the best feasible objective has not improved by ``tol`` for this
            many iterations.
        checkpoint: file to save state to every ``checkpoint_every`` iterations; with
            ``resume=True`` an existing file (from the same problem and cohort) is continued.
        optimizer_key: a JSON-able description of ``optimizer`` (its name, learning rate and
            schedule), part of the checkpoint's fingerprint, so that ``resume`` refuses a
            checkpoint written with other settings (an optax object cannot be compared);
            the default Adam is described by its learning rate.
        devices: devices to shard the (mini-)batch's patients over (`loss_devices`; default:
            every local accelerator, one device on a CPU); results do not depend on it beyond
            the order of summation.
        _excluded: internal: patients an outer call already left out (patient id -> why).

    Training patients that fail at every schedule (`failing_patients`), and, with full
    batches, those that fail at the starting schedule (its first step non-finite), are left
    out with a warning and listed in ``OptResult.excluded``; a resumed run leaves out those
    its checkpoint names.
    """
    call = dict(locals())  # the arguments, for a restart without some patients
    problem.validate()
    from vcohort.simulate import check_typical_dt

    # the typical patient's RK4 step stays stable at problem.dt
    check_typical_dt(model, problem.dt, problem.drug_names, flag="dt")
    # patients that fail at any schedule are left out of training, with a warning (one of them
    # made every full-batch step non-finite: "no iteration had a finite objective")
    excluded = dict(_excluded or {})
    fresh = failing_patients(model, cohort, problem.dt, problem.drug_names)
    cohort = _leave_out(cohort, fresh, "they fail at every schedule", "whatever the doses")
    excluded.update(fresh)
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        # a resumed run leaves out what the interrupted one had left out (its checkpoint says)
        saved = _checkpoint_meta(Path(checkpoint)).get("excluded", {})
        here = set(np.asarray(cohort.patient_id).tolist())
        more = {int(k): v for k, v in saved.items() if int(k) in here}
        cohort = _leave_out(cohort, more, "the interrupted run left them out", "in it")
        excluded.update(more)
    n = len(cohort)
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations={iterations!r} must be an integer >= 1")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1 or None")
    if personalised:
        batch_size = None
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint file")
    if checkpoint is not None and optimizer is not None and optimizer_key is None:
        raise ValueError(
            "a checkpoint with a given optimizer needs optimizer_key (e.g. "
            "vcohort.optimize.config.optax_key of its settings), so that a resumed run can be "
            "checked to use the same optimiser"
        )
    place = _placer(loss_devices(devices, n if batch_size is None else min(batch_size, n)))
    lay = layout(problem)
    opt = optimizer if optimizer is not None else make_optax("adam", learning_rate)
    if optimizer is None:
        opt_key = ("adam", float(learning_rate))
    elif optimizer_key is not None:  # optimisers with one description update alike: one compile
        opt_key = ("key", json.dumps(optimizer_key, sort_keys=True, default=str))
    else:
        opt_key = id(optimizer)  # the cache entry keeps the object, so its id is not reused
    loss, plan, step = _compiled_step(problem, lay, model, personalised, opt, opt_key)
    cohort.check_for(model, plan.drugs, set())
    np_dtype = np.float64 if plan.dtype == jnp.float64 else np.float32

    theta0 = to_theta(lay, lay.schedule.amount)
    # start from the *projected* doses: a start above a budget would otherwise sit on the flat
    # directions of the scaling projection (lowering every dose changes nothing until the
    # total falls to the budget)
    amount0 = np.asarray(to_amount(lay, jnp.asarray(theta0)), dtype=np.float64)
    theta0 = to_theta(lay, amount0)
    if personalised:
        theta0 = np.broadcast_to(theta0, (n,) + theta0.shape).copy()
    theta = jnp.asarray(theta0, plan.dtype)
    if personalised:  # one schedule per patient: sharded like the patients
        theta = place(theta)
    opt_state = opt.init(theta)

    # multipliers: shapes from one abstract evaluation (no compute)
    b0 = _batches(np.random.default_rng(0), n, batch_size)
    args0 = cohort.arrays(b0, plan.drugs, np_dtype)
    _, (_, g_shape, _) = jax.eval_shape(lambda th, a: _shape_probe(loss, th, a), theta, args0)
    lam = {k: jnp.zeros(v.shape, plan.dtype) for k, v in g_shape.items()}
    mu_v = float(mu)
    rng = np.random.default_rng(seed)
    history: list[dict] = []
    best = {"obj": math.inf, "viol": math.inf, "theta": np.asarray(theta), "it": -1, "g": {}}
    start_it, stopped = 0, None
    prev_viol = math.inf  # the last multiplier update's violation (mu doubles if it barely fell)
    settings = {
        "seed": seed,
        "batch": batch_size,
        "al_every": al_every,
        "mu": float(mu),
        # the stopping rule: a resume with another one would match no uninterrupted run
        "patience": patience,
        "tol": float(tol),
        "feas_tol": float(feas_tol),
        "optimizer": list(opt_key) if optimizer is None else optimizer_key,
        # the training patients themselves: a resume on another cohort of the same size is refused
        "cohort_seed": int(cohort.seed),
        "patients": hashlib.sha256(np.asarray(cohort.patient_id, np.int64).tobytes()).hexdigest(),
    }
    fp = _fingerprint(problem, n, personalised, settings)
    ck = Path(checkpoint) if checkpoint is not None else None
    if resume and ck is not None and ck.exists():
        saved_fp = _checkpoint_meta(ck)["fingerprint"]
        if saved_fp != fp:  # before reading any optimiser state
            raise ValueError(
                f"checkpoint {ck} was written for a different problem, cohort or optimiser "
                f"settings ({fingerprint_changes(saved_fp, fp)}); resume with the settings it "
                "was written with, or delete it or run without resume"
            )
        meta, arrays, opt_state = _load_checkpoint(ck, opt_state)
        theta = jnp.asarray(arrays["theta"], plan.dtype)
        if personalised:
            theta = place(theta)
        lam = {k: jnp.asarray(arrays[f"lam:{k}"], plan.dtype) for k in lam}
        best.update(obj=meta["best_obj"], viol=meta["best_viol"], it=meta["best_it"])
        best["theta"] = arrays["best_theta"]
        best["g"] = meta["best_g"]
        mu_v = meta["mu"]
        prev_viol = meta.get("prev_viol", math.inf)
        rng.bit_generator.state = meta["rng"]
        history = meta["history"]
        start_it = meta["iteration"]
        stopped = meta.get("stop")  # the run had stopped (patience) before it was interrupted
        if start_it > iterations:
            raise ValueError(
                f"iterations={iterations} is fewer than the {start_it} the checkpoint {ck} has "
                f"done; resume with the same iterations"
            )
    elif ck is not None and ck.exists() and not resume:
        raise FileExistsError(f"checkpoint {ck} exists; pass resume=True or remove it")

    it_range = range(start_it, iterations) if stopped is None else range(0)
    stop = stopped or "iterations"
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations, initial=start_it, desc="optimising", unit="it")
    t0 = time.perf_counter()
    # iterations since the best one: a resumed run counts on from where it stopped (best it
    # -1: no iteration was better yet, so all start_it of them count)
    since_best = start_it - 1 - best["it"] if start_it else 0
    for it in it_range:
        idx = _batches(rng, n, batch_size)
        args = place(cohort.arrays(idx, plan.drugs, np_dtype))
        theta_before = theta
        theta, opt_state, val, (terms, g, obj, finite) = step(theta, opt_state, lam, mu_v, args)
        if it == 0 and not bool(finite) and (batch_size is None or personalised):
            # the whole cohort at the starting schedule: patients failing there would make
            # every full-batch step non-finite (no step is taken): run again without them
            at_start = _failing_at(problem, lay, model, cohort, amount0)
            if at_start:
                if bar is not None:
                    bar.close()
                sub = _leave_out(cohort, at_start, "they fail at the starting schedule", "there")
                return optimize(**{**call, "cohort": sub, "_excluded": {**excluded, **at_start}})
        obj = float(obj)
        gmax = {k: float(jnp.max(v)) for k, v in g.items()}
        # NaN (a failed patient in the batch) stays NaN: max() would drop it
        viol = (
            max([0.0] + list(gmax.values())) if all(map(math.isfinite, gmax.values())) else math.nan
        )
        rec = {"iteration": it, "loss": float(val), "objective": obj, "max_violation": viol}
        rec["finite"] = bool(finite)
        rec.update({f"term:{k}": float(v) for k, v in terms.items()})
        rec.update({f"g:{k}": v for k, v in gmax.items()})
        rec["mu"] = mu_v
        if isinstance(getattr(opt_state, "hyperparams", None), dict):  # `make_optax`'s
            rec["learning_rate"] = float(opt_state.hyperparams.get("learning_rate", math.nan))
        rec["wall_s"] = time.perf_counter() - t0
        history.append(rec)
        # the values belong to theta_before (evaluated before the update)
        feasible_better = viol <= feas_tol and (best["viol"] > feas_tol or obj < best["obj"] - tol)
        less_infeasible = best["viol"] > feas_tol and viol < best["viol"]
        better = bool(finite) and (feasible_better or less_infeasible)
        if better:
            best.update(obj=obj, viol=viol, theta=np.asarray(theta_before), it=it, g=gmax)
            since_best = 0
        else:
            since_best += 1
        if (it + 1) % al_every == 0 and lam:
            lam, mu_v, prev_viol = update_multipliers(
                lam, g, mu_v, viol, prev_viol, bool(finite), feas_tol
            )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(obj=f"{obj:.4g}", viol=f"{viol:.2g}")
        stopping = since_best >= patience
        if ck is not None and (
            (it + 1) % checkpoint_every == 0 or it + 1 == iterations or stopping
        ):
            state = {
                "fingerprint": fp,
                "iteration": it + 1,
                "stop": "patience" if stopping else None,
                "best_obj": best["obj"],
                "best_viol": best["viol"],
                "best_it": best["it"],
                "best_g": best["g"],
                "mu": mu_v,
                "prev_viol": prev_viol,
                "rng": rng.bit_generator.state,
                "excluded": {str(k): v for k, v in excluded.items()},
                "arrays": {
                    "theta": np.asarray(theta),
                    "best_theta": np.asarray(best["theta"]),
                    **{f"lam:{k}": np.asarray(v) for k, v in lam.items()},
                },
            }
            _save_checkpoint(ck, state, opt_state, history)
        if stopping:
            stop = "patience"
            break
    if bar is not None:
        bar.close()
    amount = np.asarray(to_amount(lay, jnp.asarray(best["theta"]), xp=jnp), dtype=np.float64)
    return OptResult(
        problem=problem,
        layout=lay,
        theta=np.asarray(best["theta"]),
        amount=amount,
        history=pd.DataFrame(history),
        constraints=best["g"],
        simulations=len(history),
        wall_s=time.perf_counter() - t0,
        personalised=personalised,
        best_iteration=int(best["it"]),
        stop=stop,
        excluded=excluded,
    )


_STEPS: dict = {}


def _compiled_step(problem, lay, model, personalised, opt, opt_key):
    """The jitted optimiser step, cached so repeated runs of one problem compile once."""
    key = (_fingerprint(problem, 0, personalised, {}), id(model), opt_key)
    if key not in _STEPS:
        make = make_personal_loss if personalised else make_loss
        loss, plan = make(problem, lay, model, reverse_mode=True)

        @jax.jit
        def step(theta, opt_state, lam, mu, args):
            (val, aux), grad = jax.value_and_grad(loss, has_aux=True)(theta, lam, mu, args)
            # a non-finite loss or gradient (a failing patient in the batch) skips the update
            # instead of poisoning theta and the optimiser state
            ok = jnp.isfinite(val) & jnp.all(jnp.isfinite(grad))
            grad = jnp.where(ok, grad, 0.0)
            updates, new_state = opt.update(grad, opt_state, theta)
            keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
            new_state = jax.tree_util.tree_map(keep, new_state, opt_state)
            theta = jnp.where(ok, optax.apply_updates(theta, updates), theta)
            return theta, new_state, val, aux + (ok,)

        _STEPS[key] = (loss, plan, step)
    return _STEPS[key]


def _shape_probe(loss, theta, args):
    """Evaluate ``loss`` with zero multipliers of the right shapes (used under eval_shape)."""
    _, (terms, g, obj) = loss(theta, NoMultipliers(), 1.0, args)
    return None, (terms, g, obj)

"""Sensitivity analysis: local (autodiff) sensitivities across a cohort and global Sobol indices.

**Local.** For every patient and every parameter θ_j (model parameters and the PK parameters of
the drugs given) we compute ``S_ij = ∂E_i/∂log θ_j``, the change of the endpoint per relative
change of the parameter, by JAX autodiff through the whole simulation (`vcohort.simulate`): the
initial state is rebuilt from the parameters (`Model.initial_state`) and the pre-treatment
immune run-in is simulated as in `vcohort.cohort.make_cohort`, so a parameter change means a
different *patient*, not a perturbed state.  For a log endpoint ``E = ln y``, ``S`` is the usual
normalised (logarithmic) sensitivity ``(θ/y)·∂y/∂θ``.  A patient whose own first-order rate
(or transit rate) times dt reaches RK4's stability limit gets NaN (its endpoint would be
finite but wrong; `vcohort.simulate.unstable_patients`).  Gradients are exact derivatives
of the discrete (fixed-step RK4) solution.  Summaries across patients: median, quartiles,
median |S|.

Forward vs reverse mode (measured, ``benchmarks/bench_sensitivity.py`` →
``benchmarks/results/sensitivity.md``; 16 patients, 60 days, 114 parameters, 2-core CPU,
2026-11-30): forward mode (``vmap(jacfwd)``, all tangents at once) compiles in 8.9 s and runs
in 0.46 s; reverse mode (``vmap(value_and_grad)``, one vector–Jacobian product per patient
through the day-checkpointed scans, `Plan.reverse_mode`) compiles in 9.4 s and runs in
0.12 s; they agree to 2e-15.  (On 2026-11-29 the compiles took 57 s and 86 s, and reverse mode
ran 0.53 s: the LAPACK matrix exponentials of the PK propagators have since become products
only.)  ``mode="auto"`` therefore picks **reverse**; the test-suite checks forward mode against
finite differences and reverse mode against forward mode.

**Global.** First-order and total Sobol indices (Sobol 2001; Saltelli et al. 2010 estimators,
as implemented by SALib) of chosen parameters over log-uniform ranges: by default
``value·exp(±k·ω)`` with ω the between-patient log-SD of the parameter table (k=2), and ×/÷
`FIXED_FACTOR` for parameters the table holds fixed (assumption: ~±2-fold uncertainty of an
assumed value).  Every Saltelli sample row is one virtual patient of one vectorised cohort (the
typical patient with that row's parameter values).  SALib is imported lazily (the GPU machine
lacks it).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from vcohort.cohort import Cohort
from vcohort.dosing import compile_schedule
from vcohort.model import csc_immune_params
from vcohort.simulate import (
    DEFAULT_DT,
    Plan,
    acting_channels,
    patient_fn,
    prepare,
    unstable_patients,
)

ENDPOINTS = {
    "log_tumour_cells": "log of viable cancer cells S+N at the horizon",
    "log_diameter": "log of the tumour diameter (mm) at the horizon",
    "log_burden_auc": "log of the time-averaged tumour volume (mL; trapezoid on daily diameters)",
    "csc_fraction": "CSC fraction S/(S+N) at the horizon",
    "anc_nadir": "lowest daily ANC (1e9/L) over the horizon",
}
# the endpoints' units (a sensitivity is in the endpoint's unit per e-fold of the parameter)
ENDPOINT_UNITS = {
    "log_tumour_cells": "ln(cells)",
    "log_diameter": "ln(mm)",
    "log_burden_auc": "ln(mL)",
    "csc_fraction": "fraction",
    "anc_nadir": "10⁹/L",
}
# the daily output each endpoint reads (`_endpoint_value`; log_tumour_cells reads states)
ENDPOINT_OUTPUTS = {
    "log_diameter": "diameter_mm",
    "log_burden_auc": "diameter_mm",
    "csc_fraction": "csc_fraction",
    "anc_nadir": "ANC",
}
MODES = ("auto", "reverse", "forward")
FIXED_FACTOR = 2.0
# parameters that are probabilities or enter as (1 - x): a sampled range is capped at 1
UNIT_INTERVAL = {"csc_immune": csc_immune_params.UNIT_INTERVAL}


def _endpoint_value(name: str, out: dict, days: int):
    """A smooth endpoint of one patient's simulation outputs (JAX)."""
    d = out["daily"]
    if name == "log_tumour_cells":
        s = out["saved"]
        return jnp.log(jnp.maximum(s["S"][-1] + s["N"][-1], 1.0))
    if name == "log_diameter":
        return jnp.log(d["diameter_mm"][-1])
    if name == "log_burden_auc":
        v = (math.pi / 6.0) * d["diameter_mm"] ** 3 * 1e-3
        return jnp.log((jnp.sum(v) - 0.5 * (v[0] + v[-1])) / days)
    if name == "csc_fraction":
        return d["csc_fraction"][-1]
    if name == "anc_nadir":
        return jnp.min(d["ANC"])
    raise ValueError(f"endpoint={name!r}; allowed: {', '.join(ENDPOINTS)}")


@dataclass(frozen=True)
class Problem:
    """A compiled question: which parameters, which arm (minus which reference arm), which
    endpoint.  ``names`` are model parameters then PK parameters as ``drug.param``."""

    model: object
    plan: Plan
    runin_days: int | None
    runin: Plan | None
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    endpoint: str
    bolus: np.ndarray  # (arms, n_steps, drugs, 3): the arm, then the reference arm if any
    rate: np.ndarray
    arm_labels: tuple[str, ...]

    @property
    def contrast(self) -> bool:
        return self.bolus.shape[0] == 2

    @property
    def key(self) -> tuple:
        """What the compiled function depends on (dose amounts are arguments, not constants)."""
        p = self.plan
        return (
            id(self.model),
            tuple(id(d) for d in p.drugs),
            p.days,
            p.dt,
            str(jnp.dtype(p.dtype)),
            p.forcing,
            self.runin_days,
            self.names,
            self.endpoint,
            self.bolus.shape,
        )

    def describe(self) -> str:
        e = f"{self.endpoint}[{self.arm_labels[0]}]"
        return e + (f" - {self.endpoint}[{self.arm_labels[1]}]" if self.contrast else "")


def build_problem(
    model,
    arm,
    days: int,
    endpoint: str,
    *,
    reference=None,
    dt: float = DEFAULT_DT,
    precision: str = "float64",
    runin_days: int | None = 240,
    include_pk: bool = True,
    catalogue=None,
) -> Problem:
    """Validate and set up ``endpoint(arm) [- endpoint(reference)]`` (arms: `vcohort.runs.Arm`).

    ``runin_days``: immune run-in simulated from ``Model.initial_state`` (as `make_cohort`);
    None holds the cohort's own initial state fixed (cheaper; parameters then act only after
    day 0).
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint={endpoint!r}; allowed: {', '.join(ENDPOINTS)}")
    if endpoint == "log_tumour_cells" and not {"S", "N"} <= set(model.states):
        raise ValueError(f"endpoint {endpoint!r} needs states S and N; model {model.name!r}")
    need = ENDPOINT_OUTPUTS.get(endpoint)
    if need is not None and need not in model.daily_output_names():
        can = [e for e, o in ENDPOINT_OUTPUTS.items() if o in model.daily_output_names()]
        can += ["log_tumour_cells"] if {"S", "N"} <= set(model.states) else []
        raise ValueError(
            f"endpoint {endpoint!r} needs the daily output {need!r}, which model "
            f"{model.name!r} lacks; allowed for it: {', '.join(can) or 'none'}"
        )
    if runin_days is not None and (not isinstance(runin_days, int) or runin_days < 0):
        raise ValueError(f"runin_days={runin_days!r} must be an integer >= 0 (or None)")
    arms = [arm] + ([reference] if reference is not None else [])
    drugs: list[str] = []
    for a in arms:
        for r in a.regimens:
            if r.drug not in drugs:
                drugs.append(r.drug)
    scheds = [compile_schedule(list(a.regimens), float(days), drugs=tuple(drugs)) for a in arms]
    for s in scheds:
        # the derivative sees the doses given, not the hold decision: no local sensitivity
        s.refuse_rules("sensitivity analysis")
    plan, _ = prepare(
        model, scheds[0], days, dt=dt, save_every=days, precision=precision, catalogue=catalogue
    )
    np_dtype = np.float64 if plan.dtype == jnp.float64 else np.float32
    grids = [s.step_inputs(plan.dt, plan.n_steps) for s in scheds]
    bolus = np.stack([b for b, _ in grids]).astype(np_dtype)
    rate = np.stack([r for _, r in grids]).astype(np_dtype)
    runin = None
    if runin_days:
        runin, _ = prepare(
            model,
            None,
            runin_days,
            dt=dt,
            save_every=runin_days,
            precision=precision,
            tumour_dynamics=0.0,
        )
    names = list(model.params.names)
    kinds = ["model"] * len(names)
    if include_pk:
        for d in plan.drugs:
            for r in d.params:
                names.append(f"{d.name}.{r.name}")
                kinds.append("pk")
    labels = tuple(a.name for a in arms)
    return Problem(
        model, plan, runin_days, runin, tuple(names), tuple(kinds), endpoint, bolus, rate, labels
    )


def endpoint_fn(problem: Problem, reverse_mode: bool = False):
    """One patient: ``(log θ (n,), covariates, baseline diameter, y0, fixed PK, bolus, rate)
    -> endpoint`` (pure JAX; ``bolus``/``rate`` are `Problem.bolus`/``rate``).  ``reverse_mode``
    as `vcohort.simulate.Plan.reverse_mode` (same values; cheaper reverse-mode gradients, no
    forward mode)."""
    model = problem.model
    plan = replace(problem.plan, reverse_mode=reverse_mode)
    runin = problem.runin
    run = patient_fn(plan)
    pre = None
    if runin is not None:
        pre = patient_fn(replace(runin, reverse_mode=reverse_mode))
    n_model = len(model.params)
    pk_index = [
        (d.name, [(r.name, problem.names.index(f"{d.name}.{r.name}")) for r in d.params])
        for d in plan.drugs
        if f"{d.name}.{d.params.names[0]}" in problem.names
    ]

    def f(theta, cov, baseline, y0, pk_fixed, bolus, rate):
        vals = jnp.exp(theta)
        p = {n: vals[i] for i, n in enumerate(problem.names[:n_model])}
        pk = dict(pk_fixed)
        pk.update({d: {q: vals[j] for q, j in idx} for d, idx in pk_index})
        if problem.runin_days is not None:
            y0 = model.initial_state(p, baseline)
        if pre is not None:
            nd = jnp.zeros((runin.n_steps, 0, 3), plan.dtype)
            y0 = jax.tree_util.tree_map(lambda v: v[-1], pre(p, {}, cov, y0, nd, nd)["saved"])
        # both arms through one (vmapped) scan: one compiled body, not two
        vals = jax.vmap(
            lambda b, r: _endpoint_value(problem.endpoint, run(p, pk, cov, y0, b, r), plan.days)
        )(bolus, rate)
        return vals[0] - vals[1] if problem.contrast else vals[0]

    return f


def cohort_inputs(problem: Problem, cohort: Cohort) -> tuple:
    """Per-patient ``(log θ (P, n), covariates, baseline (P,), y0, fixed PK)`` of ``cohort``."""
    cohort.check_for(problem.model, problem.plan.drugs, set())
    cols = []
    for name, kind in zip(problem.names, problem.kinds, strict=True):
        if kind == "model":
            v = cohort.params[name]
        else:
            d, q = name.split(".", 1)
            v = cohort.pk[d][q]
        v = np.asarray(v, dtype=np.float64)
        bad = np.flatnonzero(~(np.isfinite(v) & (v > 0)))  # (NaN > 0 is False)
        if bad.size:
            ids = np.asarray(cohort.patient_id)
            which = ", ".join(f"row {i} (patient {ids[i]}): {v[i]:g}" for i in bad[:3])
            raise ValueError(
                f"parameter {name}: {bad.size} of {v.size} patients have a value that is not "
                f"finite and > 0 ({which}{', ...' if bad.size > 3 else ''}); every patient's "
                f"value must be finite and > 0"
            )
        cols.append(np.log(v))
    dt = np.float64 if problem.plan.dtype == jnp.float64 else np.float32
    cov = {k: np.asarray(cohort.covariates[k], dt) for k in ("weight_kg", "bsa_m2")}
    base = np.asarray(cohort.covariates["baseline_diameter_mm"], dt)
    y0 = {k: np.asarray(v, dt) for k, v in cohort.y0.items()}
    in_theta = {
        n.split(".")[0] for n, k in zip(problem.names, problem.kinds, strict=True) if k == "pk"
    }
    pk_fixed = {
        d.name: {k: np.asarray(v, dt) for k, v in cohort.pk[d.name].items()}
        for d in problem.plan.drugs
        if d.name not in in_theta
    }
    return np.stack(cols, axis=1).astype(dt), cov, base, y0, pk_fixed


_CACHE: dict = {}


def _batch(problem: Problem, how: str):
    """Jitted ``vmap`` over patients of the endpoint (``value``), of ``(value, ∂/∂log θ)`` by
    ``forward`` or ``reverse`` mode; cached per `Problem.key`."""
    key = (problem.key, how)
    if key not in _CACHE:
        # reverse mode: RK4 steps with the hand-written reverse sweep (`rk4_step_reverse`)
        f = endpoint_fn(problem, reverse_mode=how == "reverse")
        if how == "forward":

            def both(*a):
                y = f(*a)
                return y, y

            jf = jax.jacfwd(both, has_aux=True)
            g = lambda *a: jf(*a)[::-1]  # noqa: E731
        elif how == "reverse":
            g = jax.value_and_grad(f)
        else:
            g = f
        _CACHE[key] = jax.jit(jax.vmap(g, in_axes=(0, 0, 0, 0, 0, None, None)))
    return _CACHE[key]


def _chunked(problem: Problem, how: str, args, n: int, chunk: int, progress: bool | None = None):
    """Apply `_batch` over the patient axis in fixed-size (padded) chunks, each sharded over
    the local devices as in `vcohort.simulate.simulate` (chunk rounded up to a multiple of
    the device count).  ``progress``: a bar over the chunks (default: more than one)."""
    from vcohort.simulate import chunk_for, patient_sharding

    fn = _batch(problem, how)
    devs = jax.local_devices()
    shard = patient_sharding(devs)
    chunk = chunk_for(n, chunk, len(devs))
    outs = []
    starts = range(0, n, chunk)
    if progress if progress is not None else len(starts) > 1:
        from tqdm.auto import tqdm

        what = "values" if how == "value" else f"{how}-mode sensitivities"
        starts = tqdm(starts, desc=f"{what} of {n} patients", unit="chunk")
    for s in starts:
        idx = np.arange(s, min(s + chunk, n))
        take = np.concatenate([idx, np.full(chunk - idx.size, idx[-1])])
        sub = jax.tree_util.tree_map(lambda v, t=take: np.asarray(v)[t], args)
        if shard is not None:
            sub = jax.device_put(sub, shard)
        res = fn(*sub, problem.bolus, problem.rate)
        outs.append(jax.tree_util.tree_map(lambda v, m=idx.size: np.asarray(v)[:m], res))
    return jax.tree_util.tree_map(lambda *v: np.concatenate(v), *outs)


def evaluator(problem: Problem, chunk_size: int = 512, progress: bool | None = None):
    """``evaluate(cohort) -> (P,)`` endpoint values of every patient (one vectorised cohort)."""

    def evaluate(cohort: Cohort) -> np.ndarray:
        args = cohort_inputs(problem, cohort)
        return _chunked(problem, "value", args, len(cohort), chunk_size, progress)

    return evaluate


@dataclass
class LocalResult:
    """Per-patient local sensitivities: ``grad[i, j] = ∂E_i/∂log θ_j``."""

    problem: Problem
    patient_id: np.ndarray
    value: np.ndarray
    grad: np.ndarray
    mode: str
    seconds: float
    unstable: np.ndarray | None = None  # (P,) an acting rate x dt past RK4's limit: NaN rows

    def frame(self) -> pd.DataFrame:
        """Wide table: patient, endpoint value, one column per parameter."""
        df = pd.DataFrame(self.grad, columns=list(self.problem.names))
        df.insert(0, "endpoint", self.value)
        df.insert(0, "patient", self.patient_id)
        return df


def local_sensitivities(
    problem: Problem,
    cohort: Cohort,
    *,
    mode: str = "auto",
    chunk_size: int = 64,
    progress: bool | None = None,
) -> LocalResult:
    """∂E/∂log θ for every patient of ``cohort`` and every parameter of ``problem``
    (``progress``: a bar over the chunks; default when there is more than one)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; allowed: {MODES}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be an integer >= 1")
    mode = "reverse" if mode == "auto" else mode  # measured faster (module docstring)
    args = cohort_inputs(problem, cohort)
    t0 = time.perf_counter()
    value, grad = _chunked(problem, mode, args, len(cohort), chunk_size, progress)
    # a patient whose own rate the fixed step cannot follow has a finite but wrong endpoint
    # (as `vcohort.simulate` flags it): NaN, so that the ranking leaves it out
    plan = problem.plan
    unstable = unstable_patients(problem.model, cohort.params, plan.dt, acting_channels(plan.drugs))
    value = np.where(unstable, np.nan, value)
    grad = np.where(unstable[:, None], np.nan, grad)
    return LocalResult(
        problem,
        np.asarray(cohort.patient_id),
        value,
        grad,
        mode,
        time.perf_counter() - t0,
        unstable,
    )


def rank_local(res: LocalResult) -> pd.DataFrame:
    """Ranked summary across patients (finite patients only): median, quartiles, median |S|,
    and ``n_zero``: how many of them have every sensitivity exactly 0 (e.g. a tumour under one
    cell, where ``log_tumour_cells`` is clamped); when they are half or more, every median is
    0 and the ranking says nothing, so read the quartiles or choose another endpoint."""
    g = res.grad[np.all(np.isfinite(res.grad), axis=1) & np.isfinite(res.value)]
    if g.shape[0] == 0:
        raise ValueError("no patient has finite sensitivities")
    q25, med, q75 = np.percentile(g, [25, 50, 75], axis=0)
    df = pd.DataFrame(
        {
            "parameter": res.problem.names,
            "kind": res.problem.kinds,
            "median": med,
            "q25": q25,
            "q75": q75,
            "median_abs": np.median(np.abs(g), axis=0),
            "n_patients": g.shape[0],
            "n_zero": int(np.all(g == 0, axis=1).sum()),
        }
    )
    df = df.sort_values("median_abs", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df

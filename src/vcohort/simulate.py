"""Vectorised simulation of a cohort: exact linear PK + fixed-step RK4 in ``lax.scan``.

Numerics (ARCHITECTURE.md, "Numerics"; measured in ``benchmarks/``):

* The model is written for one patient; the cohort is ``jax.vmap`` of it, so every state is one
  contiguous array over patients (the fast "tuple of arrays" layout).
* Linear PK is solved exactly per step: with ``A`` the patient's compartment rate matrix and
  ``h`` the step, ``expm([[A h, I h, 0], [0, 0, I h], [0, 0, 0]])`` gives ``E = e^{Ah}``,
  ``Φ1 = ∫_0^h e^{As} ds`` and ``Φ2 = ∫_0^h ∫_0^s e^{Au} du ds`` (Van Loan 1978, IEEE TAC 23:395),
  computed as φ-functions of ``A h`` by scaling and squaring (`phi_functions`).
  A bolus ``b`` is added at the step start, an infusion rate ``r`` is constant over the step:
  ``a(t+h) = E (a + b e_d) + Φ1 e_d r``; the step-mean amount ``(Φ1 (a + b e_d) + Φ2 e_d r)/h``
  gives the exact exposure (AUC).
* Drug effects are held constant within a step at their *step-mean* value, computed by 5-point
  Gauss–Legendre quadrature of the effect of the exact concentrations inside the step
  (``forcing="gauss"``; ``"mean"`` uses the effect of the mean concentration).  Stiff PK
  therefore never limits ``dt``.  Measured against the diffrax reference at dt 0.1 day: the
  triple combination's final diameters 1.3e-4 relative over 180 days (1.35e-3 with 3 nodes:
  the oral drugs' effects rise and saturate inside the step after each dose); 4 drugs incl.
  doxorubicin over 21 days (`vcohort.validation.engine`): diameters 2e-5, ANC 0.21% (0.39% with
  3 nodes), where an Emax effect saturates within one step (doxorubicin's post-infusion fall
  at ~200/day drives the Friberg precursor kill).  ``mean`` was 10x worse than 3 nodes (model
  of 2026-11).
* Biology: classical RK4 with ``dt`` (default 0.1 day) sub-steps inside a daily ``lax.scan``
  wrapped in ``jax.checkpoint`` (bounded memory for reverse mode), inside a scan over save
  blocks, so only the chosen save days and a few daily outputs are stored.
* Doses sit on the step grid, so gradients with respect to dose amounts are exact derivatives
  of the discrete solution.
* Chunks of patients bound memory; a patient whose solution turns non-finite or negative (at
  any day's end) is flagged in ``status`` and never affects the others.

The accuracy reference is `simulate_reference` (diffrax Tsit5 with tight tolerances, PK in the
ODE, restarted where a dose is given, an infusion rate changes or a day ends, so doses are exact
jumps).
"""

from __future__ import annotations

import functools
import math
import time as _time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vcohort import dose_modify
from vcohort.cohort import Cohort
from vcohort.dose_rules import delay_inputs
from vcohort.dosing import Schedule, compile_schedule, dose_step
from vcohort.drugs import Drug, get_drug
from vcohort.model import Model

PRECISIONS = ("float32", "float64")
FORCINGS = ("gauss", "mean")
# 5-point Gauss–Legendre nodes/weights on [0, 1] (exact for polynomials of degree 9).  The
# step-mean of an oral drug's Emax effect in the step after its dose (absorption ka x dt = 2.4,
# the effect saturating) converges only ~3x per node: with 3 nodes its quadrature error was the
# whole dt-0.1 error of the triple combination (final diameter 1.35e-3 against the diffrax
# reference; 4.2e-4, 1.3e-4, 6.4e-5 and 3.6e-5 with 4, 5, 6 and 8 nodes; 8 patients x 180 days,
# 2026-12-03).  5 nodes cost ~15% more forward time (1,000 patients x 60 days, float64).
_GL5_X = (
    math.sqrt(5.0 - 2.0 * math.sqrt(10.0 / 7.0)) / 3.0,
    math.sqrt(5.0 + 2.0 * math.sqrt(10.0 / 7.0)) / 3.0,
)
_GL5_W = ((322.0 + 13.0 * math.sqrt(70.0)) / 900.0, (322.0 - 13.0 * math.sqrt(70.0)) / 900.0)
GAUSS_NODES = (
    0.5 - 0.5 * _GL5_X[1],
    0.5 - 0.5 * _GL5_X[0],
    0.5,
    0.5 + 0.5 * _GL5_X[0],
    0.5 + 0.5 * _GL5_X[1],
)
GAUSS_WEIGHTS = (0.5 * _GL5_W[1], 0.5 * _GL5_W[0], 64.0 / 225.0, 0.5 * _GL5_W[0], 0.5 * _GL5_W[1])
DEFAULT_DT = 0.1
DEFAULT_CHUNK = 4096
MIN_CHUNK = 8  # the smallest compiled cohort shape (see `chunk_for`)

STATUS_OK = 0
STATUS_NONFINITE = 1
STATUS_NEGATIVE = 2
STATUS_MAX_STEPS = 3
STATUS_UNSTABLE = 4
STATUS_INITIAL = 5
# classical RK4 is stable for a decay rate k while k·dt < 2.785 (the boundary of its stability
# region on the negative real axis; Hairer & Wanner, Solving ODEs II, §IV.2).  Past it a
# patient's solution is wrong while it may stay finite and positive (TGF-β reached 1e54 and
# the status said ok), so such a patient is flagged, not reported
RK4_STABILITY = 2.785
# largest rate·dt a first-order rate (unit 1/day) may reach: fixed-step RK4 is stable
# for a decay rate k while k·dt < RK4_STABILITY (2.785; such patients are flagged by
# `simulate`); past it the endpoint is wrong yet finite (a 2-fold range of k_TGF = 14.3/day
# reached 2.86 at dt 0.1, and 4 of 256 rows put a total index at 2.6).  assumption: a margin of
# 10% below that bound for the coupling between the states
STEP_LIMIT = round(0.9 * RK4_STABILITY, 2)
STATUS_MESSAGES = {
    STATUS_OK: "ok",
    STATUS_NONFINITE: "non-finite state (solver failure)",
    STATUS_NEGATIVE: "negative state beyond round-off",
    STATUS_MAX_STEPS: "reference solver did not reach the end (max_steps or error)",
    STATUS_UNSTABLE: f"a first-order rate x dt beyond RK4's stability bound ({RK4_STABILITY}): "
    "use a smaller dt",
    STATUS_INITIAL: "non-finite initial state (the cohort's immune run-in failed for this "
    "patient: use a smaller dt or float64)",
}


def acting_channels(drugs) -> set[str]:
    """The model effect channels that ``drugs`` act on."""
    return {e.channel for d in drugs for e in d.effects}


def first_order_rates(model: Model, channels=()) -> list[str]:
    """The model's first-order rates (parameters in 1/day) that act in a run whose drugs act on
    ``channels``: a rate that a drug switches on (`Model.gated_rates`) counts only with it (a
    high chemotherapy kill rate is harmless in an arm without chemotherapy)."""
    gated = model.gated_rates or {}
    return [
        r.name
        for r in model.params.rows
        if r.unit == "1/day" and (r.name not in gated or gated[r.name] in channels)
    ]


def step_rates(model: Model, params: dict, channels=()) -> dict:
    """The acting first-order rates (1/day) of parameter values ``params`` (name -> value or
    array): the `first_order_rates` themselves and each transit chain's n / τ
    (`Model.transit_rates`), by parameter name."""
    out = {
        k: np.abs(np.asarray(params[k], dtype=np.float64))
        for k in first_order_rates(model, channels)
        if k in params
    }
    for k, n in (model.transit_rates or {}).items():
        if k in params:
            out[k] = n / np.asarray(params[k], dtype=np.float64)
    return out


def check_typical_rates(model: Model, dt: float, channels=(), sampled=(), flag="--dt") -> None:
    """Before compute: the rates held at their typical values (all but ``sampled``) keep the
    fixed RK4 step stable at ``dt`` (rate x dt below `STEP_LIMIT`); a coarse ``dt`` gave finite
    but wrong endpoints (k_TGF, 14.3/day, at dt 0.5: rate x dt 7.2; at dt 0.2 the run-in's
    TGF-β reached -1e56).  ``flag`` names the setting in the error (``--dt``,
    ``simulation.dt``)."""
    typical = {r.name: r.value for r in model.params.rows if r.name not in set(sampled)}
    for n, rate in step_rates(model, typical, channels).items():
        if float(rate) * dt >= STEP_LIMIT:
            raise ValueError(
                f"{flag} {dt:g}: the typical {n} gives a rate of {float(rate):.3g}/day, and rate "
                f"x dt = {float(rate) * dt:.3g} makes the fixed RK4 step unstable (it must stay "
                f"below {STEP_LIMIT}); use {flag} {_stable_dt(float(rate))!r} or smaller"
            )


def check_typical_dt(model: Model, dt: float, drug_names, flag="--dt") -> None:
    """`check_typical_rates` for a run that gives the drugs named ``drug_names`` (names the
    model's catalogue lacks are skipped: the caller refuses those with its own message)."""
    cat = model.drug_catalogue()
    keys = {n if n in cat else str(n).strip().lower() for n in drug_names}
    given = [cat[k] for k in sorted(keys) if k in cat]
    check_typical_rates(model, dt, acting_channels(given), flag=flag)


def _stable_dt(rate: float) -> float:
    """The largest dt = 1/n day with rate x dt below `STEP_LIMIT` and a short decimal (n with
    only the factors 2 and 5: 0.125, 0.1, 0.0625 ...), which `check_dt` accepts as typed."""
    n = math.floor(rate / STEP_LIMIT + 1.0)  # the smallest whole n that is stable
    m = min(2**i * 5**j for i in range(40) for j in range(20) if 2**i * 5**j >= n)
    return 1.0 / m


def unstable_patients(model: Model, params: dict, dt: float, channels=()) -> np.ndarray:
    """(P,) True where an acting rate (`step_rates`: a first-order rate, or a transit chain's
    n / τ) times ``dt`` reaches `RK4_STABILITY`: the fixed step cannot follow that decay."""
    P = len(np.atleast_1d(np.asarray(next(iter(params.values())))))
    out = np.zeros(P, dtype=bool)
    for rate in step_rates(model, params, channels).values():
        out |= rate * dt >= RK4_STABILITY
    return out


def finite_start(cohort) -> np.ndarray:
    """(P,) True where every day-0 state is finite (`vcohort.cohort.run_in` leaves NaN where a
    patient's immune run-in failed: `STATUS_INITIAL` at every schedule)."""
    ok = np.ones(len(cohort), dtype=bool)
    for v in cohort.y0.values():
        ok &= np.isfinite(np.asarray(v, dtype=np.float64))
    return ok


def set_precision(precision: str):
    """Enable 64-bit JAX when asked for; return the JAX dtype."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; allowed: {PRECISIONS}")
    if precision == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    return jnp.float64 if precision == "float64" else jnp.float32


def check_dt(dt: float) -> int:
    """Sub-steps per day for ``dt``; 1/dt must be a whole number."""
    from vcohort.config import MAX_STEPS_PER_DAY

    if not (isinstance(dt, int | float) and math.isfinite(dt) and 0 < dt <= 1):
        raise ValueError(f"dt={dt!r} must be in (0, 1] day")
    if dt < 1.0 / MAX_STEPS_PER_DAY:
        raise ValueError(
            f"dt={dt!r}: at most {MAX_STEPS_PER_DAY} steps per day (dt >= {1 / MAX_STEPS_PER_DAY})"
        )
    n = round(1.0 / dt)
    if abs(n * dt - 1.0) > 1e-9:
        raise ValueError(f"dt={dt!r}: 1/dt must be a whole number of steps per day")
    return n


# ---------------------------------------------------------------------------- PK
# Taylor series at ||X||_1 <= 2: truncation below 2^25/25! ~ 2e-18.  Each doubling adds
# rounding, so a larger ball (fewer doublings) is more accurate in float32: against scipy,
# doxorubicin's e^{A dt} in float32 was off by 2.7e-6 with ||X|| <= 1/2 and 2.2e-7 with 2.
PHI_TAYLOR_NORM = 2.0
PHI_TAYLOR_DEGREE = 24
PHI_MAX_SQUARINGS = 30  # covers ||A h||_1 up to 2 * 2^30 (rates of 2e10/day at h = 0.1 day)


def _matmul(X, Y):
    """``X @ Y`` over the last two axes of tiny matrices, as an elementwise product and sum:
    XLA fuses it, where a batched ``dot`` of 2x2..4x4 matrices calls a BLAS kernel."""
    return (X[..., :, :, None] * Y[..., None, :, :]).sum(axis=-2)


def phi_functions(B):
    """``(φ0, φ1, φ2)(B) = (e^B, Σ B^k/(k+1)!, Σ B^k/(k+2)!)`` of small square matrices (the
    last two axes of ``B``).

    Scaling and squaring on the φ-functions themselves (Skaflestad & Wright 2009, Appl. Numer.
    Math. 59:783): a Taylor series at ``X = B / 2^s`` with ``||X||_1 <= 2``, then ``s``
    doublings ``φ0(2X) = φ0²``, ``φ1(2X) = (φ0 φ1 + φ1)/2``, ``φ2(2X) = (φ1² + 2 φ2)/4``.  The
    number of doublings is chosen per matrix (masked in a loop of fixed length, so it
    vectorises).  Only products and sums: no linear solve, so no LAPACK call (the batched LU
    inside ``jax.scipy.linalg.expm`` deadlocked simulations sharded over several CPU devices:
    every worker of XLA's thread pool waited inside LAPACK for work queued on that pool)."""
    eye = jnp.broadcast_to(jnp.eye(B.shape[-1], dtype=B.dtype), B.shape)
    norm = jnp.max(jnp.sum(jnp.abs(B), axis=-2), axis=-1)
    s = jnp.clip(
        jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-30) / PHI_TAYLOR_NORM)), 0, PHI_MAX_SQUARINGS
    )
    X = B * jnp.exp2(-s)[..., None, None]
    power, f0, f1, f2 = eye, eye, eye, eye * 0.5
    for k in range(1, PHI_TAYLOR_DEGREE + 1):
        power = _matmul(power, X)
        # Python floats (weakly typed): 13! does not fit the int32 JAX uses without x64
        f0 = f0 + power * (1.0 / math.factorial(k))
        f1 = f1 + power * (1.0 / math.factorial(k + 1))
        f2 = f2 + power * (1.0 / math.factorial(k + 2))

    def double(i, f):
        f0, f1, f2 = f
        on = (i < s)[..., None, None]
        g0 = _matmul(f0, f0)
        g1 = 0.5 * (_matmul(f0, f1) + f1)
        g2 = 0.25 * (_matmul(f1, f1) + 2.0 * f2)
        return jnp.where(on, g0, f0), jnp.where(on, g1, f1), jnp.where(on, g2, f2)

    return lax.fori_loop(0, PHI_MAX_SQUARINGS, double, (f0, f1, f2))


def pk_propagators(drug: Drug, pk: dict, weight, dt, dtype):
    """Per-patient exact propagators ``(E, Φ1, Φ2, V1)`` of a drug over a step ``dt`` (see
    module doc): the top block row of Van Loan's ``expm`` is ``(φ0(A dt), dt φ1(A dt),
    dt² φ2(A dt))``.  ``dt`` may be a sequence of steps: the propagators then gain a leading
    axis, one entry per step, computed together."""
    ind = drug.individual(pk, weight)
    rows = drug.rate_matrix(ind)
    A = jnp.stack([jnp.stack([jnp.asarray(x, dtype) for x in row]) for row in rows])
    h = jnp.asarray(dt, dtype)[..., None, None]
    f0, f1, f2 = phi_functions(A * h)
    return f0, h * f1, (h * h) * f2, jnp.asarray(ind["V1"], dtype)


def combine_effects(drugs: Sequence[Drug], conc: list[dict], model: Model) -> dict:
    """Effect channels from per-drug concentrations: Bliss independence on fraction channels,
    sums on linear channels (the channel's kind is the model's, `Model.effect_channels`)."""
    frac: dict = {}
    lin: dict = {}
    for drug, c in zip(drugs, conc, strict=True):
        for eff in drug.effects:
            v = eff.value(c[eff.site])
            if model.effect_channels[eff.channel][0] == "linear":
                lin[eff.channel] = lin.get(eff.channel, 0.0) + v
            else:
                frac[eff.channel] = frac.get(eff.channel, 1.0) * (1.0 - v)
    out = {k: 1.0 - v for k, v in frac.items()}
    out.update(lin)
    return out


RK4_C = (0.0, 0.5, 0.5, 1.0)  # classical RK4 nodes
RK4_B = (1.0, 2.0, 2.0, 1.0)  # weights x 6


def rk4_step(f, y: dict, h, stages: str = "scan"):
    """One classical Runge–Kutta step on a dict state.

    ``stages="scan"`` (the default): the first stage, then the other three as a ``lax.scan``
    (`_rk4_scan`), so the right-hand side is traced twice, not four times; with all four in
    the scan (traced once): measured on the triple combination (200 patients,
    42 d, float64, 2-core CPU) this cut the value-and-gradient compile 5x (230 s -> 46 s) and
    its run time 7x (7.2 s -> 1.0 s; reverse mode of the unrolled stages was slow on XLA CPU),
    with the forward pass unchanged (0.23 s -> 0.21 s).

    Each stage is ``jax.checkpoint``-ed: reverse mode stores only the stage's input ``k``
    (one array per state) and recomputes the right-hand side inside the stage's backward
    kernel, instead of stacking its ~100 intermediates per stage.  Measured on the
    ``benchmarks/bench_gradient.py`` objective (float64, 2-core CPU): 1000 patients x 60 days,
    value-and-gradient 2.78 s -> 1.70 s (7.7x -> 5.5x the forward pass, same run); 1000 x 180
    days 8.4 s -> 4.9 s (11.6x -> 6.1x, adjacent runs); identical gradient.  No effect on the
    forward pass.

    ``stages="loop"``: a ``lax.fori_loop`` over the stages with the coefficients computed from
    the stage index (no constant arrays to index), for the fused GPU kernel
    (`vcohort.fused`), where a scan over constant arrays does not lower to Triton; same
    arithmetic, forward only."""
    tm = jax.tree_util.tree_map
    if stages not in ("scan", "loop"):
        raise ValueError(f"stages={stages!r}; allowed: ('scan', 'loop')")
    dtype = jnp.result_type(h)
    zero = tm(jnp.zeros_like, y)
    if stages == "loop":

        def body(i, carry):
            k, acc = carry
            # lax.select on typed scalars: jnp.where on a scalar predicate does not lower to
            # Triton (jax 0.10.2)
            c_ = lambda v: jnp.asarray(v, dtype)  # noqa: E731
            end = (i == 0) | (i == 3)
            ci = lax.select(i == 0, c_(0.0), lax.select(i == 3, c_(1.0), c_(0.5)))
            bi = lax.select(end, c_(1.0 / 6.0), c_(2.0 / 6.0))
            kn = f(tm(lambda a, kk: a + (ci * h) * kk, y, k))
            return kn, tm(lambda s, kk: s + bi * kk, acc, kn)

        _, acc = lax.fori_loop(0, 4, body, (zero, zero))
        return tm(lambda a, s: a + h * s, y, acc)
    return _rk4_scan(f, y, h, slopes=False)[0]


def _rk4_scan(f, y: dict, h, slopes: bool):
    """The RK4 stages as a ``lax.scan`` of ``jax.checkpoint``-ed stages (`rk4_step`):
    ``(y_next, k_in)`` with ``k_in`` the slope each stage started from, stacked over the four
    stages (``slopes``: the reverse-mode plan's forward rule, all four in the scan); without
    ``slopes`` the first stage runs before the scan and ``k_in`` is None."""
    tm = jax.tree_util.tree_map
    dtype = jnp.result_type(h)
    c = jnp.asarray(RK4_C, dtype)
    b = jnp.asarray(RK4_B, dtype) / 6.0

    def stage(carry, cb):
        k, acc = carry
        ci, bi = cb
        kn = f(tm(lambda a, kk: a + (ci * h) * kk, y, k))
        return (kn, tm(lambda s, kk: s + bi * kk, acc, kn)), (k if slopes else None)

    stage = jax.checkpoint(stage, prevent_cse=False)
    if slopes:
        zero = tm(jnp.zeros_like, y)
        (_, acc), k_in = lax.scan(stage, (zero, zero), (c, b))
        return tm(lambda a, s: a + h * s, y, acc), k_in
    # the first stage outside the scan (its input is y itself): the scan's carries then start
    # from computed slopes, not from zeros that XLA copies into every carry buffer at every
    # step (36 copy kernels per step).  Same arithmetic; measured (float64, 2-core CPU, one
    # process, interleaved): forward 0.525 -> 0.461 s and 0.564 -> 0.497 s at 4,096 patients x
    # 30 days (the default chunk), 0.643 -> 0.627 s at 1,000 x 180; the right-hand side is
    # traced twice, so compiles grow (forward +0.7 s, jvp +2-3 s, JAX's reverse mode +5 s)
    k1 = jax.checkpoint(f, prevent_cse=False)(y)  # as the scan's stages (reverse mode)
    first = (k1, tm(lambda kk: b[0] * kk, k1))
    (_, acc), _ = lax.scan(stage, first, (c[1:], b[1:]))
    return tm(lambda a, s: a + h * s, y, acc), None


@partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def rk4_step_reverse(rhs, y: dict, args, dt: float):
    """`rk4_step` (same values: it *is* `rk4_step`) of ``rhs(y, args)`` with a hand-written
    reverse sweep, for plans differentiated in reverse mode (`Plan.reverse_mode`).

    Why: JAX's reverse pass of the stage scan needs the cotangent of each stage input
    ``z = y + c·h·k`` twice (for ``y`` and for ``k``), and XLA:CPU, which fuses each kernel
    into a single output, recomputes the stage's whole vector–Jacobian product in both
    kernels: 4,258 arithmetic operations per stage in the compiled backward body against 363
    in the right-hand side's jaxpr.  This sweep runs the stages backwards with the stage
    input's cotangent as the scan carry, used once:

        ct_k_i = h·b_i·ct_y' + c_{i+1}·h·ct_z_{i+1};   (ct_z_i, ct_args_i) = vjp_f(z_i)(ct_k_i)
        ct_y = ct_y' + Σ_i ct_z_i;                      ct_args = Σ_i ct_args_i

    (exactly the transpose of the forward stages; the forward pass saves the stage slopes,
    the sweep recomputes each stage input and its right-hand side once).  Measured
    (``benchmarks/bench_gradient.py``, 1000 patients × 60 days, float64, 1 CPU device, one
    process): value-and-gradient 1.56 s -> 1.07 s; gradients agree to 2e-16.  Forward-mode
    differentiation (``jvp``/``jacfwd``) of a ``custom_vjp`` is not defined in JAX, so plans
    for forward mode keep the plain `rk4_step`; so does the forward pass, where wrapping the
    step in ``custom_vjp`` measured 1.2-1.4x slower."""
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(y))
    return rk4_step(lambda yy: rhs(yy, args), y, jnp.asarray(dt, dtype))


def _rk4_reverse_fwd(rhs, y, args, dt):
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(y))
    y_next, k_in = _rk4_scan(lambda yy: rhs(yy, args), y, jnp.asarray(dt, dtype), slopes=True)
    return y_next, (y, k_in, args)


def _rk4_reverse_bwd(rhs, dt, res, ct):
    tm = jax.tree_util.tree_map
    y, k_in, args = res
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(y))
    h = jnp.asarray(dt, dtype)
    c, c_next = jnp.asarray(RK4_C, dtype), jnp.asarray(RK4_C[1:] + (0.0,), dtype)
    b = jnp.asarray(RK4_B, dtype) / 6.0

    def back(state, xs):
        ct_z_next, ct_y_acc, ct_a_acc = state
        k, ci, cni, bi = xs
        z = tm(lambda a, kk: a + (ci * h) * kk, y, k)  # the stage input, as in the forward
        ct_k = tm(lambda g, q: (h * bi) * g + (cni * h) * q, ct, ct_z_next)
        ct_z, ct_a = jax.vjp(rhs, z, args)[1](ct_k)
        return (ct_z, tm(jnp.add, ct_y_acc, ct_z_next), tm(jnp.add, ct_a_acc, ct_a)), None

    zero_y = tm(jnp.zeros_like, y)
    init = (zero_y, zero_y, tm(jnp.zeros_like, args))
    (ct_z0, ct_y_acc, ct_a), _ = lax.scan(back, init, (k_in, c, c_next, b), reverse=True)
    return tm(lambda g, s, z0: g + s + z0, ct, ct_y_acc, ct_z0), ct_a


rk4_step_reverse.defvjp(_rk4_reverse_fwd, _rk4_reverse_bwd)


# ---------------------------------------------------------------------------- one patient
@dataclass(frozen=True)
class Plan:
    """Static description of one simulation (shapes, step sizes, drugs)."""

    model: Model
    drugs: tuple[Drug, ...]
    days: int
    dt: float
    save_every: int
    dtype: object
    tumour_dynamics: float = 1.0
    forcing: str = "gauss"
    # True: the plan is differentiated in reverse mode only (jax.grad/vjp): the RK4 step
    # then has a hand-written reverse sweep (`rk4_step_reverse`: value-and-gradient ~30% faster,
    # forward-only runs 1.2-1.4x slower);
    # forward-mode differentiation (jvp/jacfwd) of such a plan raises
    reverse_mode: bool = False
    # per drug (row order) its protocol dose modification (`vcohort.dose_rules.DoseRule`) or None;
    # () when no drug has one (then the step carries nothing for it: no cost)
    rules: tuple = ()
    n_slots: int = 0  # dose slots per drug, for the per-dose records of ruled drugs
    # > 0: omission rules decide smoothly (a linear ramp across a band of this width relative to
    # the threshold), for the optimiser's gradient (`vcohort.dose_modify.apply`); 0: the protocol
    hold_softness: float = 0.0

    @property
    def n_sub(self) -> int:
        return check_dt(self.dt)

    @property
    def n_steps(self) -> int:
        return self.days * self.n_sub

    @property
    def save_days(self) -> np.ndarray:
        full = self.days // self.save_every
        t = [k * self.save_every for k in range(full + 1)]
        if self.days % self.save_every:
            t.append(self.days)
        return np.asarray(t, dtype=np.float64)


def pk_layout(drug: Drug) -> dict:
    """Static shape of a drug's PK step: compartments ``n``, dosing compartment ``dc``,
    observed sites ``obs`` (name -> compartment), or ``state`` for drugs dosed into a model
    state (no PK)."""
    if drug.target_state is not None:
        return dict(state=drug.target_state, n=0, dc=0, obs={})
    return dict(
        state=None,
        n=len(drug.compartments),
        dc=drug.dosing_compartment,
        obs=drug.observed_indices(),
    )


def patient_setup(plan: Plan, p: dict, pk: dict, cov: dict) -> dict:
    """Per-patient quantities fixed over the run, as a pytree of arrays: parameters in the
    run's dtype, body size, and each drug's exact step propagators (module doc) -- for the
    step grid and, with ``forcing="gauss"``, for the Gauss nodes inside a step."""
    dt, dtype = plan.dt, plan.dtype
    props = []
    for drug in plan.drugs:
        lay = pk_layout(drug)
        if lay["state"] is not None:
            props.append({})
            continue
        vals = {n: jnp.asarray(v, dtype) for n, v in pk[drug.name].items()}
        # the step and, with Gauss forcing, the Gauss nodes inside it, in one call
        hs = (dt, *(tau * dt for tau in GAUSS_NODES)) if plan.forcing == "gauss" else (dt,)
        Es, P1s, P2s, V1 = pk_propagators(drug, vals, cov["weight_kg"], hs, dtype)
        E, P1, P2 = Es[0], P1s[0], P2s[0]
        n, dc, obs = lay["n"], lay["dc"], lay["obs"]
        pr = dict(
            E=[[E[i, j] for j in range(n)] for i in range(n)],
            P1=[[P1[i, j] for j in range(n)] for i in obs.values()],
            P1d=[P1[i, dc] for i in range(n)],
            P2d=[P2[i, dc] for i in obs.values()],
            V1=V1,
            gauss=[],
        )
        if plan.forcing == "gauss":
            for g in range(1, len(hs)):  # exact concentrations inside the step
                Et, P1t = Es[g], P1s[g]
                pr["gauss"].append(
                    (
                        [[Et[i, j] for j in range(n)] for i in obs.values()],
                        [P1t[i, dc] for i in obs.values()],
                    )
                )
        props.append(pr)
    return dict(
        p={n: jnp.asarray(v, dtype) for n, v in p.items()},
        props=props,
        wt=jnp.asarray(cov["weight_kg"], dtype),
        bsa=jnp.asarray(cov["bsa_m2"], dtype),
    )


def initial_carry(plan: Plan, y0: dict) -> tuple:
    """The integrator's carry at day 0: (model state, PK amounts per drug, AUC per drug)."""
    dtype = plan.dtype
    y = {n: jnp.asarray(y0[n], dtype) for n in plan.model.states}
    like = y[plan.model.states[0]]
    a0 = tuple(tuple(jnp.zeros_like(like) for _ in range(pk_layout(d)["n"])) for d in plan.drugs)
    auc0 = tuple(jnp.zeros_like(like) for _ in plan.drugs)
    if not plan.rules:
        return (y, a0, auc0)
    return (y, a0, auc0, dose_modify.initial_state(plan.rules, like, plan.n_slots))


def make_advance(plan: Plan, su: dict, stages: str = "scan"):
    """``advance(carry, bd, rd) -> carry``: one step of ``plan.dt`` for a patient (or, since
    every operation is elementwise, a block of patients) with setup ``su``
    (`patient_setup`); ``bd``/``rd`` are per-drug bolus (mg) at the step start and infusion
    rate (mg/day) over the step, already in the patient's mg."""
    model, dtype = plan.model, plan.dtype
    h = jnp.asarray(plan.dt, dtype)
    td, forcing = plan.tumour_dynamics, plan.forcing
    lays = [pk_layout(d) for d in plan.drugs]
    pk_drugs = tuple(d for d in plan.drugs if d.target_state is None)
    p, props = su["p"], su["props"]
    reverse = plan.reverse_mode and stages == "scan"  # the fused kernel is forward-only

    def advance(carry, bd, rd):
        y, a, auc = carry[:3]
        conc, a_next, auc_next = [], [], []
        nodes = [[] for _ in GAUSS_NODES]
        y = dict(y)
        inflow: dict = {}  # infusion rates into model states (constant over the step)
        for q, (lay, pr) in enumerate(zip(lays, props, strict=True)):
            if lay["state"] is not None:
                y[lay["state"]] = y[lay["state"]] + bd[q]
                inflow[lay["state"]] = inflow.get(lay["state"], 0.0) + rd[q]
                a_next.append(())
                auc_next.append(auc[q])
                continue
            a0 = list(a[q])
            a0[lay["dc"]] = a0[lay["dc"]] + bd[q]
            n = lay["n"]
            means = {}
            for row, name in enumerate(lay["obs"]):
                m = sum(pr["P1"][row][j] * a0[j] for j in range(n)) + pr["P2d"][row] * rd[q]
                means[name] = m / (h * pr["V1"])
            a1 = tuple(
                sum(pr["E"][i][j] * a0[j] for j in range(n)) + pr["P1d"][i] * rd[q]
                for i in range(n)
            )
            conc.append(means)
            a_next.append(a1)
            auc_next.append(auc[q] + means["central"] * h)
            for g, (Et, P1t) in enumerate(pr["gauss"]):
                nodes[g].append(
                    {
                        nm: (sum(Et[row][j] * a0[j] for j in range(n)) + P1t[row] * rd[q])
                        / pr["V1"]
                        for row, nm in enumerate(lay["obs"])
                    }
                )
        if forcing == "gauss" and pk_drugs:
            per_node = [combine_effects(pk_drugs, c, model) for c in nodes]
            eff = {
                k: sum(w * e[k] for w, e in zip(GAUSS_WEIGHTS, per_node, strict=True))
                for k in per_node[0]
            }
        else:
            eff = combine_effects(pk_drugs, conc, model)

        def rhs(yy, args):
            pp, ee, inf = args
            dy = model.rhs(yy, pp, ee, jnp, td)
            return {n: dy[n] + inf[n] if n in inf else dy[n] for n in dy}

        if reverse:
            y_next = rk4_step_reverse(rhs, y, (p, eff, inflow), plan.dt)
        else:
            y_next = rk4_step(lambda yy: rhs(yy, (p, eff, inflow)), y, h, stages)
        return (y_next, tuple(a_next), tuple(auc_next), *carry[3:])

    return advance


def integrate(plan: Plan, day_advance, carry, p: dict, bolus, rate, *extra) -> dict:
    """Run ``day_advance(carry, (bolus_day, rate_day, *extra_day)) -> carry`` over the horizon
    in a scan over save blocks of daily scans (each day ``jax.checkpoint``-ed); ``extra``:
    more step inputs (leading axis n_steps).  Returns ``saved`` (state at `Plan.save_days`),
    ``daily`` (daily outputs at days 0..days) and ``auc``, each with the time axis first (then
    whatever shape the carry's arrays have), and ``dosing`` when the plan has dose rules."""
    model, drugs = plan.model, plan.drugs
    n_sub, k = plan.n_sub, plan.save_every
    full, rem = divmod(plan.days, k)
    y0 = carry[0]
    tm = jax.tree_util.tree_map

    # every day's end, not only the save days (see `_status`): each state's lowest value and
    # largest magnitude, and the first day a state fell below -NEGATIVE_TOL x its largest
    # magnitude so far (the flag itself compares with the whole run's largest, as the saved
    # states' check does, so a state starting at 0 is not flagged for a round-off negative)
    def rel(y, hi):
        return functools.reduce(
            jnp.minimum, [y[n] / jnp.where(hi[n] > 0, hi[n], 1.0) for n in sorted(y)]
        )

    def watch(w, y):
        hi, lo, first, d = w
        hi = tm(lambda h, v: jnp.maximum(h, jnp.abs(v)), hi, y)
        lo, d = tm(jnp.minimum, lo, y), d + 1
        first = jnp.where((first < 0) & (rel(y, hi) < -NEGATIVE_TOL), d, first)
        return hi, lo, first, d

    hi0 = tm(jnp.abs, y0)
    rel0 = rel(y0, hi0)
    zero = jnp.zeros_like(rel0)
    w0 = (hi0, y0, jnp.where(rel0 < -NEGATIVE_TOL, zero, zero - 1.0), zero)
    carry = (carry, w0)

    @jax.checkpoint
    def day(c, inp_day):
        carry, w = c
        carry = day_advance(carry, inp_day)
        return (carry, watch(w, carry[0])), model.daily_outputs(carry[0], p)

    def block(c, inp_block):
        c, daily = lax.scan(day, c, inp_block)
        return c, (c[0][0], daily)

    inputs = [jnp.asarray(v, plan.dtype) for v in (bolus, rate, *extra)]
    cut = full * k * n_sub
    saved_parts = [tm(lambda v: v[None], y0)]
    daily_parts = [tm(lambda v: v[None], model.daily_outputs(y0, p))]
    if full:
        xs = tuple(v[:cut].reshape((full, k, n_sub) + v.shape[1:]) for v in inputs)
        carry, (saved, daily) = lax.scan(block, carry, xs)
        saved_parts.append(saved)
        daily_parts.append(tm(lambda v: v.reshape((-1,) + v.shape[2:]), daily))
    if rem:
        xs = tuple(v[cut:].reshape((rem, n_sub) + v.shape[1:]) for v in inputs)
        carry, daily = lax.scan(day, carry, xs)
        saved_parts.append(tm(lambda v: v[None], carry[0][0]))
        daily_parts.append(daily)
    carry, (hi, lo, first, _) = carry
    cat = lambda parts: tm(lambda *v: jnp.concatenate(v), *parts)  # noqa: E731
    out = {
        "saved": cat(saved_parts),
        "daily": cat(daily_parts),
        "negative": {"lowest": rel(lo, hi), "first_day": first},
        "auc": {
            d.name: v
            for d, v in zip(drugs, carry[2], strict=True)
            if d.target_state is None  # no plasma exposure for state-dosed drugs
        },
    }
    if plan.rules:
        ruled = [d.name for d, r in zip(drugs, plan.rules, strict=True) if r is not None]
        out["dosing"] = {
            name: {f: v[f] for f in dose_modify.DOSING_FIELDS + dose_modify.RECORDS if f in v}
            # hold episodes: an omission rule's runs of withheld doses; each postponed dose
            # under a delay rule (a delay holds one dose)
            | {"holds": v["episodes"] if "episodes" in v else v["withheld"]}
            for name, v in zip(ruled, carry[3][1], strict=True)
        }
    return out


def patient_fn(plan: Plan):
    """The one-patient simulation ``(p, pk, cov, y0, bolus, rate) -> outputs``.

    ``bolus``/``rate`` are the shared step-grid inputs (n_steps, drugs, 3) by unit kind; the
    patient's covariates turn them into mg.  Plans with hold rules also take ``starts``
    (`vcohort.dosing.Schedule.step_starts`) and ``delays``
    (`vcohort.dose_rules.delay_inputs`).  Outputs: ``saved`` (state dict, values at
    `Plan.save_days`), ``daily`` (daily outputs at days 0..days), ``auc`` (mg·day/L per drug)
    and, with hold rules, ``dosing`` (for omission rules without ``dose_day``: a dose given is
    given at the start of its planned day's step, the day `simulate` fills in).
    """

    def run(p, pk, cov, y0, bolus, rate, starts=None, delays=None):
        if plan.rules and starts is None:
            raise ValueError(
                "the plan has hold rules: pass starts=schedule.step_starts(plan.dt, plan.n_steps)"
            )
        if delays is None:
            if any(r is not None and r.delay for r in plan.rules):
                raise ValueError(
                    "the plan has delay rules: pass "
                    "delays=dose_rules.delay_inputs(schedule, plan.dt, plan.n_steps)"
                )
            delays = jnp.zeros((0, 5, 4), plan.dtype)
        su = patient_setup(plan, p, pk, cov)
        advance = make_advance(plan, su)
        wt, bsa = su["wt"], su["bsa"]

        def step(carry, inp):
            b_in, r_in = inp[:2]
            # per-patient mg from (mg, mg/kg, mg/m2) channels; elementwise on purpose: a dot
            # inside the scan deadlocked XLA's CPU runtime (jax 0.10.2, 2-core machine)
            bd = b_in[:, 0] + b_in[:, 1] * wt + b_in[:, 2] * bsa
            rd = r_in[:, 0] + r_in[:, 1] * wt + r_in[:, 2] * bsa
            if plan.rules:
                carry, bd, rd = dose_modify.apply(
                    plan, carry, su["p"], bd, rd, inp[2], delays, to_mg
                )
            return advance(carry, bd, rd), None

        def to_mg(v):  # an amount by unit kind (mg, mg/kg, mg/m2) in the patient's mg
            return v[0] + v[1] * wt + v[2] * bsa

        def day_advance(carry, inp_day):
            return lax.scan(step, carry, inp_day)[0]

        extra = (starts,) if plan.rules else ()
        return integrate(plan, day_advance, initial_carry(plan, y0), su["p"], bolus, rate, *extra)

    return run


def cohort_fn(plan: Plan):
    """``vmap`` of `patient_fn` over patients (inputs shared): a pure, differentiable function
    ``(params, pk, cov, y0, bolus, rate) -> outputs`` with a leading patient axis."""
    shared = (None,) * (4 if plan.rules else 2)  # bolus, rate (, starts, delays)
    return jax.vmap(patient_fn(plan), in_axes=(0, 0, 0, 0, *shared))


# ---------------------------------------------------------------------------- trajectories
@dataclass
class Trajectories:
    """Result of `simulate` (host numpy arrays).

    Attributes:
        patient_id: (P,) ids.
        save_days: (T,) days at which ``states`` are saved.
        states: state name -> (P, T).
        daily: daily output name (the model's, e.g. ``diameter_mm``, ``csc_fraction``,
            ``ANC``) -> (P, days+1).
        auc: drug -> (P,) plasma AUC over the horizon, mg·day/L.
        status: (P,) status codes (`STATUS_MESSAGES`); 0 = ok.
        status_day: (P,) first day a failure showed (-1 if none): the first non-finite daily
            output, else the first day's end with a state below -1e-6 x its largest magnitude
            so far (`_status`).
        drugs: drug names of the schedule.
        timings: seconds spent compiling+running and running.
        dosing: per drug with a hold rule (`vcohort.dose_rules.DoseRule`),
            `vcohort.dose_modify.DOSING_FIELDS` ->
            (P,): doses due, withheld (omitted or delayed) and given at a reduced level, mg
            given and mg planned over the horizon, the day the drug was discontinued (NaN:
            never) and the days of delay; ``holds`` -> (P,): hold episodes (runs of doses
            withheld under an omission rule, each postponed dose under a delay rule: what
            steps the dose level down); and `vcohort.dose_modify.RECORDS` -> (P, slots):
            per planned dose the day it was given (``dose_day``) and the fraction of the
            planned amount given (``dose_fraction``; 0: not given).
    """

    patient_id: np.ndarray
    save_days: np.ndarray
    states: dict
    daily: dict
    auc: dict
    status: np.ndarray
    status_day: np.ndarray
    drugs: tuple[str, ...]
    timings: dict = field(default_factory=dict)
    dosing: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.patient_id.shape[0])

    def status_text(self) -> list[str]:
        return [STATUS_MESSAGES[int(s)] for s in self.status]


# a state below -NEGATIVE_TOL x its largest magnitude so far is negative beyond round-off
NEGATIVE_TOL = 1e-6


def _whole(x) -> bool:
    """An integer (not a bool: ``True`` is an int to Python, and ran as 1)."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def _status(states: dict, daily: dict, watch: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Status codes and the first bad day per patient.  ``watch`` (`integrate`'s "negative"): each
    patient's lowest state over every day's end relative to that state's largest magnitude over
    the run (flagged below -NEGATIVE_TOL), and the first day a state fell below the tolerance
    relative to its largest magnitude so far; without it (the reference solvers) only the
    saved states are checked.  The bad day of a non-finite patient (first non-finite daily
    output) replaces that of a negative one."""
    P = next(iter(states.values())).shape[0]
    status = np.zeros(P, dtype=np.int64)
    finite = np.ones(P, dtype=bool)
    for v in list(states.values()) + list(daily.values()):
        finite &= np.all(np.isfinite(v), axis=1)
    negative = np.zeros(P, dtype=bool)
    for v in states.values() if watch is None else ():  # (the watch covers every saved day)
        # rows that are all NaN (a failed patient, flagged non-finite below) compare False
        w = np.where(np.isnan(v), 0.0, v)
        negative |= w.min(axis=1) < -NEGATIVE_TOL * (np.abs(w).max(axis=1) + 1e-300)
    bad_day = np.full(P, -1, dtype=np.int64)
    if watch is not None:
        low, first = np.asarray(watch["lowest"]), np.asarray(watch["first_day"])
        seen = np.where(np.isnan(low), False, low < -NEGATIVE_TOL)
        negative |= seen
        bad_day = np.where(seen & (first >= 0), first, -1).astype(np.int64)
    status[negative] = STATUS_NEGATIVE
    status[~finite] = STATUS_NONFINITE
    d = np.ones_like(next(iter(daily.values())), dtype=bool)
    for v in daily.values():
        d &= np.isfinite(v)
    rows = np.where(~d.all(axis=1))[0]
    bad_day[rows] = np.argmax(~d[rows], axis=1)
    return status, bad_day


# ---------------------------------------------------------------------------- entry point
def warn_past_horizon(schedule: Schedule, days) -> None:
    """Warn when a run of ``days`` goes past the horizon its ``schedule`` was compiled for:
    doses stop there without a word otherwise (a 180-day schedule in a 365-day run gives
    half the exposure)."""
    h = schedule.horizon
    if h is not None and days > h + 1e-9 and bool(np.any(schedule.valid)):
        import warnings

        warnings.warn(
            f"the schedule was compiled for {h:g} days (compile_schedule(..., horizon_days="
            f"{h:g})) but the run has days={days}: no dose is given from day {h:g} on.  Compile "
            f"it for {days} days (a regimen's 'for'/'until' ends it earlier if you mean that)",
            stacklevel=3,
        )


def prepare(
    model: Model,
    schedule: Schedule | None,
    days: int,
    *,
    dt: float = DEFAULT_DT,
    save_every: int = 7,
    precision: str = "float64",
    catalogue: dict[str, Drug] | None = None,
    tumour_dynamics: float = 1.0,
    forcing: str = "gauss",
) -> tuple[Plan, Schedule]:
    """Validate the run's settings (before any compute) and build its `Plan`."""
    if not _whole(days) or days < 1:
        raise ValueError(f"days={days!r} must be a whole number of days >= 1")
    if not _whole(save_every) or save_every < 1:
        raise ValueError(f"save_every={save_every!r} must be a whole number of days >= 1")
    check_dt(dt)
    dtype = set_precision(precision)
    if schedule is None:
        schedule = compile_schedule([], float(days))
    warn_past_horizon(schedule, days)
    cat = model.drug_catalogue() if catalogue is None else catalogue
    drugs = tuple(get_drug(d, cat) for d in schedule.drugs)
    for d in drugs:
        if d.target_state is not None and d.target_state not in model.states:
            raise ValueError(
                f"drug {d.name!r} is dosed into state {d.target_state!r}, which model "
                f"{model.name!r} does not have; states: {', '.join(model.states)}"
            )
        for eff in d.effects:
            model.check_channel(eff.channel, d.name)
    rules = tuple(schedule.rules)
    if rules:
        schedule.check_rules(dt, int(days) * check_dt(dt))
        for d, r in zip(drugs, rules, strict=True):
            problem = None if r is None else model.rule_problem(r)
            if problem:
                raise ValueError(f"{d.name}: {problem}")
    amount = np.asarray(schedule.amount, dtype=np.float64)
    if np.any(~np.isfinite(amount)) or np.any(amount < 0):
        bad = amount[~(np.isfinite(amount) & (amount >= 0))][0]
        raise ValueError(f"schedule amount={bad!r}: dose amounts must be finite and >= 0")
    if forcing not in FORCINGS:
        raise ValueError(f"forcing={forcing!r}; allowed: {FORCINGS}")
    plan = Plan(
        model, drugs, int(days), float(dt), int(save_every), dtype, float(tumour_dynamics), forcing,
        rules=rules, n_slots=schedule.n_slots if rules else 0,
    )  # fmt: skip
    return plan, schedule


def simulate(
    model: Model,
    cohort: Cohort,
    schedule: Schedule | None = None,
    days: int = 180,
    *,
    dt: float = DEFAULT_DT,
    save_every: int = 7,
    precision: str = "float64",
    chunk_size: int = DEFAULT_CHUNK,
    progress: bool | None = None,
    catalogue: dict[str, Drug] | None = None,
    tumour_dynamics: float = 1.0,
    forcing: str = "gauss",
    devices: Sequence | None = None,
    engine: str = "xla",
) -> Trajectories:
    """Simulate every patient of ``cohort`` under ``schedule`` (None = untreated).

    Args:
        model: the model (e.g. `vcohort.model.CSC_IMMUNE`).
        cohort: patients (parameters, PK parameters, covariates, initial state).
        schedule: dose slots (`vcohort.dosing.compile_schedule`); None means untreated.
        days: horizon in whole days.
        dt: RK4 step in days (1/dt a whole number).
        save_every: save the full state every this many days (and at the horizon).
        precision: ``float64`` (reference) or ``float32`` (fast; default on GPU).
        chunk_size: patients per compiled call (memory bound; the last chunk is padded).
        progress: show a progress bar (default: when there is more than one chunk).
        catalogue: drug catalogue (default: the model's, `Model.drug_catalogue`).
        tumour_dynamics: 1, or 0 to freeze the tumour (immune run-in).
        forcing: ``gauss`` (step-mean of drug effects, default) or ``mean`` (effect of the
            step-mean concentration); see the module docstring.
        devices: devices to shard the patient axis over (default: all local devices; each
            chunk is split across them with ``jax.sharding``; results do not depend on it).
        engine: ``xla`` (default; vmapped step compiled by XLA) or ``pallas`` (one fused
            Pallas/Triton kernel per day and block of patients, `vcohort.fused`; forward
            only, meant for GPUs -- elsewhere it runs in Pallas' interpreter, which on a CPU
            is about as fast as ``xla``).

    Returns:
        `Trajectories` with per-patient ``status``; failed patients are kept, flagged.
    """
    plan, schedule = prepare(
        model,
        schedule,
        days,
        dt=dt,
        save_every=save_every,
        precision=precision,
        catalogue=catalogue,
        tumour_dynamics=tumour_dynamics,
        forcing=forcing,
    )
    from vcohort.cohort import check_engine

    check_engine(engine)
    if engine == "pallas":
        schedule.refuse_rules("engine='pallas'")
    n = len(cohort)
    if n < 1:
        raise ValueError("cohort has 0 patients; patients must be >= 1")
    if not _whole(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be an integer >= 1")
    cohort.check_for(model, plan.drugs, schedule.needs())
    bolus, rate = schedule.step_inputs(plan.dt, plan.n_steps)
    extra = ()
    if plan.rules:
        extra = (
            schedule.step_starts(plan.dt, plan.n_steps),
            delay_inputs(schedule, plan.dt, plan.n_steps),
        )
    devs = list(devices) if devices is not None else jax.local_devices()
    if not devs:
        raise ValueError("devices=[]: give at least one device (default: all local devices)")
    if not all(isinstance(d, jax.Device) for d in devs) or len(set(devs)) != len(devs):
        raise ValueError(
            f"devices={devs!r}: each entry must be a jax.Device, none repeated (local "
            f"devices: {jax.local_devices()})"
        )
    n_dev = len(devs)
    shared = ()
    if engine == "pallas":
        from vcohort.fused import kernel_constants

        shared = tuple(sorted(kernel_constants(model, cohort.params, plan.dtype).items()))
    fn = _compiled(plan, engine, tuple(devs), shared)
    chunk = chunk_for(n, chunk_size, n_dev)
    starts = list(range(0, n, chunk))
    # the patient axis is sharded over the devices; shared dose inputs are replicated
    shard = patient_sharding(devs)
    if shard is None and devices is not None:  # one device asked for: run there, not on the default
        shard = devs[0]
    show = progress if progress is not None else len(starts) > 1
    it = starts
    if show:
        from tqdm.auto import tqdm

        it = tqdm(starts, desc=f"simulating {n} patients", unit="chunk")
    np_dtype = np.float64 if plan.dtype == jnp.float64 else np.float32
    bolus, rate = bolus.astype(np_dtype), rate.astype(np_dtype)  # once, not per chunk
    extra = tuple(v.astype(np_dtype) for v in extra)
    res = None  # host outputs, filled chunk by chunk (no concatenation copies)
    t0 = _time.perf_counter()
    first = None
    for s in it:
        idx = np.arange(s, min(s + chunk, n))
        pad = chunk - idx.size
        take = np.concatenate([idx, np.full(pad, idx[-1])]) if pad else idx
        args = cohort.arrays(take, plan.drugs, np_dtype)
        if shard is not None:
            args = jax.device_put(args, shard)
        out = fn(*args, bolus, rate, *extra)
        if res is None:
            ran_on = sorted({d.id for v in jax.tree_util.tree_leaves(out) for d in v.devices()})
            res = jax.tree_util.tree_map(
                lambda v: np.empty((n,) + tuple(v.shape[1:]), dtype=v.dtype), out
            )
        sl = slice(s, s + idx.size)

        def put(dst, v, sl=sl, m=idx.size):
            dst[sl] = np.asarray(v)[:m]

        jax.tree_util.tree_map(put, res, out)
        del out
        if first is None:
            first = _time.perf_counter() - t0
    total = _time.perf_counter() - t0
    status, bad_day = _status(res["saved"], res["daily"], res.pop("negative", None))
    # the drugs this schedule gives (a run's arms share one drug list: a drug of another arm
    # must not make this arm's patients 'unstable' through its gated rate)
    given = [d for i, d in enumerate(plan.drugs) if np.asarray(schedule.valid)[i].any()]
    unstable = unstable_patients(model, cohort.params, plan.dt, acting_channels(given))
    status[(status == STATUS_OK) & unstable] = STATUS_UNSTABLE
    # a patient that started from a non-finite state (`vcohort.cohort.run_in` leaves NaN where
    # the run-in failed) fails for that reason, not this run's solver
    init = finite_start(cohort)
    status[~init] = STATUS_INITIAL
    bad_day[~init] = 0
    for i, rule in enumerate(plan.rules):
        if rule is not None and not rule.delay:  # an omitted dose is not moved: its planned
            # step's day, when it was given (as a delay rule records it)
            rec = res["dosing"][plan.drugs[i].name]
            on_grid = dose_step(schedule.time[i], plan.dt, plan.n_steps) * plan.dt
            t = np.where(schedule.valid[i], on_grid, np.nan)
            rec["dose_day"] = np.where(rec["dose_fraction"] > 0, t, np.nan)
    return Trajectories(
        patient_id=np.asarray(cohort.patient_id),
        save_days=plan.save_days,
        states=res["saved"],
        daily=res["daily"],
        auc=res["auc"],
        status=status,
        status_day=bad_day,
        drugs=tuple(d.name for d in plan.drugs),
        dosing=res.get("dosing", {}),
        timings={
            "total_s": total,
            "first_chunk_s": first,
            "chunks": len(starts),
            "chunk_size": chunk,
            "devices": n_dev,
            "device_ids": ran_on,  # where the first chunk's outputs were computed
        },
    )


def chunk_for(n: int, chunk_size: int, n_devices: int = 1) -> int:
    """Patients per compiled call for a cohort of ``n``: the next size of the ladder 8, 12, 16,
    24, 32, 48, ... (2^k and 3·2^(k-1)) at or above ``n``, never more than ``chunk_size``; a
    cohort above ``chunk_size`` is split into the fewest chunks of at most ``chunk_size`` and
    each gets the ladder size of their balanced share (4,097 patients in chunks of 4,096: two
    of 3,072, not two of 4,096 with the second padded from 1 patient); then a multiple of the
    device count.

    Why: each new array shape is a new compile (3.7 s for the triple combination on a 2-core
    CPU, against 0.11 s to simulate 128 patients x 180 days), so cohorts of nearby sizes (arms,
    calibration groups, a second draw) share one compiled function; the padding (copies of the
    last patient, results dropped) costs at most half as much again (n = 2^k + 1) past the
    8-patient floor, about a sixth on average.  A patient's results depend on the compiled
    shape only through rounding (XLA vectorises each shape its own way: 100 patients in a 128
    or a 100 shape, 60 days, differed by <= 2.3e-15 relative in float64 and 1.4e-6 in
    float32)."""
    n, chunk_size = int(n), int(chunk_size)
    share = -(-n // -(-n // chunk_size)) if n > chunk_size else n  # balanced over the chunks
    size = MIN_CHUNK
    while size < share:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3  # 2^k -> 1.5x
    size = min(size, chunk_size)
    return -(-size // n_devices) * n_devices


def patient_sharding(devices: Sequence):
    """The sharding that splits a leading patient axis over ``devices`` (None for one device);
    each device then runs the same per-patient arithmetic on its share."""
    if len(devices) < 2:
        return None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    return NamedSharding(Mesh(np.array(devices), ("patients",)), PartitionSpec("patients"))


_CACHE: OrderedDict = OrderedDict()
CACHE_SIZE = 32  # compiled cohort functions kept (least recently used dropped)


def _compiled(plan: Plan, engine: str = "xla", devices: tuple = (), shared: tuple = ()):
    """One jitted cohort function per plan and engine (jit re-traces only for new
    shapes/dtypes).  The XLA path is partitioned over ``devices`` by jit from the inputs'
    sharding; the fused kernel is a custom call XLA cannot partition, so it runs per device
    under ``shard_map``; ``shared`` are (name, value) of parameters equal for every patient of
    the cohort, compiled into the fused kernel (`vcohort.fused.shared_params`)."""
    key = (
        plan.model.name,
        tuple(d.name for d in plan.drugs),
        plan.days,
        plan.dt,
        plan.save_every,
        str(jnp.dtype(plan.dtype)),
        plan.tumour_dynamics,
        plan.forcing,
        plan.reverse_mode,
        plan.rules,
        plan.n_slots,  # the shape of the per-dose records (0 without rules)
        plan.hold_softness,
        tuple(id(d) for d in plan.drugs),
        id(plan.model),
        engine,
        devices if engine == "pallas" and len(devices) > 1 else (),
        # the fused kernel compiles for the run's devices: Triton on GPUs, else the interpreter
        engine == "pallas" and bool(devices) and devices[0].platform != "gpu",
        shared,
    )
    if key in _CACHE:
        _CACHE.move_to_end(key)
    else:
        if len(_CACHE) >= CACHE_SIZE:
            _CACHE.popitem(last=False)
        if engine == "pallas":
            from vcohort.fused import cohort_pallas_fn

            # interpreted unless the run's devices are GPUs (it was chosen from the default
            # backend, so CPU devices asked for on a GPU machine were given Triton kernels)
            interpret = devices[0].platform != "gpu" if devices else None
            fn = cohort_pallas_fn(plan, interpret=interpret, constants=dict(shared))
            if len(devices) > 1:
                from jax.sharding import Mesh, PartitionSpec

                mesh = Mesh(np.array(devices), ("patients",))
                pat, rep = PartitionSpec("patients"), PartitionSpec()
                # check_vma=False: pallas_call's outputs carry no varying-axes annotation
                fn = jax.shard_map(
                    fn,
                    mesh=mesh,
                    in_specs=(pat,) * 4 + (rep, rep),
                    out_specs=pat,
                    check_vma=False,
                )
            _CACHE[key] = jax.jit(fn)
        else:
            _CACHE[key] = jax.jit(cohort_fn(plan))
    return _CACHE[key]

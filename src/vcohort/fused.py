"""A fused forward simulator for GPUs: one Pallas (Triton) kernel advances a block of patients
by a whole day, with every state in registers.

Why: the XLA path (`vcohort.simulate.cohort_fn`) compiles a right-hand side into ~90 separate
elementwise kernels per RK4 stage (measured in the optimised HLO: 70 fusions + 22 copies per
stage, 55 fusions + 53 copies per step), each reading and writing whole patient arrays.  On an
H200 that traffic, not arithmetic, set the pace: 1.6 ms per step for 262,144 patients in
float32 (2026-11-29, ``benchmarks/results/gpu.md``) is ~30 kB of memory traffic per
patient-step against ~2 kFLOP of work.  Here a kernel instance loads its block's state once a
day, runs the day's ``1/dt`` steps (exact PK, Gauss-node drug effects, four RK4 stages) in
registers and writes the state back: ~0.2 kB of traffic per patient-*day*.

The kernel runs exactly the step of the XLA path -- `vcohort.simulate.make_advance`, which is
elementwise and so runs on a block of patients as it runs on one -- with the RK4 stages as a
``fori_loop`` (`vcohort.simulate.rk4_step` ``stages="loop"``).  The per-patient PK propagators
(small matrix exponentials) are computed outside the kernel by XLA (`patient_setup`, once per
run), and the daily outputs and saved states by the same `integrate` as the XLA path.

Forward only: ``pallas_call`` has no reverse-mode rule, so gradients (schedule optimisation)
use the XLA path.  Off a GPU the kernel runs in Pallas' interpreter, which executes the same
per-block operations as XLA ops: on the 2-core CPU, 1,000 patients x 180 days of the triple
combination (float64, compiled) took 0.98 s against the XLA engine's 1.04 s -- no gain there,
since XLA-CPU splits the block's operations into the same separate kernels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vcohort.config import ENGINES
from vcohort.simulate import Plan, initial_carry, integrate, make_advance, patient_setup

DEFAULT_BLOCK = 128  # patients per kernel instance (one per thread with 4 warps)
__all__ = [
    "ENGINES",
    "DEFAULT_BLOCK",
    "check_block",
    "cohort_pallas_fn",
    "kernel_constants",
    "shared_params",
]


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def check_block(block: int) -> int:
    if not isinstance(block, int) or block < 1 or block & (block - 1):
        raise ValueError(f"block={block!r} must be a power of two >= 1 (Triton block shape)")
    return block


def day_kernel(plan: Plan, su_tree, carry_tree, n_su: int, n_carry: int, constants: dict):
    """The Pallas kernel body: refs are ``n_su`` setup arrays, ``n_carry`` carry arrays (one
    block of patients each), the day's shared dose inputs (flattened ``(2, n_sub, drugs, 3)``,
    bolus then rate, padded to a power of two) and ``n_carry`` output arrays.  ``constants``:
    model parameters with one value for every patient, compiled into the kernel as literals."""
    nd, n_sub = len(plan.drugs), plan.n_sub
    off = n_sub * nd * 3  # where the rates start in the flattened day inputs

    def kernel(*refs):
        su_refs = refs[:n_su]
        c_refs = refs[n_su : n_su + n_carry]
        inp = refs[n_su + n_carry]
        out_refs = refs[n_su + n_carry + 1 :]
        su = jax.tree_util.tree_unflatten(su_tree, [r[...] for r in su_refs])
        su = {**su, "p": {**su["p"], **constants}}
        carry = jax.tree_util.tree_unflatten(carry_tree, [r[...] for r in c_refs])
        advance = make_advance(plan, su, stages="loop")
        wt, bsa = su["wt"], su["bsa"]

        def step(i, carry):
            base = i * (nd * 3)
            bd, rd = [], []
            for q in range(nd):  # per-patient mg from the (mg, mg/kg, mg/m2) channels
                j = base + 3 * q
                bd.append(inp[j] + inp[j + 1] * wt + inp[j + 2] * bsa)
                rd.append(inp[off + j] + inp[off + j + 1] * wt + inp[off + j + 2] * bsa)
            return advance(carry, bd, rd)

        carry = lax.fori_loop(0, n_sub, step, carry)
        for r, v in zip(out_refs, jax.tree_util.tree_leaves(carry), strict=True):
            r[...] = v

    return kernel


def shared_params(params: dict, dtype, fixed=None) -> dict[str, float]:
    """The parameters with one value (in ``dtype``) for every patient of ``params`` (name ->
    array over patients); for `cohort_pallas_fn`'s ``constants``.  ``fixed``: only these names
    are candidates -- `simulate` passes the model's parameters without between-patient
    variability (cv 0), so that the kernel, compiled per set of constants, is the same for
    every cohort of a model (a small cohort whose sampled values happen to coincide, e.g. one
    patient, must not compile its own)."""
    out = {}
    for k, v in params.items():
        if fixed is not None and k not in fixed:
            continue
        v = np.asarray(v).astype(dtype)
        if v.size and np.all(v == v.flat[0]):
            out[k] = float(v.flat[0])
    return out


def kernel_constants(model, params: dict, dtype) -> dict[str, float]:
    """The constants `simulate(engine="pallas")` compiles into the kernel: the model's
    parameters without between-patient variability (cv 0), at their value in ``params``
    (`shared_params`)."""
    return shared_params(params, dtype, {r.name for r in model.params if r.cv == 0})


def cohort_pallas_fn(
    plan: Plan,
    block: int = DEFAULT_BLOCK,
    interpret: bool | None = None,
    constants: dict[str, float] | None = None,
):
    """Same signature and outputs as `vcohort.simulate.cohort_fn` -- ``(params, pk, cov, y0,
    bolus, rate) -> outputs`` with a leading patient axis -- with each day run by one fused
    Pallas kernel per block of ``block`` patients (padded up to a whole block).

    ``interpret``: run the kernel in Pallas' interpreter (default: when the default backend
    is not a GPU).  ``constants``: parameters equal for every patient (`shared_params`); the
    kernel uses these values as literals instead of loading a per-patient array, which frees
    registers (a Triton kernel instance keeps every input of a patient in registers for the
    whole day: measured with ptxas for sm_90, see ``benchmarks/results/kernel.md``) -- the
    ``params`` argument must hold these values."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    # Triton's parameters select the Triton backend (the default GPU backend, Mosaic GPU, has
    # no lowering for pow); named TritonCompilerParams in some jax releases
    triton_params = getattr(plt, "CompilerParams", None) or plt.TritonCompilerParams
    check_block(block)
    constants = dict(constants or {})
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    nd, n_sub = len(plan.drugs), plan.n_sub
    n_inp = _pow2(2 * n_sub * nd * 3)

    def run(params, pk, cov, y0, bolus, rate):
        n = jax.tree_util.tree_leaves(y0)[0].shape[0]
        b = min(block, _pow2(n))  # a cohort smaller than a block is padded only to a power of 2
        n_pad = -(-n // b) * b

        def pad(v):
            v = jnp.asarray(v)
            return jnp.pad(v, (0, n_pad - n), mode="edge") if n_pad > n else v

        params, pk, cov, y0 = jax.tree_util.tree_map(pad, (params, pk, cov, y0))
        su = jax.vmap(lambda p, k, c: patient_setup(plan, p, k, c))(params, pk, cov)
        varying = {**su, "p": {k: v for k, v in su["p"].items() if k not in constants}}
        su_leaves, su_tree = jax.tree_util.tree_flatten(varying)
        carry0 = initial_carry(plan, y0)
        c_leaves, c_tree = jax.tree_util.tree_flatten(carry0)
        kernel = day_kernel(plan, su_tree, c_tree, len(su_leaves), len(c_leaves), constants)
        spec = pl.BlockSpec((b,), lambda i: (i,))
        call = pl.pallas_call(
            kernel,
            out_shape=[jax.ShapeDtypeStruct((n_pad,), v.dtype) for v in c_leaves],
            grid=(n_pad // b,),
            in_specs=[spec] * (len(su_leaves) + len(c_leaves))
            + [pl.BlockSpec((n_inp,), lambda i: (0,))],
            out_specs=[spec] * len(c_leaves),
            interpret=interpret,
            compiler_params=triton_params(num_warps=max(1, min(8, b // 32))),
            name="vcohort_day",
        )

        def day_advance(carry, inp_day):
            bolus_day, rate_day = inp_day
            flat = jnp.concatenate([bolus_day.reshape(-1), rate_day.reshape(-1)])
            flat = jnp.pad(flat, (0, n_inp - flat.shape[0]))
            out = call(*su_leaves, *jax.tree_util.tree_leaves(carry), flat)
            return jax.tree_util.tree_unflatten(c_tree, out)

        res = integrate(plan, day_advance, carry0, su["p"], bolus, rate)
        # time-major (T, n_pad) -> patient-major (n, T), as the vmapped path returns
        return {
            "saved": {k: v.T[:n] for k, v in res["saved"].items()},
            "daily": {k: v.T[:n] for k, v in res["daily"].items()},
            "auc": {k: v[:n] for k, v in res["auc"].items()},
            "negative": {k: v[:n] for k, v in res["negative"].items()},
        }

    return run

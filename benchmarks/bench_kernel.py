"""What the fused GPU kernel compiles to, without a GPU: registers, spills and machine
instructions per patient-step of `vcohort.fused`'s day kernel for an H100/H200 (sm_90).

    pip install triton                 # once; the compiler only, no GPU needed
    python benchmarks/bench_kernel.py  # writes benchmarks/results/kernel.md

The kernel is lowered by JAX's Pallas exactly as on a GPU (Triton IR, float32, the triple
combination, shared parameters as literals, as `simulate(engine="pallas")` runs it), then
compiled by the ``triton`` package's own pipeline for ``sm_90a`` (Triton IR -> PTX -> ptxas
cubin).  JAX's GPU plugin compiles the same IR with the Triton inside XLA, whose version can
differ, so registers and instruction counts here are an estimate of what the device runs.

Per patient-step instructions: the static SASS of the step loop with its RK4 stage loop counted
4 times (every branch counted as taken, so an upper bound for straight-line code).  The issue
floor converts it to seconds for 10^6 patient-years on an H200 SXM (132 SMs x 4 schedulers x
one warp instruction per cycle at the 1.98 GHz boost clock; NVIDIA H200 datasheet and Hopper
whitepaper): the time if every scheduler issued every cycle -- a model, not a measurement;
`benchmarks/gpu.sh` measures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "src"))

from _common import triple_schedule, write_result  # noqa: E402

from vcohort.cohort import make_cohort  # noqa: E402
from vcohort.drugs import get_drug  # noqa: E402
from vcohort.fused import cohort_pallas_fn, kernel_constants  # noqa: E402
from vcohort.model import CSC_IMMUNE  # noqa: E402
from vcohort.simulate import Plan  # noqa: E402

H200 = dict(sms=132, schedulers=4, warp=32, clock_hz=1.98e9)
PATIENT_STEPS = 1e6 * 365 * 10  # 10^6 patient-years at dt 0.1 day


def triton_ir(block: int, shared: bool) -> str:
    """Triton IR text of the day kernel (captured from Pallas' lowering for CUDA)."""
    from jax._src.pallas.triton import lowering

    captured = []
    original = lowering.lower_jaxpr_to_triton_module

    def capture(*a, **k):
        captured.append(original(*a, **k))
        return captured[-1]

    s = triple_schedule(7)
    drugs = tuple(get_drug(d) for d in s.drugs)
    plan = Plan(CSC_IMMUNE, drugs, 7, 0.1, 7, jnp.float32)
    c = make_cohort(block, seed=1, runin_days=0, precision="float32")
    bolus, rate = s.step_inputs(plan.dt, plan.n_steps)
    args = (*c.arrays(np.arange(block), drugs, np.float32), bolus, rate)
    const = kernel_constants(CSC_IMMUNE, c.params, np.float32) if shared else {}
    fn = jax.jit(cohort_pallas_fn(plan, block=block, interpret=False, constants=const))
    lowering.lower_jaxpr_to_triton_module = capture
    try:
        fn.trace(*args).lower(lowering_platforms=("cuda",))
    finally:
        lowering.lower_jaxpr_to_triton_module = original
    return captured[0].module.operation.get_asm(enable_debug_info=False)


def tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def compile_sm90(ir: str, num_warps: int) -> dict:
    """Compile Triton IR for sm_90a; registers, stack, SASS instructions per patient-step."""
    import triton
    from triton.backends.compiler import GPUTarget

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "day.ttir"
        src.write_text(ir)
        t0 = time.perf_counter()
        k = triton.compile(
            str(src),
            target=GPUTarget("cuda", 90, 32),
            options={"num_warps": num_warps, "num_stages": 1},
        )
        seconds = time.perf_counter() - t0
        cubin = Path(tmp) / "day.cubin"
        cubin.write_bytes(k.asm["cubin"])
        res = subprocess.run(
            [tool("cuobjdump"), "-res-usage", str(cubin)], capture_output=True, text=True
        ).stdout
        sass = subprocess.run(
            [tool("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True
        ).stdout
    regs = int(re.search(r"REG:(\d+)", res).group(1))
    stack = int(re.search(r"STACK:(\d+)", res).group(1))
    return dict(regs=regs, stack=stack, compile_s=seconds, **per_step(sass))


def per_step(sass: str) -> dict:
    """Instructions of the step loop, with the (innermost) RK4 stage loop counted 4 times;
    loops are the backward branches of the SASS."""
    addr = [int(a, 16) for a in re.findall(r"/\*([0-9a-f]{4,})\*/\s+\S", sass)]
    loops = []
    for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?P\d\s+)?BRA\s+0x([0-9a-f]+)", sass):
        src, dst = int(m.group(1), 16), int(m.group(2), 16)
        if dst < src:
            loops.append((dst, src))
    if len(loops) < 2:
        raise RuntimeError(f"expected a step loop around a stage loop, found loops {loops}")
    n = lambda lo, hi: sum(lo <= a <= hi for a in addr)  # noqa: E731
    stage = min(loops, key=lambda r: r[1] - r[0])
    step = max(loops, key=lambda r: r[1] - r[0])
    per = n(*step) + 3 * n(*stage)
    mufu = len(re.findall(r"MUFU\.", sass))
    return dict(instructions=len(addr), stage=n(*stage), step=per, mufu=mufu)


def main() -> None:
    rows = []
    configs = [(128, 4, False), (64, 2, True), (128, 4, True), (256, 8, True)]
    for block, warps, shared in configs:
        r = compile_sm90(triton_ir(block, shared), warps)
        rate = H200["sms"] * H200["schedulers"] * H200["warp"] * H200["clock_hz"]
        floor = r["step"] * PATIENT_STEPS / rate
        resident = min(65536 // (r["regs"] * 32) // warps, 32) * warps  # warps per SM
        row = (
            f"| {block} | {warps} | {'literals' if shared else 'arrays'} | {r['regs']} | "
            f"{r['stack']} | {resident} | {r['instructions']:,} | {r['stage']:,} | "
            f"{r['step']:,} | {floor:.2f} |"
        )
        rows.append(row)
        print(row, flush=True)
    import triton

    text = "\n".join(
        [
            "Fused day kernel compiled for sm_90a without a GPU: Triton IR from Pallas (jax "
            f"{jax.__version__}), compiled by triton {triton.__version__}; float32, triple "
            f"combination, dt 0.1; {time.strftime('%Y-%m-%d')}.  'shared parameters': passed "
            "as per-patient arrays, or compiled in as literals (what simulate does).  Issue "
            "floor: instructions per patient-step x 3.65e9 patient-steps (10^6 patient-years) "
            "/ (132 SMs x 4 schedulers x 32 lanes x 1.98 GHz) -- a model; gpu.md measures.",
            "",
            "| block | warps | shared parameters | registers/thread | stack bytes (spills) "
            "| resident warps/SM | SASS instructions | per RK4 stage | per patient-step "
            "| issue floor s (10^6 patient-years, H200) |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    write_result("kernel.md", text)


if __name__ == "__main__":
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    main()

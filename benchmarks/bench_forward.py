"""Forward-simulation benchmark: vcohort vs its peers on the same model, regimen and horizon.

    python benchmarks/bench_forward.py            # full run (~10 min on a 2-core CPU)
    python benchmarks/bench_forward.py --quick    # smaller cohorts, for a smoke check
    python benchmarks/bench_forward.py --chunk-sweep [--sweep-patients 100000] [--days 30]
        # throughput of `simulate` per chunk size -> benchmarks/results/chunks.md

Prints one Markdown table and writes it (plus JSON) to benchmarks/results/.  Peers, measured in
the same run: scipy ``solve_ivp`` (LSODA) in a per-patient loop and diffrax adaptive Tsit5
under ``vmap`` (`vcohort.reference.simulate_reference`) and libroadrunner on the SBML export,
each at the loosest tolerance that keeps the endpoint within the issue's 1e-3 (``SCIPY_RTOL``,
``DIFFRAX_RTOL``, ``RR_TOL``).  Accuracy is measured against diffrax at rtol 1e-10.
Peak resident memory for 1e5 patients x 365 days (weekly saves) runs in a child process.
Times are wall-clock seconds of a second (compiled) call; nothing here gates CI.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from _common import RESULTS, TRIPLE, triple_schedule  # noqa: E402

from vcohort.cohort import make_cohort  # noqa: E402
from vcohort.model import CSC_IMMUNE  # noqa: E402
from vcohort.reference import simulate_reference, solve_patient_scipy  # noqa: E402
from vcohort.simulate import simulate  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def endpoint_error(d, ref):
    """Max relative error of the final diameter and max abs error of best % change (points)."""
    fin = np.max(np.abs(d[:, -1] / ref[:, -1] - 1))
    best = lambda x: 100 * np.min(x[:, 1:] / x[:, :1] - 1, axis=1)  # noqa: E731
    return float(fin), float(np.max(np.abs(best(d) - best(ref))))


def memory_child(n, days):
    code = f"""
import resource, time, jax
jax.config.update("jax_enable_x64", True)
from vcohort.cohort import make_cohort
from vcohort.dosing import compile_schedule, parse_regimen
from vcohort.model import CSC_IMMUNE
from vcohort.simulate import simulate
s = compile_schedule([parse_regimen(r) for r in {TRIPLE!r}], {days}.0)
t0 = time.perf_counter()
c = make_cohort({n}, seed=1)
tr = simulate(CSC_IMMUNE, c, s, {days}, save_every=7, progress=False)
print("RESULT", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
      time.perf_counter() - t0, int((tr.status != 0).sum()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")][-1].split()
    return float(line[1]), float(line[2]), int(line[3])


def roadrunner_peer(cohort, s, days, dref, rtol=1e-8, atol=1e-12):
    """libroadrunner (CVODE) on vcohort's SBML export, one file per patient (its parameters,
    initial state and doses), doses on the 0.1-day grid as vcohort applies them.  ``seconds``
    counts loading (libroadrunner JIT-compiles each file) plus simulating; ``compile_s`` is the
    loading part.  None when roadrunner is not installed."""
    try:
        import roadrunner
    except ImportError:
        return None
    from vcohort.sbml import patient_sbml, schedule_on_grid

    grid = schedule_on_grid(s, 0.1, days)
    t_load = t_sim = 0.0
    diam = []
    for i in range(len(cohort)):
        text = patient_sbml(cohort, i, grid)
        t0 = time.perf_counter()
        rr = roadrunner.RoadRunner(text)
        t_load += time.perf_counter() - t0
        rr.integrator.relative_tolerance = rtol
        rr.integrator.absolute_tolerance = atol
        rr.integrator.maximum_num_steps = 100_000
        t0 = time.perf_counter()
        res = rr.simulate(0, days, days + 1, ["time", "diameter_mm"])
        t_sim += time.perf_counter() - t0
        diam.append(np.asarray(res["diameter_mm"]))
    n = min(len(cohort), dref.shape[0])
    err = endpoint_error(np.array(diam)[:n], dref[:n])
    return dict(
        method=f"libroadrunner CVODE rtol {rtol:g}, exported SBML, loop",
        patients=len(cohort),
        seconds=t_load + t_sim,
        patient_days_per_s=len(cohort) * days / (t_load + t_sim),
        compile_s=t_load,
        final_diam_rel_err=err[0],
        best_change_abs_err=err[1],
    )


def chunk_sweep(n: int, days: int, chunks: list[int], repeat: int) -> None:
    """Forward throughput of `simulate` (float64, weekly saves, triple combination) for each
    chunk size on one cohort of ``n`` patients; chunk sizes are interleaved round-robin and the
    best of ``repeat`` calls is kept (a shared machine is noisy).  The cohort has no run-in:
    fixed-step RK4 costs the same whatever the state values."""
    s = triple_schedule(days)
    cohort = make_cohort(n, seed=1, runin_days=0)
    sizes = [min(c, n) for c in chunks]
    best = dict.fromkeys(sizes, float("inf"))
    first = {}
    for c in sizes:  # compile (and warm) each chunk size once
        _, first[c] = timed(
            lambda c=c: simulate(CSC_IMMUNE, cohort, s, days, chunk_size=c, progress=False)
        )
    for _ in range(repeat):
        for c in sizes:
            tr, t = timed(
                lambda c=c: simulate(CSC_IMMUNE, cohort, s, days, chunk_size=c, progress=False)
            )
            best[c] = min(best[c], t)
    top = min(best.values())
    lines = [
        f"Chunk-size sweep: {n:,} patients (no run-in), {days} days, triple combination, "
        f"float64, weekly saves, {os.cpu_count()} CPU cores, jax {jax.__version__}, "
        f"{time.strftime('%Y-%m-%d')}.  `simulate` wall time including host transfers and status "
        f"checks; best of {repeat} calls per chunk size, interleaved; the machine is shared, so "
        "compare rows of this table only.",
        "",
        "| chunk | chunks | first call s | best s | patient-days/s | relative to best |",
        "|---|---|---|---|---|---|",
    ]
    for c in sizes:
        lines.append(
            f"| {c:,} | {-(-n // c)} | {first[c]:.1f} | {best[c]:.2f} | "
            f"{n * days / best[c]:,.0f} | {top / best[c]:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chunks.md").write_text(text + "\n")


ACCURACY = 1e-3  # issue 6: ratios are compared at endpoint error <= 1e-3

# each peer at the loosest tolerance (of 1e-1, 1e-2, 1e-3, 3e-4, 1e-4, ...) that keeps the triple's
# final diameter within ACCURACY (measured 2026-12-03 on the quick run's first patients): scipy
# LSODA rtol 1e-2 gives 4.6e-4 (1e-3: 5.4e-5); diffrax Tsit5 rtol 3e-4 gives 7.9e-5 and rtol 1e-3
# 1.7e-3 (over); libroadrunner CVODE rtol 1e-4 / atol 1e-8 gives 1.1e-4 (1e-8 / 1e-12: 1.1e-7).
# Before, the peers ran tighter (scipy 1e-4, diffrax 1e-5, roadrunner 1e-8): 1.2-1.4x slower.
SCIPY_RTOL = 1e-2
DIFFRAX_RTOL = 3e-4
RR_TOL = (1e-4, 1e-8)


def _ratios(pds: float, sp: float, dxs: float, rr_row) -> str:
    text = f"/ scipy LSODA loop: **{pds / sp:,.0f}x**; / diffrax Tsit5 vmap: **{pds / dxs:,.1f}x**"
    if rr_row is not None:
        text += f"; / libroadrunner loop: **{pds / rr_row['patient_days_per_s']:,.0f}x**"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller cohorts, for a smoke check")
    ap.add_argument("--days", type=int, default=180, help="horizon (default 180; sweep: 30)")
    ap.add_argument("--chunk-sweep", action="store_true", help="only the chunk-size sweep")
    ap.add_argument("--sweep-patients", type=int, default=100_000)
    ap.add_argument(
        "--chunks",
        default="1024,2048,4096,8192,16384,100000",
        help="comma-separated chunk sizes for the sweep",
    )
    ap.add_argument("--repeat", type=int, default=2, help="sweep: timed calls per chunk size")
    args = ap.parse_args()
    if args.chunk_sweep:
        days = args.days if "--days" in sys.argv else 30
        chunks = [int(c) for c in args.chunks.split(",")]
        chunk_sweep(args.sweep_patients, days, chunks, args.repeat)
        return
    days = args.days
    sizes = [1000] if args.quick else [1000, 10000]
    n_acc = 8 if args.quick else 16
    s = triple_schedule(days)
    cohort = make_cohort(max(sizes), seed=1)
    rows = []

    # accuracy reference: diffrax Tsit5 at rtol 1e-10 on the first n_acc patients
    acc = cohort.subset(np.arange(n_acc))
    ref, t_ref = timed(lambda: simulate_reference(CSC_IMMUNE, acc, s, days, rtol=1e-10, atol=1e-10))
    dref = ref.daily["diameter_mm"]

    vc = {}
    for prec in ("float64", "float32"):
        for n in sizes:
            c = cohort.subset(np.arange(n))

            def run(c=c, prec=prec):
                return simulate(CSC_IMMUNE, c, s, days, precision=prec, progress=False)

            _, t_first = timed(run)
            tr, t_run = timed(run)
            err = endpoint_error(tr.daily["diameter_mm"][:n_acc].astype(np.float64), dref)
            pds = n * days / t_run
            vc[(prec, n)] = pds
            rows.append(
                dict(
                    method=f"vcohort RK4 dt 0.1 ({prec})",
                    patients=n,
                    seconds=t_run,
                    patient_days_per_s=pds,
                    compile_s=t_first - t_run,
                    final_diam_rel_err=err[0],
                    best_change_abs_err=err[1],
                )
            )

    # vcohort at dt 0.05 (more accurate, half the speed)
    c = cohort.subset(np.arange(sizes[0]))
    run = lambda: simulate(CSC_IMMUNE, c, s, days, dt=0.05, progress=False)  # noqa: E731
    _, t_first = timed(run)
    tr, t_run = timed(run)
    # its own reference: a 30-min infusion occupies one step, so the dose grid differs
    ref05 = simulate_reference(CSC_IMMUNE, acc, s, days, dt=0.05, rtol=1e-10, atol=1e-10)
    err = endpoint_error(tr.daily["diameter_mm"][:n_acc], ref05.daily["diameter_mm"])
    rows.append(
        dict(
            method="vcohort RK4 dt 0.05 (float64)",
            patients=sizes[0],
            seconds=t_run,
            patient_days_per_s=sizes[0] * days / t_run,
            compile_s=t_first - t_run,
            final_diam_rel_err=err[0],
            best_change_abs_err=err[1],
        )
    )

    # peer 1: scipy LSODA per-patient loop (SCIPY_RTOL)
    n_sp = 4 if args.quick else 8
    t0 = time.perf_counter()
    d_sp = np.array(
        [solve_patient_scipy(acc, i, s, days, dt=0.1, rtol=SCIPY_RTOL)[0] for i in range(n_sp)]
    )
    t_sp = time.perf_counter() - t0
    err = endpoint_error(d_sp, dref[:n_sp])
    sp = n_sp * days / t_sp
    rows.append(
        dict(
            method=f"scipy solve_ivp LSODA rtol {SCIPY_RTOL:g}, loop",
            patients=n_sp,
            seconds=t_sp,
            patient_days_per_s=sp,
            compile_s=0.0,
            final_diam_rel_err=err[0],
            best_change_abs_err=err[1],
        )
    )

    # peer 2: diffrax adaptive Tsit5 under vmap (DIFFRAX_RTOL)
    n_dx = 100 if args.quick else 400
    cdx = cohort.subset(np.arange(n_dx))
    tol = DIFFRAX_RTOL
    run = lambda: simulate_reference(CSC_IMMUNE, cdx, s, days, rtol=tol, atol=tol)  # noqa: E731
    _, t_first = timed(run)
    dx, t_dx = timed(run)
    err = endpoint_error(dx.daily["diameter_mm"][:n_acc], dref)
    dxs = n_dx * days / t_dx
    rows.append(
        dict(
            method=f"diffrax Tsit5 adaptive rtol {DIFFRAX_RTOL:g}, vmap",
            patients=n_dx,
            seconds=t_dx,
            patient_days_per_s=dxs,
            compile_s=t_first - t_dx,
            final_diam_rel_err=err[0],
            best_change_abs_err=err[1],
        )
    )

    # peer 3 (optional): libroadrunner (CVODE) on the exported SBML, per-patient loop
    rr_row = roadrunner_peer(acc, s, days, dref, *RR_TOL)
    if rr_row is not None:
        rows.append(rr_row)

    best64 = max(v for (p, _), v in vc.items() if p == "float64")
    lines = [
        f"Triple combination (WNT974 10 mg QD + pembrolizumab 200 mg q3w + CB-839 800 mg BID), "
        f"{days} days, {os.cpu_count()} CPU cores, jax {jax.__version__}, "
        f"{time.strftime('%Y-%m-%d')}.  Errors against diffrax Tsit5 rtol 1e-10 on "
        f"{n_acc} patients (reference took {t_ref:.0f} s).",
        "",
        "| method | patients | s | patient-days/s | compile s | final diameter rel. err | "
        "best % change err (points) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['patients']} | {r['seconds']:.2f} | "
            f"{r['patient_days_per_s']:,.0f} | {r['compile_s']:.1f} | "
            f"{r['final_diam_rel_err']:.1e} | {r['best_change_abs_err']:.1e} |"
        )
    lines += ["", "vcohort float64 (best size, dt 0.1) " + _ratios(best64, sp, dxs, rr_row) + "."]
    # the comparison is at endpoint error <= 1e-3: the fastest float64 vcohort row there
    ok = [
        r
        for r in rows
        if r["method"].startswith("vcohort") and "float64" in r["method"]
        and r["final_diam_rel_err"] <= ACCURACY
    ]  # fmt: skip
    if ok:
        r = max(ok, key=lambda r: r["patient_days_per_s"])
        lines.append(
            f"At final-diameter error <= {ACCURACY:g} ({r['method']}, "
            f"{r['final_diam_rel_err']:.1e}): "
            + _ratios(r["patient_days_per_s"], sp, dxs, rr_row)
            + (
                f" (peers over that error: {', '.join(over)})."
                if (
                    over := [
                        q["method"]
                        for q in rows
                        if not q["method"].startswith("vcohort")
                        and q["final_diam_rel_err"] > ACCURACY
                    ]
                )  # fmt: skip
                else " (every peer above is within that error too)."
            )
        )
    else:
        lines.append(f"No float64 vcohort row reached final-diameter error <= {ACCURACY:g}.")
    if not args.quick:
        rss, t_mem, nfail = memory_child(100_000, 365)
        lines.append(
            f"Peak resident memory, 100,000 patients x 365 days, weekly saves, float64: "
            f"**{rss:.2f} GiB** ({t_mem:.0f} s including cohort run-in; "
            f"{nfail} failed patients)."
        )
        rows.append(dict(method="memory 1e5 x 365 d", peak_rss_gib=rss, seconds=t_mem))
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    tag = "quick" if args.quick else "forward"
    (RESULTS / f"{tag}.md").write_text(text + "\n")
    (RESULTS / f"{tag}.json").write_text(json.dumps(rows, indent=2))
    print(
        f"\nmax RSS of this process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GiB"
    )


if __name__ == "__main__":
    main()

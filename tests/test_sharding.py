"""The patient axis sharded over 4 forced CPU devices gives the same per-patient results as one
device, with either engine (the device count is fixed when JAX starts, so the sharded run is its
own process)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import TRIPLE, schedule

from vcohort.cohort import make_cohort
from vcohort.model import CSC_IMMUNE
from vcohort.simulate import simulate

CODE = textwrap.dedent(
    """
    import sys, jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    assert len(jax.devices()) == 4, jax.devices()
    from vcohort.cohort import make_cohort
    from vcohort.dosing import compile_schedule, parse_regimen
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import simulate
    c = make_cohort(10, seed=7)
    s = compile_schedule([parse_regimen(r) for r in {triple!r}], 21.0)
    tr = simulate(CSC_IMMUNE, c, s, 21)
    assert tr.timings["devices"] == 4 and tr.timings["chunk_size"] == 12
    # the fused kernel under shard_map (Pallas' interpreter on CPU)
    fu = simulate(CSC_IMMUNE, c, s, 21, engine="pallas", progress=False)
    assert fu.timings["devices"] == 4 and (fu.status == 0).all()
    # one device asked for runs there (it ran on device 0, the default)
    one = simulate(CSC_IMMUNE, c, s, 21, devices=[jax.devices()[2]], progress=False)
    assert one.timings["device_ids"] == [2], one.timings
    assert np.allclose(one.daily["diameter_mm"], tr.daily["diameter_mm"], rtol=1e-12)
    assert tr.timings["device_ids"] == [0, 1, 2, 3], tr.timings
    np.savez(sys.argv[1], d=tr.daily["diameter_mm"], S=tr.states["S"], T8=tr.states["T8"],
             fd=fu.daily["diameter_mm"], fS=fu.states["S"])
    """
)


def run_on_forced_devices(devices: int, code: str, out, timeout: int) -> None:
    """Run ``code`` (with ``out`` as argv[1]) in a fresh Python with ``devices`` CPU devices."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True, timeout=timeout)


def test_four_forced_cpu_devices_match_one_device(tmp_path):
    out = tmp_path / "sharded.npz"
    run_on_forced_devices(4, CODE.format(triple=TRIPLE), out, timeout=600)
    sharded = np.load(out)
    c = make_cohort(10, seed=7)
    tr = simulate(CSC_IMMUNE, c, schedule(TRIPLE, 21), 21)
    # same arithmetic per patient; only the partitioning differs (10 patients padded to 12)
    np.testing.assert_allclose(sharded["d"], tr.daily["diameter_mm"], rtol=1e-12)
    np.testing.assert_allclose(sharded["S"], tr.states["S"], rtol=1e-12)
    np.testing.assert_allclose(sharded["T8"], tr.states["T8"], rtol=1e-12)
    # the fused engine, each device running its own kernel on its quarter of the patients
    np.testing.assert_allclose(sharded["fd"], tr.daily["diameter_mm"], rtol=1e-11)
    np.testing.assert_allclose(sharded["fS"], tr.states["S"], rtol=1e-11)


BIG = textwrap.dedent(
    """
    import sys, jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    assert len(jax.devices()) == 2, jax.devices()
    from vcohort.cohort import make_cohort
    from vcohort.dosing import compile_schedule, parse_regimen
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import simulate
    c = make_cohort(4096, seed=3, runin_days=0)
    s = compile_schedule([parse_regimen(r) for r in {triple!r}], 3.0)
    tr = simulate(CSC_IMMUNE, c, s, 3, progress=False)
    assert tr.timings["devices"] == 2 and tr.timings["chunk_size"] == 4096
    np.save(sys.argv[1], tr.daily["diameter_mm"])
    """
)


def test_full_chunk_on_two_cpu_devices_completes(tmp_path):
    """A full 4,096-patient chunk split over 2 CPU devices finishes (regression: the per-patient
    PK propagators used LAPACK's batched LU through ``jax.scipy.linalg.expm``; with both devices
    running it, every worker of XLA's CPU thread pool waited inside LAPACK for work queued on
    that same pool, and the run hung forever).  The timeout turns a hang into a failure."""
    out = tmp_path / "big.npy"
    run_on_forced_devices(2, BIG.format(triple=TRIPLE), out, timeout=240)
    c = make_cohort(4096, seed=3, runin_days=0)
    one = simulate(CSC_IMMUNE, c, schedule(TRIPLE, 3), 3, progress=False)
    np.testing.assert_allclose(np.load(out), one.daily["diameter_mm"], rtol=1e-12)


CORES = textwrap.dedent(
    """
    import pytest
    from vcohort.cores import use_cpu_cores
    assert use_cpu_cores(3) == 3
    import jax
    assert len(jax.devices()) == 3
    assert use_cpu_cores(3) == 3  # already in effect: fine
    with pytest.raises(RuntimeError, match="before JAX's first operation"):
        use_cpu_cores(2)
    assert use_cpu_cores(2, strict=False) == 3  # the command line's call keeps what runs
    from vcohort.cohort import make_cohort
    from vcohort.model import CSC_IMMUNE
    from vcohort.simulate import simulate
    tr = simulate(CSC_IMMUNE, make_cohort(5, seed=1, runin_days=0), None, 2, progress=False)
    assert tr.timings["devices"] == 3 and tr.timings["chunk_size"] == 9  # ladder 8, x3
    """
)


def test_use_cpu_cores_sets_the_device_count_before_jax_starts():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    subprocess.run([sys.executable, "-c", CORES], env=env, check=True, timeout=300)


def test_use_cpu_cores_rejects_bad_counts(capsys):
    import pytest

    from vcohort.cli import main
    from vcohort.cores import use_cpu_cores

    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="cpu devices=.* must be an integer >= 1"):
            use_cpu_cores(bad)
    assert main(["--cpu-devices", "0", "demo", "--patients", "2"]) == 2
    assert "cpu devices=0 must be an integer >= 1" in capsys.readouterr().err


SENS = textwrap.dedent(
    """
    import sys, jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    assert len(jax.devices()) == 2, jax.devices()
    from vcohort.cohort import make_cohort
    from vcohort.model import CSC_IMMUNE
    from vcohort.runs import parse_arm
    from vcohort.sensitivity import build_problem, evaluator, local_sensitivities
    pr = build_problem(CSC_IMMUNE, parse_arm("pembrolizumab 200 mg every 21 d"), 10,
                       "log_diameter", runin_days=None)
    c = make_cohort(5, seed=2, runin_days=0)
    r = local_sensitivities(pr, c, mode="forward", chunk_size=3)
    np.savez(sys.argv[1], value=evaluator(pr, chunk_size=3)(c), grad=r.grad)
    """
)


def test_sensitivities_sharded_over_two_cpu_devices_match_one(tmp_path):
    """Sensitivity chunks are split over the devices like `simulate`'s (odd chunk and cohort
    sizes: chunk 3 becomes 4, the last chunk is padded); endpoint values and forward-mode
    derivatives equal one device's (rtol 1e-12: the same per-patient arithmetic)."""
    from vcohort.runs import parse_arm
    from vcohort.sensitivity import build_problem, evaluator, local_sensitivities

    out = tmp_path / "sens.npz"
    run_on_forced_devices(2, SENS, out, timeout=300)
    pr = build_problem(
        CSC_IMMUNE,
        parse_arm("pembrolizumab 200 mg every 21 d"),
        10,
        "log_diameter",
        runin_days=None,
    )
    c = make_cohort(5, seed=2, runin_days=0)
    two = np.load(out)
    np.testing.assert_allclose(two["value"], evaluator(pr, chunk_size=3)(c), rtol=1e-12)
    grad = local_sensitivities(pr, c, mode="forward", chunk_size=3).grad
    np.testing.assert_allclose(two["grad"], grad, rtol=1e-12, atol=1e-300)


OPT = textwrap.dedent(
    """
    import sys, jax, numpy as np, pytest
    jax.config.update("jax_enable_x64", True)
    assert len(jax.devices()) == 4, jax.devices()
    sys.path.insert(0, {tests!r})
    from test_optimize import SMALL
    from vcohort.cohort import make_cohort
    from vcohort.optimize import optimize
    from vcohort.optimize.baseline import evolution_strategy
    from vcohort.optimize.loop import loss_devices
    devs = jax.devices()
    assert len(loss_devices(None, 8)) == 1  # CPU devices: one, by the measured rule
    with pytest.raises(ValueError, match="batch of 6 patients does not split evenly over 4"):
        loss_devices(devs, 6)
    c = make_cohort(8, seed=5, runin_days=0)
    from vcohort.optimize.loop import _placer
    placed = _placer(devs)(c.arrays(np.arange(8), (), np.float64))
    assert all(len(x.sharding.device_set) == 4 for x in jax.tree_util.tree_leaves(placed))
    r = optimize(SMALL, c, iterations=3, progress=False, patience=50, devices=devs)
    p = optimize(SMALL, c.subset(np.arange(4)), personalised=True, iterations=2,
                 progress=False, devices=devs)
    e = evolution_strategy(SMALL, c, simulations=3, seed=1, devices=devs)
    np.savez(sys.argv[1], amount=r.amount, obj=r.history["objective"].to_numpy(),
             loss=r.history["loss"].to_numpy(), p_amount=p.amount, e_pen=e.history["penalised"])
    """
)


@pytest.mark.slow
def test_optimiser_sharded_over_four_devices_matches_one_device(tmp_path):
    """The optimiser's batch sharded over 4 forced CPU devices (jit all-reduces the cohort
    means and the gradient) takes the same steps as on one device; so do personalised mode
    (the schedules sharded with their patients) and the ES baseline."""
    from test_optimize import SMALL

    from vcohort.optimize import optimize
    from vcohort.optimize.baseline import evolution_strategy

    out = tmp_path / "opt.npz"
    run_on_forced_devices(4, OPT.format(tests=os.path.dirname(__file__)), out, timeout=900)
    sh = np.load(out)
    c = make_cohort(8, seed=5, runin_days=0)
    r = optimize(SMALL, c, iterations=3, progress=False, patience=50)
    p = optimize(SMALL, c.subset(np.arange(4)), personalised=True, iterations=2, progress=False)
    e = evolution_strategy(SMALL, c, simulations=3, seed=1)
    # only the order of the cross-device sums differs (~1e-16 relative), through 3 Adam steps
    np.testing.assert_allclose(sh["loss"], r.history["loss"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(sh["obj"], r.history["objective"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(sh["amount"], r.amount, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sh["p_amount"], p.amount, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sh["e_pen"], e.history["penalised"].to_numpy(), rtol=1e-9)


def test_available_cores_respects_a_container_cpu_quota(tmp_path):
    """`docker --cpus 1.5` (cgroup v2 cpu.max "150000 100000") on a host of more cores: 2
    CPU devices, not one per host core; v1's cfs files likewise; no quota: the affinity mask."""
    import os

    from vcohort.cores import available_cores, cgroup_cpu_quota

    mask = len(os.sched_getaffinity(0))
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(str(v2)) == 1.5 and available_cores(str(v2)) == min(mask, 2)
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(str(v2)) is None and available_cores(str(v2)) == mask
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(str(tmp_path / "v1")) == 0.5
    assert available_cores(str(tmp_path / "v1")) == 1
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(str(tmp_path / "v1")) is None
    (v2 / "cpu.max").write_text("garbage here\n")
    assert cgroup_cpu_quota(str(v2)) is None
    assert cgroup_cpu_quota(str(tmp_path / "none")) is None

"""The fused Pallas engine (`vcohort.fused`): same results as the XLA path, and a kernel that
lowers to Triton for CUDA.

Off a GPU the kernel runs in Pallas' interpreter, which executes the same jaxpr the Triton
lowering compiles; the lowering test then checks, without a GPU, that every operation of the
step (model right-hand side, exact PK, Gauss-node effects, RK4 stage loop, per-step dose
loads) has a Triton lowering rule -- the part that can fail before the kernel reaches a device.
"""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TRIPLE, schedule

from vcohort.cohort import make_cohort
from vcohort.dosing import compile_schedule, parse_regimen
from vcohort.drugs import get_drug
from vcohort.fused import cohort_pallas_fn, kernel_constants, shared_params
from vcohort.model import CSC_IMMUNE, get_model
from vcohort.simulate import Plan, simulate

FOUR = (*TRIPLE, "doxorubicin 60 mg/m2 every 21 d over 30 min")


def assert_same(a, b, rtol):
    """Every saved state, daily output and AUC of two `Trajectories` agree."""
    for grp in ("states", "daily", "auc"):
        x, y = getattr(a, grp), getattr(b, grp)
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_allclose(y[k], x[k], rtol=rtol, atol=0, err_msg=f"{grp}.{k}")
    np.testing.assert_array_equal(a.status, b.status)
    assert np.all(a.status == 0), "compare finite runs (NaN == NaN would pass)"


@pytest.mark.slow
def test_pallas_engine_matches_xla_engine():
    # 4 drugs (2- and 4-compartment PK, bolus and infusion, mg/m2 dosing), 9 days with saves
    # every 4 days (a full block and a remainder); 10 patients in blocks of 128 (padding).
    # Same arithmetic in the same order (in float64; shared parameters become literals that
    # the tracer folds in double precision, which in float32 moves results by ~1e-7), so
    # float64 agrees to round-off: 1e-11 relative allows for differently contracted
    # multiply-adds over 90 steps.
    c = make_cohort(10, seed=3, runin_days=0)
    s = schedule(FOUR, 9)
    kw = dict(save_every=4, progress=False)
    ref = simulate(CSC_IMMUNE, c, s, 9, **kw)
    fused = simulate(CSC_IMMUNE, c, s, 9, engine="pallas", **kw)
    assert_same(ref, fused, rtol=1e-11)
    assert np.all(fused.status == 0)


@pytest.mark.slow
def test_pallas_engine_doses_into_model_states():
    # de Pillis 2009: chemotherapy, IL-2 and TIL are dosed straight into model states (no PK)
    m = get_model("depillis2009")
    c = make_cohort(3, seed=0, model=m, variability=False)
    cat = m.drug_catalogue()
    # the published protocol with TIL and IL-2 moved inside a 4-day horizon; a 100-fold
    # smaller TIL dose keeps the CD8 self-regulation non-stiff at dt 0.005 (see
    # `vcohort.validation.published.depillis_agreement`)
    chemo, til, il2 = (parse_regimen(r, cat) for r in ("chemo", "til", "il2"))
    regs = [chemo, replace(til, start_day=1.0, dose=til.dose / 100), replace(il2, start_day=2.0)]
    s = compile_schedule(regs, 4.0)
    kw = dict(dt=0.005, save_every=1, progress=False)
    ref = simulate(m, c, s, 4, **kw)
    assert np.all(ref.status == 0)
    assert_same(ref, simulate(m, c, s, 4, engine="pallas", **kw), 1e-11)
    # the doses act: the IL-2 infusion (days 2-6) raises the IL-2 state I over the untreated
    # run, and the TIL dose moves the CD8 state L
    untreated = simulate(m, c, None, 4, **kw)
    assert np.all(ref.states["I"][:, -1] > 2 * untreated.states["I"][:, -1])
    assert np.all(np.abs(ref.states["L"][:, 2] / untreated.states["L"][:, 2] - 1) > 0.1)


def test_unknown_engine_is_refused_before_compute():
    with pytest.raises(ValueError, match="engine='cuda'.*allowed.*xla.*pallas"):
        simulate(CSC_IMMUNE, make_cohort(2, seed=0, runin_days=0), None, 3, engine="cuda")


def test_block_must_be_a_power_of_two():
    plan = Plan(CSC_IMMUNE, (), 3, 0.1, 3, jnp.float32)
    with pytest.raises(ValueError, match="block=100 must be a power of two"):
        cohort_pallas_fn(plan, block=100)


def every_drug_schedule(days):
    cat = CSC_IMMUNE.drug_catalogue()
    return compile_schedule([parse_regimen(d.clinical_dose) for d in cat.values()], days)


@pytest.mark.parametrize("regimens", ["triple", "every catalogue drug"])
def test_kernel_lowers_to_triton_for_cuda(regimens):
    # float32, the GPU configuration of benchmarks/bench_gpu.py; 300 patients = 3 blocks
    s = schedule(TRIPLE, 14) if regimens == "triple" else every_drug_schedule(14.0)
    drugs = tuple(get_drug(d) for d in s.drugs)
    plan = Plan(CSC_IMMUNE, drugs, 14, 0.1, 7, jnp.float32)
    c = make_cohort(300, seed=3, runin_days=0, precision="float32")
    bolus, rate = s.step_inputs(plan.dt, plan.n_steps)
    args = (*c.arrays(np.arange(300), drugs, np.float32), bolus, rate)
    shared = shared_params(c.params, np.float32)  # as simulate(engine="pallas") does
    fn = jax.jit(cohort_pallas_fn(plan, block=128, interpret=False, constants=shared))
    text = fn.trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    # one kernel, called once per day inside the day scan
    assert text.count("__gpu$xla.gpu.triton") == 1
    assert 'name = "vcohort_day"' in text


def test_one_kernel_per_model_whatever_the_cohort():
    # only the model's fixed (cv 0) parameters are compiled in, so two different one-patient
    # cohorts (every sampled value "shared" within each) reuse one compiled kernel
    from vcohort import simulate as sim

    s = schedule(TRIPLE, 2)
    runs = []
    for seed in (1, 2):
        before = len(sim._CACHE)
        c = make_cohort(1, seed=seed, runin_days=0)
        runs.append(simulate(CSC_IMMUNE, c, s, 2, engine="pallas", progress=False))
        runs[-1].timings["new_compiles"] = len(sim._CACHE) - before
    assert runs[1].timings["new_compiles"] == 0
    # and the second patient's own parameters were used, not the first's
    assert runs[0].daily["diameter_mm"][0, -1] != runs[1].daily["diameter_mm"][0, -1]


def test_shared_params_are_the_ones_equal_for_every_patient():
    params = {"a": np.array([1.0, 1.0, 1.0]), "b": np.array([1.0, 2.0, 1.0]), "c": np.zeros(3)}
    assert shared_params(params, np.float64) == {"a": 1.0, "c": 0.0}
    # equal once cast to the run's precision counts as shared
    near = {"x": np.array([0.1, 0.1 + 1e-12])}
    assert shared_params(near, np.float64) == {}
    assert shared_params(near, np.float32) == {"x": float(np.float32(0.1))}
    # the default cohort samples 26 of its 115 parameters; the rest are shared
    c = make_cohort(20, seed=1, runin_days=0)
    shared = shared_params(c.params, np.float64)
    assert 0 < len(shared) < len(c.params)
    assert all(np.ptp(c.params[k]) > 0 for k in c.params if k not in shared)
    # restricted to the model's fixed parameters: a one-patient cohort shares only those
    fixed = {r.name for r in CSC_IMMUNE.params if r.cv == 0}
    one = make_cohort(1, seed=1, runin_days=0)
    assert set(shared_params(one.params, np.float64, fixed)) == fixed
    assert set(kernel_constants(CSC_IMMUNE, one.params, np.float64)) == fixed  # simulate's rule
    assert len(shared_params(one.params, np.float64)) == len(one.params)


@pytest.mark.slow
def test_cli_engine_option_runs_the_fused_kernel(tmp_path):
    # the run-in (240 days), the arm and the manifest all go through the chosen engine
    import json

    import pandas as pd

    from vcohort.cli import main

    ep = {}
    for engine in ("xla", "pallas"):
        out = tmp_path / engine
        argv = ["simulate", "--patients", "3", "--days", "14", "--seed", "2", "--no-progress"]
        argv += ["--arm", "pembro=pembrolizumab 200 mg every 21 d", "--engine", engine]
        assert main([*argv, "--out", str(out)]) == 0
        assert json.loads((out / "manifest.json").read_text())["engine"] == engine
        ep[engine] = pd.read_parquet(out / "endpoints.parquet")
        assert (ep[engine]["status"] == 0).all()
    np.testing.assert_allclose(
        ep["pallas"]["final_diameter_mm"], ep["xla"]["final_diameter_mm"], rtol=1e-11
    )


@pytest.mark.slow
def test_experiment_engine_runs_the_whole_trial_on_the_fused_kernel():
    # run-in, plausibility screening and both arms of an experiment go through
    # [simulation] engine; the fused trial equals the XLA trial patient by patient
    from vcohort.experiment import experiment_from_dict
    from vcohort.trial import run_trial

    def trial(engine):
        exp = experiment_from_dict(
            {
                "population": {"size": 6, "seed": 3},
                "simulation": {"horizon_days": 42, "runin_days": 10, "engine": engine},
                "arms": [
                    {"name": "control", "regimens": []},
                    {"name": "pembro", "regimens": ["pembrolizumab 200 mg every 21 d"]},
                ],
            }
        )
        return run_trial(exp, progress=False)

    xla, fused = trial("xla"), trial("pallas")
    assert fused.experiment.config["simulation"]["engine"] == "pallas"
    np.testing.assert_array_equal(fused.screening["plausible"], xla.screening["plausible"])
    for arm in ("control", "pembro"):
        assert_same(xla.trajectories[arm], fused.trajectories[arm], rtol=1e-11)


def test_the_kernel_is_interpreted_unless_the_run_s_devices_are_gpus(monkeypatch):
    """The interpreter was chosen from JAX's default backend, so CPU devices asked for on a GPU
    machine would have been given Triton kernels; it follows the run's devices now."""
    import vcohort.fused as F
    import vcohort.simulate as S

    seen = []
    real = F.cohort_pallas_fn

    def spy(plan, *a, **k):
        seen.append(k.get("interpret"))
        return real(plan, *a, **k)

    monkeypatch.setattr(F, "cohort_pallas_fn", spy)
    monkeypatch.setattr(S, "_CACHE", type(S._CACHE)())  # compile afresh: no cached function
    c = make_cohort(2, seed=0, runin_days=0)
    s = compile_schedule([parse_regimen("pembrolizumab 200 mg every 21 d")], 2.0)
    cpu = jax.devices("cpu")[:1]
    r = simulate(CSC_IMMUNE, c, s, 2, engine="pallas", devices=cpu, progress=False)
    assert seen == [True] and (r.status == 0).all()

"""Run an optimisation experiment end to end (``vcohort optimize``): train, round, compare on a
held-out cohort with the standard regimens and the derivative-free baseline, write the folder.

Output folder: ``manifest.json``, ``history.csv`` (+ ``baseline_history.csv``),
``schedule_slots.csv`` (continuous and rounded dose per slot), ``schedule_nmtran.csv`` (the
rounded schedule as NM-TRAN dose records), ``regimens.json``, ``evaluation_heldout.csv``,
``evaluation_train.csv``, ``personalised.csv`` (if asked), ``figures/`` and ``report.md``.
The optimiser checkpoints to ``.<out>.checkpoint.npz`` beside the folder; ``--resume``
continues it, and it is removed when the run completes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vcohort.optimize.config import Experiment, optax_key, optax_of


def _slots_frame(exp: Experiment, lay, raw, rounded, es=None) -> pd.DataFrame:
    rows = []
    for i, d in enumerate(exp.problem.drugs):
        for j in np.where(lay.valid[i])[0]:
            r = {
                "drug": d.drug,
                "day": float(lay.schedule.time[i, j]),
                "optimised_mg": float(raw[i, j]),
                "rounded_mg": float(rounded[i, j]),
            }
            if es is not None:
                r["es_baseline_mg"] = float(es[i, j])
            rows.append(r)
    return pd.DataFrame(rows)


def optimize_configured(problem, cohort, o: dict, **kw):
    """`vcohort.optimize.loop.optimize` with the settings of a parsed ``[optimizer]`` table
    ``o`` (`parse_experiment`), as `vcohort optimize` runs it; ``kw``: checkpoint, resume,
    progress, ..."""
    from vcohort.optimize.loop import optimize

    return optimize(
        problem,
        cohort,
        optimizer=optax_of(o),
        optimizer_key=optax_key(o),
        iterations=o["iterations"],
        batch_size=o["batch_size"],
        seed=o["seed"],
        al_every=o["al_every"],
        mu=o["mu"],
        patience=o["patience"],
        **kw,
    )


def _optimiser_text(o: dict) -> str:
    """``adam, learning rate 0.05``, or with a cosine schedule ``adam, learning rate 0.05, cosine
    decay to 0.005 at the last iteration (79)``."""
    text = f"{o['name']}, learning rate {o['learning_rate']:g}"
    if o["schedule"] == "cosine":
        end = o["learning_rate"] * o["final_lr_fraction"]
        text += f", cosine decay to {end:g} at the last iteration ({o['iterations'] - 1})"
    return text


def _batch_text(exp: Experiment) -> str:
    """``full-batch`` (every training patient each iteration) or ``mini-batch of N``."""
    b = exp.optimizer["batch_size"]
    return "full-batch" if b is None or b >= exp.train["patients"] else f"mini-batch of {b}"


def _history_figure(hist: pd.DataFrame, es_hist: pd.DataFrame | None, label: str):
    from matplotlib.ticker import MaxNLocator

    from vcohort.plots import new_figure

    fig = new_figure(7.0, 3.6)
    ax = fig.subplots()
    ax.plot(hist["iteration"], hist["objective"], label=f"gradient ({label})")
    if es_hist is not None and len(es_hist):
        ax.plot(es_hist["iteration"], es_hist["objective"], label="(1+1)-ES, same budget")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("cohort simulations")
    ax.set_ylabel("objective (training batch)")
    ax.legend(frameon=False)
    return fig


def run_experiment(
    exp: Experiment,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Everything `vcohort optimize` does; returns the held-out evaluation and timings."""
    from vcohort.cohort import make_cohort
    from vcohort.dosing import to_nmtran
    from vcohort.io import check_output_dir, environment, run_folder, write_csv, write_json
    from vcohort.optimize.baseline import evolution_strategy
    from vcohort.optimize.evaluate import evaluate, standard_schedules
    from vcohort.optimize.problem import TYPICAL_ADULT
    from vcohort.plots import dose_schedule, save_figure

    ck = Path(out).resolve().parent / f".{Path(out).resolve().name}.checkpoint.npz"
    if resume and not overwrite and not ck.exists() and (Path(out) / "manifest.json").is_file():
        raise ValueError(
            f"--resume: {str(out)!r} holds a finished run (its manifest.json) and there is no "
            f"checkpoint of an interrupted one ({ck.name} beside it), so there is nothing to "
            f"resume; pass --overwrite to run it again, or choose another --out"
        )
    out = check_output_dir(out, overwrite)  # before any compute
    if ck.exists() and not resume:
        raise ValueError(
            f"a checkpoint of an interrupted run exists ({ck}); pass --resume to continue it "
            f"or delete it"
        )
    if resume and not ck.exists():
        print(f"note: --resume: no checkpoint ({ck}); starting from the beginning", file=sys.stderr)
    ck.parent.mkdir(parents=True, exist_ok=True)  # --out's parents (checked above)
    pb = exp.problem
    o = exp.optimizer
    timings = {}
    t0 = time.perf_counter()
    train = make_cohort(
        exp.train["patients"], seed=exp.train["seed"], first_id=exp.train["first_id"]
    )
    held = make_cohort(
        exp.heldout["patients"], seed=exp.heldout["seed"], first_id=exp.heldout["first_id"]
    )
    timings["cohorts_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    res = optimize_configured(pb, train, o, checkpoint=ck, resume=resume, progress=progress)
    timings["optimise_s"] = time.perf_counter() - t0
    if res.excluded:  # rounding, the ES baseline and the training table see the same patients
        train = train.without(res.excluded)
    t0 = time.perf_counter()
    k = o["rounding_candidates"]
    rounded, candidates = choose_rounding(pb, res.layout, res.amount, train, k)
    timings["rounding_s"] = time.perf_counter() - t0

    es = es_rounded = None
    if exp.baseline == "es":
        t0 = time.perf_counter()
        es = evolution_strategy(
            pb,
            train,
            simulations=max(res.simulations, 2),
            batch_size=o["batch_size"],
            seed=o["seed"],
        )
        timings["baseline_s"] = time.perf_counter() - t0
        es_rounded = choose_rounding(pb, es.layout, es.amount, train, k)[0]  # the same polish

    scheds = standard_schedules(pb)
    scheds["optimised (continuous)"] = res.schedule()
    scheds["optimised (rounded)"] = rounded.schedule
    if es_rounded is not None:
        scheds["ES baseline (rounded)"] = es_rounded.schedule
    ref = (
        "standard combination"
        if "standard combination" in scheds
        else next(k for k in scheds if k.startswith("standard "))
    )
    t0 = time.perf_counter()
    ev_held = evaluate(pb, held, scheds, reference=ref)
    timings["evaluate_heldout_s"] = time.perf_counter() - t0
    ev_train = evaluate(
        pb, train, {ref: scheds[ref], "optimised (rounded)": rounded.schedule}, reference=ref
    )

    personal = None
    k = o["personalised_patients"]
    if k:
        personal = _personalised(exp, train.subset(np.arange(min(k, len(train)))), res, progress)

    # the user's --overwrite: a folder filled while the run went on is refused, not replaced
    with run_folder(out, overwrite=overwrite) as tmp:
        write_csv(tmp / "history.csv", res.history)
        if es is not None:
            write_csv(tmp / "baseline_history.csv", es.history)
        write_csv(
            tmp / "schedule_slots.csv",
            _slots_frame(
                exp,
                res.layout,
                res.amount,
                rounded.schedule.amount,
                None if es_rounded is None else es_rounded.schedule.amount,
            ),
        )
        nm = to_nmtran(rounded.schedule)
        nm = nm[nm["AMT"] > 0].reset_index(drop=True)  # slots rounded to 0 mg are no doses
        write_csv(tmp / "schedule_nmtran.csv", nm)
        write_json(
            tmp / "regimens.json",
            {
                "optimised (rounded)": rounded.descriptions,
                **({"ES baseline (rounded)": es_rounded.descriptions} if es_rounded else {}),
            },
        )
        if candidates is not None:
            write_csv(tmp / "rounding_candidates.csv", candidates)
        write_csv(tmp / "evaluation_heldout.csv", ev_held)
        write_csv(tmp / "evaluation_train.csv", ev_train)
        if personal is not None:
            write_csv(tmp / "personalised.csv", personal)
        (tmp / "figures").mkdir()
        wt, bsa = TYPICAL_ADULT  # per-kg / per-m2 standard doses drawn for a typical adult
        standard = to_nmtran(scheds[ref], weight_kg=[wt], bsa_m2=[bsa])
        charts = {"standard": standard, "optimised (rounded)": nm}
        save_figure(dose_schedule(charts, horizon=pb.days), tmp / "figures" / "schedule.png")
        save_figure(
            _history_figure(
                res.history,
                None if es is None else es.history,
                f"{exp.optimizer['name']}, {_batch_text(exp)}",
            ),
            tmp / "figures" / "history.png",
        )
        from vcohort.columns import write_columns
        from vcohort.model import CSC_IMMUNE

        write_columns(tmp, CSC_IMMUNE)  # the data dictionary of the tables above
        write_json(
            tmp / "manifest.json",
            {
                "title": exp.title,
                "config": exp.raw,
                "environment": environment(),
                "timings": timings,
                "simulations": res.simulations,
                "convergence": {"best_iteration": res.best_iteration, "stop": res.stop},
                # training patients left out, failing at every or the starting schedule
                "excluded_training_patients": {str(k): v for k, v in res.excluded.items()},
                "constraints_at_best_iterate": res.constraints,
                "reference": ref,
            },
        )
        (tmp / "report.md").write_text(
            _report(exp, res, rounded, ev_held, ev_train, ref, personal, timings, candidates)
        )
    if ck.exists():
        ck.unlink()
    return {
        "heldout": ev_held,
        "train": ev_train,
        "timings": timings,
        "result": res,
        "rounded": rounded,
    }


def choose_rounding(pb, lay, amount, cohort, k: int):
    """The clinical rounding of ``amount`` to give: among `round_candidates` (the nearest and
    up to ``k - 1`` alternatives), the one with the best objective on ``cohort`` (the training
    cohort: the held-out one stays unseen) among those that meet every limit, else the nearest.
    Returns it and the candidates' table (description, objective, feasible, chosen)."""
    from vcohort.optimize.evaluate import evaluate
    from vcohort.optimize.rounding import round_candidates

    cands = round_candidates(pb, lay, amount, k)
    if len(cands) == 1:
        return cands[0], None
    ev = evaluate(pb, cohort, {str(i): c.schedule for i, c in enumerate(cands)})
    # a candidate under which a patient's simulation failed is judged on the others only: not
    # comparable, so not eligible
    eligible = ev["feasible"] & (ev["n_failed"] == 0) & np.isfinite(ev["objective"])
    ok = ev[eligible]
    pick = int(ok["objective"].idxmin()) if len(ok) else 0
    table = pd.DataFrame(
        {
            "candidate": range(len(cands)),
            "regimens": ["; ".join(c.descriptions.values()) for c in cands],
            "objective_train": ev["objective"].to_numpy(),
            "feasible_train": ev["feasible"].to_numpy(),
            "failed_train": ev["n_failed"].to_numpy(),
            "chosen": [i == pick for i in range(len(cands))],
        }
    )
    return cands[pick], table


def _personalised(exp, cohort, pop_res, progress) -> pd.DataFrame | None:
    """One schedule per patient vs the population schedule, on those patients (training), with
    the protocol's hold decisions: each mode's objective, the worst patient's value of each
    per-patient limit (``worst_g:<name>``, scaled; <= 0: every patient meets it) and whether
    every limit holds (``feasible``); a warning when the personalised schedules miss one."""
    import warnings

    import jax
    import jax.numpy as jnp

    from vcohort.optimize.evaluate import feasible
    from vcohort.optimize.loop import NoPatientsLeft, optimize
    from vcohort.optimize.problem import NoMultipliers, make_personal_loss

    pb = exp.problem
    try:
        per = optimize(
            pb,
            cohort,
            personalised=True,
            iterations=exp.optimizer["iterations"],
            optimizer=optax_of(exp.optimizer),
            seed=exp.optimizer["seed"],
            al_every=exp.optimizer["al_every"],
            mu=exp.optimizer["mu"],
            patience=exp.optimizer["patience"],
            progress=progress,
        )
    except NoPatientsLeft as e:  # the population run's results are still written
        warnings.warn(f"personalised mode skipped: {e}", stacklevel=2)
        return None
    if per.excluded:  # patients that failed were left out (`optimize`)
        cohort = cohort.without(per.excluded)
    loss, plan = make_personal_loss(pb, per.layout, soft=False)  # the protocol's holds
    np_dtype = np.float64 if plan.dtype == jnp.float64 else np.float32
    args = cohort.arrays(np.arange(len(cohort)), plan.drugs, np_dtype)

    @jax.jit
    def values(th):
        _, (_, g, obj) = loss(th, NoMultipliers(), 1.0, args)
        return obj, g

    pop_theta = np.broadcast_to(pop_res.theta, (len(cohort),) + pop_res.theta.shape)
    rows = []
    for mode, theta in (("population", pop_theta), ("personalised", per.theta)):
        obj, g = values(jnp.asarray(theta, plan.dtype))
        # the limits hold for every patient in this mode (`make_personal_loss`): the worst
        # patient's value of each (NaN: a patient failed, so not known to be met)
        worst = {k: float(np.max(np.asarray(v))) for k, v in g.items()}
        rows.append(
            {
                "mode": mode,
                "patients": len(cohort),
                "objective": float(obj),
                **{f"worst_g:{k}": v for k, v in worst.items()},
                "feasible": feasible(worst, pb.precision),
            }
        )
    table = pd.DataFrame(rows)
    if not table["feasible"].iloc[1]:
        print(
            f"warning: the personalised schedules do not meet every per-patient limit "
            f"({_worst_text(rows[1])}); personalised.csv compares objectives of schedules "
            f"that are not both within the limits",
            file=sys.stderr,
        )
    return table


def _worst_text(row: dict) -> str:
    """``worst_g:anc_grade4 = 0.21, ...``: a personalised.csv row's worst constraint values."""
    return ", ".join(f"{k} = {v:.3g}" for k, v in row.items() if k.startswith("worst_g:"))


def _rules_note(pb) -> list[str]:
    ruled = [f"{d.drug} ({d.rule.describe()})" for d in pb.drugs if d.rule is not None]
    if not ruled:
        return []
    return [
        f"Protocol dose modification: {'; '.join(ruled)}.  It acts on every patient under every "
        f"schedule below (the standard ones included), with the protocol's own decision; in "
        f"training the decision was smooth (a linear ramp across a band of {pb.hold_softness:g} "
        f"times the threshold) so that the gradient sees later holds.",
        "",
    ]


def _rounding_note(candidates) -> list[str]:
    if candidates is None:
        return []
    c = candidates.set_index("candidate")
    pick = int(c.index[c["chosen"]][0])
    text = (
        f"Rounding: {len(c)} clinical roundings were simulated on the training cohort; "
        f"the one given is candidate {pick} (objective {c.loc[pick, 'objective_train']:.4g}"
    )
    if pick:
        text += f"; the nearest rounding, candidate 0: {c.loc[0, 'objective_train']:.4g}"
    if not c.loc[pick, "feasible_train"]:
        text += "; no candidate met every limit, so the nearest is given"
    return [text + ").  See `rounding_candidates.csv`.", ""]


def _report(exp, res, rounded, ev_held, ev_train, ref, personal, timings, candidates) -> str:
    from vcohort.io import markdown_table

    cols = [
        c
        for c in (
            "schedule",
            "objective",
            "objective_se",
            "diff_vs_reference",
            "diff_se",
            "mean_log_diameter_ratio",
            "orr",
            "pfs6",
            "median_best_pct_change",
            "grade4_neutropenia",
            "feasible",
        )
        if c in ev_held
    ]
    # hold rules: the fraction of patients with a withheld dose, discontinued, and median RDI
    cols += [c for c in ev_held if c.startswith(("any_withheld_", "discontinued_", "median_rdi_"))]
    lines = [
        f"# {exp.title}",
        "",
        f"Objective weights: {exp.problem.weights}; horizon {exp.problem.days} d; "
        f"training cohort {exp.train}; held-out cohort {exp.heldout}.",
        "",
        f"Gradient optimisation ({_optimiser_text(exp.optimizer)}): {res.simulations} "
        f"value-and-gradient evaluations ({_batch_text(exp)}), {timings['optimise_s']:.0f} s.  "
        f"{res.convergence()}",
        "",
        *(
            [
                f"{len(res.excluded)} training patients fail at every schedule or at the "
                f"starting one and were left out of the optimisation (patient_id: reason in "
                f"manifest.json, excluded_training_patients).",
                "",
            ]
            if res.excluded
            else []
        ),
        *_rules_note(exp.problem),
        "## Optimised schedule (rounded to clinical amounts)",
        "",
        *[f"- {v}" for v in rounded.descriptions.values()],
        "",
        *_rounding_note(candidates),
        f"## Held-out evaluation (reference: {ref}; lower objective is better; SE = paired "
        "Monte-Carlo standard error)",
        "",
        markdown_table(ev_held[cols]),
        "",
        "## Training cohort (same two schedules)",
        "",
        markdown_table(ev_train[[c for c in cols if c in ev_train]]),
        "",
        "Constraint values (g <= 0 feasible) are the `g:` columns of `evaluation_heldout.csv`.",
        "",
    ]
    if personal is not None:
        lines += [
            "## Personalised vs population (training patients)",
            "",
            *(
                [
                    "The limits hold per patient here (each patient's AUC within its budget; "
                    "with a grade-4 limit, no patient's ANC nadir below 0.5e9/L); the `worst_g:` "
                    "columns are the worst patient's values (<= 0: met).",
                    "",
                ]
                if any(c.startswith("worst_g:") for c in personal)
                else []
            ),
            markdown_table(personal),
            "",
        ]
        if not bool(personal["feasible"].iloc[-1]):
            lines += [
                "**Warning:** the personalised schedules do not meet every per-patient limit "
                f"({_worst_text(personal.iloc[-1].to_dict())}): their objective is not "
                "comparable with a schedule that does.",
                "",
            ]
    lines += ["![schedule](figures/schedule.png)", "", "![history](figures/history.png)", ""]
    return "\n".join(lines)

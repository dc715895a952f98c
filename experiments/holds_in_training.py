"""Does it matter that the optimiser trains under the protocol's holds?

Optimises `optimize_chemo_holds.toml` three ways on its training cohort:

- ``smooth``: under the hold rule with the smooth training decision (the default);
- ``step``: under the rule with the protocol's step decision (``hold_softness = 0``: its pathwise
  gradient does not see that a higher dose triggers later holds);
- ``ignored``: without the rule in training.

It evaluates each schedule, continuous and rounded to clinical amounts, with the standard
combination, on the held-out cohort under the protocol's rule (seven schedules).

    python experiments/holds_in_training.py [--patients N] [--iterations N] [--out FILE]

(defaults: the experiment file's cohorts and iterations)
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from vcohort.cohort import make_cohort
from vcohort.io import markdown_table
from vcohort.optimize import layout
from vcohort.optimize.config import load_experiment
from vcohort.optimize.evaluate import evaluate, standard_schedules
from vcohort.optimize.experiment import choose_rounding, optimize_configured

HERE = Path(__file__).parent


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default=str(HERE / "optimize_chemo_holds.toml"))
    ap.add_argument("--patients", type=int, default=None, help="train and held-out size")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the table (markdown) here")
    a = ap.parse_args(argv)
    exp = load_experiment(a.experiment)
    pb, o = exp.problem, exp.optimizer
    n_train = a.patients or exp.train["patients"]
    n_held = a.patients or exp.heldout["patients"]
    train = make_cohort(n_train, seed=exp.train["seed"], first_id=exp.train["first_id"])
    held = make_cohort(n_held, seed=exp.heldout["seed"], first_id=exp.heldout["first_id"])
    no_rules = tuple(dataclasses.replace(d, rule=None) for d in pb.drugs)
    variants = {
        "smooth": pb,
        "step": dataclasses.replace(pb, hold_softness=0.0),
        "ignored": dataclasses.replace(pb, drugs=no_rules),
    }
    scheds = {"standard combination": standard_schedules(pb)["standard combination"]}
    lay = layout(pb)  # the rule's layout: every schedule is evaluated under the protocol
    texts, walls = {}, {}
    for name, problem in variants.items():
        t0 = time.perf_counter()
        # as `vcohort optimize` runs it; a cosine schedule decays over this run's iterations
        its = a.iterations or o["iterations"]
        res = optimize_configured(problem, train, o | {"iterations": its}, progress=False)
        walls[name] = time.perf_counter() - t0
        # as `vcohort optimize` does: the best feasible of the clinical roundings on the
        # training cohort, with the rule
        rounded = choose_rounding(pb, lay, res.amount, train, o["rounding_candidates"])[0]
        # the continuous doses under the protocol's rule, as `OptResult.schedule` gives them for
        # the ruled problem (a ruled slot below half a unit gives nothing)
        ruled = dataclasses.replace(res, problem=pb, layout=lay).schedule()
        scheds[f"trained {name} (continuous)"] = ruled
        scheds[f"trained {name}"] = rounded.schedule
        h = res.history["objective"]
        texts[name] = (
            f"{res.simulations} iterations, lowest training objective {h.min():.4g} at "
            f"iteration {h.idxmin()}: " + "; ".join(rounded.descriptions.values())
        )
    ev = evaluate(pb, held, scheds, reference="standard combination")
    cols = [
        c
        for c in ev.columns
        if c in ("schedule", "objective", "diff_vs_reference", "diff_se", "orr", "feasible")
        or c.startswith(("grade4", "g:anc", "any_withheld_", "discontinued_", "median_rdi_"))
    ]
    lines = [
        f"{exp.title}: {n_train} training and {n_held} held-out patients; every schedule "
        f"evaluated on the held-out cohort under the protocol's rule.",
        "",
        markdown_table(ev[cols]),
        "",
        *[f"- trained {k} ({walls[k]:.0f} s): {v}" for k, v in texts.items()],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()

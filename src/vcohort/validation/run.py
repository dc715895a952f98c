"""Run the validation suite, store it as JSON, render it as Markdown.

``vcohort validate`` runs the steps below and (re)writes ``docs/validation.json`` (steps not
run keep their stored results); ``vcohort model-doc`` renders the stored results as the
"Validation" section of ``docs/model.md``.  The tests call the same check functions, and the
behaviour tests compare their fresh measurements with the stored ones, so the document cannot
drift from the code.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

from vcohort.validation.check import Check, fmt


def _engine():
    from vcohort.validation.engine import all_engine

    return all_engine()


def _published():
    from vcohort.validation import published as p

    return [
        p.kuznetsov_agreement(),
        p.kuznetsov_dormancy(),
        p.depillis_agreement(),
        p.depillis_combination(),
    ]


def _sbml():
    from vcohort.validation.sbml_agreement import roadrunner_agreement

    return [roadrunner_agreement()]


def _behaviours():
    from vcohort.validation.behaviours import all_behaviours

    return all_behaviours()


def _clinical():
    from vcohort.validation.clinical import (
        keynote002_calibrated_comparison,
        keynote_comparison,
        orr_by_baseline_size,
        pembrolizumab_dose_response_flat,
        treg_depletion_with_anti_pd1,
    )

    return [
        orr_by_baseline_size(),
        keynote_comparison(),
        keynote002_calibrated_comparison(),
        pembrolizumab_dose_response_flat(),
        treg_depletion_with_anti_pd1(),
    ]


def _sobol():
    from vcohort.validation.sobol_check import ishigami_check

    return [ishigami_check()]


def _drivers():
    from vcohort.validation.drivers import triple_benefit_drivers

    return [triple_benefit_drivers()]


STEPS: dict[str, tuple[str, Callable[[], list[Check]]]] = {
    "engine": ("The integrator against independent solvers", _engine),
    "published": ("Published models through the same engine", _published),
    "sbml": ("SBML export in an independent simulator", _sbml),
    "behaviours": ("The review's mechanisms as behaviours", _behaviours),
    "clinical": ("Clinical relations, not fitted", _clinical),
    "sobol": ("Global sensitivity: Sobol indices on a known function", _sobol),
    "drivers": ("What drives the triple combination's benefit", _drivers),
}


# steps that need a package `pip install .` does not bring (the test extra does)
NEEDS = {"sbml": ("roadrunner", "libroadrunner"), "sobol": ("SALib", "SALib")}


def check_steps(only) -> list[str]:
    """The steps to run (all when ``only`` is empty), validated before any compute: known
    names, and the packages they need importable."""
    import importlib.util

    steps = list(only) if only else list(STEPS)
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise ValueError(f"validation step(s) {bad}; allowed: {', '.join(STEPS)}")
    absent = lambda mod: importlib.util.find_spec(mod) is None  # noqa: E731
    missing = [(s, *NEEDS[s]) for s in steps if s in NEEDS and absent(NEEDS[s][0])]
    if missing:
        pkgs = sorted({pip for _, _, pip in missing})
        raise ValueError(
            f"validation step(s) {', '.join(s for s, _, _ in missing)} need "
            f"{', '.join(pkgs)}, not installed: pip install {' '.join(pkgs)} (or "
            f"'.[test]'), or leave the step(s) out with --only"
        )
    return steps


def run_steps(steps, progress: Callable[[str], None] = print) -> dict:
    """{step: {"seconds", "checks": [Check.to_dict()]}} for each step, in order."""
    out = {}
    for s in check_steps(steps):
        t0 = time.perf_counter()
        progress(f"validation: {s} ...")
        checks = STEPS[s][1]()
        out[s] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "checks": [c.to_dict() for c in checks],
        }
        judged = [c for c in checks if c.passed is not None]
        n_ok = sum(bool(c.passed) for c in judged)
        extra = f" (+{len(checks) - len(judged)} comparisons)" if len(judged) < len(checks) else ""
        progress(f"validation: {s}: {n_ok}/{len(judged)} passed{extra} in {out[s]['seconds']} s")
    return out


def environment() -> dict:
    import jax

    from vcohort import __version__

    return {
        "date": time.strftime("%Y-%m-%d"),
        "vcohort": __version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
    }


def load(path: Path) -> dict:
    """Stored results (empty when ``path`` does not exist yet); raises, naming the file, when it
    is not a `vcohort validate` results file (it would be overwritten by one)."""
    path = Path(path)
    if not path.exists():
        return {"steps": {}}
    what = f"{str(path)!r} is not a vcohort validate results file"
    if not path.is_file():
        raise ValueError(f"{what}: it is a folder; give a .json file")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} (not JSON: {e}); give a new file or a results file") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
        raise ValueError(f"{what} (no 'steps' object); give a new file or a results file")
    return data


def update(path: Path, results: dict) -> dict:
    """Merge fresh step results into the stored file (other steps kept), written atomically."""
    path = Path(path)
    data = load(path)
    for step, res in results.items():
        data["steps"][step] = res | {"environment": environment()}
    data["steps"] = {s: data["steps"][s] for s in STEPS if s in data["steps"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return data


def stored_checks(path: Path) -> dict[str, Check]:
    """Stored checks by id."""
    data = load(path)
    return {c["id"]: Check.from_dict(c) for s in data["steps"].values() for c in s["checks"]}


def render(data: dict) -> str:
    """The "Validation" section of docs/model.md from stored results."""
    out = [
        "## Validation",
        "",
        "Generated by `vcohort validate` (results in `docs/validation.json`); each check is the "
        "code the test suite runs (`src/vcohort/validation/`), with its criteria and whether "
        "they held.",
        "",
    ]
    steps = data.get("steps", {})
    if not steps:
        return "\n".join(out + ["_Not run yet: `vcohort validate`._", ""])
    for step, (title, _) in STEPS.items():
        if step not in steps:
            continue
        res = steps[step]
        env = res["environment"]
        out += [
            f"### {title}",
            "",
            f"_Run {env['date']}, vcohort {env['vcohort']}, jax {env['jax']} ({env['backend']}), "
            f"{res['seconds']} s._",
            "",
        ]
        for c in res["checks"]:
            out += _render_check(c)
    return "\n".join(out)


def _render_check(c: dict) -> list[str]:
    mark = {True: "passed", False: "**FAILED**", None: "comparison, no pass/fail criterion"}[
        c["passed"]
    ]
    out = [f"**{c['title']}** ({mark}).  Source: {c['source']}.", ""]
    if c["note"]:
        out += [c["note"], ""]
    v = c["values"]
    if c["id"] == "sensitivity.triple_drivers":
        out += ["| rank | parameter | median S | IQR | median abs(S) |", "|---|---|---|---|---|"]
        for i, name in enumerate(v["parameter"]):
            out.append(
                f"| {i + 1} | `{name}` | {fmt(v['median'][i])} | "
                f"{fmt(v['q25'][i])} to {fmt(v['q75'][i])} | {fmt(v['median_abs'][i])} |"
            )
        out += ["", f"Median benefit {fmt(v['median_benefit'])}; {v['parameters']} parameters.", ""]
    else:
        out += ["| measured | value |", "|---|---|"]
        out += [f"| {k} | {fmt(x)} |" for k, x in v.items()]
        out.append("")
    out += [f"- {'✓' if ok else '✗'} {crit}" for crit, ok in c["criteria"]]
    return out + [""]

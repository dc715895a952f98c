"""Command line: ``vcohort simulate``, ``demo``, ``trial``, ``calibrate``, ``optimize``,
``batch``, ``sensitivity``, ``export-sbml``, ``validate``, ``model-doc``, ``drugs``.

One module per group of commands, each with an ``add*`` function that declares the sub-command and a
``run*`` function that executes it.  Every argument is validated (regimens parsed, output folder
checked) before anything is compiled or simulated; a `ValueError` becomes ``vcohort: error: ...``
and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from vcohort.cli import optimize, sensitivity, simulate, tools, trial
from vcohort.cli.simulate import DEMO_ARMS

__all__ = ["DEMO_ARMS", "build_parser", "main"]

# command -> (declare, run)
COMMANDS = {
    "simulate": (simulate.add, simulate.run_simulate),
    "demo": (None, simulate.run_demo),  # declared with simulate
    "trial": (trial.add_trial, trial.run_trial),
    "calibrate": (trial.add_calibrate, trial.run_calibrate),
    "optimize": (optimize.add, optimize.run),
    "batch": (trial.add_batch, trial.run_batch),
    "sensitivity": (sensitivity.add, sensitivity.run),
    "export-sbml": (tools.add_export_sbml, tools.run_export_sbml),
    "validate": (tools.add_validate, tools.run_validate),
    "model-doc": (tools.add_model_doc, tools.run_model_doc),
    "drugs": (tools.add_drugs, tools.run_drugs),
}
# commands that take the user's own drugs (`vcohort.drug_file`)
DRUG_FILE_COMMANDS = ("simulate", "trial", "calibrate", "optimize", "batch", "sensitivity",
                      "export-sbml", "drugs")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="vcohort",
        description="Virtual cohorts of cancer patients: simulate, run trials, calibrate, "
        "optimise schedules, validate.",
    )
    from vcohort import __version__

    ap.add_argument("--version", action="version", version=f"vcohort {__version__}")
    ap.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        metavar="N",
        help="JAX CPU devices to shard patients over (default: every core this process may use; "
        "1: one device, XLA's own threading); ignored for GPU runs",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        if add is not None:
            add(sub)
    for name in DRUG_FILE_COMMANDS:
        sub.choices[name].add_argument(
            "--drug-file",
            action="append",
            default=[],
            metavar="FILE",
            help="a drug file (TOML) adding your own drugs to the catalogue; may repeat (see "
            "experiments/drugs/nivolumab.toml)",
        )
    return ap


def main(argv: list[str] | None = None, *, all_cores: bool = False) -> int:
    """Run a command.  ``all_cores`` (the ``vcohort`` executable) gives JAX one CPU device per
    core unless ``--cpu-devices`` says otherwise; called from a program, only an explicit
    ``--cpu-devices`` touches JAX's device count (`vcohort.cores.use_cpu_cores`)."""
    args = _parse(build_parser(), argv)
    from vcohort.io import command_inputs

    # files named on the command line, which --overwrite must not delete with an --out folder
    named = [
        x
        for k, v in vars(args).items()
        if k != "out"
        for x in (v if isinstance(v, list | tuple) else [v])
        if isinstance(x, str | os.PathLike) and os.path.isfile(x)
    ]
    with command_inputs(named):
        return _main(args, all_cores)


def _parse(ap: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """``ap.parse_args(argv)``, with the option a mistyped one most likely meant
    (``--precison``: did you mean '--precision'?) in the error (exit status 2, as argparse)."""
    args, extra = ap.parse_known_args(argv)
    if extra:
        from vcohort.config import close_names

        sub = ap._subparsers._group_actions[0].choices[args.command]  # noqa: SLF001
        options = {
            o.lstrip("-"): o
            for a in sub._actions  # noqa: SLF001
            for o in a.option_strings
            if o.startswith("--")
        }
        top = {  # the program's own options go before the command
            o.lstrip("-"): o
            for a in ap._actions  # noqa: SLF001
            for o in a.option_strings
            if o.startswith("--") and o not in ("--help", "--version")
        }
        hints = []
        for x in extra:  # compared without the dashes, which all options share
            name = x.split("=")[0]
            close = close_names(name.lstrip("-"), options) if x[:1] == "-" else []
            above = close_names(name.lstrip("-"), top) if x[:1] == "-" and not close else []
            if close:
                hints.append(f"{name}: did you mean {' or '.join(options[c] for c in close)}?")
            elif above:
                hints.append(
                    f"{name}: {top[above[0]]} is an option of vcohort itself, given before the "
                    f"command (vcohort {top[above[0]]} N {args.command} ...)"
                )
        hint = f" ({'; '.join(hints)})" if hints else ""
        sub.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def _main(args, all_cores: bool) -> int:
    try:
        if args.cpu_devices is not None or all_cores:
            from vcohort.cores import use_cpu_cores

            use_cpu_cores(args.cpu_devices, strict=False)  # before anything runs on JAX
        if getattr(args, "drug_file", None):
            from vcohort.drug_file import use_drug_files
            from vcohort.model import get_model

            # validated, for the model the command runs, before it reads a regimen
            model = get_model(args.model) if getattr(args, "model", None) else None
            use_drug_files(args.drug_file, model=model)
        return COMMANDS[args.command][1](args)
    except ValueError as e:
        print(f"vcohort: error: {e}", file=sys.stderr)
        return 2


def entry() -> int:
    """The ``vcohort`` executable and ``python -m vcohort.cli``: every CPU core by default."""
    return main(all_cores=True)

"""SBML Level 3 Version 2 export of a model, a patient's parameters and a dose schedule.

The rate expressions are not written by hand: the model's own right-hand side (the same
``rates``/``rhs`` functions the simulator runs) is evaluated on a tiny expression-tracing class
(`Sym`), and the traced trees are printed as MathML, so the export cannot drift from the code.

What the file holds (all time in days):

* every model state as a species (amount, ``hasOnlySubstanceUnits``) with a ``rateRule``;
* every named mechanism term of ``rates`` as a parameter ``r_<name>`` with an
  ``assignmentRule`` (the rate rules are written in terms of them, as ``rhs`` is);
* each drug's PK compartments as species ``<drug>_<compartment>`` (mg) with rate rules from its
  rate matrix, plasma/effect-site concentrations ``conc_<drug>_<site>``, and the combined
  effect channels ``e_<channel>`` (Bliss/sum, `vcohort.simulate.combine_effects`) as
  assignment rules;
* the daily outputs (e.g. ``diameter_mm``) as assignment rules;
* doses as events: a bolus adds to the dosing compartment at its time; an infusion raises the
  parameter ``<drug>_infusion_rate`` (mg/day) at its start and lowers it at its end.  Amounts
  per kg or per m² are converted with the patient's weight and BSA.

Units (`export_units`, `unit_definition`): every species, model parameter, drug amount,
concentration, infusion rate, PK parameter and fraction effect channel carries an SBML unit
definition built from its table's unit string; the notes repeat them in words.

Drug effects read the instantaneous concentration, as in `vcohort.reference` (the production
simulator's step-mean forcing is a numerical choice, not part of the model).  Max/min are
written as ``piecewise`` so that every SBML L3 tool reads them.
"""

from __future__ import annotations

import math
from unittest import mock
from xml.sax.saxutils import escape

import numpy as np

SBML_NS = "http://www.sbml.org/sbml/level3/version2/core"
MATHML_NS = "http://www.w3.org/1998/Math/MathML"
_BINARY = {"plus", "minus", "times", "divide", "power"}


# ---------------------------------------------------------------------------- tracing
class Sym:
    """An expression node: ``op`` is ``ci`` (a name), ``cn`` (a number) or an operator."""

    __slots__ = ("op", "args")

    def __init__(self, op: str, *args):
        self.op, self.args = op, args

    @staticmethod
    def wrap(x) -> Sym:
        if isinstance(x, Sym):
            return x
        if isinstance(x, int | float | np.floating | np.integer):
            return Sym("cn", float(x))
        raise TypeError(f"cannot trace a value of type {type(x).__name__}")

    def _bin(self, op, a, b):
        a, b = Sym.wrap(a), Sym.wrap(b)
        if a.op == "cn" and b.op == "cn":  # fold constants
            return Sym("cn", _fold(op, a.args[0], b.args[0]))
        zero = lambda s: s.op == "cn" and s.args[0] == 0.0  # noqa: E731
        one = lambda s: s.op == "cn" and s.args[0] == 1.0  # noqa: E731
        if op == "plus" and zero(a):
            return b
        if op in ("plus", "minus") and zero(b):
            return a
        if op == "minus" and zero(a):
            return Sym("neg", b)
        if op == "times" and (zero(a) or zero(b)):
            return Sym("cn", 0.0)
        if op == "times" and one(a):
            return b
        if op in ("times", "divide", "power") and one(b):
            return a
        return Sym(op, a, b)

    __add__ = lambda s, o: s._bin("plus", s, o)  # noqa: E731
    __radd__ = lambda s, o: s._bin("plus", o, s)  # noqa: E731
    __sub__ = lambda s, o: s._bin("minus", s, o)  # noqa: E731
    __rsub__ = lambda s, o: s._bin("minus", o, s)  # noqa: E731
    __mul__ = lambda s, o: s._bin("times", s, o)  # noqa: E731
    __rmul__ = lambda s, o: s._bin("times", o, s)  # noqa: E731
    __truediv__ = lambda s, o: s._bin("divide", s, o)  # noqa: E731
    __rtruediv__ = lambda s, o: s._bin("divide", o, s)  # noqa: E731
    __pow__ = lambda s, o: s._bin("power", s, o)  # noqa: E731
    __rpow__ = lambda s, o: s._bin("power", o, s)  # noqa: E731

    def __neg__(self):
        return Sym("neg", self)

    def __bool__(self):
        raise TypeError("the model branches on a traced value; SBML export needs xp functions")


def _fold(op: str, x: float, y: float) -> float:
    if op == "plus":
        return x + y
    if op == "minus":
        return x - y
    if op == "times":
        return x * y
    if op == "divide":
        return x / y
    return x**y


class _XP:
    """The ``xp`` namespace the model's functions call, on traced values."""

    @staticmethod
    def maximum(a, b):
        return Sym("max", Sym.wrap(a), Sym.wrap(b))

    @staticmethod
    def minimum(a, b):
        return Sym("min", Sym.wrap(a), Sym.wrap(b))

    @staticmethod
    def log(a):
        return Sym("ln", Sym.wrap(a))

    @staticmethod
    def exp(a):
        return Sym("exp", Sym.wrap(a))


XP = _XP()


def mathml(e) -> str:
    """Content MathML of a traced expression (no ``<math>`` wrapper)."""
    e = Sym.wrap(e)
    if e.op == "ci":
        return f"<ci> {e.args[0]} </ci>"
    if e.op == "cn":
        v = e.args[0]
        if not math.isfinite(v):
            raise ValueError(f"non-finite constant {v} in an exported expression")
        return f"<cn> {v!r} </cn>"
    a = [mathml(x) for x in e.args]
    if e.op in _BINARY:
        return f"<apply><{e.op}/>{a[0]}{a[1]}</apply>"
    if e.op == "neg":
        return f"<apply><minus/>{a[0]}</apply>"
    if e.op in ("ln", "exp"):
        return f"<apply><{e.op}/>{a[0]}</apply>"
    if e.op in ("max", "min"):
        cmp = "geq" if e.op == "max" else "leq"
        return (
            f"<piecewise><piece>{a[0]}<apply><{cmp}/>{a[0]}{a[1]}</apply></piece>"
            f"<otherwise>{a[1]}</otherwise></piecewise>"
        )
    raise ValueError(f"unknown operator {e.op!r}")


# ---------------------------------------------------------------------------- the model
def trace_model(model, drugs) -> dict:
    """Trace the model and drugs on symbols: returns named expressions by kind
    (``rates``, ``effects``, ``conc``, ``rhs``, ``pk_rhs``, ``daily``)."""
    from vcohort.simulate import combine_effects

    ci = lambda n: Sym("ci", n)  # noqa: E731
    y = {s: ci(s) for s in model.states}
    p = {n: ci(n) for n in model.params.names}
    conc, pk_rhs, inflow = [], {}, {}
    pk_drugs = [d for d in drugs if d.target_state is None]
    for d in drugs:
        rate = ci(f"{d.name}_infusion_rate")
        if d.target_state is not None:
            inflow[d.target_state] = inflow.get(d.target_state, 0.0) + rate
            continue
        ind = {k: ci(f"{d.name}_{k}") for k in d.params.names}
        A = d.rate_matrix(ind)  # noqa: N806
        amt = [ci(f"{d.name}_{c}") for c in d.compartments]
        for i, c in enumerate(d.compartments):
            rhs_i = sum((A[i][j] * amt[j] for j in range(len(amt))), Sym("cn", 0.0))
            if i == d.dosing_compartment:
                rhs_i = rhs_i + rate
            pk_rhs[f"{d.name}_{c}"] = rhs_i
        # an adaptive solver undershoots an emptying compartment by round-off (-1e-14 mg):
        # a Hill exponent != 1 of a negative concentration is NaN, so the export reads it as 0
        # (vcohort's exact propagators never go below 0; its own equations are unchanged)
        conc.append(
            {k: XP.maximum(amt[i], 0.0) / ind["V1"] for k, i in d.observed_indices().items()}
        )
    effects = combine_effects(pk_drugs, conc, model)
    out_conc = {
        f"conc_{d.name}_{k}": v for d, c in zip(pk_drugs, conc, strict=True) for k, v in c.items()
    }
    e_sym = {k: ci(f"e_{k}") for k in effects}
    rates = model.rates(y, p, e_sym, XP, 1.0)
    r_sym = {k: ci(f"r_{k}") for k in rates}
    mod = __import__(model.rhs.__module__, fromlist=["rates"])
    if getattr(mod, "rates", None) is model.rates:  # rhs in terms of the named terms
        with mock.patch.object(mod, "rates", lambda *a, **k: r_sym):
            rhs = model.rhs(y, p, e_sym, XP, 1.0)
    else:
        rhs = model.rhs(y, p, e_sym, XP, 1.0)
    rhs = {k: v + inflow[k] if k in inflow else v for k, v in rhs.items()}
    return {
        "rates": rates,
        "effects": effects,
        "conc": out_conc,
        "rhs": rhs,
        "pk_rhs": pk_rhs,
        "daily": model.daily_outputs(y, p),
    }


def _dose_events(schedule, drugs, weight_kg, bsa_m2) -> list[tuple]:
    """(id, time, target, delta) events of a schedule, amounts in mg for this patient; one per
    time and variable (simultaneous changes summed)."""
    by_name = {d.name: d for d in drugs}
    scale = np.array([1.0, weight_kg, bsa_m2])
    amount = np.asarray(schedule.amount, dtype=np.float64)
    out = []
    for i, name in enumerate(schedule.drugs):
        d = by_name[name]
        target = d.target_state or f"{name}_{d.compartments[d.dosing_compartment]}"
        for j in np.where(schedule.valid[i])[0]:
            t, dur = float(schedule.time[i, j]), float(schedule.duration[i, j])
            mg = float(amount[i, j] * scale[schedule.kind[i, j]])
            if dur > 0:
                out.append((f"{name}_start_{j}", t, f"{name}_infusion_rate", mg / dur))
                out.append((f"{name}_stop_{j}", t + dur, f"{name}_infusion_rate", -mg / dur))
            else:
                out.append((f"{name}_dose_{j}", t, target, mg))
    # one event per (time, variable), its changes summed: SBML evaluates simultaneous events'
    # assignments from the same values, so two doses of one drug at one time (a loading dose
    # with the first maintenance dose, an infusion starting as another stops) would keep only
    # one change (a dose lost, or a negative infusion rate left running)
    # (times within 1e-9 day are one: an infusion's stop t + dur and the next start differ in the
    # last bit, e.g. 0.1 + 0.5 vs 0.6, and a solver may still fire them together)
    merged: dict = {}
    for eid, t, target, delta in out:
        key = (round(t, 9), target)
        if key in merged:
            merged[key][3] += delta
        else:
            merged[key] = [eid, t, target, delta]
    return [tuple(e) for e in merged.values() if e[3] != 0.0]


def to_sbml(
    model,
    params: dict,
    y0: dict,
    *,
    drugs=(),
    pk: dict | None = None,
    weight_kg: float = 70.0,
    bsa_m2: float = 1.8,
    schedule=None,
    model_id: str = "vcohort_patient",
) -> str:
    """SBML L3V2 text of ``model`` with parameter values ``params``, initial state ``y0``, the
    PK of ``drugs`` (typical-weight values ``pk[drug]``, scaled to ``weight_kg``) and the doses
    of ``schedule`` as events."""
    drugs = list(drugs)
    twice = sorted({d.name for d in drugs if [e.name for e in drugs].count(d.name) > 1})
    if twice:
        raise ValueError(f"drugs: {', '.join(twice)} given more than once; give each drug once")
    if schedule is not None:
        names = [d.name for d in drugs]
        missing = [d for d in schedule.drugs if d not in names]
        if missing:
            raise ValueError(f"schedule drugs {missing} are not among the exported drugs {names}")
    tr = trace_model(model, drugs)
    species = {s: float(y0[s]) for s in model.states}
    consts = {n: float(params[n]) for n in model.params.names}
    for d in drugs:
        consts[f"{d.name}_infusion_rate"] = 0.0  # changed by events: not constant
        if d.target_state is not None:
            continue
        ind = d.individual({k: float(v) for k, v in (pk or {})[d.name].items()}, weight_kg)
        consts.update({f"{d.name}_{k}": float(ind[k]) for k in d.params.names})
        species.update({f"{d.name}_{c}": 0.0 for c in d.compartments})
    assigned = {}
    for group, prefix in (("conc", ""), ("effects", "e_"), ("rates", "r_"), ("daily", "")):
        for k, v in tr[group].items():
            if group == "daily" and k in species:  # a daily output that is a state
                continue
            if isinstance(v, Sym):
                assigned[prefix + k] = v
            else:
                consts[prefix + k] = float(v)
    ids = list(species) + list(consts) + list(assigned)
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"SBML id clash between states, parameters and terms: {sorted(dup)}")
    variable = {f"{d.name}_infusion_rate" for d in drugs}
    # declared units (`export_units`; a unit string without SI meaning, e.g. IU, is left
    # undeclared and stays in the notes)
    units, defs = {}, {}
    for k, text in export_units(model, drugs).items():
        ud = unit_definition(text)
        if ud is None:
            continue
        uid, xml = ud
        if xml is not None:
            # two spellings may give one id ("mg/L day", "mg/(L day)"): a clash gets a suffix
            base, i = uid, 1
            while uid in defs and defs[uid] != xml:
                i += 1
                uid = f"{base}_{i}"
                xml = xml.replace(f'id="{base}"', f'id="{uid}"', 1)
            defs.setdefault(uid, xml)
        units[k] = uid
    ua = lambda k, attr="units": f' {attr}="{units[k]}"' if k in units else ""  # noqa: E731

    x = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<sbml xmlns="{SBML_NS}" level="3" version="2">',
        f'  <model id="{model_id}" name="vcohort {escape(model.name)}" timeUnits="day">',
        '    <notes><body xmlns="http://www.w3.org/1999/xhtml">'
        + "".join(f"<p>{escape(p)}</p>" for p in units_notes(model, drugs))
        + "</body></notes>",
        "    <listOfUnitDefinitions>",
        '      <unitDefinition id="day"><listOfUnits>'
        '<unit kind="second" exponent="1" scale="0" multiplier="86400"/>'
        "</listOfUnits></unitDefinition>",
        *defs.values(),
        "    </listOfUnitDefinitions>",
        "    <listOfCompartments>",
        '      <compartment id="body" spatialDimensions="3" size="1" units="dimensionless" '
        'constant="true"/>',
        "    </listOfCompartments>",
        "    <listOfSpecies>",
    ]
    for s, v in species.items():
        x.append(
            f'      <species id="{s}" compartment="body" initialAmount="{v!r}"'
            f'{ua(s, "substanceUnits")} hasOnlySubstanceUnits="true" boundaryCondition="false" '
            'constant="false"/>'
        )
    x += ["    </listOfSpecies>", "    <listOfParameters>"]
    for k, v in consts.items():
        c = "false" if k in variable else "true"
        x.append(f'      <parameter id="{k}" value="{v!r}"{ua(k)} constant="{c}"/>')
    for k in assigned:
        x.append(f'      <parameter id="{k}"{ua(k)} constant="false"/>')
    x += ["    </listOfParameters>", "    <listOfRules>"]
    m = f'<math xmlns="{MATHML_NS}">'
    for k, v in assigned.items():
        x.append(f'      <assignmentRule variable="{k}">{m}{mathml(v)}</math></assignmentRule>')
    for k, v in list(tr["rhs"].items()) + list(tr["pk_rhs"].items()):
        x.append(f'      <rateRule variable="{k}">{m}{mathml(v)}</math></rateRule>')
    x.append("    </listOfRules>")
    events = _dose_events(schedule, drugs, weight_kg, bsa_m2) if schedule is not None else []
    if events:
        x.append("    <listOfEvents>")
        for eid, t, target, delta in events:
            trig = f'<apply><geq/><csymbol encoding="text" definitionURL="http://www.sbml.org/sbml/symbols/time"> time </csymbol><cn> {t!r} </cn></apply>'  # noqa: E501
            val = f"<apply><plus/><ci> {target} </ci><cn> {delta!r} </cn></apply>"
            x.append(
                f'      <event id="{eid}" useValuesFromTriggerTime="true">'
                f'<trigger initialValue="false" persistent="true">{m}{trig}</math></trigger>'
                f'<listOfEventAssignments><eventAssignment variable="{target}">{m}{val}</math>'
                "</eventAssignment></listOfEventAssignments></event>"
            )
        x.append("    </listOfEvents>")
    x += ["  </model>", "</sbml>", ""]
    return "\n".join(x)


# ---------------------------------------------------------------------------- units
# SBML base units of the symbols the parameter tables use: symbol -> (factor, {kind: exponent});
# an SBML unit is (multiplier x 10^scale x kind)^exponent (SBML L3V2 spec, section 4.4)
_UNIT_ATOMS = {
    "day": (86400.0, {"second": 1}),
    "cell": (1.0, {"item": 1}),
    "L": (1.0, {"litre": 1}),
    "mL": (1e-3, {"litre": 1}),
    "mg": (1e-3, {"gram": 1}),
    "mm": (1e-3, {"metre": 1}),
    "nM": (1e-9, {"mole": 1, "litre": -1}),
    "uM": (1e-6, {"mole": 1, "litre": -1}),
    "mM": (1e-3, {"mole": 1, "litre": -1}),
    "pg": (1e-12, {"gram": 1}),
    "ng": (1e-9, {"gram": 1}),
    "ug": (1e-6, {"gram": 1}),
    "g": (1.0, {"gram": 1}),
    "rel": (1.0, {}),
    "relative": (1.0, {}),
}
_UNIT_ALIASES = {"days": "day", "d": "day", "cells": "cell", "l": "L"}


def parse_unit(text: str):
    """``(factor, {kind: exponent})`` of a unit string of the parameter tables ("1/day",
    "nM/day", "cells/mL/day", "1e9/L", "L^2/(cell^2 day)", "-" ...), or None when a symbol has
    no SI meaning (e.g. IU) or the text does not parse: such a quantity is exported without
    units.  Grammar: products by space or ``*``, ``/`` divides by the next factor, ``^`` an
    integer power, parentheses group; a bare number is a count of items (1e9/L: 10^9 cells)."""
    import re

    t = str(text).strip()
    if t in ("-", "1", "dimensionless", "fraction"):
        return 1.0, {}
    toks = re.findall(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?|[A-Za-z_]+|\^-?\d+|[()/*]|\S", t)
    if "".join(toks) != re.sub(r"\s+", "", t):
        return None
    pos = 0

    def mul(a, b, sign=1):
        kinds = dict(a[1])
        for k, e in b[1].items():
            kinds[k] = kinds.get(k, 0) + sign * e
        return a[0] * b[0] ** sign, {k: e for k, e in kinds.items() if e}

    def atom():
        nonlocal pos
        if pos >= len(toks):
            raise ValueError
        tok = toks[pos]
        pos += 1
        if tok == "(":
            v = expr()
            if pos >= len(toks) or toks[pos] != ")":
                raise ValueError
            pos += 1
        elif tok[0].isdigit():
            v = (float(tok), {})  # a factor (1e6 cells); a count on its own: below
        elif _UNIT_ALIASES.get(tok, tok) in _UNIT_ATOMS:
            v = _UNIT_ATOMS[_UNIT_ALIASES.get(tok, tok)]
        else:
            raise ValueError
        if pos < len(toks) and toks[pos].startswith("^"):
            n = int(toks[pos][1:])
            pos += 1
            v = (v[0] ** n, {k: e * n for k, e in v[1].items()})
        return v

    def expr():
        nonlocal pos
        v = atom()
        while pos < len(toks) and toks[pos] != ")":
            if toks[pos] == "/":
                pos += 1
                v = mul(v, atom(), -1)
            else:
                if toks[pos] == "*":
                    pos += 1
                v = mul(v, atom())
        return v

    try:
        out = expr()
    except (ValueError, IndexError):
        return None
    if pos != len(toks):
        return None
    pos = 0
    first = atom()  # a count on its own (1e9/L, 10^9/L: 10^9 cells), not a factor (1e6 cells)
    if not first[1] and first[0] != 1.0 and (pos == len(toks) or toks[pos] == "/"):
        out = (out[0], {**out[1], "item": out[1].get("item", 0) + 1})
    return out


def unit_definition(text: str):
    """``(id, <unitDefinition> XML)`` for a unit string (`parse_unit`), ``("dimensionless",
    None)`` for a pure number of factor 1, or None when it cannot be expressed."""
    import re

    u = parse_unit(text)
    if u is None:
        return None
    factor, kinds = u
    if not kinds:
        if factor == 1.0:
            return "dimensionless", None
        kinds = {"dimensionless": 1}
    if kinds == {"second": 1} and factor == 86400.0:
        return "day", None  # the model's time unit, defined once
    uid = "u_" + re.sub(r"\W", "_", str(text).replace("/", "_per_").replace("^", "_pow_"))
    uid = re.sub(r"_+", "_", uid).strip("_")
    parts = []
    # the whole factor on one unit, one of exponent 1 if there is one: (m x kind)^e
    order = sorted(kinds.items(), key=lambda ke: (ke[1] != 1, ke[1] != -1, ke[0]))
    for i, (k, e) in enumerate(order):
        m = factor ** (1.0 / e) if i == 0 else 1.0
        parts.append(f'<unit kind="{k}" exponent="{e}" scale="0" multiplier="{m!r}"/>')
    xml = (
        f'      <unitDefinition id="{uid}" name="{escape(str(text))}"><listOfUnits>'
        + "".join(parts)
        + "</listOfUnits></unitDefinition>"
    )
    return uid, xml


def export_units(model, drugs) -> dict[str, str]:
    """The unit string of every exported quantity whose unit is known: model states
    (`Model.state_units`), model parameters, each drug's amounts, concentrations, infusion
    rate and PK parameters, and the fraction (Emax) effect channels."""
    out = dict(getattr(model, "state_units", None) or {})
    out.update({r.name: r.unit for r in getattr(model.params, "rows", ())})
    su = getattr(model, "state_units", None) or {}
    kinds = getattr(model, "effect_channels", {}) or {}
    for d in drugs:
        if d.target_state is not None:
            if d.target_state in su:
                out[f"{d.name}_infusion_rate"] = f"{su[d.target_state]}/day"
            continue
        u = d.amount_unit
        out.update({f"{d.name}_{c}": u for c in d.compartments})
        out.update({f"conc_{d.name}_{k}": f"{u}/L" for k in d.observed_indices()})
        out[f"{d.name}_infusion_rate"] = f"{u}/day"
        out.update({f"{d.name}_{p.name}": p.unit for p in d.params})
        for e in d.effects:
            if kinds.get(e.channel, ("",))[0] == "emax":
                out[f"e_{e.channel}"] = "-"
    return out


def units_notes(model, drugs) -> list[str]:
    """The export's units, one paragraph each, for its notes: time, the model's states
    (`Model.state_units`) and parameters (their table's units), each drug's amounts,
    concentrations, infusion rate and PK parameters (`vcohort.drug`: mg, or 1e6 cells for a
    cell product; a drug dosed into a model state in that state's unit) and the effect
    channels it drives."""
    out = [
        f"Exported by vcohort from model {model.name} ({model.source}).",
        "Units: time in days (every rate is per day).",
    ]
    su = getattr(model, "state_units", None) or {}
    if su:
        out.append("Model states: " + ", ".join(f"{k} ({u})" for k, u in su.items()) + ".")
    rows = getattr(model.params, "rows", ())
    if rows:  # a unitless parameter is "-" in the parameter table
        out.append(
            "Model parameters: "
            + ", ".join(f"{r.name} ({'dimensionless' if r.unit == '-' else r.unit})" for r in rows)
            + "."
        )
    channels = {}
    for d in drugs:
        if d.target_state is not None:
            u = su.get(d.target_state, "the state's unit")
            out.append(
                f"Drug {d.name}: doses add to state {d.target_state} ({u}); "
                f"{d.name}_infusion_rate in {u} per day."
            )
            continue
        u = d.amount_unit
        virtual = [c for c in d.compartments if c == "effect" or c.startswith("marrow")]
        note = (
            f" ({', '.join(virtual)}: virtual amounts, the site's concentration x V1)"
            if virtual
            else ""
        )
        pk = ", ".join(f"{d.name}_{p.name} ({p.unit})" for p in d.params)
        out.append(
            f"Drug {d.name}: amounts {', '.join(f'{d.name}_{c}' for c in d.compartments)} in "
            f"{u}{note}; concentrations conc_{d.name}_* in {u}/L; {d.name}_infusion_rate in "
            f"{u}/day; PK parameters for this patient's weight: {pk}."
        )
        channels.update({e.channel: None for e in d.effects})
    if channels:
        kinds = getattr(model, "effect_channels", {}) or {}
        out.append(
            "Effect channels: "
            + ", ".join(
                f"e_{c} ({'fraction 0-1' if kinds[c][0] == 'emax' else kinds[c][1]})"
                for c in channels
            )
            + "."
        )
    return out


def patient_sbml(cohort, i: int, schedule=None, *, model=None, drugs=None) -> str:
    """SBML of patient row ``i`` of ``cohort`` (its parameters, PK, covariates and initial
    state) with the doses of ``schedule``; ``drugs`` adds PK compartments for drugs the schedule
    does not dose (default: the schedule's drugs)."""
    from vcohort.drugs import get_drug
    from vcohort.model import get_model

    model = get_model(cohort.model) if model is None else model
    cat = model.drug_catalogue()
    if schedule is not None:
        schedule.refuse_rules("SBML export")
    names = list(schedule.drugs) if schedule is not None else []
    # one PK compartment set per drug however it is spelt ('CB839' and 'cb839'): a drug twice
    # was combined with itself (Bliss: 1 - (1 - E)^2)
    ds = list({d.name: d for d in (get_drug(n, cat) for n in names + list(drugs or []))}.values())
    row = lambda d: {k: float(np.asarray(v)[i]) for k, v in d.items()}  # noqa: E731
    return to_sbml(
        model,
        row(cohort.params),
        row(cohort.y0),
        drugs=ds,
        pk={d.name: row(cohort.pk[d.name]) for d in ds if d.target_state is None},
        weight_kg=float(cohort.covariates["weight_kg"][i]),
        bsa_m2=float(cohort.covariates["bsa_m2"][i]),
        schedule=schedule,
        model_id=f"vcohort_{model.name}_patient_{int(cohort.patient_id[i])}",
    )


# columns of a run's patients.parquet that describe the patient's screening or selection, not
# its parameters (`vcohort.plausibility.screen`, calibration)
RUN_COLUMNS = ("plausible", "selected", "reason")


def read_overrides(path, row: int = 0) -> dict[str, float]:
    """Parameter values from a file: JSON ``{"name": value}``, or a CSV/Parquet table whose row
    ``row`` is used (e.g. a row of a run's ``patients.parquet``: its screening columns are
    skipped and its ``patient`` id kept, under ``"patient"``); PK values as ``drug.param``;
    booleans (``pdl1_positive``) as 1/0."""
    import json
    from pathlib import Path

    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--patient-params={str(path)!r}: no such file")
    if path.suffix == ".json":
        if row != 0:
            raise ValueError(f"--row={row}: {str(path)!r} is JSON (one patient), not a table")
        raw = json.loads(path.read_text())
    else:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        if len(df) < 1:
            raise ValueError(f"--patient-params={str(path)!r} has no rows")
        if not 0 <= row < len(df):
            raise ValueError(f"--row={row}: {str(path)!r} has rows 0..{len(df) - 1}")
        raw = {
            k: v
            for k, v in df.iloc[row].to_dict().items()
            if not (str(k).startswith("screen_") or k in RUN_COLUMNS)
        }
    out = {}
    for k, v in raw.items():
        if isinstance(v, bool | np.bool_):
            v = float(v)
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"--patient-params: {k}={v!r} is not a number") from None
        if not math.isfinite(out[str(k)]):
            raise ValueError(f"--patient-params: {k}={v!r} must be finite")
    return out


def with_overrides(
    cohort, model, values: dict[str, float], *, dt: float = 0.1, runin_days: int | None = None
):
    """A one-patient cohort (row 0 of ``cohort``) with model parameters, covariates and
    ``drug.param`` PK values replaced, and its initial state rebuilt (initial guess + a run-in
    of ``runin_days`` at step ``dt``; None: the model's), as `vcohort.cohort.make_cohort`
    builds it."""
    runin_days = model.runin_days if runin_days is None else runin_days
    from vcohort.cohort import bsa_dubois, initial_state, run_in

    c = cohort.subset([0])
    params, cov = dict(c.params), dict(c.covariates)
    pk = {d: dict(v) for d, v in c.pk.items()}
    values = dict(values)
    if "patient" in values:  # the row's own id names the exported model
        pid = values.pop("patient")
        if pid != int(pid) or pid < 0:
            raise ValueError(f"--patient-params: patient={pid!r} must be an id >= 0")
        c = c.replace(patient_id=np.array([int(pid)]))
    if "bsa_m2" in values:  # computed from weight and height: a different value would be ignored
        w = values.get("weight_kg", float(cov["weight_kg"][0]))
        h = values.get("height_cm", float(cov["height_cm"][0]))
        want = float(np.asarray(bsa_dubois(np.array([w]), np.array([h])))[0])
        if abs(values["bsa_m2"] - want) > 1e-6 * want:
            raise ValueError(
                f"--patient-params: bsa_m2={values['bsa_m2']} is computed from weight_kg and "
                f"height_cm (Du Bois: {want:.4f} m² for {w} kg, {h} cm); give those instead"
            )
    flags = {k for k, v in cov.items() if np.asarray(v).dtype == bool}  # yes/no covariates
    for k, v in values.items():
        if k in flags:
            if v not in (0.0, 1.0):
                raise ValueError(f"--patient-params: {k}={v} must be true/false (1/0)")
            cov[k] = np.array([bool(v)])
            continue
        if k in params:
            params[k] = np.array([v])
        elif k in cov and k != "bsa_m2":
            cov[k] = np.array([v])
        elif "." in k and k.split(".", 1)[0] in pk and k.split(".", 1)[1] in pk[k.split(".")[0]]:
            d, n = k.split(".", 1)
            pk[d][n] = np.array([v])
        elif k not in ("bsa_m2",):
            raise ValueError(
                f"--patient-params: {k!r} is not a parameter of model {model.name!r}, a "
                f"covariate ({', '.join(cov)}) or a drug.param PK value"
            )
        if v <= 0 and k in model.params.names + tuple(cov):
            raise ValueError(f"--patient-params: {k}={v} must be > 0")
        if not model.allows(k, v):
            raise ValueError(f"--patient-params: {k}={v} must lie in {model.bounds_text(k)}")
    cov["bsa_m2"] = bsa_dubois(cov["weight_kg"], cov["height_cm"])
    y0 = initial_state(model, params, cov["baseline_diameter_mm"], 1)
    c = c.replace(params=params, covariates=cov, pk=pk, y0=y0)
    return run_in(c, model, runin_days, dt=dt) if runin_days else c


def schedule_on_grid(schedule, dt: float, days: int | None = None):
    """The schedule as the fixed-step simulator applies it: times on the ``dt`` grid
    (`vcohort.dosing.dose_step`; with the horizon ``days``, a dose in its last half step is
    given in the last step, as the simulator does) and infusion durations rounded to whole
    steps (at least one), `vcohort.dosing.StepGrid`."""
    import dataclasses

    from vcohort.dosing import dose_step, infusion_steps

    n_steps = None if days is None else int(round(days / dt))
    k0 = dose_step(schedule.time, dt, n_steps)
    dur = np.where(
        np.asarray(schedule.duration) > 0,
        infusion_steps(np.asarray(schedule.duration), dt) * dt,
        0.0,
    )
    return dataclasses.replace(schedule, time=k0 * dt, duration=dur)

"""Protocol dose modification: the rule a trial protocol's "dose modification" table states
("withhold if ANC < 1.5 x 10^9/L; resume at 75%, then 50%"; "delay until recovery, re-check
weekly, discontinue after 3 weeks"), its text form and its per-drug consistency.

The simulator applies a rule per patient inside the vmapped step (`vcohort.dose_modify`);
this module is plain Python and numpy (no JAX), like `vcohort.dosing`, which attaches a rule to a
`vcohort.dosing.Regimen`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

RULE_OPS = ("<", ">")
# assumption: during a delay the blood count is repeated weekly, as in anthracycline and
# docetaxel labels ("delay until recovery"; weekly CBC), unless the rule says otherwise
DEFAULT_RECHECK_DAYS = 7.0
_WANT = (
    "'hold if <output> <|> <value> [delay [every <t> d] [up to <t> d]] [reduce to <p>% <p>% ...]'"
)


@dataclass(frozen=True)
class DoseRule:
    """A protocol dose modification for one drug.

    A dose that falls due while the patient's daily output ``output`` is ``op`` ``threshold``
    (read at the start of the step in which the dose or infusion starts: the pre-dose lab) is
    withheld.  Without ``delay`` it is omitted, and the next dose keeps its scheduled time.
    With ``delay`` it is postponed: the lab is repeated every ``recheck_days`` and the dose
    given at the first one that passes; later doses keep the interval from the dose actually
    given (the cycle shifts), and no dose is given from the regimen's ``until`` on.  When the
    next lab would come more than ``max_delay_days`` after the dose fell due, the drug is
    discontinued.

    After the n-th hold the drug continues at ``levels[n-1]`` of the planned dose; one more
    hold than there are levels discontinues it.  A hold is an *episode*: without ``delay``, a
    run of withheld doses ended by a dose given (a daily drug withheld through a nadir steps
    down once, as protocols interrupt and resume one level lower); with ``delay``, each
    postponed dose.  Without levels doses are withheld or delayed only, never reduced.

    Attributes:
        output: a daily output of the model (e.g. ``ANC``, 10^9/L).
        op: ``<`` (withhold below the threshold) or ``>`` (above).
        threshold: in the output's unit.
        levels: dose fractions after the 1st, 2nd, ... hold, each in (0, 1].
        delay: postpone instead of omit (needs a regular regimen: doses every n days).
        recheck_days: lab interval during a delay.
        max_delay_days: longest delay of one dose before the drug is stopped (None: no limit).
    """

    output: str
    op: str
    threshold: float
    levels: tuple[float, ...] = ()
    delay: bool = False
    recheck_days: float = DEFAULT_RECHECK_DAYS
    max_delay_days: float | None = None

    def __post_init__(self) -> None:
        if self.op not in RULE_OPS:
            raise ValueError(f"hold rule: op={self.op!r}; allowed: {RULE_OPS}")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
            raise ValueError(f"hold rule: threshold={t!r} must be a finite number")
        for v in self.levels:
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
                raise ValueError(
                    f"hold rule: dose level {v!r} must be a fraction of the planned dose in "
                    f"(0, 1] (e.g. 0.75 for 75%)"
                )
        if any(b > a for a, b in zip(self.levels, self.levels[1:], strict=False)):
            raise ValueError(
                f"hold rule: dose levels {', '.join(f'{100 * v:g}%' for v in self.levels)} "
                "rise; each hold steps down (e.g. reduce to 75% 50%)"
            )
        if not isinstance(self.delay, bool):
            raise ValueError(f"hold rule: delay={self.delay!r} must be True or False")
        r = self.recheck_days
        if isinstance(r, bool) or not (isinstance(r, int | float) and math.isfinite(r) and r > 0):
            raise ValueError(f"hold rule: recheck every {r!r} days must be > 0")
        m = self.max_delay_days
        if m is not None and (
            isinstance(m, bool) or not (isinstance(m, int | float) and math.isfinite(m) and m > 0)
        ):
            raise ValueError(f"hold rule: up to {m!r} days must be > 0")
        if not self.delay and (m is not None or r != DEFAULT_RECHECK_DAYS):
            raise ValueError("hold rule: 'every'/'up to' are delay settings; add 'delay'")
        if m is not None and m < r:
            raise ValueError(
                f"hold rule: up to {m:g} d is shorter than the recheck every {r:g} d, so no dose "
                f"could ever be delayed; allowed: up to >= every"
            )
        if m is not None and abs(m / r - round(m / r)) > 1e-9:
            # labs come every r days from the day the dose fell due; the last one within the
            # limit would come before it, and the drug would stop there, not at the limit
            k = math.floor(m / r + 1e-9)
            raise ValueError(
                f"hold rule: up to {m:g} d is not a whole number of rechecks every {r:g} d (the "
                f"last lab would be on day {k * r:g} of the delay, and the drug stopped there); "
                f"allowed: a multiple of the recheck interval, e.g. up to {k * r:g} d or "
                f"{(k + 1) * r:g} d"
            )
        object.__setattr__(self, "threshold", float(t))
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        object.__setattr__(self, "recheck_days", float(r))
        if m is not None:
            object.__setattr__(self, "max_delay_days", float(m))

    def describe(self) -> str:
        """The rule as `parse_rule` reads it back exactly (every digit a number needs)."""
        s = f"hold if {self.output} {self.op} {exact_number(self.threshold)}"
        if self.delay:
            s += f" delay every {exact_number(self.recheck_days)} d"
            if self.max_delay_days is not None:
                s += f" up to {exact_number(self.max_delay_days)} d"
        if self.levels:
            s += " reduce to " + " ".join(f"{exact_number(v, 100.0)}%" for v in self.levels)
        return s


def exact_number(x: float, scale: float = 1.0) -> str:
    """``x * scale`` as text, short (``%g``) where that reads back (divided by ``scale``) to
    ``x`` exactly, else with the digits it needs (``tid`` is every 0.3333333333333333 d, not
    0.333333), so that a described regimen or rule parses back to itself."""
    for text in (f"{x * scale:g}", repr(x * scale), f"{x * scale:.17g}"):
        if float(text) / scale == x:
            return text
    return f"{x * scale:.17g}"


def split_rule(text: str) -> tuple[str, DoseRule | None]:
    """``(regimen text, rule)``: the ``hold if ...`` clause (`parse_rule`) cut off the end of
    a regimen, or None."""
    m = re.search(r"(?i)\bhold\b", text)
    if m is None:
        for word in ("reduce", "delay"):
            if re.search(rf"(?i)\b{word}\b", text):
                raise ValueError(
                    f"regimen {text!r}: '{word} ...' needs a hold rule before it: {_WANT}"
                )
        return text, None
    return text[: m.start()].strip(), parse_rule(text[m.start() :])


def parse_rule(clause: str) -> DoseRule:
    """``"hold if <output> <|> <value> [delay [every <t> d] [up to <t> d]] [reduce to <p>%
    ...]"`` → `DoseRule`, e.g. ``"hold if ANC < 1.5 delay up to 21 d reduce to 75% 50%"``."""
    from vcohort.dosing import parse_duration

    text = clause.strip()
    if re.match(r"(?i)hold\s+if\s+[A-Za-z_][\w.]*\s*(<=|>=|=<|=>|==|=|≤|≥)", text):
        raise ValueError(
            f"hold rule {text!r}: the comparison is < or > (a lab value is never exactly at "
            f"the threshold); expected {_WANT}"
        )
    head = re.match(r"(?i)hold\s+if\s+([A-Za-z_][\w.]*)\s*([<>])\s*([^\s,]+)", text)
    if head is None:
        raise ValueError(f"hold rule {text!r}: cannot read it; expected {_WANT}")
    output, op, value = head.groups()
    try:
        threshold = float(value)
    except ValueError:
        raise ValueError(f"hold rule {text!r}: threshold={value!r} is not a number") from None
    words = text[head.end() :].replace(",", " ").split()
    kw: dict = {}
    levels: list[float] = []
    i = 0

    def duration(j: int, what: str) -> tuple[float, int]:
        if j >= len(words):
            raise ValueError(f"hold rule {text!r}: {what!r} needs a time, e.g. 7 d")
        val = words[j]
        j += 1
        if j < len(words) and re.fullmatch(r"[a-zA-Z]+", words[j]) and words[j].lower() not in (
            "up", "reduce", "every", "delay"
        ):  # fmt: skip
            val += " " + words[j]
            j += 1
        return parse_duration(val, f"hold rule {what}"), j

    while i < len(words):
        w = words[i].lower()
        if w == "delay" and "delay" not in kw:
            kw["delay"] = True
            i += 1
            while i < len(words) and words[i].lower() in ("every", "up"):
                said = "recheck_days" if words[i].lower() == "every" else "max_delay_days"
                if said in kw:
                    twice = "every" if said == "recheck_days" else "up to"
                    raise ValueError(f"hold rule {text!r}: 'delay ... {twice}' is given twice")
                if words[i].lower() == "every":
                    kw["recheck_days"], i = duration(i + 1, "every")
                else:
                    if i + 1 >= len(words) or words[i + 1].lower() != "to":
                        raise ValueError(f"hold rule {text!r}: expected 'up to <t> d'")
                    kw["max_delay_days"], i = duration(i + 2, "up to")
        elif w == "reduce" and not levels:
            i += 1 + (i + 1 < len(words) and words[i + 1].lower() == "to")
            while i < len(words) and words[i].endswith("%"):
                levels.append(_percent(text, words[i]))
                i += 1
            if not levels:
                if i < len(words) and words[i].lower() not in ("delay", *_REGIMEN_WORDS):
                    _percent(text, words[i])  # raises: not a percentage
                raise ValueError(f"hold rule {text!r}: 'reduce to' needs dose levels, e.g. 75% 50%")
        else:
            raise ValueError(
                f"hold rule {text!r}: unexpected {words[i]!r}; the 'hold if' clause must come "
                f"last in a regimen, as {_WANT}"
            )
    return DoseRule(output, op, threshold, tuple(levels), **kw)


# regimen words that may follow a misplaced hold clause (for the error message)
_REGIMEN_WORDS = ("every", "x", "for", "until", "start", "from", "over", "qd", "bid", "tid")


def _percent(text: str, w: str) -> float:
    try:
        pct = float(w[:-1]) if w.endswith("%") else None
    except ValueError:
        pct = None
    if pct is None or not 0 < pct <= 100:
        raise ValueError(
            f"hold rule {text!r}: dose level {w!r} must be a percentage of the planned dose in "
            f"(0%, 100%], e.g. 75%"
        )
    return pct / 100.0


def delay_inputs(schedule, dt: float, n_steps: int) -> np.ndarray:
    """(drugs with a delay rule, rows, 4) for `vcohort.dose_modify`: per dose of the drug's
    regimen its amount by unit kind (mg, mg/kg, mg/m²) in columns 0-2; column 3 holds, in its
    first five rows, the first dose's step, the interval and the infusion length in steps,
    the number of doses and the step from which no dose may be given (the regimen's
    ``until``; past the horizon when it has none).  Raises when a delay rule cannot be kept
    on the step grid: doses not at one interval of whole steps (a delay shifts the whole
    cycle), infusion lengths that differ or reach the next dose, a recheck interval that is
    not a whole number of steps."""
    from vcohort.dosing import dose_step, infusion_steps

    rows = []
    for i, rule in enumerate(schedule.rules):
        if rule is None or not rule.delay:
            continue
        drug = schedule.drugs[i]
        amount = np.asarray(schedule.amount, dtype=np.float64)[i]
        ok = schedule.valid[i]
        if not np.all(ok[: ok.sum()]):  # doses are recorded by number (`dose_modify`)
            raise ValueError(f"{drug}: a delay rule needs the drug's dose slots first in its row")
        t = schedule.time[i][ok]
        days = np.diff(t)
        steps = days / dt
        whole = np.all(np.abs(steps - np.round(steps)) < 1e-6)
        if days.size and not np.allclose(days, days[0], rtol=0, atol=1e-9):
            raise ValueError(
                f"{drug}: a delay rule ({rule.describe()}) shifts later cycles, so it needs one "
                f"regular regimen (doses every n days); the doses fall on days "
                f"{', '.join(f'{x:g}' for x in t[:6])}{' ...' if t.size > 6 else ''}"
            )
        if days.size and not whole:
            raise ValueError(
                f"{drug}: a delay rule needs the dosing interval ({days[0]:g} d) to be a whole "
                f"number of steps of dt={dt:g} d; choose a dt that divides it"
            )
        r = rule.recheck_days / dt
        if abs(r - round(r)) > 1e-6:
            raise ValueError(
                f"{drug}: the delay rule's recheck every {rule.recheck_days:g} d is not a whole "
                f"number of steps of dt={dt:g} d"
            )
        dur = schedule.duration[i][ok]
        if dur.size and np.any(dur != dur[0]):
            raise ValueError(f"{drug}: a delay rule needs one infusion length for every dose")
        n_inf = int(infusion_steps(dur[0], dt)) if dur.size and dur[0] > 0 else 0
        interval = int(round(steps[0])) if days.size else n_steps + 1
        if n_inf >= interval:
            raise ValueError(
                f"{drug}: a delay rule needs each infusion to end before the next dose "
                f"({n_inf} steps of {dt:g} d against an interval of {interval} steps)"
            )
        n = int(ok.sum())
        out = np.zeros((max(schedule.n_slots, 5), 4))
        out[np.arange(n), schedule.kind[i][ok]] = amount[ok]
        end = schedule.ends[i] if schedule.ends else None
        first = int(dose_step(t[0], dt, n_steps)) if n and t[0] < n_steps * dt else n_steps
        if end is not None:  # steps k with k * dt < until, and every planned dose's own step
            last = first + (n - 1) * interval if n else 0
            end = max(math.ceil(end / dt - 1e-9), last + 1)
        out[:5, 3] = (
            # (a first dose past the horizon: never, as on the bolus grid)
            first,
            interval,
            n_inf,
            n,
            n_steps + 1 if end is None else end,
        )
        rows.append(out)
    return np.stack(rows) if rows else np.zeros((0, max(schedule.n_slots, 5), 4))


def drug_rules(regimens) -> dict[str, DoseRule | None]:
    """Each drug's hold rule (or None) in one arm's regimens; raises when two regimens of a
    drug disagree (the rule belongs to the drug, not to one regimen of it)."""
    rules: dict[str, DoseRule | None] = {}
    for r in regimens:
        if r.drug in rules and rules[r.drug] != r.rule:
            raise ValueError(
                f"the regimens of {r.drug} give different hold rules "
                f"({_rule_text(rules[r.drug])} and {_rule_text(r.rule)}); a drug's dose "
                f"modification rule must be the same in every regimen of the arm"
            )
        rules[r.drug] = r.rule
    return rules


def _rule_text(rule: DoseRule | None) -> str:
    return "no rule" if rule is None else repr(rule.describe())

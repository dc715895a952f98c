"""A drug: linear PK model, route, pharmacodynamic effect terms, clinical dose (one entry of
the catalogue in `vcohort.drugs`).

Each `Drug` is a linear mammillary PK model (optionally with a first-order absorption depot for
oral or subcutaneous doses, a biophase "effect" compartment, Sheiner et al. 1979, Clin
Pharmacol Ther 25:358, and a "marrow" delay chain for a late myelotoxicity, `Drug.marrow_chain`)
and a list of `Effect`s, each mapping a concentration to one of the
model's named *effect channels* (see ``vcohort.model.csc_immune.EFFECT_CHANNELS``).  The
simulator never names a drug: adding a drug is adding a catalogue entry whose effects point at
existing channels.

Units: amounts mg (cell products: ``amount_unit`` 1e6 cells), volumes L, clearances L/day,
rates 1/day, concentrations mg/L (cell products: 1e6 cells/L).  Between-patient variability is
log-normal with the CV given in each drug's parameter table.  Weight scaling is allometric,
``CL_i = CL * (WT/WT_ref)**a_CL`` (Ahamadi et al. 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vcohort.model.parameters import Param, ParamTable

ROUTES = ("iv", "oral", "sc")
DEPOT_ROUTES = ("oral", "sc")  # doses go into a first-order absorption depot
AMOUNT_UNITS = ("mg", "1e6 cells")
EFFECT_KINDS = ("emax", "linear")
SITES = ("central", "effect", "marrow")


@dataclass(frozen=True)
class Effect:
    """A pharmacodynamic effect: concentration at ``site`` → value of model ``channel``.

    ``emax``:   E = emax * c**hill / (c**hill + ec50**hill)   (fraction, combined by Bliss
                independence across drugs on the same channel: 1 - prod(1 - E_i)).
    ``linear``: E = slope * c                                  (summed across drugs).
    Concentrations are mg/L; ``ec50`` in mg/L, ``slope`` in L/mg.  A Hill curve is evaluated
    as ``emax * r / (1 + r)``, ``r = (c / ec50)**hill`` (see `value`).
    """

    channel: str
    kind: str = "emax"
    emax: float = 1.0
    ec50: float = 1.0
    hill: float = 1.0
    slope: float = 0.0
    site: str = "central"
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EFFECT_KINDS:
            raise ValueError(f"Effect.kind={self.kind!r}; allowed: {EFFECT_KINDS}")
        if self.site not in SITES:
            raise ValueError(f"Effect.site={self.site!r}; allowed: {SITES}")
        if not self.source.strip():
            raise ValueError(
                f"Effect on {self.channel!r}: a source or 'assumption: why' is required"
            )
        positive = ("emax", "ec50", "hill") if self.kind == "emax" else ()
        for k in (*positive, "slope"):
            v = getattr(self, k)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or (k in positive and v <= 0):
                allowed = "a finite number > 0" if k in positive else "a finite number"
                raise ValueError(f"Effect on {self.channel!r}: {k}={v!r} must be {allowed}")

    def value(self, c):
        """Effect for concentration ``c`` (mg/L, >= 0); works on numpy and JAX arrays (also in
        the fused GPU kernel, `vcohort.fused`) and on the SBML export's traced expressions.

        A Hill exponent other than 1 is evaluated as ``emax * r / (1 + r)`` with ``r = (c /
        ec50)**hill``, the ratio ``c / ec50`` capped where ``r`` reaches `HILL_R_MAX` (1e30).
        The textbook ``c**hill / (c**hill + ec50**hill)`` is not finite in float32: at hill 20
        ``c**hill`` overflows above c = 85 mg/L (inf/inf) and ``ec50**hill`` underflows to 0
        for ec50 below 0.006 mg/L (0.013 where subnormals are flushed to zero; 0/0 at c = 0,
        before any dose).  ``r`` is finite in float32 (max 3.4e38) and zero at c = 0 (a zero
        gradient there for hill > 1); at the cap ``r / (1 + r)`` is 1 - 1e-30, which float64
        rounds to 1, so the cap changes no float64 value.  Hill 1 keeps ``c / (c + ec50)``."""
        if self.kind == "linear":
            return self.slope * c
        if self.hill == 1.0:
            return self.emax * c / (c + self.ec50)
        x = c / self.ec50
        if self.hill > 1.0:  # (for hill <= 1, r <= x: finite wherever c / ec50 is)
            x = _minimum(x, HILL_R_MAX ** (1.0 / self.hill))
            r = x**self.hill
        else:
            r = _root(x, self.hill)
        return self.emax * r / (1.0 + r)


HILL_R_MAX = 1e30  # the cap of (c / ec50)**hill in `Effect.value`


def _root(x, hill: float):
    """``x**hill`` for 0 < hill < 1 and x >= 0, with a zero derivative at x = 0 under JAX.

    The true derivative there is infinite, and the chain rule multiplied it by the zero
    derivative of a concentration not yet reached by any dose (0 x inf): every gradient of a
    run with such a drug was NaN (the optimiser's, the local sensitivities').  The inner
    ``where`` keeps the untaken branch's derivative finite (JAX's documented double-``where``);
    numpy arrays and SBML traces take the plain power."""
    from vcohort.sbml import Sym

    if isinstance(x, int | float | np.ndarray | np.generic | Sym):
        return x**hill
    import jax.numpy as jnp

    pos = x > 0
    return jnp.where(pos, jnp.where(pos, x, 1.0) ** hill, 0.0)


def _minimum(a, b: float):
    """``min(a, b)`` for a number or numpy array, a JAX array or tracer, or an SBML trace
    (`vcohort.sbml.Sym`, written as a piecewise)."""
    if isinstance(a, int | float | np.ndarray | np.generic):
        return np.minimum(a, b)
    from vcohort.sbml import XP, Sym

    if isinstance(a, Sym):
        return XP.minimum(a, b)
    import jax.numpy as jnp

    return jnp.minimum(a, b)


WEIGHT_CL = ("CL", "Q2", "Q3")  # scaled by weight^weight_exponent_cl (`Drug.individual`)
WEIGHT_V = ("V1", "V2", "V3")  # by weight^weight_exponent_v


@dataclass(frozen=True)
class Drug:
    """One drug of the catalogue.

    Attributes:
        name: catalogue key (``pembrolizumab``).
        drug_class: ``ici``, ``csc_inhibitor``, ``metabolic``, ``chemo``, … (metadata).
        route: ``iv`` (doses into central; infusions allowed), ``oral`` or ``sc`` (doses into a
            first-order absorption depot).
        params: PK parameter table; names ``CL``, ``V1`` and optionally ``Q2, V2, Q3, V3``,
            ``ka`` (oral), ``ke0`` (effect compartment), ``mtt_marrow`` (mean transit time of
            the ``marrow`` delay chain, days).  Values for a ``ref_weight`` patient.
        effects: pharmacodynamic effects on model channels.
        clinical_dose: the standard regimen in `vcohort.dosing.parse_regimen` syntax.
        mw: molecular weight (g/mol), for converting nM potencies to mg/L.
        half_life_days: published terminal half-life (days) with ``half_life_source``; the test
            suite checks the PK model reproduces it.
        weight_exponent_cl / weight_exponent_v: allometric exponents (0 = no weight effect).
        weight_scaled: the PK parameters weight scales (None: every clearance, CL, Q2, Q3,
            with ``weight_exponent_cl`` and every volume, V1-V3, with ``weight_exponent_v``,
            as Ahamadi 2017 does; a model with weight on some only lists them, e.g. Bajaj
            2017's ``("CL", "V1")`` for nivolumab).
        toxicity: the dose-limiting toxicity / label limit, in words.
        amount_unit: what one unit of the PK amounts is: ``mg``, or ``1e6 cells`` for a cell
            product (doses then take ``cells``, ``cells/kg`` or ``cells/m2``; see
            `vcohort.dosing.parse_amount`).
        target_state: None for a PK drug; otherwise the name of a *model state* that doses
            enter directly (a bolus adds to it, an infusion adds its rate to its derivative).
            Used by published models that carry their drug kinetics as states (de Pillis et
            al. 2009: chemotherapy ``M``, IL-2 ``I``, TIL ``L``).  Such a drug has no PK
            parameters or effects, and its "mg" is one unit of the target state.
        marrow_chain: number of transit compartments of a delay chain from plasma to the
            ``marrow`` site (0: none), for a myelotoxicity that shows weeks late: ``dC_1/dt =
            k (C_p - C_1)``, ``dC_i/dt = k (C_(i-1) - C_i)``, ``k = marrow_chain /
            mtt_marrow``, the effect read at the last (a gamma-shaped delay of mean
            ``mtt_marrow``; the transit-compartment idea of Friberg et al. 2002 and Sun &
            Jusko 1998, here on the drug signal: assumption, standing in for damage to early
            progenitors upstream of Friberg's proliferating compartment).
        shared_eta: ``(parameter, driver)`` pairs: the parameter's between-patient deviation
            is the driver's standard-normal draw (NONMEM's one ETA on two parameters, e.g.
            Ahamadi 2017's ``Q = θ_Q·exp(η_CL)``), scaled by the parameter's own CV.  Both
            need a CV > 0; a population may correlate the driver, not the parameter.  A
            population's ``[parameters]`` setting may give either a new ``value``, not another
            CV or bounds (they would break the shared deviation; refused before any compute by
            `vcohort.cohort`).
        eta_correlation: ``(a, b, rho)``: the correlation of two PK parameters' random effects
            (an omega block, ``rho = ω_ab / (ω_a ω_b)``), applied to every cohort with the
            population's correlations (`vcohort.cohort.with_drug_correlations`); a
            population's own correlation of the same pair replaces it.
    """

    name: str
    drug_class: str
    route: str
    params: ParamTable
    effects: tuple[Effect, ...]
    clinical_dose: str
    mw: float
    half_life_days: float
    half_life_source: str
    ref_weight: float = 70.0
    weight_exponent_cl: float = 0.0
    weight_exponent_v: float = 0.0
    max_single_dose_mg: float = math.inf
    toxicity: str = ""
    references: tuple[str, ...] = field(default_factory=tuple)
    amount_unit: str = "mg"
    target_state: str | None = None
    marrow_chain: int = 0
    shared_eta: tuple[tuple[str, str], ...] = ()
    eta_correlation: tuple[tuple[str, str, float], ...] = ()
    weight_scaled: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"drug {self.name}: route={self.route!r}; allowed: {ROUTES}")
        chain = self.marrow_chain
        if isinstance(chain, bool) or not isinstance(chain, (int, np.integer)) or chain < 0:
            raise ValueError(
                f"drug {self.name}: marrow_chain={chain!r}; allowed: an integer >= 0 (the "
                "number of transit compartments of the marrow delay chain; 0: none)"
            )
        object.__setattr__(self, "marrow_chain", int(chain))
        if self.target_state is not None:
            if len(self.params) or self.effects or self.marrow_chain:
                raise ValueError(
                    f"drug {self.name}: a drug dosed into model state {self.target_state!r} "
                    "has no PK parameters, effects or marrow chain (the model carries its "
                    "kinetics)"
                )
            return
        for req in ("CL", "V1"):
            if req not in self.params:
                raise ValueError(f"drug {self.name}: PK parameter {req} is required")
        if self.route in DEPOT_ROUTES and "ka" not in self.params:
            raise ValueError(f"drug {self.name}: {self.route} drugs need an absorption rate 'ka'")
        if self.amount_unit not in AMOUNT_UNITS:
            raise ValueError(
                f"drug {self.name}: amount_unit={self.amount_unit!r}; allowed: {AMOUNT_UNITS}"
            )
        for a, b in (("Q2", "V2"), ("Q3", "V3")):
            if (a in self.params) != (b in self.params):
                raise ValueError(f"drug {self.name}: {a} and {b} go together")
        if (self.marrow_chain > 0) != ("mtt_marrow" in self.params):
            raise ValueError(
                f"drug {self.name}: marrow_chain ({self.marrow_chain}) and the PK parameter "
                "mtt_marrow go together"
            )
        self._check_shared_eta()
        self._check_eta_correlation()
        if self.weight_scaled is not None:
            scaled = tuple(self.weight_scaled)
            allowed = [k for k in WEIGHT_CL + WEIGHT_V if k in self.params]
            bad = [k for k in scaled if k not in allowed]
            if bad or len(set(scaled)) != len(scaled) or isinstance(self.weight_scaled, str):
                raise ValueError(
                    f"drug {self.name}: weight_scaled={self.weight_scaled!r}; allowed: a list of "
                    f"distinct PK parameters among {allowed}"
                )
            object.__setattr__(self, "weight_scaled", scaled)
        sites = self.observed_indices()
        for eff in self.effects:
            if eff.site not in sites:
                raise ValueError(
                    f"drug {self.name}: the {eff.channel!r} effect acts at site {eff.site!r}, "
                    f"which this drug does not have (its sites: {', '.join(sites)}; 'effect' "
                    "needs ke0, 'marrow' needs marrow_chain and mtt_marrow)"
                )

    def _check_shared_eta(self) -> None:
        pairs = tuple(tuple(p) for p in self.shared_eta)
        object.__setattr__(self, "shared_eta", pairs)
        driven = [p[0] for p in pairs if len(p) == 2]
        for pair in pairs:
            where = f"drug {self.name}: shared_eta {pair!r}"
            if len(pair) != 2:
                raise ValueError(f"{where}: give (parameter, driver) pairs")
            param, driver = pair
            for n in pair:
                if n not in self.params:
                    raise ValueError(
                        f"{where}: {n!r} is not a PK parameter of this drug "
                        f"(its parameters: {', '.join(self.params.names)})"
                    )
                if self.params[n].cv <= 0:
                    raise ValueError(
                        f"{where}: {n} has no between-patient CV; a shared random effect "
                        "needs a CV > 0 on both parameters"
                    )
            if param == driver or driver in driven:
                raise ValueError(f"{where}: the driver must be another parameter with its own draw")
            if driven.count(param) > 1:
                raise ValueError(f"{where}: {param} is given more than one driver")

    def _check_eta_correlation(self) -> None:
        triples = tuple(tuple(t) for t in self.eta_correlation)
        object.__setattr__(self, "eta_correlation", triples)
        driven = dict(self.shared_eta)
        seen = set()
        for t in triples:
            where = f"drug {self.name}: eta_correlation {t!r}"
            if len(t) != 3:
                raise ValueError(f"{where}: give (parameter, parameter, rho) triples")
            a, b, rho = t
            for n in (a, b):
                if n not in self.params or self.params[n].cv <= 0:
                    raise ValueError(
                        f"{where}: {n!r} is not a PK parameter of this drug with a CV > 0"
                    )
                if n in driven:
                    raise ValueError(f"{where}: {n} uses {driven[n]}'s draw; correlate that")
            if a == b or frozenset((a, b)) in seen:
                raise ValueError(f"{where}: give each pair of two parameters once")
            seen.add(frozenset((a, b)))
            if isinstance(rho, bool) or not -1.0 < float(rho) < 1.0:
                raise ValueError(f"{where}: rho={rho!r}; allowed: -1 < rho < 1")
        from vcohort.population import correlation_matrix

        try:
            correlation_matrix(triples)
        except ValueError as e:
            raise ValueError(f"drug {self.name}: eta_correlation: {e}") from None

    def eta_of(self, name: str) -> str:
        """The PK parameter whose standard-normal draw ``name`` uses (itself unless shared)."""
        return dict(self.shared_eta).get(name, name)

    def digest(self) -> str:
        """A short hash of the whole definition (PK, effects, doses, metadata)."""
        import hashlib

        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ structure
    @property
    def compartments(self) -> tuple[str, ...]:
        """Compartment names in state order (none for a drug dosed into a model state)."""
        if self.target_state is not None:
            return ()
        c = []
        if self.route in DEPOT_ROUTES:
            c.append("depot")
        c.append("central")
        if "Q2" in self.params:
            c.append("peripheral1")
        if "Q3" in self.params:
            c.append("peripheral2")
        if "ke0" in self.params:
            c.append("effect")
        c.extend(f"marrow{i + 1}" for i in range(self.marrow_chain))
        return tuple(c)

    @property
    def dosing_compartment(self) -> int:
        """Index (0-based) of the compartment that receives doses."""
        return 0  # depot for oral/sc, central for IV: both come first

    @property
    def central_index(self) -> int:
        return self.compartments.index("central")

    def observed_indices(self) -> dict[str, int]:
        """Compartments whose concentration drives an effect: ``central`` and maybe ``effect``
        and ``marrow`` (the last compartment of the delay chain)."""
        out = {"central": self.central_index}
        if "effect" in self.compartments:
            out["effect"] = self.compartments.index("effect")
        if self.marrow_chain:
            out["marrow"] = self.compartments.index(f"marrow{self.marrow_chain}")
        return out

    # ------------------------------------------------------------------ per-patient PK
    def individual(self, values: dict, weight):
        """Weight-scaled individual PK parameters (works on floats, numpy and JAX arrays)."""
        w = weight / self.ref_weight
        out = dict(values)
        fcl = w**self.weight_exponent_cl
        fv = w**self.weight_exponent_v
        scaled = self.weight_scaled
        for names, f in ((WEIGHT_CL, fcl), (WEIGHT_V, fv)):
            for k in names:
                if k in out and (scaled is None or k in scaled):
                    out[k] = out[k] * f
        return out

    def rate_matrix(self, ind: dict) -> list[list]:
        """Rate matrix ``A`` (1/day) of ``da/dt = A a + input`` on amounts (mg).

        Returned as nested lists of scalars so that it stays elementwise under ``vmap``.
        The effect compartment holds a *virtual amount* ``a_e`` with ``C_e = a_e / V1`` and
        ``dC_e/dt = ke0 (C_p - C_e)``; it removes nothing from central (biophase model).  The
        ``marrow`` chain's compartments hold virtual amounts the same way (`marrow_chain`).
        """
        names = self.compartments
        n = len(names)
        zero = 0.0 * ind["CL"]
        A = [[zero for _ in range(n)] for _ in range(n)]
        c = names.index("central")
        V1 = ind["V1"]
        A[c][c] = A[c][c] - ind["CL"] / V1
        if "depot" in names:
            d = names.index("depot")
            A[d][d] = A[d][d] - ind["ka"]
            A[c][d] = A[c][d] + ind["ka"]
        for q, v, name in (("Q2", "V2", "peripheral1"), ("Q3", "V3", "peripheral2")):
            if name in names:
                p = names.index(name)
                A[c][c] = A[c][c] - ind[q] / V1
                A[p][c] = A[p][c] + ind[q] / V1
                A[c][p] = A[c][p] + ind[q] / ind[v]
                A[p][p] = A[p][p] - ind[q] / ind[v]
        if "effect" in names:
            e = names.index("effect")
            A[e][c] = A[e][c] + ind["ke0"]
            A[e][e] = A[e][e] - ind["ke0"]
        if self.marrow_chain:
            k = self.marrow_chain / ind["mtt_marrow"]
            prev = c
            for i in range(self.marrow_chain):
                m = names.index(f"marrow{i + 1}")
                A[m][prev] = A[m][prev] + k
                A[m][m] = A[m][m] - k
                prev = m
        return A

    def terminal_half_life(self, weight: float | None = None) -> float:
        """Terminal half-life (days) of the typical patient: ln2 / smallest disposition rate."""
        ind = self.individual(self.params.typical(), weight or self.ref_weight)
        A = np.array(self.rate_matrix(ind), dtype=np.float64)
        keep = [  # compartments that dispose of drug (not the virtual biophases)
            i
            for i, n in enumerate(self.compartments)
            if n not in ("depot", "effect") and not n.startswith("marrow")
        ]
        lam = np.linalg.eigvals(A[np.ix_(keep, keep)]).real
        return math.log(2.0) / float(np.min(np.abs(lam)))


def pk_table(rows: list[tuple]) -> ParamTable:
    """A PK `ParamTable` from ``(name, value, unit, cv, source, description)`` rows."""
    return ParamTable(tuple(Param(*r) for r in rows))

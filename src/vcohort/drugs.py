"""Drug catalogue: PK models, routes, pharmacodynamic effect terms and clinical doses.

Each `Drug` is a linear mammillary PK model (optionally with an oral depot and a biophase
"effect" compartment, Sheiner et al. 1979, Clin Pharmacol Ther 25:358) and a list of `Effect`s,
each mapping a concentration to one of the model's named *effect channels* (see
``vcohort.model.csc_immune.EFFECT_CHANNELS``).  The simulator never names a drug: adding a drug
is adding a catalogue entry whose effects point at existing channels.

Units: amounts mg, volumes L, clearances L/day, rates 1/day, concentrations mg/L.
Between-patient variability is log-normal with the CV given in each drug's parameter table.
Weight scaling is allometric, ``CL_i = CL * (WT/WT_ref)**a_CL`` (Ahamadi et al. 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vcohort.model.parameters import Param, ParamTable

ROUTES = ("iv", "oral")
EFFECT_KINDS = ("emax", "linear")
SITES = ("central", "effect")


@dataclass(frozen=True)
class Effect:
    """A pharmacodynamic effect: concentration at ``site`` → value of model ``channel``.

    ``emax``:   E = emax * c**hill / (c**hill + ec50**hill)   (fraction, combined by Bliss
                independence across drugs on the same channel: 1 - prod(1 - E_i)).
    ``linear``: E = slope * c                                  (summed across drugs).
    Concentrations are mg/L; ``ec50`` in mg/L, ``slope`` in L/mg.
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

    def value(self, c):
        """Effect for concentration ``c`` (mg/L); works on numpy and JAX arrays."""
        if self.kind == "linear":
            return self.slope * c
        if self.hill == 1.0:
            return self.emax * c / (c + self.ec50)
        ch = c**self.hill
        return self.emax * ch / (ch + self.ec50**self.hill)


@dataclass(frozen=True)
class Drug:
    """One drug of the catalogue.

    Attributes:
        name: catalogue key (``pembrolizumab``).
        drug_class: ``ici``, ``csc_inhibitor``, ``metabolic``, ``chemo``, … (metadata).
        route: ``iv`` (doses into central; infusions allowed) or ``oral`` (doses into a depot).
        params: PK parameter table; names ``CL``, ``V1`` and optionally ``Q2, V2, Q3, V3``,
            ``ka`` (oral), ``ke0`` (effect compartment).  Values for a ``ref_weight`` patient.
        effects: pharmacodynamic effects on model channels.
        clinical_dose: the standard regimen in `vcohort.dosing.parse_regimen` syntax.
        mw: molecular weight (g/mol), for converting nM potencies to mg/L.
        half_life_days: published terminal half-life (days) with ``half_life_source``; the test
            suite checks the PK model reproduces it.
        weight_exponent_cl / weight_exponent_v: allometric exponents (0 = no weight effect).
        toxicity: the dose-limiting toxicity / label limit, in words.
        target_state: None for a PK drug; otherwise the name of a *model state* that doses
            enter directly (a bolus adds to it, an infusion adds its rate to its derivative).
            Used by published models that carry their drug kinetics as states (de Pillis et
            al. 2009: chemotherapy ``M``, IL-2 ``I``, TIL ``L``).  Such a drug has no PK
            parameters or effects, and its "mg" is one unit of the target state.
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
    target_state: str | None = None

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"drug {self.name}: route={self.route!r}; allowed: {ROUTES}")
        if self.target_state is not None:
            if len(self.params) or self.effects:
                raise ValueError(
                    f"drug {self.name}: a drug dosed into model state {self.target_state!r} "
                    "has no PK parameters or effects (the model carries its kinetics)"
                )
            return
        for req in ("CL", "V1"):
            if req not in self.params:
                raise ValueError(f"drug {self.name}: PK parameter {req} is required")
        if self.route == "oral" and "ka" not in self.params:
            raise ValueError(f"drug {self.name}: oral drugs need an absorption rate 'ka'")
        for a, b in (("Q2", "V2"), ("Q3", "V3")):
            if (a in self.params) != (b in self.params):
                raise ValueError(f"drug {self.name}: {a} and {b} go together")

    # ------------------------------------------------------------------ structure
    @property
    def compartments(self) -> tuple[str, ...]:
        """Compartment names in state order (none for a drug dosed into a model state)."""
        if self.target_state is not None:
            return ()
        c = []
        if self.route == "oral":
            c.append("depot")
        c.append("central")
        if "Q2" in self.params:
            c.append("peripheral1")
        if "Q3" in self.params:
            c.append("peripheral2")
        if "ke0" in self.params:
            c.append("effect")
        return tuple(c)

    @property
    def dosing_compartment(self) -> int:
        """Index (0-based) of the compartment that receives doses."""
        return 0  # depot for oral, central for IV: both come first

    @property
    def central_index(self) -> int:
        return self.compartments.index("central")

    def observed_indices(self) -> dict[str, int]:
        """Compartments whose concentration drives an effect: ``central`` and maybe ``effect``."""
        out = {"central": self.central_index}
        if "effect" in self.compartments:
            out["effect"] = self.compartments.index("effect")
        return out

    # ------------------------------------------------------------------ per-patient PK
    def individual(self, values: dict, weight):
        """Weight-scaled individual PK parameters (works on floats, numpy and JAX arrays)."""
        w = weight / self.ref_weight
        out = dict(values)
        fcl = w**self.weight_exponent_cl
        fv = w**self.weight_exponent_v
        for k in ("CL", "Q2", "Q3"):
            if k in out:
                out[k] = out[k] * fcl
        for k in ("V1", "V2", "V3"):
            if k in out:
                out[k] = out[k] * fv
        return out

    def rate_matrix(self, ind: dict) -> list[list]:
        """Rate matrix ``A`` (1/day) of ``da/dt = A a + input`` on amounts (mg).

        Returned as nested lists of scalars so that it stays elementwise under ``vmap``.
        The effect compartment holds a *virtual amount* ``a_e`` with ``C_e = a_e / V1`` and
        ``dC_e/dt = ke0 (C_p - C_e)``; it removes nothing from central (biophase model).
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
        return A

    def terminal_half_life(self, weight: float | None = None) -> float:
        """Terminal half-life (days) of the typical patient: ln2 / smallest disposition rate."""
        ind = self.individual(self.params.typical(), weight or self.ref_weight)
        A = np.array(self.rate_matrix(ind), dtype=np.float64)
        keep = [i for i, n in enumerate(self.compartments) if n not in ("depot", "effect")]
        lam = np.linalg.eigvals(A[np.ix_(keep, keep)]).real
        return math.log(2.0) / float(np.min(np.abs(lam)))


# ---------------------------------------------------------------------- the catalogue
def _pk(rows: list[tuple]) -> ParamTable:
    return ParamTable(tuple(Param(*r) for r in rows))


_AHAMADI = "Ahamadi et al. 2017, CPT:PSP 6:49, Table 3 (nlmixr2lib Ahamadi_2017_pembrolizumab.R)"
_PEREZ = (
    "Pérez-Blanco et al. 2016, Br J Clin Pharmacol 82:1517, Table 2 "
    "(nlmixr2lib PerezBlanco_2016_doxorubicin.R)"
)

PEMBROLIZUMAB = Drug(
    name="pembrolizumab",
    drug_class="ici",
    route="iv",
    params=_pk(
        [
            ("CL", 0.22, "L/day", 0.38, _AHAMADI, "clearance (reference 76.8 kg)"),
            ("V1", 3.48, "L", 0.21, _AHAMADI, "central volume"),
            ("Q2", 0.795, "L/day", 0.0, _AHAMADI, "intercompartmental clearance"),
            ("V2", 4.06, "L", 0.0, _AHAMADI, "peripheral volume"),
        ]
    ),
    effects=(
        Effect(
            "pd1_occupancy",
            "emax",
            emax=1.0,
            ec50=0.5,
            site="central",
            source=(
                "assumption: plasma-equivalent EC50 0.5 mg/L (~3.4 nM), i.e. occupancy saturates "
                "above ~1 mg/kg as reported for peripheral PD-1 receptor occupancy (Patnaik et al. "
                "2015, Clin Cancer Res 21:4286); tumour penetration folded into this EC50"
            ),
        ),
    ),
    clinical_dose="pembrolizumab 200 mg every 21 d over 30 min",
    mw=146_000.0,
    half_life_days=26.0,
    half_life_source=(
        "KEYTRUDA label 2014-2016 (t1/2 26 d, CL 0.22 L/d; the current label's 22 d reflects "
        "time-varying clearance, which Ahamadi 2017's base model omits)"
    ),
    ref_weight=76.8,
    weight_exponent_cl=0.595,
    weight_exponent_v=0.489,
    max_single_dose_mg=400.0,
    toxicity="immune-related adverse events; label doses 200 mg q3w or 400 mg q6w",
    references=(_AHAMADI,),
)

WNT974 = Drug(
    name="wnt974",
    drug_class="csc_inhibitor",
    route="oral",
    params=_pk(
        [
            (
                "ka",
                24.0,
                "1/day",
                0.4,
                "assumption: rapid oral absorption (t_max ~1-2 h); "
                "Rodon et al. 2021 full PK tables not reachable",
                "first-order absorption rate",
            ),
            (
                "CL",
                693.0,
                "L/day",
                0.4,
                "assumption: CL/F giving t1/2 ~6 h with V/F 250 L "
                "(once-daily dosing chosen in Rodon 2021 implies a short t1/2)",
                "apparent clearance CL/F",
            ),
            (
                "V1",
                250.0,
                "L",
                0.3,
                "assumption: apparent volume of a lipophilic small molecule",
                "apparent volume V/F",
            ),
        ]
    ),
    effects=(
        Effect(
            "wnt_inhibition",
            "emax",
            emax=0.9,
            ec50=0.004,
            site="central",
            source=(
                "assumption: EC50 ~0.004 mg/L (~11 nM, ~10x the PORCN cellular IC50 ~1 nM of "
                "Liu et al. 2013 PNAS 110:20224) so that 10 mg QD gives the near-complete AXIN2 "
                "suppression seen in 94% of skin biopsies (Rodon et al. 2021); Emax 0.9 because "
                "tumour AXIN2 fell in only 74% of biopsies"
            ),
        ),
    ),
    clinical_dose="wnt974 10 mg every 24 h",
    mw=396.4,
    half_life_days=0.25,
    half_life_source="assumption (no published t1/2 reachable): 6 h, see CL and V1 rows",
    max_single_dose_mg=30.0,
    toxicity=(
        "dysgeusia; bone-turnover (fragility) with Porcupine inhibitors; "
        "MTD not reached at 30 mg QD"
    ),
    references=("Rodon et al. 2021, Br J Cancer 125:28 (PMC8257624)",),
)

CB839 = Drug(
    name="cb839",
    drug_class="metabolic",
    route="oral",
    params=_pk(
        [
            (
                "ka",
                24.0,
                "1/day",
                0.4,
                "assumption: t_max ~1-2 h for an oral small molecule",
                "first-order absorption rate",
            ),
            (
                "CL",
                416.0,
                "L/day",
                0.4,
                "assumption: CL/F giving t1/2 ~4 h with V/F 100 L "
                "(twice-daily dosing chosen in Harding et al. 2021)",
                "apparent clearance CL/F",
            ),
            (
                "V1",
                100.0,
                "L",
                0.3,
                "assumption: apparent volume of an oral small molecule; "
                "no published popPK reachable",
                "apparent volume V/F",
            ),
        ]
    ),
    effects=(
        Effect(
            "glutaminase_inhibition",
            "emax",
            emax=0.95,
            ec50=0.019,
            site="central",
            source=(
                "Harding et al. 2021 Clin Cancer Res 27:4994: >90% platelet glutaminase inhibition "
                "above ~300 nM; with a Hill slope of 1 this puts the IC50 near 33 nM = 0.019 mg/L "
                "(MW 571.6); Emax 0.95 since tumour inhibition was >75%, not complete"
            ),
        ),
    ),
    clinical_dose="cb839 800 mg every 12 h",
    mw=571.6,
    half_life_days=4.0 / 24.0,
    half_life_source="assumption (no published t1/2 reachable): 4 h, see CL and V1 rows",
    max_single_dose_mg=1000.0,
    toxicity="fatigue, nausea, transaminase rise; MTD not reached (Harding et al. 2021)",
    references=("Harding et al. 2021, Clin Cancer Res 27:4994",),
)

DOXORUBICIN = Drug(
    name="doxorubicin",
    drug_class="chemo",
    route="iv",
    params=_pk(
        [
            ("CL", 62.4 * 24, "L/day", 0.229, _PEREZ, "clearance (62.4 L/h)"),
            ("V1", 17.7, "L", 0.0, _PEREZ, "central volume (fixed in source)"),
            (
                "Q2",
                50.7 * 24,
                "L/day",
                0.641,
                _PEREZ,
                "intercompartmental clearance to V2 (50.7 L/h)",
            ),
            ("V2", 1830.0, "L", 0.0, _PEREZ, "deep peripheral volume (fixed in source)"),
            (
                "Q3",
                28.4 * 24,
                "L/day",
                0.282,
                _PEREZ,
                "intercompartmental clearance to V3 (28.4 L/h)",
            ),
            ("V3", 71.0, "L", 0.0, _PEREZ, "shallow peripheral volume (fixed in source)"),
            (
                "ke0",
                0.5,
                "1/day",
                0.3,
                "assumption: slow tumour-cell uptake and retention of "
                "doxorubicin (intracellular t1/2 ~1-2 d); biophase model of Sheiner et al. 1979",
                "effect-compartment equilibration rate",
            ),
        ]
    ),
    effects=(
        Effect(
            "chemo_kill",
            "emax",
            emax=1.0,
            ec50=0.02,
            site="effect",
            source="assumption: EC50 at the effect site so that 75 mg/m2 gives ~1 log of "
            "proliferating-cell kill per cycle (log-kill hypothesis, Skipper 1964)",
        ),
        Effect(
            "chemo_stress",
            "emax",
            emax=1.0,
            ec50=0.01,
            site="effect",
            source="assumption: surviving-cell stress response (TGF-β, PD-L1 up; review §4 refs "
            "58-59) half-maximal below the killing EC50",
        ),
        Effect(
            "myelotoxicity",
            "emax",
            emax=8.0,
            ec50=0.15,
            site="central",
            source=(
                "assumption: Friberg et al. 2002 drug effect in Emax form, "
                "E = 8·C/(C + 0.15 mg/L); Friberg 2002 did not fit doxorubicin.  EC50 chosen "
                "so that 75 mg/m2 q3w gives a "
                "median ANC nadir near the grade-3/4 boundary (measured on 300 virtual patients: "
                "median 0.77e9/L, grade 4 in 28%, nadir day 11), in line with the label "
                "(myelosuppression dose-limiting, nadir day 10-14).  Bounded E keeps the "
                "precursor kill rate below ~8·ktr, within the RK4 step's stability region"
            ),
        ),
    ),
    clinical_dose="doxorubicin 75 mg/m2 every 21 d x 6",
    mw=543.5,
    half_life_days=48.0 / 24.0,
    half_life_source="doxorubicin label (Pfizer PI §12.3): terminal t1/2 20-48 h",
    max_single_dose_mg=150.0,
    toxicity="myelosuppression (ANC nadir day 10-14); cumulative cardiotoxicity above 550 mg/m2",
    references=(_PEREZ, "Friberg et al. 2002, J Clin Oncol 20:4713"),
)

CATALOGUE: dict[str, Drug] = {d.name: d for d in (PEMBROLIZUMAB, WNT974, CB839, DOXORUBICIN)}


def get_drug(name: str, catalogue: dict[str, Drug] | None = None) -> Drug:
    """Look up a drug by catalogue key, with an error listing the known names."""
    cat = CATALOGUE if catalogue is None else catalogue
    key = name.strip().lower()
    if key not in cat:
        raise ValueError(
            f"drug={name!r} is not in the catalogue; known drugs: {', '.join(sorted(cat))}"
        )
    return cat[key]

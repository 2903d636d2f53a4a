"""Model files: the observation-model tables (latent states and imperfect records).

Layer 2. Parses and validates ``[observation]`` (``exact``, ``censored``),
``[misclassification]``, ``[phases]``, ``[nonresponse]`` and their
priors (``[priors] misclassification``, ``[priors] response``) into an
:class:`ObservationModel`. When any of them is declared, fits use the forward
algorithm of :mod:`markov_migration.core.forward` (the hidden-Markov
likelihood); otherwise the pure-panel fast path. See
``docs/observation-models.md``.

Examples
--------
>>> from markov_migration.inputs.spec import parse_spec
>>> spec = parse_spec('''
... states = ["well", "ill", "dead"]
... [transitions]
... well = ["ill", "dead"]
... ill = ["well", "dead"]
... [observation]
... exact = ["dead"]
... censored = { "alive" = ["well", "ill"] }
... ''')
>>> spec.observation.exact, spec.observation.censored, spec.observation.latent
((2,), (('alive', (0, 1)),), True)
"""

from __future__ import annotations

from dataclasses import dataclass

#: Default Dirichlet concentrations of a misclassification row: the true state
#: gets CORRECT, each state it may be recorded as gets ERROR. With one possible
#: error the prior is Beta(1, 9) on the error probability: mean 0.1, 95% below 0.28.
DEFAULT_MISCLASSIFICATION_CORRECT = 9.0
DEFAULT_MISCLASSIFICATION_ERROR = 1.0

#: Default Beta prior of a response probability (uniform on [0, 1]).
DEFAULT_RESPONSE_ALPHA = 1.0
DEFAULT_RESPONSE_BETA = 1.0

#: Default prior of an attrition hazard ([nonresponse] attrition): log-Normal with
#: median 0.1 per person and time unit (about 10% lost a year) and log-scale sd 1.5.
#: The one home of this default; ``[nonresponse] attrition_prior`` overrides it.
DEFAULT_ATTRITION_RATE = 0.1
DEFAULT_ATTRITION_SD = 1.5

#: The tables this module reads (top-level keys of a model file).
OBSERVATION_TABLES = ("observation", "misclassification", "phases", "nonresponse")


@dataclass(frozen=True)
class Nonresponse:
    """State-dependent nonresponse: which interviews were scheduled, who answers them.

    Attributes
    ----------
    schedule : str
        ``"waves"``: the panel's waves (clusters of interview dates,
        :func:`markov_migration.inputs.waves.wave_bins`) are every respondent's
        scheduled interviews from their first record to the panel's last wave.
    states : tuple of int
        True states with an estimated response probability (default all);
        respondents in any other state always answer.
    alpha, beta : tuple of float
        ``Beta(alpha, beta)`` prior of the response probability of each of ``states``.
    attrition : bool
        Also a hazard of being lost for good per non-absorbing state of ``states``
        (see :mod:`markov_migration.inference.latent_nonresponse`).
    attrition_median, attrition_sd_log : float
        Log-Normal prior of each attrition hazard: median (per person and time
        unit, i.e. per person-year when the time unit is years) and sd of its
        natural log (``[nonresponse] attrition_prior = { median, sd_log }``).
    """

    schedule: str = "waves"
    states: tuple[int, ...] = ()
    alpha: tuple[float, ...] = ()
    beta: tuple[float, ...] = ()
    attrition: bool = True
    attrition_median: float = DEFAULT_ATTRITION_RATE
    attrition_sd_log: float = DEFAULT_ATTRITION_SD


@dataclass(frozen=True)
class ObservationModel:
    """What is recorded given the true (hidden) state.

    Attributes
    ----------
    exact : tuple of int
        Absorbing states whose entry times are known exactly (msm ``deathexact``).
    censored : tuple of (str, tuple of int)
        Recorded codes that mean "one of these states", in file order; in a
        panel they get record codes ``K, K + 1, ...`` after the K states.
    misclassification : tuple of (int, tuple of int)
        True state -> the other states it may be recorded as (msm ``ematrix``).
    phases : dict of int to int
        Number of latent Coxian phases (>= 2) of observed states.
    nonresponse : Nonresponse or None
        Response probabilities per true state and the schedule of interviews.
    prior_correct, prior_error : float
        Dirichlet concentrations of each misclassification row: on recording
        the truth, and on each possible error.
    obstype : bool
        The panel's ``obstype`` column flags exact transition times (2) or
        exact entry times (3) on some records. Set from the data, not the model
        file (:func:`markov_migration.inputs.obstype.with_panel_obstype`; a fit
        file records it in its root attribute ``panel_obstype``).
    """

    exact: tuple[int, ...] = ()
    censored: tuple[tuple[str, tuple[int, ...]], ...] = ()
    misclassification: tuple[tuple[int, tuple[int, ...]], ...] = ()
    phases: dict[int, int] | None = None
    nonresponse: Nonresponse | None = None
    prior_correct: float = DEFAULT_MISCLASSIFICATION_CORRECT
    prior_error: float = DEFAULT_MISCLASSIFICATION_ERROR
    obstype: bool = False

    @property
    def latent(self) -> bool:
        """Whether any observation-model feature is in use (the forward-algorithm fit)."""
        return bool(
            self.exact
            or self.obstype
            or self.censored
            or self.misclassification
            or self.phases
            or self.nonresponse is not None
        )

    @property
    def hidden(self) -> bool:
        """Whether the true state differs from the record (misclassification or phases).

        Hidden models weight the first observation by an estimated initial
        distribution; the others condition on it (as R msm).
        """
        return bool(self.misclassification or self.phases)

    @property
    def censored_codes(self) -> tuple[str, ...]:
        """Recorded codes that stand for a set of states, in record-code order."""
        return tuple(code for code, _ in self.censored)


def parse_observation(parser) -> ObservationModel:
    """Parse the observation tables of a model file.

    Parameters
    ----------
    parser : markov_migration.inputs.spec_tables.TableParser
        With ``states`` and ``transitions`` already parsed.

    Returns
    -------
    ObservationModel

    Raises
    ------
    SpecError
        Misclassification into an undeclared state, ``exact`` on a
        non-absorbing state, phases on an absorbing state, a censored code
        clashing with a state name, and malformed tables.
    """
    raw = parser.raw
    states = parser.states
    leaving = {r for r, _ in parser.transitions}
    for name in OBSERVATION_TABLES:
        if name in raw and not isinstance(raw[name], dict):
            raise parser.fail(f"[{name}] must be a table", name)
    obs = raw.get("observation", {})
    unknown = sorted(set(obs) - {"exact", "censored"})
    if unknown:
        raise parser.fail(
            f"[observation]: unknown key '{unknown[0]}' (known: censored, exact)", unknown[0]
        )
    exact = obs.get("exact", [])
    if isinstance(exact, str):
        exact = [exact]
    if not isinstance(exact, list):
        raise parser.fail("[observation] exact must be a list of absorbing states", "exact")
    exact_idx = []
    for name in exact:
        r = parser.state_index(name, "[observation] exact")
        if r in leaving:
            raise parser.fail(
                f"[observation] exact: '{name}' is not absorbing (exact entry times are for "
                "absorbing states such as death)",
                "exact",
            )
        exact_idx.append(r)
    if len(set(exact_idx)) != len(exact_idx):
        raise parser.fail("[observation] exact lists a state twice", "exact")
    censored = obs.get("censored", {})
    if not isinstance(censored, dict):
        raise parser.fail(
            '[observation] censored must be a table, e.g. { "abroad_any" = ["abroad", "transit"] }',
            "censored",
        )
    codes = []
    for code, members in censored.items():
        if code in states:
            raise parser.fail(
                f"[observation] censored: code '{code}' clashes with the state of that name",
                "censored",
            )
        if isinstance(members, str):
            members = [members]
        if not isinstance(members, list) or len(members) < 2:
            raise parser.fail(
                f"[observation] censored: '{code}' must list at least two states", "censored"
            )
        idx = tuple(parser.state_index(m, f"[observation] censored {code}") for m in members)
        if len(set(idx)) != len(idx):
            raise parser.fail(f"[observation] censored: '{code}' lists a state twice", "censored")
        codes.append((str(code), idx))
    misclass = []
    for true, recorded in raw.get("misclassification", {}).items():
        r = parser.state_index(true, "[misclassification]")
        if isinstance(recorded, str):
            recorded = [recorded]
        if not isinstance(recorded, list) or not recorded:
            raise parser.fail(
                f"[misclassification] {true} must be a list of states it may be recorded as", true
            )
        idx = tuple(parser.state_index(s, f"[misclassification] {true}") for s in recorded)
        if r in idx:
            raise parser.fail(
                f"[misclassification] {true}: lists itself (recording the truth is implied)", true
            )
        if len(set(idx)) != len(idx):
            raise parser.fail(f"[misclassification] {true}: lists a state twice", true)
        misclass.append((r, idx))
    phases = {}
    for name, count in raw.get("phases", {}).items():
        r = parser.state_index(name, "[phases]")
        if not isinstance(count, int) or isinstance(count, bool) or count < 2:
            raise parser.fail(f"[phases] {name} must be a whole number of phases >= 2", name)
        if r not in leaving:
            raise parser.fail(
                f"[phases] {name}: '{name}' is absorbing; an absorbing state cannot have phases",
                name,
            )
        phases[r] = count
    nonresponse = _parse_nonresponse(parser)
    correct, error = _misclassification_prior(parser)
    return ObservationModel(
        exact=tuple(exact_idx),
        censored=tuple(codes),
        misclassification=tuple(misclass),
        phases=phases or None,
        nonresponse=nonresponse,
        prior_correct=correct,
        prior_error=error,
    )


def _misclassification_prior(parser) -> tuple[float, float]:
    """``[priors] misclassification = { correct = 9, error = 1 }`` (Dirichlet concentrations)."""
    value = parser.raw.get("priors", {}).get("misclassification")
    if value is None:
        return DEFAULT_MISCLASSIFICATION_CORRECT, DEFAULT_MISCLASSIFICATION_ERROR
    if not isinstance(value, dict) or set(value) - {"correct", "error"}:
        raise parser.fail(
            "[priors] misclassification must be a table { correct = 9, error = 1 } "
            "(Dirichlet concentrations)",
            "misclassification",
        )
    where = "[priors] misclassification"
    correct = parser.number(
        value.get("correct", DEFAULT_MISCLASSIFICATION_CORRECT), f"{where}.correct",
        needle="misclassification",
    )  # fmt: skip
    error = parser.number(
        value.get("error", DEFAULT_MISCLASSIFICATION_ERROR), f"{where}.error",
        needle="misclassification",
    )  # fmt: skip
    return correct, error


def _parse_nonresponse(parser) -> Nonresponse | None:
    """``[nonresponse]`` and its prior ``[priors] response``."""
    table = parser.raw.get("nonresponse")
    prior = parser.raw.get("priors", {}).get("response")
    if "response" in parser.states:  # a state named "response": its prior is a rate prior
        prior = None
    if table is None:
        if prior is not None:
            raise parser.fail("[priors] response needs a [nonresponse] table", "response")
        return None
    unknown = sorted(set(table) - {"schedule", "states", "attrition", "attrition_prior"})
    if unknown:
        raise parser.fail(
            f"[nonresponse]: unknown key '{unknown[0]}' "
            "(known: attrition, attrition_prior, schedule, states)",
            unknown[0],
        )
    attrition = table.get("attrition", True)
    if not isinstance(attrition, bool):
        raise parser.fail("[nonresponse] attrition must be true or false", "attrition")
    schedule = table.get("schedule", "waves")
    if schedule != "waves":
        raise parser.fail(
            f'[nonresponse] schedule must be "waves" (the panel\'s waves), got {schedule!r}; '
            "a column of scheduled times is not supported",
            "schedule",
        )
    names = table.get("states", list(parser.states))
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names:
        raise parser.fail("[nonresponse] states must be a non-empty list of states", "states")
    idx = tuple(parser.state_index(name, "[nonresponse] states") for name in names)
    if len(set(idx)) != len(idx):
        raise parser.fail("[nonresponse] states lists a state twice", "states")
    alpha, beta = _response_prior(parser, prior, idx)
    median, sd_log = _attrition_prior(parser, table.get("attrition_prior"), attrition)
    return Nonresponse(
        schedule=schedule, states=idx, alpha=alpha, beta=beta, attrition=attrition,
        attrition_median=median, attrition_sd_log=sd_log,
    )  # fmt: skip


def _attrition_prior(parser, value, attrition: bool) -> tuple[float, float]:
    """``[nonresponse] attrition_prior = { median = 0.1, sd_log = 1.5 }`` (log-Normal).

    ``median``: the prior median of each attrition hazard, per person and time
    unit; ``sd_log``: the sd of the hazard's natural log. Either may be left out
    (its default, :data:`DEFAULT_ATTRITION_RATE`, :data:`DEFAULT_ATTRITION_SD`).
    """
    if value is None:
        return DEFAULT_ATTRITION_RATE, DEFAULT_ATTRITION_SD
    where = "[nonresponse] attrition_prior"
    if not isinstance(value, dict) or not value or set(value) - {"median", "sd_log"}:
        raise parser.fail(
            f"{where} must be a table {{ median = 0.1, sd_log = 1.5 }} (log-Normal prior of "
            "each attrition hazard: median per person and time unit, sd of its log)",
            "attrition_prior",
        )
    if not attrition:
        raise parser.fail(
            f"{where} needs attrition = true (there is no attrition hazard to give a prior)",
            "attrition_prior",
        )
    median = parser.number(
        value.get("median", DEFAULT_ATTRITION_RATE), f"{where}.median", needle="attrition_prior"
    )
    sd_log = parser.number(
        value.get("sd_log", DEFAULT_ATTRITION_SD), f"{where}.sd_log", needle="attrition_prior"
    )
    return median, sd_log


def _response_prior(parser, value, idx) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``[priors] response = { alpha = 1, beta = 1, returned = { alpha = 2, beta = 2 } }``.

    ``alpha`` and ``beta`` apply to every state; a state's own table overrides them.
    """
    where = "[priors] response"
    alpha = [DEFAULT_RESPONSE_ALPHA] * len(idx)
    beta = [DEFAULT_RESPONSE_BETA] * len(idx)
    if value is None:
        return tuple(alpha), tuple(beta)
    if not isinstance(value, dict):
        raise parser.fail(
            f"{where} must be a table, e.g. {{ alpha = 2, beta = 1 }} or "
            "{ returned = { alpha = 2, beta = 1 } }",
            "response",
        )

    def pair(table, label):
        if not isinstance(table, dict) or not table or set(table) - {"alpha", "beta"}:
            raise parser.fail(
                f"{where} {label}".rstrip()
                + " must be a table { alpha = ..., beta = ... } (Beta prior)",
                "response",
            )
        out = []
        for key in ("alpha", "beta"):
            if key in table:
                out.append(parser.number(table[key], f"{where}.{key}", needle="response"))
            else:
                out.append(None)
        return out

    common = {k: v for k, v in value.items() if k in ("alpha", "beta")}
    if common:
        a, b = pair(common, "")
        alpha = [a if a is not None else x for x in alpha]
        beta = [b if b is not None else x for x in beta]
    for name, table in value.items():
        if name in ("alpha", "beta"):
            continue
        if name not in parser.states:
            raise parser.fail(
                f"{where}: '{name}' is neither alpha, beta nor a declared state "
                f"(states: {', '.join(parser.states)}; a Beta prior per state)",
                "response",
            )
        r = parser.state_index(name, where)
        if r not in idx:
            raise parser.fail(
                f"{where}: '{name}' is not one of the [nonresponse] states", "response"
            )
        a, b = pair(table, name)
        j = idx.index(r)
        alpha[j] = a if a is not None else alpha[j]
        beta[j] = b if b is not None else beta[j]
    return tuple(alpha), tuple(beta)

"""Model files: the observation-model tables (latent states and imperfect records).

Layer 2. Parses and validates ``[observation]`` (``exact``, ``censored``),
``[misclassification]``, ``[phases]``, ``[nonresponse]`` and the
misclassification prior (``[priors] misclassification``) into an
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
from typing import Any

#: Default Dirichlet concentrations of a misclassification row: the true state
#: gets CORRECT, each state it may be recorded as gets ERROR. With one possible
#: error the prior is Beta(1, 9) on the error probability: mean 0.1, 95% below 0.28.
DEFAULT_MISCLASSIFICATION_CORRECT = 9.0
DEFAULT_MISCLASSIFICATION_ERROR = 1.0

#: The tables this module reads (top-level keys of a model file).
OBSERVATION_TABLES = ("observation", "misclassification", "phases", "nonresponse")


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
    nonresponse : dict
        The raw ``[nonresponse]`` table (parsed and validated, not fitted yet).
    prior_correct, prior_error : float
        Dirichlet concentrations of each misclassification row: on recording
        the truth, and on each possible error.
    """

    exact: tuple[int, ...] = ()
    censored: tuple[tuple[str, tuple[int, ...]], ...] = ()
    misclassification: tuple[tuple[int, tuple[int, ...]], ...] = ()
    phases: dict[int, int] | None = None
    nonresponse: dict[str, Any] | None = None
    prior_correct: float = DEFAULT_MISCLASSIFICATION_CORRECT
    prior_error: float = DEFAULT_MISCLASSIFICATION_ERROR

    @property
    def latent(self) -> bool:
        """Whether any observation-model feature is declared (the forward-algorithm fit)."""
        return bool(self.exact or self.censored or self.misclassification or self.phases)

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
    nonresponse = raw.get("nonresponse")
    if nonresponse is not None:
        unknown = sorted(set(nonresponse) - {"schedule", "states"})
        if unknown:
            raise parser.fail(
                f"[nonresponse]: unknown key '{unknown[0]}' (known: schedule, states)", unknown[0]
            )
        schedule = nonresponse.get("schedule", "waves")
        if not isinstance(schedule, str) or not schedule:
            raise parser.fail('[nonresponse] schedule must be "waves" or a column name', "schedule")
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

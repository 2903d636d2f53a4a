"""Model files: parse and validate the TOML model specification.

A model file names the states, the allowed direct transitions, the time mode
and optional tables for priors, covariates, groups, periods, the panel's column
names and known rates (for simulation). See ``docs/model-file.md`` for the full
reference. Every problem raises :class:`~markov_migration.errors.SpecError`
naming the file, the line where it can be found, and what is wrong.

Examples
--------
>>> from markov_migration.inputs.spec import parse_spec
>>> spec = parse_spec('''
... name = "toy"
... states = ["well", "ill", "dead"]
... [transitions]
... well = ["ill", "dead"]
... ill = ["well", "dead"]
... ''')
>>> spec.absorbing
('dead',)
>>> spec.transition_labels
('well->ill', 'well->dead', 'ill->well', 'ill->dead')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markov_migration.errors import SpecError
from markov_migration.inputs.observation import (
    OBSERVATION_TABLES,
    ObservationModel,
    parse_observation,
)
from markov_migration.inputs.spec_tables import (
    Covariate,
    DataColumns,
    ExitPrior,
    Groups,
    Prior,
    TableParser,
    toml_table,
)

TIME_MODES = ("continuous", "discrete")
#: Length of one day in each supported time unit.
DAY_IN_UNIT = {"years": 1 / 365.25, "months": 12 / 365.25, "weeks": 1 / 7, "days": 1.0}


@dataclass(frozen=True)
class ModelSpec:
    """A validated model specification.

    Attributes
    ----------
    name : str
    time : {"continuous", "discrete"}
    states : tuple of str
    transitions : tuple of (int, int)
        Allowed direct moves (from, to) as state indices, in file order.
    home : tuple of str
        States that mean being back in the home country (projections report
        their total as ``returnees``, all other states as ``diaspora``).
    time_unit : str
        Unit of the time axis: years (default), months, weeks or days.
    priors : dict of (int, int) to Prior
        Transitions with their own prior on the log-intensity (continuous time; see
        :mod:`markov_migration.inputs.priors`).
    concentration : dict of (int, int) to float
        Dirichlet concentration for every allowed transition and every stay
        (discrete time); keys include (r, r).
    covariates : tuple of Covariate
    groups : Groups or None
    periods : tuple of float
        Cut points of piecewise-constant intensities (time units).
    period_transitions : tuple of (int, int)
        Transitions whose intensity changes between periods.
    data : DataColumns
    rates : dict of (int, int) to float
        Known intensities (per time unit), used by ``simulate``.
    simulation : dict
        The raw ``[simulate]`` table (observation design for ``simulate``),
        validated by :mod:`markov_migration.inputs.simulate_design`.
    text : str
        The model file's text, recorded in fit files.
    path : str or None
    observation : ObservationModel
        Exact entry times, censored codes, misclassification, latent phases
        (:mod:`markov_migration.inputs.observation`); empty for a pure panel.
    period_prior_sd : float
        Sd of the Normal(0, sd) prior on every period's log hazard ratio against
        the first period (``[priors] period = { sd = ... }``; default 1).
    exit_priors : tuple of ExitPrior
        State-level priors (total exit rate and its Dirichlet split) of the
        transitions not in ``priors``: together they cover every transition once.
    """

    name: str
    time: str
    states: tuple[str, ...]
    transitions: tuple[tuple[int, int], ...]
    home: tuple[str, ...]
    time_unit: str
    priors: dict[tuple[int, int], Prior]
    concentration: dict[tuple[int, int], float]
    covariates: tuple[Covariate, ...]
    groups: Groups | None
    periods: tuple[float, ...]
    period_transitions: tuple[tuple[int, int], ...]
    data: DataColumns
    rates: dict[tuple[int, int], float]
    simulation: dict[str, Any]
    text: str
    path: str | None = None
    observation: ObservationModel = ObservationModel()
    period_prior_sd: float = 1.0
    exit_priors: tuple[ExitPrior, ...] = ()

    @property
    def n_states(self) -> int:
        """Number of states K."""
        return len(self.states)

    @property
    def absorbing(self) -> tuple[str, ...]:
        """States with no allowed transition out."""
        leaving = {r for r, _ in self.transitions}
        return tuple(s for i, s in enumerate(self.states) if i not in leaving)

    @property
    def transition_labels(self) -> tuple[str, ...]:
        """Labels ``"from->to"`` of the allowed transitions, in order."""
        return tuple(f"{self.states[r]}->{self.states[s]}" for r, s in self.transitions)

    @property
    def resolution(self) -> float:
        """Resolution to which observation gaps are rounded (time units; steps if discrete)."""
        if self.data.resolution is not None:
            return self.data.resolution
        if self.time == "discrete":
            return 1.0  # one wave step
        return DAY_IN_UNIT[self.time_unit]

    def index(self, state: str) -> int:
        """Index of a state name."""
        return self.states.index(state)

    def allowed_matrix(self):
        """Boolean (K, K) matrix of allowed direct moves (diagonal False)."""
        import numpy as np

        allowed = np.zeros((self.n_states, self.n_states), dtype=bool)
        for r, s in self.transitions:
            allowed[r, s] = True
        return allowed

    def rate_matrix(self):
        """Generator Q (K, K) from the ``[rates]`` table (per time unit).

        Raises
        ------
        SpecError
            If the model file has no ``[rates]`` table.
        """
        import numpy as np

        if not self.rates:
            raise SpecError("has no [rates] table of known intensities", path=self.path)
        q = np.zeros((self.n_states, self.n_states))
        for (r, s), value in self.rates.items():
            q[r, s] = value
        q[np.diag_indices_from(q)] = -q.sum(axis=1)
        return q


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a model file.

    Parameters
    ----------
    path : str or Path
        TOML model file.

    Returns
    -------
    ModelSpec

    Raises
    ------
    SpecError
        If the file is missing, not valid TOML or not a valid model.
    """
    path = Path(path)
    return parse_spec(read_text(path, "model file", SpecError), path=str(path))


def read_text(path: Path, what: str, error: type[Exception]) -> str:
    """A UTF-8 text file's content; ``error`` with one line ("model file not found", ...)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found", path=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"cannot read {what}: {err}", path=path) from None


def parse_spec(text: str, path: str | None = None) -> ModelSpec:
    """Parse and validate model-file text (see :func:`load_spec`)."""
    return _Parser(toml_table(text, path), text, path).parse()


def load_rates(path: str | Path, spec: ModelSpec) -> dict[tuple[int, int], float]:
    """Read known intensities from a separate rates file, for ``simulate --rates``.

    The file holds one ``[rates]`` table in the model file's format
    (``"from->to" = 0.05``, per time unit) and nothing else; it is validated
    exactly as a model file's ``[rates]`` table, against ``spec``'s states and
    transitions. The result replaces ``spec.rates`` (allowed transitions without
    an entry have intensity 0).

    Parameters
    ----------
    path : str or Path
        TOML rates file.
    spec : ModelSpec
        The model the rates are for.

    Returns
    -------
    dict of (int, int) to float
        Intensity of each listed transition (state indices), as ``ModelSpec.rates``;
        pass it to :func:`markov_migration.inputs.simulate.simulate_panel` as ``rates=``.

    Raises
    ------
    SpecError
        If the file is missing, not valid TOML, has no (or an empty) ``[rates]``
        table or other keys, or a key that is not an allowed transition of the
        model, or a value that is negative or not a finite number; the message
        names the rates file and the line.
    """
    path = Path(path)
    return parse_rates(read_text(path, "rates file", SpecError), spec, path=str(path))


def parse_rates(
    text: str, spec: ModelSpec, path: str | None = None
) -> dict[tuple[int, int], float]:
    """Parse and validate rates-file text (see :func:`load_rates`)."""
    parser = TableParser(toml_table(text, path), text, path)
    parser.states, parser.transitions = spec.states, spec.transitions
    parser.transitions_source = f"the model's [transitions] ({spec.path or spec.name})"
    unknown = sorted(set(parser.raw) - {"rates"})
    if unknown:
        raise parser.fail(
            f"unknown top-level key '{unknown[0]}' (a rates file holds only a [rates] table "
            "of 'from->to' = intensity)",
            unknown[0],
        )
    if "rates" not in parser.raw:
        raise SpecError("has no [rates] table of 'from->to' = intensity", path=path)
    rates = parser.parse_rates()
    if not rates:
        raise parser.fail("[rates] is empty: give at least one 'from->to' = intensity", "rates")
    return rates


class _Parser(TableParser):
    """The whole model file: top-level keys, states, transitions and home, then the tables."""

    known_top = {
        "name", "time", "time_unit", "states", "transitions", "home", "priors",
        "covariates", "groups", "periods", "data", "rates", "simulate", "description",
        *OBSERVATION_TABLES,
    }  # fmt: skip

    # -- sections ----------------------------------------------------------------
    def parse_priors(self, time: str):
        """The rate priors; ``[priors] response`` is left to :mod:`.observation`."""
        table = self.raw.get("priors")
        if not isinstance(table, dict) or "response" not in table or "response" in self.states:
            return super().parse_priors(time)
        raw = self.raw
        self.raw = {**raw, "priors": {k: v for k, v in table.items() if k != "response"}}
        try:
            return super().parse_priors(time)
        finally:
            self.raw = raw

    def parse(self) -> ModelSpec:
        raw = self.raw
        unknown = sorted(set(raw) - self.known_top)
        if unknown:
            raise self.fail(
                f"unknown top-level key '{unknown[0]}' (known: {', '.join(sorted(self.known_top))})",
                unknown[0],
            )
        name = raw.get("name", Path(self.path).stem if self.path else "model")
        if not isinstance(name, str) or not name:
            raise self.fail("'name' must be a non-empty string", "name")
        time = raw.get("time", "continuous")
        if time not in TIME_MODES:
            raise self.fail(f"unknown time mode '{time}' (use 'continuous' or 'discrete')", "time")
        time_unit = raw.get("time_unit", "years")
        if time_unit not in DAY_IN_UNIT:
            raise self.fail(
                f"unknown time_unit '{time_unit}' (use {', '.join(DAY_IN_UNIT)})", "time_unit"
            )
        self.parse_states()
        self.parse_transitions()
        home = self.parse_home()
        priors, exit_priors, concentration = self.parse_priors(time)
        covariates = self.parse_covariates()
        groups = self.parse_groups()
        periods, period_transitions = self.parse_periods()
        data = self.parse_data()
        rates = self.parse_rates()
        simulation = self.parse_simulation()
        observation = parse_observation(self)
        self.check_misclassification_covariates(covariates, observation)
        return ModelSpec(
            name=name,
            time=time,
            states=self.states,
            transitions=self.transitions,
            home=home,
            time_unit=time_unit,
            priors=priors,
            exit_priors=exit_priors,
            concentration=concentration,
            covariates=covariates,
            groups=groups,
            periods=periods,
            period_transitions=period_transitions,
            data=data,
            rates=rates,
            simulation=simulation,
            text=self.text,
            path=self.path,
            observation=observation,
            period_prior_sd=self.parse_period_prior(),
        )

    def check_misclassification_covariates(self, covariates, observation) -> None:
        """Covariates on misclassification: only on declared errors, not with ``[nonresponse]``."""
        declared = {(r, s) for r, targets in observation.misclassification for s in targets}
        for cov in covariates:
            where = f"[covariates.{cov.name}]"
            for r, s in cov.misclassification:
                if (r, s) not in declared:
                    label = f"{self.states[r]}->{self.states[s]}"
                    raise self.fail(
                        f"{where}: misclassification '{label}' is not declared in "
                        f'[misclassification] ({self.states[r]} = [..., "{self.states[s]}"])',
                        label,
                    )
            if cov.misclassification and observation.nonresponse is not None:
                raise self.fail(
                    f"{where}: covariates on misclassification with [nonresponse] are not "
                    "supported yet",
                    "misclassification",
                )

    def parse_states(self) -> None:
        states = self.raw.get("states")
        if states is None:
            raise self.fail("missing 'states' (a list of state names)")
        if not isinstance(states, list) or not all(isinstance(s, str) for s in states):
            raise self.fail("'states' must be a list of state names (strings)", "states")
        if not states:
            raise self.fail("'states' is empty: declare at least two states", "states")
        seen: set[str] = set()
        for s in states:
            if not s.strip() or "->" in s or "," in s:
                raise self.fail(f"invalid state name '{s}' (no blanks, '->' or commas)", "states")
            if s in seen:
                raise self.fail(f"duplicate state '{s}' in 'states'", "states")
            seen.add(s)
        if len(states) < 2:
            raise self.fail("a model needs at least two states", "states")
        self.states = tuple(states)

    def parse_transitions(self) -> None:
        table = self.raw.get("transitions")
        if not isinstance(table, dict):
            raise self.fail("missing [transitions] table (allowed direct moves per state)")
        pairs: list[tuple[int, int]] = []
        for origin, targets in table.items():
            r = self.state_index(origin, "[transitions]")
            if isinstance(targets, str):
                targets = [targets]
            if not isinstance(targets, list):
                raise self.fail(f"[transitions] {origin} must be a list of state names", origin)
            for target in targets:
                s = self.state_index(target, f"[transitions] {origin}")
                if s == r:
                    raise self.fail(
                        f"[transitions] {origin}: self-transition '{origin}->{origin}' "
                        "(staying is implied; list only moves to other states)",
                        origin,
                    )
                if (r, s) in pairs:
                    raise self.fail(f"[transitions] {origin}: '{target}' listed twice", origin)
                pairs.append((r, s))
        if not pairs:
            raise self.fail("[transitions] allows no move at all", "[transitions]")
        self.transitions = tuple(pairs)

    def parse_home(self) -> tuple[str, ...]:
        home = self.raw.get("home", [])
        if isinstance(home, str):
            home = [home]
        if not isinstance(home, list):
            raise self.fail("'home' must be a list of state names", "home")
        for s in home:
            self.state_index(s, "home")
        if len(set(home)) != len(home):
            raise self.fail("'home' lists a state twice", "home")
        if len(home) == len(self.states):
            raise self.fail("'home' cannot list every state (nobody would be abroad)", "home")
        return tuple(home)

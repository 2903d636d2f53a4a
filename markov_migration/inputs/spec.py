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

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markov_migration.errors import SpecError

TIME_MODES = ("continuous", "discrete")
#: Length of one day in each supported time unit.
DAY_IN_UNIT = {"years": 1 / 365.25, "months": 12 / 365.25, "weeks": 1 / 7, "days": 1.0}

#: Default prior on every log-intensity: median 0.2 moves per time unit (an
#: 18% chance of making that move within one unit if nothing else happens),
#: with a log-scale sd of 1.5, i.e. a 95% prior range of about 0.01 to 3.8 per unit.
DEFAULT_PRIOR_RATE = 0.2
DEFAULT_PRIOR_SD = 1.5
#: Default Dirichlet concentration for each allowed target (discrete time).
DEFAULT_CONCENTRATION = 1.0
#: Default prior sd of a log hazard ratio (a 95% range of hazard ratios 0.14-7.1).
DEFAULT_COVARIATE_SD = 1.0
#: Default half-normal scale of the sd of group random effects on log-intensities.
DEFAULT_GROUP_SD = 1.0

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]")
_ARROW = re.compile(r"^\s*([^\s>-][^>]*?)\s*->\s*(\S.*?)\s*$")


@dataclass(frozen=True)
class Prior:
    """Normal prior on one log-intensity (continuous time).

    Attributes
    ----------
    mu : float
        Prior median of the log-intensity (log of moves per time unit).
    sigma : float
        Prior sd of the log-intensity.
    source : str
        How the user stated it (e.g. ``"mean_sojourn = 2 years"``), for reports.
    """

    mu: float
    sigma: float
    source: str = "default"


@dataclass(frozen=True)
class Covariate:
    """A covariate acting log-linearly on chosen intensities (hazard ratios).

    Attributes
    ----------
    name : str
        Name in the model file.
    column : str
        Panel column holding it.
    kind : {"numeric", "categorical"}
    reference : str or None
        Reference level of a categorical covariate (default: the first level
        in sorted order).
    levels : tuple of str or None
        Declared levels of a categorical covariate (default: taken from the data).
    transitions : tuple of (int, int)
        Transitions (from, to) it acts on, as state indices.
    shared : tuple of tuple of (int, int)
        Sets of transitions constrained to share one effect.
    prior_sd : float
        Prior sd of each log hazard ratio.
    """

    name: str
    column: str
    kind: str
    reference: str | None
    levels: tuple[str, ...] | None
    transitions: tuple[tuple[int, int], ...]
    shared: tuple[tuple[tuple[int, int], ...], ...] = ()
    prior_sd: float = DEFAULT_COVARIATE_SD


@dataclass(frozen=True)
class Groups:
    """Partially pooled random effects on log-intensities by a grouping column.

    Attributes
    ----------
    column : str
        Panel column naming the group (e.g. ``host_country``).
    transitions : tuple of (int, int)
        Transitions whose log-intensity gets a group effect.
    sd_prior : float
        Scale of the half-normal prior on the random-effect sd.
    """

    column: str
    transitions: tuple[tuple[int, int], ...]
    sd_prior: float = DEFAULT_GROUP_SD


@dataclass(frozen=True)
class DataColumns:
    """Column names of the panel file and the optional integer state codes."""

    id: str = "id"
    time: str = "time"
    state: str = "state"
    weight: str | None = None
    state_codes: dict[int, str] | None = None
    resolution: float | None = None


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
        Prior for every allowed transition (continuous time).
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
        validated by :mod:`markov_migration.inputs.simulate`.
    text : str
        The model file's text, recorded in fit files.
    path : str or None
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
    return _Parser(_toml(text, path), text, path).parse()


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
    parser = _Parser(_toml(text, path), text, path)
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


def _toml(text: str, path: str | None) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a SpecError with its line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        line = getattr(err, "lineno", None)
        msg = getattr(err, "msg", str(err))
        if line is None:
            # Before Python 3.14 the position is only in the text: "... (at line 3, column 1)".
            m = _TOML_POSITION.search(msg)
            if m:
                line, msg = int(m.group(1)), f"{msg[: m.start()].rstrip()} (column {m.group(2)})"
        raise SpecError(f"TOML syntax error: {msg}", path=path, line=line) from None


class _Parser:
    known_top = {
        "name", "time", "time_unit", "states", "transitions", "home", "priors",
        "covariates", "groups", "periods", "data", "rates", "simulate", "description",
    }  # fmt: skip

    def __init__(self, raw: dict[str, Any], text: str, path: str | None) -> None:
        self.raw = raw
        self.text = text
        self.path = path
        self.lines = text.splitlines()
        #: Where the allowed transitions are declared (a rates file names its model).
        self.transitions_source = "[transitions]"

    # -- helpers -----------------------------------------------------------------
    def line_of(self, *needles: str, section: str | None = None) -> int | None:
        """First line containing all needles (for error positions).

        A line whose key is the (single) needle comes first. With ``section`` (a
        table name such as ``"priors"`` or ``"covariates.sex"``, or ``""`` for the
        top-level keys before the first table), the lines of that table are
        searched first, so that a state named in an error inside ``[transitions]``
        is not found on the ``states`` line.
        """

        def search(lines: list[tuple[int, str]]) -> int | None:
            # A line assigning the needle as a key ("ill = [...]") beats one merely mentioning it.
            for i, line in lines:
                key = line.split("#", 1)[0].split("=", 1)[0].strip().strip("\"'")
                if len(needles) == 1 and "=" in line and key == needles[0]:
                    return i
            for i, line in lines:
                stripped = line.split("#", 1)[0]
                if all(n in stripped for n in needles):
                    return i
            return None

        numbered = list(enumerate(self.lines, start=1))
        if section is not None:
            block: list[tuple[int, str]] = []
            inside = section == ""
            for i, line in numbered:
                header = _HEADER.match(line.split("#", 1)[0])
                if header:
                    inside = header.group(1).replace(" ", "") == section
                if inside:
                    block.append((i, line))
            found = search(block)
            if found is not None:
                return found
        return search(numbered)

    def fail(self, message: str, *needles: str) -> SpecError:
        # A message about a table starts with its name: "[priors] ...", "[covariates.sex]: ...".
        m = re.match(r"^\[([^\]\s]+)\]", message)
        section = m.group(1) if m else ""
        line = self.line_of(*needles, section=section) if needles else None
        return SpecError(message, path=self.path, line=line)

    def state_index(self, name: Any, where: str) -> int:
        if not isinstance(name, str) or name not in self.states:
            raise self.fail(
                f"{where}: '{name}' is not a declared state (states: {', '.join(self.states)})",
                str(name),
            )
        return self.states.index(name)

    def transition(self, label: Any, where: str) -> tuple[int, int]:
        m = _ARROW.match(label) if isinstance(label, str) else None
        if not m:
            raise self.fail(
                f"{where}: '{label}' is not a transition of the form 'from->to'", str(label)
            )
        pair = (self.state_index(m.group(1), where), self.state_index(m.group(2), where))
        if pair not in self.transitions:
            raise self.fail(
                f"{where}: '{label}' is not an allowed transition in {self.transitions_source}",
                label,
            )
        return pair

    def number(self, value: Any, where: str, *, positive: bool = True, needle: str = "") -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (positive and value <= 0):
            kind = "a positive number" if positive else "a finite number"
            raise self.fail(
                f"{where} must be {kind}, got {value!r}", needle or where.split(".")[-1]
            )
        return float(value)

    # -- sections ----------------------------------------------------------------
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
        priors, concentration = self.parse_priors(time)
        covariates = self.parse_covariates()
        groups = self.parse_groups()
        periods, period_transitions = self.parse_periods()
        data = self.parse_data()
        rates = self.parse_rates()
        simulation = self.parse_simulation()
        return ModelSpec(
            name=name,
            time=time,
            states=self.states,
            transitions=self.transitions,
            home=home,
            time_unit=time_unit,
            priors=priors,
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

    def parse_prior_value(self, key: str, value: Any) -> tuple[float | None, float | None, str]:
        """Return (rate, sd, source) from one [priors] entry."""
        if not isinstance(value, dict):
            raise self.fail(f"[priors] {key} must be a table, e.g. {{ mean_sojourn = 2 }}", key)
        allowed = {"rate", "mean_sojourn", "probability", "within", "sd", "concentration"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(
                f"[priors] {key}: unknown key '{unknown[0]}' (use one of rate, mean_sojourn, "
                "probability [+ within], and optionally sd)",
                key,
            )
        given = [k for k in ("rate", "mean_sojourn", "probability") if k in value]
        if len(given) > 1:
            raise self.fail(f"[priors] {key}: give only one of {', '.join(given)}", key)
        sd = None
        if "sd" in value:
            sd = self.number(value["sd"], f"[priors] {key}.sd", needle=key)
        if not given:
            return None, sd, "default"
        kind = given[0]
        x = self.number(value[kind], f"[priors] {key}.{kind}", needle=key)
        if kind == "rate":
            return x, sd, f"rate = {x:g} per unit"
        if kind == "mean_sojourn":
            return 1.0 / x, sd, f"mean_sojourn = {x:g} units"
        if x >= 1:
            raise self.fail(f"[priors] {key}.probability must be below 1, got {x}", key)
        within = self.number(value.get("within", 1.0), f"[priors] {key}.within", needle=key)
        return -math.log1p(-x) / within, sd, f"probability = {x:g} within {within:g} units"

    def parse_priors(self, time: str):
        table = self.raw.get("priors", {})
        if not isinstance(table, dict):
            raise self.fail("[priors] must be a table", "priors")
        default_rate, default_sd, default_source = DEFAULT_PRIOR_RATE, DEFAULT_PRIOR_SD, "default"
        default_conc = DEFAULT_CONCENTRATION
        per_state: dict[int, tuple] = {}
        per_transition: dict[tuple[int, int], tuple] = {}
        conc: dict[tuple[int, int], float] = {}
        for key, value in table.items():
            if key == "concentration":
                default_conc = self.number(value, "[priors] concentration", needle="concentration")
                continue
            if isinstance(value, dict) and "concentration" in value:
                c = self.number(value["concentration"], f"[priors] {key}.concentration", needle=key)
                if "->" in key:
                    conc[self.transition(key, "[priors]")] = c
                else:
                    r = self.state_index(key, "[priors]")
                    conc[(r, r)] = c
                value = {k: v for k, v in value.items() if k != "concentration"}
                if not value:
                    continue
            rate, sd, source = self.parse_prior_value(key, value)
            if key == "default":
                default_rate = rate if rate is not None else default_rate
                default_sd = sd if sd is not None else default_sd
                default_source = source
            elif "->" in key:
                per_transition[self.transition(key, "[priors]")] = (rate, sd, source)
            else:
                r = self.state_index(key, "[priors]")
                n_out = sum(1 for a, _ in self.transitions if a == r)
                if n_out == 0:
                    raise self.fail(
                        f"[priors] {key}: state '{key}' is absorbing (no moves out)", key
                    )
                # A state-level statement is about the total exit rate: split it evenly.
                per_state[r] = (None if rate is None else rate / n_out, sd, source)
        priors: dict[tuple[int, int], Prior] = {}
        for pair in self.transitions:
            rate, sd, source = default_rate, default_sd, default_source
            for override in (per_state.get(pair[0]), per_transition.get(pair)):
                if override is not None:
                    rate = override[0] if override[0] is not None else rate
                    sd = override[1] if override[1] is not None else sd
                    source = override[2]
            priors[pair] = Prior(mu=math.log(rate), sigma=sd, source=source)
        concentration: dict[tuple[int, int], float] = {}
        for r in range(len(self.states)):
            concentration[(r, r)] = conc.get((r, r), default_conc)
        for pair in self.transitions:
            concentration[pair] = conc.get(pair, default_conc)
        del time
        return priors, concentration

    def transition_list(self, value: Any, where: str) -> tuple[tuple[int, int], ...]:
        if value is None:
            return self.transitions
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(f"{where}.transitions must be a non-empty list of 'from->to'", where)
        out = tuple(self.transition(v, f"{where}.transitions") for v in value)
        if len(set(out)) != len(out):
            raise self.fail(f"{where}.transitions lists a transition twice", where)
        return out

    def parse_covariates(self) -> tuple[Covariate, ...]:
        table = self.raw.get("covariates", {})
        if not isinstance(table, dict):
            raise self.fail("[covariates] must hold one table per covariate", "covariates")
        out = []
        for name, c in table.items():
            where = f"[covariates.{name}]"
            if not isinstance(c, dict):
                raise self.fail(f"{where} must be a table", name)
            allowed = {"kind", "reference", "levels", "transitions", "shared", "column", "prior_sd"}
            unknown = sorted(set(c) - allowed)
            if unknown:
                raise self.fail(f"{where}: unknown key '{unknown[0]}'", unknown[0])
            kind = c.get("kind")
            if kind not in ("numeric", "categorical"):
                raise self.fail(
                    f"{where}: kind must be 'numeric' or 'categorical', got {kind!r}", name
                )
            column = c.get("column", name)
            if not isinstance(column, str) or not column:
                raise self.fail(f"{where}: column must be a column name", name)
            reference = c.get("reference")
            levels = c.get("levels")
            if kind == "numeric" and (reference is not None or levels is not None):
                raise self.fail(
                    f"{where}: 'reference' and 'levels' apply to categorical covariates", name
                )
            if levels is not None:
                if not isinstance(levels, list) or len(levels) < 2:
                    raise self.fail(f"{where}: levels must list at least two levels", "levels")
                levels = tuple(str(v) for v in levels)
                if len(set(levels)) != len(levels):
                    raise self.fail(f"{where}: levels lists a level twice", "levels")
            if reference is not None:
                reference = str(reference)
                if levels is not None and reference not in levels:
                    raise self.fail(
                        f"{where}: reference '{reference}' is not one of levels", "reference"
                    )
            transitions = self.transition_list(c.get("transitions"), where)
            shared_raw = c.get("shared", [])
            if not isinstance(shared_raw, list):
                raise self.fail(f"{where}: shared must be a list of lists of 'from->to'", "shared")
            shared = []
            seen: set[tuple[int, int]] = set()
            for block in shared_raw:
                pairs = self.transition_list(block, f"{where}.shared")
                if len(pairs) < 2:
                    raise self.fail(
                        f"{where}: each shared set needs at least two transitions", "shared"
                    )
                for p in pairs:
                    if p not in transitions:
                        raise self.fail(
                            f"{where}: shared transition not in its transitions", "shared"
                        )
                    if p in seen:
                        raise self.fail(f"{where}: a transition is in two shared sets", "shared")
                    seen.add(p)
                shared.append(pairs)
            prior_sd = self.number(c.get("prior_sd", DEFAULT_COVARIATE_SD), f"{where}.prior_sd")
            out.append(
                Covariate(
                    name, column, kind, reference, levels, transitions, tuple(shared), prior_sd
                )
            )
        return tuple(out)

    def parse_groups(self) -> Groups | None:
        g = self.raw.get("groups")
        if g is None:
            return None
        if not isinstance(g, dict) or "column" not in g:
            raise self.fail(
                "[groups] must be a table with a 'column' (e.g. 'host_country')", "groups"
            )
        unknown = sorted(set(g) - {"column", "transitions", "sd_prior"})
        if unknown:
            raise self.fail(f"[groups]: unknown key '{unknown[0]}'", unknown[0])
        if not isinstance(g["column"], str) or not g["column"]:
            raise self.fail("[groups] column must be a column name", "column")
        transitions = self.transition_list(g.get("transitions"), "[groups]")
        sd_prior = self.number(g.get("sd_prior", DEFAULT_GROUP_SD), "[groups] sd_prior")
        return Groups(g["column"], transitions, sd_prior)

    def parse_periods(self):
        p = self.raw.get("periods", [])
        transitions = None
        if isinstance(p, dict):
            unknown = sorted(set(p) - {"cuts", "transitions"})
            if unknown:
                raise self.fail(f"[periods]: unknown key '{unknown[0]}'", unknown[0])
            transitions = p.get("transitions")
            p = p.get("cuts", [])
        if not isinstance(p, list):
            raise self.fail("'periods' must be a list of cut points (time units)", "periods")
        cuts = tuple(self.number(x, "periods", positive=False) for x in p)
        if any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
            raise self.fail("'periods' cut points must be strictly increasing", "periods")
        if not cuts:
            return (), ()
        return cuts, self.transition_list(transitions, "[periods]")

    def parse_data(self) -> DataColumns:
        d = self.raw.get("data", {})
        if not isinstance(d, dict):
            raise self.fail("[data] must be a table", "data")
        allowed = {"id", "time", "state", "weight", "state_codes", "resolution"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise self.fail(
                f"[data]: unknown key '{unknown[0]}' (known: {', '.join(sorted(allowed))})",
                unknown[0],
            )
        for key in ("id", "time", "state", "weight"):
            if key in d and (not isinstance(d[key], str) or not d[key]):
                raise self.fail(f"[data] {key} must be a column name", key)
        codes = d.get("state_codes")
        mapping = None
        if codes is True:
            mapping = {i + 1: s for i, s in enumerate(self.states)}
        elif isinstance(codes, dict):
            mapping = {}
            for k, v in codes.items():
                try:
                    code = int(k)
                except ValueError:
                    raise self.fail(
                        f"[data] state_codes: '{k}' is not an integer code", "state_codes"
                    ) from None
                mapping[code] = self.states[self.state_index(v, "[data] state_codes")]
        elif codes not in (None, False):
            raise self.fail(
                "[data] state_codes must be true (1..K in state order) or a table", "state_codes"
            )
        resolution = None
        if "resolution" in d:
            resolution = self.number(d["resolution"], "[data] resolution", needle="resolution")
        return DataColumns(
            id=d.get("id", "id"),
            time=d.get("time", "time"),
            state=d.get("state", "state"),
            weight=d.get("weight"),
            state_codes=mapping,
            resolution=resolution,
        )

    def parse_rates(self) -> dict[tuple[int, int], float]:
        table = self.raw.get("rates", {})
        if not isinstance(table, dict):
            raise self.fail("[rates] must be a table of 'from->to' = intensity", "rates")
        rates = {}
        for key, value in table.items():
            pair = self.transition(key, "[rates]")
            rates[pair] = self.number(value, f"[rates] {key}", positive=False, needle=key)
            if rates[pair] < 0:
                raise self.fail(f"[rates] {key} must not be negative", key)
        return rates

    def parse_simulation(self) -> dict[str, Any]:
        s = self.raw.get("simulate", {})
        if not isinstance(s, dict):
            raise self.fail("[simulate] must be a table", "simulate")
        return s

"""Synthetic panels from a model file with known rates.

The model file's ``[rates]`` table gives the intensities (per time unit) and its
``[simulate]`` table the observation design: wave dates, jitter of interview
dates, attrition, late entry, the initial state shares and optional simulated
covariates, groups and period effects. :func:`simulate_panel` draws the design,
simulates every respondent's exact path with
:func:`markov_migration.core.simulate.simulate_paths` and returns the long-format
panel the rest of the package reads. See ``docs/simulate.md`` for the table
reference. Every problem in the ``[simulate]`` table raises
:class:`~markov_migration.errors.SpecError` naming the file and line.

Examples
--------
>>> from markov_migration.inputs.spec import parse_spec
>>> from markov_migration.inputs.simulate import simulate_panel
>>> spec = parse_spec('''
... states = ["well", "ill", "dead"]
... [transitions]
... well = ["ill", "dead"]
... ill = ["well", "dead"]
... [rates]
... "well->ill" = 0.2
... "well->dead" = 0.05
... "ill->well" = 0.5
... "ill->dead" = 0.1
... [simulate]
... waves = [0, 1, 2]
... attrition = 0.1
... ''')
>>> panel = simulate_panel(spec, 100, seed=1)
>>> list(panel.columns)
['id', 'time', 'state']
>>> int(panel.groupby("id").size().max())
3
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from markov_migration.core.simulate import SimulatedPaths, simulate_paths
from markov_migration.errors import InputError, SpecError
from markov_migration.inputs.spec import ModelSpec

#: Known keys of each ``[simulate]`` table.
DESIGN_KEYS = (
    "waves", "jitter", "attrition", "late_entry", "initial", "covariates", "groups",
    "period_effects",
)  # fmt: skip
COVARIATE_KEYS = ("levels", "reference", "normal", "center", "effects", "column")
GROUP_KEYS = ("column", "levels", "levels_by_state", "effects", "sd", "transitions")
#: Default waves when the model file has no [simulate] waves (time units).
DEFAULT_WAVES = (0.0, 1.0, 2.0)
#: Tolerance on shares summing to 1.
SHARE_TOLERANCE = 1e-6
#: Interview times and numeric covariates are rounded to this many decimals before
#: simulating, so that a panel written with 6 decimals holds exactly what was simulated.
DECIMALS = 6

_EFFECT = re.compile(
    r"^(?:(?P<level>.*?)\s*:\s*)?(?P<origin>[^:>]+?)\s*->\s*(?P<target>[^:]+?)\s*$"
)


@dataclass(frozen=True)
class SimulatedCovariate:
    """A covariate drawn for every respondent, with its true effects.

    Attributes
    ----------
    name : str
        Name in ``[simulate.covariates]`` (and in ``[covariates]`` when the model has it).
    column : str
        Panel column it is written to.
    kind : {"categorical", "numeric"}
    levels : tuple of str
        Levels of a categorical covariate (empty for numeric).
    shares : numpy.ndarray
        Population share of each level.
    reference : str or None
        Level with hazard ratio 1.
    mean, sd : float
        Normal distribution of a numeric covariate (its units).
    center : float
        Value at which a numeric covariate has hazard ratio 1 (default: mean):
        ``[rates]`` are the intensities at ``center``.
    effects : dict
        Hazard ratios: ``{(level, (from, to)): hr}`` for categorical covariates,
        ``{(None, (from, to)): hr per unit}`` for numeric ones.
    """

    name: str
    column: str
    kind: str
    levels: tuple[str, ...] = ()
    shares: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reference: str | None = None
    mean: float = 0.0
    sd: float = 0.0
    center: float = 0.0
    effects: dict[tuple[str | None, tuple[int, int]], float] = field(default_factory=dict)


@dataclass(frozen=True)
class SimulatedGroups:
    """A grouping column (e.g. ``host_country``) drawn for every respondent.

    Attributes
    ----------
    column : str
    levels : tuple of str
    shares : numpy.ndarray, shape (K, L)
        Share of each level among respondents starting in each state (the same
        row for every state unless ``levels_by_state`` was given).
    effects : dict of (str, (int, int)) to float
        Fixed hazard ratios by level and transition.
    sd : float or None
        Sd of random log hazard ratios, drawn per level and transition with the seed.
    transitions : tuple of (int, int)
        Transitions that get random effects.
    """

    column: str
    levels: tuple[str, ...]
    shares: np.ndarray
    effects: dict[tuple[str, tuple[int, int]], float]
    sd: float | None
    transitions: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SimulationDesign:
    """The validated observation design of a ``[simulate]`` table.

    Attributes
    ----------
    waves : tuple of float
        Nominal wave dates (time units), strictly increasing.
    jitter : float
        Half-width of the uniform spread of interview dates around a wave (time units).
    attrition : float
        Probability of dropping out between consecutive waves.
    late_entry : float
        Probability that a respondent first joins at the second wave.
    initial : numpy.ndarray, shape (K,)
        State shares at each respondent's first-wave interview date.
    covariates : tuple of SimulatedCovariate
    groups : SimulatedGroups or None
    period_hr : numpy.ndarray, shape (P, K, K)
        Hazard ratio of every intensity in every period (1 without ``period_effects``).
    """

    waves: tuple[float, ...]
    jitter: float
    attrition: float
    late_entry: float
    initial: np.ndarray
    covariates: tuple[SimulatedCovariate, ...]
    groups: SimulatedGroups | None
    period_hr: np.ndarray

    @property
    def n_waves(self) -> int:
        """Number of waves W."""
        return len(self.waves)


@dataclass(frozen=True)
class SimulatedPanel:
    """A simulated panel with the truth behind it (for calibration and recovery tests).

    Attributes
    ----------
    panel : pandas.DataFrame
        Long format, one row per interview: id, time, state (+ covariate and
        group columns), sorted by id and time.
    subjects : pandas.DataFrame
        One row per respondent: id, start_state (name), pattern, and the
        covariate and group columns.
    design : SimulationDesign
    paths : SimulatedPaths
        True paths, simulated to each respondent's last scheduled wave;
        ``paths.observed`` holds the true state at every scheduled interview date,
        also where the respondent was not interviewed.
    interview_times : numpy.ndarray, shape (n, W)
        Scheduled interview date of every respondent at every wave (time units),
        also where the respondent was not interviewed.
    interviewed : numpy.ndarray of bool, shape (n, W)
        Whether the respondent was interviewed at each wave.
    intensities : numpy.ndarray, shape (M, P, K, K)
        Generator of every subject pattern in every period.
    group_log_hr : numpy.ndarray, shape (L, K, K) or None
        True log hazard ratios of the group levels (fixed and random).
    seed : int
    """

    panel: pd.DataFrame
    subjects: pd.DataFrame
    design: SimulationDesign
    paths: SimulatedPaths
    interview_times: np.ndarray
    interviewed: np.ndarray
    intensities: np.ndarray
    group_log_hr: np.ndarray | None
    seed: int


# -- validation ---------------------------------------------------------------------
class _Checker:
    """Validates a [simulate] table and locates problems in the model file's text."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.lines = spec.text.splitlines() if spec.text else []
        self.start = 0
        for i, line in enumerate(self.lines):
            if line.split("#", 1)[0].strip().startswith("[simulate"):
                self.start = i
                break

    def line_of(self, *needles: str) -> int | None:
        """First line (from the [simulate] tables on) containing all needles."""
        for lo in (self.start, 0):
            for i in range(lo, len(self.lines)):
                stripped = self.lines[i].split("#", 1)[0]
                if all(n in stripped for n in needles):
                    return i + 1
        return None

    def fail(self, message: str, *needles: str) -> SpecError:
        line = self.line_of(*needles) if needles else self.line_of("[simulate")
        return SpecError(message, path=self.spec.path, line=line)

    def number(
        self,
        value: Any,
        where: str,
        needle: str,
        *,
        low: float = 0.0,
        below_one: bool = False,
        positive: bool = False,
    ) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and below_one and not low <= value < 1:
            raise self.fail(f"{where} must be a probability in [0, 1), got {value!r}", needle)
        if not ok or value < low or (positive and value <= 0):
            kind = "a positive number" if positive else f"a number >= {low:g}"
            raise self.fail(f"{where} must be {kind}, got {value!r}", needle)
        return float(value)

    def table(self, value: Any, where: str, needle: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(f"{where} must be a table", needle)
        return value

    def known(self, table: dict, keys: tuple[str, ...], where: str) -> None:
        unknown = sorted(set(table) - set(keys))
        if unknown:
            raise self.fail(
                f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(keys))})",
                unknown[0],
            )

    def shares(self, value: Any, names: tuple[str, ...] | None, where: str, needle: str) -> dict:
        """Check a table of shares >= 0 summing to 1; ``names`` restricts the keys."""
        table = self.table(value, where, needle)
        if not table:
            raise self.fail(f"{where} is empty: give the share of each level", needle)
        out = {}
        for key, share in table.items():
            if names is not None and key not in names:
                raise self.fail(
                    f"{where}: '{key}' is not a declared state (states: {', '.join(names)})", key
                )
            out[str(key)] = self.number(share, f"{where} {key}", key)
        total = sum(out.values())
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise self.fail(f"{where}: shares sum to {total:.6g}, not 1", needle)
        return out

    def transitions_of(
        self, label: str, where: str, needle: str, allowed: tuple[tuple[int, int], ...] | None
    ) -> list[tuple[int, int]]:
        """Transitions named by 'from->to' or 'from->*' (all allowed moves out of from)."""
        spec = self.spec
        m = re.match(r"^\s*([^>]+?)\s*->\s*(\S+?)\s*$", label)
        if not m:
            raise self.fail(f"{where}: '{label}' is not a transition 'from->to'", needle)
        origin, target = m.group(1), m.group(2)
        if origin not in spec.states:
            raise self.fail(
                f"{where}: '{origin}' is not a declared state (states: {', '.join(spec.states)})",
                needle,
            )
        r = spec.index(origin)
        if target == "*":
            pairs = [p for p in spec.transitions if p[0] == r]
            if allowed is not None:
                pairs = [p for p in pairs if p in allowed]
            if not pairs:
                raise self.fail(
                    f"{where}: '{label}' names no transition this effect can act on", needle
                )
            return pairs
        if target not in spec.states:
            raise self.fail(
                f"{where}: '{target}' is not a declared state (states: {', '.join(spec.states)})",
                needle,
            )
        pair = (r, spec.index(target))
        if pair not in spec.transitions:
            raise self.fail(
                f"{where}: '{origin}->{target}' is not an allowed transition in [transitions]",
                needle,
            )
        if allowed is not None and pair not in allowed:
            raise self.fail(
                f"{where}: the model does not let this act on '{origin}->{target}' "
                "(add it to the model's transitions list for it)",
                needle,
            )
        return [pair]

    def effects(
        self,
        value: Any,
        where: str,
        levels: tuple[str, ...] | None,
        reference: str | None,
        allowed: tuple[tuple[int, int], ...] | None,
    ) -> dict:
        """Hazard ratios keyed 'level:from->to' (levels given) or 'from->to' (numeric)."""
        table = self.table(value, f"{where} effects", "effects")
        out: dict[tuple[str | None, tuple[int, int]], float] = {}
        for key, hr in table.items():
            m = _EFFECT.match(key)
            level = m.group("level") if m else None
            if m is None or (levels is not None) != (level is not None):
                form = "'level:from->to'" if levels is not None else "'from->to'"
                raise self.fail(f"{where} effects: '{key}' must have the form {form}", key)
            if levels is not None:
                if level not in levels:
                    raise self.fail(
                        f"{where} effects: '{level}' is not a level (levels: {', '.join(levels)})",
                        key,
                    )
                if level == reference:
                    raise self.fail(
                        f"{where} effects: '{level}' is the reference level "
                        "(its hazard ratio is 1)",
                        key,
                    )
            ratio = self.number(hr, f"{where} effects '{key}' (a hazard ratio)", key, positive=True)
            label = f"{m.group('origin')}->{m.group('target')}"
            for pair in self.transitions_of(label, f"{where} effects", key, allowed):
                if (level, pair) in out:
                    raise self.fail(f"{where} effects: '{key}' sets a hazard ratio twice", key)
                out[(level, pair)] = ratio
        return out


def parse_design(
    spec: ModelSpec,
    *,
    waves: list[float] | tuple[float, ...] | None = None,
    attrition: float | None = None,
) -> SimulationDesign:
    """Validate the model file's ``[simulate]`` table into a design.

    Parameters
    ----------
    spec : ModelSpec
    waves : sequence of float, optional
        Wave dates overriding the table's ``waves`` (time units).
    attrition : float, optional
        Attrition overriding the table's ``attrition``.

    Returns
    -------
    SimulationDesign

    Raises
    ------
    SpecError
        If the table is invalid (the message names the file and line).
    InputError
        If an overriding argument is invalid.
    """
    chk = _Checker(spec)
    raw = chk.table(spec.simulation, "[simulate]", "simulate")
    chk.known(raw, DESIGN_KEYS, "[simulate]")
    k = spec.n_states

    if waves is not None:
        wave_list = _check_waves(list(waves), None)
    else:
        wave_list = _check_waves(raw.get("waves", list(DEFAULT_WAVES)), chk)
    jitter = chk.number(raw.get("jitter", 0.0), "[simulate] jitter", "jitter")
    gap = min(b - a for a, b in zip(wave_list, wave_list[1:], strict=False))
    if jitter >= gap / 2:
        raise chk.fail(
            f"[simulate] jitter {jitter:g} must be below half the smallest gap "
            f"between waves ({gap / 2:g}) so that interviews stay in wave order",
            "jitter",
        )
    if attrition is not None:
        ok = isinstance(attrition, int | float) and not isinstance(attrition, bool)
        if not ok or not 0 <= attrition < 1:
            raise InputError(f"attrition must be a probability in [0, 1), got {attrition!r}")
        attrition = float(attrition)
    else:
        attrition = chk.number(
            raw.get("attrition", 0.0), "[simulate] attrition", "attrition", below_one=True
        )
    late_entry = chk.number(
        raw.get("late_entry", 0.0), "[simulate] late_entry", "late_entry", below_one=True
    )

    initial = np.zeros(k)
    if "initial" in raw:
        for name, share in chk.shares(
            raw["initial"], spec.states, "[simulate] initial", "initial"
        ).items():
            initial[spec.index(name)] = share
    else:
        initial[0] = 1.0

    covariates = _parse_covariates(chk, raw.get("covariates", {}))
    groups = _parse_groups(chk, raw.get("groups"), initial)
    period_hr = _parse_period_effects(chk, raw.get("period_effects"))
    return SimulationDesign(
        waves=tuple(wave_list),
        jitter=jitter,
        attrition=attrition,
        late_entry=late_entry,
        initial=initial,
        covariates=covariates,
        groups=groups,
        period_hr=period_hr,
    )


def _check_waves(value: Any, chk: _Checker | None) -> list[float]:
    ok = (
        isinstance(value, list)
        and len(value) >= 2
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
        and all(b > a for a, b in zip(value, value[1:], strict=False))
    )
    if not ok:
        msg = f"waves must be a list of at least two strictly increasing times, got {value!r}"
        if chk is None:
            raise InputError(msg)
        raise chk.fail(f"[simulate] {msg}", "waves")
    return [float(v) for v in value]


def _parse_covariates(chk: _Checker, table: Any) -> tuple[SimulatedCovariate, ...]:
    spec = chk.spec
    table = chk.table(table, "[simulate.covariates]", "covariates")
    model = {c.name: c for c in spec.covariates}
    missing = [name for name in model if name not in table]
    if missing:
        raise chk.fail(
            f"the model's covariate '{missing[0]}' has no "
            f"[simulate.covariates.{missing[0]}] table: "
            "say how to draw it (levels = {...} shares or normal = { mean, sd })"
        )
    out = []
    for name, c in table.items():
        where = f"[simulate.covariates.{name}]"
        c = chk.table(c, where, name)
        chk.known(c, COVARIATE_KEYS, where)
        declared = model.get(name)
        column = c.get("column", declared.column if declared else name)
        if not isinstance(column, str) or not column:
            raise chk.fail(f"{where} column must be a column name", name)
        if declared is not None and column != declared.column:
            raise chk.fail(
                f"{where} column '{column}' differs from the model's column "
                f"'{declared.column}' for covariate '{name}'",
                "column",
            )
        if column in (spec.data.id, spec.data.time, spec.data.state):
            raise chk.fail(
                f"{where} column '{column}' clashes with the panel's id/time/state column", name
            )
        if ("levels" in c) == ("normal" in c):
            raise chk.fail(
                f"{where} needs exactly one of levels = {{...}} (categorical shares) "
                "or normal = { mean, sd } (numeric)",
                name,
            )
        allowed = declared.transitions if declared is not None else None
        if "levels" in c:
            if declared is not None and declared.kind != "categorical":
                raise chk.fail(
                    f"{where}: the model declares '{name}' numeric; use normal = {{ mean, sd }}",
                    "levels",
                )
            if "center" in c:
                raise chk.fail(f"{where}: 'center' applies to numeric covariates", "center")
            shares = chk.shares(c["levels"], None, f"{where} levels", "levels")
            levels = tuple(shares)
            if len(levels) < 2:
                raise chk.fail(f"{where} levels must list at least two levels", "levels")
            if (
                declared is not None
                and declared.levels is not None
                and set(levels) != set(declared.levels)
            ):
                raise chk.fail(
                    f"{where} levels {sorted(levels)} differ from the model's "
                    f"{sorted(declared.levels)}",
                    "levels",
                )
            reference = c.get("reference", declared.reference if declared else None)
            if reference is None:
                reference = sorted(levels)[0]  # the model's default reference
            reference = str(reference)
            if reference not in levels:
                raise chk.fail(
                    f"{where}: reference '{reference}' is not one of the levels", "reference"
                )
            if (
                declared is not None
                and declared.reference is not None
                and (reference != declared.reference)
            ):
                raise chk.fail(
                    f"{where}: reference '{reference}' differs from the model's "
                    f"'{declared.reference}'",
                    "reference",
                )
            effects = chk.effects(c.get("effects", {}), where, levels, reference, allowed)
            out.append(SimulatedCovariate(
                name, column, "categorical", levels, np.array([shares[v] for v in levels]),
                reference, effects=effects,
            ))  # fmt: skip
        else:
            if declared is not None and declared.kind != "numeric":
                raise chk.fail(
                    f"{where}: the model declares '{name}' categorical; use levels = "
                    "{...} shares",
                    "normal",
                )
            if "reference" in c:
                raise chk.fail(
                    f"{where}: 'reference' applies to categorical covariates", "reference"
                )
            normal = chk.table(c["normal"], f"{where} normal", "normal")
            chk.known(normal, ("mean", "sd"), f"{where} normal")
            if "mean" not in normal or "sd" not in normal:
                raise chk.fail(f"{where} normal needs mean and sd", "normal")
            ok = isinstance(normal["mean"], int | float) and not isinstance(normal["mean"], bool)
            if not ok or not math.isfinite(normal["mean"]):
                raise chk.fail(f"{where} normal mean must be a number", "normal")
            mean = float(normal["mean"])
            sd = chk.number(normal["sd"], f"{where} normal sd", "normal")
            center = c.get("center", mean)
            ok = isinstance(center, int | float) and not isinstance(center, bool)
            if not ok or not math.isfinite(center):
                raise chk.fail(f"{where} center must be a number", "center")
            effects = chk.effects(c.get("effects", {}), where, None, None, allowed)
            out.append(SimulatedCovariate(
                name, column, "numeric", mean=mean, sd=sd, center=float(center), effects=effects
            ))  # fmt: skip
    columns = [c.column for c in out]
    if len(set(columns)) != len(columns):
        raise chk.fail("[simulate.covariates]: two covariates write the same column", "covariates")
    return tuple(out)


def _parse_groups(chk: _Checker, table: Any, initial: np.ndarray) -> SimulatedGroups | None:
    spec = chk.spec
    if table is None:
        if spec.groups is not None:
            raise chk.fail(
                f"the model has [groups] (column '{spec.groups.column}') but [simulate] "
                "has no [simulate.groups] table to draw them"
            )
        return None
    where = "[simulate.groups]"
    g = chk.table(table, where, "groups")
    chk.known(g, GROUP_KEYS, where)
    column = g.get("column")
    if not isinstance(column, str) or not column:
        raise chk.fail(
            f"{where} needs column = \"...\" (the panel column, e.g. 'host_country')", "groups"
        )
    if spec.groups is not None and column != spec.groups.column:
        raise chk.fail(
            f"{where} column '{column}' differs from the model's [groups] column "
            f"'{spec.groups.column}'",
            "column",
        )
    if column in (spec.data.id, spec.data.time, spec.data.state) or column in {
        c.column for c in spec.covariates
    } | {str(n) for n in spec.simulation.get("covariates", {})}:
        raise chk.fail(f"{where} column '{column}' clashes with another panel column", "column")
    if ("levels" in g) == ("levels_by_state" in g):
        raise chk.fail(
            f"{where} needs exactly one of levels = {{...}} (shares) or "
            "[simulate.groups.levels_by_state] (shares by initial state)",
            "groups",
        )
    k = spec.n_states
    if "levels" in g:
        shares = chk.shares(g["levels"], None, f"{where} levels", "levels")
        levels = tuple(shares)
        by_state = np.tile([shares[v] for v in levels], (k, 1))
    else:
        table_bs = chk.table(g["levels_by_state"], f"{where} levels_by_state", "levels_by_state")
        per_state = {}
        for state, sh in table_bs.items():
            if state not in spec.states:
                raise chk.fail(
                    f"{where} levels_by_state: '{state}' is not a declared state "
                    f"(states: {', '.join(spec.states)})",
                    state,
                )
            per_state[state] = chk.shares(sh, None, f"{where} levels_by_state.{state}", state)
        levels = tuple(dict.fromkeys(v for sh in per_state.values() for v in sh))
        by_state = np.zeros((k, len(levels)))
        for i, state in enumerate(spec.states):
            if state in per_state:
                by_state[i] = [per_state[state].get(v, 0.0) for v in levels]
            elif initial[i] > 0:
                raise chk.fail(
                    f"{where} levels_by_state has no shares for '{state}', which has "
                    "a positive initial share",
                    "levels_by_state",
                )
    if len(levels) < 2:
        raise chk.fail(f"{where} levels must list at least two levels", "levels")
    allowed = spec.groups.transitions if spec.groups is not None else None
    if ("effects" in g) and ("sd" in g):
        raise chk.fail(
            f"{where}: give either effects (fixed hazard ratios) or sd (random effects), not both",
            "sd",
        )
    effects = chk.effects(g.get("effects", {}), where, levels, None, allowed)
    sd = None
    transitions: tuple[tuple[int, int], ...] = ()
    if "sd" in g:
        sd = chk.number(g["sd"], f"{where} sd", "sd")
        if "transitions" in g:
            labels = g["transitions"]
            if isinstance(labels, str):
                labels = [labels]
            if not isinstance(labels, list) or not labels:
                raise chk.fail(f"{where} transitions must be a list of 'from->to'", "transitions")
            pairs: list[tuple[int, int]] = []
            for lab in labels:
                pairs += chk.transitions_of(str(lab), f"{where} transitions", str(lab), allowed)
            transitions = tuple(dict.fromkeys(pairs))
        else:
            transitions = allowed if allowed is not None else spec.transitions
    elif "transitions" in g:
        raise chk.fail(f"{where}: transitions applies to random effects (sd = ...)", "transitions")
    return SimulatedGroups(column, levels, by_state, effects, sd, transitions)


def _parse_period_effects(chk: _Checker, table: Any) -> np.ndarray:
    spec = chk.spec
    n_periods = len(spec.periods) + 1
    hr = np.ones((n_periods, spec.n_states, spec.n_states))
    if table is None:
        return hr
    where = "[simulate] period_effects"
    if not spec.periods:
        raise chk.fail(f"{where} needs 'periods' (cut points) in the model", "period_effects")
    table = chk.table(table, where, "period_effects")
    for key, ratios in table.items():
        ok = isinstance(ratios, list) and len(ratios) == n_periods
        if not ok:
            raise chk.fail(
                f"{where} '{key}' must list {n_periods} hazard ratios, one per period", key
            )
        values = [
            chk.number(v, f"{where} '{key}' (a hazard ratio)", key, positive=True) for v in ratios
        ]
        for r, s in chk.transitions_of(key, where, key, spec.period_transitions):
            hr[:, r, s] = values
    return hr


# -- simulation ---------------------------------------------------------------------
def _base_rates(spec: ModelSpec, rates: Any) -> np.ndarray:
    """Build the generator (K, K) from ``rates`` (None: the model's [rates] table)."""
    if rates is None:
        return spec.rate_matrix()
    k = spec.n_states
    allowed = spec.allowed_matrix()
    if isinstance(rates, Mapping):
        q = np.zeros((k, k))
        for key, value in rates.items():
            if isinstance(key, str):
                m = re.match(r"^\s*(\S+?)\s*->\s*(\S+?)\s*$", key)
                if not m or m.group(1) not in spec.states or m.group(2) not in spec.states:
                    raise InputError(f"rates: '{key}' is not a transition 'from->to' of the model")
                key = (spec.index(m.group(1)), spec.index(m.group(2)))
            q[key] = float(value)
    else:
        q = np.array(rates, dtype=float)
        if q.shape != (k, k):
            raise InputError(
                f"rates must be a ({k}, {k}) generator or a mapping, got shape {q.shape}"
            )
        q = q.copy()
    np.fill_diagonal(q, 0.0)
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise InputError("rates must be finite and >= 0")
    if np.any(q[~allowed] > 0):
        r, s = np.argwhere(q * ~allowed > 0)[0]
        raise InputError(
            f"rates: '{spec.states[r]}->{spec.states[s]}' is not an allowed transition"
        )
    np.fill_diagonal(q, -q.sum(axis=1))
    return q


def _log_hr_matrix(effects: dict, level: str | None, k: int) -> np.ndarray:
    out = np.zeros((k, k))
    for (lev, (r, s)), hr in effects.items():
        if lev == level:
            out[r, s] = math.log(hr)
    return out


def simulate_paths_for_spec(
    spec: ModelSpec,
    n: int,
    *,
    waves: list[float] | tuple[float, ...] | None = None,
    attrition: float | None = None,
    seed: int = 0,
    progress: bool = False,
    rates: Any = None,
    history: bool = True,
) -> SimulatedPanel:
    """Simulate a panel and keep the truth behind it (paths, design, generators).

    Parameters are those of :func:`simulate_panel`, plus ``history`` (keep every
    path's full jump history; needed for :meth:`SimulatedPaths.states_at`).

    Returns
    -------
    SimulatedPanel
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InputError(f"n must be a positive whole number of respondents, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    n, seed = int(n), int(seed)
    design = parse_design(spec, waves=waves, attrition=attrition)
    q0 = _base_rates(spec, rates)
    k = spec.n_states
    n_waves = design.n_waves
    ss_design, ss_effects, ss_paths = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(ss_design)

    # Who is where at the first wave, and their attributes.
    start = rng.choice(k, size=n, p=design.initial)
    pattern = np.zeros(n, dtype=np.int64)
    radix = 1
    factors: list[np.ndarray] = []  # (levels, K, K) log hazard ratios per categorical factor
    columns: dict[str, Any] = {}
    x_cols, x_log_hr = [], []
    for cov in design.covariates:
        if cov.kind == "categorical":
            code = rng.choice(len(cov.levels), size=n, p=cov.shares)
            pattern += radix * code
            radix *= len(cov.levels)
            factors.append(np.stack([_log_hr_matrix(cov.effects, v, k) for v in cov.levels]))
            columns[cov.column] = np.asarray(cov.levels, dtype=object)[code]
        else:
            value = np.round(rng.normal(cov.mean, cov.sd, size=n), DECIMALS)
            x_cols.append(value - cov.center)
            x_log_hr.append(_log_hr_matrix(cov.effects, None, k))
            columns[cov.column] = value
    group_log_hr = None
    if design.groups is not None:
        grp = design.groups
        cum = np.cumsum(grp.shares, axis=1)[start]
        u = rng.random(n)[:, None]
        code = np.minimum((u >= cum).sum(axis=1), len(grp.levels) - 1)
        group_log_hr = np.stack([_log_hr_matrix(grp.effects, v, k) for v in grp.levels])
        if grp.sd is not None:
            eff_rng = np.random.default_rng(ss_effects)
            draws = eff_rng.normal(0.0, grp.sd, size=(len(grp.levels), len(grp.transitions)))
            for j, (r, s) in enumerate(grp.transitions):
                group_log_hr[:, r, s] = draws[:, j]
        pattern += radix * code
        radix *= len(grp.levels)
        factors.append(group_log_hr)
        columns[grp.column] = np.asarray(grp.levels, dtype=object)[code]

    # Generators of every pattern (mixed radix over the factors) in every period.
    log_hr = np.zeros((radix, k, k))
    stride = 1
    for f in factors:
        idx = (np.arange(radix) // stride) % f.shape[0]
        log_hr += f[idx]
        stride *= f.shape[0]
    off = ~np.eye(k, dtype=bool)
    q = np.where(off, q0, 0.0)[None, None] * np.exp(log_hr)[:, None] * design.period_hr[None]
    q[..., ~off] = 0.0
    q[..., np.arange(k), np.arange(k)] = -q.sum(axis=-1)

    # Interview dates, late entry and attrition.
    waves_arr = np.asarray(design.waves)
    times = waves_arr[None, :] + rng.uniform(-design.jitter, design.jitter, size=(n, n_waves))
    times = np.round(times, DECIMALS)
    first = (rng.random(n) < design.late_entry).astype(np.int64)
    # Waves answered after joining: the wave of dropping out is geometric, P(stays >= j + 1)
    # = (1 - attrition) ** j.
    if design.attrition > 0:
        stays = rng.geometric(design.attrition, size=n)
    else:
        stays = np.full(n, n_waves)
    w_idx = np.arange(n_waves)[None, :]
    interviewed = (w_idx >= first[:, None]) & (w_idx < (first + stays)[:, None])

    # Every path runs to the last scheduled wave and is looked at on every scheduled
    # interview date, so the truth behind an unanswered wave is known too.
    if progress:
        paths = _with_progress(
            q, pattern, start, times[:, 0], times, spec, x_cols, x_log_hr, ss_paths, history, n
        )
    else:
        paths = _run(
            q, pattern, start, times[:, 0], times, spec, x_cols, x_log_hr, ss_paths, history, None
        )
    observed_states = paths.observed

    ids = np.arange(1, n + 1)
    rows_i, rows_w = np.nonzero(interviewed)
    state_idx = observed_states[rows_i, rows_w]
    cols = spec.data
    if cols.state_codes:
        code_of = {name: code for code, name in cols.state_codes.items()}
        state_values = np.array([code_of[s] for s in spec.states], dtype=np.int64)[state_idx]
    else:
        state_values = np.asarray(spec.states, dtype=object)[state_idx]
    data = {cols.id: ids[rows_i], cols.time: times[rows_i, rows_w], cols.state: state_values}
    for name, values in columns.items():
        data[name] = values[rows_i]
    panel = pd.DataFrame(data)
    subjects = pd.DataFrame({
        cols.id: ids, "start_state": np.asarray(spec.states, dtype=object)[start],
        "pattern": pattern, **columns,
    })  # fmt: skip
    return SimulatedPanel(
        panel=panel,
        subjects=subjects,
        design=design,
        paths=paths,
        interview_times=times,
        interviewed=interviewed,
        intensities=q,
        group_log_hr=group_log_hr,
        seed=seed,
    )


def _run(q, pattern, start, t0, times, spec, x_cols, x_log_hr, ss_paths, history, callback):
    kwargs: dict[str, Any] = {}
    if x_cols:
        kwargs["covariate_values"] = np.column_stack(x_cols)
        kwargs["log_hazard_ratios"] = np.stack(x_log_hr)
    return simulate_paths(
        q, pattern, start, t0, times, period_cuts=np.asarray(spec.periods, dtype=float),
        seed=ss_paths, history=history, progress=callback, **kwargs,
    )  # fmt: skip


def _with_progress(q, pattern, start, t0, times, spec, x_cols, x_log_hr, ss_paths, history, n):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    total = n * (2 if history else 1)
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("simulating paths", total=total)
        return _run(
            q,
            pattern,
            start,
            t0,
            times,
            spec,
            x_cols,
            x_log_hr,
            ss_paths,
            history,
            lambda done: bar.advance(task, done),
        )


def simulate_panel(
    spec: ModelSpec,
    n: int,
    *,
    waves: list[float] | tuple[float, ...] | None = None,
    attrition: float | None = None,
    seed: int = 0,
    progress: bool = False,
    rates: Any = None,
) -> pd.DataFrame:
    """Simulate a long-format panel from a model file with known rates.

    Parameters
    ----------
    spec : ModelSpec
        Model with a ``[rates]`` table (unless ``rates`` is given) and optionally
        a ``[simulate]`` table (observation design, see ``docs/simulate.md``).
    n : int
        Number of respondents (everyone is interviewed at least once).
    waves : sequence of float, optional
        Wave dates (time units), overriding ``[simulate] waves``.
    attrition : float, optional
        Probability of dropping out between consecutive waves, overriding
        ``[simulate] attrition``.
    seed : int
        Random seed (>= 0); the same seed gives an identical panel.
    progress : bool
        Show a progress bar (rich) while simulating.
    rates : mapping or array_like, optional
        Intensities overriding ``[rates]``: ``{"from->to": rate}`` or a (K, K) generator.

    Returns
    -------
    pandas.DataFrame
        One row per interview, sorted by respondent and time, with the model's
        id, time and state columns (``[data]`` names; state names, or integer
        codes when the model declares ``state_codes``) and one column per
        simulated covariate and group.

    Raises
    ------
    SpecError
        If the model has no ``[rates]`` table or its ``[simulate]`` table is invalid.
    InputError
        If an argument is invalid.
    """
    return simulate_paths_for_spec(
        spec,
        n,
        waves=waves,
        attrition=attrition,
        seed=seed,
        progress=progress,
        rates=rates,
        history=False,
    ).panel

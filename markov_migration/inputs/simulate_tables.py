"""The ``[simulate.covariates]`` and ``[simulate.groups]`` tables, and locating problems.

:class:`DesignChecker` validates values of a model file's ``[simulate]``
tables and names the line of a problem; :func:`parse_simulated_covariates` and
:func:`parse_simulated_groups` turn the covariate and group tables into the
drawn attributes (and true effects) of simulated respondents. The rest of the
observation design is in :mod:`markov_migration.inputs.simulate_design`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from markov_migration.errors import SpecError
from markov_migration.inputs.spec import ModelSpec

COVARIATE_KEYS = ("levels", "reference", "normal", "center", "effects", "column")
GROUP_KEYS = ("column", "levels", "levels_by_state", "effects", "sd", "transitions")
#: Tolerance on shares summing to 1.
SHARE_TOLERANCE = 1e-6

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


class DesignChecker:
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
        """A SpecError with ``message`` at the line holding ``needles``."""
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
        """A finite number (optionally positive, or below one), as float."""
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and below_one and not low <= value < 1:
            raise self.fail(f"{where} must be a probability in [0, 1), got {value!r}", needle)
        if not ok or value < low or (positive and value <= 0):
            kind = "a positive number" if positive else f"a number >= {low:g}"
            raise self.fail(f"{where} must be {kind}, got {value!r}", needle)
        return float(value)

    def table(self, value: Any, where: str, needle: str) -> dict:
        """``value`` if it is a table."""
        if not isinstance(value, dict):
            raise self.fail(f"{where} must be a table", needle)
        return value

    def known(self, table: dict, keys: tuple[str, ...], where: str) -> None:
        """Refuse keys of ``table`` not in ``keys``."""
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


def parse_simulated_covariates(chk: DesignChecker, table: Any) -> tuple[SimulatedCovariate, ...]:
    """The simulated covariates of ``[simulate.covariates]`` (every model covariate needs one)."""
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


def parse_simulated_groups(
    chk: DesignChecker, table: Any, initial: np.ndarray
) -> SimulatedGroups | None:
    """The simulated grouping column of ``[simulate.groups]`` (None without one)."""
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

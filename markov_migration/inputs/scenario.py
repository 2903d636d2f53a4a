r"""Scenario files: hazard multipliers and inflow changes from a date.

A scenario (TOML) says what changes relative to the baseline projection, and
from when. The short form is one phase:

.. code-block:: toml

    name = "ceasefire-2026"
    description = "A ceasefire early in 2026: returns double, re-emigration halves"
    from = 2026.0                 # decimal year (the model's time unit)
    # until = 2030.0              # optional: back to the baseline after this

    [multipliers]                 # hazard multipliers on transition intensities
    "abroad->returned" = 2.0
    "*->returned" = 2.0           # wildcards: every allowed move into / out of a state
    "returned->reemigrated" = 0.5

    [inflow]                      # optional: one of per_year, add, multiplier
    add = 100000                  # persons per time unit on top of the baseline

Several phases go in ``[[phase]]`` tables, each with its own ``from``,
``until``, ``[phase.multipliers]`` and ``[phase.inflow]``; phases must not
overlap. A multiplier ``m`` on ``a->b`` replaces the intensity ``q_ab`` by
``m q_ab`` while the phase lasts (and the diagonal is rebuilt, so the rows of
the generator still sum to zero). An explicit transition overrides a wildcard
that matches it. A multiplier of 1 changes nothing; 0 switches a move off.

Every problem raises :class:`~markov_migration.errors.InputError` naming the
file and line: TOML syntax, unknown keys, a transition the model does not
allow, a negative multiplier, a date outside the projection.

Examples
--------
>>> from markov_migration.inputs.spec import parse_spec
>>> spec = parse_spec('''
... states = ["away", "home"]
... home = ["home"]
... [transitions]
... away = ["home"]
... home = ["away"]
... ''')
>>> sc = parse_scenario('name = "x"\nfrom = 2026.0\n[multipliers]\n"away->home" = 2.0\n', spec)
>>> sc.phases[0].multipliers
{(0, 1): 2.0}
>>> sc.check_dates(2024.5, 2035.0)
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from markov_migration.errors import InputError
from markov_migration.inputs.spec import ModelSpec, read_text

#: Name of the scenario without changes.
BASELINE = "baseline"
#: Ways a phase can change the inflow (persons per time unit).
INFLOW_KINDS = ("per_year", "add", "multiplier")

_ARROW = re.compile(r"^\s*(\S+?)\s*->\s*(\S+?)\s*$")
_PHASE_KEYS = {"from", "until", "multipliers", "inflow"}
_TOP_KEYS = {"name", "description", "phase"} | _PHASE_KEYS


class ScenarioError(InputError):
    """A scenario file is invalid."""


@dataclass(frozen=True)
class InflowChange:
    """How a phase changes the inflow rate.

    Attributes
    ----------
    kind : {"per_year", "add", "multiplier"}
        ``per_year`` replaces the baseline rate, ``add`` adds persons per time
        unit to it (a negative value removes them, never below zero),
        ``multiplier`` scales it.
    value : float
    """

    kind: str
    value: float

    def apply(self, rate: float) -> float:
        """The changed rate (persons per time unit) from a baseline rate."""
        if self.kind == "per_year":
            return self.value
        if self.kind == "add":
            return max(0.0, rate + self.value)
        return rate * self.value


@dataclass(frozen=True)
class Phase:
    """A period with changed intensities and/or inflow.

    Attributes
    ----------
    start : float
        When it starts (time units, e.g. decimal years).
    end : float or None
        When it ends (None: at the end of the projection).
    multipliers : dict of (int, int) to float
        Hazard multiplier of each changed transition (state indices).
    inflow : InflowChange or None
    line : int or None
        Line of the phase's ``from`` in the file (for error messages).
    """

    start: float
    end: float | None
    multipliers: dict[tuple[int, int], float]
    inflow: InflowChange | None = None
    line: int | None = None
    end_line: int | None = None

    def multiplier_matrix(self, n_states: int) -> np.ndarray:
        """The (K, K) matrix of multipliers (ones where unchanged)."""
        m = np.ones((n_states, n_states))
        for (r, s), value in self.multipliers.items():
            m[r, s] = value
        return m

    def active(self, t: float) -> bool:
        """Whether the phase is in force just after time ``t``."""
        return self.start <= t and (self.end is None or t < self.end)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario (see the module docstring for the file format).

    Attributes
    ----------
    name : str
    description : str
    phases : tuple of Phase
        In time order, not overlapping.
    text : str
        The file's text (recorded in projection files).
    path : str or None
    """

    name: str
    description: str = ""
    phases: tuple[Phase, ...] = ()
    text: str = ""
    path: str | None = None

    @classmethod
    def baseline(cls) -> Scenario:
        """The scenario without changes."""
        return cls(name=BASELINE, description="no changes to the fitted intensities or inflows")

    def check_dates(self, start: float, horizon: float) -> None:
        """Refuse phases that start or end outside the projection ``[start, horizon)``."""
        for ph in self.phases:
            if not start <= ph.start < horizon:
                raise ScenarioError(
                    f"from = {ph.start:g} is outside the projection ({start:g} to {horizon:g})",
                    path=self.path, line=ph.line,
                )  # fmt: skip
            if ph.end is not None and not start < ph.end <= horizon:
                raise ScenarioError(
                    f"until = {ph.end:g} is outside the projection ({start:g} to {horizon:g})",
                    path=self.path, line=ph.end_line,
                )  # fmt: skip

    def multipliers_at(self, t: float, n_states: int) -> np.ndarray:
        """Multiplier matrix in force just after time ``t`` (ones outside all phases)."""
        for ph in self.phases:
            if ph.active(t):
                return ph.multiplier_matrix(n_states)
        return np.ones((n_states, n_states))

    def inflow_at(self, t: float, rate: float) -> float:
        """Inflow rate just after time ``t`` given the baseline ``rate`` then."""
        for ph in self.phases:
            if ph.active(t) and ph.inflow is not None:
                return ph.inflow.apply(rate)
        return rate

    def change_points(self) -> list[float]:
        """Times at which the scenario switches something on or off."""
        out = []
        for ph in self.phases:
            out.append(ph.start)
            if ph.end is not None:
                out.append(ph.end)
        return sorted(set(out))

    def describe(self, spec: ModelSpec) -> str:
        """One line per phase, e.g. ``from 2026: abroad->returned x2``."""
        parts = []
        for ph in self.phases:
            when = f"from {ph.start:g}" + ("" if ph.end is None else f" until {ph.end:g}")
            what = [
                f"{spec.states[r]}->{spec.states[s]} x{m:g}" for (r, s), m in ph.multipliers.items()
            ]
            if ph.inflow is not None:
                what.append(f"inflow {ph.inflow.kind} {ph.inflow.value:g}")
            parts.append(f"{when}: {', '.join(what) or 'no change'}")
        return "; ".join(parts) or "no changes"


def load_scenario(path: str | Path, spec: ModelSpec) -> Scenario:
    """Read and validate a scenario file against a model.

    Parameters
    ----------
    path : str or Path
        Scenario file (TOML), or the name of a bundled scenario
        (``models/scenarios/NAME.toml``, e.g. ``ceasefire-2026``).
    spec : ModelSpec
        The model of the fit being projected.

    Raises
    ------
    ScenarioError
        If the file is missing, not valid TOML or not a valid scenario.
    """
    path = resolve_scenario(path)
    text = read_text(path, "scenario file", ScenarioError)
    return parse_scenario(text, spec, path=str(path))


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A scenario file path, or the name of a bundled scenario."""
    from markov_migration.io import models_dir

    p = Path(name_or_path)
    if p.exists() or p.suffix == ".toml" or len(p.parts) > 1:
        return p
    bundled = models_dir() / "scenarios" / f"{name_or_path}.toml"
    return bundled if bundled.exists() else p


def parse_scenario(text: str, spec: ModelSpec, *, path: str | None = None) -> Scenario:
    """Parse and validate scenario text against a model (see :func:`load_scenario`)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        line = getattr(err, "lineno", None)
        msg = getattr(err, "msg", str(err))
        # Python < 3.14 only puts the position into the message: "... (at line 3, column 13)"
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
        if m:
            line = line or int(m.group(1))
            msg = f"{msg[: m.start()]} (column {m.group(2)})"
        raise ScenarioError(f"TOML syntax error: {msg}", path=path, line=line) from None
    return _Parser(raw, text, spec, path).parse()


class _Parser:
    def __init__(self, raw: dict[str, Any], text: str, spec: ModelSpec, path: str | None) -> None:
        self.raw = raw
        self.spec = spec
        self.path = path
        self.lines = [line.split("#", 1)[0] for line in text.splitlines()]
        self.text = text

    def line_of(self, key: str, after: int = 0) -> int | None:
        """First line after ``after`` that assigns ``key`` or opens a table named ``key``."""
        k = re.escape(key)
        pattern = re.compile(rf"""^\s*(?:(["']?){k}\1\s*=|\[+\s*(?:[\w.]*\.)?{k}\s*\]+)""")
        for i, line in enumerate(self.lines, start=1):
            if i > after and pattern.search(line):
                return i
        return None

    def fail(self, message: str, key: str | None = None, after: int = 0) -> ScenarioError:
        line = self.line_of(key, after=after) if key else None
        return ScenarioError(message, path=self.path, line=line)

    def parse(self) -> Scenario:
        raw = self.raw
        unknown = sorted(set(raw) - _TOP_KEYS)
        if unknown:
            raise self.fail(
                f"unknown key '{unknown[0]}' (known: {', '.join(sorted(_TOP_KEYS))})", unknown[0]
            )
        default_name = Path(self.path).stem if self.path else "scenario"
        name = raw.get("name", default_name)
        if not isinstance(name, str) or not name.strip() or "," in name:
            raise self.fail("'name' must be a non-empty string without commas", "name")
        if name == BASELINE:
            raise self.fail(f"'{BASELINE}' is reserved for the projection without changes", "name")
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise self.fail("'description' must be a string", "description")
        top = {k: raw[k] for k in _PHASE_KEYS if k in raw}
        if "phase" in raw and top:
            raise self.fail(
                "use either [[phase]] tables or top-level from/multipliers/inflow, not both",
                "phase",
            )
        if "phase" in raw:
            tables = raw["phase"]
            if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
                raise self.fail("'phase' must be an array of tables ([[phase]])", "phase")
            anchors = [i for i, line in enumerate(self.lines, start=1) if "[[phase]]" in line]
            phases = [
                self.phase(t, f"[[phase]] {j + 1}: ", anchors[j] if j < len(anchors) else 0)
                for j, t in enumerate(tables)
            ]
        elif top:
            phases = [self.phase(top, "", 0)]
        else:
            raise self.fail("a scenario needs 'from' and [multipliers] and/or [inflow]")
        phases.sort(key=lambda p: p.start)
        for a, b in zip(phases, phases[1:], strict=False):
            if a.end is None or a.end > b.start:
                raise ScenarioError(
                    f"phases overlap: the phase from {a.start:g} has not ended when the next "
                    f"starts at {b.start:g}", path=self.path, line=b.line,
                )  # fmt: skip
        return Scenario(name, description, tuple(phases), self.text, self.path)

    def number(self, value: Any, what: str, needle: str, after: int) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            raise self.fail(f"{what} must be a number, got {value!r}", needle, after=after)
        return float(value)

    def phase(self, table: dict[str, Any], where: str, after: int) -> Phase:
        unknown = sorted(set(table) - _PHASE_KEYS)
        if unknown:
            raise self.fail(
                f"{where}unknown key '{unknown[0]}' (known: {', '.join(sorted(_PHASE_KEYS))})",
                unknown[0], after=after,
            )  # fmt: skip
        if "from" not in table:
            raise ScenarioError(
                f"{where}missing 'from' (when the changes start, e.g. from = 2026.0)",
                path=self.path, line=after or None,
            )  # fmt: skip
        start = self.number(table["from"], f"{where}from", "from", after)
        line = self.line_of("from", after=after)
        end, end_line = None, None
        if "until" in table:
            end = self.number(table["until"], f"{where}until", "until", after)
            end_line = self.line_of("until", after=after)
            if end <= start:
                raise ScenarioError(
                    f"{where}until = {end:g} is not after from = {start:g}",
                    path=self.path,
                    line=end_line,
                )
        multipliers = self.multipliers(table.get("multipliers", {}), where, after)
        inflow = self.inflow(table.get("inflow"), where, after)
        if not multipliers and inflow is None:
            raise self.fail(
                f"{where}no [multipliers] and no [inflow]: the phase changes nothing",
                "from",
                after=after,
            )
        return Phase(start, end, multipliers, inflow, line, end_line)

    def multipliers(self, table: Any, where: str, after: int) -> dict[tuple[int, int], float]:
        if not isinstance(table, dict):
            raise self.fail(
                f'{where}multipliers must be a table of "from->to" = number',
                "multipliers",
                after=after,
            )
        spec = self.spec
        explicit: dict[tuple[int, int], float] = {}
        wild: dict[tuple[int, int], tuple[str, float]] = {}
        for key, value in table.items():
            needle = key
            m = _ARROW.match(key)
            if not m:
                raise self.fail(
                    f"{where}'{key}' is not a transition of the form \"from->to\"",
                    needle,
                    after=after,
                )
            value = self.number(value, f"{where}multiplier of '{key}'", needle, after)
            if value < 0:
                raise self.fail(
                    f"{where}multiplier of '{key}' must not be negative, got {value:g}",
                    needle,
                    after=after,
                )
            a, b = m.group(1), m.group(2)
            for s in (a, b):
                if s != "*" and s not in spec.states:
                    raise self.fail(
                        f"{where}'{key}': '{s}' is not a state of model {spec.name} "
                        f"(states: {', '.join(spec.states)})", needle, after=after,
                    )  # fmt: skip
            pairs = [
                (r, s) for r, s in spec.transitions
                if a in ("*", spec.states[r]) and b in ("*", spec.states[s])
            ]  # fmt: skip
            if "*" not in (a, b):
                if not pairs:
                    allowed = ", ".join(spec.transition_labels)
                    raise self.fail(
                        f"{where}'{key}' is not an allowed transition of model {spec.name} "
                        f"(allowed: {allowed})", needle, after=after,
                    )  # fmt: skip
                explicit[pairs[0]] = value
                continue
            if not pairs:
                raise self.fail(
                    f"{where}'{key}' matches no allowed transition of model {spec.name}",
                    needle,
                    after=after,
                )
            for p in pairs:
                if p in wild and wild[p][1] != value:
                    label = f"{spec.states[p[0]]}->{spec.states[p[1]]}"
                    message = f"{where}wildcards '{wild[p][0]}' and '{key}' both set {label}"
                    raise self.fail(f"{message}; name it explicitly", needle, after=after)
                wild[p] = (key, value)
        out = {p: v for p, (_, v) in wild.items()}
        out.update(explicit)
        # state order, so descriptions and comparisons do not depend on the file's order
        return {p: out[p] for p in spec.transitions if p in out}

    def inflow(self, table: Any, where: str, after: int) -> InflowChange | None:
        if table is None:
            return None
        if not isinstance(table, dict):
            raise self.fail(
                f"{where}inflow must be a table, e.g. [inflow] add = 100000",
                "inflow",
                after=after,
            )
        unknown = sorted(set(table) - set(INFLOW_KINDS))
        if unknown:
            kinds = ", ".join(INFLOW_KINDS)
            raise self.fail(
                f"{where}[inflow] unknown key '{unknown[0]}' (use one of {kinds})",
                unknown[0],
                after=after,
            )
        if len(table) != 1:
            raise self.fail(
                f"{where}[inflow] needs exactly one of {', '.join(INFLOW_KINDS)}",
                "inflow",
                after=after,
            )
        kind, value = next(iter(table.items()))
        value = self.number(value, f"{where}inflow {kind}", kind, after)
        if kind != "add" and value < 0:
            raise self.fail(
                f"{where}inflow {kind} must not be negative, got {value:g}", kind, after=after
            )
        return InflowChange(kind, value)

"""Model files: the optional tables and the parser's shared machinery.

The value types of a model file's optional tables (:class:`Covariate`,
:class:`Groups`, :class:`DataColumns`; the priors' are in
:mod:`markov_migration.inputs.priors`) with their defaults, and
:class:`TableParser`, which parses and validates the ``[priors]``,
``[covariates]``, ``[groups]``, ``periods``, ``[data]``, ``[rates]`` and
``[simulate]`` tables and locates every problem on a line of the file.
:mod:`markov_migration.inputs.spec` builds the :class:`ModelSpec` from them.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from markov_migration.defaults import MISCLASSIFICATION_COVARIATE_SD
from markov_migration.errors import SpecError
from markov_migration.inputs.priors import (  # noqa: F401  (re-exported: the table's value types)
    DEFAULT_CONCENTRATION,
    DEFAULT_PRIOR_RATE,
    DEFAULT_PRIOR_SD,
    ExitPrior,
    Prior,
    PriorTables,
)

#: Default prior sd of a log hazard ratio (a 95% range of hazard ratios 0.14-7.1).
DEFAULT_COVARIATE_SD = 1.0
#: Default half-normal scale of the sd of group random effects on log-intensities.
DEFAULT_GROUP_SD = 1.0

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]")
_ARROW = re.compile(r"^\s*([^\s>-][^>]*?)\s*->\s*(\S.*?)\s*$")


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
    misclassification : tuple of (int, int)
        Misclassifications (true state, recorded state) whose log odds against
        recording the truth it shifts (R msm's ``misccovariates``); each must be
        declared in ``[misclassification]`` (checked by :mod:`markov_migration.inputs.spec`).
    misclassification_prior_sd : float
        Prior sd of each of those log odds ratios.
    """

    name: str
    column: str
    kind: str
    reference: str | None
    levels: tuple[str, ...] | None
    transitions: tuple[tuple[int, int], ...]
    shared: tuple[tuple[tuple[int, int], ...], ...] = ()
    prior_sd: float = DEFAULT_COVARIATE_SD
    misclassification: tuple[tuple[int, int], ...] = ()
    misclassification_prior_sd: float = MISCLASSIFICATION_COVARIATE_SD


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
    #: What is done to the pseudo-posterior of a weighted panel (see WEIGHTS_ADJUSTMENTS).
    weights_adjust: str = "calibrated"
    #: Column of primary sampling units (clusters) for the weights' design variance.
    cluster: str | None = None
    #: Column of msm's observation types (1 panel, 2 exact transition time, 3 exact
    #: entry time); ``None``: a column called ``obstype`` if the panel has one.
    obstype: str | None = None


#: ``[data] weights_adjust`` choices: Williams & Savitsky's calibration, or the raw
#: pseudo-posterior (markov_migration.inference.weights).
WEIGHTS_ADJUSTMENTS = ("calibrated", "none")


def toml_table(text: str, path: str | None) -> dict[str, Any]:
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


class TableParser(PriorTables):
    """Parses and validates the tables of a model (or rates) file, naming the line of a problem.

    ``states`` and ``transitions`` are set by the caller (the model file's own,
    or the model's when reading a separate rates file) before any table that
    refers to them is parsed.
    """

    states: tuple[str, ...]
    transitions: tuple[tuple[int, int], ...]

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
        """A SpecError with ``message`` at the line holding ``needles`` (in the table it names)."""
        # A message about a table starts with its name: "[priors] ...", "[covariates.sex]: ...".
        m = re.match(r"^\[([^\]\s]+)\]", message)
        section = m.group(1) if m else ""
        line = self.line_of(*needles, section=section) if needles else None
        return SpecError(message, path=self.path, line=line)

    def state_index(self, name: Any, where: str) -> int:
        """Index of a declared state; ``where`` names the place in errors."""
        if not isinstance(name, str) or name not in self.states:
            raise self.fail(
                f"{where}: '{name}' is not a declared state (states: {', '.join(self.states)})",
                str(name),
            )
        return self.states.index(name)

    def transition(self, label: Any, where: str) -> tuple[int, int]:
        """State indices (from, to) of an allowed transition ``'from->to'``."""
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
        """A finite (by default positive) number, as float."""
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (positive and value <= 0):
            kind = "a positive number" if positive else "a finite number"
            raise self.fail(
                f"{where} must be {kind}, got {value!r}", needle or where.split(".")[-1]
            )
        return float(value)

    # -- optional tables -----------------------------------------------------------
    def transition_list(self, value: Any, where: str) -> tuple[tuple[int, int], ...]:
        """A list of allowed transitions (None: all of them)."""
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

    def misclassification_list(self, value: Any, where: str) -> tuple[tuple[int, int], ...]:
        """``misclassification = ["true->recorded", ...]`` of a covariate (None: none)."""
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(
                f"{where}: misclassification must be a non-empty list of 'true->recorded'",
                "misclassification",
            )
        out = []
        for label in value:
            m = _ARROW.match(label) if isinstance(label, str) else None
            if not m:
                raise self.fail(
                    f"{where}: misclassification '{label}' is not of the form 'true->recorded'",
                    str(label),
                )
            out.append((self.state_index(m.group(1), f"{where}.misclassification"),
                        self.state_index(m.group(2), f"{where}.misclassification")))  # fmt: skip
        if len(set(out)) != len(out):
            raise self.fail(f"{where}: misclassification lists a pair twice", "misclassification")
        return tuple(out)

    def parse_covariates(self) -> tuple[Covariate, ...]:
        """The ``[covariates.NAME]`` tables."""
        table = self.raw.get("covariates", {})
        if not isinstance(table, dict):
            raise self.fail("[covariates] must hold one table per covariate", "covariates")
        out = []
        for name, c in table.items():
            where = f"[covariates.{name}]"
            if not isinstance(c, dict):
                raise self.fail(f"{where} must be a table", name)
            allowed = {"kind", "reference", "levels", "transitions", "shared", "column", "prior_sd",
                       "misclassification", "misclassification_prior_sd"}  # fmt: skip
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
            misc = self.misclassification_list(c.get("misclassification"), where)
            if misc and c.get("transitions") == []:
                transitions = ()  # the covariate acts on misclassification only
            else:
                transitions = self.transition_list(c.get("transitions"), where)
            misc_sd = self.number(
                c.get("misclassification_prior_sd", MISCLASSIFICATION_COVARIATE_SD),
                f"{where}.misclassification_prior_sd",
            )
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
                    name,
                    column,
                    kind,
                    reference,
                    levels,
                    transitions,
                    tuple(shared),
                    prior_sd,
                    misc,
                    misc_sd,
                )  # fmt: skip
            )
        return tuple(out)

    def parse_groups(self) -> Groups | None:
        """The ``[groups]`` table (None without one)."""
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

    def parse_period_prior(self) -> float:
        """Sd of the Normal(0, sd) prior on period log hazard ratios: ``[priors] period``."""
        table = self.raw.get("priors", {})
        value = table.get("period") if isinstance(table, dict) else None
        if value is None or "period" in self.states:
            return DEFAULT_COVARIATE_SD
        if not isinstance(value, dict) or set(value) != {"sd"}:
            raise self.fail(
                "[priors] period must be a table with only 'sd', e.g. period = { sd = 1.0 }",
                "period",
            )
        return self.number(value["sd"], "[priors] period.sd", needle="period")

    def parse_periods(self):
        """Cut points and period transitions from ``periods`` (a list or a table)."""
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
        """Column names, state codes and resolution from ``[data]``."""
        d = self.raw.get("data", {})
        if not isinstance(d, dict):
            raise self.fail("[data] must be a table", "data")
        allowed = {"id", "time", "state", "weight", "state_codes", "resolution",
                   "weights_adjust", "cluster", "obstype"}  # fmt: skip
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise self.fail(
                f"[data]: unknown key '{unknown[0]}' (known: {', '.join(sorted(allowed))})",
                unknown[0],
            )
        for key in ("id", "time", "state", "weight", "cluster", "obstype"):
            if key in d and (not isinstance(d[key], str) or not d[key]):
                raise self.fail(f"[data] {key} must be a column name", key)
        adjust = d.get("weights_adjust", "calibrated")
        if adjust not in WEIGHTS_ADJUSTMENTS:
            raise self.fail(
                f"[data] weights_adjust must be {' or '.join(map(repr, WEIGHTS_ADJUSTMENTS))}, "
                f"got {adjust!r}",
                "weights_adjust",
            )
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
            weights_adjust=adjust,
            cluster=d.get("cluster"),
            obstype=d.get("obstype"),
        )

    def parse_rates(self) -> dict[tuple[int, int], float]:
        """Known intensities (per time unit) from ``[rates]``."""
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
        """The raw ``[simulate]`` table (validated by the simulation design)."""
        s = self.raw.get("simulate", {})
        if not isinstance(s, dict):
            raise self.fail("[simulate] must be a table", "simulate")
        return s

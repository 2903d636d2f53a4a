"""What a projection is asked to do: output times, initial stocks, inflows, scenario steps.

Everything here checks and prepares the inputs of :func:`markov_migration.projection.run.project_fit`
(the step grid of :func:`projection_times`, initial stocks by state, the
:class:`Inflow` of new emigrants, and the :class:`StepPlan` of a scenario on the
grid) before anything is computed, so a bad input is refused with one clear
message. Splitting a published total across states as a fit implies is in
:mod:`markov_migration.projection.fitted`.

Examples
--------
>>> projection_times(2024.5, 2027, 1).tolist()
[2024.5, 2025.0, 2026.0, 2027.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from markov_migration.defaults import TIME_TOL
from markov_migration.errors import InputError
from markov_migration.inputs.scenario import Scenario
from markov_migration.inputs.spec import ModelSpec
from markov_migration.io import available_memory

#: At most this many steps from the start to the horizon (:func:`projection_times`).
MAX_STEPS = 10_000
#: At most this many persons in a run: each initial stock, their total, and the total plus
#: every arrival over the run in each scenario. Persons are then exact in float64 (< 2**53)
#: and every count, also cumulative returns over :data:`MAX_STEPS` steps, fits in int64.
MAX_PERSONS = 10**14


# ---------------------------------------------------------------------------
# time grid, initial stocks, inflows
# ---------------------------------------------------------------------------


def projection_times(start: float, horizon: float, step: float = 1.0) -> np.ndarray:
    """Output times: the start, every whole multiple of ``step`` after it, and the horizon.

    With ``step = 1`` the times after the start are calendar year boundaries
    (2025.0 = 1 January 2025), so a projection from mid-2024 reports the
    stocks at the start of each year; the first (and last) step can be shorter.

    Examples
    --------
    >>> projection_times(2024.5, 2027, 1).tolist()
    [2024.5, 2025.0, 2026.0, 2027.0]
    >>> projection_times(2024.5, 2025.6, 0.5).tolist()
    [2024.5, 2025.0, 2025.5, 2025.6]

    Raises
    ------
    InputError
        On a start, horizon or step that is not a finite number, a step that
        is not positive, a horizon not after the start, more than
        :data:`MAX_STEPS` steps (counted before any time is built), or a step
        too small to tell the times apart at their magnitude.
    """
    for name, value in (("start", start), ("horizon", horizon), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"--{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise InputError(f"--{name} must be a finite number, got {value!r}")
    start, horizon, step = float(start), float(horizon), float(step)
    if step <= 0:
        raise InputError(f"--step must be positive, got {step:g}")
    if not horizon > start:
        raise InputError(f"--horizon {horizon:g} is not after --start {start:g}")
    # count first: the multiples of step after the start number about (horizon - start) / step
    span = (horizon - start) / step  # may overflow to inf: then far too many
    if not span <= MAX_STEPS + 1:
        raise InputError(_too_many_steps(start, horizon, step, span, exact=False))
    times = [start]
    k = math.floor(start / step + 1e-9) + 1
    last = k + math.ceil(span) + 1  # bounds the loop whatever the rounding
    while k <= last and k * step < horizon - TIME_TOL:
        t = round(k * step, 10)
        if t > start + TIME_TOL:
            times.append(t)
        k += 1
    times.append(horizon)
    if len(times) - 1 > MAX_STEPS:
        raise InputError(_too_many_steps(start, horizon, step, len(times) - 1, exact=True))
    out = np.array(times)
    if np.any(np.diff(out) <= 0):
        raise InputError(
            f"--step {step:g} is too small for times near {max(abs(start), abs(horizon)):g}: "
            "consecutive output times are not distinct in floating point"
        )
    return out


#: Largest projection seed (the seed is recorded in the file as a 64-bit integer; the
#: other commands take 0 to 2**32-1, as does this).
SEED_MAX = 2**32 - 1
#: Bytes per draw, output time and scenario beyond which a projection is refused, as a
#: share of the available memory (the run holds stocks, flows and a few copies).
_PEAK_COPIES = 4


def check_run_size(
    draws: int,
    seed: int,
    n_times: int,
    n_states: int,
    n_scenarios: int = 1,
    available: int | None = None,
) -> None:
    """Refuse ``project --draws``/``--seed`` out of range or too large for memory, up front.

    Parameters
    ----------
    draws : int
        Projection draws, at least 1.
    seed : int
        0 to :data:`SEED_MAX`.
    n_times, n_states, n_scenarios : int
        Output times (with the start), states and scenarios of the run.
    available : int, optional
        Bytes of memory available (default: read from the system; unknown: no check).

    Raises
    ------
    InputError
        One line naming the option and its range, or the estimated size.
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise InputError(f"--draws must be a whole number >= 1, got {draws!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise InputError(f"--seed must be a whole number from 0 to 2**32-1, got {seed!r}")
    # int64 per (draw, time, scenario): stocks (K), flows (K x K) and a few series
    need = 8 * draws * n_times * max(n_scenarios, 1) * (n_states + n_states**2 + 8)
    if available is None:
        available = available_memory()
    if available is not None and _PEAK_COPIES * need > available:
        raise InputError(
            f"--draws {draws:,} need about {need / 1e9:.3g} GB for the projection "
            f"({_PEAK_COPIES} copies at the peak) but about {available / 1e9:.3g} GB of memory "
            "is available: use fewer --draws"
        )


def _too_many_steps(start: float, horizon: float, step: float, n: float, exact: bool) -> str:
    if exact:
        count = f"{int(n):,} steps, more than {MAX_STEPS:,}"
    else:
        about = f" (about {n:.3g})" if math.isfinite(n) else ""
        count = f"more than {MAX_STEPS:,} steps{about}"
    return (
        f"--start {start:g} to --horizon {horizon:g} with --step {step:g} is {count}: "
        "use a larger --step or a nearer --horizon"
    )


def persons_text(value: float) -> str:
    """A count of persons for a message: exact with commas, or 3 digits when huge."""
    v = float(value)
    return f"{int(v):,}" if abs(v) < 1e15 and v == round(v) else f"{v:.3g}"


def check_persons(value: float, what: str) -> None:
    """Refuse a count above :data:`MAX_PERSONS`: "``what`` N persons; at most ..."."""
    if not value <= MAX_PERSONS:
        raise InputError(
            f"{what} {persons_text(value)} persons; at most {MAX_PERSONS:.0e} are supported"
        )


def read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """Read a projection input CSV and check it has ``columns`` (one-line errors)."""
    if not path.exists():
        raise InputError("file not found", path=path)
    try:
        frame = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"not a readable CSV file ({type(err).__name__})", path=path) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for c in columns:
        if c not in frame.columns:
            found = ", ".join(frame.columns)
            raise InputError(
                f"missing column '{c}' (needs {', '.join(columns)}; found {found})", path=path
            )
    if frame.empty:
        raise InputError("has no rows", path=path)
    return frame


@dataclass(frozen=True)
class Inflow:
    """Inflow of new emigrants: a piecewise-constant rate, persons per time unit.

    ``rates[i]`` is in force from ``times[i]`` until ``times[i + 1]`` (the last
    until the horizon); before ``times[0]`` the rate is 0.

    Attributes
    ----------
    times : tuple of float
    rates : tuple of float
        Persons per time unit (per year in the default model).
    state : str or None
        State the new emigrants enter (default: the model's first non-home state).
    cv : float
        Coefficient of variation of the inflow *level*: each projection draw
        multiplies all inflows of the run by one factor ``g ~ Gamma(mean 1,
        CV cv)`` and the arrivals of a step are ``Poisson(g * expected)``, a
        negative-binomial count. 0 (default) means the inflows are known and
        arrive exactly (rounded to whole persons).
    source : str
        How it was given (for provenance).
    """

    times: tuple[float, ...] = (-math.inf,)
    rates: tuple[float, ...] = (0.0,)
    state: str | None = None
    cv: float = 0.0
    source: str = "none"

    @classmethod
    def constant(cls, per_year: float, state: str | None = None, cv: float = 0.0) -> Inflow:
        """The same number of persons every time unit."""
        if not math.isfinite(per_year) or per_year < 0:
            raise InputError(f"--inflow must be >= 0 persons per year, got {per_year:g}")
        if per_year > MAX_PERSONS:
            raise InputError(
                f"--inflow must be at most {MAX_PERSONS:.0e} persons per year, got {per_year:g}"
            )
        return cls((-math.inf,), (float(per_year),), state, cv, f"{per_year:g} per time unit")

    @classmethod
    def read_csv(cls, path: str | Path, state: str | None = None, cv: float = 0.0) -> Inflow:
        """Rates from a CSV ``time,inflow``: persons per time unit from each time on."""
        path = Path(path)
        frame = read_csv(path, ("time", "inflow"))
        times, rates = [], []
        for i, (t, n) in enumerate(zip(frame["time"], frame["inflow"], strict=True), start=1):
            tv = pd.to_numeric(pd.Series([t]), errors="coerce").iloc[0]
            nv = pd.to_numeric(pd.Series([n]), errors="coerce").iloc[0]
            if pd.isna(tv) or not math.isfinite(tv):
                raise InputError(f"time is not a number: '{t}'", path=path, row=i, column="time")
            if pd.isna(nv) or not math.isfinite(nv) or nv < 0 or nv > MAX_PERSONS:
                raise InputError(
                    f"inflow must be a number from 0 to {MAX_PERSONS:.0e} (persons per year), "
                    f"got '{n}'",
                    path=path,
                    row=i,
                    column="inflow",
                )
            if times and tv <= times[-1]:
                raise InputError(
                    "times must increase from row to row", path=path, row=i, column="time"
                )
            times.append(float(tv))
            rates.append(float(nv))
        return cls(tuple(times), tuple(rates), state, cv, f"file {path}")

    def check(self, spec: ModelSpec) -> Inflow:
        """Validate the state and CV against a model; fill in the default state."""
        if not math.isfinite(self.cv) or self.cv < 0:
            raise InputError(f"--inflow-cv must be >= 0, got {self.cv:g}")
        state = self.state
        if state is None:
            away = [s for s in spec.states if s not in spec.home]
            state = away[0] if away else spec.states[0]
        if state not in spec.states:
            known = ", ".join(spec.states)
            raise InputError(
                f"--inflow-state '{state}' is not a state of model {spec.name} (states: {known})"
            )
        return Inflow(self.times, self.rates, state, self.cv, self.source)

    def rate_at(self, t: float) -> float:
        """Rate in force just after time ``t``."""
        i = int(np.searchsorted(np.asarray(self.times), t + TIME_TOL, side="right")) - 1
        return 0.0 if i < 0 else self.rates[i]

    def expected(self, times: np.ndarray, scenario: Scenario | None = None) -> np.ndarray:
        """Expected arrivals in each step ``(times[k], times[k + 1]]`` under a scenario."""
        cuts = [t for t in self.times if math.isfinite(t)]
        if scenario is not None:
            cuts += scenario.change_points()
        out = np.zeros(len(times) - 1)
        for k, (a, b) in enumerate(zip(times[:-1], times[1:], strict=True)):
            edges = sorted({a, b} | {c for c in cuts if a + TIME_TOL < c < b - TIME_TOL})
            for u, v in zip(edges[:-1], edges[1:], strict=True):
                rate = self.rate_at(u)
                if scenario is not None:
                    rate = scenario.inflow_at(u, rate)
                out[k] += rate * (v - u)
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-able description (for provenance attributes)."""
        return {
            "source": self.source,
            "state": self.state,
            "cv": self.cv,
            "times": [t if math.isfinite(t) else None for t in self.times],
            "rates_per_time_unit": list(self.rates),
            "distribution": "fixed (rounded to whole persons)" if self.cv == 0 else (
                f"per draw a level g ~ Gamma(mean 1, CV {self.cv:g}) for the whole run; "
                "arrivals per step ~ Poisson(g * expected)"
            ),
        }  # fmt: skip


# ---------------------------------------------------------------------------
# scenario application: a scenario on the output time grid
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepPlan:
    """What one scenario does in each step: pieces of constant generator, and inflows.

    Attributes
    ----------
    steps : list of list of (float, int)
        Per step, ``(duration, piece index)`` pieces in time order.
    multipliers : ndarray, shape (M, K, K)
        Hazard multipliers of each piece index.
    inflow : ndarray, shape (S,)
        Expected arrivals per step (persons).
    periods : ndarray of int, shape (M,)
        Period in force for each piece index (all 0 without periods).
    exit_rates : ndarray, shape (M, K), or None
        Exit rates in force for each piece index (None: no exits).
    """

    steps: list[list[tuple[float, int]]]
    multipliers: np.ndarray
    inflow: np.ndarray
    periods: np.ndarray
    exit_rates: np.ndarray | None = None


def scenario_plan(
    scenario: Scenario,
    times: np.ndarray,
    spec: ModelSpec,
    inflow: Inflow,
    period_cuts: Sequence[float] = (),
    exits: Any = None,
) -> StepPlan:
    """The step plan of a scenario on the output time grid.

    A step is split where the scenario switches multipliers on or off, at
    the period cut points (``period_cuts``: period ``i`` holds from cut
    ``i - 1`` to cut ``i``, the last one after the last cut) and where the
    exit rates change (``exits``, an
    :class:`~markov_migration.projection.exits.ExitRates`), and adjacent
    pieces with the same multipliers, period and exit rates are merged
    again, so a scenario whose multipliers are all 1 has exactly the
    baseline's pieces.
    """
    k = spec.n_states
    mats: list[np.ndarray] = []
    period_of: list[int] = []
    exits_of: list[np.ndarray] = []
    cut_array = np.asarray(list(period_cuts), dtype=float)
    no_exits = np.zeros(k)

    def index_of(m: np.ndarray, p: int, e: np.ndarray) -> int:
        for i, existing in enumerate(mats):
            if period_of[i] == p and np.array_equal(existing, m) and np.array_equal(exits_of[i], e):
                return i
        mats.append(m)
        period_of.append(p)
        exits_of.append(e)
        return len(mats) - 1

    def period_at(u: float) -> int:
        return int(np.searchsorted(cut_array, u + TIME_TOL, side="right"))

    cuts = scenario.change_points() + [float(c) for c in cut_array]
    if exits is not None:
        cuts += exits.change_points()
    steps = []
    for a, b in zip(times[:-1], times[1:], strict=True):
        edges = sorted({float(a), float(b)} | {c for c in cuts if a + TIME_TOL < c < b - TIME_TOL})
        pieces: list[tuple[float, int]] = []
        for u, v in zip(edges[:-1], edges[1:], strict=True):
            e = no_exits if exits is None else exits.rates_at(u)
            m = index_of(scenario.multipliers_at(u, k), period_at(u), e)
            if pieces and pieces[-1][1] == m:
                pieces[-1] = (pieces[-1][0] + (v - u), m)
            else:
                pieces.append((v - u, m))
        # a single piece uses the step length itself, so it is bit-identical across scenarios
        if len(pieces) == 1:
            pieces = [(float(b - a), pieces[0][1])]
        steps.append(pieces)
    return StepPlan(
        steps,
        np.stack(mats),
        inflow.expected(times, scenario),
        np.array(period_of, dtype=np.int64),
        None if exits is None else np.stack(exits_of),
    )

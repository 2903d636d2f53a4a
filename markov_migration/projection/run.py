"""Projection of stocks by state from a fit file: returnees and diaspora by year.

For every posterior draw of the generator ``Q`` the people of the initial
stocks move step by step through ``P(step) = expm(Q step)`` (with scenario
multipliers where a scenario is in force), each person independently
(multinomial moves, :mod:`markov_migration.core.projection`), new emigrants
arrive in one state, and the stocks, flows and cumulative returns are recorded.
The result is an :class:`xarray.Dataset` (see :func:`project_fit`) that
:func:`write_projection` writes as NetCDF, :func:`quantile_table` summarises
for a spreadsheet and :mod:`markov_migration.plots.fan` draws as fan charts.

Uncertainty in the result has three parts: the posterior uncertainty of the
intensities (draws of ``Q``), demographic stochasticity (who moves is random
even when the intensities are known) and, when asked, uncertainty of the
inflow level. It does not cover model error: intensities constant in time
outside the scenarios, Markov moves (no memory of time spent in a state), the
same intensities for everyone, a panel representative of all emigrants.

This module imports numpy, xarray and the layers below it; never PyMC, so a
projection runs in seconds on a planner's machine. Dask and distributed are
imported only for ``dask=...`` runs.

Examples
--------
>>> from markov_migration.projection.run import project_fit  # doctest: +SKIP
>>> ds = project_fit("fit.nc", {"abroad": 300_000, "transit": 150_000},
...                  start=2024.5, horizon=2035, scenarios=["ceasefire-2026"])  # doctest: +SKIP
>>> ds["returnees"].sel(time=2030.0).quantile([0.1, 0.5, 0.9], "draw")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration import __version__
from markov_migration.core.projection import draw_seeds, project_stocks, step_pmatrices
from markov_migration.defaults import TIME_TOL
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec, read_fit
from markov_migration.fitfile.generators import chosen_generators
from markov_migration.inputs.scenario import Scenario, load_scenario
from markov_migration.inputs.spec import ModelSpec
from markov_migration.io import atomic_output

#: Marker attribute and format version of projection files.
PROJECTION_MARKER = "markov_migration_projection"
PROJECTION_FORMAT_VERSION = 1
#: Central interval probabilities reported in the quantile table and fan charts.
INTERVALS = (0.5, 0.8, 0.95)
#: Columns of the quantile CSV.
QUANTILE_COLUMNS = (
    "scenario", "time", "series", "mean", "median",
    "lower50", "upper50", "lower80", "upper80", "lower95", "upper95",
)  # fmt: skip
#: Draws per compiled call (progress is reported per chunk; results do not depend on it).
CHUNK_DRAWS = 1000
#: Posterior draws used to split an initial total (:func:`initial_stocks_from_fit`).
SPLIT_DRAWS = 1000
#: At most this many survey waves are shown (see :func:`observed_prevalence`).
MAX_WAVES = 12
#: Observation gaps are rounded to this (time units) when propagating the panel.
SPLIT_GAP_RESOLUTION = 0.01
#: At most this many steps from the start to the horizon (:func:`projection_times`).
MAX_STEPS = 10_000
#: At most this many persons in a run: each initial stock, their total, and the total plus
#: every arrival over the run in each scenario. Persons are then exact in float64 (< 2**53)
#: and every count, also cumulative returns over :data:`MAX_STEPS` steps, fits in int64.
MAX_PERSONS = 10**14

UNCERTAINTY_NOTE = (
    "intervals across draws combine posterior uncertainty of the intensities, demographic "
    "stochasticity (independent multinomial moves of persons) and, if inflow_cv > 0, "
    "uncertainty of the inflow level; they do not cover model error (time-constant "
    "intensities outside scenarios, Markov moves, homogeneous persons, a representative panel)"
)
FLOWS_NOTE = (
    "flows[time=t] counts persons by their state at the previous output time (from_state) and "
    "at t (to_state), diagonal = stayed; moves made and undone within one step are not seen; "
    "zero at the start time"
)


# ---------------------------------------------------------------------------
# inputs: time grid, initial stocks, inflows
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


def _persons(value: float) -> str:
    """A count of persons for a message: exact with commas, or 3 digits when huge."""
    v = float(value)
    return f"{int(v):,}" if abs(v) < 1e15 and v == round(v) else f"{v:.3g}"


def _check_persons(value: float, what: str) -> None:
    """Refuse a count above :data:`MAX_PERSONS`: "``what`` N persons; at most ..."."""
    if not value <= MAX_PERSONS:
        raise InputError(
            f"{what} {_persons(value)} persons; at most {MAX_PERSONS:.0e} are supported"
        )


def parse_initial(text: str, spec: ModelSpec) -> dict[str, int]:
    """Initial stocks from ``"abroad=300000,transit=150000"`` (states not named start empty).

    Raises
    ------
    InputError
        On an unknown state, a state named twice, or a stock that is not a
        whole number >= 0.
    """
    out: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise InputError(f"--initial: '{item.strip()}' is not of the form state=persons")
        if name in out:
            raise InputError(f"--initial: state '{name}' given twice")
        try:
            out[name] = float(value.replace("_", ""))
        except ValueError:
            raise InputError(
                f"--initial: stock of '{name}' is not a number: '{value.strip()}'"
            ) from None
    return initial_stocks(out, spec, where="--initial")


def read_initial_file(path: str | Path, spec: ModelSpec) -> dict[str, int]:
    """Initial stocks from a CSV with columns ``state,stock`` (one row per state)."""
    path = Path(path)
    frame = _read_csv(path, ("state", "stock"))
    out: dict[str, float] = {}
    for i, (state, stock) in enumerate(zip(frame["state"], frame["stock"], strict=True), start=1):
        state = str(state).strip()
        if state not in spec.states:
            raise InputError(
                f"'{state}' is not a state of model {spec.name} (states: {', '.join(spec.states)})",
                path=path, row=i, column="state",
            )  # fmt: skip
        if state in out:
            raise InputError(f"state '{state}' appears twice", path=path, row=i, column="state")
        value = pd.to_numeric(pd.Series([stock]), errors="coerce").iloc[0]
        if pd.isna(value) or not math.isfinite(value) or value < 0 or value != round(value):
            raise InputError(
                f"stock must be a whole number of persons >= 0, got '{stock}'",
                path=path,
                row=i,
                column="stock",
            )
        if value > MAX_PERSONS:
            raise InputError(
                f"stock is {_persons(value)} persons; at most {MAX_PERSONS:.0e} are supported",
                path=path,
                row=i,
                column="stock",
            )
        out[state] = float(value)
    return initial_stocks(out, spec, where=str(path))


def initial_stocks(
    stocks: Mapping[str, float], spec: ModelSpec, where: str = "initial stocks"
) -> dict[str, int]:
    """Validate initial stocks by state name; return whole persons for every state."""
    prefix = f"{where}: " if where else ""
    out = dict.fromkeys(spec.states, 0)
    for name, value in stocks.items():
        if name not in spec.states:
            known = ", ".join(spec.states)
            raise InputError(
                f"{prefix}'{name}' is not a state of model {spec.name} (states: {known})"
            )
        v = float(value)
        if not math.isfinite(v):
            raise InputError(
                f"{prefix}stock of '{name}' must be a finite whole number of persons, got {v:g}"
            )
        if v < 0:
            raise InputError(f"{prefix}stock of '{name}' must be >= 0, got {value:g}")
        if v != round(v):
            raise InputError(
                f"{prefix}stock of '{name}' must be a whole number of persons, got {value:g}"
            )
        _check_persons(v, f"{prefix}stock of '{name}' is")
        out[name] = int(round(v))
    _check_persons(sum(out.values()), f"{prefix}stocks add up to")
    return out


def _read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
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
        frame = _read_csv(path, ("time", "inflow"))
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
# what a fit implies: posterior generators, initial split, observed prevalence
# ---------------------------------------------------------------------------


def posterior_generators(
    tree: xr.DataTree,
    spec: ModelSpec,
    *,
    covariates: Mapping[str, Any] | None = None,
    group: str | None = None,
    period: str | int | None = None,
    at: float | None = None,
    seed: int = 0,
) -> xr.DataArray:
    """Posterior draws of ``Q`` stacked into one dim ``sample`` (with chain and draw coords).

    A fit with covariates, groups or periods has one generator per covariate
    pattern, group and period; the projection needs one per draw, chosen here:

    Parameters
    ----------
    tree : xarray.DataTree
        A continuous-time fit.
    spec : ModelSpec
        Its model.
    covariates : mapping, optional
        Covariate values (a level, or a number in the data's unit); those not
        given are at the baseline (reference level, or the centre of a numeric
        covariate).
    group : str, optional
        Required when the fit has groups: a group of the data, or ``"new"``
        for a group not in the data (the population distribution of groups,
        see :func:`markov_migration.fitfile.generators.new_group_generators`).
    period : str or int, optional
        Period label or index; default the period in effect at ``at``.
    at : float, optional
        Time the projection starts (chooses the default period).
    seed : int
        Seed of the new-group random effects.
    """
    post = tree["posterior"]
    if "Q" not in post:
        kind = "discrete-time (P)" if "P" in post else "this"
        raise InputError(
            f"projection needs a continuous-time fit (posterior Q); {kind} fit is not supported"
        )
    extra = sorted(set(post["Q"].dims) - {"chain", "draw", "from_state", "to_state"})
    chosen = covariates or group is not None or period is not None
    if not extra and not chosen:
        q = post["Q"].transpose("chain", "draw", "from_state", "to_state")
        described = "the fit's posterior Q"
    else:
        q, choice = chosen_generators(tree, spec, covariates, group, period, at, seed)
        described = json.dumps(choice, default=str)
    states = [str(s) for s in q["from_state"].values]
    if states != list(spec.states):
        raise InputError(
            f"fit file's Q states {states} do not match its model's states {list(spec.states)}"
        )
    q = q.stack(sample=("chain", "draw")).transpose("sample", "from_state", "to_state")
    values = q.values
    if not np.all(np.isfinite(values)):
        raise InputError("fit file's posterior Q has non-finite values")
    q.attrs["generator"] = described
    return q


def select_draws(n_available: int, draws: int | None) -> np.ndarray:
    """Indices of the posterior samples used for ``draws`` projection draws.

    Fewer draws than samples: evenly spaced samples (across all chains). More:
    the samples are reused in turn; each reuse gets its own demographic noise.
    """
    if draws is None:
        return np.arange(n_available)
    if draws < 1:
        raise InputError(f"--draws must be at least 1, got {draws}")
    if draws <= n_available:
        return np.unique(np.round(np.linspace(0, n_available - 1, draws)).astype(np.int64))
    return np.arange(draws) % n_available


def _panel(tree: xr.DataTree) -> xr.Dataset | None:
    if "panel_data" not in tree.children:
        return None
    return tree["panel_data"].to_dataset()


def initial_stocks_from_fit(
    tree: xr.DataTree | str | Path,
    total: float,
    at: float,
    *,
    states: Sequence[str] | None = None,
    covariates: Mapping[str, Any] | None = None,
    group: str | None = None,
    period: str | int | None = None,
) -> dict[str, int]:
    """Split a total across states as the fitted model implies at time ``at``.

    The fitted model's distribution of the panel at ``at``: every respondent's
    last observed state at or before ``at`` is carried forward to ``at`` with
    ``P(at - t)`` (gaps rounded to 0.01 time units), weighted by the survey
    weights, for up to 1,000 evenly spaced posterior draws; the posterior mean
    of that distribution, restricted to ``states`` and renormalised, splits
    ``total``. The default ``states`` are the model's non-home states, so
    ``total`` is "emigrants still abroad" (e.g. the 650,000 of July 2024) and
    the home states start empty: returnees then count returns from ``at`` on.
    Whole persons are allotted by largest remainders, so they add up to
    ``total`` exactly.

    Parameters
    ----------
    tree : DataTree or path
        A fit (must hold the ``panel_data`` group).
    total : float
        Persons to split (rounded to a whole number).
    at : float
        Time of the split (time units, e.g. 2024.5).
    states : sequence of str, optional
        States to split across (default: all but the model's ``home`` states).
    covariates, group, period
        For fits with covariates, groups or periods: the generator carrying
        every respondent forward (as in :func:`posterior_generators`).

    Returns
    -------
    dict of str to int
        Persons by state, for every state of the model (0 outside ``states``).
    """
    from markov_migration.core.likelihood import pmatrix

    if not isinstance(tree, xr.DataTree):
        tree = read_fit(tree)
    spec = fit_spec(tree)
    if not math.isfinite(total) or total < 0:
        raise InputError(f"total must be >= 0 persons, got {total:g}")
    chosen = [s for s in spec.states if s not in spec.home] if states is None else list(states)
    for s in chosen:
        if s not in spec.states:
            raise InputError(
                f"'{s}' is not a state of model {spec.name} (states: {', '.join(spec.states)})"
            )
    if not chosen:
        raise InputError("no states to split the total across")
    panel = _panel(tree)
    if panel is None:
        raise InputError(
            "the fit has no panel_data group (fitted to a counts table): give stocks by state"
        )
    frame = pd.DataFrame(
        {
            "respondent": panel["respondent"].values,
            "time": panel["time"].values,
            "state": panel["state"].values,
            "weight": panel["weight"].values,
        }
    )
    frame = frame[frame["time"] <= at + TIME_TOL]
    if frame.empty:
        raise InputError(f"at = {at:g} is before the first panel observation")
    last = frame.sort_values(["respondent", "time"]).groupby("respondent").tail(1)
    gap = np.round((at - last["time"].to_numpy()) / SPLIT_GAP_RESOLUTION) * SPLIT_GAP_RESOLUTION
    carried = {
        "state": last["state"].to_numpy(),
        "gap": np.maximum(gap, 0.0),
        "w": last["weight"].to_numpy(),
    }
    groups = pd.DataFrame(carried).groupby(["state", "gap"], as_index=False)["w"].sum()
    q = posterior_generators(tree, spec, covariates=covariates, group=group, period=period, at=at)
    q = q.values[select_draws(q.sizes["sample"], min(SPLIT_DRAWS, q.sizes["sample"]))]
    gaps = np.unique(groups["gap"].to_numpy())
    p = pmatrix(q, gaps)  # (draws, gaps, K, K)
    where = np.searchsorted(gaps, groups["gap"].to_numpy())
    rows = p[:, where, groups["state"].to_numpy(dtype=np.int64), :]  # (draws, groups, K)
    dist = np.einsum("g,dgk->dk", groups["w"].to_numpy(), rows) / groups["w"].sum()
    shares = np.clip(dist.mean(axis=0), 0.0, None)
    idx = [spec.index(s) for s in chosen]
    part = shares[idx]
    if part.sum() <= 0:
        raise InputError(f"the fitted model puts nobody in {', '.join(chosen)} at {at:g}")
    part = part / part.sum()
    counts = _largest_remainder(part * round(total), round(total))
    out = dict.fromkeys(spec.states, 0)
    for s, c in zip(chosen, counts, strict=True):
        out[s] = int(c)
    return out


def _largest_remainder(values: np.ndarray, total: int) -> np.ndarray:
    """Round non-negative values to integers that add up to ``total``."""
    base = np.floor(values).astype(np.int64)
    short = int(total - base.sum())
    order = np.argsort(-(values - base), kind="stable")
    base[order[:short]] += 1
    return base


def observed_prevalence(tree: xr.DataTree) -> xr.Dataset | None:
    """Observed (weighted) share of each state at each survey wave of the fit's panel.

    Waves are found by clustering observation times: a gap of more than 5% of
    the panel's time span starts a new wave. Without clear waves (more than
    :data:`MAX_WAVES` clusters, or a cluster spanning over a quarter of the
    time span) equal-width time bins are used instead. Returns
    None when the fit has no ``panel_data`` group.

    Returns
    -------
    Dataset or None
        ``observed_share (wave, state)``, ``observed_respondents (wave)``, coord
        ``wave_time`` (weighted mean observation time of the wave).
    """
    panel = _panel(tree)
    if panel is None or panel.sizes.get("observation", 0) == 0:
        return None
    states = json.loads(tree.attrs["states"])
    t = panel["time"].values
    order = np.argsort(t, kind="stable")
    ts = t[order]
    span = ts[-1] - ts[0]
    breaks = np.flatnonzero(np.diff(ts) > max(0.05 * span, TIME_TOL)) + 1
    wave_of = np.empty(t.size, dtype=np.int64)
    wave_of[order] = np.searchsorted(breaks, np.arange(ts.size), side="right")
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [ts.size]]) - 1
    widest = float(np.max(ts[ends] - ts[starts])) if span > 0 else 0.0
    if breaks.size >= MAX_WAVES or widest > 0.25 * span:
        # observation times without clear waves: equal-width time bins instead
        edges = np.linspace(ts[0], ts[-1], MAX_WAVES + 1)
        wave_of = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, MAX_WAVES - 1)
        wave_of = np.unique(wave_of, return_inverse=True)[1]
    n_waves = int(wave_of.max()) + 1
    w = panel["weight"].values
    s = panel["state"].values.astype(np.int64)
    share = np.zeros((n_waves, len(states)))
    np.add.at(share, (wave_of, s), w)
    totals = share.sum(axis=1, keepdims=True)
    share = share / np.where(totals > 0, totals, 1.0)
    wave_time = np.bincount(wave_of, weights=w * t, minlength=n_waves) / np.maximum(
        totals[:, 0], 1e-300
    )
    n = np.bincount(wave_of, minlength=n_waves)
    ds = xr.Dataset(
        {
            "observed_share": (("wave", "state"), share),
            "observed_respondents": ("wave", n),
        },
        coords={"wave": np.arange(n_waves), "wave_time": ("wave", wave_time), "state": states},
    )
    ds["observed_share"].attrs["description"] = (
        "weighted share of panel respondents in each state at each wave"
    )
    return ds


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepPlan:
    """What one scenario does in each step: pieces of constant generator, and inflows.

    Attributes
    ----------
    steps : list of list of (float, int)
        Per step, ``(duration, multiplier index)`` pieces in time order.
    multipliers : ndarray, shape (M, K, K)
    inflow : ndarray, shape (S,)
        Expected arrivals per step (persons).
    """

    steps: list[list[tuple[float, int]]]
    multipliers: np.ndarray
    inflow: np.ndarray


def scenario_plan(
    scenario: Scenario, times: np.ndarray, spec: ModelSpec, inflow: Inflow
) -> StepPlan:
    """The step plan of a scenario on the output time grid.

    A step is split where the scenario switches multipliers on or off, and
    adjacent pieces with the same multipliers are merged again, so a scenario
    whose multipliers are all 1 has exactly the baseline's pieces.
    """
    k = spec.n_states
    mats: list[np.ndarray] = []

    def index_of(m: np.ndarray) -> int:
        for i, existing in enumerate(mats):
            if np.array_equal(existing, m):
                return i
        mats.append(m)
        return len(mats) - 1

    cuts = scenario.change_points()
    steps = []
    for a, b in zip(times[:-1], times[1:], strict=True):
        edges = sorted({float(a), float(b)} | {c for c in cuts if a + TIME_TOL < c < b - TIME_TOL})
        pieces: list[tuple[float, int]] = []
        for u, v in zip(edges[:-1], edges[1:], strict=True):
            m = index_of(scenario.multipliers_at(u, k))
            if pieces and pieces[-1][1] == m:
                pieces[-1] = (pieces[-1][0] + (v - u), m)
            else:
                pieces.append((v - u, m))
        # a single piece uses the step length itself, so it is bit-identical across scenarios
        if len(pieces) == 1:
            pieces = [(float(b - a), pieces[0][1])]
        steps.append(pieces)
    return StepPlan(steps, np.stack(mats), inflow.expected(times, scenario))


def project_chunk(
    q: np.ndarray,
    x0: np.ndarray,
    seeds: np.ndarray,
    *,
    steps: list[list[tuple[float, int]]],
    multipliers: np.ndarray,
    inflow: np.ndarray,
    inflow_cv: float,
    inflow_state: int,
    parallel: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Project a block of draws: ``P`` per step from ``Q``, then the stochastic moves.

    The unit of work of both the in-memory and the Dask path (a module-level
    function, so Dask can ship it to workers).

    Parameters
    ----------
    q : ndarray, shape (D, K, K)
    x0 : ndarray of int, shape (D, K)
    seeds : ndarray of uint32, shape (D,)

    Returns
    -------
    flows : ndarray of int64, shape (D, S, K, K)
    arrivals : ndarray of int64, shape (D, S)
    """
    p = step_pmatrices(q, steps, multipliers)
    out = project_stocks(
        x0,
        p,
        seeds=seeds,
        inflow=inflow,
        inflow_cv=inflow_cv,
        inflow_state=inflow_state,
        parallel=parallel,
    )
    return out.flows, out.inflow


def _run_memory(q, x0, seeds, plans, chunk_draws, progress):
    n = q.shape[0]
    total = n * len(plans)
    done = 0
    results = []
    for plan in plans:
        flows, arrivals = [], []
        for lo in range(0, n, chunk_draws):
            hi = min(n, lo + chunk_draws)
            f, a = project_chunk(q[lo:hi], x0[lo:hi], seeds[lo:hi], parallel=True, **plan)
            flows.append(f)
            arrivals.append(a)
            done += hi - lo
            if progress is not None:
                progress(done, total)
        results.append((np.concatenate(flows), np.concatenate(arrivals)))
    return results


def _dask_client(target: Any):
    """A distributed Client, and the cluster started for it (or None).

    ``target`` is "local" (a local cluster), a scheduler address or a Client.
    """
    try:
        import dask.array  # noqa: F401
        import distributed
    except ImportError:
        raise InputError(
            "--dask needs dask and distributed: pip install 'markov-migration[dask]'"
        ) from None
    if isinstance(target, distributed.Client):
        return target, None
    if target is True or target == "local":
        cluster = distributed.LocalCluster(processes=False, dashboard_address=None)
        return distributed.Client(cluster), cluster
    if isinstance(target, str):
        try:
            return distributed.Client(target, timeout="10s"), None
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(
                f"--dask: cannot connect to scheduler '{target}' ({type(err).__name__})"
            ) from None
    raise InputError(f"--dask must be 'local', a scheduler address or a Client, got {target!r}")


def _run_dask(q, x0, seeds, plans, chunk_draws, dask, progress):
    client, cluster = _dask_client(dask)
    try:
        n = q.shape[0]
        chunks = {"draw": chunk_draws}
        qa = xr.DataArray(q, dims=("draw", "from_state", "to_state")).chunk(chunks)
        xa = xr.DataArray(x0, dims=("draw", "state")).chunk(chunks)
        sa = xr.DataArray(seeds, dims=("draw",)).chunk(chunks)
        lazy = []
        for plan in plans:
            n_steps = len(plan["steps"])
            flows, arrivals = xr.apply_ufunc(
                project_chunk, qa, xa, sa,
                input_core_dims=[["from_state", "to_state"], ["state"], []],
                output_core_dims=[["step", "from_state", "to_state"], ["step"]],
                dask="parallelized",
                output_dtypes=[np.int64, np.int64],
                dask_gufunc_kwargs={"output_sizes": {"step": n_steps}},
                kwargs={**plan, "parallel": False},
            )  # fmt: skip
            lazy += [flows, arrivals]
        futures = client.compute(lazy)
        if progress is not None:
            from distributed import as_completed

            for done, _ in enumerate(as_completed(futures), start=1):
                progress(round(done / len(futures) * n * len(plans)), n * len(plans))
        values = client.gather(futures)
        return [(values[2 * i].values, values[2 * i + 1].values) for i in range(len(plans))]
    finally:
        if cluster is not None:
            client.close()
            cluster.close()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "markov_migration": __version__}
    for name in ("numpy", "scipy", "numba", "xarray", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def project_fit(
    fit: xr.DataTree | str | Path,
    initial: Mapping[str, float] | xr.DataArray,
    *,
    start: float,
    horizon: float,
    step: float = 1.0,
    inflow: Inflow | float | None = None,
    scenarios: Sequence[Scenario | str | Path] = (),
    baseline: bool = True,
    draws: int | None = None,
    seed: int = 0,
    dask: Any = None,
    chunk_draws: int = CHUNK_DRAWS,
    progress: Callable[[int, int], None] | None = None,
    command: str | None = None,
    fit_file: str | Path | None = None,
    covariates: Mapping[str, Any] | None = None,
    group: str | None = None,
    period: str | int | None = None,
) -> xr.Dataset:
    """Project stocks by state from a fit: returnees and diaspora by year, under scenarios.

    Parameters
    ----------
    fit : DataTree or path
        A fit file (continuous time), or its DataTree.
    initial : mapping of state to persons, or DataArray
        Initial stocks at ``start`` (whole persons; states not named start
        empty; at most :data:`MAX_PERSONS` in all, also counting every
        arrival over the run). A DataArray has dims ``(state,)`` or ``(draw, state)`` (one row
        per projection draw, e.g. an uncertain initial split).
    start, horizon : float
        First and last output time (time units of the model, decimal years
        for the default model).
    step : float
        Output step; times after the start are whole multiples of it (see
        :func:`projection_times`; at most :data:`MAX_STEPS` steps).
    inflow : Inflow or float, optional
        New emigrants per time unit (a float: a constant rate into the model's
        first non-home state); see :class:`Inflow` for files, the entry state
        and uncertain inflows.
    scenarios : sequence of Scenario, path or bundled name
        Scenarios to compare (see :mod:`markov_migration.inputs.scenario`).
    baseline : bool
        Also run the baseline (no changes) first. With no scenarios the
        baseline always runs.
    draws : int, optional
        Projection draws (default: every posterior sample). Fewer: evenly
        spaced samples; more: samples reused with fresh demographic noise.
    seed : int
        Seed of the random streams; draw ``i`` uses a stream keyed by
        ``(seed, i)``, so results do not depend on chunking or Dask, and all
        scenarios share the random numbers of a draw (common random numbers).
    dask : str or distributed.Client, optional
        Run chunked on Dask: ``"local"`` starts a local cluster, an address
        (``"tcp://host:8786"``) connects to a scheduler, a Client is used as
        is. Results are identical to the in-memory run.
    chunk_draws : int
        Draws per chunk (memory and progress granularity; no effect on results).
    progress : callable, optional
        Called as ``progress(done, total)`` in draw x scenario units.
    command : str, optional
        Command line recorded in the attributes.
    fit_file : str or Path, optional
        The file ``fit`` was read from, when ``fit`` is a DataTree (its path
        and SHA-256 are recorded).
    covariates, group, period
        Which generator of a fit with covariates, groups or periods to project
        with (see :func:`posterior_generators`): covariates at the given
        values (others at baseline), a group of the data or ``"new"``
        (required for a fit with groups), a period (default: the one in effect
        at ``start``). Recorded in the attribute ``generator``.

    Returns
    -------
    Dataset
        ``stock (draw, time, state)``, ``returnees`` and ``diaspora (draw,
        time)`` (sums over the model's home and other states),
        ``flows (draw, time, from_state, to_state)`` (the moves of the step
        ending at ``time``), ``inflow (draw, time)``, the per-step flow series
        ``returns``, ``reemigrations`` and ``moves_abroad (draw, time)`` (see
        :func:`flow_series`; persons per step), ``cumulative_returns
        (draw, time)`` (persons abroad at one output time and home at the next,
        summed since the start), with a leading ``scenario`` dim when more
        than one scenario runs; ``observed_share (wave, state)`` when the fit
        has a panel; provenance attributes (fit file SHA-256, seed, inputs).
    """
    fit_path = None if fit_file is None else Path(fit_file)
    if not isinstance(fit, xr.DataTree):
        fit_path = Path(fit)
        fit = read_fit(fit_path)
    spec = fit_spec(fit)
    times = projection_times(start, horizon, step)
    if not isinstance(seed, int) or seed < 0:
        raise InputError(f"--seed must be a whole number >= 0, got {seed!r}")
    if chunk_draws < 1:
        raise InputError("chunk_draws must be at least 1")
    if inflow is None:
        inflow = Inflow()
    elif not isinstance(inflow, Inflow):
        inflow = Inflow.constant(float(inflow))
    inflow = inflow.check(spec)
    resolved = [s if isinstance(s, Scenario) else load_scenario(s, spec) for s in scenarios]
    names = [s.name for s in resolved]
    for s in resolved:
        s.check_dates(float(times[0]), float(times[-1]))
        if names.count(s.name) > 1:
            raise InputError(f"two scenarios are named '{s.name}'", path=s.path)
    if baseline or not resolved:
        resolved = [Scenario.baseline(), *resolved]

    q_all = posterior_generators(
        fit, spec, covariates=covariates, group=group, period=period, at=float(times[0]), seed=seed
    )
    chosen = select_draws(q_all.sizes["sample"], draws)
    n = chosen.size
    q = np.ascontiguousarray(q_all.values[chosen])
    k = spec.n_states
    x0 = _initial_array(initial, spec, n)

    plans = []
    for s in resolved:
        plan = scenario_plan(s, times, spec, inflow)
        _check_persons(  # every count of the run then fits exactly in int64
            float(x0.sum(axis=-1).max()) + float(np.sum(plan.inflow)),
            f"initial stocks plus the inflows of scenario '{s.name}' come to",
        )
        plans.append(
            {
                "steps": plan.steps,
                "multipliers": plan.multipliers,
                "inflow": plan.inflow,
                "inflow_cv": float(inflow.cv),
                "inflow_state": spec.index(inflow.state),
            }
        )
    seeds = draw_seeds(seed, np.arange(n))
    if dask is None or dask is False:
        results = _run_memory(q, x0, seeds, plans, chunk_draws, progress)
    else:
        results = _run_dask(q, x0, seeds, plans, chunk_draws, dask, progress)

    n_sc, n_t = len(resolved), times.size
    flows = np.zeros((n_sc, n, n_t, k, k), dtype=np.int64)
    arrivals = np.zeros((n_sc, n, n_t), dtype=np.int64)
    for i, (f, a) in enumerate(results):
        flows[i, :, 1:] = f
        arrivals[i, :, 1:] = a
    stock = np.empty((n_sc, n, n_t, k), dtype=np.int64)
    stock[:, :, 0] = x0[None]
    stock[:, :, 1:] = flows[:, :, 1:].sum(axis=3)
    stock[:, :, 1:, spec.index(inflow.state)] += arrivals[:, :, 1:]
    home = np.array([s in spec.home for s in spec.states])
    named = flow_series(flows, home)

    dims = ("scenario", "draw", "time")
    ds = xr.Dataset(
        {
            "stock": (dims + ("state",), stock),
            "returnees": (dims, stock[..., home].sum(axis=-1)),
            "diaspora": (dims, stock[..., ~home].sum(axis=-1)),
            "flows": (dims + ("from_state", "to_state"), flows),
            "inflow": (dims, arrivals),
            **{name: (dims, values) for name, values in named.items()},
            "cumulative_returns": (dims, np.cumsum(named["returns"], axis=-1)),
        },
        coords={
            "scenario": names_all(resolved),
            "draw": np.arange(n),
            "time": times,
            "state": list(spec.states),
            "from_state": list(spec.states),
            "to_state": list(spec.states),
            "chain": ("draw", q_all["chain"].values[chosen]),
            "posterior_draw": ("draw", q_all["draw"].values[chosen]),
        },
    )
    _describe_variables(ds, spec)
    observed = observed_prevalence(fit)
    if observed is not None:
        ds = ds.merge(observed)
    if n_sc == 1:
        ds = ds.squeeze("scenario")
    ds.attrs = _provenance(
        fit,
        fit_path,
        spec,
        times,
        step,
        x0,
        inflow,
        resolved,
        n,
        q_all.sizes["sample"],
        seed,
        dask,
        command,
    )
    ds.attrs["generator"] = q_all.attrs.get("generator", "the fit's posterior Q")
    return ds


def flow_series(flows: np.ndarray, home: np.ndarray) -> dict[str, np.ndarray]:
    """Named per-step series from the flow matrices ``(..., from_state, to_state)``.

    ``returns``: from a non-home state into a home state; ``reemigrations``:
    from a home state into a non-home state; ``moves_abroad``: between two
    different non-home states (e.g. from one host country to another). So
    ``returns - reemigrations`` is the change of the home stock over a step,
    less the inflow when the inflow enters a home state.

    Parameters
    ----------
    flows : ndarray of int, shape (..., K, K)
    home : ndarray of bool, shape (K,)
        Which states are home states.
    """
    home = np.asarray(home, dtype=bool)
    away = ~home
    among = flows[..., away, :][..., away]
    stayed = np.trace(among, axis1=-2, axis2=-1)
    return {
        "returns": flows[..., away, :][..., home].sum(axis=(-2, -1)),
        "reemigrations": flows[..., home, :][..., away].sum(axis=(-2, -1)),
        "moves_abroad": among.sum(axis=(-2, -1)) - stayed,
    }


#: What the named flow series count (attributes of the projection file).
FLOW_SERIES_NOTE = {
    "returns": "persons in a non-home state at the previous output time and in a home state at "
    "time: returns during the step ending at time",
    "reemigrations": "persons in a home state at the previous output time and in a non-home "
    "state at time: re-emigrations during the step ending at time",
    "moves_abroad": "persons in one non-home state at the previous output time and in another "
    "at time (e.g. from one host country to another) during the step ending at time",
}


def names_all(scenarios: Sequence[Scenario]) -> list[str]:
    """Scenario names in run order."""
    return [s.name for s in scenarios]


def _initial_array(
    initial: Mapping[str, float] | xr.DataArray, spec: ModelSpec, n: int
) -> np.ndarray:
    if isinstance(initial, xr.DataArray):
        if "state" not in initial.dims or set(initial.dims) - {"state", "draw"}:
            raise InputError(
                f"initial stocks must have dims (state,) or (draw, state), got {initial.dims}"
            )
        arr = initial.transpose(..., "state")
        labels = (
            [str(s) for s in arr["state"].values] if "state" in arr.coords else list(spec.states)
        )
        unknown = [s for s in labels if s not in spec.states]
        if unknown:
            raise InputError(f"initial stocks: '{unknown[0]}' is not a state of model {spec.name}")
        values = np.asarray(arr.values, dtype=np.float64)
        out = np.zeros(values.shape[:-1] + (spec.n_states,))
        out[..., [spec.index(s) for s in labels]] = values
        if out.ndim == 2 and out.shape[0] != n:
            raise InputError(f"initial stocks have {out.shape[0]} draws, the projection {n}")
    else:
        out = np.array([initial_stocks(initial, spec)[s] for s in spec.states], dtype=np.float64)
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise InputError("initial stocks must be finite and >= 0")
    if np.any(out != np.round(out)):
        raise InputError("initial stocks must be whole numbers of persons")
    totals = out.sum(axis=-1)
    if np.any(totals <= 0):
        raise InputError("initial stocks are all zero: give at least one state a positive stock")
    # before the int64 cast: beyond MAX_PERSONS it would be inexact or overflow
    _check_persons(float(np.max(totals)), "initial stocks add up to")
    return np.ascontiguousarray(np.broadcast_to(out.astype(np.int64), (n, spec.n_states)))


def _describe_variables(ds: xr.Dataset, spec: ModelSpec) -> None:
    home = ", ".join(spec.home) or "none"
    unit = spec.time_unit
    text = {
        "stock": "persons in each state at each output time",
        "returnees": f"persons in the home states ({home})",
        "diaspora": f"persons in all other states (not {home})",
        "flows": FLOWS_NOTE,
        "inflow": "new emigrants arriving during the step ending at time",
        "cumulative_returns": (
            "persons in a non-home state at one output time and in a home state at the next, "
            "summed over steps since the start (returns undone within a step are not counted)"
        ),
    }
    for name, desc in text.items():
        ds[name].attrs.update(units="persons", description=desc)
    for name, desc in FLOW_SERIES_NOTE.items():
        ds[name].attrs.update(
            units="persons per step",
            description=f"{desc}; home states: {home}; moves made and undone within one step "
            "are not seen; zero at the start time",
        )
    ds["time"].attrs.update(
        units=unit, description="output time (decimal years: 2025.0 = 1 January 2025)"
    )
    ds["draw"].attrs["description"] = (
        "projection draw: one posterior sample of Q with its own demographic noise"
    )
    ds["posterior_draw"].attrs["description"] = (
        "draw index of the posterior sample within its chain"
    )


def _provenance(
    fit, fit_path, spec, times, step, x0, inflow, scenarios, n, n_post, seed, dask, command
):
    versions = _versions()
    return {
        PROJECTION_MARKER: PROJECTION_FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "package_version": __version__,
        "versions": json.dumps(versions, sort_keys=True),
        "command_line": command or "",
        "fit_path": "" if fit_path is None else str(fit_path),
        "fit_sha256": "" if fit_path is None else _file_sha256(fit_path),
        "fit_created_at": str(fit.attrs.get("created_at", "")),
        "fit_data_sha256": str(fit.attrs.get("data_sha256", "")),
        "model_name": spec.name,
        "states": json.dumps(list(spec.states)),
        "home": json.dumps(list(spec.home)),
        "time_unit": spec.time_unit,
        "start": float(times[0]),
        "horizon": float(times[-1]),
        "step": float(step),
        "draws": int(n),
        "posterior_samples": int(n_post),
        "draw_selection": "evenly spaced posterior samples"
        if n <= n_post
        else "posterior samples reused in turn",
        "seed": int(seed),
        "random_streams": "draw i: SeedSequence(seed, spawn_key=(i,)); shared by all scenarios",
        "initial_stocks": json.dumps(
            {s: int(v) for s, v in zip(spec.states, x0[0], strict=True)}
            if np.all(x0 == x0[0])
            else "per draw"
        ),  # fmt: skip
        "initial_total": int(x0[0].sum()),
        "inflow": json.dumps(inflow.describe()),
        "scenarios": json.dumps(
            [
                {
                    "name": s.name,
                    "description": s.description,
                    "path": s.path or "",
                    "changes": s.describe(spec),
                    "sha256": hashlib.sha256(s.text.encode()).hexdigest() if s.text else "",
                    "text": s.text,
                }
                for s in scenarios
            ]
        ),
        "engine": "in-memory (numba)" if dask in (None, False) else "dask",
        "uncertainty": UNCERTAINTY_NOTE,
    }


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------


def write_projection(ds: xr.Dataset, path: str | Path, force: bool = False) -> Path:
    """Write a projection as NetCDF (atomically: temporary file, then rename)."""
    path = Path(path)
    names = ("stock", "flows", "inflow", *FLOW_SERIES_NOTE)
    encoding = {name: {"zlib": True, "complevel": 4} for name in names if name in ds}
    with atomic_output(path, force) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return path


def read_projection(path: str | Path) -> xr.Dataset:
    """Read a projection file written by :func:`write_projection`."""
    path = Path(path)
    if not path.exists():
        raise InputError("projection file not found", path=path)
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as err:  # h5py/xarray raise many kinds
        raise InputError(
            f"not a NetCDF projection file ({type(err).__name__})", path=path
        ) from None
    if PROJECTION_MARKER not in ds.attrs:
        raise InputError("not a markov-migration projection file", path=path)
    return ds


def series_names(ds: xr.Dataset) -> list[str]:
    """Series of the quantile table: aggregates, flows per step, then ``stock:<state>``.

    The flow series (``returns``, ``reemigrations``, ``moves_abroad``) are
    listed when the projection holds them (files written before they existed
    do not).
    """
    flows = [name for name in FLOW_SERIES_NOTE if name in ds]
    return ["returnees", "diaspora", "cumulative_returns", "inflow", *flows] + [
        f"stock:{s}" for s in ds["state"].values
    ]


def series(ds: xr.Dataset, name: str) -> xr.DataArray:
    """A series by its quantile-table name (``returnees``, ``stock:abroad`` ...)."""
    if name.startswith("stock:"):
        return ds["stock"].sel(state=name.split(":", 1)[1])
    return ds[name]


def quantile_table(ds: xr.Dataset) -> pd.DataFrame:
    """Mean, median and central 50/80/95% intervals across draws, in long format.

    Columns: ``scenario,time,series,mean,median,lower50,upper50,lower80,
    upper80,lower95,upper95`` (persons). Intervals are equal-tailed quantiles
    of the projection draws.
    """
    probs = [0.5]
    for p in INTERVALS:
        probs += [(1 - p) / 2, (1 + p) / 2]
    scenarios = list(np.atleast_1d(ds["scenario"].values))
    frames = []
    for name in series_names(ds):
        da = series(ds, name)
        if "scenario" not in da.dims:
            da = da.expand_dims(scenario=scenarios)
        v = da.transpose("scenario", "time", "draw").values.astype(np.float64)
        qs = np.quantile(v, probs, axis=-1)
        mean = v.mean(axis=-1)
        for i, sc in enumerate(scenarios):
            frame = {
                "scenario": sc,
                "time": ds["time"].values,
                "series": name,
                "mean": mean[i],
                "median": qs[0, i],
            }
            for j, p in enumerate(INTERVALS):
                pct = round(p * 100)
                frame[f"lower{pct}"] = qs[1 + 2 * j, i]
                frame[f"upper{pct}"] = qs[2 + 2 * j, i]
            frames.append(pd.DataFrame(frame))
    out = pd.concat(frames, ignore_index=True)
    order = {name: i for i, name in enumerate(series_names(ds))}
    out["_s"] = out["scenario"].map({s: i for i, s in enumerate(scenarios)})
    out["_n"] = out["series"].map(order)
    out = out.sort_values(["_s", "_n", "time"], kind="stable").drop(columns=["_s", "_n"])
    return out[list(QUANTILE_COLUMNS)].reset_index(drop=True)


def write_quantile_csv(ds: xr.Dataset, path: str | Path, force: bool = False) -> Path:
    """Write :func:`quantile_table` as CSV (atomically)."""
    path = Path(path)
    table = quantile_table(ds)
    with atomic_output(path, force) as tmp:
        table.to_csv(tmp, index=False, float_format="%.1f")
    return path


def interval(
    ds: xr.Dataset, name: str, time: float, scenario: str | None = None, prob: float = 0.8
) -> dict:
    """Median and central ``prob`` interval of a series at a time, e.g. for a summary line.

    ``time`` is matched to the nearest output time.

    Returns
    -------
    dict
        ``time`` (the output time used), ``median``, ``lower``, ``upper``, ``mean``.
    """
    da = series(ds, name)
    if "scenario" in da.dims:
        da = da.sel(scenario=scenario or da["scenario"].values[0])
    da = da.sel(time=time, method="nearest")
    v = da.values.astype(np.float64)
    lo, med, hi = np.quantile(v, [(1 - prob) / 2, 0.5, (1 + prob) / 2])
    return {"time": float(da["time"]), "median": med, "lower": lo, "upper": hi, "mean": v.mean()}


def summary_lines(ds: xr.Dataset, times: Sequence[float], prob: float = 0.8) -> list[str]:
    """Human-readable lines, one per scenario, series and time.

    For example ``baseline: returnees at 2030: median 52,300 (80% interval 47,100-58,000)``.
    """
    lines = []
    for sc in np.atleast_1d(ds["scenario"].values):
        for name in ("returnees", "diaspora", "cumulative_returns"):
            label = name.replace("_", " ")
            for t in times:
                r = interval(ds, name, t, str(sc), prob)
                lines.append(
                    f"{sc}: {label} at {r['time']:g}: median {r['median']:,.0f} "
                    f"({prob:.0%} interval {r['lower']:,.0f}-{r['upper']:,.0f})"
                )
    return lines

"""Projection of stocks by state from a fit: returnees and diaspora by year.

For every posterior draw of the generator ``Q`` (the period in force at each
time, with scenario multipliers where a scenario is in force) the people of the
initial stocks move through the continuous-time chain, each person
independently; the step-end stocks and every transition within each step are
sampled jointly and exactly (:mod:`markov_migration.core.events`, on the "ever
returned" space of :mod:`markov_migration.core.ever_home`), new emigrants arrive
in one state at uniform times through each step, and the stocks, transition
events, returns, cumulative returns and persons ever returned are recorded.
The result is an :class:`xarray.Dataset` (see :func:`project_fit`) that
:mod:`markov_migration.projection.files` writes as NetCDF and summarises for a
spreadsheet and :mod:`markov_migration.plots.fan` draws as fan charts. The
inputs are checked and prepared in :mod:`markov_migration.projection.plan`
(times, stocks, inflows, scenario steps) and
:mod:`markov_migration.projection.fitted` (generators per draw).

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

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from markov_migration.core.draws import select_draws
from markov_migration.core.projection import draw_seeds
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec, read_fit
from markov_migration.inputs.scenario import Scenario, load_scenario
from markov_migration.projection.chunks import run_dask, run_memory
from markov_migration.projection.discrete import (
    check_scenario_plan,
    discrete_times,
    is_discrete,
    posterior_matrices,
)
from markov_migration.projection.exits import ExitRates
from markov_migration.projection.files import describe_variables, provenance
from markov_migration.projection.fitted import period_generators, periods_note
from markov_migration.projection.initial import InitialTotal, observed_prevalence
from markov_migration.projection.phases import hidden_space, latent_generators
from markov_migration.projection.plan import (
    Inflow,
    check_persons,
    projection_times,
    scenario_plan,
)
from markov_migration.projection.stocks import initial_array

#: Draws per compiled call (progress is reported per chunk; results do not depend on it).
CHUNK_DRAWS = 1000


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
    exit_rates: ExitRates | dict[str, float] | float | str | None = None,
) -> xr.Dataset:
    """Project stocks by state from a fit: returnees and diaspora by year, under scenarios.

    Parameters
    ----------
    fit : DataTree or path
        A fit file, or its DataTree. A discrete-time fit projects at whole
        multiples of its step (``start + i * step``, ``step`` a whole number;
        see :mod:`markov_migration.projection.discrete`).
    initial : mapping of state to persons, DataArray, or InitialTotal
        Initial stocks at ``start`` (whole persons; states not named start
        empty; at most :data:`~markov_migration.projection.plan.MAX_PERSONS`
        in all, also counting every arrival over the run). A DataArray has dims
        ``(state,)`` or ``(draw, state)`` (one row per projection draw). An
        :class:`~markov_migration.projection.initial.InitialTotal` is split per
        draw as that draw's posterior sample implies, with an optionally
        uncertain total (recorded in the attribute ``initial_total_distribution``).
    start, horizon : float
        First and last output time (time units of the model, decimal years
        for the default model).
    step : float
        Output step; times after the start are whole multiples of it (see
        :func:`~markov_migration.projection.plan.projection_times`; at most
        :data:`~markov_migration.projection.plan.MAX_STEPS` steps).
    inflow : Inflow or float, optional
        New emigrants per time unit (a float: a constant rate into the model's
        first non-home state); see :class:`~markov_migration.projection.plan.Inflow` for files, the entry state
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
        with (see
        :func:`~markov_migration.projection.fitted.posterior_generators`): covariates at the given
        values (others at baseline), a group of the data or ``"new"``
        (required for a fit with groups), a period held for the whole run
        (default: the period in force at each time, switching at the fit's cut
        points; after the last cut the last period holds; recorded in the
        attribute ``periods``). Recorded in the attribute ``generator``.
    exit_rates : ExitRates, float, mapping of state to float or str, optional
        Yearly (per time unit) rates of leaving the population (deaths, moves
        out of scope), the same for every state or per state (others 0), or
        ``"default"``, or an
        :class:`~markov_migration.projection.exits.ExitRates` by time (a
        life-table series, :meth:`~markov_migration.projection.exits.ExitRates.read_csv`):
        an absorbing exit state outside home and diaspora. Adds ``exits``
        (persons per step) and ``exited`` (since the start); stocks then no
        longer add up to the initial total.

    Returns
    -------
    Dataset
        ``stock (draw, time, state)``, ``returnees`` and ``diaspora (draw,
        time)`` (sums over the model's home and other states),
        ``events (draw, time, from_state, to_state)`` (every transition made
        in the step ending at ``time``), ``inflow (draw, time)``, the per-step
        event series ``returns``, ``reemigrations`` and ``moves_abroad (draw,
        time)`` (see :func:`flow_series`; persons per step),
        ``cumulative_returns (draw, time)`` (return events since the start),
        ``ever_returned`` (persons who entered a home state since the start),
        ``returned_from_abroad`` (persons home who were abroad at the start),
        ``net_returnees_change`` (step-end change of the home stock), with a
        leading ``scenario`` dim when more than one scenario runs; ``observed_share (wave, state)`` when the fit
        has a panel; provenance attributes (fit file SHA-256, seed, inputs).
    """
    fit_path = None if fit_file is None else Path(fit_file)
    if not isinstance(fit, xr.DataTree):
        fit_path = Path(fit)
        fit = read_fit(fit_path)
    spec = fit_spec(fit)
    discrete = is_discrete(spec)
    times = (discrete_times if discrete else projection_times)(start, horizon, step)
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

    if discrete:
        q_all, cuts = posterior_matrices(fit, covariates=covariates, group=group, period=period)
    else:
        q_all, cuts = period_generators(
            fit, spec, covariates=covariates, group=group, period=period, at=float(times[0]),
            seed=seed,
        )  # fmt: skip
    if draws is not None and draws < 1:  # the CLI's message (select_draws raises ValueError)
        raise InputError(f"--draws must be at least 1, got {draws}")
    chosen = select_draws(q_all.sizes["sample"], draws)
    n = chosen.size
    q = np.ascontiguousarray(q_all.values[chosen])  # (draw, period, K, K)
    k = spec.n_states
    hidden = None if discrete else hidden_space(fit)
    if hidden is not None:  # phase-type states: the hidden generators of the choice
        hidden_q = latent_generators(fit, chosen, q)
        q = hidden.observed_q(hidden_q, k) if hidden.has_design(fit) else q
    seeds = draw_seeds(seed, np.arange(n))
    total_note = None
    if isinstance(initial, InitialTotal):
        x0, total_note = initial.check().stocks(fit, spec, q, cuts, float(times[0]), seed)
    else:
        x0 = initial_array(initial, spec, n)
    home = np.array([s in spec.home for s in spec.states])
    exits = ExitRates.parse(exit_rates, spec)
    if exits is not None:
        exits.check_window(float(times[0]))
    plan_list = [
        scenario_plan(s, times, spec, inflow, period_cuts=cuts, exits=exits) for s in resolved
    ]
    # the (start label) space only when someone is home at the start or anyone arrives;
    # decided for the whole run, so that chunks and Dask give the same result
    by_start = bool(x0[:, home].any()) or any(np.any(p.inflow > 0) for p in plan_list)

    # a fit with phase-type states runs on its hidden states (projection/phases.py)
    run_q, run_x0, run_home, entry = q, x0, home, spec.index(inflow.state)
    if hidden is not None:
        run_q = hidden_q
        run_x0 = hidden.expand_stocks(x0, run_q)
        run_home = home[hidden.observed]
        entry = hidden.first(entry)
    plans = []
    for s, plan in zip(resolved, plan_list, strict=True):
        if discrete:
            check_scenario_plan(plan, s.name)
        check_persons(  # every count of the run then fits exactly in int64
            float(x0.sum(axis=-1).max()) + float(np.sum(plan.inflow)),
            f"initial stocks plus the inflows of scenario '{s.name}' come to",
        )
        plans.append(
            {
                "steps": plan.steps,
                "multipliers": plan.multipliers
                if hidden is None
                else hidden.expand_multipliers(plan.multipliers),
                "periods": plan.periods,
                "inflow": plan.inflow,
                "inflow_cv": float(inflow.cv),
                "inflow_state": entry,
                "home": run_home,
                "by_start": by_start,
                "exit_rates": plan.exit_rates
                if hidden is None
                else hidden.expand_rates(plan.exit_rates),
                "discrete": discrete,
                "groups": None if hidden is None else hidden.observed,
            }
        )
    if dask is None or dask is False:
        results = run_memory(run_q, run_x0, seeds, plans, chunk_draws, progress)
    else:
        results = run_dask(run_q, run_x0, seeds, plans, chunk_draws, dask, progress)

    n_sc, n_t = len(resolved), times.size
    stock = np.stack([r[0] for r in results])
    phase_stock = None
    if hidden is not None:
        phase_stock = stock[..., hidden.phased]
        stock = hidden.collapse_stock(stock, k)
    events = np.zeros((n_sc, n, n_t, k, k), dtype=np.int64)
    arrivals = np.zeros((n_sc, n, n_t), dtype=np.int64)
    for i, r in enumerate(results):
        events[i, :, 1:] = r[1] if hidden is None else hidden.collapse_events(r[1], k)
        arrivals[i, :, 1:] = r[2]
    ever = np.stack([r[3] for r in results])
    back = np.stack([r[4] for r in results])
    exited = np.stack([r[5] for r in results])
    named = flow_series(events, home)
    returnees = stock[..., home].sum(axis=-1)
    net = np.zeros_like(returnees)
    net[..., 1:] = np.diff(returnees, axis=-1)

    # the output's "draw" is the projection draw; the posterior sample's own indices
    # are kept as coords
    chain_dim, draw_dim = SAMPLE_DIMS
    dims = ("scenario", "draw", "time")
    ds = xr.Dataset(
        {
            "stock": (dims + ("state",), stock),
            "returnees": (dims, returnees),
            "diaspora": (dims, stock[..., ~home].sum(axis=-1)),
            "events": (dims + ("from_state", "to_state"), events),
            "inflow": (dims, arrivals),
            **{name: (dims, values) for name, values in named.items()},
            "cumulative_returns": (dims, np.cumsum(named["returns"], axis=-1)),
            "ever_returned": (dims, ever),
            "returned_from_abroad": (dims, back),
            **({} if phase_stock is None else {"phase_stock": (dims + ("phase",), phase_stock)}),
            "net_returnees_change": (dims, net),
            **(
                {}
                if exits is None
                else {
                    "exited": (dims, exited),
                    "exits": (dims, np.concatenate([0 * exited[..., :1], np.diff(exited)], -1)),
                }
            ),
        },
        coords={
            "scenario": names_all(resolved),
            "draw": np.arange(n),
            "time": times,
            "state": list(spec.states),
            "from_state": list(spec.states),
            "to_state": list(spec.states),
            **({} if hidden is None else {"phase": [hidden.names[h] for h in hidden.phased]}),
            chain_dim: ("draw", q_all[chain_dim].values[chosen]),
            "posterior_draw": ("draw", q_all[draw_dim].values[chosen]),
        },
    )
    describe_variables(ds, spec)
    observed = observed_prevalence(fit)
    if observed is not None:
        ds = ds.merge(observed)
    if n_sc == 1:
        ds = ds.squeeze("scenario")
    ds.attrs = provenance(
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
    ds.attrs["periods"] = json.dumps(periods_note(q_all, cuts, times))
    ds.attrs["exit_rates"] = json.dumps("none" if exits is None else exits.describe(spec))
    if total_note is not None:
        ds.attrs["initial_total_distribution"] = json.dumps(total_note)
    return ds


def flow_series(flows: np.ndarray, home: np.ndarray) -> dict[str, np.ndarray]:
    """Named per-step series from the event matrices ``(..., from_state, to_state)``.

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


def names_all(scenarios: Sequence[Scenario]) -> list[str]:
    """Scenario names in run order."""
    return [s.name for s in scenarios]

"""Independent references of a projection: Van Loan expectations of its events.

:func:`expected_returns` recomputes, for a baseline projection, the expected
number of return events by the horizon from the fit alone
(:mod:`markov_migration.core.event_moments`), the check the demo and
``benchmarks/bench_projection.py`` print next to ``cumulative_returns``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.fitfile.format import fit_spec, read_fit
from markov_migration.inputs.scenario import Scenario
from markov_migration.projection.exits import ExitRates
from markov_migration.projection.fitted import period_generators
from markov_migration.projection.plan import Inflow, scenario_plan


def expected_returns(
    fit: xr.DataTree | str | Path, ds: xr.Dataset, exits: ExitRates | None = None
) -> float:
    """Van Loan expectation of the return events by the horizon, mean over the draws.

    The independent reference of ``cumulative_returns`` for a baseline
    projection ``ds`` of ``fit`` without a covariate or group choice: per
    draw, its posterior sample's generators (periods switching at the cuts),
    its initial stocks and its arrivals (entering through each step), chained
    with :func:`~markov_migration.core.event_moments.expected_step`. ``exits``
    are the exit rates the projection ran with (an absorbing state is added
    to each generator, as the projection does).
    """
    from markov_migration.core.event_moments import expected_step
    from markov_migration.core.projection import with_exit_state

    if not isinstance(fit, xr.DataTree):
        fit = read_fit(fit)
    spec = fit_spec(fit)
    if "scenario" in ds.dims:
        ds = ds.sel(scenario="baseline")
    times = ds["time"].values
    q_all, cuts = period_generators(fit, spec, at=float(times[0]))
    chain_dim, draw_dim = SAMPLE_DIMS
    index = {
        (int(c), int(d)): i
        for i, (c, d) in enumerate(
            zip(q_all[chain_dim].values, q_all[draw_dim].values, strict=True)
        )
    }
    rows = [
        index[(int(c), int(d))]
        for c, d in zip(ds[chain_dim].values, ds["posterior_draw"].values, strict=True)
    ]
    q = q_all.values[rows]
    plan = scenario_plan(Scenario.baseline(), times, spec, Inflow(), period_cuts=cuts, exits=exits)
    k = spec.n_states
    home = np.array([s in spec.home for s in spec.states] + [False])
    away = np.array([s not in spec.home for s in spec.states] + [False])
    entry = spec.index(json.loads(ds.attrs["inflow"])["state"])
    x = ds["stock"].isel(time=0).transpose("draw", "state").values.astype(float)
    x = np.concatenate([x, np.zeros((x.shape[0], 1))], axis=1)  # the exit state, empty
    rates = np.zeros((len(plan.periods), k)) if plan.exit_rates is None else plan.exit_rates
    wide = with_exit_state(q[:, plan.periods], rates[None])  # (draw, piece, K + 1, K + 1)
    total = np.zeros(x.shape[0])
    for s, pieces in enumerate(plan.steps):
        arrivals = np.zeros_like(x)
        arrivals[:, entry] = ds["inflow"].isel(time=s + 1).values
        gens = [(wide[:, g], h) for h, g in pieces]
        x, events = expected_step(x, gens, arrivals)
        total += events[:, away][:, :, home].sum(axis=(-2, -1))
    return float(total.mean())

"""What a fit implies for a projection: generators per draw, an initial split, what the panel saw.

:func:`posterior_generators` picks the generator ``Q`` of every posterior
sample (for fits with covariates, groups or periods, the one asked for),
:func:`initial_stocks_from_fit` splits a published total across states as the
fitted model implies, and :func:`observed_prevalence` gives the share of each
state at each survey wave of the fit's embedded panel (drawn as points on the
fan charts).

Examples
--------
>>> from markov_migration.projection.fitted import initial_stocks_from_fit  # doctest: +SKIP
>>> initial_stocks_from_fit("fit.nc", 650_000, at=2024.5)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.core.draws import select_draws
from markov_migration.defaults import SAMPLE_DIMS, TIME_TOL
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec, read_fit
from markov_migration.fitfile.generators import chosen_generators
from markov_migration.inputs.spec import ModelSpec
from markov_migration.inputs.waves import wave_bins, wave_index

#: Posterior draws used to split an initial total (:func:`initial_stocks_from_fit`).
SPLIT_DRAWS = 1000
#: Observation gaps are rounded to this (time units) when propagating the panel.
SPLIT_GAP_RESOLUTION = 0.01


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
    extra = sorted(set(post["Q"].dims) - {*SAMPLE_DIMS, "from_state", "to_state"})
    chosen = covariates or group is not None or period is not None
    if not extra and not chosen:
        q = post["Q"].transpose(*SAMPLE_DIMS, "from_state", "to_state")
        described = "the fit's posterior Q"
    else:
        q, choice = chosen_generators(tree, spec, covariates, group, period, at, seed)
        described = json.dumps(choice, default=str)
    states = [str(s) for s in q["from_state"].values]
    if states != list(spec.states):
        raise InputError(
            f"fit file's Q states {states} do not match its model's states {list(spec.states)}"
        )
    q = q.stack(sample=SAMPLE_DIMS).transpose("sample", "from_state", "to_state")
    values = q.values
    if not np.all(np.isfinite(values)):
        raise InputError("fit file's posterior Q has non-finite values")
    q.attrs["generator"] = described
    return q


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
    # imported here: the likelihood module compiles its numba callbacks on import, which
    # a projection from given stocks does not need
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

    Waves are the package's one wave rule (:func:`markov_migration.inputs.waves.wave_bins`,
    as in the checks): clusters of observation times separated by gaps wider than
    :data:`~markov_migration.defaults.WAVE_GAP_SHARE` of the time span, else bins
    with equal numbers of observations; empty bins are dropped. Returns None
    when the fit has no ``panel_data`` group.

    Returns
    -------
    Dataset or None
        ``observed_share (wave, state)``, ``observed_respondents (wave)``, coord
        ``wave_time`` (weighted mean observation time of the wave, time units).
    """
    panel = _panel(tree)
    if panel is None or panel.sizes.get("observation", 0) == 0:
        return None
    states = json.loads(tree.attrs["states"])
    t = panel["time"].values
    # numbered 0.. over the waves that hold observations (equal-count bins can be empty)
    wave_of = np.unique(wave_index(t, wave_bins(t)), return_inverse=True)[1]
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

"""What a fit implies for a projection's start: an initial split, and what the panel saw.

:func:`initial_stocks_from_fit` splits a published total across states as the
fitted model implies (:class:`InitialTotal` is such a total, with its range), and
:func:`observed_prevalence` gives the share of each state at each survey wave of
the fit's embedded panel (drawn as points on the fan charts). The generators per
draw are in :mod:`markov_migration.projection.fitted`.

Examples
--------
>>> from markov_migration.projection.initial import initial_stocks_from_fit  # doctest: +SKIP
>>> initial_stocks_from_fit("fit.nc", 650_000, at=2024.5)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.core.draws import select_draws
from markov_migration.defaults import TIME_TOL
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec, read_fit
from markov_migration.inputs.spec import ModelSpec
from markov_migration.inputs.waves import wave_bins, wave_index
from markov_migration.projection.fitted import (
    carry_matrices,
    period_generators,
)

__all__ = ["InitialTotal", "initial_stocks_from_fit", "observed_prevalence", "split_shares"]

#: Posterior draws used to split an initial total (:func:`initial_stocks_from_fit`).
SPLIT_DRAWS = 1000
#: Observation gaps are rounded to this (time units) when propagating the panel.
SPLIT_GAP_RESOLUTION = 0.01


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
    if spec.time == "discrete":
        from markov_migration.projection.discrete import posterior_matrices

        q, cuts = posterior_matrices(tree, covariates=covariates, group=group, period=period)
    else:
        q, cuts = period_generators(
            tree, spec, covariates=covariates, group=group, period=period, at=at
        )
    q = q.values[select_draws(q.sizes["sample"], min(SPLIT_DRAWS, q.sizes["sample"]))]
    # the posterior mean of the distribution, then restricted (as before periods were carried)
    part = split_shares(tree, spec, q, cuts, at, chosen, normalize=False).mean(axis=0)
    counts = _largest_remainder(part / part.sum() * round(total), round(total))
    out = dict.fromkeys(spec.states, 0)
    for s, c in zip(chosen, counts, strict=True):
        out[s] = int(c)
    return out


def split_shares(
    tree: xr.DataTree,
    spec: ModelSpec,
    q: np.ndarray,
    cuts: Sequence[float],
    at: float,
    states: Sequence[str],
    chunk: int = 250,
    normalize: bool = True,
) -> np.ndarray:
    """Each draw's split of persons across ``states`` at ``at``, from the fit's panel.

    Every respondent's last observed state at or before ``at`` is carried
    forward to ``at`` through the periods in force (:func:`carry_matrices`;
    gaps rounded to :data:`SPLIT_GAP_RESOLUTION`), weighted by the survey
    weights, and restricted to ``states``.

    Parameters
    ----------
    q : ndarray, shape (D, P, K, K)
        Generators per draw and period.

    Returns
    -------
    ndarray, shape (D, len(states))
        Shares per draw, adding up to 1 (with ``normalize``; else the shares
        of the whole population that are in ``states``).
    """
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
    gaps = np.unique(groups["gap"].to_numpy())
    where = np.searchsorted(gaps, groups["gap"].to_numpy())
    from_state = groups["state"].to_numpy(dtype=np.int64)
    w = groups["w"].to_numpy()
    idx = [spec.index(s) for s in states]
    out = np.empty((q.shape[0], len(idx)))
    for lo in range(0, q.shape[0], chunk):  # bounded memory: draws x gaps x K x K
        if spec.time == "discrete":  # P^n, n whole model steps (gaps rounded)
            from markov_migration.projection.discrete import carry_steps

            p = carry_steps(q[lo : lo + chunk], gaps)
        else:
            p = carry_matrices(q[lo : lo + chunk], cuts, gaps, at)
        rows = p[:, where, from_state, :]  # (draws, groups, K)
        dist = np.einsum("g,dgk->dk", w, rows) / w.sum()
        out[lo : lo + chunk] = np.clip(dist, 0.0, None)[:, idx]
    total = out.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise InputError(f"the fitted model puts nobody in {', '.join(states)} at {at:g}")
    return out / total if normalize else out


#: z of the 95th percentile of the standard normal (the ends of a central 90% range).
Z90 = 1.6448536269514722


@dataclass(frozen=True)
class InitialTotal:
    """A published total of persons to split across states as the fit implies, per draw.

    Each projection draw uses its own posterior sample's split
    (:func:`split_shares` with that draw's generators) and, with a range, its
    own total: a two-piece lognormal with median ``total`` whose 5% and 95%
    quantiles are ``low`` and ``high`` (``log T = log total + sigma z``, ``z ~
    N(0, 1)``, ``sigma = log(total / low) / 1.645`` below the median and
    ``log(high / total) / 1.645`` above it), so the given total, range and
    skew are all kept. Totals are rounded to whole persons and split by
    largest remainders.

    Attributes
    ----------
    total : float
        Persons (the median when a range is given).
    low, high : float or None
        Central 90% range of the total (persons), or None for a known total.
    states : tuple of str or None
        States to split across (default: the model's non-home states).
    """

    total: float
    low: float | None = None
    high: float | None = None
    states: tuple[str, ...] | None = None

    def check(self) -> InitialTotal:
        """Refuse a negative or non-finite total, or a range that does not contain it."""
        t = self.total
        if not math.isfinite(t) or t <= 0:
            raise InputError(f"--initial-total must be a number of persons > 0, got {t:g}")
        check_count = t if self.high is None else self.high
        if check_count > 1e14:
            raise InputError(
                f"--initial-total: at most 1e+14 persons are supported, got {check_count:g}"
            )
        if (self.low is None) != (self.high is None):
            raise InputError("--initial-total-range needs two numbers LO,HI")
        if self.low is not None:
            lo, hi = float(self.low), float(self.high)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0:
                raise InputError(
                    f"--initial-total-range must be two numbers > 0, got {lo:g},{hi:g}"
                )
            if not lo <= t <= hi or lo == hi:
                raise InputError(
                    f"--initial-total-range {lo:g},{hi:g} must contain --initial-total {t:g} "
                    "and have LO < HI"
                )
        return self

    def totals(self, n: int, seed: int) -> np.ndarray:
        """Whole persons per projection draw; draw ``i`` uses ``SeedSequence(seed, (i, 1))``."""
        if self.low is None:
            return np.full(n, round(self.total), dtype=np.int64)
        lo_sd = math.log(self.total / self.low) / Z90
        hi_sd = math.log(self.high / self.total) / Z90
        z = np.array(
            [np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i, 1))).standard_normal()
             for i in range(n)]
        )  # fmt: skip
        return np.round(self.total * np.exp(np.where(z < 0, lo_sd, hi_sd) * z)).astype(np.int64)

    def stocks(self, tree, spec, q, cuts, at, seed) -> tuple[np.ndarray, dict]:
        """Initial stocks per draw ``(n, K)`` and a JSON-able note for the provenance.

        ``q`` (n, P, K, K) are the projection draws' generators per period.
        """
        states = (
            [s for s in spec.states if s not in spec.home]
            if self.states is None
            else list(self.states)
        )
        shares = split_shares(tree, spec, q, cuts, at, states)
        totals = self.totals(q.shape[0], seed)
        x0 = np.zeros((q.shape[0], spec.n_states), dtype=np.int64)
        idx = [spec.index(s) for s in states]
        for d in range(q.shape[0]):
            x0[d, idx] = _largest_remainder(shares[d] * totals[d], int(totals[d]))
        note = {
            "total": self.total,
            "range90": None if self.low is None else [self.low, self.high],
            "distribution": "fixed" if self.low is None else (
                "two-piece lognormal, median total, 5% and 95% quantiles at the range ends; "
                "draw i from SeedSequence(seed, spawn_key=(i, 1))"
            ),
            "split": f"each draw's own posterior split across {', '.join(states)} at {at:g}",
            "totals_quantiles_5_50_95": np.quantile(totals, [0.05, 0.5, 0.95]).tolist(),
        }  # fmt: skip
        return x0, note


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
    with equal numbers of observations; empty bins are dropped. Records of a latent
    fit's censored codes (a set of states) are left out. Returns None when the fit
    has no ``panel_data`` group (or no record of a single state).

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
    s = panel["state"].values.astype(np.int64)
    # a latent fit's censored codes (after the states) do not say which state: left out
    known = s < len(states)
    if not known.any():
        return None
    t, w, s = panel["time"].values[known], panel["weight"].values[known], s[known]
    # numbered 0.. over the waves that hold observations (equal-count bins can be empty)
    wave_of = np.unique(wave_index(t, wave_bins(t)), return_inverse=True)[1]
    n_waves = int(wave_of.max()) + 1
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

"""What a fit implies for a projection: its generators per draw and per period.

:func:`posterior_generators` picks the generator ``Q`` of every posterior
sample (for fits with covariates, groups or periods, the one asked for),
:func:`period_generators` one per period, and :func:`carry_matrices` carries
states over gaps through the periods in force. The initial split of a published
total and the observed prevalence of the fit's panel are in
:mod:`markov_migration.projection.initial`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS, TIME_TOL
from markov_migration.errors import InputError
from markov_migration.fitfile.generators import chosen_generators
from markov_migration.inputs.spec import ModelSpec


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


def period_generators(
    tree: xr.DataTree,
    spec: ModelSpec,
    *,
    covariates: Mapping[str, Any] | None = None,
    group: str | None = None,
    period: str | int | None = None,
    at: float | None = None,
    seed: int = 0,
) -> tuple[xr.DataArray, list[float]]:
    """Generators per posterior sample and period in force, and the cut points.

    A fit with ``periods`` and no ``period`` chosen gives every period's
    generator, ``(sample, period, from_state, to_state)``, and the fit's cut
    points: the projection switches period at each cut inside its window, and
    after the last cut the last period holds. Otherwise one "period" (the
    chosen one, or the fit's only generator) and no cut points. The other
    arguments are those of :func:`posterior_generators`.
    """
    post = tree["posterior"]
    if "Q" not in post or "period" not in post.coords or period is not None:
        q = posterior_generators(
            tree, spec, covariates=covariates, group=group, period=period, at=at, seed=seed
        )
        return q.expand_dims(period=1, axis=1), []
    labels = [str(x) for x in post["period"].values]
    parts = [
        posterior_generators(
            tree, spec, covariates=covariates, group=group, period=label, at=at, seed=seed
        )
        for label in labels
    ]
    q = xr.concat(parts, dim=xr.DataArray(labels, dims="period", name="period"))
    q = q.transpose("sample", "period", "from_state", "to_state")
    choice = json.loads(parts[0].attrs["generator"])
    choice["period"] = "the period in force at each time (switching at the cut points)"
    q.attrs["generator"] = json.dumps(choice, default=str)
    return q, [float(c) for c in spec.periods]


def period_at(cuts: Sequence[float], t: float) -> int:
    """Index of the period in force just after time ``t`` (0 without cut points)."""
    return int(np.searchsorted(np.asarray(cuts, dtype=float), t + TIME_TOL, side="right"))


def periods_note(q: xr.DataArray, cuts: Sequence[float], times: np.ndarray) -> dict:
    """Provenance of the periods of a projection (JSON-able)."""
    labels = [str(x) for x in q["period"].values] if "period" in q.coords else []
    if not cuts:
        return {"periods": "one generator for the whole window"}
    inside = [c for c in cuts if times[0] + TIME_TOL < c < times[-1] - TIME_TOL]
    return {
        "periods": labels,
        "cuts": list(cuts),
        "cuts_inside_window": inside,
        "at_start": labels[period_at(cuts, float(times[0]))],
        "after_last_cut": f"the last period ({labels[-1]}) holds to the horizon",
    }


def carry_matrices(q: np.ndarray, cuts: Sequence[float], gaps: np.ndarray, at: float) -> np.ndarray:
    """``P`` from ``at - gap`` to ``at`` through the periods in force, per draw and gap.

    Parameters
    ----------
    q : ndarray, shape (D, P, K, K)
        Generators per draw and period (``P = len(cuts) + 1``).
    cuts : sequence of float
        Period cut points (time units).
    gaps : ndarray, shape (G,)
        Times to carry over (>= 0, time units).
    at : float
        Time carried to.

    Returns
    -------
    ndarray, shape (D, G, K, K)
        The product of ``expm(Q_p length)`` over the period pieces of
        ``[at - gap, at]``, exact for a piecewise-constant generator.
    """
    from markov_migration.core.likelihood import pmatrix

    q = np.asarray(q, dtype=np.float64)
    n_draws, k = q.shape[0], q.shape[-1]
    if not cuts:
        return pmatrix(q[:, 0], np.asarray(gaps, dtype=float))
    out = np.empty((n_draws, len(gaps), k, k))
    for j, gap in enumerate(np.asarray(gaps, dtype=float)):
        lo = at - gap
        edges = sorted({lo, at} | {c for c in cuts if lo + TIME_TOL < c < at - TIME_TOL})
        p = np.broadcast_to(np.eye(k), (n_draws, k, k))
        for u, v in zip(edges[:-1], edges[1:], strict=True):
            if v - u <= 0:
                continue
            p = p @ pmatrix(q[:, period_at(cuts, u)], np.array([v - u]))[:, 0]
        out[:, j] = p
    return out

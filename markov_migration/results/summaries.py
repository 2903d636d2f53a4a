"""Posterior quantities of a fit: intensities, transition probabilities, sojourn times, ...

Layer 4 (results). The maths is plain NumPy on stacks of generators
``q`` of shape ``(..., K, K)`` (one per posterior draw) in
:mod:`markov_migration.core.quantities` and works without xarray;
:mod:`markov_migration.results.quantities` reads a fit file's DataTree and
returns labelled :class:`xarray.DataArray` draws ``(chain, draw, ...)`` under
the same names, which :func:`posterior_summary`
(:mod:`markov_migration.results.tables`) reduces to the posterior mean, sd,
median and an equal-tailed interval. :func:`to_frame` and :func:`to_json` give
the tidy table and JSON the command line writes. This module is the entry
point (:func:`summarize`) and re-exports those names. Nothing here imports PyMC.

Quantities (continuous time; moves and times in the model's time unit)
-----------------------------------------------------------------------
``qmatrix``
    The generator ``Q``: ``q_rs`` is the intensity of moving r -> s (moves per
    person and time unit); ``q_rr = -sum_s q_rs``.
``pmatrix``
    ``P(t) = expm(Q t)``: probability of being in s at time t after being in r.
``sojourn``
    Mean length of a stay in r, ``-1 / q_rr`` (absorbing states excluded).
``pnext``
    Probability that the next move out of r goes to s, ``q_rs / -q_rr``.
``leave``
    Probability of leaving r at least once within ``t`` time units,
    ``1 - exp(q_rr t)`` (e.g. the annual departure probability from a host
    country; absorbing states excluded). Not ``1 - P(t)_rr``, which counts
    those who left and came back as staying.
``totlos``
    Expected time spent in each state within ``horizon`` time units from a
    start state or distribution ``pi``: ``pi^T int_0^H P(u) du`` (R msm's
    ``totlos.msm``); with an infinite horizon, the expected time in each
    transient state before absorption, ``pi_T^T (-Q_TT)^-1``.
``passage``
    Expected first-passage time from each state to a target state (e.g. years
    until return), solving ``Q_FF m = -1``; states from which the target may
    never be reached have an infinite expectation and are left out (msm's
    ``efpt.msm``).
``hazard``
    Hazard ratios of covariates (only fits with covariates have them).
``phases``
    Fits of models with ``[phases]``: for each phase-type state, the
    probability of reaching each phase (the last: settling), the time spent
    in each, the phase split with steady entries, the probability of still
    being in the state 1, 5 and 10 time units after entering, and the mean
    stay (:mod:`markov_migration.results.phases`). With covariates, groups or
    periods: of the baseline hidden generator ``Q_latent`` (reference levels,
    numeric covariates at their centres, no group effect), or of the one chosen
    by :func:`at_generator` (each observed transition's terms multiply its
    phase exits).

Fits with covariates, groups or periods have one ``Q`` per categorical
pattern, group and period, and every quantity is summarised for each (extra
leading dims). :func:`at_generator` instead picks one generator: given
covariate values (numbers in the data's unit), a group, or a *new* group not in
the data (the population distribution of groups), and a period.

Discrete-time fits (one-step matrix ``P``, times in steps) have the analogous
``pmatrix`` (``P^n``), ``sojourn`` (``1 / (1 - p_rr)`` steps), ``pnext``
(``p_rs / (1 - p_rr)``), ``leave`` (``1 - p_rr^t``), ``totlos`` (expected number of steps spent in each
state among steps ``0 .. H-1``) and ``passage`` (``(I - P_FF)^-1 1`` steps).

Examples
--------
>>> from markov_migration.fitfile.format import read_fit  # doctest: +SKIP
>>> tree = read_fit("fit.nc")  # doctest: +SKIP
>>> s = summarize(tree, "pmatrix", t=1.0, ci=0.9)  # doctest: +SKIP
>>> to_frame(s).columns.tolist()  # doctest: +SKIP
['from', 'to', 'mean', 'sd', 'median', 'lower', 'upper']
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import xarray as xr

from markov_migration.defaults import CI_PROB, SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.results.occupancy import passage, start_distribution, totlos
from markov_migration.results.quantities import (
    _spec,
    hazard,
    is_discrete,
    leave,
    pmatrix,
    pnext,
    qmatrix,
    sojourn,
)
from markov_migration.results.tables import (
    STATS,
    check_ci,
    notes,
    posterior_summary,
    to_frame,
    to_json,
)

__all__ = [
    "MATRIX_QUANTITIES",
    "QUANTITIES",
    "STATS",
    "at_generator",
    "check_ci",
    "hazard",
    "is_discrete",
    "leave",
    "notes",
    "passage",
    "pmatrix",
    "pnext",
    "posterior_summary",
    "qmatrix",
    "sojourn",
    "start_distribution",
    "summarize",
    "to_frame",
    "to_json",
    "totlos",
]

#: Quantities :func:`summarize` knows.
QUANTITIES = (
    "qmatrix", "pmatrix", "sojourn", "pnext", "leave", "totlos", "passage", "hazard", "phases",
    "misclassification",
)  # fmt: skip
#: Quantities indexed by (from_state, to_state); the others are per state.
MATRIX_QUANTITIES = ("qmatrix", "pmatrix", "pnext")


def at_generator(
    tree: xr.DataTree,
    covariates: dict | None = None,
    group: str | None = None,
    period: str | int | None = None,
    *,
    seed: int = 0,
) -> xr.DataTree:
    """The fit with its posterior ``Q`` replaced by one chosen generator.

    Every summary of the returned tree is then of that generator alone.

    Parameters
    ----------
    tree : xarray.DataTree
        A continuous-time fit with covariates, groups or periods.
    covariates : dict, optional
        ``{name: value}``: a level of a categorical covariate, a number in the
        data's unit for a numeric one; those not given stay at the reference
        level or centre.
    group : str, optional
        A group of the fit, or ``"new"`` for a group not in the data (a new
        random effect drawn from ``Normal(0, group_sd)`` per posterior draw:
        the population distribution of groups). Required for fits with groups.
    period : str or int, optional
        Period label or index. Required for fits with periods.
    seed : int
        Seed of the new group's random effects.

    Returns
    -------
    xarray.DataTree
        A shallow copy; root attr ``generator`` records the choice (JSON).
    """
    from markov_migration.fitfile.generators import chosen_generators

    if is_discrete(tree):
        raise InputError("--covariate, --group and --period need a continuous-time fit")
    q, choice = chosen_generators(tree, _spec(tree), covariates, group, period, None, seed)
    post = tree["posterior"].to_dataset().drop_vars("Q")
    post["Q"] = q.transpose(*SAMPLE_DIMS, "from_state", "to_state")
    if "Q_latent" in post:  # phase-type states: the hidden generator of the choice
        post = _phased_choice(tree, post)
    out = tree.copy()
    out["posterior"] = xr.DataTree(post)
    out.attrs = {**tree.attrs, "generator": json.dumps(choice, default=str)}
    return out


def _phased_choice(tree: xr.DataTree, post: xr.Dataset) -> xr.Dataset:
    """``Q_latent`` and ``Q`` of a phase-type fit at the choice whose observed ``Q`` is in ``post``.

    The choice's covariate, group and period terms of each observed transition
    multiply its phase exits (the model's convention,
    :func:`markov_migration.core.phases.latent_at_observed`); ``Q`` is then the
    observed-state generator of that hidden one (mean stays and next states).
    """
    from markov_migration.core.phases import latent_at_observed, observed_generator
    from markov_migration.fitfile.readback import phase_layout

    spec, layout, names = phase_layout(tree)
    labels = [f"{names[a]}->{names[b]}" for a, b in zip(layout.rate_from, layout.rate_to,
                                                         strict=True)]  # fmt: skip
    q = post["Q"].transpose(*SAMPLE_DIMS, "from_state", "to_state").to_numpy()
    n_chain, n_draw = q.shape[:2]

    def flat(name, dim, labs):
        v = post[name].sel({dim: labs}).transpose(*SAMPLE_DIMS, dim).to_numpy()
        return v.reshape(n_chain * n_draw, -1)

    q_hidden = latent_at_observed(
        q.reshape(n_chain * n_draw, *q.shape[2:]),
        flat("log_rate", "transition", list(spec.transition_labels)),
        flat("log_rate_latent", "latent_transition", labels), layout, spec.transitions,
    ).reshape(n_chain, n_draw, len(names), len(names))  # fmt: skip
    post["Q_latent"] = (
        (*SAMPLE_DIMS, "from_latent", "to_latent"), q_hidden, post["Q_latent"].attrs,
    )  # fmt: skip
    post["Q"] = (
        (*SAMPLE_DIMS, "from_state", "to_state"),
        observed_generator(q_hidden, layout.observed, spec.n_states), post["Q"].attrs,
    )  # fmt: skip
    return post


#: Probabilities may stray this far outside [0, 1] (and row sums from 1) by rounding.
PROB_TOL = 1e-6


def check_probabilities(draws: xr.DataArray, tree: xr.DataTree, t: float = 1.0) -> None:
    """Refuse probability draws outside [0, 1] or (matrices) whose rows do not sum to 1.

    Rows that are missing in every draw (``pnext`` of absorbing states) are left
    out. A ``pmatrix`` or ``leave`` at a time so long that ``t`` times the fastest
    intensity is beyond what floating point resolves is named as such.

    Raises
    ------
    InputError
        Naming the quantity and the largest error found.
    """
    what = draws.attrs.get("quantity", draws.name or "probabilities")
    values = draws.to_numpy()
    flat = values.reshape(values.shape[0], values.shape[1], -1)
    v = flat[:, :, ~np.isnan(flat).all(axis=(0, 1))]  # absent in every draw: left out
    worst = 0.0
    if v.size:
        if not np.isfinite(v).all():
            worst = np.inf
        else:
            worst = max(float(-v.min()), float(v.max() - 1.0), 0.0)
    if "to_state" in draws.dims and worst == 0.0:
        axis = draws.get_axis_num("to_state")
        rows = np.nansum(values, axis=axis)
        present = ~np.isnan(values).all(axis=axis)
        if present.any():
            worst = float(np.max(np.abs(rows[present] - 1.0)))
    if worst <= PROB_TOL:
        return
    scale = _time_scale(tree, t) if what in ("pmatrix", "leave") else 0.0
    if scale > 1e12:
        raise InputError(
            f"--t {t:g} is beyond floating point for this fit: t x the fastest intensity is "
            f"{scale:.3g}, so {what} cannot be computed (it reached its limit long before; "
            "use a shorter --t)"
        )
    raise InputError(
        f"{what} is not a valid probability (off by {worst:.3g}): the fit's draws or the request "
        "give numbers outside [0, 1] or rows not summing to 1"
    )


def _time_scale(tree: xr.DataTree, t: float) -> float:
    """``t`` times the largest exit intensity of any draw (steps for a discrete fit)."""
    if is_discrete(tree):
        return float(t)
    q = np.asarray(tree["posterior"]["Q"].to_numpy(), dtype=float)
    diag = np.abs(np.diagonal(q, axis1=-2, axis2=-1))
    return float(t) * float(np.nanmax(diag)) if diag.size else 0.0


def check_finite(summary: xr.Dataset) -> None:
    """Refuse a summary whose shown numbers are not finite (beyond floating point, bad draws).

    Only rows :func:`to_frame` shows are checked; ``sd`` may be missing (one draw).
    """
    frame = to_frame(summary)
    cols = [c for c in STATS if c != "sd" and c in frame]
    values = frame[cols].to_numpy(dtype=float)
    if values.size and not np.isfinite(values).all():
        what = summary.attrs.get("quantity", "summary")
        raise InputError(
            f"the {what} summary is not finite (the request is beyond floating point, or the "
            "fit's draws are invalid): nothing printed"
        )


def summarize(
    tree: xr.DataTree,
    what: str,
    *,
    t: float = 1.0,
    ci: float = CI_PROB,
    start: str | Sequence[float] | None = None,
    horizon: float | None = None,
    to: str | Sequence[str] | None = None,
    covariates: dict | None = None,
    group: str | None = None,
    period: str | int | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Posterior summary (mean, sd, median, interval) of one quantity of a fit.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit (see :func:`markov_migration.fitfile.format.read_fit`).
    what : str
        One of :data:`QUANTITIES`: qmatrix, pmatrix, sojourn, pnext, leave, totlos,
        passage, hazard, phases, misclassification.
    t : float
        Time for ``pmatrix`` and ``leave`` (time units).
    ci : float
        Probability of the equal-tailed interval.
    start, horizon
        For ``totlos`` (``horizon`` is required).
    to
        Target state(s) for ``passage``.
    covariates, group, period, seed
        Summarise one generator, see :func:`at_generator` (not for ``hazard``).

    Returns
    -------
    xarray.Dataset
        ``mean``, ``sd``, ``median``, ``lower``, ``upper`` over (from_state,
        to_state) or (state,), with attrs ``quantity``, ``units``,
        ``ci_prob``, ``ci_kind`` and the quantity's parameters.
    """
    check_ci(ci)
    choice = None
    if what == "misclassification":  # at the records' covariates (results/summaries_misc.py)
        from markov_migration.results.summaries_misc import misclassification

        summary = posterior_summary(misclassification(tree, covariates), ci)
        check_finite(summary)
        return summary
    if covariates or group is not None or period is not None:
        if what == "hazard":
            raise InputError("hazard ratios do not depend on --covariate, --group or --period")
        tree = at_generator(tree, covariates, group, period, seed=seed)
        choice = tree.attrs["generator"]
    if what == "qmatrix":
        draws = qmatrix(tree)
    elif what == "pmatrix":
        draws = pmatrix(tree, t)
    elif what == "sojourn":
        draws = sojourn(tree)
    elif what == "pnext":
        draws = pnext(tree)
    elif what == "leave":
        draws = leave(tree, t)
    elif what == "totlos":
        if horizon is None:
            raise InputError(
                "--what totlos needs --horizon H (time units; 'inf' for time before absorption)"
            )
        draws = totlos(tree, horizon, start)
    elif what == "passage":
        draws = passage(tree, to)
    elif what == "hazard":
        draws = hazard(tree)
    elif what == "phases":
        from markov_migration.results.phases import phases

        draws = phases(tree)
    else:
        raise InputError(f"unknown quantity '{what}' (use one of: {', '.join(QUANTITIES)})")
    if what in ("pmatrix", "pnext", "leave"):
        check_probabilities(draws, tree, t)
    summary = posterior_summary(draws, ci)
    check_finite(summary)
    if choice is not None:
        summary.attrs["generator"] = choice
    return summary

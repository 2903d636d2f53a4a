"""Labelled posterior draws of each quantity of a fit: qmatrix, pmatrix, sojourn, ...

Layer 4 (results). Each function reads a fit file's DataTree, computes the
quantity for every posterior draw with the array functions of the same name in
:mod:`markov_migration.core.quantities` and returns an :class:`xarray.DataArray`
with dims ``(chain, draw, [extra...,] ...)`` and attrs (``quantity``,
``description``, ``units``, ``notes``). :mod:`markov_migration.results.summaries`
reduces them to posterior summaries; see its docstring for the definitions.
Time spent in states and first-passage times (``totlos``, ``passage``) and the
start distributions they take are in :mod:`markov_migration.results.occupancy`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from markov_migration.core import quantities as core
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.inputs.spec import ModelSpec

__all__ = [
    "hazard",
    "is_discrete",
    "leave",
    "pmatrix",
    "pnext",
    "qmatrix",
    "sojourn",
]


def _spec(tree: xr.DataTree) -> ModelSpec:
    from markov_migration.fitfile.format import fit_spec

    return fit_spec(tree)


def is_discrete(tree: xr.DataTree) -> bool:
    """Tell whether a fit is discrete-time (posterior ``P``, no ``Q``)."""
    return "Q" not in tree["posterior"] and "P" in tree["posterior"]


def _matrix_draws(tree: xr.DataTree) -> xr.DataArray:
    post = tree["posterior"]
    name = "P" if is_discrete(tree) else "Q"
    if name not in post:
        raise InputError("fit file has neither Q nor P in its posterior")
    # extra dims (e.g. a covariate pattern or group) sit between the sample and state dims
    return post[name].transpose(*SAMPLE_DIMS, ..., "from_state", "to_state")


def _unit(tree: xr.DataTree) -> str:
    return "steps" if is_discrete(tree) else str(tree.attrs.get("time_unit", "years"))


def _wrap(
    values: np.ndarray, like: xr.DataArray, dims: tuple[str, ...], coords: dict, **attrs
) -> xr.DataArray:
    """Label draws computed from ``like`` (chain, draw, extra..., from_state, to_state)."""
    extra = tuple(d for d in like.dims[2:] if d not in ("from_state", "to_state"))
    keep = {d: like.coords[d] for d in (*SAMPLE_DIMS, *extra) if d in like.coords}
    return xr.DataArray(
        values,
        dims=(*SAMPLE_DIMS, *extra, *dims),
        coords={**keep, **coords},
        attrs={k: v for k, v in attrs.items() if v is not None},
    )


def _transient_states(
    values: np.ndarray, like: xr.DataArray, spec: ModelSpec, absorbing_note: str, **attrs
) -> xr.DataArray:
    """Label per-state draws ``(..., K)`` without the absorbing states, noting which were left out."""
    keep = [i for i, s in enumerate(spec.states) if s not in spec.absorbing]
    notes = [f"{absorbing_note}: {', '.join(spec.absorbing)}"] if spec.absorbing else []
    return _wrap(
        values[..., keep],
        like,
        ("state",),
        {"state": [spec.states[i] for i in keep]},
        notes=json.dumps(notes),
        **attrs,
    )


def _whole_steps(t: float) -> int:
    """``t`` as a whole number of steps of a discrete-time fit (InputError otherwise)."""
    if abs(t - round(t)) > 1e-9:
        raise InputError(f"a discrete-time fit needs a whole number of steps for --t, got {t:g}")
    return int(round(t))


def _amount(value: float, unit: str) -> str:
    """``1 year``, ``2.5 years``, ``1 step``."""
    return f"{value:g} {unit.rstrip('s') if value == 1 else unit}"


def _state_coords(tree: xr.DataTree) -> list[str]:
    return [str(s) for s in tree["posterior"]["from_state"].values]


def qmatrix(tree: xr.DataTree) -> xr.DataArray:
    """Posterior draws of the generator Q (continuous-time fits).

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, from_state, to_state); moves per person and time unit.
    """
    if is_discrete(tree):
        raise InputError("a discrete-time fit has no intensities (Q); use --what pmatrix")
    q = _matrix_draws(tree)
    unit = _unit(tree)
    out = q.copy()
    out.attrs = {
        "quantity": "qmatrix",
        "description": "transition intensities q_rs (diagonal: minus the rate of leaving)",
        "units": f"moves per person per {unit.rstrip('s')}",
        "time_unit": unit,
    }
    return out


def pmatrix(tree: xr.DataTree, t: float = 1.0) -> xr.DataArray:
    """Posterior draws of the transition probability matrix P(t).

    Parameters
    ----------
    tree : xarray.DataTree
        A fit.
    t : float
        Time (time units; whole steps for a discrete-time fit), >= 0.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, from_state, to_state); probabilities.
    """
    t = float(t)
    if not math.isfinite(t) or t < 0:
        raise InputError(f"--t must be a finite time >= 0, got {t:g}")
    m = _matrix_draws(tree)
    values = m.to_numpy()
    if is_discrete(tree):
        p = core.pmatrix_discrete(values, _whole_steps(t))
    else:
        p = core.pmatrix(values, t)
    unit = _unit(tree)
    return _wrap(
        p,
        m,
        ("from_state", "to_state"),
        {"from_state": m["from_state"], "to_state": m["to_state"]},
        quantity="pmatrix",
        description=f"probability of being in to_state {_amount(t, unit)} after from_state",
        units="probability",
        t=t,
        time_unit=unit,
    )


def sojourn(tree: xr.DataTree) -> xr.DataArray:
    """Posterior draws of the mean sojourn time in each non-absorbing state.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, state); time units (steps for discrete-time fits).
    """
    spec = _spec(tree)
    m = _matrix_draws(tree)
    values = (
        core.sojourn_discrete(m.to_numpy()) if is_discrete(tree) else core.sojourn(m.to_numpy())
    )
    unit = _unit(tree)
    return _transient_states(
        values,
        m,
        spec,
        "absorbing states have no finite sojourn",
        quantity="sojourn",
        description="mean length of a stay in the state",
        units=unit,
        time_unit=unit,
    )


def leave(tree: xr.DataTree, t: float = 1.0) -> xr.DataArray:
    """Posterior draws of the probability of leaving each state within ``t``.

    ``1 - exp(q_rr t)``: the probability that a person in r at the start moves
    out at least once within ``t`` time units (whether or not they come back);
    for a discrete-time fit ``1 - p_rr^t`` over ``t`` whole steps. Absorbing
    states are left out. ``t = 1`` year gives the annual departure probability
    that survey reports publish per host country.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit.
    t : float
        Time window (time units, or whole steps), > 0.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, [extra...,] state); probabilities.
    """
    t = float(t)
    if not math.isfinite(t) or t <= 0:
        raise InputError(f"--t must be a finite time > 0 for leave, got {t:g}")
    spec = _spec(tree)
    m = _matrix_draws(tree)
    if is_discrete(tree):
        values = core.leave_discrete(m.to_numpy(), _whole_steps(t))
    else:
        values = core.leave(m.to_numpy(), t)
    unit = _unit(tree)
    return _transient_states(
        values,
        m,
        spec,
        "absorbing states are never left",
        quantity="leave",
        description=f"probability of leaving the state at least once within {_amount(t, unit)}",
        units="probability",
        t=t,
        time_unit=unit,
    )


def pnext(tree: xr.DataTree) -> xr.DataArray:
    """Posterior draws of the next-state probabilities ``q_rs / -q_rr``.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, from_state, to_state); rows of absorbing states are nan.
    """
    spec = _spec(tree)
    m = _matrix_draws(tree)
    values = core.pnext_discrete(m.to_numpy()) if is_discrete(tree) else core.pnext(m.to_numpy())
    notes = (
        [f"absorbing states have no next state: {', '.join(spec.absorbing)}"]
        if spec.absorbing
        else []
    )
    return _wrap(
        values,
        m,
        ("from_state", "to_state"),
        {"from_state": m["from_state"], "to_state": m["to_state"]},
        quantity="pnext",
        description="probability that the next move out of from_state goes to to_state",
        units="probability",
        notes=json.dumps(notes),
    )


def hazard(tree: xr.DataTree) -> xr.DataArray:
    """Posterior draws of covariate hazard ratios ``exp(log_hazard_ratio)``.

    Only fits of models with ``[covariates]`` have them: the posterior's
    ``log_hazard_ratio`` (dim ``covariate_effect``, one entry per covariate
    level and transition it acts on, per unit of a numeric covariate).

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, effect); ratios of intensities vs the reference.

    Raises
    ------
    InputError
        If the model has no covariates, or the fit holds no hazard ratios.
    """
    spec = _spec(tree)
    if not spec.covariates:
        raise InputError(
            f"model '{spec.name}' has no covariates, so the fit has no hazard ratios "
            "(add a [covariates] table to the model file and refit)"
        )
    post = tree["posterior"]
    if not any(c.transitions for c in spec.covariates):  # on misclassification only
        raise InputError(
            f"the covariates of model '{spec.name}' act only on misclassification "
            "probabilities: no hazard ratios (see summarize --what misclassification)"
        )
    if "log_hazard_ratio" not in post:
        raise InputError(
            "the fit has covariates but no 'log_hazard_ratio' posterior variable: "
            "cannot summarize hazard ratios"
        )
    lhr = post["log_hazard_ratio"].transpose(*SAMPLE_DIMS, ...)
    out = np.exp(lhr)
    if "covariate_effect" in out.dims:
        out = out.rename(covariate_effect="effect")
    out.attrs = {
        "quantity": "hazard",
        "description": "hazard ratio of the covariate (level) on the intensity, vs the reference",
        "units": "ratio (per unit of a numeric covariate)",
    }
    return out

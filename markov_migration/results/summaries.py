"""Posterior quantities of a fit: intensities, transition probabilities, sojourn times, ...

Layer 4 (results). The maths is plain NumPy on stacks of generators
``q`` of shape ``(..., K, K)`` (one per posterior draw) and works without
xarray; the public functions read a fit file's DataTree and return labelled
:class:`xarray.DataArray` draws ``(chain, draw, ...)``, which
:func:`posterior_summary` reduces to the posterior mean, sd, median and an
equal-tailed interval. :func:`to_frame` and :func:`to_json` give the tidy
table and JSON the command line writes. Nothing here imports PyMC.

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
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.linalg
import xarray as xr

from markov_migration.core.likelihood import pmatrix as _expm_qt
from markov_migration.errors import InputError
from markov_migration.inputs.spec import ModelSpec

#: Quantities :func:`summarize` knows.
QUANTITIES = (
    "qmatrix", "pmatrix", "sojourn", "pnext", "leave", "totlos", "passage", "hazard",
)  # fmt: skip
#: Dims of posterior draws.
SAMPLE_DIMS = ("chain", "draw")
#: Quantities indexed by (from_state, to_state); the others are per state.
MATRIX_QUANTITIES = ("qmatrix", "pmatrix", "pnext")
#: Summary statistics, in table order.
STATS = ("mean", "sd", "median", "lower", "upper")


# --------------------------------------------------------------------------
# NumPy core: stacks of generators (..., K, K)
# --------------------------------------------------------------------------


def sojourn_times(q: np.ndarray) -> np.ndarray:
    """Mean sojourn time in each state, ``-1 / q_rr`` (inf for absorbing states).

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
        Generators (moves per time unit).

    Returns
    -------
    ndarray, shape (..., K)
        Time units.
    """
    leave = -np.diagonal(q, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore"):
        return np.where(leave > 0, 1.0 / np.where(leave > 0, leave, 1.0), np.inf)


def next_state_probs(q: np.ndarray) -> np.ndarray:
    """Probability that the next move from r goes to s, ``q_rs / -q_rr``.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)

    Returns
    -------
    ndarray, shape (..., K, K)
        Zero on the diagonal; rows of absorbing states are nan.
    """
    k = q.shape[-1]
    leave = -np.diagonal(q, axis1=-2, axis2=-1)[..., :, None]
    off = np.where(np.eye(k, dtype=bool), 0.0, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(leave > 0, off / np.where(leave > 0, leave, 1.0), np.nan)


def integrated_pmatrix(q: np.ndarray, horizon: float) -> np.ndarray:
    """``int_0^H expm(Q u) du`` for each generator (Van Loan's block exponential).

    ``expm([[Q, I], [0, 0]] H)`` has the integral as its upper-right block.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
    horizon : float
        H >= 0, time units.

    Returns
    -------
    ndarray, shape (..., K, K)
        Entry (r, s): expected time spent in s within H after starting in r.
    """
    k = q.shape[-1]
    block = np.zeros((*q.shape[:-2], 2 * k, 2 * k))
    block[..., :k, :k] = q * horizon
    block[..., :k, k:] = np.eye(k) * horizon
    return scipy.linalg.expm(block)[..., :k, k:]


def expected_los(q: np.ndarray, horizon: float, start: np.ndarray) -> np.ndarray:
    """Compute the expected time in each state within ``horizon`` from distribution ``start``.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
    horizon : float
        Time units, > 0 (``math.inf``: time before absorption; the model must
        have absorbing states reached from every other state).
    start : ndarray, shape (K,)
        Initial distribution (sums to 1).

    Returns
    -------
    ndarray, shape (..., K)
        Time units. With an infinite horizon absorbing states are inf (or 0
        if never entered).
    """
    if math.isinf(horizon):
        absorbing = np.all(q == 0, axis=(*range(q.ndim - 2), q.ndim - 1))
        transient = ~absorbing
        if transient.all():
            raise ValueError("an infinite horizon needs absorbing states")
        qtt = q[..., transient][..., transient, :]
        fund = np.linalg.inv(-qtt)  # expected time in t' before absorption, from t
        out = np.full((*q.shape[:-2], q.shape[-1]), np.inf)
        out[..., transient] = np.einsum("k,...kj->...j", start[transient], fund)
        return out
    return np.einsum("k,...kj->...j", start, integrated_pmatrix(q, horizon))


def passage_states(allowed: np.ndarray, target: Sequence[int]) -> np.ndarray:
    """States whose expected first-passage time to ``target`` is finite.

    Finite exactly when every path from the state reaches the target with
    probability one: the state cannot wander (avoiding the target) into a
    state from which the target is unreachable.

    Parameters
    ----------
    allowed : ndarray of bool, shape (K, K)
        Allowed direct moves.
    target : sequence of int
        Target state indices.

    Returns
    -------
    ndarray of bool, shape (K,)
        True for non-target states with a finite expected passage time.
    """
    k = allowed.shape[0]
    is_target = np.zeros(k, dtype=bool)
    is_target[list(target)] = True
    # reach[r, s]: s reachable from r through non-target states (s itself may be a target)
    step = allowed & ~is_target[:, None]
    reach = step | np.eye(k, dtype=bool)
    for m in range(k):
        reach |= reach[:, [m]] & reach[[m], :] & ~is_target[m]
    hits = (reach & is_target[None, :]).any(axis=1)
    trap = ~is_target & ~hits
    infinite = (reach & trap[None, :]).any(axis=1)
    return ~is_target & ~infinite


def first_passage_times(q: np.ndarray, target: Sequence[int], finite: np.ndarray) -> np.ndarray:
    """Compute the expected first-passage time from each state to the target set.

    Solves ``Q_FF m_F = -1`` over the states F with a finite expectation.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
    target : sequence of int
    finite : ndarray of bool, shape (K,)
        From :func:`passage_states`.

    Returns
    -------
    ndarray, shape (..., K)
        Time units; 0 for target states, inf for the others not in ``finite``.
    """
    k = q.shape[-1]
    out = np.full((*q.shape[:-2], k), np.inf)
    out[..., list(target)] = 0.0
    if finite.any():
        qff = q[..., finite][..., finite, :]
        ones = np.ones((*q.shape[:-2], int(finite.sum()), 1))
        out[..., finite] = np.linalg.solve(qff, -ones)[..., 0]
    return out


# Discrete time: one-step matrices p (..., K, K), times in steps.


def _discrete_sojourn(p: np.ndarray) -> np.ndarray:
    stay = np.diagonal(p, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore"):
        return np.where(stay < 1, 1.0 / np.where(stay < 1, 1.0 - stay, 1.0), np.inf)


def _discrete_pnext(p: np.ndarray) -> np.ndarray:
    k = p.shape[-1]
    leave = 1.0 - np.diagonal(p, axis1=-2, axis2=-1)[..., :, None]
    off = np.where(np.eye(k, dtype=bool), 0.0, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(leave > 0, off / np.where(leave > 0, leave, 1.0), np.nan)


def _discrete_los(p: np.ndarray, horizon: int, start: np.ndarray) -> np.ndarray:
    dist = np.broadcast_to(start, (*p.shape[:-2], p.shape[-1])).copy()
    total = np.zeros_like(dist)
    for _ in range(horizon):
        total += dist
        dist = np.einsum("...k,...kj->...j", dist, p)
    return total


def _discrete_passage(p: np.ndarray, target: Sequence[int], finite: np.ndarray) -> np.ndarray:
    k = p.shape[-1]
    out = np.full((*p.shape[:-2], k), np.inf)
    out[..., list(target)] = 0.0
    if finite.any():
        n = int(finite.sum())
        a = np.eye(n) - p[..., finite][..., finite, :]
        out[..., finite] = np.linalg.solve(a, np.ones((*p.shape[:-2], n, 1)))[..., 0]
    return out


# --------------------------------------------------------------------------
# Posterior summaries
# --------------------------------------------------------------------------


def posterior_summary(draws: xr.DataArray, ci: float = 0.95) -> xr.Dataset:
    """Posterior mean, sd, median and equal-tailed interval of draws.

    Parameters
    ----------
    draws : xarray.DataArray
        With dims ``chain`` and ``draw`` and any others.
    ci : float
        Probability of the equal-tailed interval, in (0, 1).

    Returns
    -------
    xarray.Dataset
        Variables ``mean``, ``sd``, ``median``, ``lower``, ``upper`` over the
        other dims; attrs ``ci_prob``, ``ci_kind = "eti"`` and those of ``draws``.
    """
    check_ci(ci)
    flat = draws.stack(sample=SAMPLE_DIMS).transpose("sample", ...)
    values = flat.to_numpy()
    lo, med, hi = np.quantile(values, [(1 - ci) / 2, 0.5, (1 + ci) / 2], axis=0)
    dims = flat.dims[1:]
    coords = {d: draws.coords[d] for d in dims if d in draws.coords}
    sd = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.full(values.shape[1:], np.nan)
    ds = xr.Dataset(
        {
            "mean": (dims, values.mean(axis=0)),
            "sd": (dims, sd),
            "median": (dims, med),
            "lower": (dims, lo),
            "upper": (dims, hi),
        },
        coords=coords,
    )
    ds.attrs = dict(draws.attrs)
    ds.attrs.update(ci_prob=float(ci), ci_kind="eti", n_draws=int(values.shape[0]))
    ds["lower"].attrs["description"] = f"{(1 - ci) / 2:.4g} quantile"
    ds["upper"].attrs["description"] = f"{(1 + ci) / 2:.4g} quantile"
    return ds


def check_ci(ci: float) -> None:
    """Raise InputError unless 0 < ci < 1."""
    if not (0.0 < float(ci) < 1.0):
        raise InputError(f"--ci must be between 0 and 1 (e.g. 0.95), got {ci:g}")


# --------------------------------------------------------------------------
# Labelled quantities from a fit file
# --------------------------------------------------------------------------


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
        p = np.linalg.matrix_power(values, _whole_steps(t))
    else:
        p = _expm_qt(values, t)
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
    values = _discrete_sojourn(m.to_numpy()) if is_discrete(tree) else sojourn_times(m.to_numpy())
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
    diag = np.diagonal(m.to_numpy(), axis1=-2, axis2=-1)
    if is_discrete(tree):
        values = 1.0 - diag ** _whole_steps(t)
    else:
        values = -np.expm1(diag * t)
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
    out = tree.copy()
    out["posterior"] = xr.DataTree(post)
    out.attrs = {**tree.attrs, "generator": json.dumps(choice, default=str)}
    return out


def pnext(tree: xr.DataTree) -> xr.DataArray:
    """Posterior draws of the next-state probabilities ``q_rs / -q_rr``.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, from_state, to_state); rows of absorbing states are nan.
    """
    spec = _spec(tree)
    m = _matrix_draws(tree)
    values = _discrete_pnext(m.to_numpy()) if is_discrete(tree) else next_state_probs(m.to_numpy())
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


def start_distribution(
    tree: xr.DataTree, start: str | Sequence[float] | None
) -> tuple[np.ndarray, str]:
    """Parse an initial distribution: a state name, ``"a=0.5,b=0.5"``, ``"observed"`` or a vector.

    ``None`` means the first state (as R msm). ``"observed"`` is the
    distribution of the respondents' first observed states in the fit's
    embedded panel.

    Returns
    -------
    start : ndarray, shape (K,)
    label : str
        How to describe it in outputs.
    """
    states = _state_coords(tree)
    k = len(states)
    if start is None:
        return np.eye(k)[0], states[0]
    if not isinstance(start, str):
        vec = np.asarray(start, dtype=float)
        if vec.shape != (k,) or np.any(vec < 0) or abs(vec.sum() - 1) > 1e-6:
            raise InputError(f"start distribution must be {k} non-negative shares summing to 1")
        return vec, ",".join(f"{s}={v:g}" for s, v in zip(states, vec, strict=True) if v > 0)
    text = start.strip()
    if text == "observed":
        if "panel_data" not in tree.children:
            raise InputError(
                "--start observed needs the panel embedded in the fit file (it has none)"
            )
        pd_ = tree["panel_data"]
        resp = pd_["respondent"].to_numpy()
        time = pd_["time"].to_numpy()
        state = pd_["state"].to_numpy()
        order = np.lexsort((time, resp))
        first = np.ones(order.size, dtype=bool)
        first[1:] = resp[order][1:] != resp[order][:-1]
        vec = np.bincount(state[order][first], minlength=k).astype(float)
        vec /= vec.sum()
        return vec, "observed first states (" + ", ".join(
            f"{s}={v:.3f}" for s, v in zip(states, vec, strict=True)
        ) + ")"
    if "=" not in text:
        if text not in states:
            raise InputError(f"unknown start state '{text}' (states: {', '.join(states)})")
        return np.eye(k)[states.index(text)], text
    vec = np.zeros(k)
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in states:
            raise InputError(f"unknown state '{name}' in --start (states: {', '.join(states)})")
        try:
            vec[states.index(name)] = float(value)
        except ValueError:
            raise InputError(
                f"--start share of '{name}' is not a number: '{value.strip()}'"
            ) from None
    if np.any(vec < 0) or not np.all(np.isfinite(vec)):
        raise InputError("--start shares must be non-negative numbers")
    if abs(vec.sum() - 1) > 1e-3:
        raise InputError(f"--start shares must sum to 1, they sum to {vec.sum():g}")
    vec /= vec.sum()
    return vec, text


def totlos(
    tree: xr.DataTree, horizon: float, start: str | Sequence[float] | None = None
) -> xr.DataArray:
    """Posterior draws of the expected time spent in each state within a horizon.

    Parameters
    ----------
    tree : xarray.DataTree
    horizon : float
        Time units (whole steps for discrete-time fits), > 0; ``inf`` gives
        the time before absorption (models with absorbing states only).
    start : str or sequence of float, optional
        Start state, ``"a=0.5,b=0.5"``, ``"observed"`` or a vector; default the
        first state.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, state); time units. The values sum to the horizon.
    """
    horizon = float(horizon)
    if not horizon > 0 or math.isnan(horizon):
        raise InputError(f"--horizon must be > 0, got {horizon:g}")
    spec = _spec(tree)
    vec, label = start_distribution(tree, start)
    m = _matrix_draws(tree)
    values = m.to_numpy()
    unit = _unit(tree)
    keep = list(range(spec.n_states))
    notes: list[str] = []
    if is_discrete(tree):
        if math.isinf(horizon) or abs(horizon - round(horizon)) > 1e-9:
            raise InputError(
                f"a discrete-time fit needs a whole number of steps for --horizon, got {horizon:g}"
            )
        out = _discrete_los(values, int(round(horizon)), vec)
    else:
        if math.isinf(horizon):
            _check_absorption(spec)
            keep = [i for i, s in enumerate(spec.states) if s not in spec.absorbing]
            notes.append(
                "infinite horizon: expected time in each transient state before absorption "
                f"(absorbing states left out: {', '.join(spec.absorbing)})"
            )
        out = expected_los(values, horizon, vec)
    return _wrap(
        out[..., keep],
        m,
        ("state",),
        {"state": [spec.states[i] for i in keep]},
        quantity="totlos",
        description=f"expected time spent in the state within {_amount(horizon, unit)} "
        f"from start {label}",
        units=unit,
        time_unit=unit,
        horizon=horizon,
        start=label,
        notes=json.dumps(notes),
    )


def _check_absorption(spec: ModelSpec) -> None:
    if not spec.absorbing:
        raise InputError(
            "--horizon inf needs a model with absorbing states (without them the time "
            "spent in states is unbounded); give a finite horizon"
        )
    target = [spec.index(s) for s in spec.absorbing]
    finite = passage_states(spec.allowed_matrix(), target)
    stuck = [s for i, s in enumerate(spec.states) if s not in spec.absorbing and not finite[i]]
    if stuck:
        raise InputError(
            f"--horizon inf: from {', '.join(stuck)} absorption is not certain, so the expected "
            "time spent is unbounded; give a finite horizon"
        )


def passage(tree: xr.DataTree, to: str | Sequence[str] | None = None) -> xr.DataArray:
    """Posterior draws of the expected first-passage time to a state.

    Parameters
    ----------
    tree : xarray.DataTree
    to : str or sequence of str, optional
        Target state(s); default the model's ``home`` states (e.g. ``returned``:
        years until return).

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, state) over the states with a finite expectation
        (the target states and states from which the target may never be
        reached are left out, and named in the ``notes`` attribute).
    """
    spec = _spec(tree)
    if to is None:
        if not spec.home:
            raise InputError("--what passage needs --to STATE (the model declares no home states)")
        targets = list(spec.home)
    else:
        targets = [to] if isinstance(to, str) else list(to)
        targets = [t.strip() for part in targets for t in part.split(",")]
    for t in targets:
        if t not in spec.states:
            raise InputError(f"unknown state '{t}' in --to (states: {', '.join(spec.states)})")
    idx = [spec.index(t) for t in targets]
    finite = passage_states(spec.allowed_matrix(), idx)
    m = _matrix_draws(tree)
    values = m.to_numpy()
    if is_discrete(tree):
        out = _discrete_passage(values, idx, finite)
    else:
        out = first_passage_times(values, idx, finite)
    keep = list(np.flatnonzero(finite))
    never = [s for i, s in enumerate(spec.states) if not finite[i] and i not in idx]
    notes = []
    if never:
        notes.append(f"infinite (the target may never be reached) from: {', '.join(never)}")
    if not keep:
        raise InputError(
            f"no state has a finite expected passage time to {', '.join(targets)}"
            + (f" ({notes[0]})" if notes else "")
        )
    unit = _unit(tree)
    return _wrap(
        out[..., keep],
        m,
        ("state",),
        {"state": [spec.states[i] for i in keep]},
        quantity="passage",
        description=f"expected time until first reaching {' or '.join(targets)}, from the state",
        units=unit,
        time_unit=unit,
        to=",".join(targets),
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


def summarize(
    tree: xr.DataTree,
    what: str,
    *,
    t: float = 1.0,
    ci: float = 0.95,
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
    what : {"qmatrix", "pmatrix", "sojourn", "pnext", "leave", "totlos", "passage", "hazard"}
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
    else:
        raise InputError(f"unknown quantity '{what}' (use one of: {', '.join(QUANTITIES)})")
    summary = posterior_summary(draws, ci)
    if choice is not None:
        summary.attrs["generator"] = choice
    return summary


def notes(summary: xr.Dataset) -> list[str]:
    """Return the notes a summary carries (e.g. states left out)."""
    return list(json.loads(summary.attrs.get("notes", "[]")))


def to_frame(summary: xr.Dataset) -> pd.DataFrame:
    """Tidy table of a summary.

    Matrix quantities give columns ``from,to,mean,sd,median,lower,upper``
    (impossible moves and rows of absorbing states left out of ``qmatrix``
    and ``pnext``); per-state quantities give ``state,mean,sd,median,lower,upper``.
    Fits with more dims (e.g. a group or covariate pattern) get one leading
    column per dim. Hazard ratios give ``covariate,from,to,mean,sd,median,lower,upper``
    with ``covariate`` the numeric covariate's name or ``name[level]`` of a
    categorical level (``period[...]`` for a period effect); effects shared by
    several transitions appear once per transition, with the same values.
    """
    quantity = summary.attrs.get("quantity")
    frame = summary[list(STATS)].to_dataframe().reset_index()
    if quantity == "hazard" and {"covariate", "from", "to"} <= set(frame.columns):
        level = frame["level"].fillna("").astype(str) if "level" in frame else ""
        name = frame["covariate"].astype(str)
        frame["covariate"] = np.where(level != "", name + "[" + level + "]", name)
        return frame[["covariate", "from", "to", *STATS]].reset_index(drop=True)
    if "from_state" in summary.dims:
        frame = frame.rename(columns={"from_state": "from", "to_state": "to"})
        keys = [c for c in frame.columns if c not in ("from", "to", *STATS)]
        frame = frame[[*keys, "from", "to", *STATS]]
        frame = frame[frame["mean"].notna()]
        if quantity in ("qmatrix", "pnext"):
            structural_zero = (frame["mean"] == 0) & (frame["sd"].fillna(0) == 0)
            frame = frame[~structural_zero]
        return frame.reset_index(drop=True)
    if "state" in summary.dims:
        keys = [c for c in frame.columns if c not in ("state", *STATS)]
        return frame[[*keys, "state", *STATS]]
    return frame


def to_json(summary: xr.Dataset) -> str:
    """JSON text: the quantity's description, parameters, notes and rows of :func:`to_frame`."""
    attrs = {k: v for k, v in summary.attrs.items() if k != "notes"}
    for k, v in list(attrs.items()):
        if isinstance(v, np.generic):
            attrs[k] = v.item()
        if isinstance(attrs[k], float) and math.isinf(attrs[k]):
            attrs[k] = "inf"
    rows = to_frame(summary).to_dict(orient="records")
    out = {**attrs, "notes": notes(summary), "rows": rows}
    return json.dumps(out, indent=2, default=_json_default)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

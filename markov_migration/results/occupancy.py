"""Posterior draws of where people spend time: ``totlos``, ``passage`` and their start.

Layer 4 (results). Split from :mod:`markov_migration.results.quantities` (whose
labelling helpers these use): the expected time spent in each state within a
horizon (R msm's ``totlos.msm``), the expected first-passage time to a state
(``efpt.msm``) and the start distributions they are computed from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import xarray as xr

from markov_migration.core import quantities as core
from markov_migration.errors import InputError
from markov_migration.inputs.spec import ModelSpec
from markov_migration.results.quantities import (
    _amount,
    _matrix_draws,
    _spec,
    _state_coords,
    _unit,
    _wrap,
    is_discrete,
)

__all__ = ["passage", "start_distribution", "totlos"]


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
    with np.errstate(over="ignore"):  # shares of 1e308 overflow the sum: refused below
        total = float(vec.sum())
    if abs(total - 1) > 1e-3:
        raise InputError(f"--start shares must sum to 1, they sum to {total:g}")
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
        out = core.totlos_discrete(values, int(round(horizon)), vec)
    else:
        if math.isinf(horizon):
            _check_absorption(spec)
            keep = [i for i, s in enumerate(spec.states) if s not in spec.absorbing]
            notes.append(
                "infinite horizon: expected time in each transient state before absorption "
                f"(absorbing states left out: {', '.join(spec.absorbing)})"
            )
        out = core.totlos(values, horizon, vec)
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
    finite = core.passage_states(spec.allowed_matrix(), target)
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
    finite = core.passage_states(spec.allowed_matrix(), idx)
    m = _matrix_draws(tree)
    values = m.to_numpy()
    if is_discrete(tree):
        out = core.passage_discrete(values, idx, finite)
    else:
        out = core.passage(values, idx, finite)
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

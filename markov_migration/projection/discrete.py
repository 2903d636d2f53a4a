"""Projecting a discrete-time fit: whole model steps, one-step matrices ``P`` per draw.

A discrete-time fit (``time = "discrete"``) estimates the one-step transition
matrix ``P`` between consecutive waves, so it projects at whole multiples of its
step only: output times are ``start, start + step, ...`` up to the horizon,
``step`` a whole number of model steps and the horizon a whole number of steps
after the start. The multinomial kernel
(:func:`markov_migration.core.discrete_events.project_discrete`) moves every
person once per model step; those moves are the model's transition events.
Scenarios that multiply intensities are refused (``P`` has no intensities);
scenarios that change inflows apply.

Examples
--------
>>> discrete_times(3, 7, 2).tolist()
[3.0, 5.0, 7.0]
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS, TIME_TOL
from markov_migration.errors import InputError
from markov_migration.inputs.spec import ModelSpec
from markov_migration.projection.plan import MAX_STEPS


def is_discrete(spec: ModelSpec) -> bool:
    """Whether a model is a discrete-time chain (its fit holds ``P``, not ``Q``)."""
    return spec.time == "discrete"


def discrete_times(start: float, horizon: float, step: float = 1.0) -> np.ndarray:
    """Output times of a discrete-time projection: ``start + i * step`` up to the horizon.

    Raises
    ------
    InputError
        On a start, horizon or step that is not a finite number, a step that
        is not a whole number >= 1 of model steps, a horizon not after the
        start or not a whole number of steps after it, or more than
        :data:`~markov_migration.projection.plan.MAX_STEPS` steps.
    """
    for name, value in (("start", start), ("horizon", horizon), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"--{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise InputError(f"--{name} must be a finite number, got {value!r}")
    start, horizon, step = float(start), float(horizon), float(step)
    if step < 1 or abs(step - round(step)) > TIME_TOL:
        raise InputError(
            f"--step must be a whole number >= 1 of model steps for a discrete-time fit, "
            f"got {step:g}"
        )
    if not horizon > start:
        raise InputError(f"--horizon {horizon:g} is not after --start {start:g}")
    n = (horizon - start) / step
    if abs(n - round(n)) > 1e-6:
        raise InputError(
            f"--horizon {horizon:g} is not a whole number of --step {step:g} after --start "
            f"{start:g}: a discrete-time fit projects at whole multiples of its step"
        )
    if round(n) > MAX_STEPS:
        raise InputError(f"{round(n):,} steps, more than {MAX_STEPS:,}: use a nearer --horizon")
    return start + step * np.arange(round(n) + 1, dtype=float)


def posterior_matrices(
    tree: xr.DataTree, *, covariates=None, group=None, period=None
) -> tuple[xr.DataArray, list[float]]:
    """One-step matrices per posterior sample, ``(sample, period=1, from_state, to_state)``.

    The discrete-time counterpart of
    :func:`markov_migration.projection.fitted.period_generators` (no cut points).
    """
    if covariates or group is not None or period is not None:
        raise InputError(
            "a discrete-time fit has no covariates, groups or periods to choose "
            "(--covariate, --group, --by-group, --period)"
        )
    post = tree["posterior"]
    if "P" not in post:
        raise InputError("discrete-time fit file has no posterior P")
    p = post["P"].transpose(*SAMPLE_DIMS, "from_state", "to_state")
    p = p.stack(sample=SAMPLE_DIMS).transpose("sample", "from_state", "to_state")
    if not np.all(np.isfinite(p.values)):
        raise InputError("fit file's posterior P has non-finite values")
    p = p.expand_dims(period=1, axis=1)
    p.attrs["generator"] = "the fit's posterior P (one-step transition probabilities)"
    return p, []


def carry_steps(p: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """``P^n`` per draw for each gap, ``n`` the gap rounded to whole model steps.

    Parameters
    ----------
    p : ndarray, shape (D, 1, K, K)
    gaps : ndarray, shape (G,)

    Returns
    -------
    ndarray, shape (D, G, K, K)
    """
    p = np.asarray(p, dtype=np.float64)[:, 0]
    steps = np.round(np.asarray(gaps, dtype=float)).astype(np.int64)
    return np.stack([np.linalg.matrix_power(p, int(n)) for n in steps], axis=1)


def check_scenario_plan(plan, name: str) -> None:
    """Refuse a scenario that multiplies intensities of a discrete-time fit."""
    if not np.all(plan.multipliers == 1.0):
        raise InputError(
            f"scenario '{name}' multiplies intensities, which a discrete-time fit does not "
            "have (it estimates P): only scenarios that change inflows apply"
        )

"""Verifying a fit file on reading: whole, of our format, and consistent.

Every command that reads a fit goes through :func:`verify_fit` (called by
:func:`markov_migration.fitfile.format.read_fit`), so a tampered, truncated or foreign
file is one line naming the file and what is wrong, never a traceback or numbers
computed on garbage. What is checked:

- root attributes: the model text (parsed again), ``states`` (a JSON list of names,
  the model's states in order), ``time_mode``;
- ``posterior``: ``Q`` (continuous) or ``P`` (discrete) with dims
  ``(chain, draw, from_state, to_state)``, state coordinates equal to the model's,
  at least one chain and draw, every value finite; a generator has non-negative
  off-diagonal entries only where the model allows a move and rows summing to 0; a
  one-step matrix has entries in [0, 1] and rows summing to 1;
- ``observed_data``: ``from``/``to`` indices of states, ``interval`` finite and
  positive, ``count`` finite and non-negative (whole numbers unless the data were
  weighted);
- ``log_likelihood`` and ``sample_stats``, when present, share the posterior's chains
  and draws.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import FitFileError, InputError

#: Rows of Q (or P) may miss 0 (or 1) by this much, relative to their largest entry.
ROW_SUM_TOL = 1e-6


def _fail(path: str | Path | None, message: str) -> FitFileError:
    return FitFileError(message, path=path)


def _states(tree: xr.DataTree, path) -> list[str]:
    raw = tree.attrs.get("states")
    try:
        states = json.loads(str(raw))
    except (TypeError, ValueError):
        raise _fail(path, "attribute 'states' is not a JSON list of state names") from None
    if (
        not isinstance(states, list)
        or len(states) < 2
        or not all(isinstance(s, str) and s for s in states)
        or len(set(states)) != len(states)
    ):
        raise _fail(path, "attribute 'states' must list at least two distinct state names")
    return states


def _matrix_draws(post: xr.Dataset, name: str, states: list[str], path) -> np.ndarray:
    var = post[name]
    # fits with covariates, groups or periods add dims (pattern, group, period) between
    dims = (*SAMPLE_DIMS, "from_state", "to_state")
    if not set(dims) <= set(var.dims):
        raise _fail(
            path, f"posterior '{name}' has dims {var.dims}, expected {dims} (and design dims)"
        )
    extra = [d for d in var.dims if d not in dims]
    dims = (*SAMPLE_DIMS, *extra, "from_state", "to_state")
    for dim in ("from_state", "to_state"):
        labels = [str(x) for x in var[dim].values] if dim in var.coords else None
        if labels != states:
            raise _fail(
                path, f"posterior '{name}' {dim} coordinates do not match the states {states}"
            )
    if any(var.sizes[d] < 1 for d in SAMPLE_DIMS):
        raise _fail(path, f"posterior '{name}' has no draws")
    values = var.transpose(*dims).to_numpy()
    if not np.issubdtype(values.dtype, np.floating):
        raise _fail(path, f"posterior '{name}' is not floating point")
    if not np.all(np.isfinite(values)):
        bad = int(np.sum(~np.isfinite(values).all(axis=(-1, -2))))
        raise _fail(path, f"posterior '{name}' has non-finite values in {bad} draw(s)")
    return values.reshape(-1, len(states), len(states))


def _check_generator(q: np.ndarray, allowed: np.ndarray | None, path) -> None:
    k = q.shape[-1]
    off = ~np.eye(k, dtype=bool)
    if np.any(q[:, off] < 0):
        raise _fail(path, "posterior 'Q' has negative intensities (off-diagonal entries below 0)")
    if allowed is not None and np.any(q[:, off & ~allowed] != 0):
        raise _fail(path, "posterior 'Q' has intensities on moves the model does not allow")
    scale = np.maximum(np.abs(q).max(axis=-1), 1e-300)
    if np.any(np.abs(q.sum(axis=-1)) > ROW_SUM_TOL * scale):
        raise _fail(path, "posterior 'Q' rows do not sum to 0 (not a generator)")


def _check_stochastic(p: np.ndarray, path) -> None:
    if np.any(p < 0) or np.any(p > 1):
        raise _fail(path, "posterior 'P' has probabilities outside [0, 1]")
    if np.any(np.abs(p.sum(axis=-1) - 1) > ROW_SUM_TOL):
        raise _fail(path, "posterior 'P' rows do not sum to 1")


def _check_observed(obs: xr.Dataset, k: int, weighted: bool, path) -> None:
    for name in ("from", "to", "interval", "count"):
        if name not in obs:
            raise _fail(path, f"observed_data has no '{name}'")
    idx = {n: np.asarray(obs[n].values) for n in ("from", "to")}
    for n, v in idx.items():
        if v.size and (not np.issubdtype(v.dtype, np.integer) or v.min() < 0 or v.max() >= k):
            raise _fail(
                path, f"observed_data '{n}' holds values that are not state indices 0..{k - 1}"
            )
    interval = np.asarray(obs["interval"].values, dtype=float)
    if not np.all(np.isfinite(interval)) or np.any(interval < 0):
        raise _fail(path, "observed_data 'interval' must be finite and non-negative")
    count = np.asarray(obs["count"].values, dtype=float)
    if not np.all(np.isfinite(count)) or np.any(count < 0):
        raise _fail(path, "observed_data 'count' must be finite and non-negative")
    if not weighted and np.any(count != np.round(count)):
        raise _fail(path, "observed_data 'count' must be whole numbers (unweighted data)")


def verify_fit(tree: xr.DataTree, path: str | Path | None = None) -> None:
    """Raise :class:`~markov_migration.errors.FitFileError` if ``tree`` is not a sound fit.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit read from disk (see :mod:`markov_migration.fitfile.format`).
    path : str or Path, optional
        The file, named in the error message.
    """
    from markov_migration.inputs.spec import parse_spec

    text = tree.attrs.get("model_text")
    if not isinstance(text, str) or not text.strip():
        raise _fail(path, "the fit records no model file text (attribute 'model_text')")
    try:
        spec = parse_spec(text)
    except InputError as err:
        raise _fail(path, f"the recorded model file is invalid ({err.message})") from None
    states = _states(tree, path)
    if states != list(spec.states):
        raise _fail(path, f"attribute 'states' {states} differs from the recorded model's states")
    post = tree["posterior"].to_dataset()
    if spec.time == "continuous":
        if "Q" not in post:
            raise _fail(path, "posterior has no 'Q' (continuous-time fit)")
        q = _matrix_draws(post, "Q", states, path)
        _check_generator(q, spec.allowed_matrix().astype(bool), path)
        shape = {d: post["Q"].sizes[d] for d in SAMPLE_DIMS}
    else:
        if "P" not in post:
            raise _fail(path, "posterior has no 'P' (discrete-time fit)")
        _check_stochastic(_matrix_draws(post, "P", states, path), path)
        shape = {d: post["P"].sizes[d] for d in SAMPLE_DIMS}
    weighted = bool(int(tree.attrs.get("data_weighted", 0) or 0))
    _check_observed(tree["observed_data"].to_dataset(), len(states), weighted, path)
    for group in ("log_likelihood", "sample_stats"):
        if group in tree.children:
            ds = tree[group].to_dataset()
            for d, n in shape.items():
                if d in ds.sizes and ds.sizes[d] != n:
                    raise _fail(path, f"'{group}' has {ds.sizes[d]} {d}s, the posterior {n}")
    if "log_likelihood" in tree.children:
        for name, var in tree["log_likelihood"].to_dataset().data_vars.items():
            if np.any(np.isnan(var.values)):
                raise _fail(path, f"log_likelihood '{name}' has NaN values")

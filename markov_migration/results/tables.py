"""Posterior summaries of labelled draws, and the tidy table and JSON of a summary.

Layer 4 (results). :func:`posterior_summary` reduces draws ``(chain, draw, ...)``
to the posterior mean, sd, median and an equal-tailed interval;
:func:`to_frame` and :func:`to_json` give the table and JSON the command line
writes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.defaults import CI_PROB, SAMPLE_DIMS
from markov_migration.errors import InputError

__all__ = ["STATS", "check_ci", "notes", "posterior_summary", "to_frame", "to_json"]

#: Summary statistics, in table order.
STATS = ("mean", "sd", "median", "lower", "upper")


def posterior_summary(draws: xr.DataArray, ci: float = CI_PROB) -> xr.Dataset:
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
        raise InputError(f"--ci must be between 0 and 1 (e.g. {CI_PROB:g}), got {ci:g}")


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
        frame = frame[[*keys, "state", *STATS]]
        if quantity == "phases":  # measures of phases vs of the whole state: only those defined
            frame = frame[frame["mean"].notna()].reset_index(drop=True)
        return frame
    return frame


def to_json(summary: xr.Dataset) -> str:
    """JSON text: the quantity's description, parameters, notes and rows of :func:`to_frame`."""
    attrs = {k: v for k, v in summary.attrs.items() if k != "notes"}
    for k, v in list(attrs.items()):
        if isinstance(v, np.generic):
            attrs[k] = v.item()
        if isinstance(attrs[k], float) and math.isinf(attrs[k]):
            attrs[k] = "inf"
    rows = [
        {k: _finite_or_none(v) for k, v in row.items()}
        for row in to_frame(summary).to_dict(orient="records")
    ]
    out = {**attrs, "notes": notes(summary), "rows": rows}
    # strict JSON: a missing number (an sd of one draw) is null, never NaN or Infinity
    return json.dumps(out, indent=2, default=_json_default, allow_nan=False)


def _finite_or_none(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

"""Initial stocks of a projection: parsed from the command line, a CSV, or given as arrays."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.errors import InputError
from markov_migration.inputs.spec import ModelSpec
from markov_migration.projection.plan import MAX_PERSONS, check_persons, persons_text, read_csv


def parse_initial(text: str, spec: ModelSpec) -> dict[str, int]:
    """Initial stocks from ``"abroad=300000,transit=150000"`` (states not named start empty).

    Raises
    ------
    InputError
        On an unknown state, a state named twice, or a stock that is not a
        whole number >= 0.
    """
    out: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise InputError(f"--initial: '{item.strip()}' is not of the form state=persons")
        if name in out:
            raise InputError(f"--initial: state '{name}' given twice")
        try:
            out[name] = float(value.replace("_", ""))
        except ValueError:
            raise InputError(
                f"--initial: stock of '{name}' is not a number: '{value.strip()}'"
            ) from None
    return initial_stocks(out, spec, where="--initial")


def read_initial_file(path: str | Path, spec: ModelSpec) -> dict[str, int]:
    """Initial stocks from a CSV with columns ``state,stock`` (one row per state)."""
    path = Path(path)
    frame = read_csv(path, ("state", "stock"))
    out: dict[str, float] = {}
    for i, (state, stock) in enumerate(zip(frame["state"], frame["stock"], strict=True), start=1):
        state = str(state).strip()
        if state not in spec.states:
            raise InputError(
                f"'{state}' is not a state of model {spec.name} (states: {', '.join(spec.states)})",
                path=path, row=i, column="state",
            )  # fmt: skip
        if state in out:
            raise InputError(f"state '{state}' appears twice", path=path, row=i, column="state")
        value = pd.to_numeric(pd.Series([stock]), errors="coerce").iloc[0]
        if pd.isna(value) or not math.isfinite(value) or value < 0 or value != round(value):
            raise InputError(
                f"stock must be a whole number of persons >= 0, got '{stock}'",
                path=path,
                row=i,
                column="stock",
            )
        if value > MAX_PERSONS:
            raise InputError(
                f"stock is {persons_text(value)} persons; at most {MAX_PERSONS:.0e} are supported",
                path=path,
                row=i,
                column="stock",
            )
        out[state] = float(value)
    return initial_stocks(out, spec, where=str(path))


def initial_stocks(
    stocks: Mapping[str, float], spec: ModelSpec, where: str = "initial stocks"
) -> dict[str, int]:
    """Validate initial stocks by state name; return whole persons for every state."""
    prefix = f"{where}: " if where else ""
    out = dict.fromkeys(spec.states, 0)
    for name, value in stocks.items():
        if name not in spec.states:
            known = ", ".join(spec.states)
            raise InputError(
                f"{prefix}'{name}' is not a state of model {spec.name} (states: {known})"
            )
        v = float(value)
        if not math.isfinite(v):
            raise InputError(
                f"{prefix}stock of '{name}' must be a finite whole number of persons, got {v:g}"
            )
        if v < 0:
            raise InputError(f"{prefix}stock of '{name}' must be >= 0, got {value:g}")
        if v != round(v):
            raise InputError(
                f"{prefix}stock of '{name}' must be a whole number of persons, got {value:g}"
            )
        check_persons(v, f"{prefix}stock of '{name}' is")
        out[name] = int(round(v))
    check_persons(sum(out.values()), f"{prefix}stocks add up to")
    return out


def initial_array(
    initial: Mapping[str, float] | xr.DataArray, spec: ModelSpec, n: int
) -> np.ndarray:
    """Initial stocks as whole persons per projection draw, shape ``(n, K)`` (int64).

    ``initial`` is a mapping of state to persons (the same for every draw) or a
    DataArray with dims ``(state,)`` or ``(draw, state)``.
    """
    if isinstance(initial, xr.DataArray):
        if "state" not in initial.dims or set(initial.dims) - {"state", "draw"}:
            raise InputError(
                f"initial stocks must have dims (state,) or (draw, state), got {initial.dims}"
            )
        arr = initial.transpose(..., "state")
        labels = (
            [str(s) for s in arr["state"].values] if "state" in arr.coords else list(spec.states)
        )
        unknown = [s for s in labels if s not in spec.states]
        if unknown:
            raise InputError(f"initial stocks: '{unknown[0]}' is not a state of model {spec.name}")
        values = np.asarray(arr.values, dtype=np.float64)
        out = np.zeros(values.shape[:-1] + (spec.n_states,))
        out[..., [spec.index(s) for s in labels]] = values
        if out.ndim == 2 and out.shape[0] != n:
            raise InputError(f"initial stocks have {out.shape[0]} draws, the projection {n}")
    else:
        out = np.array([initial_stocks(initial, spec)[s] for s in spec.states], dtype=np.float64)
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise InputError("initial stocks must be finite and >= 0")
    if np.any(out != np.round(out)):
        raise InputError("initial stocks must be whole numbers of persons")
    totals = out.sum(axis=-1)
    if np.any(totals <= 0):
        raise InputError("initial stocks are all zero: give at least one state a positive stock")
    # before the int64 cast: beyond MAX_PERSONS it would be inexact or overflow
    check_persons(float(np.max(totals)), "initial stocks add up to")
    return np.ascontiguousarray(np.broadcast_to(out.astype(np.int64), (n, spec.n_states)))

"""All host groups of a fit in one projection, on the same posterior draws.

:func:`project_by_group` runs :func:`markov_migration.projection.run.project_fit`
once per group (the group's own intensities, its own initial stocks) on the
same evenly spaced posterior samples, and stacks the results along a ``group``
dim. The total over groups is the exact per-draw sum (:func:`group_total`), so
its quantiles are right (a sum of per-group quantiles is not a quantile of the
total).

Random streams: the ``i``-th group of the run (groups in the fit's order,
those in the initial-stocks file) uses the seed ``seed + i``, so the groups'
demographic noise is independent and a run with one group reproduces
``project --group G --seed seed`` bit for bit.

Examples
--------
>>> from markov_migration.projection.bygroup import project_by_group  # doctest: +SKIP
>>> ds = project_by_group("fit.nc", {"X": {"b": 1000}, "Y": {"b": 500}}, start=3, horizon=5)
... # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec, read_fit
from markov_migration.inputs.spec import ModelSpec
from markov_migration.projection.files import TOTAL_LABEL
from markov_migration.projection.plan import MAX_PERSONS, Inflow
from markov_migration.projection.stocks import initial_stocks

#: Columns of the ``--initial-file`` of ``project --by-group`` (exactly these).
GROUP_INITIAL_COLUMNS = ("group", "state", "stock")
#: Variables that are not counts of persons per group (kept once, not stacked).
SHARED_VARIABLES = ("observed_share", "observed_respondents")


def fit_groups(tree: xr.DataTree) -> list[str]:
    """The groups of a fit, in its order; refuses a fit without groups."""
    post = tree["posterior"]
    if "group_effect" not in post or "group" not in post.coords:
        raise InputError("--by-group needs a fit with groups (this fit has none)")
    return [str(g) for g in post["group"].values]


def read_group_initial_file(
    path: str | Path, spec: ModelSpec, groups: list[str]
) -> dict[str, dict[str, int]]:
    """Initial stocks per group from a CSV with exactly the columns ``group,state,stock``.

    One row per (group, state) given; states not given start at 0. Groups are
    returned in the fit's order (only those in the file).

    Raises
    ------
    InputError
        On a missing or extra column, an unknown group or state, a (group,
        state) pair given twice, or a stock that is not a whole number >= 0.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    try:
        frame = pd.read_csv(path, dtype=str, skipinitialspace=True, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"not a readable CSV file ({type(err).__name__})", path=path) from None
    columns = [str(c).strip() for c in frame.columns]
    if sorted(columns) != sorted(GROUP_INITIAL_COLUMNS) or len(columns) != 3:
        raise InputError(
            f"--by-group initial stocks need exactly the columns {','.join(GROUP_INITIAL_COLUMNS)}"
            f" (found {','.join(columns)})",
            path=path,
        )
    frame.columns = columns
    if frame.empty:
        raise InputError("has no rows", path=path)
    given: dict[str, dict[str, float]] = {}
    for i, row in enumerate(frame.itertuples(index=False), start=1):
        group, state = str(row.group).strip(), str(row.state).strip()
        if group not in groups:
            raise InputError(
                f"'{group}' is not a group of the fit (groups: {', '.join(groups)})",
                path=path, row=i, column="group",
            )  # fmt: skip
        if state not in spec.states:
            raise InputError(
                f"'{state}' is not a state of model {spec.name} (states: {', '.join(spec.states)})",
                path=path, row=i, column="state",
            )  # fmt: skip
        if state in given.get(group, {}):
            raise InputError(f"group '{group}', state '{state}' appears twice", path=path, row=i)
        value = pd.to_numeric(pd.Series([row.stock]), errors="coerce").iloc[0]
        if pd.isna(value) or not math.isfinite(value) or value < 0 or value != round(value):
            raise InputError(
                f"stock must be a whole number of persons >= 0, got '{row.stock}'",
                path=path, row=i, column="stock",
            )  # fmt: skip
        if value > MAX_PERSONS:
            raise InputError(
                f"stock is {value:.3g} persons; at most {MAX_PERSONS:.0e} are supported",
                path=path, row=i, column="stock",
            )  # fmt: skip
        given.setdefault(group, {})[state] = float(value)
    return {
        g: initial_stocks(given[g], spec, where=f"{path} (group {g})") for g in groups if g in given
    }


def project_by_group(
    fit: xr.DataTree | str | Path,
    initial: Mapping[str, Mapping[str, float]],
    *,
    seed: int = 0,
    inflow: Inflow | float | None = None,
    dask: Any = None,
    progress=None,
    fit_file: str | Path | None = None,
    **kwargs: Any,
) -> xr.Dataset:
    """Project every group of ``initial`` on the same posterior draws; stack along ``group``.

    Parameters
    ----------
    fit : DataTree or path
        A continuous-time fit with groups.
    initial : mapping of group to (mapping of state to persons)
        Initial stocks per group (whole persons); groups not named are not
        projected.
    seed : int
        The ``i``-th group of the run (fit order) uses ``seed + i``.
    inflow : Inflow or float, optional
        Refused when it has arrivals: a split of new emigrants over groups is
        not known (give per-group runs with ``--group`` instead).
    **kwargs
        Passed to :func:`~markov_migration.projection.run.project_fit`
        (``start``, ``horizon``, ``step``, ``scenarios``, ``draws``, ...; not
        ``group``).

    Returns
    -------
    Dataset
        The variables of :func:`~markov_migration.projection.run.project_fit`
        with a trailing ``group`` dim (e.g. ``stock (draw, time, state,
        group)``, ``scenario`` first when several run); attribute ``groups``
        (JSON: group, seed, generator of each).
    """
    from markov_migration.projection.run import project_fit

    if "group" in kwargs:
        raise InputError("give either --group or --by-group, not both")
    if (
        inflow is not None
        and not isinstance(inflow, Inflow)
        or (isinstance(inflow, Inflow) and any(r > 0 for r in inflow.rates))
    ):
        raise InputError(
            "--by-group does not take --inflow or --inflow-file (no rule splits new emigrants "
            "over groups): project groups with inflows one at a time with --group"
        )
    fit_path = None if fit_file is None else Path(fit_file)
    if not isinstance(fit, xr.DataTree):
        fit_path = Path(fit)
        fit = read_fit(fit_path)
    spec = fit_spec(fit)
    groups = fit_groups(fit)
    if TOTAL_LABEL in groups:
        raise InputError(f"a group of the fit is named '{TOTAL_LABEL}', which --by-group reserves")
    chosen = [g for g in groups if g in initial]
    unknown = [g for g in initial if g not in groups]
    if unknown:
        raise InputError(f"'{unknown[0]}' is not a group of the fit (groups: {', '.join(groups)})")
    if not chosen:
        raise InputError("--by-group: no initial stocks for any group")
    parts, notes = [], []
    for i, g in enumerate(chosen):
        done = None if progress is None else _offset_progress(progress, i, len(chosen))
        ds = project_fit(
            fit, initial_stocks(initial[g], spec), seed=seed + i, inflow=inflow, dask=dask,
            progress=done, fit_file=fit_path, group=g, **kwargs,
        )  # fmt: skip
        notes.append({"group": g, "seed": seed + i, "generator": json.loads(ds.attrs["generator"])})
        parts.append(ds)
    first = parts[0]
    shared = [v for v in SHARED_VARIABLES if v in first]
    stacked = xr.concat(
        [p.drop_vars(shared) for p in parts],
        dim=xr.DataArray(chosen, dims="group", name="group"),
        coords="minimal",
        compat="override",
        combine_attrs="override",
    )
    for name in stacked.data_vars:
        dims = [d for d in stacked[name].dims if d != "group"] + ["group"]
        stacked[name] = stacked[name].transpose(*dims)
    out = stacked.merge(first[shared]) if shared else stacked
    out.attrs = dict(first.attrs)
    out.attrs["seed"] = int(seed)
    out.attrs["random_streams"] = (
        "group i of the run (fit order): seed + i; draw j: SeedSequence(seed + i, spawn_key=(j,))"
    )
    out.attrs["generator"] = "per group, see attribute groups"
    out.attrs["groups"] = json.dumps(notes, default=str)
    out.attrs["initial_stocks"] = json.dumps({g: initial_stocks(initial[g], spec) for g in chosen})
    out.attrs["initial_total"] = int(sum(sum(initial_stocks(initial[g], spec).values())
                                         for g in chosen))  # fmt: skip
    out["group"].attrs["description"] = (
        "host group of the fit; the total over groups is the per-draw sum (not stored)"
    )
    return out


def _offset_progress(progress, i: int, n_groups: int):
    def report(done: int, total: int) -> None:
        progress(i * total + done, n_groups * total)

    return report

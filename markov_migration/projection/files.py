"""The projection file: its variables and provenance, NetCDF in and out, quantile tables.

A projection (:func:`markov_migration.projection.run.project_fit`) is an
:class:`xarray.Dataset`; :func:`write_projection` writes it as NetCDF,
:func:`read_projection` reads it back, :func:`quantile_table` summarises every
series across draws for a spreadsheet (:func:`write_quantile_csv`), and
:func:`interval` and :func:`summary_lines` give a median and interval for a
sentence. :mod:`markov_migration.plots.fan` draws the same series as fan charts.

Examples
--------
>>> from markov_migration.projection.files import read_projection, quantile_table  # doctest: +SKIP
>>> quantile_table(read_projection("projection.nc")).head()  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration import __version__
from markov_migration.defaults import PROJECTION_INTERVALS, PROJECTION_SUMMARY_PROB
from markov_migration.errors import InputError
from markov_migration.fitfile.format import library_versions
from markov_migration.inputs.panel import file_sha256
from markov_migration.inputs.spec import ModelSpec
from markov_migration.io import atomic_output

#: Marker attribute and format version of projection files.
PROJECTION_MARKER = "markov_migration_projection"
PROJECTION_FORMAT_VERSION = 1
#: Central interval probabilities reported in the quantile table and fan charts.
INTERVALS = PROJECTION_INTERVALS
#: Columns of the quantile CSV: ``lower50,upper50,lower80,...`` follow :data:`INTERVALS`.
QUANTILE_COLUMNS = (
    "scenario", "time", "series", "mean", "median",
    *(f"{side}{round(p * 100)}" for p in INTERVALS for side in ("lower", "upper")),
)  # fmt: skip

UNCERTAINTY_NOTE = (
    "intervals across draws combine posterior uncertainty of the intensities, demographic "
    "stochasticity (independent multinomial moves of persons) and, if inflow_cv > 0, "
    "uncertainty of the inflow level; they do not cover model error (time-constant "
    "intensities outside scenarios, Markov moves, homogeneous persons, a representative panel)"
)
EVENTS_NOTE = (
    "events[time=t] counts transitions from_state -> to_state made during the step ending at t, "
    "all of them (also moves undone later in the same step, e.g. a return followed by "
    "re-emigration); exact given the draw's intensities, so their distribution does not depend "
    "on the output step; diagonal and start time zero"
)


#: What the named flow series count (attributes of the projection file).
FLOW_SERIES_NOTE = {
    "returns": "transitions from a non-home state into a home state (return events) during the "
    "step ending at time",
    "reemigrations": "transitions from a home state into a non-home state (re-emigration events) "
    "during the step ending at time",
    "moves_abroad": "transitions between two different non-home states (e.g. from one host "
    "country to another) during the step ending at time",
}

#: Series read off the stocks, and the persons they count.
STOCK_SERIES_NOTE = {
    "ever_returned": "persons who entered a home state at least once since the start (first "
    "passage; a person who returns twice counts once; arrivals count once they enter a home "
    "state)",
    "returned_from_abroad": "persons in a home state at time who were in a non-home state at the "
    "start",
    "exits": "persons leaving the population (deaths, moves out of scope) during the step ending "
    "at time (only with exit rates)",
    "exited": "persons who left the population since the start (only with exit rates)",
    "net_returnees_change": "change of the home stock since the previous output time (step-end "
    "net change: returns minus re-emigrations plus arrivals into home states); it depends on "
    "the step and is not a count of returns",
}


def describe_variables(ds: xr.Dataset, spec: ModelSpec) -> None:
    """Set ``units`` and ``description`` attributes of a projection's variables (in place)."""
    home = ", ".join(spec.home) or "none"
    unit = spec.time_unit
    text = {
        "stock": "persons in each state at each output time",
        "phase_stock": "persons in each latent phase of a phase-type state (e.g. short-stay "
        "and settled returnees) at each output time; they add up to the state's stock",
        "returnees": f"persons in the home states ({home})",
        "diaspora": f"persons in all other states (not {home})",
        "events": EVENTS_NOTE,
        "inflow": "new emigrants arriving during the step ending at time (at uniform times "
        "through the step)",
        "cumulative_returns": (
            "return events (non-home to home state) since the start, every return counted, also "
            "those undone within a step"
        ),
        **STOCK_SERIES_NOTE,
    }
    for name, desc in text.items():
        if name in ds:
            ds[name].attrs.update(units="persons", description=desc)
    for name, desc in FLOW_SERIES_NOTE.items():
        ds[name].attrs.update(
            units="persons per step",
            description=f"{desc}; home states: {home}; every event counted, also moves undone "
            "within the step; zero at the start time",
        )
    ds["time"].attrs.update(
        units=unit, description="output time (decimal years: 2025.0 = 1 January 2025)"
    )
    ds["draw"].attrs["description"] = (
        "projection draw: one posterior sample of Q with its own demographic noise"
    )
    ds["posterior_draw"].attrs["description"] = (
        "draw index of the posterior sample within its chain"
    )


def provenance(
    fit, fit_path, spec, times, step, x0, inflow, scenarios, n, n_post, seed, dask, command
) -> dict:
    """Root attributes of a projection file: inputs, seed, versions, the fit's SHA-256.

    The arguments are those of :func:`markov_migration.projection.run.project_fit`
    after checking (``x0`` the initial stocks per draw, ``n_post`` the number of
    posterior samples).
    """
    versions = library_versions()
    return {
        PROJECTION_MARKER: PROJECTION_FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "package_version": __version__,
        "versions": json.dumps(versions, sort_keys=True),
        "command_line": command or "",
        "fit_path": "" if fit_path is None else str(fit_path),
        "fit_sha256": "" if fit_path is None else file_sha256(fit_path),
        "fit_created_at": str(fit.attrs.get("created_at", "")),
        "fit_data_sha256": str(fit.attrs.get("data_sha256", "")),
        "model_name": spec.name,
        "states": json.dumps(list(spec.states)),
        "home": json.dumps(list(spec.home)),
        "time_unit": spec.time_unit,
        "start": float(times[0]),
        "horizon": float(times[-1]),
        "step": float(step),
        "draws": int(n),
        "posterior_samples": int(n_post),
        "draw_selection": "evenly spaced posterior samples"
        if n <= n_post
        else "posterior samples reused in turn",
        "seed": int(seed),
        "random_streams": "draw i: SeedSequence(seed, spawn_key=(i,)); shared by all scenarios",
        "initial_stocks": json.dumps(
            {s: int(v) for s, v in zip(spec.states, x0[0], strict=True)}
            if np.all(x0 == x0[0])
            else "per draw"
        ),  # fmt: skip
        "initial_total": int(x0[0].sum()),
        "inflow": json.dumps(inflow.describe()),
        "scenarios": json.dumps(
            [
                {
                    "name": s.name,
                    "description": s.description,
                    "path": s.path or "",
                    "changes": s.describe(spec),
                    "sha256": hashlib.sha256(s.text.encode()).hexdigest() if s.text else "",
                    "text": s.text,
                }
                for s in scenarios
            ]
        ),
        "engine": "in-memory (numba)" if dask in (None, False) else "dask",
        "method": "exact stocks and transition events per step by uniformization (aggregate "
        "counts); arrivals at uniform times through each step; ever returned on the augmented "
        "(start label, entered home, state) chain",
        "uncertainty": UNCERTAINTY_NOTE,
    }


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------


def write_projection(ds: xr.Dataset, path: str | Path, force: bool = False) -> Path:
    """Write a projection as NetCDF (atomically: temporary file, then rename)."""
    path = Path(path)
    names = ("stock", "events", "inflow", *FLOW_SERIES_NOTE, *STOCK_SERIES_NOTE)
    encoding = {name: {"zlib": True, "complevel": 4} for name in names if name in ds}
    with atomic_output(path, force) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return path


def read_projection(path: str | Path) -> xr.Dataset:
    """Read a projection file written by :func:`write_projection`."""
    path = Path(path)
    if not path.exists():
        raise InputError("projection file not found", path=path)
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as err:  # h5py/xarray raise many kinds
        raise InputError(
            f"not a NetCDF projection file ({type(err).__name__})", path=path
        ) from None
    if PROJECTION_MARKER not in ds.attrs:
        raise InputError("not a markov-migration projection file", path=path)
    verify_projection(ds, path)
    return ds


#: Variables every projection file has (persons), with their dims (``scenario`` only when
#: there are several).
REQUIRED_VARIABLES = {
    "stock": ("scenario", "draw", "time", "state"),
    "returnees": ("scenario", "draw", "time"),
    "diaspora": ("scenario", "draw", "time"),
    "inflow": ("scenario", "draw", "time"),
    "cumulative_returns": ("scenario", "draw", "time"),
}


def verify_projection(ds: xr.Dataset, path: str | Path | None = None) -> None:
    """Check a projection read from a file before anything is computed from it.

    The format marker holds a version this package reads, the required variables
    are there with their dims, the states attribute lists the file's states, times
    are finite and increasing, and every count of persons is finite and
    non-negative (a tampered or truncated file is refused, not summarised).

    Raises
    ------
    InputError
        One line naming the file and what is wrong.
    """
    version = ds.attrs.get(PROJECTION_MARKER)
    try:
        version = int(np.asarray(version).item())
    except (TypeError, ValueError):
        raise InputError(
            f"projection format version {version!r} is not a number", path=path
        ) from None
    if version > PROJECTION_FORMAT_VERSION:
        raise InputError(
            f"projection format version {version} is newer than this markov-migration reads "
            f"({PROJECTION_FORMAT_VERSION}): upgrade markov-migration",
            path=path,
        )
    if version < 1:
        raise InputError(f"projection format version {version} is not valid", path=path)
    for name, dims in REQUIRED_VARIABLES.items():
        if name not in ds.data_vars:
            raise InputError(f"projection file has no variable '{name}'", path=path)
        allowed = (dims, dims[1:], (*dims, "group"), (*dims[1:], "group"))  # scenario, group
        if tuple(ds[name].dims) not in allowed:  # one scenario: no scenario dim
            raise InputError(
                f"variable '{name}' has dims {tuple(ds[name].dims)}, expected {dims}", path=path
            )
    try:
        states = json.loads(str(ds.attrs.get("states", "")))
    except json.JSONDecodeError:
        raise InputError("attribute 'states' is not a JSON list of states", path=path) from None
    if not isinstance(states, list) or [str(s) for s in ds["state"].values] != states:
        raise InputError(
            "attribute 'states' does not list the file's states (coordinate 'state')", path=path
        )
    time = np.asarray(ds["time"].values)
    if (
        time.size == 0
        or not np.issubdtype(time.dtype, np.number)
        or not np.isfinite(time).all()
        or np.any(np.diff(time) <= 0)
    ):
        raise InputError("times are not finite and increasing", path=path)
    persons = [*REQUIRED_VARIABLES, *(n for n in ("flows", *FLOW_SERIES_NOTE) if n in ds)]
    for name in persons:
        values = np.asarray(ds[name].values)
        if not np.issubdtype(values.dtype, np.number):
            raise InputError(f"variable '{name}' is not numeric", path=path)
        if not np.isfinite(values).all():
            raise InputError(f"variable '{name}' holds values that are not finite", path=path)
        if values.size and values.min() < 0:
            raise InputError(f"variable '{name}' holds negative numbers of persons", path=path)


def series_names(ds: xr.Dataset) -> list[str]:
    """Series of the quantile table: aggregates, flows per step, ``stock:<state>``, ``phase:<phase>``.

    The flow series (``returns``, ``reemigrations``, ``moves_abroad``) and
    ``ever_returned``, ``returned_from_abroad``, ``net_returnees_change`` are
    listed when the projection holds them (files written before they existed
    do not).
    """
    flows = [name for name in (*FLOW_SERIES_NOTE, *STOCK_SERIES_NOTE) if name in ds]
    phases = [f"phase:{p}" for p in ds["phase"].values] if "phase_stock" in ds else []
    return (
        ["returnees", "diaspora", "cumulative_returns", "inflow", *flows]
        + [f"stock:{s}" for s in ds["state"].values]
        + phases
    )


def series(ds: xr.Dataset, name: str) -> xr.DataArray:
    """A series by its quantile-table name (``returnees``, ``stock:abroad`` ...)."""
    if name.startswith("stock:"):
        return ds["stock"].sel(state=name.split(":", 1)[1])
    if name.startswith("phase:"):
        return ds["phase_stock"].sel(phase=name.split(":", 1)[1])
    return ds[name]


#: Label of the total over groups (projections by group) in quantile tables and charts.
TOTAL_LABEL = "total"


def group_total(ds: xr.Dataset) -> xr.Dataset:
    """The projection summed over groups, draw by draw (exact; quantiles then are right)."""
    counts = [v for v in ds.data_vars if "group" in ds[v].dims]
    total = ds[counts].sum("group", keep_attrs=True)
    rest = [v for v in ds.data_vars if v not in counts]
    out = total.merge(ds[rest]) if rest else total
    out.attrs = dict(ds.attrs)
    return out


def by_group_views(ds: xr.Dataset) -> list[tuple[str, xr.Dataset]]:
    """``(label, dataset)`` for the total and then each group (no ``group`` dim).

    Each view's attribute ``projection_group`` names it (chart titles); the
    groups' views drop the panel's observed shares (those are of the whole
    panel, not of one group).
    """
    total = group_total(ds)
    total.attrs["projection_group"] = "total over groups"
    views = [(TOTAL_LABEL, total)]
    shared = [v for v in ("observed_share", "observed_respondents") if v in ds]
    for g in ds["group"].values:
        view = ds.sel(group=g, drop=True).drop_vars(shared)
        view.attrs["projection_group"] = f"group {g}"
        views.append((str(g), view))
    return views


def quantile_table(ds: xr.Dataset) -> pd.DataFrame:
    """Mean, median and central 50/80/95% intervals across draws, in long format.

    Columns: ``scenario,time,series,mean,median,lower50,upper50,lower80,
    upper80,lower95,upper95`` (persons). Intervals are equal-tailed quantiles
    of the projection draws. A projection by group gets a leading ``group``
    column: rows of the total over groups (``total``, the per-draw sum) and
    then of each group.
    """
    if "group" in ds.dims:  # by group: the exact per-draw total first, then each group
        frames = [quantile_table(view).assign(group=label) for label, view in by_group_views(ds)]
        out = pd.concat(frames, ignore_index=True)
        return out[["group", *QUANTILE_COLUMNS]]
    probs = [0.5]
    for p in INTERVALS:
        probs += [(1 - p) / 2, (1 + p) / 2]
    scenarios = list(np.atleast_1d(ds["scenario"].values))
    frames = []
    for name in series_names(ds):
        da = series(ds, name)
        if "scenario" not in da.dims:
            da = da.expand_dims(scenario=scenarios)
        v = da.transpose("scenario", "time", "draw").values.astype(np.float64)
        qs = np.quantile(v, probs, axis=-1)
        mean = v.mean(axis=-1)
        for i, sc in enumerate(scenarios):
            frame = {
                "scenario": sc,
                "time": ds["time"].values,
                "series": name,
                "mean": mean[i],
                "median": qs[0, i],
            }
            for j, p in enumerate(INTERVALS):
                pct = round(p * 100)
                frame[f"lower{pct}"] = qs[1 + 2 * j, i]
                frame[f"upper{pct}"] = qs[2 + 2 * j, i]
            frames.append(pd.DataFrame(frame))
    out = pd.concat(frames, ignore_index=True)
    order = {name: i for i, name in enumerate(series_names(ds))}
    out["_s"] = out["scenario"].map({s: i for i, s in enumerate(scenarios)})
    out["_n"] = out["series"].map(order)
    out = out.sort_values(["_s", "_n", "time"], kind="stable").drop(columns=["_s", "_n"])
    return out[list(QUANTILE_COLUMNS)].reset_index(drop=True)


def write_quantile_csv(ds: xr.Dataset, path: str | Path, force: bool = False) -> Path:
    """Write :func:`quantile_table` as CSV (atomically)."""
    path = Path(path)
    table = quantile_table(ds)
    with atomic_output(path, force) as tmp:
        table.to_csv(tmp, index=False, float_format="%.1f")
    return path


def interval(
    ds: xr.Dataset,
    name: str,
    time: float,
    scenario: str | None = None,
    prob: float = PROJECTION_SUMMARY_PROB,
) -> dict:
    """Median and central ``prob`` interval of a series at a time, e.g. for a summary line.

    ``time`` is matched to the nearest output time.

    Returns
    -------
    dict
        ``time`` (the output time used), ``median``, ``lower``, ``upper``, ``mean``.
    """
    da = series(ds, name)
    if "scenario" in da.dims:
        da = da.sel(scenario=scenario or da["scenario"].values[0])
    da = da.sel(time=time, method="nearest")
    v = da.values.astype(np.float64)
    lo, med, hi = np.quantile(v, [(1 - prob) / 2, 0.5, (1 + prob) / 2])
    return {"time": float(da["time"]), "median": med, "lower": lo, "upper": hi, "mean": v.mean()}


def summary_lines(
    ds: xr.Dataset, times: Sequence[float], prob: float = PROJECTION_SUMMARY_PROB
) -> list[str]:
    """Human-readable lines, one per scenario, series and time.

    For example ``baseline: returnees at 2030: median 52,300 (80% interval 47,100-58,000)``.
    """
    lines = []
    for sc in np.atleast_1d(ds["scenario"].values):
        names = ("returnees", "diaspora", "cumulative_returns", "ever_returned")
        for name in (n for n in names if n in ds):
            label = name.replace("_", " ")
            for t in times:
                r = interval(ds, name, t, str(sc), prob)
                lines.append(
                    f"{sc}: {label} at {r['time']:g}: median {r['median']:,.0f} "
                    f"({prob:.0%} interval {r['lower']:,.0f}-{r['upper']:,.0f})"
                )
    return lines

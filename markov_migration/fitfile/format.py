"""Fit files: NetCDF in ArviZ's DataTree layout with provenance (no PyMC here).

Groups
------
``posterior``
    ``Q`` (continuous; dims chain, draw, from_state, to_state; moves per time
    unit), ``rate`` and ``log_rate`` (dim transition); or ``P`` (discrete; the
    one-step matrix) and the Dirichlet rows ``p_<state>``.
``sample_stats``
    The sampler's statistics (``diverging``, ``energy``, ``tree_depth`` ...).
``log_likelihood``
    ``transitions`` (chain, draw, obs): the log-likelihood of each aggregated
    row, ``count * log P(interval)[from, to]``. The unit of PSIS-LOO is
    therefore an aggregated row: all transitions between the same two states
    over the same interval (and covariate pattern).
``observed_data``
    The aggregated data: ``from``, ``to`` (state indices), ``interval`` (time
    units), ``count`` (weighted transitions), dim ``obs``.
``panel_data``
    The validated long-format panel (``id`` codes, ``time``, ``state``,
    ``weight``; dim ``observation``) when it has at most
    :data:`MAX_EMBEDDED_OBSERVATIONS` rows: posterior predictive prevalence
    checks and reproduction read it. Absent for counts-table input.
``constant_data``
    Priors and structure: ``allowed`` (from_state, to_state), ``prior_mu``,
    ``prior_sigma``, ``split_concentration`` (transition; continuous),
    ``exit_prior_mu``, ``exit_prior_sigma`` (exit_state) and ``resolution``.

Root attributes record the model file's text, the input data's SHA-256 and
path, the seed and sampler settings, library versions, the creation time and
the command line, so that a fit can be re-run and checked.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from markov_migration import __version__
from markov_migration.errors import FitFileError
from markov_migration.inputs.aggregate import AggregatedData
from markov_migration.inputs.obstype import PANEL_OBSTYPE
from markov_migration.inputs.panel import CLUSTER_COLUMN, Panel
from markov_migration.inputs.spec import ModelSpec, parse_spec
from markov_migration.io import atomic_output

#: Marker attribute of fit files; its value is the format version the file was written in.
FIT_MARKER = "markov_migration_fit"
#: Format version this package writes, and the newest it reads.
FIT_FORMAT_VERSION = 1
#: Oldest format version this package still reads.
OLDEST_FIT_FORMAT_VERSION = 1
#: Root attribute holding the sampler settings (JSON object, see ``FitSettings.to_attrs``).
SETTINGS_ATTR = "sampler_settings"
#: Panels with more observations than this are not embedded in fit files.
MAX_EMBEDDED_OBSERVATIONS = 1_000_000
#: Root attribute (1) of a fit whose panel flags exact transition or entry times in
#: its ``obstype`` column (:mod:`markov_migration.inputs.obstype`); absent otherwise.
PANEL_OBSTYPE_ATTR = "panel_obstype"


def library_versions() -> dict[str, str]:
    """Versions of the libraries a fit depends on."""
    out = {"python": platform.python_version(), "markov_migration": __version__}
    for name in ("pymc", "pytensor", "nutpie", "arviz", "numpy", "scipy", "numba", "xarray"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def settings_attrs(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Root attributes recording JSON-ready sampler settings.

    The whole record goes to :data:`SETTINGS_ATTR`; ``seed`` and ``sampler`` are
    repeated as attributes of their own for people browsing the file.
    """
    return {
        "seed": int(settings.get("seed", 0)),
        "sampler": str(settings.get("sampler", "")),
        SETTINGS_ATTR: json.dumps(dict(settings), sort_keys=True),
    }


def recorded_settings(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The sampler settings recorded in a fit file's root attributes.

    The inverse of :func:`settings_attrs`.

    Raises
    ------
    FitFileError
        If :data:`SETTINGS_ATTR` is missing or not a JSON object.
    """
    if SETTINGS_ATTR not in attrs:
        raise FitFileError(f"fit file records no sampler settings (no '{SETTINGS_ATTR}')")
    try:
        raw = json.loads(str(attrs[SETTINGS_ATTR]))
    except json.JSONDecodeError:
        raw = None
    if not isinstance(raw, dict):
        raise FitFileError(f"fit file's '{SETTINGS_ATTR}' is not a JSON object (garbled file?)")
    return raw


def provenance(
    spec: ModelSpec, agg: AggregatedData, settings: Mapping[str, Any], command: str | None
) -> dict:
    """Root attributes of a fit file.

    ``settings``: JSON-ready sampler settings, e.g. ``FitSettings.as_dict()``, or the
    attributes :func:`settings_attrs` (``FitSettings.to_attrs()``) makes of them.
    """
    if SETTINGS_ATTR not in settings:
        settings = settings_attrs(settings)
    versions = library_versions()
    return {
        FIT_MARKER: FIT_FORMAT_VERSION,
        "model_name": spec.name,
        "model_text": spec.text,
        "model_path": spec.path or "",
        "time_mode": spec.time,
        "time_unit": spec.time_unit,
        "states": json.dumps(list(spec.states)),
        "home": json.dumps(list(spec.home)),
        "data_path": str(agg.source),
        "data_sha256": agg.sha256,
        "data_respondents": -1 if agg.n_respondents is None else int(agg.n_respondents),
        "data_weighted": int(agg.weighted),
        "seed": settings["seed"],
        "sampler": settings["sampler"],
        SETTINGS_ATTR: settings[SETTINGS_ATTR],
        "versions": json.dumps(versions, sort_keys=True),
        "package_version": versions["markov_migration"],
        "pymc_version": versions["pymc"],
        "python_version": versions["python"],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command_line": command or " ".join(sys.argv),
        # the panel flags exact times (obstype 2, 3): not in the model text
        **({PANEL_OBSTYPE_ATTR: 1} if spec.observation.obstype else {}),
    }


def observed_dataset(agg: AggregatedData) -> xr.Dataset:
    """The aggregated data as a Dataset with dim ``obs``."""
    t = agg.table
    ds = xr.Dataset(
        {
            "from": ("obs", t["from"].to_numpy(dtype=np.int64)),
            "to": ("obs", t["to"].to_numpy(dtype=np.int64)),
            "interval": ("obs", t["interval"].to_numpy(dtype=np.float64)),
            "count": ("obs", t["count"].to_numpy(dtype=np.float64)),
        },
        coords={"obs": np.arange(len(t))},
    )
    for col in t.columns[4:]:
        values = t[col].to_numpy()
        ds[col] = ("obs", values.astype(str) if values.dtype == object else values)
    ds["interval"].attrs["units"] = "time units of the model (see root attr time_unit)"
    ds["count"].attrs["description"] = "number of observed transitions (weighted if data_weighted)"
    ds.attrs["states"] = json.dumps(list(agg.states))
    return ds


#: Prefix of the covariate and group columns in ``panel_data``.
PANEL_COLUMN_PREFIX = "column_"


def panel_dataset(panel: Panel, spec: ModelSpec | None = None) -> xr.Dataset:
    """The validated panel as a Dataset with dim ``observation``.

    With ``spec``, the covariate and group columns the model reads are kept
    too, as ``column_<name>``: floats for numeric covariates, integer codes
    into the coordinate ``column_<name>_level`` for categorical ones and groups
    (attr ``column`` names the panel column). They make the panel complete
    for reproduction and per-transition model comparison.
    """
    d = panel.data
    codes, ids = np.unique(d["id"].to_numpy(dtype=str), return_inverse=True)
    ds = xr.Dataset(
        {
            "respondent": ("observation", ids.astype(np.int64)),
            "time": ("observation", d["time"].to_numpy(dtype=np.float64)),
            "state": ("observation", d["state"].to_numpy(dtype=np.int64)),
            "weight": ("observation", d["weight"].to_numpy(dtype=np.float64)),
        },
        coords={"observation": np.arange(len(d)), "respondent_id": codes},
    )
    if CLUSTER_COLUMN in d:  # survey clusters (PSUs): the weights' design variance uses them
        levels, index = np.unique(d[CLUSTER_COLUMN].to_numpy(dtype=str), return_inverse=True)
        ds = ds.assign_coords(cluster_level=levels)
        ds["cluster"] = ("observation", index.astype(np.int64))
    if PANEL_OBSTYPE in d:  # msm's observation types (exact transition or entry times)
        ds[PANEL_OBSTYPE] = ("observation", d[PANEL_OBSTYPE].to_numpy(dtype=np.int64))
    if spec is not None:
        from markov_migration.inputs.columns import model_columns

        numeric = {c.column for c in spec.covariates if c.kind == "numeric"}
        for column in model_columns(spec):
            name = PANEL_COLUMN_PREFIX + column
            if column in numeric:
                ds[name] = ("observation", d[column].to_numpy(dtype=np.float64))
            else:
                levels, index = np.unique(d[column].to_numpy(dtype=str), return_inverse=True)
                ds = ds.assign_coords({f"{name}_level": levels})
                ds[name] = ("observation", index.astype(np.int64))
            ds[name].attrs["column"] = column
        ds.attrs["model_columns"] = json.dumps(model_columns(spec))
    ds.attrs["states"] = json.dumps(list(panel.states))
    ds.attrs["description"] = "validated panel; respondent indexes respondent_id"
    return ds


def constant_dataset(spec: ModelSpec, agg: AggregatedData) -> xr.Dataset:
    """Model structure and priors as a Dataset."""
    ds = xr.Dataset(
        {"allowed": (("from_state", "to_state"), spec.allowed_matrix().astype(np.int8))},
        coords={"from_state": list(spec.states), "to_state": list(spec.states)},
    )
    ds["resolution"] = agg.resolution
    if spec.time == "continuous":
        ds = ds.assign_coords(transition=list(spec.transition_labels))
        ds = _prior_variables(ds, spec)
    return ds


def _prior_variables(ds: xr.Dataset, spec: ModelSpec) -> xr.Dataset:
    """The intensity priors (:mod:`markov_migration.inputs.priors`) as constant data.

    ``prior_mu``/``prior_sigma`` (transition): a transition's own Normal prior of its
    log-intensity, NaN under a state-level prior; ``exit_prior_mu``/``exit_prior_sigma``
    (exit_state): the Normal prior of a state's log total exit rate over its split, and
    ``split_concentration`` (transition): each exit's Dirichlet concentration (NaN for a
    transition with its own prior).
    """
    nan = float("nan")
    own = [spec.priors.get(p) for p in spec.transitions]
    ds["prior_mu"] = ("transition", [nan if p is None else p.mu for p in own])
    ds["prior_sigma"] = ("transition", [nan if p is None else p.sigma for p in own])
    ds["prior_mu"].attrs["units"] = "log of moves per time unit"
    split = dict.fromkeys(spec.transitions, nan)
    for e in spec.exit_priors:
        split.update(zip(e.exits, e.split, strict=True))
    ds["split_concentration"] = ("transition", [split[p] for p in spec.transitions])
    if spec.exit_priors:
        ds = ds.assign_coords(exit_state=[spec.states[e.state] for e in spec.exit_priors])
        ds["exit_prior_mu"] = ("exit_state", [e.mu for e in spec.exit_priors])
        ds["exit_prior_sigma"] = ("exit_state", [e.sigma for e in spec.exit_priors])
        ds["exit_prior_mu"].attrs["units"] = "log of exits per time unit"
    return ds


def sanitize(ds: xr.Dataset) -> xr.Dataset:
    """Drop variables NetCDF cannot store (object dtype, e.g. divergence messages)."""
    drop = [name for name, var in ds.data_vars.items() if var.dtype == object]
    ds = ds.drop_vars(drop)
    for name, var in ds.data_vars.items():
        if var.dtype == bool:
            ds[name] = var.astype(np.int8)
            ds[name].attrs["dtype"] = "bool"
        elif var.dtype.kind == "u":
            ds[name] = var.astype(np.int64)
    ds.attrs = {k: v for k, v in ds.attrs.items() if isinstance(v, str | int | float)}
    return ds


def has_design(spec: ModelSpec) -> bool:
    """Whether the model has covariates, groups or periods (a design beyond plain rates)."""
    return spec.time == "continuous" and bool(spec.covariates or spec.groups or spec.periods)


def design_dataset(spec: ModelSpec, agg: AggregatedData) -> xr.Dataset:
    """Covariate, group and period structure for ``constant_data`` (empty for a plain model)."""
    if not has_design(spec):
        return xr.Dataset()
    from markov_migration.inputs.design import model_design

    design = model_design(spec, agg)
    ds = xr.Dataset()
    numeric = [c.name for c in spec.covariates if c.kind == "numeric"]
    if numeric:
        ds = ds.assign_coords(numeric_covariate=numeric)
        ds["covariate_center"] = ("numeric_covariate", [design.centers[n] for n in numeric])
        ds["covariate_scale"] = ("numeric_covariate", [design.scales[n] for n in numeric])
        ds["covariate_center"].attrs["description"] = (
            "mean over the observed transitions: baseline intensities (log_rate, rate, Q) are at it"
        )
        ds["covariate_scale"].attrs["description"] = (
            "sd over the observed transitions (the sampler's internal scale; effects are per unit)"
        )
    if "pattern" in design.grid_coords:
        categorical = [c.name for c in spec.covariates if c.kind == "categorical"]
        ds = ds.assign_coords(
            pattern=design.grid_coords["pattern"], categorical_covariate=categorical
        )
        ds["pattern_level"] = (
            ("pattern", "categorical_covariate"),
            np.array([[p[c] for c in categorical] for p in design.pattern_levels], dtype=str),
        )
        ds["reference_level"] = (
            "categorical_covariate", np.array([design.levels[c][0] for c in categorical], dtype=str)
        )  # fmt: skip
    t = agg.table
    if design.has_groups:
        column = spec.groups.column
        ds = ds.assign_coords(group=list(design.group_levels))
        counts = t.groupby(t[column].astype(str))["count"].sum()
        ds["group_count"] = ("group", [float(counts.get(g, 0.0)) for g in design.group_levels])
        ds["group_count"].attrs["description"] = f"observed transitions (weighted) by {column}"
        ds["group"].attrs["column"] = column
    if spec.periods:
        edges = np.array([-np.inf, *spec.periods, np.inf])
        ds = ds.assign_coords(period=list(design.period_labels))
        ds["period_start"] = ("period", edges[:-1])
        ds["period_end"] = ("period", edges[1:])
        ds["period_start"].attrs["units"] = "time units of the model (see root attr time_unit)"
    return ds


def write_fit(tree: xr.DataTree, path: str | Path, force: bool = False) -> Path:
    """Write a fit file atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_output(path, force) as tmp:
        tree.to_netcdf(tmp, engine="h5netcdf")
    return path


def read_fit(path: str | Path) -> xr.DataTree:
    """Read a fit file into memory and check it is one.

    Raises
    ------
    FitFileError
        If the file is missing, not NetCDF, not a markov-migration fit file, or
        written in a format version this package does not read (a newer one).
    """
    path = Path(path)
    if not path.exists():
        raise FitFileError("fit file not found", path=path)
    try:
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            tree = tree.load()
    except Exception as err:  # h5py/xarray raise many kinds
        raise FitFileError(f"not a NetCDF fit file ({type(err).__name__})", path=path) from None
    if FIT_MARKER not in tree.attrs:
        raise FitFileError(
            "not a markov-migration fit file (no fit provenance attributes)", path=path
        )
    check_format_version(tree.attrs[FIT_MARKER], path)
    for group in ("posterior", "observed_data"):
        if group not in tree.children:
            raise FitFileError(f"fit file has no '{group}' group", path=path)
    from markov_migration.fitfile.verify import verify_fit

    verify_fit(tree, path)
    return tree


def check_format_version(value: Any, path: str | Path | None = None) -> int:
    """The fit-format version recorded in :data:`FIT_MARKER`, checked readable.

    Raises
    ------
    FitFileError
        If it is not a whole number (a garbled file), newer than
        :data:`FIT_FORMAT_VERSION` (written by a newer markov-migration) or older
        than :data:`OLDEST_FIT_FORMAT_VERSION`.
    """
    # NetCDF returns integer attributes as numpy integers; accept digits written as text.
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        version = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        version = int(value)
    else:
        raise FitFileError(
            f"fit format version {value!r} in '{FIT_MARKER}' is not a whole number (garbled file?)",
            path=path,
        )
    if version > FIT_FORMAT_VERSION:
        raise FitFileError(
            f"written by a newer markov-migration (format {version}, this version reads up to "
            f"{FIT_FORMAT_VERSION}); upgrade markov-migration to read it",
            path=path,
        )
    if version < OLDEST_FIT_FORMAT_VERSION:
        raise FitFileError(
            f"fit format {version} is older than this version reads "
            f"(formats {OLDEST_FIT_FORMAT_VERSION} to {FIT_FORMAT_VERSION}); re-run the fit",
            path=path,
        )
    return version


def fit_spec(tree: xr.DataTree) -> ModelSpec:
    """The model specification recorded in a fit file.

    With the fit's ``observation.obstype`` when its panel flagged exact times
    (root attribute :data:`PANEL_OBSTYPE_ATTR`).
    """
    spec = parse_spec(str(tree.attrs["model_text"]), path=str(tree.attrs.get("model_path") or None))
    if int(tree.attrs.get(PANEL_OBSTYPE_ATTR, 0)):
        obs = dataclasses.replace(spec.observation, obstype=True)
        spec = dataclasses.replace(spec, observation=obs)
    return spec


# -- generators of any covariate values, group or period, from a fit -------------------------

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
    ``prior_sigma`` (transition; continuous) and ``resolution``.

Root attributes record the model file's text, the input data's SHA-256 and
path, the seed and sampler settings, library versions, the creation time and
the command line, so that a fit can be re-run and checked.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from markov_migration import __version__
from markov_migration.errors import FitFileError
from markov_migration.io import atomic_output
from markov_migration.panel import AggregatedData, Panel
from markov_migration.spec import ModelSpec, parse_spec

#: Marker attribute and format version of fit files.
FIT_MARKER = "markov_migration_fit"
FIT_FORMAT_VERSION = 1
#: Panels with more observations than this are not embedded in fit files.
MAX_EMBEDDED_OBSERVATIONS = 1_000_000


def library_versions() -> dict[str, str]:
    """Versions of the libraries a fit depends on."""
    out = {"python": platform.python_version(), "markov_migration": __version__}
    for name in ("pymc", "pytensor", "nutpie", "arviz", "numpy", "scipy", "numba", "xarray"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(spec: ModelSpec, agg: AggregatedData, settings: dict[str, Any], command: str | None) -> dict:
    """Root attributes of a fit file."""
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
        "seed": int(settings.get("seed", 0)),
        "sampler": str(settings.get("sampler", "")),
        "sampler_settings": json.dumps(settings, sort_keys=True),
        "versions": json.dumps(versions, sort_keys=True),
        "package_version": versions["markov_migration"],
        "pymc_version": versions["pymc"],
        "python_version": versions["python"],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command_line": command or " ".join(sys.argv),
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


def panel_dataset(panel: Panel) -> xr.Dataset:
    """The validated panel as a Dataset with dim ``observation``."""
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
        ds["prior_mu"] = ("transition", [spec.priors[p].mu for p in spec.transitions])
        ds["prior_sigma"] = ("transition", [spec.priors[p].sigma for p in spec.transitions])
        ds["prior_mu"].attrs["units"] = "log of moves per time unit"
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


def log_likelihood_dataset(spec: ModelSpec, agg: AggregatedData, posterior: xr.Dataset) -> xr.Dataset:
    """Per-row log-likelihood ``count * log P[from, to]`` for every draw."""
    t = agg.table
    count = t["count"].to_numpy(dtype=np.float64)
    frm = t["from"].to_numpy(dtype=np.int64)
    to = t["to"].to_numpy(dtype=np.int64)
    nchain, ndraw = posterior.sizes["chain"], posterior.sizes["draw"]
    if spec.time == "continuous":
        from markov_migration.core.likelihood import row_loglik_draws
        from markov_migration.design import likelihood_data

        data = likelihood_data(agg)
        q = posterior["Q"].transpose("chain", "draw", "from_state", "to_state").to_numpy()
        q = q.reshape(nchain * ndraw, 1, spec.n_states, spec.n_states)
        per = row_loglik_draws(np.ascontiguousarray(q), *data.arrays())
    else:
        p = posterior["P"].transpose("chain", "draw", "from_state", "to_state").to_numpy()
        p = p.reshape(nchain * ndraw, spec.n_states, spec.n_states)
        steps = np.round(t["interval"].to_numpy() / agg.resolution).astype(np.int64)
        per = np.empty((p.shape[0], len(t)))
        for n in np.unique(steps):
            pn = np.linalg.matrix_power(p, int(n))
            sel = steps == n
            with np.errstate(divide="ignore"):
                per[:, sel] = np.log(pn[:, frm[sel], to[sel]])
    values = (per * count).reshape(nchain, ndraw, len(t))
    return xr.Dataset(
        {"transitions": (("chain", "draw", "obs"), values)},
        coords={"chain": posterior["chain"], "draw": posterior["draw"], "obs": np.arange(len(t))},
    )


def assemble_fit(
    spec: ModelSpec,
    agg: AggregatedData,
    posterior: xr.Dataset,
    sample_stats: xr.Dataset,
    settings: dict[str, Any],
    command: str | None = None,
    panel: Panel | None = None,
) -> xr.DataTree:
    """Put a sampled posterior and its data into the fit-file DataTree."""
    posterior = sanitize(posterior)
    order = [d for d in ("chain", "draw") if d in posterior.dims]
    posterior = posterior.transpose(*order, ...)
    if "Q" in posterior:
        posterior["Q"].attrs.update(units=f"moves per {spec.time_unit[:-1]}", description="generator matrix")
    groups = {
        "posterior": posterior,
        "sample_stats": sanitize(sample_stats),
        "log_likelihood": log_likelihood_dataset(spec, agg, posterior),
        "observed_data": observed_dataset(agg),
        "constant_data": constant_dataset(spec, agg),
    }
    if panel is not None and len(panel.data) <= MAX_EMBEDDED_OBSERVATIONS:
        groups["panel_data"] = panel_dataset(panel)
    tree = xr.DataTree.from_dict(groups)
    tree.attrs = provenance(spec, agg, settings, command)
    return tree


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
        If the file is missing, not NetCDF or not a markov-migration fit file.
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
        raise FitFileError("not a markov-migration fit file (no fit provenance attributes)", path=path)
    for group in ("posterior", "observed_data"):
        if group not in tree.children:
            raise FitFileError(f"fit file has no '{group}' group", path=path)
    return tree


def fit_spec(tree: xr.DataTree) -> ModelSpec:
    """The model specification recorded in a fit file."""
    return parse_spec(str(tree.attrs["model_text"]), path=str(tree.attrs.get("model_path") or None))

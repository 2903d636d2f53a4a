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
import pandas as pd
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


def provenance(
    spec: ModelSpec, agg: AggregatedData, settings: dict[str, Any], command: str | None
) -> dict:
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
    if spec is not None:
        from markov_migration.panel import model_columns

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


def _has_design(spec: ModelSpec) -> bool:
    return spec.time == "continuous" and bool(spec.covariates or spec.groups or spec.periods)


#: Memory budget (bytes) of the generator stacks built per chunk of draws.
_CHUNK_BYTES = 64 * 2**20


def log_likelihood_dataset(
    spec: ModelSpec, agg: AggregatedData, posterior: xr.Dataset
) -> xr.Dataset:
    """Per-row log-likelihood ``count * log P[from, to]`` for every draw.

    With covariates, groups or periods each row uses its own generator(s),
    rebuilt from ``log_rate``, ``log_hazard_ratio`` and ``group_effect``; an
    interval crossing period cut points uses the product of its pieces.
    """
    t = agg.table
    count = t["count"].to_numpy(dtype=np.float64)
    frm = t["from"].to_numpy(dtype=np.int64)
    to = t["to"].to_numpy(dtype=np.int64)
    nchain, ndraw = posterior.sizes["chain"], posterior.sizes["draw"]
    if _has_design(spec):
        per = _design_row_loglik(spec, agg, posterior)
    elif spec.time == "continuous":
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


def _draws(posterior: xr.Dataset, name: str, dims: tuple[str, ...], labels: dict) -> np.ndarray:
    """Draws of a posterior variable as (chain * draw, *dims), in the order of ``labels``."""
    if name not in posterior:
        raise FitFileError(f"posterior has no '{name}', which this model needs")
    var = posterior[name].sel({d: labels[d] for d in dims if d in labels})
    arr = var.transpose("chain", "draw", *dims).to_numpy()
    return arr.reshape(-1, *arr.shape[2:])


def _design_row_loglik(spec: ModelSpec, agg: AggregatedData, posterior: xr.Dataset) -> np.ndarray:
    from markov_migration.core.likelihood import row_loglik_draws
    from markov_migration.design import model_design

    design = model_design(spec, agg)
    data = design.likelihood
    n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    chunk = max(1, _CHUNK_BYTES // (8 * design.n_generators * spec.n_states**2))
    per = np.empty((n_draws, data.n_rows))
    for lo in range(0, n_draws, chunk):
        q = design_generators(spec, design, posterior, np.arange(lo, min(lo + chunk, n_draws)))
        per[lo : lo + chunk] = row_loglik_draws(q, *data.arrays())
    return per


def design_generators(
    spec: ModelSpec, design, posterior: xr.Dataset, draws: np.ndarray
) -> np.ndarray:
    """The design's generators for chosen draws: shape (len(draws), M, K, K).

    ``draws`` index the flattened (chain, draw) samples; ``design`` is
    :func:`markov_migration.design.model_design` of the fit's model and data.
    """
    from markov_migration.design import generators_from_rates

    labels = {
        "transition": list(spec.transition_labels),
        "covariate_effect": [e.label for e in design.effects],
        "group": list(design.group_levels),
        "group_transition": [spec.transition_labels[j] for j in design.group_transitions],
    }
    log_rate = _draws(posterior, "log_rate", ("transition",), labels)[draws]
    log_hr = (
        _draws(posterior, "log_hazard_ratio", ("covariate_effect",), labels)[draws]
        if design.has_effects else None
    )  # fmt: skip
    effect = (
        _draws(posterior, "group_effect", ("group", "group_transition"), labels)[draws]
        if design.has_groups else None
    )  # fmt: skip
    lr = design.log_rates(log_rate, log_hr, effect)
    return np.ascontiguousarray(generators_from_rates(np.exp(lr), spec))


def aggregated_from_fit(tree: xr.DataTree) -> AggregatedData:
    """The aggregated data a fit was made from, rebuilt from its ``observed_data``."""
    obs = tree["observed_data"].to_dataset()
    frame = pd.DataFrame({name: obs[name].to_numpy() for name in obs.data_vars})
    const = tree["constant_data"] if "constant_data" in tree.children else None
    resolution = float(const["resolution"]) if const is not None and "resolution" in const else 1.0
    return AggregatedData(
        table=frame,
        states=tuple(json.loads(tree.attrs["states"])),
        resolution=resolution,
        source=str(tree.attrs.get("data_path", "<fit file>")),
        sha256=str(tree.attrs.get("data_sha256", "")),
        weighted=bool(int(tree.attrs.get("data_weighted", 0))),
    )


def design_dataset(spec: ModelSpec, agg: AggregatedData) -> xr.Dataset:
    """Covariate, group and period structure for ``constant_data`` (empty for a plain model)."""
    if not _has_design(spec):
        return xr.Dataset()
    from markov_migration.design import model_design

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


def _label_posterior(spec: ModelSpec, agg: AggregatedData, posterior: xr.Dataset) -> xr.Dataset:
    """Coordinates and attributes of the covariate, group and period variables."""
    if not _has_design(spec):
        return posterior
    from markov_migration.design import model_design

    design = model_design(spec, agg)
    unit = spec.time_unit[:-1]
    if "covariate_effect" in posterior.dims:
        effects = {e.label: e for e in design.effects}
        es = [effects[str(lab)] for lab in posterior["covariate_effect"].values]
        posterior = posterior.assign_coords(
            covariate=("covariate_effect", [e.covariate for e in es]),
            level=("covariate_effect", [e.level for e in es]),
            **{
                "from": ("covariate_effect", [spec.states[e.transition[0]] for e in es]),
                "to": ("covariate_effect", [spec.states[e.transition[1]] for e in es]),
            },
            effect_parameter=("covariate_effect", [e.parameter for e in es]),
        )
        for name in ("hazard_ratio", "log_hazard_ratio"):
            if name in posterior:
                posterior[name].attrs.update(
                    description=("hazard ratio" if name == "hazard_ratio" else "log hazard ratio")
                    + " of the covariate level (vs its reference), of one unit of a numeric "
                    "covariate as in the data, or of the period (vs the first period), on the "
                    "intensity of the transition from -> to (coordinates); entries with the same "
                    "effect_parameter share one effect",
                )
    if "group_effect" in posterior:
        posterior["group_effect"].attrs["description"] = (
            f"log hazard ratio of each {spec.groups.column} against the median group "
            "(random effect; group_sd is its sd)"
        )
        posterior["group"].attrs["column"] = spec.groups.column
    if "Q" in posterior:
        posterior["Q"].attrs.update(
            units=f"moves per {unit}",
            description="generator matrix of each categorical covariate pattern, group and "
            "period; numeric covariates at their centre (constant_data covariate_center)",
        )
    return posterior


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
        posterior["Q"].attrs.update(
            units=f"moves per {spec.time_unit[:-1]}", description="generator matrix"
        )
    posterior = _label_posterior(spec, agg, posterior)
    groups = {
        "posterior": posterior,
        "sample_stats": sanitize(sample_stats),
        "log_likelihood": log_likelihood_dataset(spec, agg, posterior),
        "observed_data": observed_dataset(agg),
        "constant_data": xr.merge([constant_dataset(spec, agg), design_dataset(spec, agg)]),
    }
    if panel is not None and len(panel.data) <= MAX_EMBEDDED_OBSERVATIONS:
        groups["panel_data"] = panel_dataset(panel, spec)
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
        raise FitFileError(
            "not a markov-migration fit file (no fit provenance attributes)", path=path
        )
    for group in ("posterior", "observed_data"):
        if group not in tree.children:
            raise FitFileError(f"fit file has no '{group}' group", path=path)
    return tree


def fit_spec(tree: xr.DataTree) -> ModelSpec:
    """The model specification recorded in a fit file."""
    return parse_spec(str(tree.attrs["model_text"]), path=str(tree.attrs.get("model_path") or None))


# -- generators of any covariate values, group or period, from a fit -------------------------


def _log_rates_at(
    post: xr.Dataset,
    constant: xr.Dataset | None,
    covariates: dict[str, Any] | None,
    period: str | int | None,
) -> xr.DataArray:
    """Baseline log-intensities plus the covariate and period effects at given values."""
    log_rate = post["log_rate"]
    covariates = dict(covariates or {})
    if "log_hazard_ratio" not in post:
        if covariates:
            raise FitFileError(f"the fit has no covariates (asked for {', '.join(covariates)})")
        if period is not None:
            raise FitFileError("the fit has no periods")
        return log_rate
    lhr = post["log_hazard_ratio"]
    if period is not None and "period" not in post.coords:
        raise FitFileError("the fit has no periods")
    cov = lhr["covariate"].values.astype(str)
    lev = lhr["level"].values.astype(str)
    known = set(cov) - {"period"}
    unknown = sorted(set(covariates) - known)
    if unknown:
        raise FitFileError(
            f"the fit has no covariate '{unknown[0]}' "
            f"(covariates: {', '.join(sorted(known)) or 'none'})"
        )
    centers = {}
    if constant is not None and "covariate_center" in constant:
        centers = dict(zip(constant["numeric_covariate"].values.astype(str),
                           constant["covariate_center"].values, strict=True))  # fmt: skip
    references = {}
    if constant is not None and "reference_level" in constant:
        references = dict(zip(constant["categorical_covariate"].values.astype(str),
                              constant["reference_level"].values.astype(str), strict=True))  # fmt: skip
    for c, value in covariates.items():
        levels = [str(v) for cc, v in zip(cov, lev, strict=True) if cc == c and v != ""]
        if levels or c in references:
            allowed = list(dict.fromkeys([*([references[c]] if c in references else []), *levels]))
            if str(value) not in allowed:
                raise FitFileError(
                    f"'{value}' is not a level of covariate '{c}' (levels: {', '.join(allowed)})"
                )
        else:
            try:
                covariates[c] = float(value)
            except (TypeError, ValueError):
                raise FitFileError(
                    f"covariate '{c}' is numeric: '{value}' is not a number"
                ) from None
            if not np.isfinite(covariates[c]):
                raise FitFileError(f"covariate '{c}' must be finite, got {value}")
    x = np.zeros(cov.size)
    for i, (c, v) in enumerate(zip(cov, lev, strict=True)):
        if c == "period":
            if period is not None:
                labels = list(post["period"].values.astype(str)) if "period" in post.coords else []
                label = labels[period] if isinstance(period, int | np.integer) else str(period)
                if label not in labels:
                    raise FitFileError(f"unknown period '{period}' (periods: {', '.join(labels)})")
                x[i] = float(label == v)
        elif c in covariates:
            value = covariates[c]
            if v == "":  # numeric: per unit, baseline at the centre
                x[i] = float(value) - float(centers.get(c, 0.0))
            else:
                x[i] = float(str(value) == v)
    contribution = (lhr * xr.DataArray(x, dims="covariate_effect")).groupby(
        xr.DataArray(
            [f"{a}->{b}" for a, b in zip(lhr["from"].values, lhr["to"].values, strict=True)],
            dims="covariate_effect", name="transition",
        )
    ).sum()  # fmt: skip
    return log_rate + contribution.reindex(transition=log_rate["transition"].values, fill_value=0.0)


def _generators(spec: ModelSpec, log_rate: xr.DataArray) -> xr.DataArray:
    from markov_migration.design import generators_from_rates

    labels = list(spec.transition_labels)
    lr = log_rate.sel(transition=labels).transpose(..., "transition")
    q = generators_from_rates(np.exp(lr.to_numpy()), spec)
    dims = [d for d in lr.dims if d != "transition"]
    return xr.DataArray(
        q,
        dims=(*dims, "from_state", "to_state"),
        coords={
            **{d: lr[d] for d in dims if d in lr.coords},
            "from_state": list(spec.states),
            "to_state": list(spec.states),
        },  # fmt: skip
        attrs={"units": f"moves per {spec.time_unit[:-1]}", "description": "generator matrix"},
    )


def _group_contribution(post: xr.Dataset, effect: xr.DataArray) -> xr.DataArray:
    """Group effects (..., group_transition) as additions to every transition (..., transition)."""
    effect = effect.rename(group_transition="transition")
    return effect.reindex(transition=post["transition"].values, fill_value=0.0)


def generator_draws(
    tree: xr.DataTree,
    covariates: dict[str, Any] | None = None,
    group: str | None = None,
    period: str | int | None = None,
) -> xr.DataArray:
    """Posterior draws of the generator at given covariate values, group and period.

    Parameters
    ----------
    tree : xarray.DataTree
        A continuous-time fit.
    covariates : dict, optional
        Covariate values: a level of a categorical covariate, a number (in the
        data's unit) for a numeric one. Covariates not given are at their
        reference level / centre (the baseline).
    group : str, optional
        A group of the fit (its random effect is added); default the median
        group (effect 0). For a group not in the data use
        :func:`new_group_generators`.
    period : str or int, optional
        Period label (``"[2022.72, 2024)"``) or index; default the first.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, from_state, to_state), moves per time unit.

    Examples
    --------
    >>> q = generator_draws(tree, {"reason": "work", "age": 40}, group="Georgia")  # doctest: +SKIP
    """
    spec = fit_spec(tree)
    post = tree["posterior"].to_dataset()
    constant = tree["constant_data"].to_dataset() if "constant_data" in tree.children else None
    log_rate = _log_rates_at(post, constant, covariates, period)
    if group is not None:
        if "group_effect" not in post:
            raise FitFileError("the fit has no groups")
        groups = list(post["group"].values.astype(str))
        if str(group) not in groups:
            raise FitFileError(
                f"'{group}' is not a group of the fit (groups: {', '.join(groups)}); "
                "use new_group_generators for a group not in the data"
            )
        effect = post["group_effect"].sel(group=str(group)).drop_vars("group")
        log_rate = log_rate + _group_contribution(post, effect)
    return _generators(spec, log_rate.transpose("chain", "draw", "transition"))


def new_group_generators(
    tree: xr.DataTree,
    covariates: dict[str, Any] | None = None,
    period: str | int | None = None,
    *,
    seed: int = 0,
) -> xr.DataArray:
    """Generators of a group not in the data: the population distribution of groups.

    For every posterior draw a new random effect ``u ~ Normal(0, group_sd)`` is
    drawn for each group transition, so the draws carry both the uncertainty
    about the population (baseline, ``group_sd``) and the spread between
    groups: a predictive distribution for a new host country.

    Parameters
    ----------
    tree : xarray.DataTree
        A continuous-time fit with ``[groups]``.
    covariates, period
        As :func:`generator_draws`.
    seed : int
        Seed of the new random effects (the same seed gives the same draws).

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, from_state, to_state).
    """
    spec = fit_spec(tree)
    post = tree["posterior"].to_dataset()
    if "group_sd" not in post:
        raise FitFileError("the fit has no groups (no group_sd in its posterior)")
    constant = tree["constant_data"].to_dataset() if "constant_data" in tree.children else None
    log_rate = _log_rates_at(post, constant, covariates, period)
    sd = post["group_sd"].transpose("chain", "draw", "group_transition")
    rng = np.random.default_rng(seed)
    effect = sd * rng.standard_normal(sd.shape)
    log_rate = log_rate + _group_contribution(post, effect)
    return _generators(spec, log_rate.transpose("chain", "draw", "transition"))

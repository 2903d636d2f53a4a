"""Putting a fit file together.

Posterior, sampler statistics, pointwise log-likelihood, data and provenance in the
layout of :mod:`markov_migration.fitfile.format`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.fitfile.format import (
    MAX_EMBEDDED_OBSERVATIONS,
    constant_dataset,
    design_dataset,
    has_design,
    observed_dataset,
    panel_dataset,
    provenance,
    sanitize,
)
from markov_migration.fitfile.generators import design_generators
from markov_migration.inputs.aggregate import AggregatedData
from markov_migration.inputs.panel import Panel
from markov_migration.inputs.spec import ModelSpec

#: Root attribute recording the sampled (free) variables of the posterior, as JSON.
SAMPLED_ATTR = "sampled_variables"

#: Free variables of fit files written before :data:`SAMPLED_ATTR` was recorded.
LEGACY_SAMPLED = ("log_rate", "log_hr_scaled", "group_sd", "group_z")

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
    nchain, ndraw = (posterior.sizes[d] for d in SAMPLE_DIMS)
    if has_design(spec):
        per = _design_row_loglik(spec, agg, posterior)
    elif spec.time == "continuous":
        from markov_migration.core.likelihood import row_loglik_draws
        from markov_migration.inputs.design import likelihood_data

        data = likelihood_data(agg)
        q = posterior["Q"].transpose(*SAMPLE_DIMS, "from_state", "to_state").to_numpy()
        q = q.reshape(nchain * ndraw, 1, spec.n_states, spec.n_states)
        per = row_loglik_draws(np.ascontiguousarray(q), *data.arrays())
    else:
        p = posterior["P"].transpose(*SAMPLE_DIMS, "from_state", "to_state").to_numpy()
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
        {"transitions": ((*SAMPLE_DIMS, "obs"), values)},
        coords={**{d: posterior[d] for d in SAMPLE_DIMS}, "obs": np.arange(len(t))},
    )


def _design_row_loglik(spec: ModelSpec, agg: AggregatedData, posterior: xr.Dataset) -> np.ndarray:
    from markov_migration.core.likelihood import row_loglik_draws
    from markov_migration.inputs.design import model_design

    design = model_design(spec, agg)
    data = design.likelihood
    n_draws = int(np.prod([posterior.sizes[d] for d in SAMPLE_DIMS]))
    chunk = max(1, _CHUNK_BYTES // (8 * design.n_generators * spec.n_states**2))
    per = np.empty((n_draws, data.n_rows))
    for lo in range(0, n_draws, chunk):
        q = design_generators(spec, design, posterior, np.arange(lo, min(lo + chunk, n_draws)))
        per[lo : lo + chunk] = row_loglik_draws(q, *data.arrays())
    return per


def _label_posterior(spec: ModelSpec, agg: AggregatedData, posterior: xr.Dataset) -> xr.Dataset:
    """Coordinates and attributes of the covariate, group and period variables."""
    if not has_design(spec):
        return posterior
    from markov_migration.inputs.design import model_design

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
    log_likelihood: xr.Dataset | None = None,
    *,
    sampled: Sequence[str] | None = None,
    log_prior: xr.Dataset | None = None,
) -> xr.DataTree:
    """Put a sampled posterior and its data into the fit-file DataTree.

    ``settings``: the sampler settings, as ``FitSettings.to_attrs()`` or a JSON-ready
    dict (see :func:`markov_migration.fitfile.format.provenance`). ``sampled``: names
    of the posterior's free (sampled) variables, recorded as the root attribute
    :data:`SAMPLED_ATTR` (JSON list) for the convergence diagnostics. ``log_likelihood``:
    the pointwise log-likelihood when the model computes its own (latent-state fits:
    per respondent's history); default per aggregated transition. ``log_prior``: the
    prior log-density of each sampled variable at each draw (group ``log_prior``, for
    prior sensitivity), when the fitting layer computed it.
    """
    posterior = sanitize(posterior)
    order = [d for d in SAMPLE_DIMS if d in posterior.dims]
    posterior = posterior.transpose(*order, ...)
    if "Q" in posterior:
        posterior["Q"].attrs.update(
            units=f"moves per {spec.time_unit[:-1]}", description="generator matrix"
        )
    posterior = _label_posterior(spec, agg, posterior)
    groups = {
        "posterior": posterior,
        "sample_stats": sanitize(sample_stats),
        "log_likelihood": (
            log_likelihood_dataset(spec, agg, posterior)
            if log_likelihood is None
            else log_likelihood
        ),
        "observed_data": observed_dataset(agg),
        "constant_data": xr.merge([constant_dataset(spec, agg), design_dataset(spec, agg)]),
    }
    if log_prior is not None:
        groups["log_prior"] = sanitize(log_prior)
    if panel is not None and len(panel.data) <= MAX_EMBEDDED_OBSERVATIONS:
        groups["panel_data"] = panel_dataset(panel, spec)
    tree = xr.DataTree.from_dict(groups)
    tree.attrs = provenance(spec, agg, settings, command)
    if sampled is not None:
        missing = [v for v in sampled if v not in posterior]
        if missing:
            raise ValueError(f"sampled variables {missing} are not in the posterior")
        tree.attrs[SAMPLED_ATTR] = json.dumps(list(sampled))
    return tree


def recorded_sampled(tree: xr.DataTree) -> list[str] | None:
    """The sampled variables recorded in a fit file, or None if it records none.

    Fit files written before the record existed return None; callers fall back to
    :data:`LEGACY_SAMPLED`.
    """
    raw = tree.attrs.get(SAMPLED_ATTR)
    if raw is None:
        return None
    try:
        names = json.loads(str(raw))
    except json.JSONDecodeError:
        return None
    return [str(v) for v in names] if isinstance(names, list) else None

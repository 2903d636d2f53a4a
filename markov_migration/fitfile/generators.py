"""Generator matrices from a fit's posterior draws (no PyMC here).

The intensities at chosen covariate values, host group and period, rebuilt from the
stored log-rates, effects and design; shared by summaries, checks and projection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from markov_migration.defaults import TIME_TOL
from markov_migration.errors import FitFileError, InputError
from markov_migration.fitfile.format import fit_spec
from markov_migration.inputs.spec import ModelSpec


def design_generators(
    spec: ModelSpec,
    design,
    posterior: xr.Dataset,
    draws: np.ndarray,
    *,
    x: np.ndarray | None = None,
    group: np.ndarray | None = None,
) -> np.ndarray:
    """The design's generators for chosen draws: shape (len(draws), M, K, K).

    ``draws`` index the flattened (chain, draw) samples; ``design`` is
    :func:`markov_migration.inputs.design.model_design` of the fit's model and data.
    ``x`` (M, n_effects) and ``group`` (M,) choose other generators than the
    likelihood's (e.g. a latent fit's record patterns,
    :class:`markov_migration.inputs.latent_design.RecordGenerators`).
    """
    from markov_migration.inputs.likelihood_arrays import generators_from_rates

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
    lr = design.log_rates(log_rate, log_hr, effect, x=x, group=group)
    return np.ascontiguousarray(generators_from_rates(np.exp(lr), spec))


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
    from markov_migration.inputs.likelihood_arrays import generators_from_rates

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


def chosen_generators(tree, spec, covariates, group, period, at, seed) -> tuple[xr.DataArray, dict]:
    """Q draws at given covariate values, group and period, and the choice made.

    The checks and defaults of :func:`posterior_generators` (a fit with groups
    needs ``group``, one with periods ``period`` or ``at``); returns the
    ``(chain, draw, from_state, to_state)`` draws and the choice as a dict.
    Shared with :func:`markov_migration.results.summaries.at_generator`.
    """
    from markov_migration.fitfile.generators import generator_draws, new_group_generators

    post = tree["posterior"]
    if "group_effect" in post:
        groups = [str(g) for g in post["group"].values]
        if group is None:
            column = spec.groups.column if spec.groups is not None else "group"
            raise InputError(
                f"the fit has {column} groups: choose one with --group "
                f"({', '.join(groups)}), or --group new for a {column} not in the data"
            )
        if group != "new" and str(group) not in groups:
            raise InputError(
                f"'{group}' is not a group of the fit (groups: {', '.join(groups)}; "
                "or 'new' for a group not in the data)"
            )
    elif group is not None:
        raise InputError(f"--group {group}: the fit has no groups")
    if "period" in post.coords:
        labels = [str(x) for x in post["period"].values]
        if period is None:
            if at is None:
                raise InputError(f"the fit has periods: choose one ({', '.join(labels)})")
            period = int(np.searchsorted(np.asarray(spec.periods), at + TIME_TOL, side="right"))
        elif isinstance(period, str) and period.strip().lstrip("-").isdigit():
            period = int(period)
        if isinstance(period, int) and not -len(labels) <= period < len(labels):
            raise InputError(f"period {period} out of range (periods: {', '.join(labels)})")
        if isinstance(period, int):
            period = labels[period]
    elif period is not None:
        raise InputError(f"--period {period}: the fit has no periods")
    choice = {"covariates": dict(covariates or {}), "group": group, "period": period}
    # covariates on misclassification only (no transitions) leave Q unchanged: the
    # generator is the baseline's (the choice still records them)
    misc_only = {c.name for c in spec.covariates if c.misclassification and not c.transitions}
    covariates = {n: v for n, v in (covariates or {}).items() if n not in misc_only}
    if group == "new":
        choice["new_group_seed"] = seed
    try:
        if group == "new":
            return new_group_generators(tree, dict(covariates or {}), period, seed=seed), choice
        return generator_draws(tree, dict(covariates or {}), group, period), choice
    except InputError:
        raise
    except (ValueError, TypeError) as exc:  # e.g. a numeric covariate given as text
        raise InputError(f"covariate values {dict(covariates or {})}: {exc}") from None


def _draws(posterior: xr.Dataset, name: str, dims: tuple[str, ...], labels: dict) -> np.ndarray:
    """Draws of a posterior variable as (chain * draw, *dims), in the order of ``labels``."""
    if name not in posterior:
        raise FitFileError(f"posterior has no '{name}', which this model needs")
    var = posterior[name].sel({d: labels[d] for d in dims if d in labels})
    arr = var.transpose("chain", "draw", *dims).to_numpy()
    return arr.reshape(-1, *arr.shape[2:])

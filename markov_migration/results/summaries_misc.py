"""Misclassification probabilities of a latent fit, at chosen covariate values (layer 4).

``summarize --what misclassification``: the posterior of ``e_rs``, the probability
that a respondent truly in ``r`` is recorded as ``s``, for the true states with
possible errors (``[misclassification]``). With covariates on misclassification
(``[covariates.NAME] misclassification``, R msm's ``misccovariates``) the matrix
depends on the record's covariates: ``--covariate sex=m`` gives it at that value
(covariates not given at their reference level or centre, the baseline the fit's
``misclassification`` is reported at), as
:func:`markov_migration.inputs.misc_covariates.pattern_emissions` computes it.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec

__all__ = ["misclassification", "misclassification_only_covariates"]


def misclassification_only_covariates(spec) -> set[str]:
    """Covariates that act on misclassification only (they leave ``Q`` unchanged)."""
    return {c.name for c in spec.covariates if c.misclassification and not c.transitions}


def misclassification(tree: xr.DataTree, covariates: dict | None = None) -> xr.DataArray:
    """Posterior draws of the misclassification probabilities at given covariate values.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit of a model with ``[misclassification]``.
    covariates : dict, optional
        ``{name: value}`` of covariates on misclassification (a level of a categorical
        one, a number in the data's unit for a numeric one); others at the baseline.

    Returns
    -------
    xarray.DataArray
        Dims (chain, draw, from_state, to_state): ``from_state`` the true state,
        ``to_state`` the recorded one; entries that cannot occur (true states without
        errors, undeclared errors) are NaN, so tables leave them out.
    """
    from markov_migration.inputs.misc_covariates import (
        MISC_EFFECT_DIM,
        MISC_LOG_OR,
        pattern_emissions,
    )

    spec = fit_spec(tree)
    post = tree["posterior"]
    if spec.observation is None or not spec.observation.misclassification:
        raise InputError(
            f"model '{spec.name}' has no [misclassification] table, so the fit has no "
            "misclassification probabilities"
        )
    covariates = dict(covariates or {})
    on_misc = {c.name: c for c in spec.covariates if c.misclassification}
    unknown = sorted(set(covariates) - set(on_misc))
    if unknown:
        raise InputError(
            f"--covariate {unknown[0]}: not a covariate on misclassification "
            f"(those are: {', '.join(on_misc) or 'none'})"
        )
    k = spec.n_states
    e = post["misclassification"].transpose(*SAMPLE_DIMS, "true_state", "recorded_state")
    values = e.to_numpy()
    choice = {}
    if MISC_LOG_OR in post:
        beta = post[MISC_LOG_OR].transpose(*SAMPLE_DIMS, MISC_EFFECT_DIM)
        labels = [str(v) for v in beta[MISC_EFFECT_DIM].values]
        x = np.zeros(len(labels))
        shift = np.zeros((1, k, k, len(labels)))
        for name, value in covariates.items():
            cov = on_misc[name]
            for j, label in enumerate(labels):
                tag, pair = label.split(": ", 1)
                if cov.kind == "categorical" and tag.startswith(f"{name}["):
                    x[j] = float(tag == f"{name}[{value}]")
                elif cov.kind == "numeric" and tag == name:
                    x[j] = _number(value, name) - _centre(tree, name)
            if cov.kind == "categorical":
                levels = _levels(tree, beta, name)
                if str(value) not in levels:
                    raise InputError(
                        f"--covariate {name}={value}: not a level of '{name}' "
                        f"(levels: {', '.join(levels)})"
                    )
            choice[name] = str(value)
        for j, label in enumerate(labels):
            pair = label.split(": ", 1)[1]
            r, s = (spec.states.index(v) for v in pair.split("->"))
            shift[0, r, s, j] = x[j]
        values = pattern_emissions(values, shift, beta.to_numpy())[..., 0, :, :]
    elif covariates:
        raise InputError("the fit has no covariates on misclassification")
    possible = np.zeros((k, k), dtype=bool)
    for r, targets in spec.observation.misclassification:
        possible[r, [r, *targets]] = True
    values = np.where(possible, values, np.nan)
    note = "from_state: the true state; to_state: the recorded state"
    return xr.DataArray(
        values,
        dims=(*SAMPLE_DIMS, "from_state", "to_state"),
        coords={
            **{d: e.coords[d] for d in SAMPLE_DIMS if d in e.coords},
            "from_state": list(spec.states),
            "to_state": list(spec.states),
        },  # fmt: skip
        attrs={
            "quantity": "misclassification",
            "description": "probability that a respondent in from_state is recorded as to_state"
            + (f" ({', '.join(f'{a}={b}' for a, b in choice.items())})" if choice else ""),
            "units": "probability",
            "notes": json.dumps([note]),
        },
    )


def _levels(tree: xr.DataTree, beta: xr.DataArray, name: str) -> list[str]:
    """Levels of a categorical covariate on misclassification, the reference first."""
    from markov_migration.inputs.misc_covariates import MISC_EFFECT_DIM

    cd = tree["constant_data"] if "constant_data" in tree.children else None
    seen = []
    if cd is not None and "reference_level" in cd:
        ref = cd["reference_level"]
        if name in [str(v) for v in ref["categorical_covariate"].values]:
            seen.append(str(ref.sel(categorical_covariate=name).values))
    for label in beta[MISC_EFFECT_DIM].values:
        tag = str(label).split(": ", 1)[0]
        if tag.startswith(f"{name}[") and tag[len(name) + 1 : -1] not in seen:
            seen.append(tag[len(name) + 1 : -1])
    return seen


def _number(value, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InputError(f"--covariate {name}={value}: expected a number") from None


def _centre(tree: xr.DataTree, name: str) -> float:
    """The numeric covariate's centre (its mean over the fit's observed pairs)."""
    cd = tree["constant_data"] if "constant_data" in tree.children else None
    if cd is None or "covariate_center" not in cd:
        raise InputError(f"the fit file has no centre of covariate '{name}'")
    return float(cd["covariate_center"].sel(numeric_covariate=name))

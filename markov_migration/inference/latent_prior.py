"""Prior-only fits of latent-state models (``fit --prior-only`` with an observation model).

Layer 3 (inference). The prior is the latent model itself:
:func:`markov_migration.inference.latent.build_latent_model`, whose likelihood
term (a Potential) :func:`pymc.sample_prior_predictive` leaves out, exactly as
:mod:`markov_migration.inference.prior` (which draws, and calls these two
functions) does for the pure-panel model. The draws are laid out as
:func:`~markov_migration.inference.latent.sample_latent` lays out a posterior
(``Q`` on the observed states from ``Q_latent`` with phases, ``misclassification``,
``initial``, ``response``, ``attrition``), with each respondent's whole-history
log-likelihood at the prior draws in ``log_likelihood``, so every command reads
the file as it reads a latent fit.
"""

from __future__ import annotations

import xarray as xr

from markov_migration.inference.latent import (
    assemble_latent_fit,
    kept_variables,
    latent_model_and_context,
)


def latent_prior_model(spec, panel, agg=None):
    """The latent model and the variables a prior-only fit keeps.

    Parameters
    ----------
    spec : ModelSpec
        With ``spec.observation.latent``.
    panel : Panel
        The validated panel (a latent model needs respondents' histories).
    agg : AggregatedData, optional
        Its aggregation (covariate and group levels of the design).

    Returns
    -------
    model : pymc.Model
    keep : list of str
        Variables to draw (the posterior variables of a latent fit, every free one).
    sampled : list of str
        The free variables.
    histories : tuple
        (histories, respondents, node of each, design, generators), as
        :func:`~markov_migration.inference.latent.sample_latent` builds them.
    """
    model, context = latent_model_and_context(spec, panel, agg)
    names = [v.name for v in (*model.free_RVs, *model.deterministics)]
    sampled = [rv.name for rv in model.free_RVs]
    return model, kept_variables(names, sampled), sampled, context


def latent_prior_fit(
    spec, agg, settings, model, posterior, stats, sampled, histories, *, command=None, panel=None
) -> xr.DataTree:
    """The fit tree of a latent model's prior draws (as ``sample_latent`` assembles a fit).

    Parameters
    ----------
    spec, agg, settings
        As :func:`markov_migration.inference.prior.sample_prior`.
    model : pymc.Model
    posterior : xarray.Dataset
        Prior draws of :func:`latent_prior_model`'s ``keep``, dims ``(chain, draw, ...)``.
    stats : xarray.Dataset
    sampled : list of str
    histories : tuple
        From :func:`latent_prior_model`.
    command : str, optional
    panel : Panel

    Returns
    -------
    xarray.DataTree
        Without the root attribute ``prior_only`` (the caller sets it).
    """
    from markov_migration.fitfile.format import settings_attrs

    attrs = settings_attrs({**settings.as_dict(), "sampler": "prior"})
    return assemble_latent_fit(
        spec, agg, model, posterior, stats, attrs, sampled, histories,
        command=command, panel=panel,
    )  # fmt: skip


__all__ = ["latent_prior_fit", "latent_prior_model"]

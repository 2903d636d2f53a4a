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
    EFFECT_VARIABLES,
    LATENT_VARIABLES,
    build_latent_model,
    check_latent_supported,
    latent_design,
    latent_histories,
    latent_layout,
    recorded_pairs,
)
from markov_migration.inference.latent_draws import history_loglik_draws, observed_from_latent


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
    check_latent_supported(spec, panel)
    design, generators = latent_design(spec, panel, agg)
    histories, respondents, nodes = latent_histories(spec, panel, generators)
    model = build_latent_model(spec, panel, histories, design=(design, generators))
    names = [v.name for v in (*model.free_RVs, *model.deterministics)]
    sampled = [rv.name for rv in model.free_RVs]
    keep = ["log_rate", "rate", "Q", *LATENT_VARIABLES, *EFFECT_VARIABLES]
    keep += [v for v in names if v.startswith("misclassification_")]
    keep += [v for v in sampled if v not in keep]
    context = (histories, respondents, nodes, design, generators)
    return model, [v for v in keep if v in names], sampled, context


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
    from markov_migration.fitfile.assemble import assemble_fit
    from markov_migration.fitfile.format import settings_attrs
    from markov_migration.inference.log_prior import log_prior_dataset

    layout = latent_layout(spec)
    if layout.phased:
        posterior = observed_from_latent(spec, layout, posterior)
    loglik = history_loglik_draws(spec, layout, posterior, *histories)
    agg = recorded_pairs(spec, agg)  # observed_data, as sample_latent keeps it
    attrs = settings_attrs({**settings.as_dict(), "sampler": "prior"})
    return assemble_fit(
        spec, agg, posterior, stats, attrs, command, panel, log_likelihood=loglik,
        sampled=sampled, log_prior=log_prior_dataset(model, posterior, sampled),
    )  # fmt: skip


__all__ = ["latent_prior_fit", "latent_prior_model"]

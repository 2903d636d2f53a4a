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
    LATENT_VARIABLES,
    _history_loglik,
    _observed_from_latent,
    build_latent_model,
    check_latent_supported,
    latent_histories,
    latent_layout,
)


def latent_prior_model(spec, panel):
    """The latent model and the variables a prior-only fit keeps.

    Parameters
    ----------
    spec : ModelSpec
        With ``spec.observation.latent``.
    panel : Panel
        The validated panel (a latent model needs respondents' histories).

    Returns
    -------
    model : pymc.Model
    keep : list of str
        Variables to draw (the posterior variables of a latent fit, every free one).
    sampled : list of str
        The free variables.
    histories : tuple
        ``latent_histories(spec, panel)`` (histories, respondents, node of each).
    """
    check_latent_supported(spec, panel)
    histories = latent_histories(spec, panel)
    model = build_latent_model(spec, panel, histories[0])
    names = [v.name for v in (*model.free_RVs, *model.deterministics)]
    sampled = [rv.name for rv in model.free_RVs]
    keep = ["log_rate", "rate", "Q", *LATENT_VARIABLES]
    keep += [v for v in names if v.startswith("misclassification_")]
    keep += [v for v in sampled if v not in keep]
    return model, [v for v in keep if v in names], sampled, histories


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
        posterior = _observed_from_latent(spec, layout, posterior)
    loglik = _history_loglik(spec, layout, posterior, *histories)
    # observed_data: the pairs of exactly recorded states, as sample_latent keeps them
    k = spec.n_states
    table = agg.table
    exact_pairs = table[(table["from"] < k) & (table["to"] < k)].reset_index(drop=True)
    agg = type(agg)(**{**agg.__dict__, "table": exact_pairs, "states": spec.states})
    attrs = settings_attrs({**settings.as_dict(), "sampler": "prior"})
    return assemble_fit(
        spec, agg, posterior, stats, attrs, command, panel, log_likelihood=loglik,
        sampled=sampled, log_prior=log_prior_dataset(model, posterior, sampled),
    )  # fmt: skip


__all__ = ["latent_prior_fit", "latent_prior_model"]

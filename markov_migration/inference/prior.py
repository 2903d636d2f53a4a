"""Prior-only fits (``fit --prior-only``): a fit file of draws from the model's prior.

Layer 4 (inference). The PyMC model of :mod:`markov_migration.inference.model` is the
one definition of the prior: :func:`sample_prior` draws every free variable and every
derived quantity (``rate``, ``Q`` or ``P``, hazard ratios, ...) from it with
:func:`pymc.sample_prior_predictive` (independent draws, no MCMC), ignores the
likelihood, and writes them where a fit keeps its posterior, so every summary,
check and ``project`` reads the file as it reads a fit: summaries are then prior
summaries, the predictive checks prior predictive checks, and a projection the
prior predictive of the stocks. The file says so: root attribute ``prior_only =
1`` and sampler ``prior``; its ``log_likelihood`` is that of the data at the prior
draws (for prior predictive checks and power-scaling), and its sample stats only
``diverging`` (all False: the draws are exact).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.inference.prior_draws import draw_prior

#: Root attribute of a prior-only fit file (1: the "posterior" group holds prior draws).
PRIOR_ONLY_ATTR = "prior_only"


def sample_prior(spec, agg, settings, *, command: str | None = None, panel=None) -> xr.DataTree:
    """Draw ``chains x draws`` independent samples from the model's prior; the fit DataTree.

    Parameters
    ----------
    spec : ModelSpec
    agg : AggregatedData
    settings : FitSettings
        ``chains`` and ``draws`` set the shape, ``seed`` the draws; ``tune`` and
        the sampler are not used (recorded as ``sampler = "prior"``).
    command : str, optional
    panel : Panel, optional

    Latent-state models (``[observation]``, ``[misclassification]``, ``[phases]``,
    ``[nonresponse]``) draw from their own model's prior
    (:mod:`markov_migration.inference.latent_prior`).
    """
    from markov_migration.fitfile.assemble import assemble_fit
    from markov_migration.inference.model import (
        POSTERIOR_VARIABLES,
        build_model,
        check_supported,
        sampled_variables,
    )
    from markov_migration.inputs.obstype import with_panel_obstype

    settings.check()
    spec = with_panel_obstype(spec, panel)  # exact times flagged in the data: latent
    if spec.observation.latent:
        from markov_migration.inference.latent_prior import latent_prior_fit, latent_prior_model

        model, keep, sampled, histories = latent_prior_model(spec, panel, agg)
        posterior = draw_prior(model, keep, settings)
        tree = latent_prior_fit(
            spec, agg, settings, model, posterior, prior_sample_stats(posterior), sampled,
            histories, command=command, panel=panel,
        )  # fmt: skip
        tree.attrs[PRIOR_ONLY_ATTR] = 1
        return tree
    check_supported(spec)
    model = build_model(spec, agg)
    sampled = sampled_variables(model)
    names = [v.name for v in (*model.free_RVs, *model.deterministics)]
    keep = [v for v in POSTERIOR_VARIABLES if v in names]
    keep += [v for v in names if v.startswith("p_") and v not in keep]
    keep += [v for v in sampled if v not in keep]
    posterior = draw_prior(model, keep, settings)
    stats = prior_sample_stats(posterior)
    from markov_migration.fitfile.format import settings_attrs

    attrs = settings_attrs({**settings.as_dict(), "sampler": "prior"})
    from markov_migration.inference.log_prior import log_prior_dataset

    log_prior = log_prior_dataset(model, posterior, sampled)
    tree = assemble_fit(
        spec, agg, posterior, stats, attrs, command, panel, sampled=sampled, log_prior=log_prior
    )
    tree.attrs[PRIOR_ONLY_ATTR] = 1
    return tree


def prior_sample_stats(posterior: xr.Dataset) -> xr.Dataset:
    """Sample stats of exact prior draws: ``diverging``, all False."""
    shape = tuple(posterior.sizes[d] for d in SAMPLE_DIMS)
    return xr.Dataset(
        {"diverging": (SAMPLE_DIMS, np.zeros(shape, dtype=bool))},
        coords={d: posterior[d] for d in SAMPLE_DIMS},
    )

"""Independent draws from a PyMC model's prior, laid out as a posterior (layer 3).

Used by ``fit --prior-only`` (:mod:`markov_migration.inference.prior`) and by the
diagnosis of impossible latent histories
(:mod:`markov_migration.inference.latent_impossible`).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS

__all__ = ["draw_prior"]


def draw_prior(model, keep: list[str], settings) -> xr.Dataset:
    """``chains x draws`` prior draws of the variables ``keep``, laid out as a posterior."""
    import pymc as pm

    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.WARNING)  # not PyMC's "Sampling: [...]" line
    try:
        with model, warnings.catch_warnings():
            # the likelihood is a Potential: ignoring it is the point of prior draws
            warnings.filterwarnings("ignore", message="The effect of Potentials")
            idata = pm.sample_prior_predictive(
                draws=settings.chains * settings.draws, var_names=keep,
                random_seed=settings.seed, return_inferencedata=True,
            )  # fmt: skip
    finally:
        logger.setLevel(level)
    prior = idata["prior"].to_dataset() if isinstance(idata, xr.DataTree) else idata.prior
    prior = prior[keep].isel(chain=0, drop=True)
    return _as_chains(prior, settings.chains, settings.draws).transpose(*SAMPLE_DIMS, ...)


def _as_chains(prior: xr.Dataset, chains: int, draws: int) -> xr.Dataset:
    """Independent draws ``(draw,)`` laid out as ``(chain, draw)`` like a posterior."""
    chain_dim, draw_dim = SAMPLE_DIMS
    out = {}
    for name, da in prior.data_vars.items():
        da = da.transpose(draw_dim, ...)
        values = da.to_numpy().reshape((chains, draws) + da.shape[1:])
        out[name] = ((chain_dim, draw_dim, *da.dims[1:]), values)
    coords = {k: v for k, v in prior.coords.items() if draw_dim not in prior[k].dims}
    coords.update({chain_dim: np.arange(chains), draw_dim: np.arange(draws)})
    return xr.Dataset(out, coords=coords)

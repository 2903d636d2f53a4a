"""The log prior of a fit's draws, from the PyMC model itself (for prior sensitivity).

Layer 4 (inference). :func:`log_prior_dataset` evaluates, for every draw, the prior
log-density of each sampled variable with :func:`pymc.stats.compute_log_prior` on the
model that was fitted, so the fit file's ``log_prior`` group is the model's own prior
(no second definition of the priors). :mod:`markov_migration.results.sensitivity`
reads it for ArviZ's power-scaling sensitivity (``psense``).
"""

from __future__ import annotations

import logging
import warnings

import xarray as xr

logger = logging.getLogger(__name__)


def log_prior_dataset(model, posterior: xr.Dataset, sampled: list[str]) -> xr.Dataset | None:
    """Elementwise log prior of the sampled variables at every draw, or None if it fails.

    A failure (an operation the backend cannot evaluate) never fails the fit: the
    file then has no ``log_prior`` group and ``check`` says prior sensitivity is
    unavailable.
    """
    import pymc as pm

    names = [v for v in sampled if v in posterior]
    if not names:
        return None
    data = xr.DataTree.from_dict({"posterior": posterior[names]})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = pm.stats.compute_log_prior(
                data, var_names=names, model=model, extend_inferencedata=False,
                progressbar=False,
            )  # fmt: skip
    except Exception as err:  # noqa: BLE001 - optional output, reported in the log
        logger.warning("log prior not computed: %s", err)
        return None
    if isinstance(out, xr.DataTree):
        out = out["log_prior"].to_dataset() if "log_prior" in out.children else out.to_dataset()
    return out

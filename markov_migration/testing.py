"""Helpers for tests: fit files with fake posteriors, so results code is tested without MCMC.

A fake fit has the exact layout of a real one (see :mod:`markov_migration.fitfile.format`);
its posterior draws are log-normal perturbations of known rates, not samples of a
posterior, so use it to test code that *reads* fits, never to test inference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.fitfile.assemble import assemble_fit
from markov_migration.inference.fit import FitSettings
from markov_migration.inputs.aggregate import AggregatedData, aggregate
from markov_migration.inputs.panel import Panel, validate_panel
from markov_migration.inputs.spec import ModelSpec


def _sample_coords(chains: int, draws: int) -> dict[str, np.ndarray]:
    """Coordinates of the sample dims: chain and draw numbers from 0."""
    return dict(zip(SAMPLE_DIMS, (np.arange(chains), np.arange(draws)), strict=True))


def fake_posterior(
    spec: ModelSpec,
    rates: np.ndarray | None = None,
    *,
    chains: int = 2,
    draws: int = 100,
    spread: float = 0.1,
    seed: int = 0,
) -> xr.Dataset:
    """Posterior-shaped draws of ``log_rate``, ``rate`` and ``Q`` around known rates.

    Parameters
    ----------
    spec : ModelSpec
        Continuous-time model.
    rates : ndarray, optional
        Rates of ``spec.transitions`` (per time unit); default the model's ``[rates]``.
    chains, draws : int
    spread : float
        Log-scale sd of the perturbation.
    seed : int
    """
    rng = np.random.default_rng(seed)
    if rates is None:
        rates = np.array([spec.rates[p] for p in spec.transitions])
    log_rate = np.log(rates) + spread * rng.standard_normal((chains, draws, len(rates)))
    rate = np.exp(log_rate)
    k = spec.n_states
    q = np.zeros((chains, draws, k, k))
    for i, (r, s) in enumerate(spec.transitions):
        q[:, :, r, s] = rate[:, :, i]
    q[:, :, np.arange(k), np.arange(k)] = -q.sum(axis=-1)
    coords = {
        **_sample_coords(chains, draws),
        "transition": list(spec.transition_labels),
        "from_state": list(spec.states),
        "to_state": list(spec.states),
    }
    return xr.Dataset(
        {
            "log_rate": ((*SAMPLE_DIMS, "transition"), log_rate),
            "rate": ((*SAMPLE_DIMS, "transition"), rate),
            "Q": ((*SAMPLE_DIMS, "from_state", "to_state"), q),
        },
        coords=coords,
    )


def fake_sample_stats(chains: int, draws: int, seed: int = 0) -> xr.Dataset:
    """Sample statistics of a well-behaved run (no divergences)."""
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {
            "diverging": (SAMPLE_DIMS, np.zeros((chains, draws), dtype=bool)),
            "energy": (SAMPLE_DIMS, rng.standard_normal((chains, draws)) + 10),
            "tree_depth": (SAMPLE_DIMS, np.full((chains, draws), 3)),
            "step_size": (SAMPLE_DIMS, np.full((chains, draws), 0.5)),
        },
        coords=_sample_coords(chains, draws),
    )


def _fake_data(spec: ModelSpec, panel: pd.DataFrame) -> tuple[Panel, AggregatedData]:
    """The validated panel (SHA-256 of zeros) and its aggregated data."""
    validated = validate_panel(panel, spec, path="<fake panel>", sha256="0" * 64)
    return validated, aggregate(validated, spec)


def fake_fit(
    spec: ModelSpec,
    panel: pd.DataFrame,
    *,
    chains: int = 2,
    draws: int = 100,
    spread: float = 0.1,
    seed: int = 0,
) -> xr.DataTree:
    """A fit-file DataTree for ``panel`` (long format) with a fake posterior.

    Examples
    --------
    >>> from markov_migration.inputs.spec import load_spec  # doctest: +SKIP
    >>> from markov_migration.inputs.simulate import simulate_panel  # doctest: +SKIP
    >>> spec = load_spec("models/migration5.toml")  # doctest: +SKIP
    >>> tree = fake_fit(spec, simulate_panel(spec, 500, seed=1))  # doctest: +SKIP
    """
    validated, agg = _fake_data(spec, panel)
    posterior = fake_posterior(spec, chains=chains, draws=draws, spread=spread, seed=seed)
    return _assemble_fake(spec, agg, posterior, validated, seed, "fake_fit", ["log_rate"])


def fake_design_fit(
    spec: ModelSpec,
    panel: pd.DataFrame,
    *,
    chains: int = 2,
    draws: int = 100,
    spread: float = 0.1,
    effect_sd: float = 0.1,
    group_sd: float = 0.5,
    seed: int = 0,
) -> xr.DataTree:
    """Like :func:`fake_fit` for a model with covariates, groups or periods.

    Log hazard ratios are ``Normal(0, effect_sd)`` draws, group standard
    deviations near ``group_sd`` and group effects their non-centred products;
    ``Q`` of every pattern, group and period is built from them exactly as the
    fitting layer does, so the fit file has the real layout.
    """
    from markov_migration.inputs.design import model_design
    from markov_migration.inputs.likelihood_arrays import generators_from_rates

    validated, agg = _fake_data(spec, panel)
    design = model_design(spec, agg)
    rng = np.random.default_rng(seed)
    base = fake_posterior(spec, chains=chains, draws=draws, spread=spread, seed=seed)
    log_rate = base["log_rate"].to_numpy()
    shape = (chains, draws)
    sample = SAMPLE_DIMS
    post = {"log_rate": base["log_rate"], "rate": base["rate"]}
    coords = dict(design.coords())
    lhr = effect = None
    if design.has_effects:
        par = effect_sd * rng.standard_normal((*shape, len(design.parameter_labels)))
        lhr = par[..., design.effect_parameter]
        # the sampled variable: per sd of the covariate, as the fitting layer samples it
        scaled = par * np.asarray(design.parameter_scale, dtype=float)
        post["log_hr_scaled"] = ((*sample, "hr_parameter"), scaled)
        post["log_hazard_ratio"] = ((*sample, "covariate_effect"), lhr)
        post["hazard_ratio"] = ((*sample, "covariate_effect"), np.exp(lhr))
    if design.has_groups:
        n_gt = len(design.group_transitions)
        sd = np.abs(rng.normal(group_sd, 0.05 * group_sd, (*shape, n_gt)))
        z = rng.standard_normal((*shape, len(design.group_levels), n_gt))
        effect = z * sd[..., None, :]
        post["group_sd"] = ((*sample, "group_transition"), sd)
        post["group_z"] = ((*sample, "group", "group_transition"), z)
        post["group_effect"] = ((*sample, "group", "group_transition"), effect)
    # the reported generators (pattern x group x period grid), as the fitting layer builds them
    out = design.log_rates(log_rate, lhr, effect, x=design.grid_x, group=design.grid_group)
    k = spec.n_states
    q = generators_from_rates(np.exp(out), spec).reshape(*shape, *design.grid_shape, k, k)
    post["Q"] = ((*sample, *design.grid_dims, "from_state", "to_state"), q)
    posterior = xr.Dataset(
        post,
        coords={**coords, **_sample_coords(chains, draws),
                "from_state": list(spec.states), "to_state": list(spec.states)},
    )  # fmt: skip
    sampled = [v for v in ("log_rate", "log_hr_scaled", "group_sd", "group_z") if v in post]
    return _assemble_fake(spec, agg, posterior, validated, seed, "fake_design_fit", sampled)


def _assemble_fake(spec, agg, posterior, validated, seed, command, sampled) -> xr.DataTree:
    """The fit file of a fake posterior: well-behaved sample stats, sampler 'fake'.

    ``sampled`` is recorded as the fit's sampled variables, as a real fit records the
    PyMC model's free variables.
    """
    chains, draws = (posterior.sizes[d] for d in SAMPLE_DIMS)
    stats = fake_sample_stats(chains, draws, seed)
    settings = FitSettings(chains=chains, draws=draws, tune=0, seed=seed, sampler="fake")
    return assemble_fit(
        spec, agg, posterior, stats, settings.to_attrs(), command, validated, sampled=sampled
    )

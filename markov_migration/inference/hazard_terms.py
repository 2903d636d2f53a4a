"""Covariate and group terms of the log-intensities, shared by the pure-panel and latent models.

Layer 3 (PyMC). See :mod:`markov_migration.inputs.design` for the log-linear
structure: ``log q_m = log_rate + x_m (log_hr * effect) + group_effect[group_m]``.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from markov_migration.inputs.design import ModelDesign
from markov_migration.inputs.spec import ModelSpec


def hazard_terms(design: ModelDesign, log_rate, generator_x, generator_group, hr_scale):
    """Add the hazard-ratio and group variables to the current model; return log-intensities.

    Parameters
    ----------
    design : ModelDesign
        Effects, groups and the reported grid.
    log_rate : TensorVariable (T,)
        Baseline log-intensities (per unit of the model's time).
    generator_x : TensorVariable (M, n_effects)
        Covariate values of the likelihood's generators (unused without effects).
    generator_group : TensorVariable of int (M,)
        Group of each likelihood generator (unused without groups).
    hr_scale : TensorVariable (n_parameters,)
        Scale of each free log hazard ratio's covariate.

    Returns
    -------
    log_q : TensorVariable (M, T)
        Log-intensities of the likelihood's generators (M = 1 without effects and groups).
    log_q_grid : TensorVariable (n_grid, T)
        Log-intensities of the reported generators ``Q`` (``design.grid_dims``).
    """
    spec = design.spec
    log_q = log_rate[None, :]
    log_q_grid = log_rate[None, :]
    if design.has_effects:
        # Sampled per sd of the covariate; reported per unit (exactly msm's hazard ratios).
        scaled = pm.Normal(
            "log_hr_scaled", 0.0, sigma=design.parameter_sd * hr_scale, dims="hr_parameter"
        )
        per_unit = (scaled / hr_scale)[design.effect_parameter]
        log_hr = pm.Deterministic("log_hazard_ratio", per_unit, dims="covariate_effect")
        pm.Deterministic("hazard_ratio", pt.exp(log_hr), dims="covariate_effect")
        effect_t = design.effect_transition
        log_q = log_q + pt.dot(generator_x * log_hr[None, :], effect_t)
        log_q_grid = log_q_grid + pt.dot(design.grid_x * log_hr[None, :], effect_t)
    if design.has_groups:
        group_sd = pm.HalfNormal("group_sd", sigma=spec.groups.sd_prior, dims="group_transition")
        group_z = pm.Normal("group_z", 0.0, 1.0, dims=("group", "group_transition"))
        effect = pm.Deterministic(
            "group_effect", group_z * group_sd[None, :], dims=("group", "group_transition")
        )
        group_t = design.group_transition
        log_q = log_q + pt.dot(effect[generator_group], group_t)
        log_q_grid = log_q_grid + pt.dot(effect[design.grid_group], group_t)
    return log_q, log_q_grid


def generator_matrix(rate: pt.TensorVariable, spec: ModelSpec) -> pt.TensorVariable:
    """Generators (..., K, K) from rates (..., T) of the allowed transitions (PyTensor)."""
    k = spec.n_states
    frm = np.array([r for r, _ in spec.transitions], dtype=np.int64)
    to = np.array([s for _, s in spec.transitions], dtype=np.int64)
    rate = pt.as_tensor_variable(rate)
    lead = tuple(rate.shape[i] for i in range(rate.ndim - 1))
    off = pt.set_subtensor(pt.zeros((*lead, k, k))[..., frm, to], rate)
    return off - off.sum(axis=-1)[..., None] * pt.eye(k)


def phased_generators(spec: ModelSpec, layout, design: ModelDesign, generators, log_rate_latent):
    """Hidden generators (M, K_h, K_h) of the record patterns of a phase-type model (PyTensor).

    The covariate, group and period terms of each observed transition ``r -> s``
    (:func:`hazard_terms` on zero baseline log-rates) are added to the
    log-intensity of every phase exit ``r_k -> s``
    (:func:`markov_migration.core.phases.transition_lift`: msm's covariates on the
    expanded generator, one effect shared by a transition's phase exits); the
    progressions carry none.

    Parameters
    ----------
    spec : ModelSpec
    layout : LatentLayout
        The hidden space (``rate_from``, ``rate_to``, ``rate_observed``).
    design : ModelDesign
    generators : RecordGenerators
        Covariate values and group of each likelihood generator.
    log_rate_latent : TensorVariable (n_rates,)
        Baseline hidden log-intensities (per time unit).
    """
    from markov_migration.core.phases import transition_lift

    shift, _ = hazard_terms(
        design, pt.zeros(len(spec.transitions)), pt.as_tensor_variable(generators.generator_x),
        pt.as_tensor_variable(generators.generator_group),
        pt.as_tensor_variable(design.parameter_scale),
    )  # fmt: skip
    lift = pt.as_tensor_variable(transition_lift(layout.rate_observed, spec.transitions))
    log_q = log_rate_latent[None, :] + pt.dot(shift, lift)  # (M, n_rates)
    kh = len(layout.hidden_states)
    off = pt.set_subtensor(
        pt.zeros((generators.n_generators, kh, kh))[:, layout.rate_from, layout.rate_to],
        pt.exp(log_q),
    )
    return off - off.sum(axis=-1)[..., None] * pt.eye(kh)


def hidden_generator(layout, rate) -> pt.TensorVariable:
    """The hidden generator (K_h, K_h) of intensities ``rate`` (n_rates,) (PyTensor)."""
    kh = len(layout.hidden_states)
    off = pt.set_subtensor(pt.zeros((kh, kh))[layout.rate_from, layout.rate_to], rate)
    return off - pt.diag(off.sum(axis=1))


__all__ = ["generator_matrix", "hazard_terms", "hidden_generator", "phased_generators"]

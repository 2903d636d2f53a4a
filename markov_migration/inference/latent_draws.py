"""Latent-state fits from their posterior draws: generators and pointwise log-likelihood.

Layer 3, but NumPy only (no PyMC graph): what :func:`markov_migration.inference.latent.sample_latent`
computes from the draws after sampling. The observed-state generator of
phase-type models (:func:`observed_generator`), the generators of the record
patterns of models with covariates or groups (:func:`draw_generators`), and
each respondent's whole-history log-likelihood for LOO
(:func:`history_loglik_draws`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr

from markov_migration.core.forward import emission_table, history_loglik
from markov_migration.core.phases import (
    hidden_generators,
    latent_log_rates,
    transition_lift,
)
from markov_migration.core.phases import observed_generator as core_observed_generator
from markov_migration.defaults import LOGLIK_THREADS, SAMPLE_DIMS
from markov_migration.inference.latent_nonresponse import (
    attrition_states,
    nonresponse_inputs,
    state_vector,
)
from markov_migration.inputs.misc_covariates import (
    MISC_EFFECT_DIM,
    MISC_LOG_OR,
    pattern_emissions,
)


def observed_generator(q_latent: np.ndarray, layout, n_states: int) -> np.ndarray:
    """Markov generator on the observed states with the phase-type states' mean sojourns.

    :func:`markov_migration.core.phases.observed_generator` of ``layout.observed``.
    """
    return core_observed_generator(q_latent, layout.observed, n_states)


def draw_generators(spec, design, generators, posterior: xr.Dataset, layout=None) -> np.ndarray:
    """Generators (n_samples, M, K, K) of the record patterns from every draw.

    With phase-type states (``layout.phased``) the hidden generators (n_samples, M,
    K_h, K_h): each observed transition's covariate and group terms multiply its
    phase exits (:func:`markov_migration.core.phases.transition_lift`).
    """
    from markov_migration.inputs.likelihood_arrays import generators_from_rates

    def flat(name, *dims):
        v = posterior[name].transpose(*SAMPLE_DIMS, *dims).to_numpy()
        return v.reshape(-1, *v.shape[2:])

    log_hr = flat("log_hazard_ratio", "covariate_effect") if design.has_effects else None
    effect = flat("group_effect", "group", "group_transition") if design.has_groups else None
    x, group = generators.generator_x, generators.generator_group
    if layout is not None and layout.phased:
        return latent_design_generators(spec, design, layout, flat("log_rate_latent",
                                        "latent_transition"), log_hr, effect, x, group)  # fmt: skip
    lr = design.log_rates(flat("log_rate", "transition"), log_hr, effect, x=x, group=group)
    return generators_from_rates(np.exp(lr), spec)


def latent_design_generators(spec, design, layout, log_rate_latent, log_hr, effect, x, group):
    """Hidden generators (..., M, K_h, K_h) of a phase-type design at covariates ``x``, groups ``group``.

    ``log_rate_latent`` (..., n_rates), ``log_hr`` (..., n_effects) and ``effect``
    (..., n_groups, n_group_transitions) are draws (None when the model has none).
    """
    zero = np.zeros(len(spec.transitions))
    shift = design.log_rates(zero, log_hr, effect, x=x, group=group)  # (..., M, T)
    lift = transition_lift(layout.rate_observed, spec.transitions)
    lr = latent_log_rates(log_rate_latent, shift, lift)
    return hidden_generators(len(layout.hidden_states), layout.rate_from, layout.rate_to,
                             np.exp(lr))  # fmt: skip


def observed_from_latent(spec, layout, posterior: xr.Dataset, design=None) -> xr.Dataset:
    """Add ``Q``, ``rate`` and ``log_rate`` on the observed states to a phase-type posterior.

    ``rate`` and ``log_rate`` are the observed-state intensities of the baseline
    ``Q_latent``; ``Q`` is that generator, or with a ``design`` (covariates,
    groups, periods) the observed-state generator of every pattern of the
    design's reported grid, dims ``(chain, draw, *grid_dims, from_state, to_state)``
    as in pure-panel fits.
    """
    q_base = observed_generator(posterior["Q_latent"].to_numpy(), layout, spec.n_states)
    q_dims: tuple[str, ...] = ()
    q = q_base
    if design is not None:

        def flat(name, *dims):
            v = posterior[name].transpose(*SAMPLE_DIMS, *dims).to_numpy()
            return v.reshape(-1, *v.shape[2:])

        log_hr = flat("log_hazard_ratio", "covariate_effect") if design.has_effects else None
        effect = flat("group_effect", "group", "group_transition") if design.has_groups else None
        q_grid = latent_design_generators(
            spec, design, layout, flat("log_rate_latent", "latent_transition"), log_hr, effect,
            design.grid_x, design.grid_group,
        )  # fmt: skip
        q = observed_generator(q_grid, layout, spec.n_states).reshape(
            *q_base.shape[:2], *design.grid_shape, spec.n_states, spec.n_states
        )
        q_dims = tuple(design.grid_dims)
        posterior = posterior.assign_coords({d: design.grid_coords[d] for d in q_dims})
    posterior["Q"] = ((*SAMPLE_DIMS, *q_dims, "from_state", "to_state"), q)
    frm = np.array([r for r, _ in spec.transitions])
    to = np.array([s for _, s in spec.transitions])
    rate = q_base[..., frm, to]
    posterior = posterior.assign_coords(
        from_state=list(spec.states), to_state=list(spec.states),
        transition=list(spec.transition_labels),
    )  # fmt: skip
    posterior["rate"] = ((*SAMPLE_DIMS, "transition"), rate)
    with np.errstate(divide="ignore"):
        posterior["log_rate"] = ((*SAMPLE_DIMS, "transition"), np.log(rate))
    posterior["Q"].attrs["description"] = (
        "Markov generator on the observed states with the mean sojourn times and "
        "next-state probabilities of the phase-type states (see Q_latent)"
    )
    return posterior


def history_loglik_draws(
    spec,
    layout,
    posterior,
    histories,
    respondents,
    nodes,
    design=None,
    generators=None,
    misc=None,
) -> xr.Dataset:
    """Each respondent's whole-history log-likelihood for every draw (for LOO).

    ``misc``: the :class:`~markov_migration.inputs.misc_covariates.MisclassificationEffects`
    of a model with covariates on misclassification (its histories' record codes index
    the stacked per-pattern tables).
    """
    obs = spec.observation
    k, kh = spec.n_states, len(layout.hidden_states)
    nchain, ndraw = (posterior.sizes[d] for d in SAMPLE_DIMS)
    qname = "Q_latent" if layout.phased else "Q"
    if design is None:
        q = posterior[qname].to_numpy().reshape(nchain * ndraw, 1, kh, kh)
    else:
        q = draw_generators(spec, design, generators, posterior, layout)
    if obs.misclassification:
        e = posterior["misclassification"].to_numpy().reshape(nchain * ndraw, k, k)
    else:
        e = np.broadcast_to(np.eye(k), (nchain * ndraw, k, k))
    if misc is not None:
        beta = posterior[MISC_LOG_OR].transpose(*SAMPLE_DIMS, MISC_EFFECT_DIM).to_numpy()
        e_pattern = pattern_emissions(
            e, misc.shift_design(k), beta.reshape(nchain * ndraw, -1)
        )  # (n, P, K, K)
    pi = (
        posterior["initial"].to_numpy().reshape(nchain * ndraw, kh)
        if obs.hidden
        else np.ones((nchain * ndraw, kh))
    )
    phase_map = layout.emission
    nr = obs.nonresponse
    if nr is not None:
        r = posterior["response"].to_numpy().reshape(nchain * ndraw, -1)
        r = state_vector(spec, r, nr.states, 1.0)
        d = np.zeros((nchain * ndraw, 0))
        if "attrition" in posterior:
            d = posterior["attrition"].to_numpy().reshape(nchain * ndraw, -1)
        d = state_vector(spec, d, attrition_states(spec), 0.0)
    n_draws = nchain * ndraw
    fixed = None  # without misclassification the emission table is the same for every draw
    if misc is None and not obs.misclassification:
        fixed = emission_table(phase_map @ e[0], layout.code_sets)

    def draw_loglik(i: int, check: bool = False) -> np.ndarray:
        if fixed is not None:
            table = fixed
        elif misc is None:
            table = emission_table(phase_map @ e[i], layout.code_sets)
        else:
            table = np.concatenate(
                [emission_table(phase_map @ ep, layout.code_sets) for ep in e_pattern[i]]
            )
        qi, pii, base = q[i], pi[i], table
        if nr is not None:
            d_hidden = phase_map @ d[i] if nr.attrition else None
            qs = []
            for qm in qi:
                qm, pii_m, table = nonresponse_inputs(qm, pii, base, phase_map @ r[i], d_hidden)
                qs.append(qm)
            qi, pii = np.stack(qs), pii_m
        return history_loglik(qi, pii, table, *histories, check=check)

    per_node = np.empty((n_draws, len(histories.node_parent)))
    per_node[0] = draw_loglik(0, check=True)  # the layout is checked once
    # The draws are independent and the kernel releases the GIL (nogil), so threads
    # share them: on 2 cores 4,000 draws of the 8,500-respondent phased example took
    # 2.9 s in one thread (0.59 ms a draw, 0.14 ms of it layout checks). The standard
    # library's pool: Dask is an optional dependency here (projections).
    with ThreadPoolExecutor(max_workers=max(1, min(LOGLIK_THREADS, n_draws - 1))) as pool:
        for i, row in enumerate(pool.map(draw_loglik, range(1, n_draws)), start=1):
            per_node[i] = row
    values = per_node[:, nodes].reshape(nchain, ndraw, len(nodes))
    return xr.Dataset(
        {"histories": ((*SAMPLE_DIMS, "respondent"), values)},
        coords={**{d: posterior[d] for d in SAMPLE_DIMS}, "respondent": respondents.astype(str)},
    )


__all__ = [
    "draw_generators",
    "history_loglik_draws",
    "latent_design_generators",
    "observed_from_latent",
    "observed_generator",
]

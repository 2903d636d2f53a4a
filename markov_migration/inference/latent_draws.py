"""Latent-state fits from their posterior draws: generators and pointwise log-likelihood.

Layer 3, but NumPy only (no PyMC graph): what :func:`markov_migration.inference.latent.sample_latent`
computes from the draws after sampling. The observed-state generator of
phase-type models (:func:`observed_generator`), the generators of the record
patterns of models with covariates or groups (:func:`draw_generators`), and
each respondent's whole-history log-likelihood for LOO
(:func:`history_loglik_draws`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from markov_migration.core.forward import emission_table, history_loglik
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.inference.latent_nonresponse import (
    attrition_states,
    nonresponse_inputs,
    state_vector,
)


def observed_generator(q_latent: np.ndarray, layout, n_states: int) -> np.ndarray:
    """Markov generator on the observed states with the phase-type states' mean sojourns.

    ``Q[r, s] = P(next state s | entering r) / E(time in r)``, entering ``r`` in
    its first phase; for single-phase states this is the hidden generator itself.

    Parameters
    ----------
    q_latent : ndarray (..., K_h, K_h)
    layout : LatentLayout
    n_states : int

    Returns
    -------
    ndarray (..., K, K)
    """
    lead = q_latent.shape[:-2]
    out = np.zeros((*lead, n_states, n_states))
    for r in range(n_states):
        h = np.flatnonzero(layout.observed == r)
        if not len(h):
            continue
        sub = q_latent[..., h[:, None], h[None, :]]  # (..., n, n)
        exits = np.zeros((*lead, len(h), n_states))
        for s in range(n_states):
            if s != r:
                cols = np.flatnonzero(layout.observed == s)
                exits[..., s] = q_latent[..., h[:, None], cols[None, :]].sum(axis=-1)
        if not exits.any():
            continue
        # first row of (-sub)^-1: expected time in each phase after entering the first
        e0 = np.zeros(len(h))
        e0[0] = 1.0
        rhs = np.broadcast_to(e0[:, None], (*lead, len(h), 1))
        occupancy = np.linalg.solve(np.swapaxes(-sub, -1, -2), rhs)[..., 0]
        mean_time = occupancy.sum(axis=-1)
        nxt = np.einsum("...i,...is->...s", occupancy, exits)
        out[..., r, :] = nxt / mean_time[..., None]
        out[..., r, r] = -nxt.sum(axis=-1) / mean_time
    return out


def draw_generators(spec, design, generators, posterior: xr.Dataset) -> np.ndarray:
    """Generators (n_samples, M, K, K) of the record patterns from every draw."""
    from markov_migration.inputs.likelihood_arrays import generators_from_rates

    def flat(name, *dims):
        v = posterior[name].transpose(*SAMPLE_DIMS, *dims).to_numpy()
        return v.reshape(-1, *v.shape[2:])

    log_hr = flat("log_hazard_ratio", "covariate_effect") if design.has_effects else None
    effect = flat("group_effect", "group", "group_transition") if design.has_groups else None
    lr = design.log_rates(
        flat("log_rate", "transition"), log_hr, effect, x=generators.generator_x,
        group=generators.generator_group,
    )  # fmt: skip
    return generators_from_rates(np.exp(lr), spec)


def observed_from_latent(spec, layout, posterior: xr.Dataset) -> xr.Dataset:
    """Add ``Q``, ``rate`` and ``log_rate`` on the observed states to a phase-type posterior."""
    q = observed_generator(posterior["Q_latent"].to_numpy(), layout, spec.n_states)
    posterior["Q"] = ((*SAMPLE_DIMS, "from_state", "to_state"), q)
    frm = np.array([r for r, _ in spec.transitions])
    to = np.array([s for _, s in spec.transitions])
    rate = q[..., frm, to]
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
    spec, layout, posterior, histories, respondents, nodes, design=None, generators=None
) -> xr.Dataset:
    """Each respondent's whole-history log-likelihood for every draw (for LOO)."""
    obs = spec.observation
    k, kh = spec.n_states, len(layout.hidden_states)
    nchain, ndraw = (posterior.sizes[d] for d in SAMPLE_DIMS)
    qname = "Q_latent" if layout.phased else "Q"
    if design is None:
        q = posterior[qname].to_numpy().reshape(nchain * ndraw, 1, kh, kh)
    else:
        q = draw_generators(spec, design, generators, posterior)
    if obs.misclassification:
        e = posterior["misclassification"].to_numpy().reshape(nchain * ndraw, k, k)
    else:
        e = np.broadcast_to(np.eye(k), (nchain * ndraw, k, k))
    pi = (
        posterior["initial"].to_numpy().reshape(nchain * ndraw, kh)
        if obs.hidden
        else np.ones((nchain * ndraw, kh))
    )
    phase_map = (layout.observed[:, None] == np.arange(k)[None, :]).astype(np.float64)
    nr = obs.nonresponse
    if nr is not None:
        r = posterior["response"].to_numpy().reshape(nchain * ndraw, -1)
        r = state_vector(spec, r, nr.states, 1.0)
        d = np.zeros((nchain * ndraw, 0))
        if "attrition" in posterior:
            d = posterior["attrition"].to_numpy().reshape(nchain * ndraw, -1)
        d = state_vector(spec, d, attrition_states(spec), 0.0)
    per_node = np.empty((nchain * ndraw, len(histories.node_parent)))
    for i in range(nchain * ndraw):
        table = emission_table(phase_map @ e[i], layout.code_sets)
        qi, pii, base = q[i], pi[i], table
        if nr is not None:
            d_hidden = phase_map @ d[i] if nr.attrition else None
            qs = []
            for qm in qi:
                qm, pii_m, table = nonresponse_inputs(qm, pii, base, phase_map @ r[i], d_hidden)
                qs.append(qm)
            qi, pii = np.stack(qs), pii_m
        per_node[i] = history_loglik(qi, pii, table, *histories)
    values = per_node[:, nodes].reshape(nchain, ndraw, len(nodes))
    return xr.Dataset(
        {"histories": ((*SAMPLE_DIMS, "respondent"), values)},
        coords={**{d: posterior[d] for d in SAMPLE_DIMS}, "respondent": respondents.astype(str)},
    )


__all__ = ["draw_generators", "history_loglik_draws", "observed_from_latent", "observed_generator"]

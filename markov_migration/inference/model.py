"""PyMC models built from a model file and aggregated data (layer 3).

Continuous time
    ``log_rate[transition] ~ Normal(mu, sigma)`` from the model file's priors
    (log of moves per time unit); ``Q[from_state, to_state]`` is a Deterministic
    generator with those rates off the diagonal and minus the row sums on it.
    The panel log-likelihood ``sum_r count_r * log P(t_r)[from_r, to_r]`` with
    ``P(t) = expm(Q t)`` enters as one Potential computed by the fast Op
    (:mod:`markov_migration.inference.likelihood_op`).

Discrete time
    Each non-absorbing state's row of the one-step matrix ``P`` has a
    Dirichlet prior over the state itself and its allowed targets (the model
    file's concentrations); an interval of n steps contributes
    ``log (P^n)[from, to]``. With only one-step intervals this is the conjugate
    Dirichlet-multinomial model.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from markov_migration.design import likelihood_data
from markov_migration.errors import InputError
from markov_migration.panel import AggregatedData
from markov_migration.spec import ModelSpec


def model_coords(spec: ModelSpec, agg: AggregatedData) -> dict[str, list]:
    """Coordinates shared by the PyMC model and the fit file."""
    return {
        "state": list(spec.states),
        "from_state": list(spec.states),
        "to_state": list(spec.states),
        "transition": list(spec.transition_labels),
        "obs": list(range(len(agg.table))),
    }


def check_supported(spec: ModelSpec) -> None:
    """Refuse model features the fitting layer does not implement yet, before compiling."""
    missing = []
    if spec.covariates:
        missing.append("[covariates]")
    if spec.groups is not None:
        missing.append("[groups]")
    if spec.periods:
        missing.append("periods")
    if missing:
        raise InputError(
            f"model uses {', '.join(missing)}, which fitting does not support yet",
            path=spec.path,
        )


def build_model(spec: ModelSpec, agg: AggregatedData) -> pm.Model:
    """Build the PyMC model of a spec and its aggregated data.

    Parameters
    ----------
    spec : ModelSpec
    agg : AggregatedData

    Returns
    -------
    pymc.Model
        With coords ``state``, ``from_state``, ``to_state``, ``transition`` and
        ``obs`` (aggregated rows).
    """
    check_supported(spec)
    if tuple(agg.states) != tuple(spec.states):
        raise InputError("data were aggregated for other states than the model's")
    if spec.time == "discrete":
        return _build_discrete(spec, agg)
    return _build_continuous(spec, agg)


def generator_matrix(rate: pt.TensorVariable, spec: ModelSpec) -> pt.TensorVariable:
    """Q (K, K) from the vector of allowed-transition rates (PyTensor)."""
    k = spec.n_states
    frm = np.array([r for r, _ in spec.transitions], dtype=np.int64)
    to = np.array([s for _, s in spec.transitions], dtype=np.int64)
    off = pt.set_subtensor(pt.zeros((k, k))[frm, to], rate)
    return off - pt.diag(off.sum(axis=1))


def _build_continuous(spec: ModelSpec, agg: AggregatedData) -> pm.Model:
    from markov_migration.inference.likelihood_op import panel_loglik

    data = likelihood_data(agg)
    mu = np.array([spec.priors[p].mu for p in spec.transitions])
    sigma = np.array([spec.priors[p].sigma for p in spec.transitions])
    with pm.Model(coords=model_coords(spec, agg)) as model:
        piece_q = pm.Data("piece_q", data.piece_q)
        piece_t = pm.Data("piece_t", data.piece_t)
        row_ptr = pm.Data("row_ptr", data.row_ptr)
        row_piece = pm.Data("row_piece", data.row_piece)
        row_from = pm.Data("row_from", data.row_from, dims="obs")
        row_to = pm.Data("row_to", data.row_to, dims="obs")
        row_count = pm.Data("row_count", data.row_count, dims="obs")
        log_rate = pm.Normal("log_rate", mu=mu, sigma=sigma, dims="transition")
        rate = pm.Deterministic("rate", pt.exp(log_rate), dims="transition")
        q = pm.Deterministic("Q", generator_matrix(rate, spec), dims=("from_state", "to_state"))
        loglik = panel_loglik(
            q[None, :, :], (piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)
        )
        pm.Potential("loglik", loglik)
    return model


def _build_discrete(spec: ModelSpec, agg: AggregatedData) -> pm.Model:
    t = agg.table
    steps = np.round(t["interval"].to_numpy() / agg.resolution).astype(np.int64)
    coords = model_coords(spec, agg)
    targets: dict[int, list[int]] = {}
    for r in range(spec.n_states):
        outs = [s for a, s in spec.transitions if a == r]
        if outs:
            targets[r] = [r, *outs]
            coords[f"next_{spec.states[r]}"] = [spec.states[s] for s in targets[r]]
    with pm.Model(coords=coords) as model:
        row_from = pm.Data("row_from", t["from"].to_numpy(dtype=np.int64), dims="obs")
        row_to = pm.Data("row_to", t["to"].to_numpy(dtype=np.int64), dims="obs")
        row_count = pm.Data("row_count", t["count"].to_numpy(dtype=np.float64), dims="obs")
        p = pt.eye(spec.n_states)
        for r, tg in targets.items():
            alpha = np.array([spec.concentration[(r, s)] for s in tg])
            row = pm.Dirichlet(f"p_{spec.states[r]}", a=alpha, dims=f"next_{spec.states[r]}")
            p = pt.set_subtensor(p[r, :], pt.zeros(spec.n_states))
            p = pt.set_subtensor(p[r, np.array(tg)], row)
        p = pm.Deterministic("P", p, dims=("from_state", "to_state"))
        # P^n for each distinct step count n (usually 1, sometimes 2-3 for a missed wave).
        distinct = np.unique(steps)
        powers = [pt.linalg.matrix_power(p, int(n)) if n > 1 else p for n in distinct]
        stack = pt.stack(powers)
        row_power = pm.Data("row_power", np.searchsorted(distinct, steps), dims="obs")
        prob = stack[row_power, row_from, row_to]
        pm.Potential("loglik", pt.sum(row_count * pt.log(prob)))
    return model

"""The calibrated pseudo-posterior of a discrete-time model (see :mod:`.weights`).

Each non-absorbing state ``r`` has a Dirichlet row ``p_<r>`` over the state itself and
its allowed targets (``next_<r>``, staying first). The calibration works on the
additive log-ratios against staying, ``eta_rk = log(p_rk / p_r0)`` (unconstrained);
in them the Dirichlet(alpha) prior times the Jacobian is ``prod_c p_c^alpha_c``, whose
curvature is ``alpha_0 (diag(p) - p p')`` over the non-reference entries
(``alpha_0 = sum alpha``). A row of ``n`` steps from ``a`` to ``b`` contributes
``log (P^n)[a, b]``, with ``d (P^n)[a, b] / d P[r, c] = sum_j (P^j)[a, r] (P^(n-1-j))[c, b]``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.inputs.aggregate import AggregatedData
from markov_migration.inputs.spec import ModelSpec


def dirichlet_rows(spec: ModelSpec) -> list[tuple[int, list[int]]]:
    """Each non-absorbing state and its Dirichlet row's states (itself first)."""
    out = []
    for r in range(spec.n_states):
        outs = [s for a, s in spec.transitions if a == r]
        if outs:
            out.append((r, [r, *outs]))
    return out


def _softmax0(eta: np.ndarray) -> np.ndarray:
    """Probabilities (..., m + 1) from log-ratios (..., m) against the first entry."""
    full = np.concatenate([np.zeros((*eta.shape[:-1], 1)), eta], axis=-1)
    full -= full.max(axis=-1, keepdims=True)
    e = np.exp(full)
    return e / e.sum(axis=-1, keepdims=True)


def log_ratio_draws(spec: ModelSpec, posterior: xr.Dataset) -> tuple[np.ndarray, list[str]]:
    """Draws (S, D) of the log-ratios of every Dirichlet row, and their labels."""
    parts, labels = [], []
    for r, targets in dirichlet_rows(spec):
        name = f"p_{spec.states[r]}"
        p = posterior[name].transpose(*SAMPLE_DIMS, ...).to_numpy().astype(np.float64)
        p = p.reshape(-1, len(targets))
        parts.append(np.log(p[:, 1:]) - np.log(p[:, :1]))
        labels += [f"log({name}[{spec.states[s]}] / {name}[{spec.states[r]}])" for s in targets[1:]]
    return np.concatenate(parts, axis=1), labels


def transition_matrix(spec: ModelSpec, theta: np.ndarray) -> np.ndarray:
    """One-step matrices (..., K, K) from log-ratio vectors (..., D)."""
    k = spec.n_states
    p = np.zeros((*theta.shape[:-1], k, k))
    p[..., np.arange(k), np.arange(k)] = 1.0
    col = 0
    for r, targets in dirichlet_rows(spec):
        m = len(targets) - 1
        p[..., r, :] = 0.0
        p[..., r, targets] = _softmax0(theta[..., col : col + m])
        col += m
    return p


def row_scores(spec: ModelSpec, agg: AggregatedData, theta: np.ndarray) -> np.ndarray:
    """Gradient of ``log (P^n)[from, to]`` of every aggregated row (one transition): (n_rows, D)."""
    t = agg.table
    steps = np.round(t["interval"].to_numpy() / agg.resolution).astype(np.int64)
    frm = t["from"].to_numpy(dtype=np.int64)
    to = t["to"].to_numpy(dtype=np.int64)
    p = transition_matrix(spec, theta)
    powers = [np.eye(spec.n_states)]
    for _ in range(int(steps.max(initial=1))):
        powers.append(powers[-1] @ p)
    rows = dirichlet_rows(spec)
    out = np.zeros((len(t), theta.size))
    for i, (a, b, n) in enumerate(zip(frm, to, steps, strict=True)):
        # d (P^n)[a, b] / d P (K, K), divided by (P^n)[a, b]
        g = sum(np.outer(powers[j][a], powers[n - 1 - j][:, b]) for j in range(n))
        g = g / powers[n][a, b]
        col = 0
        for r, targets in rows:
            pr = p[r, targets]
            gr = g[r, targets]
            out[i, col : col + len(targets) - 1] = pr[1:] * (gr[1:] - gr @ pr)
            col += len(targets) - 1
    return out


def prior_precision(spec: ModelSpec, theta: np.ndarray) -> np.ndarray:
    """Curvature (D, D) of the Dirichlet priors on the log-ratio scale at ``theta``."""
    out = np.zeros((theta.size, theta.size))
    col = 0
    for r, targets in dirichlet_rows(spec):
        m = len(targets) - 1
        alpha0 = sum(spec.concentration[(r, s)] for s in targets)
        pm = _softmax0(theta[col : col + m])[1:]
        out[col : col + m, col : col + m] = alpha0 * (np.diag(pm) - np.outer(pm, pm))
        col += m
    return out


def rebuild(spec: ModelSpec, posterior: xr.Dataset, theta: np.ndarray) -> xr.Dataset:
    """The posterior with every ``p_<state>`` row and ``P`` rebuilt from log-ratio draws (S, D)."""
    nchain, ndraw = (posterior.sizes[d] for d in SAMPLE_DIMS)
    out = posterior.copy()
    col = 0
    for r, targets in dirichlet_rows(spec):
        name, m = f"p_{spec.states[r]}", len(targets) - 1
        values = _softmax0(theta[:, col : col + m]).reshape(nchain, ndraw, m + 1)
        dims = [d for d in posterior[name].dims if d not in SAMPLE_DIMS]
        out[name] = ((*SAMPLE_DIMS, *dims), values)
        col += m
    if "P" in out:
        p = transition_matrix(spec, theta).reshape(nchain, ndraw, spec.n_states, spec.n_states)
        out["P"] = ((*SAMPLE_DIMS, "from_state", "to_state"), p)
    return out

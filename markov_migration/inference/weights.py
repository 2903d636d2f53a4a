"""Survey weights: a calibrated pseudo-posterior (Williams & Savitsky 2021).

A weighted panel is fitted with the weighted pseudo-log-likelihood
``sum_i w_i l_i(theta)`` (respondent ``i``'s transitions count ``w_i`` times). Its
posterior is centred on the population (weighted) estimate, but its spread treats the
weighted counts as independent observations: it is the inverse Hessian
``H^-1`` of the pseudo-log-posterior, while the estimator's sampling variance under the
survey design is the sandwich ``H^-1 J H^-1``, with ``J`` the design variance of the
total weighted score. With unequal weights ``J`` exceeds ``H`` (by about Kish's design
effect ``n sum w^2 / (sum w)^2`` when the weights are unrelated to the scores), so the
raw intervals are too narrow.

The calibration maps every draw of the free parameters ``theta`` (the unconstrained
vector: ``log_rate``, ``log_hr_scaled``; group effects see below) to

    theta_adj = theta_hat + R2 R1^-1 (theta - theta_hat)

with ``theta_hat`` the posterior mean, ``R1`` a square root of the posterior covariance
``Sigma`` (``= H^-1``) and ``R2`` one of ``Sigma (J + P) Sigma``, so that the adjusted
draws keep the shape of the pseudo-posterior and have the sandwich covariance
(Williams & Savitsky 2021, Algorithm 1). ``J`` is the with-replacement design
variance of the per-cluster score totals, ``C/(C-1) sum_c (s_c - s_bar)(s_c - s_bar)'``,
where the clusters are the respondents, or the primary sampling units of
``[data] cluster``; a respondent's score is the gradient of ``w_i l_i`` at
``theta_hat``, from the analytic gradient of the panel likelihood
(:func:`markov_migration.core.likelihood.loglik_and_grad`) by the chain rule through
the model's log-linear structure. ``P`` is the curvature of the log-prior at
``theta_hat`` (the prior precision): with it a parameter the data do not inform
keeps its prior spread, where the bare sandwich would shrink it to a point, and it
changes nothing to first order when the data dominate.

The derived variables (``rate``, ``log_hazard_ratio``, ``hazard_ratio``, ``Q``) are
then recomputed from the adjusted draws. A model with host groups has its fixed
parameters (``log_rate``, ``log_hr_scaled``) adjusted and its random effects
(``group_sd``, ``group_z``) left as sampled: their posterior is far from Gaussian (a
funnel), so a linear map of it would not keep its shape. A discrete-time model is
calibrated on the log-ratios of its Dirichlet rows
(:mod:`markov_migration.inference.weights_discrete`). Latent-state models and
aggregated-counts tables (no respondents to cluster) are not adjusted; the fit file
says so.

References
----------
.. [1] Williams, M. R. and Savitsky, T. D. (2021). Uncertainty estimation for
   pseudo-Bayesian inference under complex sampling. International Statistical
   Review 89(1), 72-107.
.. [2] Kish, L. (1965). Survey Sampling. Wiley (the design effect of weighting).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.inputs.aggregate import AggregatedData, pair_rows
from markov_migration.inputs.design import ModelDesign, model_design
from markov_migration.inputs.likelihood_arrays import generators_from_rates
from markov_migration.inputs.panel import CLUSTER_COLUMN, Panel
from markov_migration.inputs.spec import ModelSpec

#: Root attributes written for a weighted fit (see :func:`adjust_weighted_posterior`).
ADJUST_ATTR = "weights_adjustment"
DEFF_ATTR = "weights_design_effect"
KISH_ATTR = "weights_kish_deff"
CLUSTERS_ATTR = "weights_clusters"

_REFERENCE = "Williams & Savitsky (2021), Int. Stat. Rev. 89(1)"


@dataclass(frozen=True)
class FreeBlock:
    """One free variable of the model on its unconstrained scale.

    Attributes
    ----------
    name : str
        Posterior variable (``log_rate``, ``log_hr_scaled``, ``group_sd``, ``group_z``).
    dims : tuple of str
        Its dims besides chain and draw.
    log : bool
        Stored on the positive scale; unconstrained is its log (``group_sd``).
    adjusted : bool
        Whether the calibration moves its draws.
    """

    name: str
    dims: tuple[str, ...]
    log: bool = False
    adjusted: bool = True


def free_blocks(design: ModelDesign) -> list[FreeBlock]:
    """The continuous-time model's free variables, in the order of the parameter vector."""
    blocks = [FreeBlock("log_rate", ("transition",))]
    if design.has_effects:
        blocks.append(FreeBlock("log_hr_scaled", ("hr_parameter",)))
    if design.has_groups:
        blocks.append(FreeBlock("group_sd", ("group_transition",), log=True, adjusted=False))
        blocks.append(FreeBlock("group_z", ("group", "group_transition"), adjusted=False))
    return blocks


def _flat_draws(posterior: xr.Dataset, blocks: list[FreeBlock]) -> tuple[np.ndarray, list]:
    """Draws (S, D) of the unconstrained parameter vector and the shape of each block."""
    parts, shapes = [], []
    for b in blocks:
        a = posterior[b.name].transpose(*SAMPLE_DIMS, *b.dims).to_numpy().astype(np.float64)
        shapes.append(a.shape[2:])
        a = a.reshape(a.shape[0] * a.shape[1], -1)
        parts.append(np.log(a) if b.log else a)
    return np.concatenate(parts, axis=1), shapes


def _split(theta: np.ndarray, shapes: list) -> list[np.ndarray]:
    """The parameter vector(s) ``(..., D)`` cut into blocks ``(..., *shape)``."""
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(theta[..., start : start + size].reshape(*theta.shape[:-1], *shape))
        start += size
    return out


def _parameters(design: ModelDesign, blocks: list[FreeBlock], values: list[np.ndarray]):
    """log_rate, log hazard ratios per effect and group effects from free-block values."""
    by_name = dict(zip([b.name for b in blocks], values, strict=True))
    log_hr = group_effect = None
    if design.has_effects:
        scaled = by_name["log_hr_scaled"]
        log_hr = (scaled / design.parameter_scale)[..., design.effect_parameter]
    if design.has_groups:
        group_effect = by_name["group_z"] * np.exp(by_name["group_sd"])[..., None, :]
    return by_name["log_rate"], log_hr, group_effect


def prior_precision(spec: ModelSpec, design: ModelDesign, theta_hat: np.ndarray, shapes):
    """Curvature ``-d2 log p / d theta2`` of the log-prior at ``theta_hat`` (diagonal, (D,)).

    Normal priors give ``1 / sigma^2``; the half-normal group sd on its log scale
    (with the log-Jacobian) gives ``2 sd^2 / s^2``.
    """
    sigma = np.array([spec.priors[p].sigma for p in spec.transitions])
    parts = [1.0 / sigma**2]
    if design.has_effects:
        parts.append(1.0 / (design.parameter_sd * design.parameter_scale) ** 2)
    if design.has_groups:
        log_sd = _split(theta_hat, shapes)[len(parts)]
        parts.append(2.0 * np.exp(2.0 * log_sd) / spec.groups.sd_prior**2)
        parts.append(np.ones(int(np.prod(shapes[len(parts)]))))
    return np.concatenate([np.ravel(p) for p in parts])


def row_scores(
    spec: ModelSpec, design: ModelDesign, blocks: list[FreeBlock], theta: np.ndarray, shapes
) -> np.ndarray:
    """Gradient of ``log P_r[from_r, to_r]`` (one transition) of every aggregated row.

    Parameters
    ----------
    spec, design
        The model and its design (:func:`markov_migration.inputs.design.model_design`).
    blocks, shapes
        The free variables (:func:`free_blocks`) and their shapes.
    theta : ndarray (D,)
        Unconstrained parameter vector.

    Returns
    -------
    ndarray (n_rows, D)
        Per unit count of the row (multiply by a respondent's weight).
    """
    from markov_migration.core.likelihood import loglik_and_grad

    values = _split(theta, shapes)
    log_rate, log_hr, group_effect = _parameters(design, blocks, values)
    rates = np.exp(design.log_rates(log_rate, log_hr, group_effect))  # (M, T)
    q = generators_from_rates(rates, spec)
    frm = np.array([a for a, _ in spec.transitions], dtype=np.int64)
    to = np.array([b for _, b in spec.transitions], dtype=np.int64)
    lik = design.likelihood
    n_t = len(spec.transitions)
    # d log q[m, t] / d theta for every generator m, as a (M, T, D) Jacobian.
    jac = np.zeros((design.n_generators, n_t, theta.size))
    col = 0
    for block, shape in zip(blocks, shapes, strict=True):
        size = int(np.prod(shape))
        if block.name == "log_rate":
            jac[:, np.arange(n_t), col + np.arange(n_t)] = 1.0
        elif block.name == "log_hr_scaled":
            # log q[m, t] += sum_e x[m, e] * scaled[p(e)] / scale[p(e)] * [t(e) == t]
            for e, effect in enumerate(design.effects):
                t = spec.transitions.index(effect.transition)
                p = effect.parameter
                jac[:, t, col + p] += design.generator_x[:, e] / design.parameter_scale[p]
        elif block.name in ("group_sd", "group_z"):
            z, log_sd = _split(theta, shapes)[-1], _split(theta, shapes)[-2]
            for m, g in enumerate(design.generator_group):
                if g < 0:
                    continue
                for k, t in enumerate(design.group_transitions):
                    if block.name == "group_z":
                        jac[m, t, col + g * shape[-1] + k] += np.exp(log_sd[k])
                    else:  # d (z sd) / d log sd = z sd
                        jac[m, t, col + k] += z[g, k] * np.exp(log_sd[k])
        col += size
    out = np.empty((lik.n_rows, theta.size))
    one = np.ones(1)
    for r in range(lik.n_rows):
        pieces = lik.row_piece[lik.row_ptr[r] : lik.row_ptr[r + 1]]
        gens, local = np.unique(lik.piece_q[pieces], return_inverse=True)
        _, dq = loglik_and_grad(
            q[gens], local.astype(np.int64), lik.piece_t[pieces],
            np.array([0, pieces.size], dtype=np.int64), np.arange(pieces.size, dtype=np.int64),
            lik.row_from[r : r + 1], lik.row_to[r : r + 1], one,
        )  # fmt: skip
        # Q[m, i, j] = exp(log q[m, t]) off the diagonal, Q[m, i, i] = -sum_j Q[m, i, j].
        d_logq = rates[gens] * (dq[:, frm, to] - dq[:, frm, frm])  # (G, T)
        out[r] = np.einsum("gt,gtd->d", d_logq, jac[gens])
    return out


def cluster_scores(
    spec: ModelSpec, agg: AggregatedData, panel: Panel, rows_score: np.ndarray
) -> tuple[np.ndarray, int]:
    """Weighted score totals of every cluster (respondent or PSU): (C, D) and C.

    Respondents whose every pair leaves an absorbing state score 0 but still count.
    """
    pairs, rows = pair_rows(panel, spec, agg)
    d = panel.data
    first = d.drop_duplicates("id").set_index("id")
    weight = first["weight"].reindex(pairs["id"]).to_numpy(dtype=np.float64)
    unit = first[CLUSTER_COLUMN] if CLUSTER_COLUMN in first else first.index.to_series()
    codes, uniques = pd.factorize(unit)
    pair_cluster = codes[first.index.get_indexer(pairs["id"])]
    out = np.zeros((len(uniques), rows_score.shape[1]))
    np.add.at(out, pair_cluster, weight[:, None] * rows_score[rows])
    return out, len(uniques)


def design_variance(scores: np.ndarray) -> np.ndarray:
    """With-replacement design variance of the total of cluster scores (C, D) -> (D, D)."""
    c = scores.shape[0]
    centred = scores - scores.mean(axis=0)
    return centred.T @ centred * (c / max(c - 1, 1))


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def calibration_map(sigma: np.ndarray, sandwich: np.ndarray) -> np.ndarray:
    """Matrix ``A = R2 R1^-1`` with ``A sigma A' = sandwich`` (symmetric square roots)."""
    r1, r2 = _sqrt_psd(sigma), _sqrt_psd(sandwich)
    return r2 @ np.linalg.pinv(r1, hermitian=True)


def kish_deff(panel: Panel) -> float:
    """Kish's design effect of weighting ``n sum w^2 / (sum w)^2`` over respondents."""
    w = panel.data.drop_duplicates("id")["weight"].to_numpy(dtype=np.float64)
    return float(w.size * np.sum(w**2) / np.sum(w) ** 2)


def _labels(posterior: xr.Dataset, blocks: list[FreeBlock]) -> list[str]:
    out = []
    for b in blocks:
        coords = [posterior[d].values.astype(str) for d in b.dims]
        name = f"log({b.name})" if b.log else b.name
        for idx in np.ndindex(*[len(c) for c in coords]):
            out.append(f"{name}[{', '.join(c[i] for c, i in zip(coords, idx, strict=True))}]")
    return out


def derived_variables(
    spec: ModelSpec, design: ModelDesign, posterior: xr.Dataset, blocks: list[FreeBlock]
) -> xr.Dataset:
    """Recompute ``rate``, ``log_hazard_ratio``, ``hazard_ratio`` and ``Q`` from the free draws.

    As the PyMC model builds them (:mod:`markov_migration.inference.model`); the
    result keeps every variable of ``posterior`` and replaces those it recomputes.
    """
    theta, shapes = _flat_draws(posterior, blocks)
    nchain, ndraw = (posterior.sizes[d] for d in SAMPLE_DIMS)
    log_rate, log_hr, group_effect = _parameters(design, blocks, _split(theta, shapes))
    out = posterior.copy()

    def put(name: str, values: np.ndarray, dims: tuple[str, ...]) -> None:
        if name in out:
            arr = values.reshape(nchain, ndraw, *values.shape[1:])
            out[name] = ((*SAMPLE_DIMS, *dims), arr.astype(posterior[name].dtype))

    put("rate", np.exp(log_rate), ("transition",))
    if log_hr is not None:
        put("log_hazard_ratio", log_hr, ("covariate_effect",))
        put("hazard_ratio", np.exp(log_hr), ("covariate_effect",))
    grid = design.log_rates(
        log_rate, log_hr, group_effect, x=design.grid_x, group=design.grid_group
    )
    q = generators_from_rates(np.exp(grid), spec)
    k = spec.n_states
    put("Q", q.reshape(q.shape[0], *design.grid_shape, k, k),
        (*design.grid_dims, "from_state", "to_state"))  # fmt: skip
    return out


def _skip(reason: str) -> dict[str, str]:
    return {ADJUST_ATTR: f"none: {reason}"}


@dataclass
class _Free:
    """A model's free parameters for the calibration (continuous or discrete time)."""

    theta: np.ndarray  # (S, D) draws on the unconstrained scale
    labels: list[str]
    adjusted: np.ndarray  # (D,) bool: moved by the calibration
    scores: Callable[[np.ndarray], np.ndarray]  # theta_hat -> (n_rows, D)
    precision: Callable[[np.ndarray], np.ndarray]  # theta_hat -> (D, D)
    rebuild: Callable[[np.ndarray], xr.Dataset]  # adjusted (S, D) -> posterior
    names: str  # what is moved, for the record
    note: str = ""  # what is not


def _continuous(spec: ModelSpec, agg: AggregatedData, posterior: xr.Dataset) -> _Free:
    design = model_design(spec, agg)
    blocks = free_blocks(design)
    theta, shapes = _flat_draws(posterior, blocks)
    nchain, ndraw = (posterior.sizes[d] for d in SAMPLE_DIMS)

    def rebuild(new: np.ndarray) -> xr.Dataset:
        out = posterior.copy()
        for b, values in zip(blocks, _split(new, shapes), strict=True):
            if b.adjusted:
                arr = values.reshape(nchain, ndraw, *values.shape[1:])
                out[b.name] = ((*SAMPLE_DIMS, *b.dims), np.exp(arr) if b.log else arr)
        return derived_variables(spec, design, out, blocks)

    return _Free(
        theta=theta,
        labels=_labels(posterior, blocks),
        adjusted=np.concatenate(
            [np.full(int(np.prod(s)), b.adjusted) for b, s in zip(blocks, shapes, strict=True)]
        ),
        scores=lambda th: row_scores(spec, design, blocks, th, shapes),
        precision=lambda th: np.diag(prior_precision(spec, design, th, shapes)),
        rebuild=rebuild,
        names=", ".join(b.name for b in blocks if b.adjusted),
        note="; group_sd and group_z left as sampled" if design.has_groups else "",
    )


def _discrete(spec: ModelSpec, agg: AggregatedData, posterior: xr.Dataset) -> _Free:
    from markov_migration.inference import weights_discrete as wd

    theta, labels = wd.log_ratio_draws(spec, posterior)
    return _Free(
        theta=theta,
        labels=labels,
        adjusted=np.ones(theta.shape[1], dtype=bool),
        scores=lambda th: wd.row_scores(spec, agg, th),
        precision=lambda th: wd.prior_precision(spec, th),
        rebuild=lambda new: wd.rebuild(spec, posterior, new),
        names=", ".join(f"p_{spec.states[r]}" for r, _ in wd.dirichlet_rows(spec))
        + " (as log-ratios against staying)",
    )


def adjust_weighted_posterior(
    spec: ModelSpec, agg: AggregatedData, panel: Panel | None, posterior: xr.Dataset
) -> tuple[xr.Dataset, dict[str, str | float | int]]:
    """Calibrate the pseudo-posterior of a weighted panel (see the module docstring).

    Parameters
    ----------
    spec, agg
        The model and its aggregated (weighted) data.
    panel : Panel or None
        The validated panel: respondents, their weights and clusters.
    posterior : xarray.Dataset
        The sampler's draws: the free variables and the derived ones.

    Returns
    -------
    posterior : xarray.Dataset
        Unchanged (the same object) for unweighted data or when nothing is done;
        else the adjusted free variables and recomputed derived variables.
    attrs : dict
        Root attributes for the fit file: empty for unweighted data; else
        ``weights_adjustment`` (what was done), and when calibrated
        ``weights_design_effect`` (JSON: variance ratio adjusted / raw of each free
        parameter), ``weights_kish_deff`` and ``weights_clusters``.
    """
    if not agg.weighted:
        return posterior, {}
    if spec.data.weights_adjust == "none":
        return posterior, _skip(
            '[data] weights_adjust = "none": raw pseudo-posterior, whose spread ignores the '
            "design effect of the weights"
        )
    if spec.observation.latent:
        return posterior, _skip("not implemented for latent-state models")
    if panel is None:
        return posterior, _skip("aggregated counts have no respondents to cluster")
    free = (_continuous if spec.time == "continuous" else _discrete)(spec, agg, posterior)
    theta = free.theta
    theta_hat = theta.mean(axis=0)
    sigma = np.atleast_2d(np.cov(theta, rowvar=False))
    scores, n_clusters = cluster_scores(spec, agg, panel, free.scores(theta_hat))
    sandwich = sigma @ (design_variance(scores) + free.precision(theta_hat)) @ sigma
    fixed = np.flatnonzero(free.adjusted)
    a = calibration_map(sigma[np.ix_(fixed, fixed)], sandwich[np.ix_(fixed, fixed)])
    new = theta.copy()
    new[:, fixed] = theta_hat[fixed] + (theta[:, fixed] - theta_hat[fixed]) @ a.T
    ratio = np.diag(sandwich) / np.diag(sigma)
    deff = {lab: round(float(r), 4) for lab, r, adj in
            zip(free.labels, ratio, free.adjusted, strict=True) if adj}  # fmt: skip
    unit = f"PSU '{spec.data.cluster}'" if spec.data.cluster else "respondent"
    what = (
        f"calibrated: draws of {free.names} mapped to the sandwich covariance "
        f"H^-1 (J + P) H^-1, J the design variance of weighted scores clustered by {unit}, "
        f"P the prior precision ({_REFERENCE}){free.note}"
    )
    return free.rebuild(new), {
        ADJUST_ATTR: what,
        DEFF_ATTR: json.dumps(deff),
        KISH_ATTR: round(kish_deff(panel), 6),
        CLUSTERS_ATTR: int(n_clusters),
    }

"""Covariates on misclassification probabilities in the latent model (PyMC part; layer 3).

``misclassification_log_odds_ratio[misclassification_effect] ~ Normal(0, sd)``
(``[covariates.NAME] misclassification``, R msm's ``misccovariates``) and the
per-pattern misclassification matrices
``normalise_rows(e * exp(S_p @ beta))`` of
:mod:`markov_migration.inputs.misc_covariates`; the emission table of the forward
algorithm is the patterns' tables stacked (record code ``code + n_codes * p``).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from markov_migration.inputs.misc_covariates import MISC_EFFECT_DIM, MISC_LOG_OR, MISC_OR

__all__ = ["MISC_EFFECT_DIM", "MISC_LOG_OR", "misc_coords", "pattern_table", "stacked_codes"]


def misc_coords(misc) -> dict[str, list]:
    """Coordinates of the effects (none without misclassification covariates)."""
    return {} if misc is None else {MISC_EFFECT_DIM: list(misc.labels)}


def pattern_table(emission, misc, phase_map: np.ndarray, code_matrix: np.ndarray):
    """The stacked emission table (P * n_codes, K_h) of the patterns (PyMC variables made here).

    Parameters
    ----------
    emission : TensorVariable (K, K)
        Baseline misclassification matrix (rows sum to 1).
    misc : MisclassificationEffects
    phase_map : ndarray (K_h, K)
    code_matrix : ndarray (n_codes, K)
    """
    beta = pm.Normal(MISC_LOG_OR, mu=0.0, sigma=misc.prior_sd, dims=MISC_EFFECT_DIM)
    pm.Deterministic(MISC_OR, pt.exp(beta), dims=MISC_EFFECT_DIM)
    k = phase_map.shape[1]
    shift = pt.dot(pt.as_tensor_variable(misc.shift_design(k)), beta)  # (P, K, K)
    w = emission[None, :, :] * pt.exp(shift)
    e_p = w / w.sum(axis=-1, keepdims=True)
    # (P, K_recorded, K_h): the transposed hidden emission (phase_map @ e_p).T of each pattern
    hidden = pt.dot(e_p.dimshuffle(0, 2, 1), pt.as_tensor_variable(phase_map.T))
    tables = pt.tensordot(pt.as_tensor_variable(code_matrix), hidden, axes=[[1], [1]])
    return tables.dimshuffle(1, 0, 2).reshape((misc.n_patterns * code_matrix.shape[0], -1))


def stacked_codes(codes: np.ndarray, pattern: np.ndarray, n_codes: int) -> np.ndarray:
    """Record codes in the stacked table: ``code + n_codes * pattern``."""
    return np.asarray(codes, np.int64) + n_codes * np.asarray(pattern, np.int64)

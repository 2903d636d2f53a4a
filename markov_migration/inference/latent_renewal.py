"""Which records of a latent model are renewal points (layer 3).

The forward algorithm's tree of histories is split at observations with one
possible true state (:func:`markov_migration.core.renewal.split_histories`),
so that the tails many respondents share are computed once. Whether a record
has one possible true state is decided here from the model's structure: which
entries of the emission table can be non-zero for *some* parameter value,
never from the values of one draw.
"""

from __future__ import annotations

import numpy as np

from markov_migration.core.forward import Histories, emission_table
from markov_migration.core.nonresponse import nonresponse_inputs
from markov_migration.core.renewal import renewal_states, split_histories

__all__ = ["emission_support", "fit_histories"]


def emission_support(spec, layout) -> np.ndarray:
    """Where the emission table of the forward algorithm can be non-zero.

    Mirrors the table :func:`markov_migration.inference.latent.build_latent_model`
    builds: records through the misclassification matrix (its declared errors
    and the diagonal), the 0/1 phase map, the record codes (states, censored
    codes, the blank record at period cuts) and, with ``[nonresponse]``, the
    answered / missed / exact-entry blocks over active (and lost) states.

    Parameters
    ----------
    spec : ModelSpec
    layout : LatentLayout

    Returns
    -------
    ndarray of bool, shape (n_codes, K)
        ``K`` hidden states of the sampler (doubled with attrition).
    """
    obs = spec.observation
    k = spec.n_states
    possible = np.eye(k)
    for r, targets in obs.misclassification:
        possible[r, list(targets)] = 1.0  # Dirichlet components: in (0, 1) for every draw
    phase_map = layout.emission
    hidden = phase_map @ possible  # (K_h, k), sums of non-negative terms: no cancellation
    table = (emission_table(np.eye(k), layout.code_sets) @ hidden.T > 0).astype(np.float64)
    nr = obs.nonresponse
    if nr is not None:
        # response probabilities are Beta draws, in (0, 1) for every draw (0.5 stands
        # for any of them), and 1 for the states not listed; then r * e and 1 - r are
        # non-zero exactly where they can be
        r = np.ones(k)
        r[list(nr.states)] = 0.5
        kh = phase_map.shape[0]
        d_hidden = np.zeros(kh) if nr.attrition else None  # d only enters Q
        _, _, table = nonresponse_inputs(
            np.zeros((kh, kh)), np.zeros(kh), table, phase_map @ r, d_hidden, np
        )
    return table != 0


def fit_histories(spec, layout, histories: Histories) -> Histories:
    """The histories of the sampler's likelihood: ``histories`` split at renewal points.

    Same total log-likelihood and gradient as the unsplit tree, fewer forward
    steps. Per-respondent log-likelihoods (fit files, LOO, checks) keep the
    unsplit tree of :func:`markov_migration.inference.latent.latent_histories`.
    """
    support = emission_support(spec, layout)
    # covariates on misclassification stack one table per emission pattern (record code
    # ``code + n_codes * p``); every pattern's table has the baseline's support
    n_codes = support.shape[0]
    reps = int(np.max(histories.node_code, initial=0)) // n_codes + 1
    return split_histories(histories, renewal_states(np.tile(support, (reps, 1))))

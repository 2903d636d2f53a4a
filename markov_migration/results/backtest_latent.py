"""Backtest of latent-state fits: held-out records predicted through the observation model.

Layer 4 (results). In a latent-state fit (``[observation]``, ``[misclassification]``,
``[phases]``) a record is not the true state, so the pure backtest's predictive
``P(gap)[origin, :]`` does not describe the held-out record. Here, for every
posterior draw of the refit, the forward filter over each held-out respondent's
*kept* records (the machinery of the latent predictive check,
:func:`markov_migration.results.ppc_latent.forward_filter`) gives the distribution
of the hidden state at their last kept record given all their kept records; it
is carried over the gap to the first held-out record with ``P(gap) = expm(Q gap)``
of the hidden chain and recorded through the observation model (phases,
misclassification), which gives the predictive distribution of the held-out
*record code* (:func:`markov_migration.results.ppc_latent.record_predictive`).
The conventions are the check's: a censored held-out record stays censored (its
outcomes are its code or a state outside its set); a held-out record that is an
exactly timed entry (``exact``, e.g. a death: its time is the event, not an
interview) is not predicted, and the others are predicted given that the
respondent had not entered an exactly timed state by then. Coverage and scores
are then those of :func:`markov_migration.results.backtest.predict_heldout`,
with record codes (states, then censored codes) in place of states.

Fits with covariates or groups filter each interval with the generator of the
record that starts it, as the likelihood does, and carry the last kept record
over the gap with that record's generator (the pure backtest predicts from the
last kept row's covariates and group the same way).

``[nonresponse]`` fits are refused: which waves are answered depends on the true
state, and the held-out waves' missed interviews would have to be predicted too.
Latent fits with periods are refused too (the held-out gap would have to be split
at the cut points).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec
from markov_migration.fitfile.readback import panel_sequences
from markov_migration.results.latent_pieces import (
    interval_pieces,
    pattern_generators,
    piece_pmatrices,
)
from markov_migration.results.ppc_keyed import thinned_indices
from markov_migration.results.ppc_latent import (
    forward_filter,
    latent_model_arrays,
    record_predictive,
)

#: One-line refusal of a backtest of a latent model with periods.
PERIODS_REFUSAL = (
    "backtest does not support latent-state models with periods yet (the held-out gap "
    "would have to be split at the cut points)"
)

#: One-line refusal of a backtest of a ``[nonresponse]`` model.
NONRESPONSE_REFUSAL = (
    "backtest does not support [nonresponse] models yet (the held-out waves' missed "
    "interviews depend on the true state and are not predicted)"
)


def _rounded(gap: np.ndarray, resolution: float) -> np.ndarray:
    """Gaps rounded to the fit's resolution, as the latent likelihood and check round them."""
    if resolution > 0:
        return np.maximum(np.round(gap / resolution), 1) * resolution
    return gap


def latent_heldout_probs(
    tree: xr.DataTree,
    origin_rows: np.ndarray,
    gap: np.ndarray,
    destination: np.ndarray,
    n_draws: int,
):
    """Predictive distribution of each held-out record code under each posterior draw.

    Parameters
    ----------
    tree : xarray.DataTree
        The latent-state refit of the kept records (its embedded panel).
    origin_rows : ndarray of int (n,)
        Row of the embedded panel of each held-out respondent's last kept record.
    gap : ndarray (n,)
        Time from that record to the first held-out one (time units).
    destination : ndarray of int (n,)
        Record code of the first held-out record.
    n_draws : int
        Posterior draws used (thinned evenly).

    Returns
    -------
    probs : ndarray (D, m, n_codes)
        For the ``m`` predicted records (those not exactly timed entries).
    predicted : ndarray of bool (n,)
        Which held-out records are predicted.
    names : list of str
        Label of each record code (states, then censored codes).
    """
    spec = fit_spec(tree)
    if spec.observation.nonresponse is not None:
        raise InputError(NONRESPONSE_REFUSAL)
    if spec.periods:
        raise InputError(PERIODS_REFUSAL)
    if "panel_data" not in tree.children:
        raise InputError("the refit has no embedded panel: its records cannot be filtered")
    draws = thinned_indices(tree["posterior"], n_draws)
    spec, q, tables, pi, code_sets, exact_hidden = latent_model_arrays(tree, draws)
    names = list(spec.states) + list(spec.observation.censored_codes)
    resp, time, code, first, order = panel_sequences(tree)
    sorted_pos = np.empty(order.size, dtype=np.int64)
    sorted_pos[order] = np.arange(order.size)
    at = sorted_pos[np.asarray(origin_rows, dtype=np.int64)]
    last = np.r_[first[1:], True]
    if not last[at].all():  # the split keeps every record before a respondent's held-out ones
        raise ValueError("a held-out record does not follow its respondent's last kept record")
    res = float(tree["constant_data"]["resolution"]) if "constant_data" in tree.children else 0.0
    destination = np.asarray(destination, dtype=np.int64)
    predicted = ~np.isin(destination, np.asarray(spec.observation.exact, dtype=np.int64))
    at, dest = at[predicted], destination[predicted]
    # One generator per record pattern (covariates, groups), or one for all, as the check
    # filters: each interval with the generator of the record that starts it.
    q_pattern, generators, pattern = pattern_generators(tree, spec, draws, order)
    if q_pattern is None:
        q, gen = q[:, None], np.zeros(code.size, dtype=np.int64)
    else:
        q, gen = q_pattern, generators.generator_index(pattern)
    piece_gen, piece_gap, record_key = interval_pieces(
        gen, time, first, np.ones(code.size, dtype=bool), res
    )
    held_gap = _rounded(np.asarray(gap, dtype=np.float64)[predicted], res)
    held, held_key = np.unique(
        np.column_stack([gen[at].astype(np.float64), held_gap]), axis=0, return_inverse=True
    )
    held_gen, held_gaps = held[:, 0].astype(np.int64), held[:, 1]
    probs = np.zeros((draws.size, dest.size, len(code_sets)))
    for d in range(draws.size):
        p_gap = piece_pmatrices(q[d], piece_gen, piece_gap)
        filtered, _ = forward_filter(p_gap, tables[d], pi[d], code, first, record_key)
        carried = np.einsum(
            "rh,rhk->rk", filtered[at], piece_pmatrices(q[d], held_gen, held_gaps)[held_key]
        )
        probs[d] = record_predictive(
            carried, tables[d], dest, code_sets, spec.n_states, exact_hidden[None, :]
        )
    return probs, predicted, names


__all__ = ["NONRESPONSE_REFUSAL", "PERIODS_REFUSAL", "latent_heldout_probs"]

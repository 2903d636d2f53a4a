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
interview) is scored by its density (below), and the others are predicted given
that the respondent had not entered an exactly timed state by then. Coverage and scores
are then those of :func:`markov_migration.results.backtest.predict_heldout`,
with record codes (states, then censored codes) in place of states.

Fits with covariates or groups filter each interval with the generator of the
record that starts it, as the likelihood does, and carry the last kept record
over the gap with that record's generator (the pure backtest predicts from the
last kept row's covariates and group the same way). With periods the kept
intervals *and the held-out gap* are split at the cut points by records that say
nothing (:func:`markov_migration.results.latent_pieces.with_cut_records`), each
piece with its period's generator: the prediction is the filtered distribution
at the last kept record times the product of the pieces' ``P`` over the gap,
then the observation model.

With covariates on misclassification each kept record is filtered through the
misclassification matrix of its own covariates (as the likelihood does), and a
held-out record is recorded through its respondent's last kept record's (its own
covariate values may be a pattern the refit never saw).

Held-out records that are exact times (a panel's ``obstype`` 2 or 3, or an entry
into an ``exact`` state) are not records at a time: each is scored by the
likelihood's contribution (:mod:`markov_migration.core.forward_kernel`): an exact
entry by ``(P(gap) Q_off)[., dest]``, an exact transition time by
``(D(gap) (I + Q_off))[., dest]`` with ``D(t) = diag(exp(q_rr t))``, from the
filtered distribution at the last kept record and through the observation model.
The filter goes through a kept record flagged obstype 2 or 3 with that record's
own matrix on the hidden chain (``D(t) (I + Q_off)`` or ``P(t) Q_off``,
:func:`markov_migration.results.latent_pieces.piece_pmatrices`), as the
likelihood does. Without hidden states it makes no difference (the record's
state is known and the filter restarts there); with them (obstype 2 is refused
there for now, obstype 3 enters absorbing states only) ``P(t)`` would make
every later prediction wrong.

``[nonresponse]`` fits are predicted by
:mod:`markov_migration.results.backtest_nonresponse` (missed interviews as an outcome).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from markov_migration.core.forward import OBS_PANEL, OBS_TRANSITION
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec
from markov_migration.fitfile.readback import panel_sequences
from markov_migration.inputs.aggregate import period_of
from markov_migration.inputs.latent_design import has_covariates
from markov_migration.results.latent_pieces import (
    interval_pieces,
    misc_pattern_emissions,
    misc_pattern_tables,
    pattern_generators,
    piece_pmatrices,
    with_cut_records,
)
from markov_migration.results.ppc_keyed import thinned_indices
from markov_migration.results.ppc_latent import (
    forward_filter,
    latent_model_arrays,
    record_predictive,
)


def latent_heldout(tree: xr.DataTree, heldout, origin_rows: np.ndarray, n_draws: int):
    """Held-out records of a latent refit: predictives, and the densities of exact times.

    Parameters
    ----------
    tree : xarray.DataTree
    heldout : markov_migration.results.backtest.HeldOut
    origin_rows : ndarray of int (n,)
        Row of the refit's embedded panel of each last kept record (-1: not in
        the refit).
    n_draws : int

    Returns
    -------
    probs, origin, destination, names
        The records at a time: as :func:`latent_heldout_probs`, with their
        origins and destinations.
    notes : list of str
    timed : dict
        ``timed_origin`` and ``timed_lpd`` (log of the draw-averaged density) of
        the exact times, for :func:`markov_migration.results.backtest.predict_heldout`.
    """
    origin, destination = heldout.origin, heldout.destination
    kind = np.ones(origin.size, np.int64) if heldout.kind is None else heldout.kind
    notes, timed = [], {}
    # (no record follows an exactly timed entry: panel validation drops such repeats)
    # a respondent with a single kept record is not in the refit (dropped as every
    # respondent observed once): the filter starts at that record; with covariates or
    # groups its generator is unknown to the refit, so it is not predicted
    alone = (origin_rows < 0) & has_covariates(fit_spec(tree))
    if alone.any():
        notes.append(f"{int(alone.sum())} held-out respondent(s) with a single kept record "
                     "are not in the refit and are not predicted")  # fmt: skip
    keep = ~alone
    origin, destination = origin[keep], destination[keep]
    probs, predicted, names, density = latent_heldout_predictive(
        tree, origin_rows[keep], heldout.gap[keep], destination, n_draws, kind[keep],
        origin_code=origin, origin_time=heldout.origin_time[keep],
    )  # fmt: skip
    if not predicted.all():
        with np.errstate(divide="ignore"):
            timed = {"timed_origin": origin[~predicted],
                     "timed_lpd": np.log(density.mean(axis=0))}  # fmt: skip
        notes.append(
            f"{int((~predicted).sum())} held-out exact transition or entry time(s) are scored "
            "by their likelihood density in lpd only; the other records are predicted given "
            "no exactly timed entry before them"
        )
    if not predicted.any():
        raise InputError("every held-out record is an exact time: no records to predict")
    return probs, origin[predicted], destination[predicted], names, notes, timed


def latent_heldout_probs(tree: xr.DataTree, origin_rows, gap, destination, n_draws: int):
    """Predictive distribution of each held-out record code under each posterior draw.

    :func:`latent_heldout_predictive` of records at a time (obstype 1).

    Returns
    -------
    probs, predicted, names
        As :func:`latent_heldout_predictive`.
    """
    return latent_heldout_predictive(tree, origin_rows, gap, destination, n_draws)[:3]


def latent_heldout_predictive(
    tree: xr.DataTree,
    origin_rows: np.ndarray,
    gap: np.ndarray,
    destination: np.ndarray,
    n_draws: int,
    kind: np.ndarray | None = None,
    *,
    origin_code: np.ndarray | None = None,
    origin_time: np.ndarray | None = None,
):
    """Predictive of each held-out record under each draw, and densities of exact times.

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
    kind : ndarray of int (n,), optional
        Observation type of each held-out record (the panel's ``obstype``: 1 a
        record at a time, 2 an exact transition time, 3 an exact entry time);
        default all 1.
    origin_code, origin_time : ndarray (n,), optional
        Record code and time of each last kept record: needed for respondents
        with ``origin_rows`` -1 (a single kept record, not in the refit, which
        then starts their filter; only in fits without covariates or groups).

    Returns
    -------
    probs : ndarray (D, m, n_codes)
        For the ``m`` held-out records at a time (not exactly timed).
    predicted : ndarray of bool (n,)
        Which held-out records are records at a time (in ``probs``); the others
        are exact entry or transition times (obstype 2 or 3, or an entry into an
        ``exact`` state).
    names : list of str
        Label of each record code (states, then censored codes).
    density : ndarray (D, n - m)
        Likelihood contribution of each exactly timed held-out record (per time
        unit): ``(P(gap) Q_off)[., dest]`` for an entry, ``(D(gap) (I + Q_off))[., dest]``
        for a transition time, as the likelihood writes them
        (:mod:`markov_migration.core.forward_kernel`), from the filtered
        distribution at the last kept record and through the observation model.
    """
    spec = fit_spec(tree)
    if spec.observation.nonresponse is not None:
        raise ValueError("a [nonresponse] fit is predicted by backtest_nonresponse")
    if "panel_data" not in tree.children:
        raise InputError("the refit has no embedded panel: its records cannot be filtered")
    draws = thinned_indices(tree["posterior"], n_draws)
    spec, q, tables, pi, code_sets, exact_hidden = latent_model_arrays(tree, draws, True)
    n_codes = len(code_sets)
    names = list(spec.states) + list(spec.observation.censored_codes)
    resp, time, code, first, order = panel_sequences(tree)
    pdata = tree["panel_data"]
    # msm's observation type of each kept record: exact ones are filtered with their T
    rec_kind = (pdata["obstype"].to_numpy()[order] if "obstype" in pdata
                else np.ones(resp.size)).astype(np.int64)  # fmt: skip
    # covariates on misclassification: a table per emission pattern (D, P, n_codes, K_h)
    e_pattern, epattern = misc_pattern_emissions(tree, spec, draws, order)
    if e_pattern is None:
        tables, epattern = tables[:, None], np.zeros(resp.size, dtype=np.int64)
    else:
        tables = misc_pattern_tables(spec, e_pattern, code_sets)
    sorted_pos = np.empty(order.size, dtype=np.int64)
    sorted_pos[order] = np.arange(order.size)
    origin_rows = np.asarray(origin_rows, dtype=np.int64)
    alone = np.flatnonzero(origin_rows < 0)
    if alone.size:  # single kept records join the sequences as respondents of their own
        if origin_code is None or origin_time is None or has_covariates(spec):
            raise ValueError("a held-out respondent's last kept record is not in the refit")
        n_in = code.size
        resp = np.r_[resp, resp.max(initial=-1) + 1 + np.arange(alone.size)]
        time = np.r_[time, np.asarray(origin_time, dtype=float)[alone]]
        code = np.r_[code, np.asarray(origin_code, dtype=np.int64)[alone]]
        first = np.r_[first, np.ones(alone.size, dtype=bool)]
        epattern = np.r_[epattern, np.zeros(alone.size, dtype=np.int64)]  # no covariates
        rec_kind = np.r_[rec_kind, np.full(alone.size, OBS_PANEL, np.int64)]
        sorted_pos = np.r_[sorted_pos, n_in + np.arange(alone.size)]
        origin_rows = origin_rows.copy()
        origin_rows[alone] = order.size + np.arange(alone.size)
    at = sorted_pos[origin_rows]
    last = np.r_[first[1:], True]
    if not last[at].all():  # the split keeps every record before a respondent's held-out ones
        raise ValueError("a held-out record does not follow its respondent's last kept record")
    destination = np.asarray(destination, dtype=np.int64)
    kind = np.ones(destination.size, np.int64) if kind is None else np.asarray(kind, np.int64)
    exact_codes = np.asarray(spec.observation.exact, dtype=np.int64)
    predicted = (kind == OBS_PANEL) & ~np.isin(destination, exact_codes)
    # the held-out records join their respondents' kept records with a blank code (an
    # emission row of ones): the filter's one-step-ahead distribution at them is the
    # prediction, and the gap is split at the period cut points as every interval is
    tables = np.concatenate([tables, np.ones_like(tables[..., :1, :])], axis=-2)
    q_pattern, generators, pattern = pattern_generators(tree, spec, draws, order)
    held = np.r_[np.full(code.size, -1), np.arange(destination.size)]
    # a held-out record is a blank at a time: P(gap) to it (its own kind is scored below)
    rec_kind = np.r_[rec_kind, np.full(destination.size, OBS_PANEL, np.int64)]
    resp, time = np.r_[resp, resp[at]], np.r_[time, time[at] + np.asarray(gap, dtype=float)]
    code = np.r_[code, np.full(destination.size, n_codes, dtype=np.int64)]
    if q_pattern is None:
        q, pat = q[:, None], np.zeros(resp.size, dtype=np.int64)
    else:  # a held-out record is predicted with its last kept record's covariates and group
        q, pat = q_pattern, np.r_[pattern, pattern[at]]
    # ... and recorded with its last kept record's misclassification covariates (the
    # held-out record's own are not in the refit's patterns; equal for fixed covariates)
    epat = np.r_[epattern, epattern[at]]
    srt = np.lexsort((time, resp))
    resp, time, code, held, pat, epat, rec_kind = (
        a[srt] for a in (resp, time, code, held, pat, epat, rec_kind)
    )
    real = np.ones(resp.size, dtype=bool)
    period = None
    if spec.periods:
        resp, time, code, real, source, held, pat, epat = with_cut_records(
            resp, time, code, n_codes, spec.periods, held, pat, epat
        )
        rec_kind = np.where(source >= 0, rec_kind[source], OBS_PANEL)  # cut records: at a time
        period = period_of(time, spec)
    gen = pat if q_pattern is None else generators.generator_index(pat, period)
    first = np.r_[True, resp[1:] != resp[:-1]]
    res = float(tree["constant_data"]["resolution"]) if "constant_data" in tree.children else 0.0
    piece_gen, piece_gap, key, piece_kind = interval_pieces(gen, time, first, real, res, rec_kind)
    rows = np.empty(destination.size, dtype=np.int64)
    rows[held[held >= 0]] = np.flatnonzero(held >= 0)
    timed = np.flatnonzero(~predicted)
    t_rows, t_dest, t_kind = rows[timed], destination[timed], kind[timed]
    probs = np.zeros((draws.size, int(predicted.sum()), n_codes))
    density = np.zeros((draws.size, timed.size))
    fcode = code + tables.shape[2] * epat  # row of the stacked tables
    p_rows = rows[predicted]
    for d in range(draws.size):
        p_gap = piece_pmatrices(q[d], piece_gen, piece_gap, piece_kind)
        stacked = tables[d].reshape(-1, tables.shape[-1])
        filtered, carried = forward_filter(p_gap, stacked, pi[d], fcode, first, key)
        for e in np.unique(epat[p_rows]):  # each held-out record through its pattern
            sel = np.flatnonzero(epat[p_rows] == e)
            probs[d, sel] = record_predictive(
                carried[p_rows[sel]], tables[d, e, :n_codes], destination[predicted][sel],
                code_sets, spec.n_states, exact_hidden[None, :],
            )  # fmt: skip
        if timed.size:
            density[d] = _timed_density(
                q[d][piece_gen[key[t_rows]]], piece_gap[key[t_rows]], filtered[t_rows - 1],
                carried[t_rows], tables[d, epat[t_rows], t_dest], t_kind,
            )  # fmt: skip
    return probs, predicted, names, density


def _timed_density(q, gap, before, carried, emission, kind) -> np.ndarray:
    """Likelihood contribution of exactly timed records (per time unit).

    Parameters
    ----------
    q : ndarray (R, K_h, K_h)
        Generator of the piece ending at each record.
    gap : ndarray (R,)
        Length of that piece (time units).
    before : ndarray (R, K_h)
        Filtered hidden distribution at the record before (the piece's start).
    carried : ndarray (R, K_h)
        ``before @ P(gap)``: the hidden distribution just before the record.
    emission : ndarray (R, K_h)
        Probability of the recorded code given each hidden state.
    kind : ndarray of int (R,)
        2: ``T = D(gap) (I + Q_off)``; otherwise an entry, ``T = P(gap) Q_off``.
    """
    off = q.copy()
    off[:, np.arange(q.shape[-1]), np.arange(q.shape[-1])] = 0.0
    entry = np.einsum("rh,rhk->rk", carried, off)
    # an exact transition time: the previous state was kept throughout the piece
    kept = before * np.exp(np.diagonal(q, axis1=1, axis2=2) * gap[:, None])
    moved = kept + np.einsum("rh,rhk->rk", kept, off)
    hidden = np.where((kind == OBS_TRANSITION)[:, None], moved, entry)
    return np.sum(hidden * emission, axis=1)


__all__ = ["latent_heldout", "latent_heldout_predictive", "latent_heldout_probs"]

"""Predictive check of ``[nonresponse]`` fits: each scheduled interview, missed ones included.

Layer 4 (results). A ``[nonresponse]`` fit's records are the panel's records plus
every *missed* scheduled interview (the waves from a respondent's first record to
the panel's last, :func:`markov_migration.inputs.nonresponse.schedule_records`),
and a missed interview is a record whose emission is the response model
(``1 - response[s]``, or 1 once lost to attrition). The check therefore predicts
every scheduled interview with **"missed" as an outcome**: for every posterior
draw, the forward filter over all earlier records (answered and missed, on the
hidden space doubled by attrition; the same generator and emission table as the
likelihood, :func:`markov_migration.core.nonresponse.nonresponse_inputs`) gives
the hidden state just after the previous record; it is carried over the gap and
recorded through the response and observation models, giving the distribution of
(answered as each state, missed). Testing only the answered records conditional
on response would hide the part of the model that nonresponse adds: whether the
number and timing of missed waves (intermittent and trailing) are what the
response probabilities and attrition hazards expect.

With ``periods`` the intervals between these records (missed ones included) are
split at the cut points by records that say nothing, as in the likelihood
(:mod:`markov_migration.inference.latent`): the exact-entry block's blank row, all
ones in the active and the lost halves; they are not predicted.

Other records follow the latent check
(:mod:`markov_migration.results.ppc_latent`): a further record in a wave that
already has one is predicted over the record codes only (no response factor); a
censored answer stays censored (its outcomes: the code, a state outside its set,
or missed); exactly timed entries are not checked and the other records are
predicted given no such entry before them. Counts of (previous record, gap band,
next outcome), with ``missed`` both as a previous record and as an outcome, are
compared with Pearson's discrepancy as in the other checks. The gap band of a
scheduled interview is taken from its wave's date (where a missed interview is
placed), not from the answered interview's own date, so that the band does not
give the outcome away.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from markov_migration.core.forward import OBS_EXACT, OBS_PANEL
from markov_migration.core.nonresponse import nonresponse_inputs
from markov_migration.core.phases import phase_expansion
from markov_migration.defaults import CI_PROB, PPC_DRAWS, SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec
from markov_migration.fitfile.readback import panel_sequences
from markov_migration.inputs.aggregate import period_of
from markov_migration.inputs.latent_design import carry_forward, cut_records
from markov_migration.inputs.nonresponse import schedule_records
from markov_migration.inputs.waves import wave_bins, wave_index
from markov_migration.results.latent_pieces import (
    interval_pieces,
    pattern_generators,
    piece_pmatrices,
)
from markov_migration.results.ppc import PPC_BANDS, PPCResult
from markov_migration.results.ppc_keyed import thinned_indices
from markov_migration.results.ppc_latent import (
    compare_records,
    forward_filter,
    latent_model_arrays,
    ppc_latent,
    record_predictive,
)

#: Label of a missed scheduled interview (as a previous record and as an outcome).
MISSED = "missed"


def latent_check(tree: xr.DataTree, **kwargs) -> PPCResult:
    """The predictive check of any latent fit: :func:`ppc_nonresponse` or ``ppc_latent``."""
    if fit_spec(tree).observation.nonresponse is not None:
        return ppc_nonresponse(tree, **kwargs)
    return ppc_latent(tree, **kwargs)


def response_draws(post, spec, draws, exact_hidden):
    """The response model's draws, and the exactly timed states of the extended chain.

    Returns
    -------
    response : ndarray (D, K)
        Response probability of each observed state (1 where none is estimated).
    attrition : ndarray (D, K) or None
        Attrition hazard of each observed state (per time unit); None without attrition.
    exact_hidden : ndarray of bool
        The exactly timed hidden states, doubled (active, then lost copies) with attrition.
    """
    response = _state_draws(post, "response", "response_state", spec.states, 1.0, draws)
    attrition = None
    if spec.observation.nonresponse.attrition:
        attrition = _state_draws(post, "attrition", "attrition_state", spec.states, 0.0, draws)
        exact_hidden = np.r_[exact_hidden, exact_hidden]  # active, then lost copies
    return response, attrition, exact_hidden


def _state_draws(post, name: str, dim: str, states, fill: float, draws) -> np.ndarray:
    """``post[name]`` of thinned draws as a per-state array (D, K) with ``fill`` elsewhere."""
    out = np.full((draws.size, len(states)), fill)
    if name not in post:
        return out
    values = post[name].transpose(*SAMPLE_DIMS, dim).to_numpy()
    values = values.reshape(-1, values.shape[-1])[draws]
    for j, label in enumerate(post[dim].values.astype(str)):
        out[:, list(states).index(label)] = values[:, j]
    return out


def ppc_nonresponse(
    tree: xr.DataTree,
    *,
    n_draws: int = PPC_DRAWS,
    n_bands: int = PPC_BANDS,
    ci: float = CI_PROB,
    seed: int = 0,
) -> PPCResult:
    """Observed vs replicated scheduled interviews of a ``[nonresponse]`` fit (module docstring).

    Returns
    -------
    PPCResult
        ``table`` as :func:`markov_migration.results.ppc_latent.ppc_latent`, with
        ``missed`` among the ``from`` and ``to`` values.
    """
    if "panel_data" not in tree.children:
        raise InputError("the fit file has no embedded panel: no predictive check of its records")
    rng = np.random.default_rng(seed)
    post = tree["posterior"]
    draws = thinned_indices(post, n_draws)
    spec, q, tables, pi, code_sets, exact_hidden = latent_model_arrays(tree, draws)
    obs = spec.observation
    k, n = spec.n_states, len(code_sets)
    layout = phase_expansion(spec.allowed_matrix(), obs.phases or {})
    phase_map = layout.emission
    response, attrition, exact_hidden = response_draws(post, spec, draws, exact_hidden)
    # the records of the likelihood: answered, missed and unscheduled ones
    resp, time, code, _, order = panel_sequences(tree)
    panel_times = time
    q_pattern, generators, pattern = pattern_generators(tree, spec, draws, order)
    exact_codes = np.asarray(obs.exact, dtype=np.int64)
    obstype = np.where(np.isin(code, exact_codes), OBS_EXACT, OBS_PANEL)
    leaving = {r for r, _ in spec.transitions}
    absorbing = [r for r in range(k) if r not in leaving]
    # nb: rows of each block of the emission table; with periods the plain codes end
    # with the blank cut record (all ones), as in the likelihood (inference.latent)
    nb = n + bool(spec.periods)
    if spec.periods:
        tables = np.concatenate([tables, np.ones_like(tables[:, :1])], axis=1)
    rec = schedule_records(resp, time, code, obstype, np.ones(code.size), nb, absorbing)
    ids, time, code = rec.ids, rec.times, rec.codes
    real = np.ones(ids.size, dtype=bool)
    gen = np.zeros(ids.size, dtype=np.int64)
    if q_pattern is None:
        q = q[:, None]
    else:  # a missed interview takes the pattern of the record before it (as the likelihood)
        q = q_pattern
        pat = carry_forward(resp, panel_times, pattern, ids, time)
        period = None
        if spec.periods:  # split intervals at the cut points: the exact-entry block's blank row
            after, at = cut_records(ids, time, spec.periods)
            ids, time, pat = np.r_[ids, ids[after]], np.r_[time, at], np.r_[pat, pat[after]]
            code = np.r_[code, np.full(after.size, 2 * nb + 1 + n, dtype=np.int64)]
            real = np.r_[real, np.zeros(after.size, bool)]
            srt = np.lexsort((time, ids))  # cut points lie strictly inside intervals: no ties
            ids, time, code, pat, real = (a[srt] for a in (ids, time, code, pat, real))
            period = period_of(time, spec)
        gen = generators.generator_index(pat, period)
    first = np.r_[True, ids[1:] != ids[:-1]]
    res = float(tree["constant_data"]["resolution"]) if "constant_data" in tree.children else 0.0
    piece_gen, piece_gap, key = interval_pieces(gen, time, first, real, res)
    # each checked record and the real record before it (cut records are not records)
    rows = np.flatnonzero(real)
    later = np.flatnonzero(~first[rows])
    prev_all, nxt = rows[later - 1], rows[later]
    keep = code[nxt] <= 2 * nb  # exactly timed entries are not checked
    prev, nxt = prev_all[keep], nxt[keep]
    unscheduled = code[nxt] < nb
    # previous record and observed outcome: plain codes, then "missed" (index n)
    plain = np.where(code < nb, code, np.where(code < 2 * nb, code - nb, code - 2 * nb - 1))
    plain = np.where(code == 2 * nb, n, plain)
    frm = plain[prev]
    to = plain[nxt]
    pred = np.zeros((draws.size, nxt.size, n + 1))
    for d in range(draws.size):
        carried, tf = extended_filter(
            q[d], pi[d], tables[d], response[d], None if attrition is None else attrition[d],
            phase_map, (piece_gen, piece_gap, key), code, first,
        )  # fmt: skip
        w = carried[nxt]
        pred[d, unscheduled, :n] = record_predictive(
            w[unscheduled], tf[:n], to[unscheduled], code_sets, k, exact_hidden[None, :]
        )
        pred[d, ~unscheduled] = _scheduled(w[~unscheduled], tf, to[~unscheduled], code_sets, k,
                                           exact_hidden, nb)  # fmt: skip
    names = list(spec.states) + list(obs.censored_codes) + [MISSED]
    notes = [
        f"nonresponse fit: every scheduled interview is predicted, '{MISSED}' being an outcome "
        f"(the response model); {rec.n_missed:,} missed and {rec.n_answered:,} answered "
        "scheduled interviews after the first records; censored records stay censored"
    ]
    if spec.periods:
        notes.append(
            "intervals (missed waves included) are split at the period cut points, each piece "
            "with its period's generator, as in the likelihood"
        )
    n_exact = int(np.sum(code[~first & real] > 2 * nb))
    if n_exact:
        notes.append(
            f"{n_exact} exactly timed entr(ies) are not checked; the other records are "
            "predicted given no such entry before them"
        )
    # gap bands from the *scheduled* date of a scheduled interview (its wave's date): a
    # missed interview is dated at its wave's median, so its actual gap would give the
    # outcome away (an answered one's date varies around it)
    when = time[nxt].copy()
    sched = ~unscheduled
    when[sched] = rec.wave_times[wave_index(time[nxt][sched], wave_bins(panel_times))]
    band_gap = np.maximum(when - time[prev], 0.0)
    return compare_records(
        pred, frm, to, band_gap, names, names, n_bands=n_bands, ci=ci, rng=rng, notes=notes
    )


def extended_filter(q_d, pi_d, table_d, response_d, attrition_d, phase_map, pieces, code, first):
    """One draw's forward filter over the attrition-extended chain (check and backtest).

    The response model extends every pattern's generator alike
    (:func:`markov_migration.core.nonresponse.nonresponse_inputs`: answered and missed
    interviews, and losses for good when ``attrition_d`` is given).

    Parameters
    ----------
    q_d : ndarray (M, K_h, K_h)
        The draw's hidden generator of each pattern.
    pi_d, table_d : ndarray
        First weights (K_h,) and emission table (n_codes, K_h).
    response_d : ndarray (K,)
        Response probability of each observed state.
    attrition_d : ndarray (K,) or None
        Attrition hazard of each observed state (per time unit).
    phase_map : ndarray (K_h, K)
    pieces : tuple
        ``(piece_gen, piece_gap, key)`` of :func:`~markov_migration.results.latent_pieces.interval_pieces`.
    code, first : ndarray (n,)
        Record codes of the extended table, and first records of respondents.

    Returns
    -------
    carried : ndarray (n, 2 K_h)
        Each record's one-step-ahead distribution over the extended hidden states.
    table : ndarray
        The extended emission table.
    """
    piece_gen, piece_gap, key = pieces
    d_hidden = None if attrition_d is None else phase_map @ attrition_d
    qf = []
    for q_m in q_d:
        q_m, pif, tf = nonresponse_inputs(q_m, pi_d, table_d, phase_map @ response_d, d_hidden)
        qf.append(q_m)
    p_gap = piece_pmatrices(np.stack(qf), piece_gen, piece_gap)
    _, carried = forward_filter(p_gap, tf, pif, code, first, key)
    return carried, tf


def _scheduled(w, table, observed, code_sets, k: int, exact_hidden, nb: int) -> np.ndarray:
    """Predictive of scheduled interviews over (answered as each code, missed).

    Parameters
    ----------
    w : ndarray (R, K')
        Hidden-state distribution at each interview given the earlier records.
    table : ndarray (3 nb + 1, K')
        The nonresponse emission table (plain, answered, missed, exact blocks of
        ``nb`` rows: the ``n`` codes of ``code_sets``, then the blank cut record
        with periods).
    observed : ndarray of int (R,)
        Observed outcome: a plain code answered, or ``n`` for missed.
    code_sets : tuple of tuple of int
    k : int
    exact_hidden : ndarray of bool (K',)
    nb : int
        Rows of each block of ``table``.

    Returns
    -------
    ndarray (R, n + 1)
        Answered as a state, or (when the answer observed is censored) as that
        code or a state outside its set; last column missed. Rows sum to 1.
    """
    n = len(code_sets)
    w = np.where(exact_hidden[None, :], 0.0, w)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    answered = w @ table[nb : nb + n].T  # (R, n): r_s times the code's event probability
    out = np.zeros((w.shape[0], n + 1))
    out[:, :k] = answered[:, :k]
    for c in range(k, n):
        rows = np.flatnonzero(observed == c)
        out[rows, c] = answered[rows, c]
        out[np.ix_(rows, list(code_sets[c]))] = 0.0
    out[:, n] = w @ table[2 * nb]
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-300)


__all__ = ["MISSED", "latent_check", "ppc_nonresponse"]

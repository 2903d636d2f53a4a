"""Posterior predictive check of latent-state fits: each next record given the records before it.

Layer 4 (results). In a latent-state fit (``[observation]``, ``[misclassification]``,
``[phases]``) a record is not the true state, so the pure-panel check
(:func:`markov_migration.results.ppc.ppc_transitions`, which replicates each pair from
``P(gap)[recorded from, :]``) does not test the fitted model. This check uses the
model's own one-step-ahead predictive: for every posterior draw and every interval
of a respondent, the forward filter gives the distribution of the hidden state
just after the previous record given *all* the respondent's records so far; it is
carried over the gap with ``P(gap) = expm(Q gap)`` (hidden generator) and recorded
through the observation model (phases, misclassification), giving the predictive
distribution of the next record. Replications draw each next record from it;
observed and replicated counts of (previous record, gap band, next record) are
compared with Pearson's discrepancy against the draw's expected counts, as the
pure-panel check does, and the posterior predictive p-value is ``Pr(X(y_rep) >=
X(y))``.

With covariates, groups or periods each interval uses, as in the likelihood, the
generator of the record that starts it (:func:`pattern_generators`; with phases
the hidden one, each observed transition's terms on its phase exits), and with
periods an interval that crosses a cut point is split there by a record that
says nothing (emission row of ones), so each piece has its period's generator.

``[nonresponse]`` fits are checked by :mod:`markov_migration.results.ppc_nonresponse`
(missed interviews as an outcome), which reuses :func:`forward_filter` and
:func:`compare_records`; :func:`markov_migration.results.ppc_nonresponse.latent_check`
picks the check of a latent fit.

Design conventions (the data's own, so the check does not test them):

- a censored record stays censored: when the observed next record is a code
  standing for a set of states, its outcomes are that code (any state of the set)
  or one of the states outside the set;
- intervals that end in an exactly timed entry (``exact``, e.g. a death) are not
  checked (their record time is the event itself, not a scheduled interview), and
  the other intervals' predictive is conditional on not having entered an exactly
  timed state by the next record (the respondent was interviewed, so alive);
- intervals that end in a record flagged as an exact transition or entry time
  (the panel's ``obstype`` 2 or 3) are not checked either; the filter goes
  through such a record with its own matrix, ``D(t) (I + Q_off)`` or
  ``P(t) Q_off`` on the hidden chain (:func:`~markov_migration.results.latent_pieces.piece_pmatrices`),
  as the likelihood does, so the intervals after it are predicted exactly;
- the first record starts the filter: in hidden models from the estimated initial
  distribution ``initial``, otherwise uniformly over the states the first record
  allows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.core.forward import emission_table
from markov_migration.core.phases import phase_expansion
from markov_migration.core.ppc import band_index, band_labels, chi_square, interval_bands, ppp
from markov_migration.defaults import CI_PROB, PPC_DRAWS, SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec
from markov_migration.fitfile.readback import (
    panel_sequences,
)
from markov_migration.inputs.aggregate import period_of
from markov_migration.inputs.latent_design import cut_records
from markov_migration.inputs.misc_covariates import has_misclassification_covariates
from markov_migration.results.latent_pieces import (
    interval_pieces,
    misc_pattern_emissions,
    misc_pattern_tables,
    pattern_generators,
    piece_pmatrices,
)
from markov_migration.results.ppc import PPC_BANDS, PPCResult
from markov_migration.results.ppc_keyed import thinned_indices

#: What commands that do not (yet) filter with per-pattern emission tables say.
MISC_COVARIATES_REFUSAL = (
    "the fit has covariates on misclassification probabilities ([covariates.NAME] "
    "misclassification): this command does not support them yet"
)


def is_latent(tree: xr.DataTree) -> bool:
    """Whether a fit is of a latent-state model (its records are not the true states)."""
    spec = fit_spec(tree)
    return spec.observation is not None and spec.observation.latent


def latent_model_arrays(tree: xr.DataTree, draws: np.ndarray, per_pattern: bool = False):
    """Hidden generators, emission tables, initial weights and code sets of thinned draws.

    A fit with covariates on misclassification has one table per emission pattern
    (:func:`~markov_migration.results.latent_pieces.misc_pattern_emissions`): callers
    that handle them pass ``per_pattern=True`` and get the baseline tables here; the
    others are refused (InputError, one line).

    Returns
    -------
    spec : ModelSpec
    q : ndarray (D, K_h, K_h) or None
        Hidden generator of each draw (None for a fit with covariates, groups or
        periods, whose ``Q`` is on the reported grid: see :func:`pattern_generators`).
    tables : ndarray (D, n_codes, K_h)
        Probability of each record code given each hidden state.
    pi : ndarray (D, K_h)
        First-record weights (``initial`` in hidden models, else ones).
    code_sets : tuple of tuple of int
        States each record code stands for.
    exact_hidden : ndarray of bool (K_h,)
        Hidden states of exactly timed absorbing states.
    """
    spec = fit_spec(tree)
    obs = spec.observation
    if not per_pattern and has_misclassification_covariates(spec):
        raise InputError(MISC_COVARIATES_REFUSAL)
    k = spec.n_states
    layout = phase_expansion(spec.allowed_matrix(), obs.phases or {})
    kh = layout.observed.size
    post = tree["posterior"]
    name = "Q_latent" if "Q_latent" in post else "Q"
    lead = ("from_latent", "to_latent") if name == "Q_latent" else ("from_state", "to_state")
    q = None  # with covariates, groups or periods: the patterns' (pattern_generators)
    if set(post[name].dims) == {*SAMPLE_DIMS, *lead}:
        q = post[name].transpose(*SAMPLE_DIMS, *lead).to_numpy().reshape(-1, kh, kh)[draws]
    if "misclassification" in post:
        e = post["misclassification"].transpose(*SAMPLE_DIMS, "true_state", "recorded_state")
        e = e.to_numpy().reshape(-1, k, k)[draws]
    else:
        e = np.broadcast_to(np.eye(k), (draws.size, k, k))
    if "initial" in post:
        pi = post["initial"].transpose(*SAMPLE_DIMS, "latent_state").to_numpy()
        pi = pi.reshape(-1, kh)[draws]
    else:
        pi = np.ones((draws.size, kh))
    code_sets = tuple((r,) for r in range(k)) + tuple(m for _, m in obs.censored)
    phase_map = layout.emission
    tables = np.stack([emission_table(phase_map @ e[d], code_sets) for d in range(draws.size)])
    exact_hidden = np.isin(layout.observed, np.asarray(obs.exact, dtype=np.int64))
    return spec, q, tables, pi, code_sets, exact_hidden


def ppc_latent(
    tree: xr.DataTree,
    *,
    n_draws: int = PPC_DRAWS,
    n_bands: int = PPC_BANDS,
    ci: float = CI_PROB,
    seed: int = 0,
) -> PPCResult:
    """Observed vs replicated next records of a latent-state fit (see the module docstring).

    Returns
    -------
    PPCResult
        ``table`` columns: ``from, to, band, band_lower, band_upper, observed,
        expected, mean, median, lower, upper`` (counts of records), ``from`` and
        ``to`` being recorded codes (states and censored codes).
    """
    if "panel_data" not in tree.children:
        raise InputError("the fit file has no embedded panel: no predictive check of its records")
    if fit_spec(tree).observation.nonresponse is not None:
        raise InputError(
            "ppc_latent does not predict missed interviews: a [nonresponse] fit is checked by "
            "markov_migration.results.ppc_nonresponse"
        )
    rng = np.random.default_rng(seed)
    draws = thinned_indices(tree["posterior"], n_draws)
    spec, q, tables, pi, code_sets, exact_hidden = latent_model_arrays(tree, draws, True)
    resp, time, code, first, order = panel_sequences(tree)
    # covariates on misclassification: a table per emission pattern, each record's own
    e_pattern, epattern = misc_pattern_emissions(tree, spec, draws, order)
    if e_pattern is None:
        epattern = np.zeros(resp.size, dtype=np.int64)
    else:
        tables = misc_pattern_tables(spec, e_pattern, code_sets)  # (D, P, n_codes, K_h)
    pdata = tree["panel_data"]
    # msm's observation type of each record (the panel's obstype column; 1 without it)
    kind = pdata["obstype"].to_numpy()[order] if "obstype" in pdata else np.ones(resp.size, int)
    n_codes = len(code_sets)
    names = list(spec.states) + list(spec.observation.censored_codes)
    exact_codes = set(spec.observation.exact)
    q_pattern, generators, pattern = pattern_generators(tree, spec, draws, order)
    real = np.ones(resp.size, dtype=bool)
    gen = np.zeros(resp.size, dtype=np.int64)
    if q_pattern is None:
        q = q[:, None]
    else:
        q, period = q_pattern, None
        if spec.periods:  # split intervals at the cut points, as the likelihood does
            after, at = cut_records(resp, time, spec.periods)
            resp, time = np.r_[resp, resp[after]], np.r_[time, at]
            code = np.r_[code, np.full(after.size, n_codes, dtype=np.int64)]
            pattern, real = np.r_[pattern, pattern[after]], np.r_[real, np.zeros(after.size, bool)]
            kind, epattern = np.r_[kind, np.ones(after.size, int)], np.r_[epattern, epattern[after]]
            srt = np.lexsort((time, resp))  # cut points lie strictly inside intervals: no ties
            resp, time, code, pattern, real, kind, epattern = (
                a[srt] for a in (resp, time, code, pattern, real, kind, epattern)
            )
            first = np.r_[True, resp[1:] != resp[:-1]]
            period = period_of(time, spec)
            # a cut record says nothing about the state: its emission row is all ones
            tables = np.concatenate([tables, np.ones_like(tables[..., :1, :])], axis=-2)
        gen = generators.generator_index(pattern, period)
    res = float(tree["constant_data"]["resolution"]) if "constant_data" in tree.children else 0.0
    # a kept exact transition or entry time is filtered with its own T (latent_pieces)
    piece_gen, piece_gap, key, piece_kind = interval_pieces(gen, time, first, real, res, kind)
    # checked intervals: (previous record, next record) of the same respondent
    rows = np.flatnonzero(real)
    later = np.flatnonzero(~first[rows])
    prev, nxt = rows[later - 1], rows[later]
    gap = time[nxt] - time[prev]
    if res > 0:
        gap = np.maximum(np.round(gap / res), 1) * res
    # exact entry or transition times are densities, not records to predict (the
    # filter goes through them with their own T: D(t) (I + Q_off) or P(t) Q_off)
    timed = kind[nxt] != 1
    checked = ~np.isin(code[nxt], list(exact_codes)) & ~timed
    if not checked.any():
        raise InputError(
            "every interval ends in an exact entry or transition time: no records to predict"
        )
    if tables.ndim == 3:  # one emission table for every record
        tables = tables[:, None]
    n_rows = tables.shape[2]  # codes of one pattern's table (with the cut record's)
    fcode = code + n_rows * epattern  # row of the stacked tables
    pred = np.zeros((draws.size, nxt.size, n_codes))
    survive = checked[:, None] & exact_hidden[None, :]
    for d in range(draws.size):
        p_gap = piece_pmatrices(q[d], piece_gen, piece_gap, piece_kind)
        stacked = tables[d].reshape(-1, tables.shape[-1])
        _, carried = forward_filter(p_gap, stacked, pi[d], fcode, first, key)
        for p in np.unique(epattern[nxt]):  # each next record through its own pattern
            rows = np.flatnonzero(epattern[nxt] == p)
            pred[d, rows] = record_predictive(
                carried[nxt[rows]], tables[d, p, :n_codes], code[nxt[rows]], code_sets,
                spec.n_states, survive[rows],
            )  # fmt: skip
    notes = [
        "latent-state fit: each next record is predicted from the records before it through "
        "the observation model (forward filter); censored records stay censored"
    ]
    if timed.any():
        notes.append(
            f"{int(timed.sum())} interval(s) ending in a record flagged as an exact transition "
            "or entry time (obstype 2 or 3) are not checked"
        )
    if (~checked & ~timed).any():
        notes.append(
            f"{int((~checked & ~timed).sum())} interval(s) ending in an exactly timed entry "
            f"({', '.join(spec.states[s] for s in sorted(exact_codes))}) are not checked; the "
            "others are predicted given survival to the next record"
        )
    if e_pattern is not None:
        notes.append(
            "each record is predicted through the misclassification probabilities of its own "
            "covariates (as in the likelihood)"
        )
    if q_pattern is not None:
        notes.append(
            "each interval is predicted with the generator of the record that starts it (its "
            "covariates and group"
            + (", split at the period cut points" if spec.periods else "")
            + "), as in the likelihood"
        )
    return compare_records(
        pred[:, checked], code[prev][checked], code[nxt][checked], gap[checked],
        names, names, n_bands=n_bands, ci=ci, rng=rng, notes=notes,
    )  # fmt: skip


def compare_records(
    pred, frm, to, gap, from_names, to_names, *, n_bands: int, ci: float, rng, notes
) -> PPCResult:
    """Observed vs replicated counts of (previous record, gap band, next record).

    Parameters
    ----------
    pred : ndarray (D, m, n_out)
        Predictive distribution of each checked interval's next record over the
        outcomes ``to_names`` under each draw.
    frm, to : ndarray of int (m,)
        Previous record (index into ``from_names``) and observed next record
        (index into ``to_names``).
    gap : ndarray (m,)
        Interval lengths (time units; bands as the pure-panel check makes them).
    from_names, to_names : list of str
    n_bands : int
    ci : float
    rng : numpy.random.Generator
        Draws the replicated next records.
    notes : list of str

    Returns
    -------
    PPCResult
        Pearson's discrepancy against each draw's expected counts and its
        posterior predictive p-value ``Pr(X(y_rep) >= X(y))``.
    """
    n_draw = pred.shape[0]
    n_from, n_out = len(from_names), len(to_names)
    edges = interval_bands(gap, np.ones(gap.size), n_bands)
    band = band_index(gap, edges)
    n_band = edges.size - 1 if edges.size > 1 else 1
    cell = frm * n_band + band  # (interval,) cell of the previous record and band
    n_cells = n_from * n_band
    y = np.zeros((n_cells, n_out))
    np.add.at(y, (cell, to), 1.0)
    expected = np.zeros((n_draw, n_cells, n_out))
    for c in np.unique(cell):
        expected[:, c] = pred[:, cell == c].sum(axis=1)
    # replicate: one next record per interval and draw from its predictive
    u = rng.random(pred.shape[:2])
    rep_code = (np.cumsum(pred, axis=-1) < u[..., None]).sum(axis=-1)
    rep_code = np.minimum(rep_code, n_out - 1)
    y_rep = np.zeros((n_draw, n_cells, n_out))
    for d in range(n_draw):
        np.add.at(y_rep[d], (cell, rep_code[d]), 1.0)
    flat = n_cells * n_out
    y_flat = np.broadcast_to(y.reshape(flat), (n_draw, flat))
    x_obs = chi_square(y_flat, expected.reshape(-1, flat))
    x_rep = chi_square(y_rep.reshape(-1, flat), expected.reshape(-1, flat))
    rep = y_rep.reshape(-1, flat)
    lo, med, hi = np.quantile(rep, [(1 - ci) / 2, 0.5, (1 + ci) / 2], axis=0)
    fi, bi, ti = np.unravel_index(np.arange(flat), (n_from, n_band, n_out))
    labels = band_labels(edges)
    table = pd.DataFrame(
        {
            "from": [from_names[i] for i in fi],
            "to": [to_names[i] for i in ti],
            "band": [labels[i] for i in bi],
            "band_lower": edges[bi] if edges.size > 1 else edges[0],
            "band_upper": edges[bi + 1] if edges.size > 1 else edges[0],
            "observed": y.reshape(flat),
            "expected": expected.reshape(-1, flat).mean(axis=0),
            "mean": rep.mean(axis=0),
            "median": med,
            "lower": lo,
            "upper": hi,
        }
    )
    table = table[table["expected"] > 0].reset_index(drop=True)
    return PPCResult(table, x_obs, x_rep, ppp(x_obs, x_rep), ci, notes)


def forward_filter(p_gap, table, pi, code, first, gap_key):
    """The forward filter of one draw over every respondent's records.

    Parameters
    ----------
    p_gap : ndarray (G, K_h, K_h)
        ``P(gap)`` of the hidden chain for each distinct gap.
    table : ndarray (n_codes, K_h)
        Probability of each record code given each hidden state.
    pi : ndarray (K_h,)
        Weights of the first record's hidden state.
    code : ndarray of int (n,)
        Record codes, sorted by respondent then time.
    first : ndarray of bool (n,)
        True at each respondent's first record.
    gap_key : ndarray of int (n,)
        Index into ``p_gap`` of the gap before each record (ignored at first records).

    Returns
    -------
    filtered : ndarray (n, K_h)
        Hidden-state distribution at each record given the respondent's records up
        to and including it.
    carried : ndarray (n, K_h)
        Hidden-state distribution at each record given the records *before* it
        (the one-step-ahead predictive of the hidden state; ``pi`` normalised at
        first records).
    """
    n, kh = code.size, p_gap.shape[-1]
    pos = np.zeros(n, dtype=np.int64)  # position of each record within its respondent
    for i in range(1, n):
        pos[i] = 0 if first[i] else pos[i - 1] + 1
    filtered = np.zeros((n, kh))
    carried = np.zeros((n, kh))
    carried[first] = pi / max(float(np.sum(pi)), 1e-300)
    filtered[first] = pi[None, :] * table[code[first]]
    filtered[first] /= np.maximum(filtered[first].sum(axis=1, keepdims=True), 1e-300)
    for step in range(1, int(pos.max(initial=0)) + 1):
        rows = np.flatnonzero(pos == step)
        carried[rows] = np.einsum("rh,rhk->rk", filtered[rows - 1], p_gap[gap_key[rows]])
        filtered[rows] = carried[rows] * table[code[rows]]
        filtered[rows] /= np.maximum(filtered[rows].sum(axis=1, keepdims=True), 1e-300)
    return filtered, carried


def record_predictive(carried, table, observed, code_sets, k: int, survive) -> np.ndarray:
    """Predictive distribution of records over record codes (censored stays censored).

    Parameters
    ----------
    carried : ndarray (R, K_h)
        Hidden-state distribution at each record's time given the earlier records.
    table : ndarray (n_codes, K_h)
    observed : ndarray of int (R,)
        The observed code of each record (its type decides the outcomes, see
        :func:`_outcomes`).
    code_sets : tuple of tuple of int
    k : int
        Number of states.
    survive : ndarray of bool (R, K_h) or (K_h,)
        Hidden states ruled out at each record (e.g. exactly timed deaths for a
        record that is an interview): the predictive is conditional on not being in them.

    Returns
    -------
    ndarray (R, n_codes)
    """
    weights = np.where(survive, 0.0, carried)
    weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-300)
    return _outcomes(weights @ table.T, observed, code_sets, k)


def _outcomes(p_codes: np.ndarray, observed: np.ndarray, code_sets, k: int) -> np.ndarray:
    """Predictive over record codes given the observed record's type (censored stays censored).

    ``p_codes`` (R, n_codes): probability of each code's *event* (a censored code's
    event is the union of its states). For an observed state record the outcomes are
    the K states; for an observed censored code ``c``, ``c`` itself and the states
    outside its set.
    """
    out = np.zeros_like(p_codes)
    out[:, :k] = p_codes[:, :k]
    for c in range(k, len(code_sets)):
        rows = observed == c
        if not rows.any():
            continue
        members = list(code_sets[c])
        out[rows, c] = p_codes[rows, c]
        out[np.ix_(np.flatnonzero(rows), members)] = 0.0
    total = out.sum(axis=1, keepdims=True)
    return out / np.maximum(total, 1e-300)


__all__ = [
    "compare_records",
    "forward_filter",
    "is_latent",
    "latent_model_arrays",
    "ppc_latent",
    "record_predictive",
]

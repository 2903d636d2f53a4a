"""Generators and transition matrices of a latent fit's records, for its checks (layer 4).

The pieces the predictive checks and backtests of latent fits filter with, built as
the likelihood builds them: each record pattern's generator (covariates, groups,
periods; for phase-type fits on the hidden states), the distinct (generator, gap)
pieces between records, and each piece's matrix: ``P(gap)``, or the record's own
``T`` before an exact transition or entry time (the panel's ``obstype`` 2 or 3). Used by
:mod:`markov_migration.results.ppc_latent`, :mod:`~markov_migration.results.ppc_nonresponse`
and :mod:`~markov_migration.results.backtest_latent`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from markov_migration.core.forward import OBS_EXACT, OBS_PANEL, OBS_TRANSITION
from markov_migration.core.phases import latent_at_observed
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.fitfile.generators import design_generators
from markov_migration.fitfile.readback import (
    aggregated_from_fit,
    embeds_panel,
    phase_layout,
    recorded_panel,
)
from markov_migration.inputs.latent_design import cut_records, has_covariates, latent_design

__all__ = [
    "interval_pieces",
    "misc_pattern_emissions",
    "misc_pattern_tables",
    "pattern_generators",
    "piece_pmatrices",
    "with_cut_records",
]


def pattern_generators(tree: xr.DataTree, spec, draws: np.ndarray, order: np.ndarray):
    """Generators of a latent fit's record patterns (covariates, groups, periods).

    As the likelihood (:func:`markov_migration.inputs.latent_design.latent_design`):
    the design is rebuilt from the fit's ``observed_data`` (the pairs of recorded
    states), each record's pattern from the embedded panel's covariate and group
    columns.

    Parameters
    ----------
    tree : xarray.DataTree
    spec : ModelSpec
    draws : ndarray of int
        Flattened (chain, draw) samples.
    order : ndarray of int (n,)
        Embedded panel row of each record sorted by respondent and time
        (:func:`markov_migration.fitfile.readback.panel_sequences`).

    Returns
    -------
    q : ndarray (D, M, K, K) or None
        Generator ``m`` (:meth:`RecordGenerators.generator_index`) of each draw;
        None (and None, None) for a fit without covariates, groups or periods.
    generators : RecordGenerators or None
    pattern : ndarray of int (n,) or None
        Pattern of each sorted record.
    """
    if not has_covariates(spec):
        return None, None, None
    if not embeds_panel(tree, spec):
        raise InputError(
            "the fit file does not embed its panel's covariate and group columns: no predictive "
            "check of its records (refit to embed them)"
        )
    design, generators = latent_design(spec, recorded_panel(tree, spec), aggregated_from_fit(tree))
    post = tree["posterior"].to_dataset()
    q = design_generators(
        spec, design, post, draws, x=generators.generator_x, group=generators.generator_group
    )
    if "Q_latent" in post:  # phase-type states: the terms multiply every phase exit
        q = _hidden_pattern_generators(tree, post, q, draws)
    return q, generators, generators.record_pattern[order]


def misc_pattern_emissions(tree: xr.DataTree, spec, draws: np.ndarray, order: np.ndarray):
    """Misclassification matrices of a fit's emission patterns and each record's pattern.

    For fits with covariates on misclassification
    (:mod:`markov_migration.inputs.misc_covariates`): the effects are rebuilt from the
    fit's ``observed_data`` (levels, centres) and the embedded panel's covariate
    columns, as the likelihood builds them; record ``i`` is emitted through
    ``e[:, pattern[i]]`` (msm: the record's own covariates).

    Parameters
    ----------
    tree : xarray.DataTree
    spec : ModelSpec
    draws : ndarray of int
        Flattened (chain, draw) samples.
    order : ndarray of int (n,)
        Embedded panel row of each record sorted by respondent and time.

    Returns
    -------
    e : ndarray (D, P, K, K) or None
        Misclassification matrix (true state, recorded state) of each draw and pattern;
        None (and None) for a fit without covariates on misclassification.
    pattern : ndarray of int (n,) or None
        Emission pattern of each sorted record.
    """
    from markov_migration.inputs.misc_covariates import (
        MISC_EFFECT_DIM,
        MISC_LOG_OR,
        has_misclassification_covariates,
        misclassification_effects,
        pattern_emissions,
    )

    if not has_misclassification_covariates(spec):
        return None, None
    if not embeds_panel(tree, spec):
        raise InputError(
            "the fit file does not embed its panel's covariate columns: no predictive check "
            "of its records (refit to embed them)"
        )
    panel = recorded_panel(tree, spec)
    design, _ = latent_design(spec, panel, aggregated_from_fit(tree))
    misc = misclassification_effects(spec, design, panel.data)
    post = tree["posterior"]
    k = spec.n_states
    e = post["misclassification"].transpose(*SAMPLE_DIMS, "true_state", "recorded_state")
    e = e.to_numpy().reshape(-1, k, k)[draws]
    beta = post[MISC_LOG_OR].transpose(*SAMPLE_DIMS, MISC_EFFECT_DIM).to_numpy()
    beta = beta.reshape(-1, len(misc.labels))[draws]
    return pattern_emissions(e, misc.shift_design(k), beta), misc.record_pattern[order]


def misc_pattern_tables(spec, e_pattern: np.ndarray, code_sets) -> np.ndarray:
    """Emission tables (D, P, n_codes, K_h) of each draw's emission patterns.

    ``e_pattern`` is :func:`misc_pattern_emissions`'s (D, P, K, K); each matrix goes
    through the phases (a phase is recorded as its observed state) and the record
    codes as the likelihood's table does (:func:`~markov_migration.core.forward.emission_table`).
    """
    from markov_migration.core.forward import emission_table
    from markov_migration.core.phases import phase_expansion

    pmap = phase_expansion(spec.allowed_matrix(), spec.observation.phases or {}).emission
    return np.stack([[emission_table(pmap @ e, code_sets) for e in e_d] for e_d in e_pattern])


def _hidden_pattern_generators(tree, post, q, draws: np.ndarray) -> np.ndarray:
    """Hidden generators (D, M, K_h, K_h) of a phase-type fit from its observed ones ``q``.

    ``q`` are ``exp(log_rate + terms)`` of the record patterns; the terms of each
    observed transition are moved to its phase exits
    (:func:`markov_migration.core.phases.latent_at_observed`), as the likelihood does.
    """
    spec, layout, names = phase_layout(tree)
    labels = [f"{names[a]}->{names[b]}" for a, b in zip(layout.rate_from, layout.rate_to,
                                                         strict=True)]  # fmt: skip

    def flat(name, dim, labs):
        v = post[name].sel({dim: labs}).transpose(*SAMPLE_DIMS, dim).to_numpy()
        return v.reshape(-1, len(labs))[draws]

    return latent_at_observed(
        q, flat("log_rate", "transition", list(spec.transition_labels)),
        flat("log_rate_latent", "latent_transition", labels), layout, spec.transitions,
    )  # fmt: skip


def interval_pieces(gen, time, first, real, resolution: float, kind=None):
    """The distinct (generator, gap, kind) pieces of the filter and the piece before each record.

    The interval before a record uses the generator of the record that starts it.
    Gaps are rounded to the fit's ``resolution`` (at least one step between two
    records; pieces next to a period cut record are rounded as they fall).

    Parameters
    ----------
    gen : ndarray of int (n,)
        Generator of each record (sorted by respondent, then time).
    time : ndarray (n,)
        Time units.
    first, real : ndarray of bool (n,)
        A respondent's first record; a record of the panel (False at cut records).
    resolution : float
        Time units (0: gaps as they are).
    kind : ndarray of int (n,), optional
        msm observation type of each record (the panel's ``obstype``): the piece
        before a record of type 2 or 3 is its exact transition or entry matrix
        (:func:`piece_pmatrices`). Default: every record of type 1.

    Returns
    -------
    piece_gen : ndarray of int (G,)
    piece_gap : ndarray (G,)
        Time units.
    key : ndarray of int (n,)
        Piece before each record (0 at first records).
    piece_kind : ndarray of int (G,)
        Observation type of the record ending each piece (returned only when
        ``kind`` is given).
    """
    j = np.flatnonzero(~first)
    gap = time[j] - time[j - 1]
    if resolution > 0:
        steps = np.round(gap / resolution)
        both_real = real[j] & real[j - 1]
        gap = np.where(both_real, np.maximum(steps, 1), steps) * resolution
    key = np.zeros(time.size, dtype=np.int64)
    rec_kind = np.full(j.size, OBS_PANEL) if kind is None else np.asarray(kind, np.int64)[j]
    if not j.size:
        empty = (np.zeros(0, np.int64), np.zeros(0), key)
        return empty if kind is None else (*empty, np.zeros(0, np.int64))
    pieces, key[j] = np.unique(
        np.column_stack([gen[j - 1].astype(np.float64), gap, rec_kind.astype(np.float64)]),
        axis=0, return_inverse=True,
    )  # fmt: skip
    out = (pieces[:, 0].astype(np.int64), pieces[:, 1], key)
    return out if kind is None else (*out, pieces[:, 2].astype(np.int64))


def piece_pmatrices(q: np.ndarray, piece_gen, piece_gap, piece_kind=None) -> np.ndarray:
    """Transition matrix (G, K_h, K_h) of each piece from generators ``q`` (M, K_h, K_h).

    ``P(gap) = expm(Q_m gap)`` before a record at a time (type 1); as the likelihood
    (:mod:`markov_migration.core.forward_kernel`, R msm's ``Pmat(exacttimes)`` and
    ``pijdeath``) on the hidden chain before an exact transition time (type 2)
    ``T = D(gap) (I + Q_off)``, ``D(t) = diag(exp(q_hh t))`` (the hidden state kept,
    then one jump at the record's time), and before an exact entry time (type 3)
    ``T = P(gap) Q_off`` (per time unit). The filter normalises after each record,
    so a record's ``T`` need not be stochastic.
    """
    from markov_migration.core.likelihood import pmatrix

    out = np.zeros((piece_gen.size, q.shape[-1], q.shape[-1]))
    for m in np.unique(piece_gen):
        sel = piece_gen == m
        out[sel] = pmatrix(q[m], piece_gap[sel])
    if piece_kind is None:
        return out
    piece_kind = np.asarray(piece_kind, np.int64)
    kh = q.shape[-1]
    diag = np.arange(kh)
    off = q[piece_gen].copy()
    off[:, diag, diag] = 0.0
    entry = piece_kind == OBS_EXACT
    out[entry] = out[entry] @ off[entry]
    trans = np.flatnonzero(piece_kind == OBS_TRANSITION)
    if trans.size:
        stay = np.exp(np.diagonal(q[piece_gen[trans]], axis1=1, axis2=2) * piece_gap[trans, None])
        out[trans] = stay[:, :, None] * (np.eye(kh)[None] + off[trans])
    return out


def with_cut_records(resp, time, code, blank: int, cuts, *columns):
    """Records sorted by respondent and time, split at the period cut points.

    As the likelihood splits a latent model's intervals: a record that says
    nothing (code ``blank``, an emission row of ones) at every cut point strictly
    inside an interval, so that each piece has its period's generator.

    Parameters
    ----------
    resp, time, code : ndarray (n,)
        Records sorted by respondent, then time.
    blank : int
        Code of the added records.
    cuts : sequence of float
        Period cut points (time units).
    *columns : ndarray (n,)
        Further values of the records; an added record takes the one of the
        record it follows.

    Returns
    -------
    resp, time, code : ndarray (n + c,)
    real : ndarray of bool (n + c,)
        False at the added records.
    source : ndarray of int (n + c,)
        Input position of each record (-1 at the added ones).
    *columns : ndarray (n + c,)
    """
    after, at = cut_records(resp, time, cuts)
    n = np.asarray(resp).size
    resp, time = np.r_[resp, np.asarray(resp)[after]], np.r_[time, at]
    code = np.r_[code, np.full(after.size, blank, dtype=np.int64)]
    real = np.r_[np.ones(n, bool), np.zeros(after.size, bool)]
    source = np.r_[np.arange(n), np.full(after.size, -1)]
    columns = [np.r_[c, np.asarray(c)[after]] for c in columns]
    srt = np.lexsort((time, resp))  # cut points lie strictly inside intervals: no ties
    return (resp[srt], time[srt], code[srt], real[srt], source[srt], *(c[srt] for c in columns))

"""Backtest of ``[nonresponse]`` fits: every held-out scheduled interview, missed ones included.

Layer 4 (results). In a ``[nonresponse]`` fit which waves a respondent answers
depends on their true state, so a missed interview is data, and the natural
prediction of the held-out waves is that of the predictive check
(:mod:`markov_migration.results.ppc_nonresponse`): **every scheduled interview
after the cut, with "missed" as an outcome**.

What is held out and scored: the refit sees the records before the cut, with the
respondent's missed waves before the cut as observations (the refit schedules the
waves of the kept records, from each respondent's first record to the last kept
wave). The held-out data are, for every respondent of the refit whose schedule
goes on past the cut (not ended by an absorbing or exactly timed record), each
scheduled wave after the cut (the full panel's waves,
:func:`markov_migration.inputs.nonresponse.schedule_records`): answered (as its
record code, a censored answer staying censored) or missed. Each is predicted
from the kept records only (a multi-step forecast when several waves are held
out): for every posterior draw the forward filter over the kept records (answered,
missed, and the cut-point records of periods) on the hidden space doubled by
attrition, with the generator and emission table of the likelihood
(:func:`markov_migration.core.nonresponse.nonresponse_inputs`), carried to the
interview's date through the attrition-extended generator of each piece (the
gap split at the period cut points; a missed interview is dated at its wave's
median date, as in the likelihood), then the response and observation models.
Held-out records that are a further record in a wave that already has one, or an
exactly timed entry, are not scheduled interviews and are not predicted (a note
counts them). Origins are the respondent's last kept record (a state, censored
code or ``missed``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from markov_migration.core.forward import OBS_EXACT, OBS_PANEL
from markov_migration.core.phases import phase_expansion
from markov_migration.errors import InputError
from markov_migration.fitfile.readback import panel_sequences, recorded_panel
from markov_migration.inputs.aggregate import period_of
from markov_migration.inputs.latent_design import carry_forward
from markov_migration.inputs.nonresponse import schedule_records
from markov_migration.results.latent_pieces import (
    interval_pieces,
    pattern_generators,
    with_cut_records,
)
from markov_migration.results.ppc_keyed import thinned_indices
from markov_migration.results.ppc_latent import latent_model_arrays
from markov_migration.results.ppc_nonresponse import (
    MISSED,
    _scheduled,
    extended_filter,
    response_draws,
)


def nonresponse_heldout(tree: xr.DataTree, heldout, n_draws: int):
    """Predictive of every held-out scheduled interview of a ``[nonresponse]`` refit.

    Parameters
    ----------
    tree : xarray.DataTree
        The ``[nonresponse]`` refit of the kept records (its embedded panel).
    heldout : markov_migration.results.backtest.HeldOut
        The split; its ``held`` frame lists every held-out observation.
    n_draws : int
        Posterior draws used (thinned evenly).

    Returns
    -------
    probs : ndarray (D, m, n_codes + 1)
        Distribution of each held-out scheduled interview over (answered as each
        record code, missed) under each draw.
    origin, outcome : ndarray of int (m,)
        Last kept record and observed outcome (``n_codes`` for missed).
    names : list of str
        States, censored codes, then ``missed``.
    notes : list of str
    """
    if "panel_data" not in tree.children or heldout.held is None:
        raise InputError("the refit has no embedded panel: its records cannot be filtered")
    draws = thinned_indices(tree["posterior"], n_draws)
    spec, q, tables, pi, code_sets, exact_hidden = latent_model_arrays(tree, draws)
    obs = spec.observation
    k, n = spec.n_states, len(code_sets)
    nb = n + 1  # the plain table ends with a blank row (ones): cut and held-out records
    blank = 2 * nb + 1 + n  # the exact-entry block's blank row: ones in both halves
    tables = np.concatenate([tables, np.ones_like(tables[:, :1])], axis=1)
    post = tree["posterior"]
    phase_map = phase_expansion(spec.allowed_matrix(), obs.phases or {}).emission
    response, attrition, exact_hidden = response_draws(post, spec, draws, exact_hidden)
    # the kept records and the held-out records of the refit's respondents, as one panel
    resp, time, code, _, order = panel_sequences(tree)
    pdata = tree["panel_data"]
    respondent = dict(zip(recorded_panel(tree, spec).data["id"].astype(str),
                          pdata["respondent"].to_numpy().astype(np.int64), strict=True))  # fmt: skip
    held = heldout.held[heldout.held["id"].astype(str).isin(respondent)]
    h_resp = held["id"].astype(str).map(respondent).to_numpy(np.int64)
    kind = pdata["obstype"].to_numpy()[order] if "obstype" in pdata else np.ones(resp.size, int)
    exact_codes = np.asarray(obs.exact, dtype=np.int64)
    all_code = np.r_[code, held["state"].to_numpy(np.int64)]
    all_kind = np.r_[kind, held["obstype"].to_numpy(np.int64)]
    all_kind = np.where(np.isin(all_code, exact_codes) & (all_kind == OBS_PANEL), OBS_EXACT,
                        all_kind)  # fmt: skip
    leaving = {r for r, _ in spec.transitions}
    rec = schedule_records(np.r_[resp, h_resp], np.r_[time, held["time"].to_numpy(float)],
                           all_code, all_kind, np.ones(all_code.size), nb,
                           [r for r in range(k) if r not in leaving])  # fmt: skip
    ids, t, rcode = rec.ids, rec.times, rec.codes
    is_held = t > heldout.cut if heldout.strict else t >= heldout.cut
    target = is_held & (rcode >= nb) & (rcode <= 2 * nb)  # scheduled: answered or missed
    n_other = int(np.sum(is_held & ~target))
    # outcome of each record in plain codes, "missed" being n
    plain = np.where(rcode < nb, rcode, np.where(rcode < 2 * nb, rcode - nb, rcode - 2 * nb - 1))
    plain = np.where(rcode == 2 * nb, n, plain)
    code_f = np.where(is_held, blank, rcode)  # held-out records say nothing to the filter
    q_pattern, generators, pattern = pattern_generators(tree, spec, draws, order)
    if q_pattern is None:
        q, pat = q[:, None], np.zeros(ids.size, dtype=np.int64)
    else:  # a record takes the pattern of the respondent's kept record before it
        q, pat = q_pattern, carry_forward(resp, time, pattern, ids, t)
    real = np.ones(ids.size, dtype=bool)
    period = None
    if spec.periods:
        ids, t, code_f, real, _, is_held, target, plain, pat = with_cut_records(
            ids, t, code_f, blank, spec.periods, is_held, target, plain, pat
        )
        period = period_of(t, spec)
    gen = pat if q_pattern is None else generators.generator_index(pat, period)
    first = np.r_[True, ids[1:] != ids[:-1]]
    res = float(tree["constant_data"]["resolution"]) if "constant_data" in tree.children else 0.0
    piece_gen, piece_gap, key = interval_pieces(gen, t, first, real, res)
    # the respondent's last kept record before each held-out interview
    kept_at = np.maximum.accumulate(np.where(real & ~is_held, np.arange(ids.size), -1))
    rows = np.flatnonzero(target)
    if not rows.size:
        raise InputError(f"no scheduled interview after {heldout.cut:g}: nothing to predict")
    origin, outcome = plain[kept_at[rows]], plain[rows]
    pred = np.zeros((draws.size, rows.size, n + 1))
    for d in range(draws.size):
        carried, tf = extended_filter(
            q[d], pi[d], tables[d], response[d], None if attrition is None else attrition[d],
            phase_map, (piece_gen, piece_gap, key), code_f, first,
        )  # fmt: skip
        pred[d] = _scheduled(carried[rows], tf, outcome, code_sets, k, exact_hidden, nb)
    names = list(spec.states) + list(obs.censored_codes) + [MISSED]
    notes = [
        f"nonresponse fit: every scheduled interview after {heldout.cut:g} is predicted from the "
        f"kept records, '{MISSED}' being an outcome: {int(np.sum(outcome == n)):,} missed and "
        f"{int(np.sum(outcome < n)):,} answered"
    ]
    if n_other:
        notes.append(
            f"{n_other} held-out record(s) that are not scheduled interviews (a further record "
            "in a wave, or an exactly timed entry) are not predicted"
        )
    return pred, origin, outcome, names, notes


__all__ = ["nonresponse_heldout"]

"""Scheduled interviews of a panel: answered and missed waves (``[nonresponse]``).

Layer 2. With ``[nonresponse] schedule = "waves"`` every respondent is
scheduled for an interview at each wave of the panel (the one wave-binning rule,
:func:`markov_migration.inputs.waves.wave_bins`) from the wave of their first
record to the panel's last wave. :func:`schedule_records` turns a respondent's
records into the records of the forward algorithm
(:mod:`markov_migration.core.forward`), with record codes in four blocks of
the emission table:

* ``c`` (``0 <= c < n_codes``): the usual emission of code ``c``: the first
  record (joining the panel is conditioned on, not modelled) and further
  records in a wave that already has one;
* ``n_codes + c``: an answered scheduled interview: ``r_s`` times the usual
  emission of ``c`` for true state ``s``;
* ``2 * n_codes``: a missed scheduled interview, emission ``1 - r_s``, at the
  wave's median interview date (the median of the panel's record times in that
  wave);
* ``2 * n_codes + 1 + c``: an exact entry time (a register date, not an
  interview: no response factor, known also for a respondent lost to the survey).

Missed waves after a respondent's last record count too, up to the panel's last
wave (monotone attrition is state-dependent nonresponse that never ends): the
trailing misses are what tells a respondent who stopped answering because they
moved into a reluctant state from one who did not. A record of an absorbing
state (e.g. a death) ends the schedule: the state of the later waves is known.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from markov_migration.core.forward import OBS_EXACT, OBS_PANEL
from markov_migration.inputs.waves import wave_bins, wave_index

__all__ = ["ScheduledRecords", "schedule_records", "wave_times"]


class ScheduledRecords(NamedTuple):
    """Records of the forward algorithm, missed interviews included (sorted by id, time).

    Attributes
    ----------
    ids, times, codes, obstype, weight : ndarray
        As :func:`markov_migration.core.forward.aggregate_histories`; codes in
        the four blocks of the module docstring.
    n_answered, n_missed : int
        Scheduled interviews answered and missed (all respondents, unweighted).
    wave_times : ndarray
        The scheduled date of each wave (time units).
    """

    ids: np.ndarray
    times: np.ndarray
    codes: np.ndarray
    obstype: np.ndarray
    weight: np.ndarray
    n_answered: int
    n_missed: int
    wave_times: np.ndarray


def wave_times(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The waves of a panel: the wave of each record and each wave's median date.

    Parameters
    ----------
    times : ndarray
        Every record's time (time units).

    Returns
    -------
    wave : ndarray of int, shape of ``times``
    dates : ndarray of float, shape (W,)
        Median record time of each wave (a wave without records gets its bin's centre).
    """
    times = np.asarray(times, dtype=np.float64)
    edges = wave_bins(times)
    wave = wave_index(times, edges)
    n_waves = max(edges.size - 1, 1)
    dates = np.empty(n_waves)
    for w in range(n_waves):
        inside = times[wave == w]
        dates[w] = np.median(inside) if inside.size else (edges[w] + edges[w + 1]) / 2
    return wave, dates


def schedule_records(ids, times, codes, obstype, weight, n_codes, absorbing) -> ScheduledRecords:
    """Add the missed scheduled interviews and recode answered ones (module docstring).

    Parameters
    ----------
    ids, times, codes, obstype, weight : array_like, shape (n_rows,)
        One row per record (long format); ``codes`` index the plain emission
        rows (states, then censored codes).
    n_codes : int
        Rows of the plain emission table (with periods, the blank cut record's
        too: cut records are added afterwards in the exact-entry block).
    absorbing : sequence of int
        Record codes of absorbing states (a record of one ends the schedule).

    Returns
    -------
    ScheduledRecords
    """
    ids = np.asarray(ids)
    times = np.asarray(times, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    obstype = np.asarray(obstype, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.float64)
    wave, dates = wave_times(times)
    last = dates.size - 1
    order = np.lexsort((times, ids))
    ids, times, codes, obstype, weight, wave = (
        a[order] for a in (ids, times, codes, obstype, weight, wave)
    )
    n = ids.shape[0]
    new_codes = codes.copy()
    ends = np.isin(codes, np.asarray(list(absorbing), dtype=np.int64)) | (obstype == OBS_EXACT)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if n else np.array([], int)
    stops = np.r_[starts[1:], n]
    miss_rows, miss_waves = [], []
    n_answered = 0
    for a, b in zip(starts, stops, strict=True):
        seen = {int(wave[a])}
        stop = last
        for k in range(a + 1, b):
            w = int(wave[k])
            if obstype[k] == OBS_EXACT:
                new_codes[k] = 2 * n_codes + 1 + codes[k]
            elif w not in seen:
                new_codes[k] = n_codes + codes[k]
                n_answered += 1
            seen.add(w)
        end = np.flatnonzero(ends[a:b])
        if end.size:
            stop = int(wave[a + end[0]])
        for w in range(int(wave[a]) + 1, stop + 1):
            if w not in seen:
                miss_rows.append(a)
                miss_waves.append(w)
    rows = np.asarray(miss_rows, dtype=np.int64)
    missed = np.asarray(miss_waves, dtype=np.int64)
    out_ids = np.concatenate([ids, ids[rows]])
    out_times = np.concatenate([times, dates[missed] if rows.size else np.empty(0)])
    out_codes = np.concatenate([new_codes, np.full(rows.size, 2 * n_codes, np.int64)])
    out_type = np.concatenate([obstype, np.full(rows.size, OBS_PANEL, np.int64)])
    out_weight = np.concatenate([weight, weight[rows]])
    order = np.lexsort((out_times, out_ids))
    return ScheduledRecords(
        ids=out_ids[order],
        times=out_times[order],
        codes=out_codes[order],
        obstype=out_type[order],
        weight=out_weight[order],
        n_answered=n_answered,
        n_missed=int(rows.size),
        wave_times=dates,
    )

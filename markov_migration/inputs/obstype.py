"""The panel's ``obstype`` column: exact transition and entry times (R msm's ``obstype``).

Layer 2. A panel may flag records with msm's observation types:

1. a panel observation: the state at that time, nothing known in between
   (the default, and the only meaning of a respondent's first record);
2. an exact transition time: the respondent stayed in the previous record's
   state from that record until this time and moved to the recorded state at
   exactly this time; a record that repeats the previous state means the
   state was kept until this time (e.g. the end of follow-up). Contribution
   ``exp(q_rr t) q_rs`` (``exp(q_rr t)`` for a repeated state), as msm.
   Refused with misclassification or phases, although msm defines it there
   (``lik.c``: the hidden chain's ``D(t) (I + Q_off)`` times the emission):
   with misclassification a record mixes a kept state (a probability) and a
   jump (a density), so the likelihood changes with the time unit; with phases
   it leaves out unseen phase progressions (``docs/observation-models.md``);
3. an exact entry time into the recorded state, the state just before it
   unknown (msm's ``deathexact``): ``(P(t) Q_off)[r, s]``.

Rows of types 2 or 3 route the fit through the forward-algorithm (latent)
likelihood of :mod:`markov_migration.core.forward`; a column of 1s only is
the plain panel and changes nothing. The checks here refuse, in one line
naming the row, what has no likelihood or no agreed meaning; see
``docs/observation-models.md``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from markov_migration.errors import PanelError
from markov_migration.inputs.columns import OBSTYPE_ENTRY, OBSTYPE_PANEL, OBSTYPE_TRANSITION

#: Column of :attr:`markov_migration.inputs.panel.Panel.data` with each record's type,
#: present only when some record has type 2 or 3.
PANEL_OBSTYPE = "obstype"


def check_obstype(out: pd.DataFrame, same_id: np.ndarray, spec, path: str, column: str) -> bool:
    """Check the observation types of a sorted panel; return whether any is 2 or 3.

    Parameters
    ----------
    out : pandas.DataFrame
        The panel's records sorted by respondent and time, with ``state``
        (record codes: states ``0..K-1``, then censored codes), ``row`` and
        ``obstype`` columns.
    same_id : ndarray of bool, shape (n - 1,)
        Whether record ``j + 1`` belongs to the respondent of record ``j``.
    spec : ModelSpec
    path, column : str
        The panel file and its obstype column (for the messages).

    Raises
    ------
    PanelError
        Type 2 or 3 on a respondent's first record; on a censored code; type
        2 from one state to another without a direct transition in the
        model; type 3 into the state of the previous record; type 2 with
        misclassification, phases, ``[nonresponse]`` or ``periods``; type 3
        into a non-absorbing state with misclassification or phases.
    """
    kind = out["obstype"].to_numpy()
    state = out["state"].to_numpy()
    rows = out["row"].to_numpy()
    k = spec.n_states
    first = np.r_[True, ~same_id]
    exact = kind != OBSTYPE_PANEL

    def fail(j: int, message: str):
        raise PanelError(message, path=path, row=int(rows[j]), column=column)

    hit = np.flatnonzero(exact & first)
    if hit.size:
        fail(
            int(hit[0]),
            f"obstype {kind[hit[0]]} on a respondent's first record: an exact time needs a "
            "previous record (use 1)",
        )
    if not exact.any():
        return False
    hit = np.flatnonzero(exact & (state >= k))
    if hit.size:
        fail(int(hit[0]), f"obstype {kind[hit[0]]} on a censored code: an exact time needs a state")
    prev = np.r_[0, state[:-1]]
    obs = spec.observation
    absorbing = {spec.index(name) for name in spec.absorbing}
    trans = np.flatnonzero(kind == OBSTYPE_TRANSITION)
    entry = np.flatnonzero(kind == OBSTYPE_ENTRY)
    if trans.size:
        j = int(trans[0])
        why = None
        if obs.misclassification:
            # msm accepts it (lik.c: the hidden chain's D(t) (I + Q_off)), but a record
            # may then be a kept true state (a probability) or a jump (a density per
            # time unit): comparisons of parameters change with the time unit
            why = (
                "[misclassification] (msm's likelihood weighs a kept true state, a "
                "probability, against a jump, a density, on the same record: it changes "
                "with the time unit; see docs/observation-models.md)"
            )
        elif obs.phases:
            # msm accepts it, with the hidden phase kept throughout: the density of a
            # move out of a phased state at an exact time then misses the paths through
            # its later phases (it integrates to less than one over the observed
            # process); the observed state's sojourn density needs another kernel
            why = (
                "[phases] (msm's meaning, the hidden phase kept throughout the interval, "
                "leaves out unseen phase progressions; see docs/observation-models.md)"
            )
        elif obs.nonresponse is not None:
            why = "[nonresponse] (missed waves would split the interval)"
        elif spec.periods:
            why = "periods (the interval would be split at a cut point)"
        if why is not None:
            fail(j, f"obstype 2 (exact transition time) is not supported with {why}")
    allowed = spec.allowed_matrix()
    for j in trans:
        r, s = int(prev[j]), int(state[j])
        if r < k and r != s and not allowed[r, s]:
            fail(
                int(j),
                f"obstype 2 says the respondent moved from {spec.states[r]} to "
                f"{spec.states[s]} at exactly this time, but the model has no transition "
                f"{spec.states[r]}->{spec.states[s]}",
            )
    for j in entry:
        r, s = int(prev[j]), int(state[j])
        if r == s:
            fail(
                int(j),
                f"obstype 3 (exact entry time) into {spec.states[s]}, the state of the "
                "previous record: it was entered before",
            )
        if obs.hidden and s not in absorbing:
            fail(
                int(j),
                f"obstype 3 (exact entry time) into {spec.states[s]}: with misclassification "
                "or latent phases only absorbing states can have exact entry times",
            )
    return True


def panel_has_obstype(panel) -> bool:
    """Whether a panel flags exact transition or entry times (types 2 or 3)."""
    return panel is not None and PANEL_OBSTYPE in panel.data.columns


def with_panel_obstype(spec, panel):
    """The spec with ``observation.obstype`` set when the panel flags exact times.

    The model file does not say it, the data do: fits route through the
    forward algorithm when this is set (``spec.observation.latent``).
    """
    if not panel_has_obstype(panel) or spec.observation.obstype:
        return spec
    observation = dataclasses.replace(spec.observation, obstype=True)
    return dataclasses.replace(spec, observation=observation)


__all__ = [
    "OBSTYPE_ENTRY",
    "OBSTYPE_PANEL",
    "OBSTYPE_TRANSITION",
    "PANEL_OBSTYPE",
    "check_obstype",
    "panel_has_obstype",
    "with_panel_obstype",
]

"""Phase-type states of a fit: who settles, how long stays last, the phase split.

Layer 4 (results). A model with ``[phases]`` (e.g. ``returned = 2``: short-stay
and settled returnees, msm's ``phase.states``) is fitted on hidden states, and
its fit file holds their generator ``Q_latent (from_latent, to_latent)``. For
every phased state and posterior draw, :func:`phases` gives the measures of
:func:`markov_migration.core.phases.phase_measures` for someone entering the
state (in its first phase):

``reach``
    Probability of reaching each phase before leaving the state; for the last
    phase, the probability of *settling* (e.g. of a returnee becoming a settled
    returnee).
``mean_time``
    Expected time spent in each phase per stay (time units).
``share``
    Share of the state's population in each phase when entries are steady
    (e.g. of all returnees, the share who are settled).
``stay_<t>``
    Probability of still being in the state ``t`` time units after entering it
    (1, 5 and 10 by default): how many stay for good, in the horizon planners use.
``mean_sojourn``
    Expected length of a stay (time units), the sum of ``mean_time``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from markov_migration.core.phases import phase_measures
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.fitfile.readback import phase_layout

#: Times (time units) of the ``stay_<t>`` measures.
STAY_TIMES: tuple[float, ...] = (1.0, 5.0, 10.0)


def phases(tree: xr.DataTree, times: Sequence[float] = STAY_TIMES) -> xr.DataArray:
    """Draws ``(chain, draw, measure, state)`` of the phase measures of every phased state.

    ``state`` holds the phases (``returned_1``, ``returned_2``, ...) for
    ``reach``, ``mean_time`` and ``share``, and the observed state
    (``returned``) for ``stay_<t>`` and ``mean_sojourn``; other combinations
    are NaN (left out of the table).
    """
    spec, layout, names = phase_layout(tree)
    q = tree["posterior"]["Q_latent"].transpose(*SAMPLE_DIMS, "from_latent", "to_latent")
    values = q.to_numpy()
    measures = ["reach", "mean_time", "share", *[f"stay_{t:g}" for t in times], "mean_sojourn"]
    phased = [r for r in range(spec.n_states) if np.sum(layout.observed == r) > 1]
    rows = [names[h] for r in phased for h in np.flatnonzero(layout.observed == r)]
    rows += [spec.states[r] for r in phased]
    out = np.full(values.shape[:2] + (len(measures), len(rows)), np.nan)
    for r in phased:
        hidden = np.flatnonzero(layout.observed == r)  # in phase order (expansion order)
        m = phase_measures(values, hidden, times)
        cols = [rows.index(names[h]) for h in hidden]
        for i, key in enumerate(("reach", "mean_time", "share")):
            out[:, :, i, cols] = m[key]
        own = rows.index(spec.states[r])
        for j in range(len(times)):
            out[:, :, 3 + j, own] = m["stay"][..., j]
        out[:, :, len(measures) - 1, own] = m["mean_sojourn"]
    da = xr.DataArray(
        out,
        dims=(*SAMPLE_DIMS, "measure", "state"),
        coords={**{d: q[d].values for d in SAMPLE_DIMS}, "measure": measures, "state": rows},
        name="phases",
    )
    da.attrs = {
        "quantity": "phases",
        "units": "reach, share and stay_<t>: probabilities; mean_time and mean_sojourn: "
        f"{spec.time_unit}",
        "description": "phase-type states, for someone entering the state: probability of "
        "reaching each phase (the last: settling), time in each phase, share of the "
        "state's population in each phase with steady entries, probability of still "
        "being in the state t time units after entering, mean stay",
        "stay_times": list(map(float, times)),
    }
    return da

"""State-dependent nonresponse and attrition in latent-state fits (``[nonresponse]``; layer 3).

The records come from :func:`markov_migration.inputs.nonresponse.schedule_records`
in four blocks of record codes (``n`` plain codes: states, censored codes and,
with periods, the blank cut record):
``c`` a first record or a second record in a wave (an interview, no response
factor), ``n + c`` an answered scheduled interview, ``2n`` a missed one,
``2n + 1 + c`` an exact entry time (a register date, not an interview) or,
for ``c`` the blank code, a period cut record (all ones, active and lost).

Response
    ``response[s]``: probability that a respondent in true state ``s`` answers
    a scheduled interview (1 for states not in ``[nonresponse] states``).
Attrition (``[nonresponse] attrition = true``, the default)
    A respondent may also be *lost for good*: a hidden flag switched on at
    hazard ``attrition[s]`` (per time unit) while in state ``s``, with prior
    ``log_attrition ~ Normal(log median, sd_log)`` (``[nonresponse]
    attrition_prior``); a lost
    respondent keeps moving between states but misses every later interview.
    The hidden space is doubled (``K_h`` active then ``K_h`` lost states) with
    generator ``[[Q - diag(d), diag(d)], [0, Q]]``; absorbing states have no
    attrition (their record ends the schedule). Without it, attrition that does
    not depend on the state reads as repeated misses of reluctant states.

Emission table rows (active | lost): plain ``(e, 0)``, answered ``(r e, 0)``,
missed ``(1 - r, 1)``, exact entry ``(e, e)``; the first record's weights are
``(pi, 0)`` (:func:`markov_migration.core.nonresponse.nonresponse_inputs`). The
functions take ``backend`` ``numpy`` or ``pytensor.tensor`` so that the
sampler's graph, the per-draw log-likelihood of the fit file and the checks
are the same arithmetic.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

# the arithmetic is in core (numpy or pytensor backend) so that checks of a fit
# build the same generator and emission table without importing PyMC
from markov_migration.core.nonresponse import nonresponse_inputs

__all__ = [
    "attrition_states",
    "nonresponse_inputs",
    "nonresponse_variables",
    "state_vector",
]


def attrition_states(spec) -> tuple[int, ...]:
    """States with an attrition hazard: the ``[nonresponse]`` states that can be left."""
    nr = spec.observation.nonresponse
    if nr is None or not nr.attrition:
        return ()
    leaving = {r for r, _ in spec.transitions}
    return tuple(r for r in nr.states if r in leaving)


def state_vector(spec, values, states, fill: float, backend=np):
    """A per-state vector (..., K): ``values`` at ``states``, ``fill`` elsewhere."""
    idx = np.asarray(states, dtype=np.int64)
    if backend is np:
        out = np.full(np.shape(values)[:-1] + (spec.n_states,), fill)
        out[..., idx] = values
        return out
    return pt.set_subtensor(pt.full((spec.n_states,), fill, dtype="float64")[idx], values)


def nonresponse_variables(spec):
    """The PyMC variables (inside a model context): ``response`` and ``attrition``.

    Returns
    -------
    response : TensorVariable (K,)
        Response probability of every observed state.
    attrition : TensorVariable (K,) or None
        Attrition hazard of every observed state (None without attrition).
    """
    nr = spec.observation.nonresponse
    response = pm.Beta(
        "response", alpha=np.array(nr.alpha), beta=np.array(nr.beta), dims="response_state"
    )
    r = state_vector(spec, response, nr.states, 1.0, pt)
    lost = attrition_states(spec)
    if not nr.attrition:
        return r, None
    if not lost:
        return r, pt.zeros(spec.n_states)
    # [nonresponse] attrition_prior: median (per person and time unit) and sd of the log
    log_d = pm.Normal(
        "log_attrition", mu=np.log(nr.attrition_median), sigma=nr.attrition_sd_log,
        dims="attrition_state",
    )  # fmt: skip
    d = pm.Deterministic("attrition", pt.exp(log_d), dims="attrition_state")
    return r, state_vector(spec, d, lost, 0.0, pt)

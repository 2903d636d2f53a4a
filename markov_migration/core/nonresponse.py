"""Generator, first weights and emission table of the forward algorithm with nonresponse.

Layer 1 (core; numpy, or any backend with the same functions). The records of a
``[nonresponse]`` model come from
:func:`markov_migration.inputs.nonresponse.schedule_records` in four blocks of
record codes (``n`` plain codes: states, censored codes and, with periods, the
blank cut record whose row is all ones): ``c`` a first
record or a second record in a wave (no response factor), ``n + c`` an answered
scheduled interview, ``2n`` a missed one, ``2n + 1 + c`` an exact entry time.
A period cut record (not an interview) takes the exact-entry block's blank row,
all ones in the active and the lost halves. With attrition the hidden space is
doubled (``K_h`` active, then ``K_h`` lost states); see
:mod:`markov_migration.inference.latent_nonresponse` for the model.
"""

from __future__ import annotations

import numpy as np

__all__ = ["nonresponse_inputs"]


def nonresponse_inputs(q, pi, table, r_hidden, d_hidden, backend=np):
    """Generator, first-record weights and emission table of the forward algorithm.

    Parameters
    ----------
    q : (K_h, K_h)
        Generator on the hidden states.
    pi : (K_h,)
        First-record weights.
    table : (n, K_h)
        Plain emission table (states, censored codes, and the blank cut record's
        row of ones with periods).
    r_hidden : (K_h,)
        Response probability of each hidden state.
    d_hidden : (K_h,) or None
        Attrition hazard of each hidden state; None: no attrition (no doubling).
    backend : module
        ``numpy`` or ``pytensor.tensor``.

    Returns
    -------
    q, pi, table
        Shapes (K', K'), (K',) and (3n + 1, K') with K' = K_h, or 2 K_h with attrition.
    """
    b = backend
    answered = table * r_hidden[None, :]
    missed = (1.0 - r_hidden)[None, :]
    if d_hidden is None:
        return q, pi, b.concatenate([table, answered, missed, table], axis=0)
    zero = b.zeros_like(table)
    rows = [
        b.concatenate([table, zero], axis=1),
        b.concatenate([answered, zero], axis=1),
        b.concatenate([missed, b.ones_like(missed)], axis=1),
        b.concatenate([table, table], axis=1),
    ]
    drop = b.diag(d_hidden)
    q_full = b.concatenate(
        [b.concatenate([q - drop, drop], axis=1), b.concatenate([b.zeros_like(q), q], axis=1)],
        axis=0,
    )
    return q_full, b.concatenate([pi, b.zeros_like(pi)]), b.concatenate(rows, axis=0)

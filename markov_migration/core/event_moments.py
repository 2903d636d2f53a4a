"""Expected stocks and transition events of a step, by Van Loan's block exponential.

The independent reference for :mod:`markov_migration.core.events`. A person in
state ``r`` at the start of a step of length ``h`` spends an expected
``(int_0^h P(u) du)[r, s]`` time units in ``s``, and makes ``s -> t`` moves at
rate ``q_st`` while there, so the expected events are

    E[events r -> s] = (x0' int_0^h P(u) du)[r] q_rs.

An arrival at a uniform time in the step spends ``(1/h) int_0^h (h - u) P(u) du``
in each state. Both integrals are blocks of one matrix exponential (Van Loan
1978): ``expm([[Q, I, 0], [0, 0, I], [0, 0, 0]] h)`` holds ``P(h)``,
``int_0^h P(u) du`` and ``int_0^h (h - u) P(u) du`` in its first block row.

References
----------
Van Loan, C. F. (1978). Computing integrals involving the matrix exponential.
IEEE Trans. Automatic Control 23(3), 395-404.

Examples
--------
>>> import numpy as np
>>> from markov_migration.core.event_moments import expected_events
>>> q = np.array([[-0.3, 0.3], [0.0, 0.0]])            # 1 -> 2, absorbing
>>> ev = expected_events(np.array([1000.0, 0.0]), q, 1.0)
>>> round(float(ev[0, 1]), 3)                          # 1000 (1 - exp(-0.3))
259.182
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg


def _complete(q: np.ndarray) -> np.ndarray:
    """The generator(s) with the diagonal rebuilt from the off-diagonal rates."""
    q = np.array(q, dtype=np.float64)
    idx = np.arange(q.shape[-1])
    q[..., idx, idx] = 0.0
    q[..., idx, idx] = -q.sum(axis=-1)
    return q


def occupancy_integrals(q: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``P(h)``, ``int_0^h P(u) du`` and ``int_0^h (h - u) P(u) du``.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
        Generator(s) (intensities per time unit; the diagonal is rebuilt).
    h : float
        Length of the interval (time units, >= 0).

    Returns
    -------
    tuple of three ndarray, shape (..., K, K)
    """
    q = _complete(q)
    k = q.shape[-1]
    block = np.zeros(q.shape[:-2] + (3 * k, 3 * k))
    block[..., :k, :k] = q
    block[..., :k, k : 2 * k] = np.eye(k)
    block[..., k : 2 * k, 2 * k :] = np.eye(k)
    e = scipy.linalg.expm(block * h)
    return e[..., :k, :k], e[..., :k, k : 2 * k], e[..., :k, 2 * k :]


def expected_step(
    x0: np.ndarray,
    pieces: Sequence[tuple[np.ndarray, float]],
    arrivals: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected end stocks and events of one step with a piecewise-constant generator.

    Works on one population or on a batch (e.g. posterior draws): leading
    dimensions of ``x0``, the generators and ``arrivals`` broadcast.

    Parameters
    ----------
    x0 : array_like, shape (..., K)
        Persons by state at the start of the step.
    pieces : sequence of (Q, duration)
        Generators (..., K, K) in time order and how long each holds (time units, > 0).
    arrivals : array_like, shape (..., K), optional
        Persons arriving during the step at uniform times (each piece gets
        its share by duration, uniform within it).

    Returns
    -------
    stock : ndarray, shape (..., K)
        Expected persons by state at the end of the step.
    events : ndarray, shape (..., K, K)
        Expected transitions ``r -> s`` within the step (diagonal 0).
    """
    m = np.asarray(x0, dtype=np.float64)
    k = m.shape[-1]
    arr = np.zeros(k) if arrivals is None else np.asarray(arrivals, dtype=np.float64)
    total = sum(float(h) for _, h in pieces)
    if not all(float(h) > 0 for _, h in pieces):
        raise ValueError("piece durations must be > 0")
    events = 0.0
    off = ~np.eye(k, dtype=bool)
    for q, h in pieces:
        q = _complete(q)
        p, int1, int2 = occupancy_integrals(q, h)
        rate = arr / total  # arrivals per time unit, spread evenly over the step
        occupancy = np.einsum("...r,...rs->...s", m, int1) + np.einsum(
            "...r,...rs->...s", rate, int2
        )
        events = events + np.where(off, occupancy[..., :, None] * q, 0.0)
        m = np.einsum("...r,...rs->...s", m, p) + np.einsum("...r,...rs->...s", rate, int1)
    return m, events


def expected_events(
    x0: np.ndarray, q: np.ndarray, h: float, arrivals: np.ndarray | None = None
) -> np.ndarray:
    """Expected transitions ``r -> s`` (..., K, K) within a step of length ``h``.

    ``E[events r -> s] = (x0' int_0^h P(u) du)[r] q_rs``, plus the arrivals'
    ``(a' (1/h) int_0^h (h - u) P(u) du)[r] q_rs``; see :func:`expected_step`.
    """
    return expected_step(x0, [(q, h)], arrivals)[1]

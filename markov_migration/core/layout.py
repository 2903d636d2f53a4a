"""The compressed panel layout the log-likelihood functions read, and its checks.

Layer 1 (numpy, numba only).

Panel data enter as aggregated counts in a compressed layout that supports
several generators (covariate patterns, groups) and piecewise-constant
periods:

``Q`` : float64 (M, K, K)
    Stack of ``M`` generators.
``piece_q`` : int64 (n_pieces,)
    Generator index of each *piece* (a distinct ``(generator, duration)`` pair).
``piece_t`` : float64 (n_pieces,)
    Duration of each piece, >= 0, in the model's time unit.
``row_ptr`` : int64 (n_rows + 1,)
    CSR pointer into ``row_piece``; row ``r`` uses pieces
    ``row_piece[row_ptr[r]:row_ptr[r + 1]]`` (at least one).
``row_piece`` : int64 (nnz,)
    Ordered pieces of each row: the interval's transition matrix is
    ``P(piece_0) @ P(piece_1) @ ...`` (an interval that crosses period cut
    points, as R msm's ``pci``). Almost always one piece per row.
``row_from``, ``row_to`` : int64 (n_rows,)
    Origin and destination state (0-based) of the observed transition.
``row_count`` : float64 (n_rows,)
    Number of (possibly weighted) persons making the transition.

The kernels index without bounds checks, so every entry point coerces the
arrays (:func:`panel_arrays`) and validates the layout (:func:`_layout_status`).
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

__all__ = ["PANEL_FIELDS", "panel_arrays"]

#: Names of the data arrays that follow ``Q`` in every log-likelihood function.
PANEL_FIELDS = (
    "piece_q",
    "piece_t",
    "row_ptr",
    "row_piece",
    "row_from",
    "row_to",
    "row_count",
)


# --------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------


def panel_arrays(data: Mapping[str, Any] | Any) -> tuple[np.ndarray, ...]:
    """Extract the seven panel arrays, in :data:`PANEL_FIELDS` order.

    Parameters
    ----------
    data : mapping or object
        Either a mapping with the keys of :data:`PANEL_FIELDS` or an object with
        attributes of those names.

    Returns
    -------
    tuple of ndarray
        ``(piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)``
        as C-contiguous int64 / float64 arrays.
    """
    if isinstance(data, Mapping):
        values = [data[name] for name in PANEL_FIELDS]
    else:
        values = [getattr(data, name) for name in PANEL_FIELDS]
    return _coerce_panel(*values)


def _coerce_panel(piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    out = []
    for name, value in zip(
        PANEL_FIELDS,
        (piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count),
        strict=True,
    ):
        arr = np.asarray(value)
        if name in ("piece_t", "row_count"):
            arr = np.ascontiguousarray(arr, dtype=np.float64)
        else:
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
            arr = np.ascontiguousarray(arr, dtype=np.int64)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
        out.append(arr)
    return tuple(out)


def _coerce_q(Q) -> np.ndarray:
    Q = np.ascontiguousarray(Q, dtype=np.float64)
    if Q.ndim == 2:
        Q = Q[None]
    if Q.ndim != 3 or Q.shape[1] != Q.shape[2] or Q.shape[1] == 0:
        raise ValueError(f"Q must have shape (M, K, K) with K >= 1, got {Q.shape}")
    return Q


# Layout problems found by _layout_status, by status code.
_LAYOUT_ERRORS = {
    1: "piece_t and piece_q must have the same length",
    2: "row_from, row_to and row_count must have the same length",
    3: "row_ptr must have length n_rows + 1",
    4: "row_ptr must start at 0 and end at len(row_piece)",
    5: "piece_q holds an index outside 0..M-1",
    6: "piece_t must be finite and >= 0",
    7: "every row needs at least one piece (row_ptr must increase)",
    8: "row_from/row_to hold a state outside 0..K-1",
    9: "row_piece holds an index outside 0..n_pieces-1",
}


@njit(cache=True)
def _layout_status(
    n_gen, n_states, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
):
    """0 for a consistent data layout, else a key of ``_LAYOUT_ERRORS``.

    The kernels index without bounds checks, so every entry point runs this.
    """
    n_pieces = piece_q.shape[0]
    n_rows = row_from.shape[0]
    if piece_t.shape[0] != n_pieces:
        return 1
    if row_to.shape[0] != n_rows or row_count.shape[0] != n_rows:
        return 2
    if row_ptr.shape[0] != n_rows + 1:
        return 3
    if row_ptr[0] != 0 or row_ptr[n_rows] != row_piece.shape[0]:
        return 4
    for p in range(n_pieces):
        if piece_q[p] < 0 or piece_q[p] >= n_gen:
            return 5
        if not (piece_t[p] >= 0.0 and np.isfinite(piece_t[p])):
            return 6
    for r in range(n_rows):
        if row_ptr[r + 1] <= row_ptr[r]:
            return 7
        if row_from[r] < 0 or row_from[r] >= n_states or row_to[r] < 0 or row_to[r] >= n_states:
            return 8
    for i in range(row_piece.shape[0]):
        if row_piece[i] < 0 or row_piece[i] >= n_pieces:
            return 9
    return 0


def _check_layout(n_gen, n_states, *panel):
    status = int(_layout_status(n_gen, n_states, *panel))
    if status:
        raise ValueError(_LAYOUT_ERRORS[status])


def _prepare(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    Q = _coerce_q(Q)
    panel = _coerce_panel(piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)
    _check_layout(Q.shape[0], Q.shape[1], *panel)
    return (Q, *panel)

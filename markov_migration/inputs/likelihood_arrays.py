"""The arrays the likelihood reads, packed for the PyMC model, and generators from rates.

:class:`LikelihoodData` holds a stack of generators' pieces and the aggregated
rows pointing (CSR) at them (see :mod:`markov_migration.inputs.design`);
:func:`pack_arrays` packs named arrays into the model's two data vectors;
:func:`generators_from_rates` turns intensities of the allowed transitions into
generator matrices. Plain NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from markov_migration.inputs.spec import ModelSpec


@dataclass(frozen=True)
class LikelihoodData:
    """Arrays of the aggregated panel likelihood (see module docstring).

    Attributes
    ----------
    piece_q : ndarray of int64, (n_pieces,)
        Generator index of each piece.
    piece_t : ndarray of float64, (n_pieces,)
        Duration of each piece (time units, > 0).
    row_ptr : ndarray of int64, (n_rows + 1,)
        Row r's pieces are ``row_piece[row_ptr[r]:row_ptr[r + 1]]``, in time order.
    row_piece : ndarray of int64, (nnz,)
    row_from, row_to : ndarray of int64, (n_rows,)
        State indices of each aggregated row.
    row_count : ndarray of float64, (n_rows,)
        (Weighted) number of transitions in each row.
    n_generators : int
    """

    piece_q: np.ndarray
    piece_t: np.ndarray
    row_ptr: np.ndarray
    row_piece: np.ndarray
    row_from: np.ndarray
    row_to: np.ndarray
    row_count: np.ndarray
    n_generators: int = 1

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The seven arrays in the order the likelihood functions take them."""
        return (
            self.piece_q,
            self.piece_t,
            self.row_ptr,
            self.row_piece,
            self.row_from,
            self.row_to,
            self.row_count,
        )

    @property
    def n_rows(self) -> int:
        """Number of aggregated rows."""
        return int(self.row_from.size)


def generators_from_rates(rates: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Generators (..., K, K) from intensities (..., T) of ``spec.transitions`` (NumPy)."""
    rates = np.asarray(rates, dtype=float)
    k = spec.n_states
    frm = np.array([r for r, _ in spec.transitions], dtype=np.int64)
    to = np.array([s for _, s in spec.transitions], dtype=np.int64)
    q = np.zeros((*rates.shape[:-1], k, k))
    q[..., frm, to] = rates
    q[..., np.arange(k), np.arange(k)] = -q.sum(axis=-1)
    return q


#: Names of the two packed data vectors of the PyMC model (``pm.Data``).
PACKED_NAMES = ("data_int", "data_float")


def pack_arrays(
    arrays: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], tuple[tuple[str, str, int], ...]]:
    """Pack named 1-d and 2-d arrays into one int64 and one float64 vector.

    nutpie compiles a wrapper per shared data array of a PyMC model (about 0.3 s
    each, never cached), so the model carries two packed vectors instead of
    seven to ten arrays, and unpacks them symbolically (views, no copies).

    Parameters
    ----------
    arrays : dict of str to ndarray
        Integer arrays go to the int64 vector, the others to the float64 one.

    Returns
    -------
    packed : dict
        ``{"data_int": int64 vector, "data_float": float64 vector}``. The int
        vector starts with a header of three numbers per array, in the order
        of ``layout``: the offset of the array in its vector, its first and
        its second dimension (1 for a vector).
    layout : tuple of (name, kind, ndim)
        ``kind`` is ``"i"`` or ``"f"``; it depends only on the model structure.

    Examples
    --------
    >>> packed, layout = pack_arrays({"a": np.array([1, 2]), "x": np.ones((2, 3))})
    >>> layout
    (('a', 'i', 1), ('x', 'f', 2))
    >>> packed["data_int"].tolist()
    [6, 2, 1, 0, 2, 3, 1, 2]
    """
    layout = []
    header: list[int] = []
    parts: dict[str, list[np.ndarray]] = {"i": [], "f": []}
    offsets = {"i": 3 * len(arrays), "f": 0}
    for name, value in arrays.items():
        a = np.asarray(value)
        if a.ndim not in (1, 2):
            raise ValueError(f"cannot pack '{name}' with ndim {a.ndim}")
        kind = "i" if np.issubdtype(a.dtype, np.integer) else "f"
        d0, d1 = (a.shape[0], 1) if a.ndim == 1 else a.shape
        header += [offsets[kind], d0, d1]
        parts[kind].append(a.reshape(-1).astype(np.int64 if kind == "i" else np.float64))
        offsets[kind] += a.size
        layout.append((name, kind, a.ndim))
    ints = np.concatenate([np.asarray(header, dtype=np.int64), *parts["i"]])
    floats = np.concatenate([np.zeros(0), *parts["f"]])
    return {"data_int": ints, "data_float": floats}, tuple(layout)


def unpack_arrays(
    packed: dict[str, Any], layout: tuple[tuple[str, str, int], ...]
) -> dict[str, Any]:
    """Inverse of :func:`pack_arrays`; works on NumPy arrays and PyTensor tensors alike."""
    ints, floats = packed["data_int"], packed["data_float"]
    out = {}
    for i, (name, kind, ndim) in enumerate(layout):
        off, d0, d1 = ints[3 * i], ints[3 * i + 1], ints[3 * i + 2]
        flat = (ints if kind == "i" else floats)[off : off + d0 * d1]
        out[name] = flat if ndim == 1 else flat.reshape((d0, d1))
    return out

"""From aggregated counts to the arrays the likelihood reads.

Layer 2: plain NumPy. The continuous-time likelihood sees a stack of generators
(one per covariate pattern x group x period; one in the plain model), the
distinct (generator, duration) *pieces* whose transition matrices it needs, and
the aggregated rows, each pointing (CSR) at the ordered pieces its interval is
made of (one piece unless it crosses a period cut point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from markov_migration.panel import AggregatedData


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


def likelihood_data(agg: AggregatedData) -> LikelihoodData:
    """Build the likelihood arrays of a model with one generator (no covariates/periods)."""
    t = agg.table
    intervals, row_interval = np.unique(t["interval"].to_numpy(dtype=float), return_inverse=True)
    n = len(t)
    return LikelihoodData(
        piece_q=np.zeros(intervals.size, dtype=np.int64),
        piece_t=intervals.astype(np.float64),
        row_ptr=np.arange(n + 1, dtype=np.int64),
        row_piece=row_interval.astype(np.int64),
        row_from=t["from"].to_numpy(dtype=np.int64),
        row_to=t["to"].to_numpy(dtype=np.int64),
        row_count=t["count"].to_numpy(dtype=np.float64),
        n_generators=1,
    )

"""Who came back: the augmented state space of "ever returned" (numpy only).

Persons who entered a home state at least once since the projection start are
counted by running the event kernel (:mod:`markov_migration.core.events`) on an
augmented chain instead of the K states. Each augmented state is ``(label,
flag, state)``:

- ``flag`` is 0 until the person enters any home state, then 1 for good:
  entering a home state from any state sets it (also a move between home
  states, and the re-entry of someone who was home at the start and left);
- ``label`` is fixed: 0 for persons abroad at the start, 1 for persons home at
  the start and for arrivals. It lets ``home_from_abroad`` count persons back
  home at the end who were abroad at the start. The flag alone cannot: someone
  home at the start who left and came back is flagged too. Without
  ``by_start`` there is one label (2K states); the kernel's cost grows with
  the number of occupied augmented states (about 1.5x the K-state run for 2K,
  2.4x for 4K on the migration5 benchmark).

The augmented generator is built from ``Q`` alone (the flag and label only
relabel states), so its events collapse to those of ``Q`` and its stocks
collapse to the stocks of the K-state chain, in distribution.

Examples
--------
>>> import numpy as np
>>> from markov_migration.core.ever_home import EverHomeSpace
>>> q = np.array([[-0.5, 0.5], [2.0, -2.0]])            # abroad <-> home
>>> space = EverHomeSpace(k=2, home=[1])
>>> space.generator(q).shape
(8, 8)
>>> x = space.initial(np.array([100, 10]))
>>> int(space.ever_home(x)), int(space.home_from_abroad(x))
(0, 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Values of the flag (0: not yet entered a home state, 1: entered one).
FLAGS = 2


@dataclass(frozen=True)
class EverHomeSpace:
    """Index arithmetic of the augmented ``(label, flag, state)`` space.

    Augmented index ``(label * FLAGS + flag) * k + state``.

    Parameters
    ----------
    k : int
        Number of states of the model.
    home : sequence of int
        Indices of the home states.
    by_start : bool
        Label persons by where they were at the start (4K states), so that
        :meth:`home_from_abroad` is available; otherwise 2K states.
    groups : sequence of int, optional
        Observed state of each of the ``k`` states, when they are latent phases
        of observed states (e.g. ``returned_1``, ``returned_2``): a move between
        two phases of the same observed state is no entry and leaves the flag
        as it is. Default: every state its own.
    """

    k: int
    home: Sequence[int]
    by_start: bool = True
    groups: Sequence[int] | None = None

    def __post_init__(self) -> None:
        home = tuple(int(h) for h in self.home)
        if not home or any(not 0 <= h < self.k for h in home):
            raise ValueError(f"home states must be a non-empty subset of 0..{self.k - 1}")
        object.__setattr__(self, "home", home)
        groups = tuple(range(self.k)) if self.groups is None else tuple(map(int, self.groups))
        if len(groups) != self.k:
            raise ValueError(f"groups must give the observed state of each of {self.k} states")
        object.__setattr__(self, "groups", groups)

    @property
    def labels(self) -> int:
        """Number of labels (2 with ``by_start``, else 1)."""
        return 2 if self.by_start else 1

    @property
    def size(self) -> int:
        """Number of augmented states."""
        return self.labels * FLAGS * self.k

    def index(self, label: int, flag: int, state: int) -> int:
        """Augmented index of ``(label, flag, state)``."""
        return (label * FLAGS + flag) * self.k + state

    def generator(self, q: np.ndarray) -> np.ndarray:
        """Augmented generator(s), shape (..., size, size), from ``q`` (..., K, K).

        Each rate ``q_rs`` (r != s) moves ``(l, f, r)`` to ``(l, f', s)`` with
        ``f' = 1`` if ``s`` is a home state (of another observed state than
        ``r``, see ``groups``), else ``f' = f``. The diagonal is minus the row
        sum.
        """
        q = np.asarray(q, dtype=np.float64)
        k = self.k
        if q.shape[-2:] != (k, k):
            raise ValueError(f"q must end in ({k}, {k}), got {q.shape}")
        out = np.zeros(q.shape[:-2] + (self.size, self.size))
        home = np.zeros(k, dtype=bool)
        home[list(self.home)] = True
        for label in range(self.labels):
            for flag in range(FLAGS):
                for r in range(k):
                    for s in range(k):
                        if s == r:
                            continue
                        entry = home[s] and self.groups[s] != self.groups[r]
                        to_flag = 1 if entry else flag
                        i, j = self.index(label, flag, r), self.index(label, to_flag, s)
                        out[..., i, j] = q[..., r, s]
        idx = np.arange(self.size)
        out[..., idx, idx] = -out.sum(axis=-1)
        return out

    def initial(self, x0: np.ndarray) -> np.ndarray:
        """Augmented start stocks (..., size): flag 0; label 0 abroad, 1 home."""
        x0 = np.asarray(x0)
        out = np.zeros(x0.shape[:-1] + (self.size,), dtype=x0.dtype)
        for s in range(self.k):
            label = 1 if s in self.home and self.by_start else 0
            out[..., self.index(label, 0, s)] = x0[..., s]
        return out

    def arrivals(self, arrivals: np.ndarray) -> np.ndarray:
        """Augmented arrivals (..., size): flag 0, the last label (not abroad at the start)."""
        arrivals = np.asarray(arrivals)
        out = np.zeros(arrivals.shape[:-1] + (self.size,), dtype=arrivals.dtype)
        first = self.index(self.labels - 1, 0, 0)
        out[..., first : first + self.k] = arrivals
        return out

    def _split(self, stock: np.ndarray) -> np.ndarray:
        stock = np.asarray(stock)
        if stock.shape[-1] != self.size:
            raise ValueError(f"augmented stocks must end in {self.size}, got {stock.shape}")
        return stock.reshape(stock.shape[:-1] + (self.labels, FLAGS, self.k))

    def stock(self, stock: np.ndarray) -> np.ndarray:
        """Persons by model state (..., K) from augmented stocks (..., size)."""
        return self._split(stock).sum(axis=(-3, -2))

    def events(self, events: np.ndarray) -> np.ndarray:
        """Transitions ``r -> s`` (..., K, K) from augmented events (..., size, size)."""
        events = np.asarray(events)
        n = self.labels * FLAGS
        shape = events.shape[:-2] + (n, self.k, n, self.k)
        return events.reshape(shape).sum(axis=(-4, -2))

    def ever_home(self, stock: np.ndarray) -> np.ndarray:
        """Persons (...) who entered a home state at least once since the start."""
        return self._split(stock)[..., 1, :].sum(axis=(-2, -1))

    def home_from_abroad(self, stock: np.ndarray) -> np.ndarray:
        """Persons (...) in a home state now who were abroad at the start (needs ``by_start``)."""
        if not self.by_start:
            raise ValueError("home_from_abroad needs EverHomeSpace(..., by_start=True)")
        abroad_at_start = self._split(stock)[..., 0, :, :]
        return abroad_at_start[..., list(self.home)].sum(axis=(-2, -1))

"""Projecting a fit with phase-type states: on its hidden states, reported by state and phase.

A model with ``[phases]`` (e.g. ``returned = 2``: short-stay and settled
returnees) is fitted on hidden states, and its observed-state ``Q`` only keeps
mean stays and next-state probabilities. The projection therefore runs the
exact event kernel on the hidden generator ``Q_latent`` of every draw and sums
the phases back to the observed states: stocks, events (a progression from one
phase to the next is no transition), returns and "ever returned" (moving on to
a later phase of a home state is no new return) are the model's own. The
stocks of the phases are kept as ``phase_stock`` (e.g. settled vs short-stay
returnees).

- Scenario multipliers of an observed move ``a -> b`` multiply every hidden
  move from a phase of ``a`` into ``b``; progressions are not changed.
- Exit rates of a state apply to each of its phases.
- Arrivals and everyone who enters a phased state start in its first phase.
- With covariates, groups or periods the hidden generators are those of the
  chosen covariates and group (each period's in force): the choice's terms of
  an observed move ``a -> b`` multiply every phase exit of ``a`` into ``b``, as
  in the likelihood (:func:`latent_generators`).
- Persons *in* a phased state at the start are split over its phases as a
  steady stream of entries would be (the share of the time a stay spends in
  each phase, per draw, :func:`markov_migration.core.phases.phase_measures`):
  the panel does not say which phase they are in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from markov_migration.core.phases import latent_at_observed, observed_generator, phase_measures
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.projection.initial import _largest_remainder


@dataclass(frozen=True)
class HiddenSpace:
    """Hidden states of a phase-type fit, for the projection.

    Attributes
    ----------
    observed : ndarray of int, shape (K_h,)
        Observed state of each hidden state.
    names : tuple of str
        Hidden state names (``returned_1``, ...).
    """

    observed: np.ndarray
    names: tuple[str, ...]

    @property
    def n_hidden(self) -> int:
        """Number of hidden states."""
        return int(self.observed.size)

    @property
    def phased(self) -> np.ndarray:
        """Hidden states that are phases of a state with more than one."""
        counts = np.bincount(self.observed)
        return np.flatnonzero(counts[self.observed] > 1)

    def first(self, state: int) -> int:
        """First (entry) phase of an observed state."""
        return int(np.flatnonzero(self.observed == state)[0])

    def expand_multipliers(self, m: np.ndarray) -> np.ndarray:
        """Multipliers (..., K, K) of observed moves on the hidden moves (..., K_h, K_h)."""
        o = self.observed
        out = np.asarray(m)[..., o[:, None], o[None, :]].copy()
        out[..., o[:, None] == o[None, :]] = 1.0  # within a state: progressions, unchanged
        return out

    def expand_rates(self, rates: np.ndarray | None) -> np.ndarray | None:
        """Per-state rates (..., K) to each hidden state (..., K_h)."""
        return None if rates is None else np.asarray(rates)[..., self.observed]

    def expand_stocks(self, x0: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Initial stocks (D, K) on the hidden states (D, K_h), per draw's steady split.

        ``q`` (D, 1, K_h, K_h): each draw's hidden generator.
        """
        x0 = np.asarray(x0, dtype=np.int64)
        out = np.zeros((x0.shape[0], self.n_hidden), dtype=np.int64)
        for r in range(x0.shape[1]):
            hidden = np.flatnonzero(self.observed == r)
            if hidden.size == 1:
                out[:, hidden[0]] = x0[:, r]
                continue
            share = phase_measures(q[:, 0], hidden, times=())["share"]  # (D, n)
            for d in range(x0.shape[0]):
                out[d, hidden] = _largest_remainder(share[d] * x0[d, r], int(x0[d, r]))
        return out

    def has_design(self, tree: xr.DataTree) -> bool:
        """Whether the fit has covariates, groups or periods (one generator per pattern)."""
        post = tree["posterior"]
        return "log_hazard_ratio" in post or "group_effect" in post or "period" in post.coords

    def observed_q(self, q_hidden: np.ndarray, k: int) -> np.ndarray:
        """Observed-state generators (..., K, K) of hidden ones, with the phases' mean stays."""
        return observed_generator(q_hidden, self.observed, k)

    def collapse_stock(self, stock: np.ndarray, k: int) -> np.ndarray:
        """Hidden stocks (..., K_h) summed to observed states (..., K)."""
        out = np.zeros(stock.shape[:-1] + (k,), dtype=stock.dtype)
        for h, r in enumerate(self.observed):
            out[..., r] += stock[..., h]
        return out

    def collapse_events(self, events: np.ndarray, k: int) -> np.ndarray:
        """Hidden events (..., K_h, K_h) to observed moves (..., K, K); progressions dropped."""
        onehot = np.zeros((self.n_hidden, k), dtype=events.dtype)
        onehot[np.arange(self.n_hidden), self.observed] = 1
        out = np.einsum("...ij,ia,jb->...ab", events, onehot, onehot)
        idx = np.arange(k)
        out[..., idx, idx] = 0
        return out


def hidden_space(tree: xr.DataTree) -> HiddenSpace | None:
    """The fit's hidden space when it has phase-type states (``Q_latent``), else None."""
    post = tree["posterior"]
    if "Q_latent" not in post:
        return None
    from markov_migration.fitfile.readback import phase_layout

    _, layout, names = phase_layout(tree)
    return HiddenSpace(observed=np.asarray(layout.observed, dtype=np.int64), names=tuple(names))


def latent_generators(tree: xr.DataTree, chosen: np.ndarray, q: np.ndarray | None = None):
    """Hidden generators (n, P, K_h, K_h) of the chosen flattened posterior samples.

    Samples are flattened as :func:`~markov_migration.projection.fitted.posterior_generators`
    flattens ``Q`` (chain-major), so index ``i`` is the same sample in both. A fit
    with covariates, groups or periods needs ``q`` (n, P, K, K), the observed-state
    generators of the choice (covariates, group, each period in force) from
    :func:`~markov_migration.projection.fitted.period_generators`: its covariate,
    group and period terms of each observed transition multiply every phase exit
    of that transition (:func:`markov_migration.core.phases.latent_at_observed`,
    the model's convention); otherwise ``P = 1`` and ``Q_latent`` is used as it is.
    """
    post = tree["posterior"]
    hidden = hidden_space(tree)
    if q is not None and hidden is not None and hidden.has_design(tree):
        from markov_migration.fitfile.format import fit_spec
        from markov_migration.fitfile.readback import phase_layout

        spec, layout, names = phase_layout(tree)
        labels = [f"{names[a]}->{names[b]}" for a, b in zip(layout.rate_from, layout.rate_to,
                                                             strict=True)]  # fmt: skip
        flat = {
            name: post[name].sel({dim: lab}).stack(sample=SAMPLE_DIMS)
            .transpose("sample", dim).values[chosen]
            for name, dim, lab in (
                ("log_rate", "transition", list(fit_spec(tree).transition_labels)),
                ("log_rate_latent", "latent_transition", labels),
            )
        }  # fmt: skip
        out = latent_at_observed(
            q, flat["log_rate"], flat["log_rate_latent"], layout, spec.transitions
        )
    else:
        out = post["Q_latent"].transpose(*SAMPLE_DIMS, "from_latent", "to_latent")
        out = out.stack(sample=SAMPLE_DIMS).transpose("sample", "from_latent", "to_latent")
        out = out.values[chosen][:, None]
    if not np.all(np.isfinite(out)):
        raise InputError("fit file's posterior Q_latent has non-finite values")
    return np.ascontiguousarray(out)

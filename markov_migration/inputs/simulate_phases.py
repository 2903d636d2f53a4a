"""Simulating a model with latent phases: ``[simulate.latent_rates]`` and ``initial_phases``.

A model with ``[phases]`` (e.g. ``returned = 2``) is fitted on hidden states
(:func:`markov_migration.core.phases.phase_expansion`); to simulate from it the
``[simulate]`` table gives the hidden intensities, named as the fit names them
(``latent_transition``: ``"returned_1->returned_2"``, ``"returned_1->reemigrated"``,
``"abroad->returned_1"``, ...)::

    [simulate.latent_rates]          # every hidden intensity, per time unit
    "returned_1->returned_2" = 0.6   # short stay -> settled
    "returned_1->reemigrated" = 2.7
    "returned_2->reemigrated" = 0.1
    ...
    [simulate.initial_phases]        # split of a phased state's first-wave share
    returned = [0.9, 0.1]            # (default: as a steady stream of entries would be)

Paths run on the hidden generator and the panel records their observed states
(a phase is never recorded). Host, covariate and period hazard ratios of an
observed move ``a -> b`` multiply every hidden move from a phase of ``a`` into
``b``; progressions between phases are not changed. Without
``[simulate.latent_rates]`` a phased model is simulated from ``[rates]`` as a
plain Markov model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from markov_migration.core.phases import (
    generator_from_rates,
    hidden_names,
    phase_expansion,
    phase_measures,
)
from markov_migration.inputs.simulate_tables import SHARE_TOLERANCE, DesignChecker
from markov_migration.inputs.spec import ModelSpec


@dataclass(frozen=True)
class LatentDesign:
    """Hidden generator and first-wave phase split of a phased simulation.

    Attributes
    ----------
    names : tuple of str
        Hidden state names (``returned_1``, ``returned_2``, ...).
    observed : numpy.ndarray of int, shape (K_h,)
        Observed state of each hidden state.
    q : numpy.ndarray, shape (K_h, K_h)
        Hidden generator (per time unit).
    split : numpy.ndarray, shape (K_h,)
        Share of each hidden state within its observed state at the first wave
        (1 for unphased states).
    """

    names: tuple[str, ...]
    observed: np.ndarray
    q: np.ndarray
    split: np.ndarray

    def initial(self, initial: np.ndarray) -> np.ndarray:
        """Observed first-wave shares (K,) on the hidden states (K_h,)."""
        return np.asarray(initial, dtype=float)[self.observed] * self.split

    def expand(self, m: np.ndarray, within: float) -> np.ndarray:
        """Per-move values (..., K, K) on the hidden moves (..., K_h, K_h).

        Moves within one observed state (progressions and the diagonal) get ``within``.
        """
        o = self.observed
        out = np.asarray(m, dtype=float)[..., o[:, None], o[None, :]].copy()
        out[..., o[:, None] == o[None, :]] = within
        return out


def latent_labels(spec: ModelSpec) -> tuple[tuple[str, ...], np.ndarray, list[str]]:
    """Hidden names, observed state of each and the labels of the hidden intensities.

    The labels and their order are those of the fit's ``latent_transition``
    coordinate (``inference.latent.latent_layout`` of a phased model).
    """
    phases = spec.observation.phases or {}
    lay = phase_expansion(spec.allowed_matrix(), phases)
    names = hidden_names(spec.states, lay)
    labels = [f"{names[a]}->{names[b]}" for a, b in zip(lay.rate_from, lay.rate_to, strict=True)]
    return names, lay.observed, labels


def latent_generator(spec: ModelSpec, rates: dict[str, float]) -> np.ndarray:
    """Hidden generator (K_h, K_h) from ``{"returned_1->reemigrated": rate, ...}``."""
    names, _observed, labels = latent_labels(spec)
    lay = phase_expansion(spec.allowed_matrix(), spec.observation.phases or {})
    unknown = sorted(set(rates) - set(labels))
    missing = [lab for lab in labels if lab not in rates]
    if unknown or missing:
        raise ValueError(f"hidden rates: unknown {unknown}, missing {missing}")
    values = [float(rates[lab]) for lab in labels]
    return generator_from_rates(len(names), lay.rate_from, lay.rate_to, values)


def steady_split(q: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Phase split of each phased state as a steady stream of entries would give it."""
    split = np.ones(observed.size)
    for r in np.unique(observed):
        hidden = np.flatnonzero(observed == r)
        if hidden.size > 1:
            split[hidden] = phase_measures(q, hidden, times=())["share"]
    return split


def parse_latent(chk: DesignChecker, raw: dict[str, Any]) -> LatentDesign | None:
    """Validate ``[simulate.latent_rates]`` and ``[simulate.initial_phases]`` (None if absent)."""
    spec = chk.spec
    if "latent_rates" not in raw:
        if "initial_phases" in raw:
            raise chk.fail(
                "[simulate] initial_phases needs [simulate.latent_rates]", "initial_phases"
            )
        return None
    if not spec.observation.phases:
        raise chk.fail(
            "[simulate.latent_rates] needs a model with [phases] (hidden states to simulate)",
            "latent_rates",
        )
    names, observed, labels = latent_labels(spec)
    table = chk.table(raw["latent_rates"], "[simulate.latent_rates]", "latent_rates")
    rates = {}
    for key, value in table.items():
        if key not in labels:
            raise chk.fail(
                f"[simulate.latent_rates] '{key}' is not a hidden move of the model "
                f"(hidden moves: {', '.join(labels)})",
                key,
            )
        rates[key] = chk.number(value, f"[simulate.latent_rates] {key}", key)
    missing = [lab for lab in labels if lab not in rates]
    if missing:
        raise chk.fail(
            f"[simulate.latent_rates] has no intensity for '{missing[0]}' (give every hidden "
            "move, 0 to switch one off)",
            "latent_rates",
        )
    q = latent_generator(spec, rates)
    split = steady_split(q, observed)
    where = "[simulate] initial_phases"
    for name, value in chk.table(raw.get("initial_phases", {}), where, "initial_phases").items():
        if name not in spec.states:
            raise chk.fail(f"{where}: '{name}' is not a declared state", name)
        hidden = np.flatnonzero(observed == spec.index(name))
        ok = isinstance(value, list) and len(value) == hidden.size and hidden.size > 1
        if not ok:
            raise chk.fail(
                f"{where} {name} must list one share per phase ({hidden.size} phases)", name
            )
        shares = np.array([chk.number(v, f"{where} {name}", name) for v in value])
        if abs(shares.sum() - 1.0) > SHARE_TOLERANCE:
            raise chk.fail(f"{where} {name}: shares sum to {shares.sum():.6g}, not 1", name)
        split[hidden] = shares
    return LatentDesign(names=names, observed=observed, q=q, split=split)

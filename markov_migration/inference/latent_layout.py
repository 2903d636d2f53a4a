"""The hidden state space of a latent-state model, its priors and coordinates (layer 3).

:class:`LatentLayout` (hidden states, free intensities and their priors, record
codes), built from a model spec by :func:`latent_layout`; what latent models refuse
(:func:`check_latent_supported`); the coordinates of the model and its fit file
(:func:`latent_coords`). The model itself is in :mod:`markov_migration.inference.latent`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from markov_migration.core.phases import hidden_names, phase_expansion
from markov_migration.errors import InputError
from markov_migration.inference.latent_nonresponse import attrition_states
from markov_migration.inputs.panel import Panel
from markov_migration.inputs.priors import DEFAULT_PRIOR_RATE, DEFAULT_PRIOR_SD, prior_coords
from markov_migration.inputs.spec import ModelSpec

__all__ = [
    "LatentLayout",
    "check_latent_supported",
    "latent_coords",
    "latent_layout",
    "phase_prior",
]


@dataclass(frozen=True)
class LatentLayout:
    """The hidden state space of a latent model and how records map onto it.

    Attributes
    ----------
    hidden_states : tuple of str
        Labels of the hidden states (``"returned_1"``, ``"returned_2"`` for phases).
    observed : ndarray of int (K_h,)
        Observed state of each hidden state.
    rate_from, rate_to : ndarray of int (n_rates,)
        Hidden origin and destination of each free intensity.
    rate_labels : tuple of str
    prior_mu, prior_sigma : ndarray (n_rates,)
        Normal prior of each log-intensity.
    code_sets : tuple of tuple of int
        Observed states each record code stands for (states, then censored codes).
    rate_observed : ndarray of int (n_rates, 2)
        Observed transition of each free intensity (``r == s``: a phase progression).
    emission : ndarray (K_h, K)
        0/1: hidden state ``h`` is recorded as its observed state ``observed[h]``
        (:class:`markov_migration.core.phases.PhaseLayout`'s ``emission``).
    """

    hidden_states: tuple[str, ...]
    observed: np.ndarray
    rate_from: np.ndarray
    rate_to: np.ndarray
    rate_labels: tuple[str, ...]
    prior_mu: np.ndarray
    prior_sigma: np.ndarray
    code_sets: tuple[tuple[int, ...], ...]
    rate_observed: np.ndarray
    emission: np.ndarray

    @property
    def phased(self) -> bool:
        """Whether the hidden space differs from the observed states."""
        return len(self.hidden_states) != len(np.unique(self.observed))


def check_latent_supported(spec: ModelSpec, panel: Panel | None = None) -> None:
    """Refuse what the latent model cannot fit yet (one-line InputError)."""
    where = spec.path or spec.name
    if spec.time != "continuous":
        raise InputError(f"{where}: latent states need a continuous-time model")
    if panel is None:
        raise InputError(
            f"{where}: a latent-state model needs a long-format panel (respondents' "
            "histories), not an aggregated-counts table"
        )


def latent_layout(spec: ModelSpec) -> LatentLayout:
    """The hidden state space, intensity index and record codes of a latent spec."""
    obs = spec.observation
    k = spec.n_states
    lay = phase_expansion(spec.allowed_matrix(), obs.phases or {})
    names = hidden_names(spec.states, lay)
    # Phase-type models give each latent intensity its own lognormal (see phase_prior);
    # without phases the model uses the spec's priors themselves (rate_prior).
    mu, sigma = [], []
    for r, s in lay.rate_observed:
        m, sd = phase_prior(spec, (int(r), int(s)))
        mu.append(m)
        sigma.append(sd)
    if not obs.phases:  # keep the pure-panel order and labels of the transitions
        order = [
            int(np.flatnonzero((lay.rate_from == r) & (lay.rate_to == s))[0])
            for r, s in spec.transitions
        ]
    else:
        order = list(range(len(lay.rate_from)))
    rate_from, rate_to = lay.rate_from[order], lay.rate_to[order]
    labels = tuple(f"{names[a]}->{names[b]}" for a, b in zip(rate_from, rate_to, strict=True))
    code_sets = tuple((r,) for r in range(k)) + tuple(members for _, members in obs.censored)
    if spec.periods:  # the last code: a record at a cut point that says nothing (all states)
        code_sets += (tuple(range(k)),)
    return LatentLayout(
        hidden_states=tuple(names),
        observed=lay.observed,
        rate_from=rate_from,
        rate_to=rate_to,
        rate_labels=labels,
        prior_mu=np.array(mu)[order],
        prior_sigma=np.array(sigma)[order],
        code_sets=code_sets,
        rate_observed=lay.rate_observed[order],
        emission=lay.emission,
    )


def phase_prior(spec: ModelSpec, pair: tuple[int, int]) -> tuple[float, float]:
    """Normal prior (mu, sd) of a phase-type model's log-intensity of observed move ``pair``.

    A transition's own prior; for a transition under a state-level prior, the total
    exit rate's prior shifted by the log of its mean share ``alpha_s / sum(alpha)``
    (the independent per-move approximation); otherwise (a phase's progression) the
    per-transition default.
    """
    if pair in spec.priors:
        return spec.priors[pair].mu, spec.priors[pair].sigma
    for e in spec.exit_priors:
        if pair in e.exits:
            share = e.split[e.exits.index(pair)] / sum(e.split)
            return e.mu + float(np.log(share)), e.sigma
    return float(np.log(DEFAULT_PRIOR_RATE)), DEFAULT_PRIOR_SD


def latent_coords(spec: ModelSpec, layout: LatentLayout, design=None) -> dict[str, list]:
    """Coordinates of the latent model and its fit file (with the design's, if any)."""
    coords = {
        "state": list(spec.states),
        "from_state": list(spec.states),
        "to_state": list(spec.states),
        "transition": list(spec.transition_labels),
        "latent_state": list(layout.hidden_states),
        "from_latent": list(layout.hidden_states),
        "to_latent": list(layout.hidden_states),
        "latent_transition": list(layout.rate_labels),
        "true_state": list(spec.states),
        "recorded_state": list(spec.states),
    }
    if not layout.phased:
        coords.update(prior_coords(spec))
    else:  # the phases of each phased state (the split of the initial distribution)
        for r in np.unique(layout.observed):
            members = np.flatnonzero(layout.observed == r)
            if len(members) > 1:
                coords[f"phase_{spec.states[r]}"] = [layout.hidden_states[h] for h in members]
    if spec.observation.nonresponse is not None:
        coords["response_state"] = [spec.states[r] for r in spec.observation.nonresponse.states]
        coords["attrition_state"] = [spec.states[r] for r in attrition_states(spec)]
    for r, targets in spec.observation.misclassification:
        coords[f"recorded_{spec.states[r]}"] = [spec.states[s] for s in (r, *targets)]
    if design is not None:
        coords.update(design.coords())
    return coords

"""Priors on the intensities of a continuous-time model: the ``[priors]`` table.

Two kinds of prior, each intensity ``q_rs`` (moves r -> s per time unit) under exactly one:

State-level (:class:`ExitPrior`)
    A prior on the state's *total* exit rate ``lambda_r`` and how it splits among the
    state's exits: ``q_rs = lambda_r * pi_rs`` with ``log lambda_r ~ Normal(mu_r, sd_r)``
    and ``pi_r ~ Dirichlet(alpha_r)`` over the exits in the split. So
    ``r = { probability = 0.5, within = 1 }`` means what it says: the prior median of
    P(leave r within 1 time unit) ``= 1 - exp(-lambda_r)`` is 0.5. Every state without a
    ``[priors]`` entry gets the built-in one (:data:`DEFAULT_EXIT_RATE`,
    :data:`DEFAULT_EXIT_SD`, ``split = 1``), whatever its number of exits.
Per transition (:class:`Prior`)
    ``log q_rs ~ Normal(mu, sd)`` independently, for a transition given its own entry
    ``"r -> s" = {...}``, and for every transition when ``[priors] default = {...}`` is
    given (the independent per-move priors of earlier versions). A transition with its
    own prior is outside its state's split; the state's other exits keep a state-level
    prior on their total rate. A state-level entry *and* a transition entry for the same
    state is refused: the state's statement would no longer be about leaving it.

:class:`PriorTables` parses the table for :class:`~markov_migration.inputs.spec_tables.
TableParser`; :func:`prior_coords` and :func:`draw_log_rates` give the PyMC model's
coordinates and exact draws from the prior (numpy, for SBC and tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Built-in state-level prior: the total exit rate of every state has a median of 0.2 per
#: time unit (an 18% chance of leaving within one unit) and a log-scale sd of 1.5 (95%
#: range of the one-unit departure probability about 1% to 98%), whatever the number
#: of exits; the exits share it by a Dirichlet(1) split.
DEFAULT_EXIT_RATE = 0.2
DEFAULT_EXIT_SD = 1.5
#: Dirichlet concentration of each exit in a state-level split.
DEFAULT_SPLIT = 1.0
#: Per-transition prior of a transition entry without ``rate``/``sd`` (and of ``default``
#: without them): median 0.2 moves per time unit, log-scale sd 1.5.
DEFAULT_PRIOR_RATE = 0.2
DEFAULT_PRIOR_SD = 1.5

#: Default Dirichlet concentration for each allowed target (discrete time).
DEFAULT_CONCENTRATION = 1.0

_PRIOR_KEYS = ("rate", "mean_sojourn", "probability")


@dataclass(frozen=True)
class Prior:
    """Normal prior on one log-intensity (continuous time): a transition's own prior.

    Attributes
    ----------
    mu : float
        Prior median of the log-intensity (log of moves per time unit).
    sigma : float
        Prior sd of the log-intensity.
    source : str
        How the user stated it (e.g. ``"mean_sojourn = 2 years"``), for reports.
    """

    mu: float
    sigma: float
    source: str = "default"


@dataclass(frozen=True)
class ExitPrior:
    """State-level prior: total exit rate ``lambda`` and a Dirichlet split over exits.

    Attributes
    ----------
    state : int
        The state's index.
    exits : tuple of (int, int)
        The transitions sharing ``lambda`` (the state's exits without their own prior),
        in ``spec.transitions`` order.
    mu : float
        Prior median of ``log lambda`` (log of exits per time unit).
    sigma : float
        Prior sd of ``log lambda``.
    split : tuple of float
        Dirichlet concentration of each exit (same order as ``exits``).
    source : str
        How the user stated it, for reports.
    """

    state: int
    exits: tuple[tuple[int, int], ...]
    mu: float
    sigma: float
    split: tuple[float, ...]
    source: str = "default"


class PriorTables:
    """``[priors]`` parsing for :class:`~markov_migration.inputs.spec_tables.TableParser`.

    Uses its ``raw``, ``states``, ``transitions``, ``fail``, ``number``, ``state_index``
    and ``transition``.
    """

    raw: dict[str, Any]
    states: tuple[str, ...]
    transitions: tuple[tuple[int, int], ...]

    def parse_prior_value(self, key: str, value: Any) -> tuple[float | None, float | None, str]:
        """Return (rate, sd, source) from one [priors] entry (``split`` is read apart)."""
        if not isinstance(value, dict):
            raise self.fail(f"[priors] {key} must be a table, e.g. {{ mean_sojourn = 2 }}", key)
        allowed = {*_PRIOR_KEYS, "within", "sd", "concentration", "split"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(
                f"[priors] {key}: unknown key '{unknown[0]}' (use one of rate, mean_sojourn, "
                "probability [+ within], and optionally sd and, for a state, split)",
                key,
            )
        given = [k for k in _PRIOR_KEYS if k in value]
        if len(given) > 1:
            raise self.fail(f"[priors] {key}: give only one of {', '.join(given)}", key)
        sd = None
        if "sd" in value:
            sd = self.number(value["sd"], f"[priors] {key}.sd", needle=key)
        if not given:
            return None, sd, "default"
        kind = given[0]
        x = self.number(value[kind], f"[priors] {key}.{kind}", needle=key)
        if kind == "rate":
            return x, sd, f"rate = {x:g} per unit"
        if kind == "mean_sojourn":
            return 1.0 / x, sd, f"mean_sojourn = {x:g} units"
        if x >= 1:
            raise self.fail(f"[priors] {key}.probability must be below 1, got {x}", key)
        within = self.number(value.get("within", 1.0), f"[priors] {key}.within", needle=key)
        return -math.log1p(-x) / within, sd, f"probability = {x:g} within {within:g} units"

    def parse_split(self, key: str, r: int, value: Any) -> dict[int, float]:
        """Dirichlet concentration by target state from a state's ``split`` (number or table)."""
        targets = [s for a, s in self.transitions if a == r]
        if not isinstance(value, dict):
            c = self.number(value, f"[priors] {key}.split", needle=key)
            return dict.fromkeys(targets, c)
        out = dict.fromkeys(targets, DEFAULT_SPLIT)
        for name, c in value.items():
            s = self.state_index(name, f"[priors] {key}.split")
            if s not in targets:
                raise self.fail(f"[priors] {key}.split: '{name}' is not an exit of '{key}'", key)
            out[s] = self.number(c, f"[priors] {key}.split.{name}", needle=key)
        return out

    def parse_priors(self, time: str):
        """Transition priors, state-level priors and Dirichlet concentrations from ``[priors]``.

        Returns
        -------
        priors : dict of (int, int) to Prior
            Transitions with their own prior.
        exit_priors : tuple of ExitPrior
            One per state whose other exits share a total exit rate.
        concentration : dict of (int, int) to float
            Discrete time: every allowed transition and every stay.
        """
        del time
        table = self.raw.get("priors", {})
        if not isinstance(table, dict):
            raise self.fail("[priors] must be a table", "priors")
        default: tuple | None = None  # the per-transition default, when given
        default_conc = DEFAULT_CONCENTRATION
        per_state: dict[int, tuple] = {}
        per_transition: dict[tuple[int, int], tuple] = {}
        conc: dict[tuple[int, int], float] = {}
        for key, value in table.items():
            if key == "misclassification":  # read by inputs.observation
                continue
            if key == "period" and key not in self.states:  # read by parse_period_prior
                continue
            if key == "concentration":
                default_conc = self.number(value, "[priors] concentration", needle="concentration")
                continue
            if isinstance(value, dict) and "concentration" in value:
                c = self.number(value["concentration"], f"[priors] {key}.concentration", needle=key)
                if "->" in key:
                    conc[self.transition(key, "[priors]")] = c
                else:
                    conc[(self.state_index(key, "[priors]"), None)] = c
                value = {k: v for k, v in value.items() if k != "concentration"}
                if not value:
                    continue
            rate, sd, source = self.parse_prior_value(key, value)
            if "split" in value and (key == "default" or "->" in key):
                raise self.fail(
                    f"[priors] {key}: 'split' belongs to a state's prior (how its total exit "
                    "rate is shared among its exits)",
                    key,
                )
            if key == "default":
                default = (rate, sd, source)
            elif "->" in key:
                per_transition[self.transition(key, "[priors]")] = (rate, sd, source)
            else:
                r = self.state_index(key, "[priors]")
                if not any(a == r for a, _ in self.transitions):
                    raise self.fail(
                        f"[priors] {key}: state '{key}' is absorbing (no moves out)", key
                    )
                split = self.parse_split(key, r, value["split"]) if "split" in value else {}
                per_state[r] = (rate, sd, source, split)
        priors, exit_priors = self._assign(default, per_state, per_transition)
        concentration: dict[tuple[int, int], float] = {}
        for r in range(len(self.states)):
            concentration[(r, r)] = conc.get((r, None), default_conc)
        for pair in self.transitions:
            concentration[pair] = conc.get(pair, default_conc)
        return priors, tuple(exit_priors), concentration

    def _assign(self, default, per_state, per_transition):
        """Put every transition under its own prior or its state's (see the module doc)."""
        d_rate, d_sd = DEFAULT_PRIOR_RATE, DEFAULT_PRIOR_SD
        if default is not None:
            d_rate = default[0] if default[0] is not None else d_rate
            d_sd = default[1] if default[1] is not None else d_sd
        priors: dict[tuple[int, int], Prior] = {}
        exit_priors: list[ExitPrior] = []
        for r, name in enumerate(self.states):
            exits = [p for p in self.transitions if p[0] == r]
            own = [p for p in exits if p in per_transition]
            if r in per_state and own:
                label = f"{name}->{self.states[own[0][1]]}"
                raise self.fail(
                    f"[priors] {name}: give either a prior for the state or priors for its "
                    f"moves ('{label}'), not both",
                    name,
                )
            if r not in per_state and default is not None:
                own = exits  # the per-transition default covers every exit
            for pair in own:
                rate, sd, source = per_transition.get(pair, default)
                priors[pair] = Prior(
                    mu=math.log(rate if rate is not None else d_rate),
                    sigma=sd if sd is not None else d_sd,
                    source=source,
                )
            shared = tuple(p for p in exits if p not in priors)
            if not shared:
                continue
            rate, sd, source, split = per_state.get(r, (None, None, "default", {}))
            exit_priors.append(
                ExitPrior(
                    state=r,
                    exits=shared,
                    mu=math.log(rate if rate is not None else DEFAULT_EXIT_RATE),
                    sigma=sd if sd is not None else DEFAULT_EXIT_SD,
                    split=tuple(split.get(s, DEFAULT_SPLIT) for _, s in shared),
                    source=source,
                )
            )
        return priors, exit_priors


def split_name(spec, exit_prior: ExitPrior) -> tuple[str, str]:
    """Name and dim of the Dirichlet split of a state-level prior.

    ``split_<state>`` over ``next_<state>``: the split is the distribution of the next
    state on leaving (as discrete time's rows ``p_<state>`` over ``next_<state>``).
    """
    state = spec.states[exit_prior.state]
    return f"split_{state}", f"next_{state}"


def prior_coords(spec) -> dict[str, list[str]]:
    """Coordinates of the intensity priors' free variables in the PyMC model.

    ``direct_transition`` (transitions with their own prior, variable ``log_rate_direct``),
    ``exit_state`` (states with a state-level prior, ``log_exit_rate``) and, for each of
    those with two or more exits in its split, ``next_<state>`` (its target states, the
    dim of ``split_<state>``).
    """
    labels = dict(zip(spec.transitions, spec.transition_labels, strict=True))
    coords: dict[str, list[str]] = {}
    direct = [labels[p] for p in spec.transitions if p in spec.priors]
    if direct:
        coords["direct_transition"] = direct
    if spec.exit_priors:
        coords["exit_state"] = [spec.states[e.state] for e in spec.exit_priors]
    for e in spec.exit_priors:
        if len(e.exits) > 1:
            coords[split_name(spec, e)[1]] = [spec.states[s] for _, s in e.exits]
    return coords


def draw_log_rates(spec, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """Exact draws of the baseline log intensities from the spec's priors.

    Parameters
    ----------
    spec : ModelSpec
        A continuous-time spec.
    rng : numpy.random.Generator
    size : int, optional
        Number of draws (default: one, without the leading axis).

    Returns
    -------
    ndarray (T,) or (size, T)
        ``log_rate`` of ``spec.transitions`` (log of moves per time unit).
    """
    n = 1 if size is None else int(size)
    index = {p: i for i, p in enumerate(spec.transitions)}
    out = np.empty((n, len(spec.transitions)))
    for pair, prior in spec.priors.items():
        out[:, index[pair]] = prior.mu + prior.sigma * rng.standard_normal(n)
    for e in spec.exit_priors:
        log_total = e.mu + e.sigma * rng.standard_normal(n)
        cols = [index[p] for p in e.exits]
        if len(cols) == 1:
            out[:, cols[0]] = log_total
        else:
            out[:, cols] = log_total[:, None] + np.log(rng.dirichlet(np.array(e.split), size=n))
    return out[0] if size is None else out

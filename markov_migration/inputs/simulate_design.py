"""The ``[simulate]`` table: the observation design of a simulated panel.

Wave dates, jitter of interview dates, attrition, late entry, state-dependent
response, the initial state shares, and the simulated covariates, groups (see
:mod:`markov_migration.inputs.simulate_tables`) and period effects, validated
into a :class:`SimulationDesign`. Every problem raises
:class:`~markov_migration.errors.SpecError` naming the file and line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from markov_migration.errors import InputError
from markov_migration.inputs.simulate_phases import LatentDesign, parse_latent
from markov_migration.inputs.simulate_tables import (
    DesignChecker,
    SimulatedCovariate,
    SimulatedGroups,
    parse_simulated_covariates,
    parse_simulated_groups,
)
from markov_migration.inputs.spec import ModelSpec

#: Known keys of each ``[simulate]`` table.
DESIGN_KEYS = (
    "waves", "jitter", "attrition", "late_entry", "initial", "covariates", "groups",
    "period_effects", "response", "latent_rates", "initial_phases",
)  # fmt: skip
#: Default waves when the model file has no [simulate] waves (time units).
DEFAULT_WAVES = (0.0, 1.0, 2.0)


@dataclass(frozen=True)
class SimulationDesign:
    """The validated observation design of a ``[simulate]`` table.

    Attributes
    ----------
    waves : tuple of float
        Nominal wave dates (time units), strictly increasing.
    jitter : float
        Half-width of the uniform spread of interview dates around a wave (time units).
    attrition : float
        Probability of dropping out between consecutive waves.
    late_entry : float
        Probability that a respondent first joins at the second wave.
    initial : numpy.ndarray, shape (K,)
        State shares at each respondent's first-wave interview date.
    covariates : tuple of SimulatedCovariate
    groups : SimulatedGroups or None
    period_hr : numpy.ndarray, shape (P, K, K)
        Hazard ratio of every intensity in every period (1 without ``period_effects``).
    response : numpy.ndarray, shape (K,)
        Probability of answering a scheduled wave after joining, given the true
        state at that wave's interview date (1 without ``response``).
    latent : LatentDesign or None
        Hidden generator of a model with ``[phases]`` when the table has
        ``[simulate.latent_rates]`` (:mod:`markov_migration.inputs.simulate_phases`).
    """

    waves: tuple[float, ...]
    jitter: float
    attrition: float
    late_entry: float
    initial: np.ndarray
    covariates: tuple[SimulatedCovariate, ...]
    groups: SimulatedGroups | None
    period_hr: np.ndarray
    response: np.ndarray | None = None
    latent: LatentDesign | None = None

    @property
    def n_waves(self) -> int:
        """Number of waves W."""
        return len(self.waves)


def parse_design(
    spec: ModelSpec,
    *,
    waves: list[float] | tuple[float, ...] | None = None,
    attrition: float | None = None,
) -> SimulationDesign:
    """Validate the model file's ``[simulate]`` table into a design.

    Parameters
    ----------
    spec : ModelSpec
    waves : sequence of float, optional
        Wave dates overriding the table's ``waves`` (time units).
    attrition : float, optional
        Attrition overriding the table's ``attrition``.

    Returns
    -------
    SimulationDesign

    Raises
    ------
    SpecError
        If the table is invalid (the message names the file and line).
    InputError
        If an overriding argument is invalid.
    """
    chk = DesignChecker(spec)
    raw = chk.table(spec.simulation, "[simulate]", "simulate")
    chk.known(raw, DESIGN_KEYS, "[simulate]")
    k = spec.n_states

    if waves is not None:
        wave_list = _check_waves(list(waves), None)
    else:
        wave_list = _check_waves(raw.get("waves", list(DEFAULT_WAVES)), chk)
    jitter = chk.number(raw.get("jitter", 0.0), "[simulate] jitter", "jitter")
    gap = min(b - a for a, b in zip(wave_list, wave_list[1:], strict=False))
    if jitter >= gap / 2:
        raise chk.fail(
            f"[simulate] jitter {jitter:g} must be below half the smallest gap "
            f"between waves ({gap / 2:g}) so that interviews stay in wave order",
            "jitter",
        )
    if attrition is not None:
        ok = isinstance(attrition, int | float) and not isinstance(attrition, bool)
        if not ok or not 0 <= attrition < 1:
            raise InputError(f"attrition must be a probability in [0, 1), got {attrition!r}")
        attrition = float(attrition)
    else:
        attrition = chk.number(
            raw.get("attrition", 0.0), "[simulate] attrition", "attrition", below_one=True
        )
    late_entry = chk.number(
        raw.get("late_entry", 0.0), "[simulate] late_entry", "late_entry", below_one=True
    )

    initial = np.zeros(k)
    if "initial" in raw:
        for name, share in chk.shares(
            raw["initial"], spec.states, "[simulate] initial", "initial"
        ).items():
            initial[spec.index(name)] = share
    else:
        initial[0] = 1.0

    covariates = parse_simulated_covariates(chk, raw.get("covariates", {}))
    groups = parse_simulated_groups(chk, raw.get("groups"), initial)
    period_hr = _parse_period_effects(chk, raw.get("period_effects"))
    response = np.ones(k)
    if "response" in raw:
        table = chk.table(raw["response"], "[simulate] response", "response")
        for name, p in table.items():
            if name not in spec.states:
                raise chk.fail(
                    f"[simulate] response: '{name}' is not a declared state "
                    f"(states: {', '.join(spec.states)})",
                    "response",
                )
            p = chk.number(p, f"[simulate] response {name}", "response")
            if not 0 < p <= 1:
                raise chk.fail(
                    f"[simulate] response {name} must be a probability in (0, 1], got {p:g}",
                    "response",
                )
            response[spec.index(name)] = p
    return SimulationDesign(
        waves=tuple(wave_list),
        jitter=jitter,
        attrition=attrition,
        late_entry=late_entry,
        initial=initial,
        covariates=covariates,
        groups=groups,
        period_hr=period_hr,
        response=response,
        latent=parse_latent(chk, raw),
    )


def _check_waves(value: Any, chk: DesignChecker | None) -> list[float]:
    ok = (
        isinstance(value, list)
        and len(value) >= 2
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
        and all(b > a for a, b in zip(value, value[1:], strict=False))
    )
    if not ok:
        msg = f"waves must be a list of at least two strictly increasing times, got {value!r}"
        if chk is None:
            raise InputError(msg)
        raise chk.fail(f"[simulate] {msg}", "waves")
    return [float(v) for v in value]


def _parse_period_effects(chk: DesignChecker, table: Any) -> np.ndarray:
    spec = chk.spec
    n_periods = len(spec.periods) + 1
    hr = np.ones((n_periods, spec.n_states, spec.n_states))
    if table is None:
        return hr
    where = "[simulate] period_effects"
    if not spec.periods:
        raise chk.fail(f"{where} needs 'periods' (cut points) in the model", "period_effects")
    table = chk.table(table, where, "period_effects")
    for key, ratios in table.items():
        ok = isinstance(ratios, list) and len(ratios) == n_periods
        if not ok:
            raise chk.fail(
                f"{where} '{key}' must list {n_periods} hazard ratios, one per period", key
            )
        values = [
            chk.number(v, f"{where} '{key}' (a hazard ratio)", key, positive=True) for v in ratios
        ]
        for r, s in chk.transitions_of(key, where, key, spec.period_transitions):
            hr[:, r, s] = values
    return hr

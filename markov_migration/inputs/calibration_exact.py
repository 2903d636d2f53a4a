"""Exact expected calibration figures of a model, with or without latent phases.

The figures of :data:`markov_migration.inputs.calibration.FIGURES` are shares a
survey measures between its three waves. Their expected values follow from the
joint distribution of the observed states at the three nominal waves: for every
simulated host ``h`` (``[simulate.groups]``) with its hidden generator ``Q_h``
and first-wave hidden distribution ``pi0_h``,

    ``P(a, b, c) = sum_h sum_{i in a, j in b, l in c} pi0_h[i] P_h(g1)[i, j] P_h(g2)[j, l]``,

with ``P_h(t) = expm(Q_h t)``, ``g1, g2`` the nominal gaps between the waves
and ``i in a`` the hidden states (phases) of observed state ``a``. A plain model
is the case of one phase per state. Attrition and late entry are independent of
the states, so they change sample sizes, not expected shares.
:func:`~markov_migration.inputs.calibration.wave_metrics` evaluates the panel
figures on these ``K**3`` weighted observed triples, so there is no simulation
noise. Model figures (one-year departures, the steady state) are computed on
the hidden generator too: a departure within a year is ``1 - e_1' expm(T) 1``
for the state's phase block ``T`` entered in its first phase.

Examples
--------
>>> from markov_migration.inputs.spec import load_spec
>>> from markov_migration.inputs.calibration_exact import expected_table
>>> table = expected_table(load_spec("models/migration5_phases.toml"))  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.linalg import expm

from markov_migration.inputs.calibration import (
    FIGURES,
    HOST_DEPARTURE,
    hidden_model_metrics,
    host_generator,
    wave_metrics,
)
from markov_migration.inputs.simulate_design import SimulationDesign, parse_design
from markov_migration.inputs.spec import ModelSpec

#: Host hazard ratios ``{(host, (from, to)): hr}`` on observed moves.
Effects = dict[tuple[str, tuple[int, int]], float]


@dataclass(frozen=True)
class HiddenModel:
    """A generator on hidden states with the observed state of each.

    Attributes
    ----------
    q : numpy.ndarray, shape (K_h, K_h)
        Hidden generator of the reference host (per time unit).
    observed : numpy.ndarray of int, shape (K_h,)
        Observed state of each hidden state (``arange(K)`` for a plain model).
    initial : numpy.ndarray, shape (K_h,)
        Hidden state distribution at the first wave.
    """

    q: np.ndarray
    observed: np.ndarray
    initial: np.ndarray

    def hidden_of(self, state: int) -> np.ndarray:
        """Hidden states (phases, in order) of an observed state."""
        return np.flatnonzero(self.observed == state)


def spec_model(spec: ModelSpec, design: SimulationDesign | None = None) -> HiddenModel:
    """The model a file simulates: ``[simulate.latent_rates]`` if given, else ``[rates]``."""
    design = parse_design(spec) if design is None else design
    if design.latent is not None:
        lat = design.latent
        return HiddenModel(lat.q, lat.observed, lat.initial(design.initial))
    return HiddenModel(spec.rate_matrix(), np.arange(spec.n_states), design.initial.copy())


def wave_distribution(
    model: HiddenModel, design: SimulationDesign, effects: Effects | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact joint distribution of the observed states at the first three nominal waves.

    Parameters
    ----------
    model : HiddenModel
    design : SimulationDesign
        Waves and ``[simulate.groups]`` (host shares by first-wave state).
    effects : dict, optional
        Host hazard ratios (default: the fixed ``[simulate.groups] effects``).

    Returns
    -------
    triples : numpy.ndarray of int, shape (K**3, 3)
        Every observed state triple.
    weights : numpy.ndarray, shape (K**3,)
        Their probabilities (sum 1).
    """
    k = int(model.observed.max()) + 1
    onehot = (model.observed[:, None] == np.arange(k)[None, :]).astype(float)
    gaps = np.diff(design.waves)[:2]
    groups = design.groups
    if effects is None:
        effects = dict(groups.effects) if groups is not None else {}
    levels = groups.levels if groups is not None else (None,)
    joint = np.zeros((k, k, k))
    for j, host in enumerate(levels):
        share = np.ones(k) if host is None else groups.shares[:, j]
        qh = host_generator(model.q, model.observed, effects, host)
        p1, p2 = expm(qh * gaps[0]), expm(qh * gaps[1])
        pi0 = model.initial * share[model.observed]
        # P(a, b, c) = sum over the hidden state j at wave 2 (a phase of b) of
        # [observed a at wave 1, hidden j at wave 2] * P2(j, phases of c)
        a_to_hidden = (pi0[:, None] * onehot).T @ p1  # (K, K_h)
        for b in range(k):
            hb = model.hidden_of(b)
            joint[:, b, :] += a_to_hidden[:, hb] @ p2[hb] @ onehot
    triples = np.array(list(itertools.product(range(k), repeat=3)), dtype=np.int64)
    return triples, joint[triples[:, 0], triples[:, 1], triples[:, 2]]


def expected_figures(
    spec: ModelSpec,
    model: HiddenModel | None = None,
    design: SimulationDesign | None = None,
    effects: Effects | None = None,
) -> dict[str, float]:
    """Exact expected value of every figure of :data:`FIGURES` (and host departures).

    Parameters
    ----------
    spec : ModelSpec
    model : HiddenModel, optional
        Default: the model file's own (:func:`spec_model`).
    design : SimulationDesign, optional
        Default: the model file's ``[simulate]`` table.
    effects : dict, optional
        Host hazard ratios (default: the fixed ``[simulate.groups] effects``).

    Returns
    -------
    dict of str to float
        Keyed as :func:`~markov_migration.inputs.calibration.calibration_metrics`.
    """
    design = parse_design(spec) if design is None else design
    model = spec_model(spec, design) if model is None else model
    if effects is None:
        effects = dict(design.groups.effects) if design.groups is not None else {}
    m = wave_metrics(spec, *wave_distribution(model, design, effects))
    levels = design.groups.levels if design.groups is not None else ()
    m.update(hidden_model_metrics(spec, model.q, model.observed, effects, levels))
    return m


def expected_table(spec: ModelSpec, model: HiddenModel | None = None) -> pd.DataFrame:
    """Target, exact expected value, tolerance and pass for every figure of a model file.

    The same rows as :func:`~markov_migration.inputs.calibration.calibration_table`
    with ``expected`` in place of ``simulated``.
    """
    m = expected_figures(spec, model)
    rows = [(f.key, f.figure, f.source, f.target, m.get(f.key, math.nan), f.low, f.high)
            for f in FIGURES]  # fmt: skip
    for host, (state, target, low, high) in HOST_DEPARTURE.items():
        if f"host:{host}" in m:
            figure = f"left {host} ({state}) within a year"
            rows.append((f"host:{host}", figure, "model", target, m[f"host:{host}"], low, high))
    cols = ["key", "figure", "source", "target", "expected", "low", "high"]
    table = pd.DataFrame(rows, columns=cols)
    value = table["expected"].to_numpy(dtype=float)
    table["pass"] = (value >= table["low"].to_numpy()) & (value <= table["high"].to_numpy())
    return table


def expected_returnees(
    spec: ModelSpec,
    model: HiddenModel | None = None,
    *,
    abroad: float = 650_000.0,
    start: float = 2024.5,
    horizons: tuple[float, ...] = (2030.0, 2035.0),
    design: SimulationDesign | None = None,
    effects: Effects | None = None,
) -> pd.DataFrame:
    """Expected returnees of ``abroad`` emigrants from ``start`` on, exactly (no deaths).

    The population is the calibrated one: every host's first-wave distribution
    carried from the first wave to ``start`` with ``expm(Q_h (start - w1))``;
    its states outside home are scaled to ``abroad`` persons, and the home
    states start empty (as the demo's ``project`` from 650,000 still abroad in
    July 2024). For each host, with ``x0`` its persons at ``start`` and ``T``
    the time to a horizon:

    - stock in a home state (and in each of its phases): ``x0 expm(Q_h T)``;
    - expected return events (moves from outside home into home, a phase
      progression is none): ``x0 [int_0^T expm(Q_h s) ds] r``, ``r_i = sum_{j
      home} Q_h[i, j]``, with the integral from the Van Loan block matrix
      ``expm([[Q_h, I], [0, 0]] T)``;
    - ever returned: ``x0 expm(Q_abs T) 1_home`` with home made absorbing.

    Parameters
    ----------
    spec : ModelSpec
    model : HiddenModel, optional
        Default: the file's own (:func:`spec_model`).
    abroad : float
        Persons outside home at ``start``.
    start : float
        Start of the projection (time units, e.g. 2024.5).
    horizons : tuple of float
        Times at which to report (time units).
    design : SimulationDesign, optional
    effects : dict, optional
        Host hazard ratios (default: ``[simulate.groups] effects``).

    Returns
    -------
    pandas.DataFrame
        One row per horizon: ``time``, ``returned`` (stock in home states),
        ``returned_<phase>`` per hidden home state when phased,
        ``cumulative_returns``, ``ever_returned``, ``abroad`` (stock outside home).
    """
    design = parse_design(spec) if design is None else design
    model = spec_model(spec, design) if model is None else model
    groups = design.groups
    if effects is None:
        effects = dict(groups.effects) if groups is not None else {}
    levels = groups.levels if groups is not None else (None,)
    home = np.isin(model.observed, [spec.index(h) for h in spec.home])
    k = model.observed.size
    names = [f"phase_{i + 1}" for i in range(int(home.sum()))] if home.sum() > 1 else []
    x_start, gens = [], []
    for j, host in enumerate(levels):
        share = np.ones(spec.n_states) if host is None else groups.shares[:, j]
        qh = host_generator(model.q, model.observed, effects, host)
        x = (model.initial * share[model.observed]) @ expm(qh * (start - design.waves[0]))
        x_start.append(np.where(home, 0.0, x))
        gens.append(qh)
    scale = abroad / sum(float(x.sum()) for x in x_start)
    rows = []
    for t in horizons:
        tt = t - start
        out = dict.fromkeys(["returned", "cumulative_returns", "ever_returned", "abroad"], 0.0)
        out.update(dict.fromkeys(names, 0.0))
        for x, qh in zip(x_start, gens, strict=True):
            x0 = x * scale
            stock = x0 @ expm(qh * tt)
            out["returned"] += float(stock[home].sum())
            out["abroad"] += float(stock[~home].sum())
            for name, h in zip(names, np.flatnonzero(home), strict=False):
                out[name] += float(stock[h])
            block = np.zeros((2 * k, 2 * k))
            block[:k, :k], block[:k, k:] = qh, np.eye(k)
            integral = expm(block * tt)[:k, k:]
            r = np.where(home, 0.0, qh[:, home].sum(axis=1))
            out["cumulative_returns"] += float(x0 @ integral @ r)
            q_abs = qh.copy()
            q_abs[home] = 0.0
            out["ever_returned"] += float((x0 @ expm(q_abs * tt))[home].sum())
        rows.append({"time": t, **out})
    return pd.DataFrame(rows)

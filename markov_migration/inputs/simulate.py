"""Synthetic panels from a model file with known rates.

The model file's ``[rates]`` table gives the intensities (per time unit) and its
``[simulate]`` table the observation design: wave dates, jitter of interview
dates, attrition, late entry, state-dependent response, the initial state shares and optional simulated
covariates, groups and period effects, validated by
:func:`markov_migration.inputs.simulate_design.parse_design`. :func:`simulate_panel`
draws the design, simulates every respondent's exact path with
:func:`markov_migration.core.simulate.simulate_paths` and returns the long-format
panel the rest of the package reads. See ``docs/simulate.md`` for the table
reference. Every problem in the ``[simulate]`` table raises
:class:`~markov_migration.errors.SpecError` naming the file and line.

Examples
--------
>>> from markov_migration.inputs.spec import parse_spec
>>> from markov_migration.inputs.simulate import simulate_panel
>>> spec = parse_spec('''
... states = ["well", "ill", "dead"]
... [transitions]
... well = ["ill", "dead"]
... ill = ["well", "dead"]
... [rates]
... "well->ill" = 0.2
... "well->dead" = 0.05
... "ill->well" = 0.5
... "ill->dead" = 0.1
... [simulate]
... waves = [0, 1, 2]
... attrition = 0.1
... ''')
>>> panel = simulate_panel(spec, 100, seed=1)
>>> list(panel.columns)
['id', 'time', 'state']
>>> int(panel.groupby("id").size().max())
3
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from markov_migration.core.simulate import SimulatedPaths, simulate_paths
from markov_migration.errors import InputError
from markov_migration.inputs.simulate_design import SimulationDesign, parse_design
from markov_migration.inputs.spec import ModelSpec

#: Interview times and numeric covariates are rounded to this many decimals before
#: simulating, so that a panel written with 6 decimals holds exactly what was simulated.
DECIMALS = 6


@dataclass(frozen=True)
class SimulatedPanel:
    """A simulated panel with the truth behind it (for calibration and recovery tests).

    Attributes
    ----------
    panel : pandas.DataFrame
        Long format, one row per interview: id, time, state (+ covariate and
        group columns), sorted by id and time.
    subjects : pandas.DataFrame
        One row per respondent: id, start_state (name), pattern, and the
        covariate and group columns.
    design : SimulationDesign
    paths : SimulatedPaths
        True paths, simulated to each respondent's last scheduled wave;
        ``paths.observed`` holds the true state at every scheduled interview date,
        also where the respondent was not interviewed. With latent phases
        (``design.latent``) these are hidden states (``design.latent.names``;
        ``design.latent.observed`` maps them to the recorded states).
    interview_times : numpy.ndarray, shape (n, W)
        Scheduled interview date of every respondent at every wave (time units),
        also where the respondent was not interviewed.
    interviewed : numpy.ndarray of bool, shape (n, W)
        Whether the respondent was interviewed at each wave.
    intensities : numpy.ndarray, shape (M, P, K, K)
        Generator of every subject pattern in every period (on the hidden states,
        (M, P, K_h, K_h), with latent phases).
    group_log_hr : numpy.ndarray, shape (L, K, K) or None
        True log hazard ratios of the group levels (fixed and random).
    seed : int
    """

    panel: pd.DataFrame
    subjects: pd.DataFrame
    design: SimulationDesign
    paths: SimulatedPaths
    interview_times: np.ndarray
    interviewed: np.ndarray
    intensities: np.ndarray
    group_log_hr: np.ndarray | None
    seed: int


# -- simulation ---------------------------------------------------------------------
def _base_rates(spec: ModelSpec, rates: Any) -> np.ndarray:
    """Build the generator (K, K) from ``rates`` (None: the model's [rates] table)."""
    if rates is None:
        return spec.rate_matrix()
    k = spec.n_states
    allowed = spec.allowed_matrix()
    if isinstance(rates, Mapping):
        q = np.zeros((k, k))
        for key, value in rates.items():
            if isinstance(key, str):
                m = re.match(r"^\s*(\S+?)\s*->\s*(\S+?)\s*$", key)
                if not m or m.group(1) not in spec.states or m.group(2) not in spec.states:
                    raise InputError(f"rates: '{key}' is not a transition 'from->to' of the model")
                key = (spec.index(m.group(1)), spec.index(m.group(2)))
            q[key] = float(value)
    else:
        q = np.array(rates, dtype=float)
        if q.shape != (k, k):
            raise InputError(
                f"rates must be a ({k}, {k}) generator or a mapping, got shape {q.shape}"
            )
        q = q.copy()
    np.fill_diagonal(q, 0.0)
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise InputError("rates must be finite and >= 0")
    if np.any(q[~allowed] > 0):
        r, s = np.argwhere(q * ~allowed > 0)[0]
        raise InputError(
            f"rates: '{spec.states[r]}->{spec.states[s]}' is not an allowed transition"
        )
    np.fill_diagonal(q, -q.sum(axis=1))
    return q


def _log_hr_matrix(effects: dict, level: str | None, k: int) -> np.ndarray:
    out = np.zeros((k, k))
    for (lev, (r, s)), hr in effects.items():
        if lev == level:
            out[r, s] = math.log(hr)
    return out


def simulate_paths_for_spec(
    spec: ModelSpec,
    n: int,
    *,
    waves: list[float] | tuple[float, ...] | None = None,
    attrition: float | None = None,
    seed: int = 0,
    progress: bool = False,
    rates: Any = None,
    history: bool = True,
) -> SimulatedPanel:
    """Simulate a panel and keep the truth behind it (paths, design, generators).

    Parameters are those of :func:`simulate_panel`, plus ``history`` (keep every
    path's full jump history; needed for :meth:`SimulatedPaths.states_at`).

    Returns
    -------
    SimulatedPanel
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InputError(f"n must be a positive whole number of respondents, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    n, seed = int(n), int(seed)
    design = parse_design(spec, waves=waves, attrition=attrition)
    # A phased model with [simulate.latent_rates] runs on its hidden states (unless
    # ``rates`` overrides the model's intensities: then it is simulated as a plain model).
    latent = design.latent if rates is None else None
    q0 = latent.q if latent is not None else _base_rates(spec, rates)
    k = spec.n_states
    n_waves = design.n_waves
    ss_design, ss_effects, ss_paths = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(ss_design)

    # Who is where at the first wave, and their attributes.
    start = rng.choice(k, size=n, p=design.initial)
    pattern = np.zeros(n, dtype=np.int64)
    radix = 1
    factors: list[np.ndarray] = []  # (levels, K, K) log hazard ratios per categorical factor
    columns: dict[str, Any] = {}
    x_cols, x_log_hr = [], []
    for cov in design.covariates:
        if cov.kind == "categorical":
            code = rng.choice(len(cov.levels), size=n, p=cov.shares)
            pattern += radix * code
            radix *= len(cov.levels)
            factors.append(np.stack([_log_hr_matrix(cov.effects, v, k) for v in cov.levels]))
            columns[cov.column] = np.asarray(cov.levels, dtype=object)[code]
        else:
            value = np.round(rng.normal(cov.mean, cov.sd, size=n), DECIMALS)
            x_cols.append(value - cov.center)
            x_log_hr.append(_log_hr_matrix(cov.effects, None, k))
            columns[cov.column] = value
    group_log_hr = None
    if design.groups is not None:
        grp = design.groups
        cum = np.cumsum(grp.shares, axis=1)[start]
        u = rng.random(n)[:, None]
        code = np.minimum((u >= cum).sum(axis=1), len(grp.levels) - 1)
        group_log_hr = np.stack([_log_hr_matrix(grp.effects, v, k) for v in grp.levels])
        if grp.sd is not None:
            eff_rng = np.random.default_rng(ss_effects)
            draws = eff_rng.normal(0.0, grp.sd, size=(len(grp.levels), len(grp.transitions)))
            for j, (r, s) in enumerate(grp.transitions):
                group_log_hr[:, r, s] = draws[:, j]
        pattern += radix * code
        radix *= len(grp.levels)
        factors.append(group_log_hr)
        columns[grp.column] = np.asarray(grp.levels, dtype=object)[code]

    # Generators of every pattern (mixed radix over the factors) in every period.
    log_hr = np.zeros((radix, k, k))
    stride = 1
    for f in factors:
        idx = (np.arange(radix) // stride) % f.shape[0]
        log_hr += f[idx]
        stride *= f.shape[0]
    period_hr = design.period_hr
    if latent is not None:  # hazard ratios of observed moves act on their hidden moves
        log_hr, period_hr = latent.expand(log_hr, 0.0), latent.expand(period_hr, 1.0)
        x_log_hr = [latent.expand(m, 0.0) for m in x_log_hr]
    off = ~np.eye(q0.shape[0], dtype=bool)
    q = np.where(off, q0, 0.0)[None, None] * np.exp(log_hr)[:, None] * period_hr[None]
    q[..., ~off] = 0.0
    diag = np.arange(q0.shape[0])
    q[..., diag, diag] = -q.sum(axis=-1)

    # Interview dates, late entry and attrition.
    waves_arr = np.asarray(design.waves)
    times = waves_arr[None, :] + rng.uniform(-design.jitter, design.jitter, size=(n, n_waves))
    times = np.round(times, DECIMALS)
    first = (rng.random(n) < design.late_entry).astype(np.int64)
    # Waves answered after joining: the wave of dropping out is geometric, P(stays >= j + 1)
    # = (1 - attrition) ** j.
    if design.attrition > 0:
        stays = rng.geometric(design.attrition, size=n)
    else:
        stays = np.full(n, n_waves)
    w_idx = np.arange(n_waves)[None, :]
    interviewed = (w_idx >= first[:, None]) & (w_idx < (first + stays)[:, None])

    path_start = start
    if latent is not None:  # the phase at the first wave, given the observed start state
        p_hidden = (latent.observed[None, :] == start[:, None]) * latent.split[None, :]
        cum = np.cumsum(p_hidden / p_hidden.sum(axis=1, keepdims=True), axis=1)
        path_start = np.minimum((rng.random(n)[:, None] >= cum).sum(axis=1), cum.shape[1] - 1)

    # Every path runs to the last scheduled wave and is looked at on every scheduled
    # interview date, so the truth behind an unanswered wave is known too.
    if progress:
        paths = _with_progress(
            q, pattern, path_start, times[:, 0], times, spec, x_cols, x_log_hr, ss_paths, history, n
        )
    else:
        paths = _run(
            q,
            pattern,
            path_start,
            times[:, 0],
            times,
            spec,
            x_cols,
            x_log_hr,
            ss_paths,
            history,
            None,
        )
    observed_states = paths.observed if latent is None else latent.observed[paths.observed]
    if design.response is not None and np.any(design.response < 1):
        # State-dependent nonresponse: each scheduled wave after joining is answered
        # with the probability of the true state on its interview date.
        answers = rng.random((n, n_waves)) < design.response[observed_states]
        interviewed &= answers | (w_idx == first[:, None])

    ids = np.arange(1, n + 1)
    rows_i, rows_w = np.nonzero(interviewed)
    state_idx = observed_states[rows_i, rows_w]
    cols = spec.data
    if cols.state_codes:
        code_of = {name: code for code, name in cols.state_codes.items()}
        state_values = np.array([code_of[s] for s in spec.states], dtype=np.int64)[state_idx]
    else:
        state_values = np.asarray(spec.states, dtype=object)[state_idx]
    data = {cols.id: ids[rows_i], cols.time: times[rows_i, rows_w], cols.state: state_values}
    for name, values in columns.items():
        data[name] = values[rows_i]
    panel = pd.DataFrame(data)
    subjects = pd.DataFrame({
        cols.id: ids, "start_state": np.asarray(spec.states, dtype=object)[start],
        "pattern": pattern, **columns,
    })  # fmt: skip
    return SimulatedPanel(
        panel=panel,
        subjects=subjects,
        design=design,
        paths=paths,
        interview_times=times,
        interviewed=interviewed,
        intensities=q,
        group_log_hr=group_log_hr,
        seed=seed,
    )


def _run(q, pattern, start, t0, times, spec, x_cols, x_log_hr, ss_paths, history, callback):
    kwargs: dict[str, Any] = {}
    if x_cols:
        kwargs["covariate_values"] = np.column_stack(x_cols)
        kwargs["log_hazard_ratios"] = np.stack(x_log_hr)
    return simulate_paths(
        q, pattern, start, t0, times, period_cuts=np.asarray(spec.periods, dtype=float),
        seed=ss_paths, history=history, progress=callback, **kwargs,
    )  # fmt: skip


def _with_progress(q, pattern, start, t0, times, spec, x_cols, x_log_hr, ss_paths, history, n):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    total = n * (2 if history else 1)
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("simulating paths", total=total)
        return _run(
            q,
            pattern,
            start,
            t0,
            times,
            spec,
            x_cols,
            x_log_hr,
            ss_paths,
            history,
            lambda done: bar.advance(task, done),
        )


def simulate_panel(
    spec: ModelSpec,
    n: int,
    *,
    waves: list[float] | tuple[float, ...] | None = None,
    attrition: float | None = None,
    seed: int = 0,
    progress: bool = False,
    rates: Any = None,
) -> pd.DataFrame:
    """Simulate a long-format panel from a model file with known rates.

    Parameters
    ----------
    spec : ModelSpec
        Model with a ``[rates]`` table (unless ``rates`` is given) and optionally
        a ``[simulate]`` table (observation design, see ``docs/simulate.md``).
    n : int
        Number of respondents (everyone is interviewed at least once).
    waves : sequence of float, optional
        Wave dates (time units), overriding ``[simulate] waves``.
    attrition : float, optional
        Probability of dropping out between consecutive waves, overriding
        ``[simulate] attrition``.
    seed : int
        Random seed (>= 0); the same seed gives an identical panel.
    progress : bool
        Show a progress bar (rich) while simulating.
    rates : mapping or array_like, optional
        Intensities overriding ``[rates]``: ``{"from->to": rate}`` or a (K, K) generator.

    Returns
    -------
    pandas.DataFrame
        One row per interview, sorted by respondent and time, with the model's
        id, time and state columns (``[data]`` names; state names, or integer
        codes when the model declares ``state_codes``) and one column per
        simulated covariate and group.

    Raises
    ------
    SpecError
        If the model has no ``[rates]`` table or its ``[simulate]`` table is invalid.
    InputError
        If an argument is invalid.
    """
    return simulate_paths_for_spec(
        spec,
        n,
        waves=waves,
        attrition=attrition,
        seed=seed,
        progress=progress,
        rates=rates,
        history=False,
    ).panel

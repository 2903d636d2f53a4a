"""From aggregated counts to the arrays the likelihood reads, and the model's design.

Layer 2: plain NumPy. The continuous-time likelihood sees a stack of generators
(one per distinct covariate pattern x group x period; one in the plain model), the
distinct (generator, duration) *pieces* whose transition matrices it needs, and
the aggregated rows, each pointing (CSR) at the ordered pieces its interval is
made of (one piece unless it crosses a period cut point).

Log-linear structure
--------------------
Every generator ``m`` has the log-intensities

    log q_m[j] = log_rate[j]
                 + sum_e x[m, e] * log_hr[e] * [transition of e == j]
                 + group_effect[group_m, j']          (j' = j among the group transitions)

for the allowed transitions ``j``. ``log_rate`` is the *baseline*: every
categorical covariate at its reference level, every numeric covariate at its
centre (its mean over the observed transitions), group effect 0 (the median
group) and the first period. Each *hazard effect* ``e`` (an entry of the fit
file's ``covariate_effect`` dim) is the log hazard ratio of one covariate level
(or of one unit of a numeric covariate, or of one period against the first) on
one transition; ``x[m, e]`` is the level indicator (0/1), the centred numeric
value in the covariate's own unit, or the period indicator. Effects that the
model file shares between transitions are one free parameter repeated over
several entries.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from markov_migration.errors import InputError
from markov_migration.inputs.aggregate import (
    AggregatedData,
    aggregation_keys,
    period_pieces,
)
from markov_migration.inputs.effects import (
    PERIOD_COVARIATE,
    HazardEffect,
    check_design,
    covariate_levels,
    hazard_effects,
)
from markov_migration.inputs.likelihood_arrays import LikelihoodData, pack_arrays
from markov_migration.inputs.period_exposure import period_labels
from markov_migration.inputs.spec import ModelSpec


@dataclass(frozen=True)
class ModelDesign:
    """Everything the continuous-time model needs besides its parameters.

    Attributes
    ----------
    spec : ModelSpec
    levels : dict of str to tuple of str
        Levels of every categorical covariate, the reference first.
    centers, scales : dict of str to float
        Mean and sd of every numeric covariate over the observed transitions
        (weighted by count). Baseline intensities are at the centre; the sampler
        sees the covariate divided by its scale, hazard ratios are reported per
        unit.
    effects : tuple of HazardEffect
    parameter_labels : tuple of str
        Labels of the free log hazard ratios (shared effects once).
    parameter_scale : ndarray (n_parameters,)
        Scale of each free parameter's covariate (1 for levels and periods).
    parameter_sd : ndarray (n_parameters,)
        Prior sd of each log hazard ratio (per unit of the covariate).
    group_levels : tuple of str
        Groups in the data, sorted (empty without ``[groups]``).
    group_transitions : tuple of int
        Indices into ``spec.transitions`` of the transitions with group effects.
    period_labels : tuple of str
        ``"[-inf, 2022.72)"``, ``"[2022.72, 2024)"``, ... (one label without periods).
    likelihood : LikelihoodData
        The likelihood's rows, pieces and generator indices.
    generator_x : ndarray (M, n_effects)
        Covariate values of each likelihood generator (see module docstring).
    generator_group : ndarray of int64 (M,)
        Group index of each likelihood generator (0 without groups).
    generator_period : ndarray of int64 (M,)
        Period index of each likelihood generator.
    grid_dims : tuple of str
        Dims of the reported generators ``Q``: a subset of
        ``("pattern", "group", "period")``, in that order.
    grid_coords : dict of str to list
        Labels of the grid dims.
    grid_x : ndarray (n_grid, n_effects)
        Covariate values of the reported generators (numeric covariates at 0,
        their centre), in C order of ``grid_dims``.
    grid_group : ndarray of int64 (n_grid,)
    pattern_levels : list of dict
        For every pattern, the level of each categorical covariate.
    """

    spec: ModelSpec
    levels: dict[str, tuple[str, ...]]
    centers: dict[str, float]
    scales: dict[str, float]
    effects: tuple[HazardEffect, ...]
    parameter_labels: tuple[str, ...]
    parameter_scale: np.ndarray
    parameter_sd: np.ndarray
    group_levels: tuple[str, ...]
    group_transitions: tuple[int, ...]
    period_labels: tuple[str, ...]
    likelihood: LikelihoodData
    generator_x: np.ndarray
    generator_group: np.ndarray
    generator_period: np.ndarray
    grid_dims: tuple[str, ...]
    grid_coords: dict[str, list]
    grid_x: np.ndarray
    grid_group: np.ndarray
    pattern_levels: list[dict[str, str]] = field(default_factory=list)

    @property
    def n_generators(self) -> int:
        """Number M of distinct generators the likelihood evaluates."""
        return self.likelihood.n_generators

    @property
    def has_effects(self) -> bool:
        """True when the model has covariate or period effects."""
        return bool(self.effects)

    @property
    def has_groups(self) -> bool:
        """True when the model has group random effects."""
        return bool(self.group_levels)

    @property
    def effect_parameter(self) -> np.ndarray:
        """Free-parameter index of every effect (n_effects,)."""
        return np.array([e.parameter for e in self.effects], dtype=np.int64)

    @property
    def effect_transition(self) -> np.ndarray:
        """One-hot (n_effects, T): the transition each effect multiplies."""
        out = np.zeros((len(self.effects), len(self.spec.transitions)))
        for i, e in enumerate(self.effects):
            out[i, self.spec.transitions.index(e.transition)] = 1.0
        return out

    @property
    def group_transition(self) -> np.ndarray:
        """One-hot (n_group_transitions, T): the transition of each group effect."""
        out = np.zeros((len(self.group_transitions), len(self.spec.transitions)))
        out[np.arange(len(self.group_transitions)), list(self.group_transitions)] = 1.0
        return out

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Sizes of ``grid_dims``."""
        return tuple(len(self.grid_coords[d]) for d in self.grid_dims)

    def coords(self) -> dict[str, list]:
        """Model coordinates of the effects, groups and grid (besides the states)."""
        out: dict[str, list] = dict(self.grid_coords)
        if self.effects:
            out["covariate_effect"] = [e.label for e in self.effects]
            out["hr_parameter"] = list(self.parameter_labels)
        if self.group_levels:
            out["group"] = list(self.group_levels)
            out["group_transition"] = [
                self.spec.transition_labels[j] for j in self.group_transitions
            ]
        return out

    def packed_data(self) -> tuple[dict[str, np.ndarray], tuple[tuple[str, str, int], ...]]:
        """:meth:`data_arrays` packed into the PyMC model's two ``pm.Data`` vectors.

        See :func:`markov_migration.inputs.likelihood_arrays.pack_arrays`.
        """
        return pack_arrays(self.data_arrays())

    def data_arrays(self) -> dict[str, np.ndarray]:
        """Every data array of the likelihood and effects, by name (they change with data)."""
        names = ("piece_q", "piece_t", "row_ptr", "row_piece", "row_from", "row_to", "row_count")
        out = dict(zip(names, self.likelihood.arrays(), strict=True))
        if self.effects:
            out["generator_x"] = self.generator_x
            out["hr_scale"] = self.parameter_scale
        if self.group_levels:
            out["generator_group"] = self.generator_group
        return out

    def log_rates(
        self,
        log_rate: np.ndarray,
        log_hr: np.ndarray | None = None,
        group_effect: np.ndarray | None = None,
        *,
        x: np.ndarray | None = None,
        group: np.ndarray | None = None,
    ) -> np.ndarray:
        """Log-intensities of generators from parameter draws (NumPy).

        Parameters
        ----------
        log_rate : ndarray (..., T)
            Baseline log-intensities.
        log_hr : ndarray (..., n_effects), optional
            Log hazard ratio of each effect (per unit).
        group_effect : ndarray (..., n_groups, n_group_transitions), optional
        x : ndarray (M, n_effects), optional
            Covariate values of the generators (default: the likelihood's).
        group : ndarray of int (M,), optional
            Group index of each generator (default: the likelihood's); -1 means
            no group effect.

        Returns
        -------
        ndarray (..., M, T)
        """
        x = self.generator_x if x is None else x
        group = self.generator_group if group is None else np.asarray(group)
        out = np.asarray(log_rate)[..., None, :] + np.zeros((x.shape[0], 1))
        if self.effects:
            if log_hr is None:
                raise ValueError("the model has covariate effects: log_hr is required")
            out = out + (x * np.asarray(log_hr)[..., None, :]) @ self.effect_transition
        if self.group_levels:
            if group_effect is None:
                raise ValueError("the model has groups: group_effect is required")
            u = np.take(np.asarray(group_effect), np.maximum(group, 0), axis=-2)
            u = np.where((group >= 0)[:, None], u, 0.0)
            out = out + u @ self.group_transition
        return out


def effect_values(
    spec: ModelSpec,
    effects: tuple[HazardEffect, ...],
    centers: dict[str, float],
    periods: tuple[str, ...],
    values: dict[str, Any],
    period: int = 0,
) -> np.ndarray:
    """The row ``x`` (n_effects,) of a generator (see the module docstring).

    ``values``: each covariate's value (categorical level as a string, numeric in
    its own unit); ``period``: index into ``periods``.
    """
    by_name = {c.name: c for c in spec.covariates}
    x = np.zeros(len(effects))
    for i, e in enumerate(effects):
        if e.covariate == PERIOD_COVARIATE:
            x[i] = float(periods[period] == e.level)
        elif by_name[e.covariate].kind == "numeric":
            x[i] = float(values[e.covariate]) - centers[e.covariate]
        else:
            x[i] = float(values[e.covariate] == e.level)
    return x


def model_design(spec: ModelSpec, agg: AggregatedData) -> ModelDesign:
    """The design of a continuous-time model for aggregated data.

    Parameters
    ----------
    spec : ModelSpec
    agg : AggregatedData
        Aggregated by :func:`markov_migration.inputs.aggregate.aggregate` (or a counts
        table) for this model: it must have the model's key columns.

    Returns
    -------
    ModelDesign

    Raises
    ------
    InputError
        If the data lack a key column, or a period has no observed time.
    """
    check_design(spec)
    t = agg.table
    for c in aggregation_keys(spec):
        if c not in t.columns:
            raise InputError(f"aggregated data have no '{c}' column: aggregate them for this model")
    levels = covariate_levels(spec, t)
    periods = period_labels(spec)
    effects, labels, owner, sds = hazard_effects(spec, levels, periods)
    count = t["count"].to_numpy(dtype=float)
    centers, scales = {}, {}
    for cov in spec.covariates:
        if cov.kind == "numeric":
            v = t[cov.column].to_numpy(dtype=float)
            mean = float(np.average(v, weights=count))
            sd = float(np.sqrt(np.average((v - mean) ** 2, weights=count)))
            centers[cov.name], scales[cov.name] = mean, (sd if sd > 0 else 1.0)
    parameter_scale = np.array([scales.get(name, 1.0) for name in owner], dtype=float)

    # Subjects: distinct covariate values and group of the rows.
    subject_cols = [c.column for c in spec.covariates]
    if spec.groups is not None:
        subject_cols.append(spec.groups.column)
    subject_cols = list(dict.fromkeys(subject_cols))
    if subject_cols:
        subject = t.groupby(subject_cols, sort=True, observed=True).ngroup().to_numpy()
    else:
        subject = np.zeros(len(t), dtype=np.int64)
    # One row of each subject, in subject order.
    first = t.iloc[np.unique(subject, return_index=True)[1]]
    n_subjects = len(first)

    group_levels: tuple[str, ...] = ()
    group_transitions: tuple[int, ...] = ()
    subject_group = np.zeros(n_subjects, dtype=np.int64)
    if spec.groups is not None:
        group_levels = tuple(sorted(set(t[spec.groups.column].astype(str))))
        group_transitions = tuple(spec.transitions.index(p) for p in spec.groups.transitions)
        subject_group = np.searchsorted(
            np.array(group_levels, dtype=object), first[spec.groups.column].astype(str).to_numpy()
        ).astype(np.int64)

    def covariate_x(values: dict[str, Any], period: int) -> np.ndarray:
        return effect_values(spec, effects, centers, periods, values, period)

    subject_values = [
        {c.name: row[c.column] for c in spec.covariates}
        for row in first[subject_cols].to_dict("records")
    ] if subject_cols else [{}]  # fmt: skip

    # Pieces of every row, and the generators (subject x period) they use.
    row_of, piece_period, piece_dur = period_pieces(t, spec)
    n_periods = len(periods)
    gen_key = subject[row_of] * n_periods + piece_period
    gen_keys, piece_gen = np.unique(gen_key, return_inverse=True)
    gen_subject, gen_period = gen_keys // n_periods, gen_keys % n_periods
    generator_x = np.array(
        [covariate_x(subject_values[s], p) for s, p in zip(gen_subject, gen_period, strict=True)]
    ).reshape(len(gen_keys), len(effects))
    exposure = np.zeros(n_periods)
    np.add.at(exposure, piece_period, piece_dur * count[row_of])
    if spec.periods and np.any(exposure <= 0):
        empty = int(np.flatnonzero(exposure <= 0)[0])
        raise InputError(
            f"period {periods[empty]} has no observed time: no interval of the data overlaps "
            "it (move or remove its cut points)",
            path=spec.path,
        )
    pieces = pd.DataFrame({"g": piece_gen, "t": piece_dur})
    uniq = pieces.drop_duplicates().sort_values(["g", "t"]).reset_index(drop=True)
    piece_index = pd.MultiIndex.from_frame(uniq).get_indexer(pd.MultiIndex.from_frame(pieces))
    row_ptr = np.zeros(len(t) + 1, dtype=np.int64)
    np.add.at(row_ptr, row_of + 1, 1)
    likelihood = LikelihoodData(
        piece_q=uniq["g"].to_numpy(dtype=np.int64),
        piece_t=uniq["t"].to_numpy(dtype=np.float64),
        row_ptr=np.cumsum(row_ptr),
        row_piece=piece_index.astype(np.int64),
        row_from=t["from"].to_numpy(dtype=np.int64),
        row_to=t["to"].to_numpy(dtype=np.int64),
        row_count=count.astype(np.float64),
        n_generators=len(gen_keys),
    )

    # The reported grid: every categorical pattern x group x period.
    categorical = [c for c in spec.covariates if c.kind == "categorical"]
    patterns = [dict(zip([c.name for c in categorical], combo, strict=True))
                for combo in itertools.product(*(levels[c.name] for c in categorical))]  # fmt: skip
    grid_dims: list[str] = []
    grid_coords: dict[str, list] = {}
    if categorical:
        grid_dims.append("pattern")
        grid_coords["pattern"] = [",".join(f"{k}={v}" for k, v in p.items()) for p in patterns]
    if group_levels:
        grid_dims.append("group")
        grid_coords["group"] = list(group_levels)
    if spec.periods:
        grid_dims.append("period")
        grid_coords["period"] = list(periods)
    centre_values = {name: centers[name] for name in centers}
    grid_x, grid_group = [], []
    for pattern in patterns:
        for g in range(max(1, len(group_levels))):
            for p in range(n_periods):
                grid_x.append(covariate_x({**centre_values, **pattern}, p))
                grid_group.append(g)
    return ModelDesign(
        spec=spec,
        levels=levels,
        centers=centers,
        scales=scales,
        effects=effects,
        parameter_labels=labels,
        parameter_scale=parameter_scale,
        parameter_sd=sds,
        group_levels=group_levels,
        group_transitions=group_transitions,
        period_labels=periods,
        likelihood=likelihood,
        generator_x=generator_x,
        generator_group=subject_group[gen_subject].astype(np.int64),
        generator_period=gen_period.astype(np.int64),
        grid_dims=tuple(grid_dims),
        grid_coords=grid_coords,
        grid_x=np.array(grid_x).reshape(len(grid_x), len(effects)),
        grid_group=np.array(grid_group, dtype=np.int64),
        pattern_levels=patterns,
    )


def likelihood_data(agg: AggregatedData, spec: ModelSpec | None = None) -> LikelihoodData:
    """Build the likelihood arrays.

    Parameters
    ----------
    agg : AggregatedData
    spec : ModelSpec, optional
        With a model that has covariates, groups or periods, the arrays of its
        :func:`model_design` (M generators, pieces split at cut points);
        without, one generator and one piece per distinct interval.
    """
    if spec is not None and (spec.covariates or spec.groups is not None or spec.periods):
        return model_design(spec, agg).likelihood
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

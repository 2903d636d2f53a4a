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
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from markov_migration.errors import InputError
from markov_migration.inputs.aggregate import (
    LEAD_TIME,
    START_PERIOD,
    AggregatedData,
    aggregation_keys,
)
from markov_migration.inputs.spec import ModelSpec
from markov_migration.inputs.spec_tables import DEFAULT_COVARIATE_SD

#: Covariate name of the period effects in ``hazard_ratio`` (a period is a
#: categorical covariate whose reference is the first period; as R msm's ``pci``).
PERIOD_COVARIATE = "period"
#: Names a covariate may not have (dims and coordinates of fit files).
RESERVED_NAMES = (
    "chain", "draw", "state", "from_state", "to_state", "transition", "obs", "pattern",
    "group", "group_transition", "period", "covariate_effect", "hr_parameter",
)  # fmt: skip


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


@dataclass(frozen=True)
class HazardEffect:
    """One log hazard ratio acting on one transition (an entry of ``covariate_effect``).

    Attributes
    ----------
    covariate : str
        Covariate name, or :data:`PERIOD_COVARIATE` for a period effect.
    level : str
        Categorical level (or period label) compared with the reference; ``""``
        for a numeric covariate (the effect of one unit).
    transition : (int, int)
        The transition (from, to) it multiplies.
    parameter : int
        Index of its free parameter (entries of a shared effect have the same).
    label : str
        E.g. ``"reason[politics]: abroad->returned"``, ``"age: abroad->returned"``.
    """

    covariate: str
    level: str
    transition: tuple[int, int]
    parameter: int
    label: str


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

        See :func:`pack_arrays`.
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


def generators_from_rates(rates: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Generators (..., K, K) from intensities (..., T) of ``spec.transitions`` (NumPy)."""
    rates = np.asarray(rates, dtype=float)
    k = spec.n_states
    frm = np.array([r for r, _ in spec.transitions], dtype=np.int64)
    to = np.array([s for _, s in spec.transitions], dtype=np.int64)
    q = np.zeros((*rates.shape[:-1], k, k))
    q[..., frm, to] = rates
    q[..., np.arange(k), np.arange(k)] = -q.sum(axis=-1)
    return q


def period_labels(spec: ModelSpec) -> tuple[str, ...]:
    """Labels of the periods: ``"[-inf, 2022.72)"``, ..., ``"[2024, inf)"``."""
    edges = [-math.inf, *spec.periods, math.inf]
    return tuple(f"[{a:g}, {b:g})" for a, b in zip(edges, edges[1:], strict=False))


def check_design(spec: ModelSpec) -> None:
    """Refuse covariate/group/period combinations the model cannot fit, before any data.

    Raises
    ------
    InputError
        For covariates, groups or periods in a discrete-time model, a covariate
        or group column used twice or clashing with a key column, or a reserved name.
    """
    used = [s for s, on in (("[covariates]", spec.covariates), ("[groups]", spec.groups),
                            ("periods", spec.periods)) if on]  # fmt: skip
    if spec.time == "discrete" and used:
        raise InputError(
            f"model uses {', '.join(used)}: discrete-time models support none of covariates, "
            'groups and periods (use time = "continuous")',
            path=spec.path,
        )
    columns: dict[str, str] = {}
    taken = {"from", "to", "interval", "count", START_PERIOD, LEAD_TIME,
             spec.data.id, spec.data.time, spec.data.state}  # fmt: skip
    if spec.data.weight:
        taken.add(spec.data.weight)
    for cov in spec.covariates:
        if cov.name in RESERVED_NAMES:
            raise InputError(
                f"[covariates.{cov.name}]: '{cov.name}' is a reserved name; rename the table "
                "(keep the panel column with column = ...)",
                path=spec.path,
            )
        if cov.column in columns or cov.column in taken:
            raise InputError(
                f"[covariates.{cov.name}]: column '{cov.column}' is already used "
                f"({columns.get(cov.column, 'by the panel layout')})",
                path=spec.path,
            )
        columns[cov.column] = f"by covariate '{cov.name}'"
    if spec.groups is not None:
        c = spec.groups.column
        if c in columns or c in taken:
            raise InputError(
                f"[groups]: column '{c}' is already used ({columns.get(c, 'by the panel layout')})",
                path=spec.path,
            )


def _levels(spec: ModelSpec, table: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    out = {}
    for cov in spec.covariates:
        if cov.kind != "categorical":
            continue
        present = sorted(set(table[cov.column].astype(str)))
        declared = list(cov.levels) if cov.levels is not None else present
        unknown = sorted(set(present) - set(declared))
        if unknown:
            raise InputError(f"'{unknown[0]}' is not a level of covariate '{cov.name}'")
        reference = cov.reference or sorted(declared)[0]
        out[cov.name] = (reference, *[v for v in declared if v != reference])
    return out


def _effects(spec: ModelSpec, levels: dict[str, tuple[str, ...]], periods: tuple[str, ...]):
    """Hazard effects, free-parameter labels, the covariate of each parameter, prior sds."""
    effects: list[HazardEffect] = []
    labels: list[str] = []
    owner: list[str] = []
    sds: list[float] = []
    names = spec.states

    def tr(pair):
        return f"{names[pair[0]]}->{names[pair[1]]}"

    def add(covariate: str, level: str, transitions, shared, prior_sd: float):
        tag = f"{covariate}[{level}]" if level else covariate
        blocks = list(shared)
        in_shared = {p for block in blocks for p in block}
        blocks += [(p,) for p in transitions if p not in in_shared]
        # Parameters in the order of the transitions they first act on.
        blocks.sort(key=lambda b: min(transitions.index(p) for p in b))
        param_of = {}
        for block in blocks:
            param_of.update({p: len(labels) for p in block})
            labels.append(f"{tag}: {'|'.join(tr(p) for p in block)}")
            owner.append(covariate)
            sds.append(prior_sd)
        for p in transitions:
            effects.append(HazardEffect(covariate, level, p, param_of[p], f"{tag}: {tr(p)}"))

    for cov in spec.covariates:
        if cov.kind == "numeric":
            add(cov.name, "", cov.transitions, cov.shared, cov.prior_sd)
        else:
            for level in levels[cov.name][1:]:
                add(cov.name, level, cov.transitions, cov.shared, cov.prior_sd)
    if spec.periods:
        for level in periods[1:]:
            add(PERIOD_COVARIATE, level, spec.period_transitions, (), DEFAULT_COVARIATE_SD)
    return tuple(effects), tuple(labels), owner, np.array(sds, dtype=float)


def _pieces(table: pd.DataFrame, spec: ModelSpec):
    """Expand rows into (row, period, duration) pieces in time order."""
    n = len(table)
    interval = table["interval"].to_numpy(dtype=float)
    if not spec.periods:
        idx = np.arange(n)
        return idx, np.zeros(n, dtype=np.int64), interval
    cuts = np.asarray(spec.periods, dtype=float)
    length = np.append(np.diff(cuts), np.inf)  # length of period p + 1 (after cut p)
    period = table[START_PERIOD].to_numpy(dtype=np.int64)
    lead = np.minimum(table[LEAD_TIME].to_numpy(dtype=float), interval)
    rows, per, dur, order = [np.arange(n)], [period], [lead], [np.zeros(n, dtype=np.int64)]
    remaining = interval - lead
    # Pieces shorter than this are rounding noise of the lead time (days are rounded).
    eps = 1e-9 * max(1.0, float(np.max(interval)))
    p, step = period.copy(), 1
    while True:
        alive = (remaining > eps) & (p < len(cuts))
        if not alive.any():
            break
        i = np.flatnonzero(alive)
        d = np.minimum(remaining[i], length[p[i]])
        rows.append(i)
        per.append(p[i] + 1)
        dur.append(d)
        order.append(np.full(i.size, step))
        remaining[i] -= d
        p[i] += 1
        step += 1
    rows_a, per_a, dur_a, order_a = map(np.concatenate, (rows, per, dur, order))
    sort = np.lexsort((order_a, rows_a))
    return rows_a[sort], per_a[sort], dur_a[sort]


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
    levels = _levels(spec, t)
    periods = period_labels(spec)
    effects, labels, owner, sds = _effects(spec, levels, periods)
    count = t["count"].to_numpy(dtype=float)
    centers, scales = {}, {}
    for cov in spec.covariates:
        if cov.kind == "numeric":
            v = t[cov.column].to_numpy(dtype=float)
            mean = float(np.average(v, weights=count))
            sd = float(np.sqrt(np.average((v - mean) ** 2, weights=count)))
            centers[cov.name], scales[cov.name] = mean, (sd if sd > 0 else 1.0)
    by_name = {c.name: c for c in spec.covariates}
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
        x = np.zeros(len(effects))
        for i, e in enumerate(effects):
            if e.covariate == PERIOD_COVARIATE:
                x[i] = float(periods[period] == e.level)
            elif by_name[e.covariate].kind == "numeric":
                x[i] = float(values[e.covariate]) - centers[e.covariate]
            else:
                x[i] = float(values[e.covariate] == e.level)
        return x

    subject_values = [
        {c.name: row[c.column] for c in spec.covariates}
        for row in first[subject_cols].to_dict("records")
    ] if subject_cols else [{}]  # fmt: skip

    # Pieces of every row, and the generators (subject x period) they use.
    row_of, piece_period, piece_dur = _pieces(t, spec)
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


#: Names of the two packed data vectors of the PyMC model (``pm.Data``).
PACKED_NAMES = ("data_int", "data_float")


def pack_arrays(
    arrays: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], tuple[tuple[str, str, int], ...]]:
    """Pack named 1-d and 2-d arrays into one int64 and one float64 vector.

    nutpie compiles a wrapper per shared data array of a PyMC model (about 0.3 s
    each, never cached), so the model carries two packed vectors instead of
    seven to ten arrays, and unpacks them symbolically (views, no copies).

    Parameters
    ----------
    arrays : dict of str to ndarray
        Integer arrays go to the int64 vector, the others to the float64 one.

    Returns
    -------
    packed : dict
        ``{"data_int": int64 vector, "data_float": float64 vector}``. The int
        vector starts with a header of three numbers per array, in the order
        of ``layout``: the offset of the array in its vector, its first and
        its second dimension (1 for a vector).
    layout : tuple of (name, kind, ndim)
        ``kind`` is ``"i"`` or ``"f"``; it depends only on the model structure.

    Examples
    --------
    >>> packed, layout = pack_arrays({"a": np.array([1, 2]), "x": np.ones((2, 3))})
    >>> layout
    (('a', 'i', 1), ('x', 'f', 2))
    >>> packed["data_int"].tolist()
    [6, 2, 1, 0, 2, 3, 1, 2]
    """
    layout = []
    header: list[int] = []
    parts: dict[str, list[np.ndarray]] = {"i": [], "f": []}
    offsets = {"i": 3 * len(arrays), "f": 0}
    for name, value in arrays.items():
        a = np.asarray(value)
        if a.ndim not in (1, 2):
            raise ValueError(f"cannot pack '{name}' with ndim {a.ndim}")
        kind = "i" if np.issubdtype(a.dtype, np.integer) else "f"
        d0, d1 = (a.shape[0], 1) if a.ndim == 1 else a.shape
        header += [offsets[kind], d0, d1]
        parts[kind].append(a.reshape(-1).astype(np.int64 if kind == "i" else np.float64))
        offsets[kind] += a.size
        layout.append((name, kind, a.ndim))
    ints = np.concatenate([np.asarray(header, dtype=np.int64), *parts["i"]])
    floats = np.concatenate([np.zeros(0), *parts["f"]])
    return {"data_int": ints, "data_float": floats}, tuple(layout)


def unpack_arrays(
    packed: dict[str, Any], layout: tuple[tuple[str, str, int], ...]
) -> dict[str, Any]:
    """Inverse of :func:`pack_arrays`; works on NumPy arrays and PyTensor tensors alike."""
    ints, floats = packed["data_int"], packed["data_float"]
    out = {}
    for i, (name, kind, ndim) in enumerate(layout):
        off, d0, d1 = ints[3 * i], ints[3 * i + 1], ints[3 * i + 2]
        flat = (ints if kind == "i" else floats)[off : off + d0 * d1]
        out[name] = flat if ndim == 1 else flat.reshape((d0, d1))
    return out

"""Which generator each record of a latent-state model uses (covariates and groups).

Layer 2 (NumPy/pandas). A latent (forward-algorithm) fit has one generator per
distinct covariate pattern and group among the records that start an interval:
as in the pure-panel model (and R msm), the interval between two records uses
the covariates of the earlier one. The hazard effects, their centres and the
reported grid are those of :func:`markov_migration.inputs.design.model_design`
for the fit's aggregated pairs, so the fit file reads back like a pure-panel fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from markov_migration.errors import InputError
from markov_migration.inputs.design import ModelDesign, effect_values


@dataclass(frozen=True)
class RecordGenerators:
    """Covariate pattern of every record of a panel, and the generators of the patterns.

    Generator ``pattern * n_periods + period`` is the pattern's in that period
    (:meth:`generator_index`); the forward algorithm only decomposes those it uses.

    Attributes
    ----------
    record_pattern : ndarray of int64 (n_records,)
        Pattern (distinct covariate values and group) of each record (panel row order).
    generator_x : ndarray (M, n_effects)
        Covariate and period values of each generator (see
        :mod:`markov_migration.inputs.design`), ``M = n_patterns * n_periods``.
    generator_group : ndarray of int64 (M,)
        Group index of each generator (0 without groups).
    n_periods : int
        Number of periods (1 without ``periods``).
    """

    record_pattern: np.ndarray
    generator_x: np.ndarray
    generator_group: np.ndarray
    n_periods: int = 1

    @property
    def n_generators(self) -> int:
        """Number M of generators."""
        return int(self.generator_x.shape[0])

    def generator_index(self, pattern: np.ndarray, period: np.ndarray | None = None) -> np.ndarray:
        """Generator of records with these patterns, starting an interval in these periods."""
        pattern = np.asarray(pattern, dtype=np.int64)
        if period is None:
            return pattern * self.n_periods
        return pattern * self.n_periods + np.asarray(period, dtype=np.int64)


def record_generators(design: ModelDesign, data: pd.DataFrame) -> RecordGenerators:
    """Generator of every record from its covariate and group columns.

    Parameters
    ----------
    design : ModelDesign
        The model's design (levels, centres, effects, groups).
    data : pandas.DataFrame
        The validated panel's records (``Panel.data``): ``id`` and the model's
        covariate and group columns, sorted by respondent and time.

    Returns
    -------
    RecordGenerators

    Raises
    ------
    InputError
        If a record that starts an interval has a categorical level or a group
        that the design does not know (it occurs only next to censored records).
    """
    spec = design.spec
    n = len(data)
    n_periods = len(design.period_labels)
    cols = [c.column for c in spec.covariates]
    if spec.groups is not None:
        cols.append(spec.groups.column)
    cols = list(dict.fromkeys(cols))

    def x_of(values) -> np.ndarray:  # (n_periods, n_effects)
        args = (spec, design.effects, design.centers, design.period_labels, values)
        return np.array([effect_values(*args, p) for p in range(n_periods)]).reshape(
            n_periods, len(design.effects)
        )

    if not cols or n == 0:
        return RecordGenerators(
            np.zeros(n, np.int64), x_of({}), np.zeros(n_periods, np.int64), n_periods
        )
    ids = data["id"].to_numpy()
    starts = np.r_[ids[1:] == ids[:-1], False]  # the record starts an interval
    keys = data[cols].reset_index(drop=True)
    subject = keys.groupby(cols, sort=True, observed=True).ngroup().to_numpy()
    first = keys.iloc[np.unique(subject, return_index=True)[1]].to_dict("records")
    groups = np.array(design.group_levels, dtype=object)
    xs, gs = [], []
    for j, row in enumerate(first):
        used = starts[subject == j].any()
        values = {c.name: row[c.column] for c in spec.covariates}
        for c in spec.covariates:
            if (
                used
                and c.kind == "categorical"
                and str(values[c.name]) not in design.levels[c.name]
            ):
                raise InputError(
                    f"covariate '{c.name}' level '{values[c.name]}' occurs only in intervals "
                    "with censored records: declare its levels in [covariates]",
                    path=spec.path,
                )
            if c.kind == "categorical":
                values[c.name] = str(values[c.name])
        xs.append(x_of(values).ravel())
        g = 0
        if spec.groups is not None:
            hit = np.flatnonzero(groups == str(row[spec.groups.column]))
            if used and not hit.size:
                raise InputError(
                    f"group '{row[spec.groups.column]}' occurs only in intervals with censored "
                    "records: its effect is not identified",
                    path=spec.path,
                )
            g = int(hit[0]) if hit.size else 0
        gs.append(g)
    x = np.array(xs, dtype=np.float64).reshape(len(first), n_periods * len(design.effects))
    g = np.array(gs, dtype=np.int64)
    # patterns that differ only in columns without effects share a generator
    combined = np.column_stack([x, g.astype(np.float64)])
    uniq, pattern_of = np.unique(combined, axis=0, return_inverse=True)
    return RecordGenerators(
        record_pattern=pattern_of.reshape(-1)[subject].astype(np.int64),
        generator_x=np.ascontiguousarray(uniq[:, :-1]).reshape(
            len(uniq) * n_periods, len(design.effects)
        ),
        generator_group=np.repeat(uniq[:, -1].astype(np.int64), n_periods),
        n_periods=n_periods,
    )


def has_covariates(spec) -> bool:
    """Whether a latent model has covariates, groups or periods (a generator per pattern)."""
    return bool(spec.covariates) or spec.groups is not None or bool(spec.periods)


def latent_design(spec, panel, agg=None):
    """The design and record generators of a latent model with covariates or groups.

    Parameters
    ----------
    spec : ModelSpec
    panel : Panel
    agg : AggregatedData, optional
        ``aggregate(panel, spec)``; its pairs of recorded states (censored
        records left out) give the levels, groups and numeric centres, as in
        the fit file's ``constant_data``.

    Returns
    -------
    (ModelDesign, RecordGenerators) or (None, None) without covariates and groups.
    """
    if not has_covariates(spec):
        return None, None
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.design import model_design

    design = model_design(
        spec, recorded_pairs(spec, aggregate(panel, spec) if agg is None else agg)
    )
    return design, record_generators(design, panel.data)


def recorded_pairs(spec, agg):
    """``agg`` with only the pairs of two recorded states (the fit file's observed data)."""
    k = spec.n_states
    table = agg.table
    exact_pairs = table[(table["from"] < k) & (table["to"] < k)].reset_index(drop=True)
    return type(agg)(**{**agg.__dict__, "table": exact_pairs, "states": spec.states})


def cut_records(ids, times, cuts) -> tuple[np.ndarray, np.ndarray]:
    """Records to add at the period cut points strictly inside respondents' intervals.

    A latent model's interval that crosses a cut point is split there by a record
    that says nothing about the state (an emission row of ones), so that each
    piece has the generator of its period.

    Parameters
    ----------
    ids, times : array_like, shape (n,)
        Records sorted by respondent and time.
    cuts : sequence of float
        Period cut points (time units).

    Returns
    -------
    after : ndarray of int64
        The record each new one follows (its respondent, weight and covariates).
    at : ndarray of float64
        The time of each new record (a cut point).
    """
    ids = np.asarray(ids)
    times = np.asarray(times, dtype=np.float64)
    same = np.flatnonzero(ids[1:] == ids[:-1])
    after, at = [], []
    for c in cuts:
        inside = same[(times[same] < c) & (times[same + 1] > c)]
        after.append(inside)
        at.append(np.full(inside.size, float(c)))
    if not after:
        return np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(after).astype(np.int64), np.concatenate(at)


def carry_forward(ids, times, values, new_ids, new_times) -> np.ndarray:
    """Values of new records: the respondent's latest original record at or before each.

    Records before a respondent's first original record take its value.

    Parameters
    ----------
    ids, times, values : array_like, shape (n,)
        The original records and a value of each (e.g. a generator index).
    new_ids, new_times : array_like, shape (m,)
        The new records (e.g. with missed scheduled interviews added).

    Returns
    -------
    ndarray, shape (m,)
    """
    orig = pd.DataFrame({"id": np.asarray(ids), "time": np.asarray(times, float),
                         "value": np.asarray(values)}).sort_values("time", kind="stable")  # fmt: skip
    new = pd.DataFrame({"id": np.asarray(new_ids), "time": np.asarray(new_times, float),
                        "_at": np.arange(len(new_ids))}).sort_values("time", kind="stable")  # fmt: skip
    out = pd.merge_asof(new, orig, on="time", by="id", direction="backward")
    if out["value"].isna().any():
        ahead = pd.merge_asof(new, orig, on="time", by="id", direction="forward")
        out["value"] = out["value"].fillna(ahead["value"])
    out = out.sort_values("_at")
    return out["value"].to_numpy().astype(np.asarray(values).dtype)


__all__ = [
    "RecordGenerators",
    "carry_forward",
    "cut_records",
    "has_covariates",
    "latent_design",
    "record_generators",
    "recorded_pairs",
]

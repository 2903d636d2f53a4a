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
    """Generator of every record of a panel.

    Attributes
    ----------
    record_generator : ndarray of int64 (n_records,)
        Index of the generator of each record (panel row order).
    generator_x : ndarray (M, n_effects)
        Covariate values of each generator (see :mod:`markov_migration.inputs.design`).
    generator_group : ndarray of int64 (M,)
        Group index of each generator (0 without groups).
    """

    record_generator: np.ndarray
    generator_x: np.ndarray
    generator_group: np.ndarray

    @property
    def n_generators(self) -> int:
        """Number M of distinct generators."""
        return int(self.generator_x.shape[0])


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
    cols = [c.column for c in spec.covariates]
    if spec.groups is not None:
        cols.append(spec.groups.column)
    cols = list(dict.fromkeys(cols))
    if not cols or n == 0:
        return RecordGenerators(
            np.zeros(n, np.int64), np.zeros((1, len(design.effects))), np.zeros(1, np.int64)
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
        xs.append(effect_values(spec, design.effects, design.centers, design.period_labels, values))
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
    x = np.array(xs, dtype=np.float64).reshape(len(first), len(design.effects))
    g = np.array(gs, dtype=np.int64)
    # patterns that differ only in columns without effects share a generator
    combined = np.column_stack([x, g.astype(np.float64)])
    uniq, generator_of = np.unique(combined, axis=0, return_inverse=True)
    return RecordGenerators(
        record_generator=generator_of.reshape(-1)[subject].astype(np.int64),
        generator_x=np.ascontiguousarray(uniq[:, :-1]),
        generator_group=uniq[:, -1].astype(np.int64),
    )


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


__all__ = ["RecordGenerators", "carry_forward", "record_generators"]

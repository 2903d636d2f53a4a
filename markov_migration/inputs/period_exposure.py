"""Periods of a model with ``periods``: their labels, and the exposure observed in each.

Layer 2 (inputs). :func:`period_labels` names the periods between the cut points;
:func:`period_exposure` sums the observation pairs and the person-time that fall in
each, and :func:`little_exposure` words the warning for periods whose intensities the
data barely inform (``validate`` and ``check``). Split from
:mod:`markov_migration.inputs.design`, whose design takes the labels from here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from markov_migration.inputs.aggregate import START_PERIOD, period_pieces
from markov_migration.inputs.spec import ModelSpec

__all__ = ["little_exposure", "period_exposure", "period_labels"]


def period_labels(spec: ModelSpec) -> tuple[str, ...]:
    """Labels of the periods: ``"[-inf, 2022.72)"``, ..., ``"[2024, inf)"``."""
    edges = [-math.inf, *spec.periods, math.inf]
    return tuple(f"[{a:g}, {b:g})" for a, b in zip(edges, edges[1:], strict=False))


def period_exposure(spec: ModelSpec, table: pd.DataFrame) -> pd.DataFrame:
    """Exposure of every period in aggregated data (for the little-exposure warning).

    Parameters
    ----------
    spec : ModelSpec
        A model with periods.
    table : pandas.DataFrame
        Aggregated rows with ``interval``, ``count`` and the period keys
        (``AggregatedData.table`` or a fit's ``observed_data``).

    Returns
    -------
    pandas.DataFrame
        One row per period: ``period`` (label), ``pairs`` (observation pairs
        starting in it) and ``exposure`` (time between observations falling in
        it, summed over pairs: person-time units, e.g. person-years).
    """
    labels = period_labels(spec)
    count = table["count"].to_numpy(dtype=float)
    pairs = np.zeros(len(labels))
    exposure = np.zeros(len(labels))
    if spec.periods:
        np.add.at(pairs, table[START_PERIOD].to_numpy(dtype=np.int64), count)
    else:
        pairs[0] = count.sum()
    row_of, piece_period, piece_dur = period_pieces(table, spec)
    np.add.at(exposure, piece_period, piece_dur * count[row_of])
    return pd.DataFrame({"period": labels, "pairs": pairs, "exposure": exposure})


def little_exposure(spec: ModelSpec, table: pd.DataFrame) -> list[str]:
    """Warning lines for periods with little exposure (``PERIOD_MIN_EXPOSURE``).

    A period is flagged when the time observed in it, summed over respondents,
    is below :data:`markov_migration.defaults.PERIOD_MIN_EXPOSURE` person-years:
    its intensities are then mostly set by the period prior.
    """
    from markov_migration.defaults import PERIOD_MIN_EXPOSURE
    from markov_migration.inputs.spec import DAY_IN_UNIT

    if not spec.periods or spec.time != "continuous":
        return []
    years_per_unit = 1.0 / (365.25 * DAY_IN_UNIT[spec.time_unit])
    out = []
    for row in period_exposure(spec, table).itertuples(index=False):
        years = row.exposure * years_per_unit
        if years < PERIOD_MIN_EXPOSURE:
            out.append(
                f"period {row.period} has little exposure: {years:.1f} person-years observed "
                f"in it (under {PERIOD_MIN_EXPOSURE:g}) and {row.pairs:g} observation pairs "
                "starting in it; its intensities are mostly set by the prior"
            )
    return out

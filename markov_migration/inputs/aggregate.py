"""Sufficient statistics: counts of transitions per (interval, from, to, keys).

Aggregation counts consecutive observation pairs of a respondent by
(interval, from, to, covariate pattern, group[, start period, lead time]), with
intervals rounded to a resolution (one day by default). The fitted likelihood
then costs as many transition-matrix evaluations as there are distinct
intervals, not respondents. An aggregated-counts table (columns ``from``,
``to``, ``interval``, ``count`` plus any covariates) is read into the same
:class:`AggregatedData`.

Every problem raises :class:`~markov_migration.errors.PanelError` naming the
file, the 1-based data row and the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from markov_migration.errors import PanelError
from markov_migration.inputs.columns import (
    COUNT_COLUMNS,
    file_sha256,
    is_counts_table,
    model_columns,
    parse_model_columns,
    parse_state,
    read_table,
)
from markov_migration.inputs.panel import Panel, reachable, validate_panel
from markov_migration.inputs.spec import ModelSpec

#: Key columns of aggregated rows of a model with periods (see :func:`aggregation_keys`).
START_PERIOD, LEAD_TIME = "start_period", "lead_time"
#: Column of a counts table giving the start time of each interval (models with periods).
START_COLUMN = "start"


@dataclass
class AggregatedData:
    """Sufficient statistics of a panel: counts of transitions per interval.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per distinct (from, to, interval[, key columns]) with columns
        ``from`` and ``to`` (int state indices), ``interval`` (time units,
        rounded to ``resolution``), ``count`` (float: weighted count of
        transitions) and any key columns (covariates, group).
    states : tuple of str
    resolution : float
        Rounding resolution of the intervals (time units).
    source : str
        What it was made from (a panel file path, or a counts file path).
    sha256 : str
        SHA-256 of the input file.
    n_respondents : int or None
        Respondents contributing (None for a counts table).
    weighted : bool
        True when counts carry survey weights (a pseudo-likelihood).
    n_absorbed : float
        Pairs that start in an absorbing state (and so stay there): they carry
        no information (log P = 0 for every Q) and are left out of ``table``.
    """

    table: pd.DataFrame
    states: tuple[str, ...]
    resolution: float
    source: str
    sha256: str
    n_respondents: int | None = None
    weighted: bool = False
    n_absorbed: float = 0.0

    @property
    def intervals(self) -> np.ndarray:
        """Distinct intervals (time units), sorted."""
        return np.unique(self.table["interval"].to_numpy())

    @property
    def n_transitions(self) -> float:
        """Total (weighted) number of observed transitions."""
        return float(self.table["count"].sum())


def aggregation_keys(spec: ModelSpec) -> list[str]:
    """Columns besides (from, to, interval) that aggregated rows are keyed on.

    The covariate and group columns, and for a model with periods the start
    period of the interval (:data:`START_PERIOD`) and the time spent in it
    (:data:`LEAD_TIME`): with the interval they fix every piece of an interval
    that crosses cut points, so aggregation keeps the exact piecewise likelihood.
    """
    keys = model_columns(spec)
    if spec.periods:
        keys += [START_PERIOD, LEAD_TIME]
    return keys


def period_of(times: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Index of the period each time falls in (a time on a cut point starts the new period)."""
    return np.searchsorted(np.asarray(spec.periods, dtype=float), times, side="right")


def period_keys(
    start: np.ndarray, ticks: np.ndarray, spec: ModelSpec, res: float
) -> tuple[np.ndarray, np.ndarray]:
    """Start period and time spent in it of intervals starting at ``start``.

    Parameters
    ----------
    start : ndarray
        Start time of each interval (time units).
    ticks : ndarray
        Interval lengths in multiples of the resolution ``res``.
    spec : ModelSpec
    res : float
        Resolution (time units).

    Returns
    -------
    start_period : ndarray of int64
        Period the interval starts in. An interval starting less than half a
        resolution before a cut point starts in the next period.
    lead_time : ndarray of float64
        Time spent in the start period, rounded to the resolution and at most
        the interval (equal to it when no cut point is crossed).
    """
    cuts = np.asarray(spec.periods, dtype=float)
    start = np.asarray(start, dtype=float)
    ticks = np.asarray(ticks, dtype=float)
    period = period_of(start, spec)
    lead = np.full(start.shape, np.inf)
    for _ in range(len(cuts) + 1):
        inside = period < len(cuts)
        next_cut = cuts[np.minimum(period, len(cuts) - 1)]
        lead = np.where(inside, np.round((next_cut - start) / res), np.inf)
        at_cut = inside & (lead <= 0)
        if not at_cut.any():
            break
        period = period + at_cut
    lead = np.minimum(lead, ticks)
    return period.astype(np.int64), lead * res


def _drop_absorbed(pairs: pd.DataFrame, spec: ModelSpec, weight: str = "weight"):
    """Remove pairs starting in an absorbing state; return them counted (weighted)."""
    absorbing = np.array([spec.index(s) for s in spec.absorbing], dtype=np.int64)
    stuck = np.isin(pairs["from"].to_numpy(), absorbing)
    return pairs[~stuck], float(pairs[weight].to_numpy()[stuck].sum())


def aggregate(panel: Panel, spec: ModelSpec, resolution: float | None = None) -> AggregatedData:
    """Count consecutive observation pairs by (interval, from, to, covariates, group).

    Parameters
    ----------
    panel : Panel
    spec : ModelSpec
    resolution : float, optional
        Intervals are rounded to a multiple of this (time units); default the
        model's (one day). It removes floating-point noise without merging
        gaps that really differ by a day or more.

    Returns
    -------
    AggregatedData
    """
    res = spec.resolution if resolution is None else float(resolution)
    p, keys, n_absorbed = _keyed_pairs(panel, spec, res)
    with np.errstate(over="ignore"):  # huge weights overflow: refused by check_fittable
        grouped = p.groupby(keys, sort=True, observed=True)["weight"].sum()
    table = grouped.rename("count").reset_index()
    table = table[[*COUNT_COLUMNS, *keys[3:]]]
    weighted = not np.all(p["weight"].to_numpy() == 1.0)
    return AggregatedData(
        table=table,
        states=spec.states,
        resolution=res,
        source=panel.path,
        sha256=panel.sha256,
        n_respondents=panel.n_respondents,
        weighted=weighted,
        n_absorbed=n_absorbed,
    )


def pair_rows(
    panel: Panel, spec: ModelSpec, agg: AggregatedData
) -> tuple[pd.DataFrame, np.ndarray]:
    """The aggregated row of every consecutive observation pair that ``agg`` counts.

    Parameters
    ----------
    panel : Panel
    spec : ModelSpec
    agg : AggregatedData
        ``aggregate(panel, spec)`` (same resolution).

    Returns
    -------
    pairs : pandas.DataFrame
        The pairs in panel order (``id, t0, t1, from, to``), those out of
        absorbing states left out as in :func:`aggregate`.
    rows : ndarray of int64
        Index into ``agg.table`` of each pair's row.
    """
    p, keys, _ = _keyed_pairs(panel, spec, agg.resolution)
    index = agg.table[keys].assign(_row=np.arange(len(agg.table)))
    rows = p[keys].merge(index, on=keys, how="left", sort=False)["_row"]
    if rows.isna().any():
        raise PanelError("the panel does not reproduce the aggregated data", path=panel.path)
    return p[["id", "t0", "t1", "from", "to"]].reset_index(drop=True), rows.to_numpy(np.int64)


def _keyed_pairs(panel: Panel, spec: ModelSpec, res: float):
    """Pairs with their aggregation keys; (pairs, keys, weight out of absorbing states)."""
    p = panel.pairs()
    ticks = np.round((p["t1"].to_numpy() - p["t0"].to_numpy()) / res)
    if (ticks < 1).any():
        j = int(np.flatnonzero(ticks < 1)[0])
        raise PanelError(
            f"respondent '{p['id'].iloc[j]}' has a gap shorter than the resolution {res:g} (a zero gap)",
            path=panel.path,
            row=int(p["row"].iloc[j]),
        )
    p["interval"] = ticks * res
    if spec.periods:
        p[START_PERIOD], p[LEAD_TIME] = period_keys(p["t0"].to_numpy(), ticks, spec, res)
    p, n_absorbed = _drop_absorbed(p, spec)
    if spec.observation.censored:
        # Pairs with a censored record (codes >= K) are not state pairs; a latent
        # fit reads them from the panel (inference.latent), the counts leave them out.
        k = spec.n_states
        p = p[(p["from"].to_numpy() < k) & (p["to"].to_numpy() < k)]
    return p, ["from", "to", "interval", *aggregation_keys(spec)], n_absorbed


def load_counts(
    path: str | Path, spec: ModelSpec, df: pd.DataFrame | None = None
) -> AggregatedData:
    """Load an aggregated-counts table (``from,to,interval,count`` [+ covariates]).

    States are names (or integer codes when the model declares them); intervals
    are in time units and are rounded to the model's resolution; counts are
    non-negative numbers.
    """
    path = str(path)
    if df is None:
        df = read_table(path)
    for c in [*COUNT_COLUMNS, *model_columns(spec)]:
        if c not in df.columns:
            raise PanelError(
                f"missing column '{c}' (columns: {', '.join(map(str, df.columns))})", path=path
            )
    out = pd.DataFrame(
        {
            "from": parse_state(df["from"], spec, path, "from"),
            "to": parse_state(df["to"], spec, path, "to"),
        }
    )
    for c in ("interval", "count"):
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        positive = c == "interval"
        bad = np.flatnonzero(~np.isfinite(v) | ((v <= 0) if positive else (v < 0)))
        if bad.size:
            i = int(bad[0])
            need = "a positive number" if positive else "a non-negative number"
            raw = df[c].iloc[i]
            msg = f"missing {c}" if pd.isna(raw) else f"{c} '{raw}' must be {need}"
            raise PanelError(msg, path=path, row=i + 1, column=c)
        out[c] = v
    res = spec.resolution
    ticks = np.round(out["interval"].to_numpy() / res)
    if (ticks < 1).any():
        i = int(np.flatnonzero(ticks < 1)[0])
        raise PanelError(
            f"interval shorter than the resolution {res:g}", path=path, row=i + 1, column="interval"
        )
    out["interval"] = ticks * res
    for c, values in parse_model_columns(df, spec, path).items():
        out[c] = values
    if spec.periods:
        if START_COLUMN not in df.columns:
            raise PanelError(
                f"the model has periods: a counts table needs a '{START_COLUMN}' column "
                "(the time at the start of each interval) to place intervals in periods",
                path=path,
            )
        start = pd.to_numeric(df[START_COLUMN], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(start))
        if bad.size:
            i = int(bad[0])
            raw = df[START_COLUMN].iloc[i]
            msg = (
                f"missing {START_COLUMN}" if pd.isna(raw)
                else f"{START_COLUMN} '{raw}' is not a number"
            )  # fmt: skip
            raise PanelError(msg, path=path, row=i + 1, column=START_COLUMN)
        out[START_PERIOD], out[LEAD_TIME] = period_keys(start, ticks, spec, res)
    reach = reachable(spec)
    bad = np.flatnonzero(
        ~reach[out["from"].to_numpy(), out["to"].to_numpy()] & (out["count"].to_numpy() > 0)
    )
    if bad.size:
        i = int(bad[0])
        a, b = spec.states[out["from"].iloc[i]], spec.states[out["to"].iloc[i]]
        raise PanelError(
            f"transition {a}->{b} is impossible under the model", path=path, row=i + 1, column="to"
        )
    out, n_absorbed = _drop_absorbed(out, spec, weight="count")
    keys = ["from", "to", "interval", *aggregation_keys(spec)]
    table = out.groupby(keys, sort=True, observed=True)["count"].sum().reset_index()
    table = table[table["count"] > 0][[*COUNT_COLUMNS, *keys[3:]]].reset_index(drop=True)
    if table.empty:
        raise PanelError("all counts are zero: nothing to fit", path=path)
    return AggregatedData(table, spec.states, res, path, file_sha256(path), None, False, n_absorbed)


def load_data(path: str | Path, spec: ModelSpec) -> tuple[Panel | None, AggregatedData]:
    """Load a panel or a counts table and aggregate it.

    Returns
    -------
    panel : Panel or None
        The validated panel (None for a counts table).
    aggregated : AggregatedData
    """
    df = read_table(path)
    if is_counts_table(df) and spec.data.id not in df.columns:
        panel, agg = None, load_counts(path, spec, df)
    else:
        panel = validate_panel(df, spec, path=str(path), sha256=file_sha256(path))
        agg = aggregate(panel, spec)
    check_fittable(spec, agg)
    return panel, agg


def min_moves(spec: ModelSpec) -> np.ndarray:
    """Fewest allowed transitions from each state to each other (K, K); ``inf`` if never.

    The diagonal is 0 (staying needs no move).
    """
    k = spec.n_states
    allowed = spec.allowed_matrix()
    moves = np.full((k, k), np.inf)
    for r in range(k):
        moves[r, r], frontier, n = 0, [r], 0
        while frontier:
            n += 1
            nxt = [s for f in frontier for s in np.flatnonzero(allowed[f]) if moves[r, s] == np.inf]
            for s in nxt:
                moves[r, s] = n
            frontier = sorted(set(nxt))
    return moves


def check_fittable(spec: ModelSpec, agg: AggregatedData) -> None:
    """Every check ``fit`` makes of the data before sampling (``validate`` runs it too).

    - the (weighted) counts are finite, also in total (weights of 1e308 overflow);
    - in discrete time every observed pair can happen in the number of steps between
      its observations (a pair observed n steps apart has likelihood ``(P^n)[from, to]``,
      zero when ``to`` needs more than n moves from ``from``);
    - covariates, groups and periods: the model design can be built (every period has
      observed time, every key column is present).

    Raises
    ------
    PanelError or InputError
        Naming the file and the first problem.
    """
    count = agg.table["count"].to_numpy(dtype=float)
    if not np.isfinite(count).all() or not np.isfinite(count.sum()):
        raise PanelError(
            "the weighted number of transitions is beyond floating point (weights too large?): "
            "rescale the weights",
            path=agg.source,
        )
    if spec.time == "discrete":
        t = agg.table
        steps = np.round(t["interval"].to_numpy() / agg.resolution).astype(np.int64)
        need = min_moves(spec)[t["from"].to_numpy(), t["to"].to_numpy()]
        bad = np.flatnonzero(need > steps)
        if bad.size:
            i = int(bad[0])
            a, b = spec.states[t["from"].iloc[i]], spec.states[t["to"].iloc[i]]
            n = int(steps[i])
            steps_text = "1 step" if n == 1 else f"{n} steps"
            raise PanelError(
                f"{a}->{b} observed {steps_text} apart ({count[i]:g} transitions) needs at least "
                f"{need[i]:g} moves under the model: impossible in discrete time ({bad.size} such "
                f"row(s)); allow {a}->{b} in the model file or fit in continuous time",
                path=agg.source,
            )
        return
    if spec.periods:
        _check_period_exposure(spec, agg)


def _check_period_exposure(spec: ModelSpec, agg: AggregatedData) -> None:
    """Every period overlaps some observed interval (else its effect has no data).

    The same rule as :func:`markov_migration.inputs.design.model_design` (which
    ``fit`` builds), from the start period, lead time and length of each row.
    """
    t = agg.table
    rows, per, dur = period_pieces(t, spec)
    exposure = np.zeros(len(spec.periods) + 1)
    np.add.at(exposure, per, dur * t["count"].to_numpy(dtype=float)[rows])
    if np.any(exposure <= 0):
        k = int(np.flatnonzero(exposure <= 0)[0])
        edges = [-np.inf, *spec.periods, np.inf]
        raise PanelError(
            f"period [{edges[k]:g}, {edges[k + 1]:g}) has no observed time: no interval of the "
            "data overlaps it (move or remove its cut points)",
            path=agg.source,
        )


def period_pieces(table: pd.DataFrame, spec: ModelSpec):
    """Expand aggregated rows into (row, period, duration) pieces in time order.

    Each row's interval starts in period ``START_PERIOD`` for ``LEAD_TIME`` and then
    runs through the following periods; shared by the model design (the pieces of
    every row's transition matrix) and the exposure check of :func:`check_fittable`.
    """
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

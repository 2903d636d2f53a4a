"""Panel data: load a long-format panel and validate it against a model.

A panel file is long format, one row per respondent per observation, with
columns ``id``, ``time`` and ``state`` (names can be remapped in the model
file's ``[data]`` table), optional covariate and group columns and an optional
weight column. Reading the file and parsing its columns is in
:mod:`markov_migration.inputs.columns`; aggregating a validated panel to
sufficient statistics (and reading aggregated-counts tables) in
:mod:`markov_migration.inputs.aggregate`.

Every problem raises :class:`~markov_migration.errors.PanelError` naming the
file, the 1-based data row (the header is not counted) and the column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from markov_migration.errors import PanelError
from markov_migration.inputs.columns import (
    OBSTYPE_COLUMN,
    file_sha256,
    is_counts_table,
    model_columns,
    parse_model_columns,
    parse_obstype,
    parse_state,
    parse_time,
    read_table,
    record_names,
)
from markov_migration.inputs.obstype import PANEL_OBSTYPE, check_obstype
from markov_migration.inputs.spec import ModelSpec

#: Largest |time| / resolution that can be rounded exactly in float64.
_MAX_TICKS = 2.0**52
#: Column of :attr:`Panel.data` holding each respondent's primary sampling unit (text),
#: present when the model file names one (``[data] cluster = "COLUMN"``).
CLUSTER_COLUMN = "_cluster"


@dataclass
class Panel:
    """A validated long-format panel.

    Attributes
    ----------
    data : pandas.DataFrame
        Sorted by respondent and time, with columns ``id``, ``time`` (float,
        time units), ``state`` (int index into ``states``), ``weight`` (float,
        1 when the file has none), ``row`` (1-based row in the file), the
        respondent's primary sampling unit :data:`CLUSTER_COLUMN` (text) when the
        model file names a ``[data] cluster`` column, ``obstype`` (int, msm's
        observation type, :mod:`markov_migration.inputs.obstype`) when some
        record is an exact transition or entry time, and any
        covariate and group columns the model uses. Respondents with a single
        observation are removed (kept with ``[nonresponse]``: their missed
        waves are observations).
    states : tuple of str
    path : str
    sha256 : str
        SHA-256 of the file's bytes.
    n_rows : int
        Data rows in the file.
    n_single : int
        Respondents dropped because they were observed once.
    notes : list of str
        What was done to the data (sorted, duplicates removed, ...).
    """

    data: pd.DataFrame
    states: tuple[str, ...]
    path: str
    sha256: str
    n_rows: int
    n_single: int = 0
    notes: list[str] = field(default_factory=list)
    _pairs: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    _n_respondents: int | None = field(default=None, repr=False, compare=False)

    @property
    def n_respondents(self) -> int:
        """Respondents with at least two observations."""
        if self._n_respondents is None:
            self._n_respondents = int(self.data["id"].nunique())
        return self._n_respondents

    def pairs(self) -> pd.DataFrame:
        """Consecutive observation pairs: from, to, t0, t1, id, weight, covariates.

        Computed once per panel (``data`` is not to be changed after validation);
        each call returns a copy.
        """
        if self._pairs is None:
            d = self.data
            ids = d["id"].to_numpy()
            i0 = np.flatnonzero(ids[1:] == ids[:-1])
            i1 = i0 + 1

            def col(name: str, index: np.ndarray) -> np.ndarray:
                return d[name].to_numpy()[index]

            out = pd.DataFrame(
                {
                    "id": ids[i0],
                    "from": col("state", i0),
                    "to": col("state", i1),
                    "t0": col("time", i0),
                    "t1": col("time", i1),
                    "weight": col("weight", i0),
                    "row": col("row", i1),
                }
            )
            # Covariates are taken from the first observation of each interval (as in msm).
            for name in d.columns:
                if name not in ("id", "time", "state", "weight", "row", PANEL_OBSTYPE):
                    out[name] = d[name].iloc[i0].reset_index(drop=True)
            self._pairs = out
        return self._pairs.copy()

    def state_table(self) -> pd.DataFrame:
        """Observed transition counts between consecutive observations (from x to)."""
        p = self.pairs()
        table = pd.crosstab(
            pd.Categorical.from_codes(p["from"], self.states),
            pd.Categorical.from_codes(p["to"], self.states),
            dropna=False,
        )
        table.index.name, table.columns.name = "from", "to"
        return table


def reachable(spec: ModelSpec) -> np.ndarray:
    """Boolean (K, K): whether state s can be observed after state r over some interval.

    Staying is always possible; otherwise s must be reachable from r through the
    allowed transitions (a transitive closure).
    """
    reach = spec.allowed_matrix() | np.eye(spec.n_states, dtype=bool)
    for k in range(spec.n_states):
        reach |= reach[:, [k]] & reach[[k], :]
    return reach


def load_panel(path: str | Path, spec: ModelSpec) -> Panel:
    """Load and validate a long-format panel file against a model.

    Parameters
    ----------
    path : str or Path
        CSV or Parquet file.
    spec : ModelSpec
        The model: states, column names, state codes.

    Returns
    -------
    Panel

    Raises
    ------
    PanelError
        On any problem, naming the file, row and column.
    """
    path = str(path)
    df = read_table(path)
    if is_counts_table(df) and spec.data.id not in df.columns:
        raise PanelError(
            "is an aggregated-counts table (from,to,interval,count), not a long-format panel; "
            "use it where counts are accepted (e.g. fit)",
            path=path,
        )
    return validate_panel(df, spec, path=path, sha256=file_sha256(path))


def validate_panel(
    df: pd.DataFrame, spec: ModelSpec, *, path: str = "<panel>", sha256: str = ""
) -> Panel:
    """Validate a raw long-format DataFrame (see :func:`load_panel`)."""
    cols = spec.data
    needed = [cols.id, cols.time, cols.state, *model_columns(spec)]
    # The weight column: the one named in [data], else a column called "weight" if any.
    weight_col = cols.weight or ("weight" if "weight" in df.columns else None)
    if weight_col:
        needed.append(weight_col)
    if cols.cluster:
        needed.append(cols.cluster)
    # msm's observation types: the column named in [data], else one called "obstype" if any
    obstype_col = cols.obstype or (OBSTYPE_COLUMN if OBSTYPE_COLUMN in df.columns else None)
    if obstype_col:
        needed.append(obstype_col)
    for c in needed:
        if c not in df.columns:
            raise PanelError(
                f"missing column '{c}' (columns: {', '.join(map(str, df.columns))})", path=path
            )
    notes: list[str] = []
    n_rows = len(df)
    for c in (cols.id, cols.time, cols.state):
        missing = df[c].isna().to_numpy().copy()
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]):
            missing |= (df[c].astype("string").str.strip() == "").fillna(True).to_numpy(dtype=bool)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise PanelError(f"missing {c}", path=path, row=i + 1, column=c)
    out = pd.DataFrame({"id": df[cols.id].astype("string").str.strip().to_numpy()})
    out["time"] = parse_time(df[cols.time], spec, path, cols.time)
    out["state"] = parse_state(df[cols.state], spec, path, cols.state)
    if weight_col:
        w = pd.to_numeric(df[weight_col], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(w) | (w <= 0))
        if bad.size:
            i = int(bad[0])
            raw = df[weight_col].iloc[i]
            raise PanelError(
                "missing weight" if pd.isna(raw) else f"weight '{raw}' must be a positive number",
                path=path,
                row=i + 1,
                column=weight_col,
            )
        out["weight"] = w
    else:
        out["weight"] = 1.0
    out["row"] = np.arange(1, n_rows + 1)
    if cols.cluster:
        raw = df[cols.cluster]
        text = raw.astype("string").str.strip()
        empty = (raw.isna() | (text == "")).fillna(True).to_numpy(dtype=bool)
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise PanelError("missing cluster", path=path, row=i + 1, column=cols.cluster)
        out[CLUSTER_COLUMN] = text.to_numpy(dtype=object)
    for c, values in parse_model_columns(df, spec, path).items():
        out[c] = values
    if obstype_col:
        out[PANEL_OBSTYPE] = parse_obstype(df[obstype_col], path, obstype_col)

    res = spec.resolution
    with np.errstate(over="ignore"):  # 1e308 / res is inf: too big, and no RuntimeWarning
        too_big = np.flatnonzero(np.abs(out["time"].to_numpy()) / res > _MAX_TICKS)
    if too_big.size:
        i = int(too_big[0])
        raise PanelError(
            f"time {out['time'].iloc[i]:g} is too large: intervals would overflow at a "
            f"resolution of {res:g} {spec.time_unit}",
            path=path,
            row=i + 1,
            column=cols.time,
        )

    # Group respondents in order of first appearance (ids are text: "10" must not
    # sort before "2"), times ascending within each.
    code = pd.factorize(out["id"])[0]  # respondents numbered in order of first appearance
    tm = out["time"].to_numpy()
    dc, dt = np.diff(code), np.diff(tm)
    if not np.all((dc > 0) | ((dc == 0) & (dt >= 0))):  # else already sorted: skip the sort
        order = np.lexsort((tm, code))
        notes.append("rows were not sorted by respondent and time: sorted them")
        out = out.iloc[order].reset_index(drop=True)
        code = code[order]

    ids = out["id"].to_numpy()
    t = out["time"].to_numpy()
    st = out["state"].to_numpy()
    same_id = code[1:] == code[:-1]
    names = record_names(spec)
    same_time = same_id & (t[1:] == t[:-1])
    conflict = np.flatnonzero(same_time & (st[1:] != st[:-1]))
    if conflict.size:
        j = int(conflict[0])
        raise PanelError(
            f"respondent '{ids[j]}' is observed twice at time {t[j]:g} in different states "
            f"({names[st[j]]} and {names[st[j + 1]]}; rows {out['row'].iloc[j]} and "
            f"{out['row'].iloc[j + 1]})",
            path=path,
            row=int(out["row"].iloc[j + 1]),
            column=cols.state,
        )
    if same_time.any():
        notes.append(
            f"removed {int(same_time.sum())} duplicate rows (same respondent, time and state)"
        )
        keep = np.concatenate([[True], ~same_time])
        out = out[keep].reset_index(drop=True)
        ids, t, st = out["id"].to_numpy(), out["time"].to_numpy(), out["state"].to_numpy()
        code = code[keep]
        same_id = code[1:] == code[:-1]

    exact = np.asarray(spec.observation.exact, dtype=np.int64)
    if exact.size:  # records after an exact entry would read as a second entry: drop them
        in_exact = np.isin(st, exact).astype(np.int64)
        seen = np.cumsum(in_exact)
        start = np.flatnonzero(np.r_[True, ~same_id])  # each respondent's first row
        before = np.repeat(seen[start] - in_exact[start], np.diff(np.r_[start, st.size]))
        after = seen - in_exact - before > 0  # an earlier record of theirs is in it
        if after.any():
            notes.append(
                f"removed {int(after.sum())} records after an exact entry into "
                f"{', '.join(names[s] for s in exact)} (absorbing: a repeated record would "
                "read as a second entry)"
            )
            out = out[~after].reset_index(drop=True)
            ids, t, st = out["id"].to_numpy(), out["time"].to_numpy(), out["state"].to_numpy()
            code = code[~after]
            same_id = code[1:] == code[:-1]

    if obstype_col and not check_obstype(out, same_id, spec, path, obstype_col):
        out = out.drop(columns=PANEL_OBSTYPE)  # only 1s: the plain panel

    w = out["weight"].to_numpy()
    wchange = np.flatnonzero(same_id & (w[1:] != w[:-1]))
    if wchange.size:
        j = int(wchange[0])
        raise PanelError(
            f"weight of respondent '{ids[j]}' changes between observations (one weight per respondent)",
            path=path,
            row=int(out["row"].iloc[j + 1]),
            column=weight_col,
        )

    if cols.cluster:
        psu = out[CLUSTER_COLUMN].to_numpy()
        moved = np.flatnonzero(same_id & (psu[1:] != psu[:-1]))
        if moved.size:
            j = int(moved[0])
            raise PanelError(
                f"cluster of respondent '{ids[j]}' changes between observations "
                "(one cluster per respondent)",
                path=path,
                row=int(out["row"].iloc[j + 1]),
                column=cols.cluster,
            )

    gaps = np.where(same_id, t[1:] - t[:-1], np.inf)
    overflow = np.flatnonzero(same_id & ~np.isfinite(t[1:] - t[:-1]))
    if overflow.size:
        j = int(overflow[0])
        raise PanelError(
            "interval between observations overflows (times too large)",
            path=path,
            row=int(out["row"].iloc[j + 1]),
            column=cols.time,
        )
    short = np.flatnonzero(same_id & (np.round(gaps / res) < 1))
    if short.size:
        j = int(short[0])
        raise PanelError(
            f"respondent '{ids[j]}' has two observations {gaps[j]:g} {spec.time_unit} apart, "
            f"shorter than the resolution {res:g} (a zero gap)",
            path=path,
            row=int(out["row"].iloc[j + 1]),
            column=cols.time,
        )

    if spec.time == "discrete":
        steps = np.where(same_id, gaps, 0.0) / res
        frac = np.flatnonzero(same_id & (np.abs(steps - np.round(steps)) > 1e-6))
        if frac.size:
            j = int(frac[0])
            raise PanelError(
                f"discrete-time model: the gap {gaps[j]:g} is not a whole number of steps "
                "(time must hold wave numbers)",
                path=path,
                row=int(out["row"].iloc[j + 1]),
                column=cols.time,
            )

    per_respondent = np.bincount(code)
    single = per_respondent[code] == 1
    keep_single = spec.observation.nonresponse is not None
    if keep_single:  # a respondent who answered once missed the later waves: that is data
        single[:] = False
    n_single = int(single.sum())
    if n_single:
        notes.append(f"dropped {n_single} respondents observed only once")
        out = out[~single].reset_index(drop=True)
    if len(out) == 0:
        raise PanelError("no respondent is observed more than once: nothing to fit", path=path)

    panel = Panel(out, names, path, sha256, n_rows, n_single, notes)
    panel._n_respondents = int((per_respondent >= (1 if keep_single else 2)).sum())
    check_possible(panel, spec)
    return panel


def check_possible(panel: Panel, spec: ModelSpec) -> None:
    """Raise if a consecutive pair is impossible under the model's transitions."""
    if spec.observation.hidden:
        return  # a misclassified record can look impossible; the likelihood judges it
    p = panel.pairs()
    k = spec.n_states
    # Censored codes (indices >= K) and misclassified records are judged by the
    # forward algorithm's likelihood, not here.
    p = p[(p["from"] < k) & (p["to"] < k)] if spec.observation.latent else p
    reach = reachable(spec)
    bad = ~reach[p["from"].to_numpy(), p["to"].to_numpy()]
    if not bad.any():
        return
    pb = p[bad]
    first = pb.iloc[0]
    pair = (int(first["from"]), int(first["to"]))
    n_pair = int(((pb["from"] == pair[0]) & (pb["to"] == pair[1])).sum())
    others = int(bad.sum()) - n_pair
    why = (
        "it is absorbing"
        if spec.states[pair[0]] in spec.absorbing
        else "no allowed path leads there"
    )
    more = f"; {others} other impossible pairs" if others else ""
    raise PanelError(
        f"transition {spec.states[pair[0]]}->{spec.states[pair[1]]} is impossible under the model "
        f"({why}): {n_pair} times, first by respondent '{first['id']}'{more}",
        path=panel.path,
        row=int(first["row"]),
        column=spec.data.state,
    )

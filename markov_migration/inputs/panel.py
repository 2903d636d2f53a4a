"""Panel data: load, validate and aggregate to sufficient statistics.

A panel file is long format, one row per respondent per observation, with
columns ``id``, ``time`` and ``state`` (names can be remapped in the model
file's ``[data]`` table), optional covariate and group columns and an optional
weight column. CSV and Parquet are read. ``time`` is numeric in the model's time
unit or an ISO date, converted to decimal years (times the unit's length in
years for other units). ``state`` holds state names, or integer codes when the
model declares ``state_codes``.

Aggregation counts consecutive observation pairs of a respondent by
(interval, from, to, covariate pattern, group), with intervals rounded to a
resolution (one day by default). The fitted likelihood then costs as many
transition-matrix evaluations as there are distinct intervals, not respondents.

An aggregated-counts table (columns ``from``, ``to``, ``interval``, ``count``
plus any covariates) is accepted as input too.

Every problem raises :class:`~markov_migration.errors.PanelError` naming the
file, the 1-based data row (the header is not counted) and the column.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from markov_migration.errors import PanelError
from markov_migration.inputs.spec import ModelSpec

#: Columns that identify an aggregated-counts table.
COUNT_COLUMNS = ("from", "to", "interval", "count")
#: Key columns of aggregated rows of a model with periods (see :func:`aggregation_keys`).
START_PERIOD, LEAD_TIME = "start_period", "lead_time"
#: Column of a counts table giving the start time of each interval (models with periods).
START_COLUMN = "start"
#: Length of each time unit in years (ISO dates are converted with it).
UNIT_PER_YEAR = {"years": 1.0, "months": 12.0, "weeks": 365.25 / 7, "days": 365.25}
#: Largest |time| / resolution that can be rounded exactly in float64.
_MAX_TICKS = 2.0**52


@dataclass
class Panel:
    """A validated long-format panel.

    Attributes
    ----------
    data : pandas.DataFrame
        Sorted by respondent and time, with columns ``id``, ``time`` (float,
        time units), ``state`` (int index into ``states``), ``weight`` (float,
        1 when the file has none), ``row`` (1-based row in the file) and any
        covariate and group columns the model uses. Respondents with a single
        observation are removed.
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
                if name not in ("id", "time", "state", "weight", "row"):
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


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame (no validation of content).

    Raises
    ------
    PanelError
        If the file is missing, unreadable, empty or has a header only.
    """
    path = Path(path)
    if not path.exists():
        raise PanelError("file not found", path=path)
    if path.is_dir():
        raise PanelError("is a directory, not a panel file", path=path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            if path.stat().st_size == 0:
                raise PanelError("file is empty", path=path)
            sep = "\t" if suffix in (".tsv", ".tab") else ","
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except PanelError:
        raise
    except pd.errors.EmptyDataError:
        raise PanelError("file is empty", path=path) from None
    except Exception as err:  # pandas/pyarrow raise many kinds
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        kind = "Parquet" if suffix in (".parquet", ".pq") else "CSV"
        raise PanelError(f"cannot read as {kind}: {msg}", path=path) from None
    if df.shape[0] == 0:
        raise PanelError("file has a header but no data rows", path=path)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def is_counts_table(df: pd.DataFrame) -> bool:
    """True when the columns are those of an aggregated-counts table."""
    return all(c in df.columns for c in COUNT_COLUMNS)


def _decimal_years(values: pd.Series, path: str, column: str) -> np.ndarray:
    """Convert ISO date strings to decimal years."""
    try:
        dt = pd.to_datetime(values, format="ISO8601", utc=True)
    except (ValueError, TypeError):
        dt = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
        bad = int(np.flatnonzero(dt.isna().to_numpy())[0])
        raise PanelError(
            f"'{values.iloc[bad]}' is neither a number nor an ISO date",
            path=path,
            row=bad + 1,
            column=column,
        ) from None
    year = dt.dt.year.to_numpy()
    start = pd.to_datetime(pd.Series(year).astype(str) + "-01-01", utc=True).to_numpy()
    end = pd.to_datetime(pd.Series(year + 1).astype(str) + "-01-01", utc=True).to_numpy()
    frac = (dt.to_numpy() - start) / (end - start)
    return year + frac.astype(float)


def _parse_time(raw: pd.Series, spec: ModelSpec, path: str, column: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(raw):
        t = raw.to_numpy(dtype=float)
    else:
        s = raw.astype("string").str.strip()
        numeric = pd.to_numeric(s, errors="coerce")
        looks_date = (
            s.str.match(r"^\d{4}-\d{2}(-\d{2})?([T ].*)?$").fillna(False).to_numpy(dtype=bool)
        )
        if looks_date.any() and numeric.isna().all():
            t = _decimal_years(s, path, column) * UNIT_PER_YEAR[spec.time_unit]
        else:
            bad = np.flatnonzero(numeric.isna().to_numpy() & s.notna().to_numpy())
            if bad.size:
                i = int(bad[0])
                raise PanelError(
                    f"time '{s.iloc[i]}' is not a number (or every time must be an ISO date)",
                    path=path,
                    row=i + 1,
                    column=column,
                )
            t = numeric.to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        i = int(bad[0])
        raise PanelError(f"time is not finite ({raw.iloc[i]})", path=path, row=i + 1, column=column)
    return t


def _parse_state(raw: pd.Series, spec: ModelSpec, path: str, column: str) -> np.ndarray:
    codes = spec.data.state_codes
    if codes is not None:
        values = pd.to_numeric(raw, errors="coerce")
        lookup = {code: spec.index(name) for code, name in codes.items()}
        mapped = values.map(lookup)
        bad = np.flatnonzero(mapped.isna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise PanelError(
                f"unknown state code '{raw.iloc[i]}' (declared codes: {', '.join(map(str, sorted(codes)))})",
                path=path,
                row=i + 1,
                column=column,
            )
        return mapped.to_numpy(dtype=np.int64)
    # Factorize first: the lookup then runs over the few distinct labels, not every row.
    codes, labels = pd.factorize(raw.astype("string").str.strip())
    lookup = {name: i for i, name in enumerate(spec.states)}
    index = np.array([lookup.get(str(label), -1) for label in labels] + [-1], dtype=np.int64)
    mapped = index[codes]  # code -1 (missing) maps to the sentinel -1
    bad = np.flatnonzero(mapped < 0)
    if bad.size:
        i = int(bad[0])
        raise PanelError(
            f"unknown state '{str(raw.iloc[i]).strip()}' (model states: {', '.join(spec.states)})",
            path=path,
            row=i + 1,
            column=column,
        )
    return mapped


def reachable(spec: ModelSpec) -> np.ndarray:
    """Boolean (K, K): whether state s can be observed after state r over some interval.

    Staying is always possible; otherwise s must be reachable from r through the
    allowed transitions (a transitive closure).
    """
    reach = spec.allowed_matrix() | np.eye(spec.n_states, dtype=bool)
    for k in range(spec.n_states):
        reach |= reach[:, [k]] & reach[[k], :]
    return reach


def model_columns(spec: ModelSpec) -> list[str]:
    """Covariate and group columns the model reads from the panel."""
    cols = [c.column for c in spec.covariates]
    if spec.groups is not None:
        cols.append(spec.groups.column)
    return list(dict.fromkeys(cols))


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


def _as_levels(raw: pd.Series) -> np.ndarray:
    """Categorical values as stripped strings (whole floats of a Parquet column without '.0')."""
    if pd.api.types.is_float_dtype(raw):
        v = raw.to_numpy(dtype=float)
        if np.all(v == np.round(v)):
            return np.array([str(int(x)) for x in v], dtype=object)
    return raw.astype("string").str.strip().to_numpy(dtype=object)


def parse_model_columns(df: pd.DataFrame, spec: ModelSpec, path: str) -> dict[str, np.ndarray]:
    """Parse and check the covariate and group columns of a panel or counts table.

    Numeric covariates become floats and categorical covariates and groups
    stripped strings. Refused, naming the file, row and column: an empty cell,
    a numeric covariate that is not a finite number or is the same on every
    row, a categorical value that is not one of the declared ``levels``, a
    reference level that does not occur, a categorical covariate with a single
    level (and no declared levels).
    """
    out: dict[str, np.ndarray] = {}
    for c in model_columns(spec):
        raw = df[c]
        missing = raw.isna().to_numpy().copy()
        if not pd.api.types.is_numeric_dtype(raw):
            missing |= (raw.astype("string").str.strip() == "").fillna(True).to_numpy(dtype=bool)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise PanelError(f"missing value of '{c}'", path=path, row=i + 1, column=c)
    for cov in spec.covariates:
        c, raw = cov.column, df[cov.column]
        if cov.kind == "numeric":
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                i = int(bad[0])
                raise PanelError(
                    f"covariate '{cov.name}' is numeric: '{str(raw.iloc[i]).strip()}' is not a "
                    "finite number",
                    path=path,
                    row=i + 1,
                    column=c,
                )
            if np.all(values == values[0]):
                raise PanelError(
                    f"numeric covariate '{cov.name}' is {values[0]:g} on every row: its effect "
                    "cannot be estimated",
                    path=path,
                    column=c,
                )
            out[c] = values
            continue
        values = _as_levels(raw)
        present = set(values)
        if cov.levels is not None:
            bad = np.flatnonzero(~np.isin(values, np.array(cov.levels, dtype=object)))
            if bad.size:
                i = int(bad[0])
                raise PanelError(
                    f"'{values[i]}' is not a level of covariate '{cov.name}' "
                    f"(levels: {', '.join(cov.levels)})",
                    path=path,
                    row=i + 1,
                    column=c,
                )
        elif len(present) < 2:
            raise PanelError(
                f"categorical covariate '{cov.name}' has a single level in the data "
                f"('{values[0]}'): there is nothing to compare it with",
                path=path,
                column=c,
            )
        reference = cov.reference or sorted(cov.levels or present)[0]
        if reference not in present:
            raise PanelError(
                f"the reference level '{reference}' of covariate '{cov.name}' does not occur in "
                "the data (set 'reference' in [covariates." + cov.name + "] to a level that does)",
                path=path,
                column=c,
            )
        out[c] = values
    if spec.groups is not None:
        c = spec.groups.column
        out[c] = _as_levels(df[c])
    return out


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
    out["time"] = _parse_time(df[cols.time], spec, path, cols.time)
    out["state"] = _parse_state(df[cols.state], spec, path, cols.state)
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
    for c, values in parse_model_columns(df, spec, path).items():
        out[c] = values

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
    same_time = same_id & (t[1:] == t[:-1])
    conflict = np.flatnonzero(same_time & (st[1:] != st[:-1]))
    if conflict.size:
        j = int(conflict[0])
        raise PanelError(
            f"respondent '{ids[j]}' is observed twice at time {t[j]:g} in different states "
            f"({spec.states[st[j]]} and {spec.states[st[j + 1]]}; rows {out['row'].iloc[j]} and "
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
    n_single = int(single.sum())
    if n_single:
        notes.append(f"dropped {n_single} respondents observed only once")
        out = out[~single].reset_index(drop=True)
    if len(out) == 0:
        raise PanelError("no respondent is observed more than once: nothing to fit", path=path)

    panel = Panel(out, spec.states, path, sha256, n_rows, n_single, notes)
    panel._n_respondents = int((per_respondent >= 2).sum())
    check_possible(panel, spec)
    return panel


def check_possible(panel: Panel, spec: ModelSpec) -> None:
    """Raise if a consecutive pair is impossible under the model's transitions."""
    p = panel.pairs()
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
    table = p.groupby(keys, sort=True, observed=True)["weight"].sum().rename("count").reset_index()
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
            "from": _parse_state(df["from"], spec, path, "from"),
            "to": _parse_state(df["to"], spec, path, "to"),
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
        return None, load_counts(path, spec, df)
    panel = validate_panel(df, spec, path=str(path), sha256=file_sha256(path))
    return panel, aggregate(panel, spec)


def data_summary(path: str | Path, spec: ModelSpec) -> dict:
    """Load, validate and describe a panel or counts file (for ``validate``).

    Returns
    -------
    dict
        JSON-ready: file, sha256, kind, rows, respondents, dropped single
        observations, notes, observations per state, the from x to transition
        counts, the number of distinct intervals and their range (time units).
    """
    panel, agg = load_data(path, spec)
    t = agg.table
    trans = np.zeros((spec.n_states, spec.n_states))
    np.add.at(trans, (t["from"].to_numpy(), t["to"].to_numpy()), t["count"].to_numpy())
    out: dict = {
        "file": str(path),
        "sha256": agg.sha256,
        "model": spec.name,
        "states": list(spec.states),
        "kind": "panel" if panel is not None else "counts",
        "time_unit": spec.time_unit if spec.time == "continuous" else "steps",
        "transitions": {
            a: {b: float(trans[i, j]) for j, b in enumerate(spec.states)}
            for i, a in enumerate(spec.states)
        },
        "n_transitions": agg.n_transitions,
        "n_intervals": int(agg.intervals.size),
        "interval_min": float(agg.intervals.min()),
        "interval_max": float(agg.intervals.max()),
        "resolution": agg.resolution,
        "n_rows_aggregated": len(t),
        "weighted": agg.weighted,
    }
    if panel is not None:
        obs = np.bincount(panel.data["state"].to_numpy(), minlength=spec.n_states)
        out.update(
            rows=panel.n_rows,
            respondents=panel.n_respondents,
            dropped_single=panel.n_single,
            observations={s: int(obs[i]) for i, s in enumerate(spec.states)},
            time_min=float(panel.data["time"].min()),
            time_max=float(panel.data["time"].max()),
            notes=panel.notes,
        )
    return out

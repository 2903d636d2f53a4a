"""Panel and counts files: read them and parse their columns against a model.

A data file is CSV (or TSV) or Parquet. ``time`` is numeric in the model's time
unit or an ISO date, converted to decimal years (times the unit's length in
years for other units). ``state`` holds state names, or integer codes when the
model declares ``state_codes``. Covariate and group columns are parsed to
floats (numeric covariates) or stripped strings (levels, groups).

Every problem raises :class:`~markov_migration.errors.PanelError` naming the
file, the 1-based data row (the header is not counted) and the column.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from markov_migration.errors import PanelError
from markov_migration.inputs.spec import ModelSpec

#: Columns that identify an aggregated-counts table.
COUNT_COLUMNS = ("from", "to", "interval", "count")
#: msm's observation types (the panel's ``obstype`` column): a panel observation,
#: an exact transition time (the previous record's state was kept until this
#: time) and an exact entry time into the recorded state. The same codes as
#: :mod:`markov_migration.core.forward_kernel` (not imported: it loads numba).
OBSTYPE_PANEL, OBSTYPE_TRANSITION, OBSTYPE_ENTRY = 1, 2, 3
#: Default name of the observation-type column (``[data] obstype`` renames it).
OBSTYPE_COLUMN = "obstype"
#: Length of each time unit in years (ISO dates are converted with it).
UNIT_PER_YEAR = {"years": 1.0, "months": 12.0, "weeks": 365.25 / 7, "days": 365.25}


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


def parse_time(raw: pd.Series, spec: ModelSpec, path: str, column: str) -> np.ndarray:
    """Times in the model's time unit from numbers or ISO dates (all dates or none)."""
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


def parse_state(raw: pd.Series, spec: ModelSpec, path: str, column: str) -> np.ndarray:
    """State indices from state names, or from integer codes when the model declares them.

    Censored codes of the model's ``[observation]`` table (names, or integers
    when the model uses integer state codes) get indices ``K, K + 1, ...``
    after the K states (see :func:`record_names`).
    """
    codes = spec.data.state_codes
    names = record_names(spec)
    if codes is not None:
        values = pd.to_numeric(raw, errors="coerce")
        lookup = {code: spec.index(name) for code, name in codes.items()}
        for j, code in enumerate(spec.observation.censored_codes):
            with contextlib.suppress(ValueError):
                lookup[int(code)] = spec.n_states + j
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
    lookup = {name: i for i, name in enumerate(names)}
    index = np.array([lookup.get(str(label), -1) for label in labels] + [-1], dtype=np.int64)
    mapped = index[codes]  # code -1 (missing) maps to the sentinel -1
    bad = np.flatnonzero(mapped < 0)
    if bad.size:
        i = int(bad[0])
        raise PanelError(
            f"unknown state '{str(raw.iloc[i]).strip()}' (model states: {', '.join(names)})",
            path=path,
            row=i + 1,
            column=column,
        )
    return mapped


def parse_obstype(raw: pd.Series, path: str, column: str) -> np.ndarray:
    """Observation types (msm's ``obstype``: 1, 2 or 3) from a panel column.

    Raises
    ------
    PanelError
        On an empty cell or a value other than 1, 2 or 3, naming the row.
    """
    text = raw if pd.api.types.is_numeric_dtype(raw) else raw.astype("string").str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    kinds = (OBSTYPE_PANEL, OBSTYPE_TRANSITION, OBSTYPE_ENTRY)
    bad = np.flatnonzero(~np.isin(values, np.array(kinds, dtype=float)))
    if bad.size:
        i = int(bad[0])
        cell = raw.iloc[i]
        shown = "an empty cell" if pd.isna(cell) else f"'{str(cell).strip()}'"
        raise PanelError(
            f"obstype is {shown}: it must be 1 (panel observation), 2 (exact transition "
            "time) or 3 (exact entry time)",
            path=path,
            row=i + 1,
            column=column,
        )
    return values.astype(np.int64)


def record_names(spec: ModelSpec) -> tuple[str, ...]:
    """What a ``state`` cell may hold: the model's states, then its censored codes."""
    return (*spec.states, *spec.observation.censored_codes)


def model_columns(spec: ModelSpec) -> list[str]:
    """Covariate and group columns the model reads from the panel."""
    cols = [c.column for c in spec.covariates]
    if spec.groups is not None:
        cols.append(spec.groups.column)
    return list(dict.fromkeys(cols))


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

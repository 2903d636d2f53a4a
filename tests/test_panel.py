"""Panel data: loading, validation (API and ``validate`` command) and aggregation."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.errors import InputError, PanelError
from markov_migration.inputs.aggregate import aggregate, load_counts, load_data
from markov_migration.inputs.columns import COUNT_COLUMNS
from markov_migration.inputs.panel import load_panel, reachable
from markov_migration.inputs.spec import load_spec, parse_spec

STATES5 = "abroad, transit, swing, returned, reemigrated"

TWO_STATE = """\
states = ["a", "b"]
[transitions]
a = ["b"]
b = ["a"]
"""

ILLNESS_DEATH = """\
states = ["well", "ill", "dead"]
[transitions]
well = ["ill", "dead"]
ill = ["well", "dead"]
"""

WEIGHTED = TWO_STATE + '[data]\nweight = "w"\n'
CODES = ILLNESS_DEATH + "[data]\nstate_codes = true\n"
REMAPPED = (
    ILLNESS_DEATH
    + '[data]\nid = "PTNUM"\ntime = "years"\nstate = "where"\n'
    + 'state_codes = { 10 = "well", 20 = "ill", 30 = "dead" }\n'
)
DISCRETE = 'time = "discrete"\n' + TWO_STATE
COVARIATES = TWO_STATE + '[covariates.sex]\nkind = "categorical"\n[groups]\ncolumn = "host"\n'


def date_to_years(d: date) -> float:
    """Decimal years, computed independently of the package (calendar days)."""
    start, end = date(d.year, 1, 1), date(d.year + 1, 1, 1)
    return d.year + (d - start).days / (end - start).days


# -- bad input: each case through the Python API and through `validate` ------------------
# (id, model text or None for migration5, panel CSV text, message fragment, row, column)
BAD_PANELS = [
    (
        "missing-column",
        None,
        "id,time\n1,2022.7\n",
        "missing column 'state' (columns: id, time)",
        None,
        None,
    ),
    ("empty-file", None, "", "file is empty", None, None),
    ("header-only", None, "id,time,state\n", "file has a header but no data rows", None, None),
    (
        "unknown-state",
        None,
        "id,time,state\n1,2022.7,abroad\n1,2023.5,moon\n",
        f"unknown state 'moon' (model states: {STATES5})",
        2,
        "state",
    ),
    ("missing-id", None, "id,time,state\n1,2022.7,abroad\n,2023.5,abroad\n", "missing id", 2, "id"),
    (
        "missing-time",
        None,
        "id,time,state\n1,2022.7,abroad\n1,,abroad\n",
        "missing time",
        2,
        "time",
    ),
    (
        "blank-time",
        None,
        "id,time,state\n1,2022.7,abroad\n1,  ,abroad\n",
        "missing time",
        2,
        "time",
    ),
    (
        "missing-state",
        None,
        "id,time,state\n1,2022.7,abroad\n1,2023.5,\n",
        "missing state",
        2,
        "state",
    ),
    (
        "non-numeric-time",
        None,
        "id,time,state\n1,2022.7,abroad\n1,soon,abroad\n",
        "time 'soon' is not a number",
        2,
        "time",
    ),
    (
        "infinite-time",
        None,
        "id,time,state\n1,2022.7,abroad\n1,inf,abroad\n",
        "time is not finite (inf)",
        2,
        "time",
    ),
    (
        "minus-infinite-time",
        None,
        "id,time,state\n1,-inf,abroad\n1,2022.7,abroad\n",
        "time is not finite (-inf)",
        1,
        "time",
    ),
    (
        "nan-time",
        None,
        "id,time,state\n1,2022.7,abroad\n1,nan,abroad\n",
        "time 'nan' is not a number",
        2,
        "time",
    ),
    (
        "huge-times",
        None,
        "id,time,state\n1,1e300,abroad\n1,-1e300,abroad\n",
        "time 1e+300 is too large: intervals would overflow at a resolution of 0.00273785 years",
        1,
        "time",
    ),
    (
        # 1e308 / resolution overflows to inf: no RuntimeWarning before the error line.
        "huge-times-overflow",
        None,
        "id,time,state\n1,2022.7,abroad\n1,1e308,abroad\n",
        "time 1e+308 is too large: intervals would overflow at a resolution of 0.00273785 years",
        2,
        "time",
    ),
    (
        "conflicting-duplicate",
        None,
        "id,time,state\n1,2022.7,abroad\n1,2022.7,transit\n",
        "respondent '1' is observed twice at time 2022.7 in different states "
        "(abroad and transit; rows 1 and 2)",
        2,
        "state",
    ),
    (
        "absorbing",
        ILLNESS_DEATH,
        "id,time,state\n1,0,well\n1,1,ill\n2,0,well\n2,1,dead\n2,2,ill\n3,0,dead\n3,1,well\n4,0,dead\n4,3,ill\n",
        "transition dead->ill is impossible under the model (it is absorbing): 2 times, "
        "first by respondent '2'; 1 other impossible pairs",
        5,
        "state",
    ),
    (
        "unreachable",
        'states = ["a", "b", "c"]\n[transitions]\na = ["b"]\nc = ["a"]\n',
        "id,time,state\n1,0,a\n1,1,c\n",
        "transition a->c is impossible under the model (no allowed path leads there): 1 times, "
        "first by respondent '1'",
        2,
        "state",
    ),
    (
        "zero-gap",
        None,
        "id,time,state\n1,2022.7,abroad\n1,2022.7001,transit\n",
        "respondent '1' has two observations 0.0001 years apart, "
        "shorter than the resolution 0.00273785 (a zero gap)",
        2,
        "time",
    ),
    (
        "weight-zero",
        WEIGHTED,
        "id,time,state,w\n1,0,a,0\n1,1,b,0\n",
        "weight '0' must be a positive number",
        1,
        "w",
    ),
    (
        "weight-negative",
        WEIGHTED,
        "id,time,state,w\n1,0,a,1\n1,1,b,-2\n",
        "weight '-2' must be a positive number",
        2,
        "w",
    ),
    ("weight-missing", WEIGHTED, "id,time,state,w\n1,0,a,1\n1,1,b,\n", "missing weight", 2, "w"),
    (
        "weight-text",
        WEIGHTED,
        "id,time,state,w\n1,0,a,1\n1,1,b,high\n",
        "weight 'high' must be a positive number",
        2,
        "w",
    ),
    (
        "weight-changes",
        WEIGHTED,
        "id,time,state,w\n1,0,a,1.5\n1,1,b,2\n",
        "weight of respondent '1' changes between observations (one weight per respondent)",
        2,
        "w",
    ),
    (
        "weight-column-absent",
        WEIGHTED,
        "id,time,state\n1,0,a\n1,1,b\n",
        "missing column 'w'",
        None,
        None,
    ),
    (
        "iso-and-numbers",
        None,
        "id,time,state\n1,2023-01-01,abroad\n1,2023.6,transit\n",
        "time '2023-01-01' is not a number (or every time must be an ISO date)",
        1,
        "time",
    ),
    (
        "invalid-iso-date",
        None,
        "id,time,state\n1,2023-01-01,abroad\n1,2023-13-45,transit\n",
        "'2023-13-45' is neither a number nor an ISO date",
        2,
        "time",
    ),
    (
        "unknown-code",
        CODES,
        "id,time,state\n1,0,1\n1,1,4\n",
        "unknown state code '4' (declared codes: 1, 2, 3)",
        2,
        "state",
    ),
    (
        "name-for-code",
        CODES,
        "id,time,state\n1,0,well\n1,1,2\n",
        "unknown state code 'well'",
        1,
        "state",
    ),
    (
        "remapped-column-absent",
        REMAPPED,
        "id,time,state\n7,0,10\n7,1.5,30\n",
        "missing column 'PTNUM' (columns: id, time, state)",
        None,
        None,
    ),
    (
        "discrete-fractional-gap",
        DISCRETE,
        "id,time,state\n1,1,a\n1,2,b\n1,3.5,a\n",
        "discrete-time model: the gap 1.5 is not a whole number of steps "
        "(time must hold wave numbers)",
        3,
        "time",
    ),
    (
        "all-single",
        None,
        "id,time,state\n1,2022.7,abroad\n2,2023.5,transit\n",
        "no respondent is observed more than once: nothing to fit",
        None,
        None,
    ),
    (
        "covariate-column-absent",
        COVARIATES,
        "id,time,state,host\n1,0,a,GE\n1,1,b,GE\n",
        "missing column 'sex'",
        None,
        None,
    ),
    (
        "covariate-missing-value",
        COVARIATES,
        "id,time,state,sex,host\n1,0,a,f,GE\n1,1,b,,GE\n",
        "missing value of 'sex'",
        2,
        "sex",
    ),
    # Counts tables are validated too (the `validate` command accepts them).
    (
        "counts-negative",
        TWO_STATE,
        "from,to,interval,count\na,b,1,5\na,b,1,-1\n",
        "count '-1' must be a non-negative number",
        2,
        "count",
    ),
    ("counts-missing", TWO_STATE, "from,to,interval,count\na,b,1,\n", "missing count", 1, "count"),
    (
        "counts-zero-interval",
        TWO_STATE,
        "from,to,interval,count\na,b,0,3\n",
        "interval '0' must be a positive number",
        1,
        "interval",
    ),
    (
        "counts-short-interval",
        TWO_STATE,
        "from,to,interval,count\na,b,0.001,3\n",
        "interval shorter than the resolution 0.00273785",
        1,
        "interval",
    ),
    (
        "counts-impossible",
        ILLNESS_DEATH,
        "from,to,interval,count\nwell,ill,1,4\ndead,well,1,2\n",
        "transition dead->well is impossible under the model",
        2,
        "to",
    ),
    (
        "counts-unknown-state",
        TWO_STATE,
        "from,to,interval,count\nc,b,1,1\n",
        "unknown state 'c'",
        1,
        "from",
    ),
    (
        "counts-all-zero",
        TWO_STATE,
        "from,to,interval,count\na,b,1,0\n",
        "all counts are zero: nothing to fit",
        None,
        None,
    ),
]
BAD_IDS = [c[0] for c in BAD_PANELS]


@pytest.fixture
def bad_case(request, tmp_path, models_dir):
    """Write one BAD_PANELS case: (panel path, model path, fragment, row, column)."""
    _, model_text, csv, fragment, row, column = request.param
    model = models_dir / "migration5.toml"
    if model_text is not None:
        model = tmp_path / "model.toml"
        model.write_text(model_text, encoding="utf-8")
    panel = tmp_path / "panel.csv"
    panel.write_text(csv, encoding="utf-8")
    return panel, model, fragment, row, column


def expected_prefix(path: Path, row: int | None, column: str | None) -> str:
    where = [str(path)]
    if row is not None:
        where.append(f"row {row}")
    if column is not None:
        where.append(f"column '{column}'")
    return ", ".join(where) + ": "


@pytest.mark.parametrize("bad_case", BAD_PANELS, ids=BAD_IDS, indirect=True)
def test_bad_panel_api(bad_case):
    panel, model, fragment, row, column = bad_case
    spec = load_spec(model)
    with pytest.raises(PanelError) as info:
        load_data(panel, spec)
    err = info.value
    assert fragment in err.message
    assert (err.path, err.row, err.column) == (str(panel), row, column)
    assert str(err).startswith(expected_prefix(panel, row, column))
    assert "\n" not in str(err)


@pytest.mark.parametrize("bad_case", BAD_PANELS, ids=BAD_IDS, indirect=True)
def test_bad_panel_cli(bad_case):
    panel, model, fragment, row, column = bad_case
    with pytest.raises(PanelError) as info:
        load_data(panel, load_spec(model))
    result = CliRunner().invoke(app, ["validate", str(panel), "--model", str(model)])
    assert result.exit_code == 2
    # Exactly one line on stderr, the same message as the API's; nothing on stdout.
    assert result.stderr == f"error: {info.value}\n"
    assert fragment in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_missing_panel_file(tmp_path, migration5):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(PanelError) as info:
        load_panel(path, migration5)
    assert str(info.value) == f"{path}: file not found"


def test_directory_is_not_a_panel(tmp_path, migration5):
    with pytest.raises(PanelError, match="is a directory, not a panel file"):
        load_panel(tmp_path, migration5)


def test_corrupt_parquet(tmp_path, migration5):
    path = tmp_path / "panel.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(PanelError) as info:
        load_panel(path, migration5)
    assert str(info.value).startswith(f"{path}: cannot read as Parquet: ")


def test_counts_table_is_not_a_panel(write_panel, migration5):
    path = write_panel("from,to,interval,count\nabroad,transit,1,3\n")
    with pytest.raises(PanelError, match="is an aggregated-counts table"):
        load_panel(path, migration5)


def test_panel_errors_are_input_errors():
    assert issubclass(PanelError, InputError)


def test_parquet_infinite_and_missing_time(write_panel, migration5):
    frame = pd.DataFrame({"id": [1, 1], "time": [2022.7, np.inf], "state": ["abroad", "transit"]})
    with pytest.raises(PanelError) as info:
        load_panel(write_panel(frame, name="inf.parquet"), migration5)
    assert (info.value.row, info.value.column) == (2, "time")
    assert "time is not finite" in info.value.message
    frame["time"] = [2022.7, np.nan]
    with pytest.raises(PanelError) as info:
        load_panel(write_panel(frame, name="nan.parquet"), migration5)
    assert (info.value.row, info.value.message) == (2, "missing time")


# -- good input --------------------------------------------------------------------------


def test_small_panel(small_panel, migration5):
    panel = load_panel(small_panel, migration5)
    assert panel.n_rows == 10
    assert panel.n_single == 1  # r4 is observed once
    assert panel.n_respondents == 3
    assert panel.notes == ["dropped 1 respondents observed only once"]
    assert panel.path == str(small_panel)
    assert len(panel.sha256) == 64
    d = panel.data
    assert list(d.columns) == ["id", "time", "state", "weight", "row"]
    assert d["id"].tolist() == ["r1"] * 3 + ["r2"] * 3 + ["r3"] * 3
    assert d["row"].tolist() == list(range(1, 10))
    assert (d["weight"] == 1.0).all()
    names = [migration5.states[i] for i in d["state"]]
    assert names[:3] == ["abroad", "transit", "returned"]
    table = panel.state_table()
    assert table.loc["abroad", "transit"] == 1
    assert table.loc["swing", "swing"] == 1
    assert table.to_numpy().sum() == 6


def test_unsorted_rows_are_sorted_and_noted(write_panel, migration5):
    path = write_panel(
        "id,time,state\n2,2023.5,abroad\n1,2023.5,transit\n2,2022.7,abroad\n1,2022.7,abroad\n"
    )
    panel = load_panel(path, migration5)
    assert panel.notes == ["rows were not sorted by respondent and time: sorted them"]
    # Respondents keep their order of first appearance; times ascend within each.
    assert panel.data["id"].tolist() == ["2", "2", "1", "1"]
    assert panel.data["time"].tolist() == [2022.7, 2023.5, 2022.7, 2023.5]
    # The original file rows are kept for messages.
    assert panel.data["row"].tolist() == [3, 1, 4, 2]
    pairs = panel.pairs()
    assert pairs["id"].tolist() == ["2", "1"]
    assert pairs["from"].tolist() == [0, 0] and pairs["to"].tolist() == [0, 1]


def test_numeric_ids_in_numeric_order_are_not_resorted(write_panel, migration5):
    rows = "".join(f"{i},{t},abroad\n" for i in (1, 2, 10) for t in (2022.7, 2023.5))
    panel = load_panel(write_panel("id,time,state\n" + rows), migration5)
    assert not any("sorted" in n for n in panel.notes)
    assert panel.data["id"].tolist() == ["1", "1", "2", "2", "10", "10"]


def test_sorted_rows_have_no_note(small_panel, migration5):
    assert not any("sorted" in n for n in load_panel(small_panel, migration5).notes)


def test_identical_duplicates_are_removed_and_noted(write_panel, migration5):
    path = write_panel("id,time,state\n1,2022.7,abroad\n1,2022.7,abroad\n1,2023.7,abroad\n")
    panel = load_panel(path, migration5)
    assert panel.notes == ["removed 1 duplicate rows (same respondent, time and state)"]
    assert panel.data["row"].tolist() == [1, 3]


def test_single_observations_dropped_and_counted(write_panel, migration5):
    path = write_panel(
        "id,time,state\n1,2022.7,abroad\n2,2022.7,swing\n2,2023.5,swing\n3,2023.5,returned\n"
    )
    panel = load_panel(path, migration5)
    assert panel.n_single == 2
    assert panel.n_rows == 4
    assert panel.n_respondents == 1
    assert "dropped 2 respondents observed only once" in panel.notes
    assert set(panel.data["id"]) == {"2"}


def test_iso_dates_become_decimal_years(write_panel, migration5):
    path = write_panel(
        "id,time,state\n1,2023-01-01,abroad\n1,2023-07-02,transit\n1,2024-07-02,swing\n"
    )
    t = load_panel(path, migration5).data["time"].to_numpy()
    assert t[0] == 2023.0
    assert t[1] == pytest.approx(2023.5, abs=0.002)
    assert t[1] == pytest.approx(date_to_years(date(2023, 7, 2)), abs=1e-12)
    assert t[2] == pytest.approx(date_to_years(date(2024, 7, 2)), abs=1e-12)  # leap year


def test_iso_datetimes_and_month_unit(write_panel):
    spec = parse_spec('time_unit = "months"\n' + TWO_STATE)
    path = write_panel("id,time,state\n1,2023-01-01T00:00,a\n1,2023-07-02T12:00:00,b\n")
    t = load_panel(path, spec).data["time"].to_numpy()
    expected = (2023 + (182 + 0.5) / 365) * 12
    assert t[1] == pytest.approx(expected, abs=1e-9)


def test_parquet_dates(write_panel, migration5):
    frame = pd.DataFrame(
        {
            "id": [1, 1],
            "time": pd.to_datetime(["2023-01-01", "2023-07-02"]),
            "state": ["abroad", "transit"],
        }
    )
    t = load_panel(write_panel(frame, name="dates.parquet"), migration5).data["time"].to_numpy()
    assert t[1] == pytest.approx(date_to_years(date(2023, 7, 2)), abs=1e-12)


def test_integer_state_codes(write_panel):
    spec = parse_spec(CODES)
    panel = load_panel(write_panel("id,time,state\n1,0,1\n1,1,2\n1,2,3\n"), spec)
    assert panel.data["state"].tolist() == [0, 1, 2]


def test_state_code_table_and_remapped_columns(write_panel):
    spec = parse_spec(REMAPPED)
    panel = load_panel(write_panel("PTNUM,years,where\n7,0,10\n7,1.5,20\n7,2,30\n"), spec)
    assert panel.data["id"].tolist() == ["7"] * 3
    assert panel.data["time"].tolist() == [0.0, 1.5, 2.0]
    assert [spec.states[i] for i in panel.data["state"]] == ["well", "ill", "dead"]


def test_parquet_input(write_panel, migration5, small_panel_rows):
    csv = load_panel(write_panel(small_panel_rows), migration5)
    parquet = load_panel(write_panel(small_panel_rows, name="panel.parquet"), migration5)
    pd.testing.assert_frame_equal(csv.data, parquet.data)
    assert parquet.n_single == 1


def test_parquet_integer_codes(write_panel):
    frame = pd.DataFrame({"id": [5, 5, 5], "time": [0.0, 1.0, 2.5], "state": [1, 2, 1]})
    panel = load_panel(write_panel(frame, name="p.parquet"), parse_spec(CODES))
    assert panel.data["state"].tolist() == [0, 1, 0]
    assert panel.data["id"].tolist() == ["5"] * 3


def test_tab_separated(write_panel, migration5):
    path = write_panel("id\ttime\tstate\n1\t2022.7\tabroad\n1\t2023.5\ttransit\n", name="p.tsv")
    assert load_panel(path, migration5).data["state"].tolist() == [0, 1]


def test_discrete_model_whole_steps(write_panel):
    spec = parse_spec(DISCRETE)
    panel = load_panel(write_panel("id,time,state\n1,1,a\n1,2,b\n1,4,a\n"), spec)
    agg = aggregate(panel, spec)
    assert agg.resolution == 1.0
    assert sorted(agg.table["interval"]) == [1.0, 2.0]


def test_weights_are_kept(write_panel):
    spec = parse_spec(WEIGHTED)
    panel = load_panel(
        write_panel("id,time,state,w\n1,0,a,2.5\n1,1,b,2.5\n2,0,b,0.5\n2,1,b,0.5\n"), spec
    )
    assert panel.data["weight"].tolist() == [2.5, 2.5, 0.5, 0.5]


def test_covariate_and_group_columns_are_carried(write_panel):
    spec = parse_spec(COVARIATES)
    path = write_panel(
        "id,time,state,sex,host,extra\n1,0,a,f,GE,x\n1,1,b,f,GE,x\n2,0,a,m,TR,y\n2,2,a,m,TR,y\n"
    )
    panel = load_panel(path, spec)
    assert list(panel.data.columns) == ["id", "time", "state", "weight", "row", "sex", "host"]
    pairs = panel.pairs()
    assert pairs["sex"].tolist() == ["f", "m"] and pairs["host"].tolist() == ["GE", "TR"]


def test_reachable_is_the_transitive_closure():
    spec = parse_spec(
        'states = ["a", "b", "c", "d"]\n[transitions]\na = ["b"]\nb = ["c"]\nd = ["a"]\n'
    )
    expected = np.array(
        [
            [1, 1, 1, 0],
            [0, 1, 1, 0],
            [0, 0, 1, 0],
            [1, 1, 1, 1],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(reachable(spec), expected)


# -- aggregation ---------------------------------------------------------------------------


def reference_counts(frame: pd.DataFrame, resolution: float) -> dict:
    """Independent aggregation: loop over respondents, count (from, to, ticks) with weights."""
    counts: dict = defaultdict(float)
    for _, g in frame.sort_values(["id", "time"]).groupby("id"):
        rows = list(g.itertuples(index=False))
        for a, b in zip(rows, rows[1:], strict=False):
            ticks = int(round((b.time - a.time) / resolution))
            counts[(a.state, b.state, ticks)] += a.w
    return dict(counts)


def test_aggregation_matches_an_independent_count(write_panel):
    rng = np.random.default_rng(7)
    spec = parse_spec(
        'states = ["a", "b", "c"]\n[transitions]\na = ["b", "c"]\nb = ["a", "c"]\nc = ["a", "b"]\n'
        '[data]\nweight = "w"\nresolution = 0.25\n'
    )
    rows = []
    for i in range(60):
        n_obs = rng.integers(1, 5)
        times = np.sort(rng.choice(np.arange(0, 5, 0.25), size=n_obs, replace=False))
        weight = float(rng.choice([0.5, 1.0, 2.0]))
        for t in times:
            rows.append((f"p{i}", float(t), str(rng.choice(list("abc"))), weight))
    frame = pd.DataFrame(rows, columns=["id", "time", "state", "w"])
    panel = load_panel(write_panel(frame.sample(frac=1.0, random_state=1)), spec)
    agg = aggregate(panel, spec)
    got = {
        (spec.states[r.from_], spec.states[r.to], int(round(r.interval / 0.25))): r.count
        for r in agg.table.rename(columns={"from": "from_"}).itertuples(index=False)
    }
    assert got == pytest.approx(reference_counts(frame, 0.25))
    assert agg.weighted is True
    assert agg.n_respondents == panel.n_respondents
    pairs = sum(len(g) - 1 for _, g in frame.groupby("id"))
    assert len(panel.pairs()) == pairs


def test_counts_sum_to_the_number_of_pairs(small_panel, migration5):
    panel = load_panel(small_panel, migration5)
    agg = aggregate(panel, migration5)
    assert agg.n_transitions == 6.0 == len(panel.pairs())
    assert agg.weighted is False
    assert list(agg.table.columns) == list(COUNT_COLUMNS)
    assert agg.states == migration5.states
    assert agg.source == str(small_panel) and agg.sha256 == panel.sha256


def test_weighted_counts_sum_to_the_weights(write_panel):
    spec = parse_spec(WEIGHTED)
    path = write_panel("id,time,state,w\n1,0,a,2.5\n1,1,b,2.5\n1,2,a,2.5\n2,0,b,0.5\n2,1,b,0.5\n")
    agg = aggregate(load_panel(path, spec), spec)
    assert agg.n_transitions == pytest.approx(2 * 2.5 + 0.5)
    assert agg.weighted is True


def test_unit_weights_are_not_flagged_as_weighted(write_panel):
    spec = parse_spec(WEIGHTED)
    agg = aggregate(load_panel(write_panel("id,time,state,w\n1,0,a,1\n1,1,b,1\n"), spec), spec)
    assert agg.weighted is False


def test_floating_noise_in_gaps_merges(write_panel):
    spec = parse_spec(TWO_STATE)
    path = write_panel("id,time,state\n1,0,a\n1,0.5,b\n2,1e-9,a\n2,0.5,b\n3,0,a\n3,0.500000001,b\n")
    agg = aggregate(load_panel(path, spec), spec)
    assert len(agg.table) == 1
    assert agg.table["count"].iloc[0] == 3.0
    # Rounded to whole days: 0.5 years = 182.625 days -> 183 days.
    assert agg.intervals == pytest.approx([183 / 365.25])


def test_gaps_two_days_apart_stay_distinct(write_panel):
    spec = parse_spec(TWO_STATE)
    two_days = 2 / 365.25
    path = write_panel(f"id,time,state\n1,0,a\n1,1,b\n2,0,a\n2,{1 + two_days!r},b\n")
    agg = aggregate(load_panel(path, spec), spec)
    assert len(agg.intervals) == 2
    assert np.diff(agg.intervals) == pytest.approx([two_days])


def test_custom_resolution_from_the_model_file(write_panel):
    spec = parse_spec(TWO_STATE + "[data]\nresolution = 0.25\n")
    path = write_panel("id,time,state\n1,0,a\n1,0.9,b\n2,0,a\n2,1.1,b\n3,0,a\n3,1.4,a\n")
    agg = aggregate(load_panel(path, spec), spec)
    assert agg.resolution == 0.25
    assert agg.intervals.tolist() == [1.0, 1.5]
    assert agg.table.loc[agg.table["to"] == 1, "count"].tolist() == [2.0]


def test_resolution_argument_overrides_the_model(small_panel, migration5):
    panel = load_panel(small_panel, migration5)
    agg = aggregate(panel, migration5, resolution=0.5)
    assert agg.resolution == 0.5
    assert agg.intervals.tolist() == [1.0]  # gaps 0.85 and 1.0 -> 1.0


def test_coarse_resolution_cannot_make_a_zero_gap(write_panel):
    spec = parse_spec(TWO_STATE)
    panel = load_panel(write_panel("id,time,state\n1,0,a\n1,0.2,b\n"), spec)
    with pytest.raises(PanelError, match="gap shorter than the resolution 1"):
        aggregate(panel, spec, resolution=1.0)


def test_aggregation_keys_include_covariates_and_groups(write_panel):
    spec = parse_spec(COVARIATES)
    path = write_panel(
        "id,time,state,sex,host\n1,0,a,f,GE\n1,1,b,f,GE\n2,0,a,m,GE\n2,1,b,m,GE\n3,0,a,f,GE\n3,1,b,f,GE\n"
    )
    table = aggregate(load_panel(path, spec), spec).table
    assert list(table.columns) == [*COUNT_COLUMNS, "sex", "host"]
    assert sorted(zip(table["sex"], table["count"], strict=True)) == [("f", 2.0), ("m", 1.0)]


def test_counts_table_is_accepted_and_aggregated(write_panel):
    spec = parse_spec(ILLNESS_DEATH)
    path = write_panel(
        "from,to,interval,count\n"
        "well,ill,1,5\n"
        "well,ill,1.0000001,2\n"  # floating noise: same interval
        "well,well,1,3\n"
        "ill,dead,0.5,0\n"  # zero counts are dropped
        "well,dead,2,1.5\n"  # weighted counts may be fractional
    )
    panel, agg = load_data(path, spec)
    assert panel is None
    assert agg.n_respondents is None and agg.weighted is False
    day = 1 / 365.25
    rows = {
        (spec.states[f], spec.states[t], round(i / day)): c
        for f, t, i, c in agg.table[list(COUNT_COLUMNS)].itertuples(index=False)
    }
    assert rows == {
        ("well", "well", 365): 3.0,
        ("well", "ill", 365): 7.0,
        ("well", "dead", 730): 1.5,
    }
    assert agg.n_transitions == 11.5
    assert agg.resolution == day


def test_counts_table_with_codes(write_panel):
    spec = parse_spec(CODES)
    agg = load_counts(write_panel("from,to,interval,count\n1,2,1,4\n"), spec)
    assert (agg.table["from"].iloc[0], agg.table["to"].iloc[0]) == (0, 1)


def test_load_data_dispatches_to_the_panel(small_panel, migration5):
    panel, agg = load_data(small_panel, migration5)
    assert panel is not None and panel.n_respondents == 3
    assert agg.n_respondents == 3
    assert agg.n_transitions == 6.0


def test_panel_with_count_like_columns_stays_a_panel(write_panel):
    # A long-format panel that happens to have from/to/interval/count columns is still a panel.
    spec = parse_spec(TWO_STATE)
    path = write_panel("id,time,state,from,to,interval,count\n1,0,a,x,y,1,1\n1,1,b,x,y,1,1\n")
    panel, agg = load_data(path, spec)
    assert panel is not None
    assert agg.n_transitions == 1.0


def test_aggregated_intervals_are_multiples_of_the_resolution(small_panel, migration5):
    agg = aggregate(load_panel(small_panel, migration5), migration5)
    ticks = agg.intervals / migration5.resolution
    np.testing.assert_allclose(ticks, np.round(ticks), rtol=0, atol=1e-9)
    # 2022.70 -> 2023.55: 0.85 years = 310.46 days -> 310; 2023.55 -> 2024.55: 365.25 days -> 365.
    assert np.round(ticks).tolist() == [310.0, 365.0]
    assert math.isclose(agg.intervals[1], 365 / 365.25)

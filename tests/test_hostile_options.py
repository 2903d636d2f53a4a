"""Hostile values of every numeric option of every command (issue 11).

Table-driven: for each command and each of its numeric options, the values a hostile
user tries (0, negative, huge, beyond int64, NaN, infinities, text, empty) must end
the command with exit 0, 1 or 2, at most a few lines on stderr and never a
traceback; a value outside the option's documented range must be refused up front
(exit 2, one line naming the option, nothing written). Hypothesis then throws random
values at the float options. Fits are fake (``markov_migration.testing``) and
``sample`` is replaced, so nothing here runs MCMC; the discrete-time likelihood check
at the end compiles a PyMC model but does not sample.

Kinds of cases and how they are handled (also in docs/cli.md):

- outside an option's range, NaN, infinity where meaningless, text: Click refuses
  it before the command runs (one line with the option and its range, exit 2);
- inside the range but too large for memory (``fit --draws``/``--chains``): refused
  before compiling, with the estimated size (exit 2);
- a request beyond floating point (``summarize --what pmatrix --t 1e300``): the
  result is checked before it is printed and refused (exit 2);
- valid: exit 0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.fitfile.format import read_fit, write_fit
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.testing import fake_fit
from tests.test_cli_results import THREE

runner = CliRunner()

#: The values tried for every numeric option (as typed on the command line).
HOSTILE = {
    "zero": "0",
    "negative": "-1",
    "huge": "99999999999999999999999",
    "float_huge": "1e308",
    "nan": "nan",
    "inf": "inf",
    "-inf": "-inf",
    "text": "abc",
    "empty": "",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    spec = parse_spec(THREE)
    model = folder / "three.toml"
    model.write_text(THREE)
    panel = simulate_panel(spec, 200, seed=5)
    panel_csv = folder / "panel.csv"
    panel.to_csv(panel_csv, index=False)
    fit = write_fit(fake_fit(spec, panel, chains=2, draws=100, seed=1), folder / "fit.nc")
    return {"dir": folder, "spec": spec, "model": model, "panel": panel, "csv": panel_csv,
            "fit": fit}  # fmt: skip


@pytest.fixture
def no_sampling(monkeypatch, files):
    """``fit`` and ``reproduce`` get a fake fit instead of sampling."""
    import markov_migration.inference.fit as fit_module
    import markov_migration.inference.model  # noqa: F401  (PyMC raises the recursion limit
    # on import: done here, not inside a hypothesis example, which warns about it)

    def fake_sample(spec, agg, settings=None, **kwargs):
        settings.check()
        return fake_fit(spec, files["panel"], chains=settings.chains, draws=5, seed=1)

    monkeypatch.setattr(fit_module, "sample", fake_sample)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean(result, refused: bool | None):
    """Exit 0/1/2, no traceback, at most a few stderr lines; ``refused``: exactly one line, 2."""
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stderr, result.exception)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stderr.count("\n") <= 3, result.stderr
    if refused is True:
        assert result.exit_code == 2, result.stdout
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    elif refused is False:
        assert result.exit_code in (0, 1), result.stderr


# (command, option, base arguments, valid values (documented range) as a predicate)
def _int_range(lo, hi=None):
    def ok(text):
        try:
            v = int(text)
        except ValueError:
            return False
        return v >= lo and (hi is None or v <= hi)

    return ok


def _float_range(lo=None, hi=None, lo_open=False, hi_open=False, allow_inf=False):
    def ok(text):
        try:
            v = float(text)
        except ValueError:
            return False
        if math.isnan(v) or (math.isinf(v) and not (allow_inf and v > 0)):
            return False
        if math.isinf(v):
            return True
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return False
        return hi is None or (v < hi if hi_open else v <= hi)

    return ok


SEED = _int_range(0, 2**32 - 1)

OPTIONS = [
    # command, option, extra arguments, predicate of valid values
    ("simulate", "--n", [], _int_range(1, 10**7)),
    ("simulate", "--seed", [], SEED),
    ("simulate", "--attrition", [], _float_range(0.0, 0.99)),
    ("fit", "--chains", [], _int_range(1, 256)),
    ("fit", "--draws", [], _int_range(1, 10**7)),
    ("fit", "--tune", [], _int_range(1, 10**7)),  # nutpie needs a warm-up
    ("fit", "--seed", [], SEED),
    ("fit", "--cores", [], _int_range(1, 256)),
    ("fit", "--target-accept", [], _float_range(0.0, 1.0, lo_open=True, hi_open=True)),
    ("summarize", "--t", ["--what", "pmatrix"], _float_range(0.0)),
    ("summarize", "--t", ["--what", "leave"], _float_range(0.0, lo_open=True)),
    ("summarize", "--ci", [], _float_range(0.0, 1.0, lo_open=True, hi_open=True)),
    (
        "summarize",
        "--horizon",
        ["--what", "totlos"],
        _float_range(0.0, lo_open=True, allow_inf=True),
    ),  # fmt: skip
    ("summarize", "--seed", [], SEED),
    ("check", "--draws", [], _int_range(1, 10**7)),
    ("check", "--seed", [], SEED),
    ("check", "--ci", [], _float_range(0.0, 1.0, lo_open=True, hi_open=True)),
    ("reproduce", "--seed", [], SEED),
]


def _command_args(command, files, tmp_path):
    if command == "simulate":
        return ["simulate", "--model", files["model"], "--out", tmp_path / "sim.csv", "--n", "50"]
    if command == "fit":
        return ["fit", files["csv"], "--model", files["model"], "--out", tmp_path / "f.nc", "-q"]
    if command == "reproduce":
        return ["reproduce", files["fit"], "-q"]
    return [command, files["fit"]]


CASES = [
    pytest.param(command, option, extra, kind, value, ok(value), id=f"{command}{option}-{kind}")
    for command, option, extra, ok in OPTIONS
    for kind, value in HOSTILE.items()
]


@pytest.mark.parametrize(("command", "option", "extra", "kind", "value", "valid"), CASES)
def test_numeric_option(files, no_sampling, tmp_path, command, option, extra, kind, value, valid):
    args = _command_args(command, files, tmp_path)
    if option in args:  # replace the base value
        i = args.index(option)
        del args[i : i + 2]
    result = invoke(*args, *extra, option, value)
    # a fake fit records sampler 'fake', which reproduce refuses: valid seeds end there
    refused = True if not valid else (None if command in ("reproduce", "check") else False)
    if valid and kind == "float_huge":  # e.g. a totlos horizon of 1e308: beyond floating point
        refused = None
    assert_clean(result, refused)
    if not valid:
        assert option in result.stderr or option.lstrip("-") in result.stderr, result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused run wrote files"


def test_help_shows_every_range():
    """Every numeric option's --help shows its range (Click's ``[..<=x<=..]`` or ours)."""
    for command, option, _, _ in OPTIONS:
        text = " ".join(invoke(command, "--help").stdout.split())
        start = text.index(option + " ")
        assert "x" in text[start : start + 400] and "<" in text[start : start + 400], (
            command,
            option,
        )


def test_cli_bounds_match_the_settings_check():
    """The command line's bounds are those FitSettings.check enforces (API and reproduce)."""
    from markov_migration.cli import _common
    from markov_migration.inference.fit import MAX_SIZE, SEED_MAX

    assert _common.SEED_MAX == SEED_MAX
    assert _common.MAX_DRAWS == MAX_SIZE["draws"] == MAX_SIZE["tune"]
    assert _common.MAX_CHAINS == MAX_SIZE["chains"]


# -- sizes bounded by memory, before sampling ----------------------------------------------


def test_fit_draws_bounded_by_memory(files, no_sampling, tmp_path):
    result = invoke(
        "fit", files["csv"], "--model", files["model"], "--out", tmp_path / "f.nc",
        "--draws", "10000000", "--chains", "256",
    )  # fmt: skip
    assert_clean(result, True)
    assert "--draws or --chains" in result.stderr and "available" in result.stderr
    assert not (tmp_path / "f.nc").exists()


def test_memory_estimate_counts_posterior_and_loglik(files):
    """8 bytes x (3T rates + K^2 Q + rows of log-likelihood + stats) per draw and chain.

    3T: the free ``log_rate_direct`` (this model's ``default`` gives every transition its
    own prior), ``log_rate`` and ``rate``.
    """
    from markov_migration.errors import InputError
    from markov_migration.inference.model import check_memory, floats_per_draw
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.panel import validate_panel

    spec = files["spec"]
    agg = aggregate(validate_panel(files["panel"], spec, path="<p>", sha256="0" * 64), spec)
    per = floats_per_draw(spec, agg)
    assert spec.exit_priors == () and len(spec.priors) == len(spec.transitions)
    assert per == 3 * len(spec.transitions) + 9 + len(agg.table) + 16
    assert check_memory(spec, agg, 4, 1000, available=10**12) == 8 * per * 4000
    with pytest.raises(InputError, match="need about"):
        check_memory(spec, agg, 4, 1000, available=3 * 8 * per * 4000 - 1)


# -- reproduce refuses settings it cannot honour --------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"draws": 10**12}, "draws must be at most"),
        ({"chains": 10**12}, "chains must be at most"),
        ({"tune": 0}, "tune must be at least 1 with nutpie"),
        ({"seed": -5}, "seed must be between 0"),
        ({"sampler": "gibbs"}, "sampler 'gibbs', which cannot be re-run"),
    ],
)
def test_reproduce_refuses_recorded_settings(files, tmp_path, monkeypatch, change, message):
    import json

    import markov_migration.inference.fit as fit_module
    import markov_migration.inference.model as model_module

    def boom(*args, **kwargs):
        raise AssertionError("sampled although the settings cannot be honoured")

    monkeypatch.setattr(fit_module, "sample", boom)
    monkeypatch.setattr(model_module, "build_model", boom)
    tree = read_fit(files["fit"])
    record = json.loads(tree.attrs["sampler_settings"])
    record.update(sampler="nutpie", tune=100, draws=100, chains=2)
    record.update(change)
    tree.attrs = {**tree.attrs, "sampler_settings": json.dumps(record),
                  "sampler": record["sampler"], "seed": record["seed"]}  # fmt: skip
    path = write_fit(tree, tmp_path / "absurd.nc")
    result = invoke("reproduce", path, "-q")
    assert_clean(result, True)
    assert message in result.stderr and str(path) in result.stderr


# -- results checked before they are printed -----------------------------------------------


def test_pmatrix_beyond_floating_point_refused(tmp_path):
    """A fit with fast intensities at t = 1e16: refused, not 'probabilities' above 1."""
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import resolve_model

    spec = load_spec(resolve_model("migration5"))
    fit = write_fit(fake_fit(spec, simulate_panel(spec, 200, seed=3)), tmp_path / "m5.nc")
    result = invoke("summarize", fit, "--what", "pmatrix", "--t", "1e16")
    assert_clean(result, True)
    assert "beyond floating point" in result.stderr
    ok = invoke("summarize", fit, "--what", "pmatrix", "--t", "5", "--format", "csv")
    assert ok.exit_code == 0
    frame = pd.read_csv(__import__("io").StringIO(ok.stdout))
    assert frame[["mean", "lower", "upper"]].to_numpy().max() <= 1 + 1e-9
    assert frame[["mean", "lower", "upper"]].to_numpy().min() >= -1e-12
    # (the CSV has 6 significant digits)
    np.testing.assert_allclose(frame.groupby("from")["mean"].sum(), 1.0, atol=1e-5)


def test_probabilities_outside_unit_interval_refused(files):
    from markov_migration.errors import InputError
    from markov_migration.results.quantities import pmatrix
    from markov_migration.results.summaries import check_probabilities

    tree = read_fit(files["fit"])
    draws = pmatrix(tree, 1.0)
    check_probabilities(draws, tree, 1.0)  # a valid P(t) passes
    bad = draws.copy()
    bad[0, 0, 0, 0] = 1.5
    with pytest.raises(InputError, match="not a valid probability"):
        check_probabilities(bad, tree, 1.0)
    bad = draws.copy()
    bad[0, 0, 0, :] *= 0.5  # in [0, 1] but the row sums to 0.5
    with pytest.raises(InputError, match="not a valid probability"):
        check_probabilities(bad, tree, 1.0)


def test_json_is_strict(files):
    """JSON output never holds NaN or Infinity (an sd of one draw is null)."""
    import json

    from markov_migration.results.summaries import summarize, to_json

    tree = read_fit(files["fit"])
    tree = tree.isel(draw=slice(0, 1), chain=slice(0, 1))  # one draw: sd is NaN
    text = to_json(summarize(tree, "qmatrix"))
    record = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert all(row["sd"] is None for row in record["rows"])
    result = invoke("summarize", files["fit"], "--what", "totlos", "--horizon", "inf", "-f", "json")
    assert result.exit_code == 0
    json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


# -- random values never give a traceback -----------------------------------------------------

_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.sampled_from(["nan", "inf", "-inf", "1e-320", "0x10", "1_000", " 3", "", "--"]),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    option=st.sampled_from(["--t", "--ci", "--horizon", "--seed"]),
    what=st.sampled_from(["pmatrix", "leave", "totlos", "sojourn"]),
    value=_NUMBERS,
)
def test_summarize_random_values(files, option, what, value):
    extra = ["--horizon", "2"] if what == "totlos" and option != "--horizon" else []
    result = invoke("summarize", files["fit"], "--what", what, *extra, option, str(value))
    assert_clean(result, None)
    if result.exit_code == 2:
        assert result.stderr.count("\n") == 1


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    option=st.sampled_from(
        ["--chains", "--draws", "--tune", "--seed", "--cores", "--target-accept"]
    ),
    value=_NUMBERS,
)
def test_fit_random_values(files, no_sampling, tmp_path_factory, option, value):
    out = tmp_path_factory.mktemp("fit") / "f.nc"
    result = invoke(
        "fit", files["csv"], "--model", files["model"], "--out", out, "-q", option, str(value)
    )
    assert_clean(result, None)
    if result.exit_code == 2:
        assert not out.exists()


# -- projection files are verified on reading ----------------------------------------------


@pytest.fixture(scope="module")
def projection(files):
    out = files["dir"] / "projection.nc"
    result = invoke(
        "project", files["fit"], "--out", out, "--start", "2024", "--horizon", "2030",
        "--initial", "a=1000,b=500", "--draws", "20", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out


def _tamper(ds):
    """Variants of a good projection dataset, each broken in one way, with the message."""
    import json

    out = {}
    bad = ds.copy(deep=True)
    bad["stock"] = bad["stock"].astype(float)
    bad["stock"][0, 1, 0] = np.nan
    out["nan stock"] = (bad, "variable 'stock' holds values that are not finite")
    bad = ds.copy(deep=True)
    bad["returnees"][0, 1] = -5
    out["negative"] = (bad, "variable 'returnees' holds negative numbers of persons")
    out["missing"] = (ds.drop_vars("diaspora"), "projection file has no variable 'diaspora'")
    bad = ds.copy(deep=True)
    bad.attrs["markov_migration_projection"] = 99
    out["newer"] = (bad, "projection format version 99 is newer")
    bad = ds.copy(deep=True)
    bad.attrs["markov_migration_projection"] = "one"
    out["version text"] = (bad, "projection format version 'one' is not a number")
    bad = ds.copy(deep=True)
    bad.attrs["states"] = "a, b"
    out["states not json"] = (bad, "attribute 'states' is not a JSON list")
    bad = ds.copy(deep=True)
    bad.attrs["states"] = json.dumps(["a", "b"])
    out["states wrong"] = (bad, "attribute 'states' does not list the file's states")
    bad = ds.copy(deep=True)
    bad = bad.assign_coords(time=bad["time"].values[::-1])
    out["times"] = (bad, "times are not finite and increasing")
    bad = ds.copy(deep=True)
    del bad.attrs["markov_migration_projection"]
    out["no marker"] = (bad, "not a markov-migration projection file")
    bad = ds.copy(deep=True)
    bad["stock"] = bad["stock"].transpose("time", "draw", "state")
    out["dims"] = (bad, "variable 'stock' has dims")
    return out


def test_projection_files_verified_on_reading(projection, files, tmp_path):
    from markov_migration.errors import InputError
    from markov_migration.projection.files import read_projection

    ds = read_projection(projection)  # a good file passes
    assert ds["stock"].sizes["draw"] == 20
    cases = _tamper(ds)
    for name, (bad, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.nc"
        bad.to_netcdf(path, engine="h5netcdf")
        with pytest.raises(InputError, match=message) as err:
            read_projection(path)
        assert str(path) in str(err.value), name
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(projection.read_bytes()[:2000])
    with pytest.raises(InputError, match="not a NetCDF projection file"):
        read_projection(truncated)
    with pytest.raises(InputError, match="not a"):  # a fit file is not a projection
        read_projection(files["fit"])


@pytest.mark.parametrize(
    ("draws", "seed", "message"),
    [
        (0, 0, "--draws must be a whole number >= 1"),
        (10**23, 0, "need about"),
        (10**8, 0, "need about"),
        (100, -1, "--seed must be a whole number from 0 to 2\\*\\*32-1"),
        (100, 10**23, "--seed must be a whole number from 0 to 2\\*\\*32-1"),
    ],
)
def test_projection_run_size_checked(draws, seed, message):
    """``project --draws/--seed``: checks for cli/project.py to call before running."""
    from markov_migration.errors import InputError
    from markov_migration.projection.plan import check_run_size

    with pytest.raises(InputError, match=message):
        check_run_size(draws, seed, n_times=7, n_states=5, available=16 * 2**30)
    check_run_size(1000, 2**32 - 1, n_times=7, n_states=5, available=16 * 2**30)


# -- options that take numbers inside text --------------------------------------------------

TEXT_CASES = [
    ("summarize", ["--what", "totlos", "--horizon", "2", "--start", "a=nan,b=1"]),
    ("summarize", ["--what", "totlos", "--horizon", "2", "--start", "a=-1,b=2"]),
    ("summarize", ["--what", "totlos", "--horizon", "2", "--start", "a=1e308,b=1e308"]),
    ("summarize", ["--what", "totlos", "--horizon", "2", "--start", "a=0,b=0"]),
    ("summarize", ["--what", "totlos", "--horizon", "2", "--start", "a=abc"]),
    ("summarize", ["--what", "passage", "--to", ""]),
    ("summarize", ["--period", "-1"]),
    ("summarize", ["--group", "nan"]),
    ("summarize", ["--covariate", "age=nan"]),
    ("summarize", ["--covariate", "=1"]),
    ("simulate", ["--waves", "nan,1"]),
    ("simulate", ["--waves", "0,inf"]),
    ("simulate", ["--waves", "1e308,-1e308"]),
    ("simulate", ["--waves", "abc"]),
    ("simulate", ["--waves", ""]),
    ("simulate", ["--n", "1e3"]),
    ("compare", []),  # one fit only
]


@pytest.mark.parametrize(("command", "extra"), TEXT_CASES)
def test_numbers_in_text_options(files, tmp_path, command, extra):
    result = invoke(*_command_args(command, files, tmp_path), *extra)
    assert_clean(result, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == []

"""Command line: help, version, ``validate``, ``simulate``, error style and lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from markov_migration import __version__
from markov_migration.cli.app import app
from markov_migration.inputs.panel import load_panel
from markov_migration.inputs.spec import load_spec

runner = CliRunner()

#: The console script of the environment running the tests.
SCRIPT = Path(sys.executable).with_name("markov-migration")


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def command_names() -> list[str]:
    return sorted(typer.main.get_command(app).commands)


def leftovers(folder: Path) -> list[str]:
    """Temporary files an interrupted or refused write might leave (".name.*.tmp")."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- help and version -------------------------------------------------------------------


def test_app_help():
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("simulate", "validate", "demo"):
        assert name in result.stdout
    assert "--version" in result.stdout and "--debug" in result.stdout


def test_the_data_commands_are_registered():
    assert {"simulate", "validate", "demo"} <= set(command_names())


@pytest.mark.parametrize("command", command_names())
def test_command_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert f"markov-migration {command}" in result.stdout
    assert result.stderr == ""


def test_simulate_help_shows_table_names():
    # Rich markup must not swallow "[rates]" and "[simulate]" in the help text.
    result = invoke("simulate", "--help")
    assert "([rates] table)" in result.stdout
    assert "[simulate]" in result.stdout
    for option in ("--out", "--model", "--n", "--waves", "--attrition", "--rates", "--seed",
                   "--force"):  # fmt: skip
        assert option in result.stdout


def test_validate_help_lists_its_options():
    result = invoke("validate", "--help")
    for option in ("--model", "--format"):
        assert option in result.stdout


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"markov-migration {__version__}\n"


def test_no_arguments_shows_help():
    result = invoke()
    assert "Usage: markov-migration" in result.output
    assert result.exit_code in (0, 2)


def test_unknown_command_is_a_usage_error():
    result = invoke("frobnicate")
    assert result.exit_code == 2
    assert result.stderr == "error: No such command 'frobnicate' (see markov-migration --help)\n"
    assert result.stdout == ""


# -- usage errors: exit 2 and one line on stderr, for every command -----------------------


def assert_one_usage_line(result, start: str, command: str | None = None) -> None:
    """Exit 2, nothing on stdout, exactly one stderr line: ``start`` ... ``(see ... --help)``."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert result.stderr.startswith(start), result.stderr
    path = "markov-migration" if command is None else f"markov-migration {command}"
    assert result.stderr.endswith(f" (see {path} --help)\n"), result.stderr
    assert "Usage:" not in result.stderr and "\u256d" not in result.stderr  # no rich box


@pytest.mark.parametrize("command", command_names())
def test_unknown_option_is_one_line_for_every_command(command):
    result = invoke(command, "--no-such-option")
    assert_one_usage_line(result, f"error: {command}: No such option: --no-such-option", command)


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--bogus"], "error: No such option: --bogus"),
        (["--debug"], "error: Missing command"),
    ],
)
def test_top_level_usage_errors_are_one_line(args, start):
    assert_one_usage_line(invoke(*args), start)


def test_validate_missing_argument_is_one_line():
    result = invoke("validate")
    assert_one_usage_line(result, "error: validate: Missing argument", "validate")
    assert "panel" in result.stderr.lower()


# -- validate --------------------------------------------------------------------------


def test_validate_good_panel_prints_the_transition_table(small_panel):
    result = invoke("validate", small_panel)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())  # rich wraps at the terminal width
    assert "Transitions between consecutive observations" in out
    assert "Observations by state" in out
    for state in ("abroad", "transit", "swing", "returned", "reemigrated"):
        assert state in out
    assert "10 rows, 3 respondents observed at least twice, 1 observed once (dropped)" in out
    assert "6 observed transitions" in out
    assert "note: dropped 1 respondents observed only once" in out
    assert "valid: no problems found" in out
    assert result.stderr == ""


def test_validate_json(small_panel):
    result = invoke("validate", small_panel, "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "panel"
    assert summary["file"] == str(small_panel)
    assert summary["model"] == "migration5"
    assert summary["rows"] == 10
    assert summary["respondents"] == 3
    assert summary["dropped_single"] == 1
    assert summary["n_transitions"] == 6.0
    assert summary["n_intervals"] == 2
    assert summary["time_unit"] == "years"
    assert summary["observations"] == {
        "abroad": 2,
        "transit": 1,
        "swing": 3,
        "returned": 2,
        "reemigrated": 1,
    }
    t = summary["transitions"]
    assert t["abroad"]["transit"] == 1.0
    assert t["transit"]["returned"] == 1.0
    assert t["swing"]["swing"] == 1.0
    assert t["swing"]["abroad"] == 1.0
    assert t["returned"]["reemigrated"] == 1.0
    assert t["reemigrated"]["swing"] == 1.0
    assert sum(sum(row.values()) for row in t.values()) == 6.0
    assert summary["notes"] == ["dropped 1 respondents observed only once"]


def test_validate_counts_table(write_panel, toy_model):
    path = write_panel("from,to,interval,count\nwell,ill,1,4\nwell,well,1,6\n", name="counts.csv")
    result = invoke("validate", path, "--model", toy_model, "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "counts"
    assert summary["n_transitions"] == 10.0
    assert summary["transitions"]["well"] == {"well": 6.0, "ill": 4.0, "dead": 0.0}
    assert "respondents" not in summary
    table = invoke("validate", path, "--model", toy_model)
    assert table.exit_code == 0 and "(counts," in table.stdout


def test_validate_bundled_model_by_name(small_panel):
    assert invoke("validate", small_panel, "-m", "migration5").exit_code == 0


def test_validate_bad_format(small_panel):
    result = invoke("validate", small_panel, "--format", "xml")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: validate: Invalid value for '--format': 'xml' is not one of 'table', 'json' "
        "(see markov-migration validate --help)\n"
    )


def test_validate_missing_model(small_panel, tmp_path):
    model = tmp_path / "nowhere.toml"
    result = invoke("validate", small_panel, "--model", model)
    assert result.exit_code == 2
    assert result.stderr == f"error: {model}: model file not found\n"


def test_validate_invalid_model_names_the_line(small_panel, write_model):
    model = write_model(
        """\
        states = ["abroad", "returned"]
        [transitions]
        abroad = ["returned"]
        returned = ["abroad", "returned"]
        """
    )
    result = invoke("validate", small_panel, "--model", model)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {model}, line 4: [transitions] returned: self-transition"
    )
    assert result.stderr.count("\n") == 1


def test_validate_missing_panel(tmp_path):
    result = invoke("validate", tmp_path / "none.csv")
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'none.csv'}: file not found\n"
    assert "Traceback" not in result.output


def test_messages_with_brackets_are_printed_verbatim(small_panel, write_model):
    # Rich markup must not eat "[priors]" in an error message.
    model = write_model(
        """\
        states = ["abroad", "returned"]
        [transitions]
        abroad = ["returned"]
        [priors]
        abroad = { rate = -1 }
        """
    )
    result = invoke("validate", small_panel, "--model", model)
    assert result.exit_code == 2
    assert "[priors] abroad.rate must be a positive number, got -1" in result.stderr


# -- simulate --------------------------------------------------------------------------


@pytest.fixture
def simulate_available():
    pytest.importorskip("markov_migration.inputs.simulate")


def test_simulate_refuses_an_existing_output(simulate_available, tmp_path):
    out = tmp_path / "panel.csv"
    out.write_text("precious\n")
    before = out.stat().st_mtime_ns
    result = invoke("simulate", "--out", out, "--n", "20")
    assert result.exit_code == 2
    assert result.stderr == f"error: {out}: output exists; use --force to overwrite it\n"
    assert out.read_text() == "precious\n"
    assert out.stat().st_mtime_ns == before
    assert leftovers(tmp_path) == []


def test_simulate_force_overwrites(simulate_available, tmp_path, migration5):
    out = tmp_path / "panel.csv"
    out.write_text("precious\n")
    result = invoke("simulate", "--out", out, "--n", "20", "--force")
    assert result.exit_code == 0, result.output
    assert load_panel(out, migration5).n_rows > 0
    assert leftovers(tmp_path) == []


def test_simulate_refuses_a_model_without_rates(simulate_available, tmp_path, write_model):
    model = write_model('states = ["a", "b"]\n[transitions]\na = ["b"]\n')
    out = tmp_path / "panel.csv"
    result = invoke("simulate", "--out", out, "--model", model, "--n", "20")
    assert result.exit_code == 2
    assert result.stderr == f"error: {model}: has no [rates] table of known intensities\n"
    assert not out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_simulate_writes_a_valid_panel(simulate_available, tmp_path, migration5, suffix):
    out = tmp_path / f"panel{suffix}"
    result = invoke("simulate", "--out", out, "--n", "40", "--seed", "3")
    assert result.exit_code == 0, result.output
    # Rich wraps long lines at the (test) terminal width: compare with whitespace collapsed.
    assert f"wrote {out}: 40 respondents" in " ".join(result.stdout.split())
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert {"id", "time", "state"} <= set(frame.columns)
    assert frame["id"].nunique() == 40
    assert set(frame["state"]) <= set(migration5.states)
    # The simulated panel passes validation against the model it came from.
    panel = load_panel(out, migration5)
    assert panel.n_rows == len(frame)
    assert leftovers(tmp_path) == []


def test_simulate_same_seed_same_panel(simulate_available, tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    assert invoke("simulate", "--out", a, "--n", "30", "--seed", "5").exit_code == 0
    assert invoke("simulate", "--out", b, "--n", "30", "--seed", "5").exit_code == 0
    assert invoke("simulate", "--out", c, "--n", "30", "--seed", "6").exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_simulate_waves_option(simulate_available, tmp_path, toy_model):
    out = tmp_path / "toy.csv"
    result = invoke(
        "simulate", "--out", out, "--model", toy_model, "--n", "25", "--waves", "0,1,2.5"
    )
    assert result.exit_code == 0, result.output
    panel = load_panel(out, load_spec(toy_model))
    assert panel.data["time"].between(-1, 3.5).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--waves", "1,x"], "--waves must be comma-separated numbers, got '1,x'"),
        (["--waves", "2024"], "--waves needs at least two increasing times"),
        (["--waves", "2024,2023"], "--waves needs at least two increasing times"),
    ],
)
def test_simulate_bad_waves(simulate_available, tmp_path, args, message):
    out = tmp_path / "panel.csv"
    result = invoke("simulate", "--out", out, "--n", "10", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {message}")
    assert result.stderr.count("\n") == 1
    assert not out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("model_text", "message"),
    [
        (
            'states = ["a", "b"]\n[transitions]\na = ["b"]\n[rates]\n"a->b" = 0.1\n'
            "[simulate]\nwave = [0, 1]\n",
            "line 7: [simulate]: unknown key 'wave'",
        ),
        (
            'states = ["a", "b"]\n[transitions]\na = ["c"]\n',
            "line 3: [transitions] a: 'c' is not a declared state",
        ),
        ('states = ["a", "b"]\n[transitions\n', "line 2: TOML syntax error"),
    ],
)
def test_simulate_bad_model_writes_nothing(
    simulate_available, tmp_path, write_model, model_text, message
):
    model = write_model(model_text)
    out = tmp_path / "panel.csv"
    result = invoke("simulate", "--out", out, "--model", model, "--n", "10")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {model}, {message}")
    assert result.stderr.count("\n") == 1
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_simulate_missing_model_writes_nothing(simulate_available, tmp_path):
    out, model = tmp_path / "panel.csv", tmp_path / "nowhere.toml"
    result = invoke("simulate", "--out", out, "--model", model, "--n", "10")
    assert result.exit_code == 2
    assert result.stderr == f"error: {model}: model file not found\n"
    assert not out.exists()
    assert leftovers(tmp_path) == []


# -- simulate --rates ------------------------------------------------------------------


def test_simulate_rates_file_replaces_the_models_rates(simulate_available, tmp_path, toy_model):
    # Only "well->dead", and fast: everyone is dead by the second wave and nobody is ever
    # ill (the model's own "well->ill" = 0.3 is replaced, not merged).
    rates = tmp_path / "rates.toml"
    rates.write_text('[rates]\n"well->dead" = 50.0\n')
    out = tmp_path / "panel.csv"
    args = ["simulate", "--out", out, "--model", toy_model, "--n", "50", "--seed", "1"]
    result = invoke(*args, "--rates", rates)
    assert result.exit_code == 0, result.output
    assert f"(model toy, rates {rates}, seed 1)" in " ".join(result.stdout.split())
    frame = pd.read_csv(out)
    assert "ill" not in set(frame["state"])
    later = frame[frame.groupby("id").cumcount() > 0]
    assert len(later) > 0 and set(later["state"]) == {"dead"}
    # The same as the Python API with the same rates; different from the model's rates.
    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.inputs.spec import load_rates

    spec = load_spec(toy_model)
    api = simulate_panel(spec, 50, seed=1, rates=load_rates(rates, spec))
    pd.testing.assert_frame_equal(frame, api, check_exact=False, atol=1e-6)
    plain = tmp_path / "plain.csv"
    assert invoke(*[plain if a == out else a for a in args]).exit_code == 0
    assert plain.read_bytes() != out.read_bytes()


@pytest.mark.parametrize(
    ("rates_text", "message"),
    [
        (None, "rates file not found"),
        ('[rates]\n"well->ill" = \n', "line 2: TOML syntax error: "),
        ('[rates]\n"well->moon" = 0.1\n', "line 2: [rates]: 'moon' is not a declared state"),
        ('[rates]\n"well>ill" = 0.1\n', "line 2: [rates]: 'well>ill' is not a transition"),
        (
            '[rates]\n"well->ill" = 0.1\n"dead->well" = 0.1\n',
            "line 3: [rates]: 'dead->well' is not an allowed transition in the model's "
            "[transitions] (",
        ),
        ('[rates]\n"well->ill" = -0.1\n', "line 2: [rates] well->ill must not be negative"),
        ('[rates]\n"well->ill" = inf\n', "line 2: [rates] well->ill must be a finite number"),
        ('[rates]\n"well->ill" = nan\n', "line 2: [rates] well->ill must be a finite number"),
        ('[rates]\n"well->ill" = "fast"\n', "line 2: [rates] well->ill must be a finite"),
        ('"well->ill" = 0.1\n', "line 1: unknown top-level key 'well->ill'"),
        ("[rates]\n", "line 1: [rates] is empty"),
    ],
    ids=[
        "missing",
        "syntax",
        "unknown-state",
        "not-a-transition",
        "not-allowed",
        "negative",
        "inf",
        "nan",
        "text",
        "no-table",
        "empty",
    ],  # fmt: skip
)
def test_simulate_bad_rates_file(simulate_available, tmp_path, toy_model, rates_text, message):
    rates = tmp_path / "rates.toml"
    if rates_text is not None:
        rates.write_text(rates_text)
    out = tmp_path / "panel.csv"
    result = invoke("simulate", "--out", out, "--model", toy_model, "--n", "10", "--rates", rates)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {rates}{':' if rates_text is None else ','} ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_simulate_rates_folder_is_refused(simulate_available, tmp_path, toy_model):
    out = tmp_path / "panel.csv"
    result = invoke("simulate", "--out", out, "--model", toy_model, "--rates", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path}: cannot read rates file")
    assert result.stderr.count("\n") == 1
    assert not out.exists()


def test_simulate_bad_suffix(simulate_available, tmp_path):
    out = tmp_path / "panel.txt"
    result = invoke("simulate", "--out", out, "--n", "10")
    assert result.exit_code == 2
    assert result.stderr == f"error: {out}: output must end in .csv or .parquet\n"
    assert not out.exists()


def test_simulate_missing_output_folder(simulate_available, tmp_path):
    out = tmp_path / "no" / "such" / "panel.csv"
    result = invoke("simulate", "--out", out, "--n", "10")
    assert result.exit_code == 2
    assert "output folder" in result.stderr and "does not exist" in result.stderr
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (
            ["--n", "0"],
            "error: simulate: Invalid value for '--n': Input should be greater than or equal "
            "to 1, got 0",
        ),
        (
            ["--attrition", "1.5"],
            "error: simulate: Invalid value for '--attrition': Input should be less than or "
            "equal to 0.99, got 1.5",
        ),
        (["--n", "many"], "error: simulate: Invalid value for '--n': "),
        (["--bogus"], "error: simulate: No such option: --bogus"),
        (["--seed"], "error: simulate: Option '--seed' requires an argument"),
    ],
)
def test_simulate_usage_errors_are_one_line(tmp_path, args, start):
    out = tmp_path / "panel.csv"
    result = invoke("simulate", "--out", out, *args)
    assert_one_usage_line(result, start, "simulate")
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_simulate_requires_out(tmp_path):
    result = invoke("simulate", "--n", "10")
    assert_one_usage_line(result, "error: simulate: Missing option '--out'", "simulate")
    assert list(tmp_path.iterdir()) == []


# -- error style in a real process: one line, or a traceback with --debug ----------------


def run_script(*args: str, cwd: Path, columns: str = "200") -> subprocess.CompletedProcess:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    env = {**os.environ, "COLUMNS": columns}
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_bad_input_is_one_line_without_traceback(tmp_path):
    proc = run_script("validate", "missing.csv", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "error: missing.csv: file not found\n"
    assert proc.stdout == ""


@pytest.mark.parametrize("columns", ["200", "40"])
def test_usage_error_is_one_line_in_a_real_process(tmp_path, columns):
    # Also on a narrow terminal: the line is not wrapped and not boxed.
    proc = run_script("simulate", "--out", "panel.csv", "--n", "0", cwd=tmp_path, columns=columns)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: simulate: Invalid value for '--n': Input should be greater than or equal to 1, "
        "got 0 (see markov-migration simulate --help)\n"
    )
    assert proc.stdout == ""
    assert not (tmp_path / "panel.csv").exists()


def test_unknown_command_is_one_line_in_a_real_process(tmp_path):
    proc = run_script("frobnicate", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "error: No such command 'frobnicate' (see markov-migration --help)\n"


def test_overflowing_time_is_one_line_in_a_real_process(tmp_path):
    # 1e308 / resolution overflows: no RuntimeWarning may precede the error line.
    (tmp_path / "huge.csv").write_text("id,time,state\n1,2022.7,abroad\n1,1e308,abroad\n")
    proc = run_script("validate", "huge.csv", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: huge.csv, row 2, column 'time': time 1e+308 is too large: intervals would "
        "overflow at a resolution of 0.00273785 years\n"
    )


def test_help_and_version_in_a_real_process(tmp_path):
    version = run_script("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout, version.stderr) == (
        0, f"markov-migration {__version__}\n", ""
    )  # fmt: skip
    helped = run_script("simulate", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and helped.stderr == ""
    assert "markov-migration simulate" in helped.stdout


def test_debug_shows_the_traceback(tmp_path):
    proc = run_script("--debug", "validate", "missing.csv", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "markov_migration.errors.PanelError: missing.csv: file not found" in proc.stderr
    assert "error: missing.csv" not in proc.stderr


def test_help_does_not_import_heavy_libraries():
    # `--help` must be instant: the CLI imports PyMC, pandas, NumPy & co. inside commands only.
    heavy = ["pymc", "pytensor", "nutpie", "arviz", "xarray", "pandas", "pyarrow", "scipy", "numba",
             "numpy", "matplotlib"]  # fmt: skip
    code = textwrap.dedent(
        f"""
        import sys
        import markov_migration.cli.app
        from typer.testing import CliRunner
        result = CliRunner().invoke(markov_migration.cli.app.app, ["--help"])
        assert result.exit_code == 0, result.output
        print(",".join(m for m in {heavy!r} if m in sys.modules))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def _choice_lists() -> list[tuple[str, str, tuple[str, ...]]]:
    """(command, option, the values the layer below accepts) for every fixed-choice option."""
    from markov_migration.inference.fit import SAMPLERS
    from markov_migration.results.summaries import QUANTITIES

    return [
        ("summarize", "--what", QUANTITIES),
        ("summarize", "--format", ("table", "csv", "json")),
        ("compare", "--format", ("table", "csv", "json")),
        ("compare", "--unit", ("transition", "row", "respondent")),
        ("validate", "--format", ("table", "json")),
        ("fit", "--sampler", SAMPLERS),
    ]


@pytest.mark.parametrize(("command", "option", "values"), _choice_lists())
def test_choice_options_are_enums_listed_in_help(command, option, values):
    import enum
    import typing

    # The option is typed by a str enum whose values are the ones the package accepts
    # (spelled twice so that the command line starts without importing the layers below).
    func = typer.main.get_command(app).commands[command].callback
    hints = typing.get_type_hints(func, include_extras=True)
    name = option.lstrip("-").replace("-", "_")
    kind = hints["output_format" if name == "format" else name].__origin__
    assert issubclass(kind, enum.StrEnum)
    assert tuple(kind) == tuple(values)
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"})
    assert f"<{'|'.join(values)}>" in result.stdout


@pytest.mark.parametrize(("command", "option", "values"), _choice_lists())
def test_choice_typo_is_one_usage_line(command, option, values, tmp_path):
    args = {"fit": ["p.csv", "--out", tmp_path / "f.nc"], "compare": ["a.nc", "b.nc"],
            "validate": ["p.csv"], "summarize": ["f.nc"]}[command]  # fmt: skip
    result = invoke(command, *args, option, "bogus")
    assert result.exit_code == 2
    expected = ", ".join(f"'{v}'" for v in values)
    assert result.stderr.startswith(f"error: {command}: Invalid value for '{option}'")
    assert f"'bogus' is not one of {expected} (see markov-migration {command} --help)\n" in (
        result.stderr
    )
    assert result.stderr.count("\n") == 1 and result.stdout == ""


# -- validate runs every check fit runs: "valid" means "can be fitted" (issue 11) ----------

CHAIN = """
name = "chain"
time = "discrete"
states = ["a", "b", "c"]
[transitions]
a = ["b"]
b = ["c"]
[priors]
concentration = 1.0
"""


def _forbid_compile(monkeypatch):
    import markov_migration.inference.model as model_module

    def boom(*args, **kwargs):
        raise AssertionError("the model was built although the data cannot be fitted")

    monkeypatch.setattr(model_module, "build_model", boom)


def _validate_and_fit(tmp_path, panel: pd.DataFrame, model_text: str):
    model = tmp_path / "model.toml"
    model.write_text(model_text)
    path = tmp_path / "panel.csv"
    panel.to_csv(path, index=False)
    out = tmp_path / "fit.nc"
    checked = invoke("validate", path, "--model", model)
    fitted = invoke("fit", path, "--model", model, "--out", out, "-q")
    return checked, fitted, out


def test_discrete_pair_needing_more_moves_than_steps_refused(tmp_path, monkeypatch):
    _forbid_compile(monkeypatch)
    # a->c needs two moves (a->b->c) but is seen one step apart
    panel = pd.DataFrame({"id": [1, 1, 2, 2], "time": [0, 1, 0, 1], "state": ["a", "c", "a", "b"]})
    checked, fitted, out = _validate_and_fit(tmp_path, panel, CHAIN)
    for res in (checked, fitted):
        assert res.exit_code == 2, res.output
        assert "a->c observed 1 step apart (1 transitions) needs at least 2 moves" in res.stderr
        assert res.stderr.count("\n") == 1
    assert not out.exists()


def test_discrete_pair_over_several_steps_is_valid(tmp_path):
    # the same move seen two steps apart (a missed wave) is possible: (P^2)[a, c] > 0
    panel = pd.DataFrame({"id": [1, 1, 2, 2], "time": [0, 2, 0, 1], "state": ["a", "c", "a", "b"]})
    model = tmp_path / "model.toml"
    model.write_text(CHAIN)
    path = tmp_path / "panel.csv"
    panel.to_csv(path, index=False)
    res = invoke("validate", path, "--model", model, "--format", "json")
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["transitions"]["a"]["c"] == 1 and summary["interval_max"] == 2


def test_weights_overflowing_are_refused(tmp_path, monkeypatch):
    _forbid_compile(monkeypatch)
    from markov_migration.io import resolve_model

    model_text = Path(resolve_model("migration5")).read_text()
    panel = pd.DataFrame(
        {
            "id": [1, 1, 2, 2],
            "time": [0.0, 1.0, 0.0, 1.0],
            "state": ["abroad", "abroad", "abroad", "abroad"],
            "weight": [1e308] * 4,
        }
    )
    checked, fitted, out = _validate_and_fit(tmp_path, panel, model_text)
    for res in (checked, fitted):
        assert res.exit_code == 2, res.output
        assert "beyond floating point" in res.stderr and res.stderr.count("\n") == 1
    assert "inf" not in checked.stdout


def test_period_without_data_refused_by_validate(tmp_path, monkeypatch):
    """validate refuses what model_design (built by fit) refuses: a period with no data."""
    from markov_migration.errors import InputError
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.design import model_design
    from markov_migration.inputs.panel import validate_panel
    from markov_migration.inputs.spec import parse_spec
    from tests.test_periods import FULL, random_panel

    _forbid_compile(monkeypatch)
    text = FULL.replace("[1.5, 2.25]", "[1.5, 2.25, 10.0]")
    panel = random_panel(50, seed=3)
    spec = parse_spec(text)
    with pytest.raises(InputError, match=r"period \[10, inf\) has no observed time") as err:
        model_design(spec, aggregate(validate_panel(panel, spec), spec))
    checked, fitted, _ = _validate_and_fit(tmp_path, panel, text)
    for res in (checked, fitted):
        assert res.exit_code == 2, res.output
        assert str(err.value).split(": ", 1)[-1] in res.stderr
    # without the empty period the same panel is valid
    (tmp_path / "model.toml").write_text(FULL)
    assert (
        invoke("validate", tmp_path / "panel.csv", "--model", tmp_path / "model.toml").exit_code
        == 0
    )


def test_discrete_likelihood_is_the_n_step_matrix_entry():
    """The model's log-likelihood at a fixed P equals sum count * log (P^n)[from, to]."""
    import numpy as np

    from markov_migration.inference.model import build_model
    from markov_migration.inputs.aggregate import AggregatedData
    from markov_migration.inputs.spec import parse_spec

    spec = parse_spec(CHAIN)
    table = pd.DataFrame(
        {
            "from": [0, 0, 0, 1, 0, 1],
            "to": [1, 2, 0, 2, 2, 1],
            "interval": [1.0, 2.0, 3.0, 2.0, 3.0, 4.0],
            "count": [3.0, 2.0, 1.0, 4.0, 1.5, 2.0],
        }
    )
    agg = AggregatedData(table, spec.states, 1.0, "<t>", "0" * 64)
    model = build_model(spec, agg)
    p = np.array([[0.6, 0.4, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]])
    got = model.potentials[0].eval({model["p_a"]: p[0, :2], model["p_b"]: p[1, 1:]})
    expected = sum(
        c * np.log(np.linalg.matrix_power(p, int(n))[f, t])
        for f, t, n, c in table.itertuples(index=False)
    )
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow
def test_discrete_fit_with_two_step_gaps_matches_grid_posterior():
    """A real nutpie fit of waves two steps apart against the posterior on a grid.

    The chain a->b->c has two free probabilities (p_ab, p_bc), uniform priors; the
    reference posterior mean integrates the brute-force likelihood (P^2 entries) on a
    400 x 400 grid.
    """
    import numpy as np

    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.panel import validate_panel
    from markov_migration.inputs.spec import parse_spec

    spec = parse_spec(CHAIN)
    rng = np.random.default_rng(1)
    p_true = np.array([[0.6, 0.4, 0], [0, 0.7, 0.3], [0, 0, 1]])
    n, s, rows = 300, np.zeros(300, int), []
    for step in range(5):
        if step % 2 == 0:
            rows.append(pd.DataFrame({"id": np.arange(n), "time": step,
                                      "state": np.array(list("abc"))[s]}))  # fmt: skip
        s = np.array([rng.choice(3, p=p_true[x]) for x in s])
    agg = aggregate(validate_panel(pd.concat(rows), spec, path="<d>", sha256="d" * 64), spec)
    assert set(agg.table["interval"]) == {2.0}
    tree = sample(spec, agg, FitSettings(chains=2, draws=500, tune=300, seed=1))
    post = tree["posterior"]["P"].to_numpy().reshape(-1, 3, 3)

    grid = (np.arange(400) + 0.5) / 400
    a, b = np.meshgrid(grid, grid, indexing="ij")
    two = {  # (P^2)[from, to] as functions of a = p_ab, b = p_bc
        (0, 0): (1 - a) ** 2,
        (0, 1): (1 - a) * a + a * (1 - b),
        (0, 2): a * b,
        (1, 1): (1 - b) ** 2,
        (1, 2): (1 - b) * b + b,
    }
    loglik = sum(c * np.log(two[(f, t)]) for f, t, _, c in agg.table.itertuples(index=False))
    w = np.exp(loglik - loglik.max())
    w /= w.sum()
    mean_a, mean_b = float((w * a).sum()), float((w * b).sum())
    sd_a = float(np.sqrt((w * (a - mean_a) ** 2).sum()))
    sd_b = float(np.sqrt((w * (b - mean_b) ** 2).sum()))
    # Monte Carlo error with a conservative effective sample size of 200
    assert abs(post[:, 0, 1].mean() - mean_a) < 5 * sd_a / np.sqrt(200)
    assert abs(post[:, 1, 2].mean() - mean_b) < 5 * sd_b / np.sqrt(200)
    assert post[:, 0, 1].std() == pytest.approx(sd_a, rel=0.15)


def test_validate_refuses_models_fit_cannot_fit(tmp_path, monkeypatch):
    """A discrete-time model with covariates: refused by validate as by fit, same line."""
    _forbid_compile(monkeypatch)
    text = CHAIN + '[covariates.sex]\nkind = "categorical"\ntransitions = ["a->b"]\n'
    panel = pd.DataFrame({"id": [1, 1], "time": [0, 1], "state": ["a", "b"], "sex": ["f", "f"]})
    checked, fitted, out = _validate_and_fit(tmp_path, panel, text)
    assert checked.exit_code == fitted.exit_code == 2
    assert "discrete-time models support none of covariates" in checked.stderr
    assert checked.stderr == fitted.stderr
    assert not out.exists()

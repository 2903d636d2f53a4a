"""Observation-model tables of a model file and censored codes in panels (issue 13)."""

from __future__ import annotations

import json
import textwrap

import pandas as pd
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.errors import PanelError, SpecError
from markov_migration.inputs.observation import (
    DEFAULT_MISCLASSIFICATION_CORRECT,
    DEFAULT_MISCLASSIFICATION_ERROR,
)
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.spec import parse_spec

BASE = """\
name = "cav"
states = ["well", "mild", "severe", "dead"]
[transitions]
well = ["mild", "dead"]
mild = ["well", "severe", "dead"]
severe = ["mild", "dead"]
"""


def spec_of(extra: str):
    return parse_spec(BASE + textwrap.dedent(extra), path="m.toml")


def test_no_tables_is_the_pure_panel():
    spec = spec_of("")
    assert not spec.observation.latent and not spec.observation.hidden


def test_every_table_parsed():
    spec = spec_of(
        """
        [observation]
        exact = ["dead"]
        censored = { "alive" = ["well", "mild", "severe"] }
        [misclassification]
        well = ["mild"]
        mild = ["well", "severe"]
        [phases]
        mild = 2
        [nonresponse]
        schedule = "waves"
        [priors]
        misclassification = { correct = 20, error = 2 }
        "well->mild" = { rate = 0.1 }
        """
    )
    o = spec.observation
    assert o.exact == (3,)
    assert o.censored == (("alive", (0, 1, 2)),)
    assert o.misclassification == ((0, (1,)), (1, (0, 2)))
    assert o.phases == {1: 2}
    assert o.nonresponse.schedule == "waves" and o.nonresponse.states == (0, 1, 2, 3)
    assert (o.prior_correct, o.prior_error) == (20.0, 2.0)
    assert o.latent and o.hidden
    assert spec.priors[(0, 1)].mu == pytest.approx(-2.302585, abs=1e-6)


def test_default_misclassification_prior():
    o = spec_of("[misclassification]\nwell = 'mild'\n").observation
    assert (o.prior_correct, o.prior_error) == (
        DEFAULT_MISCLASSIFICATION_CORRECT,
        DEFAULT_MISCLASSIFICATION_ERROR,
    )


@pytest.mark.parametrize(
    ("extra", "message", "line"),
    [
        ("[misclassification]\nwell = ['ghost']\n", "'ghost' is not a declared state", 8),
        ("[misclassification]\nghost = ['well']\n", "'ghost' is not a declared state", 8),
        ("[misclassification]\nwell = ['well']\n", "lists itself", 8),
        ("[observation]\nexact = ['mild']\n", "'mild' is not absorbing", 8),
        ("[phases]\ndead = 2\n", "'dead' is absorbing", 8),
        ("[phases]\nmild = 1\n", "whole number of phases >= 2", 8),
        ("[observation]\ncensored = { well = ['well', 'mild'] }\n", "clashes with the state", 8),
        ("[observation]\ncensored = { x = ['well'] }\n", "at least two states", 8),
        ("[observation]\nexactly = ['dead']\n", "unknown key 'exactly'", 8),
        ("[nonresponse]\nfoo = 1\n", "unknown key 'foo'", 8),
        ("[priors]\nmisclassification = { right = 2 }\n", "misclassification must be", 8),
    ],
)
def test_bad_specs(extra, message, line):
    with pytest.raises(SpecError) as err:
        spec_of(extra)
    assert message in str(err.value)
    assert str(err.value).count("\n") == 0
    if line is not None:
        assert err.value.line == line


def test_bad_spec_on_the_command_line_is_one_line_exit_2(tmp_path):
    model = tmp_path / "m.toml"
    model.write_text(BASE + "[observation]\nexact = ['mild']\n")
    panel = tmp_path / "p.csv"
    panel.write_text("id,time,state\n1,0,well\n1,1,mild\n")
    result = CliRunner().invoke(app, ["validate", str(panel), "--model", str(model)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "'mild' is not absorbing" in result.stderr
    assert "Traceback" not in result.stderr


def test_panel_accepts_declared_censored_codes():
    spec = spec_of("[observation]\ncensored = { alive = ['well', 'mild', 'severe'] }\n")
    df = pd.DataFrame(
        {"id": [1, 1, 1, 2, 2], "time": [0, 1, 2, 0, 1.5],
         "state": ["well", "alive", "dead", "mild", "alive"]}
    )  # fmt: skip
    panel = validate_panel(df, spec)
    assert panel.data["state"].tolist() == [0, 4, 3, 1, 4]
    assert panel.states == ("well", "mild", "severe", "dead", "alive")
    table = panel.state_table()
    assert table.loc["well", "alive"] == 1 and table.loc["alive", "dead"] == 1


def test_censored_code_undeclared_is_refused():
    spec = spec_of("")
    df = pd.DataFrame({"id": [1, 1], "time": [0, 1], "state": ["well", "alive"]})
    with pytest.raises(PanelError, match="unknown state 'alive'"):
        validate_panel(df, spec)


def test_integer_censored_codes():
    spec = spec_of(
        "[observation]\ncensored = { '99' = ['well', 'mild', 'severe'] }\n"
        "[data]\nstate_codes = true\n"
    )
    df = pd.DataFrame({"id": [1, 1, 1], "time": [0, 1, 2], "state": [1, 99, 4]})
    assert validate_panel(df, spec).data["state"].tolist() == [0, 4, 3]


@pytest.mark.parametrize(
    ("prefix", "extra", "message"),
    [
        (
            'time = "discrete"\n',
            "[phases]\nmild = 2\n",
            "latent states need a continuous-time model",
        ),
    ],
)
def test_unsupported_latent_fits_are_refused_before_sampling(tmp_path, prefix, extra, message):
    """What latent models still refuse: one line on stderr, exit 2, no fit file.

    (Covariates, groups and periods with [phases], and periods with [nonresponse],
    were refused here before they were built: test_phase_covariates.py and
    test_nonresponse_periods.py.)
    """
    model = tmp_path / "m.toml"
    model.write_text(prefix + BASE + extra)
    panel = tmp_path / "p.csv"
    panel.write_text("id,time,state,sex\n1,0,well,f\n1,1,mild,f\n2,0,well,m\n2,1,dead,m\n")
    result = CliRunner().invoke(
        app, ["fit", str(panel), "--model", str(model), "--out", str(tmp_path / "f.nc")]
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "f.nc").exists()


def test_validate_lists_censored_codes(tmp_path):
    model = tmp_path / "m.toml"
    model.write_text(BASE + "[observation]\ncensored = { alive = ['well', 'mild', 'severe'] }\n")
    panel = tmp_path / "p.csv"
    panel.write_text(
        "id,time,state\n1,0,well\n1,1,alive\n1,2,dead\n2,0,mild\n2,1,alive\n3,0,well\n3,1,mild\n"
    )
    result = CliRunner().invoke(
        app, ["validate", str(panel), "--model", str(model), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["observations"]["alive"] == 2
    # pairs with a censored record are not state pairs: left out of the counts
    assert summary["transitions"]["well"]["alive"] == 0
    assert summary["n_transitions"] == 1 and summary["transitions"]["well"]["mild"] == 1

"""Every results command on every kind of latent fit (opt-in: ``make validate``).

Issue 13's "done when": every summary, check, compare, reproduce and project command
works on latent fits. Each feature, and the combinations the model file allows, is
fitted prior-only (exact prior draws: no sampling, the plumbing is what is tested;
the statistics of each feature are tested against R msm and brute force elsewhere)
on one small simulated panel, and each command must run (exit 0, or 1 where ``check``
flags a prior fit's predictive checks). About 2 minutes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from tests.conftest import THREE_SIMULATED

#: Covariate and group columns for the simulated panel.
SIMULATE_COLUMNS = """[simulate.covariates.sex]
levels = { f = 0.5, m = 0.5 }
[simulate.groups]
column = "host"
levels = { x = 0.5, y = 0.5 }
"""


def model_text(top: str = "", tail: str = "") -> str:
    """The shared three-state model with top-level keys ``top`` and tables ``tail``."""
    head = 'home = ["a"]\n'
    return THREE_SIMULATED.replace(head, head + top, 1) + SIMULATE_COLUMNS + tail


MISC = '[misclassification]\na = ["b"]\n'
SEX = '[covariates.sex]\nkind = "categorical"\ntransitions = ["a->b"]\n'
#: name: (top-level keys, tables)
FEATURES = {
    "exact": ("", '[observation]\nexact = ["c"]\n'),
    "censored": ("", '[observation]\ncensored = { "ab" = ["a", "b"] }\n'),
    "misclassification": ("", MISC),
    "phases": ("", "[phases]\nb = 2\n"),
    "nonresponse": ("", '[nonresponse]\nschedule = "waves"\n'),
    "misclassification_sex": ("", MISC + SEX),
    "phases_groups": ("", '[phases]\nb = 2\n[groups]\ncolumn = "host"\n'),
    "misclassification_periods": ("periods = [1.5]\n", MISC),
    "nonresponse_periods": ("periods = [1.5]\n", '[nonresponse]\nschedule = "waves"\n'),
    "misclassification_covariate": ("", MISC + '[covariates.sex]\nkind = "categorical"\n'
                                    'transitions = []\nmisclassification = ["a->b"]\n'),
    "phases_misclassification": ("", "[phases]\nb = 2\n" + MISC),
    "exact_phases": ("", '[observation]\nexact = ["c"]\n[phases]\nb = 2\n'),
}  # fmt: skip


def run(*args) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, (res.stderr.strip().splitlines() or [""])[-1]


@pytest.fixture(scope="module")
def panels(tmp_path_factory):
    d = tmp_path_factory.mktemp("latent_commands")
    (d / "base.toml").write_text(model_text())
    code, msg = run("simulate", "--model", d / "base.toml", "--n", 150, "--seed", 2,
                    "--out", d / "p.csv")  # fmt: skip
    assert code == 0, msg
    df = pd.read_csv(d / "p.csv")
    hide = df["state"].isin(["a", "b"]) & (np.random.default_rng(0).uniform(size=len(df)) < 0.2)
    df.loc[hide, "state"] = "ab"
    df.to_csv(d / "p_censored.csv", index=False)
    return d


def _fit(d, name: str):
    top, tail = FEATURES[name]
    model = d / f"{name}.toml"
    model.write_text(model_text(top, tail))
    panel = d / ("p_censored.csv" if name == "censored" else "p.csv")
    fit = d / f"{name}.nc"
    if not fit.exists():
        code, msg = run("fit", panel, "--model", model, "--out", fit, "--prior-only",
                        "--draws", 100, "-q")  # fmt: skip
        assert code == 0, (name, msg)
    return fit


@pytest.mark.slow
@pytest.mark.validation
@pytest.mark.parametrize("name", list(FEATURES))
def test_every_results_command_runs_on_the_fit(panels, name):
    fit = _fit(panels, name)
    whats = ["qmatrix", "pmatrix", "sojourn", "pnext", "leave", "totlos", "passage"]
    whats += ["phases"] if "phases" in name else []
    whats += ["misclassification"] if "misclassification" in name else []
    whats += ["hazard"] if name == "misclassification_sex" else []
    failed = []
    for what in whats:
        extra = {"totlos": ["--horizon", 5], "passage": ["--to", "c"]}.get(what, [])
        code, msg = run("summarize", fit, "--what", what, *extra)
        if code != 0:
            failed.append((f"summarize {what}", msg))
    code, msg = run("check", fit, "--out-dir", panels / f"check_{name}", "--draws", 20)
    if code not in (0, 1):
        failed.append(("check", msg))
    code, msg = run("reproduce", fit)
    if code != 0:
        failed.append(("reproduce", msg))
    group = ["--group", "x"] if "groups" in name else []
    code, msg = run("project", fit, "--initial", "a=1000,b=500", "--start", 3, "--horizon", 5,
                    "--draws", 20, "--out", panels / f"proj_{name}.nc", *group)  # fmt: skip
    if code != 0:
        failed.append(("project", msg))
    assert not failed, failed


@pytest.mark.slow
@pytest.mark.validation
@pytest.mark.parametrize(("a", "b"), [("misclassification", "phases_misclassification"),
                                      ("exact", "exact_phases")])  # fmt: skip
def test_compare_latent_fits_of_one_panel(panels, a, b):
    code, msg = run("compare", _fit(panels, a), _fit(panels, b))
    assert code == 0, msg

"""``fit --prior-only``: a fit file of prior draws that every command reads.

Reference: with a prior on every transition (``log q ~ Normal(log rate, sd)``) the
prior draws' log-intensities have that mean and sd (4,000 draws: within 4 standard
errors of the mean, sd within 6%); the derived ``Q`` is built from them.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.fitfile.format import read_fit

MODEL = """
name = "three"
states = ["a", "b", "c"]
home = ["a"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
[priors]
"a->b" = { rate = 0.3, sd = 0.5 }
"a->c" = { rate = 0.1, sd = 1.0 }
"b->a" = { rate = 0.5, sd = 0.3 }
"b->c" = { rate = 0.2, sd = 2.0 }
[rates]
"a->b" = 0.3
"a->c" = 0.15
"b->a" = 0.5
"b->c" = 0.2
[simulate]
waves = [0, 1, 2, 3]
jitter = 0.05
initial = { a = 0.6, b = 0.4, c = 0.0 }
"""
PRIOR = {"a->b": (0.3, 0.5), "a->c": (0.1, 1.0), "b->a": (0.5, 0.3), "b->c": (0.2, 2.0)}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def prior_fit(tmp_path_factory):
    d = tmp_path_factory.mktemp("prior")
    (d / "m.toml").write_text(MODEL)
    assert run("simulate", "--model", d / "m.toml", "--n", 150, "--out", d / "p.csv",
               "--seed", 2).exit_code == 0  # fmt: skip
    res = run("fit", d / "p.csv", "--model", d / "m.toml", "--out", d / "prior.nc",
              "--prior-only", "--draws", 1000, "-q")  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    assert "Prior intensities" in res.stdout
    return d


def test_prior_draws_have_the_stated_prior(prior_fit):
    tree = read_fit(prior_fit / "prior.nc")
    assert int(tree.attrs["prior_only"]) == 1
    post = tree["posterior"]
    assert post.sizes["chain"] == 4 and post.sizes["draw"] == 1000
    log_rate = post["log_rate"]
    for label, (rate, sd) in PRIOR.items():
        v = log_rate.sel(transition=label).values.ravel()
        assert abs(v.mean() - np.log(rate)) < 4 * sd / np.sqrt(v.size), label
        assert v.std() == pytest.approx(sd, rel=0.06), label
    q = post["Q"].values
    np.testing.assert_allclose(q[..., 0, 1], np.exp(log_rate.sel(transition="a->b").values))
    np.testing.assert_allclose(q.sum(axis=-1), 0.0, atol=1e-9)


def test_every_command_reads_a_prior_fit(prior_fit, tmp_path):
    f = prior_fit / "prior.nc"
    assert run("summarize", f, "--what", "sojourn").exit_code == 0
    assert run("check", f, "--draws", 30).exit_code in (0, 1)
    res = run("project", f, "--initial", "a=1000", "--start", 3, "--horizon", 5, "--draws", 50,
              "--out", tmp_path / "pp.nc", "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    again = run("reproduce", f)
    assert again.exit_code == 0 and "exact match" in again.stdout, again.output

"""``fit --prior-only`` of latent-state models: the draws are the latent model's prior.

References (4,000 independent draws, so Monte Carlo standard error = sd / sqrt(4000)):

- a misclassification row ``Dirichlet(correct = 8, error = 2)`` with one possible
  error is ``Beta(8, 2)`` on recording the truth: mean 0.8, sd
  ``sqrt(8 * 2 / (10^2 * 11)) = 0.1206``; the draws' mean is within 4 standard
  errors, their sd within 6% (the sd of a sample sd is about ``sd / sqrt(2 n)``,
  i.e. 1.1%, times the kurtosis factor of a skewed Beta: 6% is > 4 of them);
- each ``log_rate`` with its own ``[priors]`` entry is ``Normal(log rate, sd)``,
  same tolerances;
- ``initial`` is ``Dirichlet(1, 1, 1)``: each component has mean 1/3, sd
  ``sqrt(2 / 36) = 0.2357``.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.fitfile.format import read_fit
from tests.test_prior_only import MODEL, PRIOR

N_DRAWS = 4000
LATENT = MODEL.replace(
    "[priors]",
    '[misclassification]\na = ["b"]\n[priors]\nmisclassification = { correct = 8, error = 2 }',
)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def moments_match(values: np.ndarray, mean: float, sd: float, label: str) -> None:
    v = np.asarray(values, dtype=float).ravel()
    assert v.size == N_DRAWS
    assert abs(v.mean() - mean) < 4 * sd / np.sqrt(v.size), (label, v.mean(), mean)
    assert v.std() == pytest.approx(sd, rel=0.06), (label, v.std(), sd)


@pytest.fixture(scope="module")
def latent_prior(tmp_path_factory):
    d = tmp_path_factory.mktemp("latent_prior")
    (d / "m.toml").write_text(MODEL)
    (d / "latent.toml").write_text(LATENT)
    assert run("simulate", "--model", d / "m.toml", "--n", 150, "--out", d / "p.csv",
               "--seed", 2).exit_code == 0  # fmt: skip
    res = run("fit", d / "p.csv", "--model", d / "latent.toml", "--out", d / "prior.nc",
              "--prior-only", "--draws", N_DRAWS // 4, "-q")  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    assert "Prior intensities" in res.stdout
    return d


def test_misclassification_and_rates_have_their_declared_priors(latent_prior):
    tree = read_fit(latent_prior / "prior.nc")
    assert int(tree.attrs["prior_only"]) == 1
    assert tree.attrs["sampler"] == "prior"
    post = tree["posterior"]
    assert post.sizes["chain"] == 4 and post.sizes["draw"] == N_DRAWS // 4
    e = post["misclassification"]
    moments_match(e.sel(true_state="a", recorded_state="a").values, 0.8, np.sqrt(16 / 1100), "a")
    np.testing.assert_allclose(e.sum("recorded_state").values, 1.0, atol=1e-12)
    # states without declared errors are recorded as they are
    np.testing.assert_array_equal(e.sel(true_state="b", recorded_state="b").values, 1.0)
    for label, (rate, sd) in PRIOR.items():
        moments_match(post["log_rate"].sel(transition=label).values, np.log(rate), sd, label)
    for s in ("a", "b", "c"):
        moments_match(post["initial"].sel(latent_state=s).values, 1 / 3, np.sqrt(2 / 36), s)
    q = post["Q"].values
    np.testing.assert_allclose(q[..., 0, 1], post["rate"].sel(transition="a->b").values)
    # the log-likelihood is each respondent's history at the prior draws
    ll = tree["log_likelihood"]["histories"]
    assert ll.sizes["respondent"] == 150 and np.isfinite(ll.values).mean() > 0.99


def test_summarize_check_project_and_reproduce_read_a_latent_prior_fit(latent_prior):
    f = latent_prior / "prior.nc"
    res = run("summarize", f, "--what", "sojourn")
    assert res.exit_code == 0, res.output
    res = run("check", f, "--draws", 30)
    assert res.exit_code in (0, 1), (res.output, repr(res.exception))
    assert "latent model" in res.stdout
    res = run("project", f, "--initial", "a=1000", "--start", 3, "--horizon", 5, "--draws", 50,
              "--out", latent_prior / "pp.nc", "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    again = run("reproduce", f)
    assert again.exit_code == 0 and "exact match" in again.stdout, again.output


PHASED = MODEL.replace("[priors]", "[phases]\nb = 2\n[priors]")


def test_phased_initial_is_one_dirichlet_over_the_hidden_states(tmp_path):
    """Phase models sample ``initial`` in two stages (inference/latent.py ``_phased_initial``).

    The prior must stay ``Dirichlet(1, 1, 1, 1)`` over the hidden states
    ``a, b_1, b_2, c``: each share has mean 1/4 and sd ``sqrt(3 / 80) = 0.1936``,
    and two shares have covariance ``-1 / 80`` (4 standard errors of the sample
    covariance, about ``0.0016``, as tolerance).
    """
    (tmp_path / "m.toml").write_text(MODEL)
    (tmp_path / "phased.toml").write_text(PHASED)
    assert run("simulate", "--model", tmp_path / "m.toml", "--n", 100, "--out",
               tmp_path / "p.csv", "--seed", 3).exit_code == 0  # fmt: skip
    res = run("fit", tmp_path / "p.csv", "--model", tmp_path / "phased.toml", "--out",
              tmp_path / "prior.nc", "--prior-only", "--draws", N_DRAWS // 4, "-q")  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    post = read_fit(tmp_path / "prior.nc")["posterior"]
    init = post["initial"]
    assert list(init["latent_state"].values) == ["a", "b_1", "b_2", "c"]
    for s in ("a", "b_1", "b_2", "c"):
        moments_match(init.sel(latent_state=s).values, 0.25, np.sqrt(3 / 80), s)
    b1 = init.sel(latent_state="b_1").values.ravel()
    b2 = init.sel(latent_state="b_2").values.ravel()
    assert abs(np.cov(b1, b2)[0, 1] + 1 / 80) < 0.0016
    # the stages are in the fit file too: the split of b over its phases is Beta(1, 1)
    split = post["initial_phase_b"].sel(phase_b="b_1").values.ravel()
    moments_match(split, 0.5, np.sqrt(1 / 12), "split")

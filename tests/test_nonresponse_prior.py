"""The attrition prior of ``[nonresponse]`` (``attrition_prior = { median, sd_log }``).

References: the spec keeps the defaults (median 0.1 per person and time unit,
sd of the log 1.5) unless the table sets them; a prior-only fit (4,000
independent draws) of a model with ``attrition_prior = { median = 0.3,
sd_log = 0.5 }`` has ``log_attrition`` with mean ``log 0.3`` (within 4 Monte
Carlo standard errors ``0.5 / sqrt(4000)``) and sd 0.5 (within 6%), and the
declared ``Beta(2, 1)`` response prior (mean 2/3, sd ``sqrt(2 / 36)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.errors import SpecError
from markov_migration.inference.fit import FitSettings
from markov_migration.inference.prior import sample_prior
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.observation import DEFAULT_ATTRITION_RATE, DEFAULT_ATTRITION_SD
from tests.test_nonresponse import BASE, TINY, spec_of, tiny_panel


def test_default_and_declared_attrition_priors():
    nr = spec_of("[nonresponse]\n").observation.nonresponse
    assert (nr.attrition_median, nr.attrition_sd_log) == (0.1, 1.5)
    assert (DEFAULT_ATTRITION_RATE, DEFAULT_ATTRITION_SD) == (0.1, 1.5)
    nr = spec_of("[nonresponse]\nattrition_prior = { median = 0.02, sd_log = 0.7 }\n")
    nr = nr.observation.nonresponse
    assert (nr.attrition_median, nr.attrition_sd_log) == (0.02, 0.7)
    nr = spec_of("[nonresponse]\nattrition_prior = { sd_log = 2 }\n").observation.nonresponse
    assert (nr.attrition_median, nr.attrition_sd_log) == (0.1, 2.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("attrition_prior = { median = 0 }", "attrition_prior.median must be a positive number"),
        ("attrition_prior = { median = -0.1 }", "attrition_prior.median must be a positive"),
        ("attrition_prior = { sd_log = 'wide' }", "attrition_prior.sd_log must be a positive"),
        ("attrition_prior = { sd_log = nan }", "attrition_prior.sd_log must be a positive"),
        ("attrition_prior = { mean = 0.1 }", "must be a table { median = 0.1, sd_log = 1.5 }"),
        ("attrition_prior = 0.1", "must be a table { median = 0.1, sd_log = 1.5 }"),
        ("attrition_prior = {}", "must be a table { median = 0.1, sd_log = 1.5 }"),
        ("attrition = false\nattrition_prior = { median = 0.1 }", "needs attrition = true"),
        ("attrition_priors = { median = 0.1 }", "unknown key 'attrition_priors'"),
    ],
)
def test_bad_attrition_priors(extra, message):
    with pytest.raises(SpecError) as err:
        spec_of(f"[nonresponse]\n{extra}\n")
    assert message in str(err.value), str(err.value)
    assert str(err.value).count("\n") == 0
    assert err.value.line is not None and err.value.line >= 9


def test_bad_attrition_prior_is_one_line_exit_2_and_writes_nothing(tmp_path):
    model = tmp_path / "m.toml"
    model.write_text(BASE + "[nonresponse]\nattrition_prior = { median = -1 }\n")
    panel = tmp_path / "p.csv"
    pd.DataFrame(TINY, columns=["id", "time", "state"]).to_csv(panel, index=False)
    out = tmp_path / "f.nc"
    result = CliRunner().invoke(app, ["fit", str(panel), "--model", str(model), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "attrition_prior.median" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_prior_only_fit_honours_the_attrition_prior():
    spec = spec_of(
        """
        [nonresponse]
        attrition_prior = { median = 0.3, sd_log = 0.5 }
        [priors]
        response = { alpha = 2, beta = 1 }
        """
    )
    panel = tiny_panel(spec)
    settings = FitSettings(chains=4, draws=1000, tune=1, seed=5)
    tree = sample_prior(spec, aggregate(panel, spec), settings, panel=panel)
    assert int(tree.attrs["prior_only"]) == 1
    post = tree["posterior"]
    assert list(post["attrition_state"].values) == ["well", "ill"]
    n = 4000
    for s in ("well", "ill"):
        v = post["log_attrition"].sel(attrition_state=s).values.ravel()
        assert abs(v.mean() - np.log(0.3)) < 4 * 0.5 / np.sqrt(n), (s, v.mean())
        assert v.std() == pytest.approx(0.5, rel=0.06), (s, v.std())
        np.testing.assert_allclose(
            post["attrition"].sel(attrition_state=s).values.ravel(), np.exp(v), rtol=1e-12
        )
    for s in ("well", "ill", "dead"):
        v = post["response"].sel(response_state=s).values.ravel()
        assert abs(v.mean() - 2 / 3) < 4 * np.sqrt(2 / 36) / np.sqrt(n), (s, v.mean())
        assert v.std() == pytest.approx(np.sqrt(2 / 36), rel=0.06), (s, v.std())
    ll = tree["log_likelihood"]["histories"]
    assert ll.sizes["respondent"] == 5 and np.isfinite(ll.values).all()

"""Leave-one-respondent-out PSIS-LOO (``compare --unit respondent``) and latent-state fits.

Reference: each respondent's log-likelihood per draw recomputed from the posterior ``Q``
with ``P(gap) = expm(Q gap)`` (core ``pmatrix``) over the respondent's consecutive
observations (tolerance 1e-8), then PSIS-LOO by ArviZ on that matrix.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.core.likelihood import pmatrix
from markov_migration.errors import InputError
from markov_migration.fitfile.format import write_fit
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results import compare as M
from markov_migration.results.compare_respondent import respondent_loglik
from markov_migration.testing import fake_fit
from tests.test_compare import THREE, with_rates


@pytest.fixture(scope="module")
def spec():
    return parse_spec(THREE)


@pytest.fixture(scope="module")
def panel(spec):
    return simulate_panel(spec, 300, seed=31)


@pytest.fixture(scope="module")
def fits(spec, panel):
    base = fake_fit(spec, panel, chains=2, draws=200)
    return {"good": with_rates(base, spec, 1.0, seed=1), "bad": with_rates(base, spec, 2.0, seed=2)}


def test_respondent_loglik_is_the_sum_over_their_transitions(spec, panel, fits):
    tree = fits["good"]
    ids, ll = respondent_loglik(tree, "good")
    q = tree["posterior"]["Q"].values  # (chain, draw, K, K)
    data = validate_panel(panel, spec, path="<p>", sha256="0" * 64).data
    res = float(tree["constant_data"]["resolution"])
    for j in (0, 7, len(ids) - 1):
        rows = data[data["id"].astype(str) == ids[j]].sort_values("time")
        t, s = rows["time"].to_numpy(), rows["state"].to_numpy()
        want = np.zeros(q.shape[:2])
        for a in range(len(t) - 1):
            if s[a] == 2:  # out of the absorbing state: no term
                continue
            gap = np.round((t[a + 1] - t[a]) / res) * res
            want += np.log(np.array([[pmatrix(m, gap)[s[a], s[a + 1]] for m in c] for c in q]))
        np.testing.assert_allclose(ll[..., j], want, rtol=1e-8, atol=1e-8)


def test_compare_by_respondent_prefers_the_true_rates(fits):
    table, loos = M.compare_fits(fits, unit="respondent")
    assert table.index[0] == "good" and set(table["unit"]) == {"respondent"}
    n_resp = loos["good"].n_units
    assert 250 <= n_resp <= 300  # respondents with at least one transition
    # fewer, larger units than transitions: same ordering, larger se per unit
    by_transition, _ = M.compare_fits(fits)
    assert by_transition.loc["bad", "elpd_diff"] == pytest.approx(
        table.loc["bad", "elpd_diff"], rel=0.15
    )
    with pytest.raises(InputError, match="--by group is not available"):
        M.compare_fits(fits, unit="respondent", by="group")


def latent_like(tree, name):
    """The fit with its log-likelihood stored per respondent's history (as latent fits do)."""
    ids, ll = respondent_loglik(tree, name)
    out = tree.copy()
    post = tree["posterior"]
    da = xr.DataArray(ll, dims=("chain", "draw", "respondent"),
                      coords={"chain": post["chain"].values, "draw": post["draw"].values,
                              "respondent": ids})  # fmt: skip
    out["log_likelihood"] = xr.DataTree(xr.Dataset({"histories": da}))
    return out


def test_a_latent_fit_is_compared_by_respondent(fits, tmp_path):
    latent = {"good": latent_like(fits["good"], "good"), "bad": fits["bad"]}
    table, loos = M.compare_fits(latent)  # default unit: switched to respondent
    assert set(table["unit"]) == {"respondent"} and table.index[0] == "good"
    assert any("leaves out respondents" in n for n in loos["good"].notes)
    same, _ = M.compare_fits(fits, unit="respondent")
    assert table.loc["bad", "elpd_diff"] == pytest.approx(same.loc["bad", "elpd_diff"], rel=1e-9)
    with pytest.raises(InputError, match="use --unit respondent"):
        M.compare_fits(latent, unit="row")
    paths = []
    for name, tree in fits.items():
        paths.append(tmp_path / f"{name}.nc")
        write_fit(tree, paths[-1])
    res = CliRunner().invoke(app, ["compare", *map(str, paths), "--unit", "respondent"])
    assert res.exit_code == 0, res.output
    assert "respondent" in res.stdout

"""The predictive check of latent-state fits (next record given the records before it).

References: with no hidden layer (only a censored code, unused) the filter is the
recorded state, so the expected counts equal ``sum P(gap)[from, to]`` over the
intervals (scipy-free core ``pmatrix``, 1e-9); a panel with 20% of ``swing`` records
misread as ``abroad`` passes the check under the true model and fails it under a
model without misclassification (fake fits whose every draw is the stated model).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from markov_migration.core.likelihood import pmatrix
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.fitfile.assemble import assemble_fit
from markov_migration.inference.fit import FitSettings
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results.ppc_latent import is_latent, ppc_latent
from markov_migration.testing import fake_sample_stats
from tests.test_observation_model import RECOVERY

ERROR = 0.2
#: The same model without misclassification; an unused censored code keeps it a latent
#: (forward-filter) model with no hidden layer.
PLAIN = RECOVERY.replace('[misclassification]\nswing = ["abroad"]\n', "").replace(
    "[rates]", '[observation]\ncensored = { "away" = ["abroad", "swing"] }\n[rates]'
)


def truth_fit(spec, df, error: float, initial, draws: int = 40, rates=None):
    """A fit file of ``df`` whose every draw is the model's [rates] (or ``rates``,
    ``{(r, s): rate}``) with this error."""
    k = spec.n_states
    q = np.zeros((k, k))
    for (r, s), v in (spec.rates if rates is None else rates).items():
        q[r, s] = v
    q[np.diag_indices(k)] = -q.sum(axis=1)
    e = np.eye(k)
    if spec.observation.misclassification:
        sw, ab = spec.index("swing"), spec.index("abroad")
        e[sw, sw], e[sw, ab] = 1 - error, error
    shape = (1, draws)
    rate = np.array([q[r, s] for r, s in spec.transitions])
    post = {
        "Q": ((*SAMPLE_DIMS, "from_state", "to_state"), np.broadcast_to(q, shape + (k, k))),
        "rate": ((*SAMPLE_DIMS, "transition"), np.broadcast_to(rate, shape + rate.shape)),
        "log_rate": ((*SAMPLE_DIMS, "transition"), np.log(np.broadcast_to(rate, shape + rate.shape))),
    }  # fmt: skip
    coords = {"chain": [0], "draw": np.arange(draws), "from_state": list(spec.states),
              "to_state": list(spec.states), "transition": list(spec.transition_labels)}  # fmt: skip
    if spec.observation.hidden:
        post["misclassification"] = ((*SAMPLE_DIMS, "true_state", "recorded_state"),
                                     np.broadcast_to(e, shape + (k, k)))  # fmt: skip
        post["initial"] = ((*SAMPLE_DIMS, "latent_state"), np.broadcast_to(initial, shape + (k,)))
        coords.update(true_state=list(spec.states), recorded_state=list(spec.states),
                      latent_state=list(spec.states))  # fmt: skip
    panel = validate_panel(df, spec, path="<sim>", sha256="0" * 64)
    settings = FitSettings(chains=1, draws=draws, tune=0, seed=0, sampler="fake")
    return assemble_fit(spec, aggregate(panel, spec), xr.Dataset(post, coords=coords),
                        fake_sample_stats(1, draws, 0), settings.to_attrs(), None, panel,
                        sampled=["log_rate"])  # fmt: skip


@pytest.fixture(scope="module")
def misread():
    spec = parse_spec(RECOVERY)
    df = simulate_panel(spec, 1500, waves=[0, 1, 2, 3, 4, 5], seed=3)
    first = df.groupby("id").head(1)["state"].value_counts(normalize=True)
    initial = np.array([first.get(s, 0.0) for s in spec.states])
    rng = np.random.default_rng(3)
    flip = (df["state"] == "swing").to_numpy() & (rng.uniform(size=len(df)) < ERROR)
    df.loc[flip, "state"] = "abroad"
    return spec, df, initial


def test_the_true_misclassification_model_passes_and_a_model_without_it_fails(misread):
    spec, df, initial = misread
    good = ppc_latent(truth_fit(spec, df, ERROR, initial), n_draws=40, seed=1)
    assert is_latent(truth_fit(spec, df, ERROR, initial, draws=2))
    assert 0.05 < good.ppp < 0.95, good.ppp
    plain = parse_spec(PLAIN)
    bad = ppc_latent(truth_fit(plain, df, 0.0, initial), n_draws=40, seed=1)
    assert bad.ppp < 0.01, bad.ppp
    # expected counts add up to the intervals checked, in every draw
    n_int = len(df) - df["id"].nunique()
    assert good.table["expected"].sum() == pytest.approx(n_int, rel=1e-9)


def test_without_a_hidden_layer_the_predictive_is_p_of_the_gap(misread):
    spec, df, initial = misread
    plain = parse_spec(PLAIN)
    tree = truth_fit(plain, df, 0.0, initial, draws=3)
    res = ppc_latent(tree, n_draws=3, n_bands=1, seed=0)
    q = tree["posterior"]["Q"].isel(chain=0, draw=0).values
    d = validate_panel(df, plain, path="<p>", sha256="0" * 64).data.sort_values(["id", "time"])
    step = float(tree["constant_data"]["resolution"])
    want = np.zeros((3, 3))
    for _, g in d.groupby("id"):
        t, s = g["time"].to_numpy(), g["state"].to_numpy()
        for a in range(len(t) - 1):
            gap = max(np.round((t[a + 1] - t[a]) / step), 1) * step
            want[s[a]] += pmatrix(q, gap)[s[a]]
    got = res.table.pivot_table(index="from", columns="to", values="expected", aggfunc="sum")
    got = got.reindex(index=plain.states, columns=plain.states).fillna(0.0).to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_check_runs_the_latent_check_and_skips_the_panel_pair_ones(misread, tmp_path):
    from typer.testing import CliRunner

    from markov_migration.cli.app import app
    from markov_migration.fitfile.format import write_fit
    from markov_migration.results.checks import run_checks

    spec, df, initial = misread
    tree = truth_fit(spec, df, ERROR, initial, draws=30)
    report = run_checks(tree, n_draws=30)
    rows = {c.name: c for c in report.checks}
    assert "latent model" in rows["ppc_transitions"].label and rows["ppc_transitions"].passed
    for name in ("ppc_prevalence", "ppc_markov"):
        assert rows[name].passed is None and "latent-state fit" in rows[name].detail
    path = tmp_path / "fit.nc"
    write_fit(tree, path)
    out = CliRunner().invoke(app, ["check", str(path), "--out-dir", str(tmp_path / "c"),
                                   "--draws", "30"])  # fmt: skip
    assert out.exit_code in (0, 1), out.output
    assert (tmp_path / "c").is_dir() and any((tmp_path / "c").iterdir())

"""The predictive check of ``[nonresponse]`` fits: scheduled interviews, "missed" an outcome.

References:

- with the same response probability ``r`` in every state, no attrition and no
  hidden layer, a missed interview carries no information, so a scheduled
  interview at time ``t`` is answered as state ``s`` with probability
  ``r P(t - t_a)[a, s]`` (``a`` the respondent's last answered record, at
  ``t_a``; core ``pmatrix``) and missed with ``1 - r``: the check's expected
  counts by (previous record, outcome) equal these sums (1e-9);
- on a panel where returnees answer half the waves and emigrants 90%, a fake fit
  at that truth passes and one with a state-independent response (0.78 in
  both, about the panel's overall share) fails (p < 0.01);
- ``check`` runs it and writes its table with ``missed`` rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.core.likelihood import pmatrix
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.fitfile.assemble import assemble_fit
from markov_migration.fitfile.format import write_fit
from markov_migration.inference.fit import FitSettings
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results.checks import run_checks
from markov_migration.results.ppc_nonresponse import MISSED, ppc_nonresponse
from markov_migration.testing import fake_sample_stats
from tests.test_nonresponse import SIM

MODEL = SIM + "[nonresponse]\nattrition = false\n"


def nr_fit(spec, df, response: dict, draws: int = 40, attrition: dict | None = None):
    """A fit file of ``df`` whose every draw is the model's [rates] and these probabilities."""
    k = spec.n_states
    q = np.zeros((k, k))
    for (r, s), v in spec.rates.items():
        q[r, s] = v
    q[np.diag_indices(k)] = -q.sum(axis=1)
    shape = (1, draws)
    rate = np.array([q[r, s] for r, s in spec.transitions])
    states = list(spec.states)
    post = {
        "Q": ((*SAMPLE_DIMS, "from_state", "to_state"), np.broadcast_to(q, shape + (k, k))),
        "rate": ((*SAMPLE_DIMS, "transition"), np.broadcast_to(rate, shape + rate.shape)),
        "log_rate": ((*SAMPLE_DIMS, "transition"), np.broadcast_to(np.log(rate), shape + rate.shape)),
        "response": ((*SAMPLE_DIMS, "response_state"),
                     np.broadcast_to([response[s] for s in states], shape + (k,))),
    }  # fmt: skip
    coords = {"chain": [0], "draw": np.arange(draws), "from_state": states, "to_state": states,
              "transition": list(spec.transition_labels), "response_state": states}  # fmt: skip
    if attrition is not None:
        post["attrition"] = ((*SAMPLE_DIMS, "attrition_state"),
                             np.broadcast_to([attrition[s] for s in states], shape + (k,)))  # fmt: skip
        coords["attrition_state"] = states
    panel = validate_panel(df, spec, path="<sim>", sha256="0" * 64)
    settings = FitSettings(chains=1, draws=draws, tune=1, seed=0, sampler="fake")
    return assemble_fit(spec, aggregate(panel, spec), xr.Dataset(post, coords=coords),
                        fake_sample_stats(1, draws, 0), settings.to_attrs(), None, panel,
                        sampled=["log_rate", "response"])  # fmt: skip


@pytest.fixture(scope="module")
def panel():
    spec = parse_spec(MODEL)
    return spec, simulate_panel(spec, 1500, seed=11)


def test_uniform_response_predictive_by_hand(panel):
    spec, df = panel
    r = 0.7
    tree = nr_fit(spec, df, {"abroad": r, "returned": r}, draws=2)
    tree["constant_data"]["resolution"] = 0.0  # no rounding: P(a + b) = P(a) P(b) exactly
    res = ppc_nonresponse(tree, n_draws=2, n_bands=1)
    q = tree["posterior"]["Q"].values[0, 0]
    from markov_migration.inputs.nonresponse import wave_times

    d = validate_panel(df, spec, path="<p>", sha256="0" * 64).data.sort_values(["id", "time"])
    wave, dates = wave_times(d["time"].to_numpy())
    d = d.assign(wave=wave)
    names = [*spec.states, MISSED]
    want = np.zeros((3, 3))  # previous record (states, missed) x outcome (states, missed)
    for _, g in d.groupby("id"):
        answered = dict(zip(g["wave"], zip(g["time"], g["state"], strict=True), strict=True))
        t_a, a = answered[g["wave"].iloc[0]]
        prev = a
        for w in range(int(g["wave"].iloc[0]) + 1, dates.size):
            t = answered[w][0] if w in answered else dates[w]
            want[prev, :2] += r * pmatrix(q, t - t_a)[a]
            want[prev, 2] += 1 - r
            if w in answered:
                t_a, a = answered[w]
                prev = a
            else:
                prev = 2
    got = res.table.pivot_table(index="from", columns="to", values="expected", aggfunc="sum")
    got = got.reindex(index=names, columns=names).fillna(0.0).to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert res.table["observed"].sum() == pytest.approx(want.sum())


def test_the_true_response_passes_and_a_state_independent_one_fails(panel):
    spec, df = panel
    good = ppc_nonresponse(nr_fit(spec, df, {"abroad": 0.9, "returned": 0.5}), n_draws=40)
    assert 0.01 < good.ppp < 0.99, good.ppp
    bad = ppc_nonresponse(nr_fit(spec, df, {"abroad": 0.78, "returned": 0.78}), n_draws=40)
    assert bad.ppp < 0.01, bad.ppp
    missed = good.table[(good.table["from"] == "returned") & (good.table["to"] == MISSED)]
    share = missed["observed"].sum() / good.table.query("`from` == 'returned'")["observed"].sum()
    assert 0.3 < share < 0.6, share  # about half of returnees' next interviews are missed


def test_check_runs_it_with_attrition_and_writes_missed_rows(panel, tmp_path):
    spec = parse_spec(SIM + "[nonresponse]\n")
    _, df = panel
    tree = nr_fit(spec, df, {"abroad": 0.9, "returned": 0.5}, draws=20,
                  attrition={"abroad": 0.01, "returned": 0.01})  # fmt: skip
    report = run_checks(tree, n_draws=20)
    rows = {c.name: c for c in report.checks}
    assert rows["ppc_transitions"].passed is not None, rows["ppc_transitions"].detail
    path = tmp_path / "fit.nc"
    write_fit(tree, path)
    out = CliRunner().invoke(app, ["check", str(path), "--out-dir", str(tmp_path / "c"),
                                   "--draws", "20"])  # fmt: skip
    assert out.exit_code in (0, 1), (out.output, repr(out.exception))
    table = (tmp_path / "c" / "ppc_transitions.csv").read_text()
    assert f",{MISSED}," in table

"""The posterior predictive check of the Markov assumption (observation triples).

Fake fits stand in for posteriors: draws close to the true rates of a Markov panel, or
close to the pooled maximum-likelihood rates of a mover-stayer panel (a stayer fraction
that never moves plus movers), which is what a plain Markov fit of that panel estimates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import expm
from scipy.optimize import minimize

from markov_migration.core import ppc as CP
from markov_migration.errors import InputError
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.plots.check_figures import write_outputs
from markov_migration.plots.report import render_report
from markov_migration.results.checks import run_checks
from markov_migration.results.ppc_markov import ppc_markov
from markov_migration.testing import fake_fit

PAIRS = [("a", "b"), ("a", "c"), ("b", "a"), ("b", "c"), ("c", "a"), ("c", "b")]
RATES = {"a->b": 0.3, "a->c": 0.15, "b->a": 0.5, "b->c": 0.2, "c->a": 0.2, "c->b": 0.1}
HEAD = """
name = "three"
states = ["a", "b", "c"]
home = ["a"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
c = ["a", "b"]
[priors]
default = { rate = 0.2, sd = 1.5 }
"""
TAIL = """
[simulate]
waves = [0, 1, 2, 3]
jitter = 0.0
initial = { a = 0.5, b = 0.3, c = 0.2 }
"""
#: Replications of the pass/flag rates, respondents per panel, draws per check. The
#: default suite runs the first 12 replications; ``make validate`` all 50.
N_REP, N_RESP, N_DRAWS = 50, 400, 200
REPLICATIONS = [pytest.param(N_REP, marks=pytest.mark.validation), 12]


def _spec(rates: dict[str, float]):
    body = "[rates]\n" + "".join(f'"{k}" = {v:.8g}\n' for k, v in rates.items())
    return parse_spec(HEAD + body + TAIL)


@pytest.fixture(scope="module")
def spec():
    return _spec(RATES)


def _pooled_mle(panel: pd.DataFrame) -> dict[str, float]:
    """Markov MLE of a panel with unit gaps: Q maximising sum n_ij log expm(Q)_ij (scipy)."""
    idx = {"a": 0, "b": 1, "c": 2}
    p = panel.sort_values(["id", "time"])
    st, ids = p["state"].map(idx).to_numpy(), p["id"].to_numpy()
    same = ids[1:] == ids[:-1]
    n = np.zeros((3, 3))
    np.add.at(n, (st[:-1][same], st[1:][same]), 1)

    def nll(x):
        q = np.zeros((3, 3))
        for v, (a, b) in zip(np.exp(x), PAIRS, strict=True):
            q[idx[a], idx[b]] = v
        q[np.arange(3), np.arange(3)] = -q.sum(axis=1)
        return -(n * np.log(np.clip(expm(q), 1e-300, None))).sum()

    x = minimize(nll, np.log(np.full(6, 0.2)), method="Nelder-Mead", options={"maxiter": 4000})
    return {f"{a}->{b}": float(v) for (a, b), v in zip(PAIRS, np.exp(x.x), strict=True)}


def _mover_stayer(spec, seed: int, stayers: float = 0.4, speed: float = 3.0) -> pd.DataFrame:
    """A stayer fraction (rates ~0) plus movers at ``speed`` times the model's rates."""
    ns = int(N_RESP * stayers)
    st = simulate_panel(spec, ns, seed=seed, rates=dict.fromkeys(RATES, 1e-9))
    mv = simulate_panel(
        spec, N_RESP - ns, seed=seed + 10_000, rates={k: speed * v for k, v in RATES.items()}
    )
    return pd.concat([st, mv.assign(id=mv["id"] + st["id"].max())], ignore_index=True)


def test_triple_expected_matches_loop():
    """Expected third-state counts against a loop over triples (exact)."""
    rng = np.random.default_rng(3)
    d, u, k, n = 4, 3, 3, 40
    p = rng.dirichlet(np.ones(k), size=(d, u, k))
    s1, s2, key = rng.integers(0, k, n), rng.integers(0, k, n), rng.integers(0, u, n)
    ref = np.zeros((d, k, k, k))
    for j in range(n):
        ref[:, s1[j], s2[j], :] += p[:, key[j], s2[j], :]
    np.testing.assert_allclose(CP.triple_expected(s1, s2, key, p), ref.reshape(d, -1), atol=1e-12)
    s3 = rng.integers(0, k, n)
    counts = CP.triple_cell_counts(s1, s2, s3, k)[0].reshape(k, k, k)
    ref_c = np.zeros((k, k, k))
    np.add.at(ref_c, (s1, s2, s3), 1)
    np.testing.assert_array_equal(counts, ref_c)


@pytest.mark.parametrize("n_rep", REPLICATIONS)
def test_markov_panel_passes(spec, n_rep):
    """A Markov panel fitted at its true rates: p >= 0.01 in at least 90% of the panels.

    Measured: 49 of 50 (98%) pass, median p 0.54; the first 12: 12 pass, median p 0.375.
    """
    ps = np.array(
        [
            ppc_markov(
                fake_fit(spec, simulate_panel(spec, N_RESP, seed=100 + r), spread=0.05, seed=r),
                n_draws=N_DRAWS,
                seed=r,
            ).ppp
            for r in range(n_rep)
        ]
    )
    assert np.sum(ps >= 0.01) >= 0.9 * n_rep, ps
    assert 0.2 < np.median(ps) < 0.8, ps


@pytest.mark.parametrize("n_rep", REPLICATIONS)
def test_mover_stayer_flagged(spec, n_rep):
    """40% stayers + movers at 3x, fitted at the pooled Markov MLE: p < 0.01 in >= 90%.

    Measured: 50 of 50 flagged.
    """
    ps = []
    for r in range(n_rep):
        panel = _mover_stayer(spec, 200 + r)
        tree = fake_fit(_spec(_pooled_mle(panel)), panel, spread=0.05, seed=r)
        ps.append(ppc_markov(tree, n_draws=N_DRAWS, seed=r).ppp)
    assert np.sum(np.array(ps) < 0.01) >= 0.9 * n_rep, ps


def test_run_checks_strict_outputs_and_report(spec, tmp_path):
    """Registered as ``ppc_markov``: fails the report (--strict) and is drawn and reported."""
    panel = _mover_stayer(spec, 7)
    tree = fake_fit(_spec(_pooled_mle(panel)), panel, spread=0.05)
    report = run_checks(tree, n_draws=100)
    check = next(c for c in report.checks if c.name == "ppc_markov")
    assert check.passed is False and check.value < 0.01
    assert "ppc_markov" in {c.name for c in report.failed} and not report.ok
    names = {p.name for p in write_outputs(report, tree, tmp_path / "out")}
    assert {"ppc_markov.csv", "ppc_markov.png"} <= names
    table = pd.read_csv(tmp_path / "out" / "ppc_markov.csv")
    # the shares of the third state within each (first, second) sum to 100%
    sums = table.groupby(["first", "second"])["observed_pct"].sum()
    np.testing.assert_allclose(sums, 100.0, atol=1e-3)  # CSV keeps 6 digits
    html = render_report(tree, report)
    assert "Markov assumption" in html


def test_skipped_without_triples(spec):
    """Two observations per respondent: the check is skipped with its reason, not failed."""
    panel = simulate_panel(spec, 200, seed=5)
    panel = panel[panel["time"] <= 1.0]
    tree = fake_fit(spec, panel, spread=0.05)
    with pytest.raises(InputError, match="three observations"):
        ppc_markov(tree)
    report = run_checks(tree, n_draws=50)
    check = next(c for c in report.checks if c.name == "ppc_markov")
    assert check.passed is None and "three observations" in check.detail
    assert report.markov is None


def test_skipped_for_design_fits():
    """Covariates, groups or periods: skipped with the reason, not failed."""
    from markov_migration.testing import fake_design_fit
    from tests.conftest import DESIGN_TABLES
    from tests.test_checks import THREE

    spec = parse_spec(THREE + DESIGN_TABLES)
    tree = fake_design_fit(spec, simulate_panel(spec, 120, seed=9), draws=40)
    report = run_checks(tree, n_draws=20)
    check = next(c for c in report.checks if c.name == "ppc_markov")
    assert check.passed is None and "covariates, groups or periods" in check.detail

"""Prior sensitivity by power-scaling (ArviZ psense) in ``check``: prior-dominated moves flagged.

A real fit of a model with a state nobody is ever in (``d -> a``): that intensity's
posterior is its prior, so its likelihood sensitivity is below ArviZ's 0.05 and it is
flagged ``prior-dominated`` with 0 moves observed; the observed moves are not flagged.
The log prior is PyMC's own (``compute_log_prior`` of the fitted model), checked against
the lognormal/Dirichlet densities by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from markov_migration.inference.fit import FitSettings, sample
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results.checks import run_checks
from markov_migration.results.sensitivity import prior_sensitivity

NEVER = """
name = "never"
states = ["a", "b", "c", "d"]
home = ["a"]
[transitions]
a = ["b", "c"]
b = ["a", "c"]
d = ["a"]
[rates]
"a->b" = 0.3
"a->c" = 0.15
"b->a" = 0.5
"b->c" = 0.2
"d->a" = 0.4
[simulate]
waves = [0, 1, 2, 3]
jitter = 0.05
initial = { a = 0.6, b = 0.4, c = 0.0, d = 0.0 }
"""


@pytest.fixture(scope="module")
def tree():
    spec = parse_spec(NEVER)
    panel = validate_panel(simulate_panel(spec, 150, seed=3), spec, path="<s>", sha256="0" * 64)
    return sample(spec, aggregate(panel, spec), FitSettings(chains=2, draws=500, tune=400, seed=1),
                  panel=panel)  # fmt: skip


def test_log_prior_is_the_models_prior(tree):
    post, lp = tree["posterior"], tree["log_prior"]
    # default state prior: log total exit rate ~ Normal(log 0.2, 1.5)
    x = post["log_exit_rate"].values
    want = stats.norm(np.log(0.2), 1.5).logpdf(x)
    np.testing.assert_allclose(lp["log_exit_rate"].values, want, rtol=1e-8)


def test_never_observed_move_is_flagged_prior_dominated(tree):
    table = prior_sensitivity(tree).set_index("parameter")
    assert table.loc["log_rate[d->a]", "flag"] == "prior-dominated"
    assert table.loc["log_rate[d->a]", "observed"] == 0
    for move in ("a->b", "a->c", "b->a", "b->c"):
        assert table.loc[f"log_rate[{move}]", "flag"] == "", move
        assert table.loc[f"log_rate[{move}]", "observed"] > 10
    row = {c.name: c for c in run_checks(tree, n_draws=30).checks}["prior_sensitivity"]
    assert row.passed is True and "d->a" in row.detail and "prior-dominated" in row.detail

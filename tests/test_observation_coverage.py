"""Coverage of latent-state fits over replications (opt-in: ``make validate``).

Misclassification: panels whose ``swing`` records read ``abroad`` 20% of the time
(800 respondents, 6 yearly waves), fitted with ``[misclassification] swing =
["abroad"]``; the 90% intervals of the five intensities and of the error probability
should cover the truth about 90% of the time. With 10 panels x 6 quantities = 60
intervals the covered count is about 54 +- 2.3 (binomial sd); fewer than 80% fails.
Printed with ``pytest -m validation -s`` for the docs.
"""

from __future__ import annotations

import numpy as np
import pytest

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.inputs.spec import parse_spec
from tests.test_observation_model import RECOVERY

ERROR = 0.2


@pytest.mark.slow
@pytest.mark.validation
def test_misclassification_interval_coverage(tmp_path):
    from markov_migration.inference.fit import fit
    from markov_migration.inputs.simulate import simulate_panel

    spec = parse_spec(RECOVERY)
    truth = np.array([spec.rates[p] for p in spec.transitions] + [ERROR])
    covered = []
    for rep in range(10):
        df = simulate_panel(spec, 800, waves=[0, 1, 2, 3, 4, 5], seed=100 + rep)
        rng = np.random.default_rng(100 + rep)
        flip = (df["state"] == "swing").to_numpy() & (rng.uniform(size=len(df)) < ERROR)
        df.loc[flip, "state"] = "abroad"
        panel = tmp_path / f"panel{rep}.csv"
        df.to_csv(panel, index=False)
        tree = fit(panel, spec, chains=2, draws=300, tune=300, seed=rep, cores=2)
        post = tree["posterior"]
        err = post["misclassification"].sel(true_state="swing", recorded_state="abroad")
        draws = np.concatenate(
            [post["rate"].values.reshape(-1, len(spec.transitions)),
             err.values.reshape(-1, 1)], axis=1,
        )  # fmt: skip
        lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
        covered.append((lo <= truth) & (truth <= hi))
        assert set(SAMPLE_DIMS) <= set(post.dims)
    covered = np.array(covered)
    print(
        f"\nmisclassification: 90% interval coverage {covered.mean():.3f} "
        f"({covered.sum()} of {covered.size}); per quantity {covered.mean(axis=0).round(2).tolist()}"
    )
    assert covered.mean() >= 0.8

"""The calibrated example reproduces the published figures (docs/calibration.md).

The panel is simulated from the bundled model file with the example's seed and size
(examples/README.md); every figure must lie in its stated tolerance interval
(``markov_migration.inputs.calibration.FIGURES``). The intervals include 3+ standard errors
of sampling noise at 8,500 respondents (measured over 100 seeds).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from markov_migration.inputs.calibration import (
    FIGURES,
    HOST_DEPARTURE,
    calibration_metrics,
    calibration_table,
    stationary_distribution,
    wave_states,
)
from markov_migration.inputs.simulate import simulate_panel
from markov_migration.inputs.spec import load_spec

SEED, N = 2024, 8500


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def example():
    spec = load_spec(ROOT / "models" / "migration5.toml")
    return spec, simulate_panel(spec, N, seed=SEED)


@pytest.mark.parametrize("figure", FIGURES, ids=lambda f: f.key)
def test_published_figure_within_tolerance(example, figure):
    spec, panel = example
    value = calibration_metrics(spec, panel)[figure.key]
    assert figure.low <= value <= figure.high, (
        f"{figure.figure}: simulated {value:.4f}, tolerance {figure.low}-{figure.high}"
    )
    assert figure.low <= figure.target <= figure.high


@pytest.mark.parametrize("host", list(HOST_DEPARTURE))
def test_host_departure_within_published_range(example, host):
    spec, panel = example
    state, target, low, high = HOST_DEPARTURE[host]
    value = calibration_metrics(spec, panel)[f"host:{host}"]
    assert low <= value <= high
    assert host in set(panel["host_country"])


def test_table_has_every_figure_and_passes(example):
    spec, panel = example
    table = calibration_table(spec, panel)
    assert list(table.columns) == ["figure", "source", "target", "simulated", "low", "high", "pass"]
    assert len(table) == len(FIGURES) + len(HOST_DEPARTURE)
    assert table["pass"].all(), table[~table["pass"]].to_string()


def test_example_panel_file_is_the_seeded_simulation(example):
    """examples/outrush_synthetic.csv is exactly simulate_panel(spec, 8500, seed=2024)."""
    _spec, panel = example
    path = ROOT / "examples" / "outrush_synthetic.csv"
    if not path.exists():
        pytest.skip("examples/ is not shipped with an installed package")
    stored = pd.read_csv(path)
    assert list(stored.columns) == list(panel.columns)
    assert np.array_equal(stored["id"], panel["id"])
    assert np.allclose(stored["time"], panel["time"], atol=1e-9)
    assert (stored["state"].to_numpy() == panel["state"].to_numpy()).all()
    assert (stored["host_country"].to_numpy() == panel["host_country"].to_numpy()).all()


def test_wave_metrics_on_a_hand_made_panel(migration5):
    rows = [
        # returned at wave 1, abroad again at wave 2, back home at wave 3
        (1, 2022.70, "returned"), (1, 2023.55, "reemigrated"), (1, 2024.55, "returned"),
        # transit -> abroad (a move), then stays
        (2, 2022.70, "transit"), (2, 2023.55, "abroad"), (2, 2024.55, "abroad"),
        # returned at wave 1 and still home at wave 2, leaves by wave 3
        (3, 2022.70, "returned"), (3, 2023.55, "returned"), (3, 2024.55, "swing"),
        # late entrant at wave 2
        (4, 2023.60, "swing"), (4, 2024.50, "swing"),
    ]  # fmt: skip
    panel = pd.DataFrame(rows, columns=["id", "time", "state"])
    ws = wave_states(migration5, panel)
    assert ws[3, 0] == -1 and ws[3, 1] == migration5.index("swing")
    m = calibration_metrics(migration5, panel)
    assert m["returned_share_w1"] == pytest.approx(2 / 3)
    assert m["left_again_w1_w2"] == pytest.approx(1 / 2)
    assert m["changed_w1_w2"] == pytest.approx(1.0)  # only respondent 2 is away at both
    assert m["returned_w2_w3"] == pytest.approx(1 / 3)  # 1 of (1, 2, 4)
    assert m["moved_w2_w3"] == pytest.approx(0.0)
    assert m["leavers_per_returner"] == pytest.approx(1.0)
    assert m["swing_share_w3"] == pytest.approx(2 / 3)


def test_stationary_distribution_is_invariant(migration5):
    q = migration5.rate_matrix()
    pi = stationary_distribution(q)
    assert pi.sum() == pytest.approx(1.0)
    assert np.allclose(pi @ q, 0.0, atol=1e-12)
    assert np.all(pi > 0)
    # Flow balance at stationarity: as many enter 'returned' as leave it.
    r = migration5.index("returned")
    inflow = sum(pi[s] * q[s, r] for s in range(migration5.n_states) if s != r)
    assert math.isclose(inflow, -pi[r] * q[r, r], rel_tol=1e-9)

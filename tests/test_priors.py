"""Intensity priors mean what they say: draws from the PyMC model's prior against the spec.

References: the stated probability is the prior median of P(leave r within w) =
``1 - exp(-lambda_r w)`` exactly (a monotone function of the lognormal lambda_r), and a
Dirichlet(alpha) split has mean ``alpha / sum(alpha)``. Monte Carlo tolerances: with n
draws the share of draws below the true median is ``0.5 +- 0.5 / sqrt(n)`` (1 sd) and a
mean is within ``sd / sqrt(n)``; the tests allow 4 sd.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from markov_migration.inference.model import build_model, sampled_variables
from markov_migration.inference.rate_prior import draw_prior
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.priors import draw_log_rates
from markov_migration.inputs.spec import parse_spec

N = 20_000
DOCS = Path(__file__).resolve().parents[1] / "docs" / "fitting.md"

MODEL = """\
states = ["a", "b", "c", "d"]
[transitions]
a = ["b", "c", "d"]
b = ["a", "c"]
c = ["d"]
"""


def model_of(text: str):
    """The real PyMC model of ``text`` on a tiny panel (the data do not enter prior draws)."""
    spec = parse_spec(textwrap.dedent(text))
    rows = [(1, 0.0, "a"), (1, 1.0, "b"), (2, 0.0, "b"), (2, 1.5, "c"), (3, 0.0, "c"), (3, 2, "d")]
    df = pd.DataFrame(rows, columns=["id", "time", "state"])
    return spec, build_model(spec, aggregate(validate_panel(df, spec), spec))


def model_draws(text: str, seed: int = 1) -> tuple:
    """Spec and (N, T) prior draws of the model's ``rate`` (pm.draw ignores the likelihood)."""
    spec, model = model_of(text)
    return spec, draw_prior(model, "rate", N, seed)


def total_exit(spec, rate: np.ndarray, state: str) -> np.ndarray:
    r = spec.states.index(state)
    return rate[:, [i for i, (a, _) in enumerate(spec.transitions) if a == r]].sum(axis=1)


def assert_median(draws: np.ndarray, median: float) -> None:
    """The share of draws below ``median`` is 0.5 within 4 Monte Carlo sd."""
    share = float(np.mean(draws < median))
    assert abs(share - 0.5) < 4 * 0.5 / np.sqrt(len(draws)), (share, median)


@pytest.mark.parametrize(
    ("state", "entry", "within", "probability"),
    [
        ("a", "a = { probability = 0.5, within = 1 }", 1.0, 0.5),  # three exits
        ("a", "a = { probability = 0.1, within = 5, sd = 0.5 }", 5.0, 0.1),
        ("b", "b = { probability = 0.3 }", 1.0, 0.3),  # two exits, within defaults to 1
        ("c", "c = { mean_sojourn = 4 }", 1.0, 1 - np.exp(-0.25)),  # one exit
        ("a", "a = { rate = 0.2, split = { b = 5 } }", 1.0, 1 - np.exp(-0.2)),
    ],
)
def test_state_prior_median_is_the_stated_probability(state, entry, within, probability):
    spec, rate = model_draws(MODEL + "[priors]\n" + entry + "\n")
    leave = 1 - np.exp(-total_exit(spec, rate, state) * within)
    assert_median(leave, probability)


def test_state_prior_sd_is_the_sd_of_the_log_total_exit_rate():
    spec, rate = model_draws(MODEL + "[priors]\na = { rate = 0.4, sd = 0.7 }\n")
    log_total = np.log(total_exit(spec, rate, "a"))
    assert np.std(log_total) == pytest.approx(0.7, abs=4 * 0.7 / np.sqrt(2 * N))
    assert np.mean(log_total) == pytest.approx(np.log(0.4), abs=4 * 0.7 / np.sqrt(N))


@pytest.mark.parametrize("alpha", [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (0.5, 3.0, 1.5)])
def test_split_mean_is_alpha_over_its_sum(alpha):
    split = ", ".join(f"{s} = {a}" for s, a in zip("bcd", alpha, strict=True))
    spec, rate = model_draws(MODEL + "[priors]\na = { rate = 1.0, split = { " + split + " } }\n")
    share = rate[:, :3] / total_exit(spec, rate, "a")[:, None]
    a = np.array(alpha)
    mean = a / a.sum()
    sd = np.sqrt(a * (a.sum() - a) / (a.sum() ** 2 * (a.sum() + 1)))
    np.testing.assert_array_less(np.abs(share.mean(axis=0) - mean), 4 * sd / np.sqrt(N))


def test_default_prior_is_state_level_whatever_the_number_of_exits():
    spec, rate = model_draws(MODEL)
    for state in ("a", "b", "c"):  # three, two and one exits
        assert_median(1 - np.exp(-total_exit(spec, rate, state)), 1 - np.exp(-0.2))


def test_transition_prior_is_outside_the_split():
    """``"a->b"`` keeps its own lognormal; a's other exits share the state default."""
    spec, rate = model_draws(MODEL + '[priors]\n"a->b" = { rate = 0.05, sd = 0.3 }\n')
    log_ab = np.log(rate[:, spec.transitions.index((0, 1))])
    assert np.std(log_ab) == pytest.approx(0.3, abs=4 * 0.3 / np.sqrt(2 * N))
    assert_median(log_ab, np.log(0.05))
    rest = rate[:, [spec.transitions.index((0, 2)), spec.transitions.index((0, 3))]].sum(axis=1)
    assert_median(rest, 0.2)
    # independent of a->b
    assert abs(stats.spearmanr(log_ab, rest).statistic) < 4 / np.sqrt(N)


def test_per_transition_default_keeps_independent_lognormals():
    spec, rate = model_draws(MODEL + "[priors]\ndefault = { rate = 0.2, sd = 1.5 }\n")
    for j in range(len(spec.transitions)):
        assert_median(rate[:, j], 0.2)
        assert np.std(np.log(rate[:, j])) == pytest.approx(1.5, abs=4 * 1.5 / np.sqrt(2 * N))


@pytest.mark.parametrize(
    ("priors", "free"),
    [
        ("", ["log_exit_rate", "split_a", "split_b"]),
        ('"a->b" = { rate = 0.1 }\n', ["log_rate_direct", "log_exit_rate", "split_a", "split_b"]),
        ('"a->b" = { rate = 0.1 }\n"a->c" = { rate = 0.1 }\n',
         ["log_rate_direct", "log_exit_rate", "split_b"]),
        ("default = { rate = 0.2 }\n", ["log_rate_direct"]),
    ],
)  # fmt: skip
def test_sampled_variables_are_the_prior_parameters(priors, free):
    spec, model = model_of(MODEL + "[priors]\n" + priors)
    assert sampled_variables(model) == free
    assert "log_rate" in model.named_vars and "rate" in model.named_vars
    if "split_a" in free:
        assert model.named_vars_to_dims["split_a"] == ("next_a",)
        assert list(model.coords["next_a"]) == [s for s in "bcd" if f'"a->{s}"' not in priors]


def test_sbc_prior_draws_match_the_model():
    """SBC's numpy prior draws (results.sbc.prior_draw) have the model's prior (two-sample KS)."""
    text = MODEL + '[priors]\na = { probability = 0.4, split = { c = 3 } }\n"b->c" = { rate = 1 }\n'
    spec, rate = model_draws(text, seed=2)
    ours = np.exp(draw_log_rates(spec, np.random.default_rng(3), N))
    for j in range(len(spec.transitions)):
        assert stats.ks_2samp(np.log(rate[:, j]), np.log(ours[:, j])).pvalue > 1e-3, j


def _departure_table() -> dict[int, list[float]]:
    """The docs' table of implied one-year departure probabilities, by number of exits."""
    text = DOCS.read_text()
    block = text[text.index("<!-- departure-table -->") :].split("\n\n", 2)[1]
    rows = {}
    for line in block.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[int(cells[0])] = [float(x) for c in cells[1:] for x in re.findall(r"[\d.]+", c)]
    return rows


def test_docs_departure_table_is_what_the_priors_imply():
    """docs/fitting.md's old vs new default table, recomputed by simulation (2 decimals)."""
    table = _departure_table()
    assert sorted(table) == [1, 2, 3, 4]
    for k, documented in table.items():
        targets = ", ".join(f'"t{i}"' for i in range(k))
        base = f'states = ["s", {targets}]\n[transitions]\ns = [{targets}]\n[priors]\n'
        got = []
        for extra in ("default = { rate = 0.2, sd = 1.5 }\n", ""):  # old, new
            log_rate = draw_log_rates(parse_spec(base + extra), np.random.default_rng(k), 100_000)
            leave = 1 - np.exp(-np.exp(log_rate).sum(axis=1))
            got += list(np.quantile(leave, [0.5, 0.025, 0.975]))
        np.testing.assert_allclose(documented, got, atol=0.008, err_msg=f"{k} exits")


def test_fit_with_state_priors_recovers_msm_mle():
    """A real fit under the default state priors: posterior means within 3 posterior sd
    of msm's MLE (tests/results/fit_three.json) and the free variables are diagnosed.

    The panel of test_fit.test_against_r_msm (1,500 respondents, 4 waves), fitted with
    its model minus the per-transition ``default`` line, so every state has the built-in
    state prior (total exit rate and a Dirichlet(1) split).
    """
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.results.diagnostics import convergence_table
    from tests.results import load_fit
    from tests.test_fit import Q3, THREE, simulate_expm

    spec = parse_spec(THREE.replace("default = { rate = 0.2, sd = 1.5 }\n", ""))
    assert spec.priors == {} and len(spec.exit_priors) == 2
    df = simulate_expm(Q3, 1500, [0.0, 0.8, 1.9, 3.1], seed=21)  # three_panel()'s panel
    panel = validate_panel(df, spec, path="<sim>", sha256="m" * 64)
    tree = sample(spec, aggregate(panel, spec), FitSettings(chains=2, draws=500, tune=500, seed=2))
    ref = load_fit("fit_three")
    frm, to = (np.array(x) for x in zip(*spec.transitions, strict=True))
    rate = tree["posterior"]["rate"].values.reshape(-1, len(frm))
    z = np.abs(rate.mean(axis=0) - ref.Q[frm, to]) / rate.std(axis=0)
    assert np.all(z < 3), z
    table = convergence_table(tree)
    labels = " ".join(table["parameter"])
    for name in ("log_exit_rate[a]", "log_exit_rate[b]", "split_a[b]", "split_b[c]"):
        assert name in labels, labels


def test_fit_file_records_both_kinds_of_prior():
    """constant_data: own priors per transition (NaN under a state prior), state priors
    by exit_state and each exit's split concentration."""
    from markov_migration.fitfile.format import constant_dataset

    text = (
        MODEL
        + '[priors]\na = { probability = 0.5, sd = 0.8, split = { c = 3 } }\n"b->a" = { rate = 0.1 }\n'
    )
    spec, _ = model_of(text)
    rows = [(1, 0.0, "a"), (1, 1.0, "b")]
    agg = aggregate(validate_panel(pd.DataFrame(rows, columns=["id", "time", "state"]), spec), spec)
    ds = constant_dataset(spec, agg)
    own = ds["prior_mu"].to_series()
    assert own["b->a"] == pytest.approx(np.log(0.1))
    assert own.drop("b->a").isna().all()
    assert list(ds["exit_state"].values) == ["a", "b", "c"]
    np.testing.assert_allclose(ds["exit_prior_mu"].values, np.log([np.log(2), 0.2, 0.2]))
    np.testing.assert_allclose(ds["exit_prior_sigma"].values, [0.8, 1.5, 1.5])
    split = ds["split_concentration"].to_series()
    assert split[["a->b", "a->c", "a->d", "b->c", "c->d"]].tolist() == [1.0, 3.0, 1.0, 1.0, 1.0]
    assert np.isnan(split["b->a"])

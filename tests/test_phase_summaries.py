"""Phase-type states in summaries: settling, stays, the phase split (``summarize --what phases``).

Reference: a two-phase Coxian state (phase 1 leaves at ``m1`` and progresses at ``l``,
phase 2 leaves at ``m2``) has closed forms, per draw: reach of phase 2 ``l / a`` with
``a = l + m1``, time in phase 1 ``1 / a``, in phase 2 ``(l / a) / m2``, and
``P(stay > t) = e^{-a t} + l (e^{-m2 t} - e^{-a t}) / (a - m2)``. Tolerance 1e-9.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.fitfile.assemble import assemble_fit
from markov_migration.fitfile.format import write_fit
from markov_migration.inference.fit import FitSettings
from markov_migration.inference.latent import observed_generator
from markov_migration.inference.latent_layout import latent_coords, latent_layout
from markov_migration.inputs.aggregate import aggregate
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.spec import parse_spec
from markov_migration.results.summaries import summarize, to_frame
from markov_migration.testing import fake_sample_stats

STAYER = """\
name = "stayer"
states = ["abroad", "returned"]
home = ["returned"]
[transitions]
abroad = ["returned"]
returned = ["abroad"]
[phases]
returned = 2
"""
#: abroad->returned_1, returned_1->returned_2, returned_1->abroad, returned_2->abroad
TRUTH = {"abroad->returned_1": 0.3, "returned_1->returned_2": 0.5,
         "returned_1->abroad": 1.5, "returned_2->abroad": 0.05}  # fmt: skip


def fake_phase_fit(spec, chains=2, draws=50, spread=0.2, seed=0):
    """A fit file of a [phases] model with draws of the hidden intensities around TRUTH."""
    layout = latent_layout(spec)
    rng = np.random.default_rng(seed)
    base = np.log([TRUTH[lab] for lab in layout.rate_labels])
    log_rate = base + spread * rng.standard_normal((chains, draws, base.size))
    kh = len(layout.hidden_states)
    q = np.zeros((chains, draws, kh, kh))
    q[..., layout.rate_from, layout.rate_to] = np.exp(log_rate)
    q[..., np.arange(kh), np.arange(kh)] = -q.sum(axis=-1)
    qo = observed_generator(q, layout, spec.n_states)
    frm = np.array([r for r, _ in spec.transitions])
    to = np.array([s for _, s in spec.transitions])
    coords = {**latent_coords(spec, layout), "chain": np.arange(chains), "draw": np.arange(draws)}
    post = xr.Dataset(
        {
            "log_rate_latent": ((*SAMPLE_DIMS, "latent_transition"), log_rate),
            "rate_latent": ((*SAMPLE_DIMS, "latent_transition"), np.exp(log_rate)),
            "Q_latent": ((*SAMPLE_DIMS, "from_latent", "to_latent"), q),
            "Q": ((*SAMPLE_DIMS, "from_state", "to_state"), qo),
            "rate": ((*SAMPLE_DIMS, "transition"), qo[..., frm, to]),
            "log_rate": ((*SAMPLE_DIMS, "transition"), np.log(qo[..., frm, to])),
        },
        coords={k: v for k, v in coords.items() if k not in ("true_state", "recorded_state")},
    )
    rows = [(i, t, "abroad" if (i + t) % 3 else "returned") for i in range(40) for t in range(3)]
    panel = validate_panel(pd.DataFrame(rows, columns=["id", "time", "state"]), spec,
                           path="<fake>", sha256="0" * 64)  # fmt: skip
    settings = FitSettings(chains=chains, draws=draws, tune=0, seed=seed, sampler="fake")
    return assemble_fit(spec, aggregate(panel, spec), post, fake_sample_stats(chains, draws, seed),
                        settings.to_attrs(), None, panel, sampled=["log_rate_latent"])  # fmt: skip


@pytest.fixture(scope="module")
def tree():
    return fake_phase_fit(parse_spec(STAYER))


def test_phase_measures_match_the_closed_forms_per_draw(tree):
    from markov_migration.results.phases import phases

    da = phases(tree)
    rate = tree["posterior"]["rate_latent"]
    lam = rate.sel(latent_transition="returned_1->returned_2").values
    m1 = rate.sel(latent_transition="returned_1->abroad").values
    m2 = rate.sel(latent_transition="returned_2->abroad").values
    a = lam + m1
    want = {
        ("reach", "returned_1"): np.ones_like(a),
        ("reach", "returned_2"): lam / a,
        ("mean_time", "returned_1"): 1 / a,
        ("mean_time", "returned_2"): lam / a / m2,
        ("mean_sojourn", "returned"): 1 / a + lam / a / m2,
        ("share", "returned_2"): (lam / a / m2) / (1 / a + lam / a / m2),
    }
    for t in (1.0, 5.0, 10.0):
        want[(f"stay_{t:g}", "returned")] = np.exp(-a * t) + lam * (
            np.exp(-m2 * t) - np.exp(-a * t)
        ) / (a - m2)
    for (measure, state), value in want.items():
        got = da.sel(measure=measure, state=state).values
        np.testing.assert_allclose(got, value, rtol=1e-9, err_msg=f"{measure} {state}")
    # the settled phase dominates the long run: most of those still back after 10 years
    assert float(da.sel(measure="stay_10", state="returned").mean()) > 0.1


def test_summary_table_and_cli(tree, tmp_path):
    frame = to_frame(summarize(tree, "phases"))
    assert set(frame["measure"]) == {"reach", "mean_time", "share", "stay_1", "stay_5",
                                     "stay_10", "mean_sojourn"}  # fmt: skip
    assert len(frame) == 3 * 2 + 4 and frame["mean"].notna().all()
    path = tmp_path / "fit.nc"
    write_fit(tree, path)
    out = CliRunner().invoke(app, ["summarize", str(path), "--what", "phases", "--format", "csv"])
    assert out.exit_code == 0, out.output
    assert "returned_2" in out.stdout and "stay_10" in out.stdout


def test_a_fit_without_phases_is_refused():
    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.testing import fake_fit
    from tests.conftest import THREE_SIMULATED

    spec = parse_spec(THREE_SIMULATED)
    plain = fake_fit(spec, simulate_panel(spec, 30, seed=1), chains=1, draws=10)
    with pytest.raises(InputError, match="needs a fit of a model with \\[phases\\]"):
        summarize(plain, "phases")


# -- projections on the hidden states -------------------------------------------------------


def hidden_q(tree, n):
    from markov_migration.core.draws import select_draws

    q = tree["posterior"]["Q_latent"].stack(sample=SAMPLE_DIMS).transpose("sample", ...).values
    return q[select_draws(q.shape[0], n)]


def test_projection_runs_on_the_phases(tree):
    """Mean stocks by phase and return events against expm(Q_latent t) and Van Loan, per draw."""
    import scipy.linalg

    from markov_migration.core.event_moments import expected_step
    from markov_migration.projection.run import project_fit

    n = 1500
    ds = project_fit(tree, {"abroad": 2000}, start=0.0, horizon=6.0, draws=n, seed=5)
    assert ds["phase"].values.tolist() == ["returned_1", "returned_2"]
    q = hidden_q(tree, n)  # hidden order: abroad, returned_1, returned_2
    x0 = np.array([2000.0, 0.0, 0.0])
    want = np.stack([x0 @ scipy.linalg.expm(m * 6.0) for m in q])
    got = np.concatenate(
        [ds["stock"].sel(state="abroad").isel(time=-1).values[:, None],
         ds["phase_stock"].isel(time=-1).values], axis=1,
    )  # fmt: skip
    diff = got - want
    z = diff.mean(axis=0) / (diff.std(axis=0, ddof=1) / np.sqrt(n))
    assert np.all(np.abs(z) < 4.5), z
    np.testing.assert_array_equal(ds["phase_stock"].sum("phase"), ds["stock"].sel(state="returned"))
    x, returns = np.broadcast_to(x0, (n, 3)).copy(), np.zeros(n)
    for _ in range(6):
        x, ev = expected_step(x, [(q, 1.0)], np.zeros(3))
        returns += ev[:, 0, 1]  # abroad -> returned_1: the only way home
    v = ds["cumulative_returns"].isel(time=-1).values
    assert abs((v.mean() - returns.mean()) / (v.std() / np.sqrt(n))) < 4.5
    # a progression returned_1 -> returned_2 is no event of the observed states
    assert int(ds["events"].sel(from_state="returned", to_state="returned").max()) == 0


def test_phase_progression_is_no_new_return(tree):
    """Persons home at the start who only move on to the settled phase never count as returned."""
    from markov_migration.projection.run import project_fit

    ds = project_fit(tree, {"returned": 3000, "abroad": 500}, start=0.0, horizon=8.0,
                     draws=300, seed=2)  # fmt: skip
    ever = ds["ever_returned"].values
    assert np.all(ever <= ds["cumulative_returns"].values)
    # and those home at the start were split over the phases as steady entries would be
    start = ds["phase_stock"].isel(time=0)
    assert np.all(start.sum("phase") == 3000) and int(start.sel(phase="returned_2").min()) > 0


def test_project_command_writes_phase_stocks(tree, tmp_path):
    from markov_migration.projection.files import read_projection

    path = tmp_path / "fit.nc"
    write_fit(tree, path)
    out = CliRunner().invoke(
        app,
        ["project", str(path), "--initial", "abroad=1000", "--start", "0", "--horizon", "5",
         "--draws", "40", "--out", str(tmp_path / "p.nc"), "--csv", str(tmp_path / "p.csv"),
         "--plot-dir", str(tmp_path / "plots"), "-q"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    ds = read_projection(tmp_path / "p.nc")
    assert "phase_stock" in ds and ds["phase"].values.tolist() == ["returned_1", "returned_2"]
    table = pd.read_csv(tmp_path / "p.csv")
    assert {"phase:returned_1", "phase:returned_2"} <= set(table["series"])

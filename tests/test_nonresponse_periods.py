"""``periods`` together with ``[nonresponse]`` in latent-state fits (issue 13).

Reference: the log-likelihood of the PyMC model at fixed parameters against a
scipy product written here one respondent at a time: the scheduled interviews are
derived independently (each wave's median date; from a respondent's first wave to
the panel's last, no absorbing state in this model), a missed one is a record with
emission ``(1 - r)`` (``1`` once lost to attrition), an answered one ``r e``; each
interval is split at the cut points and every piece multiplied by ``expm`` of its
period's generator (extended by the attrition hazards), 1e-9 relative. With period
effects of zero the model equals the model without periods (1e-9 relative), also
with ``[phases]``; the gradient agrees with central finite differences; a
prior-only fit runs through summarize, check, project, compare and reproduce; the
nonresponse check's expected counts equal a hand computation with piecewise
``expm`` (1e-9).
"""

# ruff: noqa: TID251  (tests of the layer-3 model import PyTensor directly)
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.inference.latent import build_latent_model, latent_design
from markov_migration.inputs.panel import validate_panel
from markov_migration.inputs.spec import parse_spec
from tests.conftest import model_gradient_and_fd
from tests.test_latent_covariates import GRAD_BASE, model_loglik, small_panel

CUTS = [1.5, 2.0]  # one inside the waves' intervals, one on a wave date
SEX = '[covariates.sex]\nkind = "categorical"\ntransitions = ["abroad->returned"]\n'
LOG_RATE = np.log([0.3, 0.1, 0.5, 0.2, 0.15])
PI = np.array([0.5, 0.3, 0.2])
E = np.array([[1.0, 0, 0], [0.2, 0.8, 0], [0, 0, 1.0]])  # swing recorded as abroad 20%
RESPONSE = np.array([0.9, 0.7, 0.6])
ATTRITION = np.array([0.1, 0.2, 0.05])


def _model_text(attrition: bool, covariate: bool, cuts=CUTS) -> str:
    periods = f"periods = {list(cuts)}\n" if cuts else ""
    return (
        periods + GRAD_BASE + (SEX if covariate else "")
        + f'[nonresponse]\nschedule = "waves"\nattrition = {str(attrition).lower()}\n'
        + "[data]\nresolution = 1e-9\n"
    )  # fmt: skip


def nr_spec(attrition: bool, covariate: bool, cuts=CUTS):
    return parse_spec(_model_text(attrition, covariate, cuts))


def nr_panel(n=50, seed=5) -> pd.DataFrame:
    """``small_panel`` (waves near 0, 1, 2, 3) with a fifth of the later records dropped."""
    df = small_panel(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    later = df["id"].duplicated().to_numpy()
    return df[~(later & (rng.uniform(size=len(df)) < 0.2))].reset_index(drop=True)


def values_of(spec, lhr, attrition: bool) -> dict:
    v = {"log_rate": LOG_RATE, "initial": PI, "misclassification_swing": E[1, [1, 0]],
         "response": RESPONSE}  # fmt: skip
    if lhr is not None:
        v["log_hazard_ratio"] = lhr
    if attrition:
        v["log_attrition"] = np.log(ATTRITION)
    return v


def reference_loglik(spec, design, panel, lhr, attrition: bool, cuts) -> float:
    """The forward product one respondent at a time (module docstring)."""
    k = spec.n_states
    data = panel.data

    def generator(sex: str, period: int) -> np.ndarray:
        log_q = LOG_RATE.copy()
        for b, eff in zip(lhr, design.effects, strict=True):
            on = (eff.covariate == "sex" and sex == eff.level) or (
                eff.covariate == "period" and design.period_labels[period] == eff.level
            )
            log_q[spec.transitions.index(eff.transition)] += b * on
        q = np.zeros((k, k))
        for (r, s), val in zip(spec.transitions, np.exp(log_q), strict=True):
            q[r, s] = val
        q -= np.diag(q.sum(axis=1))
        if not attrition:
            return q
        d = np.diag(ATTRITION)
        return np.block([[q - d, d], [np.zeros((k, k)), q]])

    # waves: records near 0, 1, 2, 3; each wave dated at the median of its records
    wave_of = np.rint(data["time"].to_numpy()).astype(int)
    dates = [float(np.median(data["time"].to_numpy()[wave_of == w])) for w in range(4)]
    h = 2 * k if attrition else k
    total = 0.0
    for _, rows in data.groupby("id", sort=False):
        t, code = rows["time"].to_numpy(), rows["state"].to_numpy()
        sex = rows["sex"].to_numpy() if "sex" in rows else np.full(t.size, "f")
        waves = np.rint(t).astype(int)
        # (time, emission over hidden states, sex of the interval that starts here)
        steps = [(t[0], np.r_[PI * E[:, code[0]], np.zeros(h - k)], sex[0])]
        for j in range(1, t.size):
            e = np.r_[RESPONSE * E[:, code[j]], np.zeros(h - k)]
            steps.append((t[j], e, sex[j]))
        for w in range(waves[0] + 1, 4):
            if w not in waves:  # missed: the covariates of the latest record before it
                before = sex[t < dates[w]][-1]
                steps.append((dates[w], np.r_[1 - RESPONSE, np.ones(h - k)], before))
        steps.sort(key=lambda s: s[0])
        alpha = steps[0][1]
        for (t0, _, sx), (t1, e, _) in zip(steps[:-1], steps[1:], strict=True):
            edges = [t0, *[c for c in cuts if t0 < c < t1], t1]
            trans = np.eye(h)
            for a, b in zip(edges[:-1], edges[1:], strict=True):
                period = int(np.searchsorted(cuts, a, side="right"))
                trans = trans @ scipy.linalg.expm(generator(sx, period) * (b - a))
            alpha = (alpha @ trans) * e
        total += np.log(alpha.sum())
    return total


@pytest.mark.parametrize("covariate", [False, True], ids=["periods", "periods+sex"])
@pytest.mark.parametrize("attrition", [False, True], ids=["no-attrition", "attrition"])
def test_loglik_matches_a_piecewise_reference(attrition, covariate):
    spec = nr_spec(attrition, covariate)
    panel = validate_panel(nr_panel(), spec)
    design, _ = latent_design(spec, panel)
    lhr = np.random.default_rng(3).normal(0, 0.5, len(design.effects))
    assert any(e.covariate == "period" for e in design.effects)
    got = model_loglik(build_latent_model(spec, panel), values_of(spec, lhr, attrition))
    ref = reference_loglik(spec, design, panel, lhr, attrition, CUTS)
    assert got == pytest.approx(ref, rel=1e-9)
    # the cut points matter: the reference without them differs
    assert abs(reference_loglik(spec, design, panel, lhr, attrition, []) - ref) > 1e-3


@pytest.mark.parametrize("crossing", [False, True], ids=["crossing-free", "crossing"])
def test_periods_without_a_period_effect_equal_the_model_without_periods(crossing):
    """Period effects of zero: the periods model is the model without periods (1e-9).

    Crossing-free: interviews on the wave dates (0, 1, 2, 3) and a cut at 2.0, so no
    interval (missed waves included) is split; crossing: jittered dates and cuts at
    1.5 and 2.0, whose blank cut records must say nothing in the active and the lost
    halves.
    """
    from markov_migration.inputs.latent_design import cut_records
    from markov_migration.inputs.nonresponse import schedule_records

    df = nr_panel()
    cuts = [2.0] if not crossing else CUTS
    if not crossing:
        df["time"] = df["time"].round()
    for attrition in (False, True):
        spec, plain = nr_spec(attrition, True, cuts), nr_spec(attrition, True, cuts=[])
        panel = validate_panel(df, spec)
        d = panel.data  # the scheduled interviews (missed ones too) cross the cuts or not
        rec = schedule_records(d["id"], d["time"], d["state"], np.ones(len(d), int),
                               np.ones(len(d)), 4, [])  # fmt: skip
        assert (cut_records(rec.ids, rec.times, cuts)[0].size > 0) == crossing
        design, _ = latent_design(spec, panel)
        lhr = np.array([0.6 if e.covariate == "sex" else 0.0 for e in design.effects])
        got = model_loglik(build_latent_model(spec, panel), values_of(spec, lhr, attrition))
        base = build_latent_model(plain, validate_panel(df, plain))
        want = model_loglik(base, values_of(plain, lhr[lhr != 0], attrition))
        assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("attrition", [False, True], ids=["no-attrition", "attrition"])
def test_phases_with_periods_and_nonresponse(attrition):
    """``[phases] returned = 2`` too: with period effects of zero the model equals the one
    without periods (1e-9), and a period effect changes it."""
    text = _model_text(attrition, True).replace(
        "[nonresponse]", "[phases]\nreturned = 2\n[nonresponse]"
    )
    spec, plain = parse_spec(text), parse_spec(text.replace(f"periods = {CUTS}\n", ""))
    df = nr_panel()
    panel = validate_panel(df, spec)
    design, _ = latent_design(spec, panel)
    model, base = (
        build_latent_model(spec, panel),
        build_latent_model(plain, validate_panel(df, plain)),
    )
    values = {"log_rate_latent": np.log(np.linspace(0.1, 0.5, len(model.coords["latent_transition"]))),
              "initial": np.full(4, 0.25), "misclassification_swing": E[1, [1, 0]],
              "response": RESPONSE}  # fmt: skip
    if attrition:
        values["log_attrition"] = np.log(ATTRITION)
    sex = np.array(["sex" in e.label for e in design.effects])
    lhr = np.where(sex, 0.5, 0.0)
    got = model_loglik(model, {**values, "log_hazard_ratio": lhr})
    want = model_loglik(base, {**values, "log_hazard_ratio": lhr[sex]})
    assert got == pytest.approx(want, rel=1e-9)
    moved = model_loglik(model, {**values, "log_hazard_ratio": np.where(sex, 0.5, 0.7)})
    assert abs(moved - got) > 0.1


def test_model_gradient_matches_finite_differences():
    spec = nr_spec(True, True)
    model = build_latent_model(spec, validate_panel(nr_panel(n=30), spec))
    assert {"log_hr_scaled", "response", "log_attrition"} <= {rv.name for rv in model.free_RVs}
    grad, fd = model_gradient_and_fd(model, seed=3, spread=0.3)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_prior_only_fit_runs_through_summarize_check_project_compare_reproduce(tmp_path):
    model, panel, fit = tmp_path / "m.toml", tmp_path / "p.csv", tmp_path / "prior.nc"
    model.write_text(_model_text(True, True))
    nr_panel().to_csv(panel, index=False)
    res = run("fit", panel, "--model", model, "--out", fit, "--prior-only", "--draws", 100, "-q")
    assert res.exit_code == 0, (res.output, repr(res.exception))
    from markov_migration.fitfile.format import read_fit

    tree = read_fit(fit)
    assert {"response", "attrition", "log_hazard_ratio"} <= set(tree["posterior"].data_vars)
    ll = tree["log_likelihood"]["histories"].values
    assert np.isfinite(ll).mean() > 0.99
    # the fit file's per-respondent log-likelihood (numpy, latent_draws) sums to the
    # sampler's (PyMC graph) at a draw
    post = tree["posterior"].isel(chain=0, draw=0)
    names = ("log_rate", "log_hazard_ratio", "initial", "misclassification_swing", "response",
             "log_attrition")  # fmt: skip
    spec = nr_spec(True, True)
    model = build_latent_model(spec, validate_panel(nr_panel(), spec))
    want = model_loglik(model, {v: post[v].values for v in names})
    assert ll[0, 0].sum() == pytest.approx(want, rel=1e-9)
    res = run("summarize", fit)
    assert res.exit_code == 0, (res.output, repr(res.exception))
    res = run("check", fit, "--draws", 20, "--out-dir", tmp_path / "c")
    assert res.exit_code in (0, 1), (res.output, repr(res.exception))
    table = (tmp_path / "c" / "ppc_transitions.csv").read_text()
    assert ",missed," in table
    res = run("project", fit, "--initial", "abroad=1000", "--start", 3, "--horizon", 5,
              "--draws", 50, "--out", tmp_path / "pp.nc", "-q")  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    import shutil

    shutil.copy(fit, tmp_path / "again.nc")
    res = run("compare", fit, tmp_path / "again.nc")
    assert res.exit_code == 0, (res.output, repr(res.exception))
    res = run("reproduce", fit)
    assert res.exit_code == 0 and "exact match" in res.stdout, res.output


# -- the predictive check ---------------------------------------------------------------


def test_check_expected_counts_with_periods_by_hand():
    """The nonresponse check of a periods fit against a hand computation (1e-9).

    A fake fit (every draw the same; response ``r`` in both states, no attrition, no
    hidden layer, rates doubled after the cut at 2.5): a scheduled interview at ``t``
    is answered as ``s`` with probability ``r P(t_a, t)[a, s]``, ``a`` the last answered
    record at ``t_a`` and ``P`` the product of ``expm(Q_period * piece)`` over the
    interval's pieces; missed with ``1 - r``. The expected counts by (previous record,
    outcome) must equal these sums; without the split (one generator per interval,
    that of its start) they differ.
    """
    import xarray as xr

    from markov_migration.defaults import SAMPLE_DIMS
    from markov_migration.fitfile.assemble import assemble_fit
    from markov_migration.inference.fit import FitSettings
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.nonresponse import wave_times
    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.results.ppc_nonresponse import MISSED, ppc_nonresponse
    from markov_migration.testing import fake_sample_stats
    from tests.test_nonresponse import SIM

    r, hr, cut, draws = 0.7, 2.0, 2.5, 2
    sim_spec = parse_spec(SIM)
    df = simulate_panel(sim_spec, 150, seed=4)
    spec = parse_spec(f"periods = [{cut}]\n" + SIM + "[nonresponse]\nattrition = false\n")
    panel = validate_panel(df, spec, path="<sim>", sha256="0" * 64)
    agg = aggregate(panel, spec)
    design, _ = latent_design(spec, panel, agg)
    assert [e.covariate for e in design.effects] == ["period", "period"]
    rate = np.array([sim_spec.rates[p] for p in spec.transitions])
    q0 = np.array([[-rate[0], rate[0]], [rate[1], -rate[1]]])
    shape = (1, draws)
    states = list(spec.states)
    post = {
        "log_rate": ((*SAMPLE_DIMS, "transition"), np.broadcast_to(np.log(rate), shape + (2,))),
        "log_hazard_ratio": ((*SAMPLE_DIMS, "covariate_effect"),
                             np.full(shape + (2,), np.log(hr))),
        "Q": ((*SAMPLE_DIMS, "period", "from_state", "to_state"),
              np.broadcast_to(np.stack([q0, hr * q0]), shape + (2, 2, 2))),
        "response": ((*SAMPLE_DIMS, "response_state"), np.full(shape + (2,), r)),
    }  # fmt: skip
    coords = {"chain": [0], "draw": np.arange(draws), "from_state": states, "to_state": states,
              "transition": list(spec.transition_labels), "response_state": states,
              "covariate_effect": [e.label for e in design.effects],
              "period": list(design.grid_coords["period"])}  # fmt: skip
    settings = FitSettings(chains=1, draws=draws, tune=1, seed=0, sampler="fake")
    tree = assemble_fit(spec, agg, xr.Dataset(post, coords=coords), fake_sample_stats(1, draws, 0),
                        settings.to_attrs(), None, panel,
                        sampled=["log_rate", "log_hazard_ratio", "response"])  # fmt: skip
    tree["constant_data"]["resolution"] = 0.0  # no rounding of the pieces
    res = ppc_nonresponse(tree, n_draws=draws, n_bands=1)

    def transition(t0: float, t1: float, split: bool = True) -> np.ndarray:
        edges = [t0, *([cut] if split and t0 < cut < t1 else []), t1]
        out = np.eye(2)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            out = out @ scipy.linalg.expm((hr if a >= cut else 1.0) * q0 * (b - a))
        return out

    d = panel.data.sort_values(["id", "time"])
    wave, dates = wave_times(d["time"].to_numpy())
    d = d.assign(wave=wave)
    names = [*spec.states, MISSED]
    want, unsplit = np.zeros((3, 3)), np.zeros((3, 3))
    for _, g in d.groupby("id"):
        answered = dict(zip(g["wave"], zip(g["time"], g["state"], strict=True), strict=True))
        t_a, a = answered[g["wave"].iloc[0]]
        prev, t_prev = a, t_a
        for w in range(int(g["wave"].iloc[0]) + 1, dates.size):
            t = answered[w][0] if w in answered else dates[w]
            want[prev, :2] += r * transition(t_a, t)[a]
            want[prev, 2] += 1 - r
            # ignoring the cut (each gap with the generator of its start) differs
            unsplit[prev, :2] += (
                r * (transition(t_a, t_prev, False) @ transition(t_prev, t, False))[a]
            )
            unsplit[prev, 2] += 1 - r
            if w in answered:
                t_a, a = answered[w]
                prev = a
            else:
                prev = 2
            t_prev = t
    got = res.table.pivot_table(index="from", columns="to", values="expected", aggfunc="sum")
    got = got.reindex(index=names, columns=names).fillna(0.0).to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert np.abs(unsplit - want).max() > 1e-3
    assert any("period cut points" in note for note in res.notes)

"""Exact transition times (msm obstype 2) in hidden models: msm's definition, and why it is refused.

msm's ``lik.c`` (``calc_p``: ``Pmat(..., exacttimes = (obstype == 2))``) uses, for an
obstype 2 record, the hidden chain's ``T = D(t) (I + Q_off)``, ``D(t) = diag(exp(q_hh t))``,
then the record's emission given the hidden state. The forward kernel computes exactly
that, but panels flagging obstype 2 stay refused with ``[misclassification]`` and
``[phases]`` (``inputs/obstype.py``). References and tolerances:

* R msm 1.7 at fixed parameters on ``cav``: the msm manual's misclassification model
  (two initprobs) and ``phase.states`` (Coxian phases of well, of mild), 726-742 rows
  flagged obstype 2, with and without 169 deaths flagged obstype 3; committed JSON of
  ``tests/results/forward/msm_obstype_hidden.R``; the split and the unsplit trees to
  1e-8 relative (observed: < 1e-14);
* why misclassification is refused: the log-likelihood ratio of two parameter sets
  changes with the time unit (years against days: by more than 10), which it does
  not without misclassification (1e-9);
* why phases are refused: msm's phased obstype 2 density of a move out of a phased
  state integrates to ``b1 / (a + b1)`` < 1 over the move's time (quadrature, 1e-8),
  the observed state's sojourn density ``exp(Q_SS t) Q_S,s`` to 1;
* with the refusal lifted in-process (as msm would have it; ``lifted`` fixture), the
  PyMC model's log-density and gradient, split tree against unsplit, to 1e-10, its
  gradient against central finite differences, to 1e-5 relative, and the latent
  check's expected counts, the latent backtest's predictive and densities and a
  prior-only fit's per-respondent log-likelihood against a brute-force per-respondent
  filter (scipy ``expm``, the records' ``T`` by hand), to 1e-9 relative: the results
  side filters a kept exact time with its own ``T`` (``results/latent_pieces.py``).
"""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.core import forward as F
from markov_migration.core import phases as PH
from markov_migration.core.renewal import renewal_states, split_histories
from markov_migration.io import models_dir
from tests.test_forward import RESULTS, generator

runner = CliRunner()

#: cav's direct transitions (models/cav.toml, msm's twoway4)
TWOWAY = np.array([[0, 1, 0, 1], [1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=bool)


def cav_flags(allowed, variant: str) -> pd.DataFrame:
    """cav with msm_obstype_hidden.R's flags (an ``obstype`` column)."""
    cav = pd.read_csv(RESULTS / "cav.csv")
    ids, st = cav["PTNUM"].to_numpy(), cav["state"].to_numpy() - 1
    first = ~cav["PTNUM"].duplicated().to_numpy()
    prev = np.r_[0, st[:-1]]
    direct = ~first & ((prev == st) | allowed[prev, st])
    ot = np.ones(st.size, np.int64)
    ot[direct & (ids % 3 == 0)] = 2
    if variant == "mixed":
        ot[~first & (ot == 1) & (st == 3)] = 3
    return cav.assign(obstype=ot)


def test_msm_obstype_2_in_hidden_models():
    out = json.loads((RESULTS / "msm_obstype_hidden.json").read_text())
    assert out["msm_version"] == "1.7" and len(out["cases"]) == 8
    for case in out["cases"]:
        if case["model"] == "misclassification":
            q = np.array(case["qmatrix"], dtype=float)
            Q = generator(q)
            E = np.array(case["ematrix"], dtype=float)
            E[np.diag_indices(4)] = 1 - E.sum(axis=1)
            B = F.emission_table(E, [[0], [1], [2], [3]])
            support = F.emission_table((np.array(case["ematrix"]) > 0) | np.eye(4, dtype=bool),
                                       [[0], [1], [2], [3]]) > 0  # fmt: skip
            data = cav_flags(q > 0, case["variant"])
        else:
            lay = PH.phase_expansion(TWOWAY, {case["phase_state"] - 1: case["n_phases"]})
            Qh = np.array(case["hidden_qmatrix"], dtype=float)
            Q = PH.generator_from_rates(Qh.shape[0], lay.rate_from, lay.rate_to,
                                        Qh[lay.rate_from, lay.rate_to])  # fmt: skip
            B = F.emission_table(lay.emission, [[0], [1], [2], [3]])
            support = B > 0
            data = cav_flags(TWOWAY, case["variant"])
        ot = data["obstype"].to_numpy()
        assert (ot == 2).sum() == case["n_obstype2"] > 700, case["name"]
        assert (ot == 3).sum() == case["n_obstype3"], case["name"]
        pi = np.array(case["initprobs"], dtype=float)
        h = F.aggregate_histories(data["PTNUM"], data["years"], data["state"] - 1, ot)
        hs = split_histories(h, renewal_states(support))
        if case["model"] == "phases":  # the unphased states renew: shared tails
            assert hs.n_intervals < h.n_intervals
        for tree in (h, hs):
            value = -2 * F.loglik(Q, pi, B, *tree)
            assert value == pytest.approx(case["minus2loglik"], rel=1e-8), case["name"]


# -- the panel column and the PyMC model ----------------------------------------------------

MISC = '[misclassification]\nwell = ["mild"]\nmild = ["well", "severe"]\nsevere = ["mild"]\n'
PHASES = "[phases]\nmild = 2\n"


@pytest.fixture
def lifted(monkeypatch):
    """The panel check without its obstype refusals (as if msm's definition were taken)."""
    from markov_migration.inputs import panel as panel_module

    monkeypatch.setattr(panel_module, "check_obstype",
                        lambda out, same_id, spec, path, column: bool((out["obstype"] != 1).any()))  # fmt: skip


def _model_text(extra: str) -> str:
    return (models_dir() / "cav.toml").read_text() + extra


def _spec_and_panel(extra: str, variant: str = "mixed", n_people: int | None = None):
    from markov_migration.inputs.obstype import with_panel_obstype
    from markov_migration.inputs.panel import validate_panel
    from markov_migration.inputs.spec import parse_spec

    spec = parse_spec(_model_text(extra))
    df = cav_flags(TWOWAY, variant)
    if n_people is not None:
        df = df[df["PTNUM"].isin(df["PTNUM"].unique()[:n_people])]
    panel = validate_panel(df, spec)
    return with_panel_obstype(spec, panel), panel


def test_model_split_equals_unsplit_and_gradient_matches_fd(lifted, monkeypatch):
    from markov_migration.inference import latent_renewal
    from markov_migration.inference.latent import build_latent_model
    from tests.conftest import model_gradient_and_fd
    from tests.test_forward_renewal import _logp_and_grad

    spec, panel = _spec_and_panel(MISC)
    assert spec.observation.latent and (panel.data["obstype"] == 2).sum() > 700
    split_model = build_latent_model(spec, panel)
    rng = np.random.default_rng(3)
    start = split_model.initial_point()
    points = [{k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()} for _ in range(2)]
    got = _logp_and_grad(split_model, points)
    split = latent_renewal.fit_histories
    monkeypatch.setattr(latent_renewal, "fit_histories", lambda spec, layout, h: h)
    want = _logp_and_grad(build_latent_model(spec, panel), points)
    for g, w in zip(got, want, strict=True):
        assert np.isfinite(g[0][0])
        assert g[0][0] == pytest.approx(w[0][0], rel=1e-10, abs=0)
        np.testing.assert_allclose(np.concatenate(g[1:]), np.concatenate(w[1:]), rtol=1e-10,
                                   atol=1e-10 * np.abs(np.concatenate(w[1:])).max())  # fmt: skip
    monkeypatch.setattr(latent_renewal, "fit_histories", split)  # (not undo: keep ``lifted``)
    small_spec, small_panel = _spec_and_panel(MISC, n_people=60)
    grad, fd = model_gradient_and_fd(build_latent_model(small_spec, small_panel), seed=5,
                                     spread=0.3)  # fmt: skip
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())


def test_obstype_2_stays_refused_with_hidden_states():
    from markov_migration.errors import PanelError

    with pytest.raises(PanelError, match=r"obstype 2 .* not supported with \[misclassification\]"):
        _spec_and_panel(MISC)
    with pytest.raises(PanelError, match=r"obstype 2 .* not supported with \[phases\]"):
        _spec_and_panel(PHASES)


def test_msm_misclassified_obstype_2_depends_on_the_time_unit():
    """Why misclassification is refused: a record flagged 2 may be a kept true state
    (``exp(q_ii t)``, a probability) or a jump (``exp(q_ii t) q_ij``, a density per time
    unit). Measured in days instead of years every jump term shrinks by 365.25 and every
    kept term does not, so the log-likelihood ratio of two parameter sets changes (a
    likelihood's ratio does not depend on the unit; it does not here without
    misclassification). Simulated paths with every true move recorded."""
    frame = _misclassified_paths(np.random.default_rng(21), 100, 5.0)
    codes = frame["state"].map({"home": 0, "abroad": 1, "dead": 2}).to_numpy()
    E = np.array([[1 - ERRORS3[0], ERRORS3[0], 0], [ERRORS3[1], 1 - ERRORS3[1], 0], [0, 0, 1]])
    pi = np.array([0.5, 0.5, 0.0])
    slow = {k: 0.3 * v for k, v in RATES3.items()}

    def ratio(B, unit):
        h = F.aggregate_histories(frame["id"], frame["time"] * unit, codes, frame["obstype"])
        return F.loglik(_q3(RATES3, unit), pi, B, *h) - F.loglik(_q3(slow, unit), pi, B, *h)

    misc = F.emission_table(E, [[0], [1], [2]])
    assert abs(ratio(misc, 365.25) - ratio(misc, 1.0)) > 10
    assert ratio(np.eye(3), 365.25) == pytest.approx(ratio(np.eye(3), 1.0), rel=1e-9)
    # in years the true rates already lose against rates 0.3 times as large
    assert ratio(misc, 1.0) < 0 < ratio(np.eye(3), 1.0)


def test_msm_phased_obstype_2_density_is_defective():
    """Why phases stay refused: a state A in two Coxian phases (A1 -> A2 rate a, A1 -> B
    b1, A2 -> B b2). msm's obstype 2 record of B at t after A at 0 contributes
    ``exp(-(a + b1) t) b1`` (phase A1 kept), whose integral over t is ``b1 / (a + b1)``:
    the moves after an unseen A1 -> A2 are missing. The sojourn density of the observed
    state, ``(exp(Q_AA t) Q_AB)[A1]``, integrates to 1."""
    import scipy.integrate

    lay = PH.phase_expansion(np.array([[0, 1], [0, 0]], dtype=bool), {0: 2})
    assert lay.observed.tolist() == [0, 0, 1]
    a, b1, b2 = 1.0, 0.5, 2.0
    Q = np.array([[-(a + b1), a, b1], [0.0, -b2, b2], [0.0, 0.0, 0.0]])
    B = F.emission_table(lay.emission, [[0], [1]])

    def msm_density(t):
        h = F.aggregate_histories([0, 0], [0.0, t], [0, 1], [1, 2])
        return np.exp(F.loglik(Q, np.array([1.0, 0, 0]), B, *h))

    msm_mass = scipy.integrate.quad(msm_density, 0, 60, limit=200)[0]
    assert msm_mass == pytest.approx(b1 / (a + b1), rel=1e-8)
    sojourn = scipy.integrate.quad(
        lambda t: (scipy.linalg.expm(Q[:2, :2] * t) @ Q[:2, 2])[0], 0, 60, limit=200
    )[0]
    assert sojourn == pytest.approx(1.0, rel=1e-8)


# -- the results side: check and backtest against a brute-force filter ----------------------


def _prior_fit(tmp_path, extra, variant="mixed"):
    from markov_migration.fitfile.format import read_fit

    cav_flags(TWOWAY, variant).to_csv(tmp_path / "cav.csv", index=False)
    (tmp_path / "m.toml").write_text(_model_text(extra))
    out = tmp_path / "prior.nc"
    res = runner.invoke(app, [str(a) for a in (
        "fit", tmp_path / "cav.csv", "--model", tmp_path / "m.toml", "--out", out,
        "--prior-only", "--chains", 1, "--draws", 3, "-q")])  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    return read_fit(out)


def _brute_arrays(tree):
    """Q, emission (recorded code, true state) and initial weights of each draw, by hand."""
    post = tree["posterior"]
    Q = post["Q"].transpose("chain", "draw", "from_state", "to_state").values[0]
    E = post["misclassification"].transpose("chain", "draw", "true_state",
                                            "recorded_state").values[0]  # fmt: skip
    pi = post["initial"].transpose("chain", "draw", "latent_state").values[0]
    return Q, np.transpose(E, (0, 2, 1)), pi


def _t_matrix(Q, gap, kind):
    """The record's matrix on the hidden chain, by hand (msm's Pmat / pijdeath)."""
    K = Q.shape[0]
    if kind == 1:
        return scipy.linalg.expm(Q * gap)
    out = np.zeros((K, K))
    for i in range(K):
        for j in range(K):
            if kind == 2:
                out[i, j] = np.exp(Q[i, i] * gap) * (1.0 if i == j else Q[i, j])
            else:
                out[i, j] = sum(scipy.linalg.expm(Q * gap)[i, m] * Q[m, j]
                                for m in range(K) if m != j)  # fmt: skip
    return out


def _brute_filter(Q, table, pi, times, codes, kinds, res):
    """Filtered hidden distribution at each record, the one-step predictive (carried) and
    the respondent's log-likelihood."""
    f = pi * table[codes[0]]
    filtered, carried, loglik = [f / f.sum()], [pi / pi.sum()], np.log(f.sum())
    for k in range(1, codes.size):
        gap = times[k] - times[k - 1]
        if res > 0:
            gap = max(round(gap / res), 1) * res
        c = filtered[-1] @ _t_matrix(Q, gap, kinds[k])
        carried.append(c)
        f = c * table[codes[k]]
        loglik += np.log(f.sum())
        filtered.append(f / f.sum())
    return np.array(filtered), np.array(carried), loglik


def _sorted_records(tree):
    pdata = tree["panel_data"]
    resp = pdata["respondent"].values.astype(int)
    time = pdata["time"].values.astype(float)
    order = np.lexsort((time, resp))
    code = pdata["state"].values.astype(int)[order]
    return resp[order], time[order], code, pdata["obstype"].values.astype(int)[order], order


def test_check_and_backtest_filter_kept_exact_times_with_their_t(lifted, tmp_path):
    from markov_migration.results.backtest_latent import latent_heldout_predictive
    from markov_migration.results.ppc_latent import ppc_latent

    tree = _prior_fit(tmp_path, MISC, variant="mixed")
    res = float(tree["constant_data"]["resolution"])
    Q, table, pi = _brute_arrays(tree)
    resp, time, code, kind, order = _sorted_records(tree)
    assert (kind == 2).sum() > 700 and (kind == 3).sum() > 100
    people = np.unique(resp)
    # the fit file's per-respondent log-likelihood (the unsplit tree, inference/latent_draws)
    ll = tree["log_likelihood"]["histories"].transpose("chain", "draw", "respondent").values[0]
    labels = tree["log_likelihood"]["respondent"].values.astype(str)
    ids = tree["panel_data"]["respondent_id"].values.astype(str)
    for p in people[::25]:
        rows = np.flatnonzero(resp == p)
        col = int(np.flatnonzero(labels == ids[p])[0])
        for d in range(len(Q)):
            brute = _brute_filter(Q[d], table[d], pi[d], time[rows], code[rows], kind[rows], res)[2]
            assert ll[d, col] == pytest.approx(brute, rel=1e-9), (p, d)
    # the check: expected counts of (from, to) of the intervals ending in a record at a time
    result = ppc_latent(tree, n_draws=3, n_bands=1)
    expected = np.zeros((len(Q), 4, 4))
    for d in range(len(Q)):
        for p in people:
            rows = np.flatnonzero(resp == p)
            _, carried, _ = _brute_filter(Q[d], table[d], pi[d], time[rows], code[rows],
                                       kind[rows], res)  # fmt: skip
            for k in range(1, rows.size):
                if kind[rows[k]] == 1:
                    pred = carried[k] @ table[d].T
                    expected[d, code[rows[k - 1]], :] += pred / pred.sum()
    got = result.table.groupby(["from", "to"], observed=True)["expected"].sum()
    names = ["well", "mild", "severe", "dead"]
    want = expected.mean(axis=0)
    assert got.sum() == pytest.approx(((kind == 1) & np.r_[False, resp[1:] == resp[:-1]]).sum())
    for (a, b), value in got.items():
        assert value == pytest.approx(want[names.index(a), names.index(b)], rel=1e-9), (a, b)
    # -- the backtest: respondents whose last record is alive, one held-out record each
    last = np.flatnonzero(np.r_[resp[1:] != resp[:-1], True])
    alive = last[code[last] < 3][:40]
    gap = np.round(np.linspace(0.4, 2.0, alive.size) / res) * res
    dest = np.where(np.arange(alive.size) % 2 == 0, code[alive], np.minimum(code[alive] + 1, 2))
    hkind = np.where(np.arange(alive.size) % 3 == 0, 2, 1)
    probs, predicted, _, density = latent_heldout_predictive(
        tree, order[alive], gap, dest, n_draws=3, kind=hkind
    )
    assert predicted.tolist() == (hkind == 1).tolist()
    for d in range(len(Q)):
        want_p, want_dens = [], []
        for i, row in enumerate(alive):
            rows = np.flatnonzero(resp == resp[row])
            filtered, _, _ = _brute_filter(Q[d], table[d], pi[d], time[rows], code[rows],
                                        kind[rows], res)  # fmt: skip
            after = filtered[-1] @ _t_matrix(Q[d], gap[i], hkind[i])
            if hkind[i] == 1:
                pred = after @ table[d].T
                want_p.append(pred / pred.sum())
            else:
                want_dens.append(after @ table[d][dest[i]])
        np.testing.assert_allclose(probs[d], np.array(want_p), rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(density[d], np.array(want_dens), rtol=1e-9, atol=0)


@pytest.mark.r
def test_committed_msm_obstype_hidden_result_is_reproduced(tmp_path):
    """Rerun msm_obstype_hidden.R on a copy of the folder: the same -2 log L as committed."""
    import shutil
    import subprocess

    from markov_migration.reference.msm import msm_available

    if not msm_available():
        pytest.skip("Rscript with the msm package is not installed")
    for name in ("common.R", "cav.csv", "msm_obstype_hidden.R"):
        shutil.copy(RESULTS / name, tmp_path / name)
    res = subprocess.run(["Rscript", str(tmp_path / "msm_obstype_hidden.R")], capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    new = json.loads((tmp_path / "msm_obstype_hidden.json").read_text())["cases"]
    old = json.loads((RESULTS / "msm_obstype_hidden.json").read_text())["cases"]
    for a, b in zip(new, old, strict=True):
        assert a["name"] == b["name"]
        assert a["minus2loglik"] == pytest.approx(b["minus2loglik"], rel=1e-12), a["name"]


#: home -> abroad, home -> dead, abroad -> home, abroad -> dead (per year)
RATES3 = {(0, 1): 0.4, (0, 2): 0.05, (1, 0): 0.25, (1, 2): 0.1}
#: probability that true home is recorded abroad, and true abroad home
ERRORS3 = (0.08, 0.05)


def _q3(rates, unit: float = 1.0) -> np.ndarray:
    """Generator of ``rates`` (per year) in time units of ``1 / unit`` years."""
    Q = np.zeros((3, 3))
    for (r, s), v in rates.items():
        Q[r, s] = v / unit
    Q[np.diag_indices(3)] = -Q.sum(axis=1)
    return Q


def _misclassified_paths(rng, n_people, follow_up):
    """True paths recorded at every jump (obstype 2) and at the end of follow-up (2,
    repeated), each record through the misclassification matrix; a record at 0 (type 1)."""
    E = np.array([[1 - ERRORS3[0], ERRORS3[0], 0], [ERRORS3[1], 1 - ERRORS3[1], 0], [0, 0, 1]])
    out = [0.45, 0.35]  # total exit rates of home and abroad
    rows = []
    for i in range(n_people):
        t, s = 0.0, int(rng.integers(2))
        rows.append((i, 0.0, rng.choice(3, p=E[s]), 1))
        while s != 2:
            dt = rng.exponential(1 / out[s])
            if t + dt >= follow_up:
                rows.append((i, follow_up, rng.choice(3, p=E[s]), 2))
                break
            t += dt
            rates = np.array([RATES3.get((s, k), 0.0) for k in range(3)])
            s = int(rng.choice(3, p=rates / rates.sum()))
            rows.append((i, t, rng.choice(3, p=E[s]), 2))
    names = np.array(["home", "abroad", "dead"])
    ids, times, rec, kinds = zip(*rows, strict=True)
    return pd.DataFrame({"id": ids, "time": times, "state": names[list(rec)], "obstype": kinds})

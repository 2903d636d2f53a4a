"""The latent predictive check of fits with covariates and groups (a generator per pattern).

References, on a prior-only fit of a misclassification model with a categorical and a
time-varying numeric covariate and a group (cheap, and its draws vary every effect):
with every effect set to zero (hazard ratio 1) the check's expected counts equal those
of the same fit read as a model without covariates (1e-9); with the drawn effects they
equal a brute-force reference computed here, per respondent and draw: the forward
filter with ``scipy.linalg.expm`` of the generator of the record that starts each
interval (baseline intensities, log hazard ratios times covariate values, group
effects), summed over respondents and averaged over draws (1e-9). With ``periods`` the same
reference multiplies ``expm`` over the pieces of each interval cut at the cut points;
with ``[nonresponse]`` the check of a sex effect is the sum of the covariate-free
checks of each sex's respondents at that sex's generator (1e-9).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm
from typer.testing import CliRunner

from markov_migration.cli.app import app
from markov_migration.fitfile.format import read_fit, write_fit
from markov_migration.results.checks import run_checks
from markov_migration.results.ppc_latent import ppc_latent
from tests.test_latent_covariates import GRAD, GRAD_BASE, small_panel

TOL = 1e-9
DRAWS = 10  # per chain; the prior-only fit has 2 chains


@pytest.fixture(scope="module")
def prior_fit(tmp_path_factory):
    """A prior-only fit of the covariate model and the panel it was fitted to."""
    d = tmp_path_factory.mktemp("ppccov")
    df = small_panel()
    df.to_csv(d / "p.csv", index=False)
    (d / "m.toml").write_text(GRAD)
    res = CliRunner().invoke(app, ["fit", str(d / "p.csv"), "--model", str(d / "m.toml"),
                                   "--out", str(d / "prior.nc"), "--prior-only", "--chains", "2",
                                   "--draws", str(DRAWS), "-q"])  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    # the prior's age effect (per year, up to e^7) makes intensities of e^50 at ages far from
    # the centre, where no expm is accurate: shrink it to a plausible per-year effect
    tree = read_fit(d / "prior.nc")
    post = tree["posterior"].to_dataset()
    age = (post["covariate_effect"] == post["covariate_effect"].values[-1]).values
    assert str(post["log_hazard_ratio"]["covariate"].values[-1]) == "age"
    post["log_hazard_ratio"] = post["log_hazard_ratio"] * np.where(age, 0.02, 1.0)
    tree["posterior"] = post
    write_fit(tree, d / "fit.nc")
    return read_fit(d / "fit.nc"), df, d


def expected_counts(result) -> dict[tuple[str, str, str], float]:
    t = result.table
    return {(f, s, b): e for f, s, b, e in zip(t["from"], t["to"], t["band"], t["expected"],
                                               strict=True)}  # fmt: skip


def test_zero_effects_give_the_check_of_the_fit_without_covariates(prior_fit):
    tree, _, _ = prior_fit
    tree = tree.copy(deep=True)
    post = tree["posterior"].to_dataset()
    post["log_hazard_ratio"] = post["log_hazard_ratio"] * 0.0
    post["group_effect"] = post["group_effect"] * 0.0
    tree["posterior"] = post
    with_cov = ppc_latent(tree, n_draws=2 * DRAWS, seed=3)
    # the same draws read as a model without covariates and groups: Q from the rates
    plain = tree.copy(deep=True)
    plain.attrs["model_text"] = GRAD_BASE
    post = plain["posterior"].to_dataset().drop_vars("Q")
    states = list(post["from_state"].values.astype(str))
    k = len(states)
    q = np.zeros((*post["rate"].shape[:2], k, k))
    for j, label in enumerate(post["transition"].values.astype(str)):
        a, b = (states.index(s) for s in label.split("->"))
        q[..., a, b] = post["rate"].values[..., j]
    q[..., range(k), range(k)] = -q.sum(axis=-1)
    post["Q"] = (("chain", "draw", "from_state", "to_state"), q)
    plain["posterior"] = post
    without = ppc_latent(plain, n_draws=2 * DRAWS, seed=3)
    got, want = expected_counts(with_cov), expected_counts(without)
    assert got.keys() == want.keys() and len(got) > 4
    for cell, value in want.items():
        assert got[cell] == pytest.approx(value, rel=TOL, abs=TOL), cell
    assert with_cov.observed_discrepancy == pytest.approx(without.observed_discrepancy, rel=TOL)


def _record_generators(tree):
    """The generator of a record under draw ``i`` by hand, and the draws' other arrays."""
    post = tree["posterior"]
    states = list(post["from_state"].values.astype(str))
    k = len(states)
    n = post.sizes["chain"] * post.sizes["draw"]

    def flat(name):
        v = post[name].values
        return v.reshape(n, *v.shape[2:])

    log_rate, lhr = flat("log_rate"), flat("log_hazard_ratio")
    effect, e, pi = flat("group_effect"), flat("misclassification"), flat("initial")
    moves = [tuple(states.index(s) for s in t.split("->"))
             for t in post["transition"].values.astype(str)]  # fmt: skip
    eff = post["log_hazard_ratio"]
    eff_cov = eff["covariate"].values.astype(str)
    eff_level = eff["level"].values.astype(str)
    eff_move = [(states.index(str(a)), states.index(str(b)))
                for a, b in zip(eff["from"].values, eff["to"].values, strict=True)]  # fmt: skip
    center = float(tree["constant_data"]["covariate_center"].sel(numeric_covariate="age"))
    groups = list(post["group"].values.astype(str))
    group_moves = [tuple(states.index(s) for s in t.split("->"))
                   for t in post["group_transition"].values.astype(str)]  # fmt: skip
    step = float(tree["constant_data"]["resolution"])

    def generator(i, row):
        lr = {m: log_rate[i, j] for j, m in enumerate(moves)}
        for j, (c, lev, m) in enumerate(zip(eff_cov, eff_level, eff_move, strict=True)):
            x = float(row["sex"] == lev) if c == "sex" else float(row["age"]) - center
            lr[m] += lhr[i, j] * x
        for j, m in enumerate(group_moves):
            lr[m] += effect[i, groups.index(str(row["host"])), j]
        q = np.zeros((k, k))
        for m, v in lr.items():
            q[m] = np.exp(v)
        q[range(k), range(k)] = -q.sum(axis=1)
        return q

    return generator, e, pi, states, n, step


def _reference(tree, df) -> dict[tuple[str, str], float]:
    """Expected next-record counts by (previous, next) record: brute force (module docstring)."""
    generator, e, pi, states, n, step = _record_generators(tree)
    k = len(states)
    out = np.zeros((k, k))
    data = df.sort_values(["id", "time"], kind="stable")
    for i in range(n):
        for _, g in data.groupby("id", sort=False):
            rows = g.to_dict("records")
            s = [states.index(r["state"]) for r in rows]
            f = pi[i] * e[i][:, s[0]]
            f /= f.sum()
            for a in range(len(rows) - 1):
                gap = max(np.round((rows[a + 1]["time"] - rows[a]["time"]) / step), 1) * step
                carried = f @ expm(generator(i, rows[a]) * gap)
                out[s[a]] += carried @ e[i]  # predictive of the next record's code
                f = carried * e[i][:, s[a + 1]]
                f /= f.sum()
    return {(states[a], states[b]): out[a, b] / n for a in range(k) for b in range(k)}


def test_expected_counts_equal_a_per_respondent_forward_filter(prior_fit):
    tree, df, _ = prior_fit
    res = ppc_latent(tree, n_draws=2 * DRAWS, seed=0)
    got = res.table.groupby(["from", "to"])["expected"].sum().to_dict()
    want = _reference(tree, df)
    assert sum(want.values()) == pytest.approx(len(df) - df["id"].nunique(), rel=TOL)
    for cell, value in want.items():
        assert got.get(cell, 0.0) == pytest.approx(value, rel=TOL, abs=TOL), cell
    assert any("generator of the record that starts it" in note for note in res.notes)


def test_check_writes_the_transitions_row_of_a_latent_covariate_fit(prior_fit):
    tree, _, d = prior_fit
    rows = {c.name: c for c in run_checks(tree, n_draws=8).checks}
    check = rows["ppc_transitions"]
    assert check.passed is not None and "not run" not in check.detail, check.detail
    out = d / "check"
    res = CliRunner().invoke(app, ["check", str(d / "fit.nc"), "--out-dir", str(out),
                                   "--draws", "8"])  # fmt: skip
    assert res.exit_code in (0, 1), (res.output, repr(res.exception))
    written = "\n".join(p.read_text() for p in out.rglob("*") if p.suffix in (".csv", ".json"))
    assert "ppc_transitions" in written and "not run for a latent-state fit with" not in written


PERIODS = (
    "periods = [1.5]\n" + GRAD_BASE
    + '[covariates.sex]\nkind = "categorical"\ntransitions = ["abroad->returned"]\n'
    + "[data]\nresolution = 1e-9\n"
)  # fmt: skip


def test_periods_split_intervals_at_the_cut_points(tmp_path):
    """With ``periods`` each interval is the product of ``expm(Q_(sex, period) piece)`` over
    its pieces (scipy reference built here, as in the likelihood's test), 1e-9."""
    df = small_panel(n=40, seed=7)
    df.to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "m.toml").write_text(PERIODS)
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "p.csv"), "--model",
                                   str(tmp_path / "m.toml"), "--out", str(tmp_path / "f.nc"),
                                   "--prior-only", "--chains", "1", "--draws", "6", "-q"])  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    tree = read_fit(tmp_path / "f.nc")
    result = ppc_latent(tree, n_draws=6, seed=0)
    assert any("period cut points" in note for note in result.notes)
    got = result.table.groupby(["from", "to"])["expected"].sum().to_dict()
    post = tree["posterior"]
    states = list(post["from_state"].values.astype(str))
    moves = [tuple(states.index(s) for s in t.split("->"))
             for t in post["transition"].values.astype(str)]  # fmt: skip
    lhr = post["log_hazard_ratio"]
    cuts, k, n = [1.5], len(states), post.sizes["draw"]
    out = np.zeros((k, k))
    for i in range(n):
        p = post.isel(chain=0, draw=i)
        e, pi = p["misclassification"].values, p["initial"].values

        def generator(sex, period, p=p):
            log_q = dict(zip(moves, p["log_rate"].values, strict=True))
            for j, (c, lev) in enumerate(zip(lhr["covariate"].values.astype(str),
                                             lhr["level"].values.astype(str), strict=True)):  # fmt: skip
                move = (states.index(str(lhr["from"].values[j])),
                        states.index(str(lhr["to"].values[j])))  # fmt: skip
                on = sex == lev if c == "sex" else lev == str(post["period"].values[period])
                log_q[move] += float(p["log_hazard_ratio"].values[j]) * on
            q = np.zeros((k, k))
            for m, v in log_q.items():
                q[m] = np.exp(v)
            return q - np.diag(q.sum(axis=1))

        for _, g in df.sort_values(["id", "time"], kind="stable").groupby("id", sort=False):
            t, sex = g["time"].to_numpy(), g["sex"].to_numpy()
            s = [states.index(x) for x in g["state"]]
            f = pi * e[:, s[0]] / (pi * e[:, s[0]]).sum()
            for j in range(1, len(t)):
                edges = [t[j - 1], *[c for c in cuts if t[j - 1] < c < t[j]], t[j]]
                trans = np.eye(k)
                for a, b in zip(edges[:-1], edges[1:], strict=True):
                    period = int(np.searchsorted(cuts, a, side="right"))
                    trans = trans @ expm(generator(sex[j - 1], period) * (b - a))
                carried = f @ trans
                out[s[j - 1]] += carried @ e
                f = carried * e[:, s[j]] / (carried * e[:, s[j]]).sum()
    for a in range(k):
        for b in range(k):
            want = out[a, b] / n
            assert got.get((states[a], states[b]), 0.0) == pytest.approx(want, rel=TOL, abs=TOL)


NONRESPONSE = GRAD_BASE + '[nonresponse]\nschedule = "waves"\n'
SEX = '[covariates.sex]\nkind = "categorical"\ntransitions = ["abroad->returned", "swing->returned"]\n'


def _one_sex(tree, sex: str, q: np.ndarray):
    """The fit read without covariates, its panel cut to one sex, every draw's ``Q`` given."""
    out = tree.copy(deep=True)
    out.attrs["model_text"] = NONRESPONSE
    pdata = out["panel_data"].to_dataset()
    levels = list(pdata["column_sex_level"].values.astype(str))
    keep = pdata["column_sex"].values == levels.index(sex)
    out["panel_data"] = pdata.isel(observation=np.flatnonzero(keep))
    post = out["posterior"].to_dataset().drop_vars("Q")
    post["Q"] = (("chain", "draw", "from_state", "to_state"), q)
    out["posterior"] = post
    return out


def test_nonresponse_check_with_a_covariate_is_the_sum_of_per_sex_checks(tmp_path):
    """[nonresponse] + a sex effect: the expected counts (scheduled interviews, missed
    ones included) are the sums of the covariate-free checks of each sex's respondents
    at that sex's generator (one band, so that the bands do not depend on the subset)."""
    df = small_panel(n=60, seed=7)
    rng = np.random.default_rng(7)
    later = df["id"].duplicated().to_numpy()
    df = df[~(later & (rng.uniform(size=len(df)) < 0.2))].reset_index(drop=True)
    df.to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "m.toml").write_text(NONRESPONSE + SEX)
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "p.csv"), "--model",
                                   str(tmp_path / "m.toml"), "--out", str(tmp_path / "f.nc"),
                                   "--prior-only", "--chains", "1", "--draws", "5", "-q"])  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    tree = read_fit(tmp_path / "f.nc")
    got = ppc_latent_check(tree)
    post = tree["posterior"]
    states = list(post["from_state"].values.astype(str))
    k = len(states)
    labels = list(post["transition"].values.astype(str))
    lhr = post["log_hazard_ratio"].values  # (1, draws, 2): sex[m] on the two moves
    targets = [f"{post['log_hazard_ratio']['from'].values[j]}->"
               f"{post['log_hazard_ratio']['to'].values[j]}" for j in range(2)]  # fmt: skip
    want: dict = {}
    for sex in ("f", "m"):
        log_rate = post["log_rate"].values.copy()
        if sex == "m":
            for j, t in enumerate(targets):
                log_rate[..., labels.index(t)] += lhr[..., j]
        q = np.zeros((*log_rate.shape[:2], k, k))
        for j, t in enumerate(labels):
            a, b = (states.index(s) for s in t.split("->"))
            q[..., a, b] = np.exp(log_rate[..., j])
        q[..., range(k), range(k)] = -q.sum(axis=-1)
        for cell, value in ppc_latent_check(_one_sex(tree, sex, q)).items():
            want[cell] = want.get(cell, 0.0) + value
    assert "missed" in {c[1] for c in want} and got.keys() == want.keys()
    for cell, value in want.items():
        assert got[cell] == pytest.approx(value, rel=TOL, abs=TOL), cell


def ppc_latent_check(tree) -> dict:
    from markov_migration.results.ppc_nonresponse import latent_check

    result = latent_check(tree, n_draws=5, n_bands=1, seed=0)
    return result.table.groupby(["from", "to"])["expected"].sum().to_dict()


def test_backtest_predictive_uses_the_generator_of_the_last_kept_record(tmp_path):
    """backtest of a latent covariate/group fit: the held-out record's predictive equals the
    forward filter by hand over the kept records (each interval with its starting record's
    generator), carried over the held-out gap with the last kept record's generator (1e-9)."""
    from markov_migration.inputs.panel import validate_panel
    from markov_migration.inputs.spec import parse_spec
    from markov_migration.results import backtest as B
    from markov_migration.results.backtest_latent import latent_heldout_probs

    spec = parse_spec(GRAD)
    df = small_panel()
    panel = validate_panel(df, spec, path="<sim>", sha256="0" * 64)
    d = panel.data
    held = B.holdout_split(d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy())
    kept = df.iloc[np.sort(d["row"].to_numpy()[held.keep] - 1)].reset_index(drop=True)
    kept.to_csv(tmp_path / "kept.csv", index=False)
    (tmp_path / "m.toml").write_text(GRAD)
    res = CliRunner().invoke(app, ["fit", str(tmp_path / "kept.csv"), "--model",
                                   str(tmp_path / "m.toml"), "--out", str(tmp_path / "f.nc"),
                                   "--prior-only", "--chains", "1", "--draws", "3", "-q"])  # fmt: skip
    assert res.exit_code == 0, (res.output, repr(res.exception))
    tree = read_fit(tmp_path / "f.nc")
    post = tree["posterior"].to_dataset()  # a plausible age effect, as in prior_fit
    age = (post["covariate_effect"] == post["covariate_effect"].values[-1]).values
    post["log_hazard_ratio"] = post["log_hazard_ratio"] * np.where(age, 0.02, 1.0)
    tree["posterior"] = post
    probs, predicted, names = latent_heldout_probs(
        tree, B._origin_rows(tree, held), held.gap, held.destination, 3
    )
    assert predicted.all() and names == list(spec.states)
    generator, e, pi, states, n, step = _record_generators(tree)
    by_id = {str(i): g.sort_values("time") for i, g in kept.groupby("id")}
    checked = 0
    for j in range(held.origin.size):
        rows = by_id[str(held.origin_id[j])].to_dict("records")
        s = [states.index(r["state"]) for r in rows]
        for i in range(n):
            f = pi[i] * e[i][:, s[0]]
            f /= f.sum()
            for a in range(len(rows) - 1):
                gap = max(np.round((rows[a + 1]["time"] - rows[a]["time"]) / step), 1) * step
                f = (f @ expm(generator(i, rows[a]) * gap)) * e[i][:, s[a + 1]]
                f /= f.sum()
            gap = max(np.round(held.gap[j] / step), 1) * step
            want = (f @ expm(generator(i, rows[-1]) * gap)) @ e[i]
            np.testing.assert_allclose(probs[i, j], want, rtol=TOL, atol=TOL)
            checked += 1
    assert checked == 3 * held.origin.size > 30

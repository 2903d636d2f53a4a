"""The PyTensor Op: gradients, numba and C/Python backends, and nutpie."""

# ruff: noqa: TID251  (tests of the layer-3 Op import PyTensor and PyMC directly)

import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.linalg
from pytensor.gradient import NullTypeGradError, verify_grad

from markov_migration.core import likelihood as L
from markov_migration.inference.likelihood_op import PanelLogLik, panel_loglik

K = 3
FROM = np.array([0, 0, 1, 1, 2])
TO = np.array([1, 2, 0, 2, 1])
TRUE_RATES = np.array([0.30, 0.10, 0.20, 0.15, 0.05])


def build_q(log_rate, n_states=K, frm=FROM, to=TO):
    """Q (1, K, K) from free log-rates: exp at the allowed off-diagonal
    positions, diagonal = minus the row sums."""
    off = pt.set_subtensor(pt.zeros((n_states, n_states))[frm, to], pt.exp(log_rate))
    return (off - pt.diag(off.sum(axis=1)))[None, :, :]


def q_numpy(log_rate):
    Q = np.zeros((K, K))
    Q[FROM, TO] = np.exp(log_rate)
    Q[np.diag_indices(K)] = -Q.sum(axis=1)
    return Q[None]


def panel_data(seed=0, persons=300):
    """Expected transition counts under TRUE_RATES for three intervals, with a
    two-piece row (an interval crossing a period cut)."""
    rng = np.random.default_rng(seed)
    Q = q_numpy(np.log(TRUE_RATES))[0]
    piece_t = np.array([0.5, 1.0, 2.0])
    rows = []
    for p, t in enumerate(piece_t):
        P = scipy.linalg.expm(Q * t)
        for a in range(K):
            for b in range(K):
                rows.append(([p], a, b, rng.poisson(persons * P[a, b] / K)))
    P2 = scipy.linalg.expm(Q * 0.5) @ scipy.linalg.expm(Q * 2.0)
    for b in range(K):  # every destination, or the design would be selective
        rows.append(([0, 2], 0, b, rng.poisson(persons * P2[0, b] / K)))
    rows = [r for r in rows if r[3] > 0]
    return {
        "piece_q": np.zeros(3, dtype=np.int64),
        "piece_t": piece_t,
        "row_ptr": np.cumsum([0] + [len(r[0]) for r in rows]).astype(np.int64),
        "row_piece": np.concatenate([r[0] for r in rows]).astype(np.int64),
        "row_from": np.array([r[1] for r in rows], dtype=np.int64),
        "row_to": np.array([r[2] for r in rows], dtype=np.int64),
        "row_count": np.array([r[3] for r in rows], dtype=np.float64),
    }


def compile_loglik_and_grad(mode, data, shared=True):
    log_rate = pt.dvector("log_rate")
    inputs = {k: pytensor.shared(v, name=k) for k, v in data.items()} if shared else data
    ll = panel_loglik(build_q(log_rate), inputs)
    grad = pytensor.grad(ll, log_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numba's object-mode fallback warning
        fn = pytensor.function([log_rate], [ll, grad], mode=mode)
        fn(np.log(TRUE_RATES))
    return fn, inputs


def expected_loglik_and_grad(theta, data):
    ll, dQ = L.loglik_and_grad(q_numpy(theta), *(data[k] for k in L.PANEL_FIELDS))
    rates = np.exp(theta)
    return ll, rates * (dQ[0][FROM, TO] - dQ[0][FROM, FROM])


THETAS = [np.log(TRUE_RATES), np.array([-0.5, -3.0, -1.0, 0.2, -2.0])]


@pytest.mark.parametrize("mode", [None, "FAST_RUN", "NUMBA"])
def test_op_compiles_and_matches_core(mode):
    data = panel_data()
    fn, _ = compile_loglik_and_grad(mode, data)
    for theta in THETAS:
        ll, grad = fn(theta)
        ll_ref, grad_ref = expected_loglik_and_grad(theta, data)
        assert float(ll) == pytest.approx(ll_ref, rel=1e-12)
        np.testing.assert_allclose(grad, grad_ref, rtol=1e-10, atol=1e-12)


def test_numba_graph_contains_one_loglik_call():
    # logp and gradient share one Op application (the gradient is its 2nd output)
    fn, _ = compile_loglik_and_grad("NUMBA", panel_data())
    ops = [node.op for node in fn.maker.fgraph.apply_nodes]
    assert sum(isinstance(op, PanelLogLik) for op in ops) == 1


@pytest.mark.parametrize("mode", [None, "NUMBA"])
def test_data_are_inputs_not_constants(mode):
    # new data through the shared variables, same compiled function
    data = panel_data(0)
    fn, shared = compile_loglik_and_grad(mode, data)
    other = panel_data(1, persons=500)
    for k, v in other.items():
        shared[k].set_value(v)
    theta = THETAS[1]
    ll, grad = fn(theta)
    ll_ref, grad_ref = expected_loglik_and_grad(theta, other)
    assert float(ll) == pytest.approx(ll_ref, rel=1e-12)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", [None, "NUMBA"])
def test_verify_grad_through_log_rates(mode):
    data = panel_data()

    def fun(log_rate):
        return panel_loglik(build_q(log_rate), data)

    for theta in THETAS:
        # central differences on a random projection; tolerances as stated
        verify_grad(
            fun,
            [theta],
            rng=np.random.default_rng(1),
            eps=1e-7,
            abs_tol=1e-5,
            rel_tol=1e-5,
            mode=mode,
        )


@pytest.mark.parametrize("mode", [None, "NUMBA"])
def test_minus_inf_for_impossible_transition(mode):
    # only 0 <-> 1 moves are allowed, so state 2 is absorbing; observe 2 -> 0
    frm, to = np.array([0, 1]), np.array([1, 0])
    log_rate = pt.dvector("log_rate")
    data = dict(piece_q=[0], piece_t=[1.0], row_ptr=[0, 1], row_piece=[0], row_from=[2], row_to=[0])
    data = {k: np.asarray(v) for k, v in data.items()} | {"row_count": np.array([1.0])}
    ll = panel_loglik(build_q(log_rate, frm=frm, to=to), data)
    fn = pytensor.function([log_rate], [ll, pytensor.grad(ll, log_rate)], mode=mode)
    value, grad = fn(np.zeros(2))
    assert value == -np.inf
    np.testing.assert_array_equal(grad, 0.0)


def test_panel_loglik_accepts_mapping_sequence_and_object():
    data = panel_data()
    Q = pt.tensor3("Q")
    q = q_numpy(THETAS[1])
    expected = L.loglik(q, *(data[k] for k in L.PANEL_FIELDS))

    class Holder:
        pass

    holder = Holder()
    for k, v in data.items():
        setattr(holder, k, v)
    for container in (data, [data[k] for k in L.PANEL_FIELDS], holder):
        assert float(panel_loglik(Q, container).eval({Q: q})) == pytest.approx(expected, rel=1e-13)
    Q2 = pt.matrix("Q2")  # a single (K, K) generator
    assert float(panel_loglik(Q2, data).eval({Q2: q[0]})) == pytest.approx(expected, rel=1e-13)
    with pytest.raises(ValueError, match="7 arrays"):
        panel_loglik(Q, [data["piece_q"]])


def test_op_rejects_float_indices_and_wrong_ranks():
    data = panel_data()
    Q = pt.tensor3("Q")
    bad = dict(data, row_from=data["row_from"].astype(float))
    with pytest.raises(TypeError, match="row_from must be an integer vector"):
        panel_loglik(Q, bad)
    with pytest.raises(TypeError, match="3-d tensor"):
        PanelLogLik()(pt.vector("x"), *(data[k] for k in L.PANEL_FIELDS))


def test_unsupported_gradients_fail_loudly():
    data = {k: pytensor.shared(v) for k, v in panel_data().items()}
    Q = pt.tensor3("Q")
    ll, dQ = PanelLogLik()(Q, *(data[k] for k in L.PANEL_FIELDS))
    with pytest.raises(NullTypeGradError):
        pytensor.grad(ll, data["piece_t"])
    with pytest.raises(NullTypeGradError):
        pytensor.grad((dQ**2).sum(), Q)  # second order


# --------------------------------------------------------------------------
# PyMC + nutpie
# --------------------------------------------------------------------------


def pymc_model(data):
    import pymc as pm

    with pm.Model(coords={"transition": [f"{a}->{b}" for a, b in zip(FROM, TO, strict=True)]}) as m:
        shared = {k: pm.Data(k, v) for k, v in data.items()}
        log_rate = pm.Normal("log_rate", mu=-1.5, sigma=1.5, dims="transition")
        pm.Potential("loglik", panel_loglik(build_q(log_rate), shared))
    return m


def test_pymc_logp_and_gradient_in_numba_mode():
    import pymc as pm

    data = panel_data()
    model = pymc_model(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn = model.logp_dlogp_function(ravel_inputs=True, mode="NUMBA")
    fn.set_extra_values({})
    theta = THETAS[1]
    logp, dlogp = fn(theta)
    ll, grad = expected_loglik_and_grad(theta, data)
    prior = pm.logp(pm.Normal.dist(-1.5, 1.5), theta).eval().sum()
    assert logp == pytest.approx(ll + prior, rel=1e-12)
    np.testing.assert_allclose(dlogp, grad - (theta + 1.5) / 1.5**2, rtol=1e-10)


@pytest.mark.slow
def test_nutpie_numba_backend_samples_the_posterior():
    import nutpie

    data = panel_data(persons=3000)
    model = pymc_model(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no object-mode fallback
        compiled = nutpie.compile_pymc_model(model, backend="numba")
    trace = nutpie.sample(compiled, draws=300, tune=300, chains=2, seed=3, progress_bar=False)
    post = trace.posterior["log_rate"]
    assert int(trace.sample_stats["diverging"].sum()) == 0
    # the truth lies within 4 posterior sd of the posterior mean, for every rate
    z = (post.mean(("chain", "draw")).values - np.log(TRUE_RATES)) / post.std(
        ("chain", "draw")
    ).values
    assert np.all(np.abs(z) < 4), z

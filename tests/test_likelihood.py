"""Panel log-likelihood, its gradient and P(t) against independent references.

References: scipy.linalg.expm (values), scipy.linalg.expm_frechet (gradient),
central finite differences with Richardson extrapolation (gradient), and the
semigroup / stochastic-matrix properties of P(t).
"""

from decimal import Decimal, getcontext

import numpy as np
import pytest
import scipy.linalg

from markov_migration.core import expm as E
from markov_migration.core import likelihood as L
from markov_migration.core import spectral, spectral_real

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def generator(rates) -> np.ndarray:
    """Q from a matrix of off-diagonal intensities (diagonal ignored)."""
    Q = np.array(rates, dtype=float)
    np.fill_diagonal(Q, 0.0)
    Q[np.diag_indices_from(Q)] = -Q.sum(axis=1)
    return Q


def random_generator(rng, K, density=0.7, scale=0.3) -> np.ndarray:
    rates = rng.exponential(scale, size=(K, K)) * (rng.random((K, K)) < density)
    return generator(rates)


def make_panel(Qs, durations, rng, n_rows=15, multi_every=3, min_prob=1e-6):
    """Pieces for every (generator, duration); rows of 1 to 3 pieces.

    Each row observes a transition whose probability (by scipy) exceeds
    ``min_prob``, so the log-likelihood is well conditioned; one row in
    ``multi_every`` spans several pieces (an interval crossing period cuts).
    """
    Qs = np.asarray(Qs)
    piece_q = np.repeat(np.arange(len(Qs)), len(durations))
    piece_t = np.tile(np.asarray(durations, dtype=float), len(Qs))
    P = [scipy.linalg.expm(Qs[m] * t) for m, t in zip(piece_q, piece_t, strict=True)]
    rows = []
    for r in range(n_rows):
        n = int(rng.integers(2, 4)) if multi_every and r % multi_every == 0 else 1
        pieces = rng.choice(len(piece_q), size=n)
        prod = np.linalg.multi_dot([P[p] for p in pieces]) if n > 1 else P[pieces[0]]
        candidates = np.argwhere(prod > min_prob)
        a, b = candidates[rng.integers(len(candidates))]
        rows.append((pieces, a, b))
    row_ptr = np.cumsum([0] + [len(p) for p, _, _ in rows])
    row_piece = np.concatenate([p for p, _, _ in rows])
    row_from = np.array([a for _, a, _ in rows])
    row_to = np.array([b for _, _, b in rows])
    row_count = rng.uniform(1.0, 50.0, size=n_rows)
    return Qs, (piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)


def direct_loglik(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    """Sum of count * log of the entry of the product of scipy expm's."""
    total = 0.0
    for r in range(len(row_from)):
        prod = np.eye(Q.shape[1])
        for p in row_piece[row_ptr[r] : row_ptr[r + 1]]:
            prod = prod @ scipy.linalg.expm(Q[piece_q[p]] * piece_t[p])
        total += row_count[r] * np.log(prod[row_from[r], row_to[r]])
    return total


def fd_gradient(Q, panel):
    """Central differences with one Richardson step (error O(h^4)).

    Step h = 1e-6 * max(1, |Q_ij|) per entry; the extrapolated estimate is
    (4 D(h/2) - D(h)) / 3. The step is small because derivatives with respect
    to structural zeros of Q (which open a path to a rare transition) vary on
    the scale of that transition's probability.
    """
    grad = np.zeros_like(Q)
    for idx in np.ndindex(Q.shape):
        h = 1e-6 * max(1.0, abs(Q[idx]))

        def central(step, idx=idx):
            up, down = Q.copy(), Q.copy()
            up[idx] += step
            down[idx] -= step
            return (L.loglik(up, *panel) - L.loglik(down, *panel)) / (2 * step)

        grad[idx] = (4 * central(h / 2) - central(h)) / 3
    return grad


def spectral_modes(Q):
    """Which path the fast kernel takes for each generator (white-box)."""
    K = Q.shape[-1]
    return [
        int(
            spectral._decompose(
                np.ascontiguousarray(q),
                np.zeros(K),
                np.zeros((K, K)),
                np.zeros((K, K)),
                np.zeros(K, complex),
                np.zeros((K, K), complex),
                np.zeros((K, K), complex),
            )
        )
        for q in Q
    ]


REAL, COMPLEX, FALLBACK = spectral._MODE_REAL, spectral._MODE_COMPLEX, spectral._MODE_FALLBACK


def _absorbing():
    rates = np.zeros((5, 5))
    rates[0, [1, 3]] = [0.2, 0.1]
    rates[1, [0, 2, 4]] = [0.3, 0.2, 0.05]
    rates[2, [0, 3]] = [0.1, 0.4]
    return generator(rates)  # states 3 and 4 absorbing


def _spanning(seed):
    # seed 3: complex spectrum, seed 11: real spectrum
    rng = np.random.default_rng(seed)
    return generator(np.exp(rng.uniform(np.log(1e-4), np.log(1e2), size=(5, 5))))


def _two_blocks(gap):
    # two weakly coupled 2-state blocks: eigenvalues near 0, -0.001, -0.5 and
    # -(0.5 + gap); the kernel sums rows of a pair apart by gap * t_min < 0.01
    # with the pairwise divided difference, and the others in O(K) per row
    rates = np.zeros((4, 4))
    rates[0, 1], rates[1, 0] = 0.3, 0.2
    rates[2, 3], rates[3, 2] = 0.25, 0.25 + gap
    rates[1, 2] = rates[3, 0] = 1e-3
    return generator(rates)


# name -> (generators, durations, expected fast-path modes)
HARD_CASES = {
    "close_eigenvalue_pairs": ([_two_blocks(4e-3)], [0.5, 2.0], [REAL]),
    "pair_just_separated": ([_two_blocks(0.0212)], [0.5, 2.0], [REAL]),
    "identical_rates": ([generator(np.full((4, 4), 0.3))], [0.5, 1.0, 3.0], [REAL]),
    "absorbing_states": ([_absorbing()], [0.5, 2.0, 7.0], [REAL]),
    "triangular_equal_diagonal": (
        [generator(np.diag([0.5, 0.5, 0.5], 1))],
        [0.5, 1.0, 4.0],
        [FALLBACK],
    ),
    "nearly_defective": (
        [generator(np.diag([0.4, 0.4 + 1e-7, 0.4, 0.4 - 1e-7], 1))],
        [0.5, 3.0],
        [FALLBACK],
    ),
    # one short piece (a day): every pair is close at it, the double eigenvalue 0
    # at every length; the longer pieces' rows still take the O(K) sums
    "short_and_long_pieces": ([_absorbing()], [0.003, 0.5, 7.0], [REAL]),
    "rates_1e-4_to_1e2": ([_spanning(3)], [0.01, 0.5, 2.0], [COMPLEX]),
    "rates_1e-4_to_1e2_real": ([_spanning(11)], [0.01, 0.5, 2.0], [REAL]),
    "long_intervals": ([random_generator(np.random.default_rng(3), 5)], [10.0, 50.0], [COMPLEX]),
    "long_intervals_spanning": ([_spanning(3), _spanning(11)], [50.0], [COMPLEX, REAL]),
    "cyclic_complex": (
        [generator(np.roll(np.diag([1.0, 2.0, 0.5, 3.0]), 1, axis=1))],
        [0.3, 1.0, 2.5],
        [COMPLEX],
    ),
    "mixed_paths": (
        [
            generator(np.roll(np.diag([1.0, 2.0, 0.5, 3.0]), 1, axis=1)),
            generator(np.diag([0.5, 0.5, 0.5], 1)),
            generator(np.full((4, 4), 0.2)),
        ],
        [0.5, 2.0],
        [COMPLEX, FALLBACK, REAL],
    ),
}


def random_case(seed):
    rng = np.random.default_rng(seed)
    K = int(rng.integers(2, 7))
    M = int(rng.integers(1, 4))
    Qs = [random_generator(rng, K) for _ in range(M)]
    durations = rng.uniform(0.1, 5.0, size=int(rng.integers(1, 4)))
    return make_panel(Qs, durations, rng)


# rows of the weakly coupled blocks observe likely moves only: a move across the
# 1e-3 coupling has a gradient of ~1e7 that central differences cannot resolve
MIN_PROB = {"close_eigenvalue_pairs": 1e-2, "pair_just_separated": 1e-2}


def hard_case(name):
    Qs, durations, _ = HARD_CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    return make_panel(Qs, durations, rng, min_prob=MIN_PROB.get(name, 1e-6))


CASES = [pytest.param(lambda s=s: random_case(s), id=f"random{s}") for s in range(8)] + [
    pytest.param(lambda n=n: hard_case(n), id=n) for n in HARD_CASES
]


# --------------------------------------------------------------------------
# log-likelihood and gradient
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HARD_CASES))
def test_hard_cases_take_the_intended_path(name):
    Qs, _, modes = HARD_CASES[name]
    assert spectral_modes(np.asarray(Qs)) == modes


def close_pairs(Q, durations):
    """Ordered eigenvalue pairs the kernel sums row by row at every length (white-box)."""
    lam = np.linalg.eigvals(Q)
    gap = np.abs(lam[:, None] - lam[None, :]) * max(durations)
    return int(np.sum(~np.eye(len(lam), dtype=bool) & (gap < spectral._SEPARATED_MIN)))


def pairwise_durations(Q, durations):
    """Durations whose rows the kernel sums pair by pair, O(K^2) (white-box).

    A row takes the O(K) sums when every pair not in :func:`close_pairs` is
    separated at its length.
    """
    lam = np.linalg.eigvals(Q)
    gap = np.abs(lam[:, None] - lam[None, :])
    separable = ~np.eye(len(lam), dtype=bool) & (gap * max(durations) >= spectral._SEPARATED_MIN)
    gap_min = gap[separable].min() if separable.any() else np.inf
    return [t for t in durations if not t * gap_min >= spectral._SEPARATED_MIN]


def test_hard_cases_mix_close_and_separated_eigenvalue_pairs():
    # the two blocks' cases straddle the threshold: both code paths of the
    # gradient are taken in one generator, and checked against references below
    (Q,), durations, _ = HARD_CASES["close_eigenvalue_pairs"]
    assert 0 < close_pairs(Q, durations) < 12
    (Q,), durations, _ = HARD_CASES["pair_just_separated"]
    lam = np.sort(np.linalg.eigvals(Q).real)
    assert 0.01 < (lam[1] - lam[0]) * min(durations) < 0.0112
    # the pair near 0 and -0.001 is close at every length; the others separated at both
    assert close_pairs(Q, durations) == 2 and pairwise_durations(Q, durations) == []
    (Q,), durations, _ = HARD_CASES["identical_rates"]
    assert close_pairs(Q, durations) == 6  # a triple eigenvalue
    # one generator, three paths: the double eigenvalue 0 always pairwise, the
    # day-long piece's rows pair by pair, the other rows in O(K)
    (Q,), durations, _ = HARD_CASES["short_and_long_pieces"]
    assert close_pairs(Q, durations) == 2
    assert pairwise_durations(Q, durations) == [0.003]
    # most random generators have only separated pairs (the O(K)-per-row path)
    separated = [
        all(
            close_pairs(q, random_case(s)[1][1]) == 0
            and pairwise_durations(q, random_case(s)[1][1]) == []
            for q in random_case(s)[0]
        )
        for s in range(8)
    ]
    assert sum(separated) >= 6


@pytest.mark.parametrize(
    "name", ["rates_1e-4_to_1e2", "long_intervals", "cyclic_complex", "rates_1e-4_to_1e2_real"]
)
def test_real_form_reproduces_p_of_real_and_complex_spectra(name):
    # the rows run on the real form of a spectrum (white-box): P(t) = sum_k Wt[:, :, k] et_k
    (Q,), durations, (mode,) = HARD_CASES[name]
    K = Q.shape[0]
    lam_r, U_r, Ui_r = np.zeros((1, K)), np.zeros((1, K, K)), np.zeros((1, K, K))
    lam_c, U_c, Ui_c = (np.zeros_like(a, dtype=complex) for a in (lam_r, U_r, Ui_r))
    assert spectral._decompose(Q, lam_r[0], U_r[0], Ui_r[0], lam_c[0], U_c[0], Ui_c[0]) == mode
    lam, U, Ui = (lam_r, U_r, Ui_r) if mode == REAL else (lam_c, U_c, Ui_c)
    kind = np.zeros((1, K), dtype=np.int64)
    Ut, Uit, Wt = np.zeros((1, K, K)), np.zeros((1, K, K)), np.zeros((1, K, K, K))
    assert spectral_real._real_form(lam, U, Ui, 0, kind, Ut, Uit, Wt)
    assert (np.sum(kind == 1) > 0) == (mode == COMPLEX)
    for t in durations:
        ec = np.exp(lam_c * t) if mode == COMPLEX else np.exp(lam_r * t).astype(complex)
        et = np.zeros((1, K))
        spectral_real._real_exponentials(kind, 0, ec, 0, et)
        P = np.einsum("abk,k->ab", Wt[0], et[0])
        expected = scipy.linalg.expm(Q * t)
        np.testing.assert_allclose(P, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_real_form_refuses_an_unpaired_complex_eigenvalue():
    # such a generator keeps the complex arithmetic (never from numpy >= 2.5's geev)
    lam = np.array([[-1.0 + 0.5j, -2.0 + 0j]])
    U = np.eye(2, dtype=complex)[None]
    kind = np.zeros((1, 2), dtype=np.int64)
    out = np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 2))
    assert not spectral_real._real_form(lam, U, U.copy(), 0, kind, *out)


@pytest.mark.parametrize("case", CASES)
def test_loglik_matches_direct_scipy_expm(case):
    Q, panel = case()
    expected = direct_loglik(Q, *panel)
    # relative 1e-9 (absolute near 0, where all observed probabilities are ~1)
    tol = 1e-9 * max(1.0, abs(expected))
    assert L.loglik(Q, *panel) == pytest.approx(expected, abs=tol)
    assert L.loglik_and_grad(Q, *panel)[0] == pytest.approx(expected, abs=tol)
    assert L.loglik_reference(Q, *panel) == pytest.approx(expected, abs=tol)


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_expm_frechet_reference(case):
    Q, panel = case()
    ll, grad = L.loglik_and_grad(Q, *panel)
    ll_ref, grad_ref = L.loglik_and_grad_reference(Q, *panel)
    assert grad.shape == Q.shape
    assert ll == pytest.approx(ll_ref, rel=1e-10, abs=1e-10)
    # relative to the gradient's scale, 1e-10
    scale = np.abs(grad_ref).max()
    np.testing.assert_allclose(grad, grad_ref, rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_finite_differences(case):
    Q, panel = case()
    grad = L.loglik_and_grad(Q, *panel)[1]
    fd = fd_gradient(Q, panel)
    # Richardson-extrapolated central differences: truncation O(h^4), rounding
    # ~ eps |loglik| / h; 1e-6 of the gradient's scale covers both
    scale = np.abs(grad).max()
    np.testing.assert_allclose(fd, grad, rtol=0, atol=1e-6 * scale)


def test_gradient_treats_every_entry_as_independent():
    # an absorbing row's entries (all 0) still get derivatives: perturbing
    # Q[3, 0] opens a path back into the transient states
    Q, panel = hard_case("absorbing_states")
    grad = L.loglik_and_grad(Q, *panel)[1]
    assert np.all(grad[0, 3] != 0.0)


def test_gradient_of_log_rates_by_chain_rule():
    # the caller's view: Q built from free log-rates, diagonal = -row sums
    rng = np.random.default_rng(7)
    K = 4
    frm, to = np.nonzero(~np.eye(K, dtype=bool) & (rng.random((K, K)) < 0.8))
    theta = rng.normal(-1.0, 0.5, size=frm.size)

    def build(th):
        Q = np.zeros((K, K))
        Q[frm, to] = np.exp(th)
        Q[np.diag_indices(K)] = -Q.sum(axis=1)
        return Q[None]

    _, panel = make_panel(build(theta), [0.5, 1.5], rng)
    dQ = L.loglik_and_grad(build(theta), *panel)[1][0]
    dtheta = np.exp(theta) * (dQ[frm, to] - dQ[frm, frm])
    h = 1e-6
    fd = np.array(
        [
            (L.loglik(build(theta + h * e), *panel) - L.loglik(build(theta - h * e), *panel))
            / (2 * h)
            for e in np.eye(theta.size)
        ]
    )
    np.testing.assert_allclose(dtheta, fd, rtol=1e-6, atol=1e-7)


def test_multi_piece_row_equals_product_of_pieces():
    rng = np.random.default_rng(2)
    Q = np.stack([random_generator(rng, 4), random_generator(rng, 4)])
    # one row over [0, 1] under Q0 then [1, 2.5] under Q1
    panel = ([0, 1], [1.0, 1.5], [0, 2], [0, 1], [2], [1], [7.0])
    P = scipy.linalg.expm(Q[0]) @ scipy.linalg.expm(1.5 * Q[1])
    assert L.loglik(Q, *panel) == pytest.approx(7.0 * np.log(P[2, 1]), rel=1e-12)
    assert L.row_loglik(Q, *panel)[0] == pytest.approx(np.log(P[2, 1]), rel=1e-12)


def test_pieces_without_observations_and_zero_counts_are_ignored():
    Q, panel = random_case(1)
    piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count = panel
    # an extra piece nobody uses, and a zero-count row observing an impossible move
    K = Q.shape[1]
    Qa = np.concatenate([Q, [generator(np.diag(np.full(K - 1, 0.5), 1))]])  # last state absorbing
    more = (
        np.append(piece_q, len(Qa) - 1),
        np.append(piece_t, 1.0),
        np.append(row_ptr, row_ptr[-1] + 1),
        np.append(row_piece, len(piece_q)),
        np.append(row_from, K - 1),
        np.append(row_to, 0),
        np.append(row_count, 0.0),
    )
    ll, grad = L.loglik_and_grad(Qa, *more)
    ll0, grad0 = L.loglik_and_grad(Q, *panel)
    assert ll == pytest.approx(ll0, rel=1e-14)
    np.testing.assert_allclose(grad[: len(Q)], grad0, rtol=1e-13, atol=1e-13)
    assert np.all(grad[-1] == 0.0)


def test_impossible_observed_transition_gives_minus_inf_and_zero_gradient():
    Q = _absorbing()[None]
    # state 3 is absorbing: 3 -> 0 is impossible
    panel = ([0], [1.0], [0, 1, 2], [0, 0], [0, 3], [1, 0], [2.0, 1.0])
    ll, grad = L.loglik_and_grad(Q, *panel)
    assert ll == -np.inf
    assert np.all(grad == 0.0) and np.all(np.isfinite(grad))
    rows = L.row_loglik(Q, *panel)
    assert np.isfinite(rows[0]) and rows[1] == -np.inf


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_generator_gives_minus_inf(bad):
    Q, panel = random_case(2)
    Q = Q.copy()
    Q[0, 0, 0] = bad
    ll, grad = L.loglik_and_grad(Q, *panel)
    assert ll == -np.inf
    assert np.all(grad == 0.0)
    assert L.loglik(Q, *panel) == -np.inf


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("piece_q", [5], "piece_q holds an index"),
        ("piece_t", [-1.0], "piece_t must be finite"),
        ("row_ptr", [0, 0, 2], "at least one piece"),
        ("row_ptr", [0, 1], "row_ptr must have length"),
        ("row_piece", [0, 3], "row_piece holds an index"),
        ("row_from", [0, 9], "row_from/row_to hold a state"),
        ("row_count", [1.0], "same length"),
    ],
)
def test_inconsistent_layout_raises(field, value, message):
    Q = generator(np.full((3, 3), 0.1))[None]
    data = dict(
        piece_q=[0],
        piece_t=[1.0],
        row_ptr=[0, 1, 2],
        row_piece=[0, 0],
        row_from=[0, 1],
        row_to=[1, 2],
        row_count=[3.0, 4.0],
    )
    data[field] = value
    args = [data[name] for name in L.PANEL_FIELDS]
    for fn in (L.loglik, L.loglik_and_grad, L.row_loglik):
        with pytest.raises(ValueError, match=message):
            fn(Q, *args)
    with pytest.raises(ValueError, match=message):
        L.native_loglik_and_grad()(
            Q,
            *(
                np.asarray(a, dtype=np.float64 if n in ("piece_t", "row_count") else np.int64)
                for n, a in zip(L.PANEL_FIELDS, args, strict=True)
            ),
        )


def test_native_kernel_accepts_read_only_and_strided_arrays():
    Q, panel = random_case(4)
    arrays = L.panel_arrays(dict(zip(L.PANEL_FIELDS, panel, strict=True)))
    for a in arrays:
        a.flags.writeable = False
    Qf = np.asfortranarray(Q)  # non-C layout
    ll, grad = L.native_loglik_and_grad()(Qf, *arrays)
    ll_ref, grad_ref = L.loglik_and_grad(Q, *panel)
    assert ll == ll_ref
    np.testing.assert_array_equal(grad, grad_ref)


# --------------------------------------------------------------------------
# row log-likelihoods (PSIS-LOO)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES[:4] + CASES[-4:])
def test_row_loglik_matches_reference(case):
    Q, panel = case()
    rows = L.row_loglik(Q, *panel)
    np.testing.assert_allclose(rows, L.row_loglik_reference(Q, *panel), rtol=1e-10, atol=1e-12)
    # the log-likelihood is the count-weighted sum
    assert panel[-1] @ rows == pytest.approx(L.loglik(Q, *panel), rel=1e-12)


def test_row_loglik_draws_matches_single_draws():
    rng = np.random.default_rng(9)
    K, M, S = 5, 2, 40
    Q_draws = np.stack([[random_generator(rng, K) for _ in range(M)] for _ in range(S)])
    Q_draws[3, 1] = generator(np.diag([0.5] * (K - 1), 1))  # a fallback draw
    _, panel = make_panel(Q_draws[0], [0.5, 1.0, 2.0], rng, n_rows=30)
    out = L.row_loglik_draws(Q_draws, *panel)
    assert out.shape == (S, 30)
    for s in (0, 3, S - 1):
        np.testing.assert_allclose(out[s], L.row_loglik(Q_draws[s], *panel), rtol=1e-13)
        np.testing.assert_allclose(
            out[s], L.row_loglik_reference(Q_draws[s], *panel), rtol=1e-10, atol=1e-12
        )


# --------------------------------------------------------------------------
# P(t)
# --------------------------------------------------------------------------

TIMES = np.array([0.0, 0.1, 1.0, 10.0, 50.0])


def _generator_batch():
    rng = np.random.default_rng(5)
    batch = [random_generator(rng, 5) for _ in range(30)]
    batch += [np.pad(Qs[0], ((0, 5 - Qs[0].shape[0]),) * 2) for Qs, _, _ in HARD_CASES.values()]
    return np.stack(batch)


def expm_high_precision(A, digits=50):
    """exp(A) by Taylor series with scaling and squaring in decimal arithmetic."""
    getcontext().prec = digits
    n = A.shape[0]
    s = max(0, int(np.ceil(np.log2(max(np.abs(A).sum(axis=1).max(), 1e-300) / 0.5))))
    X = [[Decimal(float(a)) / Decimal(2**s) for a in row] for row in A]

    def mm(Y, Z):
        return [[sum(Y[i][k] * Z[k][j] for k in range(n)) for j in range(n)] for i in range(n)]

    R = [[Decimal(int(i == j)) for j in range(n)] for i in range(n)]
    term = [row[:] for row in R]
    for k in range(1, 40):  # ||X|| <= 0.5: the remainder is below 0.5**40 / 40!
        term = [[x / k for x in row] for row in mm(term, X)]
        R = [[R[i][j] + term[i][j] for j in range(n)] for i in range(n)]
    for _ in range(s):
        R = mm(R, R)
    return np.array([[float(x) for x in row] for row in R])


def test_pmatrix_equals_scipy_expm_batched_over_draws():
    Q = _generator_batch()
    P = L.pmatrix(Q, TIMES)
    assert P.shape == (Q.shape[0], TIMES.size, 5, 5)
    fallback = np.array(spectral_modes(Q)) == FALLBACK
    assert fallback.sum() == 2  # the Pade path of pmatrix is exercised
    for n in np.flatnonzero(~fallback):
        for j, t in enumerate(TIMES):
            np.testing.assert_allclose(P[n, j], scipy.linalg.expm(Q[n] * t), rtol=0, atol=1e-12)


def test_pmatrix_of_defective_generators_matches_high_precision():
    # scipy.linalg.expm is off by ~1e-11 on the nearly defective case at t = 10
    Q = _generator_batch()
    for n in np.flatnonzero(np.array(spectral_modes(Q)) == FALLBACK):
        for t in (1.0, 10.0, 50.0):
            exact = expm_high_precision(Q[n] * t)
            np.testing.assert_allclose(L.pmatrix(Q[n], t), exact, rtol=0, atol=1e-14)


def test_pmatrix_rows_sum_to_one_and_semigroup():
    Q = _generator_batch()
    P = L.pmatrix(Q, TIMES)
    np.testing.assert_allclose(P.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    s, t = 0.7, 2.3
    Ps, Pt, Pst = (L.pmatrix(Q, x) for x in (s, t, s + t))
    np.testing.assert_allclose(Ps @ Pt, Pst, rtol=0, atol=1e-12)


def test_pmatrix_shapes():
    Q = generator(np.full((3, 3), 0.2))
    assert L.pmatrix(Q, 1.0).shape == (3, 3)
    assert L.pmatrix(Q, [1.0, 2.0]).shape == (2, 3, 3)
    assert L.pmatrix(np.stack([Q] * 4).reshape(2, 2, 3, 3), np.ones((5, 6))).shape == (
        2,
        2,
        5,
        6,
        3,
        3,
    )
    np.testing.assert_allclose(L.pmatrix(Q, 0.0), np.eye(3), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="t must be finite"):
        L.pmatrix(Q, -1.0)


# --------------------------------------------------------------------------
# numba matrix exponential (the fallback)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("norm", [1e-3, 0.1, 0.7, 1.5, 4.0, 30.0, 1e3])
def test_numba_expm_and_frechet_match_scipy(norm):
    rng = np.random.default_rng(int(norm * 1000))
    A = rng.normal(size=(5, 5))
    A *= norm / np.abs(A).sum(axis=0).max()
    D = rng.normal(size=(5, 5))
    R, Lf = E.expm_frechet(A, D)
    R_ref, L_ref = scipy.linalg.expm_frechet(A, D)
    scale = np.abs(R_ref).max()
    # backward-stable algorithms: errors ~ eps * ||A|| relative to the result's scale
    tol = 1e-14 * max(1.0, norm) * scale
    np.testing.assert_allclose(E.expm(A), R_ref, rtol=0, atol=tol)
    np.testing.assert_allclose(R, R_ref, rtol=0, atol=tol)
    np.testing.assert_allclose(Lf, L_ref, rtol=0, atol=1e-14 * max(1.0, norm) * np.abs(L_ref).max())


# --------------------------------------------------------------------------
# On-disk caching of the kernel
# --------------------------------------------------------------------------


def test_kernel_hash_covers_every_kernel_module_and_inner_kernels_are_not_cached():
    # numba keys a cached function on its own file only: the entry point's key
    # (KERNEL_HASH) must hash every file whose numba code it links, and the
    # kernels it links must not be cached on their own (they would go stale)
    from markov_migration.core import expm, layout, loglik_kernel, native, spectral_real

    names = {p.name for p in native.KERNEL_SOURCES}
    for module in (expm, layout, spectral, spectral_real, loglik_kernel, native):
        assert module.__file__.rsplit("/", 1)[-1] in names
    for fn in (
        loglik_kernel._forward,
        loglik_kernel._loglik_kernel,
        loglik_kernel._row_loglik_kernel,
    ):
        assert type(fn._cache).__name__ == "NullCache"


@pytest.mark.slow
def test_second_process_loads_the_kernel_from_the_cache():
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from markov_migration.core.likelihood import loglik_and_grad\n"
        "Q = np.array([[[-0.2, 0.2], [0.1, -0.1]]])\n"
        "print(loglik_and_grad(Q, [0], [1.0], [0, 1, 2], [0, 0], [0, 0], [0, 1], [30.0, 5.0])[0])\n"
    )
    env = {**os.environ, "NUMBA_DEBUG_CACHE": "1"}
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        for _ in range(2)
    ]
    # the first run may compile (a cold cache); the second only loads
    assert "data saved" not in runs[1].stdout + runs[1].stderr
    assert "data loaded" in runs[1].stdout + runs[1].stderr
    assert runs[0].stdout.splitlines()[-1] == runs[1].stdout.splitlines()[-1]


@pytest.mark.slow
def test_full_kernel_is_compiled_only_when_a_generator_needs_the_fallback():
    # the lean kernel has no Pade fallback; the first generator that needs it
    # compiles (or loads) the full kernel through the ctypes trampoline, and the
    # values are those of the high-precision reference either way
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from markov_migration.core import native\n"
        "from markov_migration.core.likelihood import loglik_and_grad, row_loglik\n"
        "panel = ([0], [1.5], [0, 1, 2], [0, 0], [0, 0], [0, 1], [30.0, 5.0])\n"
        "Q = np.array([[[-0.2, 0.2], [0.1, -0.1]]])\n"
        "a = loglik_and_grad(Q, *panel)\n"
        "print(len(native._full_entry_cfunc))\n"
        "J = np.array([[[-1.0, 1.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, 0.0]]])\n"
        "pj = ([0], [1.5], [0, 1, 2], [0, 0], [0, 0], [0, 2], [30.0, 5.0])\n"
        "b = loglik_and_grad(J, *pj)\n"
        "r = row_loglik(J, *pj)\n"
        "print(len(native._full_entry_cfunc))\n"
        "print(repr(b[0]), repr(r.tolist()), repr(b[1].ravel().tolist()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "0"  # a real spectrum: the full kernel was not needed
    assert out[1] == "2"  # a defective generator (Jordan block): it was (call, cfunc)
    J = np.array([[-1.0, 1.0, 0.0], [0.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
    P = scipy.linalg.expm(J * 1.5)
    value = float(out[2].split(" [")[0])
    np.testing.assert_allclose(value, 30 * np.log(P[0, 0]) + 5 * np.log(P[0, 2]), rtol=1e-12)

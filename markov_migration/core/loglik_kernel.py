"""The panel log-likelihood kernel and its adjoint gradient, compiled with numba.

Layer 1 (numpy, numba only). :func:`_forward` decomposes every generator
(:mod:`markov_migration.core.spectral`), evaluates ``P`` for every piece and the
probability of every row; :func:`_loglik_kernel` adds the log-likelihood and
back-propagates its adjoint to ``dL/dQ``, through the spectrum or, for
generators that need the fallback, through the Pade Frechet derivative
(:mod:`markov_migration.core.expm`). Called from Python only through the
C entry point of :mod:`markov_migration.core.native`.

Every kernel takes a last argument ``full``: ``None`` compiles the *lean* kernel,
without the Pade fallback (numba prunes the branch on the argument's type, so the
fallback's code is never typed or optimised); on a generator that needs the fallback
the lean kernel stops with :data:`STATUS_NEEDS_FALLBACK`. ``True`` compiles the full
kernel. The C entry point of :mod:`markov_migration.core.native` compiles the lean kernel
eagerly and the full one only when some generator first needs it (a fallback is rare:
a defective or ill-conditioned generator): the lean kernel compiles in about 40% of
the CPU time of the old single kernel (docs/performance.md, lever 5).

These kernels are deliberately not ``cache=True``: numba keys a cached function
on its own file only, so a cached kernel would keep stale code of
:mod:`~markov_migration.core.spectral` or :mod:`~markov_migration.core.expm`
after they change. They are compiled into the C entry point, whose cache key
hashes every kernel file (:data:`markov_migration.core.native.KERNEL_HASH`).
"""

import numpy as np
from numba import njit

from markov_migration.core.expm import expm as _expm_numba
from markov_migration.core.expm import expm_frechet as _expm_frechet_numba
from markov_migration.core.spectral import (
    _MODE_COMPLEX,
    _MODE_FALLBACK,
    _MODE_REAL,
    _SEPARATED_MIN,
    _accumulate_row_close,
    _accumulate_row_pairwise,
    _accumulate_row_spectral,
    _accumulate_spectral_adjoint,
    _back_transform,
    _decompose_used,
    _dense,
    _eigen_gaps,
    _entry,
    _piece_exponentials,
    _spectral_from_sums,
)
from markov_migration.core.spectral_real import (
    _accumulate_row_real_form,
    _complex_sums,
    _entry_real_form,
    _real_exponentials,
    _real_form,
)

__all__: list[str] = []

#: Kernel status: evaluated (possibly to -inf).
STATUS_OK = 0
#: Kernel status of a lean kernel (``full=None``): some used generator needs the Pade
#: fallback, which the lean kernel does not contain; nothing was computed.
STATUS_NEEDS_FALLBACK = 1


@njit
def _forward(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, full):
    """Decompose generators, evaluate P for every piece and the row probabilities.

    Returns the per-generator decompositions and modes, exp(lam t) per piece,
    dense P for the pieces that need it (multi-piece rows, fallback
    generators) at ``P[slot[p]]`` (``slot[p] = -1`` for the others), and
    ``value[r] = P_r[from_r, to_r]``, whether the generators are valid and the
    status (:data:`STATUS_NEEDS_FALLBACK` from a lean kernel, ``full=None``).
    """
    K = Q.shape[1]
    n_pieces = piece_q.shape[0]
    n_rows = row_from.shape[0]
    mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, valid = _decompose_used(Q, piece_q)
    # the real forms of the spectra (spectral_real._real_form): rows run in real
    # arithmetic on real and complex spectra; ``expo_r`` holds each piece's
    # exponentials in real form for both
    M = Q.shape[0]
    kind = np.zeros((M, K), dtype=np.int64)
    Ut = np.empty((M, K, K))
    Uit = np.empty((M, K, K))
    Wt = np.empty((M, K, K, K))
    rf = np.zeros(M, dtype=np.bool_)
    for m in range(M):
        if mode[m] == _MODE_REAL:
            rf[m] = _real_form(lam_r, U_r, Ui_r, m, kind, Ut, Uit, Wt)
        elif mode[m] == _MODE_COMPLEX:
            rf[m] = _real_form(lam_c, U_c, Ui_c, m, kind, Ut, Uit, Wt)

    # each piece's row of exponentials is written for its generator's mode
    # before it is read, so no zeroing (it costs as much as the work here)
    expo_r = np.empty((n_pieces, K))
    expo_c = np.empty((n_pieces, K), dtype=np.complex128)
    # dense P only where needed: a full (n_pieces, K, K) array would be zeroed
    # at every evaluation
    slot = np.full(n_pieces, -1, dtype=np.int64)
    n_slots = 0
    for r in range(n_rows):
        if row_ptr[r + 1] - row_ptr[r] > 1:
            for i in range(row_ptr[r], row_ptr[r + 1]):
                if slot[row_piece[i]] < 0:
                    slot[row_piece[i]] = n_slots
                    n_slots += 1
    for p in range(n_pieces):
        if slot[p] < 0 and mode[piece_q[p]] == _MODE_FALLBACK:
            slot[p] = n_slots
            n_slots += 1
    P = np.zeros((n_slots, K, K))
    value = np.zeros(n_rows)
    if not valid:
        return (
            mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, value, False, slot,
            STATUS_OK, kind, Ut, Uit, rf,
        )  # fmt: skip

    for p in range(n_pieces):
        m = piece_q[p]
        t = piece_t[p]
        if mode[m] == _MODE_REAL:
            _piece_exponentials(lam_r, m, t, expo_r, p)
            if slot[p] >= 0:
                _dense(U_r, Ui_r, m, expo_r, p, P, slot[p])
        elif mode[m] == _MODE_COMPLEX:
            _piece_exponentials(lam_c, m, t, expo_c, p)
            if rf[m]:
                _real_exponentials(kind, m, expo_c, p, expo_r)
            if slot[p] >= 0:
                _dense(U_c, Ui_c, m, expo_c, p, P, slot[p])
        elif full is None:  # lean kernel: pruned at compile time when full is not None
            return (
                mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, value, False, slot,
                STATUS_NEEDS_FALLBACK, kind, Ut, Uit, rf,
            )  # fmt: skip
        else:
            try:
                Pm = _expm_numba(Q[m] * t)
                for i in range(K):
                    for j in range(K):
                        P[slot[p], i, j] = Pm[i, j]
            except Exception:  # singular Pade denominator: cannot happen for finite Q
                return (
                    mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, value, False,
                    slot, STATUS_OK, kind, Ut, Uit, rf,
                )  # fmt: skip

    left = np.zeros(K)
    tmp = np.zeros(K)
    for r in range(n_rows):
        a = row_from[r]
        b = row_to[r]
        start = row_ptr[r]
        stop = row_ptr[r + 1]
        if stop - start == 1:
            p = row_piece[start]
            m = piece_q[p]
            if rf[m]:  # real or complex spectrum, in real form
                value[r] = _entry_real_form(Wt, m, expo_r, p, a, b)
            elif mode[m] == _MODE_COMPLEX:
                value[r] = _entry(U_c, Ui_c, m, expo_c, p, a, b)
            else:
                value[r] = P[slot[p], a, b]
        else:
            s0 = slot[row_piece[start]]
            for j in range(K):
                left[j] = P[s0, a, j]
            for i in range(start + 1, stop - 1):
                Pi = P[slot[row_piece[i]]]
                for j in range(K):
                    s = 0.0
                    for k in range(K):
                        s += left[k] * Pi[k, j]
                    tmp[j] = s
                for j in range(K):
                    left[j] = tmp[j]
            v = 0.0
            Pl = P[slot[row_piece[stop - 1]]]
            for k in range(K):
                v += left[k] * Pl[k, b]
            value[r] = v
    return (
        mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, value, True, slot, STATUS_OK,
        kind, Ut, Uit, rf,
    )  # fmt: skip


@njit
def _row_loglik_kernel(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, full):
    """Row log-probabilities and the kernel status (see :func:`_forward`)."""
    fwd = _forward(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, full)
    value = fwd[10]
    out = np.empty(value.shape[0])
    for r in range(value.shape[0]):
        v = value[r]
        out[r] = np.log(v) if (fwd[11] and v > 0.0 and np.isfinite(v)) else -np.inf
    return out, fwd[13]


@njit
def _loglik_kernel(
    Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count, with_grad, full
):  # fmt: skip
    """Log-likelihood, (if ``with_grad``) its gradient with respect to every Q entry, status.

    The gradient of a generator with a usable eigendecomposition is
    ``U^-T S U^T`` with the spectral adjoint ``S = sum_rows V(t) o (U^T G U^-T)``
    (Kalbfleisch-Lawless). Rows of one piece -- nearly all rows -- add to ``S``
    in O(K) through :func:`_accumulate_row_spectral`; rows crossing period cuts
    form their piece adjoints ``G`` and add ``V o (U^T G U^-T)`` per piece;
    fallback generators take the Frechet derivative of the Pade expm (full kernel
    only, ``full`` not None; a lean kernel returns :data:`STATUS_NEEDS_FALLBACK`).
    """
    M = Q.shape[0]
    K = Q.shape[1]
    n_pieces = piece_q.shape[0]
    n_rows = row_from.shape[0]
    dQ = np.zeros((M, K, K))
    fwd = _forward(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, full)
    mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, value, valid, slot, st = fwd[:14]
    kind, Ut, Uit, rf = fwd[14:]
    if st != STATUS_OK:
        return 0.0, dQ, st
    if not valid:
        return -np.inf, dQ, STATUS_OK
    total = 0.0
    for r in range(n_rows):
        c = row_count[r]
        if c == 0.0:
            continue
        v = value[r]
        if not (v > 0.0 and np.isfinite(v)):
            return -np.inf, dQ, STATUS_OK
        total += c * np.log(v)
    if not np.isfinite(total):
        return total, dQ, STATUS_OK
    if not with_grad:
        return total, dQ, STATUS_OK

    # eigenvalue gaps. A pair (i, j) is *separated* for a row of length t when
    # |lam_i - lam_j| t >= _SEPARATED_MIN. Pairs close even at the generator's
    # longest piece ("never separated": repeated eigenvalues) are summed row by
    # row always; a row is summed in O(K) when all other pairs are separated at
    # its length, t * gap_min >= _SEPARATED_MIN, and pairwise (O(K^2)) otherwise.
    # Deciding per row, not by the shortest piece of the generator, keeps one
    # short interval (a day) from sending every row to the pairwise path.
    invd_r = np.zeros((M, K, K))
    invd_c = np.zeros((M, K, K), dtype=np.complex128)
    absd = np.zeros((M, K, K))
    t_max = np.zeros(M)
    for p in range(n_pieces):
        if piece_t[p] > t_max[piece_q[p]]:
            t_max[piece_q[p]] = piece_t[p]
    close = np.zeros((M, K, K), dtype=np.bool_)
    gap_min = np.full(M, np.inf)
    n_close = np.zeros(M, dtype=np.int64)
    close_i = np.zeros((M, K * K), dtype=np.int64)
    close_j = np.zeros((M, K * K), dtype=np.int64)
    for m in range(M):
        if mode[m] == _MODE_REAL:
            _eigen_gaps(lam_r[m], invd_r[m], absd[m])
        elif mode[m] == _MODE_COMPLEX:
            _eigen_gaps(lam_c[m], invd_c[m], absd[m])
        else:
            continue
        for i in range(K):
            for j in range(K):
                if i == j:
                    continue
                if not absd[m, i, j] * t_max[m] >= _SEPARATED_MIN:
                    close[m, i, j] = True
                    close_i[m, n_close[m]] = i
                    close_j[m, n_close[m]] = j
                    n_close[m] += 1
                elif absd[m, i, j] < gap_min[m]:
                    gap_min[m] = absd[m, i, j]

    # row sums of the O(K) accumulation (real and complex spectra)
    B_r = np.zeros((M, K, K))
    C_r = np.zeros((M, K, K))
    D_r = np.zeros((M, K))
    Sc_r = np.zeros((M, K, K))
    B_c = np.zeros((M, K, K), dtype=np.complex128)
    C_c = np.zeros((M, K, K), dtype=np.complex128)
    D_c = np.zeros((M, K), dtype=np.complex128)
    Sc_c = np.zeros((M, K, K), dtype=np.complex128)
    # adjoints G[slot[p]] = dL/dP_p of the pieces with a dense P (multi-piece
    # rows, fallback generators)
    n_slots = P.shape[0]
    G = np.zeros((n_slots, K, K))
    has_g = np.zeros(n_slots, dtype=np.bool_)
    max_len = 1
    for r in range(n_rows):
        max_len = max(max_len, row_ptr[r + 1] - row_ptr[r])
    lefts = np.zeros((max_len, K))
    rights = np.zeros((max_len, K))
    for r in range(n_rows):
        c = row_count[r]
        if c == 0.0:
            continue
        g = c / value[r]
        a = row_from[r]
        b = row_to[r]
        start = row_ptr[r]
        n = row_ptr[r + 1] - start
        if n == 1:
            p = row_piece[start]
            m = piece_q[p]
            t = piece_t[p]
            if t > 0.0:  # P(0) = I does not depend on Q
                sep = t * gap_min[m] >= _SEPARATED_MIN
                if sep and rf[m]:  # real arithmetic (real form) but for close pairs
                    _accumulate_row_real_form(
                        Ut, Uit, kind, m, expo_r, p, t, a, b, g, B_r, C_r, D_r
                    )
                    if n_close[m] == 0:
                        continue
                    if mode[m] == _MODE_REAL:
                        _accumulate_row_close(
                            U_r, Ui_r, lam_r, invd_r, absd, m, expo_r, p, t, a, b, g, Sc_r,
                            n_close, close_i, close_j,
                        )  # fmt: skip
                    else:
                        _accumulate_row_close(
                            U_c, Ui_c, lam_c, invd_c, absd, m, expo_c, p, t, a, b, g, Sc_c,
                            n_close, close_i, close_j,
                        )  # fmt: skip
                    continue
                if mode[m] == _MODE_REAL:
                    if not sep:
                        _accumulate_row_pairwise(
                            U_r, Ui_r, lam_r, invd_r, absd, m, expo_r, p, t, a, b, g, D_r, Sc_r
                        )
                    continue
                if mode[m] == _MODE_COMPLEX:
                    if sep:
                        _accumulate_row_spectral(
                            U_c, Ui_c, lam_c, invd_c, absd, m, expo_c, p, t, a, b, g,
                            B_c, C_c, D_c, Sc_c, n_close, close_i, close_j,
                        )  # fmt: skip
                    else:
                        _accumulate_row_pairwise(
                            U_c, Ui_c, lam_c, invd_c, absd, m, expo_c, p, t, a, b, g, D_c, Sc_c
                        )
                    continue
            if mode[m] == _MODE_REAL or mode[m] == _MODE_COMPLEX:
                continue
            else:
                G[slot[p], a, b] += g
                has_g[slot[p]] = True
            continue
        # lefts[k] = row a of P_0 ... P_(k-1); rights[k] = column b of P_(k+1) ... P_(n-1)
        lefts[0, :] = 0.0
        lefts[0, a] = 1.0
        for k in range(1, n):
            Pk = P[slot[row_piece[start + k - 1]]]
            for j in range(K):
                acc = 0.0
                for i in range(K):
                    acc += lefts[k - 1, i] * Pk[i, j]
                lefts[k, j] = acc
        rights[n - 1, :] = 0.0
        rights[n - 1, b] = 1.0
        for k in range(n - 2, -1, -1):
            Pk = P[slot[row_piece[start + k + 1]]]
            for i in range(K):
                acc = 0.0
                for j in range(K):
                    acc += Pk[i, j] * rights[k + 1, j]
                rights[k, i] = acc
        for k in range(n):
            sp = slot[row_piece[start + k]]
            has_g[sp] = True
            for i in range(K):
                li = g * lefts[k, i]
                for j in range(K):
                    G[sp, i, j] += li * rights[k, j]

    W_r = np.zeros((M, K, K))
    W_c = np.zeros((M, K, K), dtype=np.complex128)
    X_r = np.zeros((K, K))
    X_c = np.zeros((K, K), dtype=np.complex128)
    nz_a = np.zeros(K * K, dtype=np.int64)
    nz_b = np.zeros(K * K, dtype=np.int64)
    nz_g = np.zeros(K * K)
    for p in range(n_pieces):
        sp = slot[p]
        if sp < 0 or not has_g[sp]:
            continue
        m = piece_q[p]
        t = piece_t[p]
        if mode[m] == _MODE_REAL:
            _accumulate_spectral_adjoint(
                U_r, Ui_r, lam_r, invd_r, absd, m, expo_r, p, t, G, sp, W_r, X_r, nz_a, nz_b, nz_g
            )
        elif mode[m] == _MODE_COMPLEX:
            _accumulate_spectral_adjoint(
                U_c, Ui_c, lam_c, invd_c, absd, m, expo_c, p, t, G, sp, W_c, X_c, nz_a, nz_b, nz_g
            )
        elif full is None:  # never reached: the lean _forward stopped already
            return 0.0, dQ, STATUS_NEEDS_FALLBACK
        else:
            # <G, L(Q t, E t)> = <t L(Q^T t, G), E>
            try:
                _, Lf = _expm_frechet_numba(np.ascontiguousarray(Q[m].T) * t, G[sp])
            except Exception:
                return -np.inf, np.zeros((M, K, K)), STATUS_OK
            dQ[m] += t * Lf
    for m in range(M):
        if mode[m] == _MODE_REAL:
            _spectral_from_sums(U_r, Ui_r, invd_r, m, B_r, C_r, D_r, Sc_r, close, W_r)
            _back_transform(U_r[m], Ui_r[m], W_r[m], dQ[m])
        elif mode[m] == _MODE_COMPLEX:
            if rf[m]:  # the real-form row sums, and their conjugates
                _complex_sums(kind, m, B_r, C_r, D_r, B_c, C_c, D_c)
            _spectral_from_sums(U_c, Ui_c, invd_c, m, B_c, C_c, D_c, Sc_c, close, W_c)
            _back_transform(U_c[m], Ui_c[m], W_c[m], dQ[m])
    return total, dQ, STATUS_OK

"""The C entry point of the log-likelihood kernel, its on-disk cache key and callers.

Layer 1 (numpy, numba, llvmlite only).
"""

import ctypes
import hashlib
import sys
import threading
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
from numba import carray, cfunc, njit, types

from markov_migration.core import expm as _expm_module
from markov_migration.core import layout as _layout_module
from markov_migration.core import loglik_kernel as _kernel_module
from markov_migration.core import spectral as _spectral_module
from markov_migration.core import spectral_real as _spectral_real_module
from markov_migration.core.layout import _layout_status
from markov_migration.core.loglik_kernel import (
    STATUS_NEEDS_FALLBACK,
    _loglik_kernel,
    _row_loglik_kernel,
)

__all__ = [
    "KERNEL_HASH",
    "ensure_full_kernel",
    "ensure_native_kernel",
    "native_loglik_and_grad",
    "warm_kernels",
]

# --------------------------------------------------------------------------
# One native entry point
# --------------------------------------------------------------------------
# numba links the LLVM code of every jitted callee into its caller and
# re-optimises the whole module: a jitted caller of the (large) kernel would pay
# 10-40 s of LLVM work on each fresh compile -- every new PyTensor graph, every
# nutpie model. So the kernel is compiled once as a C callback (cached on disk)
# and called through an external symbol, as numba calls its own LAPACK
# wrappers; callers then compile only a few lines.
#
# Two variants of the entry point: the *lean* one, compiled (or loaded) eagerly,
# has no Pade fallback (``full=None``, see loglik_kernel); when a generator needs
# the fallback it hands the whole call to the *full* entry point through a second
# external symbol. That symbol is first bound to a ctypes callback that compiles
# (or loads) the full entry point on its first call and forwards to it, so a fit
# whose generators never need the fallback never compiles it (the lean entry point
# takes about 40% of the old one's compile CPU; docs/performance.md, lever 5).

_TASK_LOGLIK = 0
_TASK_LOGLIK_GRAD = 1
_TASK_ROW_LOGLIK = 2

_C_SIGNATURE = types.int64(
    types.int64,  # task
    types.CPointer(types.float64),  # Q, (M, K, K) in C order
    types.int64,  # M
    types.int64,  # K
    types.CPointer(types.int64),  # piece_q
    types.CPointer(types.float64),  # piece_t
    types.int64,  # n_pieces
    types.CPointer(types.int64),  # row_ptr, n_rows + 1
    types.CPointer(types.int64),  # row_piece
    types.int64,  # nnz
    types.CPointer(types.int64),  # row_from
    types.CPointer(types.int64),  # row_to
    types.CPointer(types.float64),  # row_count
    types.int64,  # n_rows
    types.CPointer(types.float64),  # out_value: 1 (loglik) or n_rows (row log-probabilities)
    types.CPointer(types.float64),  # out_grad: M * K * K
)


def _make_native_entry(kernel_hash, full):
    """Build the C entry point, tied to the kernels' source hash.

    numba invalidates a cached function only when its own file changes; the
    hash (a closure variable, part of numba's cache index key) makes a change
    in any kernel module (:data:`KERNEL_SOURCES`) recompile the entry point too.
    ``full`` (None: lean, True: with the Pade fallback) is a closure variable as
    well, so the two variants are cached under different keys.
    """

    def _native_entry(
        task, q_ptr, M, K, pq_ptr, pt_ptr, n_pieces, rp_ptr, rpi_ptr, nnz, rf_ptr, rt_ptr,
        rc_ptr, n_rows, out_value_ptr, out_grad_ptr,
    ):  # fmt: skip
        """C entry point; returns 0 or a layout error code (``_LAYOUT_ERRORS``).

        Tasks: 0 log-likelihood, 1 log-likelihood and gradient (``out_grad``),
        2 row log-probabilities (``out_value`` of length n_rows).
        """
        if task < 0:  # never: references the hash so that it keys the cache
            return -len(kernel_hash)
        Q = carray(q_ptr, (M, K, K))
        piece_q = carray(pq_ptr, (n_pieces,))
        piece_t = carray(pt_ptr, (n_pieces,))
        row_ptr = carray(rp_ptr, (n_rows + 1,))
        row_piece = carray(rpi_ptr, (nnz,))
        row_from = carray(rf_ptr, (n_rows,))
        row_to = carray(rt_ptr, (n_rows,))
        row_count = carray(rc_ptr, (n_rows,))
        status = _layout_status(
            M, K, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
        )
        if status != 0:
            return status
        if task == _TASK_ROW_LOGLIK:
            out = carray(out_value_ptr, (n_rows,))
            rows, st = _row_loglik_kernel(
                Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, full
            )
            if st == STATUS_NEEDS_FALLBACK:
                return _full_call(
                    task, q_ptr, M, K, pq_ptr, pt_ptr, n_pieces, rp_ptr, rpi_ptr, nnz, rf_ptr,
                    rt_ptr, rc_ptr, n_rows, out_value_ptr, out_grad_ptr,
                )  # fmt: skip
            # element loops, not slice assignment: numba compiles a shape check
            # with message formatting per slice rank (seconds of cold compile)
            for r in range(n_rows):
                out[r] = rows[r]
            return 0
        total, dQ, st = _loglik_kernel(
            Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count,
            task == _TASK_LOGLIK_GRAD, full,
        )  # fmt: skip
        if st == STATUS_NEEDS_FALLBACK:
            return _full_call(
                task, q_ptr, M, K, pq_ptr, pt_ptr, n_pieces, rp_ptr, rpi_ptr, nnz, rf_ptr,
                rt_ptr, rc_ptr, n_rows, out_value_ptr, out_grad_ptr,
            )  # fmt: skip
        carray(out_value_ptr, (1,))[0] = total
        if task == _TASK_LOGLIK_GRAD:
            out_grad = carray(out_grad_ptr, (M * K * K,))
            flat = dQ.ravel()
            for i in range(M * K * K):
                out_grad[i] = flat[i]
        return 0

    return _native_entry


@njit(cache=True)
def _raise_layout_error(status):
    """Raise the ValueError of a non-zero layout status (inside numba code)."""
    if status == 1:
        raise ValueError("piece_t and piece_q must have the same length")
    if status == 2:
        raise ValueError("row_from, row_to and row_count must have the same length")
    if status == 3:
        raise ValueError("row_ptr must have length n_rows + 1")
    if status == 4:
        raise ValueError("row_ptr must start at 0 and end at len(row_piece)")
    if status == 5:
        raise ValueError("piece_q holds an index outside 0..M-1")
    if status == 6:
        raise ValueError("piece_t must be finite and >= 0")
    if status == 7:
        raise ValueError("every row needs at least one piece (row_ptr must increase)")
    if status == 8:
        raise ValueError("row_from/row_to hold a state outside 0..K-1")
    if status == 9:
        raise ValueError("row_piece holds an index outside 0..n_pieces-1")
    if status == _STATUS_FULL_FAILED:
        raise RuntimeError("the fallback log-likelihood kernel could not be compiled")
    if status != 0:
        raise ValueError("invalid panel data layout")


#: The files whose numba code ends up in the compiled entry point. The kernels of
#: ``loglik_kernel`` are not cached on their own (``cache=True`` would key them on
#: their own file only, and a cached caller would keep stale code of ``spectral``
#: or ``expm``); they are compiled into the entry point, which this hash keys.
KERNEL_SOURCES = tuple(
    Path(m.__file__)
    for m in (_layout_module, _spectral_module, _spectral_real_module, _kernel_module, _expm_module)
) + (Path(__file__),)


def _kernel_source_hash() -> str:
    h = hashlib.sha256()
    for path in KERNEL_SOURCES:
        h.update(path.read_bytes())
    return h.hexdigest()


#: Source hash of the numba kernels (:data:`KERNEL_SOURCES`); keys the compiled
#: entry point and the PyTensor numba cache.
KERNEL_HASH = _kernel_source_hash()
# The symbol name depends only on the C signature: cached callers resolve it
# when they are loaded, so they always call the current kernel.
_NATIVE_SYMBOL = (
    "markov_migration_panel_kernel_" + hashlib.sha256(str(_C_SIGNATURE).encode()).hexdigest()[:12]
)
_native_call = types.ExternalFunction(_NATIVE_SYMBOL, _C_SIGNATURE)
_native_entry_cfunc = []
# the full entry point (with the Pade fallback), called by the lean one
_FULL_SYMBOL = _NATIVE_SYMBOL.replace("_kernel_", "_kernel_full_")
_full_call = types.ExternalFunction(_FULL_SYMBOL, _C_SIGNATURE)
_full_entry_cfunc = []
_full_lock = threading.Lock()
# status of the lazy full entry point when it cannot be compiled (a bug)
_STATUS_FULL_FAILED = 10

_C_ARGTYPES = [
    ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
    ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
    ctypes.c_void_p,
]  # fmt: skip


def ensure_full_kernel():
    """Compile (or load from numba's cache) the full C kernel, with the Pade fallback.

    Called on the first evaluation that needs the fallback (from the lean
    kernel, through :func:`_full_trampoline`), and by :func:`warm_kernels`.
    Returns a ctypes function of the compiled kernel taking the C signature's
    pointers as ``void *`` (the trampoline receives them as integers).
    """
    with _full_lock:
        if not _full_entry_cfunc:
            entry = cfunc(_C_SIGNATURE, cache=True)(_make_native_entry(KERNEL_HASH, True))
            call = ctypes.CFUNCTYPE(ctypes.c_int64, *_C_ARGTYPES)(entry.address)
            _full_entry_cfunc.extend([call, entry])  # keep the compiled code alive
    return _full_entry_cfunc[0]


def _full_trampoline(*args):
    # ctypes takes the GIL for this callback, also on nutpie's sampler threads;
    # an exception cannot cross the C boundary, so it becomes a status
    try:
        return ensure_full_kernel()(*args)
    except BaseException as err:  # noqa: BLE001 - reported through the status
        print(f"markov-migration: fallback kernel failed: {err!r}", file=sys.stderr)
        return _STATUS_FULL_FAILED


# kept alive for the life of the process: LLVM holds its address
_FULL_TRAMPOLINE = ctypes.CFUNCTYPE(ctypes.c_int64, *_C_ARGTYPES)(_full_trampoline)


def ensure_native_kernel() -> None:
    """Compile (or load from numba's cache) the C kernel and register its symbols.

    Must run before any jitted code that calls the kernel is compiled or loaded
    from a cache (LLVM resolves the symbol at link time); every public entry
    point of this module and the PyTensor Op call it. Compiles the lean kernel
    only; the full one follows on first need (:func:`ensure_full_kernel`).
    """
    if not _native_entry_cfunc:
        addr = ctypes.cast(_FULL_TRAMPOLINE, ctypes.c_void_p).value
        llvm.add_symbol(_FULL_SYMBOL, addr)
        entry = cfunc(_C_SIGNATURE, cache=True)(_make_native_entry(KERNEL_HASH, None))
        llvm.add_symbol(_NATIVE_SYMBOL, entry.address)
        _native_entry_cfunc.append(entry)  # keep the compiled code alive


def warm_kernels() -> float:
    """Compile (or load) both C kernels and the Python callers' jitted wrappers.

    For installers (``scripts/bootstrap``): fills numba's on-disk cache so that
    the first fit does not compile the kernel. Returns the seconds it took.
    """
    import time

    start = time.perf_counter()
    ensure_native_kernel()
    ensure_full_kernel()
    Q = np.array([[[-0.2, 0.2], [0.1, -0.1]]])
    panel = (
        np.array([0], dtype=np.int64), np.array([1.0]), np.array([0, 1, 2], dtype=np.int64),
        np.array([0, 0], dtype=np.int64), np.array([0, 0], dtype=np.int64),
        np.array([0, 1], dtype=np.int64), np.array([30.0, 5.0]),
    )  # fmt: skip
    _loglik_and_grad_native(Q, *panel)
    _call_native(_TASK_LOGLIK, Q, *panel)
    _row_loglik_draws_native(Q[None], *panel[:-1])
    return time.perf_counter() - start


@njit(cache=True)
def _call_native(task, Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    """Run the C kernel on arrays (any layout); returns (out_value, out_grad)."""
    Qc = np.ascontiguousarray(Q)
    pq = np.ascontiguousarray(piece_q)
    pt = np.ascontiguousarray(piece_t)
    rp = np.ascontiguousarray(row_ptr)
    rpi = np.ascontiguousarray(row_piece)
    rf = np.ascontiguousarray(row_from)
    rt = np.ascontiguousarray(row_to)
    rc = np.ascontiguousarray(row_count)
    M, K = Qc.shape[0], Qc.shape[1]
    n_rows = rf.shape[0]
    # the C kernel takes these lengths on trust
    if pt.shape[0] != pq.shape[0]:
        _raise_layout_error(1)
    if rt.shape[0] != n_rows or rc.shape[0] != n_rows:
        _raise_layout_error(2)
    if rp.shape[0] != n_rows + 1:
        _raise_layout_error(3)
    out_value = np.zeros(n_rows if task == _TASK_ROW_LOGLIK else 1)
    out_grad = np.zeros((M, K, K))
    status = _native_call(
        task, Qc.ctypes, M, K, pq.ctypes, pt.ctypes, pq.shape[0], rp.ctypes, rpi.ctypes,
        rpi.shape[0], rf.ctypes, rt.ctypes, rc.ctypes, n_rows, out_value.ctypes, out_grad.ctypes,
    )  # fmt: skip
    # use the inputs after the call, so that their buffers outlive it
    if Qc.size + pq.size + pt.size + rp.size + rpi.size + rf.size + rt.size + rc.size < 0:
        status = -1
    if status != 0:
        _raise_layout_error(status)
    return out_value, out_grad


@njit(cache=True)
def _loglik_and_grad_native(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    value, grad = _call_native(
        _TASK_LOGLIK_GRAD, Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
    )
    return value[0], grad


def native_loglik_and_grad():
    """Return the jitted ``(Q, *panel) -> (loglik, dQ)`` function, for numba callers.

    Same arguments and results as :func:`loglik_and_grad` (arrays of the
    documented dtypes, any memory layout, read-only allowed); raises
    ValueError on an inconsistent layout. Registers the native kernel first.
    Used by the PyTensor Op's numba implementation.
    """
    ensure_native_kernel()
    return _loglik_and_grad_native


@njit(cache=True)
def _row_loglik_draws_native(Q_draws, piece_q, piece_t, row_ptr, row_piece, row_from, row_to):
    S = Q_draws.shape[0]
    out = np.empty((S, row_from.shape[0]))
    row_count = np.zeros(row_from.shape[0])
    for s in range(S):
        out[s] = _call_native(
            _TASK_ROW_LOGLIK, Q_draws[s], piece_q, piece_t, row_ptr, row_piece, row_from, row_to,
            row_count,
        )[0]  # fmt: skip
    return out

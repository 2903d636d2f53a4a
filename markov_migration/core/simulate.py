"""Exact microsimulation of continuous-time Markov paths (numpy/numba only).

Each subject follows a continuous-time Markov chain with a piecewise-constant
generator: ``intensities[m, p]`` is the generator of subject pattern ``m``
(a combination of categorical covariate levels and group) in calendar period
``p``, where the periods are separated by the cut points ``period_cuts``.
Numeric covariates multiply the intensities of each subject by
``exp(x_i . log_hazard_ratios)`` (per unit of the covariate).

The simulation is exact: from state ``r`` at time ``t`` the waiting time is
exponential with the total exit intensity and the destination is drawn in
proportion to the intensities (competing exponential risks). When the waiting
time would cross a period cut point the chain is moved to the cut point and
re-drawn there, which is exact because exponential waiting times are memoryless.
Absorbing states (no exit in this and all later periods) stop the path.

Random numbers come from a counter-based SplitMix64 stream per subject, keyed by
a :class:`numpy.random.SeedSequence`: subject ``i`` of a run with seed ``s``
gets the same path whatever the chunking or the number of threads, so a seed
reproduces a panel exactly.

Examples
--------
>>> import numpy as np
>>> from markov_migration.core.simulate import simulate_paths
>>> q = np.array([[-0.3, 0.2, 0.1], [0.5, -0.6, 0.1], [0.0, 0.0, 0.0]])
>>> obs = np.tile([0.0, 1.0, 2.0], (4, 1))
>>> paths = simulate_paths(q[None, None], np.zeros(4, int), np.zeros(4, int),
...                        np.zeros(4), obs, seed=1)
>>> paths.observed.shape
(4, 3)
>>> bool((paths.observed[:, 0] == 0).all())
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

#: Subjects per call of the compiled kernel (progress is reported per chunk).
CHUNK_SIZE = 65_536

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, inline="always")
def _mix64(z):
    """SplitMix64 finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _uniform(state):
    """Advance a SplitMix64 state; return (new state, uniform in (0, 1))."""
    state = state + _GAMMA
    z = _mix64(state)
    return state, (np.float64(z >> _S11) + 0.5) * _TWO_M53


@njit(cache=True)
def _walk(i, q, cuts, m, x, log_hr, r0, t0, t_end, obs, key0, key1, obs_out, write, offset, jt, js):
    """Simulate subject ``i``; fill its observed states; return its history length.

    With ``write`` the history (start, then every jump) goes to ``jt``/``js``
    from ``offset``. The stream of random numbers depends only on (key, i).
    """
    n_states = q.shape[2]
    n_periods = q.shape[1]
    n_cov = x.shape[0]
    n_obs = obs.shape[0]
    state = _mix64(key0 ^ _mix64(np.uint64(i) + key1))
    rates = np.empty(n_states)
    r = r0
    t = t0
    p = np.searchsorted(cuts, t, side="right")
    w = 0
    count = 1
    if write:
        jt[offset] = t0
        js[offset] = r0
    while True:
        total = 0.0
        for s in range(n_states):
            rate = 0.0
            if s != r:
                rate = q[m, p, r, s]
                if rate > 0.0 and n_cov > 0:
                    lin = 0.0
                    for c in range(n_cov):
                        lin += x[c] * log_hr[c, r, s]
                    rate *= np.exp(lin)
            rates[s] = rate
            total += rate
        next_cut = cuts[p] if p < n_periods - 1 else np.inf
        horizon = min(next_cut, t_end)
        t_jump = np.inf
        if total > 0.0:
            state, u = _uniform(state)
            t_jump = t - np.log(u) / total
        if t_jump >= horizon:
            if next_cut < t_end:
                # Memorylessness: restart the clock at the cut with the new generator.
                t = next_cut
                p += 1
                continue
            break
        state, u = _uniform(state)
        target = u * total
        acc = 0.0
        s_new = -1
        for s in range(n_states):
            if rates[s] > 0.0:
                acc += rates[s]
                s_new = s
                if target < acc:
                    break
        # Paths are right-continuous: an interview strictly before the jump sees r.
        while w < n_obs:
            tw = obs[w]
            if np.isnan(tw):
                obs_out[w] = -1
            elif tw < t_jump:
                obs_out[w] = r
            else:
                break
            w += 1
        r = s_new
        t = t_jump
        if write:
            jt[offset + count] = t
            js[offset + count] = r
        count += 1
    while w < n_obs:
        obs_out[w] = -1 if np.isnan(obs[w]) else r
        w += 1
    return count


@njit(cache=True, parallel=True)
def _count_kernel(
    q, cuts, pattern, x, log_hr, r0, t0, t_end, obs, key0, key1, first, obs_out, counts
):
    dummy_t = np.empty(0)
    dummy_s = np.empty(0, dtype=np.int16)
    for j in prange(pattern.shape[0]):
        counts[j] = _walk(
            first + j, q, cuts, pattern[j], x[j], log_hr, r0[j], t0[j], t_end[j], obs[j],
            key0, key1, obs_out[j], False, 0, dummy_t, dummy_s,
        )  # fmt: skip


@njit(cache=True, parallel=True)
def _history_kernel(
    q, cuts, pattern, x, log_hr, r0, t0, t_end, obs, key0, key1, first, ptr, jt, js
):
    obs_scratch = np.empty(obs.shape, dtype=np.int16)
    for j in prange(pattern.shape[0]):
        _walk(
            first + j, q, cuts, pattern[j], x[j], log_hr, r0[j], t0[j], t_end[j], obs[j],
            key0, key1, obs_scratch[j], True, ptr[j], jt, js,
        )  # fmt: skip


@njit(cache=True, parallel=True)
def _states_at_kernel(ptr, jt, js, times, out):
    for i in prange(ptr.shape[0] - 1):
        a = ptr[i]
        b = ptr[i + 1]
        for k in range(times.shape[1]):
            tk = times[i, k]
            if np.isnan(tk) or tk < jt[a]:
                out[i, k] = -1
                continue
            # Last history entry at or before tk (histories are short: linear scan).
            e = a
            while e + 1 < b and jt[e + 1] <= tk:
                e += 1
            out[i, k] = js[e]


@dataclass(frozen=True)
class SimulatedPaths:
    """Simulated paths: states at the observation times and the jump history.

    Attributes
    ----------
    observed : numpy.ndarray of int16, shape (n, W)
        State index at each requested observation time, -1 where the time was NaN.
    end_time : numpy.ndarray of float, shape (n,)
        Time at which each path was stopped (time units).
    history_ptr : numpy.ndarray of int64, shape (n + 1,) or None
        CSR row pointer: subject ``i``'s history is entries
        ``history_ptr[i]:history_ptr[i + 1]`` of ``history_time``/``history_state``.
    history_time : numpy.ndarray of float or None
        Start time, then the time of every jump (time units).
    history_state : numpy.ndarray of int16 or None
        Start state, then the state entered at every jump.
    """

    observed: np.ndarray
    end_time: np.ndarray
    history_ptr: np.ndarray | None = None
    history_time: np.ndarray | None = None
    history_state: np.ndarray | None = None

    @property
    def n_subjects(self) -> int:
        """Number of simulated subjects."""
        return int(self.observed.shape[0])

    def _need_history(self) -> None:
        if self.history_ptr is None:
            raise ValueError("paths were simulated with history=False")

    @property
    def n_jumps(self) -> np.ndarray:
        """Number of jumps of each subject, shape (n,)."""
        self._need_history()
        return np.diff(self.history_ptr) - 1

    def path(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the times (start, then jumps) and states of subject ``i``."""
        self._need_history()
        a, b = self.history_ptr[i], self.history_ptr[i + 1]
        return self.history_time[a:b], self.history_state[a:b]

    def states_at(self, times: np.ndarray) -> np.ndarray:
        """Look up the true state of each subject at given times.

        Parameters
        ----------
        times : array_like, shape (n,) or (n, T)
            Times (time units); NaN, or a time before the subject's start, gives -1.
            Times after a subject's ``end_time`` give its last simulated state,
            which is only the true state if the path was absorbed.

        Returns
        -------
        numpy.ndarray of int16, shape (n, T)
        """
        self._need_history()
        times = np.asarray(times, dtype=float)
        if times.ndim == 1:
            times = times[:, None]
        if times.shape[0] != self.n_subjects:
            raise ValueError(f"times has {times.shape[0]} rows for {self.n_subjects} subjects")
        out = np.empty(times.shape, dtype=np.int16)
        _states_at_kernel(self.history_ptr, self.history_time, self.history_state, times, out)
        return out


def path_key(seed: int | np.random.SeedSequence) -> tuple[np.uint64, np.uint64]:
    """Derive the 128-bit key of the per-subject random streams from a seed."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    k = ss.generate_state(2, dtype=np.uint64)
    return np.uint64(k[0]), np.uint64(k[1])


def simulate_paths(
    intensities: np.ndarray,
    pattern: np.ndarray,
    start_state: np.ndarray,
    start_time: np.ndarray,
    obs_times: np.ndarray,
    *,
    end_time: np.ndarray | None = None,
    period_cuts: np.ndarray | tuple = (),
    covariate_values: np.ndarray | None = None,
    log_hazard_ratios: np.ndarray | None = None,
    seed: int | np.random.SeedSequence = 0,
    history: bool = True,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> SimulatedPaths:
    """Simulate exact continuous-time Markov paths and observe them.

    Parameters
    ----------
    intensities : array_like, shape (M, P, K, K)
        Generators (per time unit) of M subject patterns in P calendar periods.
        Off-diagonal entries must be >= 0; the diagonal is ignored (each row's
        exit intensity is the sum of its off-diagonal entries).
    pattern : array_like of int, shape (n,)
        Pattern index (0..M-1) of each subject.
    start_state : array_like of int, shape (n,)
        State index of each subject at its start time.
    start_time : array_like of float, shape (n,)
        Start time of each path (time units).
    obs_times : array_like of float, shape (n, W)
        Observation times, NaN where a subject is not observed; the non-NaN
        times of a row must be non-decreasing and not before its start time.
    end_time : array_like of float, shape (n,), optional
        Time to simulate to (default: each row's last observation time, or its
        start time if it has none). Must not be before any observation.
    period_cuts : array_like, shape (P - 1,)
        Increasing calendar cut points between the periods.
    covariate_values : array_like, shape (n, C), optional
        Numeric covariate values of each subject.
    log_hazard_ratios : array_like, shape (C, K, K), optional
        Log hazard ratio per unit of each numeric covariate on each intensity.
    seed : int or numpy.random.SeedSequence
        Seed of the per-subject random streams.
    history : bool
        Also return every path's full jump history (a second pass).
    chunk_size : int
        Subjects per compiled call; results do not depend on it.
    progress : callable, optional
        Called with the number of subjects done after each chunk (and pass).

    Returns
    -------
    SimulatedPaths
    """
    q = np.ascontiguousarray(intensities, dtype=np.float64)
    if q.ndim != 4 or q.shape[2] != q.shape[3]:
        raise ValueError(f"intensities must have shape (M, P, K, K), got {q.shape}")
    n_pat, n_per, n_states, _ = q.shape
    off = ~np.eye(n_states, dtype=bool)
    if not np.all(np.isfinite(q[..., off])) or np.any(q[..., off] < 0):
        raise ValueError("off-diagonal intensities must be finite and >= 0")
    q = q.copy()
    q[..., ~off] = 0.0
    cuts = np.ascontiguousarray(period_cuts, dtype=np.float64).reshape(-1)
    if cuts.size != n_per - 1:
        raise ValueError(f"{n_per} periods need {n_per - 1} cut points, got {cuts.size}")
    if np.any(np.diff(cuts) <= 0):
        raise ValueError("period_cuts must be strictly increasing")

    pattern = np.ascontiguousarray(pattern, dtype=np.int64)
    n = pattern.shape[0]
    if pattern.ndim != 1 or (n and (pattern.min() < 0 or pattern.max() >= n_pat)):
        raise ValueError(f"pattern must be a vector of indices 0..{n_pat - 1}")
    r0 = np.ascontiguousarray(start_state, dtype=np.int64)
    if r0.shape != (n,) or (n and (r0.min() < 0 or r0.max() >= n_states)):
        raise ValueError(f"start_state must be a vector of {n} state indices 0..{n_states - 1}")
    t0 = np.ascontiguousarray(start_time, dtype=np.float64)
    obs = np.ascontiguousarray(obs_times, dtype=np.float64)
    if t0.shape != (n,) or not np.all(np.isfinite(t0)):
        raise ValueError(f"start_time must be a vector of {n} finite times")
    if obs.ndim != 2 or obs.shape[0] != n:
        raise ValueError(f"obs_times must have shape ({n}, W), got {obs.shape}")
    filled = np.where(np.isnan(obs), -np.inf, obs)
    if np.any(np.isinf(obs)):
        raise ValueError("obs_times must be finite or NaN")
    if obs.shape[1] > 1:
        before = np.maximum.accumulate(filled, axis=1)[:, :-1]
        if np.any(obs[:, 1:] < before):  # NaN compares False: skipped
            raise ValueError("observation times of a subject must be non-decreasing")
    if np.any(obs < t0[:, None]):
        raise ValueError("an observation time is before its subject's start time")
    last = np.max(filled, axis=1, initial=-np.inf) if obs.shape[1] else np.full(n, -np.inf)
    if end_time is None:
        t_end = np.maximum(last, t0)
    else:
        t_end = np.ascontiguousarray(end_time, dtype=np.float64)
        if t_end.shape != (n,) or np.any(t_end < t0) or np.any(last > t_end):
            raise ValueError("end_time must be >= start_time and >= every observation time")

    if covariate_values is None:
        x = np.zeros((n, 0))
        log_hr = np.zeros((0, n_states, n_states))
    else:
        x = np.ascontiguousarray(covariate_values, dtype=np.float64)
        log_hr = np.ascontiguousarray(log_hazard_ratios, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != n or log_hr.shape != (x.shape[1], n_states, n_states):
            raise ValueError("covariate_values (n, C) and log_hazard_ratios (C, K, K) disagree")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(log_hr))):
            raise ValueError("covariate values and log hazard ratios must be finite")

    key0, key1 = path_key(seed)
    observed = np.empty(obs.shape, dtype=np.int16)
    counts = np.empty(n, dtype=np.int64)
    for a in range(0, n, chunk_size):
        b = min(n, a + chunk_size)
        _count_kernel(
            q, cuts, pattern[a:b], x[a:b], log_hr, r0[a:b], t0[a:b], t_end[a:b], obs[a:b],
            key0, key1, a, observed[a:b], counts[a:b],
        )  # fmt: skip
        if progress is not None:
            progress(b - a)
    if not history:
        return SimulatedPaths(observed=observed, end_time=t_end)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    jt = np.empty(ptr[-1], dtype=np.float64)
    js = np.empty(ptr[-1], dtype=np.int16)
    for a in range(0, n, chunk_size):
        b = min(n, a + chunk_size)
        _history_kernel(
            q, cuts, pattern[a:b], x[a:b], log_hr, r0[a:b], t0[a:b], t_end[a:b], obs[a:b],
            key0, key1, a, ptr[a:b], jt, js,
        )  # fmt: skip
        if progress is not None:
            progress(b - a)
    return SimulatedPaths(observed, t_end, ptr, jt, js)

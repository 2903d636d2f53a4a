"""Backtest: refit without the last wave (or after a time), predict what was held out.

Layer 4 (results). The held-out data are, for every respondent seen both before and
after the cut, the pair (last kept observation -> first held-out observation). For
every posterior draw ``d`` of the refit, the destination of respondent ``i`` has the
distribution ``P_d(gap_i)[origin_i, :]`` (the arithmetic of the predictive checks,
:func:`markov_migration.results.ppc.gap_matrices`). From it:

- **transition counts** by origin -> destination: one destination simulated per
  respondent and draw, counted (so the predictive includes the respondents'
  randomness and the posterior uncertainty);
- **held-out prevalence** by state: the same simulated destinations as shares of the
  held-out respondents;
- **coverage**: whether the observed count or prevalence lies in the central 50%,
  80% and 95% predictive intervals;
- **scores**: the log predictive density ``log mean_d P_d[origin_i, dest_i]`` of each
  held-out observation, the ranked probability score of the (draw-averaged)
  destination distribution in the model's state order, and the Brier score;
- **PIT**: randomized probability integral transforms of every respondent's
  destination and of every count and prevalence (uniform when the predictive is
  calibrated, whatever the state order).

Latent-state fits (``[observation]``, ``[misclassification]``, ``[phases]``,
periods included, and panels flagging exact times with an ``obstype`` column)
predict the held-out *record* from the forward filter over the respondent's kept
records (:mod:`markov_migration.results.backtest_latent`); origins and
destinations are then record codes (states, then censored codes). A held-out
record that is an exact transition or entry time (obstype 2 or 3, or an entry
into an ``exact`` state) is scored in ``lpd`` by the likelihood's density of it
(per time unit); it is not in the counts, prevalences, RPS, Brier score or PIT,
which are of records at a time. ``[nonresponse]`` fits predict every held-out
scheduled interview with "missed" as an outcome
(:mod:`markov_migration.results.backtest_nonresponse`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec
from markov_migration.inputs.waves import wave_bins
from markov_migration.results.backtest_latent import latent_heldout
from markov_migration.results.backtest_nonresponse import nonresponse_heldout
from markov_migration.results.ppc import draw_states, gap_matrices, normalised
from markov_migration.results.ppc_keyed import has_keys, keyed_gap_matrices
from markov_migration.results.ppc_latent import is_latent

#: Probabilities of the central predictive intervals of ``coverage.csv``.
BACKTEST_INTERVALS: tuple[float, ...] = (0.5, 0.8, 0.95)
#: Posterior draws used for the predictions (thinned evenly).
BACKTEST_DRAWS: int = 1000
#: Columns of ``coverage.csv`` (a file contract).
COVERAGE_COLUMNS: tuple[str, ...] = ("quantity", "interval", "nominal", "covered")
#: Columns of ``scores.csv``.
SCORE_COLUMNS: tuple[str, ...] = ("score", "origin", "value", "n")


@dataclass
class HeldOut:
    """The held-out transitions: one per respondent seen before and after the cut.

    Attributes
    ----------
    cut : float
        Observations at or after ``cut`` (``--holdout-after``: after it) are held out.
    keep : ndarray of bool
        Which rows of the validated panel are kept for the refit.
    origin, destination : ndarray of int
        State at the last kept and at the first held-out observation.
    gap : ndarray of float
        Time between them (time units).
    n_later : int
        Held-out observations after each respondent's first one (not predicted).
    origin_id, origin_time : ndarray, optional
        Respondent and time of each last kept observation (a fit with
        covariates, groups or periods predicts from that row's covariates and
        group, through the periods from that time on).
    kind : ndarray of int, optional
        Observation type (``obstype``: 1, 2 or 3) of each first held-out
        observation; None: all 1.
    held : pandas.DataFrame, optional
        Every held-out observation (``id``, ``time``, ``state``, ``obstype``),
        for the scheduled interviews of a ``[nonresponse]`` fit.
    strict : bool
        Held out: times after ``cut`` (``--holdout-after``); else at or after it.
    """

    cut: float
    keep: np.ndarray
    origin: np.ndarray
    destination: np.ndarray
    gap: np.ndarray
    n_later: int = 0
    origin_id: np.ndarray | None = None
    origin_time: np.ndarray | None = None
    kind: np.ndarray | None = None
    held: pd.DataFrame | None = None
    strict: bool = False


def holdout_split(
    ids: np.ndarray,
    times: np.ndarray,
    states: np.ndarray,
    holdout_after: float | None = None,
    obstype: np.ndarray | None = None,
) -> HeldOut:
    """Split a panel (sorted by respondent and time) into kept rows and held-out pairs.

    Parameters
    ----------
    ids, times, states : ndarray, shape (n,)
        Respondent, time (time units) and state code of each observation, sorted by
        respondent then time.
    holdout_after : float, optional
        Hold out every observation after this time; default the last wave (from
        :func:`~markov_migration.inputs.waves.wave_bins`).
    obstype : ndarray of int, shape (n,), optional
        Observation type of each observation (1 without it).

    Raises
    ------
    InputError
        If the panel has one wave only, or nothing would be kept or held out.
    """
    ids, times, states = np.asarray(ids), np.asarray(times, dtype=float), np.asarray(states)
    if holdout_after is None:
        edges = wave_bins(times)
        if edges.size < 3:
            raise InputError(
                "the panel has a single wave: nothing to hold out (use --holdout-after)"
            )
        cut = float(edges[-2])
        held = times >= cut
    else:
        cut = float(holdout_after)
        held = times > cut
    keep = ~held
    # last kept observation of each respondent, followed by a held-out one of the same person
    same = ids[1:] == ids[:-1]
    start = np.flatnonzero(same & keep[:-1] & held[1:])
    if start.size == 0:
        raise InputError(
            f"no respondent is observed both before and after {cut:g}: nothing to predict"
        )
    n_kept_pairs = int(np.sum(same & keep[:-1] & keep[1:]))
    if n_kept_pairs == 0:
        raise InputError(f"no transitions before {cut:g}: nothing to refit")
    n_held = int(held.sum())
    kind = np.ones(ids.size, np.int64) if obstype is None else np.asarray(obstype, np.int64)
    frame = pd.DataFrame({"id": ids[held], "time": times[held], "state": states[held],
                          "obstype": kind[held]})  # fmt: skip
    return HeldOut(
        cut=cut,
        keep=keep,
        origin=states[start].astype(np.int64),
        destination=states[start + 1].astype(np.int64),
        gap=times[start + 1] - times[start],
        n_later=n_held - start.size,
        origin_id=ids[start],
        origin_time=times[start],
        kind=kind[start + 1],
        held=frame,
        strict=holdout_after is not None,
    )


@dataclass
class Backtest:
    """Predictions of the held-out data and how they fared.

    Attributes
    ----------
    coverage : pandas.DataFrame
        Columns :data:`COVERAGE_COLUMNS`.
    scores : pandas.DataFrame
        Columns :data:`SCORE_COLUMNS`.
    predictions : pandas.DataFrame
        Observed value, predictive mean, intervals and PIT of every count and prevalence.
    pit : ndarray
        Randomized PIT of every held-out respondent's destination.
    notes : list of str
    """

    coverage: pd.DataFrame
    scores: pd.DataFrame
    predictions: pd.DataFrame
    pit: np.ndarray
    notes: list[str]


def randomized_pit(rng: np.random.Generator, replicated: np.ndarray, observed: np.ndarray):
    """``Pr(Y < y) + U Pr(Y = y)`` over the replications (axis 0) of discrete quantities."""
    below = np.mean(replicated < observed, axis=0)
    equal = np.mean(replicated == observed, axis=0)
    return below + rng.random(np.shape(below)) * equal


def central_intervals(replicated: np.ndarray, probs=BACKTEST_INTERVALS) -> np.ndarray:
    """Lower and upper ends (2, len(probs), ...) of central intervals of replications (axis 0).

    Counts are discrete: the ends are taken at replicated values (``lower`` and
    ``higher`` quantiles), so an interval covers at least its probability.
    """
    p = np.asarray(probs)
    lo = np.quantile(replicated, (1 - p) / 2, axis=0, method="lower")
    hi = np.quantile(replicated, (1 + p) / 2, axis=0, method="higher")
    return np.stack([lo, hi])


def score_destinations(probs: np.ndarray, origin: np.ndarray, destination: np.ndarray):
    """Log predictive density, RPS and Brier score of each held-out destination.

    Parameters
    ----------
    probs : ndarray, shape (D, n, K)
        ``P_d(gap_i)[origin_i, :]`` of every draw and respondent.
    origin, destination : ndarray, shape (n,)

    Returns
    -------
    lpd, rps, brier : ndarray, shape (n,)
        ``log mean_d P_d[i, dest_i]`` (nats); ``sum_k (F_k - O_k)^2 / (K - 1)`` over
        cumulative distributions in the model's state order; ``sum_k (p_k - o_k)^2``.
    """
    n, k = probs.shape[1:]
    mean = probs.mean(axis=0)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), destination] = 1.0
    with np.errstate(divide="ignore"):
        lpd = np.log(mean[np.arange(n), destination])
    cum = np.cumsum(mean, axis=1) - np.cumsum(onehot, axis=1)
    rps = np.sum(cum[:, :-1] ** 2, axis=1) / max(k - 1, 1)
    brier = np.sum((mean - onehot) ** 2, axis=1)
    return lpd, rps, brier


def predict_heldout(
    probs: np.ndarray,
    origin: np.ndarray,
    destination: np.ndarray,
    states: list[str],
    *,
    seed: int = 0,
    intervals=BACKTEST_INTERVALS,
    timed_origin: np.ndarray | None = None,
    timed_lpd: np.ndarray | None = None,
) -> Backtest:
    """Coverage, scores and PITs of held-out destinations given their predictive distributions.

    Parameters
    ----------
    probs : ndarray, shape (D, n, K)
        Destination distribution of every respondent under every posterior draw.
    origin, destination : ndarray, shape (n,)
        Observed origin (last kept) and destination (held-out) states.
    states : list of str
    seed : int
        Seed of the simulated destinations and the PIT randomization.
    intervals : tuple of float
        Central interval probabilities.
    timed_origin, timed_lpd : ndarray (m,), optional
        Origin and log predictive density (log of the draw-averaged likelihood
        density, per time unit) of held-out exact transition or entry times:
        added to ``lpd`` and ``lpd_mean`` (and reported alone as
        ``lpd_exact_times``), not to the other scores.
    """
    rng = np.random.default_rng(seed)
    probs = normalised(np.asarray(probs, dtype=float))
    n_draw, n, k = probs.shape
    sim = draw_states(rng, probs)  # (D, n)
    # counts by origin -> destination, per draw: index origin * K + destination
    cell = origin[None, :] * k + sim
    rep_counts = np.stack([np.bincount(c, minlength=k * k) for c in cell]).astype(float)
    obs_counts = np.bincount(origin * k + destination, minlength=k * k).astype(float)
    rep_prev = rep_counts.reshape(n_draw, k, k).sum(axis=1) / n
    obs_prev = obs_counts.reshape(k, k).sum(axis=0) / n

    n_origin = np.bincount(origin, minlength=k)
    # cells worth predicting: an origin with respondents and an uncertain count (a count
    # the model predicts with certainty, e.g. stays in an absorbing state, is always
    # covered and says nothing about calibration) - unless the data contradict it
    certain = (rep_counts.min(axis=0) == rep_counts.max(axis=0)) & (rep_counts[0] == obs_counts)
    possible = (np.repeat(n_origin, k) > 0) & ~certain
    labels = [f"count:{states[c // k]}->{states[c % k]}" for c in np.flatnonzero(possible)]
    labels += [f"prevalence:{s}" for s in states]
    rep = np.concatenate([rep_counts[:, possible], rep_prev], axis=1)
    obs = np.concatenate([obs_counts[possible], obs_prev])
    ends = central_intervals(rep, intervals)
    inside = (ends[0] <= obs) & (obs <= ends[1])  # (len(intervals), Q)
    pit_q = randomized_pit(rng, rep, obs)

    rows = []
    n_count = int(possible.sum())
    for j, p in enumerate(intervals):
        name = f"{100 * p:g}%"
        rows += [(lab, name, p, float(inside[j, i])) for i, lab in enumerate(labels)]
        rows.append(("counts (all cells)", name, p, float(inside[j, :n_count].mean())))
        rows.append(("prevalence (all states)", name, p, float(inside[j, n_count:].mean())))
    coverage = pd.DataFrame(rows, columns=list(COVERAGE_COLUMNS))

    pred = {"quantity": labels, "observed": obs, "mean": rep.mean(axis=0), "pit": pit_q}
    for j, p in enumerate(intervals):
        pred[f"lower_{100 * p:g}"], pred[f"upper_{100 * p:g}"] = ends[0, j], ends[1, j]
    predictions = pd.DataFrame(pred)

    # respondents: randomized PIT of the destination in state order, from the mixture
    mean = probs.mean(axis=0)
    below = np.cumsum(mean, axis=1)[np.arange(n), destination] - mean[np.arange(n), destination]
    pit = below + rng.random(n) * mean[np.arange(n), destination]

    lpd, rps, brier = score_destinations(probs, origin, destination)
    lpd_all, lpd_origin = lpd, origin
    if timed_lpd is not None and len(timed_lpd):
        lpd_all, lpd_origin = np.r_[lpd, timed_lpd], np.r_[origin, timed_origin]
    srows = [("lpd", "all", float(lpd_all.sum()), lpd_all.size)]
    for name, v, o in (("lpd_mean", lpd_all, lpd_origin), ("rps_mean", rps, origin),
                       ("brier_mean", brier, origin)):  # fmt: skip
        srows.append((name, "all", float(v.mean()), v.size))
        n_o = np.bincount(o, minlength=k)
        for s in range(k):
            if n_o[s]:
                srows.append((name, states[s], float(v[o == s].mean()), int(n_o[s])))
    if lpd_all.size > n:
        srows.append(("lpd_exact_times", "all", float(np.sum(timed_lpd)), len(timed_lpd)))
    scores = pd.DataFrame(srows, columns=list(SCORE_COLUMNS))
    notes = []
    if not np.all(np.isfinite(lpd_all)):
        notes.append(
            f"{int(np.sum(~np.isfinite(lpd_all)))} held-out record(s) have predictive "
            "probability or density 0"
        )
    return Backtest(coverage, scores, predictions, pit, notes)


def backtest_fit(
    tree: xr.DataTree,
    heldout: HeldOut,
    *,
    n_draws: int = BACKTEST_DRAWS,
    seed: int = 0,
) -> Backtest:
    """Predict the held-out transitions from a fit of the kept data.

    Parameters
    ----------
    tree : xarray.DataTree
        Fit of the kept data. With covariates, groups or periods, each
        respondent's destination distribution uses the covariates and group of
        its last kept observation and the periods from its time on (the
        predictive of the checks,
        :func:`~markov_migration.results.ppc_keyed.keyed_gap_matrices`).
    heldout : HeldOut
    n_draws : int
        Posterior draws used (thinned evenly).
    seed : int
    """
    states = json.loads(tree.attrs["states"])
    origin, destination = heldout.origin, heldout.destination
    notes, timed = [], {}
    obs = fit_spec(tree).observation
    nonresponse = obs is not None and obs.nonresponse is not None
    if nonresponse:  # every held-out scheduled interview
        probs, origin, destination, states, notes = nonresponse_heldout(tree, heldout, n_draws)
    elif is_latent(tree):  # through the forward filter and the observation model
        probs, origin, destination, states, notes, timed = latent_heldout(
            tree, heldout, _origin_rows(tree, heldout, missing=True), n_draws
        )
    else:
        if has_keys(tree):
            # gaps rounded to the fit's resolution, as the likelihood and gap_matrices round them
            resolution = (
                float(tree["constant_data"]["resolution"]) if "constant_data" in tree else 1.0
            )
            gaps = np.round(np.asarray(heldout.gap, dtype=float) / resolution) * resolution
            p_gap, key = keyed_gap_matrices(
                tree, _origin_rows(tree, heldout), heldout.origin_time, gaps, n_draws
            )
        else:
            p_gap, key = gap_matrices(tree, heldout.gap, n_draws)
        d = np.arange(p_gap.shape[0])[:, None]
        probs = p_gap[d, key[None, :], origin[None, :]]  # (D, n, K)
    result = predict_heldout(probs, origin, destination, states, seed=seed, **timed)
    result.notes += notes
    if heldout.n_later and not nonresponse:
        result.notes.append(
            f"{heldout.n_later} held-out observation(s) after a respondent's first held-out "
            "one are not predicted"
        )
    return result


def _origin_rows(tree: xr.DataTree, heldout: HeldOut, missing: bool = False) -> np.ndarray:
    """Rows of the refit's embedded panel of the held-out pairs' last kept observations.

    With ``missing``, -1 for a respondent the refit does not hold (one kept record).
    """
    from markov_migration.fitfile.readback import recorded_panel

    if heldout.origin_id is None or heldout.origin_time is None:
        raise ValueError("a fit with covariates, groups or periods needs origin_id and origin_time")
    frame = recorded_panel(tree, fit_spec(tree)).data
    lookup = {
        (str(i), float(t)): r
        for r, (i, t) in enumerate(zip(frame["id"], frame["time"], strict=True))
    }
    keys = [(str(i), float(t)) for i, t in zip(heldout.origin_id, heldout.origin_time, strict=True)]
    if missing:
        return np.array([lookup.get(k, -1) for k in keys], dtype=np.int64)
    try:
        return np.array([lookup[k] for k in keys], dtype=np.int64)
    except KeyError as err:
        raise InputError(
            f"held-out respondent {err.args[0][0]} has no kept observation in the refit"
        ) from None


def refit_kept(
    panel_path, spec, settings, holdout_after: float | None = None, *, command=None, progress=False
):
    """Validate a panel file, split it and fit the model to the kept observations.

    Parameters
    ----------
    panel_path : str or Path
        Long-format panel file.
    spec : ModelSpec
    settings : FitSettings
        Sampler settings of the refit.
    holdout_after : float, optional
        See :func:`holdout_split`.
    command : str, optional
        Command line recorded in the refit's file.
    progress : bool
        Show the sampler's progress bar.

    Returns
    -------
    tree : xarray.DataTree
        The refit (its root attrs record the cut as ``backtest_cut``).
    heldout : HeldOut

    Raises
    ------
    InputError
        A counts table, a bad panel, or nothing to keep or hold out.
    """
    from markov_migration.inference.fit import sample
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.columns import file_sha256, is_counts_table, read_table
    from markov_migration.inputs.obstype import PANEL_OBSTYPE, with_panel_obstype
    from markov_migration.inputs.panel import validate_panel

    df = read_table(panel_path)
    if is_counts_table(df) and spec.data.id not in df.columns:
        raise InputError("a counts table has no respondents to hold out: backtest needs a panel",
                         path=panel_path)  # fmt: skip
    panel = validate_panel(df, spec, path=str(panel_path), sha256=file_sha256(panel_path))
    # exact times flagged in the data: the refit is the fit of the whole panel's model (the
    # forward algorithm), whether or not the kept rows flag any
    spec = with_panel_obstype(spec, panel)
    d = panel.data
    kind = d[PANEL_OBSTYPE].to_numpy() if PANEL_OBSTYPE in d else None
    heldout = holdout_split(
        d["id"].to_numpy(), d["time"].to_numpy(), d["state"].to_numpy(), holdout_after, kind
    )
    kept_rows = d["row"].to_numpy()[heldout.keep] - 1  # 0-based rows of the file
    kept_df = df.iloc[np.sort(kept_rows)].reset_index(drop=True)
    # the refit's data are a subset of the file: record the subset's own hash
    sha = hashlib.sha256(kept_df.to_csv(index=False).encode()).hexdigest()
    kept = validate_panel(kept_df, spec, path=f"{panel_path} (before {heldout.cut:g})", sha256=sha)
    tree = sample(
        spec, aggregate(kept, spec), settings, command=command, panel=kept, progress=progress
    )
    tree.attrs["backtest_cut"] = heldout.cut
    tree.attrs["backtest_holdout"] = "after" if holdout_after is not None else "last wave"
    return tree, heldout

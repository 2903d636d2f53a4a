"""Simulation-based calibration (SBC) of the fitting layer (Talts et al. 2018; Modrák et al. 2023).

For each simulation ``i``:

1. draw a "true" parameter vector from the model file's prior, with our own draw from the
   spec (:func:`prior_draw`: each state's total exit rate ``lambda_r`` (lognormal) times
   its Dirichlet split, or a transition's own lognormal, exactly the priors
   :mod:`markov_migration.inference.rate_prior` puts on ``log_rate``);
2. simulate a panel on the *design* panel (:func:`simulate_on_design`): the same
   respondents, the same observation times (so its attrition and late entry), each
   respondent starting in its observed first state, later states new, drawn by the core
   path simulator (:func:`markov_migration.core.simulate.simulate_paths`);
3. fit it with nutpie (``chains`` chains of ``draws`` kept draws after ``tune`` warm-up
   draws) and thin the pooled draws to ``draws`` (every ``chains``-th);
4. the rank of each true quantity among the thinned draws (number of draws below it,
   ties broken at random): a number in ``0..draws``.

If the fitting layer computes the posterior correctly, every rank is uniform on
``0..draws``. The quantities ranked are the baseline intensities ``rate[a->b]``
(reference levels of categorical covariates), the one-time-unit transition
probabilities ``P1[a->b]`` (rows of non-absorbing states) and the mean sojourn times
``sojourn[a]`` (``1 / total exit rate``) of non-absorbing states, both of the baseline
generator, and the hazard ratios ``hazard_ratio[<hr_parameter>]`` of categorical
covariates (one per free parameter: a shared effect is ranked once). Their prior is the
fitting layer's: ``log hazard ratio ~ Normal(0, prior_sd)`` per unit.

Uniformity test (:func:`uniformity`): a chi-square test of the rank counts in ``bins``
equal-width bins of the rank values ``0..draws`` (expected counts proportional to the
number of rank values per bin), one per parameter, with a Bonferroni correction: a
parameter fails when its p-value is below ``alpha / number of parameters``.

Scope: continuous-time models, with categorical covariates constant within each
respondent (its first row's level is used). Numeric covariates (their centring depends
on the simulated data), groups and periods are refused for now.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg, stats

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.inputs.priors import draw_log_rates
from markov_migration.inputs.spec import ModelSpec, parse_spec

#: Columns of ``ranks.csv`` (a file contract).
RANK_COLUMNS = ["sim", "parameter", "rank", "draws"]
#: Columns of ``uniformity.csv``.
UNIFORMITY_COLUMNS = ["parameter", "sims", "draws", "bins", "chi2", "df", "p_value", "passed"]
#: Family-wise level of the uniformity tests (Bonferroni over the parameters).
ALPHA = 0.05


@dataclass(frozen=True)
class SbcSettings:
    """Settings of one SBC run.

    Attributes
    ----------
    sims : int
        Number of simulations (prior draw, panel, fit).
    draws : int
        Posterior draws kept per simulation after thinning; ranks are in ``0..draws``.
    seed : int
        Seed of the whole run: simulation ``i`` uses the ``i``-th child of
        ``SeedSequence(seed)``, whatever the order or place the simulations run in.
    chains, tune : int
        nutpie chains and warm-up draws per chain; each chain keeps ``draws`` draws.
    cores : int
        Threads per fit.
    """

    sims: int
    draws: int
    seed: int = 0
    chains: int = 4
    tune: int = 300
    cores: int = 2

    def check(self) -> None:
        """Raise InputError on invalid settings."""
        for name, low in (("sims", 1), ("draws", 1), ("chains", 1), ("tune", 0), ("cores", 1)):
            if getattr(self, name) < low:
                raise InputError(f"--{name} must be at least {low}, got {getattr(self, name)}")


def check_sbc_spec(spec: ModelSpec) -> None:
    """Refuse models the SBC cannot simulate (see the module docstring's scope)."""
    if spec.time != "continuous":
        raise InputError("sbc supports continuous-time models only")
    if spec.groups is not None or spec.periods:
        raise InputError("sbc does not support models with groups or periods yet")
    numeric = [c.name for c in spec.covariates if c.kind != "categorical"]
    if numeric:
        raise InputError(
            f"sbc does not support numeric covariates yet ({', '.join(numeric)}); "
            "use categorical covariates"
        )


@dataclass(frozen=True)
class SbcDesign:
    """The design panel as the simulations use it.

    Attributes
    ----------
    frame : pandas.DataFrame
        ``id``, ``time``, ``state`` (state index), sorted by respondent and time, plus the
        covariate columns (model file's column names) of the design panel.
    x : ndarray (n_respondents, n_effects)
        Indicator of each covariate effect's level for each respondent (sorted ids).
    effect_parameter : ndarray of int (n_effects,)
        Free parameter of each effect.
    effect_transition : ndarray (n_effects, T)
        One-hot transition of each effect.
    parameter_labels : tuple of str
        The hazard-ratio parameters (the fit's ``hr_parameter`` coordinate).
    parameter_sd : ndarray (n_parameters,)
        Prior sd of each log hazard ratio (per unit).
    """

    frame: pd.DataFrame
    x: np.ndarray
    effect_parameter: np.ndarray
    effect_transition: np.ndarray
    parameter_labels: tuple[str, ...]
    parameter_sd: np.ndarray


def sbc_design(spec: ModelSpec, panel) -> SbcDesign:
    """The :class:`SbcDesign` of a validated design panel (a ``Panel``, or its data)."""
    check_sbc_spec(spec)
    data = getattr(panel, "data", panel)
    frame = design_frame(data, [c.column for c in spec.covariates])
    n_t = len(spec.transitions)
    if not spec.covariates:
        n_resp = frame["id"].nunique()
        empty = np.zeros((0,))
        return SbcDesign(frame, np.zeros((n_resp, 0)), empty.astype(np.int64),
                         np.zeros((0, n_t)), (), empty)  # fmt: skip
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.design import model_design

    firsts = frame.groupby("id", sort=True).nth(0).set_index("id")
    for c in spec.covariates:
        if (frame.groupby("id", sort=True)[c.column].nunique() > 1).any():
            raise InputError(
                f"sbc needs covariates constant within a respondent; '{c.column}' changes"
            )
    design = model_design(spec, aggregate(panel, spec))
    by_column = {c.name: c.column for c in spec.covariates}
    x = np.array(
        [[float(str(row[by_column[e.covariate]]) == str(e.level)) for e in design.effects]
         for _, row in firsts.iterrows()]
    )  # fmt: skip
    return SbcDesign(
        frame, x, design.effect_parameter, np.asarray(design.effect_transition, dtype=float),
        tuple(design.parameter_labels), np.asarray(design.parameter_sd, dtype=float),
    )  # fmt: skip


def prior_draw(spec: ModelSpec, rng: np.random.Generator) -> np.ndarray:
    """One draw of the log intensities from the model file's priors.

    Exactly the fitting layer's prior (:func:`markov_migration.inputs.priors.draw_log_rates`):
    a state's total exit rate and its Dirichlet split, or a transition's own lognormal.

    Returns
    -------
    ndarray (T,)
        ``log_rate`` of ``spec.transitions`` (log of moves per time unit).
    """
    return draw_log_rates(spec, rng)


def prior_log_hr(design: SbcDesign, rng: np.random.Generator) -> np.ndarray:
    """One draw of the log hazard ratios (per unit) of the design's parameters.

    ``Normal(0, prior_sd)``: the fitting layer samples ``log_hr_scaled ~ Normal(0,
    prior_sd * scale)`` and divides by ``scale``.
    """
    return design.parameter_sd * rng.standard_normal(len(design.parameter_sd))


def generator(spec: ModelSpec, rates: np.ndarray) -> np.ndarray:
    """Generator matrices (..., K, K) from rates (..., T) of ``spec.transitions``."""
    rates = np.asarray(rates, dtype=float)
    k = spec.n_states
    q = np.zeros((*rates.shape[:-1], k, k))
    for i, (r, s) in enumerate(spec.transitions):
        q[..., r, s] = rates[..., i]
    idx = np.arange(k)
    q[..., idx, idx] = -q.sum(axis=-1)
    return q


def design_frame(design: pd.DataFrame, extra: list[str] | None = None) -> pd.DataFrame:
    """The design panel's respondents, times and states, sorted by respondent and time.

    ``design`` is a validated panel's data (:attr:`markov_migration.inputs.panel.Panel.data`:
    columns ``id``, ``time`` and ``state`` as state indexes); ``extra`` columns are kept.
    """
    cols = ["id", "time", "state", *(extra or [])]
    for col in cols:
        if col not in design.columns:
            raise InputError(f"design panel has no '{col}' column")
    d = design[list(dict.fromkeys(cols))].sort_values(["id", "time"], kind="stable")
    return d.reset_index(drop=True)


def simulate_on_design(
    spec: ModelSpec,
    design: SbcDesign | pd.DataFrame,
    log_rate: np.ndarray,
    seed: int | np.random.SeedSequence,
    log_hr: np.ndarray | None = None,
) -> pd.DataFrame:
    """A new panel on the design: the same rows (ids, times, covariates), new later states.

    Each respondent starts at its first observation in its observed state; its later
    states are those of an exact path of the Markov chain with baseline rates
    ``exp(log_rate)`` times its hazard ratios ``exp(log_hr)`` (per parameter), observed
    at its own times.

    Returns
    -------
    pandas.DataFrame
        A raw panel (the model file's id, time and state column names, state names, the
        covariate columns), rows in the order of :func:`design_frame`.
    """
    from markov_migration.core.simulate import simulate_paths

    if not isinstance(design, SbcDesign):
        design = sbc_design(spec, design)
    d = design.frame
    ids, first = np.unique(d["id"].to_numpy(), return_index=True)
    pos = d.groupby("id", sort=True).cumcount().to_numpy()
    resp = np.searchsorted(ids, d["id"].to_numpy())
    times = np.full((len(ids), int(pos.max()) + 1), np.nan)
    times[resp, pos] = d["time"].to_numpy(dtype=float)
    start = d["state"].to_numpy(dtype=np.int64)[first]
    log_q = np.broadcast_to(np.asarray(log_rate, dtype=float), (len(ids), len(log_rate)))
    if design.x.shape[1]:
        if log_hr is None:
            raise ValueError("the design has covariate effects: log_hr is required")
        log_q = log_q + (design.x * log_hr[design.effect_parameter]) @ design.effect_transition
    q = generator(spec, np.exp(log_q))[:, None]
    paths = simulate_paths(
        q, np.arange(len(ids)), start, times[:, 0], times, seed=seed, history=False
    )
    observed = np.asarray(paths.observed)[resp, pos]
    cols = spec.data
    out = pd.DataFrame(
        {
            cols.id: d["id"].to_numpy(),
            cols.time: d["time"].to_numpy(),
            cols.state: np.asarray(spec.states, dtype=object)[observed],
        }
    )
    for c in d.columns[3:]:
        out[c] = d[c].to_numpy()
    return out


def derived(spec: ModelSpec, rates: np.ndarray) -> dict[str, np.ndarray]:
    """The ranked quantities of rates (S, T): name -> values (S,).

    ``rate[a->b]``, ``P1[a->b]`` (expm of the generator over one time unit, rows of
    non-absorbing states) and ``sojourn[a]`` (mean stay, time units, non-absorbing states).
    """
    rates = np.atleast_2d(rates)
    q = generator(spec, rates)
    p1 = np.stack([linalg.expm(m) for m in q])
    out = {f"rate[{lab}]": rates[:, i] for i, lab in enumerate(spec.transition_labels)}
    exits = -q[:, np.arange(spec.n_states), np.arange(spec.n_states)]
    transient = [r for r in range(spec.n_states) if any(a == r for a, _ in spec.transitions)]
    for r in transient:
        for s in range(spec.n_states):
            out[f"P1[{spec.states[r]}->{spec.states[s]}]"] = p1[:, r, s]
    for r in transient:
        out[f"sojourn[{spec.states[r]}]"] = 1.0 / exits[:, r]
    return out


def rank_of(true: float, draws: np.ndarray, rng: np.random.Generator) -> int:
    """Number of draws below ``true``, ties (equal draws) broken uniformly at random."""
    draws = np.asarray(draws, dtype=float)
    below = int(np.sum(draws < true))
    ties = int(np.sum(draws == true))
    return below + (int(rng.integers(0, ties + 1)) if ties else 0)


def thin(values: np.ndarray, keep: int) -> np.ndarray:
    """``keep`` evenly spaced entries of the pooled (chain-major) draws (S, ...)."""
    idx = np.floor(np.arange(keep) * (len(values) / keep)).astype(np.int64)
    return values[idx]


def one_simulation(
    model_text: str, design: SbcDesign, sim: int, settings: SbcSettings
) -> pd.DataFrame:
    """Run simulation ``sim``: prior draw, panel, fit, ranks (rows of ``ranks.csv``).

    Module-level and given the model text, so it runs on Dask workers as it is.
    """
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import aggregate
    from markov_migration.inputs.panel import validate_panel

    t0 = time.perf_counter()
    spec = parse_spec(model_text)
    child = np.random.SeedSequence(settings.seed).spawn(sim + 1)[sim]
    prior_seq, path_seq, fit_seq, rank_seq = child.spawn(4)
    prior_rng = np.random.default_rng(prior_seq)
    log_rate = prior_draw(spec, prior_rng)
    log_hr = prior_log_hr(design, prior_rng)
    panel = simulate_on_design(spec, design, log_rate, path_seq, log_hr)
    validated = validate_panel(panel, spec, path=f"<sbc simulation {sim}>", sha256="")
    agg = aggregate(validated, spec)
    fs = FitSettings(
        chains=settings.chains, draws=settings.draws, tune=settings.tune,
        seed=int(fit_seq.generate_state(1)[0] % 2**31), cores=settings.cores,
    )  # fmt: skip
    tree = sample(spec, agg, fs)
    post = tree["posterior"]["rate"].transpose(*SAMPLE_DIMS, "transition").to_numpy()
    draws = thin(post.reshape(-1, post.shape[-1]), settings.draws)
    truth = derived(spec, np.exp(log_rate))
    fitted = derived(spec, draws)
    if design.parameter_labels:
        scaled = tree["posterior"]["log_hr_scaled"].transpose(*SAMPLE_DIMS, "hr_parameter")
        # categorical effects have scale 1: log_hr_scaled is the log hazard ratio itself
        labels = [str(v) for v in scaled["hr_parameter"].values]
        hr = thin(np.exp(scaled.to_numpy().reshape(-1, len(labels))), settings.draws)
        for i, lab in enumerate(design.parameter_labels):
            truth[f"hazard_ratio[{lab}]"] = np.exp(log_hr[i : i + 1])
            fitted[f"hazard_ratio[{lab}]"] = hr[:, labels.index(lab)]
    rng = np.random.default_rng(rank_seq)
    rows = [
        {"sim": sim, "parameter": name, "rank": rank_of(float(truth[name][0]), fitted[name], rng),
         "draws": settings.draws}
        for name in truth
    ]  # fmt: skip
    out = pd.DataFrame(rows, columns=RANK_COLUMNS)
    out.attrs["seconds"] = time.perf_counter() - t0  # wall time of the whole simulation
    return out


def run_sbc(
    spec: ModelSpec,
    design,
    settings: SbcSettings,
    *,
    dask: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, list[float]]:
    """Run every simulation; return ``ranks.csv``'s table and the seconds per fit.

    Parameters
    ----------
    spec : ModelSpec
    design : Panel or pandas.DataFrame
        The validated design panel (or its data).
    settings : SbcSettings
    dask : str, optional
        ``"local"`` (a :class:`dask.distributed.LocalCluster`) or a scheduler address;
        default: sequential in this process.
    progress : callable, optional
        Called with the number of simulations done.
    """
    settings.check()
    text = spec.text
    design = sbc_design(spec, design)
    sims = range(settings.sims)
    results: list[pd.DataFrame] = []
    if dask is None:
        for i in sims:
            results.append(one_simulation(text, design, i, settings))
            if progress is not None:
                progress(len(results))
    else:
        results = _run_dask(text, design, settings, dask, progress)
    seconds = [float(r.attrs.get("seconds", np.nan)) for r in results]
    ranks = pd.concat(results, ignore_index=True).sort_values(["sim"], kind="stable")
    return ranks.reset_index(drop=True)[RANK_COLUMNS], seconds


def _run_dask(text, design, settings, address, progress) -> list[pd.DataFrame]:
    """The simulations as Dask tasks on a local cluster or the scheduler at ``address``."""
    from dask.distributed import Client, as_completed

    with _cluster(address) as target, Client(target) as client:
        design_f = client.scatter(design, broadcast=True)
        futures = [
            client.submit(one_simulation, text, design_f, i, settings, pure=False)
            for i in range(settings.sims)
        ]
        done = []
        for fut in as_completed(futures):
            done.append(fut.result())
            if progress is not None:
                progress(len(done))
    return sorted(done, key=lambda r: int(r["sim"].iloc[0]))


@contextlib.contextmanager
def _cluster(address: str) -> Iterator:
    """The cluster to connect to: the scheduler address, or for ``"local"`` a LocalCluster.

    The local cluster has one single-threaded worker process per core (at most 4).
    """
    if address != "local":
        yield address
        return
    import os

    from dask.distributed import LocalCluster

    n = max(1, min(os.cpu_count() or 1, 4))
    with LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster


def uniformity(ranks: pd.DataFrame, bins: int | None = None, alpha: float = ALPHA) -> pd.DataFrame:
    """Chi-square test of uniform ranks per parameter (see the module docstring).

    Parameters
    ----------
    ranks : pandas.DataFrame
        Columns :data:`RANK_COLUMNS`; ``draws`` the same for every row.
    bins : int, optional
        Number of bins of the rank values ``0..draws``; default
        ``min(20, draws + 1, max(2, sims // 5))`` (expected counts of about 5 or more).
    alpha : float
        Family-wise level: each parameter is tested at ``alpha / n_parameters``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`UNIFORMITY_COLUMNS`.
    """
    draws = ranks["draws"].unique()
    if len(draws) != 1:
        raise InputError("ranks have different numbers of draws")
    d = int(draws[0])
    params = list(dict.fromkeys(ranks["parameter"]))
    rows = []
    for name in params:
        r = ranks.loc[ranks["parameter"] == name, "rank"].to_numpy(dtype=np.int64)
        n = len(r)
        b = bins or min(20, d + 1, max(2, n // 5))
        edges = [a[0] for a in np.array_split(np.arange(d + 1), b)] + [d + 1]
        observed = np.histogram(r, bins=edges)[0]
        expected = n * np.diff(edges) / (d + 1)
        chi2 = float(np.sum((observed - expected) ** 2 / expected))
        p = float(stats.chi2.sf(chi2, b - 1))
        rows.append([name, n, d, b, chi2, b - 1, p, p >= alpha / len(params)])
    return pd.DataFrame(rows, columns=UNIFORMITY_COLUMNS)

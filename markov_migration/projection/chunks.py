"""Running a projection in chunks of draws: in memory or on Dask (``dask=...``).

Each chunk is independent given its draws' generators, initial stocks and seeds, so a
chunk's result does not depend on where it runs; Dask is imported only for Dask runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from markov_migration.core.discrete_events import project_discrete
from markov_migration.core.events import project_events
from markov_migration.core.ever_home import EverHomeSpace
from markov_migration.core.projection import generator_with_multipliers, with_exit_state
from markov_migration.errors import InputError


def project_chunk(
    q: np.ndarray,
    x0: np.ndarray,
    seeds: np.ndarray,
    *,
    steps: list[list[tuple[float, int]]],
    multipliers: np.ndarray,
    periods: np.ndarray,
    inflow: np.ndarray,
    inflow_cv: float,
    inflow_state: int,
    home: np.ndarray,
    by_start: bool = True,
    exit_rates: np.ndarray | None = None,
    discrete: bool = False,
    groups: np.ndarray | None = None,
    parallel: bool = False,
) -> tuple[np.ndarray, ...]:
    """Project a block of draws: stocks and transition events, exactly, with "ever returned".

    The unit of work of both the in-memory and the Dask path (a module-level
    function, so Dask can ship it to workers). The generator of piece index
    ``g`` is draw ``d``'s period ``periods[g]`` times the hazard multipliers
    ``multipliers[g]``. The events kernel
    (:func:`~markov_migration.core.events.project_events`) runs on the
    augmented "ever home" space (:class:`~markov_migration.core.ever_home.EverHomeSpace`),
    whose stocks and events collapse exactly to the model's states.

    A discrete-time fit (``discrete``) gives one-step transition matrices
    instead of generators, and the multinomial kernel
    (:func:`~markov_migration.core.discrete_events.project_discrete`) runs
    on the same schedule (pieces of whole model steps, multipliers all 1).

    Parameters
    ----------
    q : ndarray, shape (D, P, K, K)
        Generators (or, ``discrete``, one-step transition matrices) per draw
        and period.
    x0 : ndarray of int, shape (D, K)
    seeds : ndarray of uint32, shape (D,)
    by_start : bool
        Label persons by where they were at the start (4K augmented states).
        Needed only when someone is home at the start or arrives during the
        run; otherwise everyone was abroad at the start, persons back home are
        the returnees, and the 2K-state chain (about 1.6 times faster) is run.
    exit_rates : ndarray, shape (M, K), optional
        Rates of leaving the population (deaths, moves out of scope) from each
        state, per time unit, in force in each piece index: an absorbing exit
        state outside home and diaspora is added to the chain (not changed by
        scenarios or periods). In discrete time a person leaves in a model
        step with probability ``1 - exp(-rate)``, before moving by ``P``.
    groups : ndarray of int, shape (K,), optional
        Observed state of each state of ``q`` when they are latent phases
        (:mod:`markov_migration.projection.phases`): moving on to a later phase
        of a home state is no entry into it (``ever`` and ``back`` count entries).

    Returns
    -------
    stock : ndarray of int64, shape (D, S + 1, K)
    events : ndarray of int64, shape (D, S, K, K)
    arrivals : ndarray of int64, shape (D, S)
    ever : ndarray of int64, shape (D, S + 1)
        Persons who entered a home state at least once since the start.
    back : ndarray of int64, shape (D, S + 1)
        Persons in a home state who were in a non-home state at the start.
    exited : ndarray of int64, shape (D, S + 1)
        Persons who left the population since the start (0 without exits).
    """
    q = np.asarray(q, dtype=np.float64)
    if discrete:
        gens = q[:, np.asarray(periods, dtype=np.int64)]  # multipliers are all 1 (checked)
    else:
        gens = np.stack(
            [
                generator_with_multipliers(q[:, int(p)], m)
                for p, m in zip(periods, multipliers, strict=True)
            ],
            axis=1,
        )
    k = q.shape[-1]
    exits = exit_rates is not None and np.any(np.asarray(exit_rates) > 0)
    if exits:  # one more, absorbing state: rows k -> exit at the exit rates
        rates = np.asarray(exit_rates, dtype=np.float64)[None]  # (1, M, K)
        if discrete:  # leave with probability 1 - exp(-rate), else move by P
            wide = np.zeros(gens.shape[:-2] + (k + 1, k + 1))
            stay = np.exp(-rates)
            wide[..., :k, :k] = gens * stay[..., None]
            wide[..., :k, k] = 1.0 - stay
            wide[..., k, k] = 1.0
            gens = wide
        else:
            gens = with_exit_state(gens, rates)
        x0 = np.concatenate([np.asarray(x0), np.zeros((len(x0), 1), dtype=np.int64)], axis=1)
    kk = gens.shape[-1]
    per_state = np.zeros((len(steps), kk))
    per_state[:, inflow_state] = inflow
    kernel = project_discrete if discrete else project_events
    if not np.any(home):  # a model without home states: nobody can return
        out = kernel(
            np.asarray(x0, dtype=np.int64), gens, steps, seeds=seeds, inflow=per_state,
            inflow_cv=inflow_cv, parallel=parallel,
        )  # fmt: skip
        none = np.zeros(out.stock.shape[:-1], dtype=np.int64)
        exited = out.stock[..., k] if exits else none
        return (
            np.ascontiguousarray(out.stock[..., :k]),
            np.ascontiguousarray(out.events[..., :k, :k]),
            out.arrivals.sum(axis=-1),
            none,
            none.copy(),
            exited,
        )
    if groups is not None:  # the exit state (if any) is its own group
        groups = np.concatenate([groups, np.arange(kk - len(groups)) + np.max(groups) + 1])
    space = EverHomeSpace(
        k=kk, home=np.flatnonzero(home).tolist(), by_start=by_start, groups=groups
    )
    # the flag and label only relabel states: a transition matrix's diagonal (staying) is
    # 1 minus its off-diagonal row sum, i.e. the generator's plus the identity
    aug = space.generator(gens) + np.eye(space.size) if discrete else space.generator(gens)
    out = kernel(
        space.initial(np.asarray(x0, dtype=np.int64)),
        aug,
        steps,
        seeds=seeds,
        inflow=space.arrivals(per_state),
        inflow_cv=inflow_cv,
        parallel=parallel,
    )
    stock = space.stock(out.stock)
    back = space.home_from_abroad(out.stock) if by_start else stock[..., :k][..., home].sum(axis=-1)
    exited = stock[..., k] if exits else np.zeros(stock.shape[:-1], dtype=np.int64)
    return (
        np.ascontiguousarray(stock[..., :k]),
        np.ascontiguousarray(space.events(out.events)[..., :k, :k]),
        out.arrivals.sum(axis=-1),
        space.ever_home(out.stock),
        back,
        exited,
    )


#: Outputs of :func:`project_chunk` in order: (name, core dims after ``draw``).
CHUNK_OUTPUTS = (
    ("stock", ["time", "state"]),
    ("events", ["step", "from_state", "to_state"]),
    ("arrivals", ["step"]),
    ("ever", ["time"]),
    ("back", ["time"]),
    ("exited", ["time"]),
)


def run_memory(q, x0, seeds, plans, chunk_draws, progress):
    """Run every scenario plan over the draws in chunks of ``chunk_draws``, in this process."""
    n = q.shape[0]
    total = n * len(plans)
    done = 0
    results = []
    for plan in plans:
        parts = []
        for lo in range(0, n, chunk_draws):
            hi = min(n, lo + chunk_draws)
            parts.append(project_chunk(q[lo:hi], x0[lo:hi], seeds[lo:hi], parallel=True, **plan))
            done += hi - lo
            if progress is not None:
                progress(done, total)
        results.append(tuple(np.concatenate(values) for values in zip(*parts, strict=True)))
    return results


def _dask_client(target: Any):
    """A distributed Client, and the cluster started for it (or None).

    ``target`` is "local" (a local cluster), a scheduler address or a Client.
    """
    try:
        import dask.array  # noqa: F401
        import distributed
    except ImportError:
        raise InputError(
            "--dask needs dask and distributed: pip install 'markov-migration[dask]'"
        ) from None
    if isinstance(target, distributed.Client):
        return target, None
    if target is True or target == "local":
        # any free port for the dashboard: another cluster on the machine may hold 8787
        cluster = distributed.LocalCluster(processes=False, dashboard_address=":0")
        return distributed.Client(cluster), cluster
    if isinstance(target, str):
        try:
            return distributed.Client(target, timeout="10s"), None
        except (OSError, TimeoutError, ValueError) as err:
            raise InputError(
                f"--dask: cannot connect to scheduler '{target}' ({type(err).__name__})"
            ) from None
    raise InputError(f"--dask must be 'local', a scheduler address or a Client, got {target!r}")


def run_dask(q, x0, seeds, plans, chunk_draws, dask, progress):
    """Run the chunks on Dask (``dask``: ``"local"`` or a scheduler address); same result."""
    client, cluster = _dask_client(dask)
    try:
        n = q.shape[0]
        chunks = {"draw": chunk_draws}
        qa = xr.DataArray(q, dims=("draw", "period", "from_state", "to_state")).chunk(chunks)
        xa = xr.DataArray(x0, dims=("draw", "state")).chunk(chunks)
        sa = xr.DataArray(seeds, dims=("draw",)).chunk(chunks)
        lazy = []
        for plan in plans:
            n_steps = len(plan["steps"])
            outs = xr.apply_ufunc(
                project_chunk, qa, xa, sa,
                input_core_dims=[["period", "from_state", "to_state"], ["state"], []],
                output_core_dims=[dims for _, dims in CHUNK_OUTPUTS],
                dask="parallelized",
                output_dtypes=[np.int64] * len(CHUNK_OUTPUTS),
                dask_gufunc_kwargs={
                    "output_sizes": {"step": n_steps, "time": n_steps + 1}
                },
                kwargs={**plan, "parallel": False},
            )  # fmt: skip
            lazy += list(outs)
        futures = client.compute(lazy)
        if progress is not None:
            from distributed import as_completed

            for done, _ in enumerate(as_completed(futures), start=1):
                progress(round(done / len(futures) * n * len(plans)), n * len(plans))
        values = client.gather(futures)
        m = len(CHUNK_OUTPUTS)
        return [tuple(values[m * i + j].values for j in range(m)) for i in range(len(plans))]
    finally:
        if cluster is not None:
            client.close()
            cluster.close()

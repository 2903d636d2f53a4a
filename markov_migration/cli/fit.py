"""``fit``: fit a model to a panel and write a fit file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from markov_migration.cli._common import (
    MAX_CHAINS,
    MAX_DRAWS,
    Sampler,
    command_line,
    console,
    float_option,
    handle_errors,
    seed_option,
)
from markov_migration.defaults import CHAINS, CI_PROB, DRAWS, TARGET_ACCEPT, TUNE

#: Quantiles of the equal-tailed interval in the printed tables, and their column labels.
_TAILS = ((1 - CI_PROB) / 2, (1 + CI_PROB) / 2)
_TAIL_LABELS = tuple(f"{100 * q:g}%" for q in _TAILS)


@handle_errors
def fit(
    panel: Annotated[
        Path, typer.Argument(help="Panel file (CSV/Parquet, long format) or a counts table.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Fit file to write (NetCDF).")],
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Model file (TOML), or the name of a bundled model."),
    ] = "migration5",
    chains: Annotated[int, typer.Option(min=1, max=MAX_CHAINS, help="Number of chains.")] = CHAINS,
    draws: Annotated[
        int,
        typer.Option(
            min=1, max=MAX_DRAWS, help="Draws kept per chain (bounded by memory as well)."
        ),
    ] = DRAWS,
    tune: Annotated[
        int,
        typer.Option(
            min=0, max=MAX_DRAWS, help="Warm-up draws per chain (nutpie needs at least 1)."
        ),
    ] = TUNE,
    seed: Annotated[int, seed_option("Random seed.")] = 0,
    sampler: Annotated[
        Sampler, typer.Option(help="nutpie (default, compiled) or pymc (PyMC's NUTS).")
    ] = Sampler.nutpie,
    cores: Annotated[
        int | None,
        typer.Option(
            min=1, max=MAX_CHAINS, help="Chains run in parallel (default: one per chain)."
        ),
    ] = None,
    target_accept: Annotated[
        float,
        float_option(
            "--target-accept",
            help="Target acceptance probability of the step-size adaptation; 0.9-0.99 for "
            "divergences in hierarchical (group) models.",
            lo=0.0,
            hi=1.0,
            lo_open=True,
            hi_open=True,
        ),
    ] = TARGET_ACCEPT,
    prior_only: Annotated[
        bool,
        typer.Option(
            "--prior-only",
            help="Write chains x draws independent draws from the prior instead of the "
            "posterior (prior predictive: every summary, check and project reads the file).",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing fit file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fit a model to a panel; write the posterior, diagnostics and provenance to a fit file."""
    from markov_migration.errors import InputError
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import load_data
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import check_output, resolve_model

    if out.suffix.lower() not in (".nc", ".netcdf", ".h5"):
        raise InputError("fit file must end in .nc", path=out)
    check_output(out, force)
    settings = FitSettings(chains, draws, tune, seed, sampler.value, cores, target_accept)
    settings.check()
    spec = load_spec(resolve_model(model))
    from markov_migration.inference.model import check_supported

    check_supported(spec)
    validated, agg = load_data(panel, spec)  # all data problems surface before compiling
    from markov_migration.inference.model import check_memory

    check_memory(spec, agg, settings.chains, settings.draws)
    console.print(
        f"fitting {spec.name} ({spec.time} time, {spec.n_states} states) to {agg.n_transitions:,.0f} "
        f"transitions in {len(agg.table):,} aggregated rows ({agg.intervals.size:,} distinct intervals)"
    )
    if prior_only:
        from markov_migration.inference.prior import sample_prior

        tree = sample_prior(spec, agg, settings, command=command_line(), panel=validated)
    else:
        tree = sample(
            spec, agg, settings, progress=not quiet, command=command_line(), panel=validated
        )
    from markov_migration.fitfile.format import write_fit

    write_fit(tree, out, force)
    t = settings.timings
    if prior_only:
        console.print(f"wrote {out} (prior draws: {settings.chains} x {settings.draws})")
    else:
        console.print(
            f"wrote {out} (compile {t.get('compile', 0):.1f} s, sampling {t.get('sample', 0):.1f} s)"
        )
        if int(tree.attrs.get("data_weighted", 0)):
            from markov_migration.plots.report import weights_text

            console.print(f"survey weights: {weights_text(tree.attrs)}", markup=False)
    print_posterior_table(tree, console)


def print_posterior_table(tree, con) -> None:
    """Print posterior mean and equal-tailed interval (``CI_PROB``) of each intensity."""
    import numpy as np
    from rich.table import Table

    post = tree["posterior"]
    kind = "Prior" if int(tree.attrs.get("prior_only", 0)) else "Posterior"
    if "rate" in post:
        var, labels = post["rate"], list(post["transition"].values)
        title = f"{kind} intensities (moves per {tree.attrs.get('time_unit', 'years')[:-1]})"
    else:
        p = post["P"]
        states = list(p["from_state"].values)
        labels, cols = [], []
        for i, a in enumerate(states):
            for j, b in enumerate(states):
                if i == j or float(p.isel(from_state=i, to_state=j).max()) > 0:
                    labels.append(f"{a}->{b}")
                    cols.append(p.isel(from_state=i, to_state=j).values)
        var = np.stack(cols, axis=-1)
        title = f"{kind} one-step transition probabilities"
    values = np.asarray(var).reshape(-1, len(labels))
    table = Table(title=title)
    for c in ("transition", "mean", *_TAIL_LABELS):
        table.add_column(c, justify="left" if c == "transition" else "right")
    lo, hi = np.quantile(values, _TAILS, axis=0)
    for k, lab in enumerate(labels):
        table.add_row(str(lab), f"{values[:, k].mean():.4f}", f"{lo[k]:.4f}", f"{hi[k]:.4f}")
    if "hazard_ratio" in post or "group_sd" in post:
        table.title = title.replace("Posterior intensities", "Posterior baseline intensities")
    con.print(table)
    if "hazard_ratio" in post:
        hr = post["hazard_ratio"]
        rows = []
        for k in range(hr.sizes["covariate_effect"]):
            e = hr.isel(covariate_effect=k)
            cov, level = str(e["covariate"].values), str(e["level"].values)
            what = f"{cov} (per unit)" if level == "" else f"{cov}={level}"
            rows.append((f"{what} on {e['from'].values}->{e['to'].values}", e.values.reshape(-1)))
        _interval_table(con, "Posterior hazard ratios", "effect", rows)
    if "group_sd" in post:
        sd = post["group_sd"]
        rows = [
            (str(label), sd.sel(group_transition=label).values.reshape(-1))
            for label in sd["group_transition"].values
        ]
        _interval_table(con, "Between-group sd of the log-intensities", "transition", rows)
    diverging = tree["sample_stats"].get("diverging")
    if diverging is not None:
        con.print(f"divergences: {int(np.asarray(diverging).sum())}")


def _interval_table(con, title: str, first: str, rows) -> None:
    """A table of posterior mean and equal-tailed interval per labelled draw vector."""
    import numpy as np
    from rich.table import Table

    table = Table(title=title)
    for c in (first, "mean", *_TAIL_LABELS):
        table.add_column(c, justify="left" if c == first else "right")
    for label, draws in rows:
        lo, hi = np.quantile(draws, _TAILS)
        table.add_row(label, f"{draws.mean():.4f}", f"{lo:.4f}", f"{hi:.4f}")
    con.print(table)

"""Figures of the checks of a fit, and the files ``check --out-dir`` writes.

Layer 5 (plots): matplotlib ``Figure`` objects (no pyplot state, no display needed)
of the predictive checks (:mod:`markov_migration.results.ppc`) and the trace of the
sampled parameters (:mod:`markov_migration.results.diagnostics`), and
:func:`write_outputs`, which writes the check tables (CSV) and these figures (PNG).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.io import atomic_output, check_output
from markov_migration.results.checks import CheckReport
from markov_migration.results.diagnostics import parameter_labels, sampled_parameters
from markov_migration.results.ppc import PPCResult

_BAND_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _sqrt(x):
    return np.sqrt(np.clip(x, 0, None))


def plot_transitions(result: PPCResult, states: list[str], time_unit: str):
    """Observed (black dots) vs replicated transition counts (shaded intervals), per from-state."""
    t = result.table
    # records that are not states come after them (censored codes, a nonresponse
    # fit's "missed" interviews)
    states = list(states) + [
        s for s in dict.fromkeys([*t["from"], *t["to"]]) if s not in set(states)
    ]
    froms = [s for s in states if s in set(t["from"])]
    bands = list(dict.fromkeys(t["band"]))
    ncol = min(3, len(froms))
    nrow = int(np.ceil(len(froms) / ncol))
    fig = _figure(4.2 * ncol, 3.3 * nrow + 0.6)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    width = 0.8 / max(len(bands), 1)
    for ax, frm in zip(axes.flat, froms, strict=False):
        sub = t[t["from"] == frm]
        tos = [s for s in states if s in set(sub["to"])]
        for j, band in enumerate(bands):
            b = sub[sub["band"] == band]
            x = np.array([tos.index(s) for s in b["to"]]) - 0.4 + width * (j + 0.5)
            colour = _BAND_COLOURS[j % len(_BAND_COLOURS)]
            ax.bar(
                x,
                b["upper"] - b["lower"],
                width * 0.9,
                bottom=b["lower"],
                color=colour,
                alpha=0.35,
                label=f"{band} {time_unit}",
            )
            ax.hlines(b["median"], x - width * 0.45, x + width * 0.45, color=colour, lw=1.5)
            ax.plot(
                x,
                b["observed"],
                "o",
                color="black",
                ms=4,
                zorder=3,
                label="observed" if j == len(bands) - 1 else None,
            )
        ax.set_xticks(range(len(tos)), tos, rotation=30, ha="right")
        # square-root scale: stays (hundreds) and moves (a few) both readable; it also
        # stabilises the variance of counts
        ax.set_yscale("function", functions=(_sqrt, np.square))
        ax.set_ylim(bottom=0)
        ax.set_title(f"from {frm}")
        ax.set_xlabel("state at the next observation")
        ax.set_ylabel("transitions (count, square-root scale)")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(froms) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=len(labels),
        fontsize=9,
        title=f"interval between observations (bars: {result.ci:.0%} predictive interval, "
        "line: median)",
    )
    fig.suptitle(
        f"Transition counts: observed vs replicated  (posterior predictive p = {result.ppp:.2f})"
    )
    return fig


def plot_prevalence(result: PPCResult, states: list[str], time_unit: str):
    """Observed vs expected prevalence (%) of each state at each wave, with shaded intervals."""
    t = result.table
    ncol = min(3, len(states))
    nrow = int(np.ceil(len(states) / ncol))
    fig = _figure(4.2 * ncol, 3.0 * nrow + 0.5)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, st in zip(axes.flat, states, strict=False):
        sub = t[t["state"] == st].sort_values("time")
        ax.fill_between(
            sub["time"],
            sub["lower_pct"],
            sub["upper_pct"],
            color="#4c72b0",
            alpha=0.25,
            label=f"expected, {result.ci:.0%} predictive interval",
        )
        ax.plot(
            sub["time"],
            sub["expected_pct"],
            "-",
            color="#4c72b0",
            label="expected (posterior mean)",
        )
        ax.plot(
            sub["time"], sub["observed_pct"], "o-", color="black", ms=4, lw=0.8, label="observed"
        )
        ax.set_title(st)
        ax.set_xlabel(f"time ({time_unit})")
        ax.set_ylabel("respondents in state (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(states) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9)
    fig.suptitle(
        f"Prevalence by wave: observed vs expected from first observation  (p = {result.ppp:.2f})"
    )
    return fig


def plot_markov(result: PPCResult, states: list[str]):
    """Share of each third state given the first two: observed (dots) vs replicated intervals.

    One panel per second state; bars grouped by third state, one colour per first
    state. Under a Markov model the first state should not matter given the second.
    """
    t = result.table
    seconds = [s for s in states if s in set(t["second"])]
    ncol = min(3, max(len(seconds), 1))
    nrow = int(np.ceil(len(seconds) / ncol)) or 1
    fig = _figure(4.2 * ncol, 3.3 * nrow + 0.6)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    firsts = [s for s in states if s in set(t["first"])]
    width = 0.8 / max(len(firsts), 1)
    for ax, sec in zip(axes.flat, seconds, strict=False):
        sub = t[t["second"] == sec]
        for j, frm in enumerate(firsts):
            b = sub[sub["first"] == frm]
            if b.empty:
                continue
            x = np.array([states.index(s) for s in b["third"]]) - 0.4 + width * (j + 0.5)
            colour = _BAND_COLOURS[j % len(_BAND_COLOURS)]
            n = int(b["n"].iloc[0])
            ax.bar(
                x,
                b["upper_pct"] - b["lower_pct"],
                width * 0.9,
                bottom=b["lower_pct"],
                color=colour,
                alpha=0.35,
                label=f"first state {frm} (replicated, {result.ci:.0%})",
            )
            ax.plot(x, b["observed_pct"], "o", color=colour, mec="black", ms=5)
            ax.annotate(f"n={n}", (x[0], 2), fontsize=7, rotation=90, va="bottom")
        ax.set_xticks(range(len(states)), states)
        ax.set_title(f"second state {sec}")
        ax.set_xlabel("third state")
        ax.set_ylabel("triples ending there (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3, axis="y")
    for ax in list(axes.flat)[len(seconds) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9)
    fig.suptitle(
        "Markov assumption: third state given the first two, observed (dots) vs replicated  "
        f"(p = {result.ppp:.2f})"
    )
    return fig


def plot_pearson(result, time_unit: str):
    """The Pearson table (as msm's) as a heat map: Pearson residuals ``(O - E) / sqrt(E)`` per cell.

    Rows are the categories (observation-time group, interval group), columns the
    interval transitions ``from -> to``; each cell shows observed / expected counts.
    """
    t = result.table.copy()
    t["row"] = t["time_group"] + "  |  " + t["interval_group"]
    t["column"] = t["from"] + " -> " + t["to"]
    rows = list(dict.fromkeys(t["row"]))
    cols = list(dict.fromkeys(t["column"]))
    resid = np.full((len(rows), len(cols)), np.nan)
    fig = _figure(max(6.0, 0.85 * len(cols) + 3.0), 0.45 * len(rows) + 2.2)
    ax = fig.subplots()
    r_idx = t["row"].map({r: i for i, r in enumerate(rows)}).to_numpy()
    c_idx = t["column"].map({c: j for j, c in enumerate(cols)}).to_numpy()
    e = t["expected"].to_numpy()
    o = t["observed"].to_numpy()
    resid[r_idx, c_idx] = np.where(e > 0, (o - e) / np.sqrt(np.where(e > 0, e, 1.0)), np.nan)
    image = ax.imshow(resid, cmap="RdBu_r", vmin=-5, vmax=5, aspect="auto")
    for i, j, oi, ei in zip(r_idx, c_idx, o, e, strict=True):
        dark = abs(resid[i, j]) > 3  # white on the saturated ends of the colour map
        colour = "white" if dark else "black"
        ax.text(j, i, f"{oi}/{ei:.0f}", ha="center", va="center", fontsize=6, color=colour)
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_ylabel(f"observation time  |  interval ({time_unit})")
    fig.colorbar(image, ax=ax, label="(O - E) / sqrt(E), clipped at 5")
    p_text = f"Titman's p {result.p:.2g}" if np.isfinite(result.p) else ""
    fig.suptitle(
        f"Pearson table (as msm's pearson.msm): observed/expected  X = {result.statistic:.1f}, "
        f"{p_text}  (posterior predictive p = {result.ppp:.2f})",
        fontsize=10,
    )
    return fig


def plot_discrepancy(results: dict[str, PPCResult]):
    """Replicated vs observed chi-square discrepancy per draw, one panel per check."""
    items = [(k, v) for k, v in results.items() if v is not None]
    fig = _figure(4.6 * max(len(items), 1), 4.2)
    axes = fig.subplots(1, max(len(items), 1), squeeze=False)[0]
    for ax, (name, r) in zip(axes, items, strict=False):
        ax.scatter(
            r.observed_discrepancy, r.replicated_discrepancy, s=8, alpha=0.4, color="#4c72b0"
        )
        lo = min(r.observed_discrepancy.min(), r.replicated_discrepancy.min())
        hi = max(r.observed_discrepancy.max(), r.replicated_discrepancy.max())
        ax.plot([lo, hi], [lo, hi], "--", color="black", lw=1, label="replicated = observed")
        ax.set_xlabel("chi-square of observed data")
        ax.set_ylabel("chi-square of replicated data")
        ax.set_title(f"{name}: p = {r.ppp:.2f} (share above the line)")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle("Posterior predictive discrepancy (one point per posterior draw)")
    return fig


#: Y-axis label of a sampled variable's trace.
_AXIS_LABELS = {
    "log_rate": "log intensity",
    "log_rate_direct": "log intensity",
    "log_exit_rate": "log total exit rate",
}


def plot_trace(tree: xr.DataTree, max_params: int = 12):
    """Trace of each sampled parameter by chain (up to ``max_params``)."""
    params = sampled_parameters(tree)
    series = []
    for name, da in params.data_vars.items():
        labels = parameter_labels(da, str(name))
        vals = (
            da.transpose(*SAMPLE_DIMS, ...)
            .to_numpy()
            .reshape(da.sizes[SAMPLE_DIMS[0]], da.sizes[SAMPLE_DIMS[1]], -1)
        )
        for i, lab in enumerate(labels):
            if np.ptp(vals[..., i]) > 0:
                series.append((lab, vals[..., i], str(name)))
    series = series[:max_params]
    ncol = min(3, max(len(series), 1))
    nrow = int(np.ceil(len(series) / ncol)) or 1
    fig = _figure(4.2 * ncol, 2.2 * nrow + 0.5)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, (lab, v, name) in zip(axes.flat, series, strict=False):
        for c in range(v.shape[0]):
            ax.plot(v[c], lw=0.5, alpha=0.8, label=f"chain {c}")
        ax.set_title(lab, fontsize=10)
        ax.set_xlabel("draw")
        ax.set_ylabel(
            _AXIS_LABELS.get(name, "probability" if name.startswith(("p_", "split_")) else name)
        )
    for ax in list(axes.flat)[len(series) :]:
        ax.set_visible(False)
    fig.suptitle("Trace of the sampled parameters by chain (chains should overlap)")
    return fig


def figure_png(fig) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def figures(report: CheckReport, tree: xr.DataTree) -> dict[str, object]:
    """Draw the check's figures, by file stem."""
    figs: dict[str, object] = {}
    if report.transitions is not None:
        figs["ppc_transitions"] = plot_transitions(
            report.transitions, report.states, report.time_unit
        )
    if report.prevalence is not None:
        figs["ppc_prevalence"] = plot_prevalence(report.prevalence, report.states, report.time_unit)
    if report.markov is not None:
        figs["ppc_markov"] = plot_markov(report.markov, report.states)
    if report.pearson is not None:
        figs["ppc_pearson"] = plot_pearson(report.pearson, report.time_unit)
    ppcs = {
        "transitions": report.transitions,
        "prevalence": report.prevalence,
        "markov": report.markov,
        "pearson": report.pearson,
    }
    if any(v is not None for v in ppcs.values()):
        figs["ppc_discrepancy"] = plot_discrepancy(ppcs)
    figs["trace"] = plot_trace(tree)
    return figs


#: Every file :func:`write_outputs` can write (those that apply to a fit are written).
OUTPUT_FILES = (
    "checks.csv", "convergence.csv", "ppc_transitions.csv", "ppc_prevalence.csv",
    "ppc_discrepancy.csv", "ppc_transitions.png", "ppc_prevalence.png", "ppc_discrepancy.png",
    "trace.png", "ppc_markov.csv", "ppc_markov.png", "ppc_pearson.csv", "ppc_pearson.png",
    "prior_sensitivity.csv",
)  # fmt: skip


def write_outputs(
    report: CheckReport, tree: xr.DataTree, out_dir: str | Path, force: bool = False
) -> list[Path]:
    """Write the check's tables (CSV) and plots (PNG) into ``out_dir``.

    Files: ``checks.csv``, ``convergence.csv``, ``ppc_transitions.csv``,
    ``ppc_prevalence.csv``, ``ppc_markov.csv``, ``ppc_pearson.csv``, ``ppc_discrepancy.csv``,
    ``prior_sensitivity.csv``
    and the PNGs ``ppc_transitions.png``, ``ppc_prevalence.png``, ``ppc_markov.png``,
    ``ppc_pearson.png``,
    ``ppc_discrepancy.png``, ``trace.png`` (those that apply). Existing files are only replaced with
    ``force``; every file is written atomically.

    Returns
    -------
    list of Path
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("--out-dir exists and is not a folder", path=out_dir)
    tables: dict[str, pd.DataFrame] = {"checks": report.table(), "convergence": report.convergence}
    if report.transitions is not None:
        tables["ppc_transitions"] = report.transitions.table
    if report.prevalence is not None:
        tables["ppc_prevalence"] = report.prevalence.table
    if report.markov is not None:
        tables["ppc_markov"] = report.markov.table
    if report.pearson is not None:
        tables["ppc_pearson"] = report.pearson.table
    if report.sensitivity is not None:
        tables["prior_sensitivity"] = report.sensitivity
    disc = {}
    for name, r in (
        ("transitions", report.transitions),
        ("prevalence", report.prevalence),
        ("markov", report.markov),
        ("pearson", report.pearson),
    ):
        if r is not None:
            disc[f"{name}_observed"] = r.observed_discrepancy
            disc[f"{name}_replicated"] = r.replicated_discrepancy
    if disc:
        tables["ppc_discrepancy"] = pd.DataFrame(disc).rename_axis("draw").reset_index()
    figs = figures(report, tree)
    names = [f"{n}.csv" for n in tables] + [f"{n}.png" for n in figs]
    if not set(names) <= set(OUTPUT_FILES):  # callers plan their outputs from OUTPUT_FILES
        raise RuntimeError(f"undeclared check outputs: {sorted(set(names) - set(OUTPUT_FILES))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in names:  # refuse before writing anything
        check_output(out_dir / n, force)
    written = []
    for n, frame in tables.items():
        with atomic_output(out_dir / f"{n}.csv", force) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        written.append(out_dir / f"{n}.csv")
    for n, fig in figs.items():
        with atomic_output(out_dir / f"{n}.png", force) as tmp:
            fig.savefig(tmp, format="png")
        written.append(out_dir / f"{n}.png")
    return written

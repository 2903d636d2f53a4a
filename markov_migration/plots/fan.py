"""Fan charts of projected stocks: median and 50/80/95% intervals across draws.

One figure per series (returnees, diaspora, or a state's stock), one panel per
scenario side by side with a shared y axis; scenario panels repeat the
baseline median as a dashed grey line for comparison. Where the projection
holds the fit's observed wave prevalence (``observed_share``), the observed
share of the series' states at each survey wave times the initial total is
drawn as points, so the level of the projection can be compared with what the
panel saw.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot,
no display needed); matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from markov_migration.defaults import PROJECTION_INTERVALS
from markov_migration.io import atomic_output
from markov_migration.projection.files import write_projection, write_quantile_csv

#: Shading of the central intervals, widest first (probability, opacity).
BANDS = tuple(zip(sorted(PROJECTION_INTERVALS, reverse=True), (0.18, 0.3, 0.45), strict=True))
COLORS = ("#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#16a085")
#: Titles of the per-step flow series (persons per step, zero at the start).
FLOW_TITLES = {
    "returns": "Returns per step (non-home to home state, persons)",
    "reemigrations": "Re-emigrations per step (home to non-home state, persons)",
    "moves_abroad": "Moves between non-home states per step (persons)",
    "ever_returned": "Persons who returned at least once since the start",
    "returned_from_abroad": "Persons home who were abroad at the start",
    "net_returnees_change": "Net change of returnees per step (step-end, persons)",
}
#: Charts of the ``project`` command and the demo besides the states.
DEFAULT_CHARTS = ("returnees", "diaspora", "cumulative_returns", "ever_returned")


def _series(ds: xr.Dataset, name: str) -> tuple[xr.DataArray, list[str], str]:
    """The DataArray of a series, the states it sums over, and its title."""
    home = json.loads(ds.attrs.get("home", "[]"))
    states = [str(s) for s in ds["state"].values]
    if name == "returnees":
        return (
            ds["returnees"],
            [s for s in states if s in home],
            f"Returnees (persons in {', '.join(home)})",
        )
    if name == "diaspora":
        away = [s for s in states if s not in home]
        return ds["diaspora"], away, "Diaspora (persons abroad: " + ", ".join(away) + ")"
    if name == "cumulative_returns":
        return ds["cumulative_returns"], [], "Cumulative return events since the start (persons)"
    if name in FLOW_TITLES and name in ds:
        return ds[name], [], FLOW_TITLES[name]
    state = name.split(":", 1)[1] if name.startswith("stock:") else name
    if state not in states:
        raise ValueError(f"unknown series '{name}'")
    return ds["stock"].sel(state=state), [state], f"Persons in state '{state}'"


def fan_chart(
    ds: xr.Dataset, name: str = "returnees", *, observed: bool = True, width: float = 5.2
):
    """Draw the fan chart of one series; return the matplotlib Figure.

    Parameters
    ----------
    ds : Dataset
        A projection (:func:`markov_migration.projection.run.project_fit`).
    name : str
        ``returnees``, ``diaspora``, ``cumulative_returns``, a flow series
        (``returns``, ``reemigrations``, ``moves_abroad``) or ``stock:<state>``.
    observed : bool
        Draw the observed wave prevalence (if the projection holds it).
    width : float
        Width of one scenario panel (inches).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    da, states, title = _series(ds, name)
    scenarios = [str(s) for s in np.atleast_1d(ds["scenario"].values)]
    if "scenario" not in da.dims:
        da = da.expand_dims(scenario=scenarios)
    times = ds["time"].values
    unit = ds["time"].attrs.get("units", "years")
    values = da.transpose("scenario", "time", "draw").values.astype(float)
    median = np.median(values, axis=-1)

    fig = Figure(figsize=(width * len(scenarios) + 0.6, 4.4), layout="constrained")
    axes = fig.subplots(1, len(scenarios), sharey=True, squeeze=False)[0]
    obs_t = obs_v = None
    if observed and "observed_share" in ds and states:
        share = ds["observed_share"].sel(state=states).sum("state").values
        total = float(ds["stock"].isel(time=0).sum("state").mean())
        obs_t, obs_v = ds["wave_time"].values, share * total
    for i, (ax, sc) in enumerate(zip(axes, scenarios, strict=True)):
        color = COLORS[i % len(COLORS)]
        for prob, alpha in BANDS:
            lo, hi = np.quantile(values[i], [(1 - prob) / 2, (1 + prob) / 2], axis=-1)
            ax.fill_between(
                times, lo, hi, color=color, alpha=alpha, linewidth=0, label=f"{prob:.0%} interval"
            )
        ax.plot(times, median[i], color=color, linewidth=2, label="median")
        if i > 0 and scenarios[0] == "baseline":
            ax.plot(
                times,
                median[0],
                color="0.35",
                linewidth=1.2,
                linestyle="--",
                label="baseline median",
            )
        if obs_t is not None:
            ax.plot(
                obs_t, obs_v, "o", color="black", markersize=5,
                label="panel share at waves × initial total",
            )  # fmt: skip
        ax.axvline(times[0], color="0.6", linewidth=0.8, linestyle=":", label="projection start")
        ax.set_title(sc, fontsize=11)
        ax.set_xlabel(f"time ({unit})")
        ax.grid(True, alpha=0.3, linewidth=0.6)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    top = float(np.quantile(values, 0.975, axis=-1).max())
    if obs_v is not None:
        top = max(top, float(obs_v.max()))
    axes[0].set_ylim(0, 1.06 * top if top > 0 else 1.0)  # shared by all panels
    axes[0].set_ylabel("persons")
    axes[0].legend(loc="best", fontsize=8, framealpha=0.85)
    if len(scenarios) > 1:
        axes[1].legend(loc="best", fontsize=8, framealpha=0.85)
    draws = ds.sizes["draw"]
    probs = "/".join(str(round(p * 100)) for p in PROJECTION_INTERVALS)
    if "projection_group" in ds.attrs:  # a view of a projection by group
        title = f"{title}, {ds.attrs['projection_group']}"
    fig.suptitle(f"{title}\nmedian and {probs}% intervals over {draws:,} draws", fontsize=12)
    return fig


def write_fan_charts(
    ds: xr.Dataset,
    out_dir: str | Path,
    *,
    states: bool | Sequence[str] = False,
    series: Sequence[str] = ("returnees", "diaspora"),
    force: bool = False,
    dpi: int = 120,
    suffix: str = "",
) -> list[Path]:
    """Write fan charts as PNG files into ``out_dir`` (created if missing).

    Files: ``returnees.png``, ``diaspora.png`` and, with ``states`` (True for
    every state, or a list), ``stock-<state>.png``. Each is written
    atomically; an existing file is replaced only with ``force``. A projection
    by group (a ``group`` dim) gets these charts for the total over groups
    (per-draw sums) and the same charts per group, named
    ``<chart>-group-<group>.png`` (``suffix`` is added to every file name).

    Returns
    -------
    list of Path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out_dir = Path(out_dir)
    if "group" in ds.dims:  # by group: the total under the usual names, then each group
        from markov_migration.projection.files import by_group_views

        paths = []
        for label, view in by_group_views(ds):
            suffix = "" if label == "total" else f"-group-{safe_label(label)}"
            paths += write_fan_charts(
                view, out_dir, states=states, series=series, force=force, dpi=dpi, suffix=suffix
            )
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(series)
    if states:
        chosen = [str(s) for s in ds["state"].values] if states is True else list(states)
        names += [f"stock:{s}" for s in chosen]
    paths = []
    for name in names:
        fig = fan_chart(ds, name)
        FigureCanvasAgg(fig)
        path = out_dir / (name.replace("stock:", "stock-") + suffix + ".png")
        with atomic_output(path, force) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
        paths.append(path)
    return paths


def write_projection_outputs(
    ds: xr.Dataset,
    out_dir: str | Path,
    *,
    stem: str = "projection",
    charts: bool = True,
    states: bool = False,
    force: bool = False,
) -> list[Path]:
    """Write the NetCDF, the quantile CSV and the fan charts of a projection into a folder.

    Files: ``<stem>.nc``, ``<stem>.csv`` and, with ``charts``, ``returnees.png``,
    ``diaspora.png``, ``cumulative_returns.png`` and ``ever_returned.png``
    (plus ``stock-<state>.png`` with ``states``) in ``out_dir/charts``. Every
    existing output is checked before anything is written, so a refused run
    writes nothing.

    Returns
    -------
    list of Path
        The files written.
    """
    from markov_migration.io import check_output

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nc, csv = out_dir / f"{stem}.nc", out_dir / f"{stem}.csv"
    chart_dir = out_dir / "charts"
    planned = [nc, csv]
    if charts:
        names = list(DEFAULT_CHARTS) + (
            [f"stock-{s}" for s in ds["state"].values] if states else []
        )
        planned += [chart_dir / f"{n}.png" for n in names]
    for path in planned:
        if path.parent.exists():
            check_output(path, force)
    written = [write_projection(ds, nc, force), write_quantile_csv(ds, csv, force)]
    if charts:
        from markov_migration.plots.fan import write_fan_charts

        written += write_fan_charts(
            ds, chart_dir, states=states, series=DEFAULT_CHARTS, force=force
        )
    return written


def safe_label(label: str) -> str:
    """A group label usable in a file name (characters other than letters, digits, ``._-``: ``_``)."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", str(label))


def chart_file_names(names: Sequence[str], groups: Sequence[str] | None = None) -> list[str]:
    """PNG file names :func:`write_fan_charts` writes for chart ``names`` (and groups)."""
    out = [f"{n}.png" for n in names]
    for g in groups or []:
        out += [f"{n}-group-{safe_label(g)}.png" for n in names]
    return out

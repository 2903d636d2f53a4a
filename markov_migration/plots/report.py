"""A self-contained HTML report of a fit for reviewers (``check FIT --report report.html``).

One file, no external resources: styles inline, plots embedded as base64 PNG.
Sections: verdict and checks, convergence per parameter, posterior predictive
checks (transition counts, prevalence by wave, discrepancy), key summaries
(intensities Q, transition probabilities P(1), mean sojourn times, each with
posterior intervals), traces, and the provenance block (model file, data
identity, seed, sampler settings, library versions, command line).

Layer 5 (interfaces); never imports PyMC.
"""

from __future__ import annotations

import base64
import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import xarray as xr

from markov_migration.defaults import CI_PROB, THRESHOLDS
from markov_migration.plots.check_figures import figure_png, figures
from markov_migration.results.checks import CheckReport

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #f6f7f9; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #e3e6ea; }
h3 { font-size: 1.05em; margin: 20px 0 6px; }
.sub { color: #555; margin: 0 0 16px; }
.verdict { display: inline-block; padding: 8px 14px; border-radius: 6px; font-weight: 600;
           margin: 8px 0; }
.verdict.ok { background: #e3f4e8; color: #17602f; border: 1px solid #9fd3ae; }
.verdict.bad { background: #fde8e8; color: #8a1c1c; border: 1px solid #f0a9a9; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.92em; }
th, td { border: 1px solid #dde1e6; padding: 4px 9px; text-align: right; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.l, th.l { text-align: left; }
tr.fail td { background: #fdf0f0; }
td.pass { color: #17602f; font-weight: 600; text-align: center; }
td.fail { color: #a11d1d; font-weight: 700; text-align: center; }
td.skip { color: #777; text-align: center; }
td.bad { color: #a11d1d; font-weight: 600; }
.ci { color: #666; font-size: 0.85em; white-space: nowrap; }
td.zero { color: #bbb; text-align: center; }
figure { margin: 10px 0 20px; }
figure img { max-width: 100%; border: 1px solid #e3e6ea; }
figcaption { color: #555; font-size: 0.9em; margin-top: 4px; }
pre { background: #f6f8fa; border: 1px solid #e3e6ea; padding: 10px; overflow-x: auto;
      font-size: 0.85em; }
dl.prov { display: grid; grid-template-columns: 210px 1fr; gap: 4px 12px; margin: 8px 0; }
dl.prov dt { font-weight: 600; color: #444; }
dl.prov dd { margin: 0; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.88em;
             word-break: break-all; }
.note { color: #555; font-size: 0.9em; }
footer { color: #888; font-size: 0.85em; margin-top: 40px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(x: float | None, digits: int = 3) -> str:
    """Format a number for tables: about 3 significant digits, trailing zeros kept."""
    if x is None or math.isnan(float(x)):
        return "–"
    x = float(x)
    ax = abs(x)
    if x == 0:
        return "0"
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 1:
        return f"{x:.{max(digits - 1 - int(math.log10(ax)), 0)}f}"
    if ax >= 0.01:
        return f"{x:.{digits}f}"
    return f"{x:.2g}"


def _img(fig, alt: str, caption: str) -> str:
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return (
        f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _row(cells: list[str], cls: str = "") -> str:
    return (
        f"<tr class='{cls}'>" + "".join(cells) + "</tr>"
        if cls
        else "<tr>" + "".join(cells) + "</tr>"
    )


def _td(text: object, cls: str = "", raw: bool = False) -> str:
    body = str(text) if raw else _e(text)
    return f"<td class='{cls}'>{body}</td>" if cls else f"<td>{body}</td>"


def _head(*labels: str, left: tuple[str, ...] = ()) -> str:
    cells = [f"<th class='l'>{_e(x)}</th>" if x in left else f"<th>{_e(x)}</th>" for x in labels]
    return _row(cells)


def _table(head: str, rows: list[str]) -> str:
    return f"<table>{head}{''.join(rows)}</table>"


def _interval(lo: float, hi: float, digits: int = 3) -> str:
    return f"<span class='ci'>[{_fmt(lo, digits)}, {_fmt(hi, digits)}]</span>"


def weights_text(attrs) -> str:
    """One line on a fit's survey weights: none, or what was done to the pseudo-posterior.

    For the report's provenance and ``fit``'s output; ``attrs`` are the fit's root
    attributes (see :mod:`markov_migration.inference.weights`).
    """
    if not int(attrs.get("data_weighted", 0) or 0):
        return "no"
    how = str(attrs.get("weights_adjustment", "none: fitted before calibration existed"))
    if not how.startswith("calibrated"):
        return f"yes (pseudo-likelihood; not calibrated: {how.removeprefix('none: ')})"
    ratios = json.loads(str(attrs.get("weights_design_effect", "{}")))
    spread = (
        f"; variance ratios {min(ratios.values()):.2f}-{max(ratios.values()):.2f} by parameter"
        if ratios
        else ""
    )
    return (
        "yes (pseudo-likelihood; posterior calibrated to the design, Kish design effect "
        f"{float(attrs.get('weights_kish_deff', float('nan'))):.2f}{spread})"
    )


def _checks_table(report: CheckReport) -> str:
    rows = []
    for c in report.checks:
        cls = {"pass": "pass", "FAIL": "fail", "skipped": "skip"}[c.status]
        if math.isnan(c.value):
            value = "–"
        elif c.name == "divergences" or c.value >= 100:
            value = f"{c.value:.0f}"
        else:
            value = f"{c.value:.3f}"
        cells = [_td(c.label, "l"), _td(value), _td(c.threshold, "l"), _td(c.status, cls)]
        cells.append(_td(c.detail, "l"))
        rows.append(_row(cells, "fail" if cls == "fail" else ""))
    left = ("check", "passes when", "detail")
    return _table(_head("check", "value", "passes when", "status", "detail", left=left), rows)


def _convergence_table(report: CheckReport) -> str:
    ess_min = THRESHOLDS["ess_per_chain_min"] * report.n_chains
    rows = []
    for _, r in report.convergence.iterrows():
        cells = [_td(r["parameter"], "l"), _td(_fmt(r["mean"])), _td(_fmt(r["sd"]))]
        cells.append(_td(f"{r['rhat']:.3f}", "" if r["rhat"] < THRESHOLDS["rhat_max"] else "bad"))
        for col in ("ess_bulk", "ess_tail"):
            cells.append(_td(f"{r[col]:.0f}", "" if r[col] >= ess_min else "bad"))
        cells.append(_td(_fmt(r["mcse_mean"], 2)))
        rows.append(_row(cells))
    head = _head(
        "parameter",
        "mean",
        "sd",
        "R-hat",
        "bulk ESS",
        "tail ESS",
        "MCSE of mean",
        left=("parameter",),
    )
    return _table(head, rows)


def _sensitivity_table(report: CheckReport) -> str:
    """Power-scaling sensitivity of every parameter, flagged rows marked."""
    table = report.sensitivity
    rows = []
    for _, r in table.iterrows():
        flag = str(r["flag"])
        observed = "" if not math.isfinite(float(r["observed"])) else f"{r['observed']:,.0f}"
        rows.append(
            _row(
                [
                    _td(r["parameter"], "l"),
                    _td(f"{r['prior']:.3f}", "bad" if flag == "prior-data conflict" else ""),
                    _td(f"{r['likelihood']:.3f}", "bad" if flag else ""),
                    _td(observed),
                    _td(flag or "-", "l"),
                ]
            )
        )
    head = _head("parameter", "prior", "likelihood", "moves observed", "flag",
                 left=("parameter", "flag"))  # fmt: skip
    intro = (
        "<p>Power-scaling sensitivity (Kallioinen et al. 2024; ArviZ <code>psense</code>): how "
        "much each parameter's posterior changes when the prior, or the likelihood, is raised "
        "to a power near 1. Likelihood sensitivity below 0.05 means the posterior is mostly "
        "the prior (<b>prior-dominated</b>: a transition never or rarely observed); both above "
        "0.05 a <b>prior-data conflict</b>.</p>"
    )
    return intro + _table(head, rows)


def _matrix_table(summary: xr.Dataset, hide_zero: bool, digits: int = 3) -> str:
    states = [str(s) for s in summary["from_state"].values]
    head = _row(["<th class='l'>from \\ to</th>"] + [f"<th>{_e(s)}</th>" for s in states])
    rows = []
    for a in states:
        cells = [f"<th class='l'>{_e(a)}</th>"]
        for b in states:
            cell = summary.sel(from_state=a, to_state=b)
            mean, sd = float(cell["mean"]), float(cell["sd"])
            if math.isnan(mean) or (hide_zero and mean == 0 and (math.isnan(sd) or sd == 0)):
                cells.append(_td("·", "zero"))
                continue
            ci = _interval(float(cell["lower"]), float(cell["upper"]), digits)
            cells.append(_td(f"{_fmt(mean, digits)}<br>{ci}", raw=True))
        rows.append(_row(cells))
    return _table(head, rows)


def _state_table(summary: xr.Dataset, unit: str) -> str:
    rows = []
    for s in summary["state"].values:
        cell = summary.sel(state=s)
        ci = _interval(float(cell["lower"]), float(cell["upper"]))
        cells = [_td(s, "l"), _td(_fmt(float(cell["mean"]))), _td(_fmt(float(cell["median"])))]
        rows.append(_row([*cells, _td(ci, raw=True)]))
    pct = f"{summary.attrs.get('ci_prob', CI_PROB):.0%}"
    return _table(
        _head("state", f"mean ({unit})", "median", f"{pct} interval", left=("state",)), rows
    )


def _note(text: str) -> str:
    return f"<p class='note'>{_e(text)}</p>"


def _per_group(summary: xr.Dataset, table) -> list[str]:
    """One table, or one per combination of extra dims (group, covariate pattern)."""
    extra = [d for d in summary.dims if d not in ("from_state", "to_state", "state")]
    if not extra:
        return [table(summary)]
    stacked = summary.stack(_key=extra)
    out = []
    for i in range(stacked.sizes["_key"]):
        part = stacked.isel(_key=i)
        label = ", ".join(f"{d} = {part[d].item()}" for d in extra)
        out.append(f"<h4>{_e(label)}</h4>" + table(part.drop_vars(["_key", *extra])))
    return out


def _summaries(tree: xr.DataTree, ci: float) -> str:
    from markov_migration.errors import InputError
    from markov_migration.results.summaries import is_discrete, notes, summarize

    out = []
    pct = f"{ci:.0%}"
    discrete = is_discrete(tree)
    unit = "steps" if discrete else str(tree.attrs.get("time_unit", "years"))
    one = unit.rstrip("s")
    if not discrete:
        q = summarize(tree, "qmatrix", ci=ci)
        out.append(f"<h3>Transition intensities Q (moves per person per {_e(one)})</h3>")
        out.append(
            _note(
                f"Posterior mean and {pct} equal-tailed interval; the diagonal is minus the rate "
                "of leaving the state; · marks moves the model does not allow."
            )
        )
        out.extend(_per_group(q, lambda d: _matrix_table(d, hide_zero=True)))
    p1 = summarize(tree, "pmatrix", t=1.0, ci=ci)
    title = (
        "One-step transition probabilities P"
        if discrete
        else f"Transition probabilities P(1 {one})"
    )
    out.append(f"<h3>{_e(title)}</h3>")
    out.append(
        _note(
            f"Probability of being in the column state 1 {one} after being in the row state "
            f"(posterior mean, {pct} interval)."
        )
    )
    out.extend(_per_group(p1, lambda d: _matrix_table(d, hide_zero=False)))
    soj = summarize(tree, "sojourn", ci=ci)
    out.append(f"<h3>Mean sojourn time ({_e(unit)})</h3>")
    out.extend(_per_group(soj, lambda d: _state_table(d, unit)))
    out.extend(_note(n) for n in notes(soj))
    try:
        pas = summarize(tree, "passage", ci=ci)
    except InputError:
        pas = None
    if pas is not None:
        target = pas.attrs.get("to", "")
        out.append(f"<h3>Expected time until first reaching {_e(target)} ({_e(unit)})</h3>")
        out.extend(_per_group(pas, lambda d: _state_table(d, unit)))
        out.extend(_note(n) for n in notes(pas))
    return "\n".join(out)


def _provenance(tree: xr.DataTree, fit_path: str | None) -> str:
    a = tree.attrs
    try:
        raw = json.loads(str(a.get("sampler_settings", "{}")))
        settings = json.dumps(raw, indent=1, sort_keys=True)
    except json.JSONDecodeError:
        settings = str(a.get("sampler_settings", ""))
    versions = json.loads(str(a.get("versions", "{}"))) if a.get("versions") else {}
    respondents = int(a.get("data_respondents", -1))
    model = (
        f"{a.get('model_name', '')} ({a.get('time_mode', '')} time, unit {a.get('time_unit', '')})"
    )
    items = [
        ("fit file", fit_path or "(in memory)"),
        ("model", model),
        ("model file", a.get("model_path", "") or "(text below)"),
        ("data file", a.get("data_path", "")),
        ("data SHA-256", a.get("data_sha256", "")),
        ("respondents", f"{respondents:,}" if respondents >= 0 else "counts table"),
        ("survey weights", weights_text(a)),
        ("embedded panel", "yes" if "panel_data" in tree.children else "no"),
        ("seed", a.get("seed", "")),
        ("sampler", a.get("sampler", "")),
        ("created", a.get("created_at", "")),
        ("command line", a.get("command_line", "")),
        ("fit file format", a.get("markov_migration_fit", "")),
    ]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    vrows = [_row([_td(k, "l"), _td(v, "l")]) for k, v in sorted(versions.items())]
    return (
        f"<dl class='prov'>{dl}</dl>"
        f"<h3>Sampler settings</h3><pre>{_e(settings)}</pre>"
        "<h3>Library versions</h3>"
        + _table(_head("library", "version", left=("library", "version")), vrows)
        + f"<h3>Model file</h3><pre>{_e(a.get('model_text', ''))}</pre>"
    )


def _nav() -> str:
    links = [
        ("checks", "checks"),
        ("convergence", "convergence"),
        ("ppc", "predictive checks"),
        ("summaries", "summaries"),
        ("trace", "traces"),
        ("provenance", "provenance"),
    ]
    return "<nav class='sub'>" + " · ".join(f"<a href='#{a}'>{t}</a>" for a, t in links) + "</nav>"


def render_report(
    tree: xr.DataTree,
    report: CheckReport,
    *,
    fit_path: str | Path | None = None,
    ci: float = CI_PROB,
) -> str:
    """Render the HTML report of a fit and its checks.

    Parameters
    ----------
    tree : xarray.DataTree
        The fit.
    report : CheckReport
        From :func:`markov_migration.results.checks.run_checks`.
    fit_path : str or Path, optional
        Shown in the header and provenance.
    ci : float
        Probability of the summaries' intervals.

    Returns
    -------
    str
        A complete, self-contained HTML document.
    """
    from markov_migration import __version__

    a = tree.attrs
    name = str(a.get("model_name", "fit"))
    figs = figures(report, tree)
    failed = report.failed
    if failed:
        verdict = (
            f"<div class='verdict bad' id='verdict'>{len(failed)} check(s) failed: "
            f"{_e(', '.join(c.name for c in failed))}</div>"
        )
    else:
        skipped = [c.name for c in report.checks if c.passed is None]
        extra = f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else ""
        verdict = f"<div class='verdict ok' id='verdict'>All checks passed{_e(extra)}</div>"
    states = ", ".join(report.states)
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Fit report: {_e(name)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>Fit report: {_e(name)}</h1>",
        f"<p class='sub'>{_e(fit_path or '')} · {report.n_chains} chains × {report.n_draws} draws"
        f" · states: {_e(states)} · fitted {_e(a.get('created_at', ''))}</p>",
        verdict,
        _nav(),
        "<h2 id='checks'>Checks</h2>",
        _checks_table(report),
        _note(
            f"Thresholds: R-hat < {THRESHOLDS['rhat_max']} and bulk/tail ESS ≥ "
            f"{THRESHOLDS['ess_per_chain_min']} per chain (Vehtari et al. 2021); "
            f"at most {THRESHOLDS['divergences_max']:g} divergent transitions; E-BFMI > "
            f"{THRESHOLDS['ebfmi_min']} (Betancourt 2016); posterior predictive "
            f"p-value ≥ {THRESHOLDS['ppp_min']} (the p-value is the share of data sets "
            "replicated from the posterior whose discrepancy is at least as large as the "
            "observed data's; it is not the probability that the model is right)."
        ),
        "<h2 id='convergence'>Convergence by parameter</h2>",
        _note(
            "The sampled parameters: in continuous time the log total exit rates "
            "(log_exit_rate, per person and time unit) and their splits among exits "
            "(split_<state>), or log intensities with their own prior, plus effects; "
            "the rows of the one-step matrix in discrete time."
        ),
        _convergence_table(report),
        "<h2 id='ppc'>Posterior predictive checks</h2>",
    ]
    if "ppc_transitions" in figs:
        parts.append(
            _img(
                figs["ppc_transitions"],
                "transition counts",
                "Observed transitions (dots) against counts replicated from the posterior "
                f"(bars: {report.transitions.ci:.0%} predictive interval, line: median), by the "
                "state at the next observation and the length of the interval between them.",
            )
        )
    if "ppc_prevalence" in figs:
        parts.append(
            _img(
                figs["ppc_prevalence"],
                "prevalence by wave",
                "Share of respondents in each state at each wave (dots) against the share "
                "expected from their first observed state (line) with its predictive interval "
                "(shaded; each respondent's states replicated from observation to observation).",
            )
        )
    if "ppc_markov" in figs:
        parts.append(
            _img(
                figs["ppc_markov"],
                "Markov assumption",
                "Consecutive triples of observations: the share of triples ending in each state "
                "given their first two states (dots) against the shares replicated from the "
                f"posterior (bars: {report.markov.ci:.0%} predictive interval). Under a Markov "
                "model the first state does not matter given the second; a population of "
                "stayers and movers shows as more stays after a stay and more moves after a move.",
            )
        )
    if "ppc_pearson" in figs:
        r = report.pearson
        titman = f", Titman's asymptotic p {r.p:.2g}" if math.isfinite(r.p) else ""
        parts.append(
            _img(
                figs["ppc_pearson"],
                "Pearson table",
                "The Pearson-type test of R msm's pearson.msm (Aguirre-Hernandez and Farewell "
                "2002): intervals grouped by the observation time ending them and by their "
                "length, observed against expected transitions from each state (cells: "
                "observed/expected; colour: Pearson residual). At the posterior mean the "
                f"statistic is {r.statistic:.1f} with msm's chi-square p between "
                f"{r.p_lower:.2g} and {r.p_upper:.2g}{titman} (treating the posterior mean "
                "as an estimate); the check is the posterior predictive p-value: replicated "
                "panels were at least as discrepant as the observed one in "
                f"{100 * r.ppp:.1f}% of the draws.",
            )
        )
    if "ppc_discrepancy" in figs:
        parts.append(
            _img(
                figs["ppc_discrepancy"],
                "discrepancy",
                "Chi-square discrepancy of replicated vs observed data, one point per posterior "
                "draw; the p-value is the share of points above the diagonal.",
            )
        )
    for label, r in (
        ("Transition counts", report.transitions),
        ("Prevalence", report.prevalence),
        ("Markov assumption", report.markov),
        ("Pearson table", report.pearson),
    ):
        for n in r.notes if r is not None else []:
            parts.append(_note(f"{label}: {n}."))
    for c in report.checks:
        if c.name.startswith("ppc") and c.passed is None:
            parts.append(_note(f"{c.label}: skipped ({c.detail})."))
    if report.sensitivity is not None:
        parts += ["<h2 id='priors'>Prior sensitivity</h2>", _sensitivity_table(report)]
    parts += [
        "<h2 id='summaries'>Key posterior summaries</h2>",
        _summaries(tree, ci),
        "<h2 id='trace'>Traces</h2>",
        _img(
            figs["trace"],
            "trace plots",
            "Draws of each sampled parameter by chain; well-mixed chains overlap.",
        ),
        "<h2 id='provenance'>Provenance</h2>",
        "<section id='provenance-block'>",
        _provenance(tree, None if fit_path is None else str(fit_path)),
        "</section>",
        f"<footer>Generated by markov-migration {_e(__version__)} on "
        f"{_e(datetime.now(UTC).isoformat(timespec='seconds'))}.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def write_report(html_text: str, path: str | Path, force: bool = False) -> Path:
    """Write the report atomically (refusing to overwrite without ``force``)."""
    from markov_migration.io import atomic_output

    path = Path(path)
    with atomic_output(path, force) as tmp:
        tmp.write_text(html_text, encoding="utf-8")
    return path

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

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import xarray as xr

from markov_migration.defaults import CI_PROB, THRESHOLDS
from markov_migration.plots import html as h
from markov_migration.plots.check_figures import figures
from markov_migration.results.checks import CheckReport


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
        cells = [
            h.cell(c.label, "l"),
            h.cell(value),
            h.cell(c.threshold, "l"),
            h.cell(c.status, cls),
        ]
        cells.append(h.cell(c.detail, "l"))
        rows.append(h.row(cells, "fail" if cls == "fail" else ""))
    left = ("check", "passes when", "detail")
    return h.table(h.head("check", "value", "passes when", "status", "detail", left=left), rows)


def _convergence_table(report: CheckReport) -> str:
    ess_min = THRESHOLDS["ess_per_chain_min"] * report.n_chains
    rows = []
    for _, r in report.convergence.iterrows():
        cells = [h.cell(r["parameter"], "l"), h.cell(h.fmt(r["mean"])), h.cell(h.fmt(r["sd"]))]
        cells.append(
            h.cell(f"{r['rhat']:.3f}", "" if r["rhat"] < THRESHOLDS["rhat_max"] else "bad")
        )
        for col in ("ess_bulk", "ess_tail"):
            cells.append(h.cell(f"{r[col]:.0f}", "" if r[col] >= ess_min else "bad"))
        cells.append(h.cell(h.fmt(r["mcse_mean"], 2)))
        rows.append(h.row(cells))
    head = h.head(
        "parameter",
        "mean",
        "sd",
        "R-hat",
        "bulk ESS",
        "tail ESS",
        "MCSE of mean",
        left=("parameter",),
    )
    return h.table(head, rows)


def _sensitivity_table(report: CheckReport) -> str:
    """Power-scaling sensitivity of every parameter, flagged rows marked."""
    table = report.sensitivity
    rows = []
    for _, r in table.iterrows():
        flag = str(r["flag"])
        observed = "" if not math.isfinite(float(r["observed"])) else f"{r['observed']:,.0f}"
        rows.append(
            h.row(
                [
                    h.cell(r["parameter"], "l"),
                    h.cell(f"{r['prior']:.3f}", "bad" if flag == "prior-data conflict" else ""),
                    h.cell(f"{r['likelihood']:.3f}", "bad" if flag else ""),
                    h.cell(observed),
                    h.cell(flag or "-", "l"),
                ]
            )
        )
    head = h.head("parameter", "prior", "likelihood", "moves observed", "flag",
                 left=("parameter", "flag"))  # fmt: skip
    intro = (
        "<p>Power-scaling sensitivity (Kallioinen et al. 2024; ArviZ <code>psense</code>): how "
        "much each parameter's posterior changes when the prior, or the likelihood, is raised "
        "to a power near 1. Likelihood sensitivity below 0.05 means the posterior is mostly "
        "the prior (<b>prior-dominated</b>: a transition never or rarely observed); both above "
        "0.05 a <b>prior-data conflict</b>.</p>"
    )
    return intro + h.table(head, rows)


def _matrix_table(summary: xr.Dataset, hide_zero: bool, digits: int = 3) -> str:
    states = [str(s) for s in summary["from_state"].values]
    head = h.row(["<th class='l'>from \\ to</th>"] + [f"<th>{h.esc(s)}</th>" for s in states])
    rows = []
    for a in states:
        cells = [f"<th class='l'>{h.esc(a)}</th>"]
        for b in states:
            cell = summary.sel(from_state=a, to_state=b)
            mean, sd = float(cell["mean"]), float(cell["sd"])
            if math.isnan(mean) or (hide_zero and mean == 0 and (math.isnan(sd) or sd == 0)):
                cells.append(h.cell("·", "zero"))
                continue
            ci = h.interval(float(cell["lower"]), float(cell["upper"]), digits)
            cells.append(h.cell(f"{h.fmt(mean, digits)}<br>{ci}", raw=True))
        rows.append(h.row(cells))
    return h.table(head, rows)


def _state_table(summary: xr.Dataset, unit: str) -> str:
    rows = []
    for s in summary["state"].values:
        cell = summary.sel(state=s)
        ci = h.interval(float(cell["lower"]), float(cell["upper"]))
        cells = [
            h.cell(s, "l"),
            h.cell(h.fmt(float(cell["mean"]))),
            h.cell(h.fmt(float(cell["median"]))),
        ]
        rows.append(h.row([*cells, h.cell(ci, raw=True)]))
    pct = f"{summary.attrs.get('ci_prob', CI_PROB):.0%}"
    return h.table(
        h.head("state", f"mean ({unit})", "median", f"{pct} interval", left=("state",)), rows
    )


def _note(text: str) -> str:
    return f"<p class='note'>{h.esc(text)}</p>"


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
        out.append(f"<h4>{h.esc(label)}</h4>" + table(part.drop_vars(["_key", *extra])))
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
        out.append(f"<h3>Transition intensities Q (moves per person per {h.esc(one)})</h3>")
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
    out.append(f"<h3>{h.esc(title)}</h3>")
    out.append(
        _note(
            f"Probability of being in the column state 1 {one} after being in the row state "
            f"(posterior mean, {pct} interval)."
        )
    )
    out.extend(_per_group(p1, lambda d: _matrix_table(d, hide_zero=False)))
    soj = summarize(tree, "sojourn", ci=ci)
    out.append(f"<h3>Mean sojourn time ({h.esc(unit)})</h3>")
    out.extend(_per_group(soj, lambda d: _state_table(d, unit)))
    out.extend(_note(n) for n in notes(soj))
    try:
        pas = summarize(tree, "passage", ci=ci)
    except InputError:
        pas = None
    if pas is not None:
        target = pas.attrs.get("to", "")
        out.append(f"<h3>Expected time until first reaching {h.esc(target)} ({h.esc(unit)})</h3>")
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
    dl = "".join(f"<dt>{h.esc(k)}</dt><dd>{h.esc(v)}</dd>" for k, v in items)
    vrows = [h.row([h.cell(k, "l"), h.cell(v, "l")]) for k, v in sorted(versions.items())]
    return (
        f"<dl class='prov'>{dl}</dl>"
        f"<h3>Sampler settings</h3><pre>{h.esc(settings)}</pre>"
        "<h3>Library versions</h3>"
        + h.table(h.head("library", "version", left=("library", "version")), vrows)
        + f"<h3>Model file</h3><pre>{h.esc(a.get('model_text', ''))}</pre>"
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
            f"{h.esc(', '.join(c.name for c in failed))}</div>"
        )
    else:
        skipped = [c.name for c in report.checks if c.passed is None]
        extra = f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else ""
        verdict = f"<div class='verdict ok' id='verdict'>All checks passed{h.esc(extra)}</div>"
    states = ", ".join(report.states)
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Fit report: {h.esc(name)}</title><style>{h.CSS}</style></head><body><main>",
        f"<h1>Fit report: {h.esc(name)}</h1>",
        f"<p class='sub'>{h.esc(fit_path or '')} · {report.n_chains} chains × {report.n_draws} draws"
        f" · states: {h.esc(states)} · fitted {h.esc(a.get('created_at', ''))}</p>",
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
            h.img(
                figs["ppc_transitions"],
                "transition counts",
                "Observed transitions (dots) against counts replicated from the posterior "
                f"(bars: {report.transitions.ci:.0%} predictive interval, line: median), by the "
                "state at the next observation and the length of the interval between them.",
            )
        )
    if "ppc_prevalence" in figs:
        parts.append(
            h.img(
                figs["ppc_prevalence"],
                "prevalence by wave",
                "Share of respondents in each state at each wave (dots) against the share "
                "expected from their first observed state (line) with its predictive interval "
                "(shaded; each respondent's states replicated from observation to observation).",
            )
        )
    if "ppc_markov" in figs:
        parts.append(
            h.img(
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
            h.img(
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
            h.img(
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
        h.img(
            figs["trace"],
            "trace plots",
            "Draws of each sampled parameter by chain; well-mixed chains overlap.",
        ),
        "<h2 id='provenance'>Provenance</h2>",
        "<section id='provenance-block'>",
        _provenance(tree, None if fit_path is None else str(fit_path)),
        "</section>",
        f"<footer>Generated by markov-migration {h.esc(__version__)} on "
        f"{h.esc(datetime.now(UTC).isoformat(timespec='seconds'))}.</footer>",
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

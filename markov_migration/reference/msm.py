"""Maximum-likelihood fits with R's ``msm`` package, for benchmarks and reference files.

Runs ``Rscript`` in a subprocess; needs R with the ``msm`` package (Debian:
``r-cran-msm``). :func:`msm_available` tells whether it is there.

The tests do not call msm live: they compare against JSON files written by the
R scripts in ``tests/results/`` (see its README). This module is the tooling
both share: :func:`msm_frame` writes a panel the way msm reads it (the input
CSVs there are written with it), :func:`parse_msm_output` reads the JSON the
scripts print. The benchmarks (``benchmarks/bench_fit.py``,
``bench_covariates.py``) time :func:`fit_msm` live. It lives in the package's
top layer (nothing else imports it) so the benchmarks can import it without the
tests being a package on their path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_SCRIPT = r"""
suppressPackageStartupMessages(library(msm))
args <- commandArgs(trailingOnly = TRUE)
t0 <- proc.time()[["elapsed"]]
dat <- read.csv(args[1])
q0 <- as.matrix(read.csv(args[2], header = FALSE))
dimnames(q0) <- NULL
source(args[3])  # covariates, baseline (NULL without covariates), factor levels
fit <- msm(state ~ time, subject = id, data = dat, qmatrix = q0, gen.inits = TRUE,
           covariates = covariates, center = TRUE,
           control = list(fnscale = max(1, nrow(dat) / 2), maxit = 10000, reltol = 1e-12))
t1 <- proc.time()[["elapsed"]]
num <- function(x) ifelse(is.na(x), "null", sprintf("%.17g", x))
row_json <- function(r) paste0("[", paste(num(r), collapse = ","), "]")
mat <- function(m) paste0("[", paste(apply(m, 1, row_json), collapse = ","), "]")
q <- if (is.null(covariates)) qmatrix.msm(fit, ci = "none") else qmatrix.msm(fit, covariates = baseline, ci = "none")
hr <- "[]"
if (!is.null(covariates)) {
  h <- hazard.msm(fit)
  rows <- c()
  for (term in names(h)) {
    m <- h[[term]]
    for (i in seq_len(nrow(m))) {
      rows <- c(rows, sprintf("{\"term\":\"%s\",\"transition\":\"%s\",\"hr\":%s,\"lower\":%s,\"upper\":%s}",
                              term, rownames(m)[i], num(m[i, 1]), num(m[i, 2]), num(m[i, 3])))
    }
  }
  hr <- paste0("[", paste(rows, collapse = ","), "]")
}
converged <- is.null(fit$opt$convergence) || fit$opt$convergence == 0
cat(paste0("{\"Q\":", mat(unname(as.matrix(q))), ",\"loglik\":", num(-fit$minus2loglik / 2),
           ",\"seconds\":", t1 - t0, ",\"converged\":", tolower(as.character(converged)),
           ",\"hazard\":", hr, "}"))
"""


@dataclass
class MsmCovariate:
    """A covariate for :func:`fit_msm`.

    Attributes
    ----------
    name : str
        Column of the panel (a syntactic R name).
    kind : {"numeric", "categorical"}
    transitions : list of (int, int)
        Transitions (0-based from, to) it acts on.
    reference : str, optional
        Reference level of a categorical covariate.
    """

    name: str
    kind: str
    transitions: list[tuple[int, int]]
    reference: str | None = None


def _r_string(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def covariate_r_code(covariates: list[MsmCovariate] | None, baseline: dict[str, Any] | None) -> str:
    """R code defining ``covariates`` (per-transition formulas) and ``baseline``.

    It expects the panel as ``dat`` (turns categorical columns into factors
    with the reference level first).
    """
    if not covariates:
        return "covariates <- NULL\nbaseline <- NULL\n"
    lines = []
    for c in covariates:
        if c.kind == "categorical":
            lines.append(f"dat${c.name} <- factor(as.character(dat${c.name}))")
            if c.reference is not None:
                lines.append(
                    f"dat${c.name} <- relevel(dat${c.name}, ref = {_r_string(c.reference)})"
                )
    terms: dict[tuple[int, int], list[str]] = {}
    for c in covariates:
        for pair in c.transitions:
            terms.setdefault(pair, []).append(c.name)
    formulas = [
        f'"{r + 1}-{s + 1}" = ~ {" + ".join(names)}' for (r, s), names in sorted(terms.items())
    ]
    lines.append(f"covariates <- list({', '.join(formulas)})")
    values = []
    for c in covariates:
        v = (baseline or {}).get(c.name)
        if v is None:
            v = c.reference if c.kind == "categorical" else 0.0
        values.append(f"{c.name} = {_r_string(v) if c.kind == 'categorical' else repr(float(v))}")
    lines.append(f"baseline <- list({', '.join(values)})")
    return "\n".join(lines) + "\n"


@dataclass
class MsmFit:
    """Result of an msm maximum-likelihood fit.

    Attributes
    ----------
    Q : ndarray (K, K)
        MLE of the generator (moves per time unit); with covariates, at the
        ``baseline`` covariate values given to :func:`fit_msm`.
    loglik : float
        Maximised log-likelihood.
    seconds : float
        Time msm took inside R (excluding R start-up).
    wall_seconds : float
        Whole-process time, R start-up and file reading included.
    converged : bool
    hazard : pandas.DataFrame
        With covariates: msm's ``hazard.msm`` table, one row per (term,
        transition) with columns ``term`` (e.g. ``"reasonpolitics"``, ``"age"``),
        ``from``, ``to`` (0-based state indices), ``hr``, ``lower``, ``upper``
        (95% CI). Empty without covariates.
    """

    Q: np.ndarray
    loglik: float
    seconds: float
    wall_seconds: float
    converged: bool
    hazard: pd.DataFrame = field(default_factory=pd.DataFrame)


def msm_available() -> bool:
    """True when ``Rscript`` exists and can load ``msm``."""
    if shutil.which("Rscript") is None:
        return False
    try:
        res = subprocess.run(
            ["Rscript", "-e", "suppressPackageStartupMessages(library(msm))"],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def fit_msm(
    panel: pd.DataFrame,
    allowed: np.ndarray,
    timeout: float = 1800,
    *,
    covariates: list[MsmCovariate] | None = None,
    baseline: dict[str, Any] | None = None,
) -> MsmFit:
    """Fit a continuous-time Markov model by maximum likelihood with msm.

    Parameters
    ----------
    panel : DataFrame
        Columns ``id``, ``time`` (time units) and ``state`` (0-based state
        index), sorted by id and time, plus a column per covariate.
    allowed : ndarray of bool (K, K)
        Allowed direct transitions.
    timeout : float
        Seconds before giving up.
    covariates : list of MsmCovariate, optional
        Log-linear covariates on chosen transitions (msm's ``covariates =
        list("1-2" = ~ x + z, ...)``; msm centres them, which does not change
        hazard ratios).
    baseline : dict, optional
        Covariate values at which ``Q`` is reported (default: reference
        levels and 0).

    Returns
    -------
    MsmFit
    """
    q0 = np.where(allowed, 0.1, 0.0)
    np.fill_diagonal(q0, 0.0)
    df, covariates = msm_frame(panel, covariates)
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "panel.csv"
        q_path = Path(tmp) / "q0.csv"
        script = Path(tmp) / "fit.R"
        cov_script = Path(tmp) / "covariates.R"
        df.to_csv(data_path, index=False, float_format=FLOAT_FORMAT)
        np.savetxt(q_path, q0, delimiter=",")
        script.write_text(_SCRIPT)
        cov_script.write_text(covariate_r_code(covariates, baseline))
        start = time.perf_counter()
        res = subprocess.run(
            ["Rscript", str(script), str(data_path), str(q_path), str(cov_script)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        wall = time.perf_counter() - start
    if res.returncode != 0:
        last = res.stderr.strip().splitlines()[-1] if res.stderr else res.returncode
        raise RuntimeError(f"msm failed: {last}")
    return parse_msm_output(json.loads(res.stdout.strip().splitlines()[-1]), wall_seconds=wall)


#: printf format of times in the CSVs given to msm (a tenth of a nanosecond of a year).
FLOAT_FORMAT = "%.10f"


def msm_frame(
    panel: pd.DataFrame, covariates: list[MsmCovariate] | None = None
) -> tuple[pd.DataFrame, list[MsmCovariate]]:
    """The panel as msm reads it: ids and states numbered from 1.

    Parameters
    ----------
    panel : DataFrame
        Columns ``id``, ``time`` (time units), ``state`` (0-based state index),
        plus a column per covariate.
    covariates : list of MsmCovariate, optional

    Returns
    -------
    frame : DataFrame
        Columns ``id`` (1, 2, ... in order of appearance), ``time``, ``state``
        (1-based) and the covariates; write it with :data:`FLOAT_FORMAT`.
    covariates : list of MsmCovariate
        The covariates with a categorical one's reference level filled in (the
        first level in sort order, as R's ``factor``).
    """
    df = pd.DataFrame(
        {
            "id": pd.factorize(panel["id"])[0] + 1,
            "time": panel["time"].to_numpy(dtype=float),
            "state": panel["state"].to_numpy(dtype=int) + 1,
        }
    )
    for c in covariates or []:
        df[c.name] = panel[c.name].to_numpy()
    resolved = [
        c if c.kind != "categorical" or c.reference is not None
        else MsmCovariate(c.name, c.kind, c.transitions, sorted(map(str, set(df[c.name])))[0])
        for c in covariates or []
    ]  # fmt: skip
    return df, resolved


def parse_msm_output(out: dict[str, Any], wall_seconds: float = float("nan")) -> MsmFit:
    """An :class:`MsmFit` from the JSON object an msm fit script writes.

    Parameters
    ----------
    out : dict
        Keys ``Q`` (rows of the generator), ``loglik``, ``converged``,
        ``hazard`` (list of ``{term, transition "State i - State j" or "i-j",
        hr, lower, upper}``) and optionally ``seconds``.
    wall_seconds : float
        Whole-process time, if measured (NaN for a committed reference).

    Returns
    -------
    MsmFit
    """
    rows = []
    for h in out["hazard"]:
        frm, to = (int(x) - 1 for x in h["transition"].replace("State", "").split("-"))
        rows.append({"term": h["term"], "from": frm, "to": to, "hr": h["hr"],
                     "lower": h["lower"], "upper": h["upper"]})  # fmt: skip
    return MsmFit(
        np.array(out["Q"], dtype=float),
        float(out["loglik"]),
        float(out.get("seconds", float("nan"))),
        wall_seconds,
        bool(out["converged"]),
        pd.DataFrame(rows, columns=["term", "from", "to", "hr", "lower", "upper"]),
    )

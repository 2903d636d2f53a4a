"""Maximum-likelihood fits with R's ``msm`` package, for cross-checks and benchmarks.

Runs ``Rscript`` in a subprocess; needs R with the ``msm`` package (Debian:
``r-cran-msm``). :func:`msm_available` tells whether it is there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

_SCRIPT = r"""
suppressPackageStartupMessages(library(msm))
args <- commandArgs(trailingOnly = TRUE)
t0 <- proc.time()[["elapsed"]]
dat <- read.csv(args[1])
q0 <- as.matrix(read.csv(args[2], header = FALSE))
dimnames(q0) <- NULL
fit <- msm(state ~ time, subject = id, data = dat, qmatrix = q0, gen.inits = TRUE,
           control = list(fnscale = max(1, nrow(dat) / 2), maxit = 10000, reltol = 1e-12))
t1 <- proc.time()[["elapsed"]]
q <- qmatrix.msm(fit, ci = "none")
out <- list(Q = unname(as.matrix(q)), loglik = -fit$minus2loglik / 2,
            seconds = t1 - t0, converged = is.null(fit$opt$convergence) || fit$opt$convergence == 0)
cat(paste0("{\"Q\":[", paste(apply(out$Q, 1, function(r) paste0("[", paste(sprintf("%.17g", r), collapse = ","), "]")), collapse = ","),
    "],\"loglik\":", sprintf("%.17g", out$loglik), ",\"seconds\":", out$seconds,
    ",\"converged\":", tolower(as.character(out$converged)), "}"))
"""


@dataclass
class MsmFit:
    """Result of an msm maximum-likelihood fit.

    Attributes
    ----------
    Q : ndarray (K, K)
        MLE of the generator (moves per time unit).
    loglik : float
        Maximised log-likelihood.
    seconds : float
        Time msm took inside R (excluding R start-up).
    wall_seconds : float
        Whole-process time, R start-up and file reading included.
    converged : bool
    """

    Q: np.ndarray
    loglik: float
    seconds: float
    wall_seconds: float
    converged: bool


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


def fit_msm(panel: pd.DataFrame, allowed: np.ndarray, timeout: float = 1800) -> MsmFit:
    """Fit a continuous-time Markov model by maximum likelihood with msm.

    Parameters
    ----------
    panel : DataFrame
        Columns ``id``, ``time`` (time units) and ``state`` (0-based state
        index), sorted by id and time.
    allowed : ndarray of bool (K, K)
        Allowed direct transitions.
    timeout : float
        Seconds before giving up.

    Returns
    -------
    MsmFit
    """
    q0 = np.where(allowed, 0.1, 0.0)
    np.fill_diagonal(q0, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "panel.csv"
        q_path = Path(tmp) / "q0.csv"
        script = Path(tmp) / "fit.R"
        df = pd.DataFrame(
            {
                "id": pd.factorize(panel["id"])[0] + 1,
                "time": panel["time"].to_numpy(dtype=float),
                "state": panel["state"].to_numpy(dtype=int) + 1,
            }
        )
        df.to_csv(data_path, index=False, float_format="%.10f")
        np.savetxt(q_path, q0, delimiter=",")
        script.write_text(_SCRIPT)
        start = time.perf_counter()
        res = subprocess.run(
            ["Rscript", str(script), str(data_path), str(q_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        wall = time.perf_counter() - start
    if res.returncode != 0:
        raise RuntimeError(f"msm failed: {res.stderr.strip().splitlines()[-1] if res.stderr else res.returncode}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return MsmFit(np.array(out["Q"]), float(out["loglik"]), float(out["seconds"]), wall, bool(out["converged"]))

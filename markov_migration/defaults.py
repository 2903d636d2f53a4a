"""One home for the package's defaults: sample dims, interval probability, thresholds.

In the manner of ``arviz_base.rcParams`` (``data.sample_dims``, ``stats.ci_prob``):
every module that needs one of these values imports it from here, so a change is made
once. Values are plain constants; nothing here imports anything from the package.
"""

from __future__ import annotations

import os

#: The dims that index posterior draws in fit files and derived datasets.
SAMPLE_DIMS: tuple[str, str] = ("chain", "draw")

#: Default probability of the equal-tailed credible interval in summaries and tables.
CI_PROB: float = 0.95

#: Convergence and predictive-check thresholds of ``check`` (Vehtari et al. 2021 for
#: R-hat and ESS; E-BFMI after Betancourt 2016): R-hat below ``rhat_max``, bulk and tail
#: ESS at least ``ess_per_chain_min`` per chain, at most ``divergences_max`` divergent
#: transitions, E-BFMI of every chain above ``ebfmi_min``, predictive p-values inside
#: ``[ppp_min, 1 - ppp_min]``.
THRESHOLDS: dict[str, float] = {
    "rhat_max": 1.01,
    "ess_per_chain_min": 100,
    "divergences_max": 0,
    "ebfmi_min": 0.3,
    "ppp_min": 0.01,
}

#: Default prior sd of a covariate's log odds ratio on a misclassification probability
#: (``[covariates.NAME] misclassification``; R msm's ``misccovariates``): Normal(0, 1),
#: odds ratios of 0.14-7.1 with 95% prior probability, as the log hazard ratios' default.
MISCLASSIFICATION_COVARIATE_SD: float = 1.0

#: Default number of posterior draws used by the predictive checks.
PPC_DRAWS: int = 500

#: Sampler defaults of ``fit``, ``backtest`` and ``demo``: chains, draws kept per chain,
#: warm-up draws per chain, nutpie's target acceptance. docs/performance.md (lever 2)
#: has the evidence for keeping 1,000 warm-up draws: shorter warm-ups gave more ESS per
#: CPU second on migration5 but failed the checks on the host-country model.
CHAINS: int = 4
DRAWS: int = 1000
TUNE: int = 1000
TARGET_ACCEPT: float = 0.8

#: Default number of projection draws (posterior draws, evenly spaced) of ``project``.
PROJECTION_DRAWS: int = 1000

#: Threads that compute a latent fit's per-draw history log-likelihoods for its fit
#: file (one per core, at most 4; :func:`markov_migration.inference.latent_draws.history_loglik_draws`).
LOGLIK_THREADS: int = min(4, os.cpu_count() or 1)

#: Largest number of survey waves found by gap clustering of observation times before
#: falling back to bins (see :func:`markov_migration.inputs.waves.wave_bins`).
MAX_WAVES: int = 12
#: Number of equal-count bins when observation times do not cluster into waves.
QUANTILE_WAVES: int = 6
#: A gap between consecutive distinct observation times wider than this share of the
#: panel's time span starts a new wave.
WAVE_GAP_SHARE: float = 0.1

#: Times and cut points closer than this (in the model's time unit) are treated as equal.
TIME_TOL: float = 1e-9

#: Central interval probabilities of projections: the quantile table's columns and the
#: fan charts' bands (widest lightest).
PROJECTION_INTERVALS: tuple[float, ...] = (0.5, 0.8, 0.95)
#: Probability of the interval in projection summaries (one line or table cell per time).
PROJECTION_SUMMARY_PROB: float = 0.8

#: PSIS-LOO (``compare``) refuses fits with fewer posterior draws (all chains) than this:
#: the Pareto tail fit needs several draws in its tail (ArviZ fails below 25 in all) and
#: estimates from fewer than about a hundred draws mean nothing.
LOO_MIN_DRAWS: int = 100
#: ... and notes that estimates from fewer draws than this are noisy.
LOO_FEW_DRAWS: int = 400

#: ``validate`` and ``check`` warn about a period (of a model with ``periods``) observed
#: for fewer person-years than this, summed over respondents. Why 100: at 0.2 moves a
#: year per transition (the default prior's median exit rate), 100 person-years give about 20
#: expected moves per transition, so the data pin a period's log-intensity to about
#: 1/sqrt(20) = 0.22, well inside the period prior's sd of 1; with much less the
#: period's intensities are mostly prior-driven.
PERIOD_MIN_EXPOSURE: float = 100.0

#: ``project --exit-rate default``: persons leaving the population (deaths) per person
#: and year, every state. A working-age level: Russia's death rates at ages 25-44 were
#: 3.3-7.3 per 1,000 a year in 1999 (Rosstat, both sexes) and working-age women's 2.1 per
#: 1,000 in 2018 (Ministry of Health); the 2022 emigrants are mostly 25-44, urban and
#: university-educated, and live in lower-mortality host countries, so 3 per 1,000.
#: docs/projection.md gives the sources and the ageing series ``working-age-2022``.
#: Moves out of scope (e.g. naturalisation) are not in it.
DEFAULT_EXIT_RATE: float = 0.003

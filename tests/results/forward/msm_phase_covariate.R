# msm log-likelihood of a phase-type (Coxian) model with a covariate on the
# intensities, on cav with sex (cav_sex.csv, written by msm_misc_covariate.R),
# at fixed parameters. msm's phase.states expands the qmatrix and treats the
# model as a hidden Markov model on the phases; covariates then act on the
# intensities of the EXPANDED generator, one log hazard ratio per expanded
# transition (covinits in msm's row-major order of the expanded qmatrix).
# markov-migration's convention (docs/observation-models.md) is msm's with the
# effect of an observed transition r -> s shared by every phase exit r_k -> s
# and none on the progression r_1 -> r_2: the covinits below say exactly that.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "common.R"))
cav <- read.csv(file.path(here(), "cav_sex.csv"))
twoway4.q <- rbind(c(0, 0.25, 0, 0.25), c(0.166, 0, 0.166, 0.166),
                   c(0, 0.25, 0, 0.25), c(0, 0, 0, 0))
inits <- list(list(trans = 0.5, exit = rbind(c(0.2, 0.05), c(0.1, 0.02))))
# log hazard ratios of sex = 1 on the observed transitions
beta_obs <- c("1-2" = 0.5, "1-4" = -0.4, "2-1" = 0.3, "2-3" = 0.0, "2-4" = 0.2,
              "3-2" = -0.25, "3-4" = 0.35)
cases <- list()
for (dx in c(FALSE, TRUE)) {
  for (grp in c("all", "returns")) {
    b <- beta_obs
    if (grp == "returns") b[names(b) != "1-2"] <- 0  # one effect: well -> mild only
    # expanded transitions (row-major): W1-W2, W1-mild, W1-dead, W2-mild, W2-dead,
    # mild-W1, mild-severe, mild-dead, severe-mild, severe-dead
    expanded <- c(0, b["1-2"], b["1-4"], b["1-2"], b["1-4"],
                  b["2-1"], b["2-3"], b["2-4"], b["3-2"], b["3-4"])
    fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = twoway4.q,
               phase.states = 1, phase.inits = inits, covariates = ~sex,
               covinits = list(sex = unname(expanded)), center = FALSE,
               deathexact = if (dx) TRUE else NULL, fixedpars = TRUE)
    q0 <- unclass(qmatrix.msm(fit, ci = "none", covariates = list(sex = 0)))
    q1 <- unclass(qmatrix.msm(fit, ci = "none", covariates = list(sex = 1)))
    cases[[length(cases) + 1]] <- list(
      name = paste0("phase_well_sex_", grp, if (dx) "_deathexact" else ""),
      phase_state = 1L, n_phases = 2L, deathexact = if (dx) 4L else 0L,
      hidden_states = rownames(q0), hidden_qmatrix = rows(q0),
      hidden_qmatrix_sex1 = rows(q1),
      log_hazard_ratio = as.list(b), expanded_log_hazard_ratio = unname(expanded),
      initprobs = unname(fit$hmodel$initprobs[1, ]),
      minus2loglik = fit$minus2loglik)
  }
}
write_result("msm_phase_covariate", cases, list(covariate_data = "cav_sex.csv"))

# msm log-likelihood of the manual's misclassification model on cav with a binary
# covariate (sex) on the misclassification probabilities (misccovariates = ~sex: for
# true state r, log(e_rs / e_rr) = alpha_rs + beta_rs sex, the record's own sex), at
# fixed parameters (center = FALSE, so the baseline is sex = 0). Also one case with sex
# on the intensities too. Reads cav_sex.csv (written by msm_misc_covariate.R); writes
# msm_misccov.json, with msm's misclassification matrix at sex = 0 and sex = 1.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "common.R"))
cav <- read.csv(file.path(here(), "cav_sex.csv"))
oneway4.q <- rbind(c(0, 0.148, 0, 0.0171), c(0, 0, 0.202, 0.081),
                   c(0, 0, 0, 0.126), c(0, 0, 0, 0))
ematrix <- rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0),
                 c(0, 0.1, 0, 0), c(0, 0, 0, 0))
ip <- c(0.7, 0.2, 0.1, 0)
# log odds ratios of sex = 1 on well->mild, mild->well, mild->severe, severe->mild
# (msm's order: by true state, then recorded state)
misc_beta <- c(0.5, -0.7, 0.3, 0.9)
beta_q <- c(0.4, -0.3, 0.25, 0.1, -0.5)
emat_at <- function(fit, sex) {
  e <- ematrix.msm(fit, covariates = list(sex = sex), ci = "none")
  rows(unclass(e))
}
cases <- list()
for (dx in c(FALSE, TRUE)) {
  for (qcov in c(FALSE, TRUE)) {
    args <- list(formula = state ~ years, subject = quote(PTNUM), data = cav,
                 qmatrix = oneway4.q, ematrix = ematrix, initprobs = ip,
                 misccovariates = ~sex, misccovinits = list(sex = misc_beta),
                 center = FALSE, fixedpars = TRUE)
    if (dx) args$deathexact <- 4
    if (qcov) {
      args$covariates <- ~sex
      args$covinits <- list(sex = beta_q)
    }
    fit <- do.call(msm, args)
    cases[[length(cases) + 1]] <- list(
      name = paste0("misccov_sex", if (qcov) "_q" else "", if (dx) "_deathexact" else ""),
      deathexact = if (dx) 4L else 0L, initprobs = ip,
      qmatrix = rows(oneway4.q), ematrix = rows(ematrix),
      misc = list(c(1, 2), c(2, 1), c(2, 3), c(3, 2)), log_odds_ratio = misc_beta,
      transitions = if (qcov) list(c(1, 2), c(1, 4), c(2, 3), c(2, 4), c(3, 4)) else list(),
      log_hazard_ratio = if (qcov) beta_q else numeric(0),
      ematrix_sex0 = emat_at(fit, 0), ematrix_sex1 = emat_at(fit, 1),
      minus2loglik = fit$minus2loglik)
  }
}
write_result("msm_misccov", cases, list(covariate_data = "cav_sex.csv"))

# msm log-likelihood of the manual's misclassification model on cav with a binary
# covariate (sex) on the intensities, at fixed parameters (hazard ratios from covinits,
# center = FALSE so the baseline is sex = 0). Writes cav_sex.csv (cav.csv plus sex)
# for the Python side and msm_misc_covariate.json.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "common.R"))
cav <- cav[!is.na(cav$sex), ]
write.csv(cav[, c("PTNUM", "years", "state", "sex")], file.path(here(), "cav_sex.csv"),
          row.names = FALSE)
oneway4.q <- rbind(c(0, 0.148, 0, 0.0171), c(0, 0, 0.202, 0.081),
                   c(0, 0, 0, 0.126), c(0, 0, 0, 0))
ematrix <- rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0),
                 c(0, 0.1, 0, 0), c(0, 0, 0, 0))
ip <- c(0.7, 0.2, 0.1, 0)
# log hazard ratios of sex = 1 on 1-2, 1-4, 2-3, 2-4, 3-4 (msm's transition order)
beta_all <- c(0.4, -0.3, 0.25, 0.1, -0.5)
cases <- list()
for (dx in c(TRUE, FALSE)) {
  fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = oneway4.q,
             ematrix = ematrix, initprobs = ip, covariates = ~sex,
             covinits = list(sex = beta_all), center = FALSE,
             deathexact = if (dx) 4 else NULL, fixedpars = TRUE)
  cases[[length(cases) + 1]] <- list(
    name = paste0("misc_sex_all", if (dx) "_deathexact" else ""),
    deathexact = if (dx) 4L else 0L, initprobs = ip,
    qmatrix = rows(oneway4.q), ematrix = rows(ematrix),
    transitions = list(c(1, 2), c(1, 4), c(2, 3), c(2, 4), c(3, 4)),
    log_hazard_ratio = beta_all, minus2loglik = fit$minus2loglik)
}
# sex on two transitions only (transition-specific covariates)
fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = oneway4.q,
           ematrix = ematrix, initprobs = ip,
           covariates = list("1-2" = ~sex, "2-3" = ~sex),
           covinits = list(sex = c(0.6, -0.4)), center = FALSE, fixedpars = TRUE)
cases[[length(cases) + 1]] <- list(
  name = "misc_sex_two", deathexact = 0L, initprobs = ip,
  qmatrix = rows(oneway4.q), ematrix = rows(ematrix),
  transitions = list(c(1, 2), c(2, 3)), log_hazard_ratio = c(0.6, -0.4),
  minus2loglik = fit$minus2loglik)
write_result("msm_misc_covariate", cases, list(covariate_data = "cav_sex.csv"))

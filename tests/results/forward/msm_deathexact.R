# msm log-likelihood with exact death times (deathexact = 4, obstype 3) on cav,
# at fixed intensities. Non-hidden model: msm conditions on the first state.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "common.R"))
cav <- read_cav()
# the msm manual's starting values for the well <-> mild <-> severe -> death model
twoway4.q <- rbind(c(-0.5, 0.25, 0, 0.25), c(0.166, -0.498, 0.166, 0.166),
                   c(0, 0.25, -0.5, 0.25), c(0, 0, 0, 0))
other.q <- rbind(c(0, 0.12, 0, 0.03), c(0.2, 0, 0.3, 0.07),
                 c(0, 0.11, 0, 0.4), c(0, 0, 0, 0))
cases <- list()
for (nm in c("twoway4", "other")) {
  q <- if (nm == "twoway4") twoway4.q else other.q
  for (dx in c(TRUE, FALSE)) {
    fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = q,
               deathexact = if (dx) 4 else NULL, fixedpars = TRUE)
    cases[[length(cases) + 1]] <- list(
      name = paste0(nm, if (dx) "_deathexact" else "_panel"),
      deathexact = if (dx) 4L else 0L,
      qmatrix = rows(q), minus2loglik = fit$minus2loglik)
  }
}
# msm's MLE with deathexact = 4 (the manual reports -2 log L = 3968.8)
mle <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = twoway4.q, deathexact = 4)
qm <- unclass(qmatrix.msm(mle, ci = "none"))
diag(qm) <- 0
cases[[length(cases) + 1]] <- list(name = "mle_deathexact", deathexact = 4L,
                                   qmatrix = rows(qm), minus2loglik = mle$minus2loglik)
write_result("msm_deathexact", cases)

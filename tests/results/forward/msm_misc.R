# msm log-likelihood of the misclassification model of the msm manual on cav
# (well -> mild -> severe -> death progression; mild recorded as well or severe,
# well recorded as mild, severe recorded as mild), at fixed parameters.
# Hidden model: msm weights the first observation by initprobs.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "common.R"))
cav <- read_cav()
oneway4.q <- rbind(c(0, 0.148, 0, 0.0171), c(0, 0, 0.202, 0.081),
                   c(0, 0, 0, 0.126), c(0, 0, 0, 0))
ematrix <- rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0),
                 c(0, 0.1, 0, 0), c(0, 0, 0, 0))
cases <- list()
for (ip in list(c(1, 0, 0, 0), c(0.7, 0.2, 0.1, 0))) {
  for (dx in c(TRUE, FALSE)) {
    fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = oneway4.q,
               ematrix = ematrix, initprobs = ip,
               deathexact = if (dx) 4 else NULL, fixedpars = TRUE)
    cases[[length(cases) + 1]] <- list(
      name = paste0("misc_init", paste(ip, collapse = "_"), if (dx) "_deathexact" else ""),
      deathexact = if (dx) 4L else 0L, initprobs = ip,
      qmatrix = rows(oneway4.q), ematrix = rows(ematrix),
      minus2loglik = fit$minus2loglik)
  }
}
# the manual's own call: first observations are the true state (obstrue =
# firstobs), msm's default initprobs, deathexact = 4
fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = oneway4.q,
           ematrix = ematrix, deathexact = 4, obstrue = firstobs, fixedpars = TRUE)
ip <- fit$hmodel$initprobs
if (is.matrix(ip)) ip <- ip[1, ]
cases[[length(cases) + 1]] <- list(
  name = "misc_manual_obstrue_firstobs", deathexact = 4L, obstrue = "firstobs",
  initprobs = unname(ip),
  qmatrix = rows(oneway4.q), ematrix = rows(ematrix), minus2loglik = fit$minus2loglik)
write_result("msm_misc", cases)

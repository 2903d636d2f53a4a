# msm log-likelihood of phase-type (Coxian) models on cav at fixed parameters
# (msm's phase.states / phase.inits). The phased state is expanded into
# latent phases of a hidden model; the first record is weighted by msm's
# default initprobs (everyone starts in the first hidden state). The hidden
# generator msm builds is written out as used.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "common.R"))
cav <- read_cav()
twoway4.q <- rbind(c(0, 0.25, 0, 0.25), c(0.166, 0, 0.166, 0.166),
                   c(0, 0.25, 0, 0.25), c(0, 0, 0, 0))
specs <- list(
  list(name = "phase_well", phase = 1,
       inits = list(list(trans = 0.5, exit = rbind(c(0.2, 0.05), c(0.1, 0.02))))),
  list(name = "phase_mild", phase = 2,
       inits = list(list(trans = 0.8,
                         exit = rbind(c(0.3, 0.1), c(0.2, 0.05), c(0.15, 0.1)))))
)
cases <- list()
for (s in specs) {
  for (dx in c(FALSE, TRUE)) {
    fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = twoway4.q,
               phase.states = s$phase, phase.inits = s$inits,
               deathexact = if (dx) TRUE else NULL, fixedpars = TRUE)
    q <- unclass(qmatrix.msm(fit, ci = "none"))
    cases[[length(cases) + 1]] <- list(
      name = paste0(s$name, if (dx) "_deathexact" else ""),
      phase_state = s$phase, n_phases = 2L, deathexact = if (dx) 4L else 0L,
      hidden_states = rownames(q), hidden_qmatrix = rows(q),
      imatrix = rows(unclass(fit$qmodel$imatrix)),
      initprobs = unname(fit$hmodel$initprobs[1, ]),
      minus2loglik = fit$minus2loglik)
  }
}
write_result("msm_phase", cases)

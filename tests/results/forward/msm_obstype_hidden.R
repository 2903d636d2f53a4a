# msm log-likelihood with obstype 2 (exact transition times) in HIDDEN models on
# cav, at fixed parameters. msm's lik.c (calc_p / update_likhidden) uses, for an
# obstype 2 record, the hidden chain's Pmat(..., exacttimes = TRUE):
# T[i, j] = exp(q_ii t) for j == i, exp(q_ii t) q_ij for j != i, then times the
# outcome probability of the record given hidden state j.
# Flags: obstype 2 on every later row of patients with PTNUM %% 3 == 0 whose
# recorded move from the previous row is a direct one of the model's observed
# states (or a repeated state); variant "mixed" also flags every other death
# row obstype 3 (exact entry, as deathexact). Cases:
# * misclassification, the msm manual's model (well -> mild -> severe -> death;
#   mild recorded as well or severe, well and severe recorded as mild), two
#   initprobs;
# * phase.states (Coxian phases of well, of mild) on the twoway4 model, as
#   msm_phase.R (msm's default initprobs: everyone starts in the first hidden state).
# Writes msm_obstype_hidden.json, read by tests/test_obstype_hidden.py.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "common.R"))
cav <- read_cav()
first <- !duplicated(cav$PTNUM)
prev <- c(NA, cav$state[-nrow(cav)])
flags <- function(q, variant) {
  direct <- !first & (prev == cav$state | q[cbind(pmax(prev, 1), cav$state)] > 0)
  ot <- rep(1L, nrow(cav))
  ot[direct & cav$PTNUM %% 3 == 0] <- 2L
  if (variant == "mixed") ot[!first & ot == 1L & cav$state == 4] <- 3L
  ot
}
oneway4.q <- rbind(c(0, 0.148, 0, 0.0171), c(0, 0, 0.202, 0.081),
                   c(0, 0, 0, 0.126), c(0, 0, 0, 0))
ematrix <- rbind(c(0, 0.1, 0, 0), c(0.1, 0, 0.1, 0),
                 c(0, 0.1, 0, 0), c(0, 0, 0, 0))
twoway4.q <- rbind(c(0, 0.25, 0, 0.25), c(0.166, 0, 0.166, 0.166),
                   c(0, 0.25, 0, 0.25), c(0, 0, 0, 0))
cases <- list()
for (variant in c("transition_only", "mixed")) {
  ot <- flags(oneway4.q, variant)
  for (ip in list(c(1, 0, 0, 0), c(0.7, 0.2, 0.1, 0))) {
    fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = oneway4.q,
               ematrix = ematrix, initprobs = ip, obstype = ot, fixedpars = TRUE)
    cases[[length(cases) + 1]] <- list(
      name = paste0("misc_", variant, "_init", paste(ip, collapse = "_")),
      model = "misclassification", variant = variant, initprobs = ip,
      n_obstype2 = sum(ot == 2L), n_obstype3 = sum(ot == 3L),
      qmatrix = rows(oneway4.q), ematrix = rows(ematrix),
      minus2loglik = fit$minus2loglik)
  }
}
phases <- list(
  list(name = "phase_well", phase = 1,
       inits = list(list(trans = 0.5, exit = rbind(c(0.2, 0.05), c(0.1, 0.02))))),
  list(name = "phase_mild", phase = 2,
       inits = list(list(trans = 0.8,
                         exit = rbind(c(0.3, 0.1), c(0.2, 0.05), c(0.15, 0.1)))))
)
for (variant in c("transition_only", "mixed")) {
  ot <- flags(twoway4.q, variant)
  for (s in phases) {
    fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = twoway4.q,
               phase.states = s$phase, phase.inits = s$inits, obstype = ot,
               fixedpars = TRUE)
    q <- unclass(qmatrix.msm(fit, ci = "none"))
    cases[[length(cases) + 1]] <- list(
      name = paste0(s$name, "_", variant), model = "phases", variant = variant,
      phase_state = s$phase, n_phases = 2L,
      n_obstype2 = sum(ot == 2L), n_obstype3 = sum(ot == 3L),
      hidden_states = rownames(q), hidden_qmatrix = rows(q),
      imatrix = rows(unclass(fit$qmodel$imatrix)),
      initprobs = unname(fit$hmodel$initprobs[1, ]),
      minus2loglik = fit$minus2loglik)
  }
}
write_result("msm_obstype_hidden", cases)

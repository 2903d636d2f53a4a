# msm log-likelihood with an obstype column (msm's obstype 1, 2, 3) on cav, at
# fixed intensities. Non-hidden model: msm conditions on the first state.
# obstype 2 (exact transition time, the previous state kept until then):
# every later row of patients with PTNUM %% 3 == 0 whose move from the previous
# row is a direct one of the model (or a repeated state). obstype 3 (exact
# entry time): every other death row, and the state-3 rows of patients with
# PTNUM %% 5 == 1 that follow another state (an exact entry into a
# non-absorbing state, which msm's pijdeath allows; msm's pijdeath returns 1
# for a repeated state, which markov-migration refuses as an entry). Writes cav_obstype.csv (cav with the column) and
# msm_obstype.json, read by tests/test_obstype.py.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "common.R"))
cav <- read_cav()
twoway4.q <- rbind(c(-0.5, 0.25, 0, 0.25), c(0.166, -0.498, 0.166, 0.166),
                   c(0, 0.25, -0.5, 0.25), c(0, 0, 0, 0))
other.q <- rbind(c(0, 0.12, 0, 0.03), c(0.2, 0, 0.3, 0.07),
                 c(0, 0.11, 0, 0.4), c(0, 0, 0, 0))
first <- !duplicated(cav$PTNUM)
prev <- c(NA, cav$state[-nrow(cav)])
direct <- !first & (prev == cav$state | twoway4.q[cbind(pmax(prev, 1), cav$state)] > 0)
obstype <- rep(1L, nrow(cav))
obstype[direct & cav$PTNUM %% 3 == 0] <- 2L
obstype[!first & obstype == 1L & cav$state == 4] <- 3L
obstype[!first & obstype == 1L & cav$state == 3 & prev != 3 & cav$PTNUM %% 5 == 1] <- 3L
cav$obstype <- obstype
write.csv(cav, file.path(here(), "cav_obstype.csv"), row.names = FALSE)
cases <- list()
for (nm in c("twoway4", "other")) {
  q <- if (nm == "twoway4") twoway4.q else other.q
  # the obstype column as above; and obstype 2 rows only (all others panel)
  for (variant in c("mixed", "transition_only")) {
    ot <- if (variant == "mixed") obstype else ifelse(obstype == 2L, 2L, 1L)
    fit <- msm(state ~ years, subject = PTNUM, data = cav, qmatrix = q,
               obstype = ot, fixedpars = TRUE)
    cases[[length(cases) + 1]] <- list(
      name = paste0(nm, "_", variant), variant = variant,
      qmatrix = rows(q), minus2loglik = fit$minus2loglik)
  }
}
write_result("msm_obstype", cases, list(
  n_obstype2 = sum(obstype == 2L), n_obstype3 = sum(obstype == 3L),
  n_obstype2_repeat = sum(obstype == 2L & prev == cav$state, na.rm = TRUE)))

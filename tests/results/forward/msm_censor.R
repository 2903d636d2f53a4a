# msm log-likelihood with censored states on cav at fixed intensities.
# Code 99: "alive, state unknown" (states 1, 2, 3), as in the msm manual (the
# first 50 deaths recorded as 99); code 98: "well or mild" (states 1, 2), put on
# some first observations too, to pin down msm's convention for a censored
# first observation (msm starts with weight 1 on every state of the set).
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "common.R"))
cav <- read_cav()
cens <- cav
cens$state[cens$state == 4][1:50] <- 99
mild <- which(cens$state == 2)
cens$state[mild[seq(1, length(mild), by = 7)]] <- 98
first <- which(cens$firstobs == 1)
cens$state[first[seq(3, length(first), by = 10)]] <- 98
twoway4.q <- rbind(c(-0.5, 0.25, 0, 0.25), c(0.166, -0.498, 0.166, 0.166),
                   c(0, 0.25, -0.5, 0.25), c(0, 0, 0, 0))
cases <- list()
for (dx in c(FALSE, TRUE)) {
  fit <- msm(state ~ years, subject = PTNUM, data = cens, qmatrix = twoway4.q,
             censor = c(99, 98), censor.states = list(c(1, 2, 3), c(1, 2)),
             deathexact = if (dx) 4 else NULL, fixedpars = TRUE)
  cases[[length(cases) + 1]] <- list(
    name = if (dx) "censor_deathexact" else "censor",
    deathexact = if (dx) 4L else 0L,
    qmatrix = rows(twoway4.q), minus2loglik = fit$minus2loglik)
}
write_result("msm_censor", cases, list(
  censor = list(`99` = c(1, 2, 3), `98` = c(1, 2)),
  recipe = paste("state 4 rows 1:50 -> 99; every 7th state-2 row from the first -> 98;",
                 "every 10th first observation from the 3rd -> 98 (1-based order of cav.csv)"),
  states = cens$state))

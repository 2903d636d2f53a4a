# msm's summaries at a fixed generator (fixedpars = TRUE), as tests/test_summaries.py
# computes them: pmatrix.msm at t = 1.7, sojourn.msm, pnext.msm, totlos.msm over 7.5
# years from a uniform start, efpt.msm to a target state. Called by
# summaries_three.R and summaries_migration5.R with their inputs and target.
summaries_reference <- function(model, tostate, t = 1.7, tot = 7.5) {
  dat <- read.csv(sprintf("summaries_%s_panel.csv", model))
  q <- as.matrix(read.csv(sprintf("summaries_%s_q.csv", model), header = FALSE))
  dimnames(q) <- NULL
  start <- rep(1 / nrow(q), nrow(q))
  fit <- msm(state ~ time, subject = id, data = dat, qmatrix = q, fixedpars = TRUE)
  p <- unclass(pmatrix.msm(fit, t = t, ci = "none"))
  soj <- sojourn.msm(fit, ci = "none")$estimates
  nxt <- unclass(pnext.msm(fit, ci = "none")$estimates)
  los <- totlos.msm(fit, start = start, tot = tot, ci = "none")
  ef <- efpt.msm(qmatrix = q, tostate = tostate)
  write_json(list(input = str(sprintf("summaries_%s_panel.csv", model)), t = num(t),
                  horizon = num(tot), start = vec(start), tostate = num(tostate),
                  P = mat(unname(p)), sojourn = vec(unname(soj)), pnext = mat(unname(nxt)),
                  totlos = vec(unname(los)),
                  # -1 where the target cannot be reached (msm: Inf)
                  efpt = vec(ifelse(is.finite(ef), ef, -1))),
             sprintf("summaries_%s.json", model))
}

# msm's Pearson-type goodness-of-fit test (pearson.msm: Aguirre-Hernandez & Farewell 2002,
# with Titman's 2009 p-value) of its cav model, fitted as fit_cav.R fits it (same data,
# cav.csv; no deathexact, so no imputation of scheduled times after deaths), with
# pearson.msm's defaults: 3 groups of observation time, 3 of interval length within each,
# no covariates (and, as `*_4x2`, with 4 time x 2 interval groups). Writes
# pearson_cav.json: the MLE, the tables and the test, and the cut points of both groupings. No bootstrap (B refits of the model; not needed here).
#
# msm 1.7's Titman p-value uses the fit's expected information, which msm 1.7 sums
# with a mis-ordered count of transitions per (from-state, interval) (fixed upstream in
# msm commit df48015, "Bug fix in data aggregation for Fisher information"). The script
# also recomputes that information with msm's own C code from correctly counted data
# (`information_corrected`, which equals the Kalbfleisch-Lawless sum) and re-runs
# pearson.msm with it (`lambda_corrected`, `p_corrected`).
source("msm_json.R")
raw <- read.csv("cav.csv")
dat <- data.frame(id = raw$PTNUM, time = raw$years, state = raw$state)
q0 <- rbind(c(0, 0.1, 0, 0.1),
            c(0.1, 0, 0.1, 0.1),
            c(0, 0.1, 0, 0.1),
            c(0, 0, 0, 0))
fit <- fit_ml(dat, q0)
p <- pearson.msm(fit, timegroups = 3, intervalgroups = 3, covgroups = 3)
obs <- p$Observed
exp <- p$Expected
trans <- setdiff(colnames(obs), c("Time", "Interval"))
# the observation times pearson.msm groups: every observation after a respondent's first
first <- !duplicated(dat$id)
tq <- quantile(dat$time[!first], probs = seq(0, 1, 1 / 3))
# msm's expected information (of -2 log L) from correctly aggregated counts
ma <- fit$data$mf.agg
key <- paste(ma$"(fromstate)", ma$"(whicha)")
ma$"(noccsum)" <- unname(tapply(ma$"(nocc)", key, sum)[key])
fixed_data <- fit$data
fixed_data$mf.agg <- ma
info_fixed <- msm:::Ccall.msm(fit$paramdata$opt$par, do.what = "info", fixed_data, fit$qmodel,
                              fit$qcmodel, fit$cmodel, fit$hmodel, fit$paramdata)
fit_fixed <- fit
fit_fixed$paramdata$information <- info_fixed
p_fixed <- pearson.msm(fit_fixed, timegroups = 3, intervalgroups = 3, covgroups = 3)
# a second grouping: 4 observation-time groups, 2 interval groups within each
p42 <- pearson.msm(fit, timegroups = 4, intervalgroups = 2, covgroups = 3)
iq <- do.call(rbind, lapply(p$intervalq, unname))
fields <- c(fit_fields(fit), list(
  transitions = paste0("[", paste(str(trans), collapse = ", "), "]"),
  time_group = paste0("[", paste(str(as.character(obs$Time)), collapse = ", "), "]"),
  interval_group = paste0("[", paste(str(as.character(obs$Interval)), collapse = ", "), "]"),
  observed = mat(as.matrix(obs[, trans])),
  expected = mat(as.matrix(exp[, trans])),
  deviance = mat(as.matrix(p[["Deviance*sign(O-E)"]][, trans])),
  stat = num(p$test$stat), p = num(p$test$p),
  df_lower = num(p$test$df.lower), p_lower = num(p$test$p.lower),
  df_upper = num(p$test$df.upper), p_upper = num(p$test$p.upper),
  time_quantiles = vec(unname(tq)), interval_quantiles = mat(iq),
  lambda = vec(p$lambda), information = mat(fit$paramdata$information),
  information_corrected = mat(info_fixed), stat_corrected = num(p_fixed$test$stat),
  p_corrected = num(p_fixed$test$p), lambda_corrected = vec(p_fixed$lambda),
  observed_4x2 = mat(as.matrix(p42$Observed[, trans])),
  expected_4x2 = mat(as.matrix(p42$Expected[, trans])),
  stat_4x2 = num(p42$test$stat), df_lower_4x2 = num(p42$test$df.lower),
  df_upper_4x2 = num(p42$test$df.upper)))
write_json(fields, "pearson_cav.json")

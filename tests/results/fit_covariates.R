# msm's maximum-likelihood fit with covariates of tests/test_covariates.py: 2,000
# simulated respondents, a categorical "reason" (reference "draft") on a->b, b->a, b->c
# and a numeric "age" on a->b, b->a. Inputs: fit_covariates_panel.csv and
# fit_covariates_baseline.csv (the age at which Q is reported: our design's centre).
# Output: fit_covariates.json (Q at the baseline, hazard.msm's table, log-likelihood).
source("msm_json.R")
dat <- read.csv("fit_covariates_panel.csv")
dat$reason <- relevel(factor(as.character(dat$reason)), ref = "draft")
age <- read.csv("fit_covariates_baseline.csv")$age
q0 <- rbind(c(0, 0.1, 0.1),
            c(0.1, 0, 0.1),
            c(0, 0, 0))
covariates <- list("1-2" = ~ reason + age, "2-1" = ~ reason + age, "2-3" = ~ reason)
fit <- fit_ml(dat, q0, covariates)
write_json(c(list(input = str("fit_covariates_panel.csv")),
             fit_fields(fit, baseline = list(reason = "draft", age = age))),
           "fit_covariates.json")

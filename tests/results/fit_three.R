# msm's maximum-likelihood fit of the three-state panel of tests/test_fit.py
# (1,500 simulated respondents, four waves; "c" absorbing). Input: fit_three_panel.csv
# (make_inputs.py). Output: fit_three.json (Q at the MLE, maximised log-likelihood).
source("msm_json.R")
dat <- read.csv("fit_three_panel.csv")
q0 <- rbind(c(0, 0.1, 0.1),
            c(0.1, 0, 0.1),
            c(0, 0, 0))
fit <- fit_ml(dat, q0)
write_json(c(list(input = str("fit_three_panel.csv")), fit_fields(fit)), "fit_three.json")

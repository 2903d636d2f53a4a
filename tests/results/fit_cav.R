# msm's maximum-likelihood fit of its own heart-transplant panel `cav` with the
# transitions of models/cav.toml (well, mild, severe, dead; no deathexact: deaths are
# panel observations, as our likelihood treats them). Exports the data it fits to
# cav.csv (cav ships with msm under the GPL) and writes fit_cav.json.
source("msm_json.R")
cav_csv <- file.path(out_dir(), "cav.csv")
write.csv(cav[, c("PTNUM", "years", "state")], cav_csv, row.names = FALSE)
raw <- read.csv(cav_csv)
dat <- data.frame(id = raw$PTNUM, time = raw$years, state = raw$state)
q0 <- rbind(c(0, 0.1, 0, 0.1),
            c(0.1, 0, 0.1, 0.1),
            c(0, 0.1, 0, 0.1),
            c(0, 0, 0, 0))
fit <- fit_ml(dat, q0)
write_json(c(list(input = str("cav.csv")), fit_fields(fit)), "fit_cav.json")

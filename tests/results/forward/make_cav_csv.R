# Export msm's cav data (heart transplant CAV panel, 622 patients) to cav.csv,
# the input of the other scripts here. Columns: PTNUM, years, state, firstobs.
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))), "common.R"))
write.csv(cav[, c("PTNUM", "years", "state", "firstobs")], file.path(here(), "cav.csv"), row.names = FALSE)

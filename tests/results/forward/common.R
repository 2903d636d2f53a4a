# Shared helpers of the msm reference scripts in this folder (sourced by them).
# Each script evaluates msm's log-likelihood at FIXED parameters
# (fixedpars = TRUE) on cav.csv and writes a JSON next to itself, read by
# tests/test_forward.py (which therefore does not need R).
suppressPackageStartupMessages({
  library(msm)
  library(jsonlite)
})

here <- function() {
  args <- commandArgs(trailingOnly = FALSE)
  f <- sub("^--file=", "", args[grep("^--file=", args)])
  if (length(f)) dirname(normalizePath(f)) else getwd()
}

read_cav <- function() {
  read.csv(file.path(here(), "cav.csv"))
}

write_result <- function(name, fits, extra = list()) {
  out <- c(list(
    R_version = R.version.string,
    msm_version = as.character(packageVersion("msm")),
    data = "cav.csv",
    cases = fits
  ), extra)
  path <- file.path(here(), paste0(name, ".json"))
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), path)
  cat("wrote", path, "\n")
}

# Q as a list of rows (off-diagonal intensities; msm fills the diagonal)
rows <- function(m) lapply(seq_len(nrow(m)), function(i) unname(m[i, ]))

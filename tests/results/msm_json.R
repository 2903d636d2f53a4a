# Helpers shared by the reference scripts here: write a flat JSON object with full
# precision (17 significant digits) without needing jsonlite, and msm fit fields.
# Every script is run from this folder and takes one optional argument, the folder
# to write its JSON (and any exported data) into (default: this folder).

suppressPackageStartupMessages(library(msm))

out_dir <- function() {
  args <- commandArgs(trailingOnly = TRUE)
  if (length(args) >= 1) args[1] else "."
}

num <- function(x) ifelse(is.na(x), "null", sprintf("%.17g", x))
vec <- function(v) paste0("[", paste(num(v), collapse = ", "), "]")
mat <- function(m) paste0("[", paste(apply(m, 1, vec), collapse = ", "), "]")
str <- function(s) paste0("\"", gsub("\"", "\\\\\"", s), "\"")

write_json <- function(fields, name) {
  fields <- c(list(R = str(R.version.string), msm = str(as.character(packageVersion("msm")))),
              fields)
  body <- paste0("  ", str(names(fields)), ": ", unlist(fields), collapse = ",\n")
  path <- file.path(out_dir(), name)
  writeLines(paste0("{\n", body, "\n}"), path)
  invisible(path)
}

# The maximum-likelihood fit used by every fit reference (as markov_migration.reference.msm).
fit_ml <- function(dat, q0, covariates = NULL) {
  msm(state ~ time, subject = id, data = dat, qmatrix = q0, gen.inits = TRUE,
      covariates = covariates, center = TRUE,
      control = list(fnscale = max(1, nrow(dat) / 2), maxit = 10000, reltol = 1e-12))
}

fit_fields <- function(fit, baseline = NULL) {
  q <- if (is.null(baseline)) qmatrix.msm(fit, ci = "none")
       else qmatrix.msm(fit, covariates = baseline, ci = "none")
  hazard <- "[]"
  if (!is.null(baseline)) {
    h <- hazard.msm(fit)
    rows <- c()
    for (term in names(h)) {
      m <- h[[term]]
      for (i in seq_len(nrow(m))) {
        rows <- c(rows, sprintf(
          "{\"term\": %s, \"transition\": %s, \"hr\": %s, \"lower\": %s, \"upper\": %s}",
          str(term), str(rownames(m)[i]), num(m[i, 1]), num(m[i, 2]), num(m[i, 3])))
      }
    }
    hazard <- paste0("[\n    ", paste(rows, collapse = ",\n    "), "\n  ]")
  }
  converged <- is.null(fit$opt$convergence) || fit$opt$convergence == 0
  list(Q = mat(unname(as.matrix(q))), loglik = num(-fit$minus2loglik / 2),
       converged = tolower(as.character(converged)), hazard = hazard)
}

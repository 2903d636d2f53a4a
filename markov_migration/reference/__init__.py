"""Independent references used to cross-check fits (R's msm through Rscript)."""

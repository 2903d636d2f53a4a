# Summaries of the three-state model (tests/test_summaries.py THREE) at its [rates];
# first passage to "c" (state 3).
source("msm_json.R")
source("summaries.R")
summaries_reference("three", tostate = 3)

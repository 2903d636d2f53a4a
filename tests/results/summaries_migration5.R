# Summaries of models/migration5.toml at its [rates]; first passage to "returned"
# (state 4 of abroad, transit, swing, returned, reemigrated).
source("msm_json.R")
source("summaries.R")
summaries_reference("migration5", tostate = 4)

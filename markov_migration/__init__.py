"""markov-migration: Bayesian multi-state Markov models of migration panels."""

__version__ = "0.1.0"

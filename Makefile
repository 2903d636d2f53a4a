# The two quick-start commands: `make demo` (the main job) and `make test` (the whole suite).
# Both set up .venv (Python >= 3.12) on first use.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast bench lint setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/bootstrap
	bash scripts/bootstrap

demo: setup
	$(VENV)/bin/markov-migration demo --out-dir demo-output --force

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

lint: setup
	$(VENV)/bin/ruff check markov_migration tests benchmarks examples
	$(VENV)/bin/lint-imports

bench: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

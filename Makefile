# The two quick-start commands: `make demo` (the main job) and `make test` (the whole suite
# but the opt-in `validation` studies, which `make validate` runs). Both set up .venv
# (Python >= 3.12) on first use.
VENV := .venv
PY := $(VENV)/bin/python

# pytest-xdist workers for the test targets; test files are the unit of distribution
# (--dist loadfile), so a module's expensive fixtures (real fits) are built once.
WORKERS ?= 2
XDIST := -n $(WORKERS) --dist loadfile

.PHONY: demo test test-fast validate bench lint setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/bootstrap
	bash scripts/bootstrap

demo: setup
	$(VENV)/bin/markov-migration demo --out-dir demo-output --force

test: setup
	$(PY) -m pytest $(XDIST)

test-fast: setup
	$(PY) -m pytest $(XDIST) -m "not slow"

# the long replication and coverage studies (marker `validation`): about 20 min of CPU on
# a first run (the others about 5 min, the three observation-model coverage studies 15)
validate: setup
	$(PY) -m pytest $(XDIST) -m validation

lint: setup
	$(VENV)/bin/ruff check markov_migration tests benchmarks examples
	$(VENV)/bin/lint-imports

bench: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

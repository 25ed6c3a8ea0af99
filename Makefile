# studylib: the front door. `make reports` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

ARGS   ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help setup reports demo-data test test-fast lab clean bench mutation coverage

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("studylib needs Python 3.11 or newer, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@echo "setup: creating $(VENV) and installing studylib with its test extra from pyproject.toml"
	@echo "       (a minute or two on a cold package cache, seconds on a warm one; uv is used when it is on PATH)"
	@start=$$(date +%s); \
	$(PYTHON) -m venv $(VENV) && \
	if command -v uv >/dev/null 2>&1; then \
		uv pip install --quiet --python $(BIN)/python -e '.[test]'; \
	else \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip && \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'; \
	fi && \
	echo "setup: installed $$($(BIN)/python -m pip list --disable-pip-version-check 2>/dev/null | tail -n +3 | wc -l) packages in $$(( $$(date +%s) - start )) s"
	$(BIN)/python -c 'import studylib' 
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (studylib)" > /dev/null
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install studylib with its test extra

reports: setup  ## generate demo synthetic data, ingest it, run every study
	$(BIN)/studylib demo
	$(BIN)/studylib run --all --workers 2

# the suite runs on TEST_WORKERS processes (pytest-xdist; auto: one per core), a test module at a time each
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --dist loadfile

test: setup  ## run the whole test suite on every core (make test TEST_WORKERS=0 for one process)
	$(BIN)/python -m pytest $(XDIST)

test-fast: setup  ## the quick tests only: no kernels, no browser, no slow marks (under 2 minutes)
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow and not browser"

lab: setup  ## open JupyterLab with the project's kernel (make lab ARGS="--port 8899 --no-browser")
	$(BIN)/jupyter lab --notebook-dir=. $(ROOT_FLAG) $(ARGS)

bench: setup  ## run the benchmark scripts (prints figures)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# which modules `make mutation` mutates (default: all of tests/mutation/modules.toml), which tests `make coverage` runs
MODULES ?=
TESTS   ?= tests

mutation: setup  ## mutation score per module (mutmut; MODULES="privacy/rounding.py ..." for some)
	$(BIN)/python tests/mutation/score.py $(MODULES)

coverage: setup  ## line coverage of TESTS (default all), kernels, fork server, finisher and CLI subprocesses included
	rm -rf build/coverage
	mkdir -p build/coverage/ipython/profile_default/startup
	cp tests/coverage/kernel_startup.py build/coverage/ipython/profile_default/startup/00-coverage.py
	IPYTHONDIR=$(CURDIR)/build/coverage/ipython nice -n 10 $(BIN)/python -m coverage run -m pytest -q -p no:cacheprovider $(TESTS); \
	status=$$?; \
	$(BIN)/python -m coverage combine --quiet && $(BIN)/python -m coverage report && \
	echo "total line coverage, all processes: $$($(BIN)/python -m coverage report --format=total)% (data files combined: see build/coverage)"; \
	exit $$status

clean:  ## remove generated data, reports and the release ledgers (keeps .venv)
	rm -rf reports synthetic_data/generated .studylib-state

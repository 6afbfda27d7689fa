# Every target works from a fresh clone: it builds .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup lint check test reproduce lab bench figures clean

setup: $(STAMP)

# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
# The editable install is in compat mode: it puts the checkout on sys.path, so a folder named
# awbench in the working directory (a namespace package) cannot shadow the package.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,dask,browser]' --config-settings editable_mode=compat
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (awbench)"
	touch $(STAMP)

# Layer contract, formatting and lint: the package, tests and benches (notebooks are
# py:percent pairs kept by jupytext, so they stay out of the formatter).
lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff format --check awbench tests bench
	$(BIN)/ruff check awbench tests bench

# The fast developer lane: lint plus every test not marked slow (no notebooks, no browser).
check: lint
	$(BIN)/python -m pytest -q -x -m "not slow" $(PYTEST_ARGS)

# The full suite; .ci/run calls this.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(BIN)/awbench reproduce

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

figures: $(STAMP)
	$(BIN)/pip install --quiet -e '.[export]'
	$(BIN)/awbench figures

clean:
	rm -rf $(VENV) .awbench_cache outputs

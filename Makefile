# Every target works from a fresh clone: it builds .venv first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Flags for `make lab`, e.g. LAB_ARGS="--allow-root --no-browser" (as root, or headless).
LAB_ARGS ?=
# The extras `make setup` installs; README.md and environment.yml name the same ones.
EXTRAS := dev,dask,browser,export,present

.PHONY: setup lint check test reproduce lab bench figures present clean

setup: $(STAMP)

# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
# The checkout goes on sys.path (a .pth file): the editable install's import hook comes after
# Python's path search, so without it a folder named awbench in the working directory (a
# namespace package) would shadow the package. setuptools' compat mode did the same but is
# deprecated.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	$(BIN)/python -c "import pathlib, site; pathlib.Path(site.getsitepackages()[0], 'awbench-checkout.pth').write_text('$(CURDIR)\n')"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (awbench)"
	@# JupyterLab saves notebooks/NN_*.ipynb without outputs: running one leaves git clean
	@# (.venv/etc/jupyter/jupyter_server_config.json, read by every Jupyter server of the venv)
	$(BIN)/python -m awbench.apps.jupyter_hooks
	@# present mode's explorer payload, built once now so that the first `make present` is
	@# usable in seconds (it is cached per grid and code version: awbench/apps/knobs/payload_cache.py)
	$(BIN)/python -c "from awbench.apps.present.app import PresentApp; PresentApp()"
	touch $(STAMP)

# Layer contract, formatting and lint: the package, tests and benches (notebooks are
# py:percent pairs kept by jupytext, so they stay out of the formatter).
lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff format --check awbench tests bench
	$(BIN)/ruff check awbench tests bench

# The fast developer lane: lint plus every test not marked slow (no notebooks, no browser),
# one worker process per core (the tests run torch on one thread each: tests/conftest.py).
check: lint
	$(BIN)/python -m pytest -q -x -n auto --dist loadfile -m "not slow" $(PYTEST_ARGS)

# The full suite; .ci/run calls this.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(BIN)/awbench reproduce

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks $(LAB_ARGS)

bench: $(STAMP)
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# Every report figure of `make reproduce` as PNG (1920x1080, 1280x720) and SVG, through
# kaleido and the system's Chromium (BROWSER_PATH=/usr/bin/chromium if not found).
figures: $(STAMP)
	$(BIN)/awbench figures

# The knob panel as a code-free Voila app on 127.0.0.1 (issue 15); PRESENT_ARGS="--port 9000"
present: $(STAMP)
	$(BIN)/awbench present $(PRESENT_ARGS)

clean:
	rm -rf $(VENV) .awbench_cache outputs

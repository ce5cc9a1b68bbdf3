# Each target sets itself up on a fresh machine: a virtual environment with torch 2.13.0 (CPU),
# the build and test dependencies, and the extension built against that torch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_CPU := torch==2.13.0
DEPS := scikit-build-core cmake ninja numpy scipy matplotlib pytest hypothesis

.PHONY: test demo bench build cuda-build clean

$(VENV)/.deps: Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_CPU)
	$(PIP) install -q $(DEPS)
	touch $@

build: $(VENV)/.deps
	$(PIP) install -q --no-build-isolation --no-deps -e .

test: build
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

demo: build
	$(PY) examples/demo.py --out demo_out

clean:
	rm -rf build demo_out bench_out

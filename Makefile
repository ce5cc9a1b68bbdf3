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

# bench: TorchEBM 0.8.9 goes in a venv of its own (it also imports as `torchebm`); torch is
# installed first so that pip keeps this CPU build instead of pulling a CUDA one.
VENV089 := .venv-torchebm089
PY089 := $(VENV089)/bin/python

$(VENV089)/.deps: Makefile
	$(PYTHON) -m venv $(VENV089)
	$(PY089) -m pip install -q --upgrade pip
	$(PY089) -m pip install -q $(TORCH_CPU)
	$(PY089) -m pip install -q numpy torchebm==0.8.9
	touch $@

bench: build $(VENV089)/.deps
	$(PY) bench/run.py --out bench_out --torchebm089-python $(PY089) $(BENCH_ARGS)

clean:
	rm -rf build demo_out bench_out

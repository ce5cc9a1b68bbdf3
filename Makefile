# Each target sets itself up on a fresh machine: a virtual environment with torch 2.13.0 (CPU),
# the build and test dependencies, and the extension built against that torch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_CPU := torch==2.13.0
DEPS := scikit-build-core cmake ninja numpy scipy matplotlib pytest hypothesis 'arviz>=0.23,<1'

.PHONY: test test-quick demo bench build cuda-build clean docs docs-serve asan-test

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

# The edit-test loop: everything but the tests marked `slow` (the JIT rebuild, long training).
test-quick: build
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

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

# cuda-build: the CUDA kernels compile, link, register and import on a machine without a GPU,
# in a venv of their own with a CUDA build of torch and the machine's nvcc (no GPU needed).
# TORCH_CUDA_ARCH_LIST picks the GPUs (default 9.0: H100/H200); build/cuda keeps the objects.
# Then tests/test_cuda.py runs on the CUDA kernels compiled for the host, against the CPU kernels
# (scripts/cuda_emulation/emulate.py: logic only, under a minute; CUDA_EMULATE=0 skips it).
VENV_CUDA := .venv-cuda
PY_CUDA := $(VENV_CUDA)/bin/python
TORCH_CUDA_VERSION := 2.14.1
CUDA_HOME ?= /usr/local/cuda
TORCH_CUDA_ARCH_LIST ?= 9.0
CUDA_EMULATE ?= 1

$(VENV_CUDA)/.deps-torch-$(TORCH_CUDA_VERSION):
	$(PYTHON) -m venv $(VENV_CUDA)
	$(PY_CUDA) -m pip install -q --upgrade pip
	$(PY_CUDA) -m pip install -q torch==$(TORCH_CUDA_VERSION) scikit-build-core cmake ninja numpy pytest
	touch $@

cuda-build: $(VENV_CUDA)/.deps-torch-$(TORCH_CUDA_VERSION)
	@start=$$(date +%s); \
	CUDA_HOME=$(CUDA_HOME) CUDACXX=$(CUDA_HOME)/bin/nvcc TORCH_CUDA_ARCH_LIST="$(TORCH_CUDA_ARCH_LIST)" \
	TORCHEBM_CUDA=ON $(PY_CUDA) -m pip install --no-build-isolation --no-deps -Cbuild-dir=build/cuda . \
	&& echo "cuda-build: extension built in $$(( $$(date +%s) - start )) s"
	$(PY_CUDA) scripts/cuda_build_check.py
	$(PY_CUDA) -m pytest -q -p no:cacheprovider tests/test_cuda.py
	@if [ "$(CUDA_EMULATE)" = 1 ]; then \
	  CUDA_HOME=$(CUDA_HOME) $(PY_CUDA) scripts/cuda_emulation/emulate.py -- -k "not exact"; fi

# asan-test: the kernel tests under AddressSanitizer and UndefinedBehaviorSanitizer (not in CI:
# the sanitized build takes minutes and its tests run several times slower). The extension is
# built in build/asan and installed, with a copy of python/, into .venv-asan, a venv that reuses
# .venv's packages through a .pth file: `make build` and .venv are untouched. libasan comes
# first (preloaded: CPython is not instrumented); leak checks are off (CPython keeps objects
# until exit). Any sanitizer report stops the run and fails it; --capture=sys leaves fd 2 to the
# sanitizers, so the report shows (pytest's fd capture would swallow it). ASAN_TESTS picks the
# tests (the fuzz module draws new examples each run).
VENV_ASAN := .venv-asan
ASAN_SANITIZE := -fsanitize=address,undefined -fno-sanitize=vptr
ASAN_TESTS ?= tests/test_kernels_*.py tests/test_fuzz_ops.py tests/test_mlp_chain.py

$(VENV_ASAN)/.deps: $(VENV)/.deps
	$(PYTHON) -m venv $(VENV_ASAN)
	$(PY) -c "import site; print(site.getsitepackages()[0])" > \
	  "$$($(VENV_ASAN)/bin/python -c 'import site; print(site.getsitepackages()[0])')/torchebm_asan_base.pth"
	touch $@

asan-test: $(VENV_ASAN)/.deps
	$(VENV_ASAN)/bin/python -m pip install -q --no-build-isolation --no-deps -Cbuild-dir=build/asan \
	  -Ccmake.define.CMAKE_CXX_FLAGS="$(ASAN_SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  -Ccmake.define.CMAKE_SHARED_LINKER_FLAGS="$(ASAN_SANITIZE)" .
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(VENV_ASAN)/bin/python -m pytest -q -p no:cacheprovider --capture=sys $(ASAN_TESTS) $(PYTEST_ARGS)

# docs: the documentation site (mkdocs.yml), built strictly (a warning fails) into site/, in a
# venv of its own from the pinned docs/requirements.txt. The API reference is read from the
# source (python/) without importing it, so this needs neither torch nor the extension.
VENV_DOCS := .venv-docs

$(VENV_DOCS)/.deps: docs/requirements.txt
	$(PYTHON) -m venv $(VENV_DOCS)
	$(VENV_DOCS)/bin/python -m pip install -q --upgrade pip
	$(VENV_DOCS)/bin/python -m pip install -q -r docs/requirements.txt
	touch $@

docs: $(VENV_DOCS)/.deps
	NO_MKDOCS_2_WARNING=1 $(VENV_DOCS)/bin/mkdocs build --strict --site-dir site

docs-serve: $(VENV_DOCS)/.deps
	NO_MKDOCS_2_WARNING=1 $(VENV_DOCS)/bin/mkdocs serve

clean:
	rm -rf build demo_out bench_out site

#!/usr/bin/env bash
# GPU verification of torchebm, rerunnable by anyone on a CUDA machine without network access:
# builds the extension with the CUDA kernels against the machine's torch, checks that every op
# has a CUDA kernel, runs the tests marked `cuda`, and runs the GPU benchmarks. Everything it
# prints goes to the results folder as well.
#
#   scripts/gpu_check.sh [OUT]            OUT: results folder (default gpu_out/)
#
# Needs: an NVIDIA GPU, torch with CUDA, nvcc, cmake, ninja, scikit-build-core, pybind11, pytest,
# numpy (scipy, matplotlib for the benchmark plots). Nothing is downloaded: the package is
# installed with --no-build-isolation --no-deps into PYTHON's venv, or, for a system Python, into
# a venv (.venv-gpu) that sees the machine's site-packages, leaving the system as it was.
#
# Environment:
#   PYTHON              the interpreter with torch (default: python3)
#   TORCHEBM_GPU_BUILD  pip (default: scikit-build-core + CMake) or jit (TORCHEBM_JIT=1:
#                       torch.utils.cpp_extension builds csrc/sources.txt at import)
#   TORCH_CUDA_ARCH_LIST  GPU architectures (default: the GPU's own, e.g. 9.0 on H100/H200)
#   CUDA_HOME           the CUDA toolkit (default: from nvcc on PATH, else /usr/local/cuda)
#   TORCHEBM089_PYTHON  an interpreter with TorchEBM 0.8.9 (and CUDA torch) for the baseline
#                       columns of the benchmark (default: .venv-torchebm089 if present; without
#                       one the benchmark runs our implementations only)
#   TORCHEBM089_WHEEL   else, a torchebm-0.8.9 wheel (pure Python) to install offline, beside the
#                       machine's torch, into .torchebm089-gpu/ with an interpreter wrapper
#   BENCH_ARGS          extra arguments for bench/run.py (e.g. --quick)
#   PYTEST_ARGS         extra arguments for pytest
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=${1:-gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PYTHON=${PYTHON:-python3}
BUILD=${TORCHEBM_GPU_BUILD:-pip}
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
status=0

say() { echo "$*" | tee -a "$SUMMARY"; }
# step NAME CMD...: runs CMD with its output in OUT/NAME.log (and on the terminal), records the result.
step() {
  local name=$1
  shift
  local t0=$SECONDS
  echo "==> $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  say "$(printf '%-14s %-6s %4ds  %s' "$name" "$([ "$rc" = 0 ] && echo ok || echo FAIL:$rc)" $((SECONDS - t0)) "$OUT/$name.log")"
  [ "$rc" = 0 ] || status=1
  return "$rc"
}

if [ -z "${CUDA_HOME:-}" ]; then  # torch's own search (CUDA_PATH, nvcc on PATH, /usr/local/cuda)
  CUDA_HOME=$("$PYTHON" -c 'from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME or "")' 2> /dev/null)
  # A wrapper script on PATH (e.g. /usr/local/bin/nvcc) misleads that search.
  [ -f "$CUDA_HOME/include/cuda_runtime.h" ] || CUDA_HOME=/usr/local/cuda
fi
export CUDA_HOME CUDACXX=${CUDACXX:-$CUDA_HOME/bin/nvcc}
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST=$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2> /dev/null || echo 9.0)
fi
export TORCH_CUDA_ARCH_LIST PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1

say "torchebm GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2> /dev/null || echo '?')"
say "build: $BUILD, CUDA_HOME=$CUDA_HOME, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, results in $OUT"
step environment bash -c "nvidia-smi; '$CUDACXX' --version; '$PYTHON' -c 'import torch, sys; print(sys.version); print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, \"GPU\", torch.cuda.is_available() and torch.cuda.get_device_name())'"

# Our package goes into PYTHON's environment when that is a venv already; otherwise into a
# venv over the machine's site-packages (.venv-gpu), where torch and the build tools come from.
if "$PYTHON" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
  PY=$(command -v "$PYTHON")
else
  if [ ! -x .venv-gpu/bin/python ]; then
    "$PYTHON" -m venv --system-site-packages .venv-gpu || { say "cannot create .venv-gpu"; exit 1; }
  fi
  PY=$REPO/.venv-gpu/bin/python
fi
say "python: $PY"

if [ "$BUILD" = jit ]; then
  # No install: the package from the source tree, the extension compiled at first import.
  export TORCHEBM_JIT=1 TORCHEBM_JIT_VERBOSE=1 PYTHONPATH="$REPO/python${PYTHONPATH:+:$PYTHONPATH}"
  step build "$PY" -c "import torchebm, torch; from torchebm import kernels; assert kernels.how_loaded() == 'jit', kernels.loader._state; assert kernels.cuda_available(), 'no CUDA kernels'"
else
  step build env TORCHEBM_CUDA=ON "$PY" -m pip install -v --no-build-isolation --no-deps -Cbuild-dir=build/gpu .
fi
[ "$status" = 0 ] || { say "build failed: see $OUT/build.log"; exit 1; }

step registration "$PY" scripts/cuda_build_check.py
# Every test marked `cuda`, from the files that have some (so that a test module needing a
# package this machine lacks, e.g. hypothesis or scipy, cannot stop the others).
cuda_test_files=$(grep -l "mark\.cuda" tests/test_*.py)
# shellcheck disable=SC2086
step tests "$PY" -m pytest -m cuda -v -p no:cacheprovider --continue-on-collection-errors \
  --junitxml="$OUT/tests.xml" $cuda_test_files ${PYTEST_ARGS:-}

if [ -f bench/run.py ]; then
  T089=${TORCHEBM089_PYTHON:-}
  if [ -z "$T089" ] && [ -x .venv-torchebm089/bin/python ]; then T089=$REPO/.venv-torchebm089/bin/python; fi
  if [ -z "$T089" ] && [ -n "${TORCHEBM089_WHEEL:-}" ]; then
    # Its import name is ours too: it gets its own folder, put on PYTHONPATH, which comes
    # before site-packages, so the wrapper imports 0.8.9 even where ours is installed.
    "$PYTHON" -m pip install -q --no-deps --no-compile --target "$REPO/.torchebm089-gpu/site" \
      "$TORCHEBM089_WHEEL" &&
      printf '#!/bin/sh\nPYTHONPATH=%s exec %s "$@"\n' "$REPO/.torchebm089-gpu/site" \
        "$(command -v "$PYTHON")" > "$REPO/.torchebm089-gpu/python" &&
      chmod +x "$REPO/.torchebm089-gpu/python" && T089=$REPO/.torchebm089-gpu/python
  fi
  impls=fused,reference,fused-cudagraph,fused-op
  bench_py=()
  if [ -n "$T089" ] && "$T089" -c 'import torchebm, torch; assert torch.cuda.is_available()' 2> /dev/null; then
    impls=$impls,torchebm089,torchebm089-triton
    bench_py=(--torchebm089-python "$T089")
  else
    say "bench: no interpreter with TorchEBM 0.8.9 and CUDA torch (TORCHEBM089_PYTHON): our implementations only"
  fi
  # shellcheck disable=SC2086
  triton089=()
  if [ -n "$T089" ]; then
    f=$("$T089" -c 'import torchebm.cuda.fused_langevin as m; print(m.__file__)' 2> /dev/null) &&
      triton089=(--triton-089 "$f")
  fi
  step profile "$PY" scripts/gpu_profile.py --out "$OUT/profile.json" ${triton089[@]+"${triton089[@]}"}
  step bench "$PY" bench/run.py --device cuda --out "$OUT/bench" --ours-python "$PY" --impls "$impls" ${bench_py[@]+"${bench_py[@]}"} ${BENCH_ARGS:-}
else
  say "bench: bench/run.py not found, skipped"
fi

say "overall: $([ "$status" = 0 ] && echo PASS || echo FAIL)"
exit "$status"

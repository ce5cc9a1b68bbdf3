#!/usr/bin/env bash
# GPU verification of torchebm in one call, on a CUDA machine without network access: builds the
# extension with nvcc for the GPU's own architecture, checks that every op has a CUDA kernel, runs
# the tests marked `cuda` (the ArviZ cross-check and the chain-interrupt tests included), trains
# the distributed example under torchrun with NCCL (DDP and FSDP2, one rank per GPU), runs the
# benchmark harness on the GPU (most important workloads first), and profiles the dense-Gaussian
# chain kernels (scripts/gpu_profile.py; ncu and nsys when they are installed).
#
#   scripts/gpu_check.sh [OUT]            run everything; results in OUT (default gpu_out/)
#   scripts/gpu_check.sh --plan           print the steps and their commands; run nothing
#   scripts/gpu_check.sh --dry-run [OUT]  the plan, then each step in a form that needs no GPU
#                                         (pytest --collect-only, bench/run.py --quick --device
#                                         cpu, the profile on the CPU...); GPU_CHECK_DRY_RUN=1 too
#   scripts/gpu_check.sh --prepare [DIR]  on a machine with a package index: download the wheels
#                                         the GPU machine lacks (ArviZ and its pure-Python
#                                         dependencies, TorchEBM 0.8.9) into DIR (default
#                                         build/gpu_wheels), which the GPU run installs offline
#
# Time guard: the run stops starting steps when its budget (GPU_CHECK_BUDGET_S, default 540 s)
# is spent, and each command runs under `timeout` within its step's cap, so a call cut short
# still leaves the steps that finished. A failing step does not stop the others (a
# failed build does: nothing after it can run). Outputs, rewritten after every step:
#   OUT/summary.txt       every step's status, seconds and result line; then the benchmark
#                         tables, the profile's headline lines and the failed tests
#   OUT/gpu_check.tar.gz  every step's log, the JUnit XML, the benchmark JSON and tables, the
#                         profile JSON (the expanded copies stay in GPU_CHECK_WORK)
# Exit status 0 when every step passed (or had nothing to run), 1 otherwise.
#
# Needs: an NVIDIA GPU, torch with CUDA, nvcc, cmake, ninja, scikit-build-core, pybind11, pytest,
# numpy (scipy, matplotlib for the benchmark plots). Nothing is downloaded: the package is
# installed with --no-build-isolation --no-deps into PYTHON's venv, or, for a system Python, into
# a venv (.venv-gpu) that sees the machine's site-packages, leaving the system as it was.
#
# Environment:
#   PYTHON              the interpreter with torch (default: python3)
#   GPU_CHECK_BUDGET_S  wall-time budget of the whole run in seconds (default 540)
#   GPU_CHECK_ONLY      comma-separated step names to run (default: all); GPU_CHECK_SKIP: to skip
#   GPU_CHECK_WORK      where the steps write (default build/gpu_check; emptied at the start)
#   GPU_CHECK_WHEELS    wheels to install first, offline (default build/gpu_wheels; --prepare)
#   GPU_CHECK_COMMIT    the commit to name in the summary (default: git's, where .git is there)
#   MAX_JOBS            parallel compile jobs (default: the machine's cores)
#   TORCHEBM_GPU_BUILD  pip (default: scikit-build-core + CMake) or jit (TORCHEBM_JIT=1:
#                       torch.utils.cpp_extension builds csrc/sources.txt at import)
#   TORCH_CUDA_ARCH_LIST  GPU architectures (default: the GPU's own, e.g. 9.0 on H100/H200)
#   CUDA_HOME           the CUDA toolkit (default: from nvcc on PATH, else /usr/local/cuda)
#   TORCHEBM089_PYTHON  an interpreter with TorchEBM 0.8.9 (and CUDA torch) for the baseline
#                       columns of the benchmark (default: .venv-torchebm089 if present; without
#                       one the benchmark runs our implementations only)
#   TORCHEBM089_WHEEL   else, a torchebm-0.8.9 wheel (pure Python; default: the one in
#                       GPU_CHECK_WHEELS) to install offline, beside the machine's torch, into
#                       .torchebm089-gpu/ with an interpreter wrapper
#   BENCH_ARGS          extra arguments for bench/run.py (e.g. --quick)
#   PYTEST_ARGS         extra arguments for pytest
set -uo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
CALLER=$(pwd) # OUT and DIR are taken from here
cd "$(dirname "$SELF")/.." || exit 1
REPO=$(pwd)

MODE=run
case "${1:-}" in
  --dry-run) MODE=dry; shift ;;
  --plan) MODE=plan; shift ;;
  --prepare) MODE=prepare; shift ;;
  -h | --help) sed -n '2,/^set -uo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) echo "gpu_check.sh: unknown option $1 (--plan, --dry-run, --prepare, --help)" >&2; exit 2 ;;
esac
if [ "$MODE" = run ] && [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then MODE=dry; fi
WHEELS=${GPU_CHECK_WHEELS:-$REPO/build/gpu_wheels}

if [ "$MODE" = prepare ]; then
  # Pure-Python wheels only, for the GPU machine's Python (3.12): ArviZ (the Makefile's range)
  # and those of its dependencies that the machine's image lacks, and TorchEBM 0.8.9.
  dest=${1:-$WHEELS}
  case "$dest" in /*) ;; *) dest=$CALLER/$dest ;; esac
  py=${PYTHON:-python3}
  [ -n "${PYTHON:-}" ] || [ ! -x .venv/bin/python ] || py=.venv/bin/python
  mkdir -p "$dest" || exit 1
  "$py" -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d "$dest" \
    'arviz>=0.23,<1' h5netcdf xarray-einstats platformdirs torchebm==0.8.9 || exit 1
  ls -l "$dest"
  echo "carry ${dest#"$REPO"/} to the GPU machine; scripts/gpu_check.sh installs them offline"
  exit 0
fi

OUT=${1:-$REPO/gpu_out}
case "$OUT" in /*) ;; *) OUT=$CALLER/$OUT ;; esac
WORK=${GPU_CHECK_WORK:-$REPO/build/gpu_check}
BUDGET=${GPU_CHECK_BUDGET_S:-540}
case "$BUDGET" in '' | *[!0-9]*) echo "GPU_CHECK_BUDGET_S: expected whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac
PYTHON=${PYTHON:-python3}
BUILD=${TORCHEBM_GPU_BUILD:-pip}
JOBS=${MAX_JOBS:-$(nproc 2> /dev/null || echo 4)}
RESERVE=15 # seconds kept for the summary and the archive at the end
T_END=$((SECONDS + BUDGET - RESERVE))

# ---- the steps: name, cap (s), least time left to start it (s), what it does ---------------------
STEPS=()
declare -A CAP MIN WHAT
add_step() { STEPS+=("$1"); CAP[$1]=$2; MIN[$1]=$3; WHAT[$1]=$4; }
add_step environment 30 5 "GPU, driver, nvcc, torch, the profilers on PATH"
add_step wheels 60 5 "install the carried wheels (GPU_CHECK_WHEELS: ArviZ...) and TorchEBM 0.8.9 offline"
add_step build 300 60 "build the extension with nvcc for TORCH_CUDA_ARCH_LIST only, MAX_JOBS jobs"
add_step registration 30 5 "scripts/cuda_build_check.py: every op has a CUDA kernel, no libcuda link"
add_step tests_cuda 180 30 "every test marked cuda (test_cuda.py and test_mlp_chain_cuda.py first)"
add_step tests_arviz 60 10 "tests/test_diagnostics_arviz.py: the ArviZ cross-check and ess/rhat on CUDA tensors"
add_step tests_interrupt 60 10 "the cuda-marked tests of tests/test_chain_interrupt.py (first_step blocks, Ctrl-C)"
add_step ddp 60 20 "examples/train_distributed.py under torchrun, NCCL, one rank per GPU, DDP"
add_step fsdp2 60 20 "the same with FSDP2 (--fsdp)"
add_step bench_mlp 120 30 "harness: MLP Langevin chain and CUDA graphs; the hand-written eager loop (>= 10x)"
add_step bench_gaussian 120 30 "harness: dense-Gaussian Langevin, HMC, MALA chains"
add_step bench_overhead 60 20 "harness: sample_overhead, mlp_sample_overhead (host cost of a sample() call)"
add_step bench_doublewell 120 30 "harness: double-well chain against 0.8.9 and its Triton chain, update bandwidth, normals"
add_step profile 120 30 "scripts/gpu_profile.py: dense-Gaussian chain kernels, call overhead, double well, MLP"
add_step bench_compiled 150 45 "backend='compiled' (inductor, CUDA graphs) and the hand-written compiled loop, MLP"
add_step bench_pt 90 20 "harness: parallel tempering"
add_step bench_ais 90 20 "harness: annealed importance sampling"
add_step bench_rest 120 30 "harness: every other workload with a CUDA column"
add_step ncu 120 30 "Nsight Compute on one launch of each chain kernel (when ncu is installed)"
add_step nsys 90 30 "Nsight Systems timeline of the same launches (when nsys is installed)"

in_list() { case ",$2," in *",$1,"*) return 0 ;; esac; return 1; }
GPU_CHECK_ONLY=${GPU_CHECK_ONLY:-} GPU_CHECK_SKIP=${GPU_CHECK_SKIP:-}
for s in ${GPU_CHECK_ONLY//,/ } ${GPU_CHECK_SKIP//,/ }; do
  [ -n "${CAP[$s]:-}" ] || { echo "GPU_CHECK_ONLY/GPU_CHECK_SKIP: no step '$s' (steps: ${STEPS[*]})" >&2; exit 2; }
done

# ---- running commands --------------------------------------------------------------------------
STEP_RC=0 STEP_STATUS="" STEP_NOTE="" STEP_DEADLINE=0

# x CMD...: runs CMD under `timeout` (which ends its whole process group) within the step's time,
# records the first failure in STEP_RC; in --plan mode it only prints CMD.
x() {
  if [ "$MODE" = plan ]; then
    echo "      \$ $*"
    return 0
  fi
  echo "\$ $*"
  local left=$((STEP_DEADLINE - SECONDS)) rc
  if [ "$left" -le 0 ]; then
    echo "(not run: the step's time is spent)"
    rc=124
  else
    timeout -k 10 "$left" "$@" < /dev/null
    rc=$?
  fi
  if [ "$rc" != 0 ] && [ "$STEP_RC" = 0 ]; then STEP_RC=$rc; fi
  return "$rc"
}

# The last line of the current step's log that matches a pattern (pytest's summary line...).
last_line() { grep -E "$1" "$WORK/$CURRENT.log" 2> /dev/null | tail -n 1 | cut -c1-150; }

pytest_step() { # pytest_step FILE...: the files' cuda tests (real), or their collection (dry)
  local mode=(-q -rfEs --durations=15)
  [ "$MODE" = dry ] && mode=(--collect-only -q)
  # shellcheck disable=SC2086
  x "$PY" -m pytest "${mode[@]}" -p no:cacheprovider --continue-on-collection-errors \
    -o faulthandler_timeout=120 --junitxml="$WORK/$CURRENT.xml" "$@" ${PYTEST_ARGS:-}
  STEP_NOTE=$(last_line "passed|failed|error|skipped|no tests ran|collected|selected")
  if [ "$STEP_RC" = 5 ]; then
    STEP_STATUS=NONE # pytest: no test was selected
  elif [ "$MODE" = run ] && [ "$STEP_RC" = 0 ] && ! grep -q passed <<< "$STEP_NOTE"; then
    STEP_STATUS=FAIL:skipped # on a GPU, tests that all skip ran nothing: see the reasons (-rs)
  fi
}

# ---- benchmark helpers ---------------------------------------------------------------------------
WL_NAMES="" BENCH_ASKED="" PICKED=""
# PICKED: the workloads and groups of bench/workloads.py among the arguments, comma-separated;
# a missing one is noted in STEP_NOTE.
pick_workloads() {
  if [ -z "$WL_NAMES" ]; then
    WL_NAMES=$("$PY" -c 'from bench import workloads as W; print(",".join([*W.WORKLOADS, *W.GROUPS]))') || return 1
  fi
  local n found=() missing=()
  for n in "$@"; do
    if in_list "$n" "$WL_NAMES"; then found+=("$n"); else missing+=("$n"); fi
  done
  [ "${#missing[@]}" = 0 ] || STEP_NOTE="not in bench/workloads.py: ${missing[*]}; "
  PICKED=$(IFS=,; echo "${found[*]}")
}

bench() { # bench IMPLS WORKLOAD...: bench/run.py on those workloads, results in WORK/<step>/
  local impls=$1 names
  shift
  BENCH_ASKED="$BENCH_ASKED $*"
  if [ "$MODE" = plan ]; then
    names=$(IFS=,; echo "$*")
  else
    pick_workloads "$@" || { STEP_RC=1; STEP_NOTE="cannot import bench/workloads.py"; return 1; }
    names=$PICKED
    [ -n "$names" ] || { STEP_STATUS=NONE; return 0; }
  fi
  [ "$MODE" = dry ] && impls=fused # each implementation is its own process: one is enough here
  [ "$MODE" != dry ] && [ -n "$T089_OK" ] && impls="$impls,torchebm089,torchebm089-triton"
  # shellcheck disable=SC2086
  x "$PY" bench/run.py --device "$DEV" --out "$WORK/$CURRENT" --ours-python "$PY" --impls "$impls" \
    --only "$names" --timeout 300 "${BENCH_SIZE[@]}" "${BENCH_089[@]}" ${BENCH_ARGS:-}
  [ "$MODE" = plan ] && return 0
  local ok bad
  ok=$(grep -cE '^\[.*\] ok,' "$WORK/$CURRENT.log")
  bad=$(grep -E '^\[.*\] (error|unavailable):' "$WORK/$CURRENT.log" | sed -E 's/^\[(.*)\] ([a-z]+):.*/\1 \2/' | paste -sd ';' -)
  STEP_NOTE="${STEP_NOTE}cells ok: $ok${bad:+; not ok: $bad}"
  if grep -qE '^\[.*\] error:' "$WORK/$CURRENT.log" && [ "$STEP_RC" = 0 ]; then STEP_RC=1; fi
}

# ---- the steps ---------------------------------------------------------------------------------
step_environment() {
  x bash -c 'for t in nvidia-smi nvcc ncu nsys compute-sanitizer; do printf "%-18s %s\n" "$t" "$(command -v "$t" || echo -)"; done'
  if [ "$MODE" != dry ]; then
    x nvidia-smi
    x "$CUDACXX" --version
  fi
  x "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.is_available() and torch.cuda.get_device_name(), "count", torch.cuda.device_count())'
  [ "$MODE" = plan ] || STEP_NOTE=$(last_line "^torch ")
}

step_wheels() {
  local w wheels=() t089_wheel=${TORCHEBM089_WHEEL:-}
  for w in "$WHEELS"/*.whl; do
    [ -f "$w" ] || continue
    case "$(basename "$w")" in
      torchebm-0.8.9-*) [ -n "$t089_wheel" ] || t089_wheel=$w ;;
      *) wheels+=("$w") ;;
    esac
  done
  if [ "$MODE" = plan ]; then
    x "$PY" -m pip install --no-index --no-deps --no-compile "$WHEELS/*.whl (but TorchEBM 0.8.9)"
    x "$PYTHON" -m pip install --no-deps --no-compile --target .torchebm089-gpu/site "${t089_wheel:-$WHEELS/torchebm-0.8.9-*.whl}"
    return 0
  fi
  local pip_mode=()
  [ "$MODE" = dry ] && pip_mode=(--dry-run)
  [ "${#wheels[@]}" = 0 ] || x "$PY" -m pip install "${pip_mode[@]}" --no-index --no-deps --no-compile "${wheels[@]}"
  T089=${TORCHEBM089_PYTHON:-}
  if [ -z "$T089" ] && [ -x .venv-torchebm089/bin/python ]; then T089=$REPO/.venv-torchebm089/bin/python; fi
  if [ -z "$T089" ] && [ -n "$t089_wheel" ] && [ "$MODE" = run ]; then
    # Its import name is ours too: it gets its own folder, put on PYTHONPATH, which comes
    # before site-packages, so the wrapper imports 0.8.9 even where ours is installed.
    x "$PYTHON" -m pip install -q --no-deps --no-compile --target "$REPO/.torchebm089-gpu/site" "$t089_wheel" &&
      printf '#!/bin/sh\nPYTHONPATH=%s exec %s "$@"\n' "$REPO/.torchebm089-gpu/site" \
        "$(command -v "$PYTHON")" > "$REPO/.torchebm089-gpu/python" &&
      chmod +x "$REPO/.torchebm089-gpu/python" && T089=$REPO/.torchebm089-gpu/python
  fi
  T089_OK=""
  if [ -n "$T089" ] && "$T089" -c 'import torchebm, torch; assert not hasattr(torchebm, "kernels") and torch.cuda.is_available()' 2> /dev/null; then
    T089_OK=1
    BENCH_089=(--torchebm089-python "$T089")
    TRITON089=$("$T089" -c 'import torchebm.cuda.fused_langevin as m; print(m.__file__)' 2> /dev/null)
  fi
  STEP_NOTE="${#wheels[@]} wheel(s); TorchEBM 0.8.9 with CUDA torch: ${T089_OK:+yes ($T089)}"
  [ -n "$T089_OK" ] || STEP_NOTE="${STEP_NOTE}no: the benchmark runs our implementations only"
  [ "${#wheels[@]}" != 0 ] || [ -n "$t089_wheel" ] || STEP_STATUS=NONE
}

step_build() {
  if [ "$MODE" = dry ]; then # the installed build (a GPU build needs nvcc and minutes)
    x "$PY" -c 'import torchebm; from torchebm import kernels; print(torchebm.__file__, kernels.how_loaded(), "CUDA kernels built:", kernels.cuda_kernels_built())'
  elif [ "$BUILD" = jit ]; then
    # No install: the package from the source tree, the extension compiled at first import.
    x env TORCHEBM_JIT=1 TORCHEBM_JIT_VERBOSE=1 MAX_JOBS="$JOBS" "$PY" -c "import torchebm, torch; from torchebm import kernels; assert kernels.how_loaded() == 'jit', kernels.loader._state; assert kernels.cuda_available(), 'no CUDA kernels'"
  else
    x env TORCHEBM_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" MAX_JOBS="$JOBS" \
      "$PY" -m pip install -v --no-build-isolation --no-deps -Cbuild-dir=build/gpu .
  fi
  [ "$MODE" = plan ] || STEP_NOTE="TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, $JOBS jobs, $BUILD"
}

step_registration() {
  if [ "$MODE" = dry ]; then x "$PY" -m py_compile scripts/cuda_build_check.py; else x "$PY" scripts/cuda_build_check.py; fi
  [ "$MODE" = plan ] || STEP_NOTE=$(last_line "cuda-build check|FAILED")
}

step_tests_cuda() {
  # Every module with tests marked `cuda` but the two that have steps of their own; each module
  # is collected alone (--continue-on-collection-errors), so one that needs a package this
  # machine lacks cannot stop the others.
  local files
  files=$(grep -l "mark\.cuda" tests/test_*.py | grep -v -e test_diagnostics_arviz.py -e test_chain_interrupt.py |
    sort -t/ -k2 | awk '/test_cuda\.py|test_mlp_chain_cuda\.py/ {print; next} {rest = rest $0 "\n"} END {printf "%s", rest}')
  # shellcheck disable=SC2086
  pytest_step -m cuda $files
}

step_tests_arviz() {
  if [ "$MODE" = run ] && ! "$PY" -c 'import arviz' 2> /dev/null; then
    STEP_STATUS=FAIL STEP_NOTE="arviz is not installed here: carry the wheels of scripts/gpu_check.sh --prepare"
    return 0
  fi
  pytest_step tests/test_diagnostics_arviz.py
}

step_tests_interrupt() {
  pytest_step -m cuda tests/test_chain_interrupt.py
  [ "$STEP_STATUS" != NONE ] || STEP_NOTE="tests/test_chain_interrupt.py has no test marked cuda"
}

distributed() { # distributed NAME [ARGS]: the example, a few training steps on every GPU
  local name=$1 ranks=1 steps=30
  shift
  [ "$MODE" = plan ] && ranks="<GPUs>"
  if [ "$MODE" = run ]; then ranks=$("$PY" -c 'import torch; print(max(torch.cuda.device_count(), 1))'); fi
  [ "$MODE" = dry ] && steps=2
  x env PYTHONUNBUFFERED=1 "$PY" -m torch.distributed.run --standalone --nproc-per-node "$ranks" \
    examples/train_distributed.py --device "$DEV" --steps "$steps" --checkpoint-dir "$WORK/$name-checkpoint" \
    --checkpoint-every "$((steps / 2))" "$@"
  [ "$MODE" = plan ] || STEP_NOTE="$ranks rank(s): $(last_line "^total:")"
}
step_ddp() { distributed ddp; }
step_fsdp2() { distributed fsdp2 --fsdp; }

step_bench_mlp() { bench fused,fused-cudagraph,hand_eager mlp_langevin gpu_mlp_cuda_graph; }

step_bench_gaussian() { bench fused,reference gaussian_langevin gaussian_hmc gaussian_mala; }
step_bench_overhead() { bench fused,fused-op,hand_eager sample_overhead mlp_sample_overhead; }
step_bench_doublewell() { bench fused,fused-op,reference gpu_doublewell_chain doublewell_langevin gpu_langevin_bandwidth normal_generation; }

step_profile() {
  local args=()
  [ "$MODE" = dry ] && args=(--device cpu --quick)
  [ "$MODE" = run ] && [ -n "${TRITON089:-}" ] && args=(--triton-089 "$TRITON089")
  x "$PY" scripts/gpu_profile.py --out "$WORK/profile.json" "${args[@]}"
  [ "$MODE" = plan ] || STEP_NOTE=$(last_line "^overhead:")
}

step_bench_compiled() { bench compiled,hand_compiled,hand_eager mlp_langevin; }

step_bench_pt() { bench fused,reference pt_doublewell; }
step_bench_ais() { bench fused,reference ais_doublewell; }

step_bench_rest() {
  local rest
  if [ "$MODE" = plan ]; then
    echo "      (every workload with a CUDA column not named above, listed at run time)"
    rest=REST
  else
    # shellcheck disable=SC2086
    rest=$("$PY" -c 'import sys; from bench import workloads as W
done = {m for n in sys.argv[1:] for m in W.GROUPS.get(n, [n])}
print(" ".join(n for n, w in W.WORKLOADS.items() if "cuda" in w.devices and n not in done))' $BENCH_ASKED)
    [ -n "$rest" ] || { STEP_STATUS=NONE STEP_NOTE="no other workload"; return 0; }
  fi
  # shellcheck disable=SC2086
  bench fused,fused-op,reference $rest
}

profiler_step() { # profiler_step TOOL ARGS...: TOOL on the chain kernels' launches, when installed
  local tool=$1
  shift
  if [ "$MODE" = dry ]; then # the target on the CPU; the tool only if it is there
    x "$PY" scripts/gpu_profile.py --ncu-target --device cpu --quick
    STEP_NOTE="$tool: $(command -v "$tool" || echo "not on PATH")"
  elif [ "$MODE" = run ] && ! command -v "$tool" > /dev/null; then
    STEP_STATUS=NONE STEP_NOTE="$tool is not on PATH"
  else
    x "$tool" "$@" "$PY" scripts/gpu_profile.py --ncu-target
  fi
}
step_ncu() {
  # Clocks as the machine has them; the chain kernels only (not the finalize or small kernels).
  profiler_step ncu --clock-control none --target-processes all \
    -k 'regex:chain_row_kernel|chain_elem_kernel|hmc_chain_kernel|mala_chain_kernel|mlp_kernel' \
    --launch-count 8 --section SpeedOfLight --section LaunchStats --section Occupancy \
    --section MemoryWorkloadAnalysis --section SchedulerStats --section WarpStateStats
}
step_nsys() { profiler_step nsys profile --stats=true --force-overwrite=true -o "$WORK/nsys_chains"; }

# ---- setup -------------------------------------------------------------------------------------
DEV=cuda
BENCH_SIZE=()
BENCH_089=() T089="" T089_OK="" TRITON089=""
if [ "$MODE" = dry ]; then
  DEV=cpu
  BENCH_SIZE=(--quick --repeats 1 --warmup 0 --no-plot)
fi

if [ "$MODE" = plan ]; then
  PY=$PYTHON CUDACXX=nvcc TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"(the GPU's)"}
  echo "gpu_check.sh plan: budget ${BUDGET}s; each step: cap, least time left to start it; commands"
  i=0
  for s in "${STEPS[@]}"; do
    i=$((i + 1))
    printf '%2d. %-16s cap %3ss, needs %3ss: %s\n' "$i" "$s" "${CAP[$s]}" "${MIN[$s]}" "${WHAT[$s]}"
    CURRENT=$s
    "step_$s"
  done
  echo "outputs: OUT/summary.txt, OUT/gpu_check.tar.gz (logs, JUnit XML, bench JSON, profile JSON)"
  exit 0
fi

if [ "$MODE" = dry ]; then
  "$SELF" --plan
  echo
fi
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
# WORK is emptied: only a folder this script made (it leaves a mark there) or a new one.
if [ -e "$WORK" ] && [ ! -e "$WORK/.gpu_check_work" ] && [ -n "$(ls -A "$WORK" 2> /dev/null)" ]; then
  echo "GPU_CHECK_WORK=$WORK is not empty and was not made by gpu_check.sh: not emptying it" >&2
  exit 2
fi
rm -rf "$WORK" && mkdir -p "$WORK" && touch "$WORK/.gpu_check_work" || exit 1
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

if [ "$MODE" = run ]; then
  if [ -z "${CUDA_HOME:-}" ]; then # torch's own search (CUDA_PATH, nvcc on PATH, /usr/local/cuda)
    CUDA_HOME=$("$PYTHON" -c 'from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME or "")' 2> /dev/null)
    # A wrapper script on PATH (e.g. /usr/local/bin/nvcc) misleads that search.
    [ -f "$CUDA_HOME/include/cuda_runtime.h" ] || CUDA_HOME=/usr/local/cuda
  fi
  export CUDA_HOME CUDACXX=${CUDACXX:-$CUDA_HOME/bin/nvcc}
  if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    TORCH_CUDA_ARCH_LIST=$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2> /dev/null || echo 9.0)
  fi
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
else
  PY=$(command -v "$PYTHON") CUDACXX=${CUDACXX:-nvcc} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
fi
export TORCH_CUDA_ARCH_LIST PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1 PYTHONUNBUFFERED=1

pack() { # the archive of WORK, replaced whole (a run cut mid-write keeps the previous one)
  tar -czf "$OUT/.gpu_check.tar.gz.part" -C "$WORK" --exclude=trajectories --exclude='inductor__*' \
    --exclude='*-checkpoint' --exclude='*.sqlite' --exclude='*.nsys-rep' --exclude=.gpu_check_work . 2> /dev/null &&
    mv -f "$OUT/.gpu_check.tar.gz.part" "$OUT/gpu_check.tar.gz"
}

say "torchebm GPU check ($MODE), $(date -u +%Y-%m-%dT%H:%M:%SZ), commit ${GPU_CHECK_COMMIT:-$(git rev-parse --short HEAD 2> /dev/null || echo '?')$(git status --porcelain 2> /dev/null | grep -q . && echo ' (with local changes)')}"
say "python $PY; build $BUILD; TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST; budget ${BUDGET}s; logs in $WORK"
say "$(printf '%-16s %-12s %5s  %s' step status secs result)"
failed=0 incomplete=0 ABORT=""
for s in "${STEPS[@]}"; do
  CURRENT=$s STEP_RC=0 STEP_STATUS="" STEP_NOTE=""
  t0=$SECONDS
  left=$((T_END - SECONDS))
  if [ -n "${GPU_CHECK_ONLY:-}" ] && ! in_list "$s" "$GPU_CHECK_ONLY"; then
    continue
  elif [ -n "${GPU_CHECK_SKIP:-}" ] && in_list "$s" "$GPU_CHECK_SKIP"; then
    STEP_STATUS=SKIP STEP_NOTE="GPU_CHECK_SKIP"
  elif [ -n "$ABORT" ]; then
    STEP_STATUS=SKIP STEP_NOTE=$ABORT
  elif [ "$left" -lt "${MIN[$s]}" ]; then
    STEP_STATUS=SKIP STEP_NOTE="time: ${left}s left of the budget, needs ${MIN[$s]}s"
  else
    STEP_DEADLINE=$((SECONDS + (CAP[$s] < left ? CAP[$s] : left)))
    echo "==> $s: ${WHAT[$s]}"
    "step_$s" > "$WORK/$s.log" 2>&1
    if [ -z "$STEP_STATUS" ]; then
      case "$STEP_RC" in
        0) STEP_STATUS=ok ;;
        124 | 137) STEP_STATUS=TIMEOUT ;;
        *) STEP_STATUS=FAIL:$STEP_RC ;;
      esac
    fi
  fi
  case "$STEP_STATUS" in
    ok | NONE) ;;
    SKIP) incomplete=1 ;;
    *) failed=1 ;;
  esac
  if [ "$s" = build ] && [ "$STEP_STATUS" != ok ] && [ "$MODE" = run ]; then ABORT="the build did not succeed"; fi
  say "$(printf '%-16s %-12s %5d  %s' "$s" "$STEP_STATUS" $((SECONDS - t0)) "${STEP_NOTE%; }")"
  case "$STEP_STATUS" in ok | NONE | SKIP) ;; *) tail -n 5 "$WORK/$s.log" 2> /dev/null | sed 's/^/    | /' ;; esac
  pack
done

overall=PASS
[ "$incomplete" = 0 ] || overall=INCOMPLETE
[ "$failed" = 0 ] || overall=FAIL
{
  echo "overall: $overall ($((SECONDS))s)"
  for f in "$WORK"/tests_*.log; do
    [ -f "$f" ] && grep -E "^(FAILED|ERROR) " "$f" | sed "s|^|$(basename "$f" .log): |"
  done
  for f in "$WORK"/bench_*/table.txt; do
    [ -f "$f" ] && printf '\n== %s\n' "$(basename "$(dirname "$f")")" && grep -v '^\[' "$f"
  done
  [ -f "$WORK/profile.log" ] && printf '\n== profile\n' && grep -E "^(dense |overhead:|doublewell |mlp |update )" "$WORK/profile.log"
} >> "$SUMMARY"
pack
# The details, then the step table again: a caller that keeps only the end of the output sees it.
echo
sed -n '/^overall: /,$p' "$SUMMARY" | tail -n +2
sed -n '1,/^overall: /p' "$SUMMARY"
[ "$overall" = PASS ]

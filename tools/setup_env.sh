#!/usr/bin/env bash
# Set up .venv with torch, mmcv-full 1.7.1 built with compiled ops, mmdet 2.28.2,
# mmcls 0.25.0 (tests/test_mmcls.py) and davarocr_mmcv in editable mode. Idempotent:
# a finished setup is detected and skipped; the mmcv-full wheel is cached outside the
# repo, keyed by torch version, Python ABI and the ops it has, so only the first
# setup on a machine pays the build (CPU ops: ~12 minutes).
#
# Where torch sees no GPU, mmcv-full gets CPU ops. Where it sees one, CUDA ops for
# the GPUs present, compiled by an nvcc of torch's CUDA major version: the one in
# CUDA_HOME, on PATH or in /usr/local/cuda, else one installed from the package
# index (nvidia-cuda-nvcc). With no compiler at all the set-up says what will not
# work and how to fix it, and builds CPU ops with the GPU hidden from the build.
# tools/cuda_plan.py makes that decision.
#
# Environment:
#   VENV            target virtual environment (default: .venv)
#   PYTHON          interpreter that creates it (default: python3)
#   DAVAR_CACHE     wheel cache and build logs (default: ~/.cache/davarocr-mmcv);
#                   tools/wheel_cache.py says what a cache entry is
#   MAX_JOBS        parallel compile jobs (default: number of cores; for CUDA
#                   ops also at most one per 2 GiB of available memory)
#   MMCV_SDIST      a local mmcv-full-1.7.1.tar.gz to build from (offline
#                   machines); default: WHEELHOUSE's, else the package index's
#   WHEELHOUSE      a folder of wheels (and the mmcv-full sdist) to install
#                   from instead of the package index (offline machines)
#   SYSTEM_TORCH=1  use the torch and torchvision installed for PYTHON (the
#                   venv sees its site-packages) instead of the pinned ones:
#                   images that ship torch
#   TORCH_VERSION   install this torch (e.g. 2.11.0) and the torchvision of
#                   its release instead of the pinned ones
#   NUMPY=2         numpy 2 and the opencv that goes with it
#                   (tools/constraints-numpy2.txt) instead of numpy<2
#   CUDA_HOME       the CUDA toolkit to compile CUDA ops with
#   TORCH_CUDA_ARCH_LIST  GPU architectures to compile for, e.g. "8.0;9.0"
#                   (default: those of the GPUs present)
#
# The compiler and setuptools output of the mmcv-full build goes to a log file
# in DAVAR_CACHE; the terminal shows one progress line, and on failure the
# log's tail and its path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
CACHE="${DAVAR_CACHE:-$HOME/.cache/davarocr-mmcv}"
CONSTRAINTS="$ROOT/tools/constraints.txt"
STAMP="$VENV/.davarocr-mmcv-ready"
MMCV_VERSION=1.7.1
USER_MAX_JOBS="${MAX_JOBS:-}"
# the stamp's second line where a GPU machine got CPU ops only
NO_CUDA_OPS="cpu ops only: no CUDA compiler"
INDEX=()
[[ -z "${WHEELHOUSE:-}" ]] || INDEX=(--no-index --find-links "$WHEELHOUSE")

STEP="start"
step() { STEP="$1"; echo "[setup $(date +%H:%M:%S)] $1"; }
on_error() {
  echo "[setup] FAILED at step: $STEP" >&2
  echo "[setup] Fix the cause shown above, then retry with: make venv" >&2
  echo "[setup] (a broken environment can be dropped with: rm -rf $VENV)" >&2
}
trap on_error ERR

# Work of step 4, undone on exit: the build folder (the sdist, its source
# and the wheel pip writes) and a build still running (Ctrl-C). Nothing of a
# build reaches the cache until tools/wheel_cache.py stores its wheel.
BUILD="" BUILD_PID=""
cleanup() {
  if [[ -n "$BUILD_PID" ]] && kill -0 "$BUILD_PID" 2>/dev/null; then
    kill -TERM -- "-$BUILD_PID" 2>/dev/null || true
  fi
  [[ -z "$BUILD" ]] || rm -rf "$BUILD"
}
trap cleanup EXIT
trap 'echo; echo "[setup] interrupted during: $STEP" >&2; exit 130' INT TERM

duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# logged LOG WHAT CMD...: run CMD with all its output in the file LOG, in its
# own process group. Meanwhile show one progress line "WHAT: elapsed time":
# redrawn every second on a terminal, printed every minute otherwise. On
# failure print the log's tail and path, and return CMD's exit status.
logged() {
  local log="$1" what="$2" start=$SECONDS status=0 next=60 elapsed compiled line
  shift 2
  echo "[setup] $what: output in $log"
  setsid "$@" >"$log" 2>&1 </dev/null &
  BUILD_PID=$!
  while kill -0 "$BUILD_PID" 2>/dev/null; do
    sleep 1
    elapsed=$((SECONDS - start))
    # ninja numbers its compile steps: "  [12/72] c++ ..."
    compiled="$(grep -aoE '^ *\[[0-9]+/[0-9]+\]' "$log" | tail -n 1 | tr -d '[] ')" || true
    line="[setup] $what: $(duration $elapsed)${compiled:+, $compiled compiled}"
    if [[ -t 1 ]]; then
      printf '\r%s ' "$line"
    elif ((elapsed >= next)); then
      echo "$line"
      next=$((next + 60))
    fi
  done
  wait "$BUILD_PID" || status=$?
  BUILD_PID=""
  [[ -t 1 ]] && echo
  if ((status != 0)); then
    echo "[setup] $what failed after $(duration $((SECONDS - start))); first errors in its log:" >&2
    { grep -a -m 5 'error:' "$log" || true; } | sed 's/^/[setup]   | /' >&2
    echo "[setup] last lines of its log:" >&2
    tail -n 40 "$log" | sed 's/^/[setup]   | /' >&2
    echo "[setup] full log: $log" >&2
    return "$status"
  fi
  echo "[setup] $what: done in $(duration $((SECONDS - start)))"
}

# pip: its warnings are shown (less the machine-wide "Location ... is
# ignored" notices), and its full output when it fails.
quiet() {
  local log status=0
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || status=$?
  if ((status == 0)); then  # pip's own warnings only, not a build's noise
    grep -E '^(WARNING|ERROR):' "$log" | grep -v "is ignored: it is neither a file nor a directory" || true
  else
    grep -v "is ignored: it is neither a file nor a directory" "$log" || true
  fi
  rm -f "$log"
  return "$status"
}

# The stamp records what the environment was built from; a change to the
# constraints, setup.py or the set-up rebuilds it. A GPU machine that got
# CPU ops only looks for a CUDA compiler again each time.
# The variables that choose the pins are part of it.
fingerprint() {
  { cat "$CONSTRAINTS" "$ROOT/tools/constraints-numpy2.txt" "$ROOT/setup.py" \
      "$ROOT/tools/setup_env.sh" "$ROOT/tools/cuda_plan.py" "$ROOT/tools/wheel_cache.py"
    echo "SYSTEM_TORCH=${SYSTEM_TORCH:-0} TORCH_VERSION=${TORCH_VERSION:-} NUMPY=${NUMPY:-1}"
  } | sha256sum | cut -d' ' -f1
}

# write_pins FILE [LINE...]: tools/constraints.txt into FILE, the pins of
# each package a LINE names replaced by the LINE (a bare name: dropped).
write_pins() {
  local file="$1" line names=()
  shift
  for line in "$@"; do names+=("${line%%[<>=!~ ]*}"); done
  if ((${#names[@]})); then
    local IFS='|'
    grep -vE "^(${names[*]})([<>=!~ ]|\$)" "$CONSTRAINTS" > "$file" || true
  else
    cp "$CONSTRAINTS" "$file"
  fi
  for line in "$@"; do
    [[ "$line" == "${line%%[<>=!~ ]*}" ]] || echo "$line" >> "$file"
  done
}

# cuda_plan [--installed]: set the PLAN_* variables of tools/cuda_plan.py
cuda_plan() {
  local plan
  plan="$("$PY" "$ROOT/tools/cuda_plan.py" "$@")"
  eval "$plan"
}

# The paragraph of a GPU machine without a CUDA compiler.
no_compiler() {
  local fix="$VENV/bin/pip install" package packages
  read -ra packages <<<"$PLAN_PACKAGES"
  for package in "${packages[@]}"; do fix+=" \"$package\""; done
  cat <<EOF
[setup] No CUDA compiler: torch sees $PLAN_GPUS, but there is $PLAN_WHY.
[setup] So mmcv-full gets CPU ops only, built with the GPU hidden from its build.
[setup] What will not work: mmcv's CUDA ops (nms, RoIAlign and the others on CUDA
[setup] tensors), hence mmdet's detectors and DavarOCR's text detectors on the
[setup] GPU; models without mmcv ops, such as the recognizers, still train there.
[setup] The fix, a CUDA $PLAN_CUDA compiler and a rebuild with CUDA ops:
[setup]   $fix && make venv
EOF
}

# bash tools/setup_env.sh --fingerprint: what the stamp would record
if [[ "${1:-}" == --fingerprint ]]; then fingerprint; exit 0; fi

# The variables that choose pins, checked before anything is done.
case "${NUMPY:-1}" in 1|2) ;; *)
  echo "[setup] NUMPY must be 1 (numpy<2, the default) or 2, got '$NUMPY'" >&2; exit 2 ;;
esac
if [[ -n "${TORCH_VERSION:-}" ]]; then
  if ! [[ "$TORCH_VERSION" =~ ^2\.([0-9]+)\.[0-9]+$ ]]; then
    echo "[setup] TORCH_VERSION must be a torch 2 release such as 2.11.0, got '$TORCH_VERSION'" >&2
    exit 2
  fi
  TORCHVISION="0.$((BASH_REMATCH[1] + 15)).*"  # torchvision 0.(N+15) goes with torch 2.N
fi

# variable_pins FILE: tools/constraints.txt into FILE, less what the
# variables choose instead
variable_pins() {
  local replace=() numpy2=()
  if [[ "${SYSTEM_TORCH:-0}" == 1 ]]; then  # the torch that is there
    replace+=(torch torchvision)
  elif [[ -n "${TORCH_VERSION:-}" ]]; then
    replace+=("torch==$TORCH_VERSION" "torchvision==$TORCHVISION")
  fi
  if [[ "${NUMPY:-1}" == 2 ]]; then
    mapfile -t numpy2 < <(grep -vE '^(#|$)' "$ROOT/tools/constraints-numpy2.txt")
    replace+=("${numpy2[@]}")
  fi
  write_pins "$1" ${replace[@]+"${replace[@]}"}
}

# bash tools/setup_env.sh --pins FILE: the pins the variables give, into
# FILE (tools/gpu_bundle.sh downloads by them), and nothing else
if [[ "${1:-}" == --pins ]]; then variable_pins "$2"; exit 0; fi

# One set-up of a venv at a time (make demo and make test started together):
# the second waits, then finds the venv up to date. Set-ups of other venvs
# run beside it; they share the wheel cache safely (tools/wheel_cache.py).
LOCK="${VENV%/}.lock"
exec 9>"$LOCK"
if ! flock -n 9; then
  echo "[setup] another set-up of $VENV is running; waiting for it to finish"
  flock 9
fi

if [[ -f "$STAMP" && "$(head -n 1 "$STAMP")" == "$(fingerprint)" ]]; then
  if ! grep -qxF "$NO_CUDA_OPS" "$STAMP"; then
    echo "[setup] $VENV is up to date"
    exit 0
  fi
  PY="$VENV/bin/python"
  cuda_plan --installed
  if [[ "$PLAN_MODE" != cuda ]]; then
    echo "[setup] $VENV is up to date, with CPU ops only: no CUDA compiler for the GPU"
    exit 0
  fi
  echo "[setup] a CUDA compiler is here now ($PLAN_WHY): rebuilding with CUDA ops"
fi

step "1/6 create virtual environment $VENV"
if [[ "${SYSTEM_TORCH:-0}" == 1 && ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv --system-site-packages "$VENV"
  # PYTHON may itself be a venv (an image's /opt/torch/.venv/bin/python3),
  # whose packages the base's site-packages (--system-site-packages) lack:
  # a .pth file names every package folder PYTHON sees, after the venv's own
  SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  "$PYTHON" - > "$SITE/_davarocr_system_torch.pth" <<'EOF'
import os, sys, sysconfig
stdlib = {os.path.realpath(sysconfig.get_paths()[k]) for k in ('stdlib', 'platstdlib')}
for path in sys.path[1:]:
    real = os.path.realpath(path) if path else ''
    if real and os.path.isdir(real) and real not in stdlib and \
            os.path.basename(real) != 'lib-dynload':
        print(path)
EOF
else
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
fi
# The pins of this environment, where the tests read them.
PINS="$(cd "$VENV" && pwd)/.davarocr-constraints.txt"
variable_pins "$PINS"
PY="$(cd "$VENV" && pwd)/bin/python"  # VENV may be relative or absolute
PIP=("$PY" -m pip install --disable-pip-version-check -c "$PINS" "${INDEX[@]}")
quiet "${PIP[@]}" -q --upgrade pip wheel "setuptools<81" ninja

if [[ "${SYSTEM_TORCH:-0}" == 1 ]]; then
  step "2/6 use the torch and torchvision installed for $PYTHON"
  "$PY" -c 'import torch, torchvision'
else
  step "2/6 install torch and torchvision (about 2 minutes the first time)"
  quiet "${PIP[@]}" -q torch torchvision
fi

TORCH_FOUND="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
PY_ABI="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"

step "3/6 install mmcv-full's build requirements"
# opencv: whichever flavour is there (an image's headless one), else
# opencv-python, which mmcv-full's metadata names
OPENCV=()
"$PY" -c 'import cv2' 2>/dev/null || OPENCV=(opencv-python)
quiet "${PIP[@]}" -q numpy addict packaging Pillow pyyaml yapf ${OPENCV[@]+"${OPENCV[@]}"}
cuda_plan
if [[ "$PLAN_MODE" == install ]]; then
  echo "[setup] torch sees $PLAN_GPUS; $PLAN_WHY"
  echo "[setup] installing the CUDA $PLAN_CUDA compiler: $PLAN_PACKAGES"
  read -ra PACKAGES <<<"$PLAN_PACKAGES"
  quiet "${PIP[@]}" -q "${PACKAGES[@]}" || true  # none: said below
  cuda_plan --installed
fi
# the environment of the ops' build: CPU ops unless CUDA ones can be had
BUILD_ENV=(MMCV_WITH_OPS=1 FORCE_CUDA=0)
OPS="CPU ops" TAKES="about 12 minutes"
case "$PLAN_MODE" in
  cuda)
    echo "[setup] torch sees $PLAN_GPUS: CUDA ops for TORCH_CUDA_ARCH_LIST=$PLAN_ARCHS, $PLAN_WHY"
    BUILD_ENV=(MMCV_WITH_OPS=1 FORCE_CUDA=1 "CUDA_HOME=$PLAN_CUDA_HOME"
               "TORCH_CUDA_ARCH_LIST=$PLAN_ARCHS" "PATH=$PLAN_CUDA_HOME/bin:$PATH")
    if [[ -n "$PLAN_INCLUDES" ]]; then  # searched after the toolkit's
      BUILD_ENV+=("CPATH=${CPATH:+$CPATH:}$PLAN_INCLUDES"
                  "NVCC_APPEND_FLAGS=${NVCC_APPEND_FLAGS:-} -I${PLAN_INCLUDES//:/ -I}")
    fi
    if [[ -n "$PLAN_LIBCUDART" ]]; then  # -lcudart wants libcudart.so
      LINKS="$(cd "$VENV" && pwd)/.cuda-link"
      mkdir -p "$LINKS" && ln -sf "$PLAN_LIBCUDART" "$LINKS/libcudart.so"
      BUILD_ENV+=("LIBRARY_PATH=$LINKS${LIBRARY_PATH:+:$LIBRARY_PATH}")
    fi
    OPS="CUDA $PLAN_CUDA ops for $PLAN_ARCHS" TAKES="not yet timed" ;;
  nocc)
    no_compiler
    BUILD_ENV+=(CUDA_VISIBLE_DEVICES=) ;;
esac
export MAX_JOBS="${USER_MAX_JOBS:-$PLAN_JOBS}"

WHEEL_BASE="$CACHE/mmcv-full-$MMCV_VERSION-torch$TORCH_FOUND-$PY_ABI"
WHEEL_DIR="$WHEEL_BASE-$PLAN_KEY"
# cache_wheel DIR: set WHEEL to the one readable mmcv-full wheel in the
# folder DIR (tools/wheel_cache.py check); else WHY says what is there
cache_wheel() {
  local said status=0
  said="$("$PY" "$ROOT/tools/wheel_cache.py" check "$1")" || status=$?
  if ((status == 0)); then WHEEL="$said" WHY=""; else WHEEL="" WHY="$said"; fi
  return "$status"
}
# a CPU-ops wheel cached before the key named the ops serves as well
if [[ "$PLAN_KEY" == cpu && ! -e "$WHEEL_DIR" ]] && cache_wheel "$WHEEL_BASE"; then
  WHEEL_DIR="$WHEEL_BASE"
fi

if cache_wheel "$WHEEL_DIR"; then
  step "4/6 reuse cached mmcv-full wheel from $WHEEL_DIR"
else
  if [[ "$WHY" != "it does not exist" ]]; then
    # never a loop: built once here; a build that gives no entry fails
    echo "[setup] the cache entry $WHEEL_DIR is not usable: $WHY; building it again"
  fi
  step "4/6 build mmcv-full $MMCV_VERSION with $OPS against torch $TORCH_FOUND ($TAKES)"
  mkdir -p "$CACHE"
  BUILD="$(mktemp -d)"
  if [[ -z "${MMCV_SDIST:-}" && -f "${WHEELHOUSE:-}/mmcv-full-$MMCV_VERSION.tar.gz" ]]; then
    MMCV_SDIST="$WHEELHOUSE/mmcv-full-$MMCV_VERSION.tar.gz"
  fi
  if [[ -n "${MMCV_SDIST:-}" ]]; then
    cp "$MMCV_SDIST" "$BUILD/"
  else
    quiet "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: -c "$PINS" "${INDEX[@]}" -d "$BUILD" "mmcv-full==$MMCV_VERSION"
  fi
  tar -xzf "$BUILD"/mmcv-full-*.tar.gz -C "$BUILD"
  SRC="$(echo "$BUILD"/mmcv-full-$MMCV_VERSION)"
  # torch>=2.14 headers need C++20, older 2.x headers C++17; mmcv 1.7.1 hard-codes C++14.
  CXX_STD="$("$PY" -c 'import torch; v=tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); print("c++20" if v >= (2, 14) else "c++17")')"
  sed -i "s/-std=c++14/-std=$CXX_STD/g" "$SRC/setup.py"
  grep -q -- "-std=$CXX_STD" "$SRC/setup.py"
  # pip writes the wheel into a folder of this build's own (pip's
  # "wheel -w" copies it to a FILE of that name if the folder is gone when
  # the build ends); tools/wheel_cache.py then checks it and renames a
  # uniquely named copy into the cache: the entry appears whole or not.
  mkdir "$BUILD/wheels"
  logged "$WHEEL_DIR.log" "building mmcv-full" \
    env "${BUILD_ENV[@]}" "$PY" -m pip wheel -v --use-pep517 \
    --no-build-isolation --no-deps \
    -c "$PINS" "${INDEX[@]}" -w "$BUILD/wheels" "$SRC"
  WHEEL="$("$PY" "$ROOT/tools/wheel_cache.py" store "$BUILD/wheels" "$WHEEL_DIR")"
  echo "[setup] cached $WHEEL"
fi

step "5/6 install mmcv-full, mmdet 2.28.2, mmcls 0.25.0 and test tools"
# the cached build itself, also over an mmcv-full 1.7.1 of other ops
quiet "${PIP[@]}" -q --no-deps --force-reinstall "$WHEEL"
quiet "${PIP[@]}" -q "$WHEEL" mmdet mmcls pytest pytest-timeout hypothesis vermin

step "6/6 install davarocr_mmcv (editable) and check the stack"
# PEP 660 also with an older pip (an offline image's): its legacy
# "setup.py develop" calls pip again, with build isolation, so an index
quiet "${PIP[@]}" -q --no-deps --no-build-isolation --use-pep517 -e "$ROOT"
CHECK_LOG="$(mktemp)"
if ! PLAN_MODE="$PLAN_MODE" "$PY" -W ignore - 2>"$CHECK_LOG" <<'EOF'
import os
import mmcv, mmcv.ops, mmdet, torch, numpy
from mmcv.ops import get_compiling_cuda_version, nms  # the compiled extension
import davarocr_mmcv  # noqa: F401
from mmcv.runner import HOOKS
assert 'DavarCheckpointHook' in HOOKS.module_dict
ops = get_compiling_cuda_version()
if os.environ['PLAN_MODE'] == 'cuda':  # the kernels run on this GPU
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]]).cuda()
    kept = nms(boxes, torch.tensor([0.9, 0.8]).cuda(), 0.5)[1]
    assert kept.is_cuda and kept.tolist() == [0], kept
ops = 'CPU' if ops == 'not available' else f'CUDA {ops}'
print(f"[setup] ok: torch {torch.__version__}, mmcv-full {mmcv.__version__} "
      f"({ops} ops), mmdet {mmdet.__version__}, numpy {numpy.__version__}")
EOF
then
  cat "$CHECK_LOG" >&2
  rm -f "$CHECK_LOG"
  false
fi
rm -f "$CHECK_LOG"
if [[ "$PLAN_MODE" == nocc ]]; then
  echo "[setup] CPU ops only, although torch sees a GPU: see 'No CUDA compiler' above"
  printf '%s\n%s\n' "$(fingerprint)" "$NO_CUDA_OPS" > "$STAMP"
else
  fingerprint > "$STAMP"
fi

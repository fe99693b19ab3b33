#!/usr/bin/env bash
# Set up .venv with torch, a CPU build of mmcv-full 1.7.1 (compiled ops), mmdet 2.28.2,
# mmcls 0.25.0 (tests/test_mmcls.py) and davarocr_mmcv in editable mode. Idempotent:
# a finished setup is detected and skipped; the mmcv-full wheel is cached outside the
# repo, keyed by torch version and Python ABI, so only the first setup on a machine
# pays the ~12 minute build.
#
# Environment:
#   VENV            target virtual environment (default: .venv)
#   PYTHON          interpreter that creates it (default: python3)
#   DAVAR_CACHE     wheel cache and build logs (default: ~/.cache/davarocr-mmcv)
#   MAX_JOBS        parallel compile jobs (default: number of cores)
#   MMCV_SDIST      a local mmcv-full-1.7.1.tar.gz to build from (offline
#                   machines); default: download it from the package index
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
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

STEP="start"
step() { STEP="$1"; echo "[setup $(date +%H:%M:%S)] $1"; }
on_error() {
  echo "[setup] FAILED at step: $STEP" >&2
  echo "[setup] Fix the cause shown above, then retry with: make venv" >&2
  echo "[setup] (a broken environment can be dropped with: rm -rf $VENV)" >&2
}
trap on_error ERR

# Work of step 4, undone on exit: the build folder, an unfinished wheel
# folder, and a build still running (Ctrl-C).
BUILD="" PARTIAL="" BUILD_PID=""
cleanup() {
  if [[ -n "$BUILD_PID" ]] && kill -0 "$BUILD_PID" 2>/dev/null; then
    kill -TERM -- "-$BUILD_PID" 2>/dev/null || true
  fi
  [[ -z "$BUILD" ]] || rm -rf "$BUILD"
  [[ -z "$PARTIAL" ]] || rm -rf "$PARTIAL"
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
# constraints or setup.py rebuilds it.
fingerprint() { cat "$CONSTRAINTS" "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" | sha256sum | cut -d' ' -f1; }
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(fingerprint)" ]]; then
  echo "[setup] $VENV is up to date"
  exit 0
fi

step "1/6 create virtual environment $VENV"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PY="$(cd "$VENV" && pwd)/bin/python"  # VENV may be relative or absolute
PIP=("$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS")
quiet "${PIP[@]}" -q --upgrade pip wheel "setuptools<81" ninja

step "2/6 install torch and torchvision (about 2 minutes the first time)"
quiet "${PIP[@]}" -q torch torchvision

TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
PY_ABI="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE/mmcv-full-$MMCV_VERSION-torch$TORCH_VERSION-$PY_ABI"

step "3/6 install mmcv-full's build requirements"
quiet "${PIP[@]}" -q numpy addict packaging Pillow pyyaml yapf opencv-python

if ! ls "$WHEEL_DIR"/mmcv_full-*.whl >/dev/null 2>&1; then
  step "4/6 build mmcv-full $MMCV_VERSION with CPU ops against torch $TORCH_VERSION (about 12 minutes)"
  BUILD="$(mktemp -d)"
  if [[ -n "${MMCV_SDIST:-}" ]]; then
    cp "$MMCV_SDIST" "$BUILD/"
  else
    quiet "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: -c "$CONSTRAINTS" -d "$BUILD" "mmcv-full==$MMCV_VERSION"
  fi
  tar -xzf "$BUILD"/mmcv-full-*.tar.gz -C "$BUILD"
  SRC="$(echo "$BUILD"/mmcv-full-$MMCV_VERSION)"
  # torch>=2.14 headers need C++20, older 2.x headers C++17; mmcv 1.7.1 hard-codes C++14.
  CXX_STD="$("$PY" -c 'import torch; v=tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); print("c++20" if v >= (2, 14) else "c++17")')"
  sed -i "s/-std=c++14/-std=$CXX_STD/g" "$SRC/setup.py"
  grep -q -- "-std=$CXX_STD" "$SRC/setup.py"
  PARTIAL="$WHEEL_DIR.partial"
  mkdir -p "$PARTIAL"
  logged "$WHEEL_DIR.log" "building mmcv-full" \
    env MMCV_WITH_OPS=1 FORCE_CUDA=0 "$PY" -m pip wheel -v \
    --no-build-isolation --no-deps \
    -c "$CONSTRAINTS" -w "$PARTIAL" "$SRC"
  rm -rf "$WHEEL_DIR" && mv "$PARTIAL" "$WHEEL_DIR" && PARTIAL=""
else
  step "4/6 reuse cached mmcv-full wheel from $WHEEL_DIR"
fi

step "5/6 install mmcv-full, mmdet 2.28.2, mmcls 0.25.0 and test tools"
quiet "${PIP[@]}" -q "$WHEEL_DIR"/mmcv_full-*.whl mmdet mmcls pytest pytest-timeout hypothesis

step "6/6 install davarocr_mmcv (editable) and check the stack"
quiet "${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT"
CHECK_LOG="$(mktemp)"
if ! "$PY" -W ignore - 2>"$CHECK_LOG" <<'EOF'
import mmcv, mmcv.ops, mmdet, torch, numpy
from mmcv.ops import nms  # noqa: F401  the compiled extension
import davarocr_mmcv  # noqa: F401
from mmcv.runner import HOOKS
assert 'DavarCheckpointHook' in HOOKS.module_dict
print(f"[setup] ok: torch {torch.__version__}, mmcv-full {mmcv.__version__}, "
      f"mmdet {mmdet.__version__}, numpy {numpy.__version__}")
EOF
then
  cat "$CHECK_LOG" >&2
  rm -f "$CHECK_LOG"
  false
fi
rm -f "$CHECK_LOG"
fingerprint > "$STAMP"

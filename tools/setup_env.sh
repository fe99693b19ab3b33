#!/usr/bin/env bash
# Set up .venv with torch, a CPU build of mmcv-full 1.7.1 (compiled ops), mmdet 2.28.2
# and davarocr_mmcv in editable mode. Idempotent: a finished setup is detected and
# skipped; the mmcv-full wheel is cached outside the repo, keyed by torch version and
# Python ABI, so only the first setup on a machine pays the ~12 minute build.
#
# Environment:
#   VENV            target virtual environment (default: .venv)
#   PYTHON          interpreter that creates it (default: python3)
#   DAVAR_CACHE     wheel cache (default: ~/.cache/davarocr-mmcv)
#   MAX_JOBS        parallel compile jobs (default: number of cores)
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

# pip, with the machine-wide "Location ... is ignored" notices filtered out;
# its full output is shown when it fails.
quiet() {
  local log status=0
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || status=$?
  grep -v "is ignored: it is neither a file nor a directory" "$log" || true
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
PY="$ROOT/$VENV/bin/python"
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
  trap 'rm -rf "$BUILD"' EXIT
  quiet "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: -c "$CONSTRAINTS" -d "$BUILD" "mmcv-full==$MMCV_VERSION"
  tar -xzf "$BUILD"/mmcv-full-*.tar.gz -C "$BUILD"
  SRC="$(echo "$BUILD"/mmcv-full-$MMCV_VERSION)"
  # torch>=2.14 headers need C++20, older 2.x headers C++17; mmcv 1.7.1 hard-codes C++14.
  CXX_STD="$("$PY" -c 'import torch; v=tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); print("c++20" if v >= (2, 14) else "c++17")')"
  sed -i "s/-std=c++14/-std=$CXX_STD/g" "$SRC/setup.py"
  grep -q -- "-std=$CXX_STD" "$SRC/setup.py"
  mkdir -p "$WHEEL_DIR.partial"
  quiet env MMCV_WITH_OPS=1 FORCE_CUDA=0 "$PY" -m pip wheel -q \
    --no-build-isolation --no-deps \
    -c "$CONSTRAINTS" -w "$WHEEL_DIR.partial" "$SRC"
  rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.partial" "$WHEEL_DIR"
else
  step "4/6 reuse cached mmcv-full wheel from $WHEEL_DIR"
fi

step "5/6 install mmcv-full, mmdet 2.28.2 and test tools"
quiet "${PIP[@]}" -q "$WHEEL_DIR"/mmcv_full-*.whl mmdet pytest pytest-timeout

step "6/6 install davarocr_mmcv (editable) and check the stack"
quiet "${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT"
"$PY" -W ignore - <<'EOF'
import mmcv, mmcv.ops, mmdet, torch, numpy
from mmcv.ops import nms  # noqa: F401  the compiled extension
import davarocr_mmcv  # noqa: F401
from mmcv.runner import HOOKS
assert 'DavarCheckpointHook' in HOOKS.module_dict
print(f"[setup] ok: torch {torch.__version__}, mmcv-full {mmcv.__version__}, "
      f"mmdet {mmdet.__version__}, numpy {numpy.__version__}")
EOF
fingerprint > "$STAMP"

#!/usr/bin/env bash
# Build the bundle an offline GPU image needs for `make gpu-check`: the
# mmcv-full 1.7.1 sdist and the wheels of what such an image lacks, for its
# Python, with numpy 2. Run it on a machine with the package index; carry
# the folder to the GPU machine and run there:
#   bash tools/gpu_check.sh --bundle .gpu-bundle --time-limit 540
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash tools/gpu_bundle.sh [--out DIR] [--python X.Y] [--max-mib N]
       make gpu-bundle

Needs the set-up's environment (make venv). Downloads into DIR (default
.gpu-bundle, emptied first) the mmcv-full 1.7.1 sdist and, for CPython X.Y
(default 3.12) on manylinux x86_64, the wheels of the packages a GPU image
with torch, numpy 2, opencv, scipy, matplotlib and pytest lacks: mmdet
2.28.2, mmcls 0.25.0, yapf 0.40.1 and what it needs, addict, terminaltables,
pycocotools, vermin and setuptools<81 (mmcv-full's setup.py imports
pkg_resources). Versions follow tools/constraints.txt with
the numpy 2 pins of tools/constraints-numpy2.txt. Prints the bundle's size
and fails if it is over N MiB (default 64: what the device tool carries).

  --out DIR      the bundle folder (default .gpu-bundle)
  --python X.Y   the target's Python (default 3.12)
  --max-mib N    the size limit in MiB (default 64)
EOF
}

wrong() { echo "gpu_bundle.sh: $1" >&2; echo >&2; usage >&2; exit 2; }

OUT=.gpu-bundle PYVER=3.12 MAX_MIB=64
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --out|--python|--max-mib)
      (($# >= 2)) || wrong "$1 needs a value"
      case "$1" in
        --out) OUT="$2" ;;
        --python) [[ "$2" =~ ^3\.[0-9]+$ ]] || wrong "--python takes X.Y, such as 3.12; got '$2'"
                  PYVER="$2" ;;
        --max-mib) [[ "$2" =~ ^[1-9][0-9]*$ ]] || wrong "--max-mib takes a positive whole number; got '$2'"
                   MAX_MIB="$2" ;;
      esac
      shift 2 ;;
    *) wrong "unknown argument '$1'" ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# pip prepares the sdist's metadata, and mmcv-full's setup.py imports torch:
# the set-up's environment (make gpu-bundle sets it up first)
PYTHON="${PYTHON:-${VENV:-$ROOT/.venv}/bin/python}"
[[ -x "$PYTHON" ]] || { echo "gpu_bundle.sh: no $PYTHON; run make venv first (or make gpu-bundle)" >&2; exit 2; }
# the wheels: names as tools/constraints.txt pins them
WHEELS=(mmdet mmcls "yapf==0.40.1" platformdirs tomli importlib-metadata lazy-importer zipp
        addict terminaltables pycocotools vermin "setuptools<81")

rm -rf "$OUT"
mkdir -p "$OUT"
PINS="$(mktemp)"
trap 'rm -f "$PINS"' EXIT
# the pins the image's set-up asks for (gpu_check.sh --bundle)
SYSTEM_TORCH=1 NUMPY=2 TORCH_VERSION= bash "$ROOT/tools/setup_env.sh" --pins "$PINS"
PLATFORMS=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$tag")
done

echo "[bundle] the mmcv-full 1.7.1 sdist"
"$PYTHON" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
  -d "$OUT" "mmcv-full==1.7.1"
echo "[bundle] wheels for CPython $PYVER: ${WHEELS[*]}"
"$PYTHON" -m pip download -q --no-deps --only-binary :all: -c "$PINS" \
  --python-version "$PYVER" --implementation cp "${PLATFORMS[@]}" \
  -d "$OUT" "${WHEELS[@]}"

ls -1 "$OUT" | sed 's/^/[bundle]   /'
KIB="$(du -sk "$OUT" | cut -f1)"
echo "[bundle] $OUT: $(ls "$OUT" | wc -l) files, $((KIB / 1024)) MiB ($KIB KiB)"
if ((KIB > MAX_MIB * 1024)); then
  echo "[bundle] over the limit of $MAX_MIB MiB" >&2
  exit 1
fi
echo "[bundle] on the GPU machine: bash tools/gpu_check.sh --bundle $OUT --time-limit 540"

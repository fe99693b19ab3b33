#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, set up the environment
# (make venv: mmcv-full with CUDA ops), run the tests marked gpu and print
# a one-screen summary. Works offline with a folder of wheels.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash tools/gpu_check.sh [--wheelhouse DIR] [--sdist FILE] [--system-torch]
                               [--bundle DIR] [--time-limit SECONDS]
                               [--out DIR] [-- PYTEST_ARGS...]
       make gpu-check

Sets up the environment (make venv), which on a GPU machine builds mmcv-full's
CUDA ops, runs the tests marked gpu (tests/test_gpu.py) and prints a summary:
GPU, versions, whether mmcv's ops have CUDA, and the passed/skipped/failed
counts. Exit status 0 only when the gpu tests ran and all passed.

  --wheelhouse DIR  install from this folder of wheels, not the package index
                    (offline machines): what the machine lacks among mmdet
                    2.28.2, mmcls 0.25.0, numpy<2, yapf 0.40.1, addict,
                    terminaltables, pycocotools, opencv-python<4.11, pytest,
                    pytest-timeout, ninja, and nvidia-cuda-nvcc/-cccl if there
                    is no nvcc; mmcv-full-1.7.1.tar.gz may lie there too
  --sdist FILE      the mmcv-full-1.7.1.tar.gz to build (else the wheelhouse's,
                    else the package index's)
  --system-torch    use the torch installed for python3 (images that ship one)
                    instead of installing the pinned torch
  --bundle DIR      an offline GPU image with torch and numpy 2: the folder
                    tools/gpu_bundle.sh made (--wheelhouse DIR --system-torch,
                    with NUMPY=2)
  --time-limit S    stop the set-up and the tests after S seconds in all and
                    still print the summary (verdict FAIL, saying where it
                    stopped)
  --out DIR         where the test log and results go (default:
                    work_dirs/gpu_check)
  -- PYTEST_ARGS    passed on to pytest, e.g. -- -k nccl

The environment variables of tools/setup_env.sh apply (VENV, CUDA_HOME,
TORCH_CUDA_ARCH_LIST, MAX_JOBS, DAVAR_CACHE).
EOF
}

wrong() { echo "gpu_check.sh: $1" >&2; echo >&2; usage >&2; exit 2; }

OUT=work_dirs/gpu_check
PYTEST_ARGS=()
LIMIT=""
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --wheelhouse|--sdist|--out|--bundle|--time-limit)
      (($# >= 2)) || wrong "$1 needs a value"
      case "$1" in
        --wheelhouse|--bundle)
          [[ -d "$2" ]] || wrong "$1 $2 is not a folder"
          export WHEELHOUSE="$(cd "$2" && pwd)"
          if [[ "$1" == --bundle ]]; then export SYSTEM_TORCH=1 NUMPY=2; fi ;;
        --time-limit) [[ "$2" =~ ^[1-9][0-9]*$ ]] || wrong "--time-limit takes a positive number of seconds; got '$2'"
                      LIMIT="$2" ;;
        --sdist) [[ -f "$2" ]] || wrong "--sdist $2 is not a file"
                 export MMCV_SDIST="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")" ;;
        --out) OUT="$2" ;;
      esac
      shift 2 ;;
    --system-torch) export SYSTEM_TORCH=1; shift ;;
    --) shift; PYTEST_ARGS=("$@"); break ;;
    *) wrong "unknown argument '$1'" ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/pytest.log"
START=$SECONDS

# bounded CMD...: CMD, stopped when the time limit (if any) runs out
# (exit status 124)
bounded() {
  if [[ -z "$LIMIT" ]]; then "$@"; return; fi
  local left=$((LIMIT - (SECONDS - START)))
  ((left > 0)) || return 124
  timeout -k 20 "$left" "$@"
}

echo "[gpu-check] 1/3 make venv${LIMIT:+ (time limit ${LIMIT}s in all)}"
STATUS=0 STOPPED="" SETUP_FAILED=""
rm -f "$OUT/junit.xml"
bounded make --no-print-directory venv VENV="$VENV" || STATUS=$?
SETUP=$((SECONDS - START))
if ((STATUS == 0)); then
  echo "[gpu-check] 2/3 pytest -m gpu (output in $LOG)"
  bounded "$VENV/bin/python" -m pytest tests -m gpu -rs -p no:cacheprovider \
    --junitxml="$OUT/junit.xml" ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"} \
    >"$LOG" 2>&1 || STATUS=$?
  ((STATUS != 124)) || STOPPED="the gpu tests"
else
  SETUP_FAILED=1
  ((STATUS != 124)) || STOPPED="the set-up"
  echo "[gpu-check] the set-up stopped (exit status $STATUS): no test was run" | tee "$LOG" >&2
fi
TESTS=$((SECONDS - START - SETUP))
# the summary needs the stack; without it, one line
if ! "$VENV/bin/python" -c 'import mmcv.ops, mmdet, torch' 2>/dev/null; then
  echo "[gpu-check] verdict: FAIL (the set-up did not finish${STOPPED:+: time limit reached during $STOPPED})"
  exit 1
fi

echo "[gpu-check] 3/3 summary"
SETUP=$SETUP TESTS=$TESTS STATUS=$STATUS STOPPED="$STOPPED" SETUP_FAILED="${SETUP_FAILED:-}" "$VENV/bin/python" -W ignore - "$OUT" <<'EOF'
import os, platform, sys, time
import xml.etree.ElementTree as ET
import mmcv, mmdet, numpy, torch
from mmcv.ops import get_compiling_cuda_version

out = sys.argv[1]
counts = dict(passed=0, skipped=0, failed=0)
skips, failures = [], []
try:
    for case in ET.parse(os.path.join(out, 'junit.xml')).iter('testcase'):
        name = case.get('name')
        if case.find('skipped') is not None:
            counts['skipped'] += 1
            skips.append((case.find('skipped').get('message') or '')
                         .removeprefix('Skipped: '))
        elif case.find('failure') is not None or case.find('error') is not None:
            counts['failed'] += 1
            failures.append(name)
        else:
            counts['passed'] += 1
except (OSError, ET.ParseError):
    failures.append('pytest wrote no results (see its log)')


gpus = [f'{torch.cuda.get_device_name(i)} '
        f'(sm{"".join(map(str, torch.cuda.get_device_capability(i)))})'
        for i in range(torch.cuda.device_count())] \
    if torch.cuda.is_available() else []
ops = get_compiling_cuda_version()
seconds = lambda s: f'{int(s) // 60}m{int(s) % 60:02d}s'  # noqa: E731
lines = [
    '=' * 72,
    f'GPU check, {time.strftime("%Y-%m-%d %H:%M")} on {platform.node()}',
    '=' * 72,
    f'GPUs          : {", ".join(gpus) or "none seen by torch"}',
    f'python        : {platform.python_version()}, numpy {numpy.__version__}',
    f'torch         : {torch.__version__} (CUDA {torch.version.cuda}), '
    f'NCCL {".".join(map(str, torch.cuda.nccl.version())) if gpus else "-"}',
    f'mmcv-full     : {mmcv.__version__}, ops '
    + ('CPU only' if ops == 'not available' else f'with CUDA {ops}'),
    f'mmdet         : {mmdet.__version__}',
    f'cores         : {os.cpu_count()}',
    f'time          : set-up {seconds(os.environ["SETUP"])}, '
    f'tests {seconds(os.environ["TESTS"])}',
    f'gpu tests     : {counts["passed"]} passed, {counts["skipped"]} '
    f'skipped, {counts["failed"]} failed',
]
for reason in sorted(set(skips))[:3]:
    lines.append(f'  skipped     : {reason}')
for name in failures[:8]:
    lines.append(f'  FAILED      : {name}')
verdict = ('PASS' if counts['passed'] and not failures and
           os.environ['STATUS'] == '0' else 'FAIL' if failures or
           os.environ['STATUS'] not in ('0', '5') else 'NOT RUN (skipped)')
if os.environ['SETUP_FAILED']:
    verdict = 'FAIL (the set-up failed; see its output above)'
if os.environ['STOPPED']:
    verdict = f'FAIL (time limit reached during {os.environ["STOPPED"]})'

lines += [f'verdict       : {verdict}',
          f'log           : {os.path.join(out, "pytest.log")}', '=' * 72]
print('\n'.join(lines))
sys.exit(0 if verdict == 'PASS' else 1)
EOF

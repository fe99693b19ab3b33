#!/usr/bin/env bash
# Usage: bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args...]
#
# Several machines: as tools/dist_train.sh, with NNODES, NODE_RANK,
# MASTER_ADDR and PORT. Every node reads CHECKPOINT; the results are
# gathered on rank 0 through the process group (no shared folder) unless
# --tmpdir is given. PYTHON (default python): the interpreter, e.g.
# PYTHON=.venv/bin/python when .venv is not activated.
set -euo pipefail
usage() {  # the comment above, without its '#'
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}
if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then usage; exit 0; fi
if [ $# -lt 3 ] || ! [[ "$3" =~ ^([0-9]+|auto|cpu|gpu)$ ]]; then
  usage >&2
  echo "dist_test.sh: expected CONFIG CHECKPOINT NUM_PROCS [test.py args...], got: ${*:-no arguments}" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
PYTHON=${PYTHON:-python}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
if [ "$NNODES" -gt 1 ] && { [ -z "${PORT:-}" ] || [ -z "${MASTER_ADDR:-}" ]; }; then
  echo "dist_test.sh: with NNODES=$NNODES set MASTER_ADDR (the host of node 0) and PORT, the same on every node" >&2
  exit 2
fi
PORT=${PORT:-$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$PYTHON" -m torch.distributed.run --nnodes="$NNODES" \
  --node_rank="$NODE_RANK" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"

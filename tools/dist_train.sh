#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
#
# One machine: picks a free port unless PORT is set.
# Several machines: run it on each with the same NNODES, MASTER_ADDR (the
# host of node 0) and PORT, and NODE_RANK 0 .. NNODES-1:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
# Without a GPU the processes use gloo, with GPUs NCCL (dist_params.backend).
#
# MAX_RESTARTS=N (default 0): when a process dies, torchrun stops the others
#   and starts them all again, up to N times; each restart continues from
#   the newest checkpoint of the work_dir that loads.
# RDZV=static (default) or c10d: how the machines meet. static: NODE_RANK 0
#   hosts global rank 0, the rank that writes the work_dir. c10d: torch's
#   rendezvous at MASTER_ADDR:PORT (NODE_RANK is not used; rank 0 is the
#   machine whose host name sorts first); with MAX_RESTARTS on several
#   machines, a failure on one restarts every machine at once. RDZV_ID names
#   the run (default davarocr-PORT), the same on every machine.
# PYTHON (default python): the interpreter that runs torchrun and train.py,
#   e.g. PYTHON=.venv/bin/python when .venv is not activated.
set -euo pipefail
usage() {  # the comment above, without its '#'
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}
if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then usage; exit 0; fi
if [ $# -lt 2 ] || ! [[ "$2" =~ ^([0-9]+|auto|cpu|gpu)$ ]]; then
  usage >&2
  echo "dist_train.sh: expected CONFIG NUM_PROCS [train.py args...], got: ${*:-no arguments}" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
PYTHON=${PYTHON:-python}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MAX_RESTARTS=${MAX_RESTARTS:-0}
RDZV=${RDZV:-static}
if ! [[ "$MAX_RESTARTS" =~ ^[0-9]+$ ]]; then
  echo "dist_train.sh: MAX_RESTARTS must be a whole number (0: no restart), got '$MAX_RESTARTS'" >&2
  exit 2
fi
if [ "$RDZV" != static ] && [ "$RDZV" != c10d ]; then
  echo "dist_train.sh: RDZV must be static or c10d, got '$RDZV'" >&2
  exit 2
fi
if [ "$NNODES" -gt 1 ] && { [ -z "${PORT:-}" ] || [ -z "${MASTER_ADDR:-}" ]; }; then
  echo "dist_train.sh: with NNODES=$NNODES set MASTER_ADDR (the host of node 0) and PORT, the same on every node" >&2
  exit 2
fi
PORT=${PORT:-$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
if [ "$RDZV" = c10d ]; then
  # a fresh store per attempt, hosted by global rank 0 (see
  # docs/distributed.md, "Elastic restarts")
  export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=${TORCH_DISABLE_SHARE_RDZV_TCP_STORE:-1}
  MEET=(--rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$PORT"
        --rdzv-id="${RDZV_ID:-davarocr-$PORT}")
else
  MEET=(--node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR"
        --master_port="$PORT")
fi
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# tools/torchrun.py is torchrun, also forwarding SIGUSR1 and exiting 75 when
# the workers were pre-empted (docs/distributed.md, "Pre-emption")
exec "$PYTHON" "$DIR/torchrun.py" --nnodes="$NNODES" \
  --nproc_per_node="$NPROC" --max-restarts="$MAX_RESTARTS" "${MEET[@]}" \
  "$DIR/train.py" "$CONFIG" --launcher pytorch "$@"

#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
#
# One machine: picks a free port unless PORT is set.
# Several machines: run it on each with the same NNODES, MASTER_ADDR (the
# host of node 0) and PORT, and NODE_RANK 0 .. NNODES-1:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
# Without a GPU the processes use gloo, with GPUs NCCL (dist_params.backend).
set -euo pipefail
CONFIG=$1
NPROC=$2
shift 2
PYTHON=${PYTHON:-python}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
if [ "$NNODES" -gt 1 ] && { [ -z "${PORT:-}" ] || [ -z "${MASTER_ADDR:-}" ]; }; then
  echo "dist_train.sh: with NNODES=$NNODES set MASTER_ADDR (the host of node 0) and PORT, the same on every node" >&2
  exit 2
fi
PORT=${PORT:-$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# tools/torchrun.py is torchrun, also forwarding SIGUSR1 and exiting 75 when
# the workers were pre-empted (README "Pre-emption")
exec "$PYTHON" "$DIR/torchrun.py" --nnodes="$NNODES" \
  --node_rank="$NODE_RANK" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$DIR/train.py" "$CONFIG" --launcher pytorch "$@"
